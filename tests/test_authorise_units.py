"""The authorisation web process's pure parts: request reading, the redirect URI, database
identity, and the `state` rules (expiry, single use, bound to the browser, kept per browser) with
a clock the test controls."""
from __future__ import annotations

import pytest

from plugin.authorise import (MAX_PENDING_PER_BROWSER, MAX_PENDING_STATES, STATE_TTL_SECONDS,
                              AuthorisationProcess, RequestRefused, action_of, redirect_uri, same_database)
from plugin.errors import ActionRequired
from plugin.webpage import Page
from plugin.websession import COOKIE, new_browser_id

DB = {"name": "Acme", "id": 7, "instance_id": 70}


class MemoryState:
    def __init__(self):
        self.values: dict = {}

    def get(self, key, default=None, **_):
        return self.values.get(key, default)

    def put(self, key, value, **_):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)


class FakeAuth:
    client_id, client_secret, redirect_uri = "id", "secret", "https://wb.example/wp/x"

    def __init__(self, state):
        self.state = state
        self.exchanged: list[str] = []

    def authorize_url(self, nonce, scopes):
        return f"https://outreach.example/oauth/authorize?state={nonce}"

    def redeem_code(self, code, instance_url=None):
        self.exchanged.append(code)
        return {"access_token": "a", "database": DB, "scopes": ["users.read"], "expires_at": 0,
                "instance_url": instance_url}

    def adopt(self, record):
        self.state.put("tokens", record)

    def status(self):
        tokens = self.state.get("tokens")
        return {k: v for k, v in tokens.items() if k != "access_token"} if tokens else None

    def revoke(self):
        self.state.delete("tokens")


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


ADMIN = new_browser_id()


def process(params, state, clock, database=DB, browser=ADMIN):
    cookie = {f"_cookie_{COOKIE}": browser} if browser else {}
    return AuthorisationProcess({**params, **cookie}, state=state, auth=FakeAuth(state), database=database,
                                scopes=["users.read"], clock=clock)


def start_nonce(state, clock, browser=ADMIN) -> str:
    page = process({"_query_action": "start"}, state, clock, browser=browser).handle()
    assert page.status == 302, page.body
    return dict(h for h in page.headers)["Location"].split("state=", 1)[1]


def test_state_expires():
    state, clock = MemoryState(), Clock()
    nonce = start_nonce(state, clock)
    clock.now += STATE_TTL_SECONDS + 1

    page = process({"_query_code": "c", "_query_state": nonce}, state, clock).handle()

    assert page.status == 400 and page.exit_code == 0      # refused, and nothing for a person to fix
    assert "This authorisation took too long and has expired" in page.body
    assert state.get("tokens") is None


def test_state_is_single_use_and_other_pending_starts_survive():
    state, clock = MemoryState(), Clock()
    first = start_nonce(state, clock)
    second = start_nonce(state, clock)

    ok = process({"_query_code": "c", "_query_state": second}, state, clock).handle()
    assert ok.status == 200 and ok.exit_code == 0
    assert len(state.get("oauth_state")["pending"]) == 1       # the first start is still open

    again = process({"_query_code": "c", "_query_state": second}, state, clock).handle()
    assert again.status == 400
    assert process({"_query_code": "c", "_query_state": first}, state, clock).handle().status == 200


def test_just_before_expiry_is_accepted():
    state, clock = MemoryState(), Clock()
    nonce = start_nonce(state, clock)
    clock.now += STATE_TTL_SECONDS - 1
    assert process({"_query_code": "c", "_query_state": nonce}, state, clock).handle().status == 200


def test_pending_starts_are_bounded_per_browser():
    state, clock = MemoryState(), Clock()
    nonces = [start_nonce(state, clock) for _ in range(12)]
    assert len(state.get("oauth_state")["pending"]) == MAX_PENDING_PER_BROWSER
    # the newest are kept: the last start of this browser still completes
    assert process({"_query_code": "c", "_query_state": nonces[-1]}, state, clock).handle().status == 200


def test_a_flood_of_starts_from_other_browsers_does_not_push_out_an_authorisation_in_progress():
    """§6 of issue 16: starts are kept per browser, bounded overall; when the store is full a
    browser with nothing in progress is asked to wait, and nobody's start is evicted."""
    state, clock = MemoryState(), Clock()
    admin = start_nonce(state, clock)
    for _ in range(MAX_PENDING_STATES + 10):
        page = process({"_query_action": "start"}, state, clock, browser=new_browser_id()).handle()
        assert page.status in (302, 429) and page.exit_code == 0
    assert len(state.get("oauth_state")["pending"]) == MAX_PENDING_STATES
    busy = process({"_query_action": "start"}, state, clock, browser=new_browser_id()).handle()
    assert busy.status == 429 and "Too many authorisations are in progress" in busy.body

    assert process({"_query_code": "c", "_query_state": admin}, state, clock).handle().status == 200


def test_a_start_without_the_cookie_stores_nothing_and_comes_back_with_it():
    state, clock = MemoryState(), Clock()
    first = process({"_query_action": "start"}, state, clock, browser=None).handle()
    headers = dict(first.headers)
    assert first.status == 303 and headers["Location"] == "?action=start&cookie_check=1"
    assert headers["Set-Cookie"].startswith(f"{COOKIE}=") and "HttpOnly" in headers["Set-Cookie"]
    assert "SameSite=Lax" in headers["Set-Cookie"]
    assert state.get("oauth_state") is None
    # a browser that drops the cookie is told so, and still nothing is stored
    dropped = process({"_query_action": "start", "_query_cookie_check": "1"}, state, clock, browser=None).handle()
    assert dropped.status == 400 and dropped.exit_code == 0 and "Allow cookies" in dropped.body
    assert state.get("oauth_state") is None


def test_a_callback_in_another_browser_is_refused():
    """§4 of issue 16: the state is bound to the browser that started it."""
    state, clock = MemoryState(), Clock()
    attacker = new_browser_id()
    nonce = start_nonce(state, clock, browser=attacker)

    for browser in (ADMIN, None):
        page = process({"_query_code": "c", "_query_state": nonce}, state, clock, browser=browser).handle()
        assert page.status == 400 and page.exit_code == 0
        assert state.get("tokens") is None
    assert "started in another browser" in process(
        {"_query_code": "c", "_query_state": start_nonce(state, clock, browser=attacker)}, state, clock).handle().body


@pytest.mark.parametrize("params, expected", [
    ({}, "status"),
    ({"_query_action": "START"}, "start"),
    ({"_query_code": "x", "_query_state": "y"}, "callback"),
    ({"_query_error": "access_denied"}, "callback"),
    ({"_post_action": "revoke", "_query_action": "status"}, "revoke"),
])
def test_action_of(params, expected):
    assert action_of(params) == expected


SERVICE = "https://acme.workbooks.com"


@pytest.mark.parametrize("params, service, expected", [
    ({"redirect_uri": "https://fixed.example/cb"}, SERVICE, "https://fixed.example/cb"),
    ({"_server_HTTP_HOST": "acme.workbooks.com", "_server_REQUEST_URI": "/wp/auth?action=start&x=1",
      "_server_HTTPS": "on"}, SERVICE, "https://acme.workbooks.com/wp/auth"),
    ({"_server_HTTP_HOST": "ACME.workbooks.com:443", "_server_REQUEST_URI": "/wp/auth"}, SERVICE,
     "https://acme.workbooks.com:443/wp/auth"),
    ({"_server_HTTP_HOST": "localhost:8080", "_server_REQUEST_URI": "/wp/auth", "_server_REQUEST_SCHEME": "http"},
     "http://localhost:8080", "http://localhost:8080/wp/auth"),
    ({"_server_SERVER_NAME": "acme.workbooks.com", "_server_SCRIPT_NAME": "/wp/auth"}, SERVICE,
     "https://acme.workbooks.com/wp/auth"),
])
def test_redirect_uri(params, service, expected):
    assert redirect_uri(params, service) == expected


@pytest.mark.parametrize("host", ["evil.example", "victim@evil.example", "evil.example/x?", "acme.workbooks.com@evil.example",
                                  "acme.workbooks.com/x", "acme.workbooks.com?", "acme.workbooks.com#x",
                                  "acme.workbooks.com:8443", "acme.workbooks.com.evil.example",
                                  "acme.workbooks.com\r\nX: y", ""])
def test_a_host_that_is_not_the_workbooks_service_is_refused(host):
    """§4 of issue 16: with no recorded redirect URI, the Host header is accepted only when it is
    the Workbooks service's own host (and port), with nothing that could move the URL elsewhere."""
    params = {"_server_HTTP_HOST": host or "x", "_server_REQUEST_URI": "/wp/auth", "_server_HTTPS": "on"}
    if not host:
        params["_server_HTTP_HOST"] = " "
    with pytest.raises(RequestRefused, match="not this Workbooks service"):
        redirect_uri(params, SERVICE)


def test_redirect_uri_unknown():
    with pytest.raises(ActionRequired, match="redirect_uri parameter"):
        redirect_uri({"_query_action": "start"}, SERVICE)


@pytest.mark.parametrize("a, b, same", [
    (DB, dict(DB), True),
    (DB, {**DB, "name": "Renamed"}, True),               # a rename is still the same database
    (DB, {**DB, "instance_id": 71}, False),              # a copy
    (DB, {**DB, "id": 8}, False),
    ({"name": "Acme"}, {"name": "Acme"}, True),          # no ids: the names decide (as plugin.oauth)
    ({"name": "Acme"}, {"name": "Other"}, False),
    ({}, {"name": "Acme"}, False),                       # nothing to compare: not proven the same
    (None, DB, False),
])
def test_same_database(a, b, same):
    assert same_database(a, b) is same


def test_page_lines_put_headers_first():
    page = Page(302, [("Location", "https://x.example/")], "<p>go</p>")
    assert page.lines() == ["[header] Status: 302", "[header] Location: https://x.example/", "<p>go</p>"]
