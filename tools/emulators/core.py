"""What both API emulators share: a settable clock, fault injection, request counting and the
`/_emulator/` control surface, served by a real threaded HTTP server on loopback that keeps
connections alive (HTTP/1.1), as the real APIs do.

An emulator subclasses `Emulator` and implements `dispatch(request)` for its API routes,
`error_response(status, message)` for faults in its API's own error shape, and optionally
`control(request, path)` for its own control routes (seeding and reading records).

Control surface common to both (JSON in, JSON out):
  GET    /_emulator/health                      -> {"ok": true, "name": ...}
  GET    /_emulator/clock                       -> {"now": ISO, "frozen": bool}
  POST   /_emulator/clock   {"set": ISO} | {"advance": seconds} | {"freeze": bool}
  GET    /_emulator/config                      -> the switches and their values
  POST   /_emulator/config  {switch: value, ...} (unknown switches -> 400)
  GET    /_emulator/faults                      -> active fault rules
  POST   /_emulator/faults  {rule} | [{rule}, ...]   (see FaultRule)
  DELETE /_emulator/faults                      -> clears every rule
  GET    /_emulator/requests                    -> {"total": n, "counts": {"GET /path": n}, "log": [...]}
                                                   each log entry: n, method, path, target (the request
                                                   line's target: path and query string), body_bytes, at
  DELETE /_emulator/requests                    -> zeroes the counters
  POST   /_emulator/reset                       -> data, clock, config, faults and counters back to new
"""
from __future__ import annotations

import collections
import datetime as dt
import io
import json
import random
import re
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import LimitedStream

UTC = dt.timezone.utc
_ID_SEGMENT = re.compile(r"/\d+(?=/|\.|$)")


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def parse_iso(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_response(payload: Any, status: int = 200, content_type: str = "application/json",
                  headers: dict | None = None) -> Response:
    return Response(json.dumps(payload), status=status, content_type=content_type, headers=headers)


class Clock:
    """Real time shifted by an offset; tests set or advance it, or freeze it at one instant."""

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._frozen_at: dt.datetime | None = None

    def now(self) -> dt.datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        return utc_now() + self._offset

    def set(self, when: dt.datetime) -> None:
        if self._frozen_at is not None:
            self._frozen_at = when
        else:
            self._offset = when - utc_now()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + dt.timedelta(seconds=seconds))

    def freeze(self, frozen: bool) -> None:
        if frozen and self._frozen_at is None:
            self._frozen_at = self.now()
        elif not frozen and self._frozen_at is not None:
            self._offset = self._frozen_at - utc_now()
            self._frozen_at = None

    def describe(self) -> dict:
        return {"now": self.now().isoformat().replace("+00:00", "Z"), "frozen": self._frozen_at is not None}


@dataclass
class FaultRule:
    """One injected fault. A request matches when its HTTP method and path fit; the first `skip`
    matches pass untouched, then the next `count` matches (None: all) get the fault, each with
    probability `rate` (seeded, so a storm can be replayed).

    `min_body` narrows the match to requests whose body has at least that many bytes (a
    Workbooks read long enough to travel as a GET body, workbooks-api.md §1.2).

    Effects, applied in this order: `latency` seconds of delay; then either `reset` (close the
    connection with a TCP RST, `when` "before" the API sees the request or "after" it was
    processed, so the client never learns the outcome) or `status` (answer with that status in the
    API's own error shape, or with `body`/`headers` when given) instead of processing. With a 3xx
    `status`, `redirect` is its Location: a URL as given, or "delay" for the emulator's own
    delaying URL for this request (`Emulator.delaying_url`; Workbooks rate-limits this way, §11).
    How the answer (the fault's or the API's own) is sent: `trickle` seconds between pieces of
    `trickle_bytes` bytes (a server that keeps a connection busy for ever, one byte at a time),
    and `body_bytes` answers a body of that many bytes (status 200 unless `status` says
    otherwise), generated while it is sent, so a huge answer costs the emulator no memory.
    """

    method: str | None = None
    path: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict = field(default_factory=dict)
    latency: float = 0.0
    reset: bool = False
    when: str = "before"
    redirect: str | None = None
    min_body: int = 0
    trickle: float = 0.0
    trickle_bytes: int = 1
    body_bytes: int | None = None
    skip: int = 0
    count: int | None = 1
    rate: float = 1.0
    seed: int | None = None
    id: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        if self.path is not None:
            re.compile(self.path)
        if self.trickle < 0 or self.trickle_bytes < 1 or (self.body_bytes is not None and self.body_bytes < 0):
            raise ValueError("trickle must be >= 0, trickle_bytes >= 1, body_bytes >= 0")
        self._rng = random.Random(self.seed)

    def matches(self, method: str, path: str, body_size: int = 0) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if body_size < self.min_body:
            return False
        return self.path is None or re.search(self.path, path) is not None

    @property
    def answers(self) -> bool:
        """True when this fault answers in the API's place (rather than only delaying or shaping
        the API's own answer)."""
        return self.status is not None or self.body_bytes is not None

    def fire(self) -> bool:
        """Called for each matching request; True when this request gets the fault."""
        if self.skip > 0:
            self.skip -= 1
            return False
        if self._rng.random() >= self.rate:
            return False
        self.hits += 1
        if self.count is not None:
            self.count -= 1
        return True

    @property
    def spent(self) -> bool:
        return self.count is not None and self.count <= 0

    def describe(self) -> dict:
        data = asdict(self)
        data.pop("_rng", None)
        return data


class _ResetConnection(Exception):
    """Raised to make the server drop the connection without an answer."""


@dataclass
class BodyPlan:
    """How the handler sends an answer's body: `size` bytes of filler instead of the body (None:
    the body itself), in pieces of `piece` bytes with `interval` seconds between them."""

    size: int | None = None
    interval: float = 0.0
    piece: int = 64 * 1024

    def pieces(self, body: bytes) -> Iterator[bytes]:
        source = body if self.size is None else None
        if source is not None:
            for start in range(0, len(source), self.piece):
                yield source[start:start + self.piece]
            return
        head, tail = b'{"data": [], "padding": "', b'"}'
        yield from _split(head, self.piece)
        left = max(0, self.size - len(head) - len(tail))
        while left:
            n = min(left, self.piece)
            yield b"x" * n
            left -= n
        yield tail

    def length(self, body: bytes) -> int:
        if self.size is None:
            return len(body)
        head_tail = len(b'{"data": [], "padding": "') + len(b'"}')
        return max(self.size, head_tail)


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


class Emulator:
    name = "emulator"
    #: switch name -> default value; subclasses extend it. Reported and set via /_emulator/config.
    default_config: dict[str, Any] = {}

    def __init__(self, **config: Any) -> None:
        self.lock = threading.RLock()
        self.base_url = "http://127.0.0.1"
        self._initial_config = {**self.default_config, **config}
        self._next_fault_id = 1
        self.reset_all()

    # --- to implement -------------------------------------------------------------------------
    def reset_data(self) -> None:
        """Empty every store (called at start and on POST /_emulator/reset)."""

    def dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> Response:
        return json_response({"error": message}, status)

    def control(self, request: Request, path: str) -> Response | None:
        """Emulator-specific control routes under /_emulator/; None when the path is not theirs."""
        return None

    def delaying_url(self, request: Request) -> str:
        """Where a `redirect: "delay"` fault sends a request: by default its own path and query."""
        query = request.query_string.decode("latin-1")
        return request.path + (f"?{query}" if query else "")

    def delay_for(self, request: Request) -> float:
        """Seconds to hold `request` before it is served (outside the lock); none by default."""
        return 0.0

    # --- shared state -----------------------------------------------------------------------------
    def reset_all(self) -> None:
        with self.lock:
            self.clock = Clock()
            self.config = dict(self._initial_config)
            self.faults: list[FaultRule] = []
            self.reset_counts()
            self.reset_data()

    def reset_counts(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        # the same, keyed by "METHOD /path?name&name…" (the query's parameter names, sorted): lets a
        # test tell kinds of read apart on one path (a look-up from a poll)
        self.counts_by_query: collections.Counter[str] = collections.Counter()
        self.request_log: collections.deque[dict] = collections.deque(maxlen=2000)
        self.total_requests = 0
        self.internal_errors: list[str] = []

    def now(self) -> dt.datetime:
        return self.clock.now()

    def add_fault(self, **rule: Any) -> FaultRule:
        with self.lock:
            fault = FaultRule(**{k: v for k, v in rule.items() if k not in ("id", "hits")})
            fault.id = self._next_fault_id
            self._next_fault_id += 1
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def count_of(self, method: str | None = None, path: str | None = None, query: str | None = None) -> int:
        """Requests counted so far whose method equals `method`, whose normalised path matches
        the regex `path` and whose query parameter names ("a&b", sorted) match the regex `query`
        (any may be None for any)."""
        with self.lock:
            total = 0
            for key, n in (self.counts_by_query if query else self.counts).items():
                m, rest = key.split(" ", 1)
                p, _, names = rest.partition("?")
                if method and m != method.upper():
                    continue
                if path and not re.search(path, p):
                    continue
                if query and not re.search(query, names):
                    continue
                total += n
            return total

    @staticmethod
    def normalise_path(path: str) -> str:
        return _ID_SEGMENT.sub("/{id}", path)

    # --- the WSGI application ---------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._handle(request)
        except _ResetConnection:
            _reset_socket(environ)
            response = Response(b"", status=500)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_emulator/"):
            with self.lock:
                return self._control(request, path[len("/_emulator/"):].strip("/"))
        with self.lock:
            key = f"{request.method} {self.normalise_path(path)}"
            self.counts[key] += 1
            self.counts_by_query[key + "?" + "&".join(sorted(set(request.args)))] += 1
            self.total_requests += 1
            query = request.query_string.decode("latin-1")
            size = request.content_length or 0
            self.request_log.append({"n": self.total_requests, "method": request.method, "path": path,
                                     "target": path + (f"?{query}" if query else ""), "body_bytes": size,
                                     "at": self.clock.describe()["now"]})
            fired = [f for f in self.faults if f.matches(request.method, path, size) and f.fire()]
            self.faults = [f for f in self.faults if not f.spent]
        latency = sum(f.latency for f in fired) + self.delay_for(request)
        if latency:
            time.sleep(latency)
        _plan_body(request, fired)
        for fault in fired:
            if fault.reset and fault.when == "before":
                raise _ResetConnection()
            if fault.answers:
                return self._fault_answer(fault, request)
        with self.lock:
            try:
                response = self.dispatch(request)
            except HTTPException as exc:
                response = self.error_response(exc.code or 500, exc.description or exc.name)
            except Exception as exc:  # noqa: BLE001 - a server must answer, never crash
                # Kept so contract tests can assert the emulator never hit a bug of its own.
                self.internal_errors.append(f"{request.method} {path}: {exc!r}")
                response = self.error_response(500, "internal error")
        if any(f.reset and f.when == "after" for f in fired):
            raise _ResetConnection()
        return response

    def _fault_answer(self, fault: FaultRule, request: Request) -> Response:
        status = fault.status if fault.status is not None else 200
        if fault.body_bytes is not None:
            response = Response(b"", status=status, headers=fault.headers, content_type="application/json")
        elif fault.body is not None:
            body = fault.body if isinstance(fault.body, str) else json.dumps(fault.body)
            response = Response(body, status=status, headers=fault.headers, content_type="application/json")
        else:
            response = self.error_response(status, f"injected fault {status}")
            for name, value in fault.headers.items():
                response.headers[name] = str(value)
        if fault.redirect is not None and 300 <= status < 400:
            response.headers["Location"] = self.delaying_url(request) if fault.redirect == "delay" \
                else fault.redirect
        return response

    def _control(self, request: Request, path: str) -> Response:
        body = request.get_json(silent=True) if request.data else None
        try:
            if path == "health":
                return json_response({"ok": True, "name": self.name})
            if path == "reset" and request.method == "POST":
                self.reset_all()
                return json_response({"ok": True})
            if path == "clock":
                if request.method == "POST":
                    body = body or {}
                    if "freeze" in body:
                        self.clock.freeze(bool(body["freeze"]))
                    if "set" in body:
                        self.clock.set(parse_iso(body["set"]))
                    if "advance" in body:
                        self.clock.advance(float(body["advance"]))
                return json_response(self.clock.describe())
            if path == "config":
                if request.method == "POST":
                    unknown = sorted(set(body or {}) - set(self.config))
                    if unknown:
                        return json_response({"error": f"unknown switches: {unknown}",
                                              "switches": sorted(self.config)}, 400)
                    self.config.update(body or {})
                return json_response(self.config)
            if path == "faults":
                if request.method == "DELETE":
                    self.clear_faults()
                elif request.method == "POST":
                    rules = body if isinstance(body, list) else [body or {}]
                    for rule in rules:
                        self.add_fault(**rule)
                return json_response([f.describe() for f in self.faults])
            if path == "requests":
                if request.method == "DELETE":
                    self.reset_counts()
                return json_response({"total": self.total_requests, "counts": dict(self.counts),
                                      "log": list(self.request_log)[-200:]})
            response = self.control(request, path)
            if response is not None:
                return response
            return json_response({"error": f"no control route {request.method} /_emulator/{path}"}, 404)
        except (TypeError, ValueError, KeyError, re.error) as exc:
            return json_response({"error": f"bad control request: {exc}"}, 400)


# Set in the WSGI environ when a fault drops the connection: the handler then sends nothing and
# closes the socket itself, which (with SO_LINGER 0) is a real TCP RST, not a FIN.
_RESET_KEY = "emulator.reset_connection"
# Set in the WSGI environ when a fault shapes how the answer's body is sent (a BodyPlan).
_BODY_PLAN_KEY = "emulator.body_plan"


def _plan_body(request: Request, fired: list[FaultRule]) -> None:
    huge = next((f.body_bytes for f in fired if f.body_bytes is not None), None)
    slow = max((f for f in fired if f.trickle > 0), key=lambda f: f.trickle, default=None)
    if huge is None and slow is None:
        return
    plan = BodyPlan(size=huge)
    if slow is not None:
        plan.interval, plan.piece = slow.trickle, slow.trickle_bytes
    request.environ[_BODY_PLAN_KEY] = plan


def _reset_socket(environ) -> None:
    environ[_RESET_KEY] = True
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _call(app, environ) -> tuple[str, list, bytes]:
    """Run a WSGI app to the end: its status, headers and whole body (answers here are small)."""
    answer: dict[str, Any] = {"written": []}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, list(headers)
        return answer["written"].append

    iterable = app(environ, start_response)
    try:
        chunks = answer["written"] + list(iterable)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    return answer["status"], answer["headers"], b"".join(chunks)


class _Connections:
    """The connections a server has open. Kept-alive connections outlive `shutdown()` (their
    handler threads wait for the next request), so `ServerHandle.stop()` closes them: a stopped
    emulator must stop answering, as it did when every connection closed after one answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def close_all(self) -> None:
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                # SHUT_RD wakes the handler waiting for a request line; an answer being sent
                # still goes out, then the handler closes the connection.
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def _connections(server) -> _Connections:
    found = getattr(server, "emulator_connections", None)
    if found is None:
        found = server.emulator_connections = _Connections()
    return found


class _KeepAliveHandler(WSGIRequestHandler):
    """Werkzeug's handler, but answering HTTP/1.1 with keep-alive: werkzeug's own `run_wsgi` always
    sends `Connection: close` (and then drains the socket for 10 ms, which would swallow the next
    request on a kept-alive connection), so every client request paid for a new TCP connection,
    which real APIs do not charge. Each answer is buffered and sent with its Content-Length; the
    unread rest of a request body is drained so the next request line starts the stream. A fault
    that resets the connection still does: nothing is sent and the socket is closed with an RST."""

    protocol_version = "HTTP/1.1"
    # One buffered writer, flushed once per answer: headers and body leave in one segment.
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        # Two writes per answer would otherwise meet Nagle + delayed ACK: a 40 ms stall each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _connections(self.server).add(self.connection)

    def finish(self) -> None:
        _connections(self.server).discard(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        if getattr(self.server, "emulator_stopped", False):
            # Closing the kept-alive sockets (stop) races a handler already past its wait for the
            # next request line: a stopped emulator answers nothing at all.
            self.close_connection = True
            return
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        environ = self.make_environ()
        body_in = self._limit_body(environ)
        try:
            status, headers, body = _call(self.server.app, environ)
        except Exception:  # noqa: BLE001 - like werkzeug: a bug in the app is a 500, not a hang
            self.close_connection = True
            status, headers, body = _call(InternalServerError(), environ)
        if environ.get(_RESET_KEY):
            self._abort()
            return
        if body_in is None or not self._drained(body_in):
            self.close_connection = True
        self._send(environ, status, headers, body)

    def _limit_body(self, environ):
        """A stream that stops at Content-Length, so what the app left unread can be drained.
        None for a chunked body (its end is only found by parsing it): that connection closes."""
        if environ.get("wsgi.input_terminated"):
            return None
        try:
            length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            return None
        stream = LimitedStream(environ["wsgi.input"], length)
        environ["wsgi.input"] = stream
        return stream

    @staticmethod
    def _drained(stream) -> bool:
        try:
            stream.exhaust()
            return True
        except Exception:  # noqa: BLE001 - a client that sent less than it announced
            return False

    def _send(self, environ, status: str, headers: list, body: bytes) -> None:
        code_text, _, message = status.partition(" ")
        code = int(code_text)
        bodiless = 100 <= code < 200 or code in (204, 304)
        head = environ["REQUEST_METHOD"] == "HEAD"
        self.send_response(code, message)
        for name, value in headers:
            lower = name.lower()
            if lower == "connection":
                continue
            if lower == "content-length" and not head:
                continue      # the body actually sent decides; a wrong one would desync the stream
            self.send_header(name, value)
        plan = environ.get(_BODY_PLAN_KEY)
        if not bodiless and not head:
            self.send_header("Content-Length", str(plan.length(body) if plan else len(body)))
        asked_to_close = any(n.lower() == "connection" and v.lower() == "close" for n, v in headers)
        if self.close_connection or asked_to_close:
            self.send_header("Connection", "close")       # sets close_connection too
        self.end_headers()
        if not bodiless and not head:
            if plan is None:
                self.wfile.write(body)
            else:
                self._send_planned(plan, body)
                return
        self.wfile.flush()

    def _send_planned(self, plan: BodyPlan, body: bytes) -> None:
        """A body sent slowly or generated as it goes. A client that gives up closes its end; the
        next write fails and the connection is dropped (so is a stopped emulator's)."""
        try:
            for piece in plan.pieces(body):
                if getattr(self.server, "emulator_stopped", False):
                    raise ConnectionAbortedError("emulator stopped")
                self.wfile.write(piece)
                if plan.interval:
                    self.wfile.flush()
                    time.sleep(plan.interval)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _abort(self) -> None:
        """Close every reference to the socket now: with SO_LINGER 0 the kernel answers with RST.
        (The socket only really closes when its file objects do; the sink stands in for the
        writer that http.server flushes after every request.)"""
        self.close_connection = True
        for handle in (self.wfile, self.rfile, self.connection):
            try:
                handle.close()
            except OSError:
                pass
        self.wfile = io.BytesIO()


class _QuietHandler(_KeepAliveHandler):
    def log_request(self, *args, **kwargs):  # the process log of the plugin is what matters
        pass

    def log_error(self, *args, **kwargs):
        pass

    def handle(self):
        try:
            super().handle()
        except OSError:
            pass  # a connection we reset on purpose


class ServerHandle:
    """A running emulator: `url`, `app` (the Emulator) and `stop()`. Usable as a context manager."""

    def __init__(self, app: Emulator, port: int = 0) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"
        app.base_url = self.url
        # A short poll interval: shutdown() waits for the serving loop to notice, and a test
        # suite starts and stops hundreds of these.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{app.name}-emulator", daemon=True)

    def start(self) -> "ServerHandle":
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.emulator_stopped = True
        self._server.shutdown()
        self._server.server_close()
        _connections(self._server).close_all()

    def __enter__(self) -> "ServerHandle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app: Emulator, port: int = 0) -> ServerHandle:
    """Start `app` on 127.0.0.1:`port` (0: any free port) in a background thread."""
    return ServerHandle(app, port).start()
