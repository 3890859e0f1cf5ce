"""Receive (issue 13): what happens in Outreach comes back to Workbooks in the same run, over HTTP
against both emulators — opt-outs (a ratchet), sequence states, mapped `both`/`receive` fields,
echo-freedom both ways, request economy, bad data, dry run."""
from __future__ import annotations

import pytest
import yaml

from plugin.mapping import DEFAULT_MAPPING_PATH
from tests.mapping_helpers import bundled
from tests.sync_harness import Sandbox


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def linked(sb, person_id: int) -> int:
    return int(sb.flags("person", person_id)["outreach_id"])


def synced_person(sb, **fields) -> tuple[int, int]:
    """A Person synced to a Prospect: (person id, prospect id)."""
    person = sb.person(**fields)["id"]
    assert sb.run().code == 0
    sb.wb.clock.advance(2)
    sb.outreach.clock.advance(2)
    return person, linked(sb, person)


def later(sb, seconds: float = 2) -> None:
    sb.wb.clock.advance(seconds)
    sb.outreach.clock.advance(seconds)


def field(sb, person_id: int, key: str):
    return sb.flags("person", person_id).get(key)


def writes(sb) -> int:
    """Workbooks record writes (state rows aside)."""
    return sb.wb.count_of("PUT", r"crm/(people|organisations)")


def custom_mapping(sb, monkeypatch, tmp_path, edit) -> None:
    mapping = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    edit(mapping)
    sb.extra["mapping"] = bundled(monkeypatch, tmp_path, yaml.safe_dump(mapping, allow_unicode=True))


def person_field(mapping: dict, target: str) -> dict:
    return next(f for f in mapping["objects"]["person"]["fields"] if f["target"] == target)


# --- 1. opt-outs: a ratchet ---------------------------------------------------------------------

def test_an_opt_out_in_outreach_ticks_no_email_and_is_never_undone(sb):
    person, prospect = synced_person(sb, email="ann@acme.example")
    sb.outreach.opt_out(prospect, "email")
    result = sb.run()
    assert result.code == 0, result.output
    record = sb.get("person", person)
    assert record["no_email_soliciting"] is True and not record["no_phone_soliciting"]
    assert field(sb, person, "opted_out_at") and field(sb, person, "sequence_state") == "Opted Out"
    assert "1 opt-out" in result.summary
    assert any("No Email ticked" in line for line in result.logged("notice"))

    later(sb)
    sb.outreach.opt_in(prospect, "email")                       # a later opt-in in Outreach
    assert sb.run().code == 0
    assert sb.get("person", person)["no_email_soliciting"] is True
    later(sb)
    sb.wb.edit("people", person, {"person_job_title": "Buyer"})  # a Workbooks edit
    assert sb.run().code == 0
    assert sb.get("person", person)["no_email_soliciting"] is True
    # ...and the Outreach opt-in is not reverted from Workbooks' older opt-out either
    assert sb.outreach.record("prospects", prospect)["attributes"]["emailOptedOut"] is False


def test_a_call_opt_out_ticks_no_call_only(sb):
    person, prospect = synced_person(sb, email="cal@acme.example")
    sb.outreach.opt_out(prospect, "call")
    assert sb.run().code == 0
    record = sb.get("person", person)
    assert record["no_phone_soliciting"] is True and not record["no_email_soliciting"]


def test_the_opt_out_reaches_every_person_with_that_email_even_flagged_ones(sb):
    person, prospect = synced_person(sb, email="twin@acme.example")
    twin = sb.person(email="twin@acme.example", first="Twin", **{sb.col("person", "duplicate"): True})["id"]
    errored = sb.person(email="twin@acme.example", first="Err", **{sb.col("person", "sync_error"): True})["id"]
    outside = sb.person(email="twin@acme.example", first="Out", sync=False)["id"]
    later(sb)
    sb.outreach.opt_out(prospect, "all")
    result = sb.run()
    assert result.code == 0, result.output
    for record_id in (person, twin, errored):
        assert sb.get("person", record_id)["no_email_soliciting"] is True, record_id
    assert not sb.get("person", outside)["no_email_soliciting"]     # not in the sync's scope
    assert "3 opt-outs" in result.summary


def test_no_email_ticked_in_workbooks_opts_the_prospect_out(sb):
    person, prospect = synced_person(sb, email="wb@acme.example")
    sb.wb.edit("people", person, {"no_email_soliciting": True})
    assert sb.run().code == 0
    assert sb.outreach.record("prospects", prospect)["attributes"]["emailOptedOut"] is True
    later(sb)
    sb.reset_counts()
    assert sb.run().code == 0
    assert writes(sb) == 0                       # the echo of our PATCH writes nothing back


# --- 2. sequence states -----------------------------------------------------------------------------

def test_sequence_state_name_and_time_come_back(sb):
    person, prospect = synced_person(sb, email="seq@acme.example")
    state = sb.outreach.add_to_sequence(prospect, "Welcome")
    result = sb.run()
    assert result.code == 0, result.output
    assert field(sb, person, "sequence_state") == "Active – Running"
    assert field(sb, person, "sequence_name") == "Welcome"
    assert field(sb, person, "state_updated_at")
    assert "1 sequence state" in result.summary
    later(sb)
    sb.outreach.change_sequence_state(state["id"], "paused")
    assert sb.run().code == 0
    assert field(sb, person, "sequence_state") == "Active – Paused"


def test_a_prospect_in_several_sequences_shows_a_running_one_before_a_finished_one(sb):
    person, prospect = synced_person(sb, email="multi@acme.example")
    first = sb.outreach.add_to_sequence(prospect, "Nurture")
    later(sb)
    second = sb.outreach.add_to_sequence(prospect, "Webinar")
    assert sb.run().code == 0
    assert (field(sb, person, "sequence_state"), field(sb, person, "sequence_name")) == ("Active – Running", "Webinar")
    later(sb)
    sb.outreach.change_sequence_state(second["id"], "finished")    # the newest change, but finished
    assert sb.run().code == 0
    assert (field(sb, person, "sequence_state"), field(sb, person, "sequence_name")) == ("Active – Running", "Nurture")
    later(sb)
    sb.outreach.change_sequence_state(first["id"], "finished")
    assert sb.run().code == 0
    assert field(sb, person, "sequence_state") == "Finished"


def test_sequence_names_are_read_once_not_per_state(sb):
    people = [synced_person(sb, email=f"s{n}@acme.example") for n in range(3)]
    for _, prospect in people:
        sb.outreach.add_to_sequence(prospect, "Campaign")
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("GET", r"/api/v2/sequences$") == 1
    later(sb)
    for _, prospect in people:
        sb.outreach.add_to_sequence(prospect, "Campaign")          # a second enrolment, same sequence
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("GET", r"/api/v2/sequences$") == 0   # the name is kept in API Data


def test_an_opted_out_prospect_keeps_showing_opted_out(sb):
    person, prospect = synced_person(sb, email="oo@acme.example")
    sb.outreach.add_to_sequence(prospect, "Drip")
    assert sb.run().code == 0
    later(sb)
    sb.outreach.opt_out(prospect, "email")           # Outreach also finishes its sequences
    assert sb.run().code == 0
    assert field(sb, person, "sequence_state") == "Opted Out"


def test_a_deleted_sequence_is_reported_on_the_record_and_changes_nothing_else(sb):
    person, prospect = synced_person(sb, email="del@acme.example")
    state = sb.outreach.add_to_sequence(prospect, "Gone soon")
    sequence = state["relationships"]["sequence"]["data"]["id"]
    sb.outreach.delete_sequence(sequence)
    result = sb.run()
    assert result.code == 0, result.output
    flags = sb.flags("person", person)
    assert not flags["sequence_state"] and not flags["sync_error"]
    assert "Outreach Sequence" in flags["error_message"] and str(sequence) in flags["error_message"]


# --- 3. mapped fields with a direction --------------------------------------------------------------

def test_a_reps_edit_of_a_both_field_comes_back_and_echoes_nothing(sb):
    person, prospect = synced_person(sb, email="rep@acme.example", person_job_title="Buyer")
    sb.outreach.rep_edit("prospects", prospect, {"title": "Head of Buying", "workPhones": ["+44 1", "+44 2"]})
    result = sb.run()
    assert result.code == 0, result.output
    record = sb.get("person", person)
    assert record["person_job_title"] == "Head of Buying"
    assert record["main_location[telephone]"] == "+44 1, +44 2"
    assert "received: 1 people updated" in result.summary
    assert sb.outreach_requests("PATCH") == 0               # nothing sent back: no echo
    later(sb)
    sb.reset_counts()
    idle = sb.run()
    assert idle.code == 0, idle.output
    assert sb.outreach_requests("PATCH") == 0 and writes(sb) == 0


def test_a_both_field_changed_on_both_sides_workbooks_wins_by_default(sb):
    person, prospect = synced_person(sb, email="both@acme.example", person_job_title="Buyer")
    sb.outreach.rep_edit("prospects", prospect, {"title": "Outreach title"})
    sb.wb.edit("people", person, {"person_job_title": "Workbooks title"})
    assert sb.run().code == 0
    assert sb.get("person", person)["person_job_title"] == "Workbooks title"
    assert sb.outreach.record("prospects", prospect)["attributes"]["title"] == "Workbooks title"


def test_a_both_field_changed_on_both_sides_outreach_wins_when_the_mapping_says_so(sb, monkeypatch, tmp_path):
    custom_mapping(sb, monkeypatch, tmp_path, lambda m: person_field(m, "title").update(conflict="outreach_wins"))
    person, prospect = synced_person(sb, email="ow@acme.example", person_job_title="Buyer")
    sb.outreach.rep_edit("prospects", prospect, {"title": "Outreach title"})
    sb.wb.edit("people", person, {"person_job_title": "Workbooks title"})
    assert sb.run().code == 0
    assert sb.get("person", person)["person_job_title"] == "Outreach title"
    assert sb.outreach.record("prospects", prospect)["attributes"]["title"] == "Outreach title"


def test_a_field_changed_in_workbooks_only_is_sent_not_received(sb):
    person, prospect = synced_person(sb, email="wbonly@acme.example", person_job_title="Buyer")
    sb.wb.edit("people", person, {"person_job_title": "Manager"})
    sb.outreach.rep_edit("prospects", prospect, {"firstName": "Annie"})     # touched, title untouched
    assert sb.run().code == 0
    assert sb.outreach.record("prospects", prospect)["attributes"]["title"] == "Manager"
    assert sb.get("person", person)["person_job_title"] == "Manager"


def test_a_receive_only_field(sb, monkeypatch, tmp_path):
    sb.wb.add_custom_field("people", "Outreach Score", "string")

    def edit(mapping):
        mapping["objects"]["person"]["fields"].append(
            {"source": {"custom_field": "Outreach Score"}, "target": "custom9", "direction": "receive"})
    custom_mapping(sb, monkeypatch, tmp_path, edit)
    person, prospect = synced_person(sb, email="ro@acme.example")
    sb.outreach.rep_edit("prospects", prospect, {"custom9": "hot"})
    assert sb.run().code == 0
    column = next(f["value_column_name"] for f in sb.wb.records("custom_fields") if f["title"] == "Outreach Score")
    assert sb.get("person", person)[column] == "hot"
    later(sb)
    sb.wb.edit("people", person, {column: "cold"})           # never sent: it only receives
    sb.reset_counts()
    assert sb.run().code == 0
    assert sb.outreach_requests("PATCH") == 0
    assert sb.outreach.record("prospects", prospect)["attributes"]["custom9"] == "hot"


def test_an_accounts_edit_comes_back_to_its_organisation(sb):
    org = sb.organisation("Acme Ltd", industry="Retail")["id"]
    assert sb.run().code == 0
    later(sb)
    account = int(sb.flags("organisation", org)["outreach_id"])
    sb.outreach.rep_edit("accounts", account, {"industry": "Wholesale"})
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("organisation", org)["industry"] == "Wholesale"
    assert "1 organisations updated" in result.summary


# --- 4. only linked, eligible records -------------------------------------------------------------

def test_an_unlinked_prospect_and_a_flagged_person_receive_no_fields(sb):
    person, prospect = synced_person(sb, email="flag@acme.example", person_job_title="Buyer")
    sb.wb.edit("people", person, {sb.col("person", "sync_error"): True})
    sb.outreach.rep_edit("prospects", prospect, {"title": "Changed"})
    sb.outreach.rep_create("prospects", {"emails": ["stranger@else.example"], "firstName": "Stranger"})
    assert sb.run().code == 0
    assert sb.get("person", person)["person_job_title"] == "Buyer"
    assert not [p for p in sb.wb.records("people") if p.get("main_location[email]") == "stranger@else.example"]


# --- bad data, dry run ----------------------------------------------------------------------------------

def test_a_value_workbooks_refuses_flags_that_record_and_the_others_carry_on(sb):
    bad, bad_prospect = synced_person(sb, email="long@acme.example", person_job_title="Buyer")
    good, good_prospect = synced_person(sb, email="fine@acme.example", person_job_title="Buyer")
    sb.outreach.rep_edit("prospects", bad_prospect, {"title": "T" * 250, "linkedInUrl": "https://l.example/" + "x" * 400})
    sb.outreach.rep_edit("prospects", good_prospect, {"title": "Director"})
    result = sb.run()
    assert result.code == 0, result.output
    flags = sb.flags("person", bad)
    assert flags["sync_error"] and "linkedin_url" in flags["error_message"]
    assert sb.get("person", bad)["person_job_title"] == "Buyer"          # never half-applied
    assert sb.get("person", good)["person_job_title"] == "Director"
    assert "1 error" in result.summary.split("received:")[1]


def test_dry_run_reports_what_receive_would_change_and_writes_nothing(sb):
    person, prospect = synced_person(sb, email="dry@acme.example", person_job_title="Buyer")
    sb.outreach.rep_edit("prospects", prospect, {"title": "Chief"})
    sb.outreach.opt_out(prospect, "email")
    sb.reset_counts()
    result = sb.run(dry_run=True)
    assert result.code == 0, result.output
    assert writes(sb) == 0 and sb.wb.count_of("PUT", r"api_data") == 0
    assert any("would set title → person_job_title 'Buyer' → 'Chief'" in line for line in result.lines)
    assert any("would set the opt-out" in line for line in result.lines)
    assert sb.get("person", person)["person_job_title"] == "Buyer"
    assert result.summary.startswith("[notice] dry run (nothing written)")


# --- economy --------------------------------------------------------------------------------------------

def test_an_idle_run_costs_at_most_three_outreach_gets_and_writes_nothing(sb):
    synced_person(sb, email="idle@acme.example")
    later(sb, 10)
    assert sb.run().code == 0
    later(sb, 10)
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.outreach_requests() <= 3 and sb.outreach_requests("GET") == sb.outreach_requests()
    assert sb.wb.count_of("PUT") == 0 and sb.wb.count_of("POST", r"api_data") == 0


# --- option: People created from Prospects made in Outreach ------------------------------------------

def test_create_people_makes_a_person_and_its_organisation_once(sb, monkeypatch, tmp_path):
    custom_mapping(sb, monkeypatch, tmp_path, lambda m: m.update(receive={"create_people": True}))
    synced_person(sb, email="known@acme.example")
    account = sb.outreach.rep_create("accounts", {"name": "Brand New Ltd"})
    new = sb.outreach.rep_create("prospects", {"emails": ["new.person@brand.example"], "firstName": "Nia",
                                               "lastName": "Okafor", "title": "CTO"},
                                 relationships={"account": account["id"]})
    sb.person(email="known.to.workbooks@acme.example", sync=False)        # in Workbooks, never synced
    sb.outreach.rep_create("prospects", {"emails": ["Known.To.Workbooks@acme.example"], "firstName": "Known"})
    before = sb.outreach.record("prospects", new["id"])
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    # nothing sent back in the same run: the new records' snapshots hold the owner and the account
    assert sb.send_requests("PATCH") == 0, [k for k in sb.outreach.counts_by_query if k.startswith("PATCH")]
    assert sb.outreach.record("prospects", new["id"]).get("relationships") == before.get("relationships")
    made = [p for p in sb.wb.records("people") if p.get("main_location[email]") == "new.person@brand.example"]
    assert len(made) == 1
    person = made[0]
    assert (person["person_first_name"], person["person_last_name"], person["person_job_title"]) == ("Nia", "Okafor", "CTO")
    assert person[sb.col("person", "outreach_id")] == str(new["id"]) and person[sb.col("person", "sync")]
    [org] = [o for o in sb.wb.records("organisations") if o["name"] == "Brand New Ltd"]
    assert person["employer_link"] == org["id"] and org[sb.col("organisation", "outreach_id")] == str(account["id"])
    assert len([p for p in sb.wb.records("people")
                if str(p.get("main_location[email]")).lower() == "known.to.workbooks@acme.example"]) == 1
    assert "1 people created" in result.summary and "1 organisations created" in result.summary
    # never twice, and nothing sent back for it
    later(sb)
    sb.reset_counts()
    again = sb.run()
    assert again.code == 0, again.output
    assert len([p for p in sb.wb.records("people") if p.get("main_location[email]") == "new.person@brand.example"]) == 1
    assert sb.send_requests("POST") == 0 and sb.send_requests("PATCH") == 0 and sb.record_writes() == 0


def test_create_people_never_twice_after_a_lost_answer(sb, monkeypatch, tmp_path):
    custom_mapping(sb, monkeypatch, tmp_path, lambda m: m.update(receive={"create_people": True}))
    synced_person(sb, email="first@acme.example")
    sb.outreach.rep_create("prospects", {"emails": ["lost@acme.example"], "firstName": "Lost"})
    sb.wb.add_fault(method="PUT", path=r"crm/people", reset=True, when="after", count=1)   # the create's answer
    assert sb.run().code == 1
    later(sb)
    assert sb.run().code == 0
    assert len([p for p in sb.wb.records("people") if p.get("main_location[email]") == "lost@acme.example"]) == 1


# --- upgrades ------------------------------------------------------------------------------------------

def test_an_authorisation_without_the_sequence_scopes_still_syncs_the_rest(sb):
    person, prospect = synced_person(sb, email="scope@acme.example")
    user = sb.outreach.records("users")[0]["id"]
    tokens = sb.outreach.issue_tokens(user, scopes="prospects.all accounts.all users.read")   # as 0.1 asked
    import json
    [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"]
    stored = json.loads(row["value"])
    stored.update(access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    sb.wb.edit("api_data", row["id"], {"value": json.dumps(stored)})
    sb.outreach.add_to_sequence(prospect, "Hidden")
    sb.outreach.opt_out(prospect, "email")
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("person", person)["no_email_soliciting"] is True            # the rest still arrives
    assert any("sequenceStates.read" in line for line in result.logged("warning"))


def test_an_installation_made_before_receive_runs_and_says_what_to_add(sb):
    from plugin.fields import definitions
    optional = [d.title for d in definitions("person") if d.optional]
    [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.install"]
    import json
    install = json.loads(row["value"])
    for title in optional:
        install["fields"]["person"].pop(title, None)
    sb.wb.edit("api_data", row["id"], {"value": json.dumps(install)})
    for field in [f for f in sb.wb.records("custom_fields") if f["title"] in optional]:
        sb.wb.delete("custom_fields", field["id"])
    person, prospect = synced_person(sb, email="old@acme.example")
    sb.outreach.opt_out(prospect, "email")
    sb.outreach.add_to_sequence(prospect, "Later")
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.get("person", person)["no_email_soliciting"] is True
    assert any("Outreach Sequence State" in line and "run the installer" in line for line in result.logged("warning"))
