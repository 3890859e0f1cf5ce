"""Helpers for the installer / authorisation / packaging suites: run the real scripts as
subprocesses (as Workbooks would) with a params file, and read what they left in the emulators."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests

from tools.run_output import PrintedLines
from tools.web_browser import Browser, own_redirect

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "outreach_install.py"
AUTHORISE = ROOT / "scripts" / "outreach_authorise.py"

CLIENT_ID = "outreach-sync-test-client"
CLIENT_SECRET = "cs-7c1f9e0b2d4a4e6f8a1b3c5d7e9f0a2b"
WEB_HOST = "acme.workbooks.example"
WEB_PATH = "/wp/outreach_authorisation"
REDIRECT_URI = f"https://{WEB_HOST}{WEB_PATH}"
PREFIX = "outreach_sync."


@dataclass
class Run(PrintedLines):
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def header(self, name: str) -> str | None:
        for line in self.lines:
            if line.lower().startswith(f"[header] {name.lower()}:"):
                return line.split(":", 1)[1].strip()
        return None

    @property
    def status(self) -> int | None:
        value = self.header("Status")
        return int(value.split()[0]) if value else None

    @property
    def body(self) -> str:
        return "\n".join(line for line in self.stdout.splitlines() if not line.startswith("[header] "))


class Plugin:
    """One Workbooks database (+ optionally Outreach) and the scripts run against it."""

    def __init__(self, workbooks_server, tmp_path: Path, outreach_server=None, *, api_key: str | None = None):
        self.wb = workbooks_server
        self.outreach = outreach_server
        self.tmp = tmp_path
        self.api_key = api_key or workbooks_server.app.create_api_key()
        self.outputs: list[Run] = []
        self.browser = Browser(WEB_HOST, WEB_PATH)       # the administrator's
        self._n = 0

    def params(self, **extra) -> dict:
        params = {"_workbooks_service": self.wb.url, "workbooks_api_key": self.api_key}
        if self.outreach is not None:
            params.update(outreach_oauth_url=f"{self.outreach.url}/oauth",
                          outreach_api_url=f"{self.outreach.url}/api/v2")
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def run(self, script: Path, *args: str, params: dict | None = None, env: dict | None = None,
            timeout: float = 120) -> Run:
        self._n += 1
        path = self.tmp / f"params-{self._n}.json"
        path.write_text(json.dumps(self.params() if params is None else params), encoding="utf-8")
        command = [sys.executable, str(script), *args, "--params", str(path)]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
        environment.update(env or {})
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.tmp,
                              env=environment)
        run = Run(command, done.returncode, done.stdout, done.stderr)
        self.outputs.append(run)
        return run

    def install(self, *args: str, **kw) -> Run:
        return self.run(INSTALL, *args, **kw)

    def web(self, request: dict, *, method: str = "GET", params: dict | None = None,
            browser: Browser | None = None, follow: bool = True) -> Run:
        """The authorisation web process answering one request from `browser` (default: this
        administrator's): `request` holds query values (form values for a POST). The browser
        keeps the cookies the page sets and follows a redirect back to the page itself."""
        browser = browser or self.browser
        base = self.params() if params is None else params
        run = self.run(AUTHORISE, params={**base, **browser.params(request, method)})
        browser.keep(run.lines)
        again = own_redirect(run.lines) if follow else None
        return self.web(again, params=params, browser=browser, follow=False) if again else run

    # --- what is in Workbooks ------------------------------------------------------------------------
    def fields(self, resource_type: str | None = None) -> list[dict]:
        rows = self.wb.app.records("custom_fields")
        return [r for r in rows if resource_type is None or r["resource_type"] == resource_type]

    def processes(self, kind: str) -> list[dict]:
        return self.wb.app.records(kind)

    def state(self, key: str):
        rows = [r for r in self.wb.app.records("api_data") if r["key"] == PREFIX + key]
        if not rows:
            return None
        return json.loads(rows[0]["value"])

    def state_keys(self) -> list[str]:
        return sorted(r["key"] for r in self.wb.app.records("api_data") if str(r["key"]).startswith(PREFIX))

    def writes(self) -> dict[str, int]:
        """Requests that could change Workbooks since the counters were reset (logins excluded)."""
        return {key: n for key, n in self.wb.app.counts.items()
                if not key.startswith("GET ") and "/login" not in key and "/logout" not in key}

    # --- the OAuth round trip --------------------------------------------------------------------------
    def authorise(self, browser: Browser | None = None) -> tuple[Run, Run]:
        """start → the emulator's /oauth/authorize → its 302 back → callback, in one browser.
        Returns both runs."""
        start = self.web({"action": "start"}, browser=browser)
        assert start.status == 302, start.output
        code, state = follow_to_callback(start.header("Location"))
        callback = self.web({"code": code, "state": state}, browser=browser)
        return start, callback

    def form_token(self, page: Run, purpose: str) -> str:
        """The anti-forgery token of the page's form `purpose`, as the browser would post it."""
        return form_token(page.body, purpose)


def follow_to_callback(location: str) -> tuple[str, str]:
    """Open the authorize URL as the browser would; the emulator answers 302 to our redirect URI
    with `code` and `state`, which the browser would bring to the web process."""
    answer = requests.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI, answer.headers["Location"]
    query = dict(parse_qsl(back.query))
    assert "code" in query, answer.headers["Location"]
    return query["code"], query["state"]


def assert_no_secrets(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        if secret:
            assert secret not in text, f"a secret ({secret[:4]}…) appears in the output"


def form_token(body: str, purpose: str) -> str:
    """The hidden form_token of the form whose action is `purpose` in a page's HTML."""
    import re
    found = re.search(rf'<form method="post" action="\?action={purpose}">.*?name="form_token" value="([^"]*)"',
                      body)
    assert found, f"no {purpose} form on the page"
    return found.group(1)
