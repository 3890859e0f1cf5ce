"""Where the next run starts reading.

Workbooks times have one-second resolution (workbooks-api.md §8), so a watermark is a second plus
the records already handled *at that second*, each with the `lock_version` it had: a record
edited again within the same second has a new lock_version and is not mistaken for done
("Deltas", workbooks-api.md §3.1). Reads compare with `>=`, so nothing at the watermark second is
missed, and the done-set keeps those records from being re-sent forever.

The watermark never passes a linked record that still needs work (a transient failure): it is
held at the first such record. Unlinked records need no hold, because the seed's condition 4
(Outreach Id blank) selects them again whatever their time.
"""
from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field

from .workbooks import parse_datetime as parse_wb_datetime


@dataclass
class Watermark:
    at: str | None = None                             # Workbooks datetime text
    done: dict[int, int] = field(default_factory=dict)  # record id -> lock_version handled at `at`
    # Organisations only: ids whose linked People must be looked at again although their own
    # `updated_at` did not move (the Employer was renamed). Kept in the
    # Organisations' watermark so it is saved in the same write that moves past those records:
    # a crash can never lose it (see SyncRun._recheck_people).
    recheck: list[int] = field(default_factory=list)

    @classmethod
    def from_state(cls, value) -> "Watermark":
        if not isinstance(value, dict):
            return cls()
        recheck = sorted({int(i) for i in value.get("recheck") or []})
        if not value.get("at"):
            return cls(recheck=recheck)
        done = {int(k): int(v) for k, v in (value.get("done") or {}).items()}
        return cls(at=value["at"], done=done, recheck=recheck)

    def to_state(self) -> dict | None:
        if self.at is None and not self.recheck:
            return None
        state = {"at": self.at, "done": {str(k): v for k, v in sorted(self.done.items())}}
        if self.recheck:
            state["recheck"] = sorted(set(self.recheck))
        return state

    def covers(self, record_id: int, updated_at: str | None, lock_version: int | None) -> bool:
        """True when this exact version of the record was handled by an earlier run."""
        if self.at is None or updated_at is None:
            return False
        return (self.done.get(record_id) == lock_version
                and parse_wb_datetime(updated_at) == parse_wb_datetime(self.at))


class WatermarkTracker:
    """Follows one run's scan (records arrive in (updated_at, id) order) and computes the
    watermark the next run starts from."""

    def __init__(self, start: Watermark) -> None:
        self.start = start
        self._cursor: str | None = None          # updated_at of the last record read
        self._hold: str | None = None            # first linked record that still needs work
        self._versions: dict[int, tuple[str, int]] = {}   # id -> (updated_at, lock_version) handled
        self._times: dict[int, dt.datetime] = {}          # id -> its handled updated_at, parsed
        if start.at:
            for record_id, lock_version in start.done.items():   # handled by the run before
                self.handled(record_id, start.at, lock_version)

    def read(self, updated_at: str) -> None:
        self._cursor = updated_at

    def handled(self, record_id: int, updated_at: str, lock_version: int) -> None:
        """This version of the record needs nothing more (synced, unchanged, flagged, or our
        own write-back produced it)."""
        self._versions[record_id] = (updated_at, lock_version)
        when = parse_wb_datetime(updated_at)
        if when is not None:
            self._times[record_id] = when
        else:
            self._times.pop(record_id, None)

    def needs_work(self, updated_at: str, linked: bool) -> None:
        if linked and (self._hold is None or _earlier(updated_at, self._hold)):
            self._hold = updated_at

    def handled_version(self, record_id: int) -> tuple[str, int] | None:
        return self._versions.get(record_id)

    def handled_beyond(self, cursor: tuple[str | None, int] | None,
                       limit: int | None = None) -> list[tuple[int, int]]:
        """(id, lock_version) of the handled versions after `cursor` (an (updated_at, id) scan
        position; None = the start), in scan order, the first `limit` of them: what the scan
        would still meet and skip."""
        after = None if cursor is None or cursor[0] is None else (parse_wb_datetime(cursor[0]), cursor[1])
        beyond = ((when, rid) for rid, when in self._times.items() if after is None or (when, rid) > after)
        ordered = sorted(beyond) if limit is None else heapq.nsmallest(limit, beyond)
        return [(rid, self._versions[rid][1]) for _, rid in ordered]

    def pass_handled(self, cursor: tuple[str | None, int] | None) -> None:
        """The scan met nothing more: every record still ahead of `cursor` that the pick-up rule
        selects is a version this run handled, or has no Outreach Id (the rule selects those
        whatever the watermark). The next run may start after the last handled one."""
        ahead = self.handled_beyond(cursor)
        if ahead:
            last = max(self._times[rid] for rid, _ in ahead)
            if self._cursor is None or parse_wb_datetime(self._cursor) < last:
                self._cursor = next(self._versions[rid][0] for rid, _ in ahead if self._times[rid] == last)

    def result(self) -> Watermark:
        at = self._hold or self._cursor
        if at is None:
            return self.start
        if self.start.at and _earlier(at, self.start.at):
            at = self.start.at  # never move backwards: the old done-set still applies there
        second = parse_wb_datetime(at)
        done = {rid: lv for rid, (when, lv) in self._versions.items() if parse_wb_datetime(when) == second}
        if self.start.at and parse_wb_datetime(self.start.at) == second:
            done = {**self.start.done, **done}
        return Watermark(at=at, done=done)


def _earlier(a: str, b: str) -> bool:
    return parse_wb_datetime(a) < parse_wb_datetime(b)


# How many handled versions one query may leave out. The ids travel as one comma list per
# lock_version in the form body (`_fc[]=1,2,3`, workbooks-api.md §3.2): 1,000 ids is ~8 KB.
EXCLUDE_IDS = 1000
EXCLUDE_VERSIONS = 16


def exclusion(pairs: list[tuple[int, int]], first: int) -> tuple[list[tuple], str]:
    """Filters and a `_fm` fragment leaving out these exact record versions: the server-side
    twin of the done-set, so the scan does not page through its own write-backs
    (`NOT ((id IN … AND lock_version = v) OR …)`). `first` is the 1-based number of the first
    filter added. Takes pairs in the given order up to EXCLUDE_IDS ids and EXCLUDE_VERSIONS
    distinct lock_versions; the rest are simply not left out (the client still skips them)."""
    groups: dict[int, list[int]] = {}
    taken = 0
    for rid, version in pairs:
        if taken >= EXCLUDE_IDS or (version not in groups and len(groups) >= EXCLUDE_VERSIONS):
            break
        groups.setdefault(version, []).append(rid)
        taken += 1
    filters: list[tuple] = []
    terms = []
    for version, ids in groups.items():
        n = first + len(filters)
        filters += [("id", "eq", ",".join(str(i) for i in sorted(ids))), ("lock_version", "eq", version)]
        terms.append(f"({n} AND {n + 1})")
    return filters, ("NOT (" + " OR ".join(terms) + ")") if terms else ""
