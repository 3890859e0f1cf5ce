"""The Workbooks change scan of one kind, and the watermark queries that serve it.

Each kind is read with the seed's rule — Sync to Outreach ticked, no Sync Error, no Duplicate,
and (Outreach Id blank OR Updated At >= the watermark) — in (updated_at, id) order, page by page
with a keyset cursor (offsets would skip rows, because our own write-backs move records to the
end of that order while we read). The scan runs until a query comes back empty, so it would reach
the echoes of its own write-backs too; instead each query leaves out the record versions this
run has handled ahead of the cursor (`id IN … AND lock_version = v`, watermark.exclusion). A
user's edit after our write-back has a new lock_version and is still answered. The empty answer
then lets the watermark move past them all, and the next idle run costs one query per kind.

The scan does not process rows itself: it hands each page to the pipeline's `process(rows,
in_scan)` and keeps only the cursor and the watermark bookkeeping (WatermarkTracker).
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Iterator, Sequence

from ...errors import PluginError, TransientError
from ...kinds import Kind
from ...state import CAPABILITIES, watermark_key
from ...workbooks import Terms, format_datetime as format_wb_datetime, parse_datetime as parse_wb_datetime
from ..context import RunContext
from .watermark import EXCLUDE_IDS, Watermark, WatermarkTracker, exclusion

Process = Callable[[list[dict], bool], None]     # (rows, in_scan)
Cursor = tuple[str | None, int]                   # (updated_at, id) of the last row read
ID_COLUMNS = ["id", "lock_version", "updated_at"]


def record_columns(ctx: RunContext, kind: Kind) -> list[str]:
    """What the scan reads of each record: identity, the plugin's fields, the parent link and
    everything the mapping maps."""
    wanted = ["id", "lock_version", "updated_at", "object_ref", "name", "assigned_to"]
    if kind.parent is not None:
        wanted.append(kind.parent.link_column)
    wanted += list(ctx.columns[kind.name].values())
    wanted += ctx.mappings[kind.name].source_columns
    return list(dict.fromkeys(wanted))


def pickup_flags(terms: Terms, cols: dict[str, str]) -> str:
    """Conditions 1–3 of the pick-up rule: Sync to Outreach ticked, no error, no duplicate flag."""
    return terms.all(terms.term(cols["sync"], "true"), terms.term(cols["sync_error"], "false"),
                     terms.term(cols["duplicate"], "false"))


def after(terms: Terms, cursor: Cursor) -> str:
    """`(updated_at, id)` after `cursor`."""
    return terms.any(terms.term("updated_at", "gt", cursor[0]),
                     terms.all(terms.term("updated_at", "eq", cursor[0]), terms.term("id", "gt", cursor[1])))


def leaving_out(terms: Terms, pairs: list[tuple[int, int]]) -> str:
    """AND NOT these exact record versions (watermark.exclusion); '' when there are none."""
    return terms.extend(*exclusion(pairs, terms.next_number))


class LockVersionProof:
    """Whether queries may leave record versions out by `lock_version`. Everything rests on
    Workbooks applying that filter: a server that dropped the term would leave records out by id
    alone and hide a user's edit made after our write-back. workbooks-api.md §3.2 promises integer
    filters but does not name lock_version, so it is proven once per database, with a version no
    record can have yet, and remembered in API Data (`capabilities`). Not proven: pages are read
    through as before (correct, one read per 100 written)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.known: bool | None = None

    def allows(self, kind: Kind, pairs: list[tuple[int, int]], *, prove: bool = True) -> bool:
        if self.known is None and pairs:
            stored = self.ctx.state.get(CAPABILITIES)
            stored = stored if isinstance(stored, dict) else {}
            if "lock_version_filter" in stored:
                self.known = bool(stored["lock_version_filter"])
            elif not prove:
                return False
            elif not self._prove(kind, pairs[0], stored):
                return False
        return bool(self.known) and bool(pairs)

    def _prove(self, kind: Kind, pair: tuple[int, int], stored: dict) -> bool:
        record_id, version = pair
        try:
            rows = self.ctx.wb.get(kind.endpoint, filters=[("id", "eq", record_id),
                                                           ("lock_version", "eq", version + 1_000_000)],
                                   columns=["id"], limit=1)
            self.known = not rows
        except TransientError:
            return False                     # ask again another time
        except PluginError:
            self.known = False
        if not self.known:
            self.ctx.log.notice("Workbooks does not filter on lock_version here: each run reads its own "
                                "write-backs once more (correct, slower)")
        if not self.ctx.dry_run:
            try:
                self.ctx.state.put(CAPABILITIES, {**stored, "lock_version_filter": self.known})
            except TransientError:
                pass                         # proven again next run
        return True


class ChangeScan:
    def __init__(self, ctx: RunContext, kind: Kind, proof: LockVersionProof, tracker: WatermarkTracker) -> None:
        self.ctx, self.kind, self.proof, self.tracker = ctx, kind, proof, tracker
        self.start = tracker.start
        self.cols = ctx.columns[kind.name]
        self.columns = record_columns(ctx, kind)

    # --- the scan ----------------------------------------------------------------------------------
    def run(self, process: Process) -> None:
        """Read every selected record version not handled yet, page by page, into `process`."""
        tracker = self.tracker
        cursor = None
        while not self.ctx.time_is_up():
            # Versions already handled (our own write-backs ahead of the cursor, the last run's
            # done-set) are left out by the query rather than paged through: one read per 100
            # written, otherwise.
            handled = tracker.handled_beyond(cursor, EXCLUDE_IDS)
            rows = self.fetch(self.start, cursor, handled if self.proof.allows(self.kind, handled) else [])
            if not rows:
                tracker.pass_handled(cursor)
                if self.read_open_seconds_again(process):
                    continue    # what it synced has echoes ahead of the cursor: pass them too
                return
            tracker.page(rows)
            cursor = (rows[-1].get("updated_at"), rows[-1]["id"])
            process(rows, True)
        self.pass_echoes_when_stopping(cursor)

    def fetch(self, watermark: Watermark, cursor: Cursor | None, handled: list[tuple[int, int]],
              columns: list[str] | None = None) -> list[dict]:
        """One page of the pick-up rule after `cursor`, the `handled` versions left out."""
        terms = Terms()
        rule = pickup_flags(terms, self.cols)
        if watermark.at:
            rule = terms.all(rule, terms.any(terms.term(self.cols["outreach_id"], "blank"),
                                             terms.term("updated_at", "ge", watermark.at)))
        if cursor is not None:
            rule = terms.all(rule, after(terms, cursor))
        rule = terms.all(rule, leaving_out(terms, handled))
        filters, fm = terms.query(rule)
        return self.ctx.wb.get(self.kind.endpoint, filters=filters, fm=fm, columns=columns or self.columns,
                               sort=["updated_at", "id"], direction=["ASC", "ASC"], start=0,
                               limit=self.ctx.settings.page_size)

    # --- seconds read while they were still going on ------------------------------------------------
    def read_open_seconds_again(self, process: Process | None) -> bool:
        """Read again, whole, each second the scan read into while it was still going on and has
        since moved past (WatermarkTracker.passed_open): a user's save in that second after our
        read is stamped behind the cursor. With `process` (the scan): sync what is found;
        without (a stopped run passing its echoes): a record not handled keeps the watermark on
        that second. Usually one query that answers nothing: our own versions are left out. True
        when something was synced (its write-backs are new echoes ahead of the cursor)."""
        if self.ctx.dry_run:
            return False
        tracker = self.tracker
        linked = () if process else ((self.cols["outreach_id"], "not_blank"),)
        columns = self.columns if process else ID_COLUMNS
        synced = False
        for second in tracker.passed_open():
            if self.ctx.time_is_up() if process else self.ctx.deadline.remaining() <= 2:
                break               # the watermark stays on that second (WatermarkTracker.result)
            for rows in self.pages_at(second, tracker.handled_at(second), columns, linked):
                if all(tracker.met(r["id"], r.get("updated_at"), r.get("lock_version")) for r in rows):
                    continue
                if not process or self.ctx.time_is_up():
                    return synced
                process(rows, False)
                synced = True
            tracker.read_again(second)
        return synced

    def pages_at(self, second: str, handled: list[tuple[int, int]], columns: list[str],
                 extra: Sequence[tuple] = ()) -> Iterator[list[dict]]:
        """Pages of the records stamped `second` that the pick-up flags (and `extra`) select,
        leaving the `handled` (id, lock_version) versions out by query when Workbooks is known to
        filter on lock_version: a range of ids at a time, each holding at most EXCLUDE_IDS of
        them."""
        handled = sorted(handled)
        for n in range(0, max(len(handled), 1), EXCLUDE_IDS):
            chunk = handled[n:n + EXCLUDE_IDS]
            terms = Terms()
            rule = terms.all(pickup_flags(terms, self.cols), *(terms.term(*f) for f in extra),
                             terms.term("updated_at", "eq", second))
            if n > 0:
                rule = terms.all(rule, terms.term("id", "gt", handled[n - 1][0]))
            if n + EXCLUDE_IDS < len(handled):
                rule = terms.all(rule, terms.term("id", "le", chunk[-1][0]))
            rule = terms.all(rule, leaving_out(terms, chunk if self.proof.allows(self.kind, chunk) else []))
            filters, fm = terms.query(rule)
            yield from self.ctx.wb.iter_pages(self.kind.endpoint, filters=filters, fm=fm, columns=columns)

    def close_second(self, watermark: Watermark) -> Watermark:
        """Move the watermark to the next second once its own second is over and every record
        stamped with it is in the done-set at the version we handled. Later edits can only carry
        a later time, so nothing is lost, and the done-set does not have to be re-read (paged
        past) by every idle run that follows."""
        if not watermark.at or not watermark.done:
            return watermark
        second = parse_wb_datetime(watermark.at)
        now = self.ctx.state.server_now()
        if now is not None and now < second.timestamp() + 1 and len(watermark.done) >= self.ctx.settings.page_size \
                and self.ctx.deadline.remaining() > self.ctx.settings.deadline_margin + 2:
            # A done-set this large would cost every idle run extra pages: worth waiting for the
            # second to end (at most a second, once per busy run).
            time.sleep(min(1.05, second.timestamp() + 1.05 - now))
            now = self.ctx.state.server_now()
        if now is None or now < second.timestamp() + 1:
            return watermark     # still inside that second (or a frozen clock): keep the done-set
        # The done-set is left out by the query: anything still answered keeps the second open.
        for page in self.pages_at(watermark.at, list(watermark.done.items()), ID_COLUMNS):
            for row in page:
                if not watermark.covers(row["id"], row.get("updated_at"), row.get("lock_version")):
                    return watermark
        return Watermark(at=format_wb_datetime(second + dt.timedelta(seconds=1)), done={})

    # --- a run that stops early ----------------------------------------------------------------------
    def pass_echoes_when_stopping(self, cursor: Cursor | None) -> None:
        """A run stopped early (time, budget) leaves records ahead of its cursor, and behind them
        the echoes of everything it wrote. The next run would page through all those echoes
        (an hour's backlog: thousands) unless the watermark passes them now. It may, when no
        *linked* record ahead still needs a look: unlinked ones are picked up by `Outreach Id
        blank` whatever the watermark. So ask for the linked records ahead, leaving out the
        versions this run handled (EXCLUDE_IDS at a time), until nothing else is answered."""
        tracker = self.tracker
        sample = tracker.handled_beyond(cursor, 1) if cursor is not None else []
        if not sample or self.ctx.dry_run or not self.proof.allows(self.kind, sample):
            return
        probe = cursor
        while self.ctx.deadline.remaining() > 2:
            terms = Terms()
            rule = terms.all(pickup_flags(terms, self.cols), terms.term(self.cols["outreach_id"], "not_blank"),
                             after(terms, probe))
            rule = terms.all(rule, leaving_out(terms, tracker.handled_beyond(probe, EXCLUDE_IDS)))
            filters, fm = terms.query(rule)
            try:
                rows = self.ctx.wb.get(self.kind.endpoint, filters=filters, fm=fm, columns=ID_COLUMNS,
                                       sort=["updated_at", "id"], direction=["ASC", "ASC"], start=0,
                                       limit=self.ctx.settings.page_size)
            except TransientError:
                return              # the watermark simply stays where it is
            if not rows:
                tracker.pass_handled(cursor)
                try:
                    self.read_open_seconds_again(None)
                except TransientError:
                    pass            # the watermark stays on the second not read again
                return
            if any(tracker.handled_version(r["id"]) != (r.get("updated_at"), r.get("lock_version")) for r in rows):
                return              # a linked record ahead needs a look: the next run starts here
            tracker.page(rows)
            probe = (rows[-1].get("updated_at"), rows[-1]["id"])

    def count_backlog(self) -> int | None:
        """Records still without an Outreach Id (one cheap query), or None when it fails."""
        terms = Terms()
        rule = terms.all(pickup_flags(terms, self.cols), terms.term(self.cols["outreach_id"], "blank"))
        filters, fm = terms.query(rule)
        try:
            return self.ctx.wb.count(self.kind.endpoint, filters=filters, fm=fm)
        except (PluginError, AttributeError):
            return None


def any_work(ctx: RunContext, kind: Kind, proof: LockVersionProof) -> bool:
    """A lock-free first look, so an idle minute costs one query per kind and no write. Rows the
    watermark covers (handled at its second) are paged past, not taken for work."""
    watermark = Watermark.from_state(ctx.state.get(watermark_key(kind.name)))
    scan = ChangeScan(ctx, kind, proof, WatermarkTracker(watermark))
    cursor = None
    while True:
        done = list(watermark.done.items()) if cursor is None else []
        # No proof here: an idle minute must stay at one query per kind.
        rows = scan.fetch(watermark, cursor, done if proof.allows(kind, done, prove=False) else [])
        if any(not watermark.covers(r["id"], r.get("updated_at"), r.get("lock_version")) for r in rows):
            return True
        if len(rows) < ctx.settings.page_size:
            return False
        cursor = (rows[-1].get("updated_at"), rows[-1]["id"])
