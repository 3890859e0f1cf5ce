"""`receive.create_people: true` in the mapping: a Prospect created in Outreach that no Workbooks
Person is linked to becomes a new Person, linked to it, with Sync to Outreach ticked — and its
Account's Organisation with it, found by its link or its name, else created and linked too.

Never when a Person with one of the prospect's email addresses already exists (counted and
logged instead: a person decides whether they are the same). Never twice: the new Person carries
the prospect's Outreach Id from its first write, so a run whose answer was lost finds it by that
link next time and creates nothing. What the Person gets: every mapped field that can come back
(`receive`/`both`, or a plain `send` field the way back needs nothing for), and the prospect's
first email into the match key's field. Its snapshot agrees with what the send half would now
send, so the new Person is not sent straight back to Outreach.
"""
from __future__ import annotations

from ... import transforms as tf
from ...emails import normalise
from ...kinds import Kind, by_name
from ...mapping import REVERSIBLE
from ...snapshot import Snapshot
from ...workbooks import escape_filter_value
from ..context import RunContext
from ..send.item import describe_row
from ..send.plan import outreach_int
from ..linked import EMAIL_COLUMN, linked_rows


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
        employers = self._employers(wanted)
        rows = [self._new_row(record, employers.get(_related(record, self.kind.parent.outreach_relationship)
                                                  if self.kind.parent else None)) for record in wanted]
        if self.ctx.dry_run:
            for record in wanted:
                self.ctx.log.info(f"dry run: would create a Person for Outreach prospect {record['id']}")
                done.add(str(record["id"]))
            self.ctx.report.received.created[self.kind.name] += len(wanted)
            return done
        for record, answer in zip(wanted, self.ctx.wb.create(self.kind.endpoint, rows)):
            if answer.ok:
                done.add(str(record["id"]))
                self.ctx.report.received.created[self.kind.name] += 1
                self.ctx.log.notice(f"person {answer.id}: created from Outreach prospect {record['id']}")
            else:
                self.ctx.log.warning(f"Outreach prospect {record['id']} could not be made a Person: "
                                     f"{'; '.join(answer.errors)}")
                done.add(str(record["id"]))          # Workbooks refused its data: retrying changes nothing
        return done

    # --- what the new Person holds ------------------------------------------------------------------
    def _new_row(self, record: dict, employer: int | None) -> dict:
        remote = record.get("attributes") or {}
        row: dict = {}
        for spec in self.mapping.mapping.fields:
            if spec.source is None or spec.target not in remote:
                continue
            column = self.mapping.column(spec)
            value = remote[spec.target]
            if spec.target == self.mapping.match_key and isinstance(value, list):
                value = value[0] if value else None          # the prospect's first email
            elif not spec.receives and not all(step.name in REVERSIBLE for step in spec.steps):
                continue                                      # no way back for this send field
            try:
                row[column] = self.mapping.received(spec, value) if spec.receives else value
            except tf.TransformError:
                continue
        names = [str(remote.get(k) or "").strip() for k in ("firstName", "lastName")]
        row.setdefault("name", " ".join(n for n in names if n) or (row.get(EMAIL_COLUMN) or ""))
        if employer is not None and self.kind.parent is not None:
            row[self.kind.parent.link_column] = employer
        row[self.cols["sync"]] = True
        row[self.cols["outreach_id"]] = str(record["id"])
        row[self.cols["outreach_url"]] = self.ctx.web_url(self.kind, int(record["id"]))
        forward, _failed = self.mapping.map_partial(row)
        limits = self.ctx.settings.field_limits.get(self.kind.name) or {}
        row[self.cols["snapshot"]] = Snapshot().with_sent(forward, employer=employer).dump(limits.get("snapshot"))
        return row

    def _existing_emails(self, records: list[dict]) -> dict[str, dict]:
        emails = sorted({normalise(str(e)) for r in records for e in (r.get("attributes") or {}).get("emails") or []})
        found: dict[str, dict] = {}
        for n in range(0, len(emails), 99):
            for page in self.ctx.wb.iter_pages(self.kind.endpoint, filters=[(EMAIL_COLUMN, "eq", emails[n:n + 99])],
                                               columns=["id", "object_ref", "name", EMAIL_COLUMN]):
                for row in page:
                    found.setdefault(normalise(str(row.get(EMAIL_COLUMN) or "")), row)
        return found

    def _employers(self, records: list[dict]) -> dict[int, int]:
        """Outreach account id → the Workbooks Organisation for it: linked, else by name, else new."""
        if self.parent is None:
            return {}
        accounts = {a for a in (_related(r, self.kind.parent.outreach_relationship) for r in records) if a}
        if not accounts:
            return {}
        linked = {oid: int(rows[0]["id"]) for oid, rows in
                  linked_rows(self.ctx, self.parent, accounts, ["id", self.ctx.columns[self.parent.name]["outreach_id"]]).items()}
        missing = sorted(accounts - set(linked))
        if not missing:
            return linked
        names: dict[int, str] = {}
        with self.ctx.outreach_work():
            names = {int(a["id"]): str((a.get("attributes") or {}).get("name") or "")
                     for a in self.ctx.outreach.find_by_ids(self.parent.outreach_plural, missing, fields=["name"])}
        for account, name in names.items():
            if not name:
                continue
            same = self.ctx.wb.get(self.parent.endpoint, filters=[("name", "eq", escape_filter_value(name))],
                                   columns=["id"], limit=1)
            if same:
                linked[account] = int(same[0]["id"])
                continue
            if self.ctx.dry_run:
                continue
            cols = self.ctx.columns[self.parent.name]
            row = {"name": name, cols["sync"]: True, cols["outreach_id"]: str(account),
                   cols["outreach_url"]: self.ctx.web_url(self.parent, account)}
            forward, _failed = self.ctx.mappings[self.parent.name].map_partial(row)
            limits = self.ctx.settings.field_limits.get(self.parent.name) or {}
            row[cols["snapshot"]] = Snapshot().with_sent(forward).dump(limits.get("snapshot"))
            [answer] = self.ctx.wb.create(self.parent.endpoint, [row])
            if answer.ok and answer.id:
                linked[account] = int(answer.id)
                self.ctx.report.received.created[self.parent.name] += 1
                self.ctx.log.notice(f"organisation {answer.id}: created from Outreach account {account}")
        return linked


def _related(record: dict, name: str) -> int | None:
    data = ((record.get("relationships") or {}).get(name) or {}).get("data")
    return outreach_int(data.get("id")) if isinstance(data, dict) else None
