"""`receive.create_people: true` in the mapping: a Prospect created in Outreach that no Workbooks
Person is linked to becomes a new Person, linked to it, with Sync to Outreach ticked — and its
Account's Organisation with it, found by its link or its name, else created and linked too.

Never when a Person with one of the prospect's email addresses already exists (counted and
logged instead: a person decides whether they are the same). Never twice: the new Person carries
the prospect's Outreach Id from its first write, so a run whose answer was lost finds it by that
link next time and creates nothing. What the Person gets: every mapped field that can come back
(`receive`/`both`, or a plain `send` field the way back needs nothing for), and the prospect's
first email into the match key's field; a new Organisation likewise from its Account. Their
snapshots agree with what the send half would now send (the prospect's owner and account
included), so nothing is sent straight back to Outreach.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ... import catalogue
from ... import transforms as tf
from ...emails import normalise
from ...kinds import Kind, by_name
from ...mapping import REVERSIBLE
from ...snapshot import Snapshot
from ...workbooks import RowResult
from ..context import RunContext
from ..linked import EMAIL_COLUMN, ID_CHUNK, linked_rows, rows_by_email
from ..send.item import describe_row
from ..send.plan import outreach_int


class PeopleFromProspects:
    def __init__(self, ctx: RunContext, kind: Kind) -> None:
        self.ctx, self.kind = ctx, kind
        self.mapping = ctx.mappings[kind.name]
        self.cols = ctx.columns[kind.name]
        self.parent = by_name(kind.parent.parent) if kind.parent else None

    def create(self, records: list[dict]) -> set[str]:
        """People for these unlinked prospects; returns the ids of the prospects dealt with
        (created, or left alone because of an existing Person). The others wait for a later run."""
        done: set[str] = set()
        existing = self._existing_emails(records)
        wanted = []
        for record in records:
            emails = [normalise(str(e)) for e in (record.get("attributes") or {}).get("emails") or []]
            if not emails:
                done.add(str(record["id"]))             # nothing to know the person by: left alone
                continue
            holder = next((existing[e] for e in emails if e in existing), None)
            if holder is not None:
                self.ctx.report.received.existing += 1
                self.ctx.log.info(f"Outreach prospect {record['id']} was not made a Person: "
                                  f"{describe_row(self.kind, holder)} already has its email address")
                done.add(str(record["id"]))
                continue
            wanted.append(record)
        if not wanted:
            return done
        if self.ctx.dry_run:
            for record in wanted:
                self.ctx.log.info(f"dry run: would create a Person for Outreach prospect {record['id']}")
                done.add(str(record["id"]))
            self.ctx.report.received.created[self.kind.name] += len(wanted)
            return done
        employers = self._employers(wanted)
        relationship = self.kind.parent.outreach_relationship if self.kind.parent else None
        new = [NewRecord(self.kind, record, employers.get(_related(record, relationship)) if relationship else None)
               for record in wanted]
        for item in new:
            item.row = self._new_row(self.kind, item.source, item.employer)
        answers = self.ctx.wb.create(self.kind.endpoint, [item.row for item in new])
        for item, answer in zip(new, answers):
            done.add(str(item.source["id"]))     # Workbooks refused its data: retrying changes nothing
            if answer.ok and answer.id:
                item.answer = answer
                self.ctx.report.received.created[self.kind.name] += 1
                self.ctx.log.notice(f"person {answer.id}: created from Outreach prospect {item.source['id']}")
            else:
                self.ctx.log.warning(f"Outreach prospect {item.source['id']} could not be made a Person: "
                                     f"{'; '.join(answer.errors)}")
        self._name_links(self.kind, [item for item in new if item.answer is not None])
        return done

    # --- what a new record holds --------------------------------------------------------------------
    def _new_row(self, kind: Kind, source: dict, employer: int | None) -> dict:
        """A new Workbooks record from an Outreach record: every mapped field that can come back
        (`receive`/`both`, or a plain `send` field the way back needs nothing for), and for a
        Person the prospect's first email into the match key's field."""
        mapping = self.ctx.mappings[kind.name]
        cols = self.ctx.columns[kind.name]
        remote = source.get("attributes") or {}
        row: dict = {}
        for spec in mapping.mapping.fields:
            if spec.source is None or spec.target not in remote:
                continue
            column = mapping.column(spec)
            value = remote[spec.target]
            if spec.target == mapping.match_key and isinstance(value, list):
                value = value[0] if value else None          # the prospect's first email
            elif not spec.receives and not all(step.name in REVERSIBLE for step in spec.steps):
                continue                                      # no way back for this send field
            try:
                row[column] = mapping.received(spec, value) if spec.receives else value
            except tf.TransformError:
                continue
        if kind.parent is not None:
            names = [str(remote.get(k) or "").strip() for k in ("firstName", "lastName")]
            row.setdefault("name", " ".join(n for n in names if n) or (row.get(EMAIL_COLUMN) or ""))
            if employer is not None:
                row[kind.parent.link_column] = employer
        else:
            row.setdefault("name", str(remote.get("name") or ""))
        row[cols["sync"]] = True
        row[cols["outreach_id"]] = str(source["id"])
        row[cols["outreach_url"]] = self.ctx.web_url(kind, int(source["id"]))
        return row

    def _name_links(self, kind: Kind, made: list["NewRecord"]) -> None:
        """The snapshot of each new record, naming its link (sync/linked.py `made_here`) and
        agreeing with what the send half would now send, its owner and account too: the new
        record is not sent straight back. Written once its Workbooks id is known; should this
        write not land, the send half proves the link by reading the Outreach record first."""
        if not made:
            return
        mapping = self.ctx.mappings[kind.name]
        limits = self.ctx.settings.field_limits.get(kind.name) or {}
        column = self.ctx.columns[kind.name]["snapshot"]
        rows = []
        for item in made:
            forward, _failed = mapping.map_partial(item.row)
            account = _related(item.source, kind.parent.outreach_relationship) if kind.parent else None
            snapshot = Snapshot().with_sent(
                forward, account=account if item.employer is not None else None,
                owner=_related(item.source, "owner"), employer=item.employer,
                assignee=outreach_int(item.answer.affected.get("assigned_to")),
                outreach_id=int(item.source["id"]), record_id=int(item.answer.id))
            rows.append({"id": item.answer.id, "lock_version": item.answer.lock_version,
                         column: snapshot.dump(limits.get("snapshot"))})
        for item, answer in zip(made, self.ctx.wb.update(kind.endpoint, rows)):
            if not answer.ok:
                self.ctx.log.warning(f"{kind.name} {item.answer.id}: its sync snapshot was not saved "
                                     f"({'; '.join(answer.errors)}); its link is checked on Outreach next time")

    def _existing_emails(self, records: list[dict]) -> dict[str, dict]:
        emails = {normalise(str(e)) for r in records for e in (r.get("attributes") or {}).get("emails") or []}
        found: dict[str, dict] = {}
        for row in rows_by_email(self.ctx, self.kind, emails, ["id", "object_ref", "name", EMAIL_COLUMN]):
            found.setdefault(normalise(str(row.get(EMAIL_COLUMN) or "")), row)
        return found

    def _employers(self, records: list[dict]) -> dict[int, int]:
        """Outreach account id → the Workbooks Organisation for it: linked, else by name, else new."""
        if self.parent is None:
            return {}
        accounts = {a for a in (_related(r, self.kind.parent.outreach_relationship) for r in records) if a}
        if not accounts:
            return {}
        parent_cols = self.ctx.columns[self.parent.name]
        linked = {oid: int(rows[0]["id"]) for oid, rows in
                  linked_rows(self.ctx, self.parent, accounts, ["id", parent_cols["outreach_id"]]).items()}
        missing = sorted(accounts - set(linked))
        if not missing:
            return linked
        found: list[dict] = []
        targets = {f.target for f in self.ctx.mappings[self.parent.name].mapping.fields}
        fields = sorted((targets & set(catalogue.names(self.parent.outreach_type))) | {"name", "owner"})
        with self.ctx.outreach_work():
            found = self.ctx.outreach.find_by_ids(self.parent.outreach_plural, missing, fields=fields)
        named = [a for a in found if str((a.get("attributes") or {}).get("name") or "").strip()]
        same = self._organisations_named({str(a["attributes"]["name"]) for a in named})
        new = []
        for account in named:
            org = same.get(_fold(account["attributes"]["name"]))
            if org is not None:
                linked[int(account["id"])] = org
            else:
                new.append(NewRecord(self.parent, account, None, row=self._new_row(self.parent, account, None)))
        if not new:
            return linked
        for item, answer in zip(new, self.ctx.wb.create(self.parent.endpoint, [item.row for item in new])):
            if answer.ok and answer.id:
                item.answer = answer
                linked[int(item.source["id"])] = int(answer.id)
                self.ctx.report.received.created[self.parent.name] += 1
                self.ctx.log.notice(f"organisation {answer.id}: created from Outreach account {item.source['id']}")
            else:
                self.ctx.log.warning(f"Outreach account {item.source['id']} could not be made an Organisation: "
                                     f"{'; '.join(answer.errors)}; its people are created without one")
        self._name_links(self.parent, [item for item in new if item.answer is not None])
        return linked

    def _organisations_named(self, names: set[str]) -> dict[str, int]:
        """Folded name → the first Organisation of that name (Workbooks compares names without case)."""
        wanted = sorted(names)
        found: dict[str, int] = {}
        for n in range(0, len(wanted), ID_CHUNK):
            for page in self.ctx.wb.iter_pages(self.parent.endpoint, filters=[("name", "eq", wanted[n:n + ID_CHUNK])],
                                               columns=["id", "name"]):
                for row in sorted(page, key=lambda r: int(r["id"])):
                    found.setdefault(_fold(row.get("name")), int(row["id"]))
        return found


@dataclass
class NewRecord:
    """A Workbooks record being made from an Outreach record."""
    kind: Kind
    source: dict                        # the Outreach record
    employer: int | None                # a Person's Organisation
    row: dict = field(default_factory=dict)
    answer: RowResult | None = None     # Workbooks' answer to the create, when it landed


def _fold(name) -> str:
    return " ".join(str(name or "").split()).casefold()


def _related(record: dict, name: str) -> int | None:
    data = ((record.get("relationships") or {}).get(name) or {}).get("data")
    return outreach_int(data.get("id")) if isinstance(data, dict) else None
