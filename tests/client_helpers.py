"""Builders shared by the tests/test_client_*.py suites: the real client layer pointed at the
emulators, plus a recorder of every request the clients actually sent."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from plugin.deadline import Deadline
from plugin.http import HttpClient
from plugin.oauth import OutreachAuth
from plugin.outreach import OutreachClient
from plugin.state import StateStore
from plugin.workbooks import WorkbooksClient

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret-value"


class Sleeps:
    """A fake `sleep` that records instead of waiting (HttpClient/OutreachAuth accept one)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Sent:
    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    headers: dict


@dataclass
class Recorder:
    """Attached to a requests.Session as a response hook: what went over the wire."""

    sent: list[Sent] = field(default_factory=list)

    def __call__(self, response, *args, **kwargs):
        request = response.request
        parts = urlsplit(request.url)
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        form = parse_qsl(body, keep_blank_values=True) if "x-www-form-urlencoded" in \
            str(request.headers.get("Content-Type", "")) else []
        self.sent.append(Sent(request.method, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                              form, dict(request.headers)))
        return response

    def params(self, index: int) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.sent[index].query + self.sent[index].form:
            out.setdefault(name, []).append(value)
        return out


def recorded(http: HttpClient) -> Recorder:
    recorder = Recorder()
    http.session.hooks["response"].append(recorder)
    return recorder


def workbooks_http(deadline: float | None = 60, **kwargs) -> HttpClient:
    return HttpClient("workbooks", deadline=Deadline(deadline), **kwargs)


def api_key_client(server, http: HttpClient | None = None) -> WorkbooksClient:
    key = server.app.create_api_key()
    return WorkbooksClient.connect({"_workbooks_service": server.url, "workbooks_api_key": key},
                                   http or workbooks_http())


def engine_params(server, logging_key: str = "run-log-key") -> dict:
    session = server.app.create_session()
    return {"_workbooks_service": server.url, "_workbooks_session_id": session["session_id"],
            "_workbooks_username": session["username"],
            "_workbooks_logical_database_id": session["logical_database_id"],
            "_workbooks_api_logging_key": logging_key, "_workbooks_client_name": "Outreach Sync"}


def store_tokens(state: StateStore, tokens: dict, database: dict, *, expires_in: float = 7200) -> dict:
    record = {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
              "token_type": "bearer", "expires_at": int(time.time() + expires_in),
              "scopes": tokens["scope"].replace("+", " ").split(), "instance_url": None,
              "database": dict(database), "authorised_at": "2026-01-01T00:00:00Z"}
    state.put("tokens", record)
    return record


@dataclass
class Stack:
    wb: WorkbooksClient
    state: StateStore
    auth: OutreachAuth
    outreach: OutreachClient
    outreach_http: HttpClient
    user_id: int
    tokens: dict
    sleeps: Sleeps
    budget: dict


def outreach_stack(workbooks_server, outreach_server, *, scopes: str = "prospects.all accounts.all users.read",
                   expires_in: float = 7200, hourly_budget: int = 8000, deadline: float = 60,
                   max_wait: float = 60.0, store: bool = True) -> Stack:
    wb = api_key_client(workbooks_server)
    state = StateStore(wb)
    app = outreach_server.app
    user_id = app.add_user("rep@example.com", "rep", "Rita", "Rep")
    tokens = app.issue_tokens(user_id, scopes=scopes, client_id=CLIENT_ID)
    if store:
        store_tokens(state, tokens, wb.database, expires_in=expires_in)
    sleeps = Sleeps()
    http = HttpClient("outreach", deadline=Deadline(deadline), sleep=sleeps, max_wait=max_wait)
    auth = OutreachAuth(state, http, oauth_url=f"{outreach_server.url}/oauth", client_id=CLIENT_ID,
                        client_secret=CLIENT_SECRET, database=wb.database, sleep=sleeps,
                        redirect_uri="https://example.com/callback")
    budget: dict = {}
    client = OutreachClient(f"{outreach_server.url}/api/v2", auth, http, hourly_budget=hourly_budget,
                            budget_state=budget)
    return Stack(wb, state, auth, client, http, user_id, tokens, sleeps, budget)
