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
    lookups = sb.outreach_requests("GET", r"/api/v2/(prospects|accounts)$")
    assert lookups <= PEOPLE // 50 + 2 * (ORGS // 50) + 2                    # batched look-ups
    assert sb.outreach_requests() <= 1.05 * created
    assert sb.wb.count_of("PUT", r"crm/people") == PEOPLE // 100             # write-backs batched at 100
    assert sb.wb.count_of("PUT", r"crm/organisations") == ORGS // 100
    assert sb.wb.count_of("GET", r"crm/people") <= 3 * (PEOPLE // 100) + 2   # page, echo check, close

    # the run right after: only our own write-backs touched the records
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests() == 0
    assert sb.wb.total_requests <= 4

    # 1% edited, one mapped field each: exactly one PATCH per edited record, only that attribute
    edited = sb.people[::100]
    for pid in edited:
        sb.wb.edit("people", pid, {"person_job_title": "Head of Things"})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("PATCH") == len(edited)
    assert sb.outreach_requests() == len(edited)
    assert sb.wb.count_of("PUT", r"crm/people") == 1
