"""The administrators' status page: what the authorisation web process (plugin/authorise.py) shows
besides the connection — health, backlog and budget, the last 24 hours, and the records that need
a person, with Retry buttons. This module reads the facts and performs the two POST actions;
plugin/statusview.py turns the facts into HTML.

Reads on a GET (nothing is ever written on one): the state keys in one request (the run history,
the lock, the watermarks — the prefetch of plugin/authorise.py), the scheduled process's record
(whether Workbooks shows it switched on, when it last ran), and per kind: the pick-up rule's
count (records waiting), the Sync Error and Duplicate counts, and one page of flagged records.

Actions (POST only, each carrying plugin.websession's anti-forgery token for its purpose):
  retry      untick Outreach Sync Error and Outreach Duplicate on one record, guarded by the
             lock_version the page showed; a record saved since (the fix) is reset at its new
             version when it still has the error the page showed, else left alone and said so
  retry_all  the same for every record of one kind whose Error Message is of one kind of error
             (`error_group`), each with the lock_version just read
Both answer 303 back to the page (`?done=retried&count=N&changed=M`), so a reload sends nothing.

Links: a record's name links to the Workbooks record at `workbooks_record_url` (a template with
{service}, {endpoint}, {id}, {object_ref}); its default `{service}/{endpoint}/{id}` is our guess
(the reference gives no record URL; Workbooks' own links carry an encoded database id and the
object reference: set the template from one of them). A duplicate links to the Outreach record
its message names (`Outreach prospect 17 already has …`) under the web URL the runner writes
Outreach URL with.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from . import fields
from .errors import InvalidMapping, TransientError
from .history import History
from .kinds import KINDS, Kind, by_name, in_reading_order
from .state import BUDGET, LOCK, RUN_HISTORY, watermark_key
from .sync.send.read import leaving_out, pickup_flags
from .sync.send.watermark import EXCLUDE_IDS, Watermark
from .workbooks import Terms, parse_datetime

#: API Data keys the page reads, added to the web process's one prefetch.
STATE_KEYS = [RUN_HISTORY, BUDGET, LOCK] + [watermark_key(k.name) for k in KINDS]
PAGE_SIZE = 25
DEFAULT_RECORD_URL = "{service}/{endpoint}/{id}"
DEFAULT_WEB_URL = "https://web.outreach.io"
DEFAULT_HOURLY_BUDGET = 8000
FLAGS = ("sync_error", "duplicate")
SCHEDULED_ENDPOINT = "automation/scheduled_actions"
GROUP_LIMIT = 80


class ActionRefused(Exception):
    """A Retry that cannot be done as asked; the page says why (nothing was changed)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- the facts ------------------------------------------------------------------------------------

@dataclass
class KindFacts:
    kind: Kind
    pending: int | None = None
    errors: int | None = None
    duplicates: int | None = None

    @property
    def flagged(self) -> int:
        return (self.errors or 0) + (self.duplicates or 0)


@dataclass
class Flagged:
    kind: Kind
    id: int
    lock_version: int
    name: str
    ref: str
    flags: tuple[str, ...]
    message: str
    updated_at: float | None
    group: str
    workbooks_url: str | None
    outreach_url: str | None


@dataclass
class Facts:
    now: float
    installed: bool
    connection_problem: str | None
    history: History
    hourly_budget: int
    lock: dict | None = None
    process: dict | None = None
    mapping: str = "mappings/default.yaml"
    mapping_problem: str | None = None
    kinds: list[KindFacts] = field(default_factory=list)
    records: list[Flagged] = field(default_factory=list)
    page: int = 1
    pages: int = 1
    unread: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(k.pending or 0 for k in self.kinds)

    @property
    def flagged(self) -> int:
        return sum(k.flagged for k in self.kinds)


# --- pure helpers ---------------------------------------------------------------------------------

_EMAIL = re.compile(r"[^\s@'\"(),;<>]+@[^\s@'\"(),;<>]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\b\d+\b")


def error_group(message: Any) -> str:
    """The kind of error a message tells, for "Retry all of this kind of error": its text up to
    the first colon that ends a phrase (": "), with what differs from record to record — email
    addresses, quoted values, numbers — put as "…". So "main_location[email] → emails: not a
    valid email address" is "main_location[email] → emails", every "Duplicate: …" is "Duplicate",
    and "the linked Outreach prospect 17 no longer exists …" groups with the one for 18."""
    text = " ".join(str(message or "").split())
    if not text:
        return "(no message)"
    head = re.split(r":(?:\s|$)", text, maxsplit=1)[0]
    head = _NUMBER.sub("…", _EMAIL.sub("…", _QUOTED.sub("…", head)))
    head = re.sub(r"…(?:[\s,]*…)+", "…", head).strip()
    return head[:GROUP_LIMIT] or "(no message)"


def record_url(template: str | None, service: str, kind: Kind, row: dict) -> str | None:
    """The Workbooks record's address from the template (module docstring); None when it is not
    an http(s) URL. Only the four names are replaced: nothing else of the template is read."""
    values = {"service": service.rstrip("/"), "endpoint": kind.endpoint, "id": str(int(row["id"])),
              "object_ref": quote(str(row.get("object_ref") or ""), safe="")}
    url = re.sub(r"\{(service|endpoint|id|object_ref)\}", lambda m: values[m.group(1)],
                 str(template or DEFAULT_RECORD_URL))
    return url if _web(url) else None


def outreach_url(web_url: str | None, kind: Kind, message: str) -> str | None:
    """The Outreach record a duplicate's message names, or None when it names none."""
    found = re.search(rf"\bOutreach {re.escape(kind.outreach_type)} (\d+)\b", message or "")
    base = web_url if _web(web_url) else DEFAULT_WEB_URL
    return f"{base.rstrip('/')}/{kind.web_path}/{found.group(1)}" if found else None


def _web(url: Any) -> bool:
    try:
        parts = urlsplit(str(url or ""))
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def budget_now(history: History, now: float) -> tuple[int, float | None]:
    """(requests spent in the current hour's window, when it ends) from the stored tally."""
    start = history.budget.get("window_start")
    if not isinstance(start, (int, float)) or now >= start + 3600:
        return 0, None
    return int(history.budget.get("used") or 0), float(start) + 3600


def requests_per_record(history: History, now: float) -> float:
    """Outreach requests a record has cost over the last 24 hours (1 when nothing is known)."""
    runs = history.within(now)
    records = sum(r.total(n) for r in runs for n in ("created", "updated", "duplicates", "errors"))
    spent = sum(r.outreach for r in runs)
    return max(1.0, spent / records) if records >= 20 and spent else 1.0


def clear_estimate(backlog: int, per_record: float, hourly_budget: int, used: int,
                   window_end: float | None, now: float) -> float | None:
    """Seconds until a backlog of `backlog` records is sent at `hourly_budget` Outreach requests
    an hour, runs starting every minute; None when the budget is 0. Each hour's budget is spent
    at its start, so the last hour adds only a minute."""
    if backlog <= 0:
        return 0.0
    if hourly_budget <= 0:
        return None
    needed = math.ceil(backlog * per_record)
    left_now = max(0, hourly_budget - used) if window_end is not None else hourly_budget
    if needed <= left_now:
        return 60.0
    more_hours = math.ceil((needed - left_now) / hourly_budget) - 1
    until_window = (window_end - now) if window_end is not None else 3600.0
    return max(0.0, until_window) + more_hours * 3600 + 60


def notice_of(params: dict) -> str | None:
    """The sentence a Retry's 303 brings back (`?done=retried&count=N&changed=M`): fixed words
    and two numbers, nothing else taken from the address."""
    if params.get("_query_done") != "retried":
        return None
    count, changed = _count(params.get("_query_count")), _count(params.get("_query_changed"))
    text = (f"{records_words(count)} reset: the next run of Outreach Send/Receive tries again." if count
            else "No record was reset.")
    if changed:
        text += (f" {records_words(changed)} changed in Workbooks after this page was shown, so kept "
                 "the flag: check the record, then press Retry on the page as it is now.")
    return text


def records_words(n: int) -> str:
    return f"{n:,} record" if n == 1 else f"{n:,} records"


def _count(value: Any) -> int:
    try:
        return max(0, min(1_000_000, int(str(value))))
    except (TypeError, ValueError):
        return 0


def _epoch(value: Any) -> float | None:
    try:
        when = parse_datetime(value)
    except ValueError:
        return None
    return when.timestamp() if when else None


# --- reading ---------------------------------------------------------------------------------------

class StatusPage:
    """Reads the facts for one page and performs the Retry actions. `state` is the web process's
    StateStore (STATE_KEYS prefetched), `install` the install record, `params` the web process's
    parameters (its own, and the request's)."""

    def __init__(self, workbooks, state, install: dict | None, params: dict, *, clock=time.time) -> None:
        self.wb = workbooks
        self.state = state
        self.install = install if isinstance(install, dict) else None
        self.params = params
        self.clock = clock
        self._columns: dict[str, dict[str, str]] = {}

    # --- the facts ---------------------------------------------------------------------------------
    def facts(self, connection_problem: str | None, page: int = 1) -> Facts:
        now = self.clock()
        history = History.from_state(self.state.get(RUN_HISTORY), self.state.get(BUDGET))
        hourly = history.hourly_budget or _count(self.params.get("outreach_hourly_budget")) or DEFAULT_HOURLY_BUDGET
        lock = self.state.get(LOCK)
        facts = Facts(now=now, installed=self.install is not None, connection_problem=connection_problem,
                      history=history, hourly_budget=hourly,
                      lock=lock if isinstance(lock, dict) and lock.get("owner") else None)
        if self.install is None:
            return facts
        facts.process = self._read("the scheduled process", facts, self._scheduled_process)
        facts.mapping, facts.mapping_problem = self._mapping_check(facts.process)
        for kind in in_reading_order():
            facts.kinds.append(self._kind_facts(kind, facts))
        facts.pages = max(1, math.ceil(facts.flagged / PAGE_SIZE))
        facts.page = min(max(1, page), facts.pages)
        records = self._read("the records that need a person", facts, lambda: self._flagged(facts.page, history))
        facts.records = records or []
        return facts

    def _read(self, what: str, facts: Facts, read):
        """A read that may fail on its own: the page says what it could not read and goes on."""
        try:
            return read()
        except TransientError as exc:
            facts.unread.append(f"{what} ({exc})")
            return None

    def columns(self, kind: Kind) -> dict[str, str]:
        """{logical field → cf_ column}: as the installer recorded them, else found by title."""
        if kind.name not in self._columns:
            recorded = ((self.install or {}).get("fields") or {}).get(kind.name) or {}
            found = {d.key: recorded[d.title] for d in fields.definitions(kind.name) if recorded.get(d.title)}
            if any(key not in found for key in ("sync", "outreach_id", "error_message") + FLAGS):
                found = fields.resolve_columns(self.wb, kind.name, recorded=recorded)
            self._columns[kind.name] = found
        return self._columns[kind.name]

    def _scheduled_process(self) -> dict | None:
        recorded = ((self.install or {}).get("processes") or {}).get("send_receive") or {}
        if not recorded.get("id"):
            return None
        rows = self.wb.get(SCHEDULED_ENDPOINT, filters=[("id", "eq", recorded["id"])],
                           columns=["id", "title", "enabled", "last_run_at", "parameters"], limit=1)
        if not rows:
            return {"missing": True, "title": recorded.get("title")}
        return {**rows[0], "last_run_at": _epoch(rows[0].get("last_run_at"))}

    def _mapping_check(self, process: dict | None) -> tuple[str, str | None]:
        """The mapping the sync runs with, and its first problem (None when it loads)."""
        from .install import parameters_of
        from .mapping import bundled_mapping_path, load_mapping
        name = str(parameters_of(process or {}).get("mapping") or self.params.get("mapping")
                   or "mappings/default.yaml")
        try:
            path = bundled_mapping_path(name)
            load_mapping(path)
        except InvalidMapping as exc:
            more = len(exc.problems) - 1
            # Named as the parameter names it (mappings/acme.yaml:12:7), not by the server's path.
            first = (exc.problems[0] if exc.problems else str(exc)).replace(str(path), name.strip())
            return name, first + (f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else "")
        return name, None

    def _kind_facts(self, kind: Kind, facts: Facts) -> KindFacts:
        cols = self.columns(kind)
        found = KindFacts(kind)
        found.pending = self._read(f"the {kind.words} waiting", facts, lambda: self._pending(kind, cols))
        found.errors = self._read(f"the {kind.words} with a Sync Error", facts,
                                  lambda: self.wb.count(kind.endpoint, filters=[(cols["sync_error"], "true")]))
        found.duplicates = self._read(f"the {kind.words} marked Duplicate", facts,
                                      lambda: self.wb.count(kind.endpoint, filters=[(cols["duplicate"], "true")]))
        return found

    def _pending(self, kind: Kind, cols: dict[str, str]) -> int:
        """About what the next run picks up: the seed's rule with this kind's watermark, the record
        versions the last run finished at its second left out."""
        watermark = Watermark.from_state(self.state.get(watermark_key(kind.name)))
        terms = Terms()
        rule = pickup_flags(terms, cols)
        if watermark.at:
            rule = terms.all(rule, terms.any(terms.term(cols["outreach_id"], "blank"),
                                             terms.term("updated_at", "ge", watermark.at)))
        if watermark.done:
            # As the scan leaves them out. Where Workbooks does not filter on lock_version (the
            # engine then reads them through) the count may leave out an edit made in that second.
            rule = terms.all(rule, leaving_out(terms, sorted(watermark.done.items())[:EXCLUDE_IDS]))
        filters, fm = terms.query(rule)
        return self.wb.count(kind.endpoint, filters=filters, fm=fm)

    def _flagged(self, page: int, history: History) -> list[Flagged]:
        """Page `page` of the flagged records of every kind, newest first: each kind's newest
        `page × PAGE_SIZE` are read and merged (an administrator reads the first pages)."""
        wanted = page * PAGE_SIZE
        found: list[Flagged] = []
        for kind in in_reading_order():
            cols = self.columns(kind)
            terms = Terms()
            filters, fm = terms.query(terms.any(terms.term(cols["sync_error"], "true"),
                                                terms.term(cols["duplicate"], "true")))
            columns = ["id", "lock_version", "name", "object_ref", "updated_at", cols["sync_error"],
                       cols["duplicate"], cols["error_message"]]
            start = 0
            while start < wanted:
                limit = min(100, wanted - start)
                rows = self.wb.get(kind.endpoint, filters=filters, fm=fm, columns=columns,
                                   sort=["updated_at", "id"], direction=["DESC", "DESC"], start=start, limit=limit)
                found += [self._flagged_row(kind, cols, row, history) for row in rows]
                if len(rows) < limit:
                    break
                start += limit
        found.sort(key=lambda r: (r.updated_at or 0, r.id), reverse=True)
        return found[(page - 1) * PAGE_SIZE: wanted]

    def _flagged_row(self, kind: Kind, cols: dict[str, str], row: dict, history: History) -> Flagged:
        flags = tuple(f for f in FLAGS if _ticked(row.get(cols[f])))
        message = str(row.get(cols["error_message"]) or "")
        web_url = history.web_url or self.params.get("outreach_web_url")
        return Flagged(kind=kind, id=int(row["id"]), lock_version=int(row.get("lock_version") or 0),
                       name=str(row.get("name") or f"{kind.words} {row['id']}"),
                       ref=str(row.get("object_ref") or f"id {row['id']}"), flags=flags, message=message,
                       updated_at=_epoch(row.get("updated_at")), group=error_group(message),
                       workbooks_url=record_url(self.params.get("workbooks_record_url"), self.wb.service, kind, row),
                       outreach_url=outreach_url(web_url, kind, message) if "duplicate" in flags else None)

    # --- the actions ----------------------------------------------------------------------------------
    def retry(self, form: dict) -> tuple[int, int]:
        """Untick both flags on one record: (reset, changed). The write carries the lock_version
        the page showed. When the record was saved since — typically by the person who fixed it —
        it is read again and reset at its new version if it still has the error the page showed
        (the same Error Message); otherwise it is left alone and counted as changed."""
        kind = self._kind_of(form)
        try:
            record_id, version = int(str(form.get("id"))), int(str(form.get("lock_version")))
        except (TypeError, ValueError):
            raise ActionRefused("This Retry names no record. Nothing was changed.") from None
        cols = self.columns(kind)
        result = self._reset(kind, cols, record_id, version)
        if result.ok:
            return 1, 0
        rows = self.wb.get(kind.endpoint, filters=[("id", "eq", record_id)],
                           columns=["id", "lock_version", cols["error_message"], *(cols[f] for f in FLAGS)], limit=1)
        if not rows:
            raise ActionRefused(f"{kind.words} record {record_id} no longer exists. Nothing was changed.", status=404)
        row = rows[0]
        if not any(_ticked(row.get(cols[f])) for f in FLAGS):
            return 1, 0                     # someone reset it meanwhile: what was asked is done
        if message_digest(row.get(cols["error_message"])) != str(form.get("message") or ""):
            return 0, 1                     # it failed again, differently: the person should read it first
        return (1, 0) if self._reset(kind, cols, record_id, int(row.get("lock_version") or 0)).ok else (0, 1)

    def _reset(self, kind: Kind, cols: dict[str, str], record_id: int, version: int):
        result = self.wb.batch(kind.endpoint, [{"__method": "PUT", "id": record_id, "lock_version": version,
                                                **{cols[f]: False for f in FLAGS}}])[0]
        if not result.ok and not result.stale:
            raise ActionRefused(f"Workbooks did not reset {kind.words} record {record_id}: "
                                f"{'; '.join(result.errors) or 'no reason given'}. Nothing was changed.",
                                status=409)
        return result

    def retry_all(self, form: dict) -> tuple[int, int]:
        """Untick both flags on every record of one kind whose message is of the kind of error
        `form["group"]`, each at the lock_version just read: (reset, changed meanwhile)."""
        kind = self._kind_of(form)
        group = str(form.get("group") or "")
        if not group:
            raise ActionRefused("This Retry names no kind of error. Nothing was changed.")
        cols = self.columns(kind)
        terms = Terms()
        filters, fm = terms.query(terms.any(terms.term(cols["sync_error"], "true"),
                                            terms.term(cols["duplicate"], "true")))
        rows = []
        for page in self.wb.iter_pages(kind.endpoint, filters=filters, fm=fm,
                                       columns=["id", "lock_version", cols["error_message"]]):
            rows += [{"__method": "PUT", "id": int(r["id"]), "lock_version": int(r.get("lock_version") or 0),
                      **{cols[f]: False for f in FLAGS}}
                     for r in page if error_group(r.get(cols["error_message"])) == group]
        if not rows:
            return 0, 0
        results = self.wb.batch(kind.endpoint, rows)
        failed = [r for r in results if not r.ok and not r.stale]
        if failed and len(failed) == len(results):
            raise ActionRefused(f"Workbooks did not reset these {kind.words}: "
                                f"{'; '.join(failed[0].errors) or 'no reason given'}. Nothing was changed.",
                                status=409)
        return sum(r.ok for r in results), sum(r.stale for r in results) + len(failed)

    def _kind_of(self, form: dict) -> Kind:
        if self.install is None:
            raise ActionRefused("The plugin is not installed in this database. Nothing was changed.")
        try:
            return by_name(str(form.get("kind") or ""))
        except KeyError:
            raise ActionRefused("This Retry names no kind of record the plugin syncs. Nothing was changed.") \
                from None


def message_digest(message: Any) -> str:
    """What a Retry form carries of the Error Message it was shown with (to tell it again)."""
    return hashlib.sha256(" ".join(str(message or "").split()).encode("utf-8")).hexdigest()[:16]


def _ticked(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True", "t", "yes")

