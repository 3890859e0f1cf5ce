"""The sync engine, end to end over HTTP against both emulators: every rule of the seed
(seeds/sync-people-to-outreach-prospects.txt) and of DESIGN.md §6."""
from __future__ import annotations

import threading
import time

import pytest

from tests.sync_harness import WEB_URL, Sandbox


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def prospect_by_email(sb, email):
    found = [p for p in sb.prospects() if email in p["attributes"]["emails"]]
    assert len(found) <= 1, found
    return found[0] if found else None


# --- the five conditions and their logic (seed table; DESIGN §6) -----------------------------------

def test_only_records_meeting_conditions_1_2_and_3_are_synced(sb):
    sb.person(email="ok@acme.example")
    sb.person(email="nosync@acme.example", sync=False)                                    # 1 fails
    sb.person(email="error@acme.example", **{sb.col("person", "sync_error"): True})       # 2 fails
    sb.person(email="dup@acme.example", **{sb.col("person", "duplicate"): True})          # 3 fails
    result = sb.run()
    assert result.code == 0, result.output
    assert [p["attributes"]["emails"] for p in sb.prospects()] == [["ok@acme.example"]]
    assert result.summary == ("[notice] people: 1 created, 0 updated, 0 duplicates, 0 errors, 0 pending; "
                              "organisations: 0 created, 0 updated, 0 duplicates, 0 errors, 0 pending; "
                              "received: 0 people updated, 0 opt-outs, 0 sequence states, 0 organisations updated, "
                              "0 errors")


def test_condition_4_or_5_new_or_updated_since_the_watermark(sb):
    linked = sb.person(email="linked@acme.example", person_job_title="CTO")
    assert sb.run().code == 0
    sb.wb.clock.advance(5)
    # 4: never synced (Outreach Id blank), however old its Updated At
    sb.wb.clock.advance(-3600)
    old_new = sb.person(email="old@acme.example")
    sb.wb.clock.advance(3600)
    # neither 4 nor 5: linked and untouched → not selected, no Outreach request
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert prospect_by_email(sb, "old@acme.example") is not None
    assert sb.outreach_requests("PATCH") == 0
    # 5: linked and updated since → selected and patched
    sb.wb.edit("people", linked["id"], {"person_job_title": "CEO"})
    sb.reset_counts()
    assert sb.run().code == 0
    assert prospect_by_email(sb, "linked@acme.example")["attributes"]["title"] == "CEO"
    assert sb.outreach_requests("PATCH") == 1
    assert old_new["id"] != linked["id"]


# --- created: write-back of Id, URL, Last Synced, snapshot ------------------------------------------

def test_new_person_creates_prospect_and_writes_back_id_and_url(sb):
    person = sb.person(email="Ann@Acme.example", person_job_title="CTO")
    result = sb.run()
    assert result.code == 0, result.output
    [prospect] = sb.prospects()
    attrs = prospect["attributes"]
    assert attrs["emails"] == ["ann@acme.example"]
    assert (attrs["firstName"], attrs["lastName"], attrs["title"]) == ("Ann", "Lee", "CTO")
    flags = sb.flags("person", person["id"])
    assert flags["outreach_id"] == str(prospect["id"])
    assert flags["outreach_url"] == f"{WEB_URL}/prospects/{prospect['id']}"
    assert flags["last_synced"] and flags["snapshot"]
    assert not flags["sync_error"] and not flags["duplicate"]


# --- organisations first; employer relation -------------------------------------------------------

def test_employer_is_synced_first_and_related(sb):
    org = sb.organisation("Acme Ltd", website="https://www.acme.example")
    person = sb.person(email="ann@acme.example", employer_link=org["id"])
    assert sb.run().code == 0
    [account] = sb.accounts()
    assert account["attributes"]["name"] == "Acme Ltd"
    prospect = prospect_by_email(sb, "ann@acme.example")
    assert prospect["relationships"]["account"]["data"] == {"type": "account", "id": account["id"]}
    assert sb.flags("organisation", org["id"])["outreach_url"] == f"{WEB_URL}/accounts/{account['id']}"
    assert sb.flags("person", person["id"])["outreach_id"] == str(prospect["id"])


def test_employer_not_qualifying_is_not_created_and_prospect_has_no_relation(sb):
    org = sb.organisation("Hidden Ltd", sync=False)
    sb.person(email="bo@hidden.example", employer_link=org["id"])
    assert sb.run().code == 0
    assert sb.accounts() == []
    prospect = prospect_by_email(sb, "bo@hidden.example")
    assert prospect["relationships"]["account"]["data"] is None


def test_employer_flagged_later_relates_people_edited_afterwards(sb):
    org = sb.organisation("Later Ltd", sync=False)
    person = sb.person(email="cy@later.example", employer_link=org["id"])
    assert sb.run().code == 0
    sb.wb.edit("organisations", org["id"], {sb.col("organisation", "sync"): True})
    sb.wb.edit("people", person["id"], {"person_job_title": "VP"})
    assert sb.run().code == 0
    [account] = sb.accounts()
    assert prospect_by_email(sb, "cy@later.example")["relationships"]["account"]["data"]["id"] == account["id"]


# --- duplicates ------------------------------------------------------------------------------------

def test_duplicate_email_sets_flag_creates_nothing_and_is_skipped_later(sb):
    sb.outreach.insert("prospects", {"emails": ["dana@acme.example"], "firstName": "Dana"})
    person = sb.person(email="dana@acme.example", first="Dana")
    result = sb.run()
    assert result.code == 0, result.output
    assert len(sb.prospects()) == 1
    flags = sb.flags("person", person["id"])
    assert flags["duplicate"] is True and not flags["outreach_id"]
    assert "dana@acme.example" in flags["error_message"]
    assert any("Outreach Duplicate" in line and "PERS-" in line for line in result.logged("warning"))
    assert "1 duplicate," in result.summary
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


def test_two_workbooks_people_with_one_email_create_one_prospect(sb):
    sb.person(email="same@acme.example", first="One")
    second = sb.person(email="same@acme.example", first="Two")
    assert sb.run().code == 0
    assert len(sb.prospects()) == 1
    assert sb.flags("person", second["id"])["duplicate"] is True


# --- permanent errors ---------------------------------------------------------------------------------

def test_excluded_email_domain_sets_error_flag_and_message(sb):
    sb.outreach.config["excluded_domains"] = ["corp.example"]
    person = sb.person(email="me@corp.example")
    other = sb.person(email="fine@acme.example")
    result = sb.run()
    assert result.code == 0, result.output
    flags = sb.flags("person", person["id"])
    assert flags["sync_error"] is True
    assert "excluded" in flags["error_message"] and "me@corp.example" in flags["error_message"]
    assert sb.flags("person", other["id"])["outreach_id"]
    assert any("Outreach Sync Error" in line for line in result.logged("error"))
    assert "1 error," in result.summary


@pytest.mark.parametrize("email, reason", [(None, "no email"), ("not-an-email", "invalid email")])
def test_missing_or_invalid_email_is_a_permanent_error(sb, email, reason):
    person = sb.person(email=email)
    sb.reset_counts()
    assert sb.run().code == 0
    flags = sb.flags("person", person["id"])
    assert flags["sync_error"] is True and reason in flags["error_message"]
    assert sb.outreach_requests("POST") == 0


def test_resetting_the_error_flag_after_a_fix_syncs_the_record(sb):
    person = sb.person(email="broken")
    assert sb.run().code == 0
    sb.wb.edit("people", person["id"], {"main_location[email]": "fixed@acme.example",
                                        sb.col("person", "sync_error"): False})
    assert sb.run().code == 0
    flags = sb.flags("person", person["id"])
    assert flags["outreach_id"] and not flags["sync_error"] and not flags["error_message"]


def test_prospect_deleted_in_outreach_is_a_permanent_error(sb):
    person = sb.person(email="gone@acme.example")
    assert sb.run().code == 0
    sb.outreach.delete("prospects", prospect_by_email(sb, "gone@acme.example")["id"])
    sb.wb.edit("people", person["id"], {"person_job_title": "Left"})
    assert sb.run().code == 0
    flags = sb.flags("person", person["id"])
    assert flags["sync_error"] is True and "no longer exists" in flags["error_message"]


# --- owners -------------------------------------------------------------------------------------------

def test_owner_follows_assigned_to_when_the_user_exists(sb):
    matched = sb.wb.add_user("rep@corp.example", "Rita Rep")
    unmatched = sb.wb.add_user("nobody@corp.example", "No Seat")
    rep_id = sb.outreach.add_user("rep@corp.example", "rita", "Rita", "Rep")
    sb.person(email="p1@acme.example", assigned_to=matched["person_queue_id"])
    sb.person(email="p2@acme.example", assigned_to=unmatched["person_queue_id"])
    assert sb.run().code == 0
    assert prospect_by_email(sb, "p1@acme.example")["relationships"]["owner"]["data"] == {"type": "user", "id": rep_id}
    assert prospect_by_email(sb, "p2@acme.example")["relationships"]["owner"]["data"] is None
    assert sb.outreach_requests("GET", r"/api/v2/users$") == 1   # users read once per run


def test_reassigning_the_owner_patches_only_the_owner(sb):
    first = sb.wb.add_user("a@corp.example", "A Rep")
    second = sb.wb.add_user("b@corp.example", "B Rep")
    sb.outreach.add_user("a@corp.example", "a@corp.example")
    b_id = sb.outreach.add_user("b@corp.example", "b@corp.example")
    person = sb.person(email="owned@acme.example", assigned_to=first["person_queue_id"])
    assert sb.run().code == 0
    sb.wb.edit("people", person["id"], {"assigned_to": second["person_queue_id"]})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("PATCH") == 1
    assert prospect_by_email(sb, "owned@acme.example")["relationships"]["owner"]["data"]["id"] == b_id


# --- change detection and request economy -------------------------------------------------------------

def test_second_run_after_full_sync_makes_no_outreach_request(sb):
    org = sb.organisation("Acme Ltd")
    for n in range(5):
        sb.person(email=f"p{n}@acme.example", employer_link=org["id"])
    assert sb.run().code == 0
    sb.reset_counts()
    echoes = sb.run()               # receive passes Outreach's echoes of what the first run wrote
    assert echoes.code == 0, echoes.output
    assert sb.send_requests() == 0 and sb.record_writes() == 0
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3
    assert sb.wb.total_requests <= 4


def test_editing_one_mapped_field_makes_one_patch_with_only_that_attribute(sb):
    person = sb.person(email="eve@acme.example", person_job_title="CTO")
    assert sb.run().code == 0
    sb.wb.edit("people", person["id"], {"person_job_title": "CEO"})
    sb.reset_counts()
    patches = []
    original = sb.outreach.dispatch

    def spy(request):
        if request.method == "PATCH":
            patches.append(request.get_json())
        return original(request)
    sb.outreach.dispatch = spy
    assert sb.run().code == 0
    # one PATCH and nothing else: the owner is unchanged, so the users list is not even read
    assert sb.outreach_requests("PATCH") == 1
    assert sb.send_requests() == 1
    assert len(patches) == 1
    assert patches[0]["data"]["attributes"] == {"title": "CEO"}
    assert "relationships" not in patches[0]["data"] or not patches[0]["data"]["relationships"]


def test_editing_an_unmapped_field_costs_no_outreach_request(sb):
    person = sb.person(email="fay@acme.example")
    assert sb.run().code == 0
    sb.wb.edit("people", person["id"], {"person_salutation": "Dr"})
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


# --- watermark at one-second resolution --------------------------------------------------------------

def test_same_second_edits_are_neither_missed_nor_resent_forever(sb):
    sb.wb.clock.freeze(True)
    first = sb.person(email="s1@acme.example", person_job_title="A")
    assert sb.run().code == 0
    # Same second as the watermark: an edit and a new record.
    sb.wb.edit("people", first["id"], {"person_job_title": "B"})
    sb.person(email="s2@acme.example")
    assert sb.run().code == 0
    assert prospect_by_email(sb, "s1@acme.example")["attributes"]["title"] == "B"
    assert prospect_by_email(sb, "s2@acme.example") is not None
    for _ in range(2):
        sb.reset_counts()
        assert sb.run().code == 0
        assert sb.send_requests() == 0 and sb.receive_requests() <= 3


# --- crash recovery and races ------------------------------------------------------------------------------

def test_crash_between_create_and_write_back_then_rerun_adopts(sb):
    person = sb.person(email="crash@acme.example")
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", reset=True, count=1)
    first = sb.run()
    assert first.code == 1, first.output
    assert len(sb.prospects()) == 1
    assert not sb.flags("person", person["id"])["outreach_id"]
    second = sb.run()
    assert second.code == 0, second.output
    assert len(sb.prospects()) == 1
    flags = sb.flags("person", person["id"])
    assert flags["outreach_id"] == str(sb.prospects()[0]["id"])
    assert not flags["duplicate"] and not flags["sync_error"]
    assert any("interrupted earlier run" in line for line in second.lines)


def test_user_edit_racing_our_write_back_is_kept_and_synced_next(sb):
    person = sb.person(email="race@acme.example", person_job_title="Old")
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", latency=1.0, count=1)

    def user_edits():
        time.sleep(0.4)
        sb.wb.edit("people", person["id"], {"person_job_title": "Edited by user"})
    editor = threading.Thread(target=user_edits)
    editor.start()
    result = sb.run()
    editor.join()
    assert result.code == 0, result.output
    record = sb.get("person", person["id"])
    assert record["person_job_title"] == "Edited by user"
    assert record[sb.col("person", "outreach_id")]
    sb.run()
    assert prospect_by_email(sb, "race@acme.example")["attributes"]["title"] == "Edited by user"
    assert len(sb.prospects()) == 1


# --- stopping early --------------------------------------------------------------------------------------

def test_hourly_budget_spent_stops_cleanly_and_the_next_hour_carries_on(sb):
    for n in range(6):
        sb.person(email=f"b{n}@acme.example")
    sb.reset_counts()               # the authorisation's own requests (it asks who the user is) aside
    result = sb.run(outreach_hourly_budget=7)       # 3 for receive's polls, 4 for sending
    assert result.code == 0, result.output
    assert "budget" in result.output
    assert 0 < len(sb.prospects()) < 6
    assert sb.outreach_requests(path="") == sb.outreach_requests()   # sanity
    assert sb.outreach.count_of(None, r"/api/v2") <= 7
    import json
    # The tally is saved with the run history (plugin/history.py), in the run's one state write.
    rows = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.run_history"]
    history = json.loads(rows[0]["value"])
    history["budget"]["window_start"] -= 3600            # an hour later
    sb.wb.edit("api_data", rows[0]["id"], {"value": json.dumps(history)})
    assert sb.run().code == 0
    assert len(sb.prospects()) == 6


def test_dry_run_writes_nothing_anywhere(sb):
    sb.organisation("Dry Ltd")
    sb.person(email="dry@acme.example")
    before_state = {r["key"]: r["lock_version"] for r in sb.wb.records("api_data")}
    sb.reset_counts()
    result = sb.run(dry_run=True)
    assert result.code == 0, result.output
    assert sb.prospects() == [] and sb.accounts() == []
    assert {r["key"]: r["lock_version"] for r in sb.wb.records("api_data")} == before_state
    assert sb.outreach.count_of("POST") == 0 and sb.outreach.count_of("PATCH") == 0
    assert sb.wb.count_of("PUT") == 0
    assert "would create" in result.output
    assert result.summary.startswith("[notice] dry run")
    assert "people: 1 created" in result.summary
