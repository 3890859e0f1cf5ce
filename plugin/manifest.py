"""The plugin manifest (`manifest.yaml`): load, validate, and read it as typed definitions.

Validation reports every problem, each as `FILE:LINE:COL: where — what` (like the mapping
validator), pointing at the YAML node at fault; the YAML, positions and schema machinery are
plugin.yamldoc's. Schema: `plugin/manifest.schema.json` (JSON Schema 2020-12).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from plugin import yamldoc
from plugin.errors import ActionRequired
from plugin.kinds import KINDS, in_reading_order
from plugin.yamldoc import Problem

PACKAGE_DIR = Path(__file__).resolve().parent
#: manifest.yaml sits beside plugin/, in the repository and in the uploaded bundle alike.
MANIFEST_PATH = PACKAGE_DIR.parent / "manifest.yaml"
SCHEMA_PATH = PACKAGE_DIR / "manifest.schema.json"

#: Workbooks record classes of the record types the plugin adds fields to (plugin/kinds.py).
RESOURCE_TYPES = {k.name: k.resource_type for k in in_reading_order()}

#: Field keys the code relies on (plugin/fields.py, the engine); a manifest without one is broken.
REQUIRED_FIELD_KEYS = ("sync", "sync_error", "duplicate", "outreach_id", "outreach_url",
                       "error_message", "last_synced", "snapshot")

#: What the engine does in Outreach, per resource: the scope levels it needs.
REQUIRED_SCOPES = {**{k.outreach_plural: {"read", "write"} for k in KINDS}, "users": {"read"},
                   "sequences": {"read"}, "sequenceStates": {"read"}}


class InvalidManifest(ActionRequired):
    """The manifest does not validate; `.problems` are formatted `FILE:LINE:COL: … — …`."""

    def __init__(self, problems: list[Problem]):
        self.problems = [str(p) for p in problems]
        noun = "problem" if len(problems) == 1 else "problems"
        # One problem a line, like InvalidMapping, so each shows as its own log line.
        super().__init__("\n".join([f"the plugin manifest is invalid ({len(problems)} {noun}):",
                                     *self.problems]))


@dataclass(frozen=True)
class FieldDef:
    key: str
    title: str
    data_type: str
    hidden: bool
    description: str = ""
    optional: bool = False


@dataclass(frozen=True)
class ProcessDef:
    kind: str                     # "scheduled" | "web"
    key: str
    title: str
    script: str                   # key into Manifest.scripts
    script_file: str              # path inside the bundle, e.g. scripts/outreach_send_receive.py
    entry_point: str
    max_run_time_seconds: int
    log_level: str = "info"
    every_minutes: int | None = None
    web_identifier: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


class Manifest:
    """A validated manifest. `data` is the plain mapping; the properties give typed views."""

    def __init__(self, data: dict, path: Path):
        self.data = data
        self.path = path

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def scripts(self) -> dict[str, dict]:
        return self.data["scripts"]

    @property
    def scopes(self) -> list[str]:
        return list(self.data["oauth"]["scopes"])

    @property
    def processes(self) -> list[ProcessDef]:
        result = []
        for kind in ("scheduled", "web"):
            for proc in self.data["processes"][kind]:
                script = self.scripts[proc["script"]]
                result.append(ProcessDef(
                    kind=kind, key=proc["key"], title=proc["title"], script=proc["script"],
                    script_file=script["file"], entry_point=script["entry_point"],
                    max_run_time_seconds=proc["max_run_time_seconds"],
                    log_level=proc.get("log_level", "info"), every_minutes=proc.get("every_minutes"),
                    web_identifier=proc.get("web_identifier"),
                    parameters=dict(proc.get("parameters") or {})))
        return result

    def process(self, key: str) -> ProcessDef:
        for proc in self.processes:
            if proc.key == key:
                return proc
        raise KeyError(key)

    def custom_fields(self, kind: str) -> list[FieldDef]:
        """The fields for "person" or "organisation", in manifest order."""
        return [FieldDef(key=f["key"], title=f["title"], data_type=f["data_type"],
                         hidden=bool(f["hidden"]), description=f.get("description", ""),
                         optional=bool(f.get("optional", False)))
                for f in self.data["custom_fields"][kind]]

    @property
    def files(self) -> list[str]:
        """Every script file the manifest names (paths relative to the bundle root)."""
        return sorted({s["file"] for s in self.scripts.values()})


# --- loading ----------------------------------------------------------------------------------

def load_manifest(path: str | Path | None = None, *, check_files: bool = False) -> Manifest:
    """Load and validate; raises InvalidManifest listing every problem."""
    path = Path(path) if path else MANIFEST_PATH
    data, problems = _load_and_check(path, check_files=check_files)
    if problems:
        raise InvalidManifest(problems)
    return Manifest(data, path)


def validate_manifest_file(path: str | Path | None = None, *, check_files: bool = False) -> list[Problem]:
    """Every problem in the manifest at `path` (empty when it is valid). `check_files` also
    requires the named scripts to exist beside it (the packager asks for that)."""
    return _load_and_check(Path(path) if path else MANIFEST_PATH, check_files=check_files)[1]


def _load_and_check(path: Path, *, check_files: bool) -> tuple[Any, list[Problem]]:
    shown = _display_name(path)
    try:
        text = yamldoc.read_text(path)
    except (OSError, UnicodeDecodeError, yamldoc.FileRefused) as exc:
        return None, [Problem(shown, 1, 1, f"cannot read the manifest: {getattr(exc, 'strerror', None) or exc}")]
    doc = _Document.parse(text, shown)
    if not isinstance(doc.data, dict):  # unreadable: nothing further to check
        return doc.data, doc.problems
    problems = _SCHEMA.problems(doc)
    if not problems:  # the semantic checks assume the shapes the schema guarantees
        problems = _semantic_problems(doc, path.parent if check_files else None)
    # Duplicate keys (found while parsing) do not stop the other checks.
    return doc.data, yamldoc.capped(sorted(doc.problems + problems, key=lambda p: (p.line, p.col, p.message)))


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def where(path: tuple) -> str:
    """`processes.scheduled[0].title` for ("processes", "scheduled", 0, "title")."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Document(yamldoc.Document):
    """The manifest's YAML: its data as `yaml.safe_load` reads it (keys typed as YAML types
    them), which must be a mapping; every problem names its path (`where`). Where the rest
    differs from yamldoc's defaults, it is how this validator has always read YAML, kept as it
    was: a key is written twice when its text is, and the positions under it are its first
    one's (YAML keeps the last); an alias inside itself goes unsaid; a syntax error is said in
    PyYAML's words, without looking for tabs."""

    EMPTY = ("the manifest is empty", "")
    TWICE = ("'{key}' appears twice (first at line {line})", "")
    SELF_ALIAS = None
    TWICE_POSITIONS_FIRST = True

    where = staticmethod(where)

    def construct(self, node: yaml.Node) -> Any:
        assert self.loader is not None
        self.build(node)            # the positions, keys written twice; refuses an alias bomb first
        data = self.loader.construct_document(node)
        if not isinstance(data, dict):
            self.problems.append(self.problem_at(node.start_mark,
                                                 "the manifest must be a mapping of keys to values"))
        return data

    def key_identity(self, key_node: yaml.ScalarNode) -> Any:
        return key_node.value

    def yaml_problems(self, exc: yaml.YAMLError, text: str) -> list[Problem]:
        if isinstance(exc, yaml.MarkedYAMLError):
            return [self.problem_at(exc.problem_mark or exc.context_mark, f"not valid YAML: {exc.problem or exc}")]
        return [self.problem_at(None, f"not valid YAML: {exc}")]


# --- schema checks, in plain words ---------------------------------------------------------------

class _Schema(yamldoc.Schema):
    TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
                  "object": "a mapping of keys to values", "array": "a list"}
    VALUE_WORDS = {"bool": "{yaml}", "null": "nothing", "object": "a mapping", "array": "a list",
                   "number": "{value}", "string": "{value!r}", "other": "{value}"}
    KEY_NAME = "the name '{key}'"

    def explain_value(self, doc: yamldoc.Document, failure: yamldoc.Failure) -> Iterator[Problem]:
        path, kind, instance, error = failure.path, failure.kind, failure.instance, failure.error
        if kind == "required":
            for name in error.validator_value:
                if isinstance(instance, dict) and name not in instance:
                    yield doc.problem(path, f"'{name}' is missing")
        elif kind in ("additionalProperties", "unevaluatedProperties"):
            allowed = sorted(self._allowed_keys(failure.sub))
            for name in re.findall(r"'([^']*)'", error.message.split("(", 1)[-1]):
                yield doc.problem(path + (name,), f"unknown key '{name}'"
                                  + (f" (allowed here: {', '.join(allowed)})" if allowed else ""), key=True)
        elif kind == "type":
            expected = error.validator_value
            types = [expected] if isinstance(expected, str) else expected
            words = " or ".join(self.TYPE_WORDS.get(t, t) for t in types)
            hint = " (put it in quotes)" if expected == "string" and not isinstance(instance, (dict, list)) else ""
            yield doc.problem(path, f"must be {words}, not {self.describe(instance)}{hint}")
        elif kind == "enum":
            options = ", ".join(str(v) for v in error.validator_value)
            yield doc.problem(path, f"must be one of: {options} (got {self.describe(instance)})")
        elif kind == "minimum":
            yield doc.problem(path, f"must be at least {error.validator_value} (got {instance})")
        elif kind == "maximum":
            yield doc.problem(path, f"must be at most {error.validator_value} (got {instance})")
        elif kind in ("minItems", "minProperties"):
            yield doc.problem(path, "must not be empty")
        elif kind == "minLength":
            yield doc.problem(path, "must not be blank")
        elif kind == "maxLength":
            yield doc.problem(path, f"is too long (at most {error.validator_value} characters)")
        elif kind == "uniqueItems":
            yield doc.problem(path, "lists the same value twice")
        else:
            yield from super().explain_value(doc, failure)

    def _allowed_keys(self, sub: dict) -> set[str]:
        keys = set(sub.get("properties", {}))
        ref = sub.get("$ref", "")
        if ref.startswith("#/$defs/"):
            keys |= set(self.data["$defs"].get(ref.rsplit("/", 1)[-1], {}).get("properties", {}))
        return keys


_SCHEMA = _Schema(SCHEMA_PATH)


# --- checks the schema cannot express ------------------------------------------------------------

def _semantic_problems(doc: _Document, root: Path | None) -> list[Problem]:
    data = doc.data
    problems: list[Problem] = []
    scripts = data["scripts"]

    seen_keys: dict[str, tuple] = {}
    seen_titles: dict[str, tuple] = {}
    for kind in ("scheduled", "web"):
        for index, proc in enumerate(data["processes"][kind]):
            path = ("processes", kind, index)
            if proc["script"] not in scripts:
                problems.append(doc.problem(path + ("script",), f"names the script '{proc['script']}', which "
                                            f"is not under scripts: (known: {', '.join(sorted(scripts))})"))
            if proc["key"] in seen_keys:
                problems.append(doc.problem(path + ("key",), f"the key '{proc['key']}' is already used at "
                                            f"{where(seen_keys[proc['key']])}"))
            seen_keys.setdefault(proc["key"], path)
            folded = proc["title"].casefold()
            if folded in seen_titles:
                problems.append(doc.problem(path + ("title",), f"the title '{proc['title']}' is already used at "
                                            f"{where(seen_titles[folded])}"))
            seen_titles.setdefault(folded, path)

    for kind, fields in data["custom_fields"].items():
        keys: dict[str, int] = {}
        titles: dict[str, int] = {}
        for index, item in enumerate(fields):
            path = ("custom_fields", kind, index)
            if item["key"] in keys:
                problems.append(doc.problem(path + ("key",), f"the key '{item['key']}' is already used by "
                                            f"custom_fields.{kind}[{keys[item['key']]}]"))
            keys.setdefault(item["key"], index)
            # Fields are found by title at run time, and Workbooks titles compare without case.
            folded = item["title"].casefold()
            if folded in titles:
                problems.append(doc.problem(path + ("title",), f"the title '{item['title']}' is already used by "
                                            f"custom_fields.{kind}[{titles[folded]}]"))
            titles.setdefault(folded, index)
        for needed in REQUIRED_FIELD_KEYS:
            if needed not in keys:
                problems.append(doc.problem(("custom_fields", kind), f"the plugin needs a field with key '{needed}'"))

    granted: dict[str, set[str]] = {}
    for scope in data["oauth"]["scopes"]:
        resource, level = scope.split(".", 1)
        granted.setdefault(resource, set()).update({"read", "write", "delete"} if level == "all" else {level})
    for resource, levels in REQUIRED_SCOPES.items():
        missing = levels - granted.get(resource, set())
        if missing:
            wanted = f"{resource}.all" if len(levels) > 1 else f"{resource}.{next(iter(levels))}"
            problems.append(doc.problem(("oauth", "scopes"), f"the sync needs {resource} "
                                        f"{' and '.join(sorted(missing))} access: add {wanted}"))

    if root is not None:
        for name, script in scripts.items():
            if not (root / script["file"]).is_file():
                problems.append(doc.problem(("scripts", name, "file"), f"the file {script['file']} does not exist"))
    return problems
