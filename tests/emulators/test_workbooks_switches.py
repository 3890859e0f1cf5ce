"""Contract tests for the Workbooks emulator's fidelity switches added after the emulator review:
each switch is pinned under every reading (reference/workbooks-api.md sections cited per test).

  unverified_attributes    §2.1 [O], §2.2, R2.2, R2.3
  custom_field_data_types  §6.3, R2.2 (and §6.2: string custom fields hold 255 characters)
  failure_shape            §4.3, §4.4, R2.4
  unknown_filter_field     §3.2, §11 (in test_workbooks_filters.py)
  accept_json_body         §1.3, issue #2
  unset picklist ""        §6.2 [O]
"""
from __future__ import annotations

import json

import pytest
import requests

from tests.emulators.test_workbooks_contract import (UA, Api, api, filters, square,  # noqa: F401  (api: fixture)
                                                    working_set)

PERSON = "Private::Crm::Person"
STALE = "This record cannot be saved since it has already been updated elsewhere."


def _create(api: Api, endpoint: str, **fields) -> dict:
    """One create; the whole answer (success may be false)."""
    return api.put(endpoint, [{"__method": "POST", "id": 0, "lock_version": 0, **fields}]).json()


def _strict_session(server, key: str) -> tuple[requests.Session, str]:
    """A session logged in with `_strict_attribute_checking=true` (§2.2), and its token."""
    http = requests.Session()
    http.headers.update(UA)
    body = http.post(f"{server.url}/login.api", data={"api_key": key, "client": "api", "api_version": "1",
                                                       "_strict_attribute_checking": "true"}).json()
    return http, body["authenticity_token"]


def _strict_put(server, http: requests.Session, token: str, endpoint: str, rows: list[dict]) -> dict:
    response = http.put(f"{server.url}/{endpoint}.api",
                        data=working_set(rows) + square(rows) + [("_authenticity_token", token)])
    return response.json()


SCHEDULE = {"frequency_minutes": "1", "enabled": "true", "timeout_seconds": "300", "process_channel": "A",
            "last_run_at": "2020-01-01T00:00:00Z", "next_run_at": "2020-01-01T00:01:00Z",
            "parameters": '{"dry_run": false}'}


# --- unverified_attributes ---------------------------------------------------------------------------------

def test_made_up_attributes_are_ignored_in_api_key_mode_by_default(api):
    # unverified_attributes=False (default): R2.2/R2.3 say these API names are not known, and an
    # unknown attribute in API-key mode is silently ignored (§2.1 [O]); selected, it reads null (§3.3)
    field = _create(api, "admin/custom_fields", title="Snapshot", resource_type=PERSON, data_type="string",
                    is_hidden="true", is_required="false", is_read_only="true")
    assert field["success"] is True
    created = field["affected_objects"][0]
    assert not {"is_hidden", "is_required", "is_read_only"} & set(created)
    listed = api.rows("admin/custom_fields", filters(("id", "eq", str(created["id"]))))[0]
    assert "is_hidden" not in listed
    assert api.rows("admin/custom_fields", [("_select_columns[]", "is_hidden")]) == [{"is_hidden": None}]

    process = _create(api, "automation/scheduled_actions", title="Send", script_name="s.py", **SCHEDULE)
    assert process["success"] is True
    stored = api.rows("automation/scheduled_actions")[0]
    assert stored["title"] == "Send" and not set(SCHEDULE) & set(stored)
    picked = api.rows("automation/scheduled_actions", [("_select_columns[]", "enabled"),
                                                       ("_select_columns[]", "parameters")])
    assert picked == [{"enabled": None, "parameters": None}]
    types = api.rows("metadata/types", [("class_names[]", "Private::Automation::ScheduledAction")])
    assert not set(SCHEDULE) & {f["name"] for f in types[0]["fields"]}


def test_made_up_attributes_are_refused_under_strict_checking_by_default(workbooks_server, api):
    # unverified_attributes=False: `_strict_attribute_checking` reports unknown attributes (§2.2)
    http, token = _strict_session(workbooks_server, api.key)
    field = _strict_put(workbooks_server, http, token, "admin/custom_fields",
                        [{"__method": "POST", "id": 0, "lock_version": 0, "title": "Snapshot",
                          "resource_type": PERSON, "data_type": "string", "is_hidden": "true"}])
    assert field["success"] is False
    assert field["affected_object_information"][0]["errors"] == {"is_hidden": ["is not a recognised attribute"]}
    process = _strict_put(workbooks_server, http, token, "automation/web_actions",
                          [{"__method": "POST", "id": 0, "lock_version": 0, "title": "Web", "enabled": "true",
                            "parameters": "{}"}])
    assert process["success"] is False
    assert sorted(process["affected_object_information"][0]["errors"]) == ["enabled", "parameters"]
    assert api.app.records("web_actions") == [] and api.app.records("custom_fields") == []


def test_made_up_attributes_exist_when_switched_on(workbooks_server, api):
    # unverified_attributes=True: the emulator's earlier model (R2.2/R2.3 "the emulator can model
    # them freely"), also under strict checking
    api.app.config["unverified_attributes"] = True
    http, token = _strict_session(workbooks_server, api.key)
    field = _strict_put(workbooks_server, http, token, "admin/custom_fields",
                        [{"__method": "POST", "id": 0, "lock_version": 0, "title": "Snapshot",
                          "resource_type": PERSON, "data_type": "string", "is_hidden": "true"}])
    assert field["success"] is True and field["affected_objects"][0]["is_hidden"] is True
    process = _create(api, "automation/scheduled_actions", title="Send", **SCHEDULE)
    created = process["affected_objects"][0]
    assert (created["frequency_minutes"], created["enabled"], created["timeout_seconds"]) == (1, True, 300)
    assert created["parameters"] == '{"dry_run": false}'


# --- custom_field_data_types, string length ----------------------------------------------------------------

@pytest.mark.parametrize("data_type", ["boolean", "picklist", "iframe", "decimal", "percentage", "string", "date"])
def test_verified_data_types_are_accepted(api, data_type):
    # custom_field_data_types="verified" (default): §6.3 (boolean, picklist, iframe, decimal,
    # percentage) and R2.2 (string, date) show these in public examples
    payload = _create(api, "admin/custom_fields", title=f"F {data_type}", resource_type=PERSON, data_type=data_type)
    assert payload["success"] is True
    assert payload["affected_objects"][0]["status"] == "Available"


@pytest.mark.parametrize("data_type", ["text", "url", "uri", "datetime", "date_time"])
def test_guessed_data_types_are_refused_by_default(api, data_type):
    # custom_field_data_types="verified": R2.2 leaves the URL, date-time (and text) spellings [I]
    payload = _create(api, "admin/custom_fields", title=f"F {data_type}", resource_type=PERSON, data_type=data_type)
    assert payload["success"] is False
    errors = payload["affected_object_information"][0]["errors"]
    assert list(errors) == ["data_type"] and "string" in errors["data_type"][0]
    assert api.app.records("custom_fields") == []


@pytest.mark.parametrize("data_type", ["text", "url", "uri", "datetime", "date_time", "string", "boolean"])
def test_guessed_data_types_are_accepted_under_reference(api, data_type):
    # custom_field_data_types="reference": R2.2 "[I] the emulator should accept string, text, uri,
    # url, date, datetime and date_time"
    api.app.config["custom_field_data_types"] = "reference"
    payload = _create(api, "admin/custom_fields", title=f"F {data_type}", resource_type=PERSON, data_type=data_type)
    assert payload["success"] is True


def test_python_api_accepts_every_type_whatever_the_switch(api):
    # The Python API stands in for the Desktop UI, whose "Date & Time" etc. exist (R2.2, KB-CF)
    column = api.app.add_custom_field("people", "When", "datetime")
    assert column == "cf_person_when"


def test_string_custom_field_holds_at_most_255_characters(api):
    # §6.2 [V]: "string: up to 255 characters"; a longer value fails that object (HTTP 200)
    column = _create(api, "admin/custom_fields", title="Note", resource_type=PERSON,
                     data_type="string")["affected_objects"][0]["value_column_name"]
    person = api.app.insert("people", {"name": "Long"})
    fits = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 0,
                                   column: "x" * 255}]).json()
    assert fits["success"] is True
    too_long = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 1,
                                       column: "y" * 256}])
    assert too_long.status_code == 200
    payload = too_long.json()
    assert payload["success"] is False
    assert payload["affected_object_information"][0]["errors"] == {column: ["is too long (maximum is 255 characters)"]}
    assert api.app.record("people", person["id"])[column] == "x" * 255


def test_unset_picklist_reads_empty_string(api):
    # §6.2 [O]: unset custom fields null, unset booleans false, picklist text ""
    tier = api.app.add_custom_field("people", "Tier", "picklist")
    note = api.app.add_custom_field("people", "Note", "string")
    flag = api.app.add_custom_field("people", "Flag", "boolean")
    api.app.insert("people", {"name": "Unset"})
    row = api.rows("crm/people", [("_select_columns[]", c) for c in (tier, note, flag)])[0]
    assert row == {tier: "", note: None, flag: False}
    assert [r["name"] for r in api.rows("crm/people", filters((tier, "blank", "")) +
                                        [("_select_columns[]", "name")])] == ["Unset"]


# --- failure_shape -----------------------------------------------------------------------------------------

def _stale_write(api: Api) -> dict:
    person = api.app.insert("people", {"name": "Locked"})
    other = api.app.insert("people", {"name": "Free"})
    api.app.edit("people", person["id"], {"person_job_title": "Edited in the Desktop"})      # now version 1
    return api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 0,
                                   "person_job_title": "Mine"},
                                  {"__method": "PUT", "id": other["id"], "lock_version": 0,
                                   "person_job_title": "Also mine"}],
                   extra=[("_per_object_transactions", "true")]).json()


def test_failure_shape_full(api):
    # failure_shape="full" (default): the §4.4 recommendation plus affected_object_errors
    payload = _stale_write(api)
    assert payload["success"] is False
    assert payload["failures"] == [STALE]
    assert payload["errors"] == {"[]": {"lock_version": STALE}}
    assert payload["affected_object_information"][0] == {"success": False, "errors": {"lock_version": [STALE]},
                                                         "warnings": {}}
    assert payload["affected_object_information"][1]["success"] is True
    assert [o["id"] for o in payload["affected_objects"]] == [2]


def test_failure_shape_failures_only(api):
    # failure_shape="failures_only": "the JSON will contain diagnostics in the failures element" (§4.3)
    api.app.config["failure_shape"] = "failures_only"
    payload = _stale_write(api)
    assert set(payload) == {"success", "failures", "affected_objects"}
    assert payload["success"] is False and payload["failures"] == [STALE]


def test_failure_shape_row_errors_only(api):
    # failure_shape="row_errors_only": per-object diagnostics only (§4.4: the shape is unknown)
    api.app.config["failure_shape"] = "row_errors_only"
    payload = _stale_write(api)
    assert set(payload) == {"success", "affected_objects", "affected_object_information"}
    assert payload["success"] is False
    assert payload["affected_object_information"][0]["errors"] == {"lock_version": [STALE]}


# --- accept_json_body --------------------------------------------------------------------------------------

def _json_create(api: Api, name: str) -> requests.Response:
    return api.http.put(f"{api.url}/crm/people.api", json={
        "api_key": api.key, "_ff": ["id"], "_ft": ["eq"], "_fc": ["0"], "__method": ["POST"], "id": [0],
        "lock_version": [0], "name": [name]})


def test_json_body_is_accepted_by_default(api):
    # accept_json_body=True (default): issue #2 asked for JSON bodies; it wins over §1.3
    response = _json_create(api, "Json Person")
    assert response.status_code == 200 and response.json()["success"] is True
    assert api.app.records("people")[0]["name"] == "Json Person"


def test_json_body_is_refused_when_switched_off(api):
    # accept_json_body=False: §1.3 [V] "Non-GET requests must send application/x-www-form-urlencoded"
    api.app.config["accept_json_body"] = False
    response = _json_create(api, "Json Person")
    assert response.status_code == 406
    assert response.json()["success"] is False and "application/json" in response.json()["failures"][0]
    assert api.app.records("people") == []


@pytest.mark.parametrize("accept_json", [True, False])
def test_other_body_content_types_are_refused(api, accept_json):
    # §1.3 [V]: form-urlencoded (multipart for uploads); text/plain is not read, whatever the switch
    api.app.config["accept_json_body"] = accept_json
    rows = [{"__method": "POST", "id": 0, "lock_version": 0, "name": "Plain Person"}]
    body = "&".join(f"{k}={v}" for k, v in [("api_key", api.key), *working_set(rows), *square(rows)])
    plain = api.http.put(f"{api.url}/crm/people.api", data=body.encode(), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 406 and plain.json()["success"] is False
    form = api.http.put(f"{api.url}/crm/people.api", data=body.encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert form.status_code == 200 and form.json()["success"] is True
    multipart = api.http.put(f"{api.url}/crm/people.api",
                             files=[(k, (None, v)) for k, v in [("api_key", api.key), *working_set(rows),
                                                                *square(rows)]])
    assert multipart.status_code == 200 and multipart.json()["success"] is True
    assert [p["name"] for p in api.app.records("people")] == ["Plain Person", "Plain Person"]
    assert json.dumps(api.app.internal_errors) == "[]"
