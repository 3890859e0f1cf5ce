"""Suite 5b (issue 7): users saving records at random moments *while* runs sync them, with
Workbooks' one-second clock (workbooks-api.md §8) stepping at random points between requests.

test_edit_races.py places each race exactly; this one lets a seeded random schedule place them,
so second boundaries fall between any two requests: between a page read and its write-back,
between two pages, inside the echoes of our own write-backs, around the proof of the
lock_version filter (one database in four does not filter on lock_version). Edits: job title
and last name changes (a new value each time), Sync to Outreach unticked and ticked again, new
people. When the edits stop, runs until clean must leave Outreach equal to the mapping of every
qualifying record (helpers.audit): no edit lost, nothing created twice.

A lost edit found here first (a save in the second the keyset cursor was in, with a lower id,
stamped behind the cursor) is now test_edit_races.test_an_edit_saved_behind_the_cursor….
"""
from __future__ import annotations

import random

import pytest

from tests.reliability.helpers import audit, fresh_sandbox, is_clean, run_until_clean

CI_SEEDS = range(6)
SLOW_SEEDS = range(6, 126)


class UserActivity:
    """Edits and clock steps performed inside the Workbooks emulator, just before it processes a
    request of the run (under its lock, so nothing interleaves any other way)."""

    def __init__(self, sb, rnd: random.Random, people: list[int]) -> None:
        self.sb, self.rnd, self.people = sb, rnd, people
        self.sync = sb.col("person", "sync")
        self.saves = 0
        self._original = sb.wb.dispatch
        sb.wb.dispatch = self._dispatch

    def stop(self) -> None:
        self.sb.wb.dispatch = self._original

    def _dispatch(self, request):
        rnd = self.rnd
        if rnd.random() < 0.4:
            self.sb.wb.clock.advance(rnd.random() * 0.7)
        if request.path.startswith("/crm/") and rnd.random() < 0.3:
            self._save(rnd.choice(self.people))
        return self._original(request)

    def _save(self, pid: int) -> None:
        self.saves += 1
        roll = self.rnd.random()
        if roll < 0.55:
            change = {"person_job_title": f"Title {self.saves}"}
        elif roll < 0.8:
            change = {"person_last_name": f"Last {self.saves}", "name": f"First Last {self.saves}"}
        elif roll < 0.9:
            change = {self.sync: False}
        else:
            change = {self.sync: True, "person_job_title": f"Back {self.saves}"}
        self.sb.wb.edit("people", pid, change)
        if self.rnd.random() < 0.05:
            self.people.append(self.sb.person(email=f"new{self.saves}@acme.example", first="First",
                                              last=f"New {self.saves}")["id"])


def _users_edit_while_runs_sync(tmp_path, seed: int) -> None:
    rnd = random.Random(seed)
    workbooks = {"unfilterable_columns": ["lock_version"]} if seed % 4 == 3 else {}
    with fresh_sandbox(tmp_path / f"seed{seed}", workbooks=workbooks) as sb:
        people = [sb.person(email=f"p{n}@acme.example", first="First", last=f"Last{n}",
                            person_job_title="Start")["id"] for n in range(rnd.choice([120, 230]))]
        if rnd.random() < 0.5:
            assert sb.run().code == 0          # most are linked: their edits are PATCHes
        activity = UserActivity(sb, rnd, people)
        try:
            busy = [sb.run() for _ in range(rnd.choice([1, 2, 3]))]
        finally:
            activity.stop()
        assert all(run.code == 0 for run in busy), [run.output for run in busy]
        sb.wb.clock.advance(2)
        runs = run_until_clean(sb)
        assert is_clean(runs[-1]), runs[-1].output
        problems = audit(sb).problems
        assert problems == [], f"seed {seed}, {activity.saves} saves during the runs: {problems[:10]}"


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_users_editing_while_runs_sync_lose_nothing(tmp_path, seed):
    _users_edit_while_runs_sync(tmp_path, seed)


@pytest.mark.slow
def test_users_editing_while_runs_sync_lose_nothing_thorough(tmp_path):
    for seed in SLOW_SEEDS:
        _users_edit_while_runs_sync(tmp_path, seed)
