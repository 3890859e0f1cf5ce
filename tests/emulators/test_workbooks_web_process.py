"""Contract of the Workbooks emulator's web-process route (`/wp/<web_identifier>`,
tools/emulators/web_process.py): one run of the process's script per request, the request handed
over in `_server_*` / `_query_*` / `_post_*` / `_cookie_*` parameters with a Process-Engine
session (workbooks-api.md §2.4), and the script's `[header]` lines made HTTP headers (§2.5)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

ECHO = '''
import json, os, sys
params = json.load(open(sys.argv[sys.argv.index("--params") + 1]))
mode = params.get("_query_mode", "")
if mode == "located":
    print("[header] Location: ?somewhere=1")
elif mode == "crash":
    print("half a page")
    sys.exit(3)
else:
    print("[header] Status: 201")
    print("[header] Set-Cookie: first=1; HttpOnly")
    print("[header] Set-Cookie: second=2")
    print("[header] Content-Type: application/json")
    print(json.dumps({"params": params, "timeout": os.environ.get("TIMEOUT")}))
'''


@pytest.fixture
def wb(workbooks_server, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "scripts" / "echo.py").write_text(ECHO, encoding="utf-8")
    (tmp_path / "outside.py").write_text("print('must never run')", encoding="utf-8")
    workbooks_server.app.insert("web_actions", {"title": "Echo", "name": "Echo", "script_name": "scripts/echo.py",
                                                "web_identifier": "echo"})
    workbooks_server.app.serve_web_processes(bundle, {"outreach_api_url": "https://api.example/api/v2"}, timeout=42)
    return workbooks_server


def test_a_get_reaches_the_script_as_the_process_engine_hands_it_over(wb):
    answer = requests.get(f"{wb.url}/wp/echo?x=1&x=2&odd=%3Cb%3E", cookies={"browser": "abc"},
                          headers={"User-Agent": "Chromium-test"}, timeout=60)
    assert answer.status_code == 201                                     # §2.5 [header] Status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.raw.headers.getlist("Set-Cookie") == ["first=1; HttpOnly", "second=2"]
    seen = answer.json()
    params = seen["params"]
    assert seen["timeout"] == "42"                                       # §2.4 env TIMEOUT
    host = wb.url.split("//", 1)[1]
    assert {k: params[k] for k in ("_server_REQUEST_METHOD", "_server_HTTP_HOST", "_server_REQUEST_URI",
                                   "_server_HTTPS", "_server_QUERY_STRING", "_server_HTTP_USER_AGENT")} == {
        "_server_REQUEST_METHOD": "GET", "_server_HTTP_HOST": host,
        "_server_REQUEST_URI": "/wp/echo?x=1&x=2&odd=%3Cb%3E", "_server_HTTPS": "off",
        "_server_QUERY_STRING": "x=1&x=2&odd=%3Cb%3E", "_server_HTTP_USER_AGENT": "Chromium-test"}
    assert params["_query_x"] == "2" and params["_query_odd"] == "<b>"       # PHP's $_GET: the last wins
    assert params["_cookie_browser"] == "abc"
    assert params["outreach_api_url"] == "https://api.example/api/v2"      # the script's parameters
    # §2.4: a Process-Engine session of the run-as user (the administrator here)
    assert params["_workbooks_service"] == wb.url
    assert params["_workbooks_session_id"] in wb.app.sessions
    assert params["_workbooks_username"] == "admin@example.com"
    assert str(params["_workbooks_logical_database_id"]) == "1"
    assert params["_workbooks_api_logging_key"] and params["_workbooks_client_name"]
    assert wb.app.count_of("GET", r"^/wp/echo$") == 1


def test_a_form_post_arrives_as_post_parameters(wb):
    answer = requests.post(f"{wb.url}/wp/echo", data={"action": "retry", "form_token": "t0k"}, timeout=60)
    params = answer.json()["params"]
    assert params["_server_REQUEST_METHOD"] == "POST"
    assert params["_post_action"] == "retry" and params["_post_form_token"] == "t0k"
    assert not [k for k in params if k.startswith("_query_")]


def test_location_without_a_status_is_a_302_and_a_failed_script_a_500(wb):
    located = requests.get(f"{wb.url}/wp/echo?mode=located", allow_redirects=False, timeout=60)
    assert located.status_code == 302 and located.headers["Location"] == "?somewhere=1"
    crashed = requests.get(f"{wb.url}/wp/echo?mode=crash", timeout=60)
    assert crashed.status_code == 500 and "half a page" in crashed.text
    runs = requests.get(f"{wb.url}/_emulator/web_processes", timeout=10).json()["runs"]
    assert [r["exit_code"] for r in runs][-1] == 3


def test_unknown_unregistered_and_escaping_processes_run_nothing(wb, workbooks_server, tmp_path):
    assert requests.get(f"{wb.url}/wp/nothing-here", timeout=10).status_code == 404
    wb.app.insert("web_actions", {"title": "Out", "script_name": "../outside.py", "web_identifier": "out"})
    escaped = requests.get(f"{wb.url}/wp/out", timeout=10)
    assert escaped.status_code == 500 and "must never run" not in escaped.text
    wb.app.web_host = None
    assert requests.get(f"{wb.url}/wp/echo", timeout=10).status_code == 503


def test_the_bundle_is_registered_through_the_control_surface(workbooks_server, tmp_path):
    answer = requests.post(f"{workbooks_server.url}/_emulator/web_processes",
                           json={"bundle": str(tmp_path), "parameters": {"secret_looking": "x"}}, timeout=10)
    assert answer.status_code == 201
    shown = requests.get(f"{workbooks_server.url}/_emulator/web_processes", timeout=10).json()
    assert shown["bundle"] == str(tmp_path) and shown["parameters"] == ["secret_looking"]   # names only
    assert workbooks_server.app.web_host.bundle == Path(tmp_path)
