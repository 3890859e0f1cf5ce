"""Contract tests of the Outreach emulator's OAuth 2.0 (reference/outreach-api.md §1, R2.1, R2.2, R2.4)."""
from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
import requests

from tests.emulators.test_outreach_contract import JSONAPI, Api, connect, doc, err, freeze
from tools.emulators.core import parse_iso

REDIRECT = "http://localhost:8765/callback"
SCOPES = "prospects.all accounts.all users.read"
INVALID_GRANT = ("The provided authorization grant is invalid, expired, revoked, does not match the "
                 "redirection URI used in the authorization request, or was issued to another client.")


def authorize(server, **overrides):
    params = {"client_id": "cid", "redirect_uri": REDIRECT, "response_type": "code", "scope": SCOPES,
              "state": "st-123", **overrides}
    params = {k: v for k, v in params.items() if v is not None}
    return requests.get(server.url + "/oauth/authorize", params=params, allow_redirects=False, timeout=10)


def redirect_params(response) -> dict:
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(location).query))


def get_code(server, **overrides) -> str:
    return redirect_params(authorize(server, **overrides))["code"]


def token(server, as_json=False, **fields):
    body = {"client_id": "cid", "client_secret": "secret", **fields}
    body = {k: v for k, v in body.items() if v is not None}
    if as_json:
        return requests.post(server.url + "/oauth/token", json=body, timeout=10)
    return requests.post(server.url + "/oauth/token", data=body, timeout=10)


def exchange(server, code, **fields):
    return token(server, grant_type="authorization_code", code=code, **{"redirect_uri": REDIRECT, **fields})


def refresh(server, refresh_token, **fields):
    return token(server, grant_type="refresh_token", refresh_token=refresh_token, **fields)


@pytest.fixture
def server(outreach_server):
    freeze(outreach_server)
    outreach_server.app.add_user("rep@corp.com", "rep", "Rita", "Rep")
    return outreach_server


# --------------------------------------------------------------------------------- authorize
def test_authorize_redirects_with_code_and_state(server):
    """§1.1: authorize → redirect to redirect_uri with a code and the caller's state."""
    r = authorize(server)
    assert r.status_code == 302
    params = redirect_params(r)
    assert set(params) == {"code", "state"} and params["state"] == "st-123" and len(params["code"]) >= 20


def test_authorize_keeps_existing_query_of_redirect_uri(server):
    """§1.1: the code is appended to a redirect_uri that already has a query."""
    r = authorize(server, redirect_uri=REDIRECT + "?db=7", state=None)
    location = r.headers["Location"]
    assert location.startswith(REDIRECT + "?db=7&code=") and "state=" not in location


def test_authorize_deny_switch(server):
    """§1.1 / issue #2: oauth_clients=deny → the user refuses: error=access_denied plus state."""
    server.app.config["oauth_clients"] = "deny"
    params = redirect_params(authorize(server))
    assert params["error"] == "access_denied" and params["state"] == "st-123" and "code" not in params


def test_authorize_registered_clients_only(server):
    """Issue #2: oauth_clients=registered → unknown clients fail, registered ones pass."""
    server.app.config["oauth_clients"] = "registered"
    r = authorize(server)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    server.app.register_client("cid", "secret", [REDIRECT])
    assert authorize(server).status_code == 302
    r = authorize(server, redirect_uri="http://evil.example/cb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_authorize_bad_requests(server):
    """§1.1: response_type must be `code`; scopes are `<plural>.<read|write|delete|all>`."""
    assert redirect_params(authorize(server, response_type="token"))["error"] == "unsupported_response_type"
    assert redirect_params(authorize(server, scope="prospects.everything"))["error"] == "invalid_scope"
    assert authorize(server, redirect_uri=None).status_code == 400
    assert authorize(server, client_id=None).status_code == 400


def test_authorize_as_user_switch_binds_tokens_to_that_user(server):
    """§1.1, §6: tokens are bound to the approving user (rate limits are per user)."""
    second = server.app.add_user("two@corp.com", "two")
    server.app.config["authorize_as_user"] = "two@corp.com"
    tokens = exchange(server, get_code(server)).json()
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    assert claims["sub"] == second
    r = Api(server.url, tokens["access_token"]).get("/api/v2/users/1")
    assert r.status_code == 200
    assert server.app.requests_by_user == {second: 1}


def test_authorize_without_users_is_access_denied(outreach_server):
    """§1.1 [I]: nobody to approve → access_denied (never a crash)."""
    params = redirect_params(authorize(outreach_server))
    assert params["error"] == "access_denied"


# ------------------------------------------------------------------------------------- token
def test_code_exchange_form_body_response_shape(server):
    """§1.1 [V]: {access_token, token_type:"bearer", expires_in:7200, refresh_token, scope, created_at}."""
    r = exchange(server, get_code(server))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "created_at"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 7200
    assert body["scope"] == "prospects.all+accounts.all+users.read"
    assert body["created_at"] == int(parse_iso("2024-01-11T12:47:26Z").timestamp())
    header, claims, signature = body["access_token"].split(".")  # JWT-looking (OAS bearerFormat JWT)
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["typ"] == "JWT"
    assert json.loads(base64.urlsafe_b64decode(claims + "=="))["exp"] == body["created_at"] + 7200
    assert signature


def test_code_exchange_json_body(server):
    """§1.1 [C]: production clients send JSON bodies; both encodings work."""
    r = token(server, as_json=True, grant_type="authorization_code", code=get_code(server), redirect_uri=REDIRECT)
    assert r.status_code == 200 and r.json()["token_type"] == "bearer"


def test_scope_separator_switch(server):
    """§1.1: token_scope_separator=" " gives the OAuth-standard space-separated scope."""
    server.app.config["token_scope_separator"] = " "
    assert exchange(server, get_code(server)).json()["scope"] == SCOPES


def test_code_is_single_use(server):
    """§1.2 / §10.3: a used code → 400 invalid_grant with error_description."""
    code = get_code(server)
    assert exchange(server, code).status_code == 200
    server.app.clock.advance(61)
    r = exchange(server, code)
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": INVALID_GRANT}


def test_code_expires(server):
    """§1.1 [I]: codes are short-lived (authorization_code_ttl, 600 s)."""
    code = get_code(server)
    server.app.clock.advance(600)
    assert exchange(server, code).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("fields", [{"redirect_uri": "http://localhost:9/other"}, {"client_id": "another"},
                                    {"code": "nonsense"}])
def test_code_bound_to_client_and_redirect(server, fields):
    """§1.1: the code must come back with its own client and redirect_uri."""
    code = get_code(server)
    r = exchange(server, fields.pop("code", code), **fields)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_token_is_dead_by_default(server):
    """§1.2, R2.4, issue #2: every refresh returns a new refresh token; the used one dies at once."""
    first = exchange(server, get_code(server)).json()
    server.app.clock.advance(60)
    r = refresh(server, first["refresh_token"], redirect_uri=None)  # SG/PH omit redirect_uri
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    server.app.clock.advance(60)
    r = refresh(server, first["refresh_token"])
    assert r.status_code == 400 and r.json() == {"error": "invalid_grant", "error_description": INVALID_GRANT}
    assert refresh(server, second["refresh_token"]).status_code == 200


def test_refresh_lenient_switch_keeps_old_tokens_until_max_active(server):
    """R2.4: refresh_token_single_use=false → old tokens live until N newer ones exist."""
    server.app.config.update(refresh_token_single_use=False, max_active_refresh_tokens=3,
                             token_mint_min_interval=0)
    first = exchange(server, get_code(server)).json()["refresh_token"]
    assert refresh(server, first).status_code == 200  # 2 live
    assert refresh(server, first).status_code == 200  # 3 live: still the same token reused (TAP)
    assert refresh(server, first).status_code == 200  # 4th minted: `first` was the oldest → dead
    assert refresh(server, first).json()["error"] == "invalid_grant"


def test_refresh_token_expires_after_14_days(server):
    """§1.2: refresh tokens live 14 days from creation."""
    server.app.config["refresh_token_single_use"] = False
    tokens = exchange(server, get_code(server)).json()
    server.app.clock.advance(14 * 86400 - 1)
    assert refresh(server, tokens["refresh_token"]).status_code == 200
    server.app.clock.advance(1)
    assert refresh(server, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_mint_throttle_is_429_plain_text_and_keeps_the_grant(server):
    """§1.2, R2.2: one mint per user+app per 60 s; sooner → 429 text/plain "Retry later\\n"."""
    tokens = exchange(server, get_code(server)).json()
    server.app.clock.advance(59)
    r = refresh(server, tokens["refresh_token"])
    assert r.status_code == 429
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "Retry later\n"
    server.app.clock.advance(1)
    assert refresh(server, tokens["refresh_token"]).status_code == 200  # not consumed by the 429


def test_mint_throttle_is_per_client(server):
    """§1.2: the throttle counts per user *and* app."""
    exchange(server, get_code(server))
    code = get_code(server, client_id="other-app")
    assert exchange(server, code, client_id="other-app").status_code == 200


def test_token_request_errors(server):
    """§1.1: client credentials are required; unknown grant types are refused."""
    r = token(server, client_secret=None, grant_type="authorization_code", code="x", redirect_uri=REDIRECT)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = token(server, grant_type="client_credentials")  # §1.1: no client_credentials grant
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = token(server)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = requests.post(server.url + "/oauth/token", data="{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_registered_client_secret_is_checked(server):
    """Issue #2: with oauth_clients=registered the secret must match."""
    server.app.config["oauth_clients"] = "registered"
    server.app.register_client("cid", "secret", [REDIRECT])
    code = get_code(server)
    r = exchange(server, code, client_secret="wrong")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert exchange(server, code).status_code == 200


def test_any_client_remembers_its_first_secret(server):
    """oauth_clients="any" (default, issue #2): any client id is approved, but the first secret
    seen for it is its secret from then on (§1.1; RFC 6749 §5.2 invalid_client)."""
    first = exchange(server, get_code(server)).json()
    server.app.clock.advance(60)
    r = refresh(server, first["refresh_token"], client_secret="another-secret")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = exchange(server, get_code(server), client_secret="another-secret")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert refresh(server, first["refresh_token"]).status_code == 200       # the grant was not used up
    other = exchange(server, get_code(server, client_id="other-app"), client_id="other-app",
                     client_secret="its-own")                                  # another client, its own secret
    assert other.status_code == 200


def test_any_client_remembers_its_first_redirect_uri(server):
    """oauth_clients="any": the first redirect_uri seen for a client id is its registered one;
    another is refused at /authorize (400 invalid_request, not redirected: RFC 6749 §4.1.2.1)
    and at /token (invalid_grant, RFC 6749 §5.2)."""
    tokens = exchange(server, get_code(server)).json()
    r = authorize(server, redirect_uri="http://evil.example/cb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request" and "Location" not in r.headers
    server.app.clock.advance(60)
    r = refresh(server, tokens["refresh_token"], redirect_uri="http://evil.example/cb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert refresh(server, tokens["refresh_token"], redirect_uri=REDIRECT).status_code == 200
    assert authorize(server, client_id="fresh-app", redirect_uri="http://elsewhere.example/cb").status_code == 302


def test_http_basic_client_credentials(server):
    """RFC 6749 §2.3.1: client credentials may come as HTTP Basic."""
    r = requests.post(server.url + "/oauth/token", auth=("cid", "secret"),
                      data={"grant_type": "authorization_code", "code": get_code(server), "redirect_uri": REDIRECT})
    assert r.status_code == 200


# ------------------------------------------------------------------------------ bearer (§1.4)
def test_missing_bad_expired_revoked_token_is_401(server):
    """§1.4: 401 for a missing, unknown, expired or revoked access token; never echoes the token."""
    tokens = exchange(server, get_code(server)).json()
    api = Api(server.url, tokens["access_token"])
    assert api.get("/api/v2/prospects").status_code == 200
    r = Api(server.url, None).get("/api/v2/prospects")
    assert r.status_code == 401
    assert r.json() == {"errors": [{"id": "unauthorized", "title": "Unauthorized",
                                    "detail": "The access token is missing"}]}
    assert "X-RateLimit-Limit" not in r.headers
    r = Api(server.url, "not.a.token").get("/api/v2/prospects")
    assert r.status_code == 401 and "not.a.token" not in r.text
    server.app.clock.advance(7199)
    assert api.get("/api/v2/prospects").status_code == 200
    server.app.clock.advance(1)
    r = api.get("/api/v2/prospects")
    assert r.status_code == 401 and err(r)["detail"] == "The access token expired"
    assert tokens["access_token"] not in r.text


def test_revoke_kills_access_and_refresh_tokens(server):
    """§1.4, issue #2: a revoked token → 401; its refresh token → invalid_grant."""
    tokens = exchange(server, get_code(server)).json()
    server.app.revoke(1)
    assert Api(server.url, tokens["access_token"]).get("/api/v2/prospects").status_code == 401
    server.app.clock.advance(60)
    assert refresh(server, tokens["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("shape,body,content_type", [
    ("gateway", {"error": "Invalid JWT token.", "description": "The JWT token could not be decoded."},
     "application/json"),
    ("empty", None, None)])
def test_unauthorized_body_switch(server, shape, body, content_type):
    """R2.1: 401 body per switch (JSON:API by default, gateway's bare form, or empty)."""
    server.app.config["unauthorized_body"] = shape
    r = Api(server.url, "nope").get("/api/v2/accounts")
    assert r.status_code == 401
    if body is None:
        assert r.content == b""
    else:
        assert r.json() == body and r.headers["Content-Type"] == content_type


def test_old_access_token_still_works_after_refresh(server):
    """§1.2 [I]: a refresh does not revoke the access token minted before it (it just expires)."""
    first = exchange(server, get_code(server)).json()
    server.app.clock.advance(60)
    refresh(server, first["refresh_token"])
    assert Api(server.url, first["access_token"]).get("/api/v2/prospects").status_code == 200


# -------------------------------------------------------------------------------- scopes (§1.3)
def test_missing_scope_is_403_unauthorized_oauth_scope(outreach_server):
    """§1.3 [S]: the documented 403 body."""
    api, _ = connect(outreach_server, "prospects.write accounts.all")
    r = api.get("/api/v2/prospects")  # scopes are not additive: write gives no read
    assert r.status_code == 403 and r.headers["Content-Type"] == JSONAPI
    assert r.json() == {"errors": [{"id": "unauthorizedOauthScope", "title": "Unauthorized OAuth Scope",
                                    "detail": "Your authorization does not include the required scope "
                                              "'prospects.read'."}]}
    assert api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"})).status_code == 201
    r = api.delete("/api/v2/prospects/1")
    assert r.status_code == 403 and "'prospects.delete'" in err(r)["detail"]
    r = api.get("/api/v2/users")
    assert r.status_code == 403 and "'users.read'" in err(r)["detail"]


def test_all_scope_is_read_write_delete(outreach_server):
    """§1.3: `all` = read + write + delete."""
    api, _ = connect(outreach_server, "accounts.all")
    assert api.post("/api/v2/accounts", doc("account", {"name": "A"})).status_code == 201
    assert api.get("/api/v2/accounts/1").status_code == 200
    assert api.patch("/api/v2/accounts/1", doc("account", {"name": "B"}, id=1)).status_code == 200
    assert api.delete("/api/v2/accounts/1").status_code == 204


def test_users_read_scope_cannot_write_users(outreach_server):
    """§1.3: users.read lets the integration read owners only."""
    api, uid = connect(outreach_server, "users.read")
    assert api.get(f"/api/v2/users/{uid}").status_code == 200
    r = api.patch(f"/api/v2/users/{uid}", doc("user", {"title": "x"}, id=uid))
    assert r.status_code == 403 and "'users.write'" in err(r)["detail"]


def test_api_root_describes_the_token(outreach_server):
    """§2 [C]: GET /api/v2 answers for a valid token (shape unknown; used as a connection check)."""
    api, uid = connect(outreach_server, "users.read")
    r = api.get("/api/v2")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["userId"] == uid


def test_api_root_can_name_no_user(outreach_server):
    """§2 [I]: the API root's shape is unknown; `api_root_shape=opaque` answers 200 naming nobody,
    so a client cannot take the token's user from it."""
    outreach_server.app.config["api_root_shape"] = "opaque"
    api, _uid = connect(outreach_server, "users.read")
    r = api.get("/api/v2")
    assert r.status_code == 200 and r.json() == {"data": {"type": "application", "attributes": {}}}
