"""One run of "Outreach Send/Receive": the frame every direction runs in.

    idle probe (lock-free) → take the run lock → read the stages' state again → each stage in
    order, until the time is up → each stage's finish → release the lock

A transient fault anywhere ends the run as a failure (exit 1) after the stages have finished and
the lock is released; what was done stays done. A direction is a stage (send: sync/send/); the
frame knows nothing of what a stage does.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Callable, Protocol

from ..errors import PluginError, TransientError
from .context import RunContext, SyncSettings
from .report import RunReport
from .receive.stage import ReceiveStage
from .send.pipeline import SendStage


class Stage(Protocol):
    name: str       # "receive", "send": the report's per-stage request counts

    def state_keys(self) -> list[str]: ...
    def has_work(self) -> bool: ...
    def run(self) -> None: ...
    def finish(self) -> None: ...


class SyncRun:
    def __init__(self, *, workbooks, outreach, state, mappings: dict, columns: dict[str, dict[str, str]],
                 log, deadline, settings: SyncSettings | None = None, database_id: Any = 0,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.ctx = RunContext(workbooks=workbooks, outreach=outreach, state=state, mappings=mappings,
                              columns=columns, log=log, deadline=deadline, settings=settings or SyncSettings(),
                              database_id=database_id,
                              clock=clock or (lambda: dt.datetime.now(dt.timezone.utc)))
        # Receive first: see sync/receive/stage.py for why.
        self.stages: list[Stage] = [ReceiveStage(self.ctx), SendStage(self.ctx)]
        self._run_id = uuid.uuid4().hex[:12]

    @property
    def report(self) -> RunReport:
        return self.ctx.report

    def execute(self) -> RunReport:
        ctx, report = self.ctx, self.ctx.report
        try:
            if not any(self._counted(stage, stage.has_work) for stage in self.stages):
                report.skipped = "nothing to sync: " + report.summary()
                return report
            if not ctx.dry_run:
                try:
                    acquired = ctx.state.acquire_lock(self._run_id, ctx.settings.lock_ttl_seconds)
                except TransientError:
                    # The answer was lost, so the lock may be ours after all: free it now rather
                    # than leave it to block every run until its TTL.
                    self._release_lock()
                    raise
                if not acquired:
                    report.skipped = ("another Outreach Send/Receive run is in progress "
                                      "(it holds the run lock); this run did nothing")
                    return report
            try:
                if not ctx.dry_run:
                    # A run that held the lock until a moment ago may have moved the stages' state.
                    # (Inside the try: a failure here must release the lock too.)
                    ctx.state.prefetch([key for stage in self.stages for key in stage.state_keys()])
                for stage in self.stages:
                    # Every stage runs unless the time is up: one that finds Outreach stopped still
                    # counts what it leaves for the next run.
                    if ctx.deadline.expired(ctx.settings.deadline_margin):
                        ctx.time_is_up()
                        break
                    self._counted(stage, stage.run)
            finally:
                for stage in self.stages:
                    self._counted(stage, stage.finish)
                if not ctx.dry_run:
                    self._release_lock()
        except TransientError as exc:
            report.failure = exc
            report.stopped = report.stopped or str(exc)
        return report

    def _counted(self, stage: Stage, step):
        """`step()`, its requests added to the stage's count in the report."""
        before = self._requests()
        try:
            return step()
        finally:
            after = self._requests()
            spent = self.ctx.report.stage_requests.setdefault(stage.name, {"outreach": 0, "workbooks": 0})
            spent["outreach"] += after[0] - before[0]
            spent["workbooks"] += after[1] - before[1]

    def _requests(self) -> tuple[int, int]:
        http = getattr(self.ctx.wb, "http", None)
        return int(getattr(self.ctx.outreach, "requests_made", 0)), int(getattr(http, "requests_made", 0))

    def _release_lock(self) -> None:
        try:
            self.ctx.state.release_lock(self._run_id)
        except PluginError as exc:
            # Any failure (an unexpected answer too): the lock expires by itself, the next run
            # waits at most its TTL, and the run's own outcome must not be replaced by this one.
            self.ctx.log.warning(f"could not release the run lock ({exc}); it expires on its own")
