"""YAML files checked against a JSON Schema, every problem said at its place in the file as
`FILE:LINE:COL: what is wrong — how to fix it`. Shared by plugin.mapping (the consultant's
mapping files) and plugin.manifest (the plugin manifest); each says its own file's problems in
its own words and keeps its own checks.

    doc = Document.parse(text, "mappings/default.yaml")   # YAML problems land on doc.problems
    doc.problems += schema.problems(doc)                    # schema: a Schema subclass
    doc.add(("objects", "person", "target"), "what is wrong", "how to fix it")

Positions come from `yaml.compose`: `yaml.safe_load` forgets them, and silently keeps the last
of two equal keys. A path is a tuple of keys and list indexes, ("objects", "person", "fields", 0).
Schemas are JSON Schema 2020-12 and may say, beside any subschema, what its failure means:
`x-messages` per failing keyword (`{"type": "…"}`), or `errorMessage` for a const, enum or
pattern (yaml-language-server shows that one too); `x-hint`, how to fix it.

A file is something a person wrote, not something to trust: `read_text` reads only a regular
file (a device such as /dev/zero never ends) of at most MAX_FILE_BYTES; building the data stops
at MAX_VALUES values (nested aliases repeat their anchors' blocks: 353 bytes can stand for
billions of values); a problem quotes at most a short excerpt of what the file says, on one line;
`capped` keeps the first MAX_PROBLEMS problems.
"""
from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

ERROR, WARNING = "error", "warning"

_MERGE_TAG = "tag:yaml.org,2002:merge"

MAX_FILE_BYTES = 1024 * 1024      # a mapping is a few KB, the manifest less
MAX_VALUES = 50_000               # values and merged keys built from one file
MAX_PROBLEMS = 100                # problems said about one file
EXCERPT_LENGTH = 60               # characters of the file quoted in a problem
_TEXT_LENGTH = 400                # characters of a problem's message, and of its hint


# --- reading ------------------------------------------------------------------------------------

class FileRefused(ValueError):
    """A file not read, for what it is: `str()` says why, without any of its contents."""


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of the regular file at `path` (a BOM dropped). FileRefused for a device,
    folder or pipe (checked before it is opened: opening a device can act) or a file over
    `limit` bytes; OSError / UnicodeDecodeError as `open` and `decode` raise them."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise FileRefused("is not a regular file (a device, a folder or a pipe)")
    # O_NONBLOCK: if it was swapped for a pipe since, opening does not wait for a writer.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FileRefused("is not a regular file (a device, a folder or a pipe)")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"is larger than {limit // (1024 * 1024) or limit} "
                          f"{'MB' if limit >= 1024 * 1024 else 'bytes'}")
    return data.decode("utf-8-sig")


def excerpt(value: Any, limit: int = EXCERPT_LENGTH) -> str:
    """`value` as text fit to quote in a one-line problem: line breaks and other invisible
    characters written as escapes (`\\n`, `\\u200b`), cut to `limit` characters with `…`."""
    text = _one_line(str(value))
    return text if len(text) <= limit else text[:max(1, limit - 1)] + "…"


def _one_line(text: str) -> str:
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def capped(problems: list["Problem"], limit: int = MAX_PROBLEMS) -> list["Problem"]:
    """The first `limit` problems, and one more saying how many were left out (an error when
    any of those is one, so leaving them out never makes a file pass)."""
    if len(problems) <= limit:
        return problems
    left_out, first = problems[limit:], problems[limit]
    severity = ERROR if any(p.is_error for p in left_out) else WARNING
    return problems[:limit] + [Problem(first.file, first.line, first.col,
                                       f"{len(left_out)} more problem{'s' if len(left_out) != 1 else ''} "
                                       "not shown", "fix these first, then check again", severity)]


class _TooManyValues(Exception):
    def __init__(self, mark: yaml.Mark | None) -> None:
        super().__init__("too many values")
        self.mark = mark


# --- problems -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One problem at its place: `FILE:LINE:COL: [warning: ][where — ]message[ — hint]`."""
    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    severity: str = ERROR
    where: str = ""        # what sits there, e.g. `processes.web[0]`, when the message names it

    def __str__(self) -> str:
        # One line, of bounded length, whatever a message quotes from the file.
        level = "warning: " if self.severity == WARNING else ""
        where = f"{excerpt(self.where, _TEXT_LENGTH)} — " if self.where else ""
        hint = f" — {excerpt(self.hint, _TEXT_LENGTH)}" if self.hint else ""
        return (f"{excerpt(self.file, _TEXT_LENGTH)}:{self.line}:{self.col}: {level}{where}"
                f"{excerpt(self.message, _TEXT_LENGTH)}{hint}")

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


# --- YAML with positions ------------------------------------------------------------------------

# PyYAML's messages, said the way a person editing the file would want to hear them: (problem text
# contains, what is wrong, how to fix it).
_YAML_MESSAGES = [
    ("found character '\\t'", "a tab character is not allowed here",
     "YAML indents with spaces only: replace the tab with spaces"),
    ("mapping values are not allowed here", "unexpected `:` on this line",
     "this line is probably indented more than the key above it: line it up; if the value "
     "itself contains `: `, put it in quotes"),
    ("did not find expected key", "this line is not lined up with the keys above it",
     "keys of the same block start in the same column: fix the indentation"),
    ("did not find expected '-' indicator", "this line is not lined up with the list items above it",
     "start every item of a list with `- ` in the same column"),
    ("could not find expected ':'", "a key has no `:` after it",
     "write `key: value`, or put text containing `:` or `#` in quotes"),
    ("expected <block end>", "this line is not lined up with the lines above it",
     "keys of the same block start in the same column: fix the indentation"),
    ("found undefined alias", "this `*alias` names no `&anchor`", "define the anchor first, or write the value out"),
    ("found unknown escape character", "unknown `\\` escape in double quotes",
     "use single quotes, or write `\\\\` for a backslash"),
    ("found unexpected end of stream", "the file ends inside quoted text", "close the quote"),
    ("expected a single document", "the file holds more than one YAML document",
     "remove the second `---` line"),
    ("that cannot start any token", "a value cannot start with this character", "put the value in quotes"),
    ("found duplicate anchor", "the same `&anchor` is defined twice", "give each anchor its own name"),
]


class Document:
    """Parsed YAML plus, for every path into it, where its value (and its key) starts.

    The class attributes and the methods under "what a subclass may say otherwise" are what a
    kind of file may change: its messages, and how its data is read."""

    #: What is said of a file without any YAML in it: (what is wrong, how to fix it).
    EMPTY = ("the file is empty", "")
    #: What is said of a key written twice in one block; {key} is the key, {line} where it was first.
    TWICE = ("`{key}` appears twice in this block (first at line {line})",
             "remove one of them: YAML would silently keep only the last")
    #: What is said of an alias inside its own anchor, or None to say nothing.
    SELF_ALIAS: tuple[str, str] | None = ("this alias refers to itself",
                                          "write the value out instead of `*alias`")
    #: Where the positions under a key written twice point: its last value, the one YAML keeps
    #: (False), or its first (True).
    TWICE_POSITIONS_FIRST = False
    #: What is said when the data would have more than MAX_VALUES values.
    TOO_MANY_VALUES = (f"this file stands for more than {MAX_VALUES:,} values: its `*aliases` (or "
                       "`<<: *merges`) repeat blocks that repeat other blocks",
                       "write the repeated settings out, or repeat them less deeply")

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.values: dict[tuple, yaml.Mark] = {}
        self.keys: dict[tuple, yaml.Mark] = {}
        self.key_tags: dict[tuple, str] = {}      # the tag of each key as written (quoted or not)
        self.problems: list[Problem] = []
        self.loader: yaml.SafeLoader | None = None   # only while parsing
        self.budget = MAX_VALUES                     # values `build` may still make

    # positions ------------------------------------------------------------------------------
    def mark(self, path: tuple, *, key: bool = False) -> yaml.Mark | None:
        """Where the value at `path` starts (its key, with `key`), else its nearest parent."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path)

    def problem(self, path: tuple, message: str, hint: str = "", *, key: bool = False,
                severity: str = ERROR) -> Problem:
        return self.problem_at(self.mark(path, key=key), message, hint, path=path, severity=severity)

    def problem_at(self, mark: yaml.Mark | None, message: str, hint: str = "", *, path: tuple = (),
                   severity: str = ERROR) -> Problem:
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(self.file, line, col, message, hint, severity, self.where(path))

    def add(self, path: tuple, message: str, hint: str = "", *, key: bool = False,
            severity: str = ERROR) -> None:
        self.problems.append(self.problem(path, message, hint, key=key, severity=severity))

    # parsing --------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, file: str) -> "Document":
        doc = cls(file)
        try:
            # The reader rejects control characters (a NUL byte) as soon as it is built.
            doc.loader = yaml.SafeLoader(text)
        except yaml.YAMLError as exc:
            doc.problems.extend(doc.yaml_problems(exc, text))
            return doc
        try:
            node = doc.loader.get_single_node()
            if node is None:
                doc.problems.append(doc.problem_at(None, *cls.EMPTY))
            else:
                doc.data = doc.construct(node)
        except yaml.YAMLError as exc:
            doc.problems.extend(doc.yaml_problems(exc, text))
        except _TooManyValues as exc:
            doc.data = None
            doc.problems.append(doc.problem_at(exc.mark, *cls.TOO_MANY_VALUES))
        finally:
            doc.loader.dispose()
            doc.loader = None
        return doc

    # what a subclass may say otherwise --------------------------------------------------------
    def where(self, path: tuple) -> str:
        """What sits at `path`, said before each message (Problem.where); nothing by default."""
        return ""

    def construct(self, node: yaml.Node) -> Any:
        """The data, built from the nodes. Keys are kept as written ("Yes", not True) so the
        schema sees text; `key_tags` keeps what YAML would have made of them."""
        return self.build(node)

    def yaml_problems(self, exc: yaml.YAMLError, text: str) -> list[Problem]:
        """What to say when PyYAML gives up on the file."""
        if not isinstance(exc, yaml.MarkedYAMLError):
            return [self.problem_at(None, f"this is not valid YAML: {exc}", "check the indentation and quotes")]
        # Tabs PyYAML accepted (flow style, block text) are harmless; once it fails, every tab in
        # an indentation is a suspect worth naming.
        problems = self.tab_problems(text)
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end of stream" in str(exc.problem):
            mark = exc.context_mark          # where the quote was opened, not the file's end
        if not (mark and any(p.line == mark.line + 1 for p in problems)):
            problems.append(self.problem_at(mark, *explain_yaml(exc, text)))
        return problems

    def tab_problems(self, text: str) -> list[Problem]:
        """A tab in the indentation is the classic invisible YAML mistake: one problem per line."""
        found = []
        for number, line in enumerate(text.splitlines(), start=1):
            indent = re.match(r"^[ \t]*", line).group(0)
            if "\t" in indent:
                found.append(Problem(self.file, number, indent.index("\t") + 1, "a tab is used for indentation",
                                     "YAML indents with spaces only: replace the tab with spaces"))
        return found

    def key_identity(self, key_node: yaml.ScalarNode) -> Any:
        """What makes two keys of one block the same key: what YAML reads them as (`yes` and
        `true` are both True), as safe_load would, which keeps only the last of them."""
        try:
            ident = self.loader.construct_object(key_node)
            hash(ident)
        except Exception:  # noqa: BLE001 — an odd key is reported by the schema instead
            ident = key_node.value
        return ident

    # reading the nodes ----------------------------------------------------------------------
    def build(self, node: yaml.Node, path: tuple = (), active: frozenset = frozenset()) -> Any:
        """The data under `node`, noting every position and reporting keys written twice."""
        assert self.loader is not None
        self._spend(1, node)
        self.values[path] = node.start_mark
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node)
        if id(node) in active:
            if self.SELF_ALIAS:
                self.add(path, *self.SELF_ALIAS)
            return None
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), active) for i, item in enumerate(node.value)]
        twice = self._check_duplicates(node, path)
        self._spend(_merged_size(node), node)      # before flattening makes the merged pairs
        self.loader.flatten_mapping(node)          # `<<: *anchor` merges, as safe_load does
        result: dict[str, Any] = {}
        for pair in node.value:
            key_node, value_node = pair
            if not isinstance(key_node, yaml.ScalarNode):
                continue                             # reported by _check_duplicates
            if self.TWICE_POSITIONS_FIRST and id(pair) in twice:
                continue
            key = key_node.value
            self.keys[path + (key,)] = key_node.start_mark
            self.key_tags[path + (key,)] = key_node.tag
            result[key] = self.build(value_node, path + (key,), active)
        return result

    def _spend(self, values: int, node: yaml.Node) -> None:
        self.budget -= values
        if self.budget < 0:
            raise _TooManyValues(node.start_mark)

    def _check_duplicates(self, node: yaml.MappingNode, path: tuple) -> set[int]:
        """Report every key already written above it in the block; the ids of their (key, value)
        pairs (pairs, not key nodes: one `*alias` key node may stand twice)."""
        seen: dict[Any, yaml.Mark] = {}
        twice: set[int] = set()
        for pair in node.value:
            key_node = pair[0]
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(self.problem_at(key_node.start_mark, "a key must be plain text",
                                                     "write `name: value`"))
                continue
            ident = self.key_identity(key_node)
            if ident in seen:
                twice.add(id(pair))
                message, hint = self.TWICE
                self.problems.append(self.problem_at(
                    key_node.start_mark, message.format(key=key_node.value, line=seen[ident].line + 1),
                    hint, path=path))
            else:
                seen[ident] = key_node.start_mark
        return twice


def _merged_size(node: yaml.MappingNode, sizes: dict | None = None) -> int:
    """How many pairs `node` holds once its `<<` merges are flattened, counted without making
    them: merges of merges multiply (`<<: [*a, *a, *a]` on each of nine levels: 3**9)."""
    sizes = {} if sizes is None else sizes
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 0                            # a block merged into itself adds nothing more
    total = 0
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            total += 1
            continue
        merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        total += sum(_merged_size(m, sizes) for m in merged if isinstance(m, yaml.MappingNode))
    sizes[id(node)] = total
    return total


def explain_yaml(exc: yaml.MarkedYAMLError, source: str) -> tuple[str, str]:
    """(what is wrong, how to fix it) for PyYAML's complaint about `source`."""
    text = f"{exc.context or ''} {exc.problem or ''}"
    mark = exc.problem_mark
    if "mapping values are not allowed here" in text and mark is not None:
        # `target account` on the line above, then `fields:`: PyYAML reads both lines as one
        # text and trips over this line's colon. The fix is on the line above.
        above = [ln for ln in source.splitlines()[:mark.line] if ln.strip() and not ln.strip().startswith("#")]
        if above and ":" not in above[-1] and not above[-1].strip().startswith("-"):
            return ("unexpected `:` on this line: the line above has no `:`",
                    f"write the line above as `key: value` (`{excerpt(above[-1].strip())}` has no `:`)")
    for needle, message, hint in _YAML_MESSAGES:
        if needle in text:
            return message, hint
    return (f"this is not valid YAML ({(exc.problem or str(exc)).strip()})",
            "check the indentation and quotes on this line and the line above")


# --- the JSON Schema, in plain words ------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """One jsonschema error, with what explaining it needs at hand."""
    error: jsonschema.ValidationError
    path: tuple                  # where in the data
    kind: str                    # the failing keyword: "type", "required", …
    sub: dict                    # the subschema holding it
    instance: Any                # the value at fault
    message: str | None          # the schema's own words for it (x-messages, errorMessage)
    hint: str                    # the schema's fix for it (x-hint)

    @classmethod
    def of(cls, error: jsonschema.ValidationError) -> "Failure":
        kind = error.validator
        sub = error.schema if isinstance(error.schema, dict) else {}
        message = sub.get("x-messages", {}).get(kind) or (sub.get("errorMessage") if kind in (
            "const", "enum", "pattern") else None)
        return cls(error, tuple(error.absolute_path), kind, sub, error.instance, message,
                   sub.get("x-hint", ""))

    @property
    def names_a_key(self) -> bool:
        """The failure is a key's name (`propertyNames`); the key is `instance`."""
        return "propertyNames" in self.error.absolute_schema_path


class Schema:
    """A JSON Schema 2020-12 file, read once, whose errors become problems at their place.

    `explain` says the failures every file shares; a subclass gives its words (the three
    below) and says the rest of the failures its own way: it overrides `explain_value`, leaving
    to it what it has no words of its own for."""

    #: How a JSON type is named: {"integer": "a whole number", …}.
    TYPE_WORDS: dict[str, str]
    #: How a value is shown, by its kind: "bool", "null", "object", "array", "number", "string",
    #: "other" (a date, say); with {value}, {yaml} (true/false as YAML writes it), {type}.
    VALUE_WORDS: dict[str, str]
    #: How a key's name is shown; with {key}.
    KEY_NAME: str

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict | None = None

    @property
    def data(self) -> dict:
        if self._data is None:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
        return self._data

    def problems(self, doc: Document) -> list[Problem]:
        """Every failure of `doc.data`, each explained."""
        errors = list(jsonschema.Draft202012Validator(self.data).iter_errors(doc.data))
        # A value of the wrong type also fails its enum/const: say only the first, clearer, thing.
        mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        problems: list[Problem] = []
        for error in errors:
            if error.validator in ("enum", "const") and tuple(error.absolute_path) in mistyped:
                continue
            problems.extend(self.explain(doc, Failure.of(error)))
        return problems

    def explain(self, doc: Document, failure: Failure) -> Iterator[Problem]:
        if failure.names_a_key:
            key = failure.instance
            # Whatever keyword a name fails (text expected, a pattern), the rule says what names look like.
            rule = failure.message or failure.sub.get("errorMessage") or "is not an allowed name"
            yield doc.problem(failure.path + (key,), f"{self.KEY_NAME.format(key=key)}: {rule}", failure.hint,
                              key=True)
        else:
            yield from self.explain_value(doc, failure)

    def explain_value(self, doc: Document, failure: Failure) -> Iterator[Problem]:
        if failure.kind == "pattern":
            yield doc.problem(failure.path, f"{self.describe(failure.instance)}: "
                              f"{failure.message or 'does not have the expected form'}", failure.hint)
        else:
            yield doc.problem(failure.path, failure.message or failure.error.message, failure.hint)

    def describe(self, value: Any) -> str:
        """A value, as the messages show it (VALUE_WORDS)."""
        kind = ("bool" if isinstance(value, bool) else "null" if value is None
                else "object" if isinstance(value, dict) else "array" if isinstance(value, list)
                else "number" if isinstance(value, (int, float)) else "string" if isinstance(value, str)
                else "other")
        yaml_text = ("true" if value else "false") if isinstance(value, bool) else value
        shown = excerpt(value) if isinstance(value, str) else value
        return self.VALUE_WORDS[kind].format(value=shown, yaml=yaml_text, type=type(value).__name__)
