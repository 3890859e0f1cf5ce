"""The authorisation web process's pure parts: request reading, the redirect URI, database
identity, and the `state` rules (expiry, single use) with a clock the test controls."""
from __future__ import annotations

import pytest

from plugin.authorise import (STATE_TTL_SECONDS, AuthorisationProcess, Page, action_of, redirect_uri,
                              same_database)
from plugin.errors import ActionRequired

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

    def exchange_code(self, code, instance_url=None):
        self.exchanged.append(code)
        self.state.put("tokens", {"access_token": "a", "database": DB, "scopes": ["users.read"],
                                  "expires_at": 0, "instance_url": instance_url})

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


def process(params, state, clock, database=DB):
    return AuthorisationProcess(params, state=state, auth=FakeAuth(state), database=database,
                                scopes=["users.read"], clock=clock)


def start_nonce(state, clock) -> str:
    page = process({"_query_action": "start"}, state, clock).handle()
    assert page.status == 302
    return dict(h for h in page.headers)["Location"].split("state=", 1)[1]


def test_state_expires():
    state, clock = MemoryState(), Clock()
    nonce = start_nonce(state, clock)
    clock.now += STATE_TTL_SECONDS + 1

    page = process({"_query_code": "c", "_query_state": nonce}, state, clock).handle()

    assert page.status == 400 and page.exit_code == 2
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


def test_pending_starts_are_bounded():
    state, clock = MemoryState(), Clock()
    for _ in range(12):
        start_nonce(state, clock)
    assert len(state.get("oauth_state")["pending"]) == 5


@pytest.mark.parametrize("params, expected", [
    ({}, "status"),
    ({"_query_action": "START"}, "start"),
    ({"_query_code": "x", "_query_state": "y"}, "callback"),
    ({"_query_error": "access_denied"}, "callback"),
    ({"_post_action": "revoke", "_query_action": "status"}, "revoke"),
])
def test_action_of(params, expected):
    assert action_of(params) == expected


@pytest.mark.parametrize("params, expected", [
    ({"redirect_uri": "https://fixed.example/cb"}, "https://fixed.example/cb"),
    ({"_server_HTTP_HOST": "acme.workbooks.com", "_server_REQUEST_URI": "/wp/auth?action=start&x=1",
      "_server_HTTPS": "on"}, "https://acme.workbooks.com/wp/auth"),
    ({"_server_HTTP_HOST": "localhost:8080", "_server_REQUEST_URI": "/wp/auth", "_server_REQUEST_SCHEME": "http"},
     "http://localhost:8080/wp/auth"),
    ({"_server_SERVER_NAME": "acme.workbooks.com", "_server_SCRIPT_NAME": "/wp/auth"},
     "https://acme.workbooks.com/wp/auth"),
])
def test_redirect_uri(params, expected):
    assert redirect_uri(params) == expected


def test_redirect_uri_unknown():
    with pytest.raises(ActionRequired, match="redirect_uri parameter"):
        redirect_uri({"_query_action": "start"})


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
