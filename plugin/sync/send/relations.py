"""A child kind's relation to its parent (a Person's Employer → the Prospect's `account`), both
ways: the parent pass remembers what became of each parent and notes the parents whose children
need another look; the child pass loads the parents its records name, plans the relationship, and
looks again at the children of the noted parents.

Children to look at again although their own `updated_at` did not move, so the scan would
never select them:
* of a renamed parent: a child's mapping may copy a parent attribute (`employer_name` →
  `company` is the Employer's name);
* of a parent that has just reached Outreach (created, or adopted after an interrupted run):
  children synced before it did (an administrator ticks People from a list view first and their
  Employer later) were sent without the relation, or with another one. Only once the child scan
  has a watermark: before that it reads every flagged child anyway, so a first backlog costs
  nothing more.
The parent pass notes these parents in the parent's watermark (`watermark.organisation`
`recheck`), saved before its write-back and with the watermark that moves past them, so no crash
can lose it; the child pass then reads their linked children again and lets the normal diff
decide: unchanged costs no Outreach request; a missing relation is one PATCH carrying only it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from ...kinds import Kind, by_name
from ...state import watermark_key
from ...workbooks import Terms
from ..context import RunContext
from . import plan
from .item import Item, Outcome
from .read import pickup_flags, record_columns
from .watermark import Watermark

_CACHE_LIMIT = 50_000


def note_recheck(ctx: RunContext, parent: Kind, ids: Iterable[int]) -> None:
    """Note parents whose children the child pass must look at again (the parent watermark's
    `recheck`): by the parent pass, and by the receive half when it writes a copied attribute
    (a rep renamed the account of an Organisation whose name is `both`)."""
    key = watermark_key(parent.name)
    stored = Watermark.from_state(ctx.state.get(key))
    merged = sorted(set(stored.recheck) | set(ids))
    if merged != stored.recheck:
        ctx.state.put(key, replace(stored, recheck=merged).to_state())


class ParentLinks:
    def __init__(self, ctx: RunContext, child: Kind) -> None:
        assert child.parent is not None
        self.ctx, self.child, self.relation = ctx, child, child.parent
        self.parent = by_name(child.parent.parent)
        self._parents: dict[int, dict | None] = {}    # parent id → {"qualifies", "outreach_id"} (None: gone)
        self.noted: set[int] = set()                  # parents whose children were noted in this run

    # --- the parent pass -------------------------------------------------------------------------------
    def remember(self, item: Item) -> None:
        """What became of a parent record the parent pass just handled."""
        if item.outcome is None:
            return
        if item.outcome.synced:
            # A dry run creates nothing, yet its children should show as related, not as waiting.
            outreach_id = item.outreach_id if item.outreach_id is not None else -1
            self._parents[item.id] = {"qualifies": True, "outreach_id": outreach_id}
        elif item.outcome.flagged:
            self._parents[item.id] = {"qualifies": False, "outreach_id": None}

    def note_children(self, items: list[Item]) -> None:
        """Parents on this page whose children must be looked at again (module docstring). Saved
        BEFORE the page's write-back, which records the new values (the Outreach Id) as sent:
        saved only afterwards (with the watermark), one failed write would lose the note for
        good. One extra state write, and only for a page with such a parent."""
        copied = set(self.relation.copied_attributes)
        noted = {i.id for i in items if i.outcome is Outcome.UPDATED and copied & set(i.attributes_sent)}
        arrived = {i.id for i in items if i.outcome in (Outcome.CREATED, Outcome.ADOPTED)}
        if arrived and self._children_scanned_before():
            noted |= arrived
        if not noted or self.ctx.dry_run:
            return
        self.noted |= noted
        note_recheck(self.ctx, self.parent, noted)

    def _children_scanned_before(self) -> bool:
        return Watermark.from_state(self.ctx.state.get(watermark_key(self.child.name))).at is not None

    # --- the child pass --------------------------------------------------------------------------------
    def load(self, items: Iterable[Item]) -> None:
        """The parents these children name, in one read (those not met in this run yet)."""
        links = (plan.outreach_int(i.row.get(self.relation.link_column)) for i in items)
        wanted = sorted({i for i in links if i} - set(self._parents))
        if not wanted:
            return
        if len(self._parents) > _CACHE_LIMIT:
            self._parents.clear()
        cols = self.ctx.columns[self.parent.name]
        rows = self.ctx.wb.get(self.parent.endpoint, filters=[("id", "eq", ",".join(map(str, wanted)))],
                               columns=["id", cols["sync"], cols["sync_error"], cols["duplicate"], cols["outreach_id"]],
                               limit=len(wanted))
        for parent_id in wanted:
            self._parents[parent_id] = None
        for row in rows:
            qualifies = bool(row.get(cols["sync"])) and not row.get(cols["sync_error"]) and not row.get(cols["duplicate"])
            self._parents[int(row["id"])] = {"qualifies": qualifies,
                                             "outreach_id": plan.outreach_int(row.get(cols["outreach_id"]))}

    def plan(self, item: Item) -> None:
        """The child's parent id and the Outreach record it should be related to (PENDING: its
        parent is on its way to Outreach). Every child, matched or not: left out, a linked person
        without an email lost its account relation (None was sent) and ignored a change of
        Employer."""
        item.employer_id = plan.outreach_int(item.row.get(self.relation.link_column))
        parent = self._parents.get(item.employer_id) if item.employer_id else None
        item.account = plan.plan_account(item.employer_id, parent, item.snapshot)
        if item.account is plan.PENDING:
            item.defer(f"waiting for its {self.relation.label} ({self.parent.name} {item.employer_id}) "
                       "to reach Outreach")

    def recheck_children(self, process: Callable[[list[dict]], None]) -> None:
        """The linked children of the noted parents (the parent watermark's `recheck`), a group of parents at a time; each group is forgotten once all its children
        are done. Runs before the scan, so the scan takes the echoes of these write-backs for
        what they are."""
        key = watermark_key(self.parent.name)
        parents = Watermark.from_state(self.ctx.state.get(key))
        if not parents.recheck:
            return
        cols = self.ctx.columns[self.child.name]
        size = self.ctx.settings.page_size
        done: set[int] = set()
        for n in range(0, len(parents.recheck), size):
            if self.ctx.time_is_up():
                break
            group = parents.recheck[n:n + size]
            terms = Terms()
            rule = terms.all(pickup_flags(terms, cols), terms.term(cols["outreach_id"], "not_blank"),
                             terms.term(self.relation.link_column, "eq", group))
            filters, fm = terms.query(rule)
            for rows in self.ctx.wb.iter_pages(self.child.endpoint, filters=filters, fm=fm,
                                               columns=record_columns(self.ctx, self.child), limit=size):
                process(rows)
                if self.ctx.time_is_up():
                    break
            if self.ctx.report.stopped:
                break
            done.update(group)
        if done and not self.ctx.dry_run:
            left = [i for i in parents.recheck if i not in done]
            self.ctx.state.put(key, replace(parents, recheck=left).to_state())

