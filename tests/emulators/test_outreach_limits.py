"""Contract tests of the Outreach emulator's rate limits (§6, R2.2), injected faults (§5.2), its
robustness against malformed requests (issue #2) and its control surface (DESIGN §7)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulators.test_outreach_contract import JSONAPI, Api, connect, doc, err, freeze
from tools.emulators.core import parse_iso

T0_EPOCH = int(parse_iso("2024-01-11T12:47:26Z").timestamp())
NEXT_HOUR = int(parse_iso("2024-01-11T13:00:00Z").timestamp())


@pytest.fixture
def api(outreach_server):
    freeze(outreach_server)
    client, _ = connect(outreach_server)
    return client


# ------------------------------------------------------------------------------ rate limit (§6)
def test_rate_limit_headers_on_every_response(api):
    """§6: X-RateLimit-Limit/-Remaining/-Reset (epoch s of the next clock hour) on every answer."""
    r = api.get("/api/v2/prospects")
    assert (r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]) == ("10000", "9999")
    assert r.headers["X-RateLimit-Reset"] == str(NEXT_HOUR)
    for response in (api.get("/api/v2/prospects/99"),  # 404
                     api.post("/api/v2/prospects", doc("prospect", {"bogus": 1})),  # 400
                     api.post("/api/v2/prospects", doc("prospect", {}), content_type="text/plain"),  # 415
                     api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"})),  # 201
                     api.delete("/api/v2/prospects/1")):  # 204
        assert "X-RateLimit-Reset" in response.headers
    assert r.headers["Content-Type"] == JSONAPI
    assert api.get("/api/v2/prospects").headers["X-RateLimit-Remaining"] == "9993"


def test_rate_limit_exceeded_429(outreach_server, api):
    """§6, R2.2: over the hourly limit → 429 rateLimitExceeded, Retry-After = X-RateLimit-Reset (epoch)."""
    outreach_server.app.config["rate_limit_per_hour"] = 3
    for expected in ("2", "1", "0"):
        assert api.get("/api/v2/prospects").headers["X-RateLimit-Remaining"] == expected
    r = api.get("/api/v2/prospects")
    assert r.status_code == 429 and r.headers["Content-Type"] == JSONAPI
    assert r.json() == {"errors": [{"id": "rateLimitExceeded", "title": "Rate Limit Exceeded",
                                    "detail": "You have exceeded your permitted rate limit of 3; "
                                              "please try again at 2024-01-11T13:00:00."}]}
    assert r.headers["Retry-After"] == r.headers["X-RateLimit-Reset"] == str(NEXT_HOUR)
    assert r.headers["X-RateLimit-Remaining"] == "0"
    # a rejected request does not count; the next clock hour starts afresh
    outreach_server.app.clock.set(parse_iso("2024-01-11T13:00:00Z"))
    r = api.get("/api/v2/prospects")
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "2"
    assert r.headers["X-RateLimit-Reset"] == str(NEXT_HOUR + 3600)


def test_rate_limit_detail_uses_thousands_separator(outreach_server, api):
    """§6 [V] ADOBE: "permitted rate limit of 10,000"."""
    outreach_server.app.config["rate_limit_per_hour"] = 1234
    outreach_server.app._rate[(1, NEXT_HOUR - 3600)] = 1234
    r = api.get("/api/v2/prospects")
    assert err(r)["detail"] == ("You have exceeded your permitted rate limit of 1,234; "
                                "please try again at 2024-01-11T13:00:00.")


def test_retry_after_delta_switch(outreach_server, api):
    """R2.2, §10.5: retry_after_format=delta → seconds until the reset."""
    outreach_server.app.config.update(rate_limit_per_hour=1, retry_after_format="delta")
    api.get("/api/v2/prospects")
    r = api.get("/api/v2/prospects")
    assert r.status_code == 429 and r.headers["Retry-After"] == str(NEXT_HOUR - T0_EPOCH)


def test_rate_limit_is_per_user(outreach_server, api):
    """§6: limits are per Outreach user; tokens of one user share the bucket."""
    outreach_server.app.config["rate_limit_per_hour"] = 2
    api.get("/api/v2/prospects")
    second_token = Api(outreach_server.url, outreach_server.app.issue_tokens(1, client_id="other")["access_token"])
    assert second_token.get("/api/v2/prospects").headers["X-RateLimit-Remaining"] == "0"
    assert api.get("/api/v2/prospects").status_code == 429
    other, uid = connect(outreach_server, email="b@corp.com", username="b")
    assert other.get("/api/v2/prospects").status_code == 200
    assert outreach_server.app.requests_by_user == {1: 2, uid: 1}


def test_two_value_remaining_switch(outreach_server, api):
    """§6 [C] TAP: X-RateLimit-Remaining may carry two comma-separated values."""
    outreach_server.app.config["rate_limit_remaining_two_values"] = True
    assert api.get("/api/v2/prospects").headers["X-RateLimit-Remaining"] == "9999, 19999"


# ---------------------------------------------------------------------------------- faults (§5.2)
def test_injected_503_is_scheduled_maintenance(outreach_server, api):
    """§5.2, §6: 503 scheduledServerMaintenance with a Retry-After ISO timestamp by default."""
    outreach_server.app.add_fault(path="^/api/v2/prospects$", status=503)
    r = api.get("/api/v2/prospects")
    assert r.status_code == 503 and r.headers["Content-Type"] == JSONAPI
    assert r.json() == {"errors": [{"id": "scheduledServerMaintenance", "title": "Scheduled Server Maintenance",
                                    "detail": "Scheduled server maintenance is under way; please try again "
                                              "at 2024-01-11T12:48:26."}]}
    assert r.headers["Retry-After"] == "2024-01-11T12:48:26Z"
    assert api.get("/api/v2/prospects").status_code == 200  # count=1 by default
    outreach_server.app.config["maintenance_retry_after_format"] = "delta"
    outreach_server.app.add_fault(status=503)
    assert api.get("/api/v2/prospects").headers["Retry-After"] == "60"


def test_injected_429_and_500_use_api_error_shape(outreach_server, api):
    """§5.2 / §6: injected faults answer like the API."""
    outreach_server.app.add_fault(path="^/api/v2/", status=429, count=1)
    r = api.get("/api/v2/accounts")
    assert r.status_code == 429 and err(r)["id"] == "rateLimitExceeded"
    assert r.headers["Retry-After"] == str(NEXT_HOUR)
    outreach_server.app.add_fault(method="POST", status=500)
    r = api.post("/api/v2/accounts", doc("account", {"name": "A"}))
    assert r.status_code == 500 and err(r)["id"] == "internalServerError"
    assert api.get("/api/v2/accounts", params={"count": "true"}).json()["meta"]["count"] == 0


def test_injected_faults_on_token_endpoint_are_plain_text(outreach_server):
    """R2.2 / JF-SENTRY: the token endpoint's 429 is "Retry later\\n", its 503 "no healthy upstream"."""
    outreach_server.app.add_fault(path="^/oauth/token$", status=429)
    outreach_server.app.add_fault(path="^/oauth/token$", status=503, skip=0)
    r = requests.post(outreach_server.url + "/oauth/token", data={})
    assert (r.status_code, r.text) == (429, "Retry later\n")


def test_injected_401_follows_unauthorized_body_switch(outreach_server, api):
    """§1.4: an injected 401 looks like a real one."""
    outreach_server.app.config["unauthorized_body"] = "gateway"
    outreach_server.app.add_fault(status=401)
    assert api.get("/api/v2/prospects").json() == {"error": "Invalid JWT token.",
                                                   "description": "The JWT token could not be decoded."}


# ------------------------------------------------------------------------------ robustness (#2)
@pytest.mark.parametrize("method,path,body,params", [
    ("GET", "/api/v2/prospects", None, {"filter[": "x"}),
    ("GET", "/api/v2/prospects", None, {"filter[]": "x"}),
    ("GET", "/api/v2/prospects", None, {"filter[emails][x][y]": "x"}),
    ("GET", "/api/v2/prospects", None, {"sort": ",,-,"}),
    ("GET", "/api/v2/prospects", None, {"count": "maybe"}),
    ("GET", "/api/v2/prospects", None, {"page[offset]": "x"}),
    ("GET", "/api/v2/prospects", None, {"page[before]": "%%%"}),
    ("GET", "/api/v2/prospects", None, {"fields[nothing]": "a"}),
    ("POST", "/api/v2/prospects", b"\xff\xfe", None),
    ("POST", "/api/v2/prospects", {"data": {"type": "prospect", "relationships": {"account": 5}}}, None),
    ("POST", "/api/v2/prospects", {"data": {"type": "prospect", "relationships": {"account": {"data": 5}}}}, None),
    ("POST", "/api/v2/prospects", {"data": {"type": "prospect", "relationships":
                                            {"account": {"data": {"type": "account", "id": True}}}}}, None),
    ("POST", "/api/v2/prospects", {"data": {"type": "prospect", "relationships": {"stage": {"data": None}}}}, None),
    ("POST", "/api/v2/prospects", {"data": {"type": ["prospect"]}}, None),
    ("PATCH", "/api/v2/prospects/1", {"data": {"type": "prospect", "id": {"x": 1}}}, None),
    ("PATCH", "/api/v2/prospects/abc", {"data": {"type": "prospect", "id": "abc"}}, None),
    ("PUT", "/api/v2/prospects/1", {"data": {}}, None),
    ("POST", "/api/v2/prospects/1", {"data": {}}, None),
    ("GET", "/api/v2/prospects/1/extra", None, None),
    ("GET", "/api/v2/sequences", None, None),
])
def test_malformed_requests_get_error_shape(api, method, path, body, params):
    """Issue #2: never crash; 4xx in the JSON:API error shape (the fixture asserts no internal errors)."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    r = api.request(method, path, body, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["Content-Type"] == JSONAPI
    assert set(r.json()["errors"][0]) >= {"id", "title"}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=12)
_attribute_names = st.sampled_from(["firstName", "emails", "tags", "score", "optedOut", "custom3", "addedAt",
                                    "dateOfBirth", "name", "bogus", "linkedInConnections"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attributes=st.dictionaries(_attribute_names, _json, max_size=4),
       relationships=st.dictionaries(st.sampled_from(["account", "owner", "x"]), _json, max_size=2))
def test_fuzzed_prospect_bodies_never_crash(outreach_server, attributes, relationships):
    """Issue #2: any JSON in attributes/relationships → 201 or a 4xx error shape, never a 500."""
    app = outreach_server.app
    app.config["rate_limit_per_hour"] = 10 ** 9
    if not app.stores["users"]:  # the server lives across hypothesis examples
        app.add_user("f@x.com", "f")
    token = app.issue_tokens(1)["access_token"]
    r = Api(outreach_server.url, token).post(
        "/api/v2/prospects", {"data": {"type": "prospect", "attributes": attributes, "relationships": relationships}})
    assert r.status_code in (201, 400, 409, 422), r.text
    if r.status_code != 201:
        assert "errors" in r.json()
    assert not outreach_server.app.internal_errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["filter[id]", "filter[updatedAt]", "filter[emails]", "sort",
                                               "page[size]", "page[after]", "filter[named]", "count",
                                               "newFilterSyntax", "filter[id][gte]", "include"]),
                              st.text(max_size=12), max_size=4))
def test_fuzzed_query_params_never_crash(outreach_server, params):
    """Issue #2: any query → 200 or 400 in the error shape."""
    app = outreach_server.app
    app.config["rate_limit_per_hour"] = 10 ** 9
    if not app.stores["users"]:
        app.add_user("f@x.com", "f")
        app.insert("prospects", {"firstName": "A", "emails": ["a@b.com"]})
    token = app.issue_tokens(1)["access_token"]
    r = Api(outreach_server.url, token).get("/api/v2/prospects", params=params)
    assert r.status_code in (200, 400), r.text
    assert not app.internal_errors


# ------------------------------------------------------------------------------ control surface
def test_control_routes(outreach_server):
    """DESIGN §7: users, tokens, records, seed, revoke and clients over /_emulator/."""
    url = outreach_server.url + "/_emulator"
    r = requests.post(url + "/users", json={"email": "a@corp.com", "username": "a", "first_name": "Ann"})
    assert r.status_code == 201 and r.json()["id"] == 1
    assert r.json()["data"]["attributes"]["name"] == "Ann"
    tokens = requests.post(url + "/tokens", json={"user_id": 1, "scopes": "prospects.read"}).json()
    assert tokens["expires_in"] == 7200 and tokens["scope"] == "prospects.read"
    api = Api(outreach_server.url, tokens["access_token"])
    r = requests.post(url + "/records/prospects",
                      json={"attributes": {"firstName": "Seeded", "emails": ["s@acme.com"]}})
    assert r.status_code == 201 and r.json()["data"]["id"] == 1
    assert api.get("/api/v2/prospects", params={"filter[emails]": "S@acme.com"}).json()["data"][0]["id"] == 1
    listed = requests.get(url + "/records/prospects").json()["data"]
    assert [p["attributes"]["firstName"] for p in listed] == ["Seeded"]
    assert requests.delete(url + "/records/prospects/1").json() == {"deleted": True}
    assert requests.get(url + "/records/prospects").json()["data"] == []
    seeded = requests.post(url + "/seed", json={"accounts": [{"name": "Acme", "owner": 1}],
                                                "prospects": [{"emails": ["x@acme.com"], "account": 1}],
                                                "excluded_domains": ["corp.com"]}).json()
    assert seeded == {"users": [], "accounts": [1], "prospects": [2]}
    assert outreach_server.app.record("prospects", 2)["relationships"]["account"]["data"] == {"type": "account",
                                                                                              "id": 1}
    assert requests.post(url + "/clients", json={"client_id": "c", "client_secret": "s"}).status_code == 201
    assert requests.post(url + "/revoke", json={"user_id": 1}).json() == {"ok": True}
    assert api.get("/api/v2/prospects").status_code == 401
    assert requests.post(url + "/users", json={"username": "x"}).status_code == 400
    assert requests.post(url + "/records/nothing", json={}).status_code == 404


def test_seed_python_api_and_timestamps(outreach_server):
    """DESIGN §7: seed() with ids, relationships and explicit timestamps; uniqueness sees seeds."""
    app = outreach_server.app
    freeze(outreach_server)
    created = app.seed({"users": [{"email": "o@corp.com", "username": "o", "first_name": "Olga", "id": 5}],
                        "accounts": [{"id": 10, "attributes": {"name": "Acme"}, "relationships": {"owner": 5}}],
                        "prospects": [{"emails": ["a@acme.com"], "owner": 5, "account": 10,
                                       "updatedAt": "2023-05-01T00:00:00Z"}]})
    assert created == {"users": [5], "accounts": [10], "prospects": [1]}
    prospect = app.record("prospects", 1)
    assert prospect["attributes"]["updatedAt"] == "2023-05-01T00:00:00.000Z"
    assert prospect["attributes"]["createdAt"] == "2024-01-11T12:47:26.000Z"
    assert prospect["attributes"]["company"] == "Acme"
    assert app.add_user("n@corp.com", "n") == 6
    api = Api(outreach_server.url, app.issue_tokens(5)["access_token"])
    r = api.post("/api/v2/prospects", doc("prospect", {"emails": ["A@acme.com"]}))
    assert r.status_code == 422
    with pytest.raises(ValueError):
        app.insert("accounts", {"id": 10, "name": "dup id"})
    with pytest.raises(ValueError):
        app.insert("prospects", {}, {"account": 999})
    with pytest.raises(ValueError):
        app.add_user("o@corp.com", "again")
    with pytest.raises(ValueError):
        app.seed({"users": [{"email": "o@corp.com", "username": "twin"}]})


def test_reset_empties_everything(outreach_server, api):
    """DESIGN §7: POST /_emulator/reset → data, tokens and config back to new."""
    api.post("/api/v2/accounts", doc("account", {"name": "A"}))
    outreach_server.app.config["rate_limit_per_hour"] = 1
    assert requests.post(outreach_server.url + "/_emulator/reset").json() == {"ok": True}
    assert outreach_server.app.records("accounts") == []
    assert outreach_server.app.config["rate_limit_per_hour"] == 10000
    assert api.get("/api/v2/accounts").status_code == 401


def test_config_route_lists_every_switch(outreach_server):
    """Issue #2: every uncertain behaviour is a switch readable and settable over HTTP."""
    config = requests.get(outreach_server.url + "/_emulator/config").json()
    assert config["refresh_token_single_use"] is True and config["retry_after_format"] == "epoch"
    assert config["oauth_clients"] == "any" and config["strict_content_type"] is True
    r = requests.post(outreach_server.url + "/_emulator/config", json={"retry_after_format": "delta"})
    assert r.json()["retry_after_format"] == "delta"


def test_request_counts_by_method_and_path(outreach_server, api):
    """DESIGN §7: core counts requests with ids normalised."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    api.get("/api/v2/prospects/1")
    assert outreach_server.app.count_of("GET", r"^/api/v2/prospects/\{id\}$") == 1
    assert outreach_server.app.count_of("POST", "/api/v2/prospects") == 1


def test_command_line_server_with_seed(tmp_path):
    """DESIGN §7: `python -m tools.emulators outreach --port 0 --seed FILE` prints its URL first."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"email": "a@corp.com", "username": "a"}],
                                "accounts": [{"name": "Acme"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "tools.emulators", "outreach", "--port", "0",
                             "--seed", str(seed), "--set", "rate_limit_per_hour=5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url + "/_emulator/config").json()["rate_limit_per_hour"] == 5
        assert [a["attributes"]["name"] for a in requests.get(url + "/_emulator/records/accounts").json()["data"]] \
            == ["Acme"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_many_creates_and_lookups_stay_fast(outreach_server, api):
    """Benchmark readiness: stores are dicts and emails are indexed, so look-ups do not scan."""
    app = outreach_server.app
    for i in range(3000):
        app.insert("prospects", {"emails": [f"p{i}@acme.com"]})
    started = time.perf_counter()
    for i in range(50):
        r = api.post("/api/v2/prospects", doc("prospect", {"emails": [f"new{i}@acme.com"]}))
        assert r.status_code == 201
        wanted = ",".join(f"p{j}@acme.com" for j in range(i * 20, i * 20 + 20))
        assert len(api.get("/api/v2/prospects", params={"filter[emails]": wanted}).json()["data"]) == 20
    assert time.perf_counter() - started < 10
