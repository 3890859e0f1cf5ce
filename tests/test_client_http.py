"""HttpClient's retry loop over real HTTP (the Outreach emulator's fault injection), with a fake
sleep so waits are measured, not spent."""
from __future__ import annotations

import socket
import time

import pytest
import requests

from plugin import http as plugin_http
from plugin.deadline import Deadline
from plugin.errors import RateLimited, TransientError, UnsafeRedirect
from plugin.http import HttpClient
from tools.emulators.core import ServerHandle
from tools.emulators.outreach import OutreachEmulator

from .client_helpers import Sleeps

PATH = "/api/v2/prospects"


def _client(deadline=60, **kwargs) -> tuple[HttpClient, Sleeps]:
    sleeps = Sleeps()
    return HttpClient("outreach", deadline=Deadline(deadline), sleep=sleeps, **kwargs), sleeps


def _get(http, server):
    return http.request("GET", server.url + PATH, idempotent=True)


def test_every_call_has_a_timeout_and_a_user_agent(outreach_server):
    http, _ = _client()
    seen = {}
    original = http.session.request

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)
    http.session.request = spy
    response = _get(http, outreach_server)
    assert response.status_code == 401                 # 4xx goes back to the caller
    assert seen["timeout"][0] > 0 and seen["timeout"][1] > 0 and seen["verify"] is True
    assert response.request.headers["User-Agent"].startswith("WorkbooksOutreachSync/")
    assert http.requests_made == 1


def test_429_waits_for_retry_after_delta(outreach_server):
    outreach_server.app.add_fault(path=PATH, status=429, headers={"Retry-After": "2"})
    http, sleeps = _client()
    assert _get(http, outreach_server).status_code == 401
    assert len(sleeps.calls) == 1 and 2.0 <= sleeps.calls[0] <= 2.6
    assert http.requests_made == 2


def test_429_waits_until_the_epoch_reset(outreach_server):
    reset = int(time.time()) + 5
    outreach_server.app.add_fault(path=PATH, status=429,
                                  headers={"X-RateLimit-Reset": str(reset), "Retry-After": str(reset)})
    http, sleeps = _client()
    _get(http, outreach_server)
    assert len(sleeps.calls) == 1 and 3.0 <= sleeps.calls[0] <= 5.6


def test_429_is_retried_even_for_a_post(outreach_server):
    outreach_server.app.add_fault(method="POST", path=PATH, status=429, headers={"Retry-After": "1"})
    http, sleeps = _client()
    response = http.request("POST", outreach_server.url + PATH, json={}, idempotent=False)
    assert response.status_code in (401, 415) and len(sleeps.calls) == 1


def test_a_long_wait_is_not_waited_but_reported(outreach_server):
    reset = int(time.time()) + 3600
    outreach_server.app.add_fault(path=PATH, status=429, headers={"X-RateLimit-Reset": str(reset),
                                                                  "Retry-After": str(reset)})
    http, sleeps = _client()
    with pytest.raises(RateLimited) as caught:
        _get(http, outreach_server)
    assert caught.value.retry_at == reset and caught.value.exit_code == 1
    assert sleeps.calls == []


def test_never_waits_past_the_deadline(outreach_server):
    outreach_server.app.add_fault(path=PATH, status=429, headers={"Retry-After": "10"})
    http, sleeps = _client(deadline=5)
    started = time.monotonic()
    with pytest.raises(RateLimited, match="deadline"):
        _get(http, outreach_server)
    assert sleeps.calls == [] and time.monotonic() - started < 2


def test_a_maintenance_503_is_waited_out_when_it_fits(outreach_server):
    outreach_server.app.config["maintenance_retry_after_format"] = "delta"     # 60 s
    outreach_server.app.add_fault(method="GET", path=PATH, status=503)
    http, sleeps = _client(deadline=120, max_wait=90)
    assert _get(http, outreach_server).status_code == 401
    assert len(sleeps.calls) == 1 and 59 <= sleeps.calls[0] <= 61
    outreach_server.app.add_fault(method="GET", path=PATH, status=503)
    http, sleeps = _client(deadline=30)
    with pytest.raises(TransientError, match="deadline"):
        _get(http, outreach_server)


def test_retries_are_bounded(outreach_server):
    outreach_server.app.add_fault(path=PATH, status=429, headers={"Retry-After": "0"}, count=None)
    http, sleeps = _client(max_retries=3)
    with pytest.raises(RateLimited, match="4 attempts"):
        _get(http, outreach_server)
    assert http.requests_made == 4 and len(sleeps.calls) == 3


def test_429_falls_back_to_the_rate_limit_reset(outreach_server):
    reset = int(time.time()) + 4
    outreach_server.app.add_fault(path=PATH, status=429, headers={"X-RateLimit-Reset": str(reset)},
                                  body={"errors": [{"id": "rateLimitExceeded"}]})
    http, sleeps = _client()
    _get(http, outreach_server)
    assert len(sleeps.calls) == 1 and 2.0 <= sleeps.calls[0] <= 4.6


def test_429_without_hints_backs_off_exponentially_with_jitter(outreach_server):
    outreach_server.app.add_fault(path=PATH, status=429, count=3, body={"errors": []})
    http, sleeps = _client(backoff_base=1.0, backoff_cap=8.0)
    _get(http, outreach_server)
    assert len(sleeps.calls) == 3
    for attempt, waited in enumerate(sleeps.calls):
        assert 0.5 * 2 ** attempt <= waited <= 2 ** attempt


def test_5xx_retried_for_idempotent_requests_only(outreach_server):
    app = outreach_server.app
    app.add_fault(method="GET", path=PATH, status=502, count=2)
    http, sleeps = _client()
    assert _get(http, outreach_server).status_code == 401
    assert http.requests_made == 3 and len(sleeps.calls) == 2
    app.add_fault(method="POST", path=PATH, status=502)
    with pytest.raises(TransientError, match="not retried"):
        http.request("POST", outreach_server.url + PATH, json={}, idempotent=False)
    assert app.count_of("POST", PATH) == 1


def test_an_ambiguous_post_is_never_replayed(outreach_server):
    app = outreach_server.app
    app.add_fault(method="POST", path=PATH, reset=True, when="after")
    http, _ = _client()
    with pytest.raises(TransientError, match="may have processed"):
        http.request("POST", outreach_server.url + PATH, json={}, idempotent=False)
    assert app.count_of("POST", PATH) == 1
    app.add_fault(method="GET", path=PATH, reset=True, when="before")
    assert _get(http, outreach_server).status_code == 401            # a GET is simply retried


def test_read_timeouts(outreach_server):
    app = outreach_server.app
    app.add_fault(method="GET", path=PATH, latency=1.5)
    http, _ = _client(timeout=(2, 0.5))
    assert _get(http, outreach_server).status_code == 401           # retried after the timeout
    app.add_fault(method="POST", path=PATH, latency=1.5)
    with pytest.raises(TransientError, match="timed out"):
        http.request("POST", outreach_server.url + PATH, json={}, idempotent=False)


def test_a_request_is_clipped_to_the_deadline(outreach_server):
    outreach_server.app.add_fault(method="GET", path=PATH, latency=3, count=None)
    http, _ = _client(deadline=1.2)
    started = time.monotonic()
    with pytest.raises(TransientError):
        _get(http, outreach_server)
    assert time.monotonic() - started < 2.5


def test_a_refused_connection_is_retried_even_for_a_post():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http, sleeps = _client(max_retries=2)
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        http.request("POST", f"http://127.0.0.1:{port}/api/v2/prospects?api_key=secret-key-value",
                     json={}, idempotent=False)
    assert len(sleeps.calls) == 2


def test_messages_leave_out_query_strings_and_secrets(outreach_server):
    outreach_server.app.add_fault(method="GET", path=PATH, status=500, count=None,
                                  body={"errors": [{"detail": "token sekrit-token-123 was bad"}]})
    http, _ = _client(max_retries=0, secrets=lambda: ["sekrit-token-123"])
    with pytest.raises(TransientError) as caught:
        http.request("GET", outreach_server.url + PATH + "?api_key=01234-56789&x=1", idempotent=True)
    message = str(caught.value)
    assert "01234-56789" not in message and "sekrit-token-123" not in message
    assert PATH in message and "500" in message


# --- the environment: read once, still honoured --------------------------------------------------------
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")


@pytest.fixture
def clean_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_proxies_are_read_once_per_origin_and_no_proxy_still_decides_per_host(clean_environment, outreach_server):
    # The emulator stands in for the proxy: it answers an absolute-URI request for any host.
    clean_environment.setenv("HTTP_PROXY", outreach_server.url)
    clean_environment.setenv("NO_PROXY", "direct.invalid")
    lookups = []
    original = plugin_http.get_environ_proxies

    def counted(url, *args, **kwargs):
        lookups.append(url)
        return original(url, *args, **kwargs)
    clean_environment.setattr(plugin_http, "get_environ_proxies", counted)
    http, _ = _client(max_retries=0)
    assert http.session.trust_env is False
    for _ in range(3):
        assert http.request("GET", "http://proxied.invalid/_emulator/health", idempotent=True).status_code == 200
    with pytest.raises(TransientError):          # not through the proxy: the name does not resolve
        http.request("GET", "http://direct.invalid/_emulator/health", idempotent=True)
    assert [u.split("/")[2] for u in lookups] == ["proxied.invalid", "direct.invalid"]


def test_the_ca_bundle_of_the_environment_backs_verify_true_only(clean_environment):
    clean_environment.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests.pem")

    def verify_used(http):
        return http.session.merge_environment_settings("https://api.outreach.io/api/v2", {}, None,
                                                       http.verify, None)["verify"]
    assert verify_used(_client()[0]) == "/etc/ssl/requests.pem"         # requests' own precedence
    assert verify_used(_client(verify="/own/bundle.pem")[0]) == "/own/bundle.pem"
    assert verify_used(_client(verify=False)[0]) is False
    clean_environment.delenv("REQUESTS_CA_BUNDLE")
    clean_environment.delenv("CURL_CA_BUNDLE")
    assert verify_used(_client()[0]) is True                           # requests' default bundle


def test_a_netrc_entry_never_replaces_the_bearer_token(clean_environment, tmp_path, outreach_server):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\nlogin someone\npassword netrc-password\n", encoding="utf-8")
    netrc.chmod(0o600)
    clean_environment.setenv("NETRC", str(netrc))
    http, _ = _client()
    response = http.request("GET", outreach_server.url + PATH, headers={"Authorization": "Bearer the-token"},
                            idempotent=True)
    assert response.request.headers["Authorization"] == "Bearer the-token"


# --- redirects by hand (issue 16 §1, §4, §6) -------------------------------------------------------------

def test_a_redirect_is_returned_unless_the_caller_asks_to_follow(outreach_server):
    outreach_server.app.add_fault(method="POST", path=PATH, status=307, headers={"Location": PATH + "/moved"})
    http, _ = _client()
    response = http.request("POST", outreach_server.url + PATH, json={"a": 1}, idempotent=False)
    assert response.status_code == 307 and http.requests_made == 1


def test_a_same_origin_redirect_gets_the_same_method_body_and_headers(outreach_server):
    app = outreach_server.app
    app.add_fault(method="POST", path=PATH + "$", status=307, headers={"Location": PATH + "/again"})
    http, _ = _client()
    response = http.request("POST", outreach_server.url + PATH, json={"data": {"x": "y" * 100}},
                            headers={"Authorization": "Bearer t0ken"}, idempotent=False, allow_redirects=True)
    first, second = list(app.request_log)[-2:]
    assert (first["method"], first["path"], second["method"], second["path"]) == \
        ("POST", PATH, "POST", PATH + "/again")
    assert first["body_bytes"] == second["body_bytes"] > 100
    assert [r.status_code for r in response.history] == [307] and http.requests_made == 2
    assert response.request.headers["Authorization"] == "Bearer t0ken"


def test_a_redirect_to_another_origin_is_refused_and_nothing_is_sent_there(outreach_server):
    with ServerHandle(OutreachEmulator()) as other:
        outreach_server.app.add_fault(path=PATH, status=302, headers={"Location": other.url + PATH})
        http, _ = _client()
        with pytest.raises(UnsafeRedirect, match=rf"another host \(127\.0\.0\.1:{other.port}\)") as caught:
            http.request("GET", outreach_server.url + PATH, headers={"Authorization": "Bearer t0ken"},
                         idempotent=True, allow_redirects=True)
        assert other.app.total_requests == 0 and caught.value.exit_code == 1
        # https → http on the same host is another origin too
        outreach_server.app.add_fault(path=PATH, status=302, headers={"Location": "https://127.0.0.1" + PATH})
        with pytest.raises(UnsafeRedirect):
            http.request("GET", outreach_server.url + PATH, idempotent=True, allow_redirects=True)


def test_a_redirect_keeps_the_cookie_value_the_redirect_set():
    response = requests.Response()
    response.cookies.set("Workbooks-Session", "renewed")
    assert plugin_http._carry_cookies({"Workbooks-Session": "old", "other": "o"}, response) == \
        {"Workbooks-Session": "renewed", "other": "o"}
    assert plugin_http._carry_cookies(None, response) is None


# --- an exchange's total time and size (issue 16 §4) -----------------------------------------------------

def test_a_trickled_answer_is_abandoned_at_the_deadline(outreach_server):
    """The read timeout restarts with every byte; the exchange as a whole does not: it is cut when
    the deadline comes (this 300-byte answer would take a minute)."""
    outreach_server.app.add_fault(path=PATH, trickle=0.2)
    http, _ = _client(deadline=1.5)
    with pytest.raises(TransientError, match=r"abandoned after 1s without a complete answer \(the run's time is up\)"):
        _get(http, outreach_server)
    assert http.requests_made == 1 and http.retries_made == 0


def test_no_exchange_outlasts_the_per_request_limit_even_without_a_deadline(outreach_server):
    outreach_server.app.add_fault(path=PATH, trickle=0.2)
    http, _ = _client(deadline=None, max_exchange_seconds=1.0)
    with pytest.raises(TransientError, match="no request may take longer than 1s"):
        _get(http, outreach_server)


def test_an_answer_over_the_size_cap_is_refused(outreach_server):
    outreach_server.app.add_fault(path=PATH, body_bytes=5_000_000)
    http, _ = _client(max_body_bytes=1_000_000)
    with pytest.raises(TransientError, match=r"larger than the 1 MB this plugin reads \(5 MB\); not read"):
        _get(http, outreach_server)
    assert _get(http, outreach_server).status_code == 401       # the next exchange is a normal one
