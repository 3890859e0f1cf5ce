"""`WorkbooksClient`: a thin client for the Workbooks API (reference/workbooks-api.md), written
fresh rather than vendoring the official Python binding (see its bugs in sync-practices B6).

Connection modes (DESIGN §3):
  (a) Process Engine: `_workbooks_service`, `_workbooks_username`, `_workbooks_session_id`,
      `_workbooks_logical_database_id` (+ `_workbooks_api_logging_key`, `_workbooks_client_name`).
      We reconnect through `login.api` (username + session_id + logical_database_id), which
      issues a NEW session id: we keep it, the `Workbooks-Session` cookie and the
      `authenticity_token` (sent as `_authenticity_token` on every write). Every request carries
      `api_logging_key` and `api_logging_seq` 1, 2, 3… so it lands in this run's Process Log.
  (b) `_workbooks_service` + `workbooks_api_key`: the key goes on every request. We also call
      `login.api` with the key once at connect, only to learn the database identity (name, id,
      instance id) that OutreachAuth compares against (copied-database check); that session is
      not used afterwards (cookies are never stored in this mode).

Every request carries `client=api`, `api_version=1`, a `_dc` cache buster and, when the run has a
deadline, `_max_request_duration`. Those two are the only parameters in the URL (as the bindings
put them, §1.3): everything else, the API key, the API-logging key, the authenticity token and
the filters included, travels in a form-encoded body, on reads too (a GET with a body is a
Workbooks extension, §1.2, and how the official Python binding sends every read). A URL ends up
in Workbooks' and proxies' access logs and in every redirect's Location; a body does not.

Redirects (§11: a 302 "may arrive at any time and must be followed", as rate limiting through
a delaying URL; §2.3: an invalid session is answered with a 302 too) are followed by
plugin.http, by hand: the same method and the same body go to the Location, on the Workbooks
host only (a redirect to another host is refused: it would carry the session cookie there), at
most 10 hops, inside the deadline. Writes are followed too: both documented reasons for a 302
come before Workbooks processes a request (a rate limit delays a request instead of serving it;
an invalid session serves nothing), and the bindings follow redirects on every call, writes
included (CL-PHP `follow_redirects` defaults to true); so a redirected PUT was not applied, and
re-sending it is the only way it ever is. (`requests` would have re-sent it as a bodiless GET:
the write lost, and a read's filters with it.) A 303, which says a request was processed, is
never followed. A redirect to the login page means the session ended: in Process-Engine mode the
client reconnects once (login.api with the current session id) and re-sends the request with the
new session; if that is refused, or with an API key (nothing to reconnect), the request fails
with a TransientError saying so.

Login failures: a rejected key/password, no API permission, an archived/unavailable database
→ `BadCredentials` (exit 2: a person must act). Expired or missing sessions, a database being
migrated, unknown reasons, timeouts → `TransientError` (exit 1, as the PHP binding's
`ensureLogin` does).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import requests

from . import redirects
from .errors import BadCredentials, TransientError, WorkbooksError
from .http import HttpClient
from .kinds import in_reading_order

MAX_BATCH = 100         # Workbooks' limit on objects per write request
DEFAULT_PAGE = 100      # "a _limit of 100 can be expected to work"
MAX_RECONNECTS = 3      # per client: a session that keeps ending is not chased for the whole run
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NO_VALUE = ":no_value:"
NULL_VALUE = ":null_value:"
STALE_TEXT = "updated elsewhere"

# Kind name → Workbooks record class / queue controller (plugin/kinds.py is the registry).
RESOURCE_TYPES = {k.name: k.resource_type for k in in_reading_order()}
QUEUE_ENDPOINTS = {k.name: k.queue_endpoint for k in in_reading_order()}

# failure_reason values that need a person (exit 2). Anything else, including reasons Workbooks
# adds later ("the list will grow"), is treated as transient: exit 2 disables the process.
PERMANENT_LOGIN_FAILURES = frozenset({
    "password_expired", "login_disabled", "unrecognised_name_or_password", "client_not_licensed",
    "licence_expired", "no_licensed_edition", "client_not_activated", "no_permission_for_api",
    "requested_database_not_available", "no_available_database", "database_archived",
    "invalid_application_name", "user_agent_required", "no_database_selection_made",
})
TRANSIENT_LOGIN_FAILURES = frozenset({
    "session_expired", "no_session", "no_session_found", "database_being_migrated",
})

ENGINE_KEYS = ("_workbooks_username", "_workbooks_session_id", "_workbooks_logical_database_id")


# --- datetimes ------------------------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WB_DATETIME = re.compile(r"^(?:[A-Za-z]{3,9},?\s+)?([A-Za-z]{3,9})\.?\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})"
                          r"\s+(?:UTC|GMT|Z|\+0000)\s+(\d{4})$")
_WB_DATE = re.compile(r"^(\d{1,2})\s+([A-Za-z]{3,9})\s+(\d{4})$")


def _month(name: str) -> int:
    key = name[:3].title()
    if key not in _MONTHS:
        raise ValueError(f"unknown month {name!r}")
    return _MONTHS.index(key) + 1


def format_datetime(value: dt.datetime) -> str:
    """Workbooks' wire format `Wed Jan 01 12:00:00 UTC 2020` (UTC, one-second resolution).
    Built by hand: strftime's %a/%b follow the process locale."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return (f"{_DAYS[value.weekday()]} {_MONTHS[value.month - 1]} {value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} UTC {value.year}")


def parse_datetime(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from Workbooks' format, ISO 8601, `%e %b %Y` dates or epoch
    seconds; None for empty values. Raises ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    text = " ".join(str(value).split())
    match = _WB_DATETIME.match(text)
    if match:
        month, day, hour, minute, second, year = match.groups()
        return dt.datetime(int(year), _month(month), int(day), int(hour), int(minute), int(second),
                           tzinfo=dt.timezone.utc)
    match = _WB_DATE.match(text)
    if match:
        day, month, year = match.groups()
        return dt.datetime(int(year), _month(month), int(day), tzinfo=dt.timezone.utc)
    if re.fullmatch(r"\d{9,11}", text):
        return dt.datetime.fromtimestamp(int(text), dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)


# --- encoding helpers (pure, unit-tested) ---------------------------------------------------------

def encode_value(value: Any) -> str:
    """One value as Workbooks reads it: booleans 1/0, datetimes in the wire format,
    None as `:null_value:` (set NULL), lists as `[a,b]`."""
    if value is None:
        return NULL_VALUE
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def encode_filter_value(op: str, value: Any) -> str:
    """`_fc[]` text. For eq/ne a comma means IN (…) on the wire: a list/tuple/set is joined with
    commas, each element's own commas escaped as `\\,`. A plain string is sent as it is (so
    "1,2,3" is an IN list, as on the wire); escape literal commas with `escape_filter_value`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if op in ("eq", "ne") and isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(escape_filter_value(v) for v in value)
    return _plain(value)


def escape_filter_value(value: Any) -> str:
    """One literal value for an eq/ne filter: commas escaped so they are not read as IN."""
    return _plain(value).replace(",", "\\,")


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    return str(value)


def flatten_row(row: dict) -> dict[str, Any]:
    """Nested dicts become bracketed names: {"main_location": {"email": x}} → main_location[email]."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for sub, inner in flatten_row(value).items():
                head, _, rest = sub.partition("[")
                flat[f"{key}[{head}]" + (f"[{rest}" if rest else "")] = inner
        else:
            flat[key] = value
    return flat


def wire_name(key: str) -> str:
    """`main_location[email]` → `main_location[email][]`; doubly nested
    `org_lead_party[main_location[email]]` → `org_lead_party[main_location][email][]`
    (the bindings' unnestKey)."""
    parts = re.findall(r"[^\[\]]+", key)
    if not parts:
        raise ValueError(f"bad field name {key!r}")
    return parts[0] + "".join(f"[{p}]" for p in parts[1:]) + "[]"


def encode_batch(rows: list[dict]) -> list[tuple[str, str]]:
    """The square-array form body for one write request (reference §4.1): every row carries the
    same keys (`:no_value:` fills gaps), `__method[]`, `id[]`, `lock_version[]` first, then the
    fields sorted; the working-set filter selects `id eq 0` for creates and `id eq <id>` per
    update/delete, OR-ed with `_fm=or`."""
    if not rows:
        return []
    if len(rows) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} rows per request, got {len(rows)}")
    flat_rows = []
    for row in rows:
        flat = flatten_row(row)
        method = str(flat.pop("__method", "PUT" if flat.get("id") else "POST")).upper()
        if method not in ("POST", "PUT", "DELETE"):
            raise ValueError(f"unknown __method {method!r}")
        if method == "POST":
            flat.setdefault("id", 0)
            flat.setdefault("lock_version", 0)
        elif flat.get("id") in (None, "", 0) or flat.get("lock_version") in (None, ""):
            raise ValueError(f"a {method} row needs id and lock_version")
        flat["__method"] = method
        flat_rows.append(flat)

    fields = sorted({k for row in flat_rows for k in row} - {"__method", "id", "lock_version"})
    body: list[tuple[str, str]] = []
    ids: list[str] = []
    for row in flat_rows:
        wanted = "0" if row["__method"] == "POST" else str(row["id"])
        if wanted not in ids:
            ids.append(wanted)
    for wanted in ids:
        body += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", wanted)]
    body.append(("_fm", "or"))
    for key in ("__method", "id", "lock_version", *fields):
        name = "__method[]" if key == "__method" else wire_name(key)
        for row in flat_rows:
            body.append((name, encode_value(row[key]) if key in row else NO_VALUE))
    return body


def filter_params(filters: Iterable[tuple], fm: str | None) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for item in filters or ():
        field_name, op, *rest = item
        value = rest[0] if rest else None
        params += [("_ff[]", field_name), ("_ft[]", op), ("_fc[]", encode_filter_value(op, value))]
    if fm:
        params.append(("_fm", fm))
    return params


class Terms:
    """A filter being built: `(column, op, value)` terms, each numbered as it is added, and `_fm`
    expressions over those numbers (workbooks-api.md §3.2), so that adding a condition to a rule
    can never renumber the others by hand.

        terms = Terms()
        rule = terms.all(terms.term("a", "true"), terms.any(terms.term("b", "blank"), terms.term("c", "ge", t)))
        filters, fm = terms.query(rule)          # ..., "1 AND (2 OR 3)"
    """

    def __init__(self) -> None:
        self.filters: list[tuple] = []

    def term(self, column: str, op: str, value: Any = "") -> str:
        self.filters.append((column, op, value))
        return str(len(self.filters))

    def extend(self, filters: list[tuple], fragment: str) -> str:
        """Terms numbered by someone else from `next_number` on (watermark.exclusion), and the
        expression over them."""
        self.filters += filters
        return fragment

    @property
    def next_number(self) -> int:
        return len(self.filters) + 1

    @staticmethod
    def all(*parts: str | None) -> str:
        return _join(" AND ", parts)

    @staticmethod
    def any(*parts: str | None) -> str:
        return _join(" OR ", parts)

    def query(self, expression: str) -> tuple[list[tuple], str]:
        return list(self.filters), expression


def _join(operator: str, parts: Iterable[str | None]) -> str:
    present = [p for p in parts if p]
    if len(present) == 1:
        return present[0]
    return operator.join(p if p.isdigit() else f"({p})" for p in present)


# --- results --------------------------------------------------------------------------------------

@dataclass
class RowResult:
    """The outcome of one row of a batch write, in request order. `stale` marks the
    "already been updated elsewhere" failure (a stale lock_version): re-read and retry."""

    ok: bool
    id: int | None = None
    lock_version: int | None = None
    stale: bool = False
    errors: list[str] = field(default_factory=list)
    affected: dict = field(default_factory=dict)


def _error_texts(value: Any, prefix: str = "") -> list[str]:
    """Flatten any error structure Workbooks uses ({field: [msg]}, {"[]": {field: msg}},
    [msg], "msg") into `field: message` strings."""
    if value in (None, "", [], {}):
        return []
    if isinstance(value, str):
        return [f"{prefix}: {value}" if prefix else value]
    if isinstance(value, dict):
        out = []
        for key, inner in value.items():
            label = prefix if key in ("[]", "", "base") else (f"{prefix}.{key}" if prefix else str(key))
            out += _error_texts(inner, label)
        return out
    if isinstance(value, (list, tuple)):
        return [text for inner in value for text in _error_texts(inner, prefix)]
    return [f"{prefix}: {value}" if prefix else str(value)]


def _is_stale(texts: list[str], raw: Any = None) -> bool:
    if any(STALE_TEXT in t.lower() for t in texts):
        return True
    return isinstance(raw, dict) and "lock_version" in raw and bool(raw["lock_version"])


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_batch_response(rows: list[dict], payload: dict) -> list[RowResult]:
    """Shape-agnostic reading of a write response (reference §4.4/§4.5): a row failed when its
    `affected_object_information` entry says so or carries errors; when there is no per-row
    information, the whole request's `success`/`errors`/`failures` decide for every row.
    `affected_objects` are matched to rows by position when there is one per row, else by id
    (updates/deletes) and in order (creates)."""
    infos = payload.get("affected_object_information")
    infos = infos if isinstance(infos, list) else []
    affected = payload.get("affected_objects")
    affected = [a for a in affected if isinstance(a, dict)] if isinstance(affected, list) else []
    top_texts = _error_texts(payload.get("failures")) + _error_texts(payload.get("errors")) + \
        _error_texts(payload.get("affected_object_errors"))
    top_ok = payload.get("success") is True and not top_texts

    results: list[RowResult] = []
    for index, row in enumerate(rows):
        info = infos[index] if index < len(infos) and isinstance(infos[index], dict) else None
        if info is not None and ("success" in info or info.get("errors")):
            texts = _error_texts(info.get("errors"))
            ok = info.get("success", not texts) is True and not texts
            if not ok and not texts:
                texts = top_texts or ["the row was not saved"]
            stale = not ok and (_is_stale(texts, info.get("errors")) or
                                (len(rows) == 1 and _is_stale(top_texts)))
        else:
            ok = top_ok
            texts = [] if ok else (top_texts or ["the request was not saved"])
            stale = not ok and _is_stale(texts)
        results.append(RowResult(ok=ok, stale=stale, errors=texts))

    # attach affected objects
    if len(affected) == len(rows):
        pairs = list(enumerate(affected))
    else:
        pairs = []
        by_id = {_as_int(a.get("id")): a for a in affected}
        used: set[int] = set()
        for index, row in enumerate(rows):
            row_id = _as_int(row.get("id"))
            if row_id and row_id in by_id and results[index].ok:
                pairs.append((index, by_id[row_id]))
                used.add(id(by_id[row_id]))
        spare = [a for a in affected if id(a) not in used and _as_int(a.get("id")) not in
                 {_as_int(r.get("id")) for r in rows if _as_int(r.get("id"))}]
        creates = [i for i, r in enumerate(rows) if not _as_int(r.get("id")) and results[i].ok]
        pairs += list(zip(creates, spare))
    for index, obj in pairs:
        result = results[index]
        if not result.ok:
            continue
        result.affected = obj
        result.id = _as_int(obj.get("id"))
        result.lock_version = _as_int(obj.get("lock_version"))
    for index, row in enumerate(rows):
        if results[index].ok and results[index].id is None and _as_int(row.get("id")):
            results[index].id = _as_int(row.get("id"))
    return results


# --- the client -----------------------------------------------------------------------------------

class WorkbooksClient:
    def __init__(self, http: HttpClient, service: str, *, api_key: str | None = None,
                 username: str | None = None, session_id: str | None = None,
                 logical_database_id: Any = None, api_logging_key: str | None = None,
                 client_name: str | None = None) -> None:
        if not service:
            raise BadCredentials("no Workbooks service URL (_workbooks_service) in the parameters")
        self.http = http
        self.service = service.rstrip("/")
        self.api_key = api_key or None
        self.username = username
        self.session_id = session_id or None
        self.logical_database_id = logical_database_id
        self.api_logging_key = api_logging_key or None
        self.application_name = client_name or "Outreach Sync"
        self.authenticity_token: str | None = None
        self.database: dict = {"name": None, "id": None, "instance_id": None}
        self.login_info: dict = {}
        self._logging_seq = 0
        self._logged_in = False
        self._reconnects = 0
        self._learned: list[str] = []      # secrets a login handed us, used or not (redacted all the same)
        # Cookies are managed explicitly (the session cookie only, only in session mode), so an
        # API-key client never drifts into session mode because a response set a cookie.
        http.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        http.add_secret_source(self.secrets)

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def connect(cls, params: dict, http: HttpClient) -> "WorkbooksClient":
        """Build from the run parameters (DESIGN §3) and log in: engine mode when the session keys
        are present, else API-key mode."""
        service = params.get("_workbooks_service")
        common = dict(client_name=params.get("_workbooks_client_name"),
                      api_logging_key=params.get("_workbooks_api_logging_key"))
        if all(params.get(k) not in (None, "") for k in ENGINE_KEYS):
            client = cls(http, service, username=params["_workbooks_username"],
                         session_id=str(params["_workbooks_session_id"]),
                         logical_database_id=params["_workbooks_logical_database_id"], **common)
        elif params.get("workbooks_api_key"):
            client = cls(http, service, api_key=str(params["workbooks_api_key"]), **common)
        else:
            raise BadCredentials("no Workbooks credentials in the parameters: expected the Process "
                                 "Engine's _workbooks_* keys or workbooks_api_key")
        client.login()
        return client

    @property
    def session_mode(self) -> bool:
        return self.api_key is None

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.session_id, self.authenticity_token, *self._learned) if s]

    # --- login / logout ----------------------------------------------------------------------------
    def login(self) -> dict:
        """Reconnect the engine's session (new session id + authenticity token) or, with an API
        key, learn the database identity. Raises BadCredentials / TransientError."""
        params: list[tuple[str, str]] = [("_application_name", self.application_name),
                                         ("_fast_login", "true"), ("_strict_attribute_checking", "true")]
        if self.session_mode:
            params += [("username", str(self.username)), ("session_id", str(self.session_id)),
                       ("logical_database_id", str(self.logical_database_id))]
        # A reconnect may consume the old session id, so it is not replayed after an ambiguous
        # failure; an API-key login has no such effect.
        payload = self._call("POST", "login", params, idempotent=not self.session_mode, login=True)
        # An API-key login still opens a session we never use: its id and token are secrets too,
        # and a server error body may quote them.
        self._learned += [str(payload[k]) for k in ("session_id", "authenticity_token") if payload.get(k)]
        self.login_info = {k: v for k, v in payload.items()
                           if k not in ("session_id", "authenticity_token", "my_queues")}
        if self.session_mode:
            new_session = payload.get("session_id") or self.session_id
            self.session_id = str(new_session)
            self.authenticity_token = payload.get("authenticity_token")
            if not self.authenticity_token:
                raise TransientError("Workbooks login gave no authenticity token; try again later")
        database_id = payload.get("logical_database_id", payload.get("default_database_id"))
        self.database = {"name": payload.get("database_name"), "id": database_id,
                         "instance_id": payload.get("database_instance_id")}
        self._logged_in = True
        return self.login_info

    def logout(self) -> None:
        """End the session (session mode only). Workbooks answers 302; failures are ignored:
        the session times out by itself."""
        if not self.session_mode or not self._logged_in:
            return
        try:
            response = self._send("POST", f"{self.service}/logout", self._base_params("POST"),
                                  idempotent=False, follow=False)
            self._absorb_cookie(response)
        except TransientError:
            pass
        self._logged_in = False

    # --- reads -------------------------------------------------------------------------------------
    def get(self, endpoint: str, *, filters: Iterable[tuple] = (), fm: str | None = None,
            columns: Iterable[str] | None = None, sort: str | list[str] | None = "id",
            direction: str | list[str] = "ASC", start: int = 0, limit: int = DEFAULT_PAGE,
            extra: Iterable[tuple[str, Any]] = ()) -> list[dict]:
        """One page of records (list), with `__skip_total_rows` so Workbooks does not count.
        `filters` are (column, op, value) triples (see `encode_filter_value`); `fm` is "and",
        "or" or an expression over 1-based filter numbers; `sort`/`direction` may be lists
        (multi-column sort)."""
        params = self._read_params(filters, fm, columns, sort, direction, extra)
        params = [("_start", str(start)), ("_limit", str(limit)), ("__skip_total_rows", "true"), *params]
        payload = self._call("GET", endpoint, params, idempotent=True)
        data = payload.get("data")
        if data is None:
            return []
        if not isinstance(data, list):
            raise WorkbooksError(f"Workbooks {endpoint}: expected a list of records", detail=type(data).__name__)
        return data

    def count(self, endpoint: str, *, filters: Iterable[tuple] = (), fm: str | None = None) -> int:
        """How many records match (Workbooks' `total`), fetching a single row."""
        params = [("_start", "0"), ("_limit", "1"),
                  *self._read_params(filters, fm, ["id"], "id", "ASC", ())]
        payload = self._call("GET", endpoint, params, idempotent=True)
        total = payload.get("total")
        if total is None:
            raise WorkbooksError(f"Workbooks {endpoint}: no total in the answer")
        return int(total)

    @staticmethod
    def _read_params(filters, fm, columns, sort, direction, extra) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if isinstance(sort, (list, tuple)):
            directions = list(direction) if isinstance(direction, (list, tuple)) else [direction] * len(sort)
            for column, way in zip(sort, directions + [directions[-1] if directions else "ASC"] * len(sort)):
                params += [("_sort[]", column), ("_dir[]", way)]
        elif sort:
            params += [("_sort", sort), ("_dir", direction if isinstance(direction, str) else direction[0])]
        params += filter_params(filters, fm)
        for column in columns or ():
            params.append(("_select_columns[]", column))
        params += [(k, _plain(v)) for k, v in extra]
        return params

    def iter_pages(self, endpoint: str, *, filters: Iterable[tuple] = (), fm: str | None = None,
                   columns: Iterable[str] | None = None, sort: str | list[str] | None = "id",
                   direction: str | list[str] = "ASC", start: int = 0, limit: int = DEFAULT_PAGE,
                   extra: Iterable[tuple[str, Any]] = ()) -> Iterator[list[dict]]:
        """Stream pages; never holds more than one.

        Sorted by id (the default), pages are keyset-paged: each next page adds `id > last id`
        to the caller's filter, so records that the caller changes meanwhile (its own write-back
        moves `updated_at`, and may move a record out of the filter) are neither skipped nor
        seen twice, as plain `_start` offsets would. Any other sort pages by `_start`."""
        filters = list(filters)
        columns = list(columns) if columns is not None else None
        if sort == "id" and columns is not None and "id" not in columns:
            columns.append("id")
        last_id: int | None = None
        offset = start
        while True:
            page_filters, page_fm = filters, fm
            if sort == "id" and last_id is not None:
                page_filters, page_fm = _and_filter(filters, fm, ("id", "gt" if _ascending(direction)
                                                                  else "lt", last_id))
            page = self.get(endpoint, filters=page_filters, fm=page_fm, columns=columns, sort=sort,
                            direction=direction, start=offset if sort != "id" or last_id is None else 0,
                            limit=limit, extra=extra)
            if page:
                yield page
            if len(page) < limit:
                return
            if sort == "id":
                ids = [_as_int(r.get("id")) for r in page]
                if None in ids:
                    raise WorkbooksError(f"Workbooks {endpoint}: records without an id; cannot page")
                last_id = max(ids) if _ascending(direction) else min(ids)
            else:
                offset += len(page)

    def get_all(self, endpoint: str, **kwargs: Any) -> list[dict]:
        """Every page in one list: only for small sets (queues, custom fields, API data keys)."""
        return [row for page in self.iter_pages(endpoint, **kwargs) for row in page]

    def show(self, endpoint: str, record_id: int) -> dict:
        """`GET <endpoint>/<id>.api`: one record (its `data` object)."""
        payload = self._call("GET", f"{endpoint}/{int(record_id)}", [], idempotent=True)
        data = payload.get("data")
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, dict):
            raise WorkbooksError(f"Workbooks {endpoint}/{record_id}: not found", status=404)
        return data

    # --- writes ------------------------------------------------------------------------------------
    def batch(self, endpoint: str, rows: list[dict], *, extra: Iterable[tuple[str, Any]] = ()) -> list[RowResult]:
        """Create/update/delete rows with `_per_object_transactions=true`, so one bad row never
        blocks the others. Each row has `__method` ("POST"/"PUT"/"DELETE"), `id` and
        `lock_version` (0/omitted for creates) and its fields (nested dicts or bracketed names).
        More than 100 rows are sent as consecutive requests of ≤100. Returns one RowResult per
        row in request order; per-row failures are results, never exceptions."""
        results: list[RowResult] = []
        for offset in range(0, len(rows), MAX_BATCH):
            chunk = rows[offset:offset + MAX_BATCH]
            body = encode_batch(chunk) + [("_per_object_transactions", "true")]
            body += [(k, _plain(v)) for k, v in extra]
            payload = self._call("PUT", endpoint, body, idempotent=False)
            results += parse_batch_response(chunk, payload)
        return results

    def create(self, endpoint: str, records: list[dict]) -> list[RowResult]:
        return self.batch(endpoint, [{**r, "__method": "POST"} for r in records])

    def update(self, endpoint: str, records: list[dict]) -> list[RowResult]:
        return self.batch(endpoint, [{**r, "__method": "PUT"} for r in records])

    def delete(self, endpoint: str, records: list[dict]) -> list[RowResult]:
        """`records`: [{"id", "lock_version"}]."""
        return self.batch(endpoint, [{"__method": "DELETE", "id": r["id"], "lock_version": r["lock_version"]}
                                     for r in records])

    # --- metadata, custom fields, queues -------------------------------------------------------------
    def custom_fields(self, resource_type: str) -> list[dict]:
        """Custom field definitions on one record type (`Private::Crm::Person`, … or the kinds
        "person"/"organisation"), with `title`, `data_type`, `status`, `value_column_name`."""
        resource_type = RESOURCE_TYPES.get(resource_type, resource_type)
        return self.get_all("admin/custom_fields", filters=[("resource_type", "eq", resource_type)])

    def create_custom_fields(self, defs: list[dict], asynchronous: bool = False) -> list[dict]:
        """Create custom fields (`title`, `resource_type`, `data_type`, …). Returns the affected
        objects (with `id`, `status`, `value_column_name`) in order. With `asynchronous=True`
        (`_asynchronous_cf`) the caller polls `custom_fields` until every `status` is Available.
        Raises WorkbooksError naming each field that failed (the others are created)."""
        rows = [{**{k: v for k, v in d.items() if k not in ("id", "lock_version")}, "__method": "POST"}
                for d in defs]
        extra = [("_asynchronous_cf", "true")] if asynchronous else []
        results = self.batch("admin/custom_fields", rows, extra=extra)
        failed = [f"{d.get('title')!r}: {'; '.join(r.errors)}" for d, r in zip(defs, results) if not r.ok]
        if failed:
            raise WorkbooksError("Workbooks refused custom fields: " + " | ".join(failed),
                                 detail=[r.affected for r in results])
        return [r.affected for r in results]

    def metadata_types(self, class_names: Iterable[str] | None = None,
                       columns: Iterable[str] | None = None) -> list[dict]:
        extra = [("class_names[]", name) for name in class_names or ()]
        payload = self._call("GET", "metadata/types",
                             [*extra, *(("_select_columns[]", c) for c in columns or ())], idempotent=True)
        data = payload.get("data") or []
        return data if isinstance(data, list) else [data]

    def queues(self, kind: str) -> dict[int, dict]:
        """id → queue (`name`, `queue_type`, `owner_id`, `owner[login_name]`,
        `owner[person_name]`) for "person" or "organisation": how "Assigned To" (a queue id)
        leads to a user."""
        endpoint = QUEUE_ENDPOINTS.get(kind, kind)
        columns = ["id", "name", "queue_type", "owner_id", "owner[login_name]", "owner[person_name]"]
        return {int(q["id"]): q for q in self.get_all(endpoint, columns=columns)}

    # --- the wire ----------------------------------------------------------------------------------
    def _url(self, endpoint: str) -> str:
        endpoint = endpoint.strip("/")
        if endpoint in ("logout",) or re.search(r"\.[a-z]{3,4}$", endpoint):
            return f"{self.service}/{endpoint}"
        return f"{self.service}/{endpoint}.api"

    def _base_params(self, method: str) -> list[tuple[str, str]]:
        params = [("client", "api"), ("api_version", "1")]
        if self.api_key:
            params.append(("api_key", self.api_key))
        elif method != "GET" and self.authenticity_token:
            params.append(("_authenticity_token", self.authenticity_token))
        if self.api_logging_key:
            self._logging_seq += 1
            params += [("api_logging_key", self.api_logging_key), ("api_logging_seq", str(self._logging_seq))]
        return params

    def _query(self) -> list[tuple[str, str]]:
        query = [("_dc", str(int(time.time() * 1000)))]
        deadline = self.http.deadline
        if deadline.limited:
            query.append(("_max_request_duration", str(max(1, int(deadline.remaining())))))
        return query

    def _send(self, method: str, url: str, params: list[tuple[str, str]], *, idempotent: bool,
              follow: bool = True) -> requests.Response:
        cookies = {"Workbooks-Session": self.session_id} if self.session_mode and self.session_id and \
            self._logged_in else None
        body = params if method == "GET" else params + [("_method", method)]
        return self.http.request(method, url, params=self._query(), data=body, cookies=cookies, headers=FORM,
                                 idempotent=idempotent, allow_redirects=follow, stop_redirect=is_login_page)

    def _call(self, method: str, endpoint: str, params: list[tuple[str, str]], *, idempotent: bool,
              login: bool = False) -> dict:
        url = self._url(endpoint)
        what = f"Workbooks {method} {endpoint}"
        response = self._send(method, url, self._base_params(method) + params, idempotent=idempotent)
        self._absorb_cookie(response)
        if _to_login_page(response) and not login and self._may_reconnect():
            # The session ended (§2.3): nothing was processed. A new session, then the same request
            # again, with the new session's token and the next logging sequence number.
            self._reconnects += 1
            try:
                self.login()
            except TransientError as exc:
                raise TransientError(f"{what}: Workbooks sent the request to its login page (the session "
                                     f"ended) and reconnecting failed: {exc}") from None
            response = self._send(method, url, self._base_params(method) + params, idempotent=idempotent)
            self._absorb_cookie(response)
        status = response.status_code
        payload = _json_or_none(response)

        if status in (401, 403):
            reason = (payload or {}).get("failure_reason") if isinstance(payload, dict) else None
            message = (payload or {}).get("failure_message") if isinstance(payload, dict) else None
            text = f"{what}: HTTP {status}" + (f" {reason}" if reason else "") + \
                (f" ({self.http.redact(message)})" if message else "")
            if reason in PERMANENT_LOGIN_FAILURES or (reason is None and status == 401 and self.api_key):
                raise BadCredentials(_credential_advice(text, reason), reason=reason)
            raise TransientError(text + "; try again later")
        if _to_login_page(response):
            if self.session_mode:
                raise TransientError(f"{what}: Workbooks sent the request to its login page: the session "
                                     "ended (it expired, or Workbooks is in maintenance) and reconnecting did "
                                     "not bring it back; the next run starts with a new session")
            raise TransientError(f"{what}: Workbooks sent the request to its login page: the API key was "
                                 "not accepted, or Workbooks is in maintenance; try again later (check "
                                 "workbooks_api_key if it persists)")
        if 300 <= status < 400:
            # Followable redirects were followed (plugin.http); this one says the request was
            # processed elsewhere (303), or names no Location. Nothing is re-sent.
            raise TransientError(f"{what}: redirected (HTTP {status}) in a way the plugin does not "
                                 "follow; not re-sent, try again later")
        if status == 404:
            raise WorkbooksError(f"{what}: not found (HTTP 404)", status=404)
        if status != 200:
            detail = self.http.redact((response.text or "")[:300])
            raise WorkbooksError(f"{what}: HTTP {status}: {detail}", status=status, detail=detail)
        if not isinstance(payload, dict):
            # e.g. a proxy's or a maintenance page
            raise TransientError(f"{what}: Workbooks did not answer with JSON (maintenance, or a "
                                 "proxy's page?); try again later")
        if method == "GET" and payload.get("success") is False:
            texts = _error_texts(payload.get("errors")) + _error_texts(payload.get("failures"))
            raise WorkbooksError(f"{what}: {self.http.redact('; '.join(texts) or 'failed')}",
                                 status=status, detail=texts)
        if login and not payload.get("success", True):
            raise TransientError(f"{what}: login did not succeed; try again later")
        return payload

    def _may_reconnect(self) -> bool:
        return self.session_mode and self._logged_in and self._reconnects < MAX_RECONNECTS

    def _absorb_cookie(self, response: requests.Response) -> None:
        if not self.session_mode:
            return
        for r in [*response.history, response]:
            value = r.cookies.get("Workbooks-Session")
            if value:
                self.session_id = value


def is_login_page(url: str) -> bool:
    """Workbooks' login page, where it sends a request whose session ended (§2.3: `/login` on the
    emulator; the real path is not documented, so any last path segment `login`, with or without
    an extension, counts)."""
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1].split(".", 1)[0].lower() == "login"


def _to_login_page(response: requests.Response) -> bool:
    if not 300 <= response.status_code < 400:
        return False
    target = redirects.location(response)
    return target is not None and is_login_page(target)


def _and_filter(filters: list[tuple], fm: str | None, extra: tuple) -> tuple[list[tuple], str | None]:
    """`filters` AND `extra`, keeping the caller's `_fm` logic."""
    combined = [*filters, extra]
    n = len(combined)
    if not filters:
        return combined, None
    if fm is None or fm.strip().lower() == "and":
        return combined, fm
    if fm.strip().lower() == "or":
        inner = " OR ".join(str(i) for i in range(1, n))
        return combined, f"({inner}) AND {n}"
    return combined, f"({fm}) AND {n}"


def _ascending(direction: str | list[str]) -> bool:
    first = direction[0] if isinstance(direction, (list, tuple)) and direction else direction
    return str(first or "ASC").upper() != "DESC"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _credential_advice(text: str, reason: str | None) -> str:
    hints = {
        "unrecognised_name_or_password": "the Workbooks API key or login was not recognised",
        "no_permission_for_api": "the Workbooks user may not use the API",
        "database_archived": "the Workbooks database is archived",
        "login_disabled": "the Workbooks user's login is disabled",
        "password_expired": "the Workbooks user's password has expired",
    }
    hint = hints.get(reason or "", "Workbooks refused the connection")
    return f"{hint} ({text}): check the plugin's Workbooks credentials"


def decode_json_value(value: Any) -> Any:
    """API Data values are stored as JSON text; tolerate values stored by hand."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
