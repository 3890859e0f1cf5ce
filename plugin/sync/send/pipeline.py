"""The send pipeline of one kind (Workbooks → Outreach), and the send stage that runs it for every
kind in registry order (a parent before its children).

Per page: map (pure), look up new records in Outreach in batches, create / adopt / flag
duplicates, PATCH only what changed since the snapshot, then write everything back to Workbooks
in one batch request, and account for each record (tallies, log lines, the watermark).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ...kinds import KINDS, Kind, children_of
from ...mapping import RecordMappingError
from ...snapshot import Snapshot
from ...state import unconfirmed_key, watermark_key
from ...workbooks import format_datetime as format_wb_datetime
from ..context import RunContext
from ..writeback import ERROR_MESSAGE_LIMIT, RECEIVE_NOTE, RowWrite, WorkbooksWriter
from . import plan
from .item import Item, Outcome
from .links import LinkCheck
from .push import Pusher
from .read import ChangeScan, LockVersionProof, any_work
from .relations import ParentLinks
from .resolve import resolver_for
from .unconfirmed import UnconfirmedCreates
from .watermark import Watermark, WatermarkTracker

# Outreach requests one run's receive half needs when little changed (a poll per feed and a
# look-up); kept for every run still to come in the budget's hour.
RECEIVE_REQUESTS_PER_RUN = 4


def receive_reserve(outreach) -> int:
    """What sending leaves of the hourly budget: enough for each minute's run still to come in
    this hour to receive, at most an eighth of the budget (so a backlog still gets the rest; with
    the default 8,000 that covers every minute of the hour)."""
    minutes_left = max(1, math.ceil(outreach.seconds_left_in_window() / 60))
    return min(RECEIVE_REQUESTS_PER_RUN * minutes_left, outreach.hourly_budget // 8)


class SendStage:
    """Workbooks → Outreach for every kind. Holds what the kinds' pipelines share for the whole
    run: the lock_version proof, the parent relations and the unconfirmed-creates notes."""

    name = "send"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.proof = LockVersionProof(ctx)
        self.relations = {k.name: ParentLinks(ctx, k) for k in KINDS if k.parent is not None}
        self.unconfirmed = {k.name: UnconfirmedCreates(ctx, k) for k in KINDS}
        self.pickup = plan.PickupGuard(ctx.log)     # rows an ignored filter let through (plan.outside_pickup)

    def state_keys(self) -> list[str]:
        """What this stage reads and writes, read again once the lock is held (a run that held
        the lock until a moment ago may have moved them)."""
        return [watermark_key(k.name) for k in KINDS] + [unconfirmed_key(k) for k in self.unconfirmed]

    def has_work(self) -> bool:
        for relation in self.relations.values():
            if Watermark.from_state(self.ctx.state.get(watermark_key(relation.parent.name))).recheck:
                return True     # children left to look at again after a parent changed
        return any(any_work(self.ctx, kind, self.proof) for kind in KINDS)

    def run(self) -> None:
        # Sending never takes the last requests of the hour: receive polls every run, and an
        # opt-out must not wait behind a backlog for the budget's next hour.
        with self.ctx.outreach.keeping(receive_reserve(self.ctx.outreach)):
            for kind in KINDS:
                # Each kind runs while there is time, even with Outreach stopped: it then only
                # counts what waits (the summary's pending).
                if self.ctx.deadline.expired(self.ctx.settings.deadline_margin):
                    self.ctx.time_is_up()
                    break
                SendPipeline(self, kind).run()

    def finish(self) -> None:
        """After the run's work, success or not, while the lock is still held."""
        if not self.ctx.dry_run:
            for note in self.unconfirmed.values():
                note.save()


class SendPipeline:
    def __init__(self, stage: SendStage, kind: Kind) -> None:
        ctx = stage.ctx
        self.ctx, self.kind = ctx, kind
        self.cols = ctx.columns[kind.name]
        self.mapping = ctx.mappings[kind.name]
        self.parent = stage.relations.get(kind.name)                      # this kind's parent relation
        self.children = [stage.relations[c.name] for c in children_of(kind)]   # relations it is parent of
        self.unconfirmed = stage.unconfirmed.get(kind.name)
        self.pickup = stage.pickup
        self.resolver = resolver_for(ctx, kind, self.unconfirmed)
        self.pusher = Pusher(ctx, kind, self.resolver, self.unconfirmed)
        self.links = LinkCheck(ctx, kind)
        self.writer = WorkbooksWriter(ctx.wb, ctx.log, stale_retries=ctx.settings.stale_retries)
        self.key = watermark_key(kind.name)
        self.start = Watermark.from_state(ctx.state.get(self.key))
        self.tracker = WatermarkTracker(self.start, ctx.state.latest_stamp())
        for record_id, updated_at, lock_version in ctx.own_versions.get(kind.name, ()):
            self.tracker.handled(record_id, updated_at, lock_version)   # written by receive, nothing to send
        self.scan = ChangeScan(ctx, kind, stage.proof, self.tracker)
        self.echoes: dict[str, str] = {}         # Outreach id → updatedAt of our own write (Watermark.echoes)

    # --- the kind ------------------------------------------------------------------------------------
    def run(self) -> None:
        finished = False
        try:
            if self.parent is not None:
                self.parent.recheck_children(lambda rows: self.process(rows, recheck=True))
            self.scan.run(lambda rows, in_scan: self.process(rows, in_scan=in_scan))
            finished = True
        finally:
            if self.ctx.report.stopped:
                self._count_backlog()
            if not self.ctx.dry_run:
                self._save_watermark(finished)

    def _save_watermark(self, finished: bool) -> None:
        new = self.tracker.result()
        if finished and not self.ctx.report.stopped:
            # Not while a fault is unwinding the run: the second may hold unfinished work.
            new = self.scan.close_second(new)
        if self.children:
            # Saved with the watermark that moves past these parents, in one write.
            noted = set().union(*(c.noted for c in self.children))
            new = replace(new, recheck=sorted(set(self.start.recheck) | noted))
        if self.ctx.echoes is not None:
            new = replace(new, echoes=self.ctx.echoes.keep(self.kind, {**self.start.echoes, **self.echoes}))
        if new.to_state() != self.start.to_state():
            self.ctx.state.put(self.key, new.to_state())

    def _count_backlog(self) -> None:
        """When stopping early, tell the administrator how much is left."""
        total = self.scan.count_backlog()
        if total is None:
            return
        counts = self.ctx.report.counts[self.kind.name]
        # Every record still without an Outreach Id waits (deferred ones included), plus the
        # linked ones this run put off; linked records the scan never reached cannot be counted
        # cheaply: the watermark keeps them for the next run.
        counts.pending = total + counts.pending_linked

    # --- one page ------------------------------------------------------------------------------------
    def process(self, rows: list[dict], *, recheck: bool = False, in_scan: bool = True) -> None:
        """One page. `recheck`: rows picked by the parent relation's recheck, outside the scan's
        order; they are all looked at (the done-set says nothing about their parent) and do not
        move the scan's cursor. `in_scan=False`: a second read again, whose rows do not move the
        cursor either."""
        tracker = self.tracker
        items = []
        for row in rows:
            updated_at, version = row.get("updated_at"), row.get("lock_version")
            if not recheck and tracker.met(row["id"], updated_at, version):
                continue            # our own echo (answered although the query left it out), or read again
            if not recheck and self.start.covers(row["id"], updated_at, version):
                tracker.handled(row["id"], updated_at, version)   # done by an earlier run
                continue
            if self.pickup.outside(row, self.cols, self.kind.label):
                if not recheck:
                    tracker.handled(row["id"], updated_at, version)   # nothing to do for this version
                continue
            items.append(Item(row=row, kind=self.kind))
        if items:
            self._prepare(items)
            self._resolve_new([i for i in items if i.outcome is None and not i.linked])
            for item in items:
                if item.outcome is None:
                    self.pusher.send(item)
            for relation in self.children:
                relation.note_children(items)
            self._note_receive_again(items)
            self._write_back(items)
            for item in items:
                self._account_for(item)
        if not recheck and in_scan:
            # Only now: a fault that cuts the page short (a failed write-back) propagates before
            # this, and the watermark stays in front of the page, whose deferred records are then
            # read again next run instead of being skipped.
            tracker.read(rows[-1].get("updated_at"))

    def _prepare(self, items: list[Item]) -> None:
        if self.parent is not None:
            self.parent.load(items)
        for item in items:
            row = item.row
            item.snapshot = Snapshot.parse(row.get(self.cols["snapshot"]))
            item.outreach_id = plan.outreach_int(row.get(self.cols["outreach_id"]))
            item.linked = item.outreach_id is not None
            if not item.linked and str(row.get(self.cols["outreach_id"]) or "").strip():
                item.fail(f"the Outreach Id {row.get(self.cols['outreach_id'])!r} is not a number: "
                          "clear it or correct it")
                continue
            try:
                item.mapped = self.mapping.map(row)
            except RecordMappingError as exc:
                item.fail(str(exc))
                continue
            problem = self.resolver.check(item)
            if problem:
                item.fail(problem)
                continue
            if self.parent is not None:
                self.parent.plan(item)
                if item.outcome is not None:
                    continue
            item.assignee = plan.outreach_int(row.get("assigned_to"))
        self.links.check(items)
        self.ctx.owners.resolve(self.kind, [i for i in items if i.outcome is None])

    def _resolve_new(self, items: list[Item]) -> None:
        if not items or self.ctx.outreach_stopped:
            for item in items:
                item.defer("Outreach work stopped for this run")
            return
        with self.ctx.outreach_work():
            self.resolver.resolve(items)
        for item in items:
            if item.outcome is None and self.ctx.outreach_stopped:
                item.defer("Outreach work stopped for this run")

    def _note_receive_again(self, items: list[Item]) -> None:
        """Before the write-back that links them, so no crash loses what receive must read."""
        ids = sorted({oid for item in items for oid in item.receive_again})
        if ids and self.ctx.echoes is not None and not self.ctx.dry_run:
            self.ctx.echoes.read_again(self.kind, ids)

    # --- write back to Workbooks ---------------------------------------------------------------------
    def _write_back(self, items: list[Item]) -> None:
        rows = [RowWrite(item.id, item.row["lock_version"], fields, item.describe())
                for item in items for fields in [self._write_back_fields(item)] if fields]
        if not rows or self.ctx.dry_run:
            return
        by_id = {item.id: item for item in items}
        result = self.writer.write(self.kind.endpoint, rows)
        for rid, outcome in result.rows.items():
            item = by_id[rid]
            if outcome.latest_lock_version is not None:
                item.row["lock_version"] = outcome.latest_lock_version
            if outcome.ok:
                item.written = True
                if outcome.clean and outcome.updated_at:
                    # Our write produced this version; the scan need not look at it again.
                    self.tracker.handled(rid, outcome.updated_at, outcome.lock_version)
            else:
                item.write_failed = outcome.failure

    def _write_back_fields(self, item: Item) -> dict[str, Any]:
        cols = self.cols
        limits = self.ctx.settings.field_limits.get(self.kind.name) or {}
        message_limit = min(ERROR_MESSAGE_LIMIT, limits.get("error_message", ERROR_MESSAGE_LIMIT))
        message = str(item.row.get(cols["error_message"]) or "")
        had_message = bool(message) and not message.startswith(RECEIVE_NOTE)
        fields: dict[str, Any] = {}
        outcome = item.outcome
        if outcome in (Outcome.CREATED, Outcome.ADOPTED, Outcome.UPDATED):
            if outcome in (Outcome.CREATED, Outcome.ADOPTED):
                fields[cols["outreach_id"]] = str(item.outreach_id)
                fields[cols["outreach_url"]] = self.ctx.web_url(self.kind, item.outreach_id)
            if item.new_snapshot is not None:
                fields[cols["snapshot"]] = item.new_snapshot.dump(limits.get("snapshot"))
            fields[cols["last_synced"]] = format_wb_datetime(self.ctx.clock())
            if had_message:
                fields[cols["error_message"]] = None
        elif outcome is Outcome.UNCHANGED:
            if item.new_snapshot is not None:       # a link just verified (links.py): it is ours now
                fields[cols["snapshot"]] = item.new_snapshot.dump(limits.get("snapshot"))
            if had_message:
                fields[cols["error_message"]] = None
        elif outcome is Outcome.DUPLICATE:
            fields[cols["duplicate"]] = True
            fields[cols["error_message"]] = plan.clip("Duplicate: " + item.message, message_limit)
        elif outcome is Outcome.ERROR:
            fields[cols["sync_error"]] = True
            fields[cols["error_message"]] = plan.clip(item.message, message_limit)
        return fields

    # --- tallies and the process log -----------------------------------------------------------------
    def _account_for(self, item: Item) -> None:
        counts = self.ctx.report.counts[self.kind.name]
        if item.outcome is None:   # defensive: a path that decided nothing must not pass as done
            item.outcome, item.message = Outcome.PENDING, "no decision was reached"
        outcome = item.outcome
        written = item.written or self.ctx.dry_run
        updated_at, version = item.version
        if outcome is Outcome.PENDING or (item.write_failed and outcome is not Outcome.UNCHANGED):
            counts.pending += 1
            counts.pending_linked += item.linked
            self.tracker.needs_work(item.id, updated_at, version, linked=item.linked)
            return
        if self.unconfirmed is not None and written:
            self.unconfirmed.confirmed(item.id)
        if item.written and item.echo and item.outreach_id is not None:
            self.echoes[str(item.outreach_id)] = item.echo
        if outcome is Outcome.UNCHANGED and not item.written:
            self.tracker.handled(item.id, updated_at, version)
        if outcome is Outcome.CREATED:
            counts.created += 1
        elif outcome is Outcome.ADOPTED:
            counts.created += 1
            counts.adopted += 1
            self.ctx.log.notice(f"{item.describe()}: linked to Outreach {self.kind.outreach_type} "
                                f"{item.outreach_id}, which an interrupted earlier run had created")
        elif outcome is Outcome.UPDATED:
            counts.updated += 1
        elif outcome is Outcome.UNCHANGED:
            counts.unchanged += 1
        elif outcome is Outcome.DUPLICATE:
            counts.duplicates += 1
            self.ctx.log.warning(f"{item.describe()}: marked Outreach Duplicate — {item.message}. "
                                 "Resolve it, then untick Outreach Duplicate to sync it again")
        elif outcome is Outcome.ERROR:
            counts.errors += 1
            self.ctx.log.error(f"{item.describe()}: marked Outreach Sync Error — {item.message}. "
                               "Fix it, then untick Outreach Sync Error to sync it again")
        if written:
            for relation in self.children:
                relation.remember(item)
