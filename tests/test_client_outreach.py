"""OutreachClient over real HTTP against the Outreach emulator (tokens stored in the Workbooks
emulator's API Data)."""
from __future__ import annotations

import time

import pytest

from plugin.errors import (BudgetSpent, NotAuthorised, OutreachError, OutreachNotFound,
                           OutreachValidation, RateLimited, TransientError)

from .client_helpers import outreach_stack


@pytest.fixture
def stack(workbooks_server, outreach_server):
    return outreach_stack(workbooks_server, outreach_server)


def _prospect(stack, email, **attrs):
    return stack.outreach.create("prospect", {"firstName": "Pat", "lastName": "Lee", "emails": [email], **attrs})


def test_create_get_update_and_headers(stack, outreach_server):
    wire = []
    stack.outreach_http.session.hooks["response"].append(lambda r, *a, **k: wire.append(r.request))
    account = stack.outreach.create("account", {"name": "Acme, Inc.", "customId": "WB-ORG-1"},
                                    {"owner": stack.user_id})
    prospect = stack.outreach.create("prospect", {"firstName": "Sally", "emails": ["sally@acme.com"]},
                                     {"account": account["id"], "owner": stack.user_id})
    assert prospect["relationships"]["account"]["data"] == {"type": "account", "id": account["id"]}
    assert prospect["links"]["self"].endswith(f"/prospects/{prospect['id']}")
    patched = stack.outreach.update("prospect", prospect["id"], {"title": "CTO"}, {"account": None})
    assert patched["attributes"]["title"] == "CTO" and patched["attributes"]["firstName"] == "Sally"
    assert patched["relationships"]["account"]["data"] is None
    assert stack.outreach.get("prospect", prospect["id"])["attributes"]["title"] == "CTO"
    request = wire[-2]
    assert request.method == "PATCH"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.headers["Accept"] == "application/vnd.api+json"
    assert request.headers["Authorization"] == f"Bearer {stack.tokens['access_token']}"
    assert b'"id": ' in request.body and b'"type": "prospect"' in request.body
    assert stack.outreach.requests_made == 4 and stack.budget["used"] == 4


def test_errors_are_typed(stack, outreach_server):
    _prospect(stack, "taken@example.com")
    with pytest.raises(OutreachValidation) as caught:
        _prospect(stack, "TAKEN@example.com")
    assert caught.value.error_id == "validationError" and caught.value.pointer == "/data"
    assert "email hash" in caught.value.detail and caught.value.status == 422
    with pytest.raises(OutreachNotFound) as caught:
        stack.outreach.update("prospect", 99999, {"title": "x"})
    assert caught.value.error_id == "resourceNotFound"
    with pytest.raises(OutreachError) as caught:
        stack.outreach.create("prospect", {"notAnAttribute": 1})
    assert caught.value.status == 400
    outreach_server.app.config["excluded_domains"] = ["ourcompany.com"]
    with pytest.raises(OutreachValidation, match="excluded"):
        _prospect(stack, "me@ourcompany.com")


def test_find_prospects_by_emails_is_batched_and_normalised(stack, outreach_server):
    app = outreach_server.app
    for i in range(120):
        app.insert("prospects", {"emails": [f"person{i}@example.com"]})
    app.insert("prospects", {"emails": ["Mixed.Case@Example.com"]})
    before = app.count_of("GET", r"/api/v2/prospects$")
    wanted = [f"PERSON{i}@example.com " for i in range(120)] + ["mixed.case@example.com", "nobody@example.com",
                                                                "person1@example.com", None, ""]
    found = stack.outreach.find_prospects_by_emails(wanted)
    assert len(found) == 121
    # each mixed-case email is also searched lower-cased (R2.3): 242 distinct forms → 5 chunks of 50
    assert app.count_of("GET", r"/api/v2/prospects$") - before == 5
    before = app.count_of("GET", r"/api/v2/prospects$")
    lower = [f"person{i}@example.com" for i in range(120)] + ["mixed.case@example.com", "nobody@example.com"]
    assert len(stack.outreach.find_prospects_by_emails(lower)) == 121
    assert app.count_of("GET", r"/api/v2/prospects$") - before == 3          # 122 distinct → 3 chunks


def test_find_prospects_by_emails_under_exact_matching(stack, outreach_server):
    # outreach-api.md R2.3: filter[emails] may match case exactly (email_filter_case_insensitive
    # False), and perhaps only the primary email (email_filter_matches "primary"): the form given
    # and the lower-cased form are both searched, so a prospect stored in either is found
    app = outreach_server.app
    app.config.update(email_filter_case_insensitive=False, email_filter_matches="primary")
    mixed = app.insert("prospects", {"emails": ["Sally@Acme.com"], "externalId": "wb-db1-person-7"})
    lower = app.insert("prospects", {"emails": ["bob@acme.com"]})
    found = stack.outreach.find_prospects_by_emails(["Sally@Acme.com", "Bob@Acme.com"])
    assert sorted(p["id"] for p in found) == sorted([mixed["id"], lower["id"]])
    assert stack.outreach.find_prospects_by_emails(["sally@acme.com"]) == []      # cannot guess the case


def test_odd_emails_are_looked_up_alone_with_the_new_syntax(stack, outreach_server):
    app = outreach_server.app
    app.insert("prospects", {"emails": ["john..doe@example.com"]})
    app.insert("prospects", {"emails": ["plain@example.com"]})
    found = stack.outreach.find_prospects_by_emails(["john..doe@example.com", "plain@example.com"])
    assert sorted(p["attributes"]["emails"][0] for p in found) == ["john..doe@example.com", "plain@example.com"]


def test_paging_follows_next_links(stack, outreach_server, monkeypatch):
    app = outreach_server.app
    for i in range(7):
        app.insert("prospects", {"emails": [f"page{i}@example.com"]})
    monkeypatch.setattr("plugin.outreach.PAGE_SIZE", 3)
    found = stack.outreach.find_prospects_by_emails([f"page{i}@example.com" for i in range(7)])
    assert len(found) == 7
    assert app.count_of("GET", r"/api/v2/prospects$") == 3


def test_find_accounts_with_commas_in_names(stack, outreach_server):
    app = outreach_server.app
    app.insert("accounts", {"name": "Acme, Inc."})
    app.insert("accounts", {"name": "Plain Ltd"})
    app.insert("accounts", {"name": "Other"})
    app.insert("accounts", {"name": "Custom", "customId": "WB-ORG-7"})
    found = stack.outreach.find_accounts("name", ["Acme, Inc.", "Plain Ltd", "Acme, Inc.", "Missing"])
    assert sorted(a["attributes"]["name"] for a in found) == ["Acme, Inc.", "Plain Ltd"]
    assert app.count_of("GET", r"/api/v2/accounts$") == 1
    (custom,) = stack.outreach.find_accounts("customId", ["WB-ORG-7"])
    assert custom["attributes"]["name"] == "Custom"


def test_list_users(stack, outreach_server):
    outreach_server.app.add_user("second@example.com", "second")
    users = stack.outreach.list_users()
    assert sorted(u["attributes"]["username"] for u in users) == ["rep", "second"]


def test_401_refreshes_once_and_retries(stack, outreach_server):
    app = outreach_server.app
    app.clock.advance(7300)                      # Outreach's clock: the access token has expired
    before = app.count_of("POST", "/oauth/token")
    assert stack.outreach.list_users()
    assert app.count_of("POST", "/oauth/token") - before == 1
    assert stack.auth.refreshes == 1
    stored = stack.state.get("tokens", fresh=True)
    assert stored["refresh_token"] != stack.tokens["refresh_token"]
    assert stored["access_token"] != stack.tokens["access_token"]


def test_a_second_401_after_a_fresh_token_needs_a_person(stack, outreach_server):
    outreach_server.app.add_fault(path="/api/v2/users", status=401, count=2)
    with pytest.raises(NotAuthorised, match="refreshed"):
        stack.outreach.list_users()
    assert stack.auth.refreshes == 1


def test_missing_scope_names_the_scope(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, scopes="prospects.read users.read")
    with pytest.raises(NotAuthorised) as caught:
        _prospect(stack, "x@example.com")
    assert "prospects.write" in str(caught.value) and caught.value.exit_code == 2


def test_5xx_on_create_is_never_replayed(stack, outreach_server):
    app = outreach_server.app
    app.add_fault(method="POST", path="/api/v2/prospects", reset=True, when="after")
    with pytest.raises(TransientError):
        _prospect(stack, "once@example.com")
    assert app.count_of("POST", "/api/v2/prospects") == 1
    assert len(app.records("prospects")) == 1                 # created once; the engine adopts it
    app.add_fault(method="PATCH", path="/api/v2/prospects", status=502)
    pid = app.records("prospects")[0]["id"]
    assert stack.outreach.update("prospect", pid, {"title": "Retried"})["attributes"]["title"] == "Retried"


def test_rate_limit_that_cannot_be_waited_is_reported(stack, outreach_server):
    reset = int(time.time()) + 1800
    outreach_server.app.add_fault(path="/api/v2/users", status=429, count=None,
                                  headers={"Retry-After": str(reset), "X-RateLimit-Reset": str(reset)})
    with pytest.raises(RateLimited) as caught:
        stack.outreach.list_users()
    assert caught.value.retry_at == reset and stack.sleeps.calls == []


# --- the request budget -------------------------------------------------------------------------------

def test_own_hourly_budget_stops_before_sending(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, hourly_budget=3)
    app = outreach_server.app
    for _ in range(3):
        stack.outreach.list_users()
    assert stack.outreach.budget_left == 0 and stack.budget["used"] == 3
    before = app.count_of()
    with pytest.raises(BudgetSpent) as caught:
        stack.outreach.list_users()
    assert caught.value.exit_code == 0 and app.count_of() == before
    assert caught.value.retry_at == stack.budget["window_start"] + 3600


def test_budget_state_carries_over_and_resets_hourly(workbooks_server, outreach_server):
    stack = outreach_stack(workbooks_server, outreach_server, hourly_budget=10)
    stack.budget.update({"window_start": int(time.time()) - 100, "used": 9})
    stack.outreach.list_users()
    with pytest.raises(BudgetSpent):
        stack.outreach.list_users()
    stack.budget["window_start"] = int(time.time()) - 3700     # an hour later
    assert stack.outreach.budget_left == 10
    stack.outreach.list_users()
    assert stack.budget["used"] == 1


@pytest.mark.parametrize("two_values", [False, True])
def test_outreachs_remaining_quota_is_never_exhausted(workbooks_server, outreach_server, two_values):
    app = outreach_server.app
    app.config["rate_limit_per_hour"] = 60
    app.config["rate_limit_remaining_two_values"] = two_values
    stack = outreach_stack(workbooks_server, outreach_server)
    calls = 0
    with pytest.raises(BudgetSpent, match="Outreach reports"):
        while calls < 100:
            stack.outreach.list_users()
            calls += 1
    assert calls == 10                                  # 60 - the safety margin of 50
    assert app.count_of("GET", "/api/v2/users") == 10   # and never a 429
    assert stack.outreach.budget_left == 0
