"""The authorisation web process end to end: scripts/outreach_authorise.py as a subprocess, fed
the request the way Workbooks does (`_query_*`, `_post_*`, `_server_*` params), through the
Outreach emulator's OAuth pages, with tokens landing in the Workbooks emulator's API Data."""
from __future__ import annotations

import json
import time
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.install_helpers import (CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Plugin, assert_no_secrets,
                                   follow_to_callback)
from tools.web_browser import own_redirect


@pytest.fixture
def plugin(workbooks_server, outreach_server, tmp_path, request):
    # indirect parameters: Workbooks emulator switches (e.g. unverified_attributes)
    workbooks_server.app.config.update(getattr(request, "param", {}))
    outreach_server.app.add_user("owner@acme.example", "owner")
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    installed = plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                               "--redirect-uri", REDIRECT_URI)
    assert installed.returncode == 0, installed.output
    return plugin


def secrets_of(plugin: Plugin) -> list[str]:
    tokens = plugin.state("tokens") or {}
    return [plugin.api_key, CLIENT_SECRET, tokens.get("access_token"), tokens.get("refresh_token")]


def test_start_redirects_to_outreach_with_a_state_bound_to_this_database(plugin):
    start = plugin.web({"action": "start"})

    assert start.returncode == 0, start.output
    assert start.status == 302
    location = urlsplit(start.header("Location"))
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{plugin.outreach.url}/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["response_type"] == "code"
    assert query["scope"].split() == ["prospects.all", "accounts.all", "users.read", "sequences.read", "sequenceStates.read"]
    assert len(query["state"]) >= 32
    pending = plugin.state("oauth_state")["pending"]
    assert len(pending) == 1
    assert pending[0]["database"] == {"name": "Emulated Database", "id": 1, "instance_id": 4242}
    assert query["state"] not in json.dumps(pending)          # only its hash is stored
    assert pending[0]["expires_at"] > time.time()


@pytest.mark.parametrize("plugin", [{"unverified_attributes": True}, {}], indirect=True,
                         ids=["enabled-known", "enabled-unknown"])
def test_full_authorisation_stores_tokens_and_the_status_page_never_shows_them(plugin):
    writes_before = plugin.wb.app.count_of("PUT", "automation/scheduled_actions")
    start, callback = plugin.authorise()

    assert callback.returncode == 0, callback.output
    assert callback.status == 200
    assert callback.header("Content-Type") == "text/html; charset=utf-8"
    tokens = plugin.state("tokens")
    assert tokens["access_token"] and tokens["refresh_token"]
    assert tokens["scopes"] == ["prospects.all", "accounts.all", "users.read", "sequences.read", "sequenceStates.read"]
    assert tokens["instance_url"] == f"{plugin.outreach.url}/api/v2"
    assert tokens["database"] == {"name": "Emulated Database", "id": 1, "instance_id": 4242}
    assert tokens["expires_at"] > time.time() + 3600
    assert plugin.state("oauth_state")["pending"] == []       # the state is single use
    assert "<h1>Outreach is connected</h1>" in callback.body
    if plugin.wb.app.config["unverified_attributes"]:
        assert "The scheduled process &#x27;Outreach Send/Receive&#x27; is enabled" in callback.body
        assert plugin.processes("scheduled_actions")[0]["enabled"] is True
    else:
        # workbooks-api.md R2.3: `enabled` has no known API name; Workbooks does not show it, so
        # the page asks a person to switch the process on instead of claiming it did
        assert "is enabled" not in callback.body
        assert ("Now switch on the scheduled process &#x27;Outreach Send/Receive&#x27; in Workbooks "
                "(Configuration &gt; Automation) and check that it runs every minute") in callback.body
        assert plugin.wb.app.count_of("PUT", "automation/scheduled_actions") == writes_before   # nothing written blindly

    status = plugin.web({})
    assert status.returncode == 0 and status.status == 200
    for shown in ("Emulated Database (id 1, instance 4242)", f"{plugin.outreach.url}/api/v2",
                  "prospects.all accounts.all users.read sequences.read sequenceStates.read", "Access token expires"):
        assert shown in status.body
    for run in (start, callback, status):
        assert_no_secrets(run.output, secrets_of(plugin))

    # The installer now sees an authorised plugin, and a reinstall leaves the enabled process alone.
    check = plugin.install("--check")
    assert "[info] Outreach is authorised" in check.stdout
    if plugin.wb.app.config["unverified_attributes"]:
        assert "(id 1, enabled)" in check.stdout
    else:
        assert check.returncode == 0 and "switch it on once Outreach is authorised (it is): make sure it is on" \
            in check.stdout


def test_a_replayed_or_unknown_state_is_refused(plugin):
    start = plugin.web({"action": "start"})
    code, state = follow_to_callback(start.header("Location"))
    assert plugin.web({"code": code, "state": state}).returncode == 0
    first_tokens = plugin.state("tokens")

    replay = plugin.web({"code": code, "state": state})
    forged = plugin.web({"code": code, "state": "not-a-state-we-issued"})

    for run in (replay, forged):
        assert run.returncode == 0          # a bad request: a plain page, and the process stays on
        assert run.status == 400
        assert "not one this database started, or it was already used" in run.body
    assert plugin.state("tokens") == first_tokens


def test_a_state_started_in_another_database_is_refused(plugin):
    start = plugin.web({"action": "start"})
    code, state = follow_to_callback(start.header("Location"))
    # The database is copied/restored meanwhile: same API Data, another identity.
    plugin.wb.app.config.update(database_name="Copy of Emulated Database", database_instance_id=9999)

    callback = plugin.web({"code": code, "state": state})

    assert callback.returncode == 0 and callback.status == 400
    assert ("This authorisation was started in Emulated Database (id 1, instance 4242), not in this "
            "database (Copy of Emulated Database (id 1, instance 9999))") in callback.body
    assert plugin.state("tokens") is None


def test_tokens_of_another_database_are_flagged_on_the_status_page(plugin):
    plugin.authorise()
    plugin.wb.app.config.update(database_name="Sandbox copy", database_instance_id=777)

    status = plugin.web({})

    assert status.returncode == 0
    assert "<h1>Outreach is connected to a different database</h1>" in status.body
    assert "The sync refuses to use them" in status.body
    assert "Sandbox copy (id 1, instance 777)" in status.body


def test_revoke_needs_a_post_then_deletes_the_tokens(plugin):
    plugin.authorise()

    confirm = plugin.web({"action": "revoke"})              # a GET: only asks
    assert confirm.returncode == 0
    assert "<h1>Revoke Outreach access?</h1>" in confirm.body
    assert '<form method="post"' in confirm.body
    assert plugin.state("tokens") is not None

    forged = plugin.web({"action": "revoke"}, method="POST")      # another site's form: no token
    assert forged.returncode == 0 and forged.status == 403
    assert "did not come from this page's form. Nothing was changed." in unescape(forged.body)
    assert plugin.state("tokens") is not None

    revoked = revoke(plugin, confirm)
    assert revoked.returncode == 0, revoked.output
    assert plugin.state("tokens") is None
    assert "Outreach access was revoked" in revoked.body
    assert "<h1>Outreach is not connected</h1>" in revoked.body
    assert_no_secrets(revoked.output, [plugin.api_key, CLIENT_SECRET])

    again = revoke(plugin, confirm)
    assert "There were no stored Outreach tokens to revoke." in again.body


def test_revoke_from_the_command_line_needs_no_form(plugin):
    plugin.authorise()
    run = plugin.run(plugin_script("authorise"), "--revoke")
    assert run.returncode == 0, run.output
    assert run.summary == "[notice] Outreach access was revoked: the stored tokens are deleted"
    assert plugin.state("tokens") is None


def test_a_refused_authorisation_stores_nothing(plugin):
    plugin.outreach.app.config["oauth_clients"] = "deny"
    start = plugin.web({"action": "start"})
    answer = __import__("requests").get(start.header("Location"), allow_redirects=False, timeout=10)
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    assert query["error"] == "access_denied"

    callback = plugin.web(query)

    assert callback.returncode == 0 and callback.status == 400
    assert "Outreach did not grant access (access_denied" in callback.body
    assert plugin.state("tokens") is None


def test_a_code_outreach_rejects_is_explained(plugin):
    start = plugin.web({"action": "start"})
    _code, state = follow_to_callback(start.header("Location"))

    callback = plugin.web({"code": "a-code-outreach-never-issued", "state": state})

    assert callback.returncode == 0 and callback.status == 400
    assert "Outreach refused the authorisation code (invalid_grant)" in callback.body
    assert plugin.state("tokens") is None
    assert "a-code-outreach-never-issued" not in callback.output


def test_start_without_an_oauth_client_says_how_to_configure_it(workbooks_server, outreach_server, tmp_path):
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    assert plugin.install().returncode == 0                     # no --client-id / --client-secret

    start = plugin.web({"action": "start"})

    assert start.returncode == 2 and start.status == 400
    assert "The Outreach OAuth client is not configured: run the installer with --client-id" in start.body


def test_client_credentials_as_parameters_work_without_install_state(workbooks_server, outreach_server, tmp_path):
    outreach_server.app.add_user("owner@acme.example", "owner")
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    base = plugin.params(outreach_client_id=CLIENT_ID, outreach_client_secret=CLIENT_SECRET,
                         outreach_redirect_uri=REDIRECT_URI)

    start = plugin.web({"action": "start"}, params=base)
    code, state = follow_to_callback(start.header("Location"))
    callback = plugin.web({"code": code, "state": state}, params=base)

    assert callback.returncode == 0, callback.output
    assert plugin.state("tokens")["access_token"]
    assert_no_secrets(start.output + callback.output, secrets_of(plugin))


def test_everything_printed_is_html_escaped(plugin):
    plugin.wb.app.config["database_name"] = "<script>alert('x')</script> & Co"
    plugin.authorise()

    status = plugin.web({})

    assert "<script>" not in status.body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in status.body


def test_unknown_action(plugin):
    run = plugin.web({"action": "explode"})
    assert run.returncode == 0 and run.status == 400
    assert "The action &#x27;explode&#x27; is not one this page knows" in run.body


def test_workbooks_unreachable_gives_a_page_and_exit_1(plugin):
    run = plugin.web({}, params=plugin.params(_workbooks_service="http://127.0.0.1:9"))
    assert run.returncode == 1
    assert run.status == 502
    assert "Outreach authorisation is unavailable" in run.body


def test_bad_credentials_give_a_page_and_exit_2(plugin):
    bad = "11111-22222-33333-44444-55555-66666-77777-88888"
    run = plugin.web({}, params=plugin.params(workbooks_api_key=bad))
    assert run.returncode == 2 and run.status == 400
    assert_no_secrets(run.output, [bad])


def revoke(plugin: Plugin, page, **kw):
    """Press the page's Revoke button: a POST carrying the form's anti-forgery token."""
    return plugin.web({"action": "revoke", "form_token": plugin.form_token(page, "revoke")}, method="POST", **kw)


def plugin_script(name: str):
    from tests.install_helpers import AUTHORISE, INSTALL
    return {"authorise": AUTHORISE, "install": INSTALL}[name]


def test_no_secret_in_any_output_of_a_full_cycle(workbooks_server, outreach_server, tmp_path):
    """Install, authorise, look, check, revoke, authorise again, uninstall — in Process-Engine mode
    (a session id and logging key) — and scan every byte any script printed."""
    outreach_server.app.add_user("owner@acme.example", "owner")
    outreach_server.app.config["token_mint_min_interval"] = 0
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    session = workbooks_server.app.create_session()
    engine = {"_workbooks_service": workbooks_server.url, "_workbooks_username": session["username"],
              "_workbooks_session_id": session["session_id"],
              "_workbooks_logical_database_id": session["logical_database_id"],
              "_workbooks_api_logging_key": "apilog-5f2e9c1d7b", "_workbooks_client_name": "Process Engine",
              "outreach_oauth_url": f"{outreach_server.url}/oauth", "outreach_api_url": f"{outreach_server.url}/api/v2"}
    seen: list[str] = [CLIENT_SECRET, plugin.api_key, session["session_id"], "apilog-5f2e9c1d7b"]

    def web(request, method="GET"):
        # Each run reconnects and Workbooks issues a new session id: the engine hands the next
        # run a fresh one, as it would.
        fresh = workbooks_server.app.create_session()
        seen.append(fresh["session_id"])
        run = plugin.web(request, method=method, follow=False,
                         params={**engine, "_workbooks_session_id": fresh["session_id"]})
        again = own_redirect(run.lines)          # the browser follows the page's redirect to itself
        return web(again) if again else run

    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--redirect-uri",
                          REDIRECT_URI, params=engine).returncode == 0
    for _round in range(2):
        start = web({"action": "start"})
        code, state = follow_to_callback(start.header("Location"))
        seen.append(code)
        assert web({"code": code, "state": state}).returncode == 0
        tokens = plugin.state("tokens")
        seen += [tokens["access_token"], tokens["refresh_token"]]
        page = web({})
        assert page.returncode == 0
        assert plugin.install("--check", params={**engine, "_workbooks_session_id":
                                                 workbooks_server.app.create_session()["session_id"]}).returncode == 0
        assert web({"action": "revoke", "form_token": plugin.form_token(page, "revoke")},
                   method="POST").returncode == 0
    assert plugin.install("--uninstall", params={**engine, "_workbooks_session_id":
                                                 workbooks_server.app.create_session()["session_id"]}).returncode == 0

    everything = "".join(run.output for run in plugin.outputs)
    assert len(plugin.outputs) >= 12
    assert_no_secrets(everything, seen)


def test_authorised_runner_syncs_and_after_revoke_exits_2(plugin):
    """The whole life: installed (fixture) → authorised → the runner syncs a Person → revoked →
    the runner stops with exit 2 and says to run the authorisation."""
    from tests.install_helpers import ROOT
    runner = ROOT / "scripts" / "outreach_send_receive.py"
    plugin.authorise()
    person = plugin.wb.app.insert("people", {"name": "Grace Hopper", "person_first_name": "Grace",
                                             "person_last_name": "Hopper",
                                             "main_location[email]": "grace@navy.example",
                                             "cf_person_sync_to_outreach": True})

    synced = plugin.run(runner)

    assert synced.returncode == 0, synced.output
    assert synced.summary.startswith("[notice] people: 1 created")
    [prospect] = plugin.outreach.app.records("prospects")
    assert plugin.wb.app.record("people", person["id"])["cf_person_outreach_id"] == str(prospect["id"])

    used = secrets_of(plugin)                          # the tokens the runner used
    revoked = revoke(plugin, plugin.web({}))
    assert revoked.returncode == 0 and plugin.state("tokens") is None
    stopped = plugin.run(runner)

    assert stopped.returncode == 2, stopped.output
    assert "Outreach is not authorised: run the authorisation" in stopped.summary
    assert_no_secrets("".join(r.output for r in plugin.outputs), used)


def test_a_recorded_redirect_uri_wins_over_the_request_address(workbooks_server, outreach_server, tmp_path):
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    fixed = "https://crm.acme.example/outreach/callback"
    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                          "--redirect-uri", fixed).returncode == 0
    assert plugin.state("install")["oauth_client"]["redirect_uri"] == fixed

    start = plugin.web({"action": "start"})

    query = {k: v[0] for k, v in parse_qs(urlsplit(start.header("Location")).query).items()}
    assert query["redirect_uri"] == fixed
