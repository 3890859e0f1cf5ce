"""Contract tests for writes (reference/workbooks-api.md §4), stamping (§12 item 6), custom fields
(§6), API Data (§9.1) and processes (§9)."""
from __future__ import annotations

import datetime as dt

import pytest
import requests

from tests.emulators.test_workbooks_contract import (UA, api, filters, square,  # noqa: F401  (api: fixture)
                                                     working_set)

UTC = dt.timezone.utc
STALE = "This record cannot be saved since it has already been updated elsewhere."


def at(app, *when) -> None:
    app.clock.set(dt.datetime(*when, tzinfo=UTC))
    app.clock.freeze(True)


# --- §4.2 creates and stamping -------------------------------------------------------------------------------

def test_create_returns_all_fields_and_stamps(api):
    # workbooks-api.md §4.2 (creates return all attributes), §4.3 (lock_version 0), §12 item 6 (stamps)
    at(api.app, 2020, 1, 1, 12, 0, 0)
    response = api.put("crm/people", [{"__method": "POST", "id": 0, "lock_version": 0, "name": "New Person"}],
                       extra=[("_application_name", "OutreachSync")])
    assert response.status_code == 200
    payload = response.json()
    assert payload["success"] is True
    assert "errors" not in payload                                 # §4.2: no top-level errors on success
    assert payload["affected_object_information"] == [{"success": True, "errors": [], "warnings": []}]
    assert payload["flash"] and "updates" in payload
    created = payload["affected_objects"][0]
    assert created["id"] >= 1 and created["lock_version"] == 0
    assert created["object_ref"] == f"PERS-{created['id']}"
    assert created["created_at"] == created["updated_at"] == "Wed Jan 01 12:00:00 UTC 2020"
    assert created["created_by"] == created["updated_by"] == api.app.admin["id"]
    assert created["created_through"] == "OutreachSync"
    assert created["is_deleted"] is False
    assert (created["person_first_name"], created["person_last_name"]) == ("New", "Person")
    assert len(created) > 80                                      # every attribute, not just the sent ones


def test_created_through_defaults_to_user_agent_first_word(api):
    # workbooks-api.md §2.2: _application_name defaults to the first word of the User-Agent
    created = api.create("crm/organisations", name="UA Org")
    assert created["created_through"] == "ContractTest"


def test_updated_at_moves_on_every_real_change(api):
    # workbooks-api.md §12 item 6: updated_at changes on every real modification; created_at stays
    at(api.app, 2024, 3, 1, 9, 0, 0)
    person = api.create("crm/people", name="Stamp Person")
    at(api.app, 2024, 3, 1, 9, 30, 5)
    first = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 0,
                                    "person_job_title": "CTO"}]).json()["affected_objects"][0]
    assert first == {"id": person["id"], "lock_version": 1, "updated_at": "Fri Mar 01 09:30:05 UTC 2024",
                     "person_job_title": "CTO"}
    at(api.app, 2024, 3, 2, 10, 0, 0)
    second = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 1,
                                     "person_job_title": "CEO"}]).json()["affected_objects"][0]
    assert second["updated_at"] == "Sat Mar 02 10:00:00 UTC 2024" and second["lock_version"] == 2
    record = api.app.record("people", person["id"])
    assert record["created_at"] == "Fri Mar 01 09:00:00 UTC 2024"
    assert record["updated_at"] == "Sat Mar 02 10:00:00 UTC 2024"


def test_updated_by_follows_the_acting_user(api):
    # workbooks-api.md §5.1, §12 item 6: updated_by and updated_by_user[...]
    app = api.app
    sam = app.add_user("sam@example.com", "Sam Seller")
    person = app.insert("people", {"name": "Who Changed"})
    sam_key = app.create_api_key(sam["id"])
    body = [("api_key", sam_key), *working_set([{"__method": "PUT", "id": person["id"]}]),
            *square([{"__method": "PUT", "id": person["id"], "lock_version": 0, "person_job_title": "X"}])]
    affected = requests.put(f"{api.url}/crm/people.api", data=body, headers=UA).json()["affected_objects"][0]
    assert affected["updated_by"] == sam["id"]
    assert affected["updated_by_user[login_name]"] == "sam@example.com"
    assert app.record("people", person["id"])["created_by"] == app.admin["id"]


# --- §4.3 lock_version ------------------------------------------------------------------------------------

def test_update_reports_changed_fields_only(api):
    # workbooks-api.md §4.2: affected_objects hold id, the new lock_version and the changed attributes
    org = api.app.insert("organisations", {"name": "Snap Fresh"})
    person = api.app.insert("people", {"name": "Van Tran", "person_job_title": "Engineer"})
    rows = [{"__method": "PUT", "id": person["id"], "lock_version": 0, "person_job_title": "Engineer",
             "employer_link": org["id"]}]
    affected = api.put("crm/people", rows).json()["affected_objects"][0]
    assert set(affected) == {"id", "lock_version", "updated_at", "employer_link", "employer_name", "descriptor"}
    assert affected["lock_version"] == 1
    assert (affected["employer_link"], affected["employer_name"]) == (org["id"], "Snap Fresh")


def test_no_change_update_keeps_lock_version(api):
    # workbooks-api.md §4.3 [O]: nothing changed -> success, same lock_version, only {id, lock_version}
    at(api.app, 2025, 10, 17, 16, 52, 27)
    person = api.app.insert("people", {"name": "Same Same", "person_job_title": "CTO"})
    at(api.app, 2025, 10, 17, 16, 55, 31)
    rows = [{"__method": "PUT", "id": person["id"], "lock_version": 0, "person_job_title": "CTO",
             "name": "Same Same"}]
    payload = api.put("crm/people", rows).json()
    assert payload["success"] is True
    assert payload["affected_objects"] == [{"id": person["id"], "lock_version": 0}]
    assert api.app.record("people", person["id"])["updated_at"] == "Fri Oct 17 16:52:27 UTC 2025"


def test_stale_lock_version_is_200_with_failure_body(api):
    # workbooks-api.md §4.3, §4.4: HTTP 200, failure JSON in the recommended shape
    person = api.app.insert("people", {"name": "Locked Person"})
    api.app.edit("people", person["id"], {"person_job_title": "Edited in the Desktop"})     # now lock_version 1
    response = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 0,
                                       "person_job_title": "Mine"}])
    assert response.status_code == 200
    payload = response.json()
    assert payload["success"] is False
    assert payload["failures"] == [STALE]
    assert payload["errors"] == {"[]": {"lock_version": STALE}}
    assert payload["affected_object_information"] == [
        {"success": False, "errors": {"lock_version": [STALE]}, "warnings": {}}]
    assert payload["affected_objects"] == []
    assert api.app.record("people", person["id"])["person_job_title"] == "Edited in the Desktop"


def test_missing_lock_version_on_update_fails(api):
    # workbooks-api.md §4.3: updates and deletes must send the current lock_version
    person = api.app.insert("people", {"name": "No Version"})
    payload = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": ":no_value:",
                                      "person_job_title": "x"}]).json()
    assert payload["success"] is False and payload["failures"] == [STALE]


# --- §4.1 the square-array format ----------------------------------------------------------------------------

def test_multiple_operations_in_request_order(api):
    # workbooks-api.md §4.1 "Multiple operations": DELETE, PUT and POST in one request, results in order
    app = api.app
    one = app.insert("api_data", {"key": "one", "value": "1"})
    two = app.insert("api_data", {"key": "two", "value": "2"})
    rows = [{"__method": "DELETE", "id": one["id"], "lock_version": 0, "key": "", "value": ""},
            {"__method": "PUT", "id": two["id"], "lock_version": 0, "key": ":no_value:", "value": "22"},
            {"__method": "POST", "id": 0, "lock_version": 0, "key": "three", "value": "3"}]
    payload = api.put("automation/api_data", rows).json()
    assert payload["success"] is True
    objects = payload["affected_objects"]
    assert objects[0] == {"id": one["id"], "lock_version": 1}
    assert (objects[1]["id"], objects[1]["lock_version"], objects[1]["value"]) == (two["id"], 1, "22")
    assert objects[2]["key"] == "three" and objects[2]["lock_version"] == 0
    assert len(payload["affected_object_information"]) == 3
    assert [r["key"] for r in app.records("api_data")] == ["two", "three"]
    assert app.record("api_data", one["id"])["is_deleted"] is True


def test_nested_and_percent_encoded_attribute_names(api):
    # workbooks-api.md §4.1: `main_location[email][]`, often `main_location%5Bemail%5D[]`; the last [] is the row
    body = (f"api_key={api.key}&_ff[]=id&_ft[]=eq&_fc[]=0&__method[]=POST&__method[]=POST&id[]=0&id[]=0"
            "&lock_version[]=0&lock_version[]=0&name[]=Ann+Enc&name[]=Bob+Raw"
            "&main_location%5Bemail%5D[]=ann%40x.test&main_location[email][]=bob%40x.test"
            "&main_location%5Btown%5D%5B%5D=Leeds&main_location%5Btown%5D%5B%5D=York")
    response = api.http.put(f"{api.url}/crm/people.api", data=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.json()["success"] is True
    rows = api.rows("crm/people", [("_select_columns[]", "main_location[email]"),
                                   ("_select_columns[]", "main_location[town]")])
    assert rows == [{"main_location[email]": "ann@x.test", "main_location[town]": "Leeds"},
                    {"main_location[email]": "bob@x.test", "main_location[town]": "York"}]


def test_no_value_and_null_value(api):
    # workbooks-api.md §4.1: :no_value: leaves a field alone, :null_value: sets NULL
    person = api.app.insert("people", {"name": "Null Me", "person_job_title": "CTO", "website": "https://x.test"})
    rows = [{"__method": "PUT", "id": person["id"], "lock_version": 0, "person_job_title": ":null_value:",
             "website": ":no_value:"}]
    affected = api.put("crm/people", rows).json()["affected_objects"][0]
    assert affected["person_job_title"] is None and "website" not in affected
    record = api.app.record("people", person["id"])
    assert (record["person_job_title"], record["website"]) == (None, "https://x.test")


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("t", True), ("on", True), ("1", True), ("yes", True), ("y", True), ("TRUE", True),
    ("Yes", True), ("Y", True), ("True", True),
    ("", False), ("0", False), ("false", False), ("no", False), ("off", False), ("2", False), ("truthy", False),
    ("False", False),
])
def test_boolean_parsing(api, text, expected):
    # workbooks-api.md §4.1, §12 item 7: true/t/on/1/yes/y in any case; anything else, "" too, is false
    created = api.create("crm/people", name="Bool Person", no_email_soliciting=text)
    assert created["no_email_soliciting"] is expected


def test_write_with_json_body(api):
    # DESIGN.md §7 (JSON bodies accepted) with the §4.1 square arrays
    body = {"api_key": api.key, "_method": "PUT", "_ff": ["id"], "_ft": ["eq"], "_fc": ["0"],
            "__method": ["POST"], "id": [0], "lock_version": [0], "name": ["Json Org"],
            "main_location": {"email": ["json@org.test"]}}
    payload = api.http.post(f"{api.url}/crm/organisations.api", json=body).json()
    assert payload["success"] is True
    assert payload["affected_objects"][0]["main_location[email]"] == "json@org.test"


def test_http_delete_verb_deletes(api):
    # workbooks-api.md §1.2 (the HTTP method) with §4.1 rows; __method defaults to the request's verb
    org = api.app.insert("organisations", {"name": "Delete Me"})
    body = [("api_key", api.key), *filters(("id", "eq", str(org["id"]))), ("id[]", str(org["id"])),
            ("lock_version[]", "0")]
    payload = api.http.delete(f"{api.url}/crm/organisations.api", data=body).json()
    assert payload["success"] is True
    assert api.app.record("organisations", org["id"])["is_deleted"] is True


def test_non_square_arrays_are_refused(api):
    # workbooks-api.md §4.1: every record supplies the same set of keys
    body = [("api_key", api.key), *filters(("id", "eq", "0")), ("__method[]", "POST"), ("__method[]", "POST"),
            ("id[]", "0"), ("id[]", "0"), ("lock_version[]", "0"), ("lock_version[]", "0"), ("name[]", "Only One")]
    response = api.http.put(f"{api.url}/crm/people.api", data=body)
    assert response.status_code == 406
    assert api.app.records("people") == []


def test_at_most_100_objects(api):
    # workbooks-api.md §4.1: at most 100 objects per write request
    rows = [{"__method": "POST", "id": 0, "lock_version": 0, "key": f"k{i}", "value": "v"} for i in range(101)]
    refused = api.put("automation/api_data", rows)
    assert refused.status_code == 406
    assert refused.json()["success"] is False
    assert api.app.records("api_data") == []
    accepted = api.put("automation/api_data", rows[:100]).json()
    assert accepted["success"] is True and len(accepted["affected_objects"]) == 100


def test_working_set_filter_is_required(api):
    # workbooks-api.md §4.1: a filter must select the working set
    rows = [{"__method": "POST", "id": 0, "lock_version": 0, "name": "No Filter"}]
    response = api.put("crm/people", rows, where=[])
    assert response.status_code == 406
    assert "_ff" in response.json()["errors"]["[]"]


def test_record_outside_working_set_is_not_changed(api):
    # workbooks-api.md §4.1: updates apply to the records the filter selects
    a = api.app.insert("people", {"name": "In Set"})
    b = api.app.insert("people", {"name": "Out Of Set"})
    rows = [{"__method": "PUT", "id": b["id"], "lock_version": 0, "person_job_title": "Sneaky"}]
    payload = api.put("crm/people", rows, where=filters(("id", "eq", str(a["id"])))).json()
    assert payload["success"] is False
    assert api.app.record("people", b["id"])["person_job_title"] is None


def test_deleted_record_is_no_longer_accessible(api):
    # workbooks-api.md §4.3: a deleted record makes modification fail ("no longer accessible")
    person = api.app.insert("people", {"name": "Deleted Already"})
    api.app.delete("people", person["id"])
    payload = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 1,
                                      "person_job_title": "x"}]).json()
    assert payload["success"] is False
    assert "no longer accessible" in payload["failures"][0]
    assert payload["affected_object_information"][0]["success"] is False
    missing = api.put("crm/people", [{"__method": "PUT", "id": 9999, "lock_version": 0, "name": "x"}]).json()
    assert "no longer accessible" in missing["failures"][0]


def test_delete_bumps_version_and_updated_at(api):
    # workbooks-api.md §3.2 (deleted since T) relies on updated_at moving on delete; §4.3 lock_version
    at(api.app, 2024, 1, 1, 0, 0, 0)
    person = api.app.insert("people", {"name": "To Delete"})
    at(api.app, 2024, 1, 2, 0, 0, 0)
    payload = api.put("crm/people", [{"__method": "DELETE", "id": person["id"], "lock_version": 0}]).json()
    assert payload["affected_objects"] == [{"id": person["id"], "lock_version": 1}]
    record = api.app.record("people", person["id"])
    assert record["is_deleted"] is True and record["updated_at"] == "Tue Jan 02 00:00:00 UTC 2024"
    stale = api.put("crm/people", [{"__method": "DELETE", "id": person["id"], "lock_version": 0}]).json()
    assert stale["success"] is False


# --- §4.6 transactions ---------------------------------------------------------------------------------------

def _mixed_rows(app):
    good = app.insert("people", {"name": "Good Row"})
    rows = [{"__method": "PUT", "id": good["id"], "lock_version": 0, "employer_link": ":no_value:",
             "person_job_title": "Saved?"},
            {"__method": "POST", "id": 0, "lock_version": 0, "employer_link": "99999", "person_job_title": "Bad"},
            {"__method": "POST", "id": 0, "lock_version": 0, "employer_link": ":no_value:",
             "person_job_title": "Created?"}]
    for row in rows[1:]:
        row["name"] = "Row Name"
    rows[0]["name"] = ":no_value:"
    return good, rows


def test_all_or_nothing_by_default(api):
    # workbooks-api.md §4.6: one failing object -> none of the objects are updated
    good, rows = _mixed_rows(api.app)
    payload = api.put("crm/people", rows).json()
    assert payload["success"] is False
    assert payload["affected_objects"] == []
    assert payload["affected_object_information"] == [
        {"success": False, "errors": [], "warnings": []},
        {"success": False, "errors": {"employer_link": ["is not a valid Organisation"]}, "warnings": {}},
        {"success": False, "errors": [], "warnings": []}]
    assert payload["errors"] == {"[]": {"employer_link": "is not a valid Organisation"}}
    assert payload["failures"] == ["Employer link is not a valid Organisation"]
    assert api.app.record("people", good["id"])["person_job_title"] is None
    assert api.app.record("people", good["id"])["lock_version"] == 0
    assert len(api.app.records("people")) == 1


def test_per_object_transactions(api):
    # workbooks-api.md §4.6: `_per_object_transactions=true` saves the good objects; top success false [I]
    good, rows = _mixed_rows(api.app)
    payload = api.put("crm/people", rows, extra=[("_per_object_transactions", "true")]).json()
    assert payload["success"] is False
    assert [i["success"] for i in payload["affected_object_information"]] == [True, False, True]
    assert [o["person_job_title"] for o in payload["affected_objects"]] == ["Saved?", "Created?"]
    assert payload["failures"] == ["Employer link is not a valid Organisation"]
    assert api.app.record("people", good["id"])["person_job_title"] == "Saved?"
    assert sorted(r["person_job_title"] for r in api.app.records("people")) == ["Created?", "Saved?"]


def test_per_object_top_success_switch(api):
    # workbooks-api.md §4.6 [I]: switch per_object_failure_top_success
    api.app.config["per_object_failure_top_success"] = True
    _, rows = _mixed_rows(api.app)
    payload = api.put("crm/people", rows, extra=[("_per_object_transactions", "1")]).json()
    assert payload["success"] is True
    assert "errors" not in payload and "failures" not in payload
    assert [i["success"] for i in payload["affected_object_information"]] == [True, False, True]


def test_per_object_transactions_set_at_login(workbooks_server):
    # workbooks-api.md §2.2, §4.6: `_per_object_transactions` is also a login option
    url, app = workbooks_server.url, workbooks_server.app
    http = requests.Session()
    http.headers.update(UA)
    body = http.post(f"{url}/login.api", data={"api_key": app.create_api_key(), "client": "api", "api_version": "1",
                                                "_per_object_transactions": "true"}).json()
    _, rows = _mixed_rows(app)
    payload = http.put(f"{url}/crm/people.api", data=working_set(rows) + square(rows) +
                       [("_authenticity_token", body["authenticity_token"])]).json()
    assert [i["success"] for i in payload["affected_object_information"]] == [True, False, True]


# --- validation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,field,message", [
    ({"employer_link": "424242"}, "employer_link", "is not a valid Organisation"),
    ({"person_job_title": "x" * 256}, "person_job_title", "is too long (maximum is 255 characters)"),
    ({"employer_link": "twelve"}, "employer_link", "is not a number"),
    ({"assigned_to": "777"}, "assigned_to", "is not a valid queue"),
    ({"name": "", "person_last_name": ":no_value:"}, "name", "can't be blank"),
])
def test_validation_failures(api, fields, field, message):
    # workbooks-api.md §4.4 per-object failure shape; §6.2 strings up to 255 characters
    row = {"__method": "POST", "id": 0, "lock_version": 0, "name": "Valid Name", **fields}
    payload = api.put("crm/people", [row]).json()
    assert payload["success"] is False
    assert payload["affected_object_information"][0]["errors"] == {field: [message]}
    assert payload["affected_object_errors"] == [{field: [message]}]
    assert api.app.records("people") == []


def test_255_characters_are_fine(api):
    # workbooks-api.md §6.2: string up to 255 characters
    assert api.create("crm/people", name="x" * 255)["name"] == "x" * 255


def test_assigned_to_takes_a_person_queue_id(api):
    # workbooks-api.md §7: assigned_to is a queue id of the record's own queue kind
    team = api.app.add_queue("person", "Data Team")
    org_team = api.app.add_queue("organisation", "Org Team")
    person = api.create("crm/people", name="Queued", assigned_to=team["id"])
    assert person["queue_entry[queue[name]]"] == "Data Team" and person["owner_id"] is None
    payload = api.put("crm/organisations", [{"__method": "POST", "id": 0, "lock_version": 0, "name": "O",
                                             "assigned_to": org_team["id"]}]).json()
    assert payload["affected_objects"][0]["queue_entry[queue[name]]"] == "Org Team"


# --- §6 custom fields -----------------------------------------------------------------------------------------

def _create_fields(api, *definitions, extra=()):
    rows = [{"__method": "POST", "id": 0, "lock_version": 0, **d} for d in definitions]
    return api.put("admin/custom_fields", rows, extra=extra).json()


def test_custom_field_create_returns_value_column_name(api):
    # workbooks-api.md §6.1, §6.3, R2.2: value_column_name by the naming rule; status Available
    payload = _create_fields(
        api,
        {"title": "Sync to Outreach", "resource_type": "Private::Crm::Person", "data_type": "boolean"},
        {"title": "Outreach Id", "resource_type": "Private::Crm::Organisation", "data_type": "string"},
        {"title": "Artificial Intelligence/Machine Learning", "resource_type": "Private::Crm::Person",
         "data_type": "string"},
        {"title": "2023 SPEX", "resource_type": "Private::Crm::Person", "data_type": "picklist"})
    assert payload["success"] is True
    objects = payload["affected_objects"]
    assert [o["value_column_name"] for o in objects] == [
        "cf_person_sync_to_outreach", "cf_organisation_outreach_id",
        "cf_person_artificial_intelligencemachine_learning", "cf_person_2023_spex"]
    assert all(o["status"] == "Available" for o in objects)
    assert objects[0]["title"] == "Sync to Outreach" and objects[0]["data_type"] == "boolean"
    assert objects[0]["lock_version"] == 0 and objects[0]["id"] >= 1


def test_custom_field_name_collision_gets_numeric_suffix(api):
    # workbooks-api.md §6.1 [O]: a numeric suffix on collision (e.g. cf_person_genomics_3774)
    first = _create_fields(api, {"title": "Outreach Id", "resource_type": "Private::Crm::Person",
                                 "data_type": "string"})["affected_objects"][0]
    second = _create_fields(api, {"title": "Outreach ID", "resource_type": "Private::Crm::Person",
                                  "data_type": "string"})["affected_objects"][0]
    assert first["value_column_name"] == "cf_person_outreach_id"
    assert second["value_column_name"] == f"cf_person_outreach_id_{second['id']}"
    clash_in_batch = _create_fields(
        api, {"title": "Dup", "resource_type": "Private::Crm::Person", "data_type": "string"},
        {"title": "dup", "resource_type": "Private::Crm::Person", "data_type": "string"})["affected_objects"]
    assert clash_in_batch[0]["value_column_name"] == "cf_person_dup"
    assert clash_in_batch[1]["value_column_name"] == f"cf_person_dup_{clash_in_batch[1]['id']}"


@pytest.mark.parametrize("data_type,sent,shown", [
    ("boolean", "yes", True), ("boolean", "", False),
    ("string", "abc", "abc"), ("text", "long\ntext", "long\ntext"),
    ("uri", "https://web.outreach.io/prospects/1", "https://web.outreach.io/prospects/1"),
    ("url", "https://x.test", "https://x.test"),
    ("date", "2018-01-31", "31 Jan 2018"), ("date", "31 Jan 2018", "31 Jan 2018"),
    ("datetime", "2020-01-01T12:00:00Z", "Wed Jan 01 12:00:00 UTC 2020"),
    ("date_time", "1577880000", "Wed Jan 01 12:00:00 UTC 2020"),
    ("datetime", "Wed Jan 01 13:00:00 +0100 2020", "Wed Jan 01 12:00:00 UTC 2020"),
    ("decimal", "12.50", "12.50"), ("picklist", "Gold", "Gold"),
])
def test_custom_field_values_are_typed(api, data_type, sent, shown):
    # workbooks-api.md §6.2 value formats; §8 datetime inputs (the guessed type names need
    # custom_field_data_types="reference")
    api.app.config["custom_field_data_types"] = "reference"
    payload = _create_fields(api, {"title": "Typed Field", "resource_type": "Private::Crm::Person",
                                   "data_type": data_type})
    column = payload["affected_objects"][0]["value_column_name"]
    person = api.create("crm/people", name="Typed Person", **{column: sent})
    assert person[column] == shown
    assert api.rows("crm/people", [("_select_columns[]", column)]) == [{column: shown}]


def test_records_carry_new_custom_columns_with_defaults(api):
    # workbooks-api.md §6.2 [O]: unset custom fields are null, unset booleans false
    existing = api.app.insert("people", {"name": "Before Fields"})
    flag = api.app.add_custom_field("people", "Outreach Duplicate", "boolean")
    text = api.app.add_custom_field("people", "Outreach Error Message", "text")
    org_flag = api.app.add_custom_field("organisations", "Sync to Outreach", "boolean")
    assert org_flag == "cf_organisation_sync_to_outreach"
    row = api.rows("crm/people", filters(("id", "eq", str(existing["id"]))))[0]
    assert row[flag] is False and row[text] is None
    assert org_flag not in row
    assert api.rows("crm/people", filters((flag, "eq", "0")))[0]["id"] == existing["id"]


def test_custom_field_invalid_values(api):
    # workbooks-api.md §6.2: typed values; a bad date or datetime is a per-object failure
    date_col = api.app.add_custom_field("people", "Some Date", "date")
    when_col = api.app.add_custom_field("people", "Some Time", "datetime")
    for column, value in ((date_col, "31/31/2020"), (when_col, "yesterday"), (when_col, "2020-13-45")):
        payload = api.put("crm/people", [{"__method": "POST", "id": 0, "lock_version": 0, "name": "Bad Date",
                                          column: value}]).json()
        assert payload["success"] is False, value
        assert list(payload["affected_object_information"][0]["errors"]) == [column]


def test_custom_field_attribute_validation_and_tolerance(api):
    # workbooks-api.md §6.3, R2.2: accepted data types; with unverified_attributes the guessed
    # is_hidden/is_required/is_read_only exist; unknown ones are tolerated in api_key mode (§2.1 [O])
    api.app.config["unverified_attributes"] = True
    payload = _create_fields(api, {"title": "Hidden Snapshot", "resource_type": "Private::Crm::Person",
                                   "data_type": "string", "is_hidden": "true", "is_required": "false",
                                   "is_read_only": "1", "no_such_attribute": "x", "description": "d"})
    created = payload["affected_objects"][0]
    assert (created["is_hidden"], created["is_required"], created["is_read_only"]) == (True, False, True)
    bad_type = _create_fields(api, {"title": "Odd", "resource_type": "Private::Crm::Person", "data_type": "blob"})
    assert bad_type["success"] is False
    assert list(bad_type["affected_object_information"][0]["errors"]) == ["data_type"]
    bad_target = _create_fields(api, {"title": "Odd", "resource_type": "Private::Nothing", "data_type": "string"})
    assert list(bad_target["affected_object_information"][0]["errors"]) == ["resource_type"]
    no_title = _create_fields(api, {"title": " ", "resource_type": "Private::Crm::Person", "data_type": "string"})
    assert list(no_title["affected_object_information"][0]["errors"]) == ["title"]


def test_asynchronous_custom_field_is_pending_then_available(api):
    # workbooks-api.md §6.3: `_asynchronous_cf=true`, poll admin/custom_fields until Available
    payload = _create_fields(api, {"title": "Async Field", "resource_type": "Private::Crm::Person",
                                   "data_type": "string"}, extra=[("_asynchronous_cf", "true")])
    created = payload["affected_objects"][0]
    assert created["status"] == "Pending"
    column = created["value_column_name"]
    assert column == "cf_person_async_field"
    api.app.insert("people", {"name": "Waiting"})
    poll = filters(("id", "eq", str(created["id"]))) + [("_select_columns[]", "status")]
    statuses = [api.rows("admin/custom_fields", poll)[0]["status"] for _ in range(3)]
    assert statuses == ["Pending", "Pending", "Available"]              # custom_field_pending_polls = 2
    assert api.rows("admin/custom_fields", filters(("status", "eq", "available")) + poll) == [{"status": "Available"}]
    assert api.rows("crm/people", [("_select_columns[]", column)]) == [{column: None}]


def test_pending_custom_field_column_is_not_usable_yet(api):
    # workbooks-api.md §6.3: "a new field may not be usable at once"
    payload = _create_fields(api, {"title": "Not Yet", "resource_type": "Private::Crm::Person",
                                   "data_type": "boolean"}, extra=[("_asynchronous_cf", "true")])
    column = payload["affected_objects"][0]["value_column_name"]
    api.app.insert("people", {"name": "Anyone"})
    # its column does not exist yet: a filter on it is dropped (unknown_filter_field "ignore",
    # the default) or refused ("error"); selected, it reads null (§3.3)
    assert [r[column] for r in api.rows("crm/people", filters((column, "true", "")) +
                                         [("_select_columns[]", column)])] == [None]
    api.app.config["unknown_filter_field"] = "error"
    assert api.get("crm/people", filters((column, "true", ""))).status_code == 406
    types = api.rows("metadata/types", [("class_names[]", "Private::Crm::Person")])
    assert column not in {f["name"] for f in types[0]["fields"]}
    api.app.config["custom_field_pending_polls"] = 0
    sync = _create_fields(api, {"title": "Right Away", "resource_type": "Private::Crm::Person",
                                "data_type": "boolean"}, extra=[("_asynchronous_cf", "true")])
    assert sync["affected_objects"][0]["status"] == "Available"


def test_custom_field_found_by_title_and_deleted(api):
    # workbooks-api.md §6.1 (look up by title), §6.3 (update and delete with id + lock_version)
    column = api.app.add_custom_field("people", "Outreach URL", "uri")
    found = api.rows("admin/custom_fields", filters(("title", "eq", "Outreach URL"),
                                                     ("resource_type", "eq", "Private::Crm::Person")))
    assert [f["value_column_name"] for f in found] == [column]
    renamed = api.put("admin/custom_fields", [{"__method": "PUT", "id": found[0]["id"], "lock_version": 0,
                                               "title": "Outreach Link"}]).json()
    assert renamed["affected_objects"][0]["title"] == "Outreach Link"
    types = api.rows("metadata/types", [("class_names[]", "Private::Crm::Person")])
    assert {f["name"]: f["title"] for f in types[0]["fields"]}[column] == "Outreach Link"
    deleted = api.put("admin/custom_fields", [{"__method": "DELETE", "id": found[0]["id"], "lock_version": 1}]).json()
    assert deleted["success"] is True
    api.app.insert("people", {"name": "After Delete"})
    assert column not in api.rows("crm/people")[0]
    again = api.app.add_custom_field("people", "Outreach URL", "uri")
    assert again != column and again.startswith("cf_person_outreach_url_")


# --- §9 API Data and processes -----------------------------------------------------------------------------------

def test_api_data_round_trip(api):
    # workbooks-api.md §9.1: create, read by key, update with lock_version, delete; missing key -> total 0
    created = api.create("automation/api_data", key="outreach_sync.tokens", value='{"a": 1}')
    assert created["key"] == "outreach_sync.tokens" and created["lock_version"] == 0
    found = api.get("automation/api_data", [("_filter_json", '[["key","eq","outreach_sync.tokens"]]')]).json()
    assert found["total"] == 1 and found["data"][0]["value"] == '{"a": 1}'
    missing = api.get("automation/api_data", filters(("key", "eq", "nothing"))).json()
    assert (missing["total"], missing["data"]) == (0, [])
    updated = api.put("automation/api_data", [{"__method": "PUT", "id": created["id"], "lock_version": 0,
                                               "value": '{"a": 2}'}]).json()["affected_objects"][0]
    assert updated["lock_version"] == 1 and updated["value"] == '{"a": 2}'
    api.put("automation/api_data", [{"__method": "DELETE", "id": created["id"], "lock_version": 1}])
    assert api.get("automation/api_data").json()["total"] == 0


def test_api_data_long_multibyte_value(api):
    # workbooks-api.md §9.1: values of 100,000 characters, multibyte UTF-8
    value = "é€😀" * 33_334
    created = api.create("automation/api_data", key="big", value=value)
    assert api.rows("automation/api_data", filters(("id", "eq", str(created["id"]))))[0]["value"] == value


def test_api_data_key_is_required(api):
    # workbooks-api.md §9.1: every example stores a key
    payload = api.put("automation/api_data", [{"__method": "POST", "id": 0, "lock_version": 0, "value": "v"}]).json()
    assert payload["success"] is False
    assert payload["affected_object_information"][0]["errors"] == {"key": ["can't be blank"]}


@pytest.mark.parametrize("endpoint", ["automation/scheduled_actions", "automation/web_actions"])
def test_processes_endpoints(api, endpoint):
    # workbooks-api.md §9, R2.3: verified fields plus freely modelled schedule fields
    # (unverified_attributes=True, the emulator's earlier model)
    api.app.config["unverified_attributes"] = True
    created = api.create(endpoint, title="Outreach Send/Receive", name="Outreach Send/Receive",
                         script_name="outreach_send_receive.py", frequency_minutes="1", enabled="true",
                         timeout_seconds="300", parameters='{"dry_run": false}', authenticated_run_as="1",
                         log_level="debug", log_level_expiry="2020-12-10T12:00:00.000Z")
    assert (created["frequency_minutes"], created["enabled"], created["timeout_seconds"]) == (1, True, 300)
    assert created["log_level_expiry"] == "Thu Dec 10 12:00:00 UTC 2020"
    rows = api.rows(endpoint, filters(("script_name", "eq", "outreach_send_receive.py")))
    assert rows[0]["id"] == created["id"] and rows[0]["parameters"] == '{"dry_run": false}'
