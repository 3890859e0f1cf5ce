"""The run history: a few numbers per run of "Outreach Send/Receive" over the last 24 hours, kept
in API Data (key `run_history`, plugin.state) for the administrators' status page (plugin/status.py).

The runner writes it once at the end of a run, together with the Outreach budget tally, which
used to be a key of its own (`outreach_budget`): one write, so a run that crashes before it
leaves no half entry, and a run that spends Outreach requests costs no more requests than it
did. A run that finds nothing to do (`report.skipped`) writes nothing, as before, and so does a
run that had work but did nothing with it — no Outreach request, nothing created, updated,
flagged or received, no failure — unless what it found differs from what the last entry says
(other records pending, a stop where there was none): so neither an idle minute nor a minute
spent waiting for the hourly budget costs a request more than it did. A dry run writes nothing.

The stored value:

    {"version": 1,
     "budget": {"window_start": epoch, "used": n},      the tally plugin.outreach counts in
     "hourly_budget": 8000, "web_url": "https://web.outreach.io",   what the runner ran with
     "last": {"at": epoch, "exit": 0, "summary": "people: …", "failure": "…" | null},
     "runs": [{"at": epoch, "exit": 0|1|2, "kinds": {"person": {"created": 3, …}, …},
               "received": {"people_updated": 2, …}, "outreach": 12, "stopped": true,
               "failure": "outreach" | "workbooks" | "other"}, …]}

Zero counts and absent facts are left out of a run's entry. `runs` holds the last 24 hours, at
most MAX_RUNS entries and about MAX_CHARS characters of JSON (oldest dropped first): a value
Workbooks' API Data is known to hold (workbooks-api.md §9.1: 100,000 characters in its tests).
Installations that have not written the key yet still have their tally under `outreach_budget`,
which is read as the starting tally until the first write.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import PluginError
from .kinds import KINDS
from .state import BUDGET, RUN_HISTORY

VERSION = 1
WINDOW_SECONDS = 24 * 3600
MAX_RUNS = 24 * 60            # one run a minute, the schedule's fastest
MAX_CHARS = 60_000
MESSAGE_LIMIT = 300
#: The per-kind counts a run's entry keeps (plugin.sync.report.KindCounts fields).
COUNTS = ("created", "updated", "duplicates", "errors", "pending")


# --- what one run leaves ---------------------------------------------------------------------------

def failure_source(exc: BaseException | None) -> str | None:
    """Which side failed a run. plugin.http names its client first in every message it raises
    ("outreach POST /api/v2/prospects: …", "workbooks GET /crm/people.api: …"), and the engine
    says "Outreach is unavailable: …" when it stops Outreach work."""
    if exc is None:
        return None
    first = str(exc).strip().lower()
    if first.startswith(("outreach", "the outreach")):
        return "outreach"
    if first.startswith("workbooks"):
        return "workbooks"
    return "other"


def received_counts(report) -> dict[str, int]:
    """The receive side's int counts (`report.received`, a dataclass), when the report has them."""
    received = getattr(report, "received", None)
    if received is None or not dataclasses.is_dataclass(received):
        return {}
    out = {}
    for item in dataclasses.fields(received):
        value = getattr(received, item.name)
        if isinstance(value, int) and not isinstance(value, bool) and value:
            out[item.name] = value
    return out


def kind_counts(report) -> dict[str, dict[str, int]]:
    out = {}
    for kind in KINDS:
        counts = report.counts.get(kind.name)
        kept = {name: int(getattr(counts, name, 0) or 0) for name in COUNTS} if counts else {}
        kept = {name: n for name, n in kept.items() if n}
        if kept:
            out[kind.name] = kept
    return out


def entry(*, at: float, exit_code: int, report=None, failure: BaseException | None = None,
          outreach_requests: int = 0) -> dict:
    """One run's entry. `failure`: what ended the run (the report's own, or an error raised
    past it)."""
    failure = failure if failure is not None else getattr(report, "failure", None)
    run: dict[str, Any] = {"at": int(at), "exit": int(exit_code)}
    if report is not None:
        if kind_counts(report):
            run["kinds"] = kind_counts(report)
        if received_counts(report):
            run["received"] = received_counts(report)
        if report.stopped:
            run["stopped"] = True
    if outreach_requests:
        run["outreach"] = int(outreach_requests)
    if failure is not None:
        run["failure"] = failure_source(failure)
    return run


ACTIONS = ("created", "updated", "duplicates", "errors")


def worth_recording(run: dict, previous: dict | None) -> bool:
    """Whether a run's entry is saved (module docstring): always when it did something or failed;
    an empty-handed run only when its outcome is news."""
    did = (run.get("outreach") or run.get("received") or run.get("failure")
           or any(counts.get(name) for counts in (run.get("kinds") or {}).values() for name in ACTIONS))
    return bool(did) or previous is None or _outcome(run) != _outcome(previous)


def _outcome(run: dict) -> tuple:
    pending = {kind: counts.get("pending", 0) for kind, counts in (run.get("kinds") or {}).items()
               if counts.get("pending")}
    return run.get("exit"), bool(run.get("stopped")), run.get("failure"), pending


def updated(stored: Any, run: dict, *, budget: dict, hourly_budget: int, web_url: str,
            summary: str, failure_text: str | None, now: float) -> dict:
    """The new stored value: `run` appended, old runs dropped (module docstring)."""
    runs = [r for r in _runs(stored) if r["at"] > now - WINDOW_SECONDS] + [run]
    runs = runs[-MAX_RUNS:]
    value = {"version": VERSION, "budget": dict(budget), "hourly_budget": int(hourly_budget),
             "web_url": str(web_url),
             "last": {"at": run["at"], "exit": run["exit"], "summary": _clip(summary),
                      "failure": _clip(failure_text) if failure_text else None},
             "runs": runs}
    while len(runs) > 1 and len(json.dumps(value, separators=(",", ":"))) > MAX_CHARS:
        del runs[: max(1, len(runs) // 10)]
    return value


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def _runs(stored: Any) -> list[dict]:
    runs = stored.get("runs") if isinstance(stored, dict) else None
    return [r for r in runs or [] if isinstance(r, dict) and isinstance(r.get("at"), (int, float))]


# --- the runner's side ------------------------------------------------------------------------------

class RunRecorder:
    """What the runner hands the history: the budget tally to start from (the new key's, else
    the legacy key's), and, at the end, the one write. Never fails the run: a history that could
    not be saved costs a warning (the next run re-learns the tally, as before)."""

    def __init__(self, state, log, *, hourly_budget: int, web_url: str, redact: Callable[[str], str] = str,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.log = log
        self.hourly_budget = hourly_budget
        self.web_url = web_url
        self.redact = redact
        self.clock = clock
        stored = state.get(RUN_HISTORY)
        legacy = state.get(BUDGET)
        tally = stored.get("budget") if isinstance(stored, dict) else legacy
        self.budget: dict = dict(tally) if isinstance(tally, dict) else {}

    def finished(self, report, outreach_requests: int, exit_code: int) -> None:
        self._save(report, None, outreach_requests, exit_code)

    def failed(self, exc: PluginError, outreach_requests: int, exit_code: int) -> None:
        self._save(None, exc, outreach_requests, exit_code)

    def _save(self, report, failure, outreach_requests: int, exit_code: int) -> None:
        if getattr(self.state, "dry_run", False) or (report is not None and report.skipped):
            return
        now = self.clock()
        run = entry(at=now, exit_code=exit_code, report=report, failure=failure,
                    outreach_requests=outreach_requests)
        stored = self.state.get(RUN_HISTORY)
        previous = _runs(stored)[-1] if _runs(stored) else None
        if not worth_recording(run, previous):
            return
        cause = failure if failure is not None else getattr(report, "failure", None)
        summary = report.summary() if report is not None else str(failure)
        value = updated(stored, run, budget=self.budget, hourly_budget=self.hourly_budget,
                        web_url=self.web_url, summary=self.redact(summary),
                        failure_text=self.redact(str(cause)) if cause is not None else None, now=now)
        try:
            self.state.put(RUN_HISTORY, value)
        except PluginError as exc:
            self.log.warning(f"could not save the run history and the Outreach budget tally ({exc}); "
                             "the next run re-learns the tally")


# --- the page's side ---------------------------------------------------------------------------------

@dataclass
class Run:
    at: float
    exit: int
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    outreach: int = 0
    stopped: bool = False
    failure: str | None = None

    def total(self, name: str) -> int:
        return sum(int(c.get(name, 0) or 0) for c in self.kinds.values())

    @property
    def flagged(self) -> int:
        """Records the run flagged, the receive side's failures (its `…errors` counts) included."""
        return self.total("errors") + self.total("duplicates") + sum(
            n for name, n in self.received.items() if name.endswith("errors"))

    @property
    def records_received(self) -> int:
        """What the receive side brought back (its counts but the `…errors` ones)."""
        return sum(n for name, n in self.received.items() if not name.endswith("errors"))

    @property
    def failed(self) -> bool:
        return self.exit != 0


@dataclass
class History:
    runs: list[Run]
    budget: dict
    hourly_budget: int | None
    web_url: str | None
    last: dict

    @classmethod
    def from_state(cls, stored: Any, legacy_budget: Any = None) -> "History":
        if not isinstance(stored, dict):
            budget = legacy_budget if isinstance(legacy_budget, dict) else {}
            return cls([], dict(budget), None, None, {})
        runs = []
        for raw in _runs(stored):
            runs.append(Run(at=float(raw["at"]), exit=_int(raw.get("exit")),
                            kinds={str(k): {str(n): _int(v) for n, v in c.items()}
                                   for k, c in (raw.get("kinds") or {}).items() if isinstance(c, dict)},
                            received={str(n): _int(v) for n, v in (raw.get("received") or {}).items()},
                            outreach=_int(raw.get("outreach")), stopped=bool(raw.get("stopped")),
                            failure=str(raw["failure"]) if raw.get("failure") else None))
        runs.sort(key=lambda r: r.at)
        budget = stored.get("budget") if isinstance(stored.get("budget"), dict) else {}
        hourly = stored.get("hourly_budget")
        last = stored.get("last") if isinstance(stored.get("last"), dict) else {}
        return cls(runs, dict(budget), _int(hourly) if hourly is not None else None,
                   str(stored["web_url"]) if stored.get("web_url") else None, dict(last))

    def within(self, now: float, seconds: float = WINDOW_SECONDS) -> list[Run]:
        return [r for r in self.runs if now - seconds < r.at <= now + 60]

    def failing_streak(self) -> list[Run]:
        """The latest runs, newest first, as long as they all failed."""
        streak = []
        for run in reversed(self.runs):
            if not run.failed:
                break
            streak.append(run)
        return streak


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
