"""A Workbooks database with the plugin installed and Outreach authorised, against the two
emulators, and the real send/receive runner run in-process (real HTTP on loopback; only the
Python process is shared, to keep the suites fast). Used by the engine and reliability suites."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from plugin import authorise, install, runner
from tests.install_helpers import (CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, WEB_HOST, WEB_PATH,
                                   follow_to_callback, form_token)
from tools.run_output import PrintedLines
from tools.web_browser import Browser, own_redirect

WEB_URL = "https://web.outreach.test"
RUNNER = Path(__file__).resolve().parent.parent / "scripts" / "outreach_send_receive.py"


def is_receive_read(key: str) -> bool:
    """A counted Outreach request ("GET /api/v2/prospects?fields[prospect]&sort…") that the receive
    half makes: its change feeds (sorted reads: the send half's look-ups never sort) and every
    read of sequences and sequence states."""
    method, rest = key.split(" ", 1)
    path, _, names = rest.partition("?")
    if method != "GET":
        return False
    return bool(re.search(r"/api/v2/(sequences|sequenceStates)(/|$)", path)) or "sort" in names.split("&")


@dataclass
class Result(PrintedLines):
    code: int
    output: str
    _printed = "output"


class Sandbox:
    def __init__(self, workbooks_server, outreach_server, tmp_path: Path) -> None:
        self.wb_server, self.or_server = workbooks_server, outreach_server
        self.wb, self.outreach = workbooks_server.app, outreach_server.app
        self.tmp = tmp_path
        self.api_key = self.wb.create_api_key()
        self.extra: dict = {}
        self.browser = Browser(WEB_HOST, WEB_PATH)       # the administrator's
        self._n = 0

    # --- parameters and scripts ----------------------------------------------------------------
    def params(self, **extra) -> dict:
        params = {"_workbooks_service": self.wb_server.url, "workbooks_api_key": self.api_key,
                  "outreach_api_url": f"{self.or_server.url}/api/v2",
                  "outreach_oauth_url": f"{self.or_server.url}/oauth",
                  "outreach_web_url": WEB_URL}
        params.update(self.extra)
        params.update(extra)
        return params

    def _call(self, main, params: dict, *args: str, env: dict | None = None) -> Result:
        self._n += 1
        path = self.tmp / f"params-{self._n}.json"
        path.write_text(json.dumps(params), encoding="utf-8")
        out = io.StringIO()
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            with contextlib.redirect_stdout(out):
                code = main([*args, "--params", str(path)])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return Result(code, out.getvalue())

    def install(self, redirect_uri: str = REDIRECT_URI) -> Result:
        # The redirect URI registered with Outreach is recorded, as docs/installing.md advises.
        result = self._call(install.main, self.params(), "--client-id", CLIENT_ID, "--client-secret-file",
                            str(self._secret_file()), "--redirect-uri", redirect_uri)
        assert result.code == 0, result.output
        return result

    def _secret_file(self) -> Path:
        path = self.tmp / "client-secret.txt"
        path.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
        return path

    def web(self, request: dict, method: str = "GET", browser: Browser | None = None,
            follow: bool = True) -> Result:
        """One request to the authorisation web process from `browser` (default: the
        administrator's), which keeps the page's cookies and follows its redirects to itself."""
        browser = browser or self.browser
        result = self._call(authorise.main, {**self.params(), **browser.params(request, method)})
        browser.keep(result.lines)
        again = own_redirect(result.lines) if follow else None
        return self.web(again, browser=browser, follow=False) if again else result

    def authorise(self) -> None:
        start = self.web({"action": "start"})
        location = next(line.split(":", 1)[1].strip() for line in start.lines
                        if line.lower().startswith("[header] location:"))
        code, state = follow_to_callback(location)
        callback = self.web({"code": code, "state": state})
        assert "[header] Status: 200" in callback.output, callback.output

    def revoke(self) -> Result:
        """Press the status page's Revoke button (a POST with the page's anti-forgery token)."""
        page = self.web({})
        return self.web({"action": "revoke", "form_token": form_token(page.output, "revoke")}, method="POST")

    def ready(self, owner_email: str = "owner@corp.example") -> "Sandbox":
        if not self.outreach.records("users"):
            self.outreach.add_user(owner_email, "owner", "Olive", "Owner")
        self.install()
        self.authorise()
        return self.load_columns()

    def load_columns(self) -> "Sandbox":
        """The plugin's custom-field columns, by title (after the installer made them)."""
        self.columns = {kind: self._columns(kind) for kind in ("person", "organisation")}
        return self

    def run(self, *, env: dict | None = None, **extra) -> Result:
        return self._call(runner.main, self.params(**extra), env=env)

    def run_script(self, *, env: dict | None = None, timeout: float = 120, params: dict | None = None,
                   script: Path = RUNNER, **extra) -> Result:
        """The runner exactly as Workbooks starts it: a separate process, a params file, env
        (`script`: the runner of another copy of the bundle)."""
        self._n += 1
        path = self.tmp / f"params-{self._n}.json"
        path.write_text(json.dumps(self.params(**extra) if params is None else params), encoding="utf-8")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
        environment.update(env or {})
        done = subprocess.run([sys.executable, str(script), "--params", str(path)], capture_output=True,
                              text=True, timeout=timeout, env=environment, cwd=self.tmp)
        return Result(done.returncode, done.stdout + done.stderr)

    # --- Workbooks data --------------------------------------------------------------------------
    def _columns(self, kind: str) -> dict[str, str]:
        from plugin import fields
        resource = "Private::Crm::Person" if kind == "person" else "Private::Crm::Organisation"
        by_title = {f["title"]: f["value_column_name"] for f in self.wb.records("custom_fields")
                    if f["resource_type"] == resource}
        return {d.key: by_title[d.title] for d in fields.definitions(kind)}

    def col(self, kind: str, key: str) -> str:
        return self.columns[kind][key]

    def person(self, *, email: str | None = "ann@acme.example", first="Ann", last="Lee", sync=True,
               **fields) -> dict:
        data = {"person_first_name": first, "person_last_name": last, "name": f"{first} {last}",
                self.col("person", "sync"): sync, **fields}
        if email is not None:
            data["main_location[email]"] = email
        return self.wb.insert("people", data)

    def organisation(self, name="Acme Ltd", sync=True, **fields) -> dict:
        return self.wb.insert("organisations", {"name": name, self.col("organisation", "sync"): sync, **fields})

    def get(self, kind: str, record_id: int) -> dict:
        return self.wb.record("people" if kind == "person" else "organisations", record_id)

    def flags(self, kind: str, record_id: int) -> dict:
        record = self.get(kind, record_id)
        return {key: record.get(self.col(kind, key)) for key in self.columns[kind]}

    def prospects(self) -> list[dict]:
        return self.outreach.records("prospects")

    def accounts(self) -> list[dict]:
        return self.outreach.records("accounts")

    def outreach_requests(self, method: str | None = None, path: str | None = None) -> int:
        return self.outreach.count_of(method, path)

    def receive_requests(self, path: str | None = None) -> int:
        """Outreach requests of the receive half (`is_receive_read`)."""
        return self._outreach_count(lambda key: is_receive_read(key) and (path is None or re.search(path, key)))

    def send_requests(self, method: str | None = None, path: str | None = None) -> int:
        """Outreach requests of the send half: everything but receive's reads."""
        def wanted(key: str) -> bool:
            m, rest = key.split(" ", 1)
            return (not is_receive_read(key) and (method is None or m == method.upper())
                    and (path is None or re.search(path, rest.partition("?")[0]) is not None))
        return self._outreach_count(wanted)

    def record_writes(self) -> int:
        """Workbooks write requests to People and Organisations (state rows aside)."""
        return self.wb.count_of("PUT", r"crm/(people|organisations)")

    def _outreach_count(self, wanted) -> int:
        with self.outreach.lock:
            return sum(n for key, n in self.outreach.counts_by_query.items() if wanted(key))

    def reset_counts(self) -> None:
        self.wb.reset_counts()
        self.outreach.reset_counts()
