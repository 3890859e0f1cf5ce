"""One run of "Outreach Send/Receive": Organisations, then People (DESIGN.md §6, the seed).

Reading: each kind is read with the seed's rule `1 AND 2 AND 3 AND (4 OR 5)` in (updated_at, id)
order, page by page with a keyset cursor (offsets would skip rows, because our own write-backs
move records to the end of that order while we read). The scan runs until a query comes back
empty, so it would reach the echoes of its own write-backs too; instead, each query leaves out
the record versions this run has handled ahead of the cursor (`id IN … AND lock_version = v`, see
watermark.exclusion). A user's edit after our write-back has a new lock_version and is still
answered. The empty answer then lets the watermark move past them all, and the next idle run
costs one query per kind.

Per page: map (pure), look up new records in Outreach in batches, create / adopt / flag duplicates,
PATCH only what changed since the snapshot, then write everything back to Workbooks in one
batch request.
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

from . import plan
from .errors import (ActionRequired, BudgetSpent, OutreachError, OutreachNotFound,
                     OutreachValidation, PluginError, TransientError)
from .mapping import RecordMappingError
from .owners import OwnerDirectory
from .plan import ORGANISATION, PERSON, ObjectKind
from .snapshot import Snapshot
from .watermark import EXCLUDE_IDS, Watermark, WatermarkTracker, exclusion
from .workbooks import format_datetime as format_wb_datetime, parse_datetime as parse_wb_datetime

KINDS = (ORGANISATION, PERSON)
# People whose Prospect may exist although the Outreach Id never reached Workbooks (the create's
# answer, or the write-back after it, was lost): id → the emails it was created with. See
# SyncRun._unconfirmed_note.
UNCONFIRMED_KEY = "unconfirmed.person"
CAPABILITIES_KEY = "capabilities"
UNCONFIRMED_KEEP_SECONDS = 14 * 86400
ERROR_MESSAGE_LIMIT = 1000
_EMPLOYER_CACHE_LIMIT = 50_000


@dataclass
class SyncSettings:
    web_url: str = "https://web.outreach.io"
    dry_run: bool = False
    page_size: int = 100
    lock_ttl_seconds: int = 900
    deadline_margin: float = 10.0
    stale_retries: int = 3
    # kind → logical field → most characters Workbooks holds there (a `string` stand-in: 255)
    field_limits: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    errors: int = 0
    pending: int = 0
    adopted: int = 0
    pending_linked: int = 0         # of `pending`: already in Outreach (the backlog count misses them)

    def describe(self) -> str:
        return (f"{self.created} created, {self.updated} updated, "
                f"{_plural(self.duplicates, 'duplicate')}, {_plural(self.errors, 'error')}, "
                f"{self.pending} pending")


@dataclass
class RunReport:
    counts: dict[str, KindCounts] = field(default_factory=lambda: {k.name: KindCounts() for k in KINDS})
    stopped: str | None = None          # why the run stopped early (time, budget, fault)
    failure: PluginError | None = None  # a transient fault that ended the run (exit 1)
    skipped: str | None = None          # the run did nothing at all, and why
    dry_run: bool = False

    def summary(self) -> str:
        if self.skipped:
            return self.skipped
        parts = [f"{k.label}: {self.counts[k.name].describe()}" for k in (PERSON, ORGANISATION)]
        line = "; ".join(parts)
        if self.dry_run:
            line = "dry run (nothing written): " + line
        if self.stopped:
            line += f" — stopped early: {self.stopped}"
        return line


@dataclass
class Item:
    """One Workbooks record on its way through a page."""
    row: dict
    kind: ObjectKind
    mapped: dict[str, Any] | None = None
    snapshot: Snapshot = field(default_factory=Snapshot)
    outreach_id: int | None = None
    linked: bool = False            # had an Outreach Id when read
    account: Any = None
    owner: int | None = None
    employer_id: int | None = None
    assignee: int | None = None     # Assigned To queue id
    outcome: str | None = None      # created adopted updated unchanged duplicate error pending
    message: str | None = None
    adopted: bool = False           # linked to a record an interrupted earlier run created
    new_snapshot: Snapshot | None = None
    attributes_sent: list[str] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.row["id"])


class SyncRun:
    def __init__(self, *, workbooks, outreach, state, mappings: dict, columns: dict[str, dict[str, str]],
                 log, deadline, settings: SyncSettings | None = None, database_id: Any = 0,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.wb = workbooks
        self.outreach = outreach
        self.state = state
        self.mappings = mappings           # kind name -> BoundMapping
        self.columns = columns             # kind name -> logical field -> cf_ column
        self.log = log
        self.deadline = deadline
        self.settings = settings or SyncSettings()
        self.database_id = database_id
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.report = RunReport(dry_run=self.settings.dry_run)
        self._owners: dict[str, OwnerDirectory] = {}
        self._users: list[dict] | None = None
        self._employers: dict[int, dict | None] = {}
        self._created_keys: dict[tuple[str, str], int] = {}
        self._recheck: set[int] = set()    # organisations whose people must be looked at again
        self._unconfirmed: dict[str, dict] | None = None     # loaded on first use
        self._unconfirmed_before: dict[str, dict] = {}
        self._outreach_stopped = False
        self._pickup = plan.PickupGuard(log)     # rows an ignored filter let through (plan.outside_pickup)
        self._lock_version_filter: bool | None = None   # see _may_leave_out
        self._run_id = uuid.uuid4().hex[:12]

    # --- the run -------------------------------------------------------------------------------
    def execute(self) -> RunReport:
        try:
            if not self._any_work():
                self.report.skipped = "nothing to sync: " + self.report.summary()
                return self.report
            if not self.settings.dry_run:
                try:
                    acquired = self.state.acquire_lock(self._run_id, self.settings.lock_ttl_seconds)
                except TransientError:
                    # The answer was lost, so the lock may be ours after all: free it now rather
                    # than leave it to block every run until its TTL.
                    self._release_lock()
                    raise
                if not acquired:
                    self.report.skipped = ("another Outreach Send/Receive run is in progress "
                                           "(it holds the run lock); this run did nothing")
                    return self.report
            try:
                if not self.settings.dry_run:
                    # A run that held the lock until a moment ago may have moved the watermarks.
                    # (Inside the try: a failure here must release the lock too.)
                    self.state.prefetch([f"watermark.{kind.name}" for kind in KINDS])
                for kind in KINDS:
                    self._sync_kind(kind)
                    if self._time_is_up():
                        break
            finally:
                if not self.settings.dry_run:
                    self._save_unconfirmed()
                    self._release_lock()
        except TransientError as exc:
            self.report.failure = exc
            self.report.stopped = self.report.stopped or str(exc)
        return self.report

    def _unconfirmed_note(self) -> dict[str, dict]:
        """Creates this plugin cannot be sure about. A Prospect created by a run whose answer
        (or whose write-back) was lost is found again next run by an email look-up, and adopted
        because it carries our marker. If the person's email is edited in between, the look-up
        by the new email misses it and a second Prospect would be created (Outreach cannot
        filter on externalId). So the emails a create was sent with are kept here until its
        write-back succeeds, and looked up too. Costs nothing while nothing fails: the key is
        read with the rest of the state, and written only when it changes."""
        if self._unconfirmed is None:
            value = self.state.get(UNCONFIRMED_KEY)
            self._unconfirmed = {str(k): dict(v) for k, v in value.items() if isinstance(v, dict)} \
                if isinstance(value, dict) else {}
            self._unconfirmed_before = {k: dict(v) for k, v in self._unconfirmed.items()}
        return self._unconfirmed

    def _save_unconfirmed(self) -> None:
        if self._unconfirmed is None or self._unconfirmed == self._unconfirmed_before:
            return
        now = time.time()
        note = {k: v for k, v in self._unconfirmed.items()
                if now - float(v.get("at") or now) < UNCONFIRMED_KEEP_SECONDS}
        try:
            # Retried: without this note, a person whose email is edited before the next run
            # would get a second Prospect (a fault storm lost it once in 48).
            self.state.put_until_saved(UNCONFIRMED_KEY, note)
        except PluginError as exc:
            self.log.warning(f"could not note the creates whose outcome is unknown ({exc})")

    def _release_lock(self) -> None:
        try:
            self.state.release_lock(self._run_id)
        except PluginError as exc:
            # Any failure (an unexpected answer too): the lock expires by itself, the next run
            # waits at most its TTL, and the run's own outcome must not be replaced by this one.
            self.log.warning(f"could not release the run lock ({exc}); it expires on its own")

    def _any_work(self) -> bool:
        """A lock-free first look, so an idle minute costs one query per kind and no write.
        Rows the watermark covers (handled at its second) are paged past, not taken for work."""
        if Watermark.from_state(self.state.get(f"watermark.{ORGANISATION.name}")).recheck:
            return True     # people left to re-check after an Employer changed (_recheck_people)
        for kind in KINDS:
            watermark = Watermark.from_state(self.state.get(f"watermark.{kind.name}"))
            cursor = None
            while True:
                done = list(watermark.done.items()) if cursor is None else []
                # No proof here (_may_leave_out): an idle minute must stay at one query per kind.
                rows = self._fetch(kind, watermark, cursor,
                                   done if self._may_leave_out(kind, done, prove=False) else [])
                if any(not watermark.covers(r["id"], r.get("updated_at"), r.get("lock_version")) for r in rows):
                    return True
                if len(rows) < self.settings.page_size:
                    break
                cursor = (rows[-1].get("updated_at"), rows[-1]["id"])
        return False

    def _time_is_up(self) -> bool:
        if self.report.stopped:
            return True
        if self.deadline.expired(self.settings.deadline_margin):
            self.report.stopped = "time limit reached; the next run carries on"
            return True
        return False

    # --- one kind ------------------------------------------------------------------------------
    def _sync_kind(self, kind: ObjectKind) -> None:
        key = f"watermark.{kind.name}"
        start = Watermark.from_state(self.state.get(key))
        tracker = WatermarkTracker(start, self.state.latest_stamp())
        cursor = None
        finished = False
        try:
            if kind is PERSON:
                self._recheck_people(start, tracker)
            while not self._time_is_up():
                # Versions already handled (our own write-backs ahead of the cursor, the last run's
                # done-set) are left out by the query rather than paged through: one read per 100
                # written, otherwise.
                handled = tracker.handled_beyond(cursor, EXCLUDE_IDS)
                rows = self._fetch(kind, start, cursor, handled if self._may_leave_out(kind, handled) else [])
                if not rows:
                    tracker.pass_handled(cursor)
                    if self._read_open_seconds_again(kind, tracker, process=True):
                        continue    # what it synced has echoes ahead of the cursor: pass them too
                    break
                tracker.page(rows)
                cursor = (rows[-1].get("updated_at"), rows[-1]["id"])
                self._process_page(kind, rows, start, tracker)
            else:
                self._pass_echoes_when_stopping(kind, cursor, tracker)
            finished = True
        finally:
            if self.report.stopped:
                self._count_backlog(kind)
            if not self.settings.dry_run:
                new = tracker.result()
                if finished and not self.report.stopped:
                    # Not while a fault is unwinding the run: the second may hold unfinished work.
                    new = self._close_second(kind, new)
                if kind is ORGANISATION:
                    # Saved with the watermark that moves past these organisations, in one write.
                    new = replace(new, recheck=sorted(set(start.recheck) | self._recheck))
                if new.to_state() != start.to_state():
                    self.state.put(key, new.to_state())

    def _may_leave_out(self, kind: ObjectKind, pairs: list[tuple[int, int]], *, prove: bool = True) -> bool:
        """Whether queries may leave record versions out by `lock_version`. Everything rests on
        Workbooks applying that filter: a server that dropped the term would leave records out by
        id alone and hide a user's edit made after our write-back. workbooks-api.md §3.2 promises
        integer filters but does not name lock_version, so it is proven once per database, with a
        version no record can have yet, and remembered in API Data. Not proven: pages are read
        through as before (correct, one read per 100 written)."""
        if self._lock_version_filter is None and pairs:
            known = self.state.get(CAPABILITIES_KEY)
            known = known if isinstance(known, dict) else {}
            if "lock_version_filter" in known:
                self._lock_version_filter = bool(known["lock_version_filter"])
            elif not prove:
                return False
            else:
                record_id, version = pairs[0]
                try:
                    rows = self.wb.get(kind.endpoint, filters=[("id", "eq", record_id),
                                                               ("lock_version", "eq", version + 1_000_000)],
                                       columns=["id"], limit=1)
                    self._lock_version_filter = not rows
                except TransientError:
                    return False                     # ask again another time
                except PluginError:
                    self._lock_version_filter = False
                if not self._lock_version_filter:
                    self.log.notice("Workbooks does not filter on lock_version here: each run reads its own "
                                    "write-backs once more (correct, slower)")
                if not self.settings.dry_run:
                    try:
                        self.state.put(CAPABILITIES_KEY, {**known, "lock_version_filter": self._lock_version_filter})
                    except TransientError:
                        pass                         # proven again next run
        return bool(self._lock_version_filter) and bool(pairs)

    def _pass_echoes_when_stopping(self, kind: ObjectKind, cursor, tracker: WatermarkTracker) -> None:
        """A run stopped early (time, budget) leaves records ahead of its cursor, and behind them
        the echoes of everything it wrote. The next run would page through all those echoes
        (an hour's backlog: thousands) unless the watermark passes them now. It may, when no
        *linked* record ahead still needs a look: unlinked ones are picked up by `Outreach Id
        blank` whatever the watermark. So ask for the linked records ahead, leaving out the
        versions this run handled (EXCLUDE_IDS at a time), until nothing else is answered."""
        sample = tracker.handled_beyond(cursor, 1) if cursor is not None else []
        if not sample or self.settings.dry_run or not self._may_leave_out(kind, sample):
            return
        linked = _flag_filters(self.columns[kind.name]) + [(self.columns[kind.name]["outreach_id"], "not_blank", "")]
        probe = cursor
        while self.deadline.remaining() > 2:
            after, keyset = _after(probe, len(linked))
            filters, expression = _leaving_out(linked + after, f"1 AND 2 AND 3 AND 4 AND {keyset}",
                                               tracker.handled_beyond(probe, EXCLUDE_IDS))
            try:
                rows = self.wb.get(kind.endpoint, filters=filters, fm=expression,
                                   columns=["id", "lock_version", "updated_at"], sort=["updated_at", "id"],
                                   direction=["ASC", "ASC"], start=0, limit=self.settings.page_size)
            except TransientError:
                return              # the watermark simply stays where it is
            if not rows:
                tracker.pass_handled(cursor)
                try:
                    self._read_open_seconds_again(kind, tracker, process=False)
                except TransientError:
                    pass            # the watermark stays on the second not read again
                return
            if any(tracker.handled_version(r["id"]) != (r.get("updated_at"), r.get("lock_version")) for r in rows):
                return              # a linked record ahead needs a look: the next run starts here
            tracker.page(rows)
            probe = (rows[-1].get("updated_at"), rows[-1]["id"])

    def _read_open_seconds_again(self, kind: ObjectKind, tracker: WatermarkTracker, *, process: bool) -> bool:
        """Read again, whole, each second the scan read into while it was still going on and has
        since moved past (WatermarkTracker.passed_open): a user's save in that second after our
        read is stamped behind the cursor. `process`: sync what is found (the scan); otherwise
        (a stopped run passing its echoes) a record not handled keeps the watermark on that
        second. Usually one query that answers nothing: our own versions are left out. True when
        something was synced (its write-backs are new echoes ahead of the cursor)."""
        if self.settings.dry_run:
            return False
        linked = [] if process else [(self.columns[kind.name]["outreach_id"], "not_blank", "")]
        columns = self._columns_for(kind) if process else ["id", "lock_version", "updated_at"]
        synced = False
        for second in tracker.passed_open():
            if self._time_is_up() if process else self.deadline.remaining() <= 2:
                break               # the watermark stays on that second (WatermarkTracker.result)
            for rows in self._pages_at(kind, second, tracker.handled_at(second), columns, linked):
                if all(tracker.met(r["id"], r.get("updated_at"), r.get("lock_version")) for r in rows):
                    continue
                if not process or self._time_is_up():
                    return synced
                self._process_page(kind, rows, tracker.start, tracker, in_scan=False)
                synced = True
            tracker.read_again(second)
        return synced

    def _pages_at(self, kind: ObjectKind, second: str, handled: list[tuple[int, int]], columns: list[str],
                  extra: Sequence[tuple] = ()) -> Iterator[list[dict]]:
        """Pages of the records stamped `second` that the pick-up flags (and `extra`) select,
        leaving the `handled` (id, lock_version) versions out by query when Workbooks is known to
        filter on lock_version: a range of ids at a time, each holding at most EXCLUDE_IDS of
        them."""
        base = _flag_filters(self.columns[kind.name]) + list(extra) + [("updated_at", "eq", second)]
        handled = sorted(handled)
        for n in range(0, max(len(handled), 1), EXCLUDE_IDS):
            chunk = handled[n:n + EXCLUDE_IDS]
            filters = list(base)
            if n > 0:
                filters.append(("id", "gt", handled[n - 1][0]))
            if n + EXCLUDE_IDS < len(handled):
                filters.append(("id", "le", chunk[-1][0]))
            filters, expression = _leaving_out(filters, " AND ".join(str(i) for i in range(1, len(filters) + 1)),
                                               chunk if self._may_leave_out(kind, chunk) else [])
            yield from self.wb.iter_pages(kind.endpoint, filters=filters, fm=expression, columns=columns)

    def _note_renames(self, items: list[Item]) -> None:
        """Organisations renamed in Outreach on this page: their people's `employer_name` (mapped
        to `company`) changed with them, so _recheck_people must read those people again. The
        note is saved BEFORE the page's write-back, which records the new name as sent: saved
        only afterwards (with the watermark), one failed write would lose the rename for good.
        One extra state write, and only for a page with a rename. (An Employer reaching Outreach
        later is not rechecked: that would re-read every page of a first backlog for nothing; its
        earlier people are related on their next edit.)"""
        renamed = {i.id for i in items if i.outcome == "updated" and "name" in i.attributes_sent}
        if not renamed or self.settings.dry_run:
            return
        self._recheck |= renamed
        key = f"watermark.{ORGANISATION.name}"
        stored = Watermark.from_state(self.state.get(key))
        merged = sorted(set(stored.recheck) | renamed)
        if merged != stored.recheck:
            self.state.put(key, replace(stored, recheck=merged).to_state())

    def _recheck_people(self, start: Watermark, tracker: WatermarkTracker) -> None:
        """People whose synced Employer was renamed since they were synced: their mapped
        `company` (employer_name) changed, yet their own `updated_at` did not, so the scan would
        never select them. Read the linked ones, employers a page at
        a time, and let the normal diff decide (unchanged costs no Outreach request); forget each
        group of employers once all its people are done. Runs before the scan, so the scan takes
        the echoes of these write-backs for what they are."""
        key = f"watermark.{ORGANISATION.name}"
        organisations = Watermark.from_state(self.state.get(key))
        if not organisations.recheck:
            return
        cols = self.columns[PERSON.name]
        size = self.settings.page_size
        done: set[int] = set()
        for n in range(0, len(organisations.recheck), size):
            if self._time_is_up():
                break
            group = organisations.recheck[n:n + size]
            filters = _flag_filters(cols) + [(cols["outreach_id"], "not_blank", ""), ("employer_link", "eq", group)]
            for rows in self.wb.iter_pages(PERSON.endpoint, filters=filters, columns=self._columns_for(PERSON),
                                           limit=size):
                self._process_page(PERSON, rows, start, tracker, recheck=True)
                if self._time_is_up():
                    break
            if self.report.stopped:
                break
            done.update(group)
        if done and not self.settings.dry_run:
            left = [i for i in organisations.recheck if i not in done]
            self.state.put(key, replace(organisations, recheck=left).to_state())

    def _close_second(self, kind: ObjectKind, watermark: Watermark) -> Watermark:
        """Move the watermark to the next second once its own second is over and every record
        stamped with it is in the done-set at the version we handled. Later edits can only carry
        a later time, so nothing is lost, and the done-set does not have to be re-read (paged
        past) by every idle run that follows."""
        if not watermark.at or not watermark.done:
            return watermark
        second = parse_wb_datetime(watermark.at)
        now = self.state.server_now()
        if now is not None and now < second.timestamp() + 1 and len(watermark.done) >= self.settings.page_size \
                and self.deadline.remaining() > self.settings.deadline_margin + 2:
            # A done-set this large would cost every idle run extra pages: worth waiting for the
            # second to end (at most a second, once per busy run).
            time.sleep(min(1.05, second.timestamp() + 1.05 - now))
            now = self.state.server_now()
        if now is None or now < second.timestamp() + 1:
            return watermark     # still inside that second (or a frozen clock): keep the done-set
        # The done-set is left out by the query: anything still answered keeps the second open.
        for page in self._pages_at(kind, watermark.at, list(watermark.done.items()),
                                   ["id", "lock_version", "updated_at"]):
            for row in page:
                if not watermark.covers(row["id"], row.get("updated_at"), row.get("lock_version")):
                    return watermark
        return Watermark(at=format_wb_datetime(second + dt.timedelta(seconds=1)), done={})

    def _fetch(self, kind: ObjectKind, watermark: Watermark, cursor, handled: list[tuple[int, int]]) -> list[dict]:
        filters = self._unlinked_filters(kind)
        expression = "1 AND 2 AND 3"
        if watermark.at:
            filters.append(("updated_at", "ge", watermark.at))
            expression += " AND (4 OR 5)"
        if cursor is not None:
            after, keyset = _after(cursor, len(filters))
            filters += after
            expression += f" AND {keyset}"
        filters, expression = _leaving_out(filters, expression, handled)
        return self.wb.get(kind.endpoint, filters=filters, fm=expression, columns=self._columns_for(kind),
                           sort=["updated_at", "id"], direction=["ASC", "ASC"], start=0,
                           limit=self.settings.page_size)

    def _columns_for(self, kind: ObjectKind) -> list[str]:
        wanted = ["id", "lock_version", "updated_at", "object_ref", "name", "assigned_to"]
        if kind is PERSON:
            wanted.append("employer_link")
        wanted += list(self.columns[kind.name].values())
        wanted += self.mappings[kind.name].source_columns
        return list(dict.fromkeys(wanted))

    def _count_backlog(self, kind: ObjectKind) -> None:
        """When stopping early, tell the administrator how much is left (one cheap query)."""
        try:
            total = self.wb.count(kind.endpoint, filters=self._unlinked_filters(kind))
        except (PluginError, AttributeError):
            return
        counts = self.report.counts[kind.name]
        # Every record still without an Outreach Id waits (deferred ones included), plus the
        # linked ones this run put off; linked records the scan never reached cannot be counted
        # cheaply: the watermark keeps them for the next run.
        counts.pending = total + counts.pending_linked

    def _unlinked_filters(self, kind: ObjectKind) -> list[tuple]:
        """Conditions 1–4 of the pick-up rule: flagged for sync and not yet in Outreach."""
        cols = self.columns[kind.name]
        return _flag_filters(cols) + [(cols["outreach_id"], "blank", "")]

    # --- one page ------------------------------------------------------------------------------
    def _process_page(self, kind: ObjectKind, rows: list[dict], start: Watermark,
                      tracker: WatermarkTracker, *, recheck: bool = False, in_scan: bool = True) -> None:
        """One page. `recheck`: rows picked by `_recheck_people`, outside the scan's order; they
        are all looked at (the done-set says nothing about their Employer) and do not move the
        scan's cursor. `in_scan=False`: a second read again (_read_open_seconds_again), whose
        rows do not move the cursor either."""
        items = []
        for row in rows:
            updated_at, version = row.get("updated_at"), row.get("lock_version")
            if not recheck and tracker.met(row["id"], updated_at, version):
                continue            # our own echo (answered although the query left it out), or read again
            if not recheck and start.covers(row["id"], updated_at, version):
                tracker.handled(row["id"], updated_at, version)   # done by an earlier run
                continue
            if self._pickup.outside(row, self.columns[kind.name], kind.label):
                if not recheck:
                    tracker.handled(row["id"], updated_at, version)   # nothing to do for this version
                continue
            items.append(Item(row=row, kind=kind))
        if items:
            self._prepare(kind, items)
            self._resolve_new(kind, [i for i in items if i.outcome is None and not i.linked])
            for item in items:
                if item.outcome is None:
                    self._send(kind, item)
            if kind is ORGANISATION:
                self._note_renames(items)
            self._write_back(kind, items, tracker)
            for item in items:
                self._account_for(kind, item, tracker)
        if not recheck and in_scan:
            # Only now: a fault that cuts the page short (a failed write-back) propagates before
            # this, and the watermark stays in front of the page, whose deferred records are then
            # read again next run instead of being skipped.
            tracker.read(rows[-1].get("updated_at"))

    def _prepare(self, kind: ObjectKind, items: list[Item]) -> None:
        mapping = self.mappings[kind.name]
        cols = self.columns[kind.name]
        if kind is PERSON:
            self._load_employers([i.row.get("employer_link") for i in items])
        for item in items:
            row = item.row
            item.snapshot = Snapshot.parse(row.get(cols["snapshot"]))
            item.outreach_id = plan.outreach_int(row.get(cols["outreach_id"]))
            item.linked = item.outreach_id is not None
            if not item.linked and str(row.get(cols["outreach_id"]) or "").strip():
                self._fail(item, f"the Outreach Id {row.get(cols['outreach_id'])!r} is not a number: "
                                 "clear it or correct it")
                continue
            try:
                item.mapped = mapping.map(row)
            except RecordMappingError as exc:
                self._fail(item, str(exc))
                continue
            if kind is PERSON:
                if not item.linked or item.mapped.get("emails"):
                    # A new prospect needs an email (Outreach dedupes on it); a linked one only
                    # needs the emails we would send to be valid.
                    problem = plan.check_prospect_emails(item.mapped)
                    if problem:
                        self._fail(item, problem)
                        continue
                # Every person, emailed or not: left out, a linked one without an email lost its
                # account relation (None was sent) and ignored a change of Employer.
                item.employer_id = plan.outreach_int(row.get("employer_link"))
                employer = self._employers.get(item.employer_id) if item.employer_id else None
                item.account = plan.plan_account(item.employer_id, employer, item.snapshot)
                if item.account is plan.PENDING:
                    item.outcome = "pending"
                    item.message = f"waiting for its Employer (organisation {item.employer_id}) to reach Outreach"
                    continue
            item.assignee = plan.outreach_int(row.get("assigned_to"))
        self._resolve_owners(kind, [i for i in items if i.outcome is None])

    # --- new records: look up, adopt, flag duplicates ------------------------------------------
    def _resolve_new(self, kind: ObjectKind, items: list[Item]) -> None:
        if not items or self._outreach_stopped:
            for item in items:
                self._defer(item, "Outreach work stopped for this run")
            return
        try:
            if kind is PERSON:
                self._resolve_prospects(items)
            else:
                self._resolve_accounts(items)
        except BudgetSpent as exc:
            self._stop_outreach(f"Outreach hourly budget spent ({exc}); the next run carries on", exc)
        except TransientError as exc:
            self._stop_outreach(f"Outreach is unavailable: {exc}", exc, transient=True)
        for item in items:
            if item.outcome is None and self._outreach_stopped:
                self._defer(item, "Outreach work stopped for this run")

    def _resolve_prospects(self, items: list[Item]) -> None:
        note = self._unconfirmed_note()
        earlier = {i.id: [e for e in note.get(str(i.id), {}).get("emails") or [] if isinstance(e, str)]
                   for i in items}
        emails = sorted({e for i in items for e in i.mapped.get("emails", [])} |
                        {e for found in earlier.values() for e in found})    # the client adds lower case
        found = self.outreach.find_prospects_by_emails(emails)
        by_email: dict[str, list[dict]] = {}
        for resource in found:
            for email in (resource.get("attributes") or {}).get("emails") or []:
                by_email.setdefault(str(email).lower(), []).append(resource)
        for item in items:
            # Ours from an unconfirmed create, found by the emails it was created with: adopt it
            # (the diff then sends the new email). Someone else's record under an old email is
            # no reason to call this one a duplicate, so only the current emails judge that.
            marker = self._marker(item)
            mine = [r for e in earlier[item.id] for r in by_email.get(e.lower(), [])
                    if (r.get("attributes") or {}).get(item.kind.marker_attribute) == marker]
            if mine:
                self._adopt(item, mine[0])
                continue
            matches = {r["id"]: r for e in item.mapped["emails"] for r in by_email.get(e.lower(), [])}
            self._match(item, list(matches.values()), "email " + ", ".join(item.mapped["emails"]))

    def _resolve_accounts(self, items: list[Item]) -> None:
        mapping = self.mappings[ORGANISATION.name]
        markers = {self._marker(i): i for i in items}
        ours = {}
        for resource in self.outreach.find_accounts("customId", sorted(markers)):
            ours.setdefault((resource.get("attributes") or {}).get("customId"), resource)
        rest = []
        for marker, item in markers.items():
            if marker in ours:
                self._adopt(item, ours[marker])
            else:
                rest.append(item)
        if mapping.match_key == "customId" or not rest:
            return
        values = sorted({str(mapping.match_value(i.mapped)) for i in rest if mapping.match_value(i.mapped)})
        found = self.outreach.find_accounts(mapping.match_key, values) if values else []
        by_key: dict[str, list[dict]] = {}
        for resource in found:
            value = (resource.get("attributes") or {}).get(mapping.match_key)
            if value is not None:
                by_key.setdefault(str(value).lower(), []).append(resource)
        for item in rest:
            value = mapping.match_value(item.mapped)
            matches = by_key.get(str(value).lower(), []) if value else []
            self._match(item, matches, f"{mapping.match_key} {value!r}")

    def _match(self, item: Item, matches: list[dict], what: str) -> None:
        marker = self._marker(item)
        for resource in matches:
            if (resource.get("attributes") or {}).get(item.kind.marker_attribute) == marker:
                self._adopt(item, resource)
                return
        if matches:
            others = ", ".join(str(r["id"]) for r in matches[:3])
            self._duplicate(item, f"Outreach {item.kind.outreach_type} {others} already has {what}")

    def _adopt(self, item: Item, resource: dict) -> None:
        """A record an interrupted earlier run created for this very Workbooks record: link it,
        and let the normal diff bring it up to date."""
        item.outreach_id = int(resource["id"])
        item.snapshot = Snapshot.of_remote(resource, item.mapped)
        item.outcome = None
        item.adopted = True

    # --- send to Outreach ----------------------------------------------------------------------
    def _send(self, kind: ObjectKind, item: Item) -> None:
        if self._outreach_stopped:
            self._defer(item, "Outreach work stopped for this run")
            return
        if self.deadline.expired(self.settings.deadline_margin):
            self.report.stopped = self.report.stopped or "time limit reached; the next run carries on"
            self._defer(item, "time limit reached")
            return
        try:
            if item.outreach_id is None:
                self._create(kind, item)
            else:
                self._update(kind, item)
        except BudgetSpent as exc:
            self._stop_outreach(f"Outreach hourly budget spent ({exc}); the next run carries on", exc)
            self._defer(item, "Outreach hourly budget spent")
        except TransientError as exc:
            self._stop_outreach(f"Outreach is unavailable: {exc}", exc, transient=True)
            self._defer(item, str(exc))
        except OutreachNotFound:
            self._fail(item, f"the linked Outreach {kind.outreach_type} {item.outreach_id} no longer exists "
                             "(deleted in Outreach?): clear Outreach Id and Outreach Sync Error to create it again")
        except OutreachValidation as exc:
            self._rejected(kind, item, exc)
        except ActionRequired:
            raise
        except OutreachError as exc:
            if exc.status == 400 and "permittedParams" in str(exc.error_id or ""):
                raise ActionRequired(f"Outreach rejected a mapped attribute ({exc.detail}): "
                                     "check the mapping's targets") from exc
            self._fail(item, f"Outreach rejected the {kind.outreach_type}: {exc.detail or exc}")

    def _create(self, kind: ObjectKind, item: Item) -> None:
        key_value = self._match_value(kind, item)
        earlier = self._created_keys.get((kind.name, key_value)) if key_value else None
        if earlier is not None:
            self._duplicate(item, f"another Workbooks record synced in this run already created Outreach "
                                  f"{kind.outreach_type} {earlier} with the same {self._match_label(kind)}")
            return
        attributes = dict(item.mapped)
        attributes[kind.marker_attribute] = self._marker(item)
        relationships = {}
        if kind is PERSON and item.account is not None:
            relationships["account"] = item.account
        if item.owner is not None:
            relationships["owner"] = item.owner
        if self.settings.dry_run:
            self.log.info(f"dry run: would create an Outreach {kind.outreach_type} for {_describe(item)}")
            item.outcome = "created"
            return
        if kind is PERSON:
            # Until its write-back succeeds, this create's outcome is not certain (see _unconfirmed_note).
            entry = self._unconfirmed_note().setdefault(str(item.id), {"emails": []})
            entry["emails"] = sorted(set(entry.get("emails") or []) | set(item.mapped.get("emails") or []))
            entry["at"] = int(time.time())
        try:
            resource = self.outreach.create(kind.outreach_type, attributes, plan.relationships_payload(relationships))
        except OutreachValidation as exc:
            if kind is PERSON and "already been taken" in (exc.detail or ""):
                # Someone (or a parallel sync) created it between our look-up and the create.
                found = self.outreach.find_prospects_by_emails(item.mapped["emails"])
                self._match(item, found, "email " + ", ".join(item.mapped["emails"]))
                if item.outcome is None and item.outreach_id is not None:
                    self._update(kind, item)
                elif item.outcome is None:
                    self._duplicate(item, f"Outreach says the email is already taken ({exc.detail})")
                return
            raise
        item.outreach_id = int(resource["id"])
        item.outcome = "created"
        item.attributes_sent = sorted(item.mapped)
        item.new_snapshot = Snapshot().with_sent(item.mapped, account=relationships.get("account"),
                                                 owner=item.owner, employer=item.employer_id,
                                                 assignee=item.assignee)
        if key_value:
            self._created_keys[(kind.name, key_value)] = item.outreach_id

    def _update(self, kind: ObjectKind, item: Item) -> None:
        decision = plan.plan_update(item.snapshot, item.mapped, item.account, item.owner,
                                    relate_account=kind is PERSON)
        adopted = item.adopted
        if decision.empty:
            item.outcome = "adopted" if adopted else "unchanged"
            item.new_snapshot = (item.snapshot.with_sent({}, employer=item.employer_id, assignee=item.assignee)
                                 if adopted else None)
            return
        if self.settings.dry_run:
            changed = ", ".join(sorted(decision.attributes) + sorted(decision.relationships))
            self.log.info(f"dry run: would update Outreach {kind.outreach_type} {item.outreach_id} "
                          f"for {_describe(item)}: {changed}")
            item.outcome = "adopted" if adopted else "updated"
            return
        try:
            self.outreach.update(kind.outreach_type, item.outreach_id, decision.attributes,
                                 plan.relationships_payload(decision.relationships))
        except OutreachValidation as exc:
            if not self._emails_already_there(kind, item, decision, exc):
                raise
            rest = {k: v for k, v in decision.attributes.items() if k != "emails"}
            if rest or decision.relationships:
                self.outreach.update(kind.outreach_type, item.outreach_id, rest,
                                     plan.relationships_payload(decision.relationships))
        item.outcome = "adopted" if adopted else "updated"
        item.attributes_sent = sorted(decision.attributes)
        item.new_snapshot = item.snapshot.with_sent(
            decision.attributes,
            account=decision.relationships.get("account", item.snapshot.account),
            owner=decision.relationships.get("owner", item.snapshot.owner),
            employer=item.employer_id, assignee=item.assignee)

    def _emails_already_there(self, kind: ObjectKind, item: Item, decision, exc: OutreachValidation) -> bool:
        """Outreach may refuse a PATCH that re-sends a prospect's own emails with 422
        `validationDuplicateValueError` (outreach-api.md §5.2; the exact trigger is uncertain). That
        happens after an interrupted write-back, when the snapshot lags behind what Outreach holds.
        The emails count as sent only when a look-up shows no other prospect holds them; the error
        could also mean another one does, and that must stay an error."""
        if kind is not PERSON or "emails" not in decision.attributes or \
                exc.error_id != "validationDuplicateValueError":
            return False
        holders = self.outreach.find_prospects_by_emails(decision.attributes["emails"] or [])
        ours = [p for p in holders if str(p.get("id")) == str(item.outreach_id)]
        if not ours or len(holders) != len(ours):
            return False
        self.log.info(f"{_describe(item)}: Outreach already holds its email; sent the other changes only")
        return True

    def _rejected(self, kind: ObjectKind, item: Item, exc: OutreachValidation) -> None:
        detail = exc.detail or str(exc)
        pointer = exc.pointer or ""
        attribute = pointer.rsplit("/", 1)[-1] if pointer.startswith("/data/attributes/") else None
        if "excluded email" in detail:
            emails = ", ".join((item.mapped or {}).get("emails", []))
            self._fail(item, f"Outreach refuses the email address {emails}: its domain is on Outreach's "
                             f"excluded list ({detail})")
        elif attribute:
            source = self.mappings[kind.name].source_of(attribute) if hasattr(
                self.mappings[kind.name], "source_of") else None
            where = f"{attribute} (from Workbooks {source})" if source else attribute
            self._fail(item, f"Outreach rejected {where}: {detail}")
        else:
            self._fail(item, f"Outreach rejected the {kind.outreach_type}: {detail}")

    # --- outcomes ------------------------------------------------------------------------------
    def _fail(self, item: Item, message: str) -> None:
        item.outcome, item.message = "error", message

    def _duplicate(self, item: Item, message: str) -> None:
        item.outcome, item.message = "duplicate", message

    def _defer(self, item: Item, reason: str) -> None:
        if item.outcome is None:
            item.outcome, item.message = "pending", reason

    def _stop_outreach(self, reason: str, exc: PluginError, transient: bool = False) -> None:
        if not self._outreach_stopped:
            self.log.warning(reason)
        self._outreach_stopped = True
        self.report.stopped = self.report.stopped or reason
        if transient and self.report.failure is None:
            self.report.failure = exc

    # --- write back to Workbooks ---------------------------------------------------------------
    def _write_back(self, kind: ObjectKind, items: list[Item], tracker: WatermarkTracker) -> None:
        rows = {}
        for item in items:
            fields = self._write_back_fields(kind, item)
            if fields:
                rows[item.id] = (item, fields)
        if not rows or self.settings.dry_run:
            return
        self._write_rows(kind, rows, tracker, attempt=0)

    def _write_back_fields(self, kind: ObjectKind, item: Item) -> dict:
        cols = self.columns[kind.name]
        limits = self.settings.field_limits.get(kind.name) or {}
        message_limit = min(ERROR_MESSAGE_LIMIT, limits.get("error_message", ERROR_MESSAGE_LIMIT))
        had_message = bool(item.row.get(cols["error_message"]))
        fields: dict[str, Any] = {}
        if item.outcome in ("created", "adopted", "updated"):
            if item.outcome in ("created", "adopted"):
                fields[cols["outreach_id"]] = str(item.outreach_id)
                fields[cols["outreach_url"]] = self._web_url(kind, item.outreach_id)
            if item.new_snapshot is not None:
                fields[cols["snapshot"]] = item.new_snapshot.dump(limits.get("snapshot"))
            fields[cols["last_synced"]] = format_wb_datetime(self.clock())
            if had_message:
                fields[cols["error_message"]] = None
        elif item.outcome == "unchanged" and had_message:
            fields[cols["error_message"]] = None
        elif item.outcome == "duplicate":
            fields[cols["duplicate"]] = True
            fields[cols["error_message"]] = plan.clip("Duplicate: " + item.message, message_limit)
        elif item.outcome == "error":
            fields[cols["sync_error"]] = True
            fields[cols["error_message"]] = plan.clip(item.message, message_limit)
        return fields

    def _write_rows(self, kind: ObjectKind, rows: dict[int, tuple[Item, dict]], tracker, attempt: int) -> None:
        batch = [{"__method": "PUT", "id": rid, "lock_version": item.row["lock_version"], **fields}
                 for rid, (item, fields) in rows.items()]
        results = self.wb.batch(kind.endpoint, batch)
        stale = {}
        for (rid, (item, fields)), result in zip(rows.items(), results):
            if result.ok:
                updated_at = (result.affected or {}).get("updated_at")
                if updated_at and attempt == 0:
                    # Our write produced this version; the scan need not look at it again.
                    tracker.handled(rid, updated_at, result.lock_version)
                item.row["_written"] = True
            elif result.stale:
                stale[rid] = (item, fields)
            else:
                reason = "; ".join(result.errors) or "unknown failure"
                self.log.warning(f"could not write back to {_describe(item)}: {reason}")
                item.row["_write_failed"] = reason
        if not stale:
            return
        if attempt >= self.settings.stale_retries:
            for item, _ in stale.values():
                item.row["_write_failed"] = "edited by someone else during every retry"
                self.log.warning(f"{_describe(item)} kept changing while we wrote back; the next run retries")
            return
        # Someone edited these records meanwhile: take their current lock_version and write only our
        # own fields again. Their edit is newer than our read, so the scan reaches it and syncs it.
        fresh = {r["id"]: r for r in self.wb.get(kind.endpoint, filters=[("id", "eq", ",".join(map(str, stale)))],
                                                 columns=["id", "lock_version", "updated_at"],
                                                 limit=len(stale))}
        retry = {}
        for rid, (item, fields) in stale.items():
            if rid not in fresh:
                self.log.warning(f"{_describe(item)} was deleted or hidden while syncing; skipped")
                item.row["_write_failed"] = "deleted"
                continue
            item.row["lock_version"] = fresh[rid]["lock_version"]
            retry[rid] = (item, fields)
        if retry:
            self._write_rows(kind, retry, tracker, attempt + 1)

    # --- tallies and the process log ------------------------------------------------------------
    def _account_for(self, kind: ObjectKind, item: Item, tracker: WatermarkTracker) -> None:
        counts = self.report.counts[kind.name]
        if item.outcome is None:   # defensive: a path that decided nothing must not pass as done
            item.outcome, item.message = "pending", "no decision was reached"
        outcome = item.outcome
        written = bool(item.row.get("_written")) or self.settings.dry_run
        write_failed = item.row.get("_write_failed")
        if outcome == "pending" or (write_failed and outcome != "unchanged"):
            counts.pending += 1
            counts.pending_linked += item.linked
            tracker.needs_work(item.id, item.row.get("updated_at"), item.row.get("lock_version"),
                               linked=item.linked)
            return
        if kind is PERSON and self._unconfirmed and written:
            self._unconfirmed.pop(str(item.id), None)     # its outcome is in Workbooks now
        if outcome == "unchanged" and not item.row.get("_written"):
            tracker.handled(item.id, item.row.get("updated_at"), item.row.get("lock_version"))
        if outcome == "created":
            counts.created += 1
        elif outcome == "adopted":
            counts.created += 1
            counts.adopted += 1
            self.log.notice(f"{_describe(item)}: linked to Outreach {kind.outreach_type} {item.outreach_id}, "
                            "which an interrupted earlier run had created")
        elif outcome == "updated":
            counts.updated += 1
        elif outcome == "unchanged":
            counts.unchanged += 1
        elif outcome == "duplicate":
            counts.duplicates += 1
            self.log.warning(f"{_describe(item)}: marked Outreach Duplicate — {item.message}. "
                             "Resolve it, then untick Outreach Duplicate to sync it again")
        elif outcome == "error":
            counts.errors += 1
            self.log.error(f"{_describe(item)}: marked Outreach Sync Error — {item.message}. "
                           "Fix it, then untick Outreach Sync Error to sync it again")
        if kind is ORGANISATION and written:
            self._remember_employer(item)

    # --- helpers -------------------------------------------------------------------------------
    def _remember_employer(self, item: Item) -> None:
        if item.outcome in ("created", "adopted", "updated", "unchanged"):
            # A dry run creates nothing, yet its people should show as related, not as waiting.
            outreach_id = item.outreach_id if item.outreach_id is not None else -1
            self._employers[item.id] = {"qualifies": True, "outreach_id": outreach_id}
        elif item.outcome in ("duplicate", "error"):
            self._employers[item.id] = {"qualifies": False, "outreach_id": None}

    def _load_employers(self, employer_links) -> None:
        wanted = sorted({i for i in (plan.outreach_int(v) for v in employer_links) if i} - set(self._employers))
        if not wanted:
            return
        if len(self._employers) > _EMPLOYER_CACHE_LIMIT:
            self._employers.clear()
        cols = self.columns[ORGANISATION.name]
        rows = self.wb.get(ORGANISATION.endpoint, filters=[("id", "eq", ",".join(map(str, wanted)))],
                           columns=["id", cols["sync"], cols["sync_error"], cols["duplicate"], cols["outreach_id"]],
                           limit=len(wanted))
        for oid in wanted:
            self._employers[oid] = None
        for row in rows:
            qualifies = bool(row.get(cols["sync"])) and not row.get(cols["sync_error"]) and not row.get(cols["duplicate"])
            self._employers[int(row["id"])] = {"qualifies": qualifies,
                                               "outreach_id": plan.outreach_int(row.get(cols["outreach_id"]))}

    def _resolve_owners(self, kind: ObjectKind, items: list[Item]) -> None:
        """Owner per record. An Assigned To unchanged since the last sync keeps the owner worked
        out then, so an edit to another field costs no read of the Outreach users."""
        needs_lookup = []
        for item in items:
            if item.assignee is None:
                item.owner = None
            elif item.linked and item.assignee == item.snapshot.assignee:
                item.owner = item.snapshot.owner
            else:
                needs_lookup.append(item)
        if needs_lookup:
            owners = self._owner_directory(kind)
            for item in needs_lookup:
                item.owner = owners.owner_for(item.assignee)

    def _owner_directory(self, kind: ObjectKind) -> OwnerDirectory:
        # Person and organisation queues are separate tables whose ids may coincide.
        if kind.name not in self._owners:
            if self._users is None:
                self._users = [] if self._outreach_stopped else self._outreach_users()
            self._owners[kind.name] = OwnerDirectory(self.wb.queues(kind.name), self._users)
        return self._owners[kind.name]

    def _outreach_users(self) -> list[dict]:
        try:
            return self.outreach.list_users()
        except BudgetSpent as exc:
            self._stop_outreach(f"Outreach hourly budget spent ({exc}); the next run carries on", exc)
        except TransientError as exc:
            self._stop_outreach(f"Outreach is unavailable: {exc}", exc, transient=True)
        return []

    def _marker(self, item: Item) -> str:
        return item.kind.marker(self.database_id, item.id)

    def _match_value(self, kind: ObjectKind, item: Item) -> str | None:
        value = self.mappings[kind.name].match_value(item.mapped)
        return str(value).lower() if value else None

    def _match_label(self, kind: ObjectKind) -> str:
        return "email" if kind is PERSON else self.mappings[kind.name].match_key

    def _web_url(self, kind: ObjectKind, outreach_id: int) -> str:
        return f"{self.settings.web_url.rstrip('/')}/{kind.web_path}/{outreach_id}"


def _flag_filters(cols: dict[str, str]) -> list[tuple]:
    """Conditions 1–3 of the pick-up rule: Sync to Outreach ticked, no error, no duplicate flag."""
    return [(cols["sync"], "true", ""), (cols["sync_error"], "false", ""), (cols["duplicate"], "false", "")]


def _after(cursor: tuple[str, int], count: int) -> tuple[list[tuple], str]:
    """Filters and `_fm` term for "(updated_at, id) after `cursor`", numbered after `count` filters."""
    n = count
    return ([("updated_at", "gt", cursor[0]), ("updated_at", "eq", cursor[0]), ("id", "gt", cursor[1])],
            f"({n + 1} OR ({n + 2} AND {n + 3}))")


def _leaving_out(filters: list[tuple], expression: str, handled: list[tuple[int, int]]) -> tuple[list[tuple], str]:
    """`filters`/`expression` AND NOT these exact record versions (watermark.exclusion); as they
    are when there is nothing to leave out."""
    more, leave_out = exclusion(handled, len(filters) + 1)
    return (filters + more, f"{expression} AND {leave_out}") if more else (filters, expression)


def _describe(item: Item) -> str:
    row = item.row
    ref = row.get("object_ref") or f"id {row.get('id')}"
    name = row.get("name")
    label = f"{item.kind.name} {row.get('id')} ({ref}"
    return label + (f", {name})" if name else ")")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
