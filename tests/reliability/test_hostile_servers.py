"""Issue 16 §4 and §6: the servers' side of the attack. An answer (or a man in the middle, or a
typo in a parameter) tries to send the plugin's credentials or data somewhere else, or to keep a
run alive past its deadline, or to fill its memory. Each case runs the real runner (or the
authorisation web process) against the emulators; a "catcher", a server on another origin (another
port of loopback is another origin: scheme, host and port), records whatever reaches it.

  * a paging link (Outreach `links.next`) to another host: not followed, no token sent there;
  * an Outreach write answered 307 to another host: the prospect's JSON stays home;
  * the OAuth token request answered with a redirect, to any host: the client secret stays home;
  * a Workbooks answer redirecting to another host: the Workbooks-Session cookie stays home (§6);
  * outreach_api_url / outreach_oauth_url over plain http: refused, exit 2 (loopback allowed);
  * verify_tls typos: refused, exit 2; verify_tls off: a warning on every run (§6);
  * an answer trickled a byte at a time: abandoned at the run's deadline, exit 1;
  * an answer of 40 MB: refused unread, exit 1.
"""
from __future__ import annotations

import time

import pytest
from werkzeug.wrappers import Request, Response

from tests.reliability.test_tokens import allow_mint, set_tokens
from tests.sync_harness import Sandbox
from tools.emulators.core import Emulator, ServerHandle, json_response


class Catcher(Emulator):
    """Another host. Answers everything with an empty JSON:API page and keeps what it was sent."""

    name = "catcher"

    def reset_data(self) -> None:
        self.seen: list[dict] = []

    def dispatch(self, request: Request) -> Response:
        self.seen.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                          "body": request.get_data(as_text=True)})
        return json_response({"data": [], "access_token": "caught", "expires_in": 7200})


@pytest.fixture
def catcher():
    with ServerHandle(Catcher()) as handle:
        yield handle


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def _engine(sb) -> dict:
    session = sb.wb.create_session()
    return {"_workbooks_session_id": session["session_id"], "_workbooks_username": session["username"],
            "_workbooks_logical_database_id": session["logical_database_id"]}


def _host(server) -> str:
    return f"127.0.0.1:{server.port}"


# --- tokens and data never leave the configured origin ----------------------------------------------------

def test_a_paging_link_to_another_host_is_not_followed_and_gets_no_token(sb, catcher):
    """§4: `links.next` was taken as it came, so a next link naming another host received
    `Authorization: Bearer …`. Only the configured API origin is followed."""
    person = sb.person(email="ann@acme.example")["id"]
    sb.outreach.add_fault(method="GET", path=r"/api/v2/prospects$", status=200, count=1, body={
        "data": [{"type": "prospect", "id": 900, "attributes": {"emails": ["someone@else.example"]}}],
        "links": {"next": f"{catcher.url}/api/v2/prospects?page[after]=x&page[size]=1000"}})

    result = sb.run()

    assert result.code == 1, result.output
    assert catcher.app.seen == []                                      # no request, so no token
    assert f"another host ({_host(catcher)})" in result.output
    assert not sb.flags("person", person)["sync_error"]               # not the record's fault
    assert sb.run().code == 0 and sb.flags("person", person)["outreach_id"]   # the next run is fine


@pytest.mark.parametrize("write", ["create", "update"])
def test_an_outreach_write_never_follows_a_redirect_off_the_api_origin(sb, catcher, write):
    """§4: a 307 from Outreach made requests re-send the prospect's JSON to the Location's host
    (the token header stripped, the personal data not)."""
    person = sb.person(email="ann@acme.example", first="Ann")["id"]
    if write == "update":
        assert sb.run().code == 0
        sb.wb.edit("people", person, {"person_first_name": "Annette"})
    method, path = ("POST", r"/api/v2/prospects$") if write == "create" else ("PATCH", r"/api/v2/prospects/\d+$")
    sb.outreach.add_fault(method=method, path=path, status=307, count=1,
                          headers={"Location": f"{catcher.url}/api/v2/prospects"})

    result = sb.run()

    assert result.code == 1, result.output
    assert catcher.app.seen == []
    assert f"redirected (HTTP 307) to another host ({_host(catcher)})" in result.output
    assert not sb.flags("person", person)["sync_error"]
    assert sb.run().code == 0
    [prospect] = sb.prospects()
    assert prospect["attributes"]["firstName"] == ("Ann" if write == "create" else "Annette")


def test_a_307_on_the_api_origin_is_followed_with_its_body(sb):
    """The same-origin rule lets a real Outreach move a request on its own host: method, body and
    token go to the Location, and the prospect is created once."""
    sb.person(email="ann@acme.example")
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", status=307, count=1,
                          headers={"Location": f"{sb.or_server.url}/api/v2/prospects"})
    sb.reset_counts()
    result = sb.run()
    assert result.code == 0, result.output
    assert len(sb.prospects()) == 1 and sb.outreach_requests("POST", r"/api/v2/prospects$") == 2


@pytest.mark.parametrize("where", ["another host", "its own host"])
def test_the_token_request_never_follows_a_redirect(sb, catcher, where):
    """§4: a 307/308 from the token endpoint re-sent the client secret and the refresh token to
    wherever Location said (requests keeps the body on a 307). A redirect there is an error."""
    sb.person(email="ann@acme.example")
    allow_mint(sb)
    set_tokens(sb, expires_at=int(time.time()) - 10)                    # a refresh is due
    target = catcher.url if where == "another host" else sb.or_server.url
    sb.outreach.add_fault(method="POST", path=r"/oauth/token$", status=307, count=1,
                          headers={"Location": f"{target}/oauth/token"})
    sb.reset_counts()

    result = sb.run()

    assert result.code == 1, result.output
    assert catcher.app.seen == []
    assert sb.outreach_requests("POST", r"/oauth/token$") == 1           # not re-sent, not even at home
    assert "token endpoint answered with a redirect (HTTP 307" in result.output
    assert sb.run().code == 0                                            # the next run refreshes


def test_a_workbooks_redirect_to_another_host_keeps_the_session_cookie_at_home(sb, catcher):
    """§6: a redirected Workbooks request carried the Workbooks-Session cookie to whatever host
    Location named, and its answer was trusted. Redirects stay on the Workbooks host."""
    sb.person(email="ann@acme.example")
    sb.wb.add_fault(method="GET", path=r"crm/people\.api", status=302, count=1,
                    headers={"Location": f"{catcher.url}/crm/people.api"})

    result = sb.run(**_engine(sb))

    assert result.code == 1, result.output
    assert catcher.app.seen == []                                      # neither the cookie nor the body
    assert f"redirected (HTTP 302) to another host ({_host(catcher)})" in result.output
    assert sb.prospects() == []


# --- where and how the plugin connects: the parameters ------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("outreach_api_url", "http://api.outreach.example/api/v2"),
    ("outreach_oauth_url", "http://api.outreach.example/oauth"),
    ("outreach_api_url", "ftp://api.outreach.example/api/v2"),
    ("outreach_oauth_url", "https://admin:hunter2@api.outreach.example/oauth"),
])
def test_outreach_urls_must_be_https(sb, name, value):
    """§4: a typo'd `http://` sent the tokens and the client secret in clear text. Refused before
    anything is sent (exit 2, the parameter named); loopback http stays allowed (this suite's
    emulators are http://127.0.0.1)."""
    sb.person(email="ann@acme.example")
    sb.reset_counts()

    result = sb.run(**{name: value})

    assert result.code == 2, result.output
    assert f"parameter {name} must" in result.summary
    assert "hunter2" not in result.output
    assert sb.wb.total_requests == 0 and sb.outreach.total_requests == 0
    sb.extra[name] = value                                             # the authorisation web process too
    page = sb.web({"action": "start"})
    sb.extra.pop(name)
    assert page.code == 2 and f"parameter {name} must" in page.output
    assert sb.outreach.count_of(None, r"/oauth/") == 0


@pytest.mark.parametrize("value", ["ture", "enabled", "2", "nope", 2])
def test_a_verify_tls_typo_is_refused(sb, value):
    """§6: `verify_tls` switched certificate checks off on any word it did not know."""
    result = sb.run(verify_tls=value)
    assert result.code == 2, result.output
    assert "parameter verify_tls must be true or false" in result.summary


@pytest.mark.parametrize("value", [False, "false", "OFF", "no", "0", 0])
def test_verify_tls_off_warns_on_every_run(sb, value):
    sb.person(email="ann@acme.example")
    for _ in range(2):
        result = sb.run(verify_tls=value)
        assert result.code == 0, result.output
        assert any("verify_tls is off" in line for line in result.logged("warning")), result.output
    assert not any("verify_tls" in line for line in sb.run(verify_tls="Yes").lines)


# --- no answer keeps a run past its deadline or fills its memory ------------------------------------------

def test_a_trickled_answer_is_abandoned_at_the_runs_deadline(sb):
    """§4: a body trickling a byte at a time kept a TIMEOUT=20 run alive for 118 s: the read
    timeout restarts with every byte. Now the exchange is cut at the deadline: the run exits with
    its transient code and sends nothing after the abandoned request (this answer alone would
    take minutes to arrive; the subprocess limit is only a safety net)."""
    sb.person(email="ann@acme.example")
    sb.wb.add_fault(method="GET", path=r"crm/people\.api", trickle=0.5, count=1)
    sb.reset_counts()

    result = sb.run_script(env={"TIMEOUT": "8"}, timeout=90)

    assert result.code == 1, result.output
    assert "abandoned after" in result.output and "the run's time is up" in result.output
    [trickled] = [e for e in sb.wb.request_log if e["method"] == "GET" and "crm/people" in e["path"]][:1]
    assert sb.wb.request_log[-1]["n"] == trickled["n"], list(sb.wb.request_log)[-3:]   # nothing after it
    assert sb.prospects() == []


def test_a_huge_answer_is_refused_unread(sb):
    """§4: a 100 MB answer took 243 MB of memory. An answer over the cap (32 MB) is refused."""
    sb.person(email="ann@acme.example")
    sb.wb.add_fault(method="GET", path=r"crm/people\.api", body_bytes=40_000_000, count=1)

    result = sb.run()

    assert result.code == 1, result.output
    assert "larger than the 32 MB this plugin reads (40 MB)" in result.output
    assert sb.prospects() == []
    assert sb.run().code == 0 and len(sb.prospects()) == 1
