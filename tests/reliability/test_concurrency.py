"""Suite 4 (issue 7): runs that overlap. Workbooks Process Channels may start two runs of the
scheduled process at once, and a slow run may still be going when the next minute's starts.

The runners here are real processes (`scripts/outreach_send_receive.py`), started together. A
little latency on Outreach's creates keeps a run busy long enough for the overlap to be certain.
Required: the run lock lets exactly one sync; the other exits 0 saying why; no duplicate is ever
created; and a lock left by a killed run stops blocking once its TTL has passed by Workbooks'
clock (the emulator's, moved forward).
"""
from __future__ import annotations

import json
import time

import pytest

from plugin.runner import LOCK_GRACE_SECONDS
from tests.reliability.helpers import (Tripwire, audit, is_clean, lock_holder, run_process, run_until_clean,
                                       spawn_runner, state)
from tests.sync_harness import Sandbox

LOCKED_OUT = "another Outreach Send/Receive run is in progress"


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def people(sb, n, prefix="p"):
    return [sb.person(email=f"{prefix}{i}@acme.example", first=f"P{i}")["id"] for i in range(n)]


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def together(sb, n=2, **kw):
    procs = [spawn_runner(sb, **kw) for _ in range(n)]
    return [finish(p) for p in procs]


def did_sync(out: str) -> bool:
    return "people:" in out.splitlines()[-1] and LOCKED_OUT not in out


@pytest.mark.parametrize("first_ever", [True, False], ids=["no-lock-row-yet", "lock-row-exists"])
def test_two_runners_started_together_one_syncs_the_other_exits_0_saying_why(sb, first_ever):
    if not first_ever:
        sb.person(email="warmup@acme.example")
        assert sb.run().code == 0              # creates the lock row
    for attempt in range(3):
        people(sb, 6, prefix=f"a{attempt}-")
        sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", latency=0.25, count=None)
        results = together(sb, 2)
        sb.outreach.clear_faults()
        codes = [code for code, _, _ in results]
        assert codes == [0, 0], results
        syncing = [out for _, out, _ in results if did_sync(out)]
        waiting = [out for _, out, _ in results if LOCKED_OUT in out]
        assert len(syncing) == 1 and len(waiting) == 1, results
        assert waiting[0].strip().splitlines()[-1].startswith("[notice] " + LOCKED_OUT)
    emails = [e for p in sb.prospects() for e in p["attributes"]["emails"]]
    assert len(emails) == len(set(emails)) == 18 + (0 if first_ever else 1)
    assert audit(sb).problems == []
    assert lock_holder(sb) is None


def test_many_runners_at_once_never_duplicate(sb):
    people(sb, 10)
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", latency=0.1, count=None)
    results = together(sb, 4)
    assert [code for code, _, _ in results] == [0] * 4, results
    assert sum(did_sync(out) for _, out, _ in results) == 1, results
    assert len(sb.prospects()) == 10
    assert audit(sb).problems == []


def test_a_runner_overlapping_a_slow_one_exits_0_and_the_next_run_picks_up_what_changed(sb):
    ids = people(sb, 5)
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", latency=0.6, count=None)
    slow = spawn_runner(sb)
    for _ in range(500):
        if lock_holder(sb):
            break
        time.sleep(0.01)
    assert lock_holder(sb), "the slow run never took the lock"
    # meanwhile users keep working
    sb.wb.edit("people", ids[0], {"person_job_title": "Edited during the slow run"})
    late = sb.person(email="late@acme.example")["id"]
    overlapping = run_process(sb)
    assert overlapping.code == 0, overlapping.stdout
    assert overlapping.summary.startswith("[notice] " + LOCKED_OUT)
    code, out, err = finish(slow)
    assert code == 0, out + err
    sb.outreach.clear_faults()
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert sb.flags("person", late)["outreach_id"]
    assert len(sb.prospects()) == 6
    assert audit(sb).problems == []


def test_a_run_that_fails_releases_the_lock(sb):
    people(sb, 2)
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", status=503, count=None)
    failed = sb.run(env={"TIMEOUT": "10"})
    assert failed.code == 1, failed.output
    assert lock_holder(sb) is None
    sb.outreach.clear_faults()
    assert sb.run().code == 0
    assert len(sb.prospects()) == 2


def test_stale_lock_from_a_killed_run_blocks_until_its_ttl_then_is_taken_over(sb):
    people(sb, 6)
    # The killed run's lock must look old to the local clock too (StateStore checks both), so
    # the run happens with Workbooks' clock well in the past. Its TTL is when it is provably
    # gone: what was left of its deadline (TIMEOUT less the exit reserve) + the runner's grace.
    sb.wb.clock.advance(-7200)
    wire = Tripwire(sb.outreach, 8, after=True)       # killed after its third create (after 3 receive polls)
    try:
        killed = run_process(sb, kill_on=wire.hit, env={"TIMEOUT": "30"})
    finally:
        wire.disarm()
    assert killed.killed
    holder = state(sb, "lock")
    ttl = holder["ttl"]
    assert holder["owner"] and 25 + LOCK_GRACE_SECONDS <= ttl <= 30 + LOCK_GRACE_SECONDS
    created_before_the_kill = len(sb.prospects())
    assert created_before_the_kill >= 1
    blocked = sb.run()
    assert blocked.code == 0 and blocked.summary.startswith("[notice] " + LOCKED_OUT), blocked.output
    sb.wb.clock.advance(ttl - 15)                     # still live by Workbooks' clock
    still = sb.run()
    assert still.code == 0 and still.summary.startswith("[notice] " + LOCKED_OUT), still.output
    sb.wb.clock.advance(25)                           # past the TTL
    taken = sb.run()
    assert taken.code == 0 and "people:" in taken.summary, taken.output
    assert len(sb.prospects()) == 6                   # the killed run's creates were adopted
    assert "interrupted earlier run" in taken.output
    assert audit(sb).problems == []
    assert lock_holder(sb) is None


def test_two_runners_both_due_to_refresh_the_token_neither_loses_the_authorisation(sb):
    """Both runs find the access token expired and refresh it with the same refresh token; with
    single-use refresh tokens (the emulator's strict default) the second is refused. That
    refusal must not be taken for "not authorised" (exit 2 disables the process): the other run
    has stored fresh tokens, which the second run must pick up."""
    for attempt in range(3):
        people(sb, 3, prefix=f"t{attempt}-")
        [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"]
        tokens = json.loads(row["value"])
        tokens["expires_at"] = int(time.time()) - 10
        sb.wb.edit("api_data", row["id"], {"value": json.dumps(tokens)})
        sb.outreach.clock.advance(61)                 # past the once-a-minute mint throttle
        # the token endpoint answers slowly enough for both runs to present the same token
        sb.outreach.add_fault(method="POST", path=r"/oauth/token$", latency=0.5, count=2)
        results = together(sb, 2)
        sb.outreach.clear_faults()
        assert all(code in (0, 1) for code, _, _ in results), results
        assert not any("not authorised" in out for _, out, _ in results), results
        sb.outreach.clock.advance(61)
        runs = run_until_clean(sb)
        assert is_clean(runs[-1]), runs[-1].output
    assert len(sb.prospects()) == 9
    assert audit(sb).problems == []


# --- a lock write whose answer is lost (regressions the crash sweep found) ---------------------------------

def fail_lock_write(sb, *, releasing: bool, processed: bool, times: int = 1) -> list[int]:
    """The next write of the lock row (taking it, or releasing it) fails with a 503: before
    Workbooks applied it, or after (the client never learns it was applied)."""
    original = sb.wb.dispatch
    calls = [0]

    def dispatch(request):
        body = request.get_data(as_text=True)
        is_lock = request.method == "PUT" and "api_data" in request.path and "owner" in body
        if is_lock and (("%22owner%22%3Anull" in body) == releasing) and calls[0] < times:
            calls[0] += 1
            if processed:
                original(request)
            return sb.wb.error_response(503, "lost")
        return original(request)
    sb.wb.dispatch = dispatch
    return calls


@pytest.mark.parametrize("processed", [False, True], ids=["not-applied", "applied-answer-lost"])
def test_a_failed_lock_release_is_retried_so_the_next_run_is_not_blocked(sb, processed):
    people(sb, 2)
    assert sb.run().code == 0                      # the lock row exists from here on
    people(sb, 2, prefix="q")
    calls = fail_lock_write(sb, releasing=True, processed=processed)
    result = sb.run()
    assert calls == [1] and result.code == 0, result.output
    assert lock_holder(sb) is None
    people(sb, 1, prefix="r")
    assert "people: 1 created" in sb.run().summary


@pytest.mark.parametrize("processed", [False, True], ids=["not-applied", "applied-answer-lost"])
def test_a_failed_lock_take_does_not_leave_the_lock_behind(sb, processed):
    people(sb, 2)
    assert sb.run().code == 0
    people(sb, 2, prefix="q")
    calls = fail_lock_write(sb, releasing=False, processed=processed)
    result = sb.run()
    assert calls == [1] and result.code == 1, result.output
    assert lock_holder(sb) is None
    assert "people: 2 created" in sb.run().summary


def test_an_unexpected_answer_to_the_lock_release_does_not_replace_the_runs_outcome(sb):
    """The run's work is done and saved; a release Workbooks refuses with an answer we did not
    expect (here a 400) is reported as a warning, and the lock is left to its TTL."""
    people(sb, 2)
    assert sb.run().code == 0
    people(sb, 2, prefix="q")
    original, calls = sb.wb.dispatch, [0]

    def dispatch(request):
        body = request.get_data(as_text=True)
        if request.method == "PUT" and "api_data" in request.path and "%22owner%22%3Anull" in body:
            calls[0] += 1
            return sb.wb.error_response(400, "refused")
        return original(request)
    sb.wb.dispatch = dispatch
    result = sb.run()
    sb.wb.dispatch = original
    assert calls[0] >= 1
    assert result.code == 0, result.output
    assert "people: 2 created" in result.summary
    assert any("could not release the run lock" in line for line in result.logged("warning")), result.output
    assert lock_holder(sb) is not None                  # left to its TTL
