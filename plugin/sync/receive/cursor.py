"""Where the next run starts reading one Outreach change feed (prospects, accounts, sequence
states), and which records at its edge are already applied.

Outreach's `updatedAt` has millisecond resolution, its filter bound is inclusive, and results
are sometimes unsorted within a query (outreach-api.md §4.1, §9). A record saved while we read,
or committed a little late, can carry a time just below what we have already read. So each read
starts an overlap window before the cursor, and the records already applied inside that window
are remembered by (id, updatedAt): read again, they are skipped, so nothing is missed and
nothing is applied twice. A record that could not be applied yet (a transient failure) holds
the cursor at its own time: the watermark never passes a change that was not written. Once a
whole read found nothing new, the overlap has done its job (a run later, nothing is still to
commit inside it): the cursor is *settled* and the next read starts at it, so a burst of more
records than a page inside the window is not read again every minute.

Some records must be read again although they did not change: the send half linked one to a
Workbooks record without writing to it (crash recovery, a link proved), or found one by its
email address and flagged the Person a duplicate. Its last change (an opt-out) may be behind the
cursor, read when no Workbooks record was linked to it or held its address; the cursor keeps
their ids (`again`) until a run has read and applied them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

OVERLAP = dt.timedelta(seconds=5)


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def iso_ms(when: dt.datetime) -> str:
    """Outreach's own form: `2024-01-11T12:47:26.000Z` (outreach-api.md §2.1)."""
    when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class FeedCursor:
    at: str | None = None                          # the feed's high-water mark (updatedAt)
    seen: dict[str, str] = field(default_factory=dict)   # id → updatedAt applied, inside the overlap
    settled: bool = False                          # read again from `at` itself, without the overlap
    again: list[str] = field(default_factory=list)  # ids to read by id next run, changed or not

    @classmethod
    def from_state(cls, value) -> "FeedCursor":
        if not isinstance(value, dict):
            return cls()
        again = _ids(value.get("again"))
        if not parse_time(value.get("at")):
            return cls(again=again)
        seen = {str(k): str(v) for k, v in (value.get("seen") or {}).items() if parse_time(v)}
        return cls(at=value["at"], seen=seen, settled=value.get("settled") is True, again=again)

    def to_state(self) -> dict | None:
        if self.at is None and not self.again:
            return None
        state: dict = {"at": self.at, "seen": dict(sorted(self.seen.items()))} if self.at else {}
        if self.settled and self.at:
            state["settled"] = True
        if self.again:
            state["again"] = self.again
        return state

    def since(self) -> str | None:
        """The lower bound of the next read: the cursor less the overlap (None: from the start)."""
        at = parse_time(self.at)
        return iso_ms(at if self.settled else at - OVERLAP) if at else None

    def applied(self, record_id, updated_at: str | None) -> bool:
        return self.seen.get(str(record_id)) == updated_at


class FeedTracker:
    """Follows one run's read of a feed and computes the cursor the next run starts from."""

    def __init__(self, start: FeedCursor) -> None:
        self.start = start
        self._handled: dict[str, str] = {}
        self._pending: dict[str, str] = {}
        self._settle = False
        self.again = list(start.again)      # still to be read by id after this run

    def fresh(self, record: dict) -> bool:
        """Not applied by an earlier run, nor by this one."""
        rid, when = str(record.get("id")), _updated_at(record)
        return not self.start.applied(rid, when) and self._handled.get(rid) != when

    def handled(self, record: dict) -> None:
        """Applied, or nothing to apply (unlinked, unchanged, flagged with its error)."""
        rid, when = str(record.get("id")), _updated_at(record)
        if when:
            self._handled[rid] = when
            self._pending.pop(rid, None)

    def pending(self, record: dict) -> None:
        """Not applied yet: the next run must read it again."""
        rid, when = str(record.get("id")), _updated_at(record)
        if when:
            self._pending[rid] = when

    def applied(self, record_id) -> bool:
        """Handled by this run and not pending."""
        rid = str(record_id)
        return rid in self._handled and rid not in self._pending

    def settle(self) -> None:
        """A whole read found nothing new: the next one need not look back over the overlap."""
        self._settle = not self._pending

    @property
    def moved(self) -> bool:
        return bool(self._handled) or self.again != self.start.again

    def result(self) -> FeedCursor:
        times = [t for t in (parse_time(v) for v in self._handled.values()) if t]
        start = parse_time(self.start.at)
        at = max([t for t in (start, *times) if t], default=None)
        held = [t for t in (parse_time(v) for v in self._pending.values()) if t]
        if held and at is not None:
            at = min(at, min(held))
        elif held:
            at = min(held)
        if at is None:
            return FeedCursor(again=self.again)
        floor = at - OVERLAP
        seen = {rid: when for rid, when in {**self.start.seen, **self._handled}.items()
                if (parse_time(when) or floor) >= floor and rid not in self._pending}
        # settled by this read; else it stays only while the mark stays (a later record brings
        # the overlap back)
        settled = self._settle or (self.start.settled and at == start)
        return FeedCursor(at=iso_ms(at), seen=seen, settled=settled, again=self.again)


def _ids(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return sorted({str(int(v)) for v in value if str(v).isdigit()}, key=int)


def _updated_at(record: dict) -> str | None:
    return (record.get("attributes") or {}).get("updatedAt")
