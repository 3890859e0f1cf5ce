"""The feed of Outreach sequence states → the linked Person's Outreach Sequence State, Outreach
Sequence and Outreach State Updated At (workbooks-outreach-plugin-kb.md §2.9; outreach-api.md §12).

Which state a Person shows when its prospect is in several sequences: a non-finished one
(active, paused, pending, failed, bounced, disabled) before a finished one, then the most
recently changed (the state's `updatedAt`), so a sequence the prospect is still in is never
hidden by one it finished. States changed since the cursor are read from the feed; only for a
prospect whose changed states are all finished are its other, non-finished states looked up
(batched), because one of those may still be the one to show. An opted-out Person keeps showing
Opted Out. Sequence names are read once per sequence and kept in API Data (a day at most, so a
renamed sequence shows its new name by the next day); a sequence deleted in Outreach leaves the
Person's Error Message saying so, and nothing else is changed.
"""
from __future__ import annotations

import time

from ...errors import MissingScope, PluginError
from ...kinds import Kind
from ...state import SEQUENCE_NAMES, SEQUENCE_STATES_FEED
from ...workbooks import format_datetime as format_wb
from ..context import RunContext
from ..send.item import describe_row
from ..writeback import RECEIVE_NOTE
from .apply import Pending, ReceiveWriter
from .cursor import FeedTracker
from .feed import Feed
from .plan import NOT_FINISHED, Change, RecordPlan, plan_sequence_state, state_rank
from ..linked import eligible, linked_rows, trusted_rows

NAME_TTL_SECONDS = 86400
STATE_FIELDS = ["state", "stateChangedAt", "updatedAt", "prospect", "sequence"]


def related_id(resource: dict, name: str) -> int | None:
    data = ((resource.get("relationships") or {}).get(name) or {}).get("data")
    try:
        return int(data["id"]) if isinstance(data, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


class SequenceNames:
    """Sequence id → name, cached in API Data; missing from Outreach → None (deleted)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._names: dict[str, dict] | None = None
        self._changed = False

    def _cache(self) -> dict[str, dict]:
        if self._names is None:
            stored = self.ctx.state.get(SEQUENCE_NAMES)
            self._names = {str(k): v for k, v in stored.items() if isinstance(v, dict)} \
                if isinstance(stored, dict) else {}
        return self._names

    def names(self, ids) -> dict[int, str | None]:
        cache, now = self._cache(), time.time()
        wanted = {int(i) for i in ids if i is not None}
        stale = sorted(i for i in wanted if str(i) not in cache
                       or now - float(cache[str(i)].get("at") or 0) > NAME_TTL_SECONDS)
        if stale:
            found = {int(r["id"]): (r.get("attributes") or {}).get("name")
                     for r in self.ctx.outreach.find_by_ids("sequences", stale, fields=["name"])}
            for sequence_id in stale:
                cache[str(sequence_id)] = {"name": found.get(sequence_id), "at": int(now),
                                           "gone": sequence_id not in found}
            self._changed = True
        return {i: None if cache[str(i)].get("gone") else str(cache[str(i)].get("name") or "")
                for i in wanted}

    def save(self) -> None:
        if self._changed and not self.ctx.dry_run:
            try:
                self.ctx.state.put(SEQUENCE_NAMES, self._cache())
            except PluginError as exc:
                self.ctx.log.warning(f"could not keep the Outreach sequence names ({exc}); read again next run")


class SequenceStateFeed(Feed):
    plural = SEQUENCE_STATES_FEED
    fields = STATE_FIELDS

    def __init__(self, ctx: RunContext, kind: Kind, names: SequenceNames) -> None:
        super().__init__(ctx, SEQUENCE_STATES_FEED)
        self.kind = kind
        self.names = names
        self.cols = ctx.columns[kind.name]
        self.writer = ReceiveWriter(ctx, kind)
        ours = ("sync", "sync_error", "duplicate", "outreach_id", "error_message", "snapshot")
        states = ("sequence_state", "sequence_name", "state_updated_at")
        self.columns = ["id", "lock_version", "updated_at", "object_ref", "name", "no_email_soliciting",
                        *(self.cols[k] for k in ours), *(self.cols[k] for k in states if k in self.cols)]

    @property
    def ready(self) -> bool:
        return "sequence_state" in self.cols     # an installation made before receive lacks the fields

    def apply(self, records: list[dict], tracker: FeedTracker) -> None:
        if not records:
            return
        by_prospect: dict[int, list[dict]] = {}
        for state in records:
            prospect = related_id(state, "prospect")
            if prospect is None:
                tracker.handled(state)          # belongs to no prospect: nothing to show it on
                continue
            by_prospect.setdefault(prospect, []).append(state)
        try:
            best = self._best_states(by_prospect)
            names: dict[int, str | None] = {}
            with self.ctx.outreach_work():
                names = self.names.names(related_id(s, "sequence") for s in best.values())
            if self.ctx.outreach_stopped:
                return                          # this page waits for the next run
        except MissingScope as exc:
            self._missing(exc)
            return
        except _Stopped:
            return
        rows = trusted_rows(linked_rows(self.ctx, self.kind, by_prospect, self.columns), self.cols["snapshot"])
        work: dict[int, list[Pending]] = {}
        for prospect, state in best.items():
            work[prospect] = [self._plan(row, state, names.get(related_id(state, "sequence")))
                              for row in rows.get(prospect, []) if eligible(row, self.cols)]
        self.writer.write([p for pending in work.values() for p in pending])
        for prospect, states in by_prospect.items():
            done = all(p.ok for p in work.get(prospect, []))
            for state in states:
                (tracker.handled if done else tracker.pending)(state)
        for pending in work.values():
            for p in pending:
                self._account_for(p)

    def _best_states(self, by_prospect: dict[int, list[dict]]) -> dict[int, dict]:
        """The state each prospect shows. When every changed state of a prospect is finished, a
        non-finished one that did not change may still be the one: those are looked up."""
        finished_only = [p for p, states in by_prospect.items()
                         if not any((s.get("attributes") or {}).get("state") in NOT_FINISHED for s in states)]
        candidates = {p: list(states) for p, states in by_prospect.items()}
        if finished_only:
            with self.ctx.outreach_work():
                for state in self.ctx.outreach.find_related(
                        SEQUENCE_STATES_FEED, "prospect", finished_only,
                        extra=[("filter[state]", ",".join(NOT_FINISHED)),
                               ("fields[sequenceState]", ",".join(STATE_FIELDS))]):
                    prospect = related_id(state, "prospect")
                    if prospect in candidates:
                        candidates[prospect].append(state)
            if self.ctx.outreach_stopped:
                raise _Stopped()
        return {p: max(states, key=state_rank) for p, states in candidates.items()}

    def _plan(self, row: dict, state: dict, name: str | None) -> Pending:
        source = f"Outreach sequence state {state.get('id')}"
        if name is None:
            p = Pending(row=row, plan=RecordPlan(), source=source, flag=False)
            message = (f"{RECEIVE_NOTE}the sequence {related_id(state, 'sequence')} of {source} no longer "
                       "exists in Outreach, so its state is not shown")
            if row.get(self.cols["error_message"]) != message:      # said once, not on every change
                p.error = message
            return p
        changes = plan_sequence_state(row, state, name, self.cols, no_email_column="no_email_soliciting",
                                      format_time=format_wb)
        note = str(row.get(self.cols["error_message"]) or "")
        if note.startswith(RECEIVE_NOTE):       # a live sequence shows again: the note has done its job
            changes.append(Change(self.cols["error_message"], "Error Message", note, None, mapped=False))
        return Pending(row=row, plan=RecordPlan(changes=changes, send_pending=True), source=source)

    def _account_for(self, p: Pending) -> None:
        if not p.ok or p.stale or p.error is not None or p.plan.empty:
            if p.ok and p.error is not None:
                self.ctx.report.received.errors += 1
            return
        if all(c.column == self.cols["error_message"] for c in p.plan.changes):
            return                              # only our old note cleared
        self.ctx.report.received.sequence_states += 1
        what = "dry run: would show" if self.ctx.dry_run else "shows"
        label = next((c.new for c in p.plan.changes if c.label == "Sequence State"), None)
        self.ctx.log.info(f"{describe_row(self.kind, p.row)}: {what} the sequence state from {p.source}"
                          + (f": {label}" if label else ""))


class _Stopped(Exception):
    """Outreach work stopped while looking up states: this page waits for the next run."""
