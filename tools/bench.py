"""Performance benchmark of "Outreach Send/Receive": API-call economy, speed and memory, measured
by running the real plugin against the two emulators (issue 8; DESIGN.md §9).

    python -m tools.bench [--scenario NAME ...] [--latency-ms 20] [--json FILE] [--quick]
                          [--timeout 300] [--in-process]

Every request to either emulator is delayed by `--latency-ms` (a fault rule with `latency` and
`count: null` on every path, added after the set-up), so wall time reflects what a real network
would cost. The plugin runs as a SUBPROCESS (`scripts/outreach_send_receive.py`), as Workbooks runs
it, with env TIMEOUT=`--timeout` (the manifest's max run time); each run is reaped with
`os.wait4`, which gives that process's own CPU time and peak RSS (the emulators live in this
process and are not counted). `--in-process` runs the runner inside this process instead
(faster start-up; CPU and RSS are then not measured) — the tests use it.

Scenarios (full size; `--quick` divides the data by ten):
  backlog  10,000 new People, 2,000 Organisations, 20 owners, all flagged at once; runs follow each
           other (one per minute) until the backlog is done. The Outreach rate limit and the
           plugin's budget are lifted here: this measures economy; `pacing` measures the limit.
  echo     the run right after the full sync (only our own write-backs touched the records).
  steady   the next run: nothing changed.
  trickle  1% of People edited (job title, one mapped field each) between two runs; every PATCH
           body is captured to check it carries only the changed attribute.
  received what reps do in Outreach, between two runs: 10% of Prospects' job titles edited, 1% of
           Prospects opting out, 5% added to a sequence (the receive half; `receive` requests
           per received record), then the run after it (nothing may echo back).
  scale    100,000 People stored in Workbooks of which 10,000 qualify (+ the 2,000 Organisations):
           its peak RSS is compared with backlog's (10,000 stored) to show memory stays flat.
  pacing   the backlog data again with Outreach's limit at 10,000/hour and the plugin's budget at
           its default (8,000): one-minute runs on a simulated clock until done; no 429 allowed;
           the finish is compared with the budget-bound minimum (below). After the first run has
           spent the hour's budget, a Prospect opts out in Outreach: the number of runs until its
           Person has No Email ticked is the opt-out latency (the send half keeps a reserve of the
           budget for the receive half, so a backlog never starves an opt-out).
echo, steady and trickle continue backlog's database, so asking for one of them runs backlog first
(reported only when asked for).

Measured per scenario: Outreach requests by kind (lookup = GET prospects/accounts collections,
create = POST, update = PATCH, users = GET users, receive = the receive half's polls of its change
feeds and its sequence reads, oauth = /oauth/*), Workbooks requests by kind
(read = GET, write = PUT/POST/DELETE of API routes, login = login.api), each per record; wall
time; client CPU (user + system of the plugin process) per record; peak RSS of the plugin
process; and the ratio against a naive baseline (`naive_counts`): a plugin that sends one lookup
and one create per new record, writes each created record back with one request, reads users
once and pages its Workbooks reads at 100, and cannot tell its own write-backs from edits (so the
run after a full sync PATCHes every record). The ratio is naive / ours: how many times fewer
requests the plugin makes.

Pacing clock: the emulators' clocks are real time plus an offset. After each run the benchmark
moves both forward to the next whole minute of the schedule (a run that took 3 minutes is
followed by the next one at the minute it ends in, as Workbooks starts one run at a time), and
passes the same offset to the plugin in env OUTREACH_SYNC_CLOCK_OFFSET, which shifts the clock its
hourly budget is counted by (plugin/runner.py). Budget-bound minimum: with N Outreach requests
needed and B = min(budget, limit - 50) allowed per hour, the last hour's work cannot start before
(ceil(N/B) - 1) hours after the first request, and takes (N - (ceil(N/B) - 1) * B) requests at
the plugin's own measured speed; the target is to finish within 5% of that.

Output: a table of counts and one of per-record figures, the targets met or missed, and with
`--json FILE` everything as JSON (machine description included). Times, CPU and memory are
printed, never asserted; tests/test_bench.py asserts the request counts.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "outreach_send_receive.py"
CLOCK_OFFSET_ENV = "OUTREACH_SYNC_CLOCK_OFFSET"       # read by plugin/runner.py
SCENARIOS = ("backlog", "echo", "steady", "trickle", "received", "scale", "pacing")
CHAINED = ("echo", "steady", "trickle", "received")   # continue backlog's database
UNLIMITED = 10_000_000                                 # "no limit" for the economy scenarios
REMAINING_SAFETY = 50                                  # plugin/outreach.py keeps this many spare
HOUR = 3600


# --- sizes -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    people: int = 10_000
    organisations: int = 2_000
    owners: int = 20
    trickle_every: int = 100              # 1% of People edited
    scale_people: int = 100_000
    scale_qualify_every: int = 10         # 10,000 of 100,000 qualify
    pacing_limit: int = 10_000            # Outreach's requests per user per hour
    pacing_budget: int = 8_000            # the plugin's default outreach_hourly_budget


FULL = Sizes()
QUICK = Sizes(people=1_000, organisations=200, scale_people=10_000, pacing_limit=1_000, pacing_budget=800)


# --- recording what the emulators see ----------------------------------------------------------------

class Recorder:
    """WSGI middleware in front of an emulator: the status of every API answer (so a 429 cannot go
    unnoticed) and the JSON body of every PATCH (what the trickle run sent). Installed as the
    server's app, so neither emulator needs to know about it."""

    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.patches: list[dict] = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/"):
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "PATCH":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            self._note_patch(path, body)

        def recording(status, headers, exc_info=None):
            with self.lock:
                self.statuses[int(str(status).split()[0])] += 1
            return start_response(status, headers, exc_info)

        return self.app(environ, recording)

    def _note_patch(self, path: str, body: bytes) -> None:
        try:
            data = (json.loads(body or b"{}") or {}).get("data") or {}
        except ValueError:
            data = {}
        with self.lock:
            self.patches.append({"path": path, "attributes": sorted((data.get("attributes") or {})),
                                 "relationships": sorted((data.get("relationships") or {}))})


def outreach_kind(key: str) -> str:
    """An emulator counter key ("GET /api/v2/prospects?filter[emails]&page[size]": the method, the
    path and the query's parameter names) → the benchmark's request kind. `receive`: the receive
    half's reads (its change feeds are the only sorted reads; sequences and their states)."""
    method, rest = key.split(" ", 1)
    path, _, names = rest.partition("?")
    if path.startswith("/oauth/"):
        return "oauth"
    if method == "GET" and (re.fullmatch(r"/api/v2/(sequences|sequenceStates)(/.*)?", path)
                            or "sort" in names.split("&")):
        return "receive"
    if method == "GET" and re.fullmatch(r"/api/v2/(prospects|accounts)/?", path):
        return "lookup"
    if method == "GET" and re.fullmatch(r"/api/v2/users/?", path):
        return "users"
    if method == "POST" and re.fullmatch(r"/api/v2/(prospects|accounts)/?", path):
        return "create"
    if method == "PATCH":
        return "update"
    return "other"


def workbooks_kind(key: str) -> str:
    method, path = key.split(" ", 1)
    if path.startswith("/login"):
        return "login"
    if path.startswith("/logout"):
        return "other"
    return "read" if method == "GET" else "write"


OUTREACH_KINDS = ("lookup", "create", "update", "users", "receive", "oauth", "other")
WORKBOOKS_KINDS = ("read", "write", "login", "other")


def by_kind(counts: dict[str, int], classify: Callable[[str], str], kinds: Iterable[str]) -> dict[str, int]:
    out = {k: 0 for k in kinds}
    for key, n in counts.items():
        out[classify(key)] = out.get(classify(key), 0) + n
    out["total"] = sum(counts.values())
    return out


# --- one run of the plugin ---------------------------------------------------------------------------

@dataclass
class RunStats:
    code: int
    output: str
    wall: float                          # real seconds
    cpu: float | None                    # user + system seconds of the plugin process
    maxrss_kb: int | None                # its peak resident set
    outreach: dict[str, int]             # counter key -> requests during the run
    workbooks: dict[str, int]
    outreach_statuses: dict[int, int]
    sim_start: float = 0.0               # emulator clock (epoch) when the run started
    sim_end: float = 0.0

    @property
    def summary(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def stopped_early(self) -> bool:
        return "stopped early" in self.summary

    @property
    def outreach_api_requests(self) -> int:
        return sum(n for k, n in self.outreach.items() if outreach_kind(k) != "oauth")

    @property
    def outreach_send_requests(self) -> int:
        """What the send half spent (the receive half's polls and the token aside)."""
        return sum(n for k, n in self.outreach.items() if outreach_kind(k) not in ("oauth", "receive"))


# The plugin's own peak RSS. ru_maxrss from wait4 cannot be used: Linux carries the parent's
# high-water mark into a child that was (v)forked from it and then exec'd, so every run would
# "peak" at the size of this process, emulators and all. VmHWM in /proc/self/status belongs to the
# address space created by exec, i.e. to the plugin alone; this bootstrap saves it at exit and then
# runs the script exactly as `python scripts/outreach_send_receive.py ...` would.
_BOOT = """\
import atexit, runpy, sys
_out = sys.argv[1]
def _save_status():
    try:
        with open('/proc/self/status') as src, open(_out, 'w') as dst:
            dst.write(src.read())
    except OSError:
        pass
atexit.register(_save_status)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _peak_rss_kb(status_file: Path) -> int | None:
    try:
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def startup_cpu(repeat: int = 3) -> float:
    """CPU seconds a bare start of the plugin costs (interpreter + imports), so the per-record
    figure can be read net of it; the smallest of a few tries."""
    best = math.inf
    for _ in range(repeat):
        proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                                 "import plugin.runner"], cwd=ROOT)
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        best = min(best, usage.ru_utime + usage.ru_stime)
    return best


def _counter_delta(after: dict, before: dict) -> dict:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


class World:
    """Both emulators on loopback, one Workbooks database with the plugin installed and Outreach
    authorised (the real installer and authorisation flow), and a way to run the plugin."""

    def __init__(self, workdir: Path, *, latency_ms: float = 20.0, outreach_config: dict | None = None,
                 in_process: bool = False, timeout: float | None = 300) -> None:
        from tests.sync_harness import Sandbox
        from tools.emulators.core import ServerHandle
        from tools.emulators.outreach import OutreachEmulator
        from tools.emulators.workbooks import WorkbooksEmulator

        self.workdir = workdir
        self.in_process = in_process
        self.timeout = timeout
        self.wb_server = ServerHandle(WorkbooksEmulator())
        self.or_server = ServerHandle(OutreachEmulator(**(outreach_config or {})))
        self.wb_rec, self.or_rec = Recorder(self.wb_server.app), Recorder(self.or_server.app)
        self.wb_server._server.app = self.wb_rec      # werkzeug calls server.app per request
        self.or_server._server.app = self.or_rec
        self.wb_server.start()
        self.or_server.start()
        self.wb, self.outreach = self.wb_server.app, self.or_server.app
        self.sandbox = Sandbox(self.wb_server, self.or_server, workdir).ready()
        self.params: dict[str, Any] = {}
        self.latency_ms = latency_ms
        if latency_ms:
            # After the set-up, so installing and authorising stay quick; on every path of both.
            for app in (self.wb, self.outreach):
                app.add_fault(latency=latency_ms / 1000.0, count=None)
        self._n = 0

    def close(self) -> None:
        for server in (self.wb_server, self.or_server):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - closing down; nothing to save
                pass

    # --- data ------------------------------------------------------------------------------------
    def col(self, kind: str, key: str) -> str:
        return self.sandbox.col(kind, key)

    def seed(self, *, people: int, organisations: int, owners: int, qualify_every: int = 1,
             orgs_qualify: bool = True) -> dict:
        """Owners (Workbooks users matched by an Outreach user of the same email), Organisations and
        People, with realistic mapped fields; every `qualify_every`-th Person is flagged."""
        queues = []
        for n in range(owners):
            email = f"rep{n}@corp.example"
            user = self.wb.add_user(email, f"Rep {n}")
            self.outreach.add_user(email, email, f"Rep{n}", "Seller")
            queues.append(user["person_queue_id"])
        org_sync = self.col("organisation", "sync")
        orgs = [self.wb.insert("organisations", {
            "name": f"Company {n} Ltd", "website": f"https://company{n}.example", "industry": "Software",
            "main_location[town]": "Leeds", org_sync: orgs_qualify})["id"] for n in range(organisations)]
        person_sync = self.col("person", "sync")
        ids, flagged = [], []
        for n in range(people):
            qualifies = n % qualify_every == 0
            record = self.wb.insert("people", {
                "person_first_name": f"First{n}", "person_last_name": f"Last{n}", "name": f"First{n} Last{n}",
                "person_job_title": "Buyer", "main_location[email]": f"person{n}@company{n % max(1, organisations)}.example",
                "main_location[telephone]": f"+44 113 {n:06d}", "main_location[town]": "Leeds",
                "main_location[country]": "United Kingdom",
                "employer_link": orgs[n % len(orgs)] if orgs else None,
                "assigned_to": queues[n % len(queues)] if queues else None, person_sync: qualifies})
            ids.append(record["id"])
            if qualifies:
                flagged.append(record["id"])
        return {"people": ids, "flagged_people": flagged, "organisations": orgs}

    def backlog_left(self) -> int:
        """Qualifying records that have no Outreach Id yet (and are not flagged as a duplicate or an
        error): what a complete catch-up leaves at 0."""
        left = 0
        for kind, table in (("person", "people"), ("organisation", "organisations")):
            sync, err, dup, oid = (self.col(kind, k) for k in ("sync", "sync_error", "duplicate", "outreach_id"))
            left += sum(1 for r in self.wb.records(table)
                        if r.get(sync) and not r.get(err) and not r.get(dup) and not str(r.get(oid) or "").strip())
        return left

    # --- clocks ----------------------------------------------------------------------------------
    def sim_now(self) -> float:
        return self.outreach.now().timestamp()

    def clock_offset(self) -> float:
        """Emulator time minus real time (both emulators are moved together)."""
        return self.sim_now() - time.time()

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            for app in (self.wb, self.outreach):
                with app.lock:
                    app.clock.advance(seconds)

    # --- running the plugin ----------------------------------------------------------------------
    def run(self, **extra_params) -> RunStats:
        self._n += 1
        params = self.sandbox.params(**{**self.params, **extra_params})
        path = self.workdir / f"run-{self._n}.json"
        path.write_text(json.dumps(params), encoding="utf-8")
        env = {CLOCK_OFFSET_ENV: repr(self.clock_offset())}
        if self.timeout:
            env["TIMEOUT"] = str(int(self.timeout))
        before_or, before_wb = dict(self.outreach.counts_by_query), dict(self.wb.counts)
        before_st = dict(self.or_rec.statuses)
        sim_start = self.sim_now()
        if self.in_process:
            code, output, wall, cpu, rss = self._run_in_process(path, env)
        else:
            code, output, wall, cpu, rss = self._run_subprocess(path, env)
        return RunStats(code=code, output=output, wall=wall, cpu=cpu, maxrss_kb=rss,
                        outreach=_counter_delta(dict(self.outreach.counts_by_query), before_or),
                        workbooks=_counter_delta(dict(self.wb.counts), before_wb),
                        outreach_statuses=_counter_delta(dict(self.or_rec.statuses), before_st),
                        sim_start=sim_start, sim_end=self.sim_now())

    def _run_subprocess(self, params_path: Path, extra_env: dict) -> tuple:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
        env.update(extra_env)
        log = self.workdir / f"run-{self._n}.log"
        status_file = self.workdir / f"run-{self._n}.status"
        limit = (self.timeout or 3600) + 120
        with open(log, "w+", encoding="utf-8") as out:
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(status_file), str(SCRIPT),
                                     "--params", str(params_path)],
                                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            # wait4 reaps this very child and returns its own rusage: the CPU time of the plugin
            # alone, not of the emulators in this process nor of earlier runs.
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > limit:
                    proc.kill()
                time.sleep(0.002)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            output = out.read()
        return proc.returncode, output, wall, usage.ru_utime + usage.ru_stime, _peak_rss_kb(status_file)

    def _run_in_process(self, params_path: Path, extra_env: dict) -> tuple:
        from plugin import runner
        out = io.StringIO()
        saved = {k: os.environ.get(k) for k in extra_env}
        os.environ.update(extra_env)
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out):
                code = runner.main(["--params", str(params_path)])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return code, out.getvalue(), time.perf_counter() - start, None, None

    def run_until_done(self, *, max_runs: int = 50, on_run: Callable[[RunStats], None] | None = None) -> list[RunStats]:
        """One run per scheduled minute until a run finishes without stopping early."""
        runs: list[RunStats] = []
        for _ in range(max_runs):
            stats = self.run()
            runs.append(stats)
            if on_run:
                on_run(stats)
            if stats.code != 0 or not stats.stopped_early:
                break
            self.next_minute(stats)
        return runs

    def next_minute(self, stats: RunStats, origin: float | None = None) -> None:
        """Move both clocks to the next scheduled minute after the run (Workbooks starts the
        process every minute, one run at a time)."""
        origin = stats.sim_start if origin is None else origin
        elapsed = self.sim_now() - origin
        target = origin + 60 * max(1, math.ceil(elapsed / 60))
        self.advance(target - self.sim_now())


# --- aggregation -------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    records: int                                   # the per-record denominator
    runs: list[RunStats]
    note: str = ""
    extra: dict = field(default_factory=dict)

    def outreach(self) -> dict[str, int]:
        total: collections.Counter = collections.Counter()
        for run in self.runs:
            total.update(run.outreach)
        return by_kind(total, outreach_kind, OUTREACH_KINDS)

    def workbooks(self) -> dict[str, int]:
        total: collections.Counter = collections.Counter()
        for run in self.runs:
            total.update(run.workbooks)
        return by_kind(total, workbooks_kind, WORKBOOKS_KINDS)

    def raw(self, side: str) -> dict[str, int]:
        total: collections.Counter = collections.Counter()
        for run in self.runs:
            total.update(getattr(run, side))
        return dict(sorted(total.items()))

    def problems(self) -> dict:
        """Warnings and errors the plugin logged (a write-back Workbooks refused shows here
        before it shows as a record left over)."""
        lines = [line for run in self.runs for line in run.output.splitlines()
                 if line.startswith(("[warning]", "[error]"))]
        return {"count": len(lines), "examples": lines[:3]}

    def statuses(self) -> dict[int, int]:
        total: collections.Counter = collections.Counter()
        for run in self.runs:
            total.update(run.outreach_statuses)
        return dict(total)

    @property
    def wall(self) -> float:
        return sum(r.wall for r in self.runs)

    @property
    def cpu(self) -> float | None:
        values = [r.cpu for r in self.runs]
        return None if any(v is None for v in values) else sum(values)

    @property
    def peak_rss_mb(self) -> float | None:
        values = [r.maxrss_kb for r in self.runs]
        return None if not values or any(v is None for v in values) else max(values) / 1024.0

    def as_dict(self, naive: dict | None, startup: float | None = None) -> dict:
        outreach, workbooks = self.outreach(), self.workbooks()
        net = None
        if self.cpu is not None and self.records and startup is not None:
            net = max(0.0, self.cpu - startup * len(self.runs)) * 1000 / self.records
        per = (lambda n: n / self.records) if self.records else (lambda n: None)
        data = {
            "records": self.records, "runs": len(self.runs), "exit_codes": [r.code for r in self.runs],
            "outreach": outreach, "outreach_per_record": {k: per(v) for k, v in outreach.items()},
            "outreach_api_total": outreach["total"] - outreach["oauth"],
            "outreach_send_total": outreach["total"] - outreach["oauth"] - outreach["receive"],
            "workbooks": workbooks, "workbooks_per_record": {k: per(v) for k, v in workbooks.items()},
            "outreach_requests": self.raw("outreach"), "workbooks_requests": self.raw("workbooks"),
            "outreach_statuses": {str(k): v for k, v in sorted(self.statuses().items())},
            "wall_seconds": self.wall, "cpu_seconds": self.cpu,
            "cpu_ms_per_record": (self.cpu * 1000 / self.records) if self.cpu is not None and self.records else None,
            "cpu_ms_per_record_net_of_startup": net,
            "peak_rss_mb": self.peak_rss_mb, "summaries": [r.summary for r in self.runs], "note": self.note,
            "log_problems": self.problems(),
        }
        if naive is not None:
            ours_or, ours_wb = data["outreach_api_total"], workbooks["total"]
            data["naive"] = naive
            data["ratio_vs_naive"] = {
                "outreach": (naive["outreach"] / ours_or) if ours_or else None,
                "workbooks": (naive["workbooks"] / ours_wb) if ours_wb else None}
        data.update(self.extra)
        return data


def naive_counts(scenario: str, *, people: int, organisations: int, changed: int = 0) -> dict:
    """Requests of the naive baseline (see the module docstring), simulated from the record counts.
    Reads: one request per 100 qualifying records per kind plus the final empty page, and one login."""
    def reads(n: int) -> int:
        return n // 100 + 1
    base_wb = reads(people) + reads(organisations) + 1
    if scenario in ("backlog", "scale"):
        created = people + organisations
        return {"outreach": 2 * created + 1, "workbooks": base_wb + created,
                "model": "1 lookup + 1 create + 1 write-back per record; users once; reads paged at 100"}
    if scenario == "echo":
        # Every write-back moved updated_at past the naive watermark: each record comes back as
        # "changed" and is PATCHed once (no write-back after a PATCH, so it settles after this).
        return {"outreach": people + organisations, "workbooks": base_wb,
                "model": "every record written back last run is PATCHed once"}
    if scenario == "steady":
        return {"outreach": 0, "workbooks": reads(0) * 2 + 1, "model": "one empty read per kind"}
    if scenario == "trickle":
        return {"outreach": changed, "workbooks": reads(changed) + reads(0) + 1,
                "model": "1 PATCH (all mapped attributes) per edited record"}
    raise ValueError(scenario)


# --- the scenarios -----------------------------------------------------------------------------------

class Bench:
    def __init__(self, sizes: Sizes, *, latency_ms: float = 20.0, timeout: float | None = 300,
                 in_process: bool = False, workdir: Path | None = None, log: Callable[[str], None] = print) -> None:
        self.sizes = sizes
        self.latency_ms = latency_ms
        self.timeout = timeout
        self.in_process = in_process
        self.log = log
        self._own_tmp = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-")) if workdir is None else workdir
        self.results: dict[str, dict] = {}
        self.scenarios: dict[str, Scenario] = {}
        self._main: World | None = None
        self._main_seed: dict | None = None
        self.startup_cpu: float | None = None if in_process else startup_cpu()

    def close(self) -> None:
        if self._main is not None:
            self._main.close()
            self._main = None
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _world(self, name: str, **kw) -> World:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return World(path, latency_ms=self.latency_ms, in_process=self.in_process, timeout=self.timeout, **kw)

    def _progress(self, label: str) -> Callable[[RunStats], None]:
        def note(stats: RunStats) -> None:
            self.log(f"  {label}: run exit {stats.code}, {stats.wall:.1f}s, Outreach "
                     f"{stats.outreach_api_requests}, Workbooks {sum(stats.workbooks.values())} — {stats.summary[:150]}")
        return note

    def run(self, names: Iterable[str]) -> dict:
        wanted = [n for n in SCENARIOS if n in set(names)]
        for name in wanted:
            self.log(f"scenario {name} ...")
            getattr(self, f"scenario_{name}")()
        return self.report(wanted)

    # backlog → echo → steady → trickle share one database
    def _economy_world(self) -> tuple[World, dict]:
        if self._main is None:
            s = self.sizes
            world = self._world("main", outreach_config={"rate_limit_per_hour": UNLIMITED})
            world.params = {"outreach_hourly_budget": UNLIMITED}
            seed = world.seed(people=s.people, organisations=s.organisations, owners=s.owners)
            world.outreach.reset_counts()
            world.wb.reset_counts()
            self._main, self._main_seed = world, seed
        return self._main, self._main_seed

    def scenario_backlog(self) -> Scenario:
        if "backlog" in self.scenarios:
            return self.scenarios["backlog"]
        world, seed = self._economy_world()
        before = len(world.outreach.records("prospects")) + len(world.outreach.records("accounts"))
        runs = world.run_until_done(on_run=self._progress("backlog"))
        created = len(world.outreach.records("prospects")) + len(world.outreach.records("accounts")) - before
        scenario = Scenario("backlog", created, runs,
                            note=f"{self.sizes.people:,} People + {self.sizes.organisations:,} Organisations, "
                                 f"{self.sizes.owners} owners; rate limit and budget lifted",
                            extra={"backlog_left": world.backlog_left(), "created": created})
        self._store(scenario, naive_counts("backlog", people=self.sizes.people, organisations=self.sizes.organisations))
        world.next_minute(runs[-1])
        return scenario

    def scenario_echo(self) -> Scenario:
        if "echo" in self.scenarios:
            return self.scenarios["echo"]
        self.scenario_backlog()
        world, _ = self._economy_world()
        stats = world.run()
        self._progress("echo")(stats)
        scenario = Scenario("echo", 0, [stats], note="the run right after the full sync")
        self._store(scenario, naive_counts("echo", people=self.sizes.people, organisations=self.sizes.organisations))
        world.next_minute(stats)
        return scenario

    def scenario_steady(self) -> Scenario:
        if "steady" in self.scenarios:
            return self.scenarios["steady"]
        self.scenario_echo()
        world, _ = self._economy_world()
        stats = world.run()
        self._progress("steady")(stats)
        scenario = Scenario("steady", 0, [stats], note="nothing changed")
        self._store(scenario, naive_counts("steady", people=self.sizes.people, organisations=self.sizes.organisations))
        world.next_minute(stats)
        return scenario

    def scenario_trickle(self) -> Scenario:
        if "trickle" in self.scenarios:
            return self.scenarios["trickle"]
        self.scenario_steady()
        world, seed = self._economy_world()
        edited = seed["people"][::self.sizes.trickle_every]
        for n, pid in enumerate(edited):
            world.wb.edit("people", pid, {"person_job_title": f"Head of Things {n}"})
        world.or_rec.patches.clear()
        stats = world.run()
        self._progress("trickle")(stats)
        patches = list(world.or_rec.patches)
        only_title = sum(1 for p in patches if p["attributes"] == ["title"] and not p["relationships"])
        scenario = Scenario("trickle", len(edited), [stats], note="1% of People: job title edited",
                            extra={"edited": len(edited), "patches": len(patches),
                                   "patches_only_changed_attribute": only_title,
                                   "patched_attributes": sorted({a for p in patches for a in p["attributes"]}),
                                   "patched_relationships": sorted({a for p in patches for a in p["relationships"]})})
        self._store(scenario, naive_counts("trickle", people=self.sizes.people, organisations=self.sizes.organisations,
                                           changed=len(edited)))
        return scenario

    def scenario_received(self) -> Scenario:
        if "received" in self.scenarios:
            return self.scenarios["received"]
        self.scenario_trickle()
        world, seed = self._economy_world()
        column = world.col("person", "outreach_id")
        linked = [(pid, int(world.wb.record("people", pid)[column])) for pid in seed["people"]
                  if world.wb.record("people", pid).get(column)]
        titled, opted, enrolled = linked[::10], linked[5::100], linked[3::20]
        world.outreach.activity(
            [{"do": "edit", "kind": "prospects", "id": oid, "attributes": {"title": "Director of Things"}} for _, oid in titled]
            + [{"do": "opt_out", "prospect": oid, "channel": "email"} for _, oid in opted]
            + [{"do": "add_to_sequence", "prospect": oid, "sequence": "Bench sequence"} for _, oid in enrolled])
        world.next_minute(self.scenarios["trickle"].runs[-1])
        stats = world.run()
        self._progress("received")(stats)
        world.next_minute(stats)
        after = world.run()
        self._progress("received, the run after")(after)
        no_email = sum(1 for pid, _ in opted if world.wb.record("people", pid).get("no_email_soliciting") is True)
        title_ok = sum(1 for pid, _ in titled if world.wb.record("people", pid).get("person_job_title") == "Director of Things")
        state_col = world.col("person", "sequence_state")
        states_ok = sum(1 for pid, _ in enrolled if world.wb.record("people", pid).get(state_col))
        records = len(titled) + len(opted) + len(enrolled)
        scenario = Scenario("received", records, [stats], note="reps' edits, opt-outs and sequence enrolments",
                            extra={"titles": len(titled), "opt_outs": len(opted), "enrolled": len(enrolled),
                                   "titles_received": title_ok, "opt_outs_received": no_email,
                                   "states_received": states_ok,
                                   "after_outreach_sent": after.outreach_send_requests,
                                   "after_workbooks_record_writes": sum(
                                       n for k, n in after.workbooks.items() if k.startswith("PUT /crm/")),
                                   "after_exit_code": after.code})
        self._store(scenario, None)
        return scenario

    def scenario_scale(self) -> Scenario:
        s = self.sizes
        world = self._world("scale", outreach_config={"rate_limit_per_hour": UNLIMITED})
        try:
            world.params = {"outreach_hourly_budget": UNLIMITED}
            seed = world.seed(people=s.scale_people, organisations=s.organisations, owners=s.owners,
                              qualify_every=s.scale_qualify_every)
            world.outreach.reset_counts()
            world.wb.reset_counts()
            runs = world.run_until_done(on_run=self._progress("scale"))
            created = len(world.outreach.records("prospects")) + len(world.outreach.records("accounts"))
            qualifying = len(seed["flagged_people"])
            scenario = Scenario("scale", created, runs,
                                note=f"{s.scale_people:,} People stored, {qualifying:,} qualify; "
                                     f"+ {s.organisations:,} Organisations",
                                extra={"stored_people": s.scale_people, "qualifying_people": qualifying,
                                       "backlog_left": world.backlog_left(), "created": created})
            self._store(scenario, naive_counts("scale", people=qualifying, organisations=s.organisations))
            return scenario
        finally:
            world.close()

    def scenario_pacing(self) -> Scenario:
        s = self.sizes
        world = self._world("pacing", outreach_config={"rate_limit_per_hour": s.pacing_limit})
        try:
            world.params = {"outreach_hourly_budget": s.pacing_budget}
            world.seed(people=s.people, organisations=s.organisations, owners=s.owners)
            world.outreach.reset_counts()
            world.wb.reset_counts()
            scenario = self._pace(world)
            self._store(scenario, None)
            return scenario
        finally:
            world.close()

    def _pace(self, world: World) -> Scenario:
        s = self.sizes
        origin = world.sim_now()
        runs: list[RunStats] = []
        expected_hours = 2 + (s.people + s.organisations) * 1.1 / min(s.pacing_budget, s.pacing_limit)
        max_runs = int(expected_hours * 60) + 30
        quiet_note = self._progress("pacing")
        idle = 0
        opt_out: dict[str, Any] = {}
        for _ in range(max_runs):
            stats = world.run()
            runs.append(stats)
            self._follow_opt_out(world, opt_out, len(runs))
            if stats.outreach_send_requests or stats.code != 0:
                quiet_note(stats)
                idle = 0
            else:
                idle += 1
                if idle % 15 == 0:
                    self.log(f"  pacing: {idle} runs in a row with no Outreach request (budget spent), "
                             f"simulated +{(world.sim_now() - origin) / 60:.0f} min")
            if stats.code != 0 and stats.code != 1:
                break
            if stats.code == 0 and not stats.stopped_early and world.backlog_left() == 0:
                break
            world.next_minute(stats, origin)
        working = [r for r in runs if r.outreach_send_requests]
        n = sum(r.outreach_api_requests for r in runs)
        allowed = min(s.pacing_budget, s.pacing_limit - REMAINING_SAFETY)
        windows = max(1, math.ceil(n / allowed))
        last_part = n - (windows - 1) * allowed
        seconds_per_request = sum(r.wall for r in working) / n if n else 0.0
        start = working[0].sim_start if working else origin
        finish = working[-1].sim_end if working else origin
        minimum = (windows - 1) * HOUR + last_part * seconds_per_request
        actual = finish - start
        too_many = sum(r.outreach_statuses.get(429, 0) for r in runs)
        per_hour = collections.Counter()
        for r in runs:
            per_hour[int(r.sim_start // HOUR)] += r.outreach_api_requests
        extra = {
            "rate_limit_per_hour": s.pacing_limit, "hourly_budget": s.pacing_budget,
            "outreach_requests": n, "responses_429": too_many, "runs": len(runs), "working_runs": len(working),
            "exit_code_counts": {str(k): v for k, v in collections.Counter(r.code for r in runs).items()},
            "budget_windows_needed": windows, "seconds_per_request": seconds_per_request,
            "finish_seconds": actual, "minimum_seconds": minimum,
            "finish_over_minimum": (actual / minimum) if minimum else None,
            "backlog_left": world.backlog_left(),
            "requests_per_clock_hour": {str(k * HOUR): v for k, v in sorted(per_hour.items())},
            "working_run_minutes": [round((r.sim_start - start) / 60, 2) for r in working],
            "working_run_requests": [r.outreach_send_requests for r in working],
            "receive_requests": sum(r.outreach_api_requests - r.outreach_send_requests for r in runs),
            "opt_out_latency_runs": opt_out.get("latency"),
        }
        created = len(world.outreach.records("prospects")) + len(world.outreach.records("accounts"))
        return Scenario("pacing", created, runs,
                        note=f"limit {s.pacing_limit:,}/h, budget {s.pacing_budget:,}/h; one run per simulated minute",
                        extra=extra)

    @staticmethod
    def _follow_opt_out(world: World, opt_out: dict, run_number: int) -> None:
        """After the first run (the hour's budget is spent by then), a Prospect it created opts out
        in Outreach; then count the runs until its Person has No Email ticked."""
        column = world.col("person", "outreach_id")
        if not opt_out:
            linked = next((p for p in world.wb.records("people") if p.get(column)), None)
            if linked is not None:
                world.outreach.opt_out(int(linked[column]), "email")
                opt_out.update(person=linked["id"], made_after_run=run_number)
            return
        if opt_out.get("latency") is None and \
                world.wb.record("people", opt_out["person"]).get("no_email_soliciting") is True:
            opt_out["latency"] = run_number - opt_out["made_after_run"]

    def _store(self, scenario: Scenario, naive: dict | None) -> None:
        self.scenarios[scenario.name] = scenario
        self.results[scenario.name] = scenario.as_dict(naive, self.startup_cpu)

    # --- targets and the report ------------------------------------------------------------------
    def targets(self) -> list[dict]:
        r = self.results
        out: list[dict] = []

        def add(name: str, value, limit, ok: bool, detail: str = "") -> None:
            out.append({"target": name, "value": value, "limit": limit, "met": bool(ok), "detail": detail})

        if "backlog" in r:
            b = r["backlog"]
            per = b["outreach_send_total"] / b["records"] if b["records"] else None
            add("backlog: Outreach requests per created record", per, 1.05, per is not None and per <= 1.05)
            add("backlog: Outreach users read once per run", b["outreach"]["users"], b["runs"],
                b["outreach"]["users"] <= b["runs"])
            wb = b["workbooks"]["total"] / b["records"] if b["records"] else None
            add("backlog: Workbooks requests per record", wb, 0.03, wb is not None and wb <= 0.03)
            add("backlog: nothing left over", b["backlog_left"], 0, b["backlog_left"] == 0)
        for name in ("echo", "steady"):
            if name in r:
                add(f"{name}: Outreach requests sent", r[name]["outreach_send_total"], 0,
                    r[name]["outreach_send_total"] == 0)
        if "echo" in r:
            writes = sum(n for k, n in r["echo"]["workbooks_requests"].items() if k.startswith("PUT /crm/"))
            add("echo: Workbooks records written (receive passes our own echoes)", writes, 0, writes == 0)
        if "steady" in r:
            s = r["steady"]
            add("steady: Outreach polls (receive, one per feed)", s["outreach"]["receive"], 3, s["outreach"]["receive"] <= 3)
            add("steady: Workbooks requests per run", s["workbooks"]["total"], 4, s["workbooks"]["total"] <= 4)
        if "trickle" in r:
            t = r["trickle"]
            add("trickle: PATCHes per edited record", t["outreach"]["update"] / t["edited"], 1,
                t["outreach"]["update"] == t["edited"])
            add("trickle: Outreach requests besides the PATCHes", t["outreach_send_total"] - t["outreach"]["update"],
                0, t["outreach_send_total"] == t["outreach"]["update"])
            add("trickle: PATCHes carrying only the changed attribute", t["patches_only_changed_attribute"],
                t["patches"], t["patches_only_changed_attribute"] == t["patches"] == t["edited"],
                f"attributes sent: {t['patched_attributes']}, relationships: {t['patched_relationships']}")
        if "received" in r:
            v = r["received"]
            add("received: Outreach requests to receive them", v["outreach"]["receive"], 12,
                v["outreach"]["receive"] <= 12, f"{v['records']:,} changes")
            add("received: Outreach requests sent", v["outreach_send_total"], 0, v["outreach_send_total"] == 0)
            got = v["titles_received"] + v["opt_outs_received"] + v["states_received"]
            add("received: every change arrived", got, v["records"], got == v["records"])
            add("received: the run after sends nothing and writes no record",
                v["after_outreach_sent"] + v["after_workbooks_record_writes"], 0,
                v["after_outreach_sent"] + v["after_workbooks_record_writes"] == 0)
        for name in ("backlog", "scale"):
            if name in r and r[name]["cpu_ms_per_record"] is not None:
                add(f"{name}: client CPU per record (ms)", r[name]["cpu_ms_per_record"], 1.0,
                    r[name]["cpu_ms_per_record"] <= 1.0)
        if "scale" in r and r["scale"]["peak_rss_mb"] is not None:
            add("scale: peak RSS (MB)", r["scale"]["peak_rss_mb"], 150, r["scale"]["peak_rss_mb"] < 150)
            if "backlog" in r and r["backlog"]["peak_rss_mb"]:
                growth = r["scale"]["peak_rss_mb"] / r["backlog"]["peak_rss_mb"] - 1
                add(f"peak RSS from {self.sizes.people:,} (backlog) to {self.sizes.scale_people:,} stored (scale)",
                    growth, 0.10, abs(growth) <= 0.10, "relative change")
            add("scale: nothing left over", r["scale"]["backlog_left"], 0, r["scale"]["backlog_left"] == 0)
        if "pacing" in r:
            p = r["pacing"]
            add("pacing: 429 responses", p["responses_429"], 0, p["responses_429"] == 0)
            add("pacing: opt-out latency during the backlog (runs)", p["opt_out_latency_runs"], 2,
                p["opt_out_latency_runs"] is not None and p["opt_out_latency_runs"] <= 2)
            add("pacing: finish / budget-bound minimum", p["finish_over_minimum"], 1.05,
                p["finish_over_minimum"] is not None and p["finish_over_minimum"] <= 1.05 and p["backlog_left"] == 0,
                f"{p['finish_seconds'] / 60:.1f} min vs {p['minimum_seconds'] / 60:.1f} min")
        return out

    def report(self, names: Iterable[str]) -> dict:
        return {"machine": machine(), "settings": {"sizes": dataclasses.asdict(self.sizes),
                                                   "latency_ms": self.latency_ms, "timeout": self.timeout,
                                                   "runner": "in-process" if self.in_process else "subprocess",
                                                   "startup_cpu_seconds": self.startup_cpu},
                "scenarios": {n: self.results[n] for n in names if n in self.results},
                "targets": self.targets()}


# --- presentation ------------------------------------------------------------------------------------

def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "memory": memory,
            "python": platform.python_version(), "platform": platform.platform()}


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def render(report: dict) -> str:
    scen = report["scenarios"]
    out = []
    m = report["machine"]
    st = report["settings"]
    out.append(f"Machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['memory']} RAM, Python {m['python']}")
    out.append(f"Latency {st['latency_ms']} ms per request on both emulators; runner: {st['runner']}; "
               f"TIMEOUT {st['timeout']}; plugin start-up CPU {_fmt(st.get('startup_cpu_seconds'), 3)} s "
               "(CPU (net) = per record without it)")
    out.append("")
    rows = []
    for name, d in scen.items():
        o, w = d["outreach"], d["workbooks"]
        rows.append([name, _fmt(d["records"]), _fmt(d["runs"]), _fmt(o["lookup"]), _fmt(o["create"]), _fmt(o["update"]),
                     _fmt(o["users"]), _fmt(o["receive"]), _fmt(d["outreach_api_total"]), _fmt(w["read"]), _fmt(w["write"]),
                     _fmt(w["login"]), _fmt(w["total"]), _fmt(d.get("naive", {}).get("outreach")),
                     _fmt(d.get("naive", {}).get("workbooks"))])
    out.append("Request counts (whole scenario)")
    out.append(_table(["scenario", "records", "runs", "OR lookup", "OR create", "OR update", "OR users", "OR receive", "OR total",
                       "WB read", "WB write", "WB login", "WB total", "naive OR", "naive WB"], rows))
    out.append("")
    rows = []
    for name, d in scen.items():
        po, pw = d["outreach_per_record"], d["workbooks_per_record"]
        ratio = d.get("ratio_vs_naive") or {}
        or_total = d["outreach_api_total"] / d["records"] if d["records"] else None
        rows.append([name, _fmt(po["lookup"], 4), _fmt(po["create"], 4), _fmt(po["update"], 4), _fmt(po["users"], 5),
                     _fmt(po["receive"], 4), _fmt(or_total, 4), _fmt(pw["read"], 4), _fmt(pw["write"], 4), _fmt(pw["total"], 4),
                     _fmt(d["wall_seconds"], 1), _fmt(d["cpu_ms_per_record"], 3),
                     _fmt(d["cpu_ms_per_record_net_of_startup"], 3), _fmt(d["peak_rss_mb"], 1),
                     (_fmt(ratio.get("outreach"), 2) + "x") if ratio.get("outreach") else "—",
                     (_fmt(ratio.get("workbooks"), 2) + "x") if ratio.get("workbooks") else "—"])
    out.append("Per record (— where a scenario has no records) and resources")
    out.append(_table(["scenario", "OR lookup", "OR create", "OR update", "OR users", "OR receive", "OR total", "WB read",
                       "WB write", "WB total", "wall s", "CPU ms/rec", "(net)", "peak RSS MB", "naive/ours OR",
                       "naive/ours WB"], rows))
    if "pacing" in scen:
        p = scen["pacing"]
        out.append("")
        out.append(f"Pacing: {p['outreach_requests']:,} Outreach requests over {p['runs']} one-minute runs "
                   f"({p['working_runs']} sent requests); 429 responses: {p['responses_429']}; finished after "
                   f"{p['finish_seconds'] / 60:.1f} simulated min vs budget-bound minimum "
                   f"{p['minimum_seconds'] / 60:.1f} min (x{_fmt(p['finish_over_minimum'], 3)}); "
                   f"requests per clock hour: {list(p['requests_per_clock_hour'].values())}; of them the "
                   f"receive half's polls: {p['receive_requests']:,}; an opt-out made after the first run "
                   f"reached Workbooks {p['opt_out_latency_runs']} run(s) later")
    out.append("")
    out.append("Targets")
    for t in report["targets"]:
        mark = "met   " if t["met"] else "MISSED"
        value = _fmt(t["value"], 4) if isinstance(t["value"], float) else _fmt(t["value"])
        out.append(f"  [{mark}] {t['target']}: {value} (limit {_fmt(t['limit'])})" + (f" — {t['detail']}" if t["detail"] else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, metavar="NAME",
                        help=f"one of {', '.join(SCENARIOS)} (repeatable; default: all)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per-request latency on both emulators")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, for a smoke run")
    parser.add_argument("--timeout", type=float, default=300,
                        help="TIMEOUT of each run in seconds (the manifest's max run time); 0: none")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--in-process", action="store_true",
                        help="run the plugin inside this process (no CPU/RSS figures)")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    bench = Bench(QUICK if args.quick else FULL, latency_ms=args.latency_ms, timeout=args.timeout or None,
                  in_process=args.in_process, log=lambda text: print(text, file=sys.stderr, flush=True))
    try:
        report = bench.run(names)
    finally:
        bench.close()
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    if args.check and not all(t["met"] for t in report["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
