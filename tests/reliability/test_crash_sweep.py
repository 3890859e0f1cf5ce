"""Suite 1 (issue 7): a crash at every request boundary of a mixed run, then reruns until clean.

The run under test is `mixed_scenario`'s: new organisations and people, updates to linked ones,
a duplicate of each kind and two errors (about 37 requests over both APIs). A fault-free probe
records the run's request sequence; then, for every request k of it and every way to fail:

  reset-before  request k never reaches the API: the connection is reset (RST) first
  reset-after   the API processes request k, then the connection is reset: the server did the
                work and the client never hears (the nasty one for creates and write-backs)
  kill-before   the process is SIGKILLed while request k is in flight, before the API acts on it
  kill-after    the API processes request k and the process is SIGKILLed before it hears back

and then reruns the runner until a run ends clean. Afterwards the oracle (helpers.audit) must
find: each qualifying Workbooks record linked to exactly one Outreach record, every write-back
present, every mapped value equal to its Workbooks source, no healthy record flagged; one more
run makes no Outreach request (nothing re-sent forever), and fresh edits to every record still
reach Outreach (the watermark is not ahead of anything).

A cut-off run (reset modes) must also leave the run lock free: one lost answer must not block
the schedule for the lock's TTL. A killed run cannot free it; the runs under test happen with
Workbooks' clock two hours back, and returning it to the present makes that lock as old as it
would be after its TTL in real life (helpers.expire_stale_lock), so the rerun may take it over.

The full sweep (every point, every mode) is marked slow:

    .venv/bin/python -m pytest -m slow tests/reliability/test_crash_sweep.py     (or: make test-slow)

The default run takes every SAMPLE_STEP-th point of the same list (deterministic, spread over
the modes). Each run prints how many crash points it tried.
"""
from __future__ import annotations

import pytest

from tests.reliability.helpers import (Tripwire, audit, expire_stale_lock, fresh_sandbox, is_clean, lock_holder,
                                       mixed_scenario, run_process, run_until_clean)

MODES = ("reset-before", "reset-after", "kill-before", "kill-after")
CLOCK_BACK = -7200
SAMPLE_STEP = 7


def probe_sequence(tmp_path) -> list[tuple[str, int, str]]:
    """The fault-free run's requests in order: (emulator, its own request number, "METHOD path")."""
    with fresh_sandbox(tmp_path, wb_clock_offset=CLOCK_BACK) as sb:
        mixed_scenario(sb)
        sequence: list[tuple[str, int, str]] = []
        for name, app in (("workbooks", sb.wb), ("outreach", sb.outreach)):
            original, seen = app.dispatch, [0]

            def spy(request, original=original, name=name, seen=seen):
                seen[0] += 1
                sequence.append((name, seen[0], f"{request.method} {request.path}"))
                return original(request)
            app.dispatch = spy
        result = sb.run()
        assert is_clean(result), result.output
        return sequence


def crash_point(tmp_path, mode: str, target: tuple[str, int, str]) -> list[str] | None:
    """One crash point; returns the problems found (empty: the point passed), or None when the
    run never reached request k. The last few requests of a run depend on the clock (whether the
    watermark's second is over decides if `_close_second` asks Workbooks anything), so a point
    near the end may not exist in a given run; those are reported, not failed."""
    server, local, what = target
    with fresh_sandbox(tmp_path, wb_clock_offset=CLOCK_BACK) as sb:
        scenario = mixed_scenario(sb)
        app = sb.wb if server == "workbooks" else sb.outreach
        problems: list[str] = []
        if mode.startswith("reset"):
            fault = app.add_fault(reset=True, when=mode.split("-")[1], skip=local - 1, count=1)
            crashed = sb.run()
            if fault.hits != 1:
                return None
            if crashed.code not in (0, 1):
                problems.append(f"the cut-off run exited {crashed.code}: {crashed.output}")
            if lock_holder(sb):
                # one lost answer must not block the schedule for the lock's TTL
                problems.append(f"the cut-off run left the run lock behind: {crashed.output}")
        else:
            wire = Tripwire(app, local, after=mode == "kill-after")
            try:
                killed = run_process(sb, kill_on=wire.hit)
            finally:
                wire.disarm()
            if not killed.killed:
                return None
        expire_stale_lock(sb, CLOCK_BACK)
        runs = run_until_clean(sb)
        if not is_clean(runs[-1]):
            return problems + [f"no clean run after {len(runs)} reruns; last: {runs[-1].output}"]
        problems += [f"rerun exited {r.code}: {r.summary}" for r in runs if r.code not in (0, 1)]
        found = audit(sb, owners=scenario.owners)
        problems += found.problems
        # Nothing is re-sent forever: one more run costs Outreach nothing.
        sb.reset_counts()
        idle = sb.run()
        if idle.code != 0 or sb.send_requests() or sb.receive_requests() > 3:
            problems.append(f"the run after convergence made {sb.outreach_requests()} Outreach requests: "
                            f"{idle.output}")
        # The watermark is not ahead of reality: new edits to every record all arrive.
        for pid in scenario.people.values():
            sb.wb.edit("people", pid, {"person_job_title": f"Edited {pid}"})
        for oid in scenario.orgs.values():
            sb.wb.edit("organisations", oid, {"industry": f"Industry {oid}"})
        after = run_until_clean(sb)
        if not is_clean(after[-1]):
            problems.append(f"edits after recovery did not sync cleanly: {after[-1].output}")
        problems += [f"after later edits: {p}" for p in audit(sb, owners=scenario.owners).problems]
        return problems


def all_points(sequence) -> list[tuple[str, int, tuple]]:
    return [(mode, k, target) for mode in MODES for k, target in enumerate(sequence, start=1)]


def sweep(tmp_path, points, capsys) -> None:
    failures, unreached = [], 0
    for n, (mode, k, target) in enumerate(points):
        problems = crash_point(tmp_path / f"p{n}", mode, target)
        if problems is None:
            unreached += 1
        elif problems:
            failures.append(f"{mode} at request {k} ({target[0]} {target[2]}):\n    " + "\n    ".join(problems))
    with capsys.disabled():
        print(f"\ncrash sweep: {len(points) - unreached} crash points tried "
              f"({', '.join(sorted({p[0] for p in points}))}; {unreached} beyond the end of their run), "
              f"{len(failures)} failed")
    assert unreached <= len(points) // 10, f"{unreached} of {len(points)} points were never reached"
    assert not failures, f"{len(failures)} of {len(points)} crash points failed:\n" + "\n".join(failures)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return probe_sequence(tmp_path_factory.mktemp("probe"))


def test_probe_covers_every_kind_of_request(sequence):
    """The scenario exercises what the sweep is meant to cut: creates, patches, look-ups and
    write-backs on both sides, and the state writes (lock, watermarks)."""
    kinds = {what.split(" ")[0] + " " + what.split(" ")[1].split("/")[-1] for _, _, what in sequence}
    for wanted in ("POST accounts", "POST prospects", "PATCH 1", "GET prospects", "PUT people.api",
                   "PUT organisations.api", "PUT api_data.api"):
        assert any(k.startswith(wanted.split(" ")[0]) and wanted.split(" ")[1] in k for k in kinds), (wanted, kinds)
    assert len(sequence) >= 30


def test_crash_points_sampled(tmp_path, sequence, capsys):
    points = all_points(sequence)
    sweep(tmp_path, points[::SAMPLE_STEP], capsys)


@pytest.mark.slow
@pytest.mark.timeout(3600)      # every point, every mode: past the suite's default 300 s
def test_crash_at_every_request_boundary(tmp_path, sequence, capsys):
    sweep(tmp_path, all_points(sequence), capsys)
