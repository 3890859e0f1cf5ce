"""The feed of one kind's Outreach records (prospects → People, accounts → Organisations):
mapped `receive`/`both` fields, and a prospect's opt-outs.

Only linked, eligible records receive their fields (workbooks-outreach-plugin-kb.md §2.11): Sync
to Outreach ticked, neither Outreach Sync Error nor Outreach Duplicate. An opt-out is never held
back by a flag: it reaches every Person linked to the prospect, and every Person with Sync to
Outreach ticked whose email address is one of the prospect's, flagged or not. A link the plugin
did not make (an Outreach Id typed in, or copied with its snapshot: sync/linked.py) receives
nothing by it until the send half has proved it. An Outreach record no Workbooks record is
linked to is left alone (unless the mapping asks for People to be created, see create.py).
"""
from __future__ import annotations

from ... import catalogue
from ...emails import normalise
from ...kinds import Kind, children_of
from ...snapshot import Snapshot
from ...state import watermark_key
from ...workbooks import format_datetime as format_wb
from ..context import RunContext
from ..linked import EMAIL_COLUMN, eligible, linked_rows, rows_by_email, trusted_rows
from ..send.item import describe_row
from ..send.plan import flag_value
from ..send.read import record_columns
from ..send.relations import note_recheck
from ..send.watermark import Watermark
from .apply import Pending, ReceiveWriter
from .create import PeopleFromProspects
from .cursor import FeedTracker
from .feed import Feed
from .plan import OptOutColumns, RecordPlan, opted_out, plan_record

# Records named to be read again at most (the newest ids): a run names those it linked without a
# write, a few hundred at the hourly budget.
AGAIN_KEPT = 1_000

OPT_OUT_ATTRIBUTES = ("optedOut", "emailOptedOut", "callOptedOut", "emailsOptStatus", "callsOptStatus",
                      "optedOutAt", "emailsOptedAt", "callsOptedAt")


class RecordFeed(Feed):
    def __init__(self, ctx: RunContext, kind: Kind) -> None:
        super().__init__(ctx, kind.outreach_plural)
        self.kind = kind
        self.plural = kind.outreach_plural
        self.mapping = ctx.mappings[kind.name]
        self.cols = ctx.columns[kind.name]
        self.opt_outs = "opt_outs" in kind.receives
        self.writer = ReceiveWriter(ctx, kind)
        targets = {f.target for f in self.mapping.mapping.fields}
        if self.opt_outs:
            targets |= set(OPT_OUT_ATTRIBUTES)
        known = set(catalogue.names(kind.outreach_type))
        self.creator = PeopleFromProspects(ctx, kind) if ctx.settings.create_people and self.opt_outs else None
        relationships = {kind.parent.outreach_relationship, "owner"} if self.creator and kind.parent else set()
        self.fields = sorted((targets & known) | {"updatedAt"} | relationships)
        self.columns = record_columns(ctx, kind)
        if self.opt_outs:
            self.opt_out_columns = OptOutColumns(opted_out_at=self.cols.get("opted_out_at"),
                                                 sequence_state=self.cols.get("sequence_state"),
                                                 state_updated_at=self.cols.get("state_updated_at"))
            self.columns = list(dict.fromkeys(self.columns + [self.opt_out_columns.no_email,
                                                              self.opt_out_columns.no_phone, EMAIL_COLUMN]))
        else:
            self.opt_out_columns = None

    # --- our own writes -------------------------------------------------------------------------------
    def is_echo(self, row: dict, resource: dict, snapshot: Snapshot | None, mapped: dict | None = None) -> bool:
        """Whether this Outreach record, just written by the send half for `row`, holds nothing
        this feed would bring back to it (the same decision `apply` would take)."""
        return snapshot is not None and not self.brings_back(row, resource, snapshot, mapped)

    def brings_back(self, row: dict, resource: dict, snapshot: Snapshot | None,
                    mapped: dict | None = None) -> bool:
        """Whether this feed would write anything from this Outreach record: an opt-out (to every
        Person with its email address), or, to `row` linked with `snapshot`, a field."""
        remote = resource.get("attributes") or {}
        if self.opt_outs and (opted_out(remote, "email") or opted_out(remote, "call")):
            return True
        if snapshot is None:
            return False
        plan = plan_record(self.mapping, row, remote, snapshot, now=self.ctx.clock(), mapped=mapped,
                           opt_out_columns=self.opt_out_columns if self.opt_outs else None, format_time=format_wb)
        return not plan.empty or bool(plan.problems)

    def read_again(self, ids) -> None:
        """Name these records for the next run to read by id (FeedCursor.again)."""
        cursor = self.cursor()
        again = sorted(set(cursor.again) | {str(int(i)) for i in ids}, key=int)[-AGAIN_KEPT:]
        if again != cursor.again:
            cursor.again = again
            self.ctx.state.put(self.key, cursor.to_state())

    def echoes(self) -> dict[str, str]:
        """The send half's noted echoes (Watermark.echoes of this kind)."""
        return Watermark.from_state(self.ctx.state.get(watermark_key(self.kind.name))).echoes

    def skip_own(self, records: list[dict], tracker: FeedTracker) -> list[dict]:
        echoes, rest = self.echoes(), []
        for record in records:
            if echoes.get(str(record["id"])) == (record.get("attributes") or {}).get("updatedAt"):
                tracker.handled(record)         # our own write, and nothing else in it
            else:
                rest.append(record)
        return rest

    def apply_again(self, records: list[dict], tracker: FeedTracker) -> None:
        # Unlinked: the send half found it by its email address, so a Person has that address.
        self.apply(records, tracker, create=False)

    def apply(self, records: list[dict], tracker: FeedTracker, *, create: bool = True) -> None:
        if not records:
            return
        found = linked_rows(self.ctx, self.kind, [r["id"] for r in records], self.columns)
        # A link the plugin did not make receives nothing by it (send/links.py sorts it out first).
        rows = trusted_rows(found, self.cols["snapshot"])
        work: dict[str, list[Pending]] = {}       # Outreach id → the writes it needs
        for record in records:
            work[str(record["id"])] = self._plan(record, rows.get(int(record["id"]), []))
        unlinked = [r for r in records if not found.get(int(r["id"]))]
        created = (self.creator.create(unlinked) if self.creator and unlinked and create
                   else {str(r["id"]) for r in unlinked})
        if self.opt_outs:
            self._opt_outs_by_email(records, rows, work)
        everything = [p for pending in work.values() for p in pending]
        self.writer.write(everything)
        self._recheck_children(everything)
        for record in records:
            pending = work[str(record["id"])]
            linked = bool(found.get(int(record["id"])))
            if all(p.ok for p in pending) and (linked or str(record["id"]) in created):
                tracker.handled(record)
            else:
                tracker.pending(record)
        for p in everything:
            self._account_for(p)

    def _recheck_children(self, written: list[Pending]) -> None:
        """A received value the children's mapping copies (an Organisation's name → its People's
        `company`): the children are looked at again, though their own records did not change."""
        copied = {name for child in children_of(self.kind) for name in child.parent.copied_attributes}
        ids = {int(p.row["id"]) for p in written
               if p.ok and p.error is None and any(c.target in copied for c in p.plan.mapped_changes)}
        if ids and not self.ctx.dry_run:
            note_recheck(self.ctx, self.kind, ids)

    def _plan(self, record: dict, rows: list[dict]) -> list[Pending]:
        remote = record.get("attributes") or {}
        source = f"Outreach {self.kind.outreach_type} {record['id']}"
        data_row = next((row for row in rows if eligible(row, self.cols)), None)
        if len(rows) > 1:
            self.ctx.log.warning(f"{source} is linked to {len(rows)} Workbooks {self.kind.label} "
                                 f"({', '.join(str(r['id']) for r in rows)}); only {self.kind.name} "
                                 f"{data_row['id'] if data_row else '—'} receives its fields")
        pending = []
        for row in rows:
            takes = row is data_row
            gets_opt_outs = self.opt_outs and flag_value(row.get(self.cols["sync"]))
            if not takes and not gets_opt_outs:
                continue
            snapshot = Snapshot.parse(row.get(self.cols["snapshot"]))
            # trusted: a snapshot from before the link ids gains them with this write
            snapshot.outreach_id, snapshot.record_id = int(record["id"]), int(row["id"])
            plan = plan_record(self.mapping, row, remote, snapshot, now=self.ctx.clock(), take_fields=takes,
                               opt_out_columns=self.opt_out_columns if gets_opt_outs else None,
                               format_time=format_wb)
            pending.append(self._pending(row, plan, source))
        return pending

    def _pending(self, row: dict, plan: RecordPlan, source: str) -> Pending:
        p = Pending(row=row, plan=plan, source=source)
        if plan.problems:
            p.error = f"{source} holds a value this mapping cannot bring back: {'; '.join(plan.problems)}"
        return p

    def _opt_outs_by_email(self, records: list[dict], rows: dict[int, list[dict]],
                           work: dict[str, list[Pending]]) -> None:
        """The same opt-out for every other Person with one of an opted-out prospect's emails."""
        by_email: dict[str, dict] = {}
        for record in records:
            remote = record.get("attributes") or {}
            if opted_out(remote, "email") or opted_out(remote, "call"):
                for email in remote.get("emails") or []:
                    by_email.setdefault(normalise(str(email)), record)
        if not by_email:
            return
        known = {int(r["id"]) for found in rows.values() for r in found}
        cols = self.cols
        for row in rows_by_email(self.ctx, self.kind, by_email, self.columns, [(cols["sync"], "true", "")]):
            if int(row["id"]) in known:
                continue
            record = by_email.get(normalise(str(row.get(EMAIL_COLUMN) or "")))
            if record is None:
                continue
            known.add(int(row["id"]))
            plan = plan_record(self.mapping, row, record.get("attributes") or {},
                               Snapshot.parse(row.get(cols["snapshot"])), now=self.ctx.clock(),
                               take_fields=False, opt_out_columns=self.opt_out_columns, format_time=format_wb)
            plan.snapshot = None                # not linked to this prospect: its snapshot is its own
            if not plan.empty:
                work[str(record["id"])].append(self._pending(
                    row, plan, f"Outreach prospect {record['id']} (the same email address)"))

    def _account_for(self, p: Pending) -> None:
        counts = self.ctx.report.received
        label = describe_row(self.kind, p.row)
        if not p.ok or p.stale:
            return
        if p.error is not None:
            counts.errors += 1
            return
        what = "dry run: would set" if self.ctx.dry_run else "received"
        if p.plan.mapped_changes:
            counts.updated[self.kind.name] += 1
        if p.plan.opt_outs:
            counts.opt_outs += 1
            self.ctx.log.notice(f"{label}: {what} the opt-out from {p.source}: "
                                f"{' and '.join(p.plan.opt_outs)} ticked")
        for change in p.plan.mapped_changes:
            self.ctx.log.info(f"{label}: {what} {change.label} {_show(change.old)} → {_show(change.new)} "
                              f"from {p.source}")


def _show(value) -> str:
    text = "empty" if value in (None, "") else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"
