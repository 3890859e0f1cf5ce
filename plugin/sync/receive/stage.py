"""Receive: Outreach → Workbooks, the stage that runs before send in every run.

Feeds, in registry order (a parent kind before its children), then the sequence states:
accounts → Organisations, prospects → People (fields and opt-outs), sequence states → People.
Each feed reads what changed in Outreach since its own cursor (`filter[updatedAt][gte]`, sorted,
keyset `links.next`; plugin/outreach.py `changed_since`) and writes what it decides through the
run's one record writer; see records.py, states.py and plan.py.

Why before send: an opt-out or a rep's edit is then in Workbooks (and its snapshot) before the
send half decides what to PATCH, so a `both` field changed only in Outreach is never overwritten
with Workbooks' older value, a `workbooks_wins` field still wins (the send half PATCHes it), and
the versions receive writes are handed to the send scan as its own, so they cost no read there.
"""
from __future__ import annotations

from ...kinds import KINDS, Kind
from .cursor import parse_time
from ..context import RunContext
from ..report import ReceiveCounts
from .feed import Feed
from .records import RecordFeed
from .states import SequenceNames, SequenceStateFeed


# Echoes kept for receive at most (the newest). Receive passes a run's echoes in the next run, so
# one run's writes are what is kept: up to the hourly budget's worth when a backlog is sent (a
# lost one costs a Workbooks read; watermark.ECHO_CHARS bounds the text they take).
ECHOES_KEPT = 12_000


class ReceiveStage:
    name = "receive"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.report.received = ReceiveCounts()
        ctx.echoes = self
        self.names = SequenceNames(ctx)
        self.records = {kind.name: RecordFeed(ctx, kind) for kind in KINDS}
        self.feeds: list[Feed] = list(self.records.values())
        self.feeds += [SequenceStateFeed(ctx, kind, self.names) for kind in KINDS if "sequence_states" in kind.receives]

    # --- the send half's echoes (context.EchoRule) -----------------------------------------------------
    def is_echo(self, kind: Kind, row: dict, resource: dict, snapshot, mapped: dict | None = None) -> bool:
        return self.records[kind.name].is_echo(row, resource, snapshot, mapped)

    def brings_back(self, kind: Kind, row: dict, resource: dict, snapshot, mapped: dict | None = None) -> bool:
        return self.records[kind.name].brings_back(row, resource, snapshot, mapped)

    def read_again(self, kind: Kind, ids) -> None:
        if not self.ctx.dry_run:
            self.records[kind.name].read_again(ids)

    def keep(self, kind: Kind, echoes: dict[str, str]) -> dict[str, str]:
        """Those receive's feed may still read: at or after its cursor less the overlap."""
        floor = parse_time(self.records[kind.name].cursor().since())
        kept = {rid: when for rid, when in echoes.items()
                if floor is None or (parse_time(when) or floor) >= floor}
        if len(kept) > ECHOES_KEPT:
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[-ECHOES_KEPT:])
        return kept

    def state_keys(self) -> list[str]:
        return [feed.key for feed in self.feeds]

    def has_work(self) -> bool:
        # Every feed is probed (no short cut): the pages are kept for the run.
        return any([feed.has_work() for feed in self.feeds])

    def run(self) -> None:
        for feed in self.feeds:
            feed.run()
            if self.ctx.time_is_up():
                break

    def finish(self) -> None:
        self.names.save()
