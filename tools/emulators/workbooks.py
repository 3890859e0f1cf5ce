"""Workbooks CRM API emulator, built from `reference/workbooks-api.md` (cited as §n; R2.n is its
"Resolved after review" part). DESIGN.md §7 is the contract; core.py supplies the clock, faults,
request counts and the shared `/_emulator/` routes.

Routes (the real API's shape):
  POST /login.api                 api_key | username+password | username+session_id+logical_database_id (§2.2)
  POST|GET /logout                302 to /login, session dropped (§2.3)
  GET  /login                     the HTML login page every redirect ends on (not JSON, on purpose)
  /<controller>.api               GET reads (§3), PUT / POST+_method=PUT writes in batches (§4)
  GET /<controller>/<id>.api      show one record: `data` is an object (§1.1)
  GET /metadata/types.api         record types with their fields, custom ones included (§10)
  /delay/<any route above>        the rate limit's delaying URL (§11): held rate_limit_redirect_delay
                                  seconds, then served as the route itself
  GET|POST /wp/<web_identifier>   a web process (automation/web_actions) run once per request, the
                                  way the Process Engine runs one (§2.4, §2.5; web_process.py says
                                  which parts are the reference's and which are our reading), from
                                  the bundle registered with POST /_emulator/web_processes
Controllers: crm/people, crm/organisations, crm/person_queues, crm/organisation_queues,
admin/users (switch `users_endpoint`; read-only), admin/custom_fields, automation/api_data,
automation/scheduled_actions, automation/web_actions.

Behaviour switches (`WorkbooksEmulator(**switches)`, `--set name=value`, POST /_emulator/config).
Each models something the reference marks uncertain ([I]) or leaves open; defaults lean strict.

  switch                             default        reference     meaning
  max_limit                          100            §3.1, §11,    a larger `_limit` is silently capped
                                                    §13.6         (None/0: no cap)
  limit_requires_start               False          §3.1, §13.8   True: `_limit` ignored without `_start`
                                                                  (the README's words; 2025 traffic: honoured)
  require_user_agent                 True           §1.3, §2.2    no User-Agent header -> 403
                                                                  user_agent_required (login.api and
                                                                  api_key requests)
  login_requires_client_and_version  True           §2.2          login.api without client=api and
                                                                  api_version=1 -> 406 (the table says
                                                                  "mandatory"; the real answer is unknown)
  invalid_api_key_status             401            R2.4          status for a bad/disabled api_key: 401
                                                                  or 403 (JSON failure_reason), or 302 to
                                                                  /login like a bad session
  invalid_api_key_reason             "unrecognised_name_or_password"   R2.4   its failure_reason
  bad_authenticity_token_status      401            §2.2          session-mode write without the right
                                                                  `_authenticity_token` (reason
                                                                  "invalid_authenticity_token")
  session_idle_seconds               28800          §2.2          idle time before a session expires (8 h)
  reconnect_invalidates_old_session  True           §2.1          a Process-Engine reconnect ends the old
                                                                  session id (the new one must be used)
  per_object_failure_top_success     False          §4.6          with `_per_object_transactions`, top-level
                                                                  success stays true when some objects failed
                                                                  (False: success false + errors/failures)
  null_matches_negative_operators    False          §3.2 [I]      ne/nct/nbg/not_between match NULL values
                                                                  (False: SQL semantics, NULL never matches)
  custom_field_pending_polls         2              §6.3          with `_asynchronous_cf=true` a new field is
                                                                  "Pending" for this many reads of
                                                                  admin/custom_fields, then "Available";
                                                                  until then its column does not exist
  users_endpoint                     "admin/users"  §7, R2.1      controller path of the users list (OI
                                                                  field set); None disables it
  assigned_to_name                   False          §5.2, §13.7   records carry `assigned_to_name` (2009
                                                                  example) as well as queue_entry[...]
  rate_limit_redirect_every          0              §11           N > 0: every Nth request of an API route
                                                                  whose method is in rate_limit_redirect_
                                                                  methods is answered 302 to a delaying URL:
                                                                  /delay + its path and query string. The
                                                                  delaying URL serves whatever request reaches
                                                                  it as the original route would: a client
                                                                  that re-sends the same method and body gets
                                                                  the same answer; one that drops the body
                                                                  (requests turns a 302 into a bodiless GET)
                                                                  loses a long read's filters, its api_key
                                                                  and a write. Short and long reads alike (a
                                                                  GET with a body, §1.2). A fault rule
                                                                  {"status": 302, "redirect": "delay"} does
                                                                  the same for chosen requests (min_body: only
                                                                  long reads), hop after hop
  rate_limit_redirect_methods        ["GET","PUT"]  §11, §2.3     the methods (the effective one: `_method`
                                                                  wins) rate limiting redirects: §11 says a
                                                                  302 "may arrive at any time", writes
                                                                  included ([I]: only GETs, its own guess, is
                                                                  the lenient reading)
  rate_limit_redirect_delay          0.0            §11, §13.6    seconds the delaying URL holds a request
                                                                  before serving it (no number is published)
  unverified_attributes              False          §2.1 [O],     the made-up attribute names exist: custom
                                                    §2.2, R2.2,   fields' is_hidden, is_required, is_read_only;
                                                    R2.3          scheduled/web processes' frequency_minutes,
                                                                  enabled, timeout_seconds, process_channel,
                                                                  last_run_at, next_run_at, parameters. False:
                                                                  unknown like any other name (R2.2/R2.3 "still
                                                                  open"): ignored in api_key mode (§2.1 [O]),
                                                                  "is not a recognised attribute" under
                                                                  _strict_attribute_checking (§2.2), read back
                                                                  null when selected (§3.3), absent otherwise
  custom_field_data_types            "verified"     §6.3, R2.2    data_type values admin/custom_fields accepts
                                                                  through the API. "verified": boolean,
                                                                  picklist, iframe, decimal, percentage (§6.3),
                                                                  string, date (R2.2); "reference": also text,
                                                                  uri, url, datetime, date_time (R2.2 [I]).
                                                                  Others fail the row: errors {data_type: [...]}.
                                                                  The Python API (the Desktop UI) takes all
  failure_shape                      "full"         §4.3, §4.4,   body of a write whose objects failed (stale
                                                    R2.4          lock_version, validation): "full" = the §4.4
                                                                  recommendation plus affected_object_errors;
                                                                  "failures_only" = {success, failures,
                                                                  affected_objects} (the README's only words);
                                                                  "row_errors_only" = {success, affected_objects,
                                                                  affected_object_information}
  unknown_filter_field               "ignore"       §3.2, §11     a `_ff[]` naming no column (or a switched-off
                                                                  / pending one): "ignore" drops it (its term is
                                                                  true: with AND the other filters still apply,
                                                                  with OR everything matches); "error" -> 406.
                                                                  "ignore" is the harsher reading for a client
  unfilterable_columns               []             §3.2 [I]      real columns whose filter terms are dropped as
                                                                  if never sent (e.g. ["lock_version"]: §3.2
                                                                  does not name it among filterable columns)
  accept_json_body                   True           §1.3, #2      also read application/json request bodies
                                                                  (issue #2 wins over §1.3); a body of any other
                                                                  type (text/plain, none given) -> 406
  standard_string_max_length         255            §5.2, §6.2    most characters of a standard string/URL
                                                                  field (person_job_title, name, website,
                                                                  main_location[...], ...): §6.2 gives 255 for
                                                                  the string datatype, §5.2 no field's type
                                                                  (None: no limit). Custom fields: always 255
  picklist_values_enforced           True           §6.2 [I]      a picklist custom field whose picklist the
                                                                  emulator knows (add_picklist, or the
                                                                  `picklist` shorthand of add_custom_field)
                                                                  takes only its values, exactly, or blank:
                                                                  anything else fails the object "is not
                                                                  included in the list"
  email_validation                   "api"          §5.2 [I]      the email fields (`*[email]`,
                                                                  `*[alternate_email]`) must be addresses
                                                                  ("is not a valid email address") on "api"
                                                                  writes; "always": the Python API and seeds
                                                                  too; "never". "api" because data already
                                                                  in a database (imports, older rules) may
                                                                  hold what the API refuses today
  database_name, logical_database_id, database_instance_id        the database identity (§2.2), also
                                                                  settable through seed {"database": {...}}

Choices where the reference is silent (each pinned by a test):
  * Unacceptable parameters (bad JSON body, a body that is not form-encoded, unknown filter
    operator, an unknown filter field under unknown_filter_field="error", bad `_fm`, bad paging,
    unknown sort column, non-square arrays, > 100 objects, a write without a working-set filter)
    -> HTTP 406 (§11 "unacceptable parameters") with {"success": false, "errors": {"[]": {...}},
    "failures": [...]}.
  * An unknown `_select_columns[]` column reads null (§3.3 [I]); unset custom fields read null,
    unset booleans false and unset picklists "" (§6.2 [O]). String custom fields hold at most 255
    characters (§6.2); a longer value fails the object ("is too long"). Standard string fields
    likewise (switch standard_string_max_length).
  * An email address is valid (switch email_validation) when it is ASCII `local@domain`: the local
    part of RFC 5322 atoms joined by single dots (at most 64 characters), the domain of labels of
    letters, digits and inner hyphens with a top-level label of two letters or more, at most 254
    characters in all. Blank is allowed (it clears the field). Workbooks' real rule is unknown.
  * Picklists (`add_picklist(values)` -> id, referenced by a custom field's `picklist_id`) exist only
    in the Python API and the seed: the reference names no API for them. A picklist field whose
    picklist the emulator does not know takes any value.
  * Failed objects (validation, stale lock_version, no longer accessible) -> HTTP 200 with the §4.4
    shape (switch failure_shape); `affected_objects` lists only the saved objects (the §4.4 example gives [] for its one
    failed object), `affected_object_information` has one entry per object in request order. In an
    all-or-nothing batch the innocent objects report success false with no errors (nothing saved).
  * A missing or unknown session, or no credentials at all, on an ordinary request -> 302 to /login
    (§2.3); /login answers 200 text/html, so a client that follows it must notice the missing JSON.
  * Users get passwords (default "password") for username+password login; the admin user is
    admin@example.com / "System Admin". New records are assigned to the acting user's queue.
  * Custom-field name collisions get the new field's id as suffix (`cf_person_outreach_id_7`,
    like the observed `cf_person_genomics_3774`).
  * String comparisons (eq, ct, bg, sorting) ignore case (§3.2 [I]); NULL sorts first ascending.
  * The session cookie is sent without `secure` (the emulator speaks plain HTTP on loopback).

Python API (tests, the demo and the benchmark; it follows the switches, except that it stands in
for the Desktop UI where custom_field_data_types is concerned): `database`, `admin`, `add_user`, `add_queue`,
`create_api_key`, `create_session`, `insert`, `edit`, `delete`, `records`, `record`,
`add_custom_field`, `add_picklist`, `serve_web_processes`, `seed` (see its docstring for the seed-file keys, also used by
`python -m tools.emulators workbooks --seed FILE`). Kinds: people, organisations, person_queues,
organisation_queues, users, custom_fields, api_data, scheduled_actions, web_actions (singulars,
controller paths and class names are accepted too). Control routes (JSON): POST /_emulator/users,
/queues, /api_keys, /sessions, /seed, /custom_fields; GET|POST /_emulator/records/<kind>;
GET|PATCH|DELETE /_emulator/records/<kind>/<id>; GET /_emulator/database;
POST /_emulator/web_processes {"bundle": folder, "parameters": {...}, "timeout": s} (the plugin bundle
the /wp/ route runs scripts from, and the script parameters an administrator would set; Python:
`serve_web_processes`), GET /_emulator/web_processes (the bundle, the parameter names and the last
runs' exit codes and stderr).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import secrets
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from werkzeug.wrappers import Request, Response

from . import web_process
from .core import UTC, Emulator, json_response

SESSION_COOKIE = "Workbooks-Session"
DELAY_PREFIX = "/delay"                          # §11: the rate limit's "delaying URL" (shape [I])
MAX_OBJECTS_PER_WRITE = 100                      # §4.1
STRING_LIMIT = 255                               # §6.2 "string: up to 255 characters"
# The email rule of switch email_validation [I]: dot-atoms of RFC 5322 (ASCII), a domain of
# hyphenated labels and a top-level label of letters.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")
TEXT_LIMIT = 65_535                              # §6.2 text: 64 KB for ordinary text fields
LONG_TEXT_LIMIT = 16 * 1024 * 1024               # §9.1 API Data values hold long texts
STALE_MESSAGE = "This record cannot be saved since it has already been updated elsewhere."   # §4.3
INACCESSIBLE_MESSAGE = "The record is no longer accessible."                                   # §4.3
DEFAULT_PASSWORD = "password"
TRUE_WORDS = frozenset({"true", "t", "on", "1", "yes", "y"})                                   # §4.1
CONTROL_ARRAYS = frozenset({"_ff", "_ft", "_fc", "_fm", "_select_columns", "_sort", "_dir",
                            "class_names", "_filters"})
OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "ct", "nct", "bg", "nbg", "blank",
                       "not_blank", "true", "false", "today", "ge_today", "gt_today", "le_today",
                       "lt_today", "between", "not_between"})                                   # §3.2
NEGATIVE_OPERATORS = frozenset({"ne", "nct", "nbg", "not_between"})
CUSTOM_FIELD_TYPES = {"string": "string", "text": "text", "uri": "uri", "url": "uri",
                      "date": "date", "datetime": "datetime", "date_time": "datetime",
                      "boolean": "boolean", "picklist": "picklist", "decimal": "decimal",
                      "percentage": "decimal", "iframe": "string"}                              # §6.3, R2.2
# The `data_type` values a public example shows (§6.3: boolean, picklist, iframe, decimal,
# percentage; R2.2: string, date). The rest of CUSTOM_FIELD_TYPES are the reference's guesses [I].
VERIFIED_CUSTOM_FIELD_TYPES = frozenset({"boolean", "picklist", "iframe", "decimal", "percentage", "string", "date"})
UNVERIFIED = "unverified_attributes"        # the switch behind made-up attribute names (R2.2, R2.3)
ACCEPTED_BODY_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")            # §1.3
QUEUE_TYPES = ("user", "unassigned", "shared")                                                  # §7


# --- wire values: dates, times, booleans ------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}
_MONTH_NUMBER.update({"sept": 9}, **{full: i + 1 for i, full in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"))})
# `Wed Jan 01 12:00:00 UTC 2020`, also `Fri Sept 7 14:00:00 UTC 2012` and full month names (§8)
_DEFAULT_DATETIME = re.compile(
    r"^(?:[a-z]{3,9}\.?,?\s+)?([a-z]{3,9})\.?\s+(\d{1,2}),?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+(?:(utc|gmt|z|[+-]\d{2}:?\d{2})\s+)?(\d{4})$", re.I)
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})\s+([a-z]{3,9})\.?,?\s+(\d{4})$", re.I)   # `%e %b %Y`
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def format_datetime(value: dt.datetime) -> str:
    """`Wed Jan 01 12:00:00 UTC 2020`: always UTC (§8). Built by hand because strftime's %a/%b
    follow the process locale."""
    v = value.astimezone(UTC)
    return f"{_DAYS[v.weekday()]} {_MONTHS[v.month - 1]} {v.day:02d} {v:%H:%M:%S} UTC {v.year}"


def format_date(value: dt.date) -> str:
    """`%e %b %Y`: the day is space-padded, e.g. ` 2 May 2010` (§8)."""
    return f"{value.day:2d} {_MONTHS[value.month - 1]} {value.year}"


def parse_bool(value: Any) -> bool:
    """true/t/on/1/yes/y in any case are true; everything else, "" included, is false (§4.1)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_WORDS


def parse_time(text: str) -> tuple[dt.datetime, bool]:
    """A date/time input in any documented form (§8): the default format, `%e %b %Y`, ISO 8601
    (date, datetime, Z/offsets/milliseconds) or epoch seconds. Returns (UTC datetime truncated to
    the second, date_only). Raises ValueError."""
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("empty")
    if text.isdigit():
        try:
            return dt.datetime.fromtimestamp(int(text), UTC), False
        except (OverflowError, OSError):
            raise ValueError(f"epoch {text} is out of range") from None
    match = _DEFAULT_DATETIME.match(text)
    if match:
        month, day, hour, minute, second, zone, year = match.groups()
        value = dt.datetime(int(year), _month(month), int(day), int(hour), int(minute),
                            int(second or 0), tzinfo=_zone(zone))
        return value.astimezone(UTC), False
    match = _DAY_MONTH_YEAR.match(text)
    if match:
        day, month, year = match.groups()
        return dt.datetime(int(year), _month(month), int(day), tzinfo=UTC), True
    if _ISO_DATE.match(text):
        return dt.datetime.fromisoformat(text).replace(tzinfo=UTC), True
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0), False


def _month(name: str) -> int:
    number = _MONTH_NUMBER.get(name.lower())
    if number is None:
        raise ValueError(f"unknown month {name!r}")
    return number


def _zone(zone: str | None) -> dt.timezone:
    if zone is None or zone.lower() in ("utc", "gmt", "z"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def snake_title(title: str) -> str:
    """The custom-field naming rule (§6.1): lower case, punctuation dropped, spaces to `_`
    ("Artificial Intelligence/Machine Learning" -> artificial_intelligencemachine_learning)."""
    text = re.sub(r"[^a-z0-9\s_]", "", title.strip().lower())
    return re.sub(r"[\s_]+", "_", text).strip("_") or "field"


def _class_snake(class_name: str) -> str:
    last = class_name.split("::")[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", last).lower()


def _humanize(name: str) -> str:
    words = re.sub(r"[\[\]_]+", " ", name).strip()
    return words[:1].upper() + words[1:]


# --- errors -------------------------------------------------------------------------------------------

class RequestError(Exception):
    """The whole request is refused (bad parameters): HTTP `status`, the API's error shape."""

    def __init__(self, message: str, status: int = 406, field: str = "base") -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


class RowFailure(Exception):
    """One object of a batch failed; `errors` is {field: [message]}, `messages` full sentences."""

    def __init__(self, errors: dict[str, list[str]], messages: list[str] | None = None) -> None:
        super().__init__(errors)
        self.errors = errors
        self.messages = messages or [f"{_humanize(f)} {m}" if f != "base" else m
                                     for f, ms in errors.items() for m in ms]

    @classmethod
    def stale(cls) -> "RowFailure":
        return cls({"lock_version": [STALE_MESSAGE]}, [STALE_MESSAGE])

    @classmethod
    def inaccessible(cls) -> "RowFailure":
        return cls({"id": [INACCESSIBLE_MESSAGE]}, [INACCESSIBLE_MESSAGE])


class NotFound(LookupError):
    """A Python-API / control-route lookup of a record that does not exist."""


# --- parameters -----------------------------------------------------------------------------------------

class Params:
    """The request's parameters in order, query string first then body, names percent-decoded
    (§1.2, §1.3). Scalars take the last value (as Rails does); arrays are the `name[]` values."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def last(self, *names: str) -> str | None:
        for key, value in reversed(self.pairs):
            if key in names:
                return value
        return None

    def scalar(self, name: str) -> str | None:
        """`name`, else the first `name[]` (the README once writes `_fm[]=or`)."""
        value = self.last(name)
        if value is None:
            array = self.values(name + "[]")
            value = array[0] if array else None
        return value

    def array(self, name: str) -> list[str]:
        """`name[]` values, else the single bracket-less form (`_ff=` with one filter, §3.2)."""
        return self.values(name + "[]") or self.values(name)

    def flag(self, *names: str) -> bool | None:
        value = self.last(*names)
        return None if value is None else parse_bool(value)


def read_params(request: Request, accept_json: bool = True) -> Params:
    """Merge query string and body: form-encoded or multipart (§1.3), and JSON when
    `accept_json` (issue #2; switch `accept_json_body`). GET bodies count too (§1.2). Raises
    RequestError (406) for an unreadable JSON body or a body of any other content type."""
    query = request.query_string.decode("utf-8", "replace")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    mimetype = request.mimetype or ""
    if mimetype == "multipart/form-data":
        return Params(pairs + list(request.form.items(multi=True)))
    body = request.get_data(cache=True)
    if not body:
        return Params(pairs)
    is_json = mimetype == "application/json" or mimetype.endswith("+json")
    if mimetype not in ACCEPTED_BODY_TYPES and not (is_json and accept_json):
        # §1.3 [V]: "Non-GET requests must send Content-Type: application/x-www-form-urlencoded".
        raise RequestError(f"Unacceptable request body content type {mimetype or '(none)'!r}: send "
                           "application/x-www-form-urlencoded (multipart/form-data for uploads)",
                           field="Content-Type")
    if is_json:
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise RequestError("A JSON request body must be an object of parameters", field="body")
            return Params(pairs + _flatten_json(document))
        except (ValueError, RecursionError):
            raise RequestError("The request body is not valid JSON (or is nested too deeply)", field="body") from None
    text = body.decode("utf-8", "replace")
    return Params(pairs + urllib.parse.parse_qsl(text, keep_blank_values=True))


def _flatten_json(document: dict) -> list[tuple[str, str]]:
    """A JSON object as form pairs: lists become `name[]` arrays, nested objects `name[sub]`."""
    out: list[tuple[str, str]] = []

    def emit(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                emit(f"{name}[{key}]", inner)
        elif isinstance(value, list):
            array = name if name.endswith("[]") else name + "[]"
            out.extend((array, _json_scalar(item)) for item in value)
        else:
            out.append((name, _json_scalar(value)))

    for key, value in document.items():
        if key == "_filter_json" and not isinstance(value, str):
            out.append((key, json.dumps(value)))
        else:
            emit(str(key), value)
    return out


def _json_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# --- schema -----------------------------------------------------------------------------------------------

@dataclass
class Column:
    """One attribute of a record type. `derive` makes it computed (from the record and the rest
    of the database); `listed` False keeps it out of "all columns" though it can be selected and
    filtered; `switch` names a config switch that must be on for the column to exist."""

    name: str
    datatype: str = "string"        # integer string text uri picklist boolean date datetime decimal json
    title: str = ""
    writable: bool = True
    derive: Callable[[dict], Any] | None = None
    listed: bool = True
    custom: bool = False
    max_length: int | None = None
    switch: str | None = None
    picklist_id: int | None = None   # a picklist custom field's list of values (switch picklist_values_enforced)

    def __post_init__(self) -> None:
        self.title = self.title or _humanize(self.name)
        if self.max_length is None and self.datatype in ("string", "uri", "picklist"):
            self.max_length = STRING_LIMIT
        if self.max_length is None and self.datatype == "text":
            self.max_length = TEXT_LIMIT

    def default(self) -> Any:
        return False if self.datatype == "boolean" else None


@dataclass
class Kind:
    """A record type and its table: records are dicts of stored values keyed by id."""

    key: str
    class_name: str
    controller: str
    human: str
    human_plural: str
    columns: dict[str, Column]
    ref_prefix: str | None = None
    queue_kind: str | None = None
    read_only: bool = False
    custom_fields: bool = False
    tables: tuple[str, ...] = ()
    validate: Callable[[dict, set | None], dict] | None = None
    after_write: Callable[..., None] | None = None
    rows: dict[int, dict] = field(default_factory=dict)
    next_id: int = 1
    in_id_order: bool = True
    reserved: set[str] = field(default_factory=set)

    def allocate(self, wanted: int | None = None) -> int:
        if wanted is None:
            wanted = self.next_id
        elif wanted in self.rows:
            raise ValueError(f"{self.key} id {wanted} already exists")
        elif wanted < self.next_id:      # a lower id after higher ones: dict order is no longer id order
            self.in_id_order = False
        self.next_id = max(self.next_id, wanted + 1)
        return wanted

    def in_order(self) -> Iterable[dict]:
        """Every record by ascending id (dict order, unless seeds inserted ids out of order)."""
        if self.in_id_order:
            return self.rows.values()
        return (self.rows[i] for i in sorted(self.rows))


def _columns(*groups: Iterable[Column]) -> dict[str, Column]:
    return {c.name: c for group in groups for c in group}


LOCATION_FIELDS = ("email", "telephone", "mobile", "fax", "street_address", "town",
                   "county_province_state", "postcode", "country", "alternate_email",
                   "alternate_telephone")


def _location(prefix: str) -> list[Column]:
    cols = [Column(f"{prefix}[{name}]", title=f"{_humanize(prefix)} {_humanize(name).lower()}")
            for name in LOCATION_FIELDS]
    cols.append(Column(f"{prefix}[email_address_undeliverable]", "boolean"))
    return cols


# --- filters ------------------------------------------------------------------------------------------------

def split_in_list(text: str) -> list[str]:
    """`a,b\\,c` -> ["a", "b,c"]: commas under eq mean IN (...), `\\,` is a literal comma (§3.2)."""
    parts, buf, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == ",":
            buf.append(",")
            i += 2
            continue
        if text[i] == ",":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(text[i])
        i += 1
    parts.append("".join(buf))
    return parts


def parse_range(text: str) -> tuple[str, str]:
    """`JSON([2023-12-01,2023-12-31])` (unquoted values allowed), `[1,5]` or `["a","b"]` (§3.2)."""
    body = text.strip()
    match = re.fullmatch(r"json\((.*)\)", body, re.I | re.S)
    if match:
        body = match.group(1).strip()
    try:
        value = json.loads(body)
    except ValueError:
        value = None
        if body.startswith("[") and body.endswith("]"):
            value = [part.strip().strip('"') for part in body[1:-1].split(",")]
    if not isinstance(value, list) or len(value) != 2:
        raise RequestError(f"between needs two values, e.g. JSON([a,b]); got {text!r}", field="_fc")
    return tuple(_json_scalar(v) if not isinstance(v, str) else v for v in value)  # type: ignore[return-value]


_FM_TOKEN = re.compile(r"\s*(?:(\d+)|(and|or|xor|not)\b|(!|\(|\)))", re.I)
_FM_MAX_DEPTH = 100


class MatchExpression:
    """A `_fm` boolean expression over 1-based filter numbers (§3.2): AND, OR, XOR, NOT/! and
    parentheses; precedence NOT > AND > XOR > OR (as in MySQL). Parses into nested tuples
    ("leaf", i) | ("not", node) | ("and"|"or"|"xor", [nodes]). Raises RequestError."""

    def __init__(self, text: str, count: int) -> None:
        self.text, self.count = text, count
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[str]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _FM_TOKEN.match(text, pos)
            if not match:
                raise self._error(f"unexpected {text[pos:].strip()[:10]!r}")
            number, word, symbol = match.groups()
            tokens.append(number or (word.lower() if word else symbol))
            pos = match.end()
        return tokens

    def _error(self, why: str) -> RequestError:
        return RequestError(f"Invalid filter match expression _fm={self.text!r}: {why}", field="_fm")

    def parse(self) -> tuple:
        if not self.tokens:
            raise self._error("empty")
        node = self._binary(0, 0)
        if self.pos != len(self.tokens):
            raise self._error(f"unexpected {self.tokens[self.pos]!r}")
        return node

    _LEVELS = ("or", "xor", "and")

    def _binary(self, level: int, depth: int) -> tuple:
        if level == len(self._LEVELS):
            return self._unary(depth)
        op = self._LEVELS[level]
        children = [self._binary(level + 1, depth)]
        while self._peek() == op:
            self.pos += 1
            children.append(self._binary(level + 1, depth))
        return children[0] if len(children) == 1 else (op, children)

    def _unary(self, depth: int) -> tuple:
        if depth > _FM_MAX_DEPTH:
            raise self._error("nested too deeply")
        token = self._peek()
        if token is None:
            raise self._error("ends too early")
        self.pos += 1
        if token in ("not", "!"):
            return ("not", self._unary(depth + 1))
        if token == "(":
            node = self._binary(0, depth + 1)
            if self._peek() != ")":
                raise self._error("missing ')'")
            self.pos += 1
            return node
        if token.isdigit():
            number = int(token)
            if not 1 <= number <= self.count:
                raise self._error(f"there is no filter {number} (filters are 1..{self.count})")
            return ("leaf", number - 1)
        raise self._error(f"unexpected {token!r}")

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None


@dataclass
class CompiledFilter:
    test: Callable[[dict], bool]
    ids: frozenset[int] | None = None      # `id eq …`: the only ids it can match


@dataclass
class Selection:
    """The filters of one request, compiled. `ids` narrows the scan when the expression pins the
    ids; `shows_deleted` is true when a filter mentions is_deleted (§3.2: hidden otherwise)."""

    test: Callable[[dict], bool] | None
    ids: frozenset[int] | None
    shows_deleted: bool
    count: int

    def accepts(self, record: dict) -> bool:
        if record.get("is_deleted") and not self.shows_deleted:
            return False
        return self.test is None or self.test(record)


def _build_test(node: tuple, filters: list[CompiledFilter]) -> Callable[[dict], bool]:
    kind = node[0]
    if kind == "leaf":
        return filters[node[1]].test
    if kind == "not":
        inner = _build_test(node[1], filters)
        return lambda r: not inner(r)
    tests = [_build_test(child, filters) for child in node[1]]
    if kind == "and":
        return lambda r: all(t(r) for t in tests)
    if kind == "or":
        return lambda r: any(t(r) for t in tests)
    return lambda r: sum(1 for t in tests if t(r)) % 2 == 1       # xor chains: odd number true


def _candidate_ids(node: tuple, filters: list[CompiledFilter]) -> frozenset[int] | None:
    """The ids a match can be among, when the expression pins them (saves a full-table scan)."""
    kind = node[0]
    if kind == "leaf":
        return filters[node[1]].ids
    if kind in ("not", "xor"):
        return None
    sets = [_candidate_ids(child, filters) for child in node[1]]
    if kind == "or":
        return None if any(s is None for s in sets) else frozenset().union(*sets)
    known = [s for s in sets if s is not None]
    return frozenset.intersection(*known) if known else None


def _is_blank(value: Any) -> bool:
    return value is None or value == ""


# --- the emulator ---------------------------------------------------------------------------------------------

@dataclass
class Context:
    """Who is asking and how: the acting user, session (if any) and the request's options."""

    user: dict
    mode: str                       # "api_key" | "session" | "python"
    params: Params
    session: dict | None = None
    application_name: str = ""
    strict: bool = False
    per_object: bool = False
    formats: dict = field(default_factory=dict)


class WorkbooksEmulator(Emulator):
    name = "workbooks"
    default_config = {
        "max_limit": 100,
        "limit_requires_start": False,
        "require_user_agent": True,
        "login_requires_client_and_version": True,
        "invalid_api_key_status": 401,
        "invalid_api_key_reason": "unrecognised_name_or_password",
        "bad_authenticity_token_status": 401,
        "session_idle_seconds": 8 * 3600,
        "reconnect_invalidates_old_session": True,
        "per_object_failure_top_success": False,
        "null_matches_negative_operators": False,
        "custom_field_pending_polls": 2,
        "users_endpoint": "admin/users",
        "assigned_to_name": False,
        "rate_limit_redirect_every": 0,
        "rate_limit_redirect_methods": ["GET", "PUT"],
        "rate_limit_redirect_delay": 0.0,
        "unverified_attributes": False,
        "custom_field_data_types": "verified",
        "failure_shape": "full",
        "unknown_filter_field": "ignore",
        "unfilterable_columns": [],
        "accept_json_body": True,
        "standard_string_max_length": STRING_LIMIT,
        "picklist_values_enforced": True,
        "email_validation": "api",
        "database_name": "Emulated Database",
        "logical_database_id": 1,
        "database_instance_id": 4242,
    }

    # --- state ---------------------------------------------------------------------------------------
    def reset_data(self) -> None:
        self.kinds: dict[str, Kind] = {}
        for kind in self._build_kinds():
            self.kinds[kind.key] = kind
        self.api_keys: dict[str, int] = {}           # key -> user id
        self.sessions: dict[str, dict] = {}          # session id -> session
        self.passwords: dict[int, str] = {}
        self.picklists: dict[int, list[str]] = {}     # picklist id -> its values (Python API only)
        self._limited_count = 0
        self._database_created = self._stamp_time()
        ctx = self._python_context(None)
        self.unassigned_queue_ids = {
            kind: self._create(self.kinds[kind], {"name": "Unassigned", "queue_type": "unassigned"},
                               ctx, [])["id"]
            for kind in ("person_queues", "organisation_queues")}
        admin = self.add_user("admin@example.com", "System Admin")
        self._admin_id = admin["id"]
        self.web_host: web_process.Host | None = None      # where /wp/ finds scripts (serve_web_processes)
        self.web_process_runs: list[dict] = []              # the last runs: path, exit code, stderr

    @property
    def database(self) -> dict:
        return {"name": self.config["database_name"], "id": self.config["logical_database_id"],
                "instance_id": self.config["database_instance_id"]}

    @property
    def admin(self) -> dict:
        return self._user_summary(self.kinds["users"].rows[self._admin_id])

    def _stamp_time(self) -> dt.datetime:
        """Now, at Workbooks' one-second resolution (§8)."""
        return self.now().replace(microsecond=0)

    # --- record types ----------------------------------------------------------------------------------
    def _build_kinds(self) -> list[Kind]:
        people = Kind("people", "Private::Crm::Person", "crm/people", "Person", "People",
                      self._person_columns(), ref_prefix="PERS", queue_kind="person_queues",
                      custom_fields=True, tables=("private_crm_party", "private_crm_person"))
        people.validate = lambda rec, changed: self._validate_party(people, rec, changed)
        orgs = Kind("organisations", "Private::Crm::Organisation", "crm/organisations", "Organisation",
                    "Organisations", self._organisation_columns(), ref_prefix="ORG",
                    queue_kind="organisation_queues", custom_fields=True,
                    tables=("private_crm_party", "private_crm_organisation"))
        orgs.validate = lambda rec, changed: self._validate_party(orgs, rec, changed)
        kinds = [people, orgs]
        for key, cls, controller, human in (
                ("person_queues", "Private::Crm::PersonQueue", "crm/person_queues", "Person Queue"),
                ("organisation_queues", "Private::Crm::OrganisationQueue", "crm/organisation_queues",
                 "Organisation Queue")):
            queue = Kind(key, cls, controller, human, human + "s", self._queue_columns(),
                         tables=("private_crm_queue",))
            queue.validate = self._validate_queue
            kinds.append(queue)
        users = Kind("users", "Private::User", "admin/users", "User", "Users", _columns(
            self._common_columns(), [Column("login_name"), Column("person_name"), Column("timezone"),
                                     Column("date_time_locale"), Column("is_enabled", "boolean")]),
                     read_only=True, tables=("private_user",))
        api_data = Kind("api_data", "Private::Automation::ApiData", "automation/api_data", "API Data",
                        "API Data", _columns(self._common_columns(), [
                            Column("key"), Column("key2"),
                            Column("value", "text", max_length=LONG_TEXT_LIMIT)]),
                        tables=("private_automation_api_data",))
        api_data.validate = self._validate_api_data
        custom = Kind("custom_fields", "Private::CustomField", "admin/custom_fields", "Custom Field",
                      "Custom Fields", self._custom_field_columns(), tables=("private_custom_field",))
        custom.validate = self._validate_custom_field
        custom.after_write = self._custom_field_written
        kinds += [users, api_data, custom]
        for key, cls, controller, human in (
                ("scheduled_actions", "Private::Automation::ScheduledAction", "automation/scheduled_actions",
                 "Scheduled Process"),
                ("web_actions", "Private::Automation::WebAction", "automation/web_actions", "Web Process")):
            kinds.append(Kind(key, cls, controller, human, human + "es", self._action_columns(),
                              tables=("private_automation_action",)))
        return kinds

    def _common_columns(self, ref: bool = False) -> list[Column]:
        """§5.1: the attributes every record has."""
        cols = [Column("id", "integer", writable=False), Column("lock_version", "integer", writable=False),
                Column("type", writable=False),
                Column("created_at", "datetime", writable=False), Column("updated_at", "datetime", writable=False),
                Column("created_by", "integer", writable=False), Column("updated_by", "integer", writable=False),
                Column("created_through", writable=False), Column("created_through_reference"),
                Column("is_deleted", "boolean", writable=False)]
        for who in ("created_by", "updated_by"):
            for attr in ("person_name", "login_name"):
                cols.append(Column(f"{who}_user[{attr}]", writable=False,
                                   derive=lambda r, w=who, a=attr: self._user_attr(r.get(w), a)))
        for can in ("_can_read", "_can_modify", "_can_delete", "_can_chown", "_can_chaccess"):
            cols.append(Column(can, "boolean", writable=False, derive=lambda r: True))
        if ref:
            cols.append(Column("object_ref", writable=False))
            cols.append(Column("object_url", "uri", writable=False,
                               derive=lambda r: f"{self.base_url}/link/{r.get('object_ref')}"))
        return cols

    def _ownership_columns(self, queue_kind: str) -> list[Column]:
        """§5.2/§7: `assigned_to` is a queue id; the queue and its owner show as related columns."""
        queue = lambda r: self.kinds[queue_kind].rows.get(r.get("assigned_to"))   # noqa: E731
        owner = lambda r: (queue(r) or {}).get("owner_id")                         # noqa: E731
        return [
            Column("assigned_to", "integer"),
            Column("assigned_to_name", writable=False, switch="assigned_to_name",
                   derive=lambda r: (queue(r) or {}).get("name")),
            Column("queue_entry[queue_id]", "integer", writable=False, derive=lambda r: r.get("assigned_to")),
            Column("queue_entry[queue[name]]", writable=False, derive=lambda r: (queue(r) or {}).get("name")),
            Column("queue_entry[updated_at]", "datetime", writable=False, derive=lambda r: r.get("__queued_at")),
            Column("owner_id", "integer", writable=False, derive=owner),
            Column("owner[person_name]", writable=False, derive=lambda r: self._user_attr(owner(r), "person_name")),
            Column("owner[login_name]", writable=False, derive=lambda r: self._user_attr(owner(r), "login_name")),
        ]

    def _person_columns(self) -> dict[str, Column]:
        names = ["name", "person_first_name", "person_middle_name", "person_last_name",
                 "person_personal_title", "person_salutation", "person_suffix", "person_job_title",
                 "person_job_role", "alternate_names"]
        strings = ["website", "linkedin_url", "twitter_url", "facebook_url", "skype_name", "photo_url",
                   "image_url", "logo_url", "industry", "lead_source_type", "categories",
                   "preferred_language", "organisation_annual_revenue", "organisation_num_employees"]
        flags = ["no_email_soliciting", "no_phone_soliciting", "no_post_soliciting", "email_opt_in",
                 "gdpr_compliant", "sync_with_mailer", "imported", "watched"]
        employer = lambda r: self.kinds["organisations"].rows.get(r.get("employer_link"))   # noqa: E731
        return _columns(
            self._common_columns(ref=True),
            [Column(n) for n in names],
            [Column("employer_link", "integer"),
             Column("employer_name", derive=lambda r: (employer(r) or {}).get("name") if r.get("employer_link")
                    else r.get("employer_name")),
             Column("employer[name]", writable=False, listed=False,
                    derive=lambda r: (employer(r) or {}).get("name")),
             Column("descriptor", writable=False, derive=self._descriptor),
             Column("main_location_id", "integer", writable=False, derive=lambda r: r.get("id"))],
            _location("main_location"), _location("home_location"),
            [Column(n, "uri" if n.endswith("url") or n == "website" else "string") for n in strings],
            [Column(n, "boolean") for n in flags],
            [Column("biography", "text")],
            self._ownership_columns("person_queues"))

    def _organisation_columns(self) -> dict[str, Column]:
        strings = ["industry", "organisation_annual_revenue", "organisation_category",
                   "organisation_company_number", "organisation_num_employees", "organisation_vat_number",
                   "currency"]
        return _columns(
            self._common_columns(ref=True),
            [Column("name"), Column("website", "uri"), Column("linkedin_url", "uri")],
            [Column(n) for n in strings],
            _location("main_location"),
            [Column(n, "boolean") for n in ("no_email_soliciting", "no_phone_soliciting", "no_post_soliciting")],
            [Column("description", "text")],
            self._ownership_columns("organisation_queues"))

    def _queue_columns(self) -> dict[str, Column]:
        owner = lambda r, attr: self._user_attr(r.get("owner_id"), attr)   # noqa: E731
        return _columns(self._common_columns(), [
            Column("name"), Column("description", "text"), Column("queue_type"), Column("owner_id", "integer"),
            Column("owner[person_name]", writable=False, derive=lambda r: owner(r, "person_name")),
            Column("owner[login_name]", writable=False, derive=lambda r: owner(r, "login_name")),
        ])

    def _custom_field_columns(self) -> dict[str, Column]:
        """§6.3 / R2.2: the verified attributes; `is_hidden`, `is_required` and `is_read_only` are
        made-up names (R2.2 "still open") that exist only with the switch `unverified_attributes`."""
        flags = ["is_searchable", "is_indexed", "default_value_boolean", "show_on_tab", "will_modify_record"]
        guessed = ["is_hidden", "is_required", "is_read_only"]
        return _columns(self._common_columns(), [
            Column("title"), Column("name"), Column("description", "text"), Column("resource_type"),
            Column("data_type"), Column("value_column_name", writable=False), Column("status", writable=False),
            Column("picklist_id", "integer"), Column("decimal_places", "integer"), Column("string_width", "integer"),
            Column("linked_url", "uri"), Column("default_height", "integer"), Column("min_height", "integer"),
        ], [Column(n, "boolean") for n in flags],
            [Column(n, "boolean", switch=UNVERIFIED) for n in guessed])

    def _action_columns(self) -> dict[str, Column]:
        """§9 / R2.3: the verified fields; the schedule fields are freely modelled names that exist
        only with the switch `unverified_attributes` (R2.3: "no public source names" them)."""
        return _columns(self._common_columns(), [
            Column("title"), Column("name"), Column("description", "text"), Column("script_id", "integer"),
            Column("script_name"), Column("web_identifier"), Column("authenticated_run_as", "integer"),
            Column("log_level"), Column("log_level_expiry", "datetime"),
        ], [Column(name, datatype, switch=UNVERIFIED) for name, datatype in (
            ("frequency_minutes", "integer"), ("enabled", "boolean"), ("timeout_seconds", "integer"),
            ("process_channel", "string"), ("last_run_at", "datetime"), ("next_run_at", "datetime"),
            ("parameters", "text"))])

    def _column(self, kind: Kind, name: str) -> Column | None:
        """The column as it exists now (switch-dependent columns may be absent)."""
        col = kind.columns.get(name)
        if col is None or (col.switch and not self.config.get(col.switch)):
            return None
        return col

    def _listed(self, kind: Kind) -> list[Column]:
        return [c for c in kind.columns.values() if c.listed and (not c.switch or self.config.get(c.switch))]

    # --- derived values ------------------------------------------------------------------------------------
    def _user_by_login(self, login_name: str) -> dict | None:
        wanted = str(login_name).strip().lower()
        return next((u for u in self.kinds["users"].rows.values()
                     if str(u.get("login_name", "")).lower() == wanted), None)

    def _user_attr(self, user_id: Any, attr: str) -> Any:
        user = self.kinds["users"].rows.get(user_id) if user_id is not None else None
        return user.get(attr) if user else None

    def _descriptor(self, rec: dict) -> str | None:
        name = rec.get("name")
        employer = self.kinds["organisations"].rows.get(rec.get("employer_link"))
        if employer and name:
            return f"{name} - {employer.get('name')}"
        return name

    def _getter(self, kind: Kind, col: Column) -> Callable[[dict], Any]:
        if col.derive is not None:
            return col.derive
        name = col.name
        if name == "type":
            class_name = kind.class_name
            return lambda r: class_name
        if col.datatype == "boolean":
            return lambda r: bool(r.get(name))
        return lambda r: r.get(name)

    # --- rendering ------------------------------------------------------------------------------------------
    def _render_value(self, col: Column, value: Any, formats: dict) -> Any:
        if value is None:
            # §6.2 [O]: unset booleans read false, unset picklists "", everything else null
            return False if col.datatype == "boolean" else ("" if col.datatype == "picklist" else None)
        if isinstance(value, dt.datetime):
            return _strftime(value, formats.get("datetime")) if formats.get("datetime") else format_datetime(value)
        if isinstance(value, dt.date):
            return _strftime(value, formats.get("date")) if formats.get("date") else format_date(value)
        if isinstance(value, Decimal):
            return str(value)
        return value

    def _render(self, kind: Kind, rec: dict, columns: list[str] | None = None,
                formats: dict | None = None) -> dict:
        """A record as the API shows it: all listed columns, or exactly `columns` (unknown ones
        null, §3.3)."""
        formats = formats or {}
        out: dict[str, Any] = {}
        if columns is None:
            for col in self._listed(kind):
                out[col.name] = self._render_value(col, self._getter(kind, col)(rec), formats)
            return out
        for name in columns:
            col = self._column(kind, name)
            out[name] = None if col is None else self._render_value(col, self._getter(kind, col)(rec), formats)
        return out

    # --- coercion of input values ----------------------------------------------------------------------------
    def _coerce(self, col: Column, value: Any) -> Any:
        """A wire (or Python) value as stored for `col`. Raises ValueError(message)."""
        kind = col.datatype
        if kind == "boolean":
            return parse_bool(value) if value is not None else False
        if value is None or (isinstance(value, str) and value.strip() == "" and kind != "text"
                             and kind not in ("string", "uri", "picklist")):
            return None
        if kind == "integer":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int):
                return value
            if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
                return int(value)
            raise ValueError("is not a number")
        if kind == "decimal":
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise ValueError("is not a number") from None
            if not number.is_finite():
                raise ValueError("is not a number")
            return number
        if kind in ("date", "datetime"):
            return self._coerce_time(kind, value)
        if kind == "json":
            return value
        text = value if isinstance(value, str) else str(value)
        if kind == "text":
            if col.max_length and len(text.encode("utf-8")) > col.max_length:
                raise ValueError(f"is too long (maximum is {col.max_length} bytes)")
        else:
            limit = self._string_limit(col)
            if limit and len(text) > limit:
                raise ValueError(f"is too long (maximum is {limit} characters)")
        return text

    def _string_limit(self, col: Column) -> int | None:
        """§6.2's 255 for the string datatype; which standard fields are strings is [I] (switch
        standard_string_max_length)."""
        if not col.custom and col.datatype in ("string", "uri") and col.max_length == STRING_LIMIT:
            return self.config["standard_string_max_length"] or None
        return col.max_length

    def _check_content(self, col: Column, value: Any, through_api: bool) -> None:
        """What a field refuses beyond its type (raises ValueError): an email that is not an
        address (switch email_validation), a value outside the field's picklist (switch
        picklist_values_enforced)."""
        if value is None or value == "":
            return
        mode = self.config["email_validation"]
        if _is_email_column(col) and (mode == "always" or (mode == "api" and through_api)):
            if not _valid_email(str(value)):
                raise ValueError("is not a valid email address")
        values = self.picklists.get(col.picklist_id) if col.picklist_id is not None else None
        if values is not None and self.config["picklist_values_enforced"] and value not in values:
            raise ValueError("is not included in the list")

    @staticmethod
    def _coerce_time(kind: str, value: Any) -> dt.date | dt.datetime:
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            return value.date() if kind == "date" else value.replace(microsecond=0)
        if isinstance(value, dt.date):
            return value if kind == "date" else dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, (int, float)):
            value = str(int(value))
        try:
            parsed, _ = parse_time(str(value))
        except (ValueError, OverflowError):
            raise ValueError("is not a valid date" if kind == "date" else "is not a valid date and time") from None
        return parsed.date() if kind == "date" else parsed

    # --- validation -----------------------------------------------------------------------------------------
    def _validate_party(self, kind: Kind, rec: dict, changed: set | None) -> dict:
        errors: dict[str, list[str]] = {}
        touched = (lambda name: changed is None or name in changed)   # noqa: E731
        if touched("name") and _is_blank((rec.get("name") or "").strip()):
            errors["name"] = ["can't be blank"]
        link = rec.get("employer_link")
        if touched("employer_link") and link is not None:
            org = self.kinds["organisations"].rows.get(link)
            if org is None or org.get("is_deleted"):
                errors["employer_link"] = ["is not a valid Organisation"]
        queue_id = rec.get("assigned_to")
        if touched("assigned_to"):
            queue = self.kinds[kind.queue_kind].rows.get(queue_id) if queue_id is not None else None
            if queue is None or queue.get("is_deleted"):
                errors["assigned_to"] = ["is not a valid queue"]
        return errors

    def _validate_queue(self, rec: dict, changed: set | None) -> dict:
        errors: dict[str, list[str]] = {}
        if _is_blank((rec.get("name") or "").strip()):
            errors["name"] = ["can't be blank"]
        if rec.get("queue_type") not in QUEUE_TYPES:
            errors["queue_type"] = [f"is not one of {', '.join(QUEUE_TYPES)}"]
        owner = rec.get("owner_id")
        if owner is not None and owner not in self.kinds["users"].rows:
            errors["owner_id"] = ["is not a valid user"]
        return errors

    @staticmethod
    def _validate_api_data(rec: dict, changed: set | None) -> dict:
        return {"key": ["can't be blank"]} if _is_blank(rec.get("key")) else {}

    def _validate_custom_field(self, rec: dict, changed: set | None) -> dict:
        errors: dict[str, list[str]] = {}
        if _is_blank((rec.get("title") or "").strip()):
            errors["title"] = ["can't be blank"]
        if changed is None:      # create
            target = self._kind_by_class(rec.get("resource_type"))
            if target is None or not target.custom_fields:
                errors["resource_type"] = ["is not a record type that can have custom fields"]
            if str(rec.get("data_type") or "").lower() not in CUSTOM_FIELD_TYPES:
                errors["data_type"] = [f"is not one of {', '.join(sorted(CUSTOM_FIELD_TYPES))}"]
        else:
            for fixed in ("resource_type", "data_type"):
                if fixed in changed:
                    errors[fixed] = ["cannot be changed"]
        return errors

    # --- custom fields ------------------------------------------------------------------------------------------
    def _custom_field_written(self, new: dict, old: dict | None, undo: list, options: dict) -> None:
        """Creating a field adds the column (now, or after the pending polls); renaming retitles
        it; deleting removes it (§6.1, §6.3)."""
        target = self._kind_by_class(new["resource_type"])
        if old is None:
            column_name = self._custom_column_name(target, new["title"], new["id"])
            new["value_column_name"] = column_name
            new["data_type"] = str(new["data_type"]).lower()
            new.setdefault("name", new["title"])
            target.reserved.add(column_name)
            undo.append(lambda: target.reserved.discard(column_name))
            polls = int(self.config["custom_field_pending_polls"] or 0)
            if options.get("asynchronous_cf") and polls > 0:
                new["status"] = "Pending"
                new["__polls_left"] = polls
            else:
                new["status"] = "Available"
                self._activate_custom_column(target, new, undo)
            return
        column = target.columns.get(new["value_column_name"])
        if new.get("is_deleted") and column is not None:
            del target.columns[column.name]
            undo.append(lambda: target.columns.__setitem__(column.name, column))
        elif column is not None and new.get("title") != old.get("title"):
            previous = column.title
            column.title = new["title"]
            undo.append(lambda: setattr(column, "title", previous))

    def _custom_column_name(self, target: Kind, title: str, field_id: int) -> str:
        """`cf_<record type>_<snake title>`, the field id appended on a collision (§6.1)."""
        base = f"cf_{_class_snake(target.class_name)}_{snake_title(title)}"
        taken = set(target.columns) | target.reserved
        if base not in taken:
            return base
        for n in itertools.count():
            candidate = f"{base}_{field_id}" + (f"_{n}" if n else "")
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    def _activate_custom_column(self, target: Kind, definition: dict, undo: list) -> None:
        datatype = CUSTOM_FIELD_TYPES[definition["data_type"]]
        column = Column(definition["value_column_name"], datatype, title=definition["title"], custom=True,
                        picklist_id=definition.get("picklist_id") if datatype == "picklist" else None)
        target.columns[column.name] = column
        undo.append(lambda: target.columns.pop(column.name, None))

    def _tick_pending_custom_fields(self) -> None:
        """One read of admin/custom_fields: each pending field counts it down, then becomes
        Available and its column appears (§6.3 `_asynchronous_cf`)."""
        table = self.kinds["custom_fields"]
        for cf_id, rec in list(table.rows.items()):
            if rec.get("status") != "Pending" or rec.get("is_deleted"):
                continue
            if rec.get("__polls_left", 0) > 0:
                table.rows[cf_id] = {**rec, "__polls_left": rec["__polls_left"] - 1}
            else:
                table.rows[cf_id] = {**rec, "status": "Available", "__polls_left": 0}
                self._activate_custom_column(self._kind_by_class(rec["resource_type"]), rec, [])

    def _kind_by_class(self, class_name: Any) -> Kind | None:
        return next((k for k in self.kinds.values() if k.class_name == class_name), None)

    # --- create / update / delete (shared by the API and the Python API) -------------------------------
    def _create(self, kind: Kind, values: dict, ctx: Context, undo: list, raw: dict | None = None,
                options: dict | None = None) -> dict:
        rec: dict[str, Any] = {}
        if kind.queue_kind:
            rec["assigned_to"] = self._default_queue(kind, ctx.user)
        rec.update(values)
        self._derive_names(kind, rec, set(values), None)
        errors = kind.validate(rec, None) if kind.validate else {}
        if errors:
            raise RowFailure(errors)
        now = self._stamp_time()
        raw = dict(raw or {})
        new_id = kind.allocate(raw.pop("id", None))
        rec.update(id=new_id, lock_version=0, created_at=now, updated_at=now, created_by=ctx.user["id"],
                   updated_by=ctx.user["id"], created_through=ctx.application_name, is_deleted=False)
        if kind.ref_prefix:
            rec["object_ref"] = f"{kind.ref_prefix}-{new_id}"
        if kind.queue_kind:
            rec["__queued_at"] = now
        rec.update(raw)
        kind.rows[new_id] = rec
        undo.append(lambda: kind.rows.pop(new_id, None))
        if kind.after_write:
            kind.after_write(rec, None, undo, options or {})
        return rec

    def _update(self, kind: Kind, rec: dict, values: dict, ctx: Context, undo: list,
                options: dict | None = None) -> tuple[dict, bool]:
        """Apply `values`; lock_version and updated_at move only on a real change (§4.3)."""
        new = {**rec, **values}
        touched = self._derive_names(kind, new, set(values), rec)
        changed = {k for k in touched if self._stored(kind, new, k) != self._stored(kind, rec, k)}
        if not changed:
            return rec, False
        errors = kind.validate(new, changed) if kind.validate else {}
        if errors:
            raise RowFailure(errors)
        self._stamp_change(new, ctx)
        if "assigned_to" in changed:
            new["__queued_at"] = new["updated_at"]
        self._replace(kind, rec, new, undo)
        if kind.after_write:
            kind.after_write(new, rec, undo, options or {})
        return new, True

    def _soft_delete(self, kind: Kind, rec: dict, ctx: Context, undo: list) -> dict:
        """Deletion hides the record (§3.2 `is_deleted`); it still counts as a modification."""
        new = {**rec, "is_deleted": True}
        self._stamp_change(new, ctx)
        self._replace(kind, rec, new, undo)
        if kind.after_write:
            kind.after_write(new, rec, undo, {})
        return new

    def _stamp_change(self, new: dict, ctx: Context) -> None:
        """§12 item 6: every real modification moves lock_version, updated_at and updated_by."""
        new["lock_version"] = new.get("lock_version", 0) + 1
        new["updated_at"] = self._stamp_time()
        new["updated_by"] = ctx.user["id"]

    @staticmethod
    def _replace(kind: Kind, old: dict, new: dict, undo: list) -> None:
        kind.rows[new["id"]] = new
        undo.append(lambda: kind.rows.__setitem__(old["id"], old))

    @staticmethod
    def _stored(kind: Kind, rec: dict, name: str) -> Any:
        col = kind.columns.get(name)
        return rec.get(name, col.default() if col else None)

    @staticmethod
    def _derive_names(kind: Kind, rec: dict, given: set, old: dict | None) -> set:
        """A Person's `name` follows its parts unless given; a name alone is split into first and
        last names on create. Returns the keys touched."""
        touched = set(given)
        if kind.key != "people":
            return touched
        parts = ("person_first_name", "person_middle_name", "person_last_name")
        if "name" not in given and given & set(parts):
            rec["name"] = " ".join(p for p in (rec.get(n) for n in parts) if p) or None
            touched.add("name")
        elif old is None and "name" in given and not given & set(parts) and rec.get("name"):
            first, _, last = str(rec["name"]).strip().rpartition(" ")
            rec["person_first_name"], rec["person_last_name"] = first or None, last
            touched |= {"person_first_name", "person_last_name"}
        return touched

    def _default_queue(self, kind: Kind, user: dict) -> int:
        """New records go to the acting user's own queue (§7), else to Unassigned."""
        own = user.get("__person_queue_id" if kind.queue_kind == "person_queues" else "__organisation_queue_id")
        return own or self.unassigned_queue_ids[kind.queue_kind]

    # --- HTTP: dispatch ----------------------------------------------------------------------------------------
    _SHOW = re.compile(r"^/([a-z_][a-z0-9_/]*)/(\d+)\.api$")
    _INDEX = re.compile(r"^/([a-z_][a-z0-9_/]*)\.api$")

    def dispatch(self, request: Request) -> Response:
        delayed = request.path.startswith(DELAY_PREFIX + "/")
        path = request.path[len(DELAY_PREFIX):] if delayed else request.path
        if path == "/login" and request.method in ("GET", "HEAD"):
            return _html_page("Workbooks", "<h1>Log in to Workbooks</h1>")
        try:
            params = read_params(request, accept_json=bool(self.config["accept_json_body"]))
            if path == "/login.api":
                return self._login(request, params)
            if path in ("/logout", "/logout.api"):
                return self._logout(request)
            return self._api(request, params, path, delayed)
        except RequestError as exc:
            return self._error(exc.status, exc.message, exc.field)

    def delaying_url(self, request: Request) -> str:
        """§11: the "delaying URL" a rate-limited request is redirected to (its shape is not
        published): /delay + the request's own path and query string."""
        query = request.query_string.decode("latin-1")
        path = request.path if request.path.startswith(DELAY_PREFIX + "/") else DELAY_PREFIX + request.path
        return path + (f"?{query}" if query else "")

    def delay_for(self, request: Request) -> float:
        """§11: the delaying URL holds the request (switch rate_limit_redirect_delay)."""
        if request.path.startswith(DELAY_PREFIX + "/"):
            return float(self.config.get("rate_limit_redirect_delay") or 0)
        return 0.0

    def _api(self, request: Request, params: Params, path: str, delayed: bool = False) -> Response:
        show = self._SHOW.match(path)
        index = self._INDEX.match(path)
        controller = (show or index).group(1) if (show or index) else None
        kind = self._kind_for_controller(controller) if controller else None
        if controller != "metadata/types" and kind is None:
            return self._error(404, f"No route matches {path}")
        method = (params.scalar("_method") or request.method).upper()
        if not delayed and self._rate_limited(method):
            return Response("", status=302, headers={"Location": self.delaying_url(request)})
        ctx = self._authenticate(request, params)
        if isinstance(ctx, Response):
            return ctx
        if controller == "metadata/types":
            response = self._metadata(ctx) if method == "GET" else self._error(405, "Method not allowed")
        elif show:
            response = self._show(kind, int(show.group(2)), ctx) if method == "GET" else \
                self._error(405, "Method not allowed")
        elif method == "GET":
            response = self._read(kind, ctx)
        elif method in ("PUT", "POST", "DELETE"):
            response = self._write(kind, ctx, method)
        else:
            response = self._error(405, f"Method {method} not allowed")
        if ctx.session is not None:      # bindings re-read the cookie from every response (§2.2)
            response.set_cookie(SESSION_COOKIE, ctx.session["id"], path="/", httponly=True)
        return response

    # --- HTTP: web processes (§2.4, §2.5; tools/emulators/web_process.py) -------------------------------------
    def _handle(self, request: Request) -> Response:
        if request.path.startswith(web_process.ROUTE):
            return self._web_process(request)
        return super()._handle(request)

    def _web_process(self, request: Request) -> Response:
        """One request to a web process: counted like any request, its invocation prepared under
        the lock, and the script run outside it (it calls this emulator back over HTTP)."""
        with self.lock:
            self.counts[f"{request.method} {request.path}"] += 1
            self.total_requests += 1
            prepared = self._web_invocation(request)
        if isinstance(prepared, Response):
            return prepared
        script, params, timeout = prepared
        code, stdout, stderr = web_process.run(script, params, timeout=timeout, cwd=self.web_host.bundle)
        with self.lock:
            self.web_process_runs = (self.web_process_runs + [
                {"path": request.path, "method": request.method, "exit_code": code, "stderr": stderr[-4000:]}])[-50:]
        return web_process.response(stdout, code)

    def _web_invocation(self, request: Request):
        identifier = request.path[len(web_process.ROUTE):].strip("/")
        action = next((r for r in self.kinds["web_actions"].rows.values()
                       if not r.get("is_deleted") and r.get("web_identifier") == identifier), None)
        if action is None:
            return web_process.plain_page(404, "No web process has this address.")
        if self.web_host is None:
            return web_process.plain_page(503, "No plugin bundle is registered (POST /_emulator/web_processes).")
        script = self.web_host.script(action.get("script_name") or "")
        if script is None:
            return web_process.plain_page(500, "The web process's script is not in the plugin bundle.")
        users = self.kinds["users"].rows
        run_as = users.get(action.get("authenticated_run_as")) or users[self._admin_id]
        session = self._new_session(run_as, None, Params([("_application_name", "Process Engine")]))
        params = {**self.web_host.parameters, **_parameters_of(action),
                  "_workbooks_service": self.base_url, "_workbooks_protocol": self.base_url.split(":", 1)[0],
                  "_workbooks_session_id": session["id"], "_workbooks_username": run_as["login_name"],
                  "_workbooks_logical_database_id": session["logical_database_id"],
                  "_workbooks_api_logging_key": secrets.token_hex(8),
                  "_workbooks_client_name": "Workbooks Process Engine",
                  **web_process.request_params(request)}
        timeout = action.get("timeout_seconds") if self.config[UNVERIFIED] else None
        return script, params, int(timeout or self.web_host.timeout)

    def serve_web_processes(self, bundle, parameters: dict | None = None,
                            timeout: int = web_process.DEFAULT_TIMEOUT) -> None:
        """Serve the web processes of the plugin bundle in folder `bundle` under /wp/."""
        with self.lock:
            self.web_host = web_process.Host(Path(bundle), dict(parameters or {}), int(timeout))

    def _kind_for_controller(self, controller: str) -> Kind | None:
        users_path = self.config.get("users_endpoint")
        for kind in self.kinds.values():
            path = users_path if kind.key == "users" else kind.controller
            if path and path.strip("/") == controller:
                return kind
        return None

    def _rate_limited(self, method: str) -> bool:
        """§11: a delaying redirect on every Nth request of the switched methods (switches
        rate_limit_redirect_every, rate_limit_redirect_methods)."""
        every = int(self.config.get("rate_limit_redirect_every") or 0)
        methods = {str(m).upper() for m in self.config.get("rate_limit_redirect_methods") or ()}
        if every <= 0 or method not in methods:
            return False
        self._limited_count += 1
        return self._limited_count % every == 0

    # --- HTTP: answers ----------------------------------------------------------------------------------------
    def _json(self, payload: Any, status: int = 200, params: Params | None = None) -> Response:
        pretty = params is not None and params.last("json") == "pretty"
        return Response(json.dumps(payload, indent=2 if pretty else None), status=status,
                        content_type="application/json; charset=utf-8")

    def _error(self, status: int, message: str, field: str = "base") -> Response:
        return self._json({"success": False, "errors": {"[]": {field: message}}, "failures": [message],
                           "flash": message}, status)

    def _failure(self, status: int, reason: str, message: str, **extra: Any) -> Response:
        """Login-style failure (§2.2): failure_reason + failure_message, no WWW-Authenticate (R2.4)."""
        return self._json({"success": False, "failure_reason": reason, "failure_message": message, **extra},
                          status)

    def error_response(self, status: int, message: str) -> Response:
        """Injected faults and unexpected errors, in the API's shapes (§2.2, §2.3, §11)."""
        if status == 302:
            return _redirect_to_login()
        if status == 401:
            return self._failure(401, "session_expired", message)
        if status == 403:
            return self._failure(403, "no_permission_for_api", message)
        if status >= 500:
            reference = secrets.token_hex(6).upper()
            return self._json({"success": False, "errors": {"[]": {"base": message}}, "failures": [message],
                               "exception_reference": reference}, status)
        return self._error(status, message)

    # --- authentication ----------------------------------------------------------------------------------------
    def _authenticate(self, request: Request, params: Params) -> Context | Response:
        """§2.1: `api_key` on the request, else the Workbooks-Session cookie (302 when invalid)."""
        key = params.last("api_key")
        if key is not None:
            if self.config["require_user_agent"] and not request.headers.get("User-Agent"):
                return self._failure(403, "user_agent_required", "A User-Agent header is required")
            user = self._user_for_key(key)
            if user is None:
                return self._bad_api_key()
            app = params.last("_application_name", "application_name") or _first_word(request)
            return self._context(user, "api_key", params, None, app)
        session = self._live_session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return _redirect_to_login()
        session["last_used"] = self.now()
        user = self.kinds["users"].rows[session["user_id"]]
        ctx = self._context(user, "session", params, session, session["application_name"])
        if (params.scalar("_method") or request.method).upper() != "GET":
            token = params.last("_authenticity_token")
            if token != session["authenticity_token"]:
                return self._failure(int(self.config["bad_authenticity_token_status"]), "invalid_authenticity_token",
                                     "_authenticity_token is missing or does not match the session")
        return ctx

    def _context(self, user: dict, mode: str, params: Params, session: dict | None, app: str) -> Context:
        per_object = params.flag("_per_object_transactions")
        if per_object is None:
            per_object = bool(session and session.get("per_object"))
        formats = dict((session or {}).get("formats", {}))
        for kind in ("date", "datetime"):
            value = params.last(f"_json_output_{kind}_format")
            if value:
                formats[kind] = value
        return Context(user=user, mode=mode, params=params, session=session, application_name=app,
                       strict=bool(session and session.get("strict")), per_object=per_object, formats=formats)

    def _user_for_key(self, key: str) -> dict | None:
        user = self.kinds["users"].rows.get(self.api_keys.get(key))
        if user is None or not user.get("is_enabled") or user.get("is_deleted"):
            return None
        return user

    def _bad_api_key(self) -> Response:
        status = int(self.config["invalid_api_key_status"])
        if status == 302:
            return _redirect_to_login()
        return self._failure(status, self.config["invalid_api_key_reason"], "The API key was not recognised")

    def _live_session(self, session_id: str | None) -> dict | None:
        session = self.sessions.get(session_id) if session_id else None
        if session is None:
            return None
        if self._session_expired(session):
            self.sessions.pop(session_id, None)
            return None
        return session

    def _session_expired(self, session: dict) -> bool:
        idle = (self.now() - session["last_used"]).total_seconds()
        return idle > float(self.config["session_idle_seconds"])

    def _login(self, request: Request, params: Params) -> Response:
        """§2.2: the three credential forms; the reconnect issues a new session id (§2.1)."""
        if self.config["require_user_agent"] and not request.headers.get("User-Agent"):
            return self._failure(403, "user_agent_required", "A User-Agent header is required")
        if self.config["login_requires_client_and_version"]:
            version = params.last("api_version", "_api_version")
            if params.last("client") != "api" or version != "1":
                return self._failure(406, "api_version_required", "login.api needs client=api and api_version=1")
        username = params.last("username")
        key = params.last("api_key")
        database_id = params.last("logical_database_id")
        if key is not None:
            user = self._user_for_key(key)
            if user is None:
                return self._bad_api_key()
            old_session = None
        elif username is not None and params.last("session_id") is not None:
            user, old_session, failure = self._reconnect(username, params.last("session_id"), database_id)
            if failure is not None:
                return failure
        elif username is not None:
            user = self._user_by_login(username)
            if user is None or self.passwords.get(user["id"]) != params.last("password"):
                return self._failure(401, "unrecognised_name_or_password", "Unrecognised name or password")
            if not user.get("is_enabled"):
                return self._failure(401, "login_disabled", "This login is disabled")
            if database_id not in (None, "") and database_id != str(self.config["logical_database_id"]):
                return self._failure(403, "requested_database_not_available",
                                     "The requested database is not available")
            old_session = None
        else:
            return self._failure(401, "no_session", "No credentials: send api_key, username and password, "
                                                    "or username, session_id and logical_database_id")
        if old_session is not None and self.config["reconnect_invalidates_old_session"]:
            self.sessions.pop(old_session["id"], None)
        session = self._new_session(user, request, params)
        response = self._json(self._login_body(user, session, params), params=params)
        response.set_cookie(SESSION_COOKIE, session["id"], path="/", httponly=True)
        return response

    def _reconnect(self, username: str, session_id: str, database_id: str | None):
        session = self.sessions.get(session_id)
        if session is None:
            return None, None, self._failure(401, "no_session_found", "No session found with that id")
        user = self.kinds["users"].rows.get(session["user_id"])
        if user is None or str(user.get("login_name", "")).lower() != username.strip().lower():
            return None, None, self._failure(401, "no_session_found", "No session found for that user")
        if self._session_expired(session):
            self.sessions.pop(session_id, None)
            return None, None, self._failure(401, "session_expired", "The session has expired")
        if not user.get("is_enabled"):
            return None, None, self._failure(401, "login_disabled", "This login is disabled")
        if database_id is None or database_id != str(session["logical_database_id"]):
            return None, None, self._failure(403, "requested_database_not_available",
                                             "The requested database is not available")
        return user, session, None

    def _new_session(self, user: dict, request: Request | None, params: Params | None) -> dict:
        params = params or Params([])
        formats = {kind: params.last(f"_json_output_{kind}_format") for kind in ("date", "datetime")}
        session = {
            "id": secrets.token_hex(16), "user_id": user["id"], "authenticity_token": secrets.token_hex(20),
            "logical_database_id": self.config["logical_database_id"], "last_used": self.now(),
            "application_name": params.last("_application_name") or (_first_word(request) if request else ""),
            "per_object": bool(params.flag("_per_object_transactions")),
            "strict": bool(params.flag("_strict_attribute_checking")),
            "timezone": params.last("_time_zone") or user.get("timezone") or "London",
            "formats": {k: v for k, v in formats.items() if v},
        }
        self.sessions[session["id"]] = session
        return session

    def _login_body(self, user: dict, session: dict, params: Params) -> dict:
        db = self.database
        body = {
            "database_name": db["name"], "logical_database_id": db["id"], "default_database_id": db["id"],
            "database_instance_id": db["instance_id"], "user_id": user["id"],
            "version": "Workbooks Emulator (build 1)", "api_version": 1, "timezone": session["timezone"],
            "databases": [{"name": db["name"], "id": db["id"], "created_at": format_datetime(self._database_created)}],
            "authenticity_token": session["authenticity_token"], "person_name": user.get("person_name"),
            "login_name": user.get("login_name"), "session_id": session["id"],
        }
        if not params.flag("_fast_login"):
            body["my_queues"] = {"Private::Crm::PersonQueue": user.get("__person_queue_id"),
                                 "Private::Crm::OrganisationQueue": user.get("__organisation_queue_id")}
        return body

    def _logout(self, request: Request) -> Response:
        """§2.3: 302 with a Location; the session ends."""
        self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = _redirect_to_login()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- reads ------------------------------------------------------------------------------------------------
    def _read(self, kind: Kind, ctx: Context) -> Response:
        """§3: filter, sort, page and select; `total` counts every match unless skipped."""
        params = ctx.params
        if kind.key == "custom_fields":
            self._tick_pending_custom_fields()
        selection = self._selection(kind, params)
        sorts = self._sorts(kind, params)
        start, limit = self._paging(params)
        skip_total = bool(params.flag("__skip_total_rows", "_skip_total_rows"))
        matches = self._matching(kind, selection)
        if skip_total and not sorts:
            page = list(itertools.islice(matches, start, start + limit))
            total = len(page)
        else:
            rows = list(matches)
            for getter, descending in reversed(sorts):   # stable sorts: last key first
                rows.sort(key=getter, reverse=descending)
            page = rows[start:start + limit]
            total = len(page) if skip_total else len(rows)
        columns = self._selected_columns(params)
        data = [self._render(kind, rec, columns, ctx.formats) for rec in page]
        return self._json({"success": True, "data": data, "total": total, "flash": "", "updates": {}},
                          params=params)

    def _show(self, kind: Kind, record_id: int, ctx: Context) -> Response:
        rec = kind.rows.get(record_id)
        if rec is None or rec.get("is_deleted"):
            return self._error(404, f"{kind.human} {record_id} not found")
        data = self._render(kind, rec, self._selected_columns(ctx.params), ctx.formats)
        return self._json({"success": True, "data": data, "available_layouts": [], "layout": {}},
                          params=ctx.params)

    def _matching(self, kind: Kind, selection: Selection) -> Iterator[dict]:
        if selection.ids is not None:
            candidates: Iterable[dict] = (kind.rows[i] for i in sorted(selection.ids) if i in kind.rows)
        else:
            candidates = kind.in_order()
        return (rec for rec in candidates if selection.accepts(rec))

    @staticmethod
    def _selected_columns(params: Params) -> list[str] | None:
        columns = params.array("_select_columns")
        return columns or None

    def _paging(self, params: Params) -> tuple[int, int]:
        start_text, limit_text = params.last("_start"), params.last("_limit")
        start = _non_negative(start_text, "_start") if start_text not in (None, "") else 0
        limit = 100
        if limit_text not in (None, "") and not (self.config["limit_requires_start"] and start_text is None):
            limit = _non_negative(limit_text, "_limit")
        cap = self.config.get("max_limit")
        if cap:
            limit = min(limit, int(cap))
        return start, limit

    def _sorts(self, kind: Kind, params: Params) -> list[tuple[Callable, bool]]:
        """`_sort`/`_dir`, or the arrays `_sort[]`/`_dir[]` (§3.1). Empty: id order."""
        names, dirs = params.array("_sort"), params.array("_dir")
        sorts = []
        for i, name in enumerate(names):
            if not name:
                continue
            col = self._column(kind, name)
            if col is None:
                raise RequestError(f"Unknown sort column '{name}'", field="_sort")
            direction = (dirs[i] if i < len(dirs) else "ASC").strip().upper() or "ASC"
            if direction not in ("ASC", "DESC"):
                raise RequestError(f"_dir must be ASC or DESC, not {direction!r}", field="_dir")
            sorts.append((_sort_key(self._getter(kind, col)), direction == "DESC"))
        if sorts == [] or (len(names) == 1 and names[0] == "id" and not (dirs and dirs[0].upper() == "DESC")):
            return []                    # records are already in id order
        return sorts

    # --- filters ----------------------------------------------------------------------------------------------
    def _selection(self, kind: Kind, params: Params) -> Selection:
        triples = self._filter_triples(params)
        filters = [self._compile_filter(kind, f, o, v) for f, o, v in triples]
        shows_deleted = any(f == "is_deleted" for f, _, _ in triples)
        if not filters:
            return Selection(None, None, shows_deleted, 0)
        fm = (params.scalar("_fm") or "").strip()
        if fm.lower() in ("", "and"):
            tree: tuple = ("and", [("leaf", i) for i in range(len(filters))])
        elif fm.lower() == "or":
            tree = ("or", [("leaf", i) for i in range(len(filters))])
        else:
            tree = MatchExpression(fm, len(filters)).parse()
        return Selection(_build_test(tree, filters), _candidate_ids(tree, filters), shows_deleted, len(filters))

    @staticmethod
    def _filter_triples(params: Params) -> list[tuple[str, str, str]]:
        fields, ops, values = params.array("_ff"), params.array("_ft"), params.array("_fc")
        if not len(fields) == len(ops) == len(values):
            raise RequestError("_ff[], _ft[] and _fc[] must have the same number of entries "
                               f"(got {len(fields)}, {len(ops)}, {len(values)})", field="_ff")
        triples = list(zip(fields, ops, values))
        text = params.last("_filter_json")
        if text not in (None, ""):
            try:
                items = json.loads(text)
            except ValueError:
                raise RequestError("_filter_json is not valid JSON", field="_filter_json") from None
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) in (2, 3) for i in items):
                raise RequestError('_filter_json must be [["field","op","value"], ...]', field="_filter_json")
            for item in items:
                value = item[2] if len(item) == 3 else ""
                if isinstance(value, bool):
                    value = "1" if value else "0"
                triples.append((str(item[0]), str(item[1]), value if isinstance(value, str) else _json_scalar(value)))
        return triples

    def _compile_filter(self, kind: Kind, field_name: str, op: str, text: str) -> CompiledFilter:
        """One `_ff/_ft/_fc` triple as a predicate over stored records (§3.2)."""
        col = self._column(kind, field_name)
        op = (op or "").strip().lower()
        if op not in OPERATORS:
            raise RequestError(f"Unknown filter operator '{op}'", field="_ft")
        if field_name in (self.config["unfilterable_columns"] or ()):
            # A real column the server will not filter on, dropped silently (its term is true).
            return CompiledFilter(lambda r: True)
        if col is None:
            if self.config["unknown_filter_field"] == "ignore":
                # Dropped, as if never sent: its term is true, so "1 AND 2" keeps only the
                # other filter and "1 OR 2" matches every record (switch unknown_filter_field).
                return CompiledFilter(lambda r: True)
            raise RequestError(f"Unknown filter field '{field_name}' for {kind.class_name}", field="_ff")
        get = self._getter(kind, col)
        if op in ("blank", "not_blank"):
            want = op == "blank"
            return CompiledFilter(lambda r: _is_blank(get(r)) == want)
        if op in ("true", "false"):
            want = op == "true"
            return CompiledFilter(lambda r: bool(get(r)) == want)
        if op.endswith("today"):
            return CompiledFilter(self._today_test(col, get, op))
        if op in ("ct", "nct", "bg", "nbg"):
            return CompiledFilter(self._text_test(col, get, op, text))
        bounds, norm = self._bounds_for(col)
        null_result = bool(self.config["null_matches_negative_operators"]) and op in NEGATIVE_OPERATORS

        def compare(check: Callable[[Any], bool]) -> Callable[[dict], bool]:
            def test(r: dict) -> bool:
                value = get(r)
                return null_result if value is None else check(norm(value))
            return test

        if op == "eq":
            ranges = [bounds(item) for item in split_in_list(text)]
            if all(lo == hi for lo, hi in ranges):
                wanted = frozenset(lo for lo, _ in ranges)
                ids = wanted if col.name == "id" else None
                return CompiledFilter(compare(lambda v: v in wanted), ids)
            return CompiledFilter(compare(lambda v: any(lo <= v <= hi for lo, hi in ranges)))
        if op in ("between", "not_between"):
            first, second = parse_range(text)
            lo, hi = bounds(first)[0], bounds(second)[1]
            inside = op == "between"
            return CompiledFilter(compare(lambda v: (lo <= v <= hi) == inside))
        lo, hi = bounds(text)
        checks = {"ne": lambda v: not lo <= v <= hi, "gt": lambda v: v > hi, "ge": lambda v: v >= lo,
                  "lt": lambda v: v < lo, "le": lambda v: v <= hi}
        return CompiledFilter(compare(checks[op]))

    def _bounds_for(self, col: Column) -> tuple[Callable[[str], tuple[Any, Any]], Callable[[Any], Any]]:
        """How a filter value becomes a (low, high) range in the column's domain, and how a stored
        value enters that domain. A bare date against a datetime spans the whole day (§3.2)."""
        kind = col.datatype
        if kind == "boolean":
            return (lambda t: (parse_bool(t),) * 2), bool
        if kind == "integer":
            def integer(t: str) -> tuple[int, int]:
                match = re.match(r"\s*([+-]?\d+)", t)      # "12abc" reads as 12, like MySQL (R2.1, OI)
                if not match:
                    raise RequestError(f"'{t}' is not a number (filter on {col.name})", field="_fc")
                return (int(match.group(1)),) * 2
            return integer, lambda v: v
        if kind == "decimal":
            def number(t: str) -> tuple[Decimal, Decimal]:
                try:
                    return (Decimal(t.strip()),) * 2
                except InvalidOperation:
                    raise RequestError(f"'{t}' is not a number (filter on {col.name})", field="_fc") from None
            return number, lambda v: Decimal(v)
        if kind in ("date", "datetime"):
            def when(t: str) -> tuple[Any, Any]:
                try:
                    value, date_only = parse_time(t)
                except (ValueError, OverflowError):
                    raise RequestError(f"'{t}' is not a date or time (filter on {col.name})", field="_fc") from None
                if kind == "date":
                    return (value.date(),) * 2
                if date_only:
                    return value, value + dt.timedelta(days=1, seconds=-1)
                return value, value
            return when, lambda v: v
        return (lambda t: (t.lower(),) * 2), lambda v: str(v).lower()

    def _today_test(self, col: Column, get: Callable, op: str) -> Callable[[dict], bool]:
        if col.datatype not in ("date", "datetime"):
            raise RequestError(f"{op} needs a date or datetime field, not {col.name}", field="_ft")
        today = self.now().astimezone(UTC).date()
        as_date = (lambda v: v.date()) if col.datatype == "datetime" else (lambda v: v)
        check = {"today": lambda d: d == today, "ge_today": lambda d: d >= today, "gt_today": lambda d: d > today,
                 "le_today": lambda d: d <= today, "lt_today": lambda d: d < today}.get(op)
        if check is None:
            raise RequestError(f"Unknown filter operator '{op}'", field="_ft")

        def test(r: dict) -> bool:
            value = get(r)
            return value is not None and check(as_date(value))
        return test

    def _text_test(self, col: Column, get: Callable, op: str, text: str) -> Callable[[dict], bool]:
        """ct/bg and their negations, case-insensitive (§3.2 [I]); other types compare as shown."""
        needle = text.lower()
        negative = op.startswith("n")
        null_result = bool(self.config["null_matches_negative_operators"]) if negative else False
        contains = op in ("ct", "nct")

        def test(r: dict) -> bool:
            value = get(r)
            if value is None:
                return null_result
            shown = self._render_value(col, value, {})
            hay = str(shown).lower()
            found = needle in hay if contains else hay.startswith(needle)
            return found != negative
        return test

    # --- writes -----------------------------------------------------------------------------------------------
    def _write(self, kind: Kind, ctx: Context, method: str) -> Response:
        """§4: one request, N objects in square arrays; all-or-nothing unless
        `_per_object_transactions`."""
        if kind.read_only:
            return self._error(405, f"{kind.human_plural} cannot be created, updated or deleted through the API")
        params = ctx.params
        rows = _square_rows(params)
        if not rows:
            raise RequestError("No objects were supplied (send attribute arrays such as id[] and __method[])")
        if len(rows) > MAX_OBJECTS_PER_WRITE:
            raise RequestError(f"Too many objects in one request: {len(rows)} (at most {MAX_OBJECTS_PER_WRITE})")
        if not params.array("_ff") and params.last("_filter_json") in (None, ""):
            raise RequestError("A filter selecting the objects to change is required (e.g. _ff[]=id&_ft[]=eq&_fc[]=0)",
                               field="_ff")
        selection = self._selection(kind, params)
        options = {"asynchronous_cf": bool(params.flag("_asynchronous_cf"))}
        undo: list[Callable[[], None]] = []
        outcomes: list[dict | RowFailure] = []
        for row in rows:
            mark = len(undo)
            try:
                outcomes.append(self._write_row(kind, row, method, selection, ctx, undo, options))
            except RowFailure as failure:
                _rollback(undo, mark)
                outcomes.append(failure)
        failed = [o for o in outcomes if isinstance(o, RowFailure)]
        if failed and not ctx.per_object:
            _rollback(undo, 0)
        return self._json(self._write_body(kind, outcomes, ctx.per_object), params=params)

    def _write_row(self, kind: Kind, row: dict, request_method: str, selection: Selection, ctx: Context,
                   undo: list, options: dict) -> dict:
        row = dict(row)
        row_method = (row.pop("__method", "") or "").strip().upper()
        id_text, version_text = row.pop("id", None), row.pop("lock_version", None)
        record_id = _row_int(id_text, "id")
        if not row_method:
            row_method = "DELETE" if request_method == "DELETE" else ("PUT" if record_id else "POST")
        row_method = {"CREATE": "POST", "UPDATE": "PUT"}.get(row_method, row_method)
        if row_method not in ("POST", "PUT", "DELETE"):
            raise RowFailure({"__method": ["must be POST, PUT or DELETE"]})
        if row_method == "POST":
            values = self._row_values(kind, row, ctx)
            if kind.key == "custom_fields":
                self._check_api_data_type(values)
            rec = self._create(kind, values, ctx, undo, options=options)
            return self._render(kind, rec, None, ctx.formats)
        target = kind.rows.get(record_id) if record_id is not None else None
        if target is None or target.get("is_deleted") or not selection.accepts(target):
            raise RowFailure.inaccessible()
        if _row_int(version_text, "lock_version") != target["lock_version"]:
            raise RowFailure.stale()
        if row_method == "DELETE":
            new = self._soft_delete(kind, target, ctx, undo)
            return {"id": new["id"], "lock_version": new["lock_version"]}
        values = self._row_values(kind, row, ctx)
        before = self._render(kind, target, None, ctx.formats)
        new, changed = self._update(kind, target, values, ctx, undo, options)
        if not changed:                  # §4.3 [O]: nothing changed, nothing moves
            return {"id": target["id"], "lock_version": target["lock_version"]}
        after = self._render(kind, new, None, ctx.formats)
        diff = {k: v for k, v in after.items() if before.get(k) != v and k not in ("id", "lock_version")}
        # updated_at is always reported for a real change (§4.2 [O]), even within the same second
        return {"id": new["id"], "lock_version": new["lock_version"], "updated_at": after["updated_at"], **diff}

    def _check_api_data_type(self, values: dict) -> None:
        """Switch `custom_field_data_types`: "verified" accepts through the API only the
        `data_type` values a public example shows (§6.3, R2.2); "reference" also the reference's
        guesses for text, URL and date-time (R2.2 [I]). The Python API (the Desktop UI, whose
        field types exist whatever their API names) accepts every type."""
        allowed = VERIFIED_CUSTOM_FIELD_TYPES if self.config["custom_field_data_types"] == "verified" \
            else frozenset(CUSTOM_FIELD_TYPES)
        data_type = str(values.get("data_type") or "").strip().lower()
        if data_type not in allowed:
            raise RowFailure({"data_type": [f"is not one of {', '.join(sorted(allowed))}"]})

    def _row_values(self, kind: Kind, row: dict, ctx: Context) -> dict:
        """Coerce one object's attributes; `:no_value:` skips one, `:null_value:` clears it (§4.1).
        Unknown or read-only attributes are ignored, or errors with `_strict_attribute_checking`."""
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, text in row.items():
            if text == ":no_value:":
                continue
            col = self._column(kind, name)
            if col is None or not col.writable:
                if ctx.strict:
                    errors[name] = ["is not a recognised attribute" if col is None else "is read-only"]
                continue
            try:
                values[col.name] = self._coerce(col, None if text == ":null_value:" else text)
                self._check_content(col, values[col.name], through_api=True)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise RowFailure(errors)
        return values

    def _write_body(self, kind: Kind, outcomes: list, per_object: bool) -> dict:
        """§4.2 success / §4.4 failure shapes."""
        failed = [o for o in outcomes if isinstance(o, RowFailure)]
        saved = [o for o in outcomes if not isinstance(o, RowFailure)]
        if not failed:
            infos = [{"success": True, "errors": [], "warnings": []} for _ in outcomes]
            return {"success": True, "affected_objects": saved, "affected_object_information": infos,
                    "flash": "saved successfully",
                    "updates": {"data": {"immediate": list(kind.tables)}}}
        infos = []
        for outcome in outcomes:
            if isinstance(outcome, RowFailure):
                infos.append({"success": False, "errors": outcome.errors, "warnings": {}})
            else:
                infos.append({"success": per_object, "errors": [], "warnings": []})
        shape = self.config["failure_shape"]
        body: dict[str, Any] = {"success": False, "affected_objects": saved if per_object else []}
        if shape != "failures_only":
            body["affected_object_information"] = infos
        if per_object and self.config["per_object_failure_top_success"]:
            body["success"] = True
            if shape != "failures_only":
                return body
        if shape == "row_errors_only":     # diagnostics only per object (§4.4 shape unknown)
            return body
        messages = [m for f in failed for m in f.messages]
        body.update(failures=messages)
        if shape == "failures_only":       # "diagnostics in the `failures` element" (§4.3), nothing else
            return body
        merged: dict[str, str] = {}
        for failure in failed:
            for name, texts in failure.errors.items():
                merged.setdefault(name, texts[0])
        body.update(errors={"[]": merged}, flash=messages[0],
                    affected_object_errors=[o.errors if isinstance(o, RowFailure) else {} for o in outcomes])
        return body

    # --- metadata -----------------------------------------------------------------------------------------------
    def _metadata(self, ctx: Context) -> Response:
        """§10: record types as rows, so the usual filters, paging and column selection apply."""
        table = Kind("metadata_types", "Private::Metadata::Type", "metadata/types", "Type", "Types", _columns([
            Column(n) for n in ("class_name", "base_class_name", "controller_path", "help_url", "human_class_name",
                                "human_class_name_plural", "human_class_description", "icon",
                                "instances_described_by")] + [
            Column(n, "json") for n in ("actions", "fields", "associations")]))
        wanted = set(ctx.params.array("class_names"))
        for kind in self.kinds.values():
            controller = self.config.get("users_endpoint") if kind.key == "users" else kind.controller
            if not controller or (wanted and kind.class_name not in wanted):
                continue
            row_id = table.allocate()
            table.rows[row_id] = self._type_description(kind, controller)
        return self._read(table, ctx)

    def _type_description(self, kind: Kind, controller: str) -> dict:
        fields = [{"name": c.name, "title": c.title, "datatype": c.datatype, "default_value": c.default(),
                   "is_createable": c.writable and not kind.read_only, "is_filterable": True,
                   "is_nullable": c.datatype != "boolean", "is_updateable": c.writable and not kind.read_only,
                   "required": c.name == "name" and kind.queue_kind is not None, "is_custom": c.custom}
                  for c in kind.columns.values() if not c.switch or self.config.get(c.switch)]
        actions = [{"name": a, "permitted": a == "index" or not kind.read_only}
                   for a in ("index", "show", "create", "update", "destroy")]
        return {"class_name": kind.class_name, "base_class_name": kind.class_name, "controller_path": controller,
                "help_url": None, "human_class_name": kind.human, "human_class_name_plural": kind.human_plural,
                "human_class_description": f"{kind.human_plural} in Workbooks", "icon": None,
                "instances_described_by": "name", "actions": actions, "fields": fields, "associations": []}

    # --- Python API ---------------------------------------------------------------------------------------------
    def _python_context(self, user_id: int | None) -> Context:
        users = self.kinds["users"].rows
        if user_id is None:
            user = users.get(getattr(self, "_admin_id", None)) or {"id": 0}
        elif user_id in users:
            user = users[user_id]
        else:
            raise NotFound(f"no user {user_id}")
        return Context(user=user, mode="python", params=Params([]), application_name="Workbooks Desktop")

    def _kind(self, name: str) -> Kind:
        """Accept the table key, a singular, a controller path or a class name."""
        aliases = {"person": "people", "organisation": "organisations", "organization": "organisations",
                   "organizations": "organisations", "person_queue": "person_queues",
                   "organisation_queue": "organisation_queues", "user": "users", "custom_field": "custom_fields",
                   "scheduled_action": "scheduled_actions", "web_action": "web_actions"}
        key = aliases.get(name, name)
        if key in self.kinds:
            return self.kinds[key]
        for kind in self.kinds.values():
            if name in (kind.controller, kind.class_name):
                return kind
        raise NotFound(f"unknown record kind {name!r}")

    def _python_values(self, kind: Kind, fields: dict, allow_raw: bool) -> tuple[dict, dict]:
        """Python-API fields as stored values, plus raw stamps a seed may set (id, created_at, ...)."""
        raw_names = {"id", "lock_version", "created_at", "updated_at", "created_by", "updated_by",
                     "created_through", "is_deleted"}
        values, raw = {}, {}
        errors: dict[str, list[str]] = {}
        for name, value in fields.items():
            if name == "assigned_to_user" and kind.queue_kind:
                user = self._user_by_login(value)
                if user is None:
                    errors[name] = [f"is not a user login ({value!r})"]
                else:
                    values["assigned_to"] = user[f"__{kind.queue_kind[:-1]}_id"]
                continue
            col = self._column(kind, name)
            if allow_raw and name in raw_names:
                raw[name] = self._coerce(col, value) if col else value
                continue
            if col is None or not col.writable:
                errors[name] = ["is not a writable attribute of " + kind.class_name]
                continue
            try:
                values[col.name] = self._coerce(col, value)
                self._check_content(col, values[col.name], through_api=False)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise ValueError("; ".join(f"{k} {v[0]}" for k, v in errors.items()))
        return values, raw

    def add_user(self, login_name: str, person_name: str, is_enabled: bool = True,
                 password: str = DEFAULT_PASSWORD, timezone: str = "London") -> dict:
        """A Workbooks user with personal person and organisation queues (queue_type "user",
        named after the person, §7)."""
        with self.lock:
            ctx = self._python_context(None)
            if self._user_by_login(login_name) is not None:
                raise ValueError(f"a user with login {login_name!r} already exists")
            user = self._create(self.kinds["users"], {"login_name": login_name, "person_name": person_name,
                                        "is_enabled": bool(is_enabled), "timezone": timezone,
                                        "date_time_locale": "en_GB"}, ctx, [])
            self.passwords[user["id"]] = password
            for queue_kind in ("person_queues", "organisation_queues"):
                queue = self._create(self.kinds[queue_kind], {"name": person_name, "queue_type": "user",
                                                              "owner_id": user["id"]}, ctx, [])
                user[f"__{queue_kind[:-1]}_id"] = queue["id"]
            return self._user_summary(user)

    @staticmethod
    def _user_summary(user: dict) -> dict:
        return {"id": user["id"], "login_name": user["login_name"], "person_name": user["person_name"],
                "person_queue_id": user.get("__person_queue_id"),
                "organisation_queue_id": user.get("__organisation_queue_id")}

    def add_queue(self, kind: str, name: str, queue_type: str = "shared", owner_user_id: int | None = None) -> dict:
        with self.lock:
            table = self._kind(kind if kind.endswith("queues") else f"{kind}_queues")
            values = {"name": name, "queue_type": queue_type, "owner_id": owner_user_id}
            try:
                rec = self._create(table, values, self._python_context(None), [])
            except RowFailure as failure:
                raise ValueError("; ".join(failure.messages)) from None
            return self._render(table, rec)

    def create_api_key(self, user_id: int | None = None) -> str:
        """An API key in the documented form: eight groups of five (§2.1)."""
        with self.lock:
            user = self._python_context(user_id).user
            while True:
                key = "-".join(f"{secrets.randbelow(100000):05d}" for _ in range(8))
                if key not in self.api_keys:
                    self.api_keys[key] = user["id"]
                    return key

    def create_session(self, user_id: int | None = None) -> dict:
        """A live session for the Process-Engine reconnect (§2.4)."""
        with self.lock:
            user = self._python_context(user_id).user
            session = self._new_session(user, None, Params([("_application_name", "Process Engine")]))
            return {"session_id": session["id"], "username": user["login_name"],
                    "logical_database_id": session["logical_database_id"]}

    def insert(self, kind: str, fields: dict, user_id: int | None = None) -> dict:
        with self.lock:
            table = self._kind(kind)
            return self._render(table, self._insert(table, fields, self._python_context(user_id)))

    def _insert(self, table: Kind, fields: dict, ctx: Context) -> dict:
        values, raw = self._python_values(table, fields, allow_raw=True)
        try:
            return self._create(table, values, ctx, [], raw=raw)
        except RowFailure as failure:
            raise ValueError("; ".join(failure.messages)) from None

    def edit(self, kind: str, record_id: int, fields: dict, user_id: int | None = None) -> dict:
        """A user's edit in the Desktop: lock_version and updated_at move only on a real change."""
        with self.lock:
            table = self._kind(kind)
            rec = self._existing(table, record_id)
            values, _ = self._python_values(table, fields, allow_raw=False)
            try:
                new, _ = self._update(table, rec, values, self._python_context(user_id), [])
            except RowFailure as failure:
                raise ValueError("; ".join(failure.messages)) from None
            return self._render(table, new)

    def delete(self, kind: str, record_id: int, user_id: int | None = None) -> None:
        with self.lock:
            table = self._kind(kind)
            rec = self._existing(table, record_id)
            if not rec.get("is_deleted"):
                self._soft_delete(table, rec, self._python_context(user_id), [])

    def records(self, kind: str, include_deleted: bool = False) -> list[dict]:
        with self.lock:
            table = self._kind(kind)
            return [self._render(table, r) for r in table.in_order() if include_deleted or not r.get("is_deleted")]

    def record(self, kind: str, record_id: int) -> dict:
        with self.lock:
            table = self._kind(kind)
            return self._render(table, self._existing(table, record_id))

    @staticmethod
    def _existing(table: Kind, record_id: Any) -> dict:
        rec = table.rows.get(int(record_id))
        if rec is None:
            raise NotFound(f"no {table.human} with id {record_id}")
        return rec

    def add_picklist(self, values: Iterable[str], name: str | None = None) -> int:
        """A picklist (as the Desktop makes one) for picklist custom fields' `picklist_id`."""
        with self.lock:
            choices = [str(v) for v in values]
            if not choices:
                raise ValueError(f"picklist {name or ''!r} needs at least one value")
            picklist_id = max(self.picklists, default=0) + 1
            self.picklists[picklist_id] = choices
            return picklist_id

    def add_custom_field(self, kind: str, title: str, data_type: str, **attrs: Any) -> str:
        """Create a custom field as admin/custom_fields does; returns its value_column_name.
        `picklist=[values]` makes the field's picklist (add_picklist) and sets its picklist_id."""
        with self.lock:
            if "picklist" in attrs:
                attrs["picklist_id"] = self.add_picklist(attrs.pop("picklist"), title)
            target = self._kind(kind)
            fields = {"title": title, "resource_type": target.class_name, "data_type": data_type, **attrs}
            rec = self._insert(self.kinds["custom_fields"], fields, self._python_context(None))
            return rec["value_column_name"]

    def seed(self, data: dict) -> dict:
        """Load {database, users, queues, api_keys, custom_fields, organisations, people, api_data,
        scheduled_actions, web_actions}: lists of dicts, records in Python-API form (explicit ids
        and stamps allowed). Conveniences, since a seed file cannot know generated ids: a user may
        carry `api_key`; a queue `owner_login_name`; `api_keys` entries are {key, login_name|user_id};
        records may name `assigned_to_user` (a login: that user's personal queue). Returns counts."""
        with self.lock:
            counts: dict[str, int] = {}
            database = data.get("database") or {}
            for key, switch in (("name", "database_name"), ("id", "logical_database_id"),
                                ("instance_id", "database_instance_id")):
                if key in database:
                    self.config[switch] = database[key]
            for spec in data.get("users", []):
                spec = dict(spec)
                key = spec.pop("api_key", None)
                user = self.add_user(**spec)
                if key:
                    self.api_keys[str(key)] = user["id"]
            counts["users"] = len(data.get("users", []))
            for spec in data.get("queues", []):
                spec = dict(spec)
                if "owner_login_name" in spec:
                    spec["owner_user_id"] = self._required_user(spec.pop("owner_login_name"))["id"]
                self.add_queue(**spec)
            for spec in data.get("api_keys", []):
                user = self._required_user(spec["login_name"]) if "login_name" in spec else \
                    self._python_context(spec.get("user_id")).user
                self.api_keys[str(spec["key"])] = user["id"]
            counts["queues"] = len(data.get("queues", []))
            for spec in data.get("custom_fields", []):
                spec = dict(spec)
                kind = spec.pop("kind", None) or spec.pop("resource_type")
                self.add_custom_field(kind, spec.pop("title"), spec.pop("data_type"), **spec)
            counts["custom_fields"] = len(data.get("custom_fields", []))
            ctx = self._python_context(None)
            for kind in ("organisations", "people", "api_data", "scheduled_actions", "web_actions"):
                table = self.kinds[kind]
                for fields in data.get(kind, []):
                    self._insert(table, fields, ctx)
                counts[kind] = len(data.get(kind, []))
            return counts

    def _required_user(self, login_name: str) -> dict:
        user = self._user_by_login(login_name)
        if user is None:
            raise ValueError(f"no user with login {login_name!r}")
        return user

    # --- control routes ------------------------------------------------------------------------------------------
    def control(self, request: Request, path: str) -> Response | None:
        body = request.get_json(silent=True) if request.data else None
        body = body if isinstance(body, dict) else {}
        method = request.method
        parts = path.split("/")
        try:
            if path == "database" and method == "GET":
                return json_response(self.database)
            if path == "users" and method == "POST":
                return json_response(self.add_user(**body), 201)
            if path == "queues" and method == "POST":
                return json_response(self.add_queue(**body), 201)
            if path == "api_keys" and method == "POST":
                return json_response({"api_key": self.create_api_key(body.get("user_id"))}, 201)
            if path == "web_processes" and method == "POST":
                self.serve_web_processes(body["bundle"], body.get("parameters"),
                                         body.get("timeout", web_process.DEFAULT_TIMEOUT))
                return json_response({"ok": True}, 201)
            if path == "web_processes" and method == "GET":
                host = self.web_host
                return json_response({"bundle": str(host.bundle) if host else None,
                                      "parameters": sorted(host.parameters) if host else [],
                                      "runs": self.web_process_runs})
            if path == "sessions" and method == "POST":
                return json_response(self.create_session(body.get("user_id")), 201)
            if path == "seed" and method == "POST":
                return json_response({"ok": True, "counts": self.seed(body)})
            if path == "custom_fields" and method == "POST":
                body = dict(body)
                column = self.add_custom_field(body.pop("kind"), body.pop("title"), body.pop("data_type"), **body)
                return json_response({"value_column_name": column}, 201)
            if parts[0] == "records" and len(parts) == 2:
                if method == "GET":
                    include = parse_bool(request.args.get("include_deleted", "false"))
                    return json_response(self.records(parts[1], include_deleted=include))
                if method == "POST":
                    return json_response(self.insert(parts[1], body), 201)
            if parts[0] == "records" and len(parts) == 3:
                if method == "GET":
                    return json_response(self.record(parts[1], int(parts[2])))
                if method == "PATCH":
                    return json_response(self.edit(parts[1], int(parts[2]), body))
                if method == "DELETE":
                    self.delete(parts[1], int(parts[2]))
                    return json_response({"ok": True})
        except NotFound as exc:
            return json_response({"error": str(exc)}, 404)
        return None


# --- small helpers ------------------------------------------------------------------------------------------------

def _parameters_of(action: dict) -> dict:
    """A process record's `parameters` (a JSON object as text; switch unverified_attributes)."""
    value = action.get("parameters")
    try:
        decoded = json.loads(value) if isinstance(value, str) and value.strip() else value
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _is_email_column(col: Column) -> bool:
    return col.datatype == "string" and col.name.endswith(("[email]", "[alternate_email]"))


def _valid_email(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    return (bool(at) and len(text) <= 254 and len(local) <= 64 and _EMAIL_LOCAL.fullmatch(local) is not None
            and _EMAIL_DOMAIN.fullmatch(domain) is not None)


def _square_rows(params: Params) -> list[dict[str, str]]:
    """§4.1: every `name[]` that is not a request control is an attribute column; the k-th value
    belongs to object k (the last `[]` is the row index, the rest the attribute name)."""
    columns: dict[str, list[str]] = {}
    for name, value in params.pairs:
        if name.endswith("[]") and name[:-2] not in CONTROL_ARRAYS:
            columns.setdefault(name[:-2], []).append(value)
    if not columns:
        return []
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}[]: {len(v)}" for k, v in columns.items())
        raise RequestError(f"Every object must supply the same attributes (a square array); got {detail}")
    count = lengths.pop()
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def _row_int(text: str | None, name: str) -> int | None:
    if text in (None, "", ":no_value:", ":null_value:"):
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise RowFailure({name: ["is not a number"]}) from None


def _rollback(undo: list[Callable[[], None]], mark: int) -> None:
    while len(undo) > mark:
        undo.pop()()


def _non_negative(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise RequestError(f"{name} must be a whole number, not {text!r}", field=name) from None
    if value < 0:
        raise RequestError(f"{name} must not be negative", field=name)
    return min(value, 2**31)


def _sort_key(getter: Callable[[dict], Any]) -> Callable[[dict], tuple]:
    """NULLs first ascending (as MySQL), strings without regard to case."""
    def key(rec: dict) -> tuple:
        value = getter(rec)
        if value is None:
            return (0, 0)
        if isinstance(value, str):
            return (1, value.lower())
        if isinstance(value, (list, dict)):
            return (1, json.dumps(value, sort_keys=True))
        return (1, value)
    return key


def _strftime(value: dt.date, pattern: str) -> str:
    """`_json_output_*_format` (§8); `%s` is epoch seconds whatever the platform."""
    if isinstance(value, dt.datetime) and "%s" in pattern:
        pattern = pattern.replace("%s", str(int(value.timestamp())))
    return value.strftime(pattern)


def _first_word(request: Request | None) -> str:
    """`created_through` defaults to the first word of the User-Agent (§2.2)."""
    agent = request.headers.get("User-Agent", "") if request is not None else ""
    match = re.match(r"[A-Za-z0-9_.\-]+", agent.strip())
    return match.group(0) if match else ""


def _html_page(title: str, body: str, status: int = 200, headers: dict | None = None) -> Response:
    return Response(f"<html><head><title>{title}</title></head><body>{body}</body></html>", status=status,
                    content_type="text/html; charset=utf-8", headers=headers)


def _redirect_to_login() -> Response:
    """§2.3: invalid sessions and logout answer 302; the HTML is to be ignored."""
    return _html_page("Redirecting", 'You are being <a href="/login">redirected</a>.', 302,
                      {"Location": "/login"})
