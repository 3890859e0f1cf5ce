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

    def read(self, updated_at: str) -> None:
        self._cursor = updated_at

    def handled(self, record_id: int, updated_at: str, lock_version: int) -> None:
        """This version of the record needs nothing more (synced, unchanged, flagged, or our
        own write-back produced it)."""
        self._versions[record_id] = (updated_at, lock_version)

    def needs_work(self, updated_at: str, linked: bool) -> None:
        if linked and (self._hold is None or _earlier(updated_at, self._hold)):
            self._hold = updated_at

    def handled_version(self, record_id: int) -> tuple[str, int] | None:
        return self._versions.get(record_id)

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
