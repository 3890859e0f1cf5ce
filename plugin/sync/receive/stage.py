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

from ...kinds import KINDS
from ..context import RunContext
from ..report import ReceiveCounts
from .feed import Feed
from .records import RecordFeed
from .states import SequenceNames, SequenceStateFeed


class ReceiveStage:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.report.received = ReceiveCounts()
        self.names = SequenceNames(ctx)
        self.feeds: list[Feed] = [RecordFeed(ctx, kind) for kind in KINDS]
        self.feeds += [SequenceStateFeed(ctx, kind, self.names) for kind in KINDS if "sequence_states" in kind.receives]

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
