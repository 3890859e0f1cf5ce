"""The consultant-edited YAML mapping: load, validate, bind, map.

    mapping = load_mapping("mappings/default.yaml")          # InvalidMapping lists every problem
    person = mapping.objects["person"].bind({"Tier": "cf_person_tier"})
    person.source_columns                                    # what to _select_columns[]
    attributes = person.map(record)                          # RecordMappingError for a bad value
    person.match_value(attributes)                           # the duplicate-detection key

Validation runs in three passes and reports everything it finds, each problem as
`FILE:LINE:COL: what is wrong — how to fix it`:
  1. YAML: syntax, tabs, duplicate keys (plugin.yamldoc: positions come from `yaml.compose`;
     `safe_load` forgets them and silently keeps the last of two equal keys);
  2. the JSON Schema in mappings/mapping.schema.json (draft 2020-12), errors put in plain words;
  3. meaning: targets exist and are writable (plugin.catalogue), types fit, transforms fit their
     input, one match key and it is mapped, no target written twice, placeholders and sources
     name Workbooks columns (checked against Workbooks when its field list is given).
Everything here is pure: no network, no clock.
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

import jsonschema

from . import catalogue
from . import transforms as tf
from . import yamldoc
from .errors import InvalidMapping
from .kinds import in_reading_order
from .yamldoc import ERROR, WARNING, Problem

ROOT = Path(__file__).resolve().parent.parent
#: The bundle's folder of mappings: the only place the run's `mapping` parameter may name.
MAPPINGS_DIR = ROOT / "mappings"
SCHEMA_PATH = ROOT / "mappings" / "mapping.schema.json"
DEFAULT_MAPPING_PATH = ROOT / "mappings" / "default.yaml"

#: The sections the plugin syncs, and the Outreach object each one must target (plugin/kinds.py).
ACTIVE_OBJECTS = {k.name: k.outreach_type for k in in_reading_order()}
#: Allowed match keys per Outreach object; the first is the default.
MATCH_KEYS = {k.outreach_type: k.match_keys for k in in_reading_order()}

SEND_DIRECTIONS = ("send", "both")
RECEIVE_DIRECTIONS = ("receive", "both")
# Outreach's opt-out attributes → the one value a mapping may send them; Workbooks' No Email /
# No Call (workbooks-api.md §5.2), which only the receive half's opt-out rule writes.
OPT_OUT_TARGETS = {"optedOut": True, "emailOptedOut": True, "callOptedOut": True,
                   "emailsOptStatus": "opted_out", "callsOptStatus": "opted_out"}
OPT_OUT_COLUMNS = frozenset({"no_email_soliciting", "no_phone_soliciting"})
CONFLICT_RULES = ("workbooks_wins", "outreach_wins")
#: Forward transforms whose effect the way back need not undo: the Outreach value can go into the
#: Workbooks field as it is (text stays text, a number a number, true/false true/false). Any
#: other step (to_list, split, join, template, value_map, date, datetime, domain) loses or
#: reshapes something, so a receiving field with one needs its own `receive_transforms`.
REVERSIBLE = frozenset({"trim", "lower", "upper", "truncate", "max_length", "boolean", "number"})


# --- problems -----------------------------------------------------------------------------------

class RecordMappingError(ValueError):
    """A record whose value cannot be mapped (e.g. "abc" into a number). `field` names the
    Workbooks field, `target` the Outreach attribute, `reason` why; `errors` holds every failing
    field of the record as (field, target, reason), the first of which is also on the object."""

    def __init__(self, field: str, reason: str, target: str | None = None,
                 errors: list[tuple[str, str | None, str]] | None = None) -> None:
        self.field, self.reason, self.target = field, reason, target
        self.errors = errors or [(field, target, reason)]
        super().__init__("; ".join(_describe_failure(*e) for e in self.errors))


def _describe_failure(field_name: str, target: str | None, reason: str) -> str:
    arrow = f" → {target}" if target else ""
    return f"{field_name}{arrow}: {reason}"


def did_you_mean(word: Any, candidates: Iterable[str]) -> str | None:
    """The closest candidate: a case-insensitive equal first (`linkedinurl`), then difflib."""
    if not isinstance(word, str):
        return None
    candidates = [c for c in candidates if isinstance(c, str)]
    folded = {c.casefold(): c for c in candidates}
    if word.casefold() in folded and folded[word.casefold()] != word:
        return folded[word.casefold()]
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
        close = [folded[lowered[0]]] if lowered else []
    return close[0] if close and close[0] != word else None


def _suggest(word: Any, candidates: Iterable[str], otherwise: str = "") -> str:
    near = did_you_mean(word, candidates)
    return f"did you mean `{near}`?" if near else otherwise


# --- pass 1: YAML with positions (plugin.yamldoc) -----------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"


class _Document(yamldoc.Document):
    """A mapping file's YAML, read with yamldoc's defaults: keys as written, tabs named, PyYAML's
    complaints in plain words."""

    EMPTY = ("the mapping file is empty", "start with `version: 1` and an `objects:` section")


# --- pass 2: the JSON Schema, in plain words ----------------------------------------------------

_FIELD_KEYS = ("source", "value", "template", "target", "direction", "conflict", "skip_empty", "transforms",
               "receive_transforms", "note")


def _where(path: tuple) -> str:
    """A readable name for what sits at `path`: the nearest key, e.g. `target`."""
    for part in reversed(path):
        if isinstance(part, str):
            return f"`{part}`"
    return "this item"


class _Schema(yamldoc.Schema):
    TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number",
                  "boolean": "true or false", "object": "a block of `key: value` lines",
                  "array": "a list", "null": "empty"}
    VALUE_WORDS = {"bool": "true/false (`{yaml}`)", "null": "empty", "object": "a block of `key: value` lines",
                   "array": "a list", "number": "the number `{value}`", "string": "the text `{value}`",
                   "other": "a {type} (`{value}`)"}       # other: e.g. a date YAML read from 2024-01-01
    KEY_NAME = "`{key}`"

    def explain_value(self, doc: yamldoc.Document, failure: yamldoc.Failure) -> Iterator[Problem]:
        path, kind, instance, error = failure.path, failure.kind, failure.instance, failure.error
        if kind == "oneOf" and all(set(s) == {"required"} for s in error.validator_value):
            options = [s["required"][0] for s in error.validator_value]
            present = [k for k in options if isinstance(instance, dict) and k in instance]
            listed = ", ".join(f"`{o}`" for o in options)
            if present:
                yield doc.problem(path + (present[1],), f"this field has both `{present[0]}` and `{present[1]}`",
                                  f"keep only one of {listed}", key=True)
            else:
                yield doc.problem(path, "this field has no `source`, `value` or `template`",
                                  "add `source:` with the Workbooks field to send (or `value:` for a "
                                  "constant, `template:` to combine fields)")
        elif kind == "required":
            for name in error.validator_value:
                if not isinstance(instance, dict) or name in instance:
                    continue
                if path == ("objects",) and did_you_mean(name, instance):
                    continue                       # the section is there, misspelt: said below
                yield _missing(doc, path, name)
        elif kind == "additionalProperties":
            allowed = list(failure.sub.get("properties", {}))
            for name in instance:
                if name in allowed:
                    continue
                yield _unknown_key(doc, path, name, allowed, in_item=_in_transform_item(path))
        elif kind == "type":
            yield _wrong_type(doc, path, error, failure.message)
        elif kind == "enum" or kind == "const":
            yield _bad_choice(doc, path, error, failure.message, failure.hint)
        elif kind == "minItems":
            yield doc.problem(path, f"{_where(path)} is empty", "add at least one item (`- …`)")
        elif kind == "minProperties":
            if _in_transform_item(path):
                yield doc.problem(path, "this transform is empty", "write a transform such as `- trim`")
            else:
                yield doc.problem(path, f"{_where(path)} is empty", "add at least one `key: value` line")
        elif kind == "minLength":
            yield doc.problem(path, f"{_where(path)} is empty", "write a value, or remove the line")
        elif kind in ("minimum", "exclusiveMinimum"):
            yield doc.problem(path, f"{_where(path)} must be at least {error.validator_value}, not {instance}",
                              "give a positive number, or no number to use the Outreach limit")
        elif kind == "dependentRequired":
            yield doc.problem(path + ("default",), "`default` only works together with `value_map`",
                              "put `default:` in the same list item as `value_map:`", key=True)
        else:
            yield from super().explain_value(doc, failure)   # pattern, and the schema's own words


_SCHEMA = _Schema(SCHEMA_PATH)


def _in_transform_item(path: tuple) -> bool:
    return len(path) >= 2 and path[-2] in ("transforms", "receive_transforms") and isinstance(path[-1], int)


def _missing(doc: _Document, path: tuple, name: str) -> Problem:
    if name == "target":
        return doc.problem(path, "this field has no `target`",
                           "add `target:` with the Outreach attribute to write, e.g. `target: firstName`")
    if name == "fields":
        return doc.problem(path, f"{_where(path)} has no `fields`",
                           "add `fields:` with a list of `- source: … target: …` items", key=True)
    if name in ACTIVE_OBJECTS:
        return doc.problem(path, f"there is no `{name}` section",
                           f"add `{name}:` under `objects:` with `target: {ACTIVE_OBJECTS[name]}`",
                           key=True)
    if name == "version":
        return doc.problem((), "the file has no `version`", "add `version: 1` as the first line")
    if name == "custom_field":
        return doc.problem(path, "this source has no `custom_field`",
                           'write `source: {custom_field: "Title"}`')
    return doc.problem(path, f"`{name}` is missing", f"add `{name}:`", key=True)


def _unknown_key(doc: _Document, path: tuple, name: str, allowed: list[str], *, in_item: bool) -> Problem:
    where = path + (name,)
    if in_item:
        near = did_you_mean(name, list(tf.SPECS) + ["default"])
        return doc.problem(where, f"unknown transform `{name}`",
                           f"did you mean `{near}`?" if near else
                           "use one of " + ", ".join(tf.SPECS), key=True)
    if path == () and name in ACTIVE_OBJECTS:
        return doc.problem(where, f"`{name}` is not a top-level key",
                           "indent it under `objects:`", key=True)
    if len(path) == 4 and path[2] == "fields" and name not in _FIELD_KEYS:
        # `firstName: person_first_name` style: the consultant wrote the pair as one key.
        return doc.problem(where, f"unknown key `{name}` in a field",
                           _suggest(name, allowed, "a field is written `- source: <Workbooks field>` "
                                    "with `target: <Outreach attribute>` below it"), key=True)
    return doc.problem(where, f"unknown key `{name}`",
                       _suggest(name, allowed, "allowed here: " + ", ".join(allowed)), key=True)


def _wrong_type(doc: _Document, path: tuple, error: jsonschema.ValidationError,
                custom: str | None) -> Problem:
    expected = error.validator_value
    expected = [expected] if isinstance(expected, str) else list(expected)
    instance = error.instance
    if expected == ["null"] and _in_transform_item(path[:-1]):
        name = path[-1]
        return doc.problem(path, f"`{name}` takes no setting", f"write `- {name}` on its own")
    if custom:
        message, _, hint = custom.partition(" — ")
        return doc.problem(path, message, hint)
    words = _or([_Schema.TYPE_WORDS.get(t, t) for t in expected if t != "null"])
    what = f"{_where(path)} must be {words}, not {_SCHEMA.describe(instance)}"
    if "string" in expected and not isinstance(instance, (dict, list)):
        hint = f'put it in quotes: `"{yamldoc.excerpt(_yaml_text(instance))}"`' if instance is not None \
            else "write a value after the `:`"
    elif isinstance(instance, list) and "array" not in expected:
        hint = "write a single value, not a list"
    elif "array" in expected and isinstance(instance, str):
        hint = f"write it as a list: `[{instance}]`, or one `- {instance}` line per item"
    elif "array" in expected:
        hint = "write a list: one `- item` line per item"
    elif "object" in expected:
        hint = "write `key: value` lines indented under it"
    elif "boolean" in expected:
        hint = "write `true` or `false`"
    elif "integer" in expected or "number" in expected:
        hint = "write a number without quotes"
    else:
        hint = ""
    return doc.problem(path, what, hint)


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bad_choice(doc: _Document, path: tuple, error: jsonschema.ValidationError, custom: str | None,
                hint: str) -> Problem:
    instance = error.instance
    choices = error.validator_value if error.validator == "enum" else [error.validator_value]
    if _in_transform_item(path) and isinstance(instance, str):
        spec = tf.SPECS.get(instance)
        if spec is not None:            # `- split` without its setting
            return doc.problem(path, f"`{instance}` needs a setting", f"write `- {spec.example}`")
        return doc.problem(path, f"unknown transform `{instance}`",
                           _suggest(instance, tf.SPECS, "use one of " + ", ".join(tf.SPECS)))
    if path == ("version",):
        if isinstance(instance, str):
            return doc.problem(path, "`version` must be the number 1, not text", "remove the quotes: `version: 1`")
        return doc.problem(path, f"version {instance} is not supported: {custom}", hint)
    near = did_you_mean(str(instance), [str(c) for c in choices])
    what = f"{_where(path)} cannot be `{yamldoc.excerpt(instance)}`" + (f": {custom}" if custom else "")
    if near:
        return doc.problem(path, what, f"did you mean `{near}`?")
    return doc.problem(path, what, hint or ("use one of " + ", ".join(f"`{c}`" for c in choices)))


# --- the compiled model -------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldSpec:
    """One mapped field, ready to run."""
    target: str
    attribute: catalogue.Attribute
    direction: str
    skip_empty: bool
    steps: tuple[tf.Step, ...]
    source: tf.Ref | None = None
    value: Any = None
    template: tf.Template | None = None
    line: int = 0
    col: int = 0
    ref_marks: tuple = ()      # ((Ref, line, col), ...) for every custom-field title it uses
    conflict: str = "workbooks_wins"             # direction both: who wins when both sides changed
    receive_steps: tuple[tf.Step, ...] | None = None   # None: the Outreach value as it is

    @property
    def sends(self) -> bool:
        return self.direction in SEND_DIRECTIONS

    @property
    def receives(self) -> bool:
        return self.direction in RECEIVE_DIRECTIONS

    @property
    def refs(self) -> list[tf.Ref]:
        refs = [self.source] if self.source else []
        if self.template:
            refs += self.template.refs
        for step in self.steps:
            if step.template:
                refs += step.template.refs
        return refs

    def describe(self, resolve) -> str:
        """The Workbooks side, for a per-record error message."""
        if self.source:
            return self.source.describe(resolve(self.source) if self.source.title else None)
        if self.template:
            return f'template "{self.template.text}"'
        return "constant value"


@dataclass(frozen=True)
class ObjectMapping:
    name: str                      # "person" | "organisation"
    target: str                    # "prospect" | "account"
    match_key: str
    fields: tuple[FieldSpec, ...]
    file: str = ""

    @property
    def custom_field_titles(self) -> set[str]:
        return {ref.title for f in self.fields for ref in f.refs if ref.title is not None}

    @property
    def source_columns(self) -> list[str]:
        """Columns named directly; columns of custom fields named by title come from bind()."""
        return _unique(ref.column for f in self.fields for ref in f.refs if ref.column)

    def bind(self, title_to_column: dict[str, str]) -> "BoundMapping":
        """Resolve custom fields named by title. Titles match exactly, else ignoring case and
        extra spaces; an unknown or ambiguous title raises InvalidMapping at its line."""
        resolved: dict[str, str] = {}
        problems: list[Problem] = []
        for f in self.fields:
            for ref, line, col in f.ref_marks:
                column, message, hint = _resolve_title(ref.title, title_to_column, self.name)
                if column is None:
                    problems.append(Problem(self.file, line, col, message, hint))
                else:
                    resolved[ref.title] = column
        if problems:
            raise InvalidMapping([str(p) for p in _unique_problems(problems)])
        return BoundMapping(self, resolved)


def _resolve_title(title: str, table: dict[str, str], object_name: str) -> tuple[str | None, str, str]:
    if title in table:
        return table[title], "", ""
    key = _fold(title)
    matches = [t for t in table if _fold(t) == key]
    if len(matches) == 1:
        return table[matches[0]], "", ""
    if len(matches) > 1:
        return None, (f'more than one {object_name} custom field is titled like "{title}": '
                      + ", ".join(f'"{m}"' for m in matches)), "use the exact title, or the column name as `source`"
    near = did_you_mean(title, table)
    return None, f'there is no {object_name} custom field titled "{title}" in Workbooks', (
        f'did you mean "{near}"?' if near else "check the title in Workbooks (Configuration > Custom Fields)")


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _unique_problems(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


class BoundMapping:
    """An ObjectMapping whose custom-field titles are resolved to Workbooks columns."""

    def __init__(self, mapping: ObjectMapping, title_columns: dict[str, str]) -> None:
        self.mapping = mapping
        self.title_columns = dict(title_columns)

    @property
    def target(self) -> str:
        return self.mapping.target

    @property
    def match_key(self) -> str:
        return self.mapping.match_key

    def resolve(self, ref: tf.Ref) -> str:
        return self.title_columns[ref.title] if ref.title is not None else str(ref.column)

    @property
    def source_columns(self) -> list[str]:
        return _unique(self.resolve(ref) for f in self.mapping.fields for ref in f.refs)

    def map(self, record: dict) -> dict[str, Any]:
        """Outreach attributes for one Workbooks record (send/both fields, in file order).
        A `skip_empty` field whose value is empty is left out, so Outreach keeps its value;
        any other empty field is sent as null (a list as []), clearing it in Outreach."""
        attributes, failures = self.map_partial(record)
        if failures:
            first = failures[0]
            raise RecordMappingError(first[0], first[2], first[1], failures)
        return attributes

    def map_partial(self, record: dict) -> tuple[dict[str, Any], list[tuple[str, str | None, str]]]:
        """`map`, keeping going past a field that cannot be mapped: (the attributes that could be,
        [(Workbooks field, target, reason) of those that could not])."""
        attributes: dict[str, Any] = {}
        failures: list[tuple[str, str | None, str]] = []
        for spec in self.mapping.fields:
            if not spec.sends:
                continue
            ctx = tf.Context(record, self.resolve, spec.attribute)
            try:
                value = self._initial(spec, ctx)
                for step in spec.steps:
                    value = tf.apply(step, value, ctx)
                if spec.skip_empty and tf.is_empty(value):
                    continue
                attributes[spec.target] = tf.fit(value, spec.attribute)
            except tf.TransformError as exc:
                failures.append((spec.describe(self.resolve), spec.target, str(exc)))
        return attributes, failures

    # --- the way back (receive) ----------------------------------------------------------------------
    @property
    def receiving(self) -> list[FieldSpec]:
        """The fields that receive (direction receive or both), in file order."""
        return [spec for spec in self.mapping.fields if spec.receives]

    def column(self, spec: FieldSpec) -> str:
        """The Workbooks column a receiving field writes into."""
        return self.resolve(spec.source)

    def received(self, spec: FieldSpec, value: Any) -> Any:
        """The Workbooks value for an Outreach value, through the field's way back (raises
        tf.TransformError for a value that cannot be converted). Empty stays empty (None)."""
        ctx = tf.Context({}, self.resolve, None)
        for step in spec.receive_steps or ():
            value = tf.apply(step, value, ctx)
        if tf.is_empty(value):
            return None
        if isinstance(value, list):
            raise tf.TransformError(f"a list of {len(value)} values cannot go into one Workbooks field")
        return value

    def _initial(self, spec: FieldSpec, ctx: tf.Context) -> Any:
        if spec.source is not None:
            return copy.deepcopy(ctx.lookup(spec.source))
        if spec.template is not None:
            return tf.render(spec.template, ctx)
        return copy.deepcopy(spec.value)

    def source_of(self, attribute: str) -> str | None:
        """The Workbooks side of the field that sends `attribute` (for messages such as
        "Outreach rejected title (from Workbooks person_job_title)")."""
        for spec in self.mapping.fields:
            if spec.sends and spec.target == attribute:
                return spec.describe(self.resolve)
        return None

    def skipped_when_empty(self, attributes: dict[str, Any]) -> list[str]:
        """The `skip_empty` targets that `map()` left out of `attributes` (for the preview)."""
        return [s.target for s in self.mapping.fields
                if s.sends and s.skip_empty and s.target not in attributes]

    def match_value(self, attributes: dict[str, Any]) -> str | None:
        """The duplicate-detection key of mapped attributes: the `match_key` attribute (None when
        empty, and for `customId` unless the caller added its own marker to the attributes). A
        list key (a prospect's `emails`) gives its first address, lower-cased: Outreach tells
        prospects apart by email whatever its case (outreach-api.md R2.3)."""
        value = attributes.get(self.mapping.match_key)
        attr = catalogue.attribute(self.mapping.target, self.mapping.match_key)
        if attr is not None and attr.type == catalogue.LIST:
            values = value if isinstance(value, list) else [value]
            first = next((v for v in values if not tf.is_empty(v)), None)
            return None if first is None else str(first).strip().lower()
        return None if tf.is_empty(value) else tf.as_text(value).strip()


@dataclass(frozen=True)
class ReceiveOptions:
    create_people: bool = False     # Prospects created in Outreach become People


@dataclass
class Mapping:
    path: str
    version: int
    objects: dict[str, ObjectMapping]
    warnings: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)   # sections the plugin does not sync yet
    receive: ReceiveOptions = field(default_factory=ReceiveOptions)


# --- pass 3: what the file means ----------------------------------------------------------------

class _Compiler:
    """Checks what the schema cannot say and builds the model. Written to survive a file the
    schema already rejected: anything of the wrong shape is skipped (the schema said why)."""

    def __init__(self, doc: _Document, workbooks_fields: dict[str, set[str]] | None) -> None:
        self.doc = doc
        self.workbooks_fields = workbooks_fields
        self.objects: dict[str, ObjectMapping] = {}
        self.ignored: list[str] = []
        self.dropped: list[tuple] = []     # fields left out of the model because they are wrong

    def run(self) -> None:
        data = self.doc.data
        objects = data.get("objects") if isinstance(data, dict) else None
        if not isinstance(objects, dict):
            return
        for name, section in objects.items():
            if isinstance(section, dict):
                self._section(name, section, ("objects", name))

    def _section(self, name: str, section: dict, path: tuple) -> None:
        target = section.get("target")
        if name not in ACTIVE_OBJECTS:
            near = did_you_mean(name, ACTIVE_OBJECTS)
            if near:
                self.doc.add(path, f"unknown section `{name}`", f"did you mean `{near}`?", key=True)
            elif target in MATCH_KEYS:
                owner = next(k for k, v in ACTIVE_OBJECTS.items() if v == target)
                self.doc.add(path, f"section `{name}` sends to {target}s, which only `{owner}` does",
                             f"rename the section to `{owner}`, or merge its fields into it", key=True)
            else:
                self.doc.add(path, f"section `{name}` is not synced yet: the plugin ignores it",
                             "nothing to do; it will be used when the plugin syncs "
                             f"{target or name} records", key=True, severity=WARNING)
                self.ignored.append(name)
            return
        if target != ACTIVE_OBJECTS[name]:
            return                                  # the schema reported it
        match_key = section.get("match_key", MATCH_KEYS[target][0])
        fields_raw = section.get("fields")
        if not isinstance(fields_raw, list) or not fields_raw:
            return                                  # the schema reported it
        specs: list[FieldSpec] = []
        for index, raw in enumerate(fields_raw):
            if isinstance(raw, dict):
                spec = _FieldCompiler(self, name, target, raw, path + ("fields", index)).compile()
                if spec is not None:
                    specs.append(spec)
                else:
                    self.dropped.append(path + ("fields", index))
        self._check_targets(fields_raw, path)
        if isinstance(match_key, str) and match_key in MATCH_KEYS[target]:
            self._check_match_key(section, fields_raw, path, target, match_key)
        self.objects[name] = ObjectMapping(name, target, match_key, tuple(specs), self.doc.file)

    def _check_targets(self, fields_raw: list, path: tuple) -> None:
        """No two send fields write the same attribute: the second would silently win."""
        first: dict[str, int] = {}
        for index, raw in enumerate(fields_raw):
            if not isinstance(raw, dict) or raw.get("direction", "send") not in SEND_DIRECTIONS:
                continue
            name = raw.get("target")
            if not isinstance(name, str):
                continue
            if name in first:
                line = self.doc.mark(path + ("fields", first[name], "target")).line + 1
                self.doc.add(path + ("fields", index, "target"),
                             f"`{name}` is already written by the field at line {line}",
                             "remove one of them, or combine both sources with a `template`")
            else:
                first[name] = index
        into: dict[str, int] = {}
        for index, raw in enumerate(fields_raw):
            if not isinstance(raw, dict) or raw.get("direction", "send") not in RECEIVE_DIRECTIONS:
                continue
            column = json_key(raw.get("source"))
            if column is None:
                continue
            if column in into:
                line = self.doc.mark(path + ("fields", into[column], "source")).line + 1
                self.doc.add(path + ("fields", index, "source"),
                             f"the field at line {line} already receives into this Workbooks field",
                             "receive each Workbooks field from one Outreach attribute only")
            else:
                into[column] = index

    def _check_match_key(self, section: dict, fields_raw: list, path: tuple, target: str,
                         match_key: str) -> None:
        # A malformed target (a list, a number) is reported by the schema; here it only must not crash.
        sent = {raw.get("target") for raw in fields_raw
                if isinstance(raw, dict) and raw.get("direction", "send") in SEND_DIRECTIONS
                and isinstance(raw.get("target"), str)}
        where = path + ("match_key",) if "match_key" in section else path
        if match_key != "customId" and match_key not in sent:
            self.doc.add(where, f"no field sends `{match_key}`, the match key (the plugin looks an existing "
                         f"{target} up by it before creating one, and creates none without it)",
                         f"add a field with `target: {match_key}`", key="match_key" not in section)
        for name, why in catalogue.RECOMMENDED.get(target, {}).items():
            if name not in sent:
                self.doc.add(path, f"no field sends the {target} `{name}`",
                             f"add a field with `target: {name}` ({why})", key=True, severity=WARNING)


class _FieldCompiler:
    def __init__(self, parent: _Compiler, object_name: str, target_object: str, raw: dict,
                 path: tuple) -> None:
        self.parent, self.doc = parent, parent.doc
        self.object_name, self.target_object = object_name, target_object
        self.raw, self.path = raw, path
        self.ok = True
        self.limit_warned = False          # a `truncate`/`max_length` beyond the limit was said
        self.ref_marks: list[tuple[tf.Ref, int, int]] = []

    def error(self, sub: tuple, message: str, hint: str = "", *, key: bool = False) -> None:
        self.ok = False
        self.doc.add(self.path + sub, message, hint, key=key)

    def warn(self, sub: tuple, message: str, hint: str = "", *, key: bool = False) -> None:
        self.doc.add(self.path + sub, message, hint, key=key, severity=WARNING)

    def compile(self) -> FieldSpec | None:
        raw = self.raw
        origins = [k for k in ("source", "value", "template") if k in raw]
        direction = raw.get("direction", "send")
        skip_empty = raw.get("skip_empty", False)
        attr = self._attribute(raw.get("target"), receive_only=direction == "receive")
        source = self._source(raw["source"]) if "source" in raw else None
        template = self._template(raw["template"], ("template",), allow_value=False) \
            if isinstance(raw.get("template"), str) else None
        steps = self._steps(raw.get("transforms", []), attr)
        self._direction(direction, origins)
        self._opt_out_rules(direction, source, steps, attr)
        receive_steps = self._receive_steps(raw, direction, steps, attr)
        if len(origins) != 1 or attr is None or steps is None:
            return None
        if direction not in ("send", "receive", "both") or not isinstance(skip_empty, bool):
            return None
        start = (tf.ANY if "source" in raw else tf.TEXT if "template" in raw
                 else tf.value_kind(raw.get("value")))
        if start is None:
            return None
        if direction != "receive":          # a receive-only field is never sent: its way out is moot
            self._check_flow(start, steps, attr)
        if "value" not in raw and direction in SEND_DIRECTIONS:   # a constant is checked whole below
            self._check_length(steps, attr)
        value = raw.get("value")
        mark = self.doc.mark(self.path)
        spec = FieldSpec(target=attr.name, attribute=attr, direction=direction, skip_empty=skip_empty,
                         steps=tuple(steps), source=source, value=value, template=template,
                         line=mark.line + 1 if mark else 0, col=mark.column + 1 if mark else 0,
                         ref_marks=tuple(self.ref_marks),
                         conflict=raw.get("conflict", "workbooks_wins") if direction == "both" else "workbooks_wins",
                         receive_steps=receive_steps)
        if "value" in raw and self.ok:
            self._try_constant(spec)
        return spec if self.ok else None

    # target ---------------------------------------------------------------------------------
    def _attribute(self, name: Any, *, receive_only: bool = False) -> catalogue.Attribute | None:
        if not isinstance(name, str) or not name:
            return None
        obj = self.target_object
        reserved = catalogue.RESERVED.get(obj, {})
        if name in reserved:
            self.error(("target",), f"`{name}` is reserved: {reserved[name]} (crash recovery "
                       "depends on it)", "choose another attribute, e.g. a `customN` field")
            return None
        attr = catalogue.attribute(obj, name)
        if attr is None:
            m = re.fullmatch(r"custom(\d+)", name, re.IGNORECASE)
            if m and name.startswith("custom"):
                self.error(("target",), f"`{name}` does not exist: Outreach has custom1 to "
                           f"custom{catalogue.CUSTOM_FIELD_COUNT}",
                           f"use a number from 1 to {catalogue.CUSTOM_FIELD_COUNT}")
            else:
                self.error(("target",), f"`{name}` is not a {obj} attribute in Outreach",
                           _suggest(name, catalogue.writable_names(obj),
                                    f"see the list of {obj} attributes in docs/mappings.md"))
            return None
        if not attr.writable and not receive_only:   # read-only attributes can still be received
            note = f" ({attr.note})" if attr.note else ""
            self.error(("target",), f"`{name}` is read-only in Outreach{note}",
                       "remove this field, or choose a writable attribute")
            return None
        return attr

    # where the value comes from ---------------------------------------------------------------
    def _source(self, source: Any) -> tf.Ref | None:
        if isinstance(source, str):
            if not tf.COLUMN_RE.match(source):
                return None                          # the schema's pattern reported it
            if source.count("[") != source.count("]"):
                self.error(("source",), f"the brackets in `{source}` do not pair up",
                           "write nested fields like `main_location[email]`")
                return None
            self._check_column(source, ("source",))
            return tf.Ref(column=source)
        if isinstance(source, dict) and isinstance(source.get("custom_field"), str) \
                and source["custom_field"].strip():
            ref = tf.Ref(title=source["custom_field"].strip())
            self._remember_title(ref, ("source", "custom_field"))
            return ref
        return None

    def _remember_title(self, ref: tf.Ref, sub: tuple) -> None:
        mark = self.doc.mark(self.path + sub)
        self.ref_marks.append((ref, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1))

    def _check_column(self, column: str, sub: tuple) -> None:
        known = (self.parent.workbooks_fields or {}).get(self.object_name)
        if known is None or _column_known(column, known):
            return
        self.error(sub, f"Workbooks has no {self.object_name} field `{column}`",
                   _suggest(column, known, "check the API column name in Workbooks "
                                           "(for a custom field, use `{custom_field: \"Title\"}`)"))

    def _template(self, text: str, sub: tuple, *, allow_value: bool) -> tf.Template | None:
        try:
            template = tf.parse_template(text, allow_value=allow_value)
        except tf.TemplateSyntaxError as exc:
            self.error(sub, f"template {text!r}: {exc.message}", exc.hint)
            return None
        for ref in template.refs:
            if ref.column:
                self._check_column(ref.column, sub)
            else:
                self._remember_title(ref, sub)
        return template

    def _direction(self, direction: Any, origins: list[str]) -> None:
        if "conflict" in self.raw and direction != "both":
            self.error(("conflict",), "`conflict` only applies to a field with `direction: both`",
                       "remove `conflict`, or write `direction: both`", key=True)
        if "receive_transforms" in self.raw and direction not in RECEIVE_DIRECTIONS:
            self.error(("receive_transforms",), "`receive_transforms` only applies to a field that receives "
                       "(`direction: receive` or `both`)", "remove it, or set the direction", key=True)
        if direction not in RECEIVE_DIRECTIONS:
            return
        if origins and origins != ["source"]:
            self.error(("direction",), f"a `{direction}` field needs a `source`: the receive side "
                       f"writes into it, and cannot write into a `{origins[0]}`",
                       "use `direction: send`, or take the value from a `source`")

    def _opt_out_rules(self, direction: Any, source: tf.Ref | None, steps: list[tf.Step] | None,
                       attr: catalogue.Attribute | None) -> None:
        """An opt-out is a ratchet both ways (issue 13): the receive half ticks No Email / No Call
        itself and never unticks them, and nothing from Workbooks may undo an opt-out made in
        Outreach. So No Email / No Call never receive through a mapping, and a field sent to an
        Outreach opt-out can only ever say "opted out"."""
        if direction in RECEIVE_DIRECTIONS and (
                (source is not None and source.column in OPT_OUT_COLUMNS) or (attr and attr.name in OPT_OUT_TARGETS)):
            self.error(("direction",), "opt-outs come back from Outreach on their own: the plugin ticks No Email / "
                       "No Call when a prospect opts out, and never unticks them, so this field cannot receive",
                       "remove `direction` (it is `send`), and keep the opt-out transforms of the default mapping")
            return
        if direction not in SEND_DIRECTIONS or attr is None or attr.name not in OPT_OUT_TARGETS:
            return
        if "value" in self.raw:
            only = self.raw.get("value") in (None, OPT_OUT_TARGETS[attr.name])
        else:
            last = (steps or [None])[-1]
            only = last is not None and last.name == "value_map" and last.has_option("default") \
                and last.option("default") is None \
                and all(v is None or v == OPT_OUT_TARGETS[attr.name] for v in tf._value_map_outputs(last)) \
                and all(type(v) is type(OPT_OUT_TARGETS[attr.name]) for v in (last.arg or {}).values())
        if not only:
            self.error(("transforms",) if "value" not in self.raw else ("value",),
                       f"`{attr.name}` may only ever be set from Workbooks, never cleared: an opt-out made in "
                       "Outreach must not be undone by a Workbooks record that does not say so",
                       f"end the transforms with `- value_map: {{\"true\": {_yaml_text(OPT_OUT_TARGETS[attr.name])}}}` "
                       "and `default: null`, as the default mapping does")

    def _receive_steps(self, raw: dict, direction: Any, steps: list[tf.Step] | None,
                       attr: catalogue.Attribute | None) -> tuple[tf.Step, ...] | None:
        """The way back from Outreach: `receive_transforms` when given, else the Outreach value as
        it is, which is only right when every forward step leaves nothing to undo (REVERSIBLE)."""
        if direction not in RECEIVE_DIRECTIONS or attr is None:
            return None
        if "receive_transforms" in raw:
            back = self._steps(raw["receive_transforms"], None, key="receive_transforms")
            if back is None:
                return None
        else:
            back = []
            for index, step in enumerate(steps or []):
                if step.name not in REVERSIBLE:
                    self.error(("transforms", index), f"`{step.name}` cannot be undone on the way back from "
                               f"Outreach, so this `{direction}` field does not know what to write into "
                               "Workbooks", _receive_hint(attr))
                    return None
        kind = _OUTREACH_KINDS.get(attr.type, tf.ANY)
        sub = ("receive_transforms",) if "receive_transforms" in raw else ("target",)
        previous = None
        for index, step in enumerate(back):
            problem = tf.step_problem(step, kind, previous)
            if problem:
                self.error(("receive_transforms", index), *problem)
                return None
            if step.name == "template" or (step.name == "truncate" and step.arg is None):
                self.error(("receive_transforms", index), f"`{step.name}` needs "
                           + ("a fixed text here" if step.name == "template" else "a length here: `truncate: 255`"),
                           "on the way back there is no Outreach limit or record to take it from")
                return None
            kind = tf.SPECS[step.name].output(kind, step)
            previous = step
        if kind == tf.LIST:
            self.error(sub, f"`{attr.name}` is a list in Outreach, and a Workbooks field takes one value",
                       "add `receive_transforms: [join]` (or `[join: \"; \"]`) to turn the list into text")
            return None
        return tuple(back)

    # transforms -----------------------------------------------------------------------------
    def _steps(self, items: Any, attr: catalogue.Attribute | None,
               key: str = "transforms") -> list[tf.Step] | None:
        if not isinstance(items, list):
            return None
        steps: list[tf.Step] = []
        for index, item in enumerate(items):
            step = self._step(item, (key, index), attr)
            if step is None:
                self.ok = False
            else:
                steps.append(step)
        return steps if self.ok else None

    def _step(self, item: Any, sub: tuple, attr: catalogue.Attribute | None) -> tf.Step | None:
        if isinstance(item, str):
            spec = tf.SPECS.get(item)
            if spec is None or spec.arg == "required":
                return None                          # the schema reported it
            return self._checked(tf.Step(item), sub, attr)
        if not isinstance(item, dict):
            return None
        names = [k for k in item if k in tf.SPECS]
        if len(names) > 1:
            self.error(sub + (names[1],), f"one list item holds two transforms (`{names[0]}` and "
                       f"`{names[1]}`)", f"start `{names[1]}` on its own line with `- `", key=True)
            return None
        if not names or any(k not in tf.SPECS and k not in tf.OPTION_KEYS for k in item):
            return None                              # the schema reported it
        name = names[0]
        spec = tf.SPECS[name]
        options = tuple((k, item[k]) for k in item if k in spec.options)
        if any(k in tf.OPTION_KEYS and k not in spec.options for k in item):
            return None                              # the schema reported it (dependentRequired)
        step = tf.Step(name, item[name], options)
        if name == "template" and isinstance(item[name], str):
            template = self._template(item[name], sub + (name,), allow_value=True)
            if template is None:
                return None
            step = tf.Step(name, item[name], options, template)
        return self._checked(step, sub, attr)

    def _checked(self, step: tf.Step, sub: tuple, attr: catalogue.Attribute | None) -> tf.Step | None:
        """Settings that need more than the schema: value_map keys, truncate limits, formats."""
        name, arg = step.name, step.arg
        if name == "value_map" and isinstance(arg, dict):
            for key in arg:
                tag = self.doc.key_tags.get(self.path + sub + (name, key))
                if tag and tag != _STR_TAG:
                    self.error(sub + (name, key), f"the key `{key}` is not text to YAML (it reads "
                               f"it as {_tag_word(tag)}), so it would never match a Workbooks value",
                               f'put it in quotes: `"{key}": …`', key=True)
            if not self.ok:
                return None
        if name in ("truncate", "max_length") and attr is not None:
            limit = attr.max_length
            if arg is None and not limit and attr.type == catalogue.STRING:
                self.error(sub, f"`{name}` has no Outreach limit to use: `{attr.name}` has none",
                           f"give the length: `{name}: 255`")
                return None
            if isinstance(arg, int) and limit and arg > limit:
                self.limit_warned = True
                self.warn(sub + (name,), f"`{name}: {arg}` is longer than Outreach's limit of "
                          f"{limit} for `{attr.name}`: longer values will be rejected",
                          f"write `{name}` without a number to hold values to the limit")
        if name in ("date", "datetime") and isinstance(arg, str) and "%" not in arg:
            self.error(sub + (name,), f"`{arg}` is not a date format",
                       'use strftime codes, e.g. `"%d/%m/%Y"`, or no setting for Workbooks dates')
            return None
        return step

    def _check_flow(self, kind: str, steps: list[tf.Step], attr: catalogue.Attribute) -> None:
        """Follow the value's kind through the steps: each must accept what the previous made,
        and the last must fit the target."""
        previous = None
        for index, step in enumerate(steps):
            problem = tf.step_problem(step, kind, previous)
            if problem:
                self.error(("transforms", index), *problem)
                return
            kind = tf.SPECS[step.name].output(kind, step)
            if step.name == "value_map":
                self._check_value_map(step, ("transforms", index), kind, attr)
            previous = step
        problem = tf.target_problem(kind, attr)
        if problem:
            self.error(("target",), *problem)

    def _check_length(self, steps: list[tf.Step], attr: catalogue.Attribute) -> None:
        """Warn when a value can outgrow the target's Outreach limit: Outreach would refuse the
        record (the run flags it with Outreach Sync Error instead of sending it)."""
        limit = attr.max_length
        if not self.ok or self.limit_warned or attr.type != catalogue.STRING or not limit:
            return
        bound = tf.length_bound(steps, attr)
        if bound is not None and bound <= limit:
            return
        self.warn(("target",), f"`{attr.name}` takes at most {limit} characters in Outreach, and this "
                  "field can send more: such a record would be flagged with Outreach Sync Error",
                  "end `transforms` with `truncate` to cut longer values, or with `max_length` to "
                  "flag them on purpose (web addresses, ids: a cut would spoil them)")

    def _check_value_map(self, step: tf.Step, sub: tuple, kind: str, attr: catalogue.Attribute) -> None:
        outputs = {tf.value_kind(v) for v in tf._value_map_outputs(step)} - {None}
        if kind == tf.LIST and outputs - {tf.TEXT}:
            self.error(sub, "a `value_map` on a list can only map to text",
                       "quote the values in the map")
        elif kind in (tf.BOOLEAN, tf.NUMBER) and not step.has_option("default"):
            self.warn(sub, f"values missing from this `value_map` pass through unchanged and will "
                      f"not fit `{attr.name}`", "add `default:` for everything else")
        elif kind == tf.ANY and attr.type == catalogue.STRING and outputs - {tf.TEXT}:
            self.warn(sub, "this `value_map` mixes text with numbers or true/false",
                      "quote every value, so Outreach gets text")

    def _try_constant(self, spec: FieldSpec) -> None:
        """A constant never changes: run it through its transforms now, not once per record."""
        try:
            BoundMapping(ObjectMapping("", self.target_object, "", (spec,)), {}).map({})
        except RecordMappingError as exc:
            self.error(("value",), f"the constant cannot be sent: {exc.reason}", "correct the value")
        except KeyError:
            pass                                     # uses a custom field title: checked at bind


_OUTREACH_KINDS = {catalogue.STRING: tf.TEXT, catalogue.LIST: tf.LIST, catalogue.INTEGER: tf.NUMBER,
                   catalogue.NUMBER: tf.NUMBER, catalogue.BOOLEAN: tf.BOOLEAN, catalogue.DATE: tf.DATE,
                   catalogue.DATETIME: tf.DATETIME}


def _receive_hint(attr: catalogue.Attribute) -> str:
    if attr.type == catalogue.LIST:
        return "add `receive_transforms: [join]`: the Outreach list comes back as one text, items joined by \", \""
    return ("add `receive_transforms:` with the steps from the Outreach value to the Workbooks field "
            "(`[]` to take it as it is), or use `direction: send`")


def json_key(source: Any) -> str | None:
    """A `source` as one comparable text (a column, or a custom field's folded title)."""
    if isinstance(source, str):
        return source
    if isinstance(source, dict) and isinstance(source.get("custom_field"), str):
        return "custom_field:" + _fold(source["custom_field"])
    return None


def _tag_word(tag: str) -> str:
    return {"tag:yaml.org,2002:bool": "true/false", "tag:yaml.org,2002:int": "a number",
            "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:null": "empty",
            "tag:yaml.org,2002:timestamp": "a date"}.get(tag, tag.rsplit(":", 1)[-1])


def _column_known(column: str, known: set[str]) -> bool:
    """`main_location[email]` is known if Workbooks lists it; when Workbooks lists only the
    association (`main_location`) and none of its sub-fields, the sub-field is given the benefit
    of the doubt."""
    if column in known:
        return True
    base = column.split("[", 1)[0]
    return "[" in column and base in known and not any(k.startswith(base + "[") for k in known)


# --- the interface ------------------------------------------------------------------------------

def _read(path: str | Path) -> tuple[str | None, Problem | None]:
    try:
        return yamldoc.read_text(path), None
    except FileNotFoundError:
        return None, Problem(str(path), 1, 1, "the mapping file does not exist", "check the path")
    except yamldoc.FileRefused as exc:
        return None, Problem(str(path), 1, 1, f"the mapping file {exc}",
                             "a mapping is a YAML text file of a few KB, such as mappings/default.yaml")
    except (OSError, UnicodeDecodeError) as exc:
        return None, Problem(str(path), 1, 1, f"the mapping file cannot be read ({exc})",
                             "save it as UTF-8 text")


def _analyse(path: str | Path, workbooks_fields: dict[str, set[str]] | None
             ) -> tuple[list[Problem], _Compiler | None]:
    text, problem = _read(path)
    if problem:
        return [problem], None
    return analyse_text(text or "", str(path), workbooks_fields=workbooks_fields)


def analyse_text(text: str, file: str = "<mapping>", *, workbooks_fields: dict[str, set[str]] | None = None
                 ) -> tuple[list[Problem], _Compiler | None]:
    doc = _Document.parse(text, file)
    compiler = None
    if doc.data is not None:
        doc.problems.extend(_SCHEMA.problems(doc))
        compiler = _Compiler(doc, workbooks_fields)
        compiler.run()
        if compiler.dropped and not any(p.is_error for p in doc.problems):
            # Never load a mapping that silently lacks a field: a check that skipped a field
            # without saying why is a bug here, but must still stop the sync.
            for path in compiler.dropped:
                doc.add(path, "this field could not be understood", "compare it with docs/mappings.md")
    problems = sorted(_unique_problems(doc.problems), key=lambda p: (p.line, p.col, p.severity != ERROR))
    return yamldoc.capped(problems), compiler


def bundled_mapping_path(value: Any, folder: Path | None = None) -> Path:
    """The file a run's `mapping` parameter names: a path inside the bundle's mappings/ folder
    (`mappings/acme.yaml` or `acme.yaml`), so the parameter cannot make the run read, and quote
    in its log, any other file of the server. InvalidMapping (exit 2: a person must correct the
    parameter) for an absolute path, `..`, or a link leading out of the folder. Whether the file
    is there and is a regular file, `load_mapping` says."""
    folder = MAPPINGS_DIR if folder is None else folder
    example = "name a file in the plugin's mappings/ folder, e.g. `mappings/acme.yaml`"
    text = value if isinstance(value, str) else ""
    shown = f"`{yamldoc.excerpt(value)}`"
    parts = PurePosixPath(text).parts
    if not text.strip():
        reason = "names no file"
    elif text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text):
        reason = f"{shown} is an absolute path: mappings are read only from the plugin's mappings/ folder"
    elif "\\" in text or "\0" in text:
        reason = f"{shown} holds a backslash or a NUL character: write folders with `/`"
    elif ".." in parts:
        reason = f"{shown} leads out of the mappings/ folder (`..`)"
    else:
        inner = parts[1:] if parts[0] == MAPPINGS_DIR.name else parts
        candidate = folder.joinpath(*inner) if inner else folder
        try:
            candidate.resolve().relative_to(folder.resolve())
        except ValueError:
            reason = f"{shown} is a link that leads out of the mappings/ folder"
        else:
            return candidate
    message = f"the `mapping` parameter {reason} — {example}"
    raise InvalidMapping([message], message)


def validate_mapping_file(path: str | Path, *, workbooks_fields: dict[str, set[str]] | None = None
                          ) -> list[Problem]:
    """Every problem of the file (errors and warnings), in file order. `workbooks_fields` maps a
    section name ("person", "organisation") to the Workbooks column names of that record type."""
    return _analyse(path, workbooks_fields)[0]


def load_mapping(path: str | Path, *, workbooks_fields: dict[str, set[str]] | None = None) -> Mapping:
    """The mapping, ready to bind; raises InvalidMapping listing every error. Warnings are on
    `Mapping.warnings` for the caller to log."""
    problems, compiler = _analyse(path, workbooks_fields)
    errors = [p for p in problems if p.is_error]
    if errors or compiler is None:
        raise InvalidMapping([str(p) for p in errors] or [f"{path}:1:1: the mapping is empty"])
    options = compiler.doc.data.get("receive") if isinstance(compiler.doc.data.get("receive"), dict) else {}
    return Mapping(path=str(path), version=compiler.doc.data["version"], objects=compiler.objects,
                   receive=ReceiveOptions(create_people=options.get("create_people") is True),
                   warnings=[p for p in problems if not p.is_error], ignored=compiler.ignored)


def guess_custom_field_column(object_name: str, title: str) -> str:
    """Workbooks' naming rule for a custom field column (workbooks-api §6.1): `cf_<type>_` plus the
    title lower-cased, spaces → `_`, punctuation dropped. Only a guess (Workbooks adds a numeric
    suffix on collisions): for previews without a Workbooks connection, never for syncing."""
    snake = re.sub(r"[^a-z0-9_]", "", "_".join(title.lower().split()))
    return f"cf_{object_name}_{snake}"
