"""The Workbooks records linked to Outreach records (by the plugin's Outreach Id field), and who
among them may receive (workbooks-outreach-plugin-kb.md §2.11)."""
from __future__ import annotations

from typing import Iterator

from ..kinds import Kind
from ..snapshot import Snapshot
from .context import RunContext
from .send.plan import flag_value, outreach_int

EMAIL_COLUMN = "main_location[email]"       # a Person's email (workbooks-api.md §5.2)
# Outreach ids per read of linked records: one less than a page, so that one page answers a
# chunk whole unless two records share a link (a full page then says more may follow).
ID_CHUNK = 99


def linked_rows(ctx: RunContext, kind: Kind, outreach_ids, columns: list[str]) -> dict[int, list[dict]]:
    """Workbooks records of `kind` whose Outreach Id is one of `outreach_ids`, by that id (lowest
    Workbooks id first)."""
    column = ctx.columns[kind.name]["outreach_id"]
    ids = sorted({int(i) for i in outreach_ids})
    found: dict[int, list[dict]] = {}
    for n in range(0, len(ids), ID_CHUNK):
        chunk = [str(i) for i in ids[n:n + ID_CHUNK]]
        for page in ctx.wb.iter_pages(kind.endpoint, filters=[(column, "eq", chunk)], columns=columns,
                                      limit=ID_CHUNK + 1):
            for row in page:
                oid = outreach_int(row.get(column))
                if oid is not None:
                    found.setdefault(oid, []).append(row)
    return {oid: sorted(rows, key=lambda r: int(r["id"])) for oid, rows in found.items()}


def rows_by_email(ctx: RunContext, kind: Kind, emails, columns: list[str], filters=()) -> Iterator[dict]:
    """Workbooks People whose email is one of `emails` (normalised), in reads of ID_CHUNK."""
    wanted = sorted(set(emails))
    for n in range(0, len(wanted), ID_CHUNK):
        for page in ctx.wb.iter_pages(kind.endpoint, filters=[(EMAIL_COLUMN, "eq", wanted[n:n + ID_CHUNK]), *filters],
                                      columns=columns):
            yield from page


def eligible(row: dict, cols: dict[str, str]) -> bool:
    return flag_value(row.get(cols["sync"])) and not flag_value(row.get(cols["sync_error"])) \
        and not flag_value(row.get(cols["duplicate"]))


def made_here(snapshot: Snapshot, outreach_id: int | None, record_id: int) -> bool:
    """Whether the plugin made this link: its snapshot names this very pair of records."""
    return not snapshot.empty and snapshot.outreach_id == outreach_id and snapshot.record_id == record_id


def legacy(snapshot: Snapshot) -> bool:
    """A snapshot written before snapshots named their link: trusted while no other Workbooks
    record holds the same Outreach Id (a copy of such a record is then the one doubt left)."""
    return not snapshot.empty and snapshot.outreach_id is None and snapshot.record_id is None


def trusted(snapshot: Snapshot, outreach_id: int | None, record_id: int, *, shared: bool) -> bool:
    return made_here(snapshot, outreach_id, record_id) or (legacy(snapshot) and not shared)


def trusted_rows(found: dict[int, list[dict]], snapshot_column: str) -> dict[int, list[dict]]:
    """Of `linked_rows`' answer, the records whose link is trusted, by Outreach id. The others are
    left to the send half, which reads their Outreach record and flags them or proves them ours."""
    kept: dict[int, list[dict]] = {}
    for oid, rows in found.items():
        mine = [row for row in rows if trusted(Snapshot.parse(row.get(snapshot_column)), oid, int(row["id"]),
                                                shared=len(rows) > 1)]
        if mine:
            kept[oid] = mine
    return kept
