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
before `TIMEOUT` with exit 0 or 1.

To keep the suite quick the client's timeouts are shortened in-process (the plugin has no
parameter for them: production keeps (5 s, 60 s)), and `TIMEOUT` is small.

    default run: DEFAULT_SEEDS at RATE          full: pytest -m slow tests/reliability/test_storms.py
"""
from __future__ import annotations

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


def calm(sb, monkeypatch) -> None:
    """The storm stops. If a stormy run left the run lock behind (every try to release it met a
    fault), it blocks the schedule until its TTL: let that time pass (helpers.jump_ahead)."""
    tally = getattr(sb, "storm_tally", [0, 0, 0])
    tally[0] += sum(f.hits for app in (sb.wb, sb.outreach) for f in app.faults)
    tally[1] += sb.wb.total_requests + sb.outreach.total_requests
    sb.storm_tally = tally
    sb.reset_counts()
    sb.wb.clear_faults()
    sb.outreach.clear_faults()
    sb.wb.config["rate_limit_redirect_every"] = 0
    if lock_holder(sb):
        tally[2] += 1
        jump_ahead(sb, monkeypatch, RUN_TIMEOUT + 121)


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
        for _ in range(per_round):
            started = time.monotonic()
            result = sb.run(env={"TIMEOUT": str(RUN_TIMEOUT)})
            runs.append((result, time.monotonic() - started))
        if stormy:
            calm(sb, monkeypatch)
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
        tally[2] += audit(sb).checked
        for n, (result, seconds) in enumerate(runs[:STORMY_RUNS]):
            if result.code not in (0, 1):
                problems.append(f"stormy run {n + 1} exited {result.code}: {result.output}")
            if seconds >= RUN_TIMEOUT:
                problems.append(f"stormy run {n + 1} took {seconds:.1f}s, past TIMEOUT={RUN_TIMEOUT}")
            if "Traceback" in result.output:
                problems.append(f"stormy run {n + 1} crashed: {result.output}")
        if not is_clean(runs[-1][0]):
            problems.append(f"no clean run once the storm stopped: {runs[-1][0].output}")
        problems += audit(sb, owners=scenario.owners).problems
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
              f"{tally[2]} records checked, {tally[3]} rounds left the lock behind, {len(failures)} problems")
    assert not failures, "\n".join(failures)


def test_storms(tmp_path, reference, capsys, monkeypatch):
    forecast(tmp_path, reference, [(seed, RATE) for seed in DEFAULT_SEEDS], capsys, monkeypatch)


@pytest.mark.slow
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
