"""Every Workbooks record write of a run goes through here: one batch request per 100 rows, each
row guarded by the lock_version it was read with, and a row someone edited meanwhile ("updated
elsewhere") read again for its current lock_version and written again — our own fields only,
never the user's, whose edit is newer than our read and reaches the scan on its own.

The result says, per row, the version the write produced and whether it was *clean* (the first
attempt landed, so nobody else's edit sits in that version): a clean version is only our own
write, which the next scan may leave out; an unclean one carries someone's edit and must be read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


ERROR_MESSAGE_LIMIT = 1000       # characters kept of an Error Message (Workbooks' field may hold fewer)
# How a note of the receive half starts: it stays on the record until receive itself clears it
# (a record whose send goes well clears any other message).
RECEIVE_NOTE = "Outreach Sequence: "


@dataclass
class RowWrite:
    id: int
    lock_version: int
    fields: dict[str, Any]
    label: str                  # how the log names the record


@dataclass
class RowOutcome:
    ok: bool = False
    updated_at: str | None = None       # of the version the write produced (ok only)
    lock_version: int | None = None
    clean: bool = False                 # produced by our first attempt: no one else's edit in it
    failure: str | None = None          # why it was not written
    stale: bool = False                 # not written: someone else edited it meanwhile
    latest_lock_version: int | None = None   # the lock_version last read, when it was re-read


@dataclass
class WriteResult:
    rows: dict[int, RowOutcome] = field(default_factory=dict)

    def __getitem__(self, record_id: int) -> RowOutcome:
        return self.rows[record_id]


class WorkbooksWriter:
    def __init__(self, workbooks, log, *, stale_retries: int = 3) -> None:
        """`stale_retries`: how often a row edited meanwhile is written again with its fresh
        lock_version; 0 for writes decided from the row's content (receive), which must be
        decided again from the new content instead (the row is reported `stale`)."""
        self.wb = workbooks
        self.log = log
        self.stale_retries = stale_retries

    def write(self, endpoint: str, rows: list[RowWrite]) -> WriteResult:
        result = WriteResult({row.id: RowOutcome() for row in rows})
        pending = {row.id: row for row in rows}
        attempt = 0
        while pending:
            stale = self._attempt(endpoint, pending, result, clean=attempt == 0)
            if not stale:
                break
            if attempt >= self.stale_retries:
                for row in stale.values():
                    result[row.id].stale = True
                    if self.stale_retries:
                        result[row.id].failure = "edited by someone else during every retry"
                        self.log.warning(f"{row.label} kept changing while we wrote back; the next run retries")
                    else:
                        result[row.id].failure = "edited by someone else meanwhile"
                break
            pending = self._refresh(endpoint, stale, result)
            attempt += 1
        return result

    def _attempt(self, endpoint: str, pending: dict[int, RowWrite], result: WriteResult, *,
                 clean: bool) -> dict[int, RowWrite]:
        batch = [{"__method": "PUT", "id": row.id, "lock_version": row.lock_version, **row.fields}
                 for row in pending.values()]
        stale = {}
        for row, answer in zip(pending.values(), self.wb.batch(endpoint, batch)):
            outcome = result[row.id]
            if answer.ok:
                outcome.ok, outcome.clean = True, clean
                outcome.updated_at = (answer.affected or {}).get("updated_at")
                outcome.lock_version = answer.lock_version
            elif answer.stale:
                stale[row.id] = row
            else:
                reason = "; ".join(answer.errors) or "unknown failure"
                self.log.warning(f"could not write back to {row.label}: {reason}")
                outcome.failure = reason
        return stale

    def _refresh(self, endpoint: str, stale: dict[int, RowWrite], result: WriteResult) -> dict[int, RowWrite]:
        """Someone edited these records meanwhile: take their current lock_version."""
        fresh = {r["id"]: r for r in self.wb.get(endpoint, filters=[("id", "eq", ",".join(map(str, stale)))],
                                                 columns=["id", "lock_version", "updated_at"],
                                                 limit=len(stale))}
        retry = {}
        for rid, row in stale.items():
            if rid not in fresh:
                self.log.warning(f"{row.label} was deleted or hidden while syncing; skipped")
                result[rid].failure = "deleted"
                continue
            row.lock_version = fresh[rid]["lock_version"]
            result[rid].latest_lock_version = row.lock_version
            retry[rid] = row
        return retry
