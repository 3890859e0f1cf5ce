"""The plugin's own custom fields on People and Organisations (DESIGN §5), and how their
`cf_…` columns are found at run time: BY TITLE, never by a hard-coded column name, because
Workbooks appends numeric suffixes on collisions (`cf_person_outreach_id_3774`).

The definitions live in one place, `manifest.yaml` (`custom_fields: {person: [...],
organisation: [...]}`, entries `{key, title, data_type, hidden}`), which the installer reads
too. The built-in table below is the fallback when the manifest is absent (e.g. a unit test
that imports the package alone) and must say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import NotInstalled, WorkbooksError
from .kinds import KINDS as _KINDS, by_name, in_reading_order
from .workbooks import RESOURCE_TYPES, WorkbooksClient

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "manifest.yaml"
KINDS = tuple(k.name for k in in_reading_order())
STRING_LIMIT = 255          # workbooks-api.md §6.2: "string: up to 255 characters"


@dataclass(frozen=True)
class FieldDef:
    key: str            # how the code refers to the field (logical name)
    title: str          # what Workbooks shows, and what we find it by
    data_type: str
    hidden: bool = False
    # A field a later version added: a run on an installation without it carries on without
    # what it holds (and says to run the installer); the installer adds it.
    optional: bool = False


_SYNC_FIELDS: tuple[FieldDef, ...] = (
    FieldDef("sync", "Sync to Outreach", "boolean"),
    FieldDef("sync_error", "Outreach Sync Error", "boolean"),
    FieldDef("duplicate", "Outreach Duplicate", "boolean"),
    FieldDef("outreach_id", "Outreach Id", "string"),
    FieldDef("outreach_url", "Outreach URL", "url"),
    FieldDef("error_message", "Outreach Error Message", "text"),
    FieldDef("last_synced", "Outreach Last Synced", "datetime"),
    FieldDef("snapshot", "Outreach Sync Snapshot", "text", hidden=True),
)
# What the receive side writes onto a Person (0.2.0), optional for installations made before.
_RECEIVE_FIELDS: tuple[FieldDef, ...] = (
    FieldDef("sequence_state", "Outreach Sequence State", "string", optional=True),
    FieldDef("sequence_name", "Outreach Sequence", "string", optional=True),
    FieldDef("state_updated_at", "Outreach State Updated At", "datetime", optional=True),
    FieldDef("opted_out_at", "Outreach Opted Out At", "datetime", optional=True),
)
BUILT_IN: dict[str, tuple[FieldDef, ...]] = {"person": _SYNC_FIELDS + _RECEIVE_FIELDS,
                                             "organisation": _SYNC_FIELDS}

_KIND_ALIASES = {**{alias: k.name for k in _KINDS
                    for alias in (k.label, k.resource_type.lower(), k.outreach_type)},
                 "persons": "person", "organizations": "organisation", "organization": "organisation"}


def _kind(kind: str) -> str:
    key = str(kind).strip().lower()
    key = _KIND_ALIASES.get(key, key)
    if key not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {', '.join(KINDS)}")
    return key


@lru_cache(maxsize=4)
def _from_manifest(path: str) -> dict[str, tuple[FieldDef, ...]] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None
    section = (data or {}).get("custom_fields") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return None
    found: dict[str, tuple[FieldDef, ...]] = {}
    for raw_kind, entries in section.items():
        try:
            kind = _kind(raw_kind)
        except ValueError:
            continue
        if not isinstance(entries, list):
            continue
        defs = tuple(FieldDef(str(e["key"]), str(e["title"]), str(e.get("data_type") or "string"),
                              bool(e.get("hidden", False)), bool(e.get("optional", False)))
                     for e in entries if isinstance(e, dict) and e.get("key") and e.get("title"))
        found[kind] = defs
    return found or None


def definitions(kind: str, manifest: str | Path | None = None) -> tuple[FieldDef, ...]:
    """The plugin's fields on `kind` ("person"/"organisation"): manifest.yaml's, else built-in."""
    kind = _kind(kind)
    loaded = _from_manifest(str(manifest or MANIFEST_PATH))
    if loaded and loaded.get(kind):
        return loaded[kind]
    return BUILT_IN[kind]


def create_rows(kind: str, manifest: str | Path | None = None) -> list[dict]:
    """`admin/custom_fields` create rows for `kind` (for WorkbooksClient.create_custom_fields)."""
    kind = _kind(kind)
    return [{"title": d.title, "resource_type": RESOURCE_TYPES[kind], "data_type": d.data_type}
            for d in definitions(kind, manifest)]


def _fold(title: Any) -> str:
    return " ".join(str(title or "").split()).casefold()


def resolve_columns(workbooks: WorkbooksClient, kind: str, *, recorded: dict[str, str] | None = None,
                    manifest: str | Path | None = None) -> dict[str, str]:
    """{logical key → `cf_…` column} for the plugin's fields on `kind`, found by title through
    `admin/custom_fields` (falling back to `metadata/types` when that endpoint is refused).
    When several fields share a title, the column the installer recorded (`recorded`: title →
    column, from the install state) wins, else the lowest id. Raises NotInstalled naming every
    missing title; an optional field that is missing is left out (see `missing_optional`)."""
    kind = _kind(kind)
    defs = definitions(kind, manifest)
    candidates = _candidates(workbooks, kind)
    recorded = recorded or {}
    columns: dict[str, str] = {}
    missing: list[str] = []
    for d in defs:
        same = [c for c in candidates if _fold(c["title"]) == _fold(d.title) and c["column"]]
        if not same:
            if not d.optional:
                missing.append(d.title)
            continue
        chosen = next((c for c in same if recorded.get(d.title) and c["column"] == recorded[d.title]), None)
        columns[d.key] = (chosen or same[0])["column"]
    if missing:
        raise NotInstalled(f"the plugin is not installed: {by_name(kind).words} lack the custom field(s) "
                           f"{', '.join(repr(t) for t in missing)}; run the installer")
    return columns


def missing_optional(kind: str, columns: dict[str, str]) -> list[str]:
    """Titles of the optional fields `columns` lacks: an installation made by an older version."""
    return [d.title for d in definitions(kind) if d.optional and d.key not in columns]


def _candidates(workbooks: WorkbooksClient, kind: str) -> list[dict]:
    """[{title, column, id}] sorted by id, from custom field definitions or type metadata."""
    try:
        rows = workbooks.custom_fields(RESOURCE_TYPES[kind])
        found = [{"title": r.get("title"), "column": r.get("value_column_name") or r.get("name"),
                  "id": r.get("id") or 0}
                 for r in rows if str(r.get("status") or "available").lower() != "deleted"]
    except WorkbooksError:
        types = workbooks.metadata_types([RESOURCE_TYPES[kind]])
        fields = [f for t in types for f in (t.get("fields") or []) if isinstance(f, dict)]
        found = [{"title": f.get("title"), "column": f.get("name"), "id": 0}
                 for f in fields if str(f.get("name") or "").startswith("cf_")]
    return sorted(found, key=lambda c: int(c["id"] or 0))


def write_limits(install: dict | None, kind: str) -> dict[str, int]:
    """{logical key → most characters a value may have} for the plugin's fields on `kind` that
    Workbooks holds as `string` (the installer's stand-in when it refused `text`, `url` or
    `datetime`: install state `field_types`, see plugin/install.py)."""
    kind = _kind(kind)
    types = ((install or {}).get("field_types") or {}).get(kind) or {}
    return {d.key: STRING_LIMIT for d in definitions(kind) if str(types.get(d.title) or "").lower() == "string"}
