"""`RunContext`: what every stage of one run shares — the injected services, the settings, the
report, the clock and deadline checks, the one guard for "Outreach stopped", and the run-wide
owner directory. Per-kind state lives in the pipelines, never here."""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from ..errors import BudgetSpent, PluginError, TransientError
from ..kinds import Kind
from ..owners import OwnerDirectory
from .report import RunReport


@dataclass
class SyncSettings:
    web_url: str = "https://web.outreach.io"
    dry_run: bool = False
    page_size: int = 100
    lock_ttl_seconds: int = 900
    deadline_margin: float = 10.0
    stale_retries: int = 3
    create_people: bool = False     # the mapping's `receive.create_people` (receive/create.py)
    # kind → logical field → most characters Workbooks holds there (a `string` stand-in: 255)
    field_limits: dict[str, dict[str, int]] = field(default_factory=dict)


class RunContext:
    def __init__(self, *, workbooks, outreach, state, mappings: dict, columns: dict[str, dict[str, str]],
                 log, deadline, settings: SyncSettings, database_id: Any,
                 clock: Callable[[], dt.datetime]) -> None:
        self.wb = workbooks
        self.outreach = outreach
        self.state = state
        self.mappings = mappings           # kind name -> BoundMapping
        self.columns = columns             # kind name -> logical field -> cf_ column
        self.log = log
        self.deadline = deadline
        self.settings = settings
        self.database_id = database_id
        self.clock = clock
        self.report = RunReport(dry_run=settings.dry_run)
        self.outreach_stopped = False
        self.owners = Owners(self)
        # kind name → (id, updated_at, lock_version) of the Workbooks versions an earlier stage of
        # this run wrote and that need nothing from a later one (receive's writes, for send):
        # the send scan leaves them out like its own write-backs.
        self.own_versions: dict[str, list[tuple[int, str, int]]] = {}
        # Set by the receive stage: how the send half tells which of its own Outreach writes need
        # no reading back (`EchoRule`); None without a receive half.
        self.echoes: EchoRule | None = None

    @property
    def dry_run(self) -> bool:
        return self.settings.dry_run

    def time_is_up(self) -> bool:
        """True once the run must stop starting work (the deadline margin, or a stop already
        decided); the first time, says why in the report."""
        if self.report.stopped:
            return True
        if self.deadline.expired(self.settings.deadline_margin):
            self.report.stopped = "time limit reached; the next run carries on"
            return True
        return False

    # --- Outreach stopped --------------------------------------------------------------------------
    def stop_outreach(self, reason: str, exc: PluginError, transient: bool = False) -> None:
        if not self.outreach_stopped:
            self.log.warning(reason)
        self.outreach_stopped = True
        self.report.stopped = self.report.stopped or reason
        if transient and self.report.failure is None:
            self.report.failure = exc

    @contextmanager
    def outreach_work(self, on_stop: Callable[[str], None] | None = None) -> Iterator[None]:
        """Around any Outreach work: a spent budget or a transient fault stops Outreach work for
        the rest of the run (the budget is not a failure, a fault is: exit 1) instead of ending it,
        so what is done is still written back. `on_stop` hears the reason for the work at hand."""
        try:
            yield
        except BudgetSpent as exc:
            self.stop_outreach(f"Outreach hourly budget spent ({exc}); the next run carries on", exc)
            if on_stop:
                on_stop("Outreach hourly budget spent")
        except TransientError as exc:
            self.stop_outreach(f"Outreach is unavailable: {exc}", exc, transient=True)
            if on_stop:
                on_stop(str(exc))

    # --- small shared facts ------------------------------------------------------------------------
    def marker(self, kind: Kind, record_id: int) -> str:
        return kind.marker(self.database_id, record_id)

    def web_url(self, kind: Kind, outreach_id: int) -> str:
        return f"{self.settings.web_url.rstrip('/')}/{kind.web_path}/{outreach_id}"


class EchoRule(Protocol):
    def is_echo(self, kind: Kind, row: dict, resource: dict, snapshot, mapped: dict | None = None) -> bool:
        """Whether the Outreach record our write just produced holds nothing for receive
        (`mapped`: the row's send mapping, when the caller has it: spares mapping it again)."""

    def keep(self, kind: Kind, echoes: dict[str, str]) -> dict[str, str]:
        """The noted echoes receive may still meet (the rest are behind its cursor)."""

    def brings_back(self, kind: Kind, row: dict, resource: dict, snapshot, mapped: dict | None = None) -> bool:
        """Whether receive would write anything from this Outreach record (to `row`, linked with
        `snapshot`, or by its email address to any Person)."""

    def read_again(self, kind: Kind, ids) -> None:
        """Have receive read these Outreach records in its next run, changed or not."""


class Owners:
    """Workbooks "Assigned To" → Outreach owner, for any kind. The Outreach users are read at most
    once per run, and only when an assignee must be looked up; person and organisation queues
    are separate tables whose ids may coincide, so each kind has its own directory."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._directories: dict[str, OwnerDirectory] = {}
        self._users: list[dict] | None = None

    def resolve(self, kind: Kind, items) -> None:
        """Owner per item. An Assigned To unchanged since the last sync keeps the owner worked
        out then, so an edit to another field costs no read of the Outreach users."""
        needs_lookup = []
        for item in items:
            if item.assignee is None:
                item.owner = None
            elif item.linked and item.assignee == item.snapshot.assignee:
                item.owner = item.snapshot.owner
            else:
                needs_lookup.append(item)
        if needs_lookup:
            owners = self._directory(kind)
            for item in needs_lookup:
                item.owner = owners.owner_for(item.assignee)

    def _directory(self, kind: Kind) -> OwnerDirectory:
        if kind.name not in self._directories:
            if self._users is None:
                self._users = [] if self.ctx.outreach_stopped else self._outreach_users()
            self._directories[kind.name] = OwnerDirectory(self.ctx.wb.queues(kind.name), self._users)
        return self._directories[kind.name]

    def _outreach_users(self) -> list[dict]:
        users: list[dict] = []
        with self.ctx.outreach_work():
            users = self.ctx.outreach.list_users()
        return users
