"""How long and how large one HTTP exchange may be (plugin.http bounds every request with these).

`requests` has no limit on an exchange's total time: its read timeout restarts with every byte
that arrives, so a server that trickles its answer (a byte every 2 s) kept a run with TIMEOUT=20
alive for 118 s, breaking the run lock's promise that a run sends nothing past its deadline. And
it reads any answer whole into memory (a 100 MB answer took 243 MB). So:

  * `CUTTER`, one background thread for the process, holds the moment each exchange must be over.
    `WatchedAdapter` records the connection urllib3 hands an exchange; when its moment passes,
    the cutter shuts that socket down, which ends a read blocked in any phase: waiting for the
    headers, or for the next byte of the body. (Name resolution and the TCP connect are bounded
    by the connect timeout, itself clipped to the same moment.)
  * `read_body` reads the body in chunks and refuses one larger than the cap: before reading
    anything when Content-Length already says so, else as soon as the count passes it.

A session handed to HttpClient by its owner keeps its own adapters: there the time limit is
checked between chunks only, and each read still ends by its read timeout.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import requests
from requests.adapters import HTTPAdapter

MAX_BODY_BYTES = 32_000_000             # far above any answer to a page of 100 (Workbooks) or 1,000 (Outreach) records
MAX_EXCHANGE_SECONDS = 120.0           # one request's connect + headers + body, whatever the deadline
CHUNK_BYTES = 64 * 1024
IDLE_SECONDS = 30.0                    # the cutter thread ends after this long with nothing to watch


class BodyTooLarge(Exception):
    def __init__(self, size: int, declared: bool) -> None:
        super().__init__(size)
        self.size = size
        self.declared = declared


class Exchange:
    """One request in flight: when it must be over, the connection it runs on, whether it was cut."""

    __slots__ = ("until", "connection", "cut")

    def __init__(self, until: float) -> None:
        self.until = until
        self.connection = None
        self.cut = False

    def overdue(self) -> bool:
        return self.cut or time.monotonic() >= self.until


def _shut(connection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop the TLS object
        # under the feet of the thread that is reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Cutter:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: set[Exchange] = set()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> Exchange:
        exchange = Exchange(time.monotonic() + max(0.0, seconds))
        with self._changed:
            self._armed.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-exchange-cutter", daemon=True)
                self._thread.start()
            self._changed.notify()
        return exchange

    def attach(self, exchange: Exchange, connection) -> None:
        with self._changed:
            exchange.connection = connection
            if exchange.cut:
                _shut(connection)        # its time ran out before it even had a connection

    def disarm(self, exchange: Exchange) -> None:
        with self._changed:
            self._armed.discard(exchange)
            exchange.connection = None   # never cut a connection that went back to the pool

    def _run(self) -> None:
        with self._changed:
            while True:
                if not self._armed:
                    self._changed.wait(IDLE_SECONDS)
                    if not self._armed:
                        self._thread = None
                        return
                    continue
                now = time.monotonic()
                due = [e for e in self._armed if e.until <= now]
                for exchange in due:
                    self._armed.discard(exchange)
                    exchange.cut = True
                    _shut(exchange.connection)
                if not due:
                    self._changed.wait(min(e.until for e in self._armed) - now)


CUTTER = _Cutter()
_current = threading.local()


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[Exchange]:
    """The exchange(s) sent in this block on a WatchedAdapter are cut `seconds` from now."""
    exchange = CUTTER.arm(seconds)
    _current.exchange = exchange
    try:
        yield exchange
    finally:
        _current.exchange = None
        CUTTER.disarm(exchange)


def _watch(pool) -> None:
    """Make `pool` tell the current exchange which connection it got (once per pool)."""
    if getattr(pool, "_exchange_watched", False):
        return
    original = pool._get_conn

    def get_conn(*args, **kwargs):
        connection = original(*args, **kwargs)
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            CUTTER.attach(exchange, connection)
        return connection

    pool._get_conn = get_conn
    pool._exchange_watched = True


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, telling `bounded` exchanges which connection they run on."""

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        _watch(pool)
        return pool


def read_body(response: requests.Response, *, limit: int, exchange: Exchange | None = None) -> None:
    """Read a streamed answer's body into `response` (so `.content`, `.text`, `.json()` work), at
    most `limit` bytes. Raises BodyTooLarge (the connection is closed, the rest never read), or
    requests' own errors when the connection breaks (as it does when the exchange is cut)."""
    declared = (response.headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise BodyTooLarge(int(declared), declared=True)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            response.close()
            raise BodyTooLarge(size, declared=False)
        chunks.append(chunk)
        if exchange is not None and exchange.overdue():
            # a session without WatchedAdapter: the time limit is checked between chunks
            exchange.cut = True
            response.close()
            raise requests.exceptions.ConnectionError("the exchange ran out of time")
    response._content = b"".join(chunks)
    response._content_consumed = True
