"""Check a mapping file and preview what it sends.

    python -m tools.validate_mapping FILE
    python -m tools.validate_mapping FILE --preview RECORD.json [--object person]
    python -m tools.validate_mapping FILE --workbooks URL --api-key KEY [--preview-id N --object person]
    (the key may come from env WORKBOOKS_API_KEY instead of --api-key)

Prints every problem as `FILE:LINE:COL: what is wrong — how to fix it` (warnings say
`warning:`). Exit 0: no errors (warnings allowed, unless --strict). Exit 1: the mapping has
errors, or the previewed record cannot be mapped. Exit 2: the check itself could not run (bad
arguments, unreadable record file, Workbooks unreachable or refusing the key).

With --workbooks the source columns are checked against the fields Workbooks really has
(`metadata/types`), custom fields named by title are resolved, and --preview-id previews a real
record. Without it, --preview reads a record from a JSON file: one record object, a list of them,
or {"person": {...}, "organisation": {...}}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from plugin.errors import InvalidMapping, PluginError
from plugin.kinds import in_reading_order
from plugin.mapping import (ACTIVE_OBJECTS, BoundMapping, Mapping, Problem, RecordMappingError,
                            guess_custom_field_column, load_mapping, validate_mapping_file)

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT_CHECK = 0, 1, 2
RECORD_ENDPOINTS = {k.name: k.endpoint for k in in_reading_order()}
CLASS_NAMES = {k.name: k.resource_type for k in in_reading_order()}


class CannotCheck(Exception):
    """The check could not run; the message says why and what to do."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.validate_mapping",
        description="Check a Workbooks → Outreach mapping file; optionally preview a record.")
    parser.add_argument("file", help="the mapping YAML file, e.g. mappings/default.yaml")
    parser.add_argument("--preview", metavar="RECORD.json",
                        help="print the Outreach payload this Workbooks record (JSON) would produce")
    parser.add_argument("--object", choices=sorted(ACTIVE_OBJECTS),
                        help="which section the previewed record belongs to (guessed from its fields if left out)")
    parser.add_argument("--workbooks", metavar="URL", help="Workbooks service URL, to check fields against the real database")
    parser.add_argument("--api-key", metavar="KEY", default=os.environ.get("WORKBOOKS_API_KEY"),
                        help="Workbooks API key (with --workbooks; default: env WORKBOOKS_API_KEY, "
                             "which keeps it out of the shell history)")
    parser.add_argument("--preview-id", metavar="N", type=int, help="preview the Workbooks record with this id (with --workbooks)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    parser.add_argument("--no-verify-tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workbooks and not args.api_key:
        parser.error("--workbooks needs --api-key")
    if args.preview_id is not None and not args.workbooks:
        parser.error("--preview-id needs --workbooks URL --api-key KEY")
    if args.preview and args.preview_id is not None:
        parser.error("use either --preview or --preview-id, not both")
    return args


# --- Workbooks --------------------------------------------------------------------------------

class WorkbooksSource:
    """What the validator needs from a Workbooks database: its field names and custom-field
    titles per section, and single records. Built on plugin.workbooks.WorkbooksClient."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.fields: dict[str, set[str]] = {}
        self.titles: dict[str, dict[str, str]] = {}

    @classmethod
    def connect(cls, url: str, api_key: str, *, verify: bool = True) -> "WorkbooksSource":
        from plugin.http import HttpClient
        from plugin.workbooks import WorkbooksClient
        http = HttpClient("workbooks", verify=verify, max_retries=1)
        return cls(WorkbooksClient.connect({"_workbooks_service": url, "workbooks_api_key": api_key}, http))

    def load_fields(self) -> None:
        for name, class_name in CLASS_NAMES.items():
            types = self.client.metadata_types([class_name])
            kind = next((t for t in types if t.get("class_name") == class_name), types[0] if types else {})
            fields = [f for f in kind.get("fields") or [] if isinstance(f, dict) and f.get("name")]
            associations = [a for a in kind.get("associations") or [] if isinstance(a, dict) and a.get("name")]
            self.fields[name] = {f["name"] for f in fields} | {a["name"] for a in associations}
            self.titles[name] = {}
            for f in fields:
                if str(f["name"]).startswith("cf_") and f.get("title"):
                    # Several fields may share a title; keep the first (lowest) as the engine does.
                    self.titles[name].setdefault(str(f["title"]), str(f["name"]))

    def record(self, object_name: str, record_id: int, columns: list[str]) -> dict:
        rows = self.client.get(RECORD_ENDPOINTS[object_name], filters=[("id", "eq", record_id)],
                               columns=["id", *columns], limit=1)
        if not rows:
            raise CannotCheck(f"Workbooks has no {object_name} with id {record_id}")
        return rows[0]

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # noqa: BLE001 — logging out is a courtesy
            pass


# --- preview ----------------------------------------------------------------------------------

def read_record(path: str, object_name: str | None) -> tuple[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise CannotCheck(f"{path}: the record file does not exist") from None
    except (OSError, ValueError) as exc:
        raise CannotCheck(f"{path}: not a JSON record ({exc})") from None
    if isinstance(data, dict) and set(data) & set(ACTIVE_OBJECTS) and all(
            isinstance(v, dict) for k, v in data.items() if k in ACTIVE_OBJECTS):
        if object_name is None:
            present = [k for k in ACTIVE_OBJECTS if k in data]
            if len(present) > 1:
                raise CannotCheck(f"{path}: holds a person and an organisation: choose one with --object")
            object_name = present[0]
        if object_name not in data:
            raise CannotCheck(f"{path}: has no `{object_name}` record")
        data = data[object_name]
    if isinstance(data, list):
        if not data:
            raise CannotCheck(f"{path}: the list of records is empty")
        data = data[0]
    if not isinstance(data, dict):
        raise CannotCheck(f"{path}: expected a JSON object of Workbooks fields")
    return object_name or guess_object(path, data), data


def guess_object(path: str, record: dict) -> str:
    keys = [str(k) for k in record]
    if any(k.startswith("person_") or k.startswith("cf_person_") for k in keys):
        return "person"
    if any(k.startswith("organisation_") or k.startswith("cf_organisation_") for k in keys):
        return "organisation"
    raise CannotCheck(f"{path}: cannot tell whether this is a person or an organisation: add --object")


def preview(bound: BoundMapping, record: dict, source: str, out: TextIO, err: TextIO) -> bool:
    try:
        attributes = bound.map(record)
    except RecordMappingError as exc:
        for field_name, target, reason in exc.errors:
            print(f"{source}: cannot map {field_name} → {target}: {reason}", file=out)
        return False
    payload = {"data": {"type": bound.target, "attributes": attributes}}
    print(json.dumps(payload, indent=2, ensure_ascii=False), file=out)
    skipped = bound.skipped_when_empty(attributes)
    if skipped:
        print(f"left out because empty (skip_empty, Outreach keeps its value): {', '.join(skipped)}", file=err)
    key = bound.match_value(attributes)
    if bound.match_key == "customId":
        print("match key: customId (the plugin's own marker; accounts it did not create are never matched)", file=err)
    else:
        print(f"match key {bound.match_key}: {key!r}" if key else
              f"match key {bound.match_key} is empty: the plugin would flag this record instead of sending it",
              file=err)
    marker = "externalId" if bound.target == "prospect" else "customId"
    print(f"the plugin adds {marker} (its Workbooks id marker) and the owner/account relationships", file=err)
    return True


# --- main -------------------------------------------------------------------------------------

def run(args: argparse.Namespace, out: TextIO, err: TextIO, *,
        workbooks: WorkbooksSource | None = None) -> int:
    file = args.file
    if args.workbooks and workbooks is None:
        try:
            workbooks = WorkbooksSource.connect(args.workbooks, args.api_key, verify=not args.no_verify_tls)
        except PluginError as exc:
            print(f"cannot check against Workbooks: {exc}", file=err)
            return EXIT_CANNOT_CHECK
    try:
        if workbooks is not None:
            workbooks.load_fields()
        fields = workbooks.fields if workbooks is not None else None
        problems = validate_mapping_file(file, workbooks_fields=fields)
        mapping = None
        if not any(p.is_error for p in problems):
            mapping = load_mapping(file, workbooks_fields=fields)
            if workbooks is not None:
                problems += bind_problems(mapping, workbooks.titles)
        for problem in problems:
            print(problem, file=out)
        errors = sum(p.is_error for p in problems)
        warnings = len(problems) - errors
        if errors or (args.strict and warnings):
            print(f"{file}: {_count(errors, 'error')}, {_count(warnings, 'warning')}", file=err)
            return EXIT_PROBLEMS
        assert mapping is not None
        print(f"{file}: OK ({summary(mapping)})" + (f", {_count(warnings, 'warning')}" if warnings else ""),
              file=err)
        if args.preview or args.preview_id is not None:
            return do_preview(args, mapping, workbooks, out, err)
        return EXIT_OK
    except CannotCheck as exc:
        print(str(exc), file=err)
        return EXIT_CANNOT_CHECK
    except PluginError as exc:
        print(f"cannot check against Workbooks: {exc}", file=err)
        return EXIT_CANNOT_CHECK
    finally:
        if workbooks is not None:
            workbooks.close()


def do_preview(args: argparse.Namespace, mapping: Mapping, workbooks: WorkbooksSource | None,
               out: TextIO, err: TextIO) -> int:
    if args.preview_id is not None:
        assert workbooks is not None
        object_name = args.object or "person"
        bound = mapping.objects[object_name].bind(workbooks.titles.get(object_name, {}))
        record = workbooks.record(object_name, args.preview_id, bound.source_columns)
        source = f"{object_name} {args.preview_id}"
    else:
        object_name, record = read_record(args.preview, args.object)
        bound = bind_for_preview(mapping, object_name, workbooks, err)
        source = args.preview
    return EXIT_OK if preview(bound, record, source, out, err) else EXIT_PROBLEMS


def bind_for_preview(mapping: Mapping, object_name: str, workbooks: WorkbooksSource | None,
                     err: TextIO) -> BoundMapping:
    section = mapping.objects[object_name]
    if workbooks is not None:
        return section.bind(workbooks.titles.get(object_name, {}))
    guessed = {t: guess_custom_field_column(object_name, t) for t in sorted(section.custom_field_titles)}
    for title, column in guessed.items():
        print(f'assuming custom field "{title}" is column {column} '
              f"(connect with --workbooks to look it up)", file=err)
    return section.bind(guessed)


def bind_problems(mapping: Mapping, titles: dict[str, dict[str, str]]) -> list[Problem]:
    """Custom fields named by title that the Workbooks database does not have."""
    found: list[Problem] = []
    for name, section in mapping.objects.items():
        try:
            section.bind(titles.get(name, {}))
        except InvalidMapping as exc:
            found += [_as_problem(text) for text in exc.problems]
    return found


def _as_problem(text: str) -> Problem:
    """InvalidMapping carries formatted text; turn it back into a Problem to count and sort it."""
    head, _, rest = text.partition(": ")
    parts = head.rsplit(":", 2)
    message, _, hint = rest.partition(" — ")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return Problem(parts[0], int(parts[1]), int(parts[2]), message, hint)
    return Problem(head, 1, 1, message, hint)


def summary(mapping: Mapping) -> str:
    parts = [f"{name} → {section.target}: {_count(sum(f.sends for f in section.fields), 'field')}"
             for name, section in mapping.objects.items()]
    return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
