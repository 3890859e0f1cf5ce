"""Request economy of the engine on a 1,000-person database (DESIGN.md §9; issue 3's closing
figures): counts, never times."""
from __future__ import annotations

import pytest

from tests.sync_harness import Sandbox

PEOPLE, ORGS, REPS = 1000, 100, 5


@pytest.fixture
def company(workbooks_server, outreach_server, tmp_path):
    sb = Sandbox(workbooks_server, outreach_server, tmp_path).ready()
    queues = []
    for n in range(REPS):
        user = sb.wb.add_user(f"rep{n}@corp.example", f"Rep {n}")
        sb.outreach.add_user(f"rep{n}@corp.example", f"rep{n}@corp.example")
        queues.append(user["person_queue_id"])
    orgs = [sb.organisation(f"Org {n}", website=f"https://org{n}.example")["id"] for n in range(ORGS)]
    sb.people = [sb.person(email=f"p{n}@org{n % ORGS}.example", first=f"P{n}", employer_link=orgs[n % ORGS],
                           assigned_to=queues[n % REPS])["id"] for n in range(PEOPLE)]
    sb.reset_counts()
    return sb


def test_request_counts_per_created_updated_and_unchanged_record(company):
    sb = company
    result = sb.run()
    assert result.code == 0, result.output
    created = PEOPLE + ORGS
    assert sb.outreach_requests("POST") == created
    assert sb.outreach_requests("GET", r"/api/v2/users$") == 1                # users read once
    lookups = sb.send_requests("GET", r"/api/v2/(prospects|accounts)$")
    assert lookups <= PEOPLE // 50 + 2 * (ORGS // 50) + 2                    # batched look-ups
    assert sb.outreach_requests() <= 1.05 * created
    assert sb.wb.count_of("PUT", r"crm/people") == PEOPLE // 100             # write-backs batched at 100
    assert sb.wb.count_of("PUT", r"crm/organisations") == ORGS // 100
    assert sb.wb.count_of("GET", r"crm/people") <= 3 * (PEOPLE // 100) + 2   # page, echo check, close

    # the run right after: only our own writes changed anything; receive passes Outreach's
    # echoes of them (its cursor is state: no record written, nothing sent)...
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.record_writes() == 0
    assert sb.receive_requests() <= 3 + created // 1000
    # ...and the one after that is idle
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3
    assert sb.wb.total_requests <= 4

    # 1% edited, one mapped field each: exactly one PATCH per edited record, only that attribute
    edited = sb.people[::100]
    for pid in edited:
        sb.wb.edit("people", pid, {"person_job_title": "Head of Things"})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("PATCH") == len(edited)
    assert sb.send_requests() == len(edited)
    assert sb.wb.count_of("PUT", r"crm/people") == 1


def test_a_run_stopped_early_lets_the_next_one_skip_the_echoes_of_what_it_wrote(workbooks_server, outreach_server,
                                                                                tmp_path):
    """A backlog larger than one run's budget: the first run stops with records left, and its own
    write-backs lie behind them in the scan's order. It moves the watermark past those echoes
    before it ends (no linked record ahead needs a look), so the next run reads only what is left
    — not one more page per 100 records the first run wrote."""
    sb = Sandbox(workbooks_server, outreach_server, tmp_path).ready()
    total = 800
    for n in range(total):
        sb.person(email=f"b{n}@acme.example", first=f"B{n}")
    sb.wb.clock.advance(5)                                # write-backs a later second than the inserts
    first = sb.run(outreach_hourly_budget=650)
    assert first.code == 0, first.output
    assert "budget" in first.summary
    created = len(sb.prospects())
    assert 500 < created < total
    sb.wb.clock.advance(5)
    sb.reset_counts()
    second = sb.run(outreach_hourly_budget=100_000)
    assert second.code == 0 and " 0 pending" in second.summary, second.output
    assert len(sb.prospects()) == total
    left_pages = -(-(total - created) // 100)
    # first look, the pages left, the empty answer, closing the last second
    assert sb.wb.count_of("GET", r"crm/people") <= left_pages + 3
    assert sb.outreach_requests("PATCH") == 0
