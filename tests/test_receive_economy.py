"""Receive's request economy and echo-freedom at scale (issue 13): 1,000 prospects edited in
Outreach come back in a handful of requests; 1,000 People sent cause no write back; an idle run
polls and writes nothing. Request counts, never wall-clock time."""
from __future__ import annotations

import re

import pytest

from tests.sync_harness import Sandbox

PEOPLE = 1000


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    sb = Sandbox(workbooks_server, outreach_server, tmp_path).ready()
    sync = sb.col("person", "sync")
    sb.people = [sb.wb.insert("people", {"person_first_name": f"P{n}", "person_last_name": "Scale", "name": f"P{n} Scale",
                                         "main_location[email]": f"p{n}@scale.example", "person_job_title": "Buyer",
                                         sync: True})["id"] for n in range(PEOPLE)]
    assert sb.run().code == 0
    later(sb)
    assert sb.run().code == 0           # passes the echoes of the creates
    later(sb)
    return sb


def later(sb, seconds: float = 2) -> None:
    sb.wb.clock.advance(seconds)
    sb.outreach.clock.advance(seconds)


def stage_requests(result, stage: str) -> dict[str, int]:
    found = re.search(rf"{stage}: Outreach (\d+), Workbooks (\d+)", result.output)
    assert found, result.output
    return {"outreach": int(found[1]), "workbooks": int(found[2])}


def prospect_ids(sb) -> list[int]:
    return [int(sb.flags("person", p)["outreach_id"]) for p in sb.people]


def test_a_thousand_prospects_edited_in_outreach_come_back_in_few_requests(sb):
    ids = prospect_ids(sb)
    sb.outreach.activity([{"do": "edit", "kind": "prospects", "id": i, "attributes": {"title": "Director"}} for i in ids])
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert "received: 1000 people updated" in result.summary
    assert all(sb.get("person", p)["person_job_title"] == "Director" for p in sb.people)
    assert sb.send_requests() == 0
    assert sb.outreach.total_requests <= 12
    # the receive half's own Workbooks requests (the runner reports them per stage): reading the
    # linked People, writing them back, its cursor; the run's frame (login, lock, state) aside
    receive = stage_requests(result, "receive")
    assert receive["outreach"] == sb.receive_requests() <= 12
    assert receive["workbooks"] <= 25, result.output
    # and nothing of it echoes: the next run sends nothing and writes no record
    later(sb)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.record_writes() == 0


def test_a_send_of_a_thousand_changed_people_writes_nothing_back(sb):
    for person in sb.people:
        sb.wb.edit("people", person, {"person_job_title": "Manager"})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests("PATCH") == PEOPLE
    later(sb)
    sb.reset_counts()
    after = sb.run()                       # receive meets the 1,000 echoes of those PATCHes
    assert after.code == 0, after.output
    assert sb.record_writes() == 0
    assert "received: 0 people updated" in after.summary
    later(sb)
    sb.reset_counts()
    assert sb.run().code == 0              # and the one after that sends nothing for them
    assert sb.send_requests() == 0 and sb.record_writes() == 0
