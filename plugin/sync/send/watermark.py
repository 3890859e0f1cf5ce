"""Where the next run starts reading.

Workbooks times have one-second resolution (workbooks-api.md §8), so a watermark is a second plus
the records already handled *at that second*, each with the `lock_version` it had: a record
edited again within the same second has a new lock_version and is not mistaken for done
("Deltas", workbooks-api.md §3.1). Reads compare with `>=`, so nothing at the watermark second is
missed, and the done-set keeps those records from being re-sent forever.

The watermark never passes a linked record that still needs work (a transient failure): it is
held at the first such record. Unlinked records need no hold, because the seed's condition 4
(Outreach Id blank) selects them again whatever their time.

Nor does it pass a second that was still going on when the scan read into it. The scan pages by
(updated_at, id); a user saving a record with a lower id in that same second, after the page was
read, stamps it *behind* the cursor. Had the scan then moved on to a later second, the record
would sit below the next run's watermark for good (a linked record is not selected by condition
4). Such a second is read again whole once it is over (`passed_open`, `read_again`), or the
watermark stays on it. Whether a second may still be going on is judged from the server's own
stamps (the run lock's, our write-backs', the rows read): no local clock is trusted.
"""
from __future__ import annotations

import datetime as dt
import heapq
import re
from dataclasses import dataclass, field

from ...workbooks import parse_datetime as parse_wb_datetime


@dataclass
class Watermark:
    at: str | None = None                             # Workbooks datetime text
    done: dict[int, int] = field(default_factory=dict)  # record id -> lock_version handled at `at`
    # Parents only: ids whose linked children must be looked at again although their own
    # `updated_at` did not move (the Employer was renamed, or has just reached Outreach). Kept in the
    # Organisations' watermark so it is saved in the same write that moves past those records:
    # a crash can never lose it (see plugin/sync/send/relations.py).
    recheck: list[int] = field(default_factory=list)
    # Outreach id → the `updatedAt` of the version our own create or PATCH produced, when it held
    # nothing the receive half would bring back: receive skips exactly that version instead of
    # reading its Workbooks record to find so (saved with the watermark: no write of its own).
    echoes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_state(cls, value) -> "Watermark":
        if not isinstance(value, dict):
            return cls()
        recheck = sorted({int(i) for i in value.get("recheck") or []})
        echoes = decode_echoes(value.get("echoes"))
        if not value.get("at"):
            return cls(recheck=recheck, echoes=echoes)
        done = {int(k): int(v) for k, v in (value.get("done") or {}).items()}
        return cls(at=value["at"], done=done, recheck=recheck, echoes=echoes)

    def to_state(self) -> dict | None:
        if self.at is None and not self.recheck and not self.echoes:
            return None
        state = {"at": self.at, "done": {str(k): v for k, v in sorted(self.done.items())}}
        if self.recheck:
            state["recheck"] = sorted(set(self.recheck))
        if self.echoes:
            state["echoes"] = encode_echoes(self.echoes)
        return state

    def covers(self, record_id: int, updated_at: str | None, lock_version: int | None) -> bool:
        """True when this exact version of the record was handled by an earlier run."""
        if self.at is None or updated_at is None:
            return False
        return (self.done.get(record_id) == lock_version
                and parse_wb_datetime(updated_at) == parse_wb_datetime(self.at))


# The echoes' share of one API Data value (workbooks-api.md §9.1: 100,000 characters are known to
# work): a run that creates 8,000 records (the hourly budget) needs ~45,000 in the compact form.
ECHO_CHARS = 60_000
_OUTREACH_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def encode_echoes(echoes: dict[str, str]) -> dict:
    """The echoes in time order as `"first id:first ms;Δid:Δms;…"` (integers; milliseconds since
    1970): one run's creates are a few characters each instead of ~36, so a whole run's fit in
    the watermark. A time not in Outreach's own form stays as it came (`odd`). The oldest are
    dropped when the text would outgrow ECHO_CHARS (a dropped echo costs receive one read)."""
    timed, odd = [], {}
    for rid, when in echoes.items():
        if str(rid).isdigit() and _OUTREACH_TIME.fullmatch(str(when)):
            moment = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
            timed.append(((moment - _EPOCH) // dt.timedelta(milliseconds=1), int(rid)))
        else:
            odd[str(rid)] = str(when)
    timed.sort()
    while True:
        parts, last_id, last_ms = [], 0, 0
        for ms, rid in timed:
            parts.append(f"{rid - last_id}:{ms - last_ms}")
            last_id, last_ms = rid, ms
        text = ";".join(parts)
        if len(text) <= ECHO_CHARS:
            break
        timed = timed[len(timed) // 10 + 1:]
    state: dict = {"v": 2, "timed": text}
    if odd:
        state["odd"] = dict(sorted(odd.items()))
    return state


def decode_echoes(value) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    if value.get("v") != 2:                     # before 0.2's compact form: {id: updatedAt}
        return {str(k): str(v) for k, v in value.items()}
    echoes = {str(k): str(v) for k, v in (value.get("odd") or {}).items()}
    rid = ms = 0
    for part in str(value.get("timed") or "").split(";"):
        try:
            d_id, d_ms = (int(x) for x in part.split(":"))
        except ValueError:
            continue                            # a damaged entry costs receive one read
        rid, ms = rid + d_id, ms + d_ms
        when = _EPOCH + dt.timedelta(milliseconds=ms)
        echoes[str(rid)] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return echoes


class WatermarkTracker:
    """Follows one run's scan (records arrive in (updated_at, id) order) and computes the
    watermark the next run starts from."""

    def __init__(self, start: Watermark, server_time: dt.datetime | None = None) -> None:
        self.start = start
        self._cursor: str | None = None          # updated_at of the last record read
        self._hold: str | None = None            # first linked record that still needs work
        self._versions: dict[int, tuple[str, int]] = {}   # id -> (updated_at, lock_version) handled
        self._times: dict[int, dt.datetime] = {}          # id -> its handled updated_at, parsed
        self._unfinished: dict[int, tuple[str, int]] = {}  # read, not handled (pending): not twice a run
        # The latest time Workbooks is known to have stamped: its clock has reached at least this.
        self._server_time = server_time
        # Seconds a page ended in while they may still have been going on -> their updated_at text.
        self._open: dict[dt.datetime, str] = {}
        if start.at:
            for record_id, lock_version in start.done.items():   # handled by the run before
                self.handled(record_id, start.at, lock_version)

    def page(self, rows: list[dict]) -> None:
        """A page of the scan was answered (before any of it is processed). Its last second may
        still have been going on unless Workbooks had already stamped a later time."""
        last = parse_wb_datetime(rows[-1].get("updated_at")) if rows else None   # the page's latest
        if last is None:
            return
        if self._server_time is None or last >= self._server_time:
            self._open.setdefault(last, rows[-1]["updated_at"])
        self._saw(last)

    def read(self, updated_at: str) -> None:
        self._cursor = updated_at

    def handled(self, record_id: int, updated_at: str, lock_version: int) -> None:
        """This version of the record needs nothing more (synced, unchanged, flagged, or our
        own write-back produced it)."""
        self._versions[record_id] = (updated_at, lock_version)
        self._unfinished.pop(record_id, None)
        when = parse_wb_datetime(updated_at)
        if when is not None:
            self._times[record_id] = when
            self._saw(when)
        else:
            self._times.pop(record_id, None)

    def needs_work(self, record_id: int, updated_at: str, lock_version: int, linked: bool) -> None:
        self._unfinished[record_id] = (updated_at, lock_version)
        if linked and (self._hold is None or _earlier(updated_at, self._hold)):
            self._hold = updated_at

    def handled_version(self, record_id: int) -> tuple[str, int] | None:
        return self._versions.get(record_id)

    def met(self, record_id: int, updated_at: str | None, lock_version: int | None) -> bool:
        """True when this run already dealt with exactly this version (handled it, or found it
        still needs work): a scan that reads a second again skips it."""
        version = (updated_at, lock_version)
        return self._versions.get(record_id) == version or self._unfinished.get(record_id) == version

    def passed_open(self) -> list[str]:
        """The seconds the scan read into while they may still have been going on and has since
        moved past, earliest first. A record saved in one of them after the read sits behind the
        cursor, so each must be read again whole (it is over now: the scan met, or passed,
        records stamped later) before the watermark may pass it."""
        return self._open_before(self._cursor)

    def read_again(self, second: str) -> None:
        """`second` was read whole after it was over: nothing of it is behind the cursor now."""
        self._open.pop(parse_wb_datetime(second), None)

    def handled_at(self, second: str) -> list[tuple[int, int]]:
        """(id, lock_version) of the versions handled that carry this second."""
        when = parse_wb_datetime(second)
        return sorted((rid, self._versions[rid][1]) for rid, t in self._times.items() if t == when)

    def _open_before(self, at: str | None) -> list[str]:
        when = parse_wb_datetime(at) if at else None
        return [self._open[s] for s in sorted(self._open) if when is not None and s < when]

    def _saw(self, when: dt.datetime) -> None:
        if self._server_time is None or when > self._server_time:
            self._server_time = when

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
        at = (self._open_before(at) or [at])[0]    # a second not read again since it was going on
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
