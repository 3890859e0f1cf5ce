"""An Organisation that reaches Outreach after its People did (issue 14): the People follow it
without being edited. Over HTTP against both emulators; the request counts are the point."""
from __future__ import annotations

import pytest

from tests.sync_harness import Sandbox


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def spy_patches(sb) -> list[dict]:
    """Every PATCH body Outreach receives from now on."""
    bodies: list[dict] = []
    original = sb.outreach.dispatch

    def spy(request):
        if request.method == "PATCH":
            bodies.append(request.get_json())
        return original(request)
    sb.outreach.dispatch = spy
    return bodies


def account_of(sb, person_id: int):
    outreach_id = int(sb.flags("person", person_id)["outreach_id"])
    return sb.outreach.record("prospects", outreach_id)["relationships"]["account"]["data"]


def test_people_synced_before_their_employer_follow_it_without_being_edited(sb):
    org = sb.organisation("Late Ltd", sync=False)
    people = [sb.person(email=f"p{n}@late.example", employer_link=org["id"])["id"] for n in range(5)]
    edited = sb.person(email="edited@late.example", employer_link=org["id"], person_job_title="Buyer")["id"]
    assert sb.run().code == 0
    assert all(account_of(sb, p) is None for p in people + [edited])      # created without an Account

    sb.wb.clock.advance(5)
    sb.wb.edit("organisations", org["id"], {sb.col("organisation", "sync"): True})
    sb.wb.edit("people", edited, {"person_job_title": "Head of Buying"})   # edited in between
    sb.reset_counts()
    patches = spy_patches(sb)
    result = sb.run()
    assert result.code == 0, result.output
    [account] = sb.accounts()
    target = {"type": "account", "id": account["id"]}
    assert all(account_of(sb, p) == target for p in people + [edited])
    # one PATCH per Prospect; the unedited ones carry only the relationship, the edited one its edit too
    assert sb.outreach_requests("PATCH") == len(people) + 1
    by_id = {int(p["data"]["id"]): p["data"] for p in patches}
    for person in people:
        body = by_id[int(sb.flags("person", person)["outreach_id"])]
        assert not body.get("attributes") and body["relationships"] == {"account": {"data": target}}
    body = by_id[int(sb.flags("person", edited)["outreach_id"])]
    assert body["attributes"] == {"title": "Head of Buying"} and body["relationships"] == {"account": {"data": target}}
    assert "6 updated" in result.summary

    sb.wb.clock.advance(5)
    sb.reset_counts()
    idle = sb.run()
    assert idle.code == 0, idle.output
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


def test_a_person_whose_employer_changes_to_an_organisation_synced_later_follows_it(sb):
    first = sb.organisation("First Ltd")
    later = sb.organisation("Later Ltd", sync=False)
    person = sb.person(email="mover@first.example", employer_link=first["id"])["id"]
    assert sb.run().code == 0
    assert account_of(sb, person)["id"] == sb.accounts()[0]["id"]

    sb.wb.clock.advance(5)
    sb.wb.edit("people", person, {"employer_link": later["id"]})       # its new Employer is not synced
    assert sb.run().code == 0
    assert account_of(sb, person) is None

    sb.wb.clock.advance(5)
    sb.wb.edit("organisations", later["id"], {sb.col("organisation", "sync"): True})
    sb.reset_counts()
    patches = spy_patches(sb)
    assert sb.run().code == 0
    account = next(a for a in sb.accounts() if a["attributes"]["name"] == "Later Ltd")
    assert account_of(sb, person) == {"type": "account", "id": account["id"]}
    assert [p["data"].get("attributes") for p in patches] == [None]
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


def test_a_first_backlog_notes_no_organisation_for_its_people(sb):
    """Before the People scan has a watermark it reads every ticked Person anyway: noting the new
    Organisations (one state write per page) and reading their people again would be waste."""
    orgs = [sb.organisation(f"Org {n}")["id"] for n in range(3)]
    for n in range(6):
        sb.person(email=f"first{n}@org.example", employer_link=orgs[n % 3])
    state_writes: list[str] = []
    original = sb.wb.dispatch

    def spy(request):
        if request.method in ("PUT", "POST") and "api_data" in request.path:
            state_writes.append(request.get_data(as_text=True))
        return original(request)
    sb.wb.dispatch = spy
    assert sb.run().code == 0
    assert state_writes and not any("recheck" in body for body in state_writes)
    assert all(account_of(sb, p["id"]) is not None for p in sb.wb.records("people"))


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_organisation_whose_write_back_was_lost_still_brings_its_people_along(sb, when):
    """Crash safety: the note is saved before the Organisation's write-back ("after": the
    write-back landed, its answer was lost); an Organisation whose write-back never landed
    ("before") is adopted by the next run, which notes it again."""
    org = sb.organisation("Lost Ltd", sync=False)
    people = [sb.person(email=f"l{n}@lost.example", employer_link=org["id"])["id"] for n in range(3)]
    assert sb.run().code == 0
    sb.wb.clock.advance(5)
    sb.wb.edit("organisations", org["id"], {sb.col("organisation", "sync"): True})
    # The account is created, then the connection drops on the write-back of its Outreach Id.
    sb.wb.add_fault(method="PUT", path=r"crm/organisations", reset=True, when=when, count=1)
    first = sb.run()
    assert first.code == 1, first.output
    sb.wb.clock.advance(5)
    second = sb.run()
    assert second.code == 0, second.output
    [account] = sb.accounts()
    assert all(account_of(sb, p) == {"type": "account", "id": account["id"]} for p in people)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3
