"""OutreachAuth: tokens in API Data (Workbooks emulator), refreshed at the Outreach emulator."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from plugin.errors import NotAuthorised, RateLimited, TransientError
from plugin.oauth import OutreachAuth, client_credentials
from plugin.state import StateStore

from .client_helpers import CLIENT_ID, CLIENT_SECRET, api_key_client, outreach_stack, store_tokens

TOKENS = "outreach_sync.tokens"


def _stored(workbooks_server):
    """The tokens as Workbooks holds them right now (not through any cache)."""
    import json
    rows = [r for r in workbooks_server.app.records("api_data") if r["key"] == TOKENS]
    return json.loads(rows[0]["value"]) if rows else None


def test_a_valid_token_costs_no_token_request(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server)
    assert stack.auth.access_token() == stack.tokens["access_token"]
    assert outreach_server.app.count_of("POST", "/oauth/token") == 0


def test_refresh_when_under_five_minutes_and_rotation_is_stored(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=240)
    token = stack.auth.access_token()
    assert token != stack.tokens["access_token"]
    stored = _stored(workbooks_server)
    assert stored["access_token"] == token
    assert stored["refresh_token"] != stack.tokens["refresh_token"]
    assert stored["expires_at"] > time.time() + 7000
    assert stored["scopes"] == ["prospects.all", "accounts.all", "users.read"]
    assert stored["database"] == workbooks_server.app.database and stored["refreshed_at"]
    # the emulator is strict: the old refresh token is dead, so only the stored one can go on
    outreach_server.app.clock.advance(61)                   # past the one-mint-a-minute throttle
    assert stack.auth.force_refresh() != token
    assert _stored(workbooks_server)["refresh_token"] != stored["refresh_token"]


def test_rotation_is_persisted_before_use_despite_a_failed_save(workbooks_server, outreach_server):
    """A Workbooks failure right after the token call: the save is retried and the new refresh
    token is in API Data before any API call uses the new access token."""
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=100)
    wb_app, or_app = workbooks_server.app, outreach_server.app
    order = []
    stack.outreach_http.session.hooks["response"].append(lambda r, *a, **k: order.append(("outreach", r.url)))
    stack.wb.http.session.hooks["response"].append(lambda r, *a, **k: order.append(("workbooks", r.request.method)))
    wb_app.add_fault(method="PUT", path="/automation/api_data.api", status=500, count=1)
    users = stack.outreach.list_users()
    assert users
    stored = _stored(workbooks_server)
    assert stored["refresh_token"] != stack.tokens["refresh_token"]
    token_call = next(i for i, (side, what) in enumerate(order) if side == "outreach" and "/oauth/token" in what)
    api_call = next(i for i, (side, what) in enumerate(order) if side == "outreach" and "/api/v2/users" in what)
    saves = [i for i, (side, what) in enumerate(order) if side == "workbooks" and what == "PUT"]
    assert token_call < saves[0] < saves[1] < api_call          # failed save, retried save, then use
    assert stack.sleeps.calls                                   # it backed off between the saves


def test_a_save_that_keeps_failing_never_uses_or_loses_the_new_token(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=100)
    wb_app, or_app = workbooks_server.app, outreach_server.app
    wb_app.add_fault(method="PUT", path="/automation/api_data.api", status=500, count=None)
    with pytest.raises(TransientError, match="could not be saved") as caught:
        stack.outreach.list_users()
    assert or_app.count_of("GET", "/api/v2/users") == 0       # the new token was not used
    assert _stored(workbooks_server)["refresh_token"] == stack.tokens["refresh_token"]
    assert stack.tokens["refresh_token"] not in str(caught.value)
    wb_app.clear_faults()                                      # Workbooks is back
    assert stack.outreach.list_users()
    assert or_app.count_of("POST", "/oauth/token") == 1        # no second refresh was needed
    assert _stored(workbooks_server)["refresh_token"] != stack.tokens["refresh_token"]


def test_invalid_grant_means_not_authorised(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=60)
    outreach_server.app.revoke(stack.user_id)
    with pytest.raises(NotAuthorised) as caught:
        stack.auth.access_token()
    assert str(caught.value).startswith("Outreach is not authorised: run the authorisation")
    assert "invalid_grant" in str(caught.value) and caught.value.exit_code == 2


def test_token_endpoint_429_keeps_a_still_valid_token(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=200)
    first = stack.auth.access_token()                       # refreshed: the 60 s mint throttle starts
    record = stack.state.get("tokens")
    stack.state.put("tokens", {**record, "expires_at": int(time.time()) + 200})
    stack.auth._tokens = None
    assert stack.auth.access_token() == first               # 429 "Retry later": keep using it
    assert outreach_server.app.count_of("POST", "/oauth/token") == 2


def test_token_endpoint_429_with_an_expired_token_is_transient(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=10)
    outreach_server.app.add_fault(path="/oauth/token", status=429)
    with pytest.raises(RateLimited) as caught:
        stack.auth.access_token()
    assert caught.value.exit_code == 1


def test_token_endpoint_outage_with_a_valid_token_is_survived(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=200)
    outreach_server.app.add_fault(path="/oauth/token", status=503)
    logged = []
    stack.auth._log = lambda level, message: logged.append((level, message))
    assert stack.auth.access_token() == stack.tokens["access_token"]
    assert logged and logged[0][0] == "warning"


def test_a_copied_database_is_refused(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server)
    copy = OutreachAuth(stack.state, stack.outreach_http, oauth_url=f"{outreach_server.url}/oauth",
                        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        database={"name": "Emulated Database (copy)", "id": 2, "instance_id": 9999})
    with pytest.raises(NotAuthorised) as caught:
        copy.access_token()
    assert "copied database" in str(caught.value) and "Emulated Database" in str(caught.value)
    assert outreach_server.app.count_of() == 0


def test_no_tokens_and_no_client(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, store=False)
    with pytest.raises(NotAuthorised, match="^Outreach is not authorised: run the authorisation$"):
        stack.auth.access_token()
    store_tokens(stack.state, stack.tokens, stack.wb.database, expires_in=10)
    no_client = OutreachAuth(stack.state, stack.outreach_http, oauth_url=f"{outreach_server.url}/oauth",
                             client_id=None, client_secret=None, database=stack.wb.database)
    with pytest.raises(NotAuthorised, match="client id/secret"):
        no_client.access_token()


def test_authorisation_code_flow_status_and_revoke(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, store=False)
    url = stack.auth.authorize_url("nonce-123", ["prospects.all", "accounts.all", "users.read"])
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["prospects.all accounts.all users.read"] and query["state"] == ["nonce-123"]
    answer = requests.get(url, allow_redirects=False, timeout=5)
    callback = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert callback["state"] == ["nonce-123"]
    status = stack.auth.exchange_code(callback["code"][0], instance_url=f"{outreach_server.url}/api/v2")
    assert status["database"] == workbooks_server.app.database
    assert status["scopes"] == ["prospects.all", "accounts.all", "users.read"]
    assert "access_token" not in str(status) and "refresh_token" not in str(status)
    stored = _stored(workbooks_server)
    assert stored["instance_url"].endswith("/api/v2") and stored["authorised_at"]
    assert stack.outreach.list_users()
    with pytest.raises(NotAuthorised, match="authorisation code"):
        stack.auth.exchange_code(callback["code"][0])            # codes are single-use
    stack.auth.revoke()
    assert _stored(workbooks_server) is None
    with pytest.raises(NotAuthorised):
        stack.auth.access_token()


def test_dry_run_saves_only_a_rotated_token(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=200)
    dry_state = StateStore(api_key_client(workbooks_server), dry_run=True)
    dry = OutreachAuth(dry_state, stack.outreach_http, oauth_url=f"{outreach_server.url}/oauth",
                       client_id=CLIENT_ID, client_secret=CLIENT_SECRET, database=stack.wb.database)
    assert dry.access_token() == stack.tokens["access_token"]     # still valid: no rotation in a dry run
    assert outreach_server.app.count_of("POST", "/oauth/token") == 0
    record = dry_state.get("tokens")
    StateStore(api_key_client(workbooks_server)).put("tokens", {**record, "expires_at": int(time.time()) - 1})
    dry_state = StateStore(api_key_client(workbooks_server), dry_run=True)
    dry = OutreachAuth(dry_state, stack.outreach_http, oauth_url=f"{outreach_server.url}/oauth",
                       client_id=CLIENT_ID, client_secret=CLIENT_SECRET, database=stack.wb.database)
    new = dry.access_token()
    assert _stored(workbooks_server)["access_token"] == new       # saved: losing it would be worse
    dry_state.put("watermark.people", {"at": "x"})
    assert StateStore(api_key_client(workbooks_server)).get("watermark.people") is None


def test_client_credentials_precedence():
    install = {"oauth_client": {"client_id": "from-install", "client_secret": "s1", "redirect_uri": "https://i"}}
    assert client_credentials({}, install) == ("from-install", "s1", "https://i")
    both = {"outreach_client_id": "from-params", "outreach_client_secret": "s2"}
    assert client_credentials(both, install) == ("from-params", "s2", "https://i")
    half = {"outreach_client_id": "only-id"}
    assert client_credentials(half, install)[:2] == ("from-install", "s1")
    assert client_credentials({}, None) == (None, None, None)


def test_no_token_or_secret_in_any_message(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, expires_in=100)
    wb_app, or_app = workbooks_server.app, outreach_server.app
    messages = []
    secret_body = {"error": "server_error",
                   "error_description": f"bad {stack.tokens['refresh_token']} {CLIENT_SECRET}"}
    or_app.add_fault(path="/oauth/token", status=418, body=secret_body)
    with pytest.raises(Exception) as caught:
        stack.auth.access_token()
    messages.append(str(caught.value))
    wb_app.add_fault(method="PUT", path="/automation/api_data.api", status=500, count=None)
    with pytest.raises(TransientError) as caught:
        stack.auth.access_token()
    messages.append(str(caught.value))
    wb_app.clear_faults()
    or_app.add_fault(path="/api/v2/users", status=500, count=None,
                     body={"errors": [{"detail": f"Bearer {stack.auth.access_token()} rejected"}]})
    with pytest.raises(TransientError) as caught:
        stack.outreach.list_users()
    messages.append(str(caught.value))
    secrets = [CLIENT_SECRET, stack.tokens["refresh_token"], stack.tokens["access_token"],
               *stack.auth.secrets(), stack.wb.api_key]
    for message in messages:
        assert message
        for secret in secrets:
            assert secret not in message, message
