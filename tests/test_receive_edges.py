"""Receive edge cases found in review: links, echoes, pages, derived fields."""
from __future__ import annotations

import pytest

from tests.sync_harness import Sandbox
from tests.test_receive import custom_mapping, later, linked, synced_person


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def test_received_website_still_reaches_the_accounts_domain(sb):
    """Default mapping: Organisation `website` → `domain` (send) and → `websiteUrl` (both)."""
    org = sb.organisation("Acme Ltd", website="https://old.example")["id"]
    assert sb.run().code == 0
    later(sb)
    account = int(sb.flags("organisation", org)["outreach_id"])
    assert sb.outreach.record("accounts", account)["attributes"]["domain"] == "old.example"
    sb.outreach.rep_edit("accounts", account, {"websiteUrl": "https://new.example"})
    assert sb.run().code == 0
    assert sb.get("organisation", org)["website"] == "https://new.example"
    # Workbooks' website is new.example: the send-only `domain` follows it in the same run ...
    assert sb.outreach.record("accounts", account)["attributes"]["domain"] == "new.example"
    later(sb)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests("PATCH") == 0        # ... and nothing is sent again


def test_a_deleted_sequence_note_does_not_swallow_an_unsent_workbooks_edit(sb):
    person, prospect = synced_person(sb, email="seq@acme.example", person_job_title="Buyer")
    state = sb.outreach.add_to_sequence(prospect, "Gone soon")
    sb.outreach.delete_sequence(state["relationships"]["sequence"]["data"]["id"])
    sb.wb.edit("people", person, {"person_job_title": "Manager"})      # not sent yet
    assert sb.run().code == 0
    # the note is written and the edit sent in the same run; the send's success keeps the note
    assert sb.outreach.record("prospects", prospect)["attributes"]["title"] == "Manager"
    assert "Outreach Sequence" in (sb.flags("person", person)["error_message"] or "")
    later(sb)
    assert sb.run().code == 0
    assert "Outreach Sequence" in (sb.flags("person", person)["error_message"] or "")
    later(sb)
    sb.outreach.add_to_sequence(prospect, "Live one")
    result = sb.run()
    assert result.code == 0, result.output
    flags = sb.flags("person", person)
    assert flags["sequence_state"] == "Active – Running" and not flags["error_message"], flags
    assert "1 sequence state" in result.output, result.output


def test_an_opt_out_is_not_stuck_behind_a_full_page_of_seen_records(sb, monkeypatch):
    """More records inside the 5 s overlap than one page (1,000 in production; 2 here): the
    probe's first page holds only records already applied, so has_work says no forever."""
    from plugin.outreach import OutreachClient
    monkeypatch.setitem(OutreachClient.changed_since.__kwdefaults__, "page_size", 2)
    people = [sb.person(email=f"p{n}@acme.example")["id"] for n in range(3)]
    assert sb.run().code == 0
    later(sb)
    prospects = [linked(sb, p) for p in people]
    # a bulk edit in Outreach: three prospects within the same second
    sb.outreach.activity([{"do": "edit", "kind": "prospects", "id": i, "attributes": {"title": "Director"}}
                          for i in prospects])
    assert sb.run().code == 0
    assert all(sb.get("person", p)["person_job_title"] == "Director" for p in people)
    later(sb, 30)
    extra = sb.person(email="late@acme.example")["id"]      # synced, then opts out in Outreach
    assert sb.run().code == 0
    later(sb, 30)
    # (first run after creating it: the send half's write-back; let that settle)
    assert sb.run().code == 0
    later(sb, 30)
    sb.outreach.opt_out(linked(sb, extra), "email")
    for _ in range(3):
        later(sb, 60)
        result = sb.run()
        assert result.code == 0, result.output
    assert sb.flags("person", extra).get("sequence_state") == "Opted Out" or \
        str(sb.get("person", extra).get("no_email_soliciting")).lower() in ("1", "true"), result.output
    # the burst is settled past: an idle minute reads one page per feed again
    later(sb, 60)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.receive_requests() <= 3, sb.outreach.counts_by_query


def test_a_copy_carrying_the_outreach_id_and_its_snapshot_is_not_trusted(sb):
    """A CSV import (or a copied record) brings every column, the hidden snapshot too."""
    owner = sb.person(email="owner@acme.example", first="Olga")["id"]
    assert sb.run().code == 0
    later(sb)
    record = sb.get("person", owner)
    prospect_id = int(sb.flags("person", owner)["outreach_id"])
    before = sb.outreach.record("prospects", prospect_id)["attributes"]
    copy = sb.person(email="copy@acme.example", first="Carl",
                     **{sb.col("person", "outreach_id"): str(prospect_id),
                        sb.col("person", "snapshot"): record[sb.col("person", "snapshot")]})["id"]
    result = sb.run()
    assert result.code == 0, result.output
    after = sb.outreach.record("prospects", prospect_id)["attributes"]
    assert (after["emails"], after["firstName"]) == (before["emails"], before["firstName"]), \
        (copy, after["emails"], after["firstName"])


def test_a_typed_link_is_not_laundered_by_receive_writing_a_snapshot(sb):
    """Receive runs first and writes a snapshot (without outreach_id) onto a record whose link
    the plugin never made; send then trusts it (links.py: 'legacy' snapshot) and PATCHes."""
    owner = sb.person(email="owner@acme.example", first="Olga")["id"]
    assert sb.run().code == 0
    later(sb)
    prospect_id = int(sb.flags("person", owner)["outreach_id"])
    copy = sb.person(email="copy@acme.example", first="Carl",
                     **{sb.col("person", "outreach_id"): str(prospect_id)})["id"]    # typed in
    sb.outreach.opt_out(prospect_id, "email")                 # the prospect changes in Outreach
    result = sb.run()
    assert result.code == 0, result.output
    after = sb.outreach.record("prospects", prospect_id)["attributes"]
    assert after["emails"] == ["owner@acme.example"], (after["emails"], sb.flags("person", copy))


def test_a_workbooks_opt_out_reaches_the_prospects_same_email_twins(sb):
    person, prospect = synced_person(sb, email="twin@acme.example")
    twin = sb.person(email="twin@acme.example", first="Twin", **{sb.col("person", "duplicate"): True})["id"]
    later(sb)
    sb.wb.edit("people", person, {"no_email_soliciting": True})
    assert sb.run().code == 0                     # PATCHes emailOptedOut: noted as a mere echo
    assert sb.outreach.record("prospects", prospect)["attributes"]["emailOptedOut"] is True
    later(sb)
    assert sb.run().code == 0
    assert sb.get("person", twin)["no_email_soliciting"] is True


def test_a_general_opt_out_received_still_gives_the_prospect_email_opted_out(sb):
    """No Email ticked in Workbooks → emailOptedOut true on the prospect (issue 13 §1), also when
    the tick came from Outreach's general `optedOut`: the receive snapshot must not claim it sent."""
    person, prospect = synced_person(sb, email="gen@acme.example")
    sb.outreach.opt_out(prospect, "all")                     # optedOut only
    assert sb.run().code == 0
    assert sb.get("person", person)["no_email_soliciting"] is True
    later(sb)
    sb.outreach.opt_in(prospect, "all")                      # someone opts them back in, in Outreach
    for _ in range(2):
        later(sb)
        assert sb.run().code == 0
    assert sb.get("person", person)["no_email_soliciting"] is True        # the ratchet holds here
    attrs = sb.outreach.record("prospects", prospect)["attributes"]
    assert attrs.get("emailOptedOut") is True, attrs          # and Outreach should say so too


def test_a_burst_of_more_than_a_page_inside_the_overlap_is_not_read_again_every_minute(sb, monkeypatch):
    from plugin.outreach import OutreachClient
    monkeypatch.setitem(OutreachClient.changed_since.__kwdefaults__, "page_size", 2)
    people = [sb.person(email=f"b{n}@acme.example")["id"] for n in range(3)]
    assert sb.run().code == 0
    later(sb, 30)
    assert sb.run().code == 0
    later(sb, 30)
    for n, person in enumerate(people):            # three reps' edits within the 5 s overlap
        sb.outreach.rep_edit("prospects", linked(sb, person), {"title": f"Lead {n}"})
        later(sb, 1)
    assert sb.run().code == 0
    assert [sb.get("person", p)["person_job_title"] for p in people] == ["Lead 0", "Lead 1", "Lead 2"]
    later(sb, 60)
    assert sb.run().code == 0                      # reads the burst's two pages once more, and settles
    for _ in range(2):
        later(sb, 60)
        sb.reset_counts()
        result = sb.run()
        assert result.code == 0, result.output
        assert sb.receive_requests() == 3, sb.outreach.counts_by_query    # a page per feed
        assert sb.send_requests() == 0
    later(sb)
    sb.outreach.rep_edit("prospects", linked(sb, people[0]), {"title": "Head"})   # the overlap is back
    assert sb.run().code == 0
    assert sb.get("person", people[0])["person_job_title"] == "Head"


def test_a_received_organisation_name_reaches_its_peoples_company(sb, monkeypatch, tmp_path):
    """Organisation name as `both`: a rep renames the account; the People's `company` copies it."""
    def edit(mapping):
        next(f for f in mapping["objects"]["organisation"]["fields"] if f["target"] == "name")["direction"] = "both"
    custom_mapping(sb, monkeypatch, tmp_path, edit)
    org = sb.organisation("Acme Ltd")["id"]
    person = sb.person(email="ann@acme.example", employer_link=org)["id"]
    assert sb.run().code == 0
    later(sb)
    assert sb.run().code == 0
    prospect, account = linked(sb, person), int(sb.flags("organisation", org)["outreach_id"])
    assert sb.outreach.record("prospects", prospect)["attributes"]["company"] == "Acme Ltd"
    later(sb)
    sb.outreach.rep_edit("accounts", account, {"name": "Acme Group"})
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("organisation", org)["name"] == "Acme Group"
    assert sb.outreach.record("prospects", prospect)["attributes"]["company"] == "Acme Group", result.output
    later(sb)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests("PATCH") == 0


def test_an_opt_out_older_than_the_feed_reaches_a_person_ticked_later_and_flagged_duplicate(sb):
    """The feed read the opted-out prospect when no Person had its address; a Person ticked a
    week later is flagged Duplicate by the send half, and must still get No Email."""
    prospect = sb.outreach.rep_create("prospects", {"emails": ["gone@acme.example"], "firstName": "Gina"})
    sb.outreach.opt_out(int(prospect["id"]), "email")
    assert sb.run().code == 0                       # the feed passes it: nobody to tell
    later(sb, 60)
    person = sb.person(email="gone@acme.example", first="Gina")["id"]
    assert sb.run().code == 0
    assert sb.flags("person", person)["duplicate"] is True
    later(sb, 60)
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("person", person)["no_email_soliciting"] is True, result.output
    assert "1 opt-out" in result.output
    assert sb.outreach_requests() == 4              # three feeds and the one read by id
    later(sb, 60)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests() == 3 and sb.record_writes() == 0    # read once, not every minute


def test_an_opt_out_reaches_a_link_proved_without_a_write(sb):
    """Sync was unticked while the prospect opted out; the Person comes back with its snapshot
    lost (an import): the send half proves the link by its marker and sends nothing, so the
    prospect's updatedAt does not move and only a read by id shows receive the opt-out."""
    person, prospect = synced_person(sb, email="back@acme.example", first="Bo")
    sb.wb.edit("people", person, {sb.col("person", "sync"): False})
    later(sb)
    sb.outreach.opt_out(prospect, "email")
    assert sb.run().code == 0
    assert sb.get("person", person)["no_email_soliciting"] is False     # unticked: left alone
    later(sb, 60)
    sb.wb.edit("people", person, {sb.col("person", "sync"): True, sb.col("person", "snapshot"): ""})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests("PATCH") == 0
    later(sb, 60)
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("person", person)["no_email_soliciting"] is True, result.output
