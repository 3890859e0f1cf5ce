"""Contract tests: the Workbooks emulator over real HTTP, pinned to reference/workbooks-api.md.

Routing, parameters, authentication, response shapes, records, queues, users and metadata.
Filters, writes and the control surface have their own test_workbooks_*.py files, which import
the helpers below.
"""
from __future__ import annotations

import re

import pytest
import requests

UA = {"User-Agent": "ContractTest/1.0 (pytest)"}
DATETIME_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d\d \d\d:\d\d:\d\d UTC \d{4}$")


def square(rows: list[dict]) -> list[tuple[str, str]]:
    """The square-array body of §4.1, written independently of the plugin's encoder."""
    keys = sorted({k for r in rows for k in r} - {"__method", "id", "lock_version"})
    body = []
    for name in ("__method", "id", "lock_version", *keys):
        for row in rows:
            body.append((f"{name}[]", str(row.get(name, ":no_value:"))))
    return body


def working_set(rows: list[dict]) -> list[tuple[str, str]]:
    """`id eq 0` for creates, `id eq <id>` per update/delete, OR-ed (§4.1)."""
    ids = []
    for row in rows:
        wanted = "0" if row.get("__method", "POST") == "POST" else str(row["id"])
        if wanted not in ids:
            ids.append(wanted)
    body = []
    for wanted in ids:
        body += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", wanted)]
    return body + [("_fm", "or")]


def filters(*triples) -> list[tuple[str, str]]:
    out = []
    for field, op, value in triples:
        out += [("_ff[]", field), ("_ft[]", op), ("_fc[]", value)]
    return out


class Api:
    """A raw client following the reference only: api_key on every request (§2.1)."""

    def __init__(self, handle, key: str) -> None:
        self.url, self.key, self.app = handle.url, key, handle.app
        self.http = requests.Session()
        self.http.headers.update(UA)

    def get(self, endpoint: str, params=(), **kwargs) -> requests.Response:
        return self.http.get(f"{self.url}/{endpoint}.api", params=[("api_key", self.key), *params], **kwargs)

    def rows(self, endpoint: str, params=()) -> list[dict]:
        response = self.get(endpoint, params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def put(self, endpoint: str, rows: list[dict], *, where=None, extra=(), **kwargs) -> requests.Response:
        body = [("api_key", self.key), *(working_set(rows) if where is None else where), *square(rows), *extra]
        return self.http.put(f"{self.url}/{endpoint}.api", data=body, **kwargs)

    def create(self, endpoint: str, **fields) -> dict:
        response = self.put(endpoint, [{"__method": "POST", "id": 0, "lock_version": 0, **fields}])
        payload = response.json()
        assert payload["success"] is True, payload
        return payload["affected_objects"][0]


@pytest.fixture
def api(workbooks_server) -> Api:
    return Api(workbooks_server, workbooks_server.app.create_api_key())


def login(url: str, **params) -> requests.Response:
    return requests.post(f"{url}/login.api", data={"client": "api", "api_version": "1", **params}, headers=UA)


# --- §1 routing and parameters ------------------------------------------------------------------------------

def test_list_response_shape(api):
    # workbooks-api.md §3.4: {success, data, total} (+ flash, updates); empty is total 0, data []
    response = api.get("crm/people")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"success": True, "data": [], "total": 0, "flash": "", "updates": {}}


def test_show_returns_object_with_layouts(api):
    # workbooks-api.md §1.1: GET crm/people/<id>.api -> data is a single object
    person = api.app.insert("people", {"name": "Van Tran"})
    payload = api.get(f"crm/people/{person['id']}").json()
    assert payload["success"] is True
    assert isinstance(payload["data"], dict)
    assert payload["data"]["id"] == person["id"]
    assert payload["data"]["name"] == "Van Tran"
    assert payload["available_layouts"] == [] and payload["layout"] == {}


def test_show_missing_or_deleted_is_404(api):
    # workbooks-api.md §11: 404 not found
    person = api.app.insert("people", {"name": "Gone Soon"})
    api.app.delete("people", person["id"])
    assert api.get("crm/people/999").status_code == 404
    response = api.get(f"crm/people/{person['id']}")
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_unknown_controller_is_404(api):
    # workbooks-api.md §11: not found
    response = api.get("crm/nothing_here")
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_method_override_in_post_body_reads(api):
    # workbooks-api.md §1.2: `_method=GET` in a POST body overrides the HTTP method (the PHP binding)
    api.app.insert("people", {"name": "Ann Read"})
    response = api.http.post(f"{api.url}/crm/people.api", data={"api_key": api.key, "_method": "GET"})
    assert response.status_code == 200
    assert [r["name"] for r in response.json()["data"]] == ["Ann Read"]


def test_get_with_form_body(api):
    # workbooks-api.md §1.2: GET parameters may travel in the request body (the Python binding)
    api.app.insert("people", {"name": "Ann Body"})
    api.app.insert("people", {"name": "Bob Body"})
    body = [("api_key", api.key), ("_method", "GET"), *filters(("name", "eq", "Bob Body"))]
    response = api.http.get(f"{api.url}/crm/people.api?_dc=1795799870041", data=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert [r["name"] for r in response.json()["data"]] == ["Bob Body"]


def test_json_body_parameters(api):
    # DESIGN.md §7 (emulator convenience) with workbooks-api.md §3.2 filter names
    api.app.insert("people", {"name": "Json Person"})
    api.app.insert("people", {"name": "Other Person"})
    body = {"api_key": api.key, "_ff": ["name"], "_ft": ["ct"], "_fc": ["json"], "_select_columns": ["name"]}
    response = api.http.post(f"{api.url}/crm/people.api", json={**body, "_method": "GET"})
    assert response.status_code == 200
    assert response.json()["data"] == [{"name": "Json Person"}]


def test_percent_encoded_parameter_names(api):
    # workbooks-api.md §1.3: names arrive raw or percent-encoded; decode before matching
    api.app.insert("people", {"name": "Enc Oded", "main_location[email]": "enc@example.test"})
    query = (f"api_key={api.key}&_ff%5B%5D=main_location%5Bemail%5D&_ft%5B%5D=eq&_fc%5B%5D=enc%40example.test"
             "&_select_columns[]=main_location%5Bemail%5D")
    response = api.http.get(f"{api.url}/crm/people.api?{query}")
    assert response.json()["data"] == [{"main_location[email]": "enc@example.test"}]


def test_unknown_parameters_are_ignored(api):
    # workbooks-api.md §1.3: ignore unknown parameters (the bindings add many)
    api.app.insert("people", {"name": "Ignored Params"})
    extra = [("client", "api"), ("_api_version", "1"), ("api_version", "1"), ("_dc", "1795799870041"),
             ("_audit_lifetime_days", "None"), ("api_logging_key", "k"), ("api_logging_seq", "3"),
             ("_max_request_duration", "55"), ("whatever", "x")]
    response = api.get("crm/people", extra)
    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_json_pretty(api):
    # workbooks-api.md §1.3: json=pretty gives indented output
    response = api.get("crm/people", [("json", "pretty")])
    assert response.text.startswith('{\n  "success": true')


def test_other_http_verbs_are_405(api):
    # workbooks-api.md §11: 405 method not allowed
    response = api.http.patch(f"{api.url}/crm/people.api", data={"api_key": api.key})
    assert response.status_code == 405
    assert response.json()["success"] is False


# --- §2 authentication ------------------------------------------------------------------------------------

def test_api_key_write_needs_no_authenticity_token(api):
    # workbooks-api.md §2.1, §2.2: API-key-per-request mode needs no _authenticity_token
    created = api.create("crm/people", name="Key Writer")
    assert created["name"] == "Key Writer"


def test_invalid_api_key_is_401_with_failure_reason(workbooks_server):
    # workbooks-api.md R2.4: 401, failure_reason/failure_message, no WWW-Authenticate
    response = requests.get(f"{workbooks_server.url}/crm/people.api",
                            params={"api_key": "00000-00000-00000-00000-00000-00000-00000-00000"}, headers=UA)
    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers
    payload = response.json()
    assert payload["success"] is False
    assert payload["failure_reason"] == "unrecognised_name_or_password"
    assert payload["failure_message"]


@pytest.mark.parametrize("status", [403, 302])
def test_invalid_api_key_status_switch(workbooks_server, status):
    # workbooks-api.md R2.4: the status for a bad key is configurable (401/403/302)
    workbooks_server.app.config["invalid_api_key_status"] = status
    response = requests.get(f"{workbooks_server.url}/crm/people.api", params={"api_key": "nope"}, headers=UA,
                            allow_redirects=False)
    assert response.status_code == status
    if status == 302:
        assert response.headers["Location"] == "/login"
    else:
        assert response.json()["failure_reason"] == "unrecognised_name_or_password"


def test_disabled_users_key_stops_working(workbooks_server):
    # workbooks-api.md R2.4 (KB-KEYS): disabling the "Access as User" stops the key
    app = workbooks_server.app
    user = app.add_user("off@example.com", "Off User", is_enabled=False)
    key = app.create_api_key(user["id"])
    response = requests.get(f"{workbooks_server.url}/crm/people.api", params={"api_key": key}, headers=UA)
    assert response.status_code == 401


def test_login_with_api_key_response_shape(workbooks_server):
    # workbooks-api.md §2.2: login response fields and the Workbooks-Session cookie
    app = workbooks_server.app
    key = app.create_api_key()
    response = login(workbooks_server.url, api_key=key)
    assert response.status_code == 200
    body = response.json()
    assert body["database_name"] == "Emulated Database"
    assert body["logical_database_id"] == 1
    assert body["default_database_id"] == 1
    assert body["database_instance_id"] == 4242
    assert body["user_id"] == app.admin["id"]
    assert body["person_name"] == "System Admin"
    assert body["login_name"] == "admin@example.com"
    assert body["api_version"] == 1
    assert body["databases"][0]["name"] == "Emulated Database" and body["databases"][0]["id"] == 1
    assert DATETIME_RE.match(body["databases"][0]["created_at"])
    assert re.fullmatch(r"[0-9a-f]{40}", body["authenticity_token"])
    assert re.fullmatch(r"[0-9a-f]{32}", body["session_id"])
    assert response.cookies["Workbooks-Session"] == body["session_id"]
    assert "HttpOnly" in response.headers["Set-Cookie"] and "path=/" in response.headers["Set-Cookie"].lower()
    assert body["my_queues"] == {"Private::Crm::PersonQueue": app.admin["person_queue_id"],
                                 "Private::Crm::OrganisationQueue": app.admin["organisation_queue_id"]}


def test_fast_login_skips_my_queues(workbooks_server):
    # workbooks-api.md §2.2: _fast_login skips generating my_queues
    body = login(workbooks_server.url, api_key=workbooks_server.app.create_api_key(), _fast_login="true").json()
    assert "my_queues" not in body and body["session_id"]


def test_login_username_password(workbooks_server):
    # workbooks-api.md §2.2: username (email) + password; failures are 401 with failure_reason
    app = workbooks_server.app
    app.add_user("sam@example.com", "Sam Seller", password="s3cret")
    app.add_user("dis@example.com", "Dis Abled", is_enabled=False, password="pw")
    good = login(workbooks_server.url, username="Sam@Example.com", password="s3cret")
    assert good.status_code == 200 and good.json()["person_name"] == "Sam Seller"
    bad = login(workbooks_server.url, username="sam@example.com", password="wrong")
    assert (bad.status_code, bad.json()["failure_reason"]) == (401, "unrecognised_name_or_password")
    unknown = login(workbooks_server.url, username="who@example.com", password="x")
    assert (unknown.status_code, unknown.json()["failure_reason"]) == (401, "unrecognised_name_or_password")
    disabled = login(workbooks_server.url, username="dis@example.com", password="pw")
    assert (disabled.status_code, disabled.json()["failure_reason"]) == (401, "login_disabled")
    other_db = login(workbooks_server.url, username="sam@example.com", password="s3cret", logical_database_id="7")
    assert (other_db.status_code, other_db.json()["failure_reason"]) == (403, "requested_database_not_available")


def test_login_without_credentials(workbooks_server):
    # workbooks-api.md §2.2: failure list (no_session)
    response = login(workbooks_server.url)
    assert (response.status_code, response.json()["failure_reason"]) == (401, "no_session")


def test_login_requires_user_agent(workbooks_server):
    # workbooks-api.md §1.3: without a User-Agent, login fails with 403 user_agent_required
    key = workbooks_server.app.create_api_key()
    status, payload = _post_without_user_agent(workbooks_server.port, "/login.api",
                                               f"api_key={key}&client=api&api_version=1")
    assert status == 403
    assert payload["failure_reason"] == "user_agent_required"
    status, _ = _post_without_user_agent(workbooks_server.port, "/crm/people.api", f"api_key={key}&_method=GET")
    assert status == 403
    workbooks_server.app.config["require_user_agent"] = False
    status, payload = _post_without_user_agent(workbooks_server.port, "/login.api",
                                               f"api_key={key}&client=api&api_version=1")
    assert status == 200 and payload["session_id"]


def _post_without_user_agent(port: int, path: str, body: str) -> tuple[int, dict]:
    """http.client adds no User-Agent of its own (requests and urllib3 always do)."""
    import http.client
    import json
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def test_login_requires_client_and_api_version(workbooks_server):
    # workbooks-api.md §2.2: client=api and api_version=1 are mandatory; _api_version is the same (§1.3)
    key = workbooks_server.app.create_api_key()
    missing = requests.post(f"{workbooks_server.url}/login.api", data={"api_key": key}, headers=UA)
    assert missing.status_code == 406
    assert missing.json()["success"] is False
    alias = requests.post(f"{workbooks_server.url}/login.api",
                          data={"api_key": key, "client": "api", "_api_version": "1"}, headers=UA)
    assert alias.status_code == 200


def _session_login(url: str, app) -> tuple[requests.Session, dict]:
    http = requests.Session()
    http.headers.update(UA)
    body = http.post(f"{url}/login.api", data={"api_key": app.create_api_key(), "client": "api",
                                                "api_version": "1"}).json()
    return http, body


def test_session_cookie_mode_reads_and_writes(workbooks_server):
    # workbooks-api.md §2.2: the Workbooks-Session cookie; _authenticity_token required on writes
    url, app = workbooks_server.url, workbooks_server.app
    http, body = _session_login(url, app)
    assert http.get(f"{url}/crm/people.api").status_code == 200
    rows = [{"__method": "POST", "id": 0, "lock_version": 0, "name": "Session Person"}]
    refused = http.put(f"{url}/crm/people.api", data=working_set(rows) + square(rows))
    assert refused.status_code == 401
    assert refused.json()["failure_reason"] == "invalid_authenticity_token"
    wrong = http.put(f"{url}/crm/people.api",
                     data=working_set(rows) + square(rows) + [("_authenticity_token", "0" * 40)])
    assert wrong.status_code == 401
    assert app.records("people") == []
    accepted = http.put(f"{url}/crm/people.api",
                        data=working_set(rows) + square(rows) + [("_authenticity_token", body["authenticity_token"])])
    assert accepted.status_code == 200 and accepted.json()["success"] is True
    assert accepted.cookies["Workbooks-Session"] == body["session_id"]   # re-sent on every response


def test_invalid_session_redirects_to_login_page(workbooks_server):
    # workbooks-api.md §2.3: any request with an invalid session id gets a 302
    url = workbooks_server.url
    response = requests.get(f"{url}/crm/people.api", cookies={"Workbooks-Session": "deadbeef"}, headers=UA,
                            allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    followed = requests.get(f"{url}/crm/people.api", cookies={"Workbooks-Session": "deadbeef"}, headers=UA)
    assert followed.status_code == 200
    assert followed.headers["Content-Type"].startswith("text/html")
    no_credentials = requests.get(f"{url}/crm/people.api", headers=UA, allow_redirects=False)
    assert no_credentials.status_code == 302


def test_session_expires_after_idle_time(workbooks_server):
    # workbooks-api.md §2.2: sessions expire after inactivity (switch session_idle_seconds, 8 h)
    url, app = workbooks_server.url, workbooks_server.app
    http, _ = _session_login(url, app)
    app.clock.advance(8 * 3600 - 60)
    assert http.get(f"{url}/crm/people.api", allow_redirects=False).status_code == 200
    app.clock.advance(8 * 3600 - 60)                 # activity above reset the idle timer
    assert http.get(f"{url}/crm/people.api", allow_redirects=False).status_code == 200
    app.clock.advance(8 * 3600 + 1)
    assert http.get(f"{url}/crm/people.api", allow_redirects=False).status_code == 302


def test_logout_redirects_and_ends_session(workbooks_server):
    # workbooks-api.md §2.3: POST logout -> 302 with Location; the session is gone
    url, app = workbooks_server.url, workbooks_server.app
    http, _ = _session_login(url, app)
    response = http.post(f"{url}/logout", allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    http.cookies.clear()
    gone = requests.get(f"{url}/crm/people.api", cookies={"Workbooks-Session": _["session_id"]}, headers=UA,
                        allow_redirects=False)
    assert gone.status_code == 302


def test_process_engine_reconnect_issues_new_session(workbooks_server):
    # workbooks-api.md §2.1 "Reconnecting Sessions", §2.4 ensureLogin: a NEW session id
    url, app = workbooks_server.url, workbooks_server.app
    engine = app.create_session()
    assert engine["username"] == "admin@example.com" and engine["logical_database_id"] == 1
    response = login(url, username=engine["username"], session_id=engine["session_id"],
                     logical_database_id=str(engine["logical_database_id"]))
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] != engine["session_id"]
    assert response.cookies["Workbooks-Session"] == body["session_id"]
    assert re.fullmatch(r"[0-9a-f]{40}", body["authenticity_token"])
    new = requests.get(f"{url}/crm/people.api", cookies={"Workbooks-Session": body["session_id"]}, headers=UA,
                       allow_redirects=False)
    assert new.status_code == 200
    old = requests.get(f"{url}/crm/people.api", cookies={"Workbooks-Session": engine["session_id"]}, headers=UA,
                       allow_redirects=False)
    assert old.status_code == 302                    # switch reconnect_invalidates_old_session


def test_reconnect_failures(workbooks_server):
    # workbooks-api.md §2.2 failure table: no_session_found, requested_database_not_available, session_expired
    url, app = workbooks_server.url, workbooks_server.app
    engine = app.create_session()
    unknown = login(url, username=engine["username"], session_id="f" * 32, logical_database_id="1")
    assert (unknown.status_code, unknown.json()["failure_reason"]) == (401, "no_session_found")
    wrong_user = login(url, username="x@example.com", session_id=engine["session_id"], logical_database_id="1")
    assert (wrong_user.status_code, wrong_user.json()["failure_reason"]) == (401, "no_session_found")
    wrong_db = login(url, username=engine["username"], session_id=engine["session_id"], logical_database_id="2")
    assert (wrong_db.status_code, wrong_db.json()["failure_reason"]) == (403, "requested_database_not_available")
    app.clock.advance(8 * 3600 + 5)
    expired = login(url, username=engine["username"], session_id=engine["session_id"], logical_database_id="1")
    assert (expired.status_code, expired.json()["failure_reason"]) == (401, "session_expired")


def test_strict_attribute_checking_only_in_session_mode(workbooks_server, api):
    # workbooks-api.md §2.1 [O]: API-key mode ignores unknown attributes; §2.2 _strict_attribute_checking
    person = api.app.insert("people", {"name": "Strict Person"})
    row = {"__method": "PUT", "id": person["id"], "lock_version": 0, "person_title": "Dr"}
    lenient = api.put("crm/people", [row]).json()
    assert lenient["success"] is True
    assert lenient["affected_objects"] == [{"id": person["id"], "lock_version": 0}]
    http = requests.Session()
    http.headers.update(UA)
    body = http.post(f"{workbooks_server.url}/login.api",
                     data={"api_key": api.key, "client": "api", "api_version": "1",
                           "_strict_attribute_checking": "true"}).json()
    strict = http.put(f"{workbooks_server.url}/crm/people.api",
                      data=working_set([row]) + square([row]) +
                      [("_authenticity_token", body["authenticity_token"])]).json()
    assert strict["success"] is False
    assert strict["affected_object_information"][0]["errors"] == {"person_title": ["is not a recognised attribute"]}


# --- §5, §7, §8 records, queues, users ----------------------------------------------------------------------

def test_person_record_columns(api):
    # workbooks-api.md §5.1, §5.2, §7: common attributes, employer, queue and owner columns
    app = api.app
    sam = app.add_user("sam@example.com", "Sam Seller")
    org = app.insert("organisations", {"name": "Snap Fresh"})
    created = api.create("crm/people", person_first_name="Van", person_last_name="Tran",
                         employer_link=org["id"], assigned_to=sam["person_queue_id"],
                         **{"main_location[email]": "van@snap.test"})
    row = api.rows("crm/people")[0]
    assert row["id"] == created["id"]
    assert row["type"] == "Private::Crm::Person"
    assert row["object_ref"] == f"PERS-{created['id']}"
    assert row["name"] == "Van Tran"
    assert row["employer_link"] == org["id"]
    assert row["employer_name"] == "Snap Fresh"
    assert row["descriptor"] == "Van Tran - Snap Fresh"
    assert row["main_location[email]"] == "van@snap.test"
    assert row["assigned_to"] == sam["person_queue_id"]
    assert row["queue_entry[queue_id]"] == sam["person_queue_id"]
    assert row["queue_entry[queue[name]]"] == "Sam Seller"
    assert row["owner_id"] == sam["id"]
    assert row["owner[login_name]"] == "sam@example.com"
    assert row["owner[person_name]"] == "Sam Seller"
    assert row["created_by"] == app.admin["id"]
    assert row["created_by_user[login_name]"] == "admin@example.com"
    assert row["updated_by_user[person_name]"] == "System Admin"
    assert row["is_deleted"] is False
    assert row["no_email_soliciting"] is False
    assert row["person_job_title"] is None
    assert "assigned_to_name" not in row                 # §13.7: absent from 2025 records (switch off)


def test_employer_name_follows_the_organisation(api):
    # workbooks-api.md §5.2: employer_name comes from the linked Organisation
    app = api.app
    org = app.insert("organisations", {"name": "Old Name Ltd"})
    person = app.insert("people", {"name": "Emp Loyee", "employer_link": org["id"]})
    app.edit("organisations", org["id"], {"name": "New Name Ltd"})
    assert app.record("people", person["id"])["employer_name"] == "New Name Ltd"
    rows = api.rows("crm/people", filters(("employer_name", "eq", "new name ltd")))
    assert [r["id"] for r in rows] == [person["id"]]


def test_organisation_record_columns(api):
    # workbooks-api.md §5.3: ORG-n refs and the same ownership fields as People
    org = api.create("crm/organisations", name="Acme Ltd", industry="Tools", **{"main_location[town]": "Leeds"})
    row = api.rows("crm/organisations")[0]
    assert row["object_ref"] == f"ORG-{org['id']}"
    assert row["type"] == "Private::Crm::Organisation"
    assert (row["name"], row["industry"], row["main_location[town]"]) == ("Acme Ltd", "Tools", "Leeds")
    assert row["assigned_to"] == api.app.admin["organisation_queue_id"]
    assert row["owner[login_name]"] == "admin@example.com"


def test_new_records_default_to_the_creators_queue(api):
    # workbooks-api.md §7: assigned_to is a queue id; the creator's personal queue by default
    person = api.create("crm/people", name="Default Queue")
    assert person["assigned_to"] == api.app.admin["person_queue_id"]
    assert person["queue_entry[queue[name]]"] == "System Admin"


def test_queue_endpoints(api):
    # workbooks-api.md §7: queues carry queue_type (user/unassigned/shared), owner_id, owner[...]
    app = api.app
    sam = app.add_user("sam@example.com", "Sam Seller")
    team = app.add_queue("person", "Data Team")
    columns = [("_select_columns[]", c) for c in
               ("id", "name", "queue_type", "owner_id", "owner[person_name]", "owner[login_name]")]
    rows = api.rows("crm/person_queues", columns)
    by_name = {r["name"]: r for r in rows}
    assert by_name["Unassigned"]["queue_type"] == "unassigned"
    assert by_name["Unassigned"]["owner_id"] is None
    assert by_name["System Admin"] == {"id": app.admin["person_queue_id"], "name": "System Admin",
                                       "queue_type": "user", "owner_id": app.admin["id"],
                                       "owner[person_name]": "System Admin",
                                       "owner[login_name]": "admin@example.com"}
    assert by_name["Sam Seller"]["id"] == sam["person_queue_id"]
    assert by_name["Data Team"] == {"id": team["id"], "name": "Data Team", "queue_type": "shared",
                                    "owner_id": None, "owner[person_name]": None, "owner[login_name]": None}
    org_rows = api.rows("crm/organisation_queues", columns)
    assert {r["name"] for r in org_rows} == {"Unassigned", "System Admin", "Sam Seller"}
    assert api.rows("crm/person_queues", filters(("queue_type", "eq", "user")) + columns)[0]["queue_type"] == "user"


def test_reassigning_moves_owner_columns(api):
    # workbooks-api.md §7: owner columns are derived from the queue in assigned_to
    app = api.app
    sam = app.add_user("sam@example.com", "Sam Seller")
    person = app.insert("people", {"name": "Moving Person"})
    payload = api.put("crm/people", [{"__method": "PUT", "id": person["id"], "lock_version": 0,
                                      "assigned_to": sam["person_queue_id"]}]).json()
    affected = payload["affected_objects"][0]
    assert affected["assigned_to"] == sam["person_queue_id"]
    assert affected["owner[login_name]"] == "sam@example.com"
    assert affected["queue_entry[queue[name]]"] == "Sam Seller"


def test_assigned_to_name_switch(api):
    # workbooks-api.md §5.2, §13.7: assigned_to_name is uncertain; a switch adds it
    person = api.app.insert("people", {"name": "Named Queue"})
    assert api.rows("crm/people", [("_select_columns[]", "assigned_to_name")]) == [{"assigned_to_name": None}]
    api.app.config["assigned_to_name"] = True
    row = api.rows("crm/people")[0]
    assert row["assigned_to_name"] == "System Admin" and row["id"] == person["id"]


def test_users_endpoint(api):
    # workbooks-api.md §7, R2.1: admin/users with the OI field set; read-only through the API
    app = api.app
    app.add_user("sam@example.com", "Sam Seller", is_enabled=False)
    rows = api.rows("admin/users", [("_sort", "id")])
    assert [(r["login_name"], r["person_name"], r["is_enabled"]) for r in rows] == [
        ("admin@example.com", "System Admin", True), ("sam@example.com", "Sam Seller", False)]
    for column in ("id", "timezone", "date_time_locale", "created_at", "updated_at"):
        assert column in rows[0]
    assert DATETIME_RE.match(rows[0]["created_at"])
    refused = api.put("admin/users", [{"__method": "POST", "id": 0, "lock_version": 0, "login_name": "x@y.z"}])
    assert refused.status_code == 405
    # OI: a user id with letters appended still returns the user
    assert [r["id"] for r in api.rows("admin/users", filters(("id", "eq", f"{rows[1]['id']}abc")))] == [rows[1]["id"]]


def test_users_endpoint_switch(api):
    # workbooks-api.md R2.1: the path is a guess; users_endpoint moves or disables it
    api.app.config["users_endpoint"] = "core/users"
    assert api.get("admin/users").status_code == 404
    assert api.get("core/users").status_code == 200
    types = api.rows("metadata/types", [("_select_columns[]", "class_name"), ("_select_columns[]", "controller_path")])
    assert {"class_name": "Private::User", "controller_path": "core/users"} in types
    api.app.config["users_endpoint"] = None
    assert api.get("core/users").status_code == 404
    types = api.rows("metadata/types", [("_select_columns[]", "class_name")])
    assert {"class_name": "Private::User"} not in types


def test_datetime_and_date_output_formats(api):
    # workbooks-api.md §8: `%a %b %d %H:%M:%S UTC %Y`, dates `%e %b %Y` (space-padded day)
    import datetime as dt
    api.app.clock.set(dt.datetime(2020, 1, 1, 12, 0, 0, 987654, tzinfo=dt.timezone.utc))
    api.app.clock.freeze(True)
    column = api.app.add_custom_field("people", "Renewal Date", "date")
    person = api.create("crm/people", name="Dated Person", **{column: "2010-05-02"})
    assert person["created_at"] == "Wed Jan 01 12:00:00 UTC 2020"
    assert person["updated_at"] == "Wed Jan 01 12:00:00 UTC 2020"
    assert person[column] == " 2 May 2010"


def test_json_output_datetime_format_override(api):
    # workbooks-api.md §8: _json_output_datetime_format=%s gives epoch seconds
    import datetime as dt
    api.app.clock.set(dt.datetime(2020, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc))
    api.app.clock.freeze(True)
    api.app.insert("people", {"name": "Epoch Person"})
    rows = api.rows("crm/people", [("_json_output_datetime_format", "%s"), ("_select_columns[]", "created_at")])
    assert rows == [{"created_at": "1577880000"}]


# --- §10 metadata ---------------------------------------------------------------------------------------------

def test_metadata_types(api):
    # workbooks-api.md §10: class_name, controller_path and fields (custom ones included)
    column = api.app.add_custom_field("people", "Sync to Outreach", "boolean")
    types = api.rows("metadata/types")
    by_class = {t["class_name"]: t for t in types}
    expected = {"Private::Crm::Person": "crm/people", "Private::Crm::Organisation": "crm/organisations",
                "Private::Crm::PersonQueue": "crm/person_queues",
                "Private::Crm::OrganisationQueue": "crm/organisation_queues",
                "Private::Automation::ApiData": "automation/api_data", "Private::CustomField": "admin/custom_fields",
                "Private::User": "admin/users"}
    for class_name, controller in expected.items():
        assert by_class[class_name]["controller_path"] == controller
    person_fields = {f["name"]: f for f in by_class["Private::Crm::Person"]["fields"]}
    assert person_fields[column] == {"name": column, "title": "Sync to Outreach", "datatype": "boolean",
                                     "default_value": False, "is_createable": True, "is_filterable": True,
                                     "is_nullable": False, "is_updateable": True, "required": False,
                                     "is_custom": True}
    assert person_fields["main_location[email]"]["datatype"] == "string"
    assert person_fields["updated_at"]["datatype"] == "datetime"
    assert by_class["Private::Crm::Person"]["human_class_name"] == "Person"


def test_metadata_class_names_and_select(api):
    # workbooks-api.md §10: class_names[] narrows, _select_columns[] selects
    rows = api.rows("metadata/types", [("class_names[]", "Private::User"), ("class_names[]", "Private::CustomField"),
                                       ("_select_columns[]", "class_name"), ("_select_columns[]", "controller_path")])
    assert sorted(rows, key=lambda r: r["class_name"]) == [
        {"class_name": "Private::CustomField", "controller_path": "admin/custom_fields"},
        {"class_name": "Private::User", "controller_path": "admin/users"}]
    found = api.rows("metadata/types", filters(("class_name", "eq", "Private::User")) +
                     [("_select_columns[]", "controller_path")])
    assert found == [{"controller_path": "admin/users"}]
