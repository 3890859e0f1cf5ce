"""How a record without an Outreach Id is found in Outreach before anything is created, one
resolver per kind (named by `Kind.resolver`): look up by the match key in batches; a match
carrying this record's own marker is adopted (an interrupted earlier run created it: crash
recovery); any other match makes the record an Outreach Duplicate and nothing is created.
"""
from __future__ import annotations

from ...emails import normalise
from ...errors import OutreachValidation
from ...snapshot import Snapshot
from .links import agrees, judged_by
from ..context import RunContext
from . import plan
from .item import Item
from .unconfirmed import UnconfirmedCreates


class Resolver:
    """The shared half: matching found records against an item, adopting our own."""

    #: what the match key is called in messages ("email")
    label = "match key"

    def __init__(self, ctx: RunContext, kind, unconfirmed: UnconfirmedCreates | None) -> None:
        self.ctx, self.kind, self.unconfirmed = ctx, kind, unconfirmed
        self.mapping = ctx.mappings[kind.name]

    def resolve(self, items: list[Item]) -> None:
        raise NotImplementedError

    def check(self, item: Item) -> str | None:
        """Why this record cannot be sent at all (before any Outreach request), or None."""
        return None

    @property
    def judged_by(self) -> str:
        return judged_by(self.mapping, self.kind)

    def key_values(self, item: Item) -> list[str]:
        """The values of `judged_by` as mapped (a list key gives all of them)."""
        value = item.mapped.get(self.judged_by)
        values = value if isinstance(value, list) else [value]
        return [str(v) for v in values if v not in (None, "")]

    def what(self, item: Item) -> str:
        """The match key and its value, for a duplicate's message."""
        return f"{self.mapping.match_key} {self.mapping.match_value(item.mapped)!r}"

    def refind_after_conflict(self, item: Item, exc: OutreachValidation) -> list[dict] | None:
        """Outreach refused a create because the record exists after all (a race with someone
        else's create): the records to match instead, or None when `exc` is no such refusal."""
        return None

    def already_there(self, item: Item, attributes: dict, exc: OutreachValidation) -> str | None:
        """A PATCH refused because Outreach already holds one of the values it re-sends: the
        attribute that may be left out, or None."""
        return None

    def match(self, item: Item, matches: list[dict], what: str) -> None:
        marker = self.ctx.marker(self.kind, item.id)
        for resource in matches:
            if (resource.get("attributes") or {}).get(self.kind.marker_attribute) == marker:
                self.adopt(item, resource, check=True)
                return
        if matches:
            others = ", ".join(str(r["id"]) for r in matches[:3])
            item.duplicate(f"Outreach {self.kind.outreach_type} {others} already has {what}")
            # Its opt-out may be older than receive's cursor, read when no Person had the address.
            rule = self.ctx.echoes
            item.receive_again += [int(r["id"]) for r in matches
                                   if rule is not None and rule.brings_back(self.kind, item.row, r, None)]

    def adopt(self, item: Item, resource: dict, *, check: bool) -> None:
        """A record an interrupted earlier run created for this very Workbooks record: link it,
        and let the normal diff bring it up to date. `check`: only when it also holds this
        record's match key — anyone in Outreach can type a marker (docs/installing.md), so a
        marked record that disagrees is flagged, never adopted silently. (Not checked for a
        create noted as unconfirmed, found by the key it was created with: that may have been
        edited since, legitimately.)"""
        if check and not agrees(self.mapping, self.kind, item.mapped, resource.get("attributes") or {}):
            item.fail(f"Outreach {self.kind.outreach_type} {resource['id']} carries this record's marker "
                      f"({self.kind.marker_attribute}) but another {self.judged_by}: check it is the same, make "
                      "the two agree, then untick Outreach Sync Error")
            return
        item.outreach_id = int(resource["id"])
        item.snapshot = Snapshot.of_remote(resource, item.mapped)
        item.remote = resource
        item.outcome = None
        item.adopted = True


class ProspectResolver(Resolver):
    """Prospects by email (Outreach keeps one prospect per address, outreach-api.md §5.2)."""

    label = "email"

    def what(self, item: Item) -> str:
        return "email " + ", ".join(item.mapped["emails"])

    def check(self, item: Item) -> str | None:
        if not item.linked or item.mapped.get("emails"):
            # A new prospect needs an email (Outreach dedupes on it); a linked one only needs the
            # emails we would send to be valid.
            return plan.check_prospect_emails(item.mapped)
        return None

    def resolve(self, items: list[Item]) -> None:
        earlier = {i.id: self.unconfirmed.keys_for(i.id) if self.unconfirmed else [] for i in items}
        emails = sorted({e for i in items for e in i.mapped.get("emails", [])} |
                        {e for found in earlier.values() for e in found})    # the client adds lower case
        by_email: dict[str, list[dict]] = {}
        for resource in self.ctx.outreach.find_prospects_by_emails(emails):
            for email in (resource.get("attributes") or {}).get("emails") or []:
                by_email.setdefault(normalise(str(email)), []).append(resource)
        for item in items:
            # Ours from an unconfirmed create, found by the emails it was created with: adopt it
            # (the diff then sends the new email). Someone else's record under an old email is
            # no reason to call this one a duplicate, so only the current emails judge that.
            marker = self.ctx.marker(self.kind, item.id)
            mine = [r for e in earlier[item.id] for r in by_email.get(normalise(e), [])
                    if (r.get("attributes") or {}).get(self.kind.marker_attribute) == marker]
            if mine:
                self.adopt(item, mine[0], check=False)
                continue
            matches = {r["id"]: r for e in item.mapped["emails"] for r in by_email.get(normalise(e), [])}
            self.match(item, list(matches.values()), self.what(item))

    def refind_after_conflict(self, item: Item, exc: OutreachValidation) -> list[dict] | None:
        if "already been taken" not in (exc.detail or ""):
            return None
        return self.ctx.outreach.find_prospects_by_emails(item.mapped["emails"])

    def already_there(self, item: Item, attributes: dict, exc: OutreachValidation) -> str | None:
        """Outreach may refuse a PATCH that re-sends a prospect's own emails with 422
        `validationDuplicateValueError` (outreach-api.md §5.2; the exact trigger is uncertain).
        That happens after an interrupted write-back, when the snapshot lags behind what Outreach
        holds. The emails count as sent only when a look-up shows no other prospect holds them;
        the error could also mean another one does, and that must stay an error."""
        if "emails" not in attributes or exc.error_id != "validationDuplicateValueError":
            return None
        holders = self.ctx.outreach.find_prospects_by_emails(attributes["emails"] or [])
        ours = [p for p in holders if str(p.get("id")) == str(item.outreach_id)]
        if not ours or len(holders) != len(ours):
            return None
        self.ctx.log.info(f"{item.describe()}: Outreach already holds its email; sent the other changes only")
        return "emails"


class AccountResolver(Resolver):
    """Accounts by our marker (`customId`, filterable), then by the mapping's match key (name by
    default; Outreach does not keep names unique, outreach-api.md R2.6)."""

    @property
    def label(self) -> str:
        return self.mapping.match_key

    def resolve(self, items: list[Item]) -> None:
        markers = {self.ctx.marker(self.kind, i.id): i for i in items}
        ours = {}
        for resource in self.ctx.outreach.find_accounts(self.kind.marker_attribute, sorted(markers)):
            ours.setdefault((resource.get("attributes") or {}).get(self.kind.marker_attribute), resource)
        rest = []
        for marker, item in markers.items():
            if marker in ours:
                self.adopt(item, ours[marker], check=not self._our_create(item, ours[marker]))
            else:
                rest.append(item)
        key = self.mapping.match_key
        if key == self.kind.marker_attribute or not rest:
            return
        values = sorted({str(self.mapping.match_value(i.mapped)) for i in rest if self.mapping.match_value(i.mapped)})
        found = self.ctx.outreach.find_accounts(key, values) if values else []
        by_key: dict[str, list[dict]] = {}
        for resource in found:
            value = (resource.get("attributes") or {}).get(key)
            if value is not None:
                by_key.setdefault(str(value).lower(), []).append(resource)
        for item in rest:
            value = self.mapping.match_value(item.mapped)
            self.match(item, by_key.get(str(value).lower(), []) if value else [], self.what(item))


    def _our_create(self, item: Item, resource: dict) -> bool:
        """Created by an earlier run for this record, with the match key it holds now (renamed in
        Workbooks since, its name disagrees: it is ours all the same)."""
        if self.unconfirmed is None:
            return False
        held = " ".join(str((resource.get("attributes") or {}).get(self.judged_by) or "").split()).casefold()
        return bool(held) and held in {" ".join(v.split()).casefold() for v in self.unconfirmed.keys_for(item.id)}


RESOLVERS = {"prospect": ProspectResolver, "account": AccountResolver}


def resolver_for(ctx: RunContext, kind, unconfirmed: UnconfirmedCreates | None) -> Resolver:
    return RESOLVERS[kind.resolver](ctx, kind, unconfirmed)
