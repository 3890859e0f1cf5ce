"""The Workbooks records linked to Outreach records (by the plugin's Outreach Id field), and who
among them may receive (workbooks-outreach-plugin-kb.md §2.11)."""
from __future__ import annotations

from ..kinds import Kind
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


def eligible(row: dict, cols: dict[str, str]) -> bool:
    return flag_value(row.get(cols["sync"])) and not flag_value(row.get(cols["sync_error"])) \
        and not flag_value(row.get(cols["duplicate"]))
