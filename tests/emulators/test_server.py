"""The emulators' HTTP server (tools/emulators/core.py): connections kept alive as the real APIs
keep them, faults that reset a connection still reset it, and a stopped server stops answering."""
from __future__ import annotations

import http.client
import json

import pytest
import requests

from plugin.deadline import Deadline
from plugin.http import HttpClient
from tools.emulators.core import ServerHandle
from tools.emulators.outreach import OutreachEmulator

PROSPECTS = "/api/v2/prospects"


def _connection(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def _exchange(connection, method: str, path: str, body: dict | None = None) -> http.client.HTTPResponse:
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"User-Agent": "test", "Content-Type": "application/json"} if payload else {"User-Agent": "test"}
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    response.read()
    return response


def test_answers_keep_the_connection_open(outreach_server):
    connection = _connection(outreach_server)
    first = _exchange(connection, "GET", "/_emulator/health")
    sock = connection.sock
    assert first.status == 200 and first.version == 11 and sock is not None
    assert first.getheader("Connection") is None and first.getheader("Content-Length")
    for method, path in (("GET", PROSPECTS), ("POST", PROSPECTS), ("DELETE", "/_emulator/faults")):
        response = _exchange(connection, method, path, {"data": {}} if method == "POST" else None)
        assert response.getheader("Content-Length") is not None, (method, path)
        assert connection.sock is sock, f"{method} {path} closed the connection"


def test_a_fault_answer_drains_the_unread_body_and_keeps_the_connection(outreach_server):
    app = outreach_server.app
    app.add_fault(method="POST", path=PROSPECTS, status=503)
    connection = _connection(outreach_server)
    faulted = _exchange(connection, "POST", PROSPECTS, {"data": {"type": "prospect", "attributes": {"x": "y" * 5000}}})
    sock = connection.sock
    assert faulted.status == 503 and sock is not None
    assert _exchange(connection, "GET", "/_emulator/health").status == 200
    assert connection.sock is sock
    # the unread body did not become a request of its own
    assert app.count_of() == 1 and not app.internal_errors


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_reset_fault_still_drops_the_connection_and_the_next_request_gets_a_fresh_one(outreach_server, when):
    app = outreach_server.app
    session = requests.Session()
    assert session.get(outreach_server.url + "/_emulator/health", timeout=10).status_code == 200
    app.add_fault(method="POST", path=PROSPECTS, reset=True, when=when)
    with pytest.raises(requests.ConnectionError):
        session.post(outreach_server.url + PROSPECTS, json={"data": {}}, timeout=10)
    assert session.get(outreach_server.url + "/_emulator/health", timeout=10).status_code == 200
    assert app.count_of("POST", PROSPECTS) == 1


def test_a_reset_on_a_pooled_connection_is_retried_on_a_new_one(outreach_server):
    app = outreach_server.app
    http = HttpClient("outreach", deadline=Deadline(60), sleep=lambda seconds: None)
    url = outreach_server.url + PROSPECTS
    assert http.request("GET", url, idempotent=True).status_code == 401      # the pooled connection
    app.add_fault(method="GET", path=PROSPECTS, reset=True)
    assert http.request("GET", url, idempotent=True).status_code == 401      # reset, then retried
    assert http.requests_made == 3 and http.retries_made == 1
    assert app.count_of("GET", PROSPECTS) == 3


def test_a_stopped_server_stops_answering_on_kept_alive_connections():
    app = OutreachEmulator()
    handle = ServerHandle(app).start()
    session = requests.Session()
    assert session.get(handle.url + PROSPECTS, timeout=10).status_code == 401
    assert app.count_of("GET", PROSPECTS) == 1
    handle.stop()
    # Usually refused; but the freed port may already serve another process's emulator, so the
    # proof is that the stopped one never sees the request.
    try:
        session.get(handle.url + PROSPECTS, timeout=5)
    except requests.ConnectionError:
        pass
    assert app.count_of("GET", PROSPECTS) == 1


# --- answers sent slowly or huge (FaultRule trickle / body_bytes, issue 16 §4) ---------------------------

def test_a_trickle_fault_sends_the_answer_a_piece_at_a_time(outreach_server):
    app = outreach_server.app
    app.add_fault(method="GET", path="/_x$", status=200, body={"ok": True}, trickle=0.05, trickle_bytes=3)
    connection = _connection(outreach_server)
    connection.request("GET", "/_x", headers={"User-Agent": "test"})
    response = connection.getresponse()
    assert response.getheader("Content-Length") == str(len(json.dumps({"ok": True})))
    expected = json.dumps({"ok": True}).encode()
    pieces = []
    while sum(map(len, pieces)) < len(expected):
        pieces.append(response.read1(64))
    assert response.read() == b""                                      # nothing more, and done
    assert b"".join(pieces) == expected
    assert max(len(p) for p in pieces) <= 3 and len(pieces) >= 4      # it really came in pieces
    assert _exchange(connection, "GET", "/_emulator/health").status == 200   # and the connection lives on


def test_a_trickle_fault_shapes_the_apis_own_answer_and_ends_when_the_client_leaves(outreach_server):
    app = outreach_server.app
    app.add_fault(method="GET", path=PROSPECTS, trickle=0.05)
    connection = _connection(outreach_server)
    connection.request("GET", PROSPECTS, headers={"User-Agent": "test"})
    response = connection.getresponse()
    assert response.status == 401 and len(response.read1(1)) == 1     # the API's answer, one byte
    connection.close()                                                 # the client gives up
    assert _exchange(_connection(outreach_server), "GET", "/_emulator/health").status == 200
    assert not app.internal_errors


def test_a_body_bytes_fault_answers_that_many_bytes_without_holding_them(outreach_server):
    outreach_server.app.add_fault(method="GET", path=PROSPECTS, body_bytes=3_000_000)
    response = requests.get(outreach_server.url + PROSPECTS, timeout=10)
    assert response.status_code == 200 and len(response.content) == 3_000_000
    assert response.headers["Content-Length"] == "3000000"
    assert response.json()["data"] == []                                # valid JSON, mostly padding
