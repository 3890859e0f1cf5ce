"""The Workbooks emulator's Python API, `/_emulator/` control routes, fault shapes, switches that
change transport behaviour, robustness against malformed input, and the command line."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulators.test_workbooks_contract import UA, api, filters  # noqa: F401  (api: fixture)
from tools.emulators.core import ServerHandle
from tools.emulators.workbooks import WorkbooksEmulator, format_date, format_datetime, parse_time, snake_title

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parents[2]


# --- Python API (DESIGN.md §7; used by tests, the demo and the benchmark) -----------------------------------

def test_database_identity_and_admin():
    # workbooks-api.md §2.2: database_name, logical_database_id, database_instance_id
    wb = WorkbooksEmulator()
    assert wb.database == {"name": "Emulated Database", "id": 1, "instance_id": 4242}
    assert wb.admin["login_name"] == "admin@example.com" and wb.admin["person_name"] == "System Admin"
    other = WorkbooksEmulator(database_name="Copy", logical_database_id=9, database_instance_id=77)
    assert other.database == {"name": "Copy", "id": 9, "instance_id": 77}
    other.seed({"database": {"name": "Seeded", "id": 3}})
    assert other.database == {"name": "Seeded", "id": 3, "instance_id": 77}


def test_add_user_creates_personal_queues():
    # workbooks-api.md §7: a user's personal queue has queue_type user and is named after the person
    wb = WorkbooksEmulator()
    user = wb.add_user("sam@example.com", "Sam Seller")
    assert set(user) == {"id", "login_name", "person_name", "person_queue_id", "organisation_queue_id"}
    queue = wb.record("person_queues", user["person_queue_id"])
    assert (queue["name"], queue["queue_type"], queue["owner_id"]) == ("Sam Seller", "user", user["id"])
    assert queue["owner[login_name]"] == "sam@example.com"
    org_queue = wb.record("organisation_queues", user["organisation_queue_id"])
    assert (org_queue["name"], org_queue["queue_type"]) == ("Sam Seller", "user")
    with pytest.raises(ValueError):
        wb.add_user("SAM@example.com", "Again")


def test_add_queue():
    # workbooks-api.md §7: queue_type user/unassigned/shared with owner fields
    wb = WorkbooksEmulator()
    team = wb.add_queue("person", "Data Team")
    assert (team["queue_type"], team["owner_id"], team["type"]) == ("shared", None, "Private::Crm::PersonQueue")
    owned = wb.add_queue("organisation", "Admin's", queue_type="user", owner_user_id=wb.admin["id"])
    assert owned["owner[person_name]"] == "System Admin"
    with pytest.raises(ValueError):
        wb.add_queue("person", "Odd", queue_type="weird")


def test_create_api_key_format():
    # workbooks-api.md §2.1: eight groups of five characters
    wb = WorkbooksEmulator()
    keys = {wb.create_api_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(re.fullmatch(r"\d{5}(-\d{5}){7}", k) for k in keys)


def test_insert_edit_delete_records():
    # workbooks-api.md §4.3 (lock_version on real change only), §12 item 6 (stamps), §3.2 (soft delete)
    wb = WorkbooksEmulator()
    wb.clock.set(dt.datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC))
    wb.clock.freeze(True)
    org = wb.insert("organisations", {"name": "Acme"})
    person = wb.insert("people", {"name": "Ann Able", "employer_link": org["id"], "no_email_soliciting": True})
    assert person["lock_version"] == 0 and person["created_at"] == "Wed Feb 02 02:02:02 UTC 2022"
    assert person["employer_name"] == "Acme" and person["no_email_soliciting"] is True
    wb.clock.advance(60)
    same = wb.edit("people", person["id"], {"name": "Ann Able"})
    assert same["lock_version"] == 0 and same["updated_at"] == "Wed Feb 02 02:02:02 UTC 2022"
    changed = wb.edit("people", person["id"], {"person_job_title": "CFO"})
    assert changed["lock_version"] == 1 and changed["updated_at"] == "Wed Feb 02 02:03:02 UTC 2022"
    wb.delete("people", person["id"])
    assert wb.records("people") == []
    assert [r["id"] for r in wb.records("people", include_deleted=True)] == [person["id"]]
    assert wb.record("people", person["id"])["lock_version"] == 2
    with pytest.raises(ValueError):
        wb.insert("people", {"name": "Bad", "employer_link": 999})
    with pytest.raises(ValueError):
        wb.insert("people", {"name": "Bad", "no_such_field": 1})
    with pytest.raises(LookupError):
        wb.record("people", 12345)


def test_insert_accepts_seed_stamps_and_python_types():
    # DESIGN.md §7 seeding: explicit ids and timestamps; datetimes and booleans as Python values
    wb = WorkbooksEmulator()
    column = wb.add_custom_field("people", "Outreach Last Synced", "datetime")
    rec = wb.insert("people", {"id": 500, "name": "Old Record", "created_at": "2019-05-01T00:00:00Z",
                               "updated_at": dt.datetime(2019, 6, 1, 8, 30, tzinfo=UTC),
                               column: dt.datetime(2019, 6, 2, tzinfo=UTC), "lock_version": 7})
    assert (rec["id"], rec["lock_version"], rec["object_ref"]) == (500, 7, "PERS-500")
    assert rec["created_at"] == "Wed May 01 00:00:00 UTC 2019"
    assert rec["updated_at"] == "Sat Jun 01 08:30:00 UTC 2019"
    assert rec[column] == "Sun Jun 02 00:00:00 UTC 2019"
    assert wb.insert("people", {"name": "Next"})["id"] == 501
    wb.insert("people", {"id": 3, "name": "Lower Id"})
    assert [r["id"] for r in wb.records("people")] == [3, 500, 501]


def test_add_custom_field_naming_rule():
    # workbooks-api.md §6.1: cf_person_/cf_organisation_ prefix, snake title, suffix on collision
    wb = WorkbooksEmulator()
    assert wb.add_custom_field("people", "Sync to Outreach", "boolean") == "cf_person_sync_to_outreach"
    assert wb.add_custom_field("organisation", "Sync to Outreach", "boolean") == "cf_organisation_sync_to_outreach"
    second = wb.add_custom_field("Private::Crm::Person", "Sync To Outreach!", "boolean")
    assert re.fullmatch(r"cf_person_sync_to_outreach_\d+", second)
    assert snake_title("Artificial Intelligence/Machine Learning") == "artificial_intelligencemachine_learning"
    assert snake_title("  2023   SPEX ") == "2023_spex"


def test_seed_loads_everything():
    # DESIGN.md §7: seed {users, queues, custom_fields, organisations, people, api_data}
    wb = WorkbooksEmulator()
    counts = wb.seed({
        "users": [{"login_name": "sam@example.com", "person_name": "Sam Seller", "api_key": "11111-22222"}],
        "queues": [{"kind": "person", "name": "Data Team"}],
        "custom_fields": [{"kind": "people", "title": "Sync to Outreach", "data_type": "boolean"}],
        "organisations": [{"id": 10, "name": "Acme"}],
        "people": [{"name": "Ann Able", "employer_link": 10, "cf_person_sync_to_outreach": "1"}],
        "api_data": [{"key": "k", "value": "v"}],
    })
    assert counts == {"users": 1, "queues": 1, "custom_fields": 1, "organisations": 1, "people": 1,
                      "api_data": 1, "scheduled_actions": 0, "web_actions": 0}
    person = wb.records("people")[0]
    assert person["employer_name"] == "Acme" and person["cf_person_sync_to_outreach"] is True
    assert person["owner[login_name]"] == "admin@example.com"
    sam = [u for u in wb.records("users") if u["login_name"] == "sam@example.com"][0]
    assert wb.api_keys["11111-22222"] == sam["id"]


def test_seed_conveniences_for_files():
    # DESIGN.md §7 (--seed FILE): owners, assignees and API keys named by login instead of ids
    wb = WorkbooksEmulator()
    wb.seed({
        "users": [{"login_name": "rep@example.com", "person_name": "Rita Rep"}],
        "queues": [{"kind": "organisation", "name": "Rita's Team", "owner_login_name": "rep@example.com"}],
        "api_keys": [{"key": "99999-00000", "login_name": "admin@example.com"}],
        "organisations": [{"name": "Owned Org", "assigned_to_user": "rep@example.com"}],
        "people": [{"name": "Owned Person", "assigned_to_user": "rep@example.com"}],
    })
    assert wb.records("people")[0]["owner[person_name]"] == "Rita Rep"
    org = wb.records("organisations")[0]
    assert (org["owner[login_name]"], org["queue_entry[queue[name]]"]) == ("rep@example.com", "Rita Rep")
    team = [q for q in wb.records("organisation_queues") if q["name"] == "Rita's Team"][0]
    assert team["owner[login_name]"] == "rep@example.com"
    assert wb.api_keys["99999-00000"] == wb.admin["id"]
    with pytest.raises(ValueError):
        wb.seed({"people": [{"name": "Nobody's", "assigned_to_user": "ghost@example.com"}]})


# --- control routes ------------------------------------------------------------------------------------------

def test_control_routes(workbooks_server):
    # DESIGN.md §7: the /_emulator/ control surface
    url = workbooks_server.url
    control = f"{url}/_emulator"
    user = requests.post(f"{control}/users", json={"login_name": "c@example.com", "person_name": "Cee"}).json()
    assert user["person_name"] == "Cee" and user["person_queue_id"]
    queue = requests.post(f"{control}/queues", json={"kind": "person", "name": "Team"}).json()
    assert queue["queue_type"] == "shared"
    key = requests.post(f"{control}/api_keys", json={"user_id": user["id"]}).json()["api_key"]
    assert re.fullmatch(r"\d{5}(-\d{5}){7}", key)
    session = requests.post(f"{control}/sessions", json={}).json()
    assert set(session) == {"session_id", "username", "logical_database_id"}
    column = requests.post(f"{control}/custom_fields", json={"kind": "people", "title": "Outreach Id",
                                                             "data_type": "string"}).json()
    assert column == {"value_column_name": "cf_person_outreach_id"}
    created = requests.post(f"{control}/records/people", json={"name": "Ctl Person"})
    assert created.status_code == 201
    person = created.json()
    edited = requests.patch(f"{control}/records/people/{person['id']}", json={"cf_person_outreach_id": "9"}).json()
    assert edited["lock_version"] == 1 and edited["cf_person_outreach_id"] == "9"
    listed = requests.get(f"{control}/records/people").json()
    assert [r["id"] for r in listed] == [person["id"]]
    assert requests.get(f"{control}/records/people/{person['id']}").json()["name"] == "Ctl Person"
    assert requests.delete(f"{control}/records/people/{person['id']}").json() == {"ok": True}
    assert requests.get(f"{control}/records/people").json() == []
    assert len(requests.get(f"{control}/records/people", params={"include_deleted": "1"}).json()) == 1
    seeded = requests.post(f"{control}/seed", json={"organisations": [{"name": "Seeded Org"}]}).json()
    assert seeded["ok"] is True and seeded["counts"]["organisations"] == 1
    assert requests.get(f"{control}/database").json() == {"name": "Emulated Database", "id": 1, "instance_id": 4242}
    # the key made through the control surface works on the API (as user Cee)
    me = requests.post(f"{url}/login.api", data={"api_key": key, "client": "api", "api_version": "1"},
                       headers=UA).json()
    assert me["person_name"] == "Cee"


def test_control_route_errors(workbooks_server):
    # DESIGN.md §7: control routes answer 404/400 in JSON, never crash
    control = f"{workbooks_server.url}/_emulator"
    assert requests.get(f"{control}/records/people/999").status_code == 404
    assert requests.get(f"{control}/records/no_kind").status_code == 404
    assert requests.post(f"{control}/records/people", json={"name": "x", "bogus": 1}).status_code == 400
    assert requests.post(f"{control}/users", json={"nope": 1}).status_code == 400
    assert requests.post(f"{control}/config", json={"no_such_switch": 1}).status_code == 400
    assert requests.get(f"{control}/elsewhere").status_code == 404


def test_config_switches_listed_and_settable(workbooks_server):
    # DESIGN.md §7: the switches for uncertain behaviour, reported and set through /_emulator/config
    control = f"{workbooks_server.url}/_emulator"
    config = requests.get(f"{control}/config").json()
    assert config["max_limit"] == 100
    assert config["require_user_agent"] is True
    assert config["invalid_api_key_status"] == 401
    assert config["per_object_failure_top_success"] is False
    assert config["custom_field_pending_polls"] == 2
    assert config["users_endpoint"] == "admin/users"
    assert config["rate_limit_redirect_every"] == 0
    assert config["session_idle_seconds"] == 8 * 3600
    assert requests.post(f"{control}/config", json={"max_limit": 5}).json()["max_limit"] == 5
    assert workbooks_server.app.config["max_limit"] == 5


def test_clock_control_drives_timestamps(api):
    # workbooks-api.md §8 with DESIGN.md §7: tests set the clock; records use it
    control = f"{api.url}/_emulator/clock"
    requests.post(control, json={"set": "2021-06-15T08:00:00Z", "freeze": True})
    assert api.create("crm/people", name="Clocked")["created_at"] == "Tue Jun 15 08:00:00 UTC 2021"
    requests.post(control, json={"advance": 3600})
    assert api.create("crm/people", name="Later")["created_at"] == "Tue Jun 15 09:00:00 UTC 2021"


def test_reset_restores_a_fresh_database(workbooks_server):
    # DESIGN.md §7: POST /_emulator/reset
    app = workbooks_server.app
    app.insert("people", {"name": "Temp"})
    key = app.create_api_key()
    requests.post(f"{workbooks_server.url}/_emulator/reset")
    assert app.records("people") == [] and app.admin["login_name"] == "admin@example.com"
    response = requests.get(f"{workbooks_server.url}/crm/people.api", params={"api_key": key}, headers=UA)
    assert response.status_code == 401


# --- faults and transport switches ------------------------------------------------------------------------------

def test_injected_faults_use_the_api_shapes(api):
    # workbooks-api.md §11: 500 with an exception reference; §2.2 401/403 failure_reason; §2.3 302
    app = api.app
    app.add_fault(path=r"crm/people", status=500, count=1)
    failed = api.get("crm/people")
    assert failed.status_code == 500
    assert failed.json()["success"] is False and failed.json()["exception_reference"]
    app.add_fault(path=r"crm/people", status=401, count=1)
    assert api.get("crm/people").json()["failure_reason"] == "session_expired"
    app.add_fault(path=r"crm/people", status=403, count=1)
    assert api.get("crm/people").json()["failure_reason"] == "no_permission_for_api"
    app.add_fault(path=r"crm/people", status=302, count=1)
    redirected = api.get("crm/people", allow_redirects=False)
    assert (redirected.status_code, redirected.headers["Location"]) == (302, "/login")
    assert api.get("crm/people").status_code == 200


def test_rate_limit_redirect_every_nth_request_to_a_delaying_url(api):
    # workbooks-api.md §11: rate limiting by redirect (no 429) via a "delaying URL"; the client
    # must follow it. Reads and writes alike (switch rate_limit_redirect_methods).
    api.app.insert("people", {"name": "Rated"})
    api.app.config["rate_limit_redirect_every"] = 2
    first = api.get("crm/people", [("_limit", "5")], allow_redirects=False)
    assert first.status_code == 200
    second = api.get("crm/people", [("_limit", "5")], allow_redirects=False)
    assert second.status_code == 302
    assert second.headers["Location"] == f"/delay/crm/people.api?api_key={api.key}&_limit=5"
    # the delaying URL serves the request as the route itself, and is not rate-limited again
    delayed = api.http.get(api.url + second.headers["Location"], allow_redirects=False)
    assert delayed.status_code == 200 and delayed.json()["total"] == 1
    row = {"__method": "POST", "id": 0, "lock_version": 0, "name": "W"}
    assert api.put("crm/people", [row], allow_redirects=False).status_code == 200       # 3rd
    redirected = api.put("crm/people", [row], allow_redirects=False)                     # 4th
    assert redirected.status_code == 302 and redirected.headers["Location"] == "/delay/crm/people.api"
    assert len(api.app.records("people")) == 2                  # the redirected write was not applied
    api.app.config["rate_limit_redirect_methods"] = ["GET"]
    for _ in range(3):
        assert api.put("crm/people", [row], allow_redirects=False).status_code == 200


def test_the_delaying_url_serves_what_it_is_sent(api):
    # §11 [I]: a client that re-sends the same method and body gets the original answer; one that
    # drops the body (requests' way with a 302) loses the filters and the api_key
    for name in ("Ann", "Bob", "Cy"):
        api.app.insert("people", {"name": name})
    api.app.config["rate_limit_redirect_every"] = 1
    body = {"api_key": api.key, "_ff[]": "name", "_ft[]": "eq", "_fc[]": "Bob"}
    response = api.http.get(f"{api.url}/crm/people.api", data=body, allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == "/delay/crm/people.api"
    resent = api.http.get(api.url + response.headers["Location"], data=body, allow_redirects=False)
    assert [r["name"] for r in resent.json()["data"]] == ["Bob"]
    bare = api.http.get(api.url + response.headers["Location"], allow_redirects=False)
    assert (bare.status_code, bare.headers["Location"]) == (302, "/login")


def test_the_delaying_url_holds_the_request(api):
    # §11, §13.6: the delay is a switch; the request is held outside the emulator's lock
    api.app.config["rate_limit_redirect_delay"] = 0.3
    started = time.monotonic()
    assert api.http.get(f"{api.url}/delay/crm/people.api", params={"api_key": api.key}).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_delay_fault_for_long_reads_only_hop_after_hop(api):
    # core FaultRule: redirect "delay" + min_body: only reads whose parameters travel in the body
    api.app.insert("people", {"name": "Long"})
    api.app.add_fault(method="GET", path=r"crm/people", status=302, redirect="delay", min_body=500, count=2)
    short = api.get("crm/people", allow_redirects=False)
    assert short.status_code == 200
    body = [("api_key", api.key), ("_ff[]", "name"), ("_ft[]", "ne"), ("_fc[]", "x" * 600)]
    first = api.http.get(f"{api.url}/crm/people.api?_dc=1", data=body, allow_redirects=False)
    assert (first.status_code, first.headers["Location"]) == (302, "/delay/crm/people.api?_dc=1")
    second = api.http.get(api.url + first.headers["Location"], data=body, allow_redirects=False)
    assert (second.status_code, second.headers["Location"]) == (302, "/delay/crm/people.api?_dc=1")
    third = api.http.get(api.url + second.headers["Location"], data=body, allow_redirects=False)
    assert third.status_code == 200 and third.json()["total"] == 1
    log = api.app.request_log
    assert [e["target"] for e in list(log)[-3:]] == ["/crm/people.api?_dc=1", "/delay/crm/people.api?_dc=1",
                                                    "/delay/crm/people.api?_dc=1"]
    assert all(e["body_bytes"] > 500 for e in list(log)[-3:])


# --- robustness: never crash (the fixture asserts internal_errors stays empty) ------------------------------------

def test_bad_json_body(api):
    # workbooks-api.md §11: 406 unacceptable parameters, the API's error shape
    response = api.http.post(f"{api.url}/crm/people.api?api_key={api.key}", data=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 406
    assert response.json()["success"] is False
    response = api.http.post(f"{api.url}/crm/people.api?api_key={api.key}", data=b"[1, 2]",
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 406


def test_deeply_nested_json_body(api):
    # workbooks-api.md §11: unreadable input is refused (406), never a crash
    body = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    response = api.http.post(f"{api.url}/crm/people.api?api_key={api.key}", data=body,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 406


def test_metadata_sorts_on_any_column(api):
    # workbooks-api.md §10 served as rows: sorting on list-valued columns works too
    rows = api.rows("metadata/types", [("_sort", "fields"), ("_select_columns[]", "class_name")])
    assert len(rows) == 9


@pytest.mark.parametrize("body", [
    b"\xff\xfe\x00garbage=%%%&&==",
    b"_ff[]=id&_ft[]=eq&_fc[]=%ZZ&_method=GET",
    b"_method=PUT&__method[]=FROB&id[]=0&lock_version[]=0&_ff[]=id&_ft[]=eq&_fc[]=0",
    b"_method=PUT&__method[]=PUT&id[]=abc&lock_version[]=x&_ff[]=id&_ft[]=eq&_fc[]=1",
    b"_method=PUT&__method[]=POST&id[]=0&lock_version[]=0&employer_link[]=1e999&_ff[]=id&_ft[]=eq&_fc[]=0",
    b"_method=GET&_start=99999999999999999999&_limit=1",
    b"_method=GET&_start=99999999999999999999&_limit=1&__skip_total_rows=1",
    b"_method=GET&_ff[]=created_at&_ft[]=gt&_fc[]=99999999999999999999",
    b"_method=PUT&__method[]=POST&id[]=0&lock_version[]=0&name[]=x&_ff[]=id&_ft[]=eq&_fc[]=0"
    b"&cf_person_when[]=99999999999999999999",
    b"_method=GET&_sort[]=&_dir[]=",
    b"_method=GET&_select_columns[]=&_select_columns[]=%00",
])
def test_malformed_form_bodies_never_crash(api, body):
    # workbooks-api.md §11 and issue #2: malformed requests get the API's error shape, never a 500
    api.app.add_custom_field("people", "When", "datetime")
    response = api.http.post(f"{api.url}/crm/people.api?api_key={api.key}", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code in (200, 406)
    payload = response.json()
    assert "success" in payload


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
_ops = st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le", "ct", "nct", "bg", "nbg", "blank", "not_blank",
                        "true", "false", "today", "ge_today", "between", "not_between", "zz"]) | _text
_fields = st.sampled_from(["id", "name", "created_at", "is_deleted", "employer_link", "main_location[email]",
                           "cf_person_score", "queue_entry[queue[name]]", "nope"]) | _text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triples=st.lists(st.tuples(_fields, _ops, _text | st.sampled_from(
    ["1", "0", "2020-01-01", "JSON([1,2])", "Wed Jan 01 12:00:00 UTC 2020", "1,2\\,3"])), max_size=4),
       fm=st.none() | _text | st.sampled_from(["1 AND (2 OR NOT 3)", "or", "!(1 XOR 2)"]),
       sort=st.none() | _fields)
def test_fuzzed_reads_never_crash(api, triples, fm, sort):
    # workbooks-api.md §3.2 and §11: any filter input gives 200 or 406, never an internal error
    if not api.app.records("people"):
        api.app.add_custom_field("people", "Score", "decimal")
        api.app.insert("people", {"name": "Fuzz Target", "cf_person_score": "2"})
    params = filters(*triples)
    if fm is not None:
        params.append(("_fm", fm))
    if sort is not None:
        params.append(("_sort", sort))
    response = api.get("crm/people", params)
    assert response.status_code in (200, 406), response.text
    assert api.app.internal_errors == []


# --- wire-format helpers ---------------------------------------------------------------------------------------

def test_time_formatting_and_parsing_helpers():
    # workbooks-api.md §8: output formats; inputs in the default form (3/4-letter and full months), ISO, epoch
    moment = dt.datetime(2009, 5, 15, 14, 36, 54, tzinfo=UTC)
    assert format_datetime(moment) == "Fri May 15 14:36:54 UTC 2009"
    assert format_date(dt.date(2010, 5, 2)) == " 2 May 2010"
    assert parse_time("Fri May 15 14:36:54 UTC 2009") == (moment, False)
    assert parse_time("Fri September 15 14:36:54 UTC 2009")[0] == moment.replace(month=9)
    assert parse_time("Tue Dec 24 09:00:00 UTC 2029")[0] == dt.datetime(2029, 12, 24, 9, tzinfo=UTC)
    assert parse_time("1 September 2023") == (dt.datetime(2023, 9, 1, tzinfo=UTC), True)
    assert parse_time("2023-12-20T17:30:00.123Z") == (dt.datetime(2023, 12, 20, 17, 30, tzinfo=UTC), False)
    assert parse_time("1242398214")[0] == moment
    with pytest.raises(ValueError):
        parse_time("Fri May 15 14:36:54 PST 2009")


# --- command line (issue #2: `python -m tools.emulators workbooks --port N`) ------------------------------------

def test_command_line_with_seed(tmp_path):
    # DESIGN.md §7: first stdout line is the base URL; --seed loads records; --set flips a switch
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"login_name": "cli@example.com", "person_name": "Cli User",
                                           "api_key": "12345-12345-12345-12345-12345-12345-12345-12345"}],
                                "people": [{"name": "Seeded Person"}]}))
    process = subprocess.Popen([sys.executable, "-m", "tools.emulators", "workbooks", "--port", "0",
                                "--seed", str(seed), "--set", "max_limit=7"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        response = requests.get(f"{url}/crm/people.api", headers=UA,
                                params={"api_key": "12345-12345-12345-12345-12345-12345-12345-12345"})
        assert [r["name"] for r in response.json()["data"]] == ["Seeded Person"]
        assert requests.get(f"{url}/_emulator/config").json()["max_limit"] == 7
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- scale (the benchmark seeds 100k people) ---------------------------------------------------------------------

@pytest.mark.slow
def test_hundred_thousand_people_paged_filtered_reads():
    # DESIGN.md §9: reads paged 100 per request over a large backlog
    wb = WorkbooksEmulator()
    flag = wb.add_custom_field("people", "Sync to Outreach", "boolean")
    started = time.monotonic()
    wb.seed({"organisations": [{"name": f"Org {i}"} for i in range(500)],
             "people": [{"name": f"Person {i}", "employer_link": i % 500 + 1, flag: i % 2 == 0,
                         "main_location[email]": f"p{i}@example.test"} for i in range(100_000)]})
    assert time.monotonic() - started < 30
    with ServerHandle(wb) as handle:
        key = wb.create_api_key()
        http = requests.Session()
        http.headers.update(UA)
        last_id, pages, seen = 0, 0, 0
        started = time.monotonic()
        while pages < 50:
            params = [("api_key", key), ("_start", "0"), ("_limit", "100"), ("__skip_total_rows", "true"),
                      ("_sort", "id"), ("_dir", "ASC"), *filters((flag, "eq", "1"), ("id", "gt", str(last_id)))]
            data = http.get(f"{handle.url}/crm/people.api", params=params).json()["data"]
            seen += len(data)
            last_id = data[-1]["id"]
            pages += 1
        assert seen == 5000
        assert time.monotonic() - started < 30
        counted = http.get(f"{handle.url}/crm/people.api", params=[("api_key", key), ("_limit", "1"),
                                                                     *filters((flag, "true", ""))]).json()
        assert counted["total"] == 50_000
        assert wb.internal_errors == []
