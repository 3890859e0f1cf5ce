"""The plugin manifest (`manifest.yaml`): load, validate, and read it as typed definitions.

Validation reports every problem, each as `FILE:LINE:COL: where — what` (like the mapping
validator), pointing at the YAML node at fault: the positions come from `yaml.compose`, because
`yaml.safe_load` forgets them. Schema: `plugin/manifest.schema.json` (JSON Schema 2020-12).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

from plugin.errors import ActionRequired

PACKAGE_DIR = Path(__file__).resolve().parent
#: manifest.yaml sits beside plugin/, in the repository and in the uploaded bundle alike.
MANIFEST_PATH = PACKAGE_DIR.parent / "manifest.yaml"
SCHEMA_PATH = PACKAGE_DIR / "manifest.schema.json"

#: Workbooks record classes of the two record types the plugin adds fields to.
RESOURCE_TYPES = {"person": "Private::Crm::Person", "organisation": "Private::Crm::Organisation"}

#: Field keys the code relies on (plugin/fields.py, the engine); a manifest without one is broken.
REQUIRED_FIELD_KEYS = ("sync", "sync_error", "duplicate", "outreach_id", "outreach_url",
                       "error_message", "last_synced", "snapshot")

#: What the engine does in Outreach, per resource: the scope levels it needs.
REQUIRED_SCOPES = {"prospects": {"read", "write"}, "accounts": {"read", "write"}, "users": {"read"}}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    where: str
    message: str

    def __str__(self) -> str:
        where = f"{self.where} — " if self.where else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


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
                         hidden=bool(f["hidden"]), description=f.get("description", ""))
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
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(shown, 1, 1, "", f"cannot read the manifest: {exc.strerror or exc}")]
    doc = _Document.parse(text, shown)
    if not isinstance(doc.data, dict):  # unreadable: nothing further to check
        return doc.data, doc.problems
    problems = _schema_problems(doc)
    if not problems:  # the semantic checks assume the shapes the schema guarantees
        problems = _semantic_problems(doc, path.parent if check_files else None)
    # Duplicate keys (found while parsing) do not stop the other checks.
    return doc.data, sorted(doc.problems + problems, key=lambda p: (p.line, p.col, p.message))


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Document:
    """Parsed YAML plus, for every path into it, where its value (and its key) starts."""

    def __init__(self, file: str):
        self.file = file
        self.data: Any = None
        self.values: dict[tuple, yaml.Mark] = {}
        self.keys: dict[tuple, yaml.Mark] = {}
        self.problems: list[Problem] = []

    @classmethod
    def parse(cls, text: str, file: str) -> "_Document":
        doc = cls(file)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                doc.problems.append(Problem(file, 1, 1, "", "the manifest is empty"))
                return doc
            doc.data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            doc.problems.append(Problem(file, line, col, "", f"not valid YAML: {exc.problem or exc}"))
            return doc
        except yaml.YAMLError as exc:
            doc.problems.append(Problem(file, 1, 1, "", f"not valid YAML: {exc}"))
            return doc
        finally:
            loader.dispose()
        doc._walk(node, (), set())
        if not isinstance(doc.data, dict):
            mark = node.start_mark
            doc.problems.append(Problem(file, mark.line + 1, mark.column + 1, "",
                                        "the manifest must be a mapping of keys to values"))
        return doc

    def _walk(self, node: yaml.Node, path: tuple, active: set[int]) -> None:
        self.values.setdefault(path, node.start_mark)
        if id(node) in active:  # a recursive alias; the schema will reject its shape anyway
            return
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key in seen:
                    # PyYAML keeps the last silently; a duplicated key is almost always a mistake.
                    self.problems.append(self.problem(key_node.start_mark, path,
                                                      f"'{key}' appears twice (first at line {seen[key].line + 1})"))
                    continue
                seen[key] = key_node.start_mark
                self.keys[path + (key,)] = key_node.start_mark
                self._walk(value_node, path + (key,), active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,), active)

    def mark(self, path: tuple, *, key: bool = False) -> yaml.Mark | None:
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path)

    def problem(self, mark: yaml.Mark | None, path: tuple, message: str) -> Problem:
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(self.file, line, col, where(path), message)

    def at(self, path: tuple, message: str, *, key: bool = False) -> Problem:
        return self.problem(self.mark(path, key=key), path, message)


def where(path: tuple) -> str:
    """`processes.scheduled[0].title` for ("processes", "scheduled", 0, "title")."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- schema checks, in plain words ---------------------------------------------------------------

_SCHEMA: dict | None = None
_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "object": "a mapping of keys to values", "array": "a list"}


def schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return _SCHEMA


def _schema_problems(doc: _Document) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for error in validator.iter_errors(doc.data):
        problems.extend(_explain(doc, error))
    return problems


def _explain(doc: _Document, error: jsonschema.ValidationError) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    sub = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.absolute_schema_path:
        hint = sub.get("x-hint", "is not an allowed name")
        yield doc.at(path + (error.instance,), f"the name '{error.instance}': {hint}", key=True)
    elif kind == "required":
        for name in error.validator_value:
            if isinstance(error.instance, dict) and name not in error.instance:
                yield doc.at(path, f"'{name}' is missing")
    elif kind in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(_allowed_keys(sub))
        for name in re.findall(r"'([^']*)'", error.message.split("(", 1)[-1]):
            yield doc.at(path + (name,), f"unknown key '{name}'"
                         + (f" (allowed here: {', '.join(allowed)})" if allowed else ""), key=True)
    elif kind == "type":
        expected = error.validator_value
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        got = _describe(error.instance)
        hint = " (put it in quotes)" if expected == "string" and not isinstance(error.instance, (dict, list)) else ""
        yield doc.at(path, f"must be {words}, not {got}{hint}")
    elif kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        yield doc.at(path, f"must be one of: {options} (got {_describe(error.instance)})")
    elif kind == "pattern":
        yield doc.at(path, f"{_describe(error.instance)}: {sub.get('x-hint', 'does not have the expected form')}")
    elif kind == "minimum":
        yield doc.at(path, f"must be at least {error.validator_value} (got {error.instance})")
    elif kind == "maximum":
        yield doc.at(path, f"must be at most {error.validator_value} (got {error.instance})")
    elif kind in ("minItems", "minProperties"):
        yield doc.at(path, "must not be empty")
    elif kind == "minLength":
        yield doc.at(path, "must not be blank")
    elif kind == "maxLength":
        yield doc.at(path, f"is too long (at most {error.validator_value} characters)")
    elif kind == "uniqueItems":
        yield doc.at(path, "lists the same value twice")
    else:
        yield doc.at(path, error.message)


def _allowed_keys(sub: dict) -> set[str]:
    keys = set(sub.get("properties", {}))
    ref = sub.get("$ref", "")
    if ref.startswith("#/$defs/"):
        keys |= set(schema()["$defs"].get(ref.rsplit("/", 1)[-1], {}).get("properties", {}))
    return keys


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


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
                problems.append(doc.at(path + ("script",), f"names the script '{proc['script']}', which "
                                       f"is not under scripts: (known: {', '.join(sorted(scripts))})"))
            if proc["key"] in seen_keys:
                problems.append(doc.at(path + ("key",), f"the key '{proc['key']}' is already used at "
                                       f"{where(seen_keys[proc['key']])}"))
            seen_keys.setdefault(proc["key"], path)
            folded = proc["title"].casefold()
            if folded in seen_titles:
                problems.append(doc.at(path + ("title",), f"the title '{proc['title']}' is already used at "
                                       f"{where(seen_titles[folded])}"))
            seen_titles.setdefault(folded, path)

    for kind, fields in data["custom_fields"].items():
        keys: dict[str, int] = {}
        titles: dict[str, int] = {}
        for index, item in enumerate(fields):
            path = ("custom_fields", kind, index)
            if item["key"] in keys:
                problems.append(doc.at(path + ("key",), f"the key '{item['key']}' is already used by "
                                       f"custom_fields.{kind}[{keys[item['key']]}]"))
            keys.setdefault(item["key"], index)
            # Fields are found by title at run time, and Workbooks titles compare without case.
            folded = item["title"].casefold()
            if folded in titles:
                problems.append(doc.at(path + ("title",), f"the title '{item['title']}' is already used by "
                                       f"custom_fields.{kind}[{titles[folded]}]"))
            titles.setdefault(folded, index)
        for needed in REQUIRED_FIELD_KEYS:
            if needed not in keys:
                problems.append(doc.at(("custom_fields", kind), f"the plugin needs a field with key '{needed}'"))

    granted: dict[str, set[str]] = {}
    for scope in data["oauth"]["scopes"]:
        resource, level = scope.split(".", 1)
        granted.setdefault(resource, set()).update({"read", "write", "delete"} if level == "all" else {level})
    for resource, levels in REQUIRED_SCOPES.items():
        missing = levels - granted.get(resource, set())
        if missing:
            wanted = f"{resource}.all" if len(levels) > 1 else f"{resource}.{next(iter(levels))}"
            problems.append(doc.at(("oauth", "scopes"), f"the sync needs {resource} "
                                   f"{' and '.join(sorted(missing))} access: add {wanted}"))

    if root is not None:
        for name, script in scripts.items():
            if not (root / script["file"]).is_file():
                problems.append(doc.at(("scripts", name, "file"), f"the file {script['file']} does not exist"))
    return problems
