"""Field transforms: the small steps between a Workbooks value and an Outreach attribute.

Each transform has two faces:
- static: which kinds of value it accepts and which kind it produces, so the validator can
  reject `lower` after `number`, or `emails` fed plain text, before any record is seen;
- runtime: `apply(value, step, ctx)`, raising `TransformError(reason)` for input it cannot
  convert (e.g. "abc" to `number`); the mapping turns that into a per-record error.

Values flowing through a pipeline are None (empty), str, list[str], int, float or bool.
Empty stays empty through every step (except a `value_map` that maps "" explicitly), so a
field with `skip_empty` is never filled with a made-up value.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from . import catalogue, emails

# --- kinds: the static type of a value at one point of a pipeline ------------------------------

ANY = "any"            # a raw Workbooks value: text, sometimes a number or true/false
TEXT = "text"
LIST = "list"
NUMBER = "number"
BOOLEAN = "boolean"
DATE = "date"          # ISO text YYYY-MM-DD
DATETIME = "datetime"  # ISO text YYYY-MM-DDTHH:MM:SSZ

KIND_WORDS = {ANY: "the Workbooks value unconverted", TEXT: "text", LIST: "a list", NUMBER: "a number",
              BOOLEAN: "true/false", DATE: "a date", DATETIME: "a date-time"}


class TransformError(ValueError):
    """A value this transform cannot convert; the message says why, in a consultant's words."""


class TemplateSyntaxError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


# --- templates --------------------------------------------------------------------------------

COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[A-Za-z0-9_\[\]]+\])?$")


@dataclass(frozen=True)
class Ref:
    """A Workbooks field: a column name, or a custom field named by its title (resolved at bind)."""
    column: str | None = None
    title: str | None = None

    def describe(self, resolved: str | None = None) -> str:
        if self.title is not None:
            return f'custom field "{self.title}"' + (f" ({resolved})" if resolved else "")
        return str(self.column)


VALUE = "value"   # the `{value}` placeholder of a template transform: the value so far


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple  # str (literal) | Ref | VALUE-marker tuple ("value",)

    @property
    def refs(self) -> list[Ref]:
        return [p for p in self.parts if isinstance(p, Ref)]

    @property
    def uses_value(self) -> bool:
        return any(p == (VALUE,) for p in self.parts)


def parse_template(text: str, *, allow_value: bool) -> Template:
    """Split "{person_first_name} {person_last_name}" into literals and placeholders.

    `{{` and `}}` are literal braces. A placeholder names a Workbooks column, a custom field as
    `{custom_field:Title}`, or (in a template transform only) `{value}`.
    """
    parts: list = []
    literal = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal += ch
            i += 2
            continue
        if ch == "}":
            raise TemplateSyntaxError(f"`}}` at character {i + 1} has no matching `{{`",
                                      "write `}}` for a literal brace")
        if ch != "{":
            literal += ch
            i += 1
            continue
        end = text.find("}", i + 1)
        if end < 0:
            raise TemplateSyntaxError(f"`{{` at character {i + 1} is not closed",
                                      "close the placeholder with `}`, or write `{{` for a literal brace")
        inner = text[i + 1:end]
        if "{" in inner:
            raise TemplateSyntaxError(f"`{{` at character {i + 1} is not closed before the next `{{`",
                                      "close each placeholder with `}`")
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(_placeholder(inner.strip(), allow_value))
        i = end + 1
    if literal:
        parts.append(literal)
    return Template(text, tuple(parts))


def _placeholder(inner: str, allow_value: bool):
    if inner == VALUE:
        if not allow_value:
            raise TemplateSyntaxError(
                "`{value}` only works in a `template` transform (there is no value yet here)",
                "name the Workbooks columns instead, e.g. `{person_first_name}`")
        return (VALUE,)
    if inner.startswith("custom_field:"):
        title = inner[len("custom_field:"):].strip()
        if not title:
            raise TemplateSyntaxError("`{custom_field:}` has no title",
                                      "write the custom field's title, e.g. `{custom_field:Tier}`")
        return Ref(title=title)
    if not inner:
        raise TemplateSyntaxError("`{}` names no field",
                                  "write a Workbooks column inside the braces, e.g. `{person_first_name}`")
    if not COLUMN_RE.match(inner) or inner.count("[") != inner.count("]"):
        raise TemplateSyntaxError(
            f"`{{{inner}}}` is not a Workbooks column name",
            "use the API column name (e.g. `{person_first_name}`), or `{custom_field:Title}` "
            "for a custom field by its title")
    return Ref(column=inner)


def as_text(value: Any) -> str:
    """How a single value reads as text (placeholders, value_map keys, string targets)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(as_text(v) for v in value if not is_empty(v))
    return str(value)


def render(template: Template, ctx: "Context", value: Any = None) -> str | None:
    """Fill a template. All placeholders empty → empty (so `skip_empty` still works); spaces
    left behind by empty placeholders are tidied ("Ann  Lee" → "Ann Lee")."""
    texts: list[str] = []
    filled = False
    for part in template.parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        raw = value if part == (VALUE,) else ctx.lookup(part)
        if not is_empty(raw):
            filled = True
        texts.append(as_text(raw))
    if not filled and len(template.parts) > sum(isinstance(p, str) for p in template.parts):
        return None
    result = re.sub(r" {2,}", " ", "".join(texts)).strip()
    return result or None


# --- runtime context --------------------------------------------------------------------------

@dataclass
class Context:
    """What a step may look at besides its input: the whole record (templates) and the target
    attribute (the default length of `truncate`)."""
    record: dict
    resolve: Callable[[Ref], str] = lambda ref: ref.column or ""
    attribute: catalogue.Attribute | None = None

    def lookup(self, ref: Ref) -> Any:
        return self.record.get(self.resolve(ref))


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return False


# --- steps ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One configured transform: its name, main setting, options and (templates) parsed form."""
    name: str
    arg: Any = None
    options: tuple = ()                # ((key, value), ...) e.g. (("default", "Other"),)
    template: Template | None = None

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def has_option(self, key: str) -> bool:
        return key in dict(self.options)

    def label(self) -> str:
        return f"`{self.name}`"


@dataclass(frozen=True)
class Spec:
    name: str
    arg: str                        # "none" | "optional" | "required"
    accepts: frozenset
    output: Callable[[str, Step], str]
    apply: Callable[[Any, Step, Context], Any]
    summary: str
    example: str
    options: tuple = field(default=())
    # The most characters the step's output can have as text, given the most its input can have
    # (None: no bound known). For the validator's warning on targets with an Outreach limit.
    bound: Callable[[int | None, Step, "catalogue.Attribute | None"], int | None] = \
        lambda _bound, _step, _attr: None


def _elementwise(fn: Callable[[Any], Any]) -> Callable[[Any, Step, Context], Any]:
    def apply(value: Any, step: Step, ctx: Context) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [fn(v) for v in value]
        return fn(value)
    return apply


def _text_or_list(kind: str, step: Step) -> str:
    return LIST if kind == LIST else TEXT


_SEPARATORS = re.compile(r"[,;\r\n]+")


def _clean_list(items) -> list[str] | None:
    out = [as_text(v).strip() for v in items]
    out = [v for v in out if v]
    return out or None


def _to_list(value: Any, step: Step, ctx: Context) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return _clean_list(value)
    if isinstance(value, str):
        return _clean_list(_SEPARATORS.split(value))
    return _clean_list([value])


def _split(value: Any, step: Step, ctx: Context) -> Any:
    if value is None:
        return None
    return _clean_list(as_text(value).split(step.arg))


def _join(value: Any, step: Step, ctx: Context) -> Any:
    if value is None:
        return None
    sep = ", " if step.arg is None else step.arg
    items = value if isinstance(value, list) else [value]
    joined = sep.join(as_text(v) for v in items if not is_empty(v))
    return joined or None


def _template(value: Any, step: Step, ctx: Context) -> Any:
    assert step.template is not None
    return render(step.template, ctx, value)


def _lookup_key(value: Any) -> str:
    return as_text(value)


def _value_map_one(value: Any, step: Step) -> Any:
    table: dict = step.arg
    if is_empty(value):
        # Only an explicit "" entry turns an empty value into something; `default` does not,
        # so `skip_empty` keeps working on picklists left blank.
        return table[""] if "" in table else None
    key = _lookup_key(value)
    if key in table:
        return table[key]
    folded = key.strip().casefold()
    for k, v in table.items():
        if isinstance(k, str) and k.strip().casefold() == folded:
            return v
    if step.has_option("default"):
        return step.option("default")
    return value


def _value_map(value: Any, step: Step, ctx: Context) -> Any:
    if isinstance(value, list):
        return _clean_list(v for v in (_value_map_one(x, step) for x in value) if v is not None)
    return _value_map_one(value, step)


def value_map_output(kind: str, step: Step) -> str:
    kinds = {value_kind(v) for v in _value_map_outputs(step)}
    kinds.discard(None)
    if kind == LIST:
        return LIST
    return kinds.pop() if len(kinds) == 1 else ANY


def _value_map_outputs(step: Step) -> list:
    values = list(step.arg.values()) if isinstance(step.arg, dict) else []
    if step.has_option("default"):
        values.append(step.option("default"))
    return values


def value_kind(value: Any) -> str | None:
    """The kind of a constant from the YAML file (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, list):
        return LIST
    return TEXT


def _limit(step: Step, attr: catalogue.Attribute | None) -> int | None:
    """The length a `truncate` / `max_length` step holds a value to: its own, else the target's."""
    return step.arg if step.arg is not None else (attr.max_length if attr else None)


def _truncate(value: Any, step: Step, ctx: Context) -> Any:
    if value is None:
        return None
    limit = _limit(step, ctx.attribute)
    text = as_text(value)
    return text[:limit] if limit else text


def _max_length(value: Any, step: Step, ctx: Context) -> Any:
    """A value that must not be cut (a web address, an id): too long is the record's error."""
    limit = _limit(step, ctx.attribute)
    length = len(as_text(value)) if value is not None else 0
    if limit and length > limit:
        whose = (f"Outreach allows {limit} in `{ctx.attribute.name}`" if step.arg is None and ctx.attribute
                 else f"the mapping allows {limit}")
        raise TransformError(f"is {length} characters long; {whose}, and this field is not cut "
                             "(`max_length`): shorten it in Workbooks")
    return value


def _bound_to_limit(bound: int | None, step: Step, attr: catalogue.Attribute | None) -> int | None:
    limit = _limit(step, attr)
    if limit is None:
        return bound
    return limit if bound is None else min(bound, limit)


def _scaled(factor: int) -> Callable[[int | None, Step, Any], int | None]:
    # Case mapping can lengthen text: "İ".lower() is 2 characters, "ﬃ".upper() 3.
    return lambda bound, _step, _attr: None if bound is None else bound * factor


def _fixed_bound(length: int) -> Callable[[int | None, Step, Any], int | None]:
    return lambda _bound, _step, _attr: length


def _same_bound(bound: int | None, _step: Step, _attr: Any) -> int | None:
    return bound


def _value_map_bound(bound: int | None, step: Step, _attr: Any) -> int | None:
    outputs = [len(as_text(v)) for v in _value_map_outputs(step)] or [0]
    if step.has_option("default"):
        return max(outputs)
    return None if bound is None else max([bound, *outputs])   # unmapped values pass through


def length_bound(steps: Iterable[Step], attr: catalogue.Attribute | None) -> int | None:
    """The most characters a value from Workbooks can have after `steps` (None: unbounded)."""
    bound = None
    for step in steps:
        bound = SPECS[step.name].bound(bound, step, attr)
    return bound


# Dates. strptime's %b/%a follow the process locale; Workbooks always speaks English, so
# month and weekday names are matched here by hand.
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_WB_DATE = re.compile(r"^(\d{1,2})\s+([A-Za-z]{3,9})\s+(\d{4})$")
_WB_DATETIME = re.compile(
    r"^[A-Za-z]{3,9}\s+([A-Za-z]{3,9})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+(?:UTC|GMT|Z)\s+(\d{4})$")
_EPOCH = re.compile(r"^\d{9,11}$")


def _month(name: str) -> int | None:
    return _MONTHS.get(name[:3].lower())


def _parse_datetime(value: Any, fmt: str | None) -> dt.datetime:
    """A Workbooks date or date-time (or ISO 8601, epoch seconds, or `fmt`) as UTC.
    Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    text = as_text(value).strip()
    if fmt:
        return _utc(dt.datetime.strptime(text, fmt))
    m = _WB_DATETIME.match(text)
    if m and _month(m.group(1)):
        mon, day, hh, mm, ss, year = m.groups()
        return dt.datetime(int(year), _month(mon), int(day), int(hh), int(mm), int(ss),
                           tzinfo=dt.timezone.utc)
    m = _WB_DATE.match(text)
    if m and _month(m.group(2)):
        day, mon, year = m.groups()
        return dt.datetime(int(year), _month(mon), int(day), tzinfo=dt.timezone.utc)
    if _EPOCH.match(text):
        return dt.datetime.fromtimestamp(int(text), dt.timezone.utc)
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        return _utc(dt.datetime.fromisoformat(text))
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
        # Python before 3.11 does not read a trailing Z.
        return _utc(dt.datetime.fromisoformat(re.sub(r"Z$", "+00:00", text)))
    raise ValueError


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _date(value: Any, step: Step, ctx: Context) -> Any:
    if is_empty(value):
        return None
    try:
        parsed = _parse_datetime(value, step.arg)
    except (ValueError, OverflowError, OSError):
        expected = f"the format `{step.arg}`" if step.arg else "a Workbooks date like `22 May 2009` or `2009-05-22`"
        raise TransformError(f"`{as_text(value)}` is not a date (expected {expected})") from None
    return parsed.date().isoformat()


def _datetime(value: Any, step: Step, ctx: Context) -> Any:
    if is_empty(value):
        return None
    try:
        parsed = _parse_datetime(value, step.arg)
    except (ValueError, OverflowError, OSError):
        expected = (f"the format `{step.arg}`" if step.arg
                    else "a Workbooks date-time like `Fri May 15 14:36:54 UTC 2009` or ISO 8601")
        raise TransformError(f"`{as_text(value)}` is not a date-time (expected {expected})") from None
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


_TRUE = {"true", "yes", "y", "1", "on", "t", "checked"}
_FALSE = {"false", "no", "n", "0", "off", "f", "unchecked"}


def _boolean(value: Any, step: Step, ctx: Context) -> Any:
    if isinstance(value, bool):
        return value
    if is_empty(value):
        return None
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = as_text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError(f"`{as_text(value)}` is not true/false (expected true/false, yes/no or 1/0)")


_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$")
# A Workbooks currency value is "amount code flags", e.g. "1500.00 GBP 1" (workbooks-api §6.2).
_CURRENCY = re.compile(r"^([-+]?[\d.,]+)\s+[A-Z]{3}(\s+\d+)?$")


def _number(value: Any, step: Step, ctx: Context) -> Any:
    if isinstance(value, bool):
        raise TransformError(f"`{as_text(value)}` is true/false, not a number")
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if is_empty(value):
        return None
    text = as_text(value).strip()
    m = _CURRENCY.match(text)
    if m:
        text = m.group(1)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if not _NUMBER.match(text):
        raise TransformError(f"`{as_text(value)}` is not a number")
    number = float(text)
    if number.is_integer() and abs(number) < 2 ** 53:
        return int(number)
    return number


HOST_MAX_LENGTH = 253            # RFC 1035: a host name is at most 253 characters written out
_HOST = re.compile(r"^(?=.{1,253}$)(?:([^\W_]([\w-]*[^\W_])?\.)+[^\W\d_]{2,}|([^\W_]([\w-]*[^\W_])?\.)+xn--[a-z0-9-]+)$")


def _domain(value: Any, step: Step, ctx: Context) -> Any:
    if is_empty(value):
        return None
    text = as_text(value).strip()
    try:
        host = urlsplit(text if "//" in text else "//" + text).hostname
    except ValueError:
        host = None
    host = (host or "").rstrip(".")
    if not host or not _HOST.match(host):
        raise TransformError(f"`{text}` is not a web address (expected e.g. `https://www.acme.com`)")
    if (step.arg or {}).get("strip_www") and host.startswith("www."):
        host = host[4:]
    return host


def _fixed(kind: str) -> Callable[[str, Step], str]:
    return lambda _kind, _step: kind


_SCALAR_IN = frozenset({ANY, TEXT})
_TEXTUAL_IN = frozenset({ANY, TEXT, LIST})

SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("trim", "none", _TEXTUAL_IN, _text_or_list, _elementwise(lambda v: as_text(v).strip()),
         "removes spaces at the start and end (of each item of a list)", "trim", bound=_same_bound),
    Spec("lower", "none", _TEXTUAL_IN, _text_or_list, _elementwise(lambda v: as_text(v).lower()),
         "lower-cases the text (of each item of a list)", "lower", bound=_scaled(2)),
    Spec("upper", "none", _TEXTUAL_IN, _text_or_list, _elementwise(lambda v: as_text(v).upper()),
         "upper-cases the text (of each item of a list)", "upper", bound=_scaled(3)),
    Spec("to_list", "none", _TEXTUAL_IN, _fixed(LIST), _to_list,
         "makes a list: splits text at commas, semicolons and new lines, drops empty items",
         "to_list"),
    Spec("split", "required", _SCALAR_IN, _fixed(LIST), _split,
         "splits text into a list at the given separator", 'split: "|"'),
    Spec("join", "optional", frozenset({LIST}), _fixed(TEXT), _join,
         'joins a list into text with the given separator (default ", ")', 'join: " / "'),
    Spec("template", "required", frozenset({ANY, TEXT, NUMBER, BOOLEAN, DATE, DATETIME}),
         _fixed(TEXT), _template,
         "builds text: {value} is the value so far, {column} another Workbooks field",
         'template: "{value} ({person_job_role})"'),
    Spec("value_map", "required", frozenset({ANY, TEXT, NUMBER, BOOLEAN, LIST}),
         value_map_output, _value_map,
         "replaces listed values (e.g. picklist choices); `default` for anything else",
         'value_map: {"Gold": "Tier 1"}', options=("default",), bound=_value_map_bound),
    Spec("truncate", "optional", _SCALAR_IN, _fixed(TEXT), _truncate,
         "cuts text to N characters (no N: the Outreach limit of the target)", "truncate: 50",
         bound=_bound_to_limit),
    Spec("max_length", "optional", _SCALAR_IN, lambda kind, _step: kind, _max_length,
         "refuses a value longer than N characters (no N: the Outreach limit of the target) with a "
         "Sync Error naming the field, for values a cut would spoil, such as web addresses",
         "max_length", bound=_bound_to_limit),
    Spec("date", "optional", _SCALAR_IN, _fixed(DATE), _date,
         "reads a Workbooks date (or the given strftime format) and writes YYYY-MM-DD",
         'date: "%d/%m/%Y"', bound=_fixed_bound(len("2009-05-22"))),
    Spec("datetime", "optional", _SCALAR_IN, _fixed(DATETIME), _datetime,
         "reads a Workbooks date-time (or the given format, UTC) and writes ISO 8601",
         "datetime", bound=_fixed_bound(len("2009-05-15T14:36:54Z"))),
    Spec("boolean", "none", frozenset({ANY, TEXT, NUMBER}), _fixed(BOOLEAN), _boolean,
         "reads true/false, yes/no, 1/0, on/off", "boolean", bound=_fixed_bound(len("false"))),
    Spec("number", "none", _SCALAR_IN, _fixed(NUMBER), _number,
         'reads a number ("1,250", "12.5", a Workbooks currency "1500.00 GBP 1")', "number"),
    Spec("domain", "optional", _SCALAR_IN, _fixed(TEXT), _domain,
         "the host name of a web address: https://www.acme.com/about → www.acme.com",
         "domain: {strip_www: true}", bound=_fixed_bound(HOST_MAX_LENGTH)),
]}

OPTION_KEYS = {opt for spec in SPECS.values() for opt in spec.options}


def apply(step: Step, value: Any, ctx: Context) -> Any:
    return SPECS[step.name].apply(value, step, ctx)


# --- static checks ----------------------------------------------------------------------------

def step_problem(step: Step, kind: str, previous: Step | None) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when `step` cannot take a value of `kind`."""
    spec = SPECS[step.name]
    if kind in spec.accepts:
        return None
    after = f" (after {previous.label()})" if previous else ""
    what = f"{step.label()} cannot take {KIND_WORDS[kind]}{after}"
    if kind == LIST:
        return what, f"put `join` before {step.label()}, or move {step.label()} before the step that makes the list"
    if LIST in spec.accepts and spec.accepts == frozenset({LIST}):
        return what, f"{step.label()} needs a list: put `to_list` or `split` before it"
    if previous is not None:
        return what, f"move {step.label()} before {previous.label()}, which turns the value into {KIND_WORDS[kind]}"
    return what, f"remove {step.label()}"


def target_problem(kind: str, attr: catalogue.Attribute) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when a value of `kind` cannot be written to `attr`."""
    name, t = f"`{attr.name}`", attr.type
    if t == catalogue.STRING:
        if kind == LIST:
            return (f"{name} takes one text value, but this field produces a list",
                    "add `join` at the end of `transforms`")
        return None
    if t == catalogue.LIST:
        if kind == LIST:
            return None
        return (f"{name} is a list in Outreach, but this field produces {KIND_WORDS[kind]}",
                "add `to_list` to `transforms` (it splits at commas, semicolons and new lines)")
    wanted = {catalogue.INTEGER: NUMBER, catalogue.NUMBER: NUMBER, catalogue.BOOLEAN: BOOLEAN,
              catalogue.DATE: DATE, catalogue.DATETIME: DATETIME}[t]
    if kind == wanted:
        return None
    what = f"{name} is {_TARGET_WORDS[t]} in Outreach, but this field produces {KIND_WORDS[kind]}"
    if kind in (ANY, TEXT):
        return what, f"add `{wanted}` at the end of `transforms`"
    if {kind, wanted} == {DATE, DATETIME}:
        return what, f"use `{wanted}` instead of `{kind}`"
    if kind == NUMBER and wanted == BOOLEAN:
        return what, "add `boolean` (it reads 1/0)"
    return what, "map the values with `value_map`, or choose another target"


_TARGET_WORDS = {catalogue.INTEGER: "a whole number", catalogue.NUMBER: "a number",
                 catalogue.BOOLEAN: "true/false", catalogue.DATE: "a date",
                 catalogue.DATETIME: "a date-time"}


# --- the last step: fit a value to its Outreach attribute -------------------------------------

def fit(value: Any, attr: catalogue.Attribute) -> Any:
    """The value as the attribute's type; raises TransformError when it does not fit.
    Empty values are returned as None (scalars) or [] (lists)."""
    t = attr.type
    if is_empty(value):
        return [] if t == catalogue.LIST else None
    if t == catalogue.LIST:
        items = [as_text(v).strip() for v in (value if isinstance(value, list) else [value]) if not is_empty(v)]
        # One address, one spelling: "é" as one character or as "e" and an accent (plugin.emails).
        return [emails.canonical(v) for v in items] if attr.format == "email" else items
    if isinstance(value, list):
        raise TransformError(f"a list of {len(value)} values cannot go into `{attr.name}`, which takes one value")
    if t == catalogue.STRING:
        text = as_text(value)
        if attr.max_length and len(text) > attr.max_length:
            raise TransformError(
                f"is {len(text)} characters long; Outreach allows {attr.max_length} in `{attr.name}` "
                f"(add `truncate` to the field's transforms to cut it)")
        return text
    if t in (catalogue.INTEGER, catalogue.NUMBER):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TransformError(f"`{as_text(value)}` is not a number")
        if t == catalogue.INTEGER:
            if isinstance(value, float) and not value.is_integer():
                raise TransformError(f"`{as_text(value)}` is not a whole number (`{attr.name}` takes one)")
            return int(value)
        return value
    if t == catalogue.BOOLEAN:
        if not isinstance(value, bool):
            raise TransformError(f"`{as_text(value)}` is not true/false")
        return value
    if t == catalogue.DATE:
        if not (isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", value)):
            raise TransformError(f"`{as_text(value)}` is not a date (YYYY-MM-DD)")
        return value
    if t == catalogue.DATETIME:
        if not (isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", value)):
            raise TransformError(f"`{as_text(value)}` is not an ISO 8601 date-time")
        return value
    return value
