"""Contract tests: what the Workbooks emulator refuses in a record, for the receive side that
writes Outreach's data into People and Organisations (reference/workbooks-api.md §4.4 failure
shape, §4.6 per-object transactions, §5.2/§5.3 fields, §6.2 value formats). Each refusal fails
only its own object, named by field, and leaves the record as it was."""
from __future__ import annotations

import pytest

from tests.emulators.test_workbooks_contract import api  # noqa: F401  (api: fixture)

PER_OBJECT = [("_per_object_transactions", "true")]


def update(api, rec: dict, **fields) -> dict:
    return {"__method": "PUT", "id": rec["id"], "lock_version": rec["lock_version"], **fields}


def two_people(api) -> tuple[dict, dict]:
    return api.create("crm/people", name="Ann Good"), api.create("crm/people", name="Bob Bad")


def refused_alone(api, endpoint: str, good: dict, bad: dict, field: str, message: str, **bad_fields) -> dict:
    """PUT a fine change to `good` and `bad_fields` to `bad` in one per-object batch: `bad` fails
    with the §4.4 shape naming `field`, `good` is saved, `bad` is unchanged."""
    before = api.app.record(_kind(endpoint), bad["id"])
    rows = [update(api, good, person_job_title="Saved") if endpoint == "crm/people"
            else update(api, good, industry="Saved"), update(api, bad, **bad_fields)]
    rows = [{**{k: ":no_value:" for r in rows for k in r}, **r} for r in rows]   # square: every key in each
    payload = api.put(endpoint, rows, extra=PER_OBJECT).json()
    assert payload["success"] is False
    assert [i["success"] for i in payload["affected_object_information"]] == [True, False]
    assert payload["affected_object_information"][1]["errors"] == {field: [message]}
    assert payload["affected_object_errors"] == [{}, {field: [message]}]
    assert payload["errors"] == {"[]": {field: message}} and payload["failures"]
    assert [o["id"] for o in payload["affected_objects"]] == [good["id"]]
    assert api.app.record(_kind(endpoint), bad["id"]) == before
    return payload


def _kind(endpoint: str) -> str:
    return endpoint.split("/")[1]


# --- §6.2 / §5.2 lengths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["person_job_title", "person_first_name", "main_location[town]", "linkedin_url"])
def test_a_standard_field_too_long_fails_only_its_object(api, field):
    # workbooks-api.md §6.2 (string: up to 255), §5.2 (the fields), §4.4 shape, §4.6 per object
    good, bad = two_people(api)
    refused_alone(api, "crm/people", good, bad, field, "is too long (maximum is 255 characters)",
                  **{field: "x" * 256})
    assert api.app.record("people", good["id"])["person_job_title"] == "Saved"


def test_the_standard_string_limit_is_a_switch(api):
    # workbooks-api.md §6.2 gives 255 for the string datatype, §5.2 no type per field: switch
    # standard_string_max_length (None: no limit); custom string fields stay at 255 (§6.2)
    column = api.app.add_custom_field("people", "Outreach Sequence", "string")
    person = api.create("crm/people", name="Long Title")
    api.app.config["standard_string_max_length"] = None
    payload = api.put("crm/people", [update(api, person, person_job_title="x" * 300)]).json()
    assert payload["success"] is True
    assert api.app.record("people", person["id"])["person_job_title"] == "x" * 300
    refused = api.put("crm/people", [update(api, api.app.record("people", person["id"]), **{column: "y" * 256})]).json()
    assert refused["affected_object_errors"] == [{column: ["is too long (maximum is 255 characters)"]}]
    api.app.config["standard_string_max_length"] = 40
    short = api.put("crm/people", [update(api, api.app.record("people", person["id"]), person_job_title="z" * 41)]).json()
    assert short["affected_object_errors"] == [{"person_job_title": ["is too long (maximum is 40 characters)"]}]


def test_an_organisation_field_too_long(api):
    # workbooks-api.md §5.3 (Organisation fields), §6.2, §4.6
    good, bad = api.create("crm/organisations", name="Good Org"), api.create("crm/organisations", name="Bad Org")
    refused_alone(api, "crm/organisations", good, bad, "main_location[street_address]",
                  "is too long (maximum is 255 characters)", **{"main_location[street_address]": "s" * 256})


# --- §6.2 picklists ------------------------------------------------------------------------------------------

def test_an_unknown_picklist_value_fails_only_its_object(api):
    # workbooks-api.md §6.2 ("picklist: the selected value string"), §6.3 (picklist_id), switch
    # picklist_values_enforced [I]: a value outside the field's picklist fails its object
    column = api.app.add_custom_field("people", "Tier", "picklist", picklist=["Gold", "Silver"])
    good, bad = two_people(api)
    refused_alone(api, "crm/people", good, bad, column, "is not included in the list", **{column: "Bronze"})
    refused_alone(api, "crm/people", api.app.record("people", good["id"]), bad, column,
                  "is not included in the list", **{column: "gold"})        # exact, case included


def test_picklist_values_blank_and_the_switch(api):
    # workbooks-api.md §6.2 [O]: an unset picklist reads ""; a listed value and blank are taken;
    # switch picklist_values_enforced=False takes anything
    column = api.app.add_custom_field("people", "Tier", "picklist", picklist=["Gold", "Silver"])
    person = api.create("crm/people", name="Pick List", **{column: "Silver"})
    assert api.app.record("people", person["id"])[column] == "Silver"
    assert api.put("crm/people", [update(api, person, **{column: ""})]).json()["success"] is True
    assert api.app.record("people", person["id"])[column] == ""
    api.app.config["picklist_values_enforced"] = False
    again = api.app.record("people", person["id"])
    assert api.put("crm/people", [update(api, again, **{column: "Bronze"})]).json()["success"] is True


def test_a_picklist_of_a_seed_and_of_the_api(api, workbooks_server):
    # workbooks-api.md §6.3: a field created through the API with a known picklist_id enforces it;
    # seeds name the values with the `picklist` shorthand
    app = workbooks_server.app
    picklist = app.add_picklist(["Hot", "Cold"], "Temperature")
    made = api.create("admin/custom_fields", title="Temperature", resource_type="Private::Crm::Person",
                      data_type="picklist", picklist_id=str(picklist))
    column = made["value_column_name"]
    person = api.create("crm/people", name="Api Pick")
    failed = api.put("crm/people", [update(api, person, **{column: "Warm"})]).json()
    assert failed["affected_object_errors"] == [{column: ["is not included in the list"]}]
    app.seed({"custom_fields": [{"kind": "organisations", "title": "Size", "data_type": "picklist",
                                 "picklist": ["S", "M"]}]})
    org_column = next(c["value_column_name"] for c in app.records("custom_fields") if c["title"] == "Size")
    with pytest.raises(ValueError, match="is not included in the list"):
        app.insert("organisations", {"name": "Seeded", org_column: "XL"})


# --- §5.2 emails --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("email", ["sam.oduya@sakura-seiki", "two@@at.example", "sp ace@acme.example",
                                   "dot..dot@acme.example", "trailing.@acme.example", "x@acme.c",
                                   "ünï@acme.example", "new\nline@acme.example", "a@-acme.example"])
def test_an_email_workbooks_would_refuse_fails_only_its_object(api, email):
    # workbooks-api.md §5.2 main_location[email]; the reference does not say Workbooks validates
    # emails: switch email_validation, strict default "api" (API writes are checked)
    good, bad = two_people(api)
    refused_alone(api, "crm/people", good, bad, "main_location[email]", "is not a valid email address",
                  **{"main_location[email]": email})


@pytest.mark.parametrize("email", ["sally@acme.com", "o'brien+news@mail.acme.co.uk", "a.b-c_d@x-y.example", ""])
def test_good_emails_and_blank_are_taken(api, email):
    # workbooks-api.md §5.2: ordinary addresses (and blank, which clears the field) are saved
    person = api.create("crm/people", name="Mail Person")
    assert api.put("crm/people", [update(api, person, **{"main_location[email]": email})]).json()["success"] is True


@pytest.mark.parametrize("field", ["home_location[email]", "main_location[alternate_email]"])
def test_every_email_field_is_checked(api, field):
    # workbooks-api.md §5.2: home_location[email], main_location[alternate_email] are emails too
    good, bad = two_people(api)
    refused_alone(api, "crm/people", good, bad, field, "is not a valid email address", **{field: "no-at-sign"})


def test_an_organisation_email_is_checked(api):
    # workbooks-api.md §5.3: organisations have main_location[email] too
    good, bad = api.create("crm/organisations", name="Good Org"), api.create("crm/organisations", name="Bad Org")
    refused_alone(api, "crm/organisations", good, bad, "main_location[email]", "is not a valid email address",
                  **{"main_location[email]": "info@acme"})


def test_email_validation_modes(api):
    # switch email_validation: "api" leaves data already in the database (Python API, seeds) alone;
    # "always" checks them too; "never" checks nothing
    app = api.app
    seeded = app.insert("people", {"name": "Legacy Mail", "main_location[email]": "sam.oduya@sakura-seiki"})
    assert seeded["main_location[email]"] == "sam.oduya@sakura-seiki"
    app.config["email_validation"] = "always"
    with pytest.raises(ValueError, match="is not a valid email address"):
        app.insert("people", {"name": "Checked Mail", "main_location[email]": "nope@nowhere"})
    app.config["email_validation"] = "never"
    person = api.create("crm/people", name="Any Mail")
    assert api.put("crm/people", [update(api, person, **{"main_location[email]": "nope@nowhere"})]).json()["success"]


# --- §5.2 contact preferences ---------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["no_email_soliciting", "no_phone_soliciting"])
def test_no_email_and_no_call_are_writable_booleans_on_people(api, field):
    # workbooks-api.md §5.2 (contact preferences are booleans), §4.1 (true/1, "" false)
    person = api.create("crm/people", name="Opt Person")
    assert person[field] is False
    saved = api.put("crm/people", [update(api, person, **{field: "1"})]).json()
    assert saved["success"] is True and saved["affected_objects"][0][field] is True
    assert api.app.record("people", person["id"])[field] is True
    rows = api.rows("crm/people", [("_ff[]", field), ("_ft[]", "true"), ("_fc[]", ""),
                                   ("_select_columns[]", "id"), ("_select_columns[]", field)])
    assert rows == [{"id": person["id"], field: True}]
    again = api.app.record("people", person["id"])
    cleared = api.put("crm/people", [update(api, again, **{field: ""})]).json()
    assert cleared["affected_objects"][0][field] is False


def test_a_whole_batch_without_per_object_transactions_saves_nothing(api):
    # workbooks-api.md §4.6: by default one refused value fails the whole request
    good, bad = two_people(api)
    rows = [update(api, good, **{"main_location[email]": "ok@acme.com"}),
            update(api, bad, **{"main_location[email]": "bad@acme"})]
    payload = api.put("crm/people", rows).json()
    assert payload["success"] is False and payload["affected_objects"] == []
    assert api.app.record("people", good["id"])["main_location[email]"] is None
