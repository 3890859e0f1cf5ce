"""What a run did, counted per kind of record, and the summary line that ends the process log
(DESIGN.md §3: "people: 120 created, 31 updated, 2 duplicates, 1 error, 0 pending; …")."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PluginError
from ..kinds import KINDS, in_reading_order


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    errors: int = 0
    pending: int = 0
    adopted: int = 0
    pending_linked: int = 0         # of `pending`: already in Outreach (the backlog count misses them)

    def describe(self) -> str:
        return (f"{self.created} created, {self.updated} updated, "
                f"{plural(self.duplicates, 'duplicate')}, {plural(self.errors, 'error')}, "
                f"{self.pending} pending")


@dataclass
class ReceiveCounts:
    """What the receive half wrote into Workbooks (docs/installing.md explains each count)."""
    updated: dict[str, int] = field(default_factory=lambda: {k.name: 0 for k in KINDS})
    created: dict[str, int] = field(default_factory=lambda: {k.name: 0 for k in KINDS})
    opt_outs: int = 0               # People whose No Email / No Call this run ticked
    sequence_states: int = 0        # People whose sequence state this run wrote
    errors: int = 0                 # records whose Outreach values Workbooks could not take
    existing: int = 0               # Prospects not created as People: a Person has their email

    def describe(self) -> str:
        """`12 people updated, 3 opt-outs, 40 sequence states, 2 organisations updated, 0 errors`:
        per kind its updates (and creates, when there are any), then what else it receives."""
        extras = {"opt_outs": lambda: plural(self.opt_outs, "opt-out"),
                  "sequence_states": lambda: plural(self.sequence_states, "sequence state")}
        parts = []
        for kind in in_reading_order():
            parts.append(f"{self.updated[kind.name]} {kind.label} updated")
            if self.created[kind.name]:
                parts.append(f"{self.created[kind.name]} {kind.label} created")
            parts += [extras[name]() for name in kind.receives]
        parts.append(plural(self.errors, "error"))
        return ", ".join(parts)


@dataclass
class RunReport:
    counts: dict[str, KindCounts] = field(default_factory=lambda: {k.name: KindCounts() for k in KINDS})
    stopped: str | None = None          # why the run stopped early (time, budget, fault)
    failure: PluginError | None = None  # a transient fault that ended the run (exit 1)
    skipped: str | None = None          # the run did nothing at all, and why
    dry_run: bool = False
    received: ReceiveCounts | None = None   # set when the run has a receive half
    # stage name → {"outreach": n, "workbooks": n}: the requests each stage made (lock, state
    # prefetch and the runner's own requests are nobody's)
    stage_requests: dict[str, dict[str, int]] = field(default_factory=dict)

    def requests_line(self) -> str:
        """`receive: Outreach 3, Workbooks 22; send: Outreach 0, Workbooks 9`."""
        return "; ".join(f"{name}: Outreach {n['outreach']}, Workbooks {n['workbooks']}"
                         for name, n in self.stage_requests.items())

    def summary(self) -> str:
        if self.skipped:
            return self.skipped
        line = "; ".join(f"{k.label}: {self.counts[k.name].describe()}" for k in in_reading_order())
        if self.received is not None:
            line += f"; received: {self.received.describe()}"
        if self.dry_run:
            line = "dry run (nothing written): " + line
        if self.stopped:
            line += f" — stopped early: {self.stopped}"
        return line


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
