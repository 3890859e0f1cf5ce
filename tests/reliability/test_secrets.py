"""Suite 7 (issue 7): secret hygiene.

Every secret a run touches is collected from the emulators themselves — the Workbooks API key,
every session id and authenticity token Workbooks issued (the Process Engine's and the one our
reconnect gets), the API-logging key, every access token, refresh token and authorisation code
Outreach ever minted, and the OAuth client secret — and every line of output is scanned for
them: the runner's stdout and stderr (as Workbooks runs it, a separate process), the
authorisation web process's pages, and the error messages the plugin writes onto records.

The runs include failing ones, and hostile servers whose error bodies echo the secrets back
(a Workbooks 500 quoting the API key and session, an Outreach 422 quoting the bearer token, a
token endpoint refusal quoting the refresh token and client secret), so redaction is tested
where it matters: on text the plugin did not write itself.

Plus the static rules: no `requests` call in plugin/ without a timeout (found by AST), and TLS
verification on unless a person turns it off.
"""
from __future__ import annotations

import ast
import inspect
import json
import re
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from plugin import http as plugin_http
from tests.install_helpers import CLIENT_SECRET
from tests.reliability.helpers import ROOT
from tests.sync_harness import Sandbox
from tools import demo_company

PLUGIN = ROOT / "plugin"
HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "send"}


class SecretWatch:
    """Records every secret the emulators hand out while a test runs."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.sessions: list[dict] = []
        original = sb.wb._new_session

        def new_session(*args, **kwargs):
            session = original(*args, **kwargs)
            self.sessions.append(session)
            return session
        sb.wb._new_session = new_session
        self.fixed: set[str] = {sb.api_key, CLIENT_SECRET}

    def all(self) -> set[str]:
        found = set(self.fixed)
        for session in self.sessions + list(self.sb.wb.sessions.values()):
            found.update(str(session[k]) for k in ("id", "authenticity_token") if session.get(k))
        found.update(self.sb.outreach._access)
        found.update(self.sb.outreach._refresh)
        found.update(self.sb.outreach._codes)
        return {s for s in found if s and len(s) >= 8}

    def leaks(self, text: str) -> list[str]:
        out = []
        for secret in self.all():
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                if form in text:
                    out.append(f"{secret[:6]}… ({len(secret)} chars)")
        return out


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    sandbox = Sandbox(workbooks_server, outreach_server, tmp_path)
    sandbox.watch = SecretWatch(sandbox)
    sandbox.outputs = []
    sandbox.ready()
    return sandbox


def run(sb, **kw):
    result = sb.run_script(**kw)
    sb.outputs.append(result.output)
    return result


def record_messages(sb) -> str:
    """What the plugin wrote on records for people to read."""
    texts = []
    for kind, endpoint in (("person", "people"), ("organisation", "organisations")):
        for rec in sb.wb.records(endpoint):
            texts += [str(rec.get(sb.col(kind, k)) or "") for k in ("error_message", "snapshot", "outreach_url")]
    return "\n".join(texts)


def assert_clean(sb, *extra: str) -> None:
    texts = sb.outputs + list(extra) + [record_messages(sb)]
    leaks = sb.watch.leaks("\n".join(texts))
    where = [t for t in texts if sb.watch.leaks(t)]
    assert not leaks, f"secrets in the output: {leaks}, in:\n" + "\n----\n".join(where)
    assert len(sb.watch.all()) >= 5           # the scan had something to look for


def tokens(sb) -> dict:
    [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"]
    return json.loads(row["value"])


def set_tokens(sb, **changes) -> None:
    [row] = [r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"]
    sb.wb.edit("api_data", row["id"], {"value": json.dumps({**json.loads(row["value"]), **changes})})


def test_successful_runs_in_both_connection_modes_leak_nothing(sb):
    sb.organisation("Acme Ltd")
    sb.person(email="ann@acme.example")
    sb.person(email="bad-email")
    sb.outreach.insert("prospects", {"emails": ["dup@acme.example"]})
    sb.person(email="dup@acme.example")
    assert run(sb, log_level="debug").code == 0
    sb.person(email="bo@acme.example")
    result = run(sb, params=engine_params(sb, log_level="debug"))
    assert result.code == 0, result.output
    # a refresh mid-life: new tokens minted and stored
    sb.outreach.clock.advance(61)
    set_tokens(sb, expires_at=int(time.time()) + 30)
    sb.person(email="cy@acme.example")
    assert run(sb, log_level="debug").code == 0
    assert len(sb.outreach._refresh) >= 2
    assert_clean(sb)


def engine_params(sb, **extra) -> dict:
    """The Process Engine's way in: a session to reconnect with, and an API-logging key (both
    secrets the watch then looks for)."""
    engine = sb.wb.create_session()
    params = {k: v for k, v in sb.params().items() if k != "workbooks_api_key"}
    params.update(_workbooks_session_id=engine["session_id"], _workbooks_username=engine["username"],
                  _workbooks_logical_database_id=engine["logical_database_id"],
                  _workbooks_api_logging_key="alk-" + "9" * 24, _workbooks_client_name="Process Engine", **extra)
    sb.watch.fixed.add(params["_workbooks_api_logging_key"])
    return params


def seed_demo_company(sb) -> int:
    """The company `make demo` seeds (tools/demo_company.py), ticked as the demo ticks it, in this
    sandbox's emulators; returns how many People are ticked."""
    company = demo_company.build()
    reps = {rep["key"]: sb.wb.add_user(rep["login_name"], rep["person_name"]) for rep in company.reps}

    def row(record: dict, queue: str) -> dict:
        return {**{k: v for k, v in record.items() if not k.startswith("_")},
                "assigned_to": reps[record["_owner"]][queue]}
    sb.wb.seed({"organisations": [row(o, "organisation_queue_id") for o in company.organisations],
                "people": [row(p, "person_queue_id") for p in company.people]})
    for user in company.outreach_users:
        sb.outreach.add_user(user["email"], user["username"], user["first_name"], user["last_name"])
    sb.outreach.config["excluded_domains"] = [demo_company.EXCLUDED_DOMAIN]
    for prospect in company.outreach_prospects:
        sb.outreach.insert("prospects", {k: v for k, v in prospect.items() if k != "_owner"})
    for org in company.organisations:
        if org["_flag"]:
            sb.wb.edit("organisations", org["id"], {sb.col("organisation", "sync"): True})
    now = {p["main_location[email]"].lower() for p in company.people if p["_flag"] == "now"}
    for person in sb.wb.records("people"):
        if str(person.get("main_location[email]") or "").lower() in now:
            sb.wb.edit("people", person["id"], {sb.col("person", "sync"): True})
    return len(now)


def test_no_secret_travels_in_any_url(sb):
    """Issue 16 §2: a URL lands in Workbooks' access logs, in proxies' logs and in every
    redirect's Location. Every request line both emulators receive during the installer, the
    authorisation and demo-sized runs in both connection modes (with a token refresh) is scanned
    for every secret: the API key, session ids and authenticity tokens, the API-logging key, the
    OAuth client secret and every token and code Outreach minted."""
    targets: list[str] = []

    def collect() -> None:
        for app in (sb.wb, sb.outreach):
            assert app.total_requests <= app.request_log.maxlen, "the log dropped request lines"
            targets.extend(f"{e['method']} {e['target']}" for e in app.request_log)
        sb.reset_counts()

    collect()                                                # the installer and the authorisation
    ticked = seed_demo_company(sb)
    first = run(sb)
    assert first.code == 0 and f"people: {ticked - 3} created" in first.summary, first.output
    collect()
    sb.wb.edit("people", sb.wb.records("people")[5]["id"], {"person_job_title": "Edited"})
    sb.outreach.clock.advance(61)
    set_tokens(sb, expires_at=int(time.time()) + 30)         # a refresh on the way
    assert run(sb, params=engine_params(sb)).code == 0
    collect()

    assert len(targets) > 300 and any("/crm/people.api" in t for t in targets)
    leaking = [t for t in targets if sb.watch.leaks(t)]
    assert len(leaking) == 0, f"{len(leaking)} request lines carry a secret, e.g. {sb.watch.leaks(leaking[0])} in " \
                        f"{leaking[0].split('?')[0]}"
    assert len(sb.watch.all()) >= 8


def test_authorisation_pages_leak_nothing(sb):
    start = sb.web({"action": "start"})
    status = sb.web({"action": "status"})
    sb.outputs += [start.output, status.output]
    assert_clean(sb)


def echo(sb, app, method, path, status, body) -> None:
    """Answer matching requests with an error whose body is built at request time by `body()`,
    so it can quote what this very run was just given (its own login session, its tokens)."""
    from werkzeug.wrappers import Response

    from tools.emulators.core import json_response
    original = app.dispatch

    def dispatch(request):
        if request.method == method and re.search(path, request.path):
            answer = body()
            return Response(answer, status=status, content_type="text/html") if isinstance(answer, str) \
                else json_response(answer, status)
        return original(request)
    app.dispatch = dispatch
    sb.restore = lambda: setattr(app, "dispatch", original)


def test_failing_runs_with_servers_echoing_secrets_leak_nothing(sb):
    sb.person(email="ann@acme.example")

    def secret_text(own_session: bool = False):
        """What a careless server might quote: every secret in key=value form (any process's:
        the patterns catch those), and bare the ones this process knows (the API key, the
        tokens, the client secret and, from Workbooks, the session its own login just opened)."""
        text = " ".join(f"session_id={s['id']} Workbooks-Session={s['id']}" for s in sb.watch.sessions)
        text += (f" api_key={sb.api_key} Authorization: Bearer {tokens(sb)['access_token']} "
                 f"refresh_token={tokens(sb)['refresh_token']} client_secret={CLIENT_SECRET} "
                 f"raw {sb.api_key} {tokens(sb)['access_token']} {tokens(sb)['refresh_token']} {CLIENT_SECRET}")
        if own_session:
            newest = sb.watch.sessions[-1]
            text += f" your session {newest['id']} token {newest['authenticity_token']}"
        return text

    # Workbooks answers 500 quoting the caller's key and session, on every read
    echo(sb, sb.wb, "GET", r"crm/people\.api", 500,
         lambda: {"success": False, "errors": {"[]": {"base": secret_text(True)}}, "failures": [secret_text(True)]})
    result = run(sb, env={"TIMEOUT": "10"}, log_level="debug")
    assert result.code == 1, result.output
    sb.restore()

    # Outreach refuses the create with a 422 whose detail quotes the token (written on the record)
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", status=422, count=1,
                          body={"errors": [{"id": "validationError", "title": "Validation Error",
                                            "detail": secret_text(), "source": {"pointer": "/data/attributes/firstName"}}]})
    result = run(sb, log_level="debug")
    assert result.code == 0, result.output
    assert sb.flags("person", 1)["sync_error"] is True

    # Outreach 500s quoting the refresh token, then a dropped connection
    sb.person(email="bo@acme.example")
    sb.outreach.add_fault(method="GET", path=r"/api/v2/", status=500, count=None, body=secret_text())
    assert run(sb, env={"TIMEOUT": "10"}).code == 1
    sb.outreach.clear_faults()
    sb.outreach.add_fault(method="POST", path=r"/api/v2/prospects$", reset=True, when="after", count=1)
    assert run(sb).code == 1

    # the token endpoint refuses, quoting what it was sent
    sb.outreach.clock.advance(61)
    set_tokens(sb, expires_at=int(time.time()) - 5)
    sb.outreach.add_fault(method="POST", path=r"/oauth/token$", status=400, count=None,
                          body={"error": "invalid_grant", "error_description": secret_text()})
    result = run(sb)
    assert result.code == 2, result.output
    sb.outreach.clear_faults()

    # Workbooks refuses the API key, quoting it
    sb.wb.add_fault(method="POST", path=r"login\.api", status=401, count=None,
                    body={"success": False, "failure_reason": "unrecognised_name_or_password",
                          "failure_message": f"bad key {sb.api_key}"})
    assert run(sb).code == 2
    sb.wb.clear_faults()
    assert_clean(sb)


ODD_ANSWERS = [
    ("workbooks", "GET", r"crm/people\.api", {"success": True, "data": "not a list", "total": "x"}),
    ("workbooks", "PUT", r"crm/people\.api", {"success": True}),
    ("workbooks", "GET", r"automation/api_data\.api", "<html>Please sign in to the Wi-Fi</html>"),
    ("outreach", "POST", r"/api/v2/prospects$", {"data": {}}),
    ("outreach", "GET", r"/api/v2/users$", {"data": [{"type": "user"}]}),
    ("outreach", "GET", r"/api/v2/prospects$", {"data": [{"attributes": None}], "links": {"next": 5}}),
    ("outreach", "GET", r"/api/v2/accounts$", "<html>maintenance</html>"),
]


@pytest.mark.parametrize("server, method, path, body", ODD_ANSWERS,
                         ids=[f"{a[0]}-{a[1]}-{a[2].strip('$').split('/')[-1]}" for a in ODD_ANSWERS])
def test_an_answer_the_api_never_documents_ends_cleanly(sb, server, method, path, body):
    """A 200 whose body is not what the API documents must end the run with a logged, redacted
    error and exit 1 (retry next run) or be shrugged off — never a raw traceback (whose text
    nobody redacted, and which leaves no summary line last)."""
    sb.organisation("Odd Ltd")
    sb.person(email="ann@acme.example")
    app = sb.wb if server == "workbooks" else sb.outreach
    echo(sb, app, method, path, 200, lambda: body)
    result = run(sb, env={"TIMEOUT": "10"})
    sb.restore()
    assert result.code in (0, 1), result.output
    assert "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith("["), result.output
    assert_clean(sb)
    runs = [run(sb) for _ in range(3)]
    assert runs[-1].code == 0, runs[-1].output


# --- static rules ----------------------------------------------------------------------------------------

def _receiver(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_receiver(node.func) + "()")
    return ".".join(reversed(parts))


def requests_calls(path: Path):
    """(line, call text, has timeout, verify keyword) for every call that goes straight into the
    requests library: `requests.get(...)`, `requests.request(...)`, `<...>.session.request(...)`,
    `requests.Session().get(...)`, and the like."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in HTTP_VERBS:
            continue
        receiver = _receiver(node.func.value)
        last = receiver.split(".")[-1].lower()
        if receiver == "requests" or "session" in last or receiver.startswith("requests."):
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            has_kwargs = any(k.arg is None for k in node.keywords)
            yield (node.lineno, f"{receiver}.{node.func.attr}", "timeout" in keywords or has_kwargs,
                   keywords.get("verify"))


def test_every_requests_call_in_the_plugin_has_a_timeout():
    calls, missing = 0, []
    for path in sorted(PLUGIN.rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        for line, call, has_timeout, _ in requests_calls(path):
            calls += 1
            if not has_timeout:
                missing.append(f"{path.relative_to(ROOT)}:{line}: {call}(…) has no timeout")
    assert calls >= 1, "the scan found no requests call at all: is it looking in the right place?"
    assert not missing, "\n".join(missing)


def test_the_timeout_scan_catches_a_call_without_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import requests\n"
                   "def f(s):\n"
                   "    requests.get('https://x')\n"
                   "    s.session.request('GET', 'https://x', timeout=3)\n"
                   "    requests.Session().post('https://x')\n", encoding="utf-8")
    found = [(line, call, ok) for line, call, ok, _ in requests_calls(bad)]
    assert found == [(3, "requests.get", False), (4, "s.session.request", True),
                     (5, "requests.Session().post", False)]


def test_tls_verification_is_on_unless_a_person_turns_it_off(monkeypatch, sb):
    for path in sorted(PLUGIN.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "verify" and \
                    isinstance(node.value, ast.Constant) and node.value.value is False:
                pytest.fail(f"{path.relative_to(ROOT)}:{node.value.lineno}: verify=False hard-coded")
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "verify" and "session" in _receiver(t.value).lower()
                    for t in node.targets):
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno}: the session's verify is overridden")
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is False \
                    and any(isinstance(t, ast.Attribute) and t.attr == "verify" for t in node.targets):
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno}: verify set to False")
    assert inspect.signature(plugin_http.HttpClient).parameters["verify"].default is True
    # and at run time: every request of a default run is sent with verify=True
    seen = []
    original = plugin_http.requests.Session.request

    def spy(self, method, url, **kwargs):
        seen.append(kwargs.get("verify"))
        return original(self, method, url, **kwargs)
    monkeypatch.setattr(plugin_http.requests.Session, "request", spy)
    sb.person(email="tls@acme.example")
    assert sb.run().code == 0
    assert seen and all(v is True for v in seen), seen
    seen.clear()
    assert sb.run(verify_tls=False).code == 0          # the documented opt-out still works
    assert seen and all(v is False for v in seen)
