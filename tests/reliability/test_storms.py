"""Suite 2 (issue 7): transient storms on both APIs, over many runs, then convergence.

For a seed and a fault rate, every API request of a run may meet (each rule seeded, so a storm
can be replayed exactly from the printed seed):
  Outreach   429 in the emulator's own shape and headers (X-RateLimit-*, Retry-After at the end
             of the hour), 500 / 502 / 503 (maintenance, ISO Retry-After), connection resets
             before and after processing, latency spikes, and latency beyond the client's read
             timeout (a timeout; the server still does the work);
  Workbooks  500 / 502 / 503, resets before and after processing, latency spikes and timeouts,
             and its rate limit (a 302 to the same URL on every Nth GET, workbooks-api §11).
Several stormy runs happen with user edits between them; then the storm stops and the runner
reruns until clean. The end state must equal the end state of the same scenario and edits run
without faults (ids aside), no healthy record may be flagged, and every stormy run must end
before `TIMEOUT` with exit 0 or 1. Between two runs a minute passes (`next_minute`): what the
servers were still doing for the last run lands first, and a stormy run that left the run lock
behind (every try to release it, retried while its deadline allowed, met a fault) is counted,
and the clocks move on a minute: the next run must take the stale lock over. No run may be locked
out: the runs here never overlap, so a lock that blocks one is a lock left to block the schedule.
Below the storms, the regressions they found, each pinned by a deterministic test.

To keep the suite quick the client's timeouts are shortened in-process (the plugin has no
parameter for them: production keeps (5 s, 60 s)), and `TIMEOUT` is small.

    default run: DEFAULT_SEEDS at RATE          full: pytest -m slow tests/reliability/test_storms.py
"""
from __future__ import annotations

import threading
import time

import pytest

from plugin.http import HttpClient
from tests.reliability.helpers import (audit, fresh_sandbox, is_clean, jump_ahead, lock_holder, mixed_scenario,
                                       run_until_clean)

RUN_TIMEOUT = 12            # env TIMEOUT of each stormy run (seconds)
CLIENT_TIMEOUT = (0.5, 0.8)  # connect, read: shortened so timeouts cost little wall time
SLOW_REQUEST = 1.2          # latency past the read timeout
STORMY_RUNS = 6
RATE = 0.12
SCHEDULE = 60               # seconds between two runs of the scheduled process
LOCKED_OUT = "another Outreach Send/Receive run is in progress"
DEFAULT_SEEDS = (1, 2, 3)
SLOW_SEEDS = tuple(range(100, 116))
SLOW_RATES = (0.08, 0.2, 0.35)


@pytest.fixture(autouse=True)
def short_client_timeouts(monkeypatch):
    defaults = dict(HttpClient.__init__.__kwdefaults__)
    defaults["timeout"] = CLIENT_TIMEOUT
    # Backoff waits stay as in production: they are what keeps a storm from eating the budget.
    monkeypatch.setattr(HttpClient.__init__, "__kwdefaults__", defaults)


def storm(sb, seed: int, rate: float) -> None:
    rules = [
        (sb.outreach, dict(status=429)),
        (sb.outreach, dict(status=500)),
        (sb.outreach, dict(status=502)),
        (sb.outreach, dict(status=503)),
        (sb.outreach, dict(reset=True, when="before")),
        (sb.outreach, dict(reset=True, when="after")),
        (sb.outreach, dict(latency=0.3)),
        (sb.outreach, dict(latency=SLOW_REQUEST)),
        (sb.wb, dict(status=500)),
        (sb.wb, dict(status=502)),
        (sb.wb, dict(status=503)),
        (sb.wb, dict(reset=True, when="before")),
        (sb.wb, dict(reset=True, when="after")),
        (sb.wb, dict(latency=0.3)),
        (sb.wb, dict(latency=SLOW_REQUEST)),
    ]
    for n, (app, rule) in enumerate(rules):
        # Each kind of fault gets its share of the rate, so `rate` is the chance that a request
        # meets some fault.
        app.add_fault(count=None, rate=rate / 7.5, seed=seed * 1000 + n, **rule)
    sb.wb.config["rate_limit_redirect_every"] = 9


def tally_of(sb) -> list[int]:
    """[faults fired, stormy requests, stormy runs that left the run lock behind]"""
    if not hasattr(sb, "storm_tally"):
        sb.storm_tally = [0, 0, 0]
    return sb.storm_tally


class InFlight:
    """Counts the requests an emulator is still serving. A request that met a latency past the
    client's read timeout is given up by the client and still carried out by the server."""

    def __init__(self, app) -> None:
        self.count = 0
        self.changed = threading.Condition()
        original = app._handle

        def handle(request):
            with self.changed:
                self.count += 1
            try:
                return original(request)
            finally:
                with self.changed:
                    self.count -= 1
                    self.changed.notify_all()
        app._handle = handle

    def wait(self, seconds: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count == 0, seconds)


def next_minute(sb, monkeypatch) -> None:
    """Between two runs of the schedule a minute passes. First, what the servers were still doing
    for the last run lands (a create, a take of the lock), as it would long before the next
    minute: back to back, a create could land in the middle of the next run, after its look-up,
    a duplicate no client can prevent. Then, if the run left the lock behind (every try to
    release it met a fault), the clocks the lock is judged by move on a minute
    (helpers.jump_ahead): a run with this TIMEOUT is provably gone by then, so the next run must
    take the lock over; the real schedule gives it no more time than that."""
    for watch in sb.in_flight:
        watch.wait(SLOW_REQUEST + 1)
    if lock_holder(sb):
        tally_of(sb)[2] += 1
        jump_ahead(sb, monkeypatch, SCHEDULE)


def calm(sb) -> None:
    """The storm stops."""
    tally = tally_of(sb)
    tally[0] += sum(f.hits for app in (sb.wb, sb.outreach) for f in app.faults)
    tally[1] += sb.wb.total_requests + sb.outreach.total_requests
    sb.reset_counts()
    sb.wb.clear_faults()
    sb.outreach.clear_faults()
    sb.wb.config["rate_limit_redirect_every"] = 0


def edits(sb, scenario, round_: int) -> None:
    """The same user edits in the stormy and the reference database."""
    p, o = scenario.people, scenario.orgs
    if round_ == 1:
        sb.wb.edit("people", p["ann"], {"person_job_title": "Chair"})
        sb.wb.edit("people", p["cat"], {"person_first_name": "Catherine"})
        sb.wb.edit("organisations", o["beta"], {"industry": "Freight"})
        sb.person(email="kim@beta.example", first="Kim", last="Vo", employer_link=o["beta"])
    elif round_ == 2:
        sb.wb.edit("people", p["dan"], {"main_location[email]": "dan.oh@beta.example"})
        sb.wb.edit("people", p["fay"], {"employer_link": o["acme"]})
        sb.wb.edit("organisations", o["gamma"], {"name": "Gamma AG"})
        sb.organisation("Epsilon SA", industry="Mining")


def canonical(sb) -> dict:
    """Both systems, with Outreach ids replaced by the Workbooks records they belong to."""
    db = sb.wb.database["id"]
    prospects, accounts = sb.prospects(), sb.accounts()
    owner_of = {a["id"]: a["attributes"].get("customId") or f"foreign:{a['attributes'].get('name')}"
                for a in accounts}
    remote = {"person": {p["id"]: p for p in prospects}, "organisation": {a["id"]: a for a in accounts}}
    fields = {"person": ("firstName", "lastName", "title", "emails", "company"),
              "organisation": ("name", "industry")}
    out: dict = {}
    for kind, endpoint in (("person", "people"), ("organisation", "organisations")):
        for rec in sb.wb.records(endpoint):
            flags = sb.flags(kind, rec["id"])
            entry = {"error": bool(flags["sync_error"]), "duplicate": bool(flags["duplicate"]),
                     "message": bool(flags["error_message"]), "linked": bool(flags["outreach_id"])}
            target = remote[kind].get(int(flags["outreach_id"])) if flags["outreach_id"] else None
            if target is not None:
                entry["remote"] = {f: target["attributes"].get(f) for f in fields[kind]}
                rels = target.get("relationships") or {}
                if kind == "person":
                    account = (rels.get("account") or {}).get("data")
                    entry["remote"]["account"] = owner_of.get(account["id"]) if account else None
                owner = (rels.get("owner") or {}).get("data")
                entry["remote"]["owner"] = owner["id"] if owner else None
                entry["remote"]["marker"] = target["attributes"].get("externalId" if kind == "person" else "customId")
            out[f"{kind} {rec['id']}"] = entry
    out["outreach totals"] = {"prospects": len(prospects), "accounts": len(accounts)}
    out["foreign"] = sorted(str(x["attributes"].get("emails") or x["attributes"].get("name"))
                            for x in prospects + accounts
                            if not str(x["attributes"].get("externalId") or x["attributes"].get("customId")
                                       or "").startswith(f"workbooks:{db}:"))
    return out


def scripted(sb, *, stormy: tuple | None, monkeypatch=None) -> tuple[list, object]:
    """The scenario, three rounds of runs with edits between them, then reruns until clean.
    `stormy` = (seed, rate) puts a storm over the first rounds. Returns the runs and scenario."""
    scenario = mixed_scenario(sb)
    runs = []
    per_round = STORMY_RUNS // 3 if stormy else 1
    for round_ in range(3):
        if round_:
            edits(sb, scenario, round_)
        if stormy:
            sb.reset_counts()
            storm(sb, *stormy)
            if not hasattr(sb, "in_flight"):
                sb.in_flight = [InFlight(sb.wb), InFlight(sb.outreach)]
        for _ in range(per_round):
            started = time.monotonic()
            result = sb.run(env={"TIMEOUT": str(RUN_TIMEOUT)})
            runs.append((result, time.monotonic() - started))
            if stormy:
                next_minute(sb, monkeypatch)
        if stormy:
            calm(sb)
    runs += [(r, 0.0) for r in run_until_clean(sb, env={"TIMEOUT": str(RUN_TIMEOUT)})]
    return runs, scenario


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    with fresh_sandbox(tmp_path_factory.mktemp("calm")) as sb:
        runs, scenario = scripted(sb, stormy=None)
        assert is_clean(runs[-1][0]), runs[-1][0].output
        found = audit(sb, owners=scenario.owners)
        assert found, found.problems
        return canonical(sb)


def weather(tmp_path, reference, seed: int, rate: float, tally: list[int], monkeypatch) -> list[str]:
    """One storm; returns its problems, each prefixed with the seed that replays it."""
    tag = f"seed {seed}, rate {rate}"
    problems = []
    with fresh_sandbox(tmp_path) as sb:
        with monkeypatch.context() as patch:
            runs, scenario = scripted(sb, stormy=(seed, rate), monkeypatch=patch)
        tally[0] += sb.storm_tally[0]
        tally[1] += sb.storm_tally[1]
        tally[3] += sb.storm_tally[2]
        for n, (result, _) in enumerate(runs):
            if LOCKED_OUT in result.output:
                problems.append(f"run {n + 1} was locked out by a lock left behind: {result.output}")
        for n, (result, seconds) in enumerate(runs[:STORMY_RUNS]):
            if result.code not in (0, 1):
                problems.append(f"stormy run {n + 1} exited {result.code}: {result.output}")
            if seconds >= RUN_TIMEOUT:
                problems.append(f"stormy run {n + 1} took {seconds:.1f}s, past TIMEOUT={RUN_TIMEOUT}")
            if "Traceback" in result.output:
                problems.append(f"stormy run {n + 1} crashed: {result.output}")
        if not is_clean(runs[-1][0]):
            problems.append(f"no clean run once the storm stopped: {runs[-1][0].output}")
        found = audit(sb, owners=scenario.owners)
        tally[2] += found.checked
        problems += found.problems
        mine = canonical(sb)
        for key in sorted(set(reference) | set(mine)):
            if reference.get(key) != mine.get(key):
                problems.append(f"{key}: fault-free {reference.get(key)}, after the storm {mine.get(key)}")
    return [f"[{tag}] {p}" for p in problems]


def forecast(tmp_path, reference, cases, capsys, monkeypatch) -> None:
    failures, tally = [], [0, 0, 0, 0]
    for n, (seed, rate) in enumerate(cases):
        failures += weather(tmp_path / f"s{n}", reference, seed, rate, tally, monkeypatch)
    with capsys.disabled():
        print(f"\nstorms: {len(cases)} storms x {STORMY_RUNS} stormy runs, rates "
              f"{sorted({r for _, r in cases})}: {tally[0]} faults in {tally[1]} stormy requests, "
              f"{tally[2]} records checked, {tally[3]} runs left the lock behind, {len(failures)} problems")
    assert not failures, "\n".join(failures)


def test_storms(tmp_path, reference, capsys, monkeypatch):
    forecast(tmp_path, reference, [(seed, RATE) for seed in DEFAULT_SEEDS], capsys, monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(3600)      # 48 storms: past the suite's default 300 s
def test_storms_many_seeds_and_rates(tmp_path, reference, capsys, monkeypatch):
    forecast(tmp_path, reference, [(seed, rate) for rate in SLOW_RATES for seed in SLOW_SEEDS], capsys, monkeypatch)


# --- regressions the storms found, pinned one by one --------------------------------------------------

def test_a_page_cut_off_by_a_failed_write_back_is_read_again(sb_one):
    """Two faults in one page: the PATCH of a linked person meets Outreach's rate limit (it is
    deferred), then the page's write-back (another person's error flag) loses its connection.
    The watermark must not move past the page: the deferred update is sent next run."""
    sb = sb_one
    linked = sb.person(email="held@acme.example", person_job_title="Before")["id"]
    assert sb.run().code == 0
    sb.wb.edit("people", linked, {"person_job_title": "After"})
    sb.wb.clock.advance(2)
    sb.person(email="not an email")                     # later in the page; its flag is a write-back
    sb.outreach.add_fault(method="PATCH", path=r"/prospects/", status=429, count=1)
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", reset=True, count=1)
    assert sb.run().code == 1
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    [mine] = [p for p in sb.prospects() if p["attributes"]["emails"] == ["held@acme.example"]]
    assert mine["attributes"]["title"] == "After"
    assert audit(sb).problems == []


@pytest.fixture
def sb_one(workbooks_server, outreach_server, tmp_path):
    from tests.sync_harness import Sandbox
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


@pytest.mark.parametrize("timeout", [6, 10])
def test_a_run_whose_final_writes_keep_failing_still_ends_before_timeout(sb_one, timeout):
    """Every state write (watermarks, the lock) times out: the run must give up on them in time
    to exit before Workbooks' TIMEOUT kills it, counted from the start of the process's work
    (loading the mapping included), not from the Workbooks login."""
    sb = sb_one
    for n in range(3):
        sb.person(email=f"t{n}@acme.example")
    sb.wb.add_fault(method="PUT", path=r"automation/api_data\.api", latency=SLOW_REQUEST, count=None, skip=1)
    sb.wb.add_fault(method="GET", path=r"automation/api_data\.api", latency=0.3, count=None, skip=2)
    started = time.monotonic()
    result = sb.run(env={"TIMEOUT": str(timeout)})
    took = time.monotonic() - started
    assert result.code in (0, 1), result.output
    assert took < timeout - 0.5, f"{took:.2f}s with TIMEOUT={timeout}: {result.output}"


def test_a_run_stopped_by_its_time_limit_retries_a_failed_lock_release(sb_one):
    """Seen in the storms (seed 3 failed 2 times in 5: a 502 left the lock behind). A run stops
    starting work when `margin` seconds are left (3 s with a short TIMEOUT), and the release was
    retried only with 3 s or more left: a run stopped by time had one try, and one fault on it
    blocked the schedule for the lock's TTL. It is now retried while the deadline allows."""
    from tests.reliability.test_concurrency import fail_lock_write, people
    sb = sb_one
    people(sb, 2)
    assert sb.run().code == 0
    people(sb, 12, prefix="q")
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", latency=0.6, count=None)
    calls = fail_lock_write(sb, releasing=True, processed=False)
    started = time.monotonic()
    result = sb.run(env={"TIMEOUT": "8"})
    assert time.monotonic() - started < 8
    assert calls == [1] and "stopped early: time limit" in result.summary, result.output
    assert lock_holder(sb) is None, result.output
    sb.outreach.clear_faults()
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]) and LOCKED_OUT not in runs[0].output, runs[0].output


def test_a_lock_no_release_could_free_blocks_only_until_its_holder_is_provably_gone(sb_one, monkeypatch):
    """Every try to release fails: the lock stays, and blocks runs while its holder may still be
    alive (never two syncing at once), but no longer: its TTL is what was left of the holder's
    deadline plus a grace, so the next minute's run takes it over (it was TIMEOUT + 120 s)."""
    from plugin.runner import LOCK_GRACE_SECONDS
    from tests.reliability.helpers import state
    from tests.reliability.test_concurrency import fail_lock_write, people
    sb = sb_one
    people(sb, 2)
    assert sb.run().code == 0
    people(sb, 2, prefix="q")
    healthy = sb.wb.dispatch
    fail_lock_write(sb, releasing=True, processed=False, times=100)
    left = sb.run(env={"TIMEOUT": "8"})
    sb.wb.dispatch = healthy
    assert left.code == 0 and "could not release the run lock" in left.output, left.output
    holder = state(sb, "lock")
    assert holder["owner"] and holder["ttl"] <= 8 + LOCK_GRACE_SECONDS, holder
    people(sb, 1, prefix="r")
    blocked = sb.run(env={"TIMEOUT": "8"})
    assert blocked.code == 0 and blocked.summary.startswith("[notice] " + LOCKED_OUT), blocked.output
    jump_ahead(sb, monkeypatch, holder["ttl"] - 15)      # the holder may still be running
    blocked = sb.run(env={"TIMEOUT": "8"})
    assert blocked.summary.startswith("[notice] " + LOCKED_OUT), blocked.output
    jump_ahead(sb, monkeypatch, 25)                      # provably gone: taken over
    taken = sb.run(env={"TIMEOUT": "8"})
    assert taken.code == 0 and "people: 1 created" in taken.summary, taken.output
    assert lock_holder(sb) is None and len(sb.prospects()) == 5
    assert audit(sb).problems == []
