"""Issue 16, the authorisation web process attacked as an outsider would: end to end through
scripts/outreach_authorise.py (a subprocess, fed the request as Workbooks does), the Outreach
emulator's OAuth pages and the Workbooks emulator's API Data.

Two browsers take part: the administrator's (`plugin.browser`) and an attacker's, each with
its own cookies (tools.web_browser). The attacker can make the administrator's browser open a
link, but cannot read its cookies or the pages it is shown.
"""
from __future__ import annotations

from html import unescape
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from tests.install_helpers import (CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ROOT, WEB_HOST, WEB_PATH, Plugin,
                                   follow_to_callback)
from tools.web_browser import Browser

RUNNER = ROOT / "scripts" / "outreach_send_receive.py"


@pytest.fixture
def plugin(workbooks_server, outreach_server, tmp_path):
    outreach_server.app.config["token_mint_min_interval"] = 0        # several authorisations a minute
    app = outreach_server.app
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    plugin.admin_user = app.add_user("admin@acme.example", "admin")
    plugin.other_user = app.add_user("mallory@elsewhere.example", "mallory")
    installed = plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--redirect-uri", REDIRECT_URI)
    assert installed.returncode == 0, installed.output
    return plugin


def as_user(plugin: Plugin, user_id: int) -> None:
    """Who signs in at Outreach's authorize page from now on."""
    plugin.outreach.app.config["authorize_as_user"] = user_id


def connected_user(plugin: Plugin):
    return ((plugin.state("tokens") or {}).get("outreach_user") or {}).get("id")


def body_lines(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if not line.startswith("[header] ")]


# --- §4: the state is bound to the browser --------------------------------------------------------

def test_an_attackers_callback_opened_in_the_administrators_browser_changes_nothing(plugin):
    """§4 "The OAuth state is bound to a nonce, not to the browser that started": the attacker
    starts an authorisation in their own browser, signs in to Outreach as themselves, and gets
    the administrator to open the callback link. It must not connect the attacker's account."""
    as_user(plugin, plugin.admin_user)
    plugin.authorise()
    before = plugin.state("tokens")

    attacker = Browser(WEB_HOST, WEB_PATH)
    as_user(plugin, plugin.other_user)
    start = plugin.web({"action": "start"}, browser=attacker)
    code, state = follow_to_callback(start.header("Location"))

    opened = plugin.web({"code": code, "state": state})              # in the administrator's browser

    assert plugin.state("tokens") == before
    assert opened.returncode == 0 and opened.status == 400
    assert "This authorisation was started in another browser" in opened.body
    # and the sync still writes as the administrator's Outreach user
    person = plugin.wb.app.insert("people", {"name": "Ann Lee", "person_first_name": "Ann", "person_last_name": "Lee",
                                             "main_location[email]": "ann@acme.example",
                                             "cf_person_sync_to_outreach": True})
    assert plugin.run(RUNNER).returncode == 0
    [prospect] = plugin.outreach.app.records("prospects")
    assert prospect["relationships"]["creator"]["data"]["id"] == plugin.admin_user, prospect
    assert plugin.wb.app.record("people", person["id"])["cf_person_outreach_id"] == str(prospect["id"])


def test_a_callback_without_the_browsers_cookie_is_refused(plugin):
    start = plugin.web({"action": "start"})
    code, state = follow_to_callback(start.header("Location"))
    plugin.browser.cookies.clear()              # e.g. a cross-site request, which carries no cookie

    callback = plugin.web({"code": code, "state": state})

    assert plugin.state("tokens") is None
    assert callback.returncode == 0 and callback.status == 400
    assert "started in another browser" in callback.body


# --- §4: replacing a connection to another Outreach user asks first --------------------------------

def switch_users(plugin: Plugin, browser: Browser | None = None):
    """Connected as the administrator's Outreach user, then authorised (in `browser`) as the other
    one. Returns the stored tokens before the second authorisation and its page."""
    as_user(plugin, plugin.admin_user)
    plugin.authorise()
    before = plugin.state("tokens")
    as_user(plugin, plugin.other_user)
    _, asked = plugin.authorise(browser=browser)
    return before, asked


def test_switching_to_another_outreach_user_needs_the_pages_confirmation(plugin):
    before, asked = switch_users(plugin)

    assert asked.returncode == 0 and asked.status == 200
    assert "<h1>Replace the Outreach connection?</h1>" in asked.body
    assert f"admin@acme.example (Outreach user {plugin.admin_user})" in asked.body
    assert f"mallory@elsewhere.example (Outreach user {plugin.other_user})" in asked.body
    assert plugin.state("tokens") == before                          # nothing switched yet

    # Another site posts the confirmation (no token), or a GET / an unknown method carries one:
    token = plugin.form_token(asked, "replace")
    for token_given, method in ((None, "POST"), ("0" * 64, "POST"), (token, "GET"), (token, "PURGE"), (token, "")):
        forged = plugin.web({"action": "replace"}, method=method, params=posting(plugin, token_given))
        assert forged.returncode == 0 and forged.status == 403, (method, forged.output)
        assert plugin.state("tokens") == before

    confirmed = plugin.web({"action": "replace", "form_token": token}, method="POST")

    assert confirmed.returncode == 0 and confirmed.status == 200, confirmed.output
    assert "<h1>Outreach is connected</h1>" in confirmed.body
    assert "replacing the previous connection" in confirmed.body
    assert connected_user(plugin) == str(plugin.other_user)
    assert plugin.state("oauth_replacement") is None
    again = plugin.web({"action": "replace", "form_token": token}, method="POST")
    assert again.status == 400 and "No new authorisation is waiting" in again.body


def test_keeping_the_current_connection_discards_the_new_tokens(plugin):
    before, asked = switch_users(plugin)

    kept = plugin.web({"action": "keep", "form_token": plugin.form_token(asked, "keep")}, method="POST")

    assert kept.returncode == 0 and "The current Outreach connection was kept" in kept.body
    assert plugin.state("tokens") == before
    assert plugin.state("oauth_replacement") is None


def test_the_same_outreach_user_authorising_again_needs_no_confirmation(plugin):
    as_user(plugin, plugin.admin_user)
    plugin.authorise()
    first = plugin.state("tokens")

    _, again = plugin.authorise()

    assert again.returncode == 0 and "<h1>Outreach is connected</h1>" in again.body
    assert plugin.state("tokens")["access_token"] != first["access_token"]
    assert connected_user(plugin) == str(plugin.admin_user)
    status = plugin.web({})
    assert f"admin@acme.example (Outreach user {plugin.admin_user})" in status.body


def test_a_user_outreach_does_not_name_is_not_taken_for_the_same_one(plugin):
    """outreach-api.md §2: the API root's shape is unknown. When it names no user, a new
    authorisation over an existing connection is not proven to be the same user: it asks."""
    plugin.outreach.app.config["api_root_shape"] = "opaque"
    plugin.authorise()
    before = plugin.state("tokens")

    _, asked = plugin.authorise()

    assert "<h1>Replace the Outreach connection?</h1>" in asked.body
    assert "an Outreach user this page cannot identify" in asked.body
    assert plugin.state("tokens") == before


def test_a_confirmation_from_another_browser_is_refused(plugin):
    # the attacker authorises their own account, in their own browser
    before, asked = switch_users(plugin, Browser(WEB_HOST, WEB_PATH))
    assert "Replace the Outreach connection?" in asked.body

    # the administrator's browser posts with a token of its own page: the held tokens are not its
    page = plugin.web({})
    tried = plugin.web({"action": "replace", "form_token": _token_for(plugin, page, "replace")}, method="POST")

    assert tried.status == 400 and "No new authorisation is waiting for this browser" in tried.body
    assert plugin.state("tokens") == before


def posting(plugin: Plugin, token: str | None) -> dict:
    """The parameters of a request whose form (as the runtime would pass it, `_post_*`) carries
    `token`, whatever the request's method says."""
    return {**plugin.params(), **({"_post_form_token": token} if token is not None else {})}


def _token_for(plugin: Plugin, page, purpose: str) -> str:
    from plugin.websession import FormGuard
    return FormGuard(plugin.browser.cookies["outreach_sync_browser"]).token(purpose)


# --- §4: reflected values cannot add lines ----------------------------------------------------------

def test_a_newline_in_a_reflected_value_cannot_print_a_header_line(plugin):
    """§4 "Reflected values can inject output lines" (workbooks-api.md §2.5's line protocol)."""
    query = "error=access_denied&error_description=x%0A%5Bheader%5D%20Location:%20https://evil.example/"
    request = dict(parse_qsl(query))
    assert request["error_description"] == "x\n[header] Location: https://evil.example/"

    run = plugin.web(request)

    headers = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert not [line for line in headers if "evil.example" in line], headers
    assert run.header("Location") is None
    assert all(not line.startswith("[") for line in body_lines(run))
    assert "Location: https://evil.example/" in unescape(run.body)     # shown as text, on its line
    assert run.returncode == 0 and run.status == 400


@pytest.mark.parametrize("separator", ["\r", "\r\n", "\u2028", "\x85", "\x0b"])
def test_no_line_separator_in_any_reflected_value_starts_a_line(plugin, separator):
    run = plugin.web({"action": f"x{separator}[header] Status: 200"})
    # every line a reader may split on: only the page's own headers start with "["
    lines = run.stdout.replace("\r", "\n").replace("\u2028", "\n").replace("\x85", "\n").replace("\x0b", "\n")
    instructions = [line for line in lines.splitlines() if line.startswith("[")]
    assert [line.split(":", 1)[0] for line in instructions] == \
        ["[header] Status", "[header] Content-Type", "[header] Cache-Control"], instructions
    assert instructions[0] == "[header] Status: 400"
    assert run.returncode == 0 and run.status == 400


# --- §6: hostile requests get a plain page and exit 0 ------------------------------------------------

def test_a_huge_reflected_value_is_cut_and_the_process_stays_on(plugin):
    """§6: a 2 MB `error_description` came back whole, with exit 2 (which disables the process)."""
    run = plugin.web({"error": "access_denied", "error_description": "A" * 2_000_000})

    assert len(run.stdout) < 5_000
    assert "more characters not shown" in run.body
    assert run.returncode == 0 and run.status == 400


@pytest.mark.parametrize("request_", [{"action": "explode"}, {"code": "c", "state": "forged"},
                                      {"error": "x" * 500}, {"code": "c"}])
def test_hostile_requests_exit_0(plugin, request_):
    run = plugin.web(request_)
    assert run.returncode == 0 and run.status == 400
    assert plugin.state("tokens") is None


# --- §4: the redirect URI is not taken from an unchecked Host ----------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "victim@evil.example", "evil.example/x?"])
def test_without_a_recorded_redirect_uri_a_foreign_host_is_refused(workbooks_server, outreach_server, tmp_path, host):
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET).returncode == 0

    start = plugin.web({"action": "start"}, browser=Browser(host, WEB_PATH))

    assert start.returncode == 0 and start.status == 400, start.output
    assert start.header("Location") is None                      # not sent to Outreach at all
    assert "which is not this Workbooks service" in start.body
    assert plugin.state("oauth_state") is None


def test_without_a_recorded_redirect_uri_the_services_own_host_is_used(workbooks_server, outreach_server, tmp_path):
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET).returncode == 0
    service = urlsplit(workbooks_server.url)
    browser = Browser(service.netloc, WEB_PATH, https=service.scheme == "https")

    start = plugin.web({"action": "start"}, browser=browser)

    assert start.status == 302, start.output
    assert f"redirect_uri={quote(f'{service.scheme}://{service.netloc}{WEB_PATH}', safe='')}" in start.header("Location")


# --- §4: revoke takes this page's form ---------------------------------------------------------------

def test_revoke_without_the_pages_token_or_as_an_unknown_method_changes_nothing(plugin):
    plugin.authorise()
    page = plugin.web({})
    token = plugin.form_token(page, "revoke")
    before = plugin.state("tokens")

    for token_given, method in ((None, "POST"), ("x", "POST"), (token, "GET"), (token, "PURGE"), (token, ""),
                                (token, "post2")):
        run = plugin.web({"action": "revoke"}, method=method, params=posting(plugin, token_given))
        assert run.returncode == 0, run.output
        assert plugin.state("tokens") == before, (method, token_given)

    # the token of another browser's page is not this browser's
    other = Browser(WEB_HOST, WEB_PATH)
    plugin.web({}, browser=other)
    assert plugin.web({"action": "revoke", "form_token": token}, method="POST", browser=other).status == 403
    assert plugin.state("tokens") == before

    revoked = plugin.web({"action": "revoke", "form_token": token}, method="POST")
    assert revoked.status == 200 and plugin.state("tokens") is None
