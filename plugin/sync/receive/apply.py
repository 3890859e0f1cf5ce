"""Writing what receive decided into Workbooks, through the run's one record writer.

A record is written whole or not at all: a value Workbooks refuses (too long for the field, not
one of a picklist's values, an email it does not accept) fails the record's write, and the
record then gets only its opt-outs (never held back by other data), Outreach Sync Error and the
Error Message naming the field. A record someone edited since we read it is not written over:
it is read again next run and decided again from what it holds then.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...kinds import Kind
from ...snapshot import Snapshot
from ..context import RunContext
from ..send.item import describe_row
from ..send.plan import clip, outreach_int
from ..writeback import ERROR_MESSAGE_LIMIT, RowWrite, WorkbooksWriter
from .plan import RecordPlan


@dataclass
class Pending:
    """One Workbooks record's planned write, and where it came from."""
    row: dict
    plan: RecordPlan
    source: str                     # "Outreach prospect 12", for messages
    error: str | None = None        # a problem found before writing: flag the record with it
    flag: bool = True               # an error sets Outreach Sync Error (False: the message only)
    ok: bool = False                # written (or nothing to write)
    stale: bool = False             # edited meanwhile: left for the next run


class ReceiveWriter:
    def __init__(self, ctx: RunContext, kind: Kind) -> None:
        self.ctx, self.kind = ctx, kind
        self.cols = ctx.columns[kind.name]
        # 0: a record edited meanwhile is decided again next run, never written over
        self.writer = WorkbooksWriter(ctx.wb, ctx.log, stale_retries=0)

    def write(self, pending: list[Pending]) -> None:
        todo = [p for p in pending if p.error is None and not p.plan.empty]
        for p in pending:
            if p.error is None and p.plan.empty:
                p.ok = True
        if todo and not self.ctx.dry_run:
            result = self.writer.write(self.kind.endpoint, [self._row(p) for p in todo])
            for p in todo:
                outcome = result[int(p.row["id"])]
                if outcome.ok:
                    p.ok = True
                    self._handed_over(p, outcome)
                elif outcome.stale:
                    p.stale = True
                else:
                    p.error = (f"Workbooks refused what {p.source} holds: {outcome.failure}. "
                               "Correct it in Outreach (or the field in Workbooks)")
        elif todo:
            for p in todo:
                p.ok = True
        self._flag([p for p in pending if p.error is not None and not p.ok])

    def _row(self, p: Pending) -> RowWrite:
        fields = dict(p.plan.fields)
        if p.plan.snapshot is not None:
            limits = self.ctx.settings.field_limits.get(self.kind.name) or {}
            fields[self.cols["snapshot"]] = p.plan.snapshot.dump(limits.get("snapshot"))
        return RowWrite(int(p.row["id"]), p.row["lock_version"], fields, describe_row(self.kind, p.row))

    def _handed_over(self, p: Pending, outcome) -> None:
        """Our own version, which the send half need not read again when nothing is left for it."""
        snapshot = p.plan.snapshot or Snapshot.parse(p.row.get(self.cols["snapshot"]))
        unchanged_links = (
            outreach_int(p.row.get("assigned_to")) == snapshot.assignee
            and (self.kind.parent is None
                 or outreach_int(p.row.get(self.kind.parent.link_column)) == snapshot.employer))
        if outcome.clean and outcome.updated_at and not p.plan.send_pending and unchanged_links:
            self.ctx.own_versions.setdefault(self.kind.name, []).append(
                (int(p.row["id"]), outcome.updated_at, outcome.lock_version))

    def _flag(self, failed: list[Pending]) -> None:
        """The record keeps what it had, and says why; its opt-outs are applied all the same."""
        if not failed:
            return
        limits = self.ctx.settings.field_limits.get(self.kind.name) or {}
        limit = min(ERROR_MESSAGE_LIMIT, limits.get("error_message", ERROR_MESSAGE_LIMIT))
        rows = []
        for p in failed:
            fields = {c.column: c.new for c in p.plan.changes if not c.mapped}   # the opt-outs
            if p.flag:
                fields[self.cols["sync_error"]] = True
            fields[self.cols["error_message"]] = clip(p.error, limit)
            rows.append((p, RowWrite(int(p.row["id"]), p.row["lock_version"], fields, describe_row(self.kind, p.row))))
        if self.ctx.dry_run:
            for p, row in rows:
                p.ok = True
                self.ctx.log.info(f"dry run: would {'flag' if p.flag else 'note on'} {row.label}: {p.error}")
            return
        result = self.writer.write(self.kind.endpoint, [row for _, row in rows])
        for p, row in rows:
            outcome = result[row.id]
            p.ok = outcome.ok
            p.stale = outcome.stale
            if not outcome.ok and not outcome.stale:
                # Refused even this: trying every run would hold the feed's cursor here for good.
                p.ok = True
                self.ctx.log.error(f"{row.label}: what {p.source} holds could not be written ({p.error}), nor "
                                   f"the error itself ({outcome.failure}); this change from Outreach is not "
                                   "applied. Correct the record, in Outreach or in Workbooks")
                continue
            if outcome.ok and outcome.clean and outcome.updated_at and p.flag:
                # Flagged: the send half leaves this version alone. A note alone (flag False) is
                # not handed over, since the record may hold an edit the send half has yet to send.
                self.ctx.own_versions.setdefault(self.kind.name, []).append(
                    (row.id, outcome.updated_at, outcome.lock_version))
            if outcome.ok and p.flag:
                self.ctx.log.error(f"{row.label}: marked Outreach Sync Error — {p.error}. "
                                   "Then untick Outreach Sync Error")
            elif outcome.ok:
                self.ctx.log.warning(f"{row.label}: {p.error}")
