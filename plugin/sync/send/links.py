"""A link the plugin did not make is not trusted (issue 16 §5).

An Outreach Id typed into a record, brought in by a CSV import or a copied database is not
proof that the Outreach record belongs to this Workbooks record: PATCHed as it is, a new Person
carrying another Person's Outreach Id would rewrite that Prospect. So before the first write to
a link that has no snapshot made for that very pair of records (every snapshot this plugin
writes names both: sync/linked.py `made_here`), the Outreach record is read (batched) and:
  * its marker (`externalId` / `customId`) is this record's → ours (a lost snapshot): linked;
  * no marker, and it holds this record's match key (the same email; the same name, domain) →
    adoptable: linked, and the first PATCH stamps our marker on it;
  * otherwise → Outreach Sync Error saying whose record it is (the marker's Workbooks record, or
    that the match key differs), and nothing is written to it;
  * and whatever its marker, another Workbooks record linked to the same Outreach record →
    Outreach Sync Error: two Workbooks records never share one Outreach record.
A snapshot names the pair of records it was made for (`outreach_id`, `record_id`), so a record
copied whole, snapshot and all, is caught too. Snapshots written before they existed are trusted
while no other Workbooks record holds the same Outreach Id (one read of Workbooks per page of
such records; reading every one from Outreach after an upgrade would cost a read per 50 records),
and gain the pair with their next write.

A marker is only an attribute any Outreach user can edit (docs/installing.md, Security notes):
adopting a marked record whose match key disagrees is never done silently (resolve.py).
"""
from __future__ import annotations

import re

from ...emails import normalise
from ...snapshot import Snapshot
from ..context import RunContext
from ..linked import linked_rows, made_here, trusted
from .item import Item

_MARKER = re.compile(r"^workbooks:[^:]*:(?P<kind>[a-z_]+):(?P<id>\d+)$")


def judged_by(mapping, kind) -> str:
    """The attribute that says whether a marked record is this record's: the match key, or the
    name when the marker itself is the match key (an account matched by customId)."""
    return mapping.match_key if mapping.match_key != kind.marker_attribute else "name"


def agrees(mapping, kind, mapped: dict, remote: dict) -> bool:
    """Whether the Outreach record `remote` (attributes) holds this record's `judged_by` value."""
    key = judged_by(mapping, kind)
    ours = mapped.get(key)
    theirs = remote.get(key)
    if isinstance(ours, list) or isinstance(theirs, list):
        mine = {normalise(str(v)) for v in (ours if isinstance(ours, list) else [ours]) if v}
        held = {normalise(str(v)) for v in (theirs if isinstance(theirs, list) else [theirs]) if v}
        return bool(mine) and bool(mine & held)
    if ours in (None, "") or theirs in (None, ""):
        return False
    return " ".join(str(ours).split()).casefold() == " ".join(str(theirs).split()).casefold()


def whose(marker: str) -> str:
    found = _MARKER.match(marker or "")
    return f"Workbooks {found['kind']} {found['id']}" if found else f"another system ({marker!r})"


class LinkCheck:
    def __init__(self, ctx: RunContext, kind) -> None:
        self.ctx, self.kind = ctx, kind
        self.mapping = ctx.mappings[kind.name]
        self.cols = ctx.columns[kind.name]

    def check(self, items: list[Item]) -> None:
        unproven = [i for i in items if i.linked and i.outcome is None
                    and not made_here(i.snapshot, i.outreach_id, i.id)]
        if not unproven:
            return
        shared = self._shared(unproven)
        doubtful = [i for i in unproven if not trusted(i.snapshot, i.outreach_id, i.id, shared=bool(shared[i.id]))]
        if not doubtful:
            return
        if self.ctx.outreach_stopped:
            for item in doubtful:
                item.defer("Outreach work stopped for this run")
            return
        remote: dict[int, dict] = {}
        with self.ctx.outreach_work(on_stop=lambda reason: [i.defer(reason) for i in doubtful]):
            # whole records: what they hold becomes the snapshot, so the first PATCH sends only what differs
            remote = {int(r["id"]): r for r in self.ctx.outreach.find_by_ids(
                self.kind.outreach_plural, [i.outreach_id for i in doubtful])}
        if self.ctx.outreach_stopped:
            return
        for item in doubtful:
            self._judge(item, remote.get(item.outreach_id), shared.get(item.id, []))

    def _judge(self, item: Item, resource: dict | None, others: list[int]) -> None:
        what = f"Outreach {self.kind.outreach_type} {item.outreach_id}"
        if resource is None:
            item.fail(f"the linked {what} no longer exists (deleted in Outreach, or the Outreach Id is wrong): "
                      "clear Outreach Id and Outreach Sync Error to create it again")
            return
        attrs = resource.get("attributes") or {}
        marker = attrs.get(self.kind.marker_attribute)
        ours = self.ctx.marker(self.kind, item.id)
        if marker == ours:                      # ours (its snapshot was lost): any other link is the copy
            item.snapshot = Snapshot.of_remote(resource, item.mapped)
            item.verified, item.remote = True, resource
        elif marker:
            item.fail(f"{what} belongs to {whose(marker)} (its {self.kind.marker_attribute} says so), not to this "
                      "record: the Outreach Id was copied from another record; correct or clear it, then untick "
                      "Outreach Sync Error")
        elif others:
            item.fail(f"{what} is also linked from Workbooks {self.kind.name} {', '.join(map(str, others))}: two "
                      "Workbooks records cannot share one Outreach record; clear the Outreach Id on the one that "
                      "is not it")
        elif agrees(self.mapping, self.kind, item.mapped, attrs):
            item.snapshot = Snapshot.of_remote(resource, item.mapped)
            item.stamp_marker = item.verified = True
            item.remote = resource
        else:
            key = judged_by(self.mapping, self.kind)
            item.fail(f"{what} holds another {key} ({_brief(attrs.get(key))}) than this record, and was not "
                      "created from it: the Outreach Id was typed in or copied from another record; correct or "
                      "clear it, then untick Outreach Sync Error")

    def _shared(self, items: list[Item]) -> dict[int, list[int]]:
        """Workbooks id → the other Workbooks records linked to its Outreach record (this page's
        included)."""
        rows = linked_rows(self.ctx, self.kind, {i.outreach_id for i in items}, ["id", self.cols["outreach_id"]])
        return {item.id: [int(r["id"]) for r in rows.get(item.outreach_id, []) if int(r["id"]) != item.id]
                for item in items}


def _brief(value) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value or "none")
    return text if len(text) <= 60 else text[:59] + "…"
