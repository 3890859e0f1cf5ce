"""Web processes as the Workbooks Process Engine runs them, for the Workbooks emulator's
`/wp/<web_identifier>` route (workbooks.py): one invocation of the process's script per HTTP
request, so that a real browser can use a plugin's web pages against the emulator.

What the reference says, and what is our reading of it:
  * The request reaches the script in its parameters, with prefixes: `_server_*` (server
    variables), `_query_*` (query string), `_post_*` (form), `_json_post_*` (a JSON body's
    members), `_cookie_*` (cookies) (workbooks-api.md §2.4 [V], CL-PHP). The server variables are
    the ones PHP's $_SERVER holds: REQUEST_METHOD, REQUEST_URI, QUERY_STRING, HTTP_HOST, HTTPS,
    REQUEST_SCHEME, SERVER_NAME, SERVER_PORT, SCRIPT_NAME, REMOTE_ADDR, HTTP_USER_AGENT,
    HTTP_COOKIE [I: which of them Workbooks passes is not documented].
  * The script gets its Workbooks connection as a Process-Engine session: `_workbooks_service`,
    `_workbooks_session_id`, `_workbooks_username`, `_workbooks_logical_database_id`,
    `_workbooks_api_logging_key`, `_workbooks_client_name`, `_workbooks_protocol` (§2.4 [V]),
    for the process's "run as" user (`authenticated_run_as`, §9), else the administrator.
  * Script parameters arrive as `$params['<name>']` (§2.4 [I]); here: the process record's
    `parameters` (a JSON object, switch unverified_attributes) over those given when the bundle
    was registered (they stand in for what an administrator sets in the Workbooks UI).
  * The run time limit is env `TIMEOUT` (§2.4 [V]): the record's `timeout_seconds` (switch
    unverified_attributes), else the registration's (60 s).
  * The answer is the script's stdout: `[header] <line>` lines are HTTP headers (`header()`,
    §2.5 [V]), `Status: NNN` among them the status (PHP's CGI convention [I]); `[outbin] <base64>`
    lines are binary body chunks (§2.5 [V]); every other line is body text. A `Location` without
    a status is a 302 (PHP's header() does that [I]). A script that exits non-zero without a
    status answers 500 [I: what Workbooks shows then is unknown].
  * The URL `/wp/<web_identifier>` is our guess [I]: §9 names `web_identifier` on web processes
    but no public source shows the URL a browser uses.

The script is found in the registered bundle folder by the process record's `script_name`
(plugin/install.py writes the bundle-relative path, e.g. `scripts/outreach_authorise.py`) and run
with this interpreter (`sys.executable`) and `--params FILE` (a private temporary file).
"""
from __future__ import annotations

import base64
import html
import binascii
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

ROUTE = "/wp/"
DEFAULT_TIMEOUT = 60
HEADER = "[header] "
OUTBIN = "[outbin] "


@dataclass
class Host:
    """Where web processes' scripts live (the uploaded plugin bundle) and the parameters an
    administrator would have set on them."""
    bundle: Path
    parameters: dict = field(default_factory=dict)
    timeout: int = DEFAULT_TIMEOUT

    def script(self, script_name: str) -> Path | None:
        """The bundle's file `script_name`, never one outside the bundle."""
        root = self.bundle.resolve()
        path = (root / str(script_name)).resolve()
        if root not in path.parents or not path.is_file():
            return None
        return path


def request_params(request: Request) -> dict[str, str]:
    """The request as Workbooks hands it to a web process (module docstring)."""
    query = request.query_string.decode("latin-1")
    host = request.host
    https = request.scheme == "https"
    server_name, _, port = host.partition(":")
    params = {
        "_server_REQUEST_METHOD": request.method,
        "_server_REQUEST_URI": request.path + (f"?{query}" if query else ""),
        "_server_QUERY_STRING": query,
        "_server_HTTP_HOST": host,
        "_server_HTTPS": "on" if https else "off",
        "_server_REQUEST_SCHEME": request.scheme,
        "_server_SERVER_NAME": server_name,
        "_server_SERVER_PORT": port or ("443" if https else "80"),
        "_server_SCRIPT_NAME": request.path,
        "_server_REMOTE_ADDR": request.remote_addr or "",
        "_server_HTTP_USER_AGENT": request.headers.get("User-Agent", ""),
    }
    if request.headers.get("Cookie"):
        params["_server_HTTP_COOKIE"] = request.headers["Cookie"]
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[f"_query_{name}"] = value                 # PHP's $_GET: the last one wins
    if request.method == "POST":
        if request.mimetype == "application/json":
            body = request.get_json(silent=True)
            for name, value in (body.items() if isinstance(body, dict) else ()):
                params[f"_json_post_{name}"] = value
        else:
            for name, value in request.form.items(multi=True):
                params[f"_post_{name}"] = value
    for name, value in request.cookies.items():
        params[f"_cookie_{name}"] = value
    return params


def run(script: Path, params: dict, *, timeout: int, cwd: Path) -> tuple[int, str, str]:
    """One invocation: (exit code, stdout, stderr). The parameters file holds a session id: it
    is private to this run and removed after it."""
    with tempfile.TemporaryDirectory(prefix="wb-web-process-") as work:
        path = Path(work) / "params.json"
        path.write_text(json.dumps(params), encoding="utf-8")
        path.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
        env["TIMEOUT"] = str(timeout)
        try:
            done = subprocess.run([sys.executable, str(script), "--params", str(path)], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired as exc:
            return -9, _text(exc.stdout), _text(exc.stderr) + f"\nkilled after {timeout + 10} s"
    return done.returncode, done.stdout, done.stderr


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def response(stdout: str, exit_code: int) -> Response:
    """The HTTP answer a web process's output makes (module docstring)."""
    status: int | None = None
    headers: list[tuple[str, str]] = []
    text: list[str] = []
    binary = bytearray()
    for line in stdout.splitlines():
        if line.startswith(HEADER):
            name, _, value = line[len(HEADER):].partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":
                try:
                    status = int(value.split()[0])
                except (ValueError, IndexError):
                    status = 500
            elif name:
                headers.append((name, value))
        elif line.startswith(OUTBIN):
            try:
                binary += base64.b64decode(line[len(OUTBIN):].strip(), validate=True)
            except (binascii.Error, ValueError):
                pass
        else:
            text.append(line)
    if status is None:
        located = any(name.lower() == "location" for name, _ in headers)
        status = 302 if located else (200 if exit_code == 0 else 500)
    answer = Response(bytes(binary) if binary else "\n".join(text) + ("\n" if text else ""), status=status)
    answer.headers.pop("Content-Type", None)
    for name, value in headers:
        answer.headers.add(name, value)
    if "Content-Type" not in answer.headers:
        answer.headers["Content-Type"] = "text/html; charset=utf-8"
    return answer


def plain_page(status: int, message: str) -> Response:
    return Response(f"<html><body><p>{html.escape(message)}</p></body></html>", status=status,
                    content_type="text/html; charset=utf-8")
