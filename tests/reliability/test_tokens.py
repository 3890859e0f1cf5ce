"""Suite 3 (issue 7): Outreach OAuth tokens on a bad day.

The emulator is strict by default (reference/outreach-api.md §1.2, issue 2): a used refresh token
dies at once, and new tokens can be minted at most once a minute per user and client (429
"Retry later" otherwise). Covered: an access token that expires in the middle of a run; a token
due for refresh at start; the runner SIGKILLed at each request around a refresh (the new refresh
token must be stored before it is used); `invalid_grant` and revoked access (exit 2, a clear
message, nothing flagged); and a throttled token endpoint while the token is still valid
(carry on) or already expired (exit 1, nothing flagged, the next run catches up).
"""
from __future__ import annotations

import json
import time

import pytest

from tests.reliability.helpers import (Tripwire, audit, before_request, is_clean, run_process,
                                       run_until_clean, state)
from tests.sync_harness import Sandbox

NOT_AUTHORISED = "Outreach is not authorised: run the authorisation"


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def live_refresh_tokens(sb) -> list[str]:
    return [token for token, grant in sb.outreach._refresh.items() if not grant["dead"]]


def set_tokens(sb, **changes) -> None:
    [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"]
    tokens = {**json.loads(row["value"]), **changes}
    sb.wb.edit("api_data", row["id"], {"value": json.dumps(tokens)})


def flagged(sb) -> list[tuple[str, int]]:
    out = []
    for kind, endpoint in (("person", "people"), ("organisation", "organisations")):
        for rec in sb.wb.records(endpoint):
            if rec.get(sb.col(kind, "sync_error")) or rec.get(sb.col(kind, "duplicate")):
                out.append((kind, rec["id"]))
    return out


def people(sb, n, prefix="p"):
    return [sb.person(email=f"{prefix}{i}@acme.example", first=f"P{i}")["id"] for i in range(n)]


def allow_mint(sb) -> None:
    """Move Outreach's clock past the once-a-minute mint throttle (the authorisation just minted)."""
    sb.outreach.clock.advance(61)


# --- expiry -------------------------------------------------------------------------------------------------

def test_access_token_expiring_mid_run_is_refreshed_once_and_the_run_completes(sb):
    people(sb, 6)
    # Two hours pass in Outreach between the look-up and the creates: the token dies mid-run.
    before_request(sb.outreach, "POST", r"/api/v2/prospects$", lambda: sb.outreach.clock.advance(7300))
    old_refresh = state(sb, "tokens")["refresh_token"]
    result = sb.run()
    assert result.code == 0, result.output
    assert "Outreach access token refreshed" in result.output
    assert len(sb.prospects()) == 6
    stored = state(sb, "tokens")
    assert stored["refresh_token"] != old_refresh
    assert live_refresh_tokens(sb) == [stored["refresh_token"]]       # the old one died on use
    assert audit(sb).problems == [] and flagged(sb) == []
    sb.reset_counts()
    assert sb.run().code == 0                                         # the stored token works
    assert sb.outreach_requests("POST", "/oauth/token") == 0


def test_token_due_at_start_is_refreshed_and_the_rotated_token_saved_before_use(sb):
    people(sb, 2)
    allow_mint(sb)
    set_tokens(sb, expires_at=int(time.time()) + 60)         # under the 5-minute margin
    saved_before_use = []

    def check_saved():
        stored = state(sb, "tokens")
        saved_before_use.append(stored["refresh_token"] in live_refresh_tokens(sb))
    before_request(sb.outreach, "GET", r"/api/v2/", check_saved)   # the first API call after refresh
    result = sb.run()
    assert result.code == 0, result.output
    assert saved_before_use == [True]
    assert len(sb.prospects()) == 2


# Requests of a run with a refresh due, per emulator: Workbooks 1 login and 2 the state prefetch,
# then Outreach 1 the refresh, Workbooks 3 its save, Workbooks 4 the first look for work, and
# Outreach 2 the first API call with the new token. (server, k, killed after it was processed,
# inside the gap: Outreach has minted but the plugin has not saved yet)
KILL_POINTS = [("outreach", 1, False, False), ("outreach", 1, True, True), ("workbooks", 3, False, True),
               ("workbooks", 3, True, False), ("workbooks", 4, False, False), ("workbooks", 4, True, False),
               ("outreach", 2, False, False), ("outreach", 2, True, False)]


@pytest.mark.parametrize("single_use", [True, False], ids=["strict-single-use", "documented-rotation"])
def test_killed_at_each_request_around_a_refresh(workbooks_server, outreach_server, tmp_path, single_use):
    """SIGKILL at each request from the refresh to the first use of the new token. From the
    save on, the stored refresh token is the live one and the next run carries on. Inside the
    gap (Outreach minted, the plugin died before saving) the new token is lost with the
    process: with Outreach's documented rotation (R2.4: old tokens stay valid until 100 newer
    ones exist) the next run recovers with the old one; under the strict single-use switch
    nothing can recover it, and the next run says so with exit 2, flagging nothing."""
    sb = Sandbox(workbooks_server, outreach_server, tmp_path)
    sb.outreach.config["refresh_token_single_use"] = single_use
    sb.ready()
    created = 0
    for n, (server, k, after, gap) in enumerate(KILL_POINTS):
        label = (server, k, "after" if after else "before")
        people(sb, 2, prefix=f"k{n}-")
        created += 2
        allow_mint(sb)
        set_tokens(sb, expires_at=int(time.time()) + 60)
        app = sb.outreach if server == "outreach" else sb.wb
        wire = Tripwire(app, k, after=after)
        try:
            killed = run_process(sb, kill_on=wire.hit)
        finally:
            wire.disarm()
        assert killed.killed, (label, killed.stdout, killed.stderr)
        stored = state(sb, "tokens")["refresh_token"]
        allow_mint(sb)
        _expire_lock(sb)
        if gap and single_use:
            assert stored not in live_refresh_tokens(sb), label
            lost = sb.run()
            assert lost.code == 2 and NOT_AUTHORISED in lost.output, (label, lost.output)
            assert flagged(sb) == []
            sb.authorise()
            allow_mint(sb)
        else:
            assert stored in live_refresh_tokens(sb), (label, "the stored refresh token is dead")
        runs = run_until_clean(sb)
        assert is_clean(runs[-1]), (label, runs[-1].output)
        assert len(sb.prospects()) == created and flagged(sb) == [], label


@pytest.mark.parametrize("single_use", [True, False], ids=["strict-single-use", "documented-rotation"])
def test_lost_token_answer(workbooks_server, outreach_server, tmp_path, single_use):
    """Outreach minted new tokens but the answer never arrived (connection reset after). The
    run keeps the still-valid token (asking the token endpoint again at most once a minute, not
    before every request) and finishes; once that token expires, the strict switch leaves no
    way back but re-authorisation (exit 2, nothing flagged), the documented rotation recovers."""
    sb = Sandbox(workbooks_server, outreach_server, tmp_path)
    sb.outreach.config["refresh_token_single_use"] = single_use
    sb.ready()
    people(sb, 4)
    allow_mint(sb)
    set_tokens(sb, expires_at=int(time.time()) + 90)
    sb.outreach.add_fault(method="POST", path=r"/oauth/token$", reset=True, when="after", count=1)
    sb.reset_counts()
    first = sb.run()
    assert first.code == 0, first.output
    assert sb.outreach_requests("POST", r"/oauth/token$") == 1, first.output
    assert len(sb.prospects()) == 4
    people(sb, 2, prefix="later")
    allow_mint(sb)
    set_tokens(sb, expires_at=int(time.time()) - 10)   # and now it has expired
    second = sb.run()
    if single_use:
        assert second.code == 2, second.output
        assert NOT_AUTHORISED in second.output
    else:
        assert second.code == 0, second.output
        assert len(sb.prospects()) == 6
    assert flagged(sb) == []


# --- refused ----------------------------------------------------------------------------------------------------

def test_invalid_grant_exits_2_with_a_clear_message_and_flags_nothing(sb):
    ids = people(sb, 3)
    set_tokens(sb, refresh_token="not-a-token-outreach-knows", expires_at=int(time.time()) - 5)
    sb.reset_counts()
    result = sb.run()
    assert result.code == 2, result.output
    assert NOT_AUTHORISED in result.output and "invalid_grant" in result.output
    assert flagged(sb) == [] and sb.prospects() == []
    assert sb.wb.count_of("PUT", r"crm/") == 0              # no record touched
    assert all(not sb.get("person", pid)[sb.col("person", "error_message")] for pid in ids)


def test_access_revoked_in_outreach_exits_2_and_flags_nothing(sb):
    people(sb, 2)
    assert sb.run().code == 0
    people(sb, 2, prefix="q")
    sb.outreach.revoke()                       # the user disconnected the app in Outreach
    allow_mint(sb)
    result = sb.run()
    assert result.code == 2, result.output
    assert NOT_AUTHORISED in result.output
    assert flagged(sb) == []
    assert len(sb.prospects()) == 2
    assert "Traceback" not in result.output


def test_revoked_mid_run_stops_with_exit_2_and_the_rest_is_synced_after_reauthorising(sb):
    people(sb, 5)
    before_request(sb.outreach, "POST", r"/api/v2/prospects$", sb.outreach.revoke)
    allow_mint(sb)
    result = sb.run()
    assert result.code == 2, result.output
    assert flagged(sb) == []
    sb.authorise()
    allow_mint(sb)
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert len(sb.prospects()) == 5
    assert audit(sb).problems == []


# --- a throttled token endpoint ----------------------------------------------------------------------------------

def test_token_endpoint_429_while_the_token_is_still_valid_carries_on(sb):
    people(sb, 2)
    set_tokens(sb, expires_at=int(time.time()) + 120)   # due (under 5 minutes) but still valid
    # the authorisation minted moments ago: the emulator's once-a-minute throttle answers 429
    result = sb.run()
    assert result.code == 0, result.output
    assert "refresh postponed" in result.output
    assert len(sb.prospects()) == 2


def test_token_endpoint_429_with_an_expired_token_is_exit_1_and_the_next_run_catches_up(sb):
    ids = people(sb, 2)
    set_tokens(sb, expires_at=int(time.time()) - 5)
    sb.outreach.add_fault(method="POST", path=r"/oauth/token$", status=429, count=1)
    result = sb.run()
    assert result.code == 1, result.output
    assert flagged(sb) == [] and sb.prospects() == []
    assert all(not sb.get("person", pid)[sb.col("person", "outreach_id")] for pid in ids)
    allow_mint(sb)
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert len(sb.prospects()) == 2


def test_token_expiring_mid_run_while_minting_is_throttled_defers_without_flags(sb):
    people(sb, 4)
    # The token dies mid-run, and minting is throttled at that moment (another integration, or
    # a refresh a moment ago): the run must stop cleanly, not flag records or exit 2.
    def expire():
        sb.outreach.clock.advance(7300)
        sb.outreach.add_fault(method="POST", path=r"/oauth/token$", status=429, count=1)
    before_request(sb.outreach, "POST", r"/api/v2/prospects$", expire)
    result = sb.run()
    assert result.code == 1, result.output
    assert flagged(sb) == []
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert len(sb.prospects()) == 4
    assert audit(sb).problems == []


def _expire_lock(sb) -> None:
    """A killed run leaves its lock; age it past its TTL by rewriting the row as Workbooks would
    hold it a TTL later (its updated_at is Workbooks' stamp, which the lock's expiry uses)."""
    rows = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.lock"]
    for row in rows:
        sb.wb.clock.advance(-3600)
        sb.wb.edit("api_data", row["id"], {"value": json.dumps({"owner": "killed-run", "ttl": 900})})
        sb.wb.clock.advance(3600)
