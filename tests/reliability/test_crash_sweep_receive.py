"""Suite 1 over the receive half (issue 13): a crash at every request boundary of a run that
receives, then reruns until clean.

The run under test receives what reps did in Outreach since the last run: job titles corrected
(a `both` field), opt-outs (email, call, one shared by a second Person with the same address),
sequence states, a title changed on both sides (Workbooks wins), a prospect created in Outreach
(left alone). It crashes at request k of a fault-free probe's sequence in one of the four modes of
test_crash_sweep.py (reset before/after the API acts, SIGKILL before/after). Then the oracle:
  * no inbound change lost: every title, opt-out and sequence state is in Workbooks;
  * none applied twice and no echo: one more run sends nothing and writes no record;
  * no Person created; no opt-out ever reverted (checked after every run, crashed or not);
  * the cursors are not ahead: fresh edits in Outreach after all that still arrive.

The default run samples every SAMPLE_STEP-th point; `pytest -m slow` tries them all.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.reliability.helpers import Tripwire, expire_stale_lock, fresh_sandbox, is_clean, lock_holder, \
    run_process, run_until_clean

MODES = ("reset-before", "reset-after", "kill-before", "kill-after")
CLOCK_BACK = -7200
SAMPLE_STEP = 5


@dataclass
class World:
    titled: dict[int, str]          # person id -> the title a rep gave its prospect
    opted_email: list[int]          # people who must have No Email ticked
    opted_call: list[int]
    sequenced: dict[int, str]       # person id -> the state it must show
    conflict: tuple[int, str]       # (person, Workbooks' title that wins)
    people: int                     # how many People exist


def receive_world(sb) -> World:
    """People synced (not under test), then what reps do in Outreach before the run under test."""
    ids = [sb.person(email=f"r{n}@crash.example", first=f"R{n}", person_job_title="Buyer")["id"] for n in range(8)]
    twin = sb.person(email="r2@crash.example", first="Twin", **{sb.col("person", "duplicate"): True})["id"]
    assert is_clean(sb.run())
    sb.run()                              # passes the echoes of those creates
    sb.wb.clock.advance(2)
    sb.outreach.clock.advance(2)
    prospect = {pid: int(sb.flags("person", pid)["outreach_id"]) for pid in ids}
    titled = {ids[0]: "Head of Buying", ids[1]: "Chief Buyer"}
    for pid, title in titled.items():
        sb.outreach.rep_edit("prospects", prospect[pid], {"title": title})
    sb.outreach.opt_out(prospect[ids[2]], "email")
    sb.outreach.opt_out(prospect[ids[3]], "call")
    state = sb.outreach.add_to_sequence(prospect[ids[4]], "Crash course")
    sb.outreach.change_sequence_state(state["id"], "paused")
    sb.outreach.add_to_sequence(prospect[ids[5]], "Crash course")
    sb.outreach.rep_edit("prospects", prospect[ids[6]], {"title": "Outreach's title"})
    sb.wb.edit("people", ids[6], {"person_job_title": "Workbooks' title"})
    sb.outreach.rep_create("prospects", {"emails": ["stranger@crash.example"], "firstName": "Stranger"})
    return World(titled=titled, opted_email=[ids[2], twin], opted_call=[ids[3]],
                 sequenced={ids[4]: "Active – Paused", ids[5]: "Active – Running"},
                 conflict=(ids[6], "Workbooks' title"), people=len(sb.wb.records("people")))


def oracle(sb, world: World) -> list[str]:
    problems = []
    for pid, title in world.titled.items():
        if sb.get("person", pid)["person_job_title"] != title:
            problems.append(f"person {pid}: the rep's title {title!r} was lost")
    for pid in world.opted_email:
        if sb.get("person", pid)["no_email_soliciting"] is not True:
            problems.append(f"person {pid}: the email opt-out was lost")
    for pid in world.opted_call:
        if sb.get("person", pid)["no_phone_soliciting"] is not True:
            problems.append(f"person {pid}: the call opt-out was lost")
    for pid, label in world.sequenced.items():
        if sb.flags("person", pid)["sequence_state"] != label:
            problems.append(f"person {pid}: shows {sb.flags('person', pid)['sequence_state']!r}, not {label!r}")
    pid, title = world.conflict
    prospect = int(sb.flags("person", pid)["outreach_id"])
    if sb.get("person", pid)["person_job_title"] != title or \
            sb.outreach.record("prospects", prospect)["attributes"]["title"] != title:
        problems.append(f"person {pid}: Workbooks' title did not win on both sides")
    if len(sb.wb.records("people")) != world.people:
        problems.append("a Person was created")
    flagged = [p["id"] for p in sb.wb.records("people") if p.get(sb.col("person", "sync_error"))]
    if flagged:
        problems.append(f"healthy People flagged: {flagged}")
    # nothing applied twice, nothing echoing: one more run writes no record and sends nothing
    sb.reset_counts()
    again = sb.run()
    if again.code != 0 or sb.send_requests() or sb.record_writes():
        problems.append(f"the run after convergence sent {sb.send_requests()} requests and wrote "
                        f"{sb.record_writes()} records: {again.output}")
    # the cursors are not ahead: fresh edits in Outreach still arrive
    sb.outreach.clock.advance(2)
    for pid in list(world.titled) + [world.conflict[0]]:
        sb.outreach.rep_edit("prospects", int(sb.flags("person", pid)["outreach_id"]), {"title": "Fresh"})
    fresh = sb.run()
    missed = [pid for pid in list(world.titled) + [world.conflict[0]]
              if sb.get("person", pid)["person_job_title"] != "Fresh"]
    if fresh.code != 0 or missed:
        problems.append(f"fresh Outreach edits did not arrive for {missed}: {fresh.output}")
    return problems


def probe_sequence(tmp_path) -> list[tuple[str, int, str]]:
    with fresh_sandbox(tmp_path, wb_clock_offset=CLOCK_BACK) as sb:
        receive_world(sb)
        sequence: list[tuple[str, int, str]] = []
        for name, app in (("workbooks", sb.wb), ("outreach", sb.outreach)):
            original, seen = app.dispatch, [0]

            def spy(request, original=original, name=name, seen=seen):
                seen[0] += 1
                sequence.append((name, seen[0], f"{request.method} {request.path}"))
                return original(request)
            app.dispatch = spy
        result = sb.run()
        assert is_clean(result) and "received: 2 people updated, 3 opt-outs, 2 sequence states" in result.summary, \
            result.output
        return sequence


def crash_point(tmp_path, mode: str, target: tuple[str, int, str]) -> list[str] | None:
    server, local, _what = target
    with fresh_sandbox(tmp_path, wb_clock_offset=CLOCK_BACK) as sb:
        world = receive_world(sb)
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
                problems.append(f"the cut-off run left the run lock behind: {crashed.output}")
        else:
            wire = Tripwire(app, local, after=mode == "kill-after")
            try:
                killed = run_process(sb, kill_on=wire.hit)
            finally:
                wire.disarm()
            if not killed.killed:
                return None
        opted_now = [pid for pid in world.opted_email if sb.get("person", pid)["no_email_soliciting"] is True]
        expire_stale_lock(sb, CLOCK_BACK)
        runs = run_until_clean(sb)
        if not is_clean(runs[-1]):
            return problems + [f"no clean run after {len(runs)} reruns; last: {runs[-1].output}"]
        problems += [f"rerun exited {r.code}: {r.summary}" for r in runs if r.code not in (0, 1)]
        problems += [f"person {pid}: its opt-out was undone by a rerun" for pid in opted_now
                     if sb.get("person", pid)["no_email_soliciting"] is not True]
        return problems + oracle(sb, world)


def sweep(tmp_path, points) -> None:
    failures, tried = [], 0
    for n, (mode, target) in enumerate(points):
        found = crash_point(tmp_path / f"p{n}", mode, target)
        if found is None:
            continue
        tried += 1
        if found:
            failures.append(f"{mode} at {target}: " + "; ".join(found))
    print(f"\nreceive crash sweep: {tried} crash points tried, {len(failures)} failed")
    assert tried and not failures, "\n".join(failures)


def all_points(tmp_path):
    sequence = probe_sequence(tmp_path / "probe")
    return [(mode, target) for target in sequence for mode in MODES]


def test_receive_crash_points_sampled(tmp_path):
    points = all_points(tmp_path)
    sweep(tmp_path, points[::SAMPLE_STEP])


@pytest.mark.slow
def test_receive_crash_points_all(tmp_path):
    sweep(tmp_path, all_points(tmp_path))
