"""The engine under the strict readings of the Workbooks and Outreach emulators (the fidelity
review's findings): custom fields Workbooks created as 255-character `string` stand-ins
(workbooks-api.md §6.2, R2.2), a pick-up filter Workbooks ignores (§3.2, §11), and an Outreach
`filter[emails]` that matches case exactly or only the primary email (outreach-api.md R2.3)."""
from __future__ import annotations

import pytest

from plugin.workbooks import parse_datetime
from tests.install_helpers import ROOT
from tests.mapping_helpers import bundled
from tests.sync_harness import Sandbox

ADDRESS = {"person_job_title": "Head of Platform Engineering", "main_location[telephone]": "+44 20 7946 0000",
           "main_location[mobile]": "+44 7700 900000", "main_location[street_address]": "1 Long Road\nUnit 7",
           "main_location[town]": "Cambridge", "main_location[county_province_state]": "Cambridgeshire",
           "main_location[postcode]": "cb1 2ab", "main_location[country]": "United Kingdom",
           "website": "https://acme.example", "linkedin_url": "https://www.linkedin.com/in/ann-lee"}


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


@pytest.fixture
def lenient(workbooks_server, outreach_server, tmp_path):
    """Workbooks accepting the guessed `text`/`url`/`datetime` types (custom_field_data_types)."""
    workbooks_server.app.config["custom_field_data_types"] = "reference"
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def _field_type(sb, kind: str, key: str) -> str:
    column = sb.col(kind, key)
    return next(f["data_type"] for f in sb.wb.records("custom_fields") if f["value_column_name"] == column)


# --- 255-character string stand-ins (workbooks-api.md §6.2, R2.2) -------------------------------------------

def test_the_default_install_uses_string_and_date_stand_ins(sb):
    assert [_field_type(sb, "person", k) for k in ("error_message", "snapshot", "outreach_url", "last_synced")] == [
        "string", "string", "string", "date"]


def test_snapshot_fits_a_string_field_and_economy_holds(sb):
    person = sb.person(email="ann@acme.example", **ADDRESS)
    first = sb.run()
    assert first.code == 0, first.output
    flags = sb.flags("person", person["id"])
    assert flags["outreach_id"] and not flags["sync_error"]
    assert 0 < len(flags["snapshot"]) <= 255 and flags["snapshot"].startswith("2")   # the compact form
    assert parse_datetime(flags["last_synced"]) is not None                           # a date stand-in

    sb.wb.clock.advance(5)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3                  # unchanged: no Outreach request (DESIGN §6)

    sb.wb.edit("people", person["id"], {"main_location[town]": "Ely"})
    sb.wb.clock.advance(5)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("PATCH") == 1
    patch = [p for p in sb.prospects() if p["attributes"]["addressCity"] == "Ely"]
    assert len(patch) == 1
    sb.wb.clock.advance(5)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


@pytest.mark.parametrize("reading", ["sb", "lenient"])
def test_a_long_error_message_is_clipped_to_what_the_field_holds(reading, request):
    box = request.getfixturevalue(reading)
    email = "not an email " + "x" * 230                  # invalid: the message quotes it in full
    person = box.person(email=email)
    result = box.run()
    assert result.code == 0, result.output
    flags = box.flags("person", person["id"])
    assert flags["sync_error"] is True
    message = flags["error_message"]
    if reading == "sb":
        assert _field_type(box, "person", "error_message") == "string"
        assert len(message) == 255 and message.endswith("…") and message.startswith("invalid email address")
    else:
        assert _field_type(box, "person", "error_message") == "text"
        assert len(message) > 255 and message.endswith("correct the Email field")
    assert not any("could not write back" in line for line in result.lines)


# --- a pick-up filter Workbooks ignores (workbooks-api.md §3.2, §11; switch unknown_filter_field) -----------

def test_an_ignored_pick_up_filter_never_syncs_everything(sb):
    sb.person(email="never-ticked@acme.example", sync=False)
    sb.organisation(name="Never Ticked Ltd", sync=False)
    # Someone deletes "Sync to Outreach" on People: the recorded column no longer exists, and
    # Workbooks drops a filter on an unknown column (its term matches every record)
    sync_field = next(f for f in sb.wb.records("custom_fields")
                      if f["value_column_name"] == sb.col("person", "sync"))
    sb.wb.delete("custom_fields", sync_field["id"])
    for n in range(3):
        sb.wb.insert("people", {"name": f"Other {n}", "main_location[email]": f"other{n}@acme.example"})

    result = sb.run()

    assert result.code == 0, result.output
    assert sb.prospects() == [] and sb.accounts() == []
    warnings = [line for line in result.logged("warning") if "pick-up query excludes" in line]
    assert len(warnings) == 1, result.output
    assert "Sync to Outreach is not ticked" in warnings[0]
    assert "people: 0 created" in result.summary

    sb.reset_counts()
    again = sb.run()
    assert again.code == 0 and sb.prospects() == []
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


# --- Workbooks rate-limits by redirecting any request to a delaying URL (workbooks-api.md §11) ---------------

def _engine_params(sb) -> dict:
    """The Process Engine's way in (workbooks-api.md §2.4): a session, its cookie on every request."""
    session = sb.wb.create_session()
    return {"_workbooks_session_id": session["session_id"], "_workbooks_username": session["username"],
            "_workbooks_logical_database_id": session["logical_database_id"],
            "_workbooks_api_logging_key": "run-log-key", "_workbooks_client_name": "Process Engine"}


def test_a_redirected_scan_reads_what_it_asked_for_under_the_process_engine(sb):
    """Issue 16 §1, as a new user hit it: Workbooks answers the scan's read (its filter in the
    body, §1.2) with a 302 to a delaying URL. requests followed it as a bodiless GET carrying the
    session cookie, so Workbooks answered every record, unfiltered, and the run carried on (exit 0)
    having read records it never asked for. Followed by hand, each hop carries the same body and
    the run is the one it is without redirects."""
    # a bulk import: enough People that the scan meets its own write-backs and leaves them out,
    # which makes its read long (workbooks-api.md §1.2: such a read travels as a GET body)
    ticked = [sb.person(email=f"ticked{n}@acme.example", first=f"T{n}")["id"] for n in range(250)]
    for n in range(20):
        sb.wb.insert("people", {"name": f"Unticked {n}", "main_location[email]": f"unticked{n}@acme.example"})
    sb.wb.config["rate_limit_redirect_delay"] = 0.05
    sb.wb.add_fault(method="GET", path=r"crm/people\.api", status=302, redirect="delay", min_body=2000, count=2)
    sb.reset_counts()

    result = sb.run(**_engine_params(sb))

    assert result.code == 0, result.output
    reads = [e for e in sb.wb.request_log if e["method"] == "GET" and "crm/people" in e["path"]]
    hops = [(before, after) for before, after in zip(reads, reads[1:]) if after["path"].startswith("/delay/")]
    assert len(hops) == 2
    for before, after in hops:                 # the delaying URL got the very same parameters
        assert after["body_bytes"] == before["body_bytes"] > 0, (before, after)
    assert not [line for line in result.logged("warning") if "pick-up query excludes" in line], result.output
    assert sorted(p["attributes"]["emails"][0] for p in sb.prospects()) == \
        sorted(f"ticked{n}@acme.example" for n in range(250))
    assert all(sb.flags("person", i)["outreach_id"] for i in ticked)
    assert "people: 250 created" in result.summary


# --- Outreach filter[emails]: exact case, primary only (outreach-api.md R2.3) --------------------------------

@pytest.fixture
def case_keeping_mapping(tmp_path, monkeypatch):
    """The default mapping without `lower` on emails: prospects keep the case Workbooks has."""
    text = (ROOT / "mappings" / "default.yaml").read_text(encoding="utf-8")
    assert "transforms: [trim, lower, to_list]" in text
    return bundled(monkeypatch, tmp_path, text.replace("transforms: [trim, lower, to_list]", "transforms: [trim, to_list]"),
                   "case-keeping.yaml")


@pytest.mark.parametrize("switches", [{"email_filter_case_insensitive": False},
                                      {"email_filter_case_insensitive": False, "email_filter_matches": "primary"}])
def test_own_mixed_case_prospect_is_adopted_after_a_crash_under_exact_matching(sb, case_keeping_mapping, switches):
    sb.outreach.config.update(switches)
    sb.extra["mapping"] = case_keeping_mapping
    person = sb.person(email="Ann.Lee@Acme.example")
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", reset=True, count=1)    # write-back lost
    first = sb.run()
    assert first.code == 1, first.output
    [prospect] = sb.prospects()
    assert prospect["attributes"]["emails"] == ["Ann.Lee@Acme.example"]

    second = sb.run()

    assert second.code == 0, second.output
    assert len(sb.prospects()) == 1
    flags = sb.flags("person", person["id"])
    assert flags["outreach_id"] == str(prospect["id"])
    assert not flags["duplicate"] and not flags["sync_error"]
    assert any("interrupted earlier run" in line for line in second.lines)


def test_someone_elses_mixed_case_prospect_is_a_duplicate_under_exact_matching(sb):
    sb.outreach.config["email_filter_case_insensitive"] = False
    sb.outreach.insert("prospects", {"emails": ["Bob@Acme.example"], "firstName": "Bob"})
    person = sb.person(email="Bob@Acme.example", first="Bob")      # the default mapping lower-cases it
    result = sb.run()
    assert result.code == 0, result.output
    assert len(sb.prospects()) == 1
    flags = sb.flags("person", person["id"])
    assert flags["duplicate"] is True and not flags["outreach_id"]


# --- the stale lock_version answer in any shape (workbooks-api.md §4.4, R2.4; switch failure_shape) ---------

@pytest.mark.parametrize("shape", ["full", "failures_only", "row_errors_only"])
def test_a_user_edit_racing_the_write_back_is_kept_whatever_the_failure_shape(sb, shape):
    import threading
    import time

    sb.wb.config["failure_shape"] = shape
    racing = sb.person(email="race@acme.example", person_job_title="Old")
    calm = sb.person(email="calm@acme.example", first="Cal")
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", latency=1.0, count=1)

    def user_edits():
        time.sleep(0.4)
        sb.wb.edit("people", racing["id"], {"person_job_title": "Edited by user"})
    editor = threading.Thread(target=user_edits)
    editor.start()
    result = sb.run()
    editor.join()

    assert result.code == 0, result.output
    for person in (racing, calm):
        flags = sb.flags("person", person["id"])
        assert flags["outreach_id"] and not flags["sync_error"] and not flags["duplicate"], flags
    assert sb.get("person", racing["id"])["person_job_title"] == "Edited by user"
    assert sb.run().code == 0
    titles = {p["attributes"]["emails"][0]: p["attributes"]["title"] for p in sb.prospects()}
    assert titles["race@acme.example"] == "Edited by user" and len(titles) == 2


# --- a PATCH re-sending the prospect's own email (outreach-api.md §5.2; switch patch_unchanged_email_error) ------

@pytest.mark.parametrize("also_edit_title", [False, True])
def test_an_email_outreach_already_holds_after_a_lost_write_back_is_not_an_error(sb, also_edit_title):
    """Run 2 sends the new email but its write-back is cut off, so the snapshot still has the old
    one; run 3 re-sends it and Outreach (on this reading) refuses the PATCH as a duplicate value.
    The email is already there: nothing is flagged, other changes still go out, and the run after
    costs no Outreach request."""
    sb.outreach.config["patch_unchanged_email_error"] = True
    person = sb.person(email="ann@acme.example", person_job_title="Engineer")
    assert sb.run().code == 0
    sb.wb.edit("people", person["id"], {"main_location[email]": "ann.lee@acme.example"})
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", reset=True, count=1)
    assert sb.run().code == 1
    [prospect] = sb.prospects()
    assert prospect["attributes"]["emails"] == ["ann.lee@acme.example"]
    if also_edit_title:
        sb.wb.edit("people", person["id"], {"person_job_title": "Principal Engineer"})

    third = sb.run()
    assert third.code == 0, third.output
    flags = sb.flags("person", person["id"])
    assert not flags["sync_error"] and not flags["duplicate"] and not flags["error_message"], flags
    [prospect] = sb.prospects()
    assert prospect["attributes"]["title"] == ("Principal Engineer" if also_edit_title else "Engineer")
    assert sb.outreach_requests("PATCH") == (3 if also_edit_title else 2)   # run 2, refused, the rest

    sb.wb.clock.advance(5)
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.send_requests() == 0 and sb.receive_requests() <= 3


def test_a_duplicate_value_refusal_for_an_email_another_prospect_holds_stays_an_error(sb):
    """The same 422 must not hide a real clash: when the look-up finds the email on another
    prospect, the person is flagged, not quietly marked as sent."""
    sb.outreach.config["patch_unchanged_email_error"] = True
    sb.outreach.config["reject_duplicate_emails"] = False
    person = sb.person(email="ann@acme.example")
    assert sb.run().code == 0
    sb.outreach.insert("prospects", {"emails": ["shared@acme.example"], "firstName": "Other"})
    sb.wb.edit("people", person["id"], {"main_location[email]": "shared@acme.example"})
    sb.wb.add_fault(method="PUT", path=r"crm/people\.api", reset=True, count=1)
    assert sb.run().code == 1                       # the PATCH goes through; the write-back is cut off
    third = sb.run()
    assert third.code == 0, third.output
    flags = sb.flags("person", person["id"])
    assert flags["sync_error"] is True, flags
    assert "email_hash already exists" in flags["error_message"]
