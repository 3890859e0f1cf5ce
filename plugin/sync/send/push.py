"""Create or update one record in Outreach, and read Outreach's refusals into outcomes: a spent
budget or a fault puts the record off (and stops Outreach work for the run); a validation error,
a deleted record or an unknown attribute flags it with a message naming the field."""
from __future__ import annotations

from ...errors import ActionRequired, OutreachError, OutreachNotFound, OutreachValidation
from ...snapshot import Snapshot
from ..context import RunContext
from . import plan
from .item import Item, Outcome
from .resolve import Resolver
from .unconfirmed import UnconfirmedCreates


class Pusher:
    def __init__(self, ctx: RunContext, kind, resolver: Resolver, unconfirmed: UnconfirmedCreates | None) -> None:
        self.ctx, self.kind, self.resolver, self.unconfirmed = ctx, kind, resolver, unconfirmed
        self.mapping = ctx.mappings[kind.name]
        self.parent_relationship = kind.parent.outreach_relationship if kind.parent else None
        self._created: dict[str, int] = {}     # match value → Outreach id created in this run

    def send(self, item: Item) -> None:
        if self.ctx.outreach_stopped:
            item.defer("Outreach work stopped for this run")
            return
        if self.ctx.deadline.expired(self.ctx.settings.deadline_margin):
            self.ctx.report.stopped = self.ctx.report.stopped or "time limit reached; the next run carries on"
            item.defer("time limit reached")
            return
        with self.ctx.outreach_work(on_stop=item.defer):
            try:
                if item.outreach_id is None:
                    self._create(item)
                else:
                    self._update(item)
            except OutreachNotFound:
                item.fail(f"the linked Outreach {self.kind.outreach_type} {item.outreach_id} no longer exists "
                          "(deleted in Outreach?): clear Outreach Id and Outreach Sync Error to create it again")
            except OutreachValidation as exc:
                self._rejected(item, exc)
            except ActionRequired:
                raise
            except OutreachError as exc:
                if exc.status == 400 and "permittedParams" in str(exc.error_id or ""):
                    raise ActionRequired(f"Outreach rejected a mapped attribute ({exc.detail}): "
                                         "check the mapping's targets") from exc
                item.fail(f"Outreach rejected the {self.kind.outreach_type}: {exc.detail or exc}")

    def _create(self, item: Item) -> None:
        value = self.mapping.match_value(item.mapped)
        key = str(value).lower() if value else None
        earlier = self._created.get(key) if key else None
        if earlier is not None:
            item.duplicate(f"another Workbooks record synced in this run already created Outreach "
                           f"{self.kind.outreach_type} {earlier} with the same {self.resolver.label}")
            return
        attributes = dict(item.mapped)
        attributes[self.kind.marker_attribute] = self.ctx.marker(self.kind, item.id)
        relationships = {}
        if self.parent_relationship and item.account is not None:
            relationships[self.parent_relationship] = item.account
        if item.owner is not None:
            relationships["owner"] = item.owner
        if self.ctx.dry_run:
            self.ctx.log.info(f"dry run: would create an Outreach {self.kind.outreach_type} for {item.describe()}")
            item.outcome = Outcome.CREATED
            return
        if self.unconfirmed is not None:
            self.unconfirmed.creating(item.id, self.resolver.key_values(item))
        try:
            resource = self.ctx.outreach.create(self.kind.outreach_type, attributes,
                                                plan.relationships_payload(relationships))
        except OutreachValidation as exc:
            found = self.resolver.refind_after_conflict(item, exc)
            if found is None:
                raise
            # Someone (or a parallel sync) created it between our look-up and the create.
            self.resolver.match(item, found, self.resolver.what(item))
            if item.outcome is None and item.outreach_id is not None:
                self._update(item)
            elif item.outcome is None:
                item.duplicate(f"Outreach says the {self.resolver.label} is already taken ({exc.detail})")
            return
        item.outreach_id = int(resource["id"])
        item.outcome = Outcome.CREATED
        item.attributes_sent = sorted(item.mapped)
        item.new_snapshot = Snapshot().with_sent(item.mapped, account=relationships.get(self.parent_relationship),
                                                 owner=item.owner, employer=item.employer_id, assignee=item.assignee,
                                                 outreach_id=item.outreach_id, record_id=item.id)
        self._note_echo(item, resource)
        if key:
            self._created[key] = item.outreach_id

    def _update(self, item: Item) -> None:
        decision = plan.plan_update(item.snapshot, item.mapped, item.account, item.owner,
                                    parent_relationship=self.parent_relationship)
        if item.stamp_marker:                   # an adoptable link someone else made: ours from now on
            decision.attributes[self.kind.marker_attribute] = self.ctx.marker(self.kind, item.id)
        done = Outcome.ADOPTED if item.adopted else Outcome.UPDATED
        if decision.empty:
            item.outcome = Outcome.ADOPTED if item.adopted else Outcome.UNCHANGED
            item.new_snapshot = (item.snapshot.with_sent({}, employer=item.employer_id, assignee=item.assignee,
                                                         outreach_id=item.outreach_id, record_id=item.id)
                                 if item.adopted or item.verified else None)
            self._unwritten_link(item)
            return
        if self.ctx.dry_run:
            changed = ", ".join(sorted(decision.attributes) + sorted(decision.relationships))
            self.ctx.log.info(f"dry run: would update Outreach {self.kind.outreach_type} {item.outreach_id} "
                              f"for {item.describe()}: {changed}")
            item.outcome = done
            return
        resource = None
        try:
            resource = self.ctx.outreach.update(self.kind.outreach_type, item.outreach_id, decision.attributes,
                                                plan.relationships_payload(decision.relationships))
        except OutreachValidation as exc:
            there = self.resolver.already_there(item, decision.attributes, exc)
            if there is None:
                raise
            rest = {k: v for k, v in decision.attributes.items() if k != there}
            if rest or decision.relationships:
                resource = self.ctx.outreach.update(self.kind.outreach_type, item.outreach_id, rest,
                                                    plan.relationships_payload(decision.relationships))
        item.outcome = done
        item.attributes_sent = sorted(decision.attributes)
        item.new_snapshot = item.snapshot.with_sent(
            decision.attributes,
            account=decision.relationships.get(self.parent_relationship, item.snapshot.account),
            owner=decision.relationships.get("owner", item.snapshot.owner),
            employer=item.employer_id, assignee=item.assignee, outreach_id=item.outreach_id, record_id=item.id)
        if resource:
            self._note_echo(item, resource)

    def _unwritten_link(self, item: Item) -> None:
        """A link made without a write to Outreach (nothing differed) bumps no `updatedAt`, so
        receive's feed may never show it what the record holds (an opt-out made before the
        link): when there is anything to bring back, receive reads it by id next run."""
        rule = self.ctx.echoes
        if item.remote is not None and item.new_snapshot is not None and rule is not None \
                and rule.brings_back(self.kind, item.row, item.remote, item.new_snapshot, item.mapped):
            item.receive_again.append(int(item.outreach_id))

    def _note_echo(self, item: Item, resource: dict) -> None:
        """Our write's answer is Outreach's record right after it: when it holds nothing the
        receive half would bring back (a rep's edit made since our read would show here), the
        version it carries is only our echo, which receive may skip without reading Workbooks."""
        updated_at = (resource.get("attributes") or {}).get("updatedAt")
        rule = self.ctx.echoes
        if updated_at and rule is not None and rule.is_echo(self.kind, item.row, resource, item.new_snapshot,
                                                           item.mapped):
            item.echo = str(updated_at)

    def _rejected(self, item: Item, exc: OutreachValidation) -> None:
        detail = exc.detail or str(exc)
        pointer = exc.pointer or ""
        attribute = pointer.rsplit("/", 1)[-1] if pointer.startswith("/data/attributes/") else None
        if "excluded email" in detail:
            emails = ", ".join((item.mapped or {}).get("emails", []))
            item.fail(f"Outreach refuses the email address {emails}: its domain is on Outreach's "
                      f"excluded list ({detail})")
        elif attribute:
            source = self.mapping.source_of(attribute) if hasattr(self.mapping, "source_of") else None
            where = f"{attribute} (from Workbooks {source})" if source else attribute
            item.fail(f"Outreach rejected {where}: {detail}")
        else:
            item.fail(f"Outreach rejected the {self.kind.outreach_type}: {detail}")
