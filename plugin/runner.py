"""The "Outreach Send/Receive" scheduled process: build the parts from the parameters, run the
engine once, print the summary last and return the exit code (DESIGN.md §3).

Order matters on a bad day: the mapping is loaded and checked before anything connects, so a bad
mapping stops the run before it writes anything (exit 2); the plugin's own installation and the
Outreach authorisation are checked before the run lock is taken.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

from . import endpoints, fields
from .connection import open_workbooks
from .deadline import Deadline
from .errors import NotInstalled, PluginError
from .http import HttpClient
from .mapping import bundled_mapping_path, load_mapping
from .oauth import OutreachAuth, client_credentials
from .outreach import OutreachClient
from .redact import Redactor
from .runtime import Log, exit_code_for, flag, load_params, number
from .kinds import KINDS, NAMES, by_name
from .history import RunRecorder
from .state import INSTALL, StateStore, run_keys
from .sync import SyncRun, SyncSettings
from .workbooks import RESOURCE_TYPES

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {
    "outreach_api_url": "https://api.outreach.io/api/v2",
    "outreach_oauth_url": "https://api.outreach.io/oauth",
    "outreach_web_url": "https://web.outreach.io",
    "mapping": "mappings/default.yaml",
    "outreach_hourly_budget": 8000,
}
# Every key a run reads, in the one request at its start (derived: a key cannot be left out).
STATE_KEYS = tuple(run_keys(KINDS))
# Seconds added to the clock the hourly Outreach budget is counted by. Never set in production:
# the benchmark (tools/bench.py) and tests simulate an hour of one-minute runs in minutes by
# moving the emulators' clocks, and the budget window has to move with them.
CLOCK_OFFSET_ENV = "OUTREACH_SYNC_CLOCK_OFFSET"
# Added to what is left of the run's deadline to make the run lock's TTL (see _lock_ttl).
LOCK_GRACE_SECONDS = 30


def main(argv: list[str] | None = None, stream: TextIO | None = None) -> int:
    # TIMEOUT counts from the moment Workbooks starts the process, so the clock starts here,
    # before the parameters and the mapping are read, not at the Workbooks login.
    deadline = run_deadline(Deadline.from_env())
    redactor = Redactor()
    log = Log(stream or sys.stdout, redactor=redactor)
    try:
        params = load_params(argv)
        log = Log(stream or sys.stdout, level=str(params.get("log_level") or "info"), redactor=redactor)
        return send_receive(params, log, redactor, deadline)
    except PluginError as exc:
        log.error(str(exc))
        return exit_code_for(exc)
    except Exception as exc:  # noqa: BLE001 - the last resort, see below
        # An answer no API documents (a 201 without an id, a paging link that is not a URL…)
        # must not end in a raw traceback: nobody redacted its text, and the log would end
        # without a verdict. The engine's own finally-blocks have already saved state and
        # released the lock; exit 1 (try again), never 2, which would disable the process.
        log.debug("".join(traceback.format_exception(exc)))
        log.error(f"the run stopped on an unexpected error ({type(exc).__name__}: {exc}); "
                  "the next run tries again")
        return 1


def run_deadline(timeout: Deadline) -> Deadline:
    """The run's own deadline: Workbooks' TIMEOUT less an exit reserve (5 %, 1–10 s). Requests
    are cut to the deadline, so a run whose last writes keep failing still exits, and is not
    killed in the middle of one, before Workbooks kills it at TIMEOUT."""
    if not timeout.limited:
        return timeout
    return timeout.ending_early(min(10.0, max(1.0, 0.05 * timeout.total)))


def send_receive(params: dict, log: Log, redactor: Redactor, deadline: Deadline | None = None) -> int:
    settings = {**DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}}
    settings.update(endpoints.outreach_urls(settings))              # https only (ParamsError → exit 2)
    tls_off = endpoints.tls_warning(params)
    if tls_off:
        log.warning(tls_off)
    dry_run = flag(settings, "dry_run", False)
    mapping = load_mapping(_mapping_path(settings["mapping"]))       # InvalidMapping → exit 2, nothing written
    for warning in getattr(mapping, "warnings", []):
        log.warning(str(warning))
    connection = open_workbooks(params, redactor, deadline=deadline)
    report = recorder = outreach = None
    try:
        wb = connection.workbooks
        state = StateStore(wb, dry_run=dry_run)
        state.prefetch(STATE_KEYS)
        install = state.get(INSTALL)
        if not isinstance(install, dict):
            raise NotInstalled("the plugin is not installed in this database: run the installer "
                               "(scripts/outreach_install.py)")
        columns = {kind: _columns(wb, kind, install, log) for kind in NAMES}
        bound = {kind: _bind(wb, mapping.objects[kind], kind, install) for kind in NAMES}

        client_id, client_secret, redirect = client_credentials(params, install)
        # Outreach's errors are redacted with Workbooks' secrets too: their text can end up on a
        # record (Outreach Error Message), which the log's redactor never sees.
        outreach_http = HttpClient("outreach", verify=endpoints.verify_tls(params),
                                   deadline=connection.deadline, secrets=connection.http.secrets)
        redactor.add_source(outreach_http.secrets)
        auth = OutreachAuth(state, outreach_http, oauth_url=settings["outreach_oauth_url"],
                            client_id=client_id, client_secret=client_secret, database=wb.database,
                            redirect_uri=redirect, log=log.write)
        hourly_budget = number(settings, "outreach_hourly_budget", 8000)
        # The run history and the Outreach budget tally: read in the prefetch, saved in one write.
        recorder = RunRecorder(state, log, hourly_budget=hourly_budget, web_url=settings["outreach_web_url"],
                               redact=redactor, clock=_budget_clock())
        auth.access_token()   # NotAuthorised (exit 2) before any work; refreshes if due
        outreach = OutreachClient(settings["outreach_api_url"], auth, outreach_http,
                                  hourly_budget=hourly_budget, budget_state=recorder.budget,
                                  clock=_budget_clock())
        if dry_run:
            log.notice("dry run: reading everything, writing nothing (Workbooks, Outreach and state)")
        run = SyncRun(workbooks=wb, outreach=outreach, state=state, mappings=bound, columns=columns,
                      log=log, deadline=connection.deadline, database_id=wb.database.get("id"),
                      settings=SyncSettings(web_url=settings["outreach_web_url"], dry_run=dry_run,
                                            create_people=mapping.receive.create_people,
                                            lock_ttl_seconds=_lock_ttl(connection.deadline),
                                            deadline_margin=_margin(connection.deadline),
                                            field_limits={kind: fields.write_limits(install, kind)
                                                          for kind in NAMES}))
        report = run.execute()
        recorder.finished(report, outreach.requests_made, exit_code_for(report.failure))
        by_stage = report.requests_line()
        log.info(f"requests: Outreach {outreach.requests_made}, Workbooks {connection.http.requests_made}"
                 + (f" ({by_stage})" if by_stage else ""))
    except PluginError as exc:
        if recorder is not None and report is None:
            # Failed before the report or past it (exit 2 mid-run): the status page must see it.
            recorder.failed(exc, outreach.requests_made if outreach else 0, exit_code_for(exc))
        raise
    finally:
        connection.close()
    if report.failure is not None:
        log.error(str(report.failure))
    log.notice(report.summary())
    return exit_code_for(report.failure)


def _budget_clock():
    try:
        offset = float(os.environ.get(CLOCK_OFFSET_ENV) or 0)
    except ValueError:
        offset = 0.0
    return (lambda: time.time() + offset) if offset else time.time


def _mapping_path(value: str) -> Path:
    return bundled_mapping_path(value)      # only the bundle's mappings/ folder (issue 16 §4)


def _columns(wb, kind: str, install: dict, log: Log) -> dict[str, str]:
    """{logical field → cf_ column} from what the installer recorded; asking Workbooks (one
    request) only when a field it must have made is not recorded, e.g. after a manual field
    rename. An optional field the installer never recorded belongs to a newer version than the
    installation: the run goes on without it, and says how to add it."""
    recorded = (install.get("fields") or {}).get(kind) or {}
    definitions = fields.definitions(kind)
    columns = {d.key: recorded[d.title] for d in definitions if recorded.get(d.title)}
    if any(not d.optional and d.key not in columns for d in definitions):
        columns = fields.resolve_columns(wb, kind, recorded=recorded)
    missing = fields.missing_optional(kind, columns)
    if missing:
        log.warning(f"{by_name(kind).words} lack the field(s) {', '.join(repr(t) for t in missing)} of this "
                    "version: run the installer again to add them (until then, what they hold is not received)")
    return columns


def _bind(wb, object_mapping, kind: str, install: dict):
    titles = {title: column for title, column in ((install.get("fields") or {}).get(kind) or {}).items()}
    wanted = object_mapping.custom_field_titles - set(titles)
    if wanted:
        for row in wb.custom_fields(RESOURCE_TYPES[kind]):
            if row.get("title") and (row.get("value_column_name") or row.get("name")):
                titles.setdefault(row["title"], row.get("value_column_name") or row.get("name"))
    return object_mapping.bind(titles)


def _lock_ttl(deadline) -> int:
    """The run lock's TTL: the moment its holder is provably gone, so that a lock a run could not
    release (plugin.state retries the release while the deadline allows) blocks no run after that.
    A run sends nothing past its deadline (plugin.http clips every request to it, and Workbooks
    kills the process at TIMEOUT, later still), and the lock is stamped after this is computed,
    with less time left: so what is left now, plus a grace for a request given up on at the
    deadline that the server is still finishing, and for Workbooks' whole-second stamps. Without
    a time limit nothing is provable: 15 minutes."""
    if not deadline.limited:
        return 900
    return int(math.ceil(deadline.remaining())) + LOCK_GRACE_SECONDS


def _margin(deadline) -> float:
    if not deadline.limited:
        return 0.0
    return max(3.0, min(30.0, deadline.total * 0.1))
