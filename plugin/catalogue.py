"""The Outreach attribute catalogue the mapping validator checks targets against.

Prospect and account attributes come from Outreach's published OpenAPI document, as extracted
into plugin/data/outreach-attributes.json (a verbatim copy of reference/outreach-attributes.json,
outreach-api.md §12: per attribute its type, format, maxLength and readonly / filterable /
sortable badges). The file ships with the plugin and is read once, at import. Only what the OAS
does not say is written here (`_OVERRIDES`): notes for consultants, the email format of
`emails`, and the attributes reference §3 treats as server-set although the OAS has no badge.

Types are the small vocabulary the mapping's type checks speak:
    string, list (a list of strings), integer, number, boolean, date (YYYY-MM-DD),
    datetime (ISO 8601).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

STRING, LIST, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME = (
    "string", "list", "integer", "number", "boolean", "date", "datetime")
TYPES = (STRING, LIST, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME)

ATTRIBUTES_PATH = Path(__file__).resolve().parent / "data" / "outreach-attributes.json"
CUSTOM_FIELD_COUNT = 150          # custom1 … custom150 on prospects and accounts
CUSTOM_FIELD_MAX_LENGTH = 32000


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    max_length: int | None = None
    writable: bool = True
    note: str = ""
    filterable: bool = False
    sortable: bool = False
    format: str = ""              # the OAS `format`: "email", "date", "date-time", "float"


def _type(spec: dict) -> str:
    """An OAS attribute's type in the mapping's vocabulary."""
    kind, fmt = spec.get("type"), spec.get("format")
    if kind == "string":
        return {"date": DATE, "date-time": DATETIME}.get(fmt, STRING)
    return {"array": LIST, "integer": INTEGER, "number": NUMBER, "boolean": BOOLEAN}[kind]


def from_oas(name: str, spec: dict) -> Attribute:
    return Attribute(name, _type(spec), spec.get("maxLength"), writable=not spec.get("readonly", False),
                     filterable=bool(spec.get("filterable")), sortable=bool(spec.get("sortable")),
                     format=spec.get("format", ""))


_SERVER_SET = "set by Outreach"
# What the OAS does not say, per object: {attribute: changes to its Attribute}.
_OVERRIDES: dict[str, dict[str, dict]] = {
    "prospect": {
        "name": {"note": "full name, computed by Outreach"},
        # §3.1: array<string(email)>; the OAS gives the array no item format.
        "emails": {"note": "email addresses; the first is the primary one", "format": "email"},
        "company": {"note": "the account's name when the prospect has an account"},
        "externalId": {"note": "written by the plugin: the Workbooks id"},
        # §3.1: no readonly badge, but PYSDK marks it read-only [C]: treated as server-set [I].
        "externalSource": {"writable": False, "note": _SERVER_SET},
    },
    "account": {
        "customId": {"note": "written by the plugin: the Workbooks id"},
        # §3.2: PYSDK marks it read-only [C].
        "externalSource": {"writable": False, "note": _SERVER_SET},
        "named": {"note": "only named accounts appear in Outreach's account list"},
    },
}


def _from_file(object_type: str, data: dict) -> dict[str, Attribute]:
    table = {name: from_oas(name, spec) for name, spec in data["objects"][object_type]["attributes"].items()}
    for name, changes in _OVERRIDES[object_type].items():
        table[name] = replace(table[name], **changes)
    return table


def _add(table: dict[str, Attribute], names: str, type_: str, max_length: int | None = None,
         *, writable: bool = True, note: str = "") -> None:
    for name in names.split():
        table[name] = Attribute(name, type_, max_length, writable, note)


def _user() -> dict[str, Attribute]:
    # Users are only read (to find owners); nothing here is a mapping target.
    t: dict[str, Attribute] = {}
    _add(t, "email username firstName lastName title", STRING, 255, writable=False)
    _add(t, "name userGuid phoneNumber phoneCountryCode phoneType scimExternalId scimSource",
         STRING, writable=False)
    _add(t, "locked", BOOLEAN, writable=False)
    _add(t, " ".join(f"custom{n}" for n in range(1, 6)), STRING, 225, writable=False)
    _add(t, "createdAt updatedAt currentSignInAt lastSignInAt passwordExpiresAt", DATETIME,
         writable=False)
    return t


def _load() -> dict[str, dict[str, Attribute]]:
    data = json.loads(ATTRIBUTES_PATH.read_text(encoding="utf-8"))
    return {"prospect": _from_file("prospect", data), "account": _from_file("account", data), "user": _user()}


CATALOGUE: dict[str, dict[str, Attribute]] = _load()

# Attributes the plugin writes itself: the Workbooks id marker that lets a rerun recognise the
# records it created (crash recovery). A mapping must not overwrite them.
RESERVED: dict[str, dict[str, str]] = {
    "prospect": {"externalId": "the plugin writes the Workbooks id into `externalId` to "
                               "recognise the prospects it created"},
    "account": {"customId": "the plugin writes the Workbooks id into `customId` to "
                            "recognise the accounts it created"},
}


# Attributes a mapping should send although Outreach does not insist: the validator warns without them.
RECOMMENDED: dict[str, dict[str, str]] = {
    "account": {"name": "accounts without a name are hidden in Outreach"},
}


def attribute(object_type: str, name: str) -> Attribute | None:
    return CATALOGUE.get(object_type, {}).get(name)


def names(object_type: str) -> list[str]:
    return list(CATALOGUE.get(object_type, {}))


def writable_names(object_type: str) -> list[str]:
    """Attributes a mapping may target: writable and not reserved by the plugin."""
    reserved = RESERVED.get(object_type, {})
    return [a.name for a in CATALOGUE.get(object_type, {}).values()
            if a.writable and a.name not in reserved]
