"""`HttpClient`: the one place the plugin talks HTTP. One `requests.Session` per service, a timeout
on every call (clipped to the run's deadline), TLS verification on by default, a User-Agent
(Workbooks refuses requests without one), a request counter, and a small bounded retry loop:

  * 429 is always retried (the server did not process it), waiting for `Retry-After` (epoch
    when > 1e9, else delta seconds; HTTP-date and ISO also understood) or else `X-RateLimit-Reset`
    (epoch seconds), else exponential backoff with jitter. A wait longer than `max_wait` or past
    the deadline is not waited: `RateLimited(retry_at=…)` is raised so the run can stop cleanly.
  * 5xx, read timeouts and dropped connections are retried only for `idempotent=True` requests:
    a POST that may have been processed is never replayed (the engine's look-up-before-create
    recovers it next run). Failures that prove the request never left (connection refused,
    connect timeout) are retried for any method.
  * 2xx-4xx answers go back to the caller, who knows the API's error shapes; 5xx and network
    failures that survive the retries become `TransientError`.
  * Redirects are never left to `requests` (it re-sends a 302 as a bodiless GET, which loses a
    Workbooks read's filters, and follows them to any host with the cookies and the body). With
    `allow_redirects=True` a 301/302/307/308 is followed by hand: the same method, body, headers
    and cookies are re-sent to the Location, only on the origin (scheme, host, port) the request
    was first sent to, at most `max_redirects` hops, after any `Retry-After` the redirect gives
    (inside the deadline). A redirect to another origin raises `UnsafeRedirect` naming the host
    (nothing is sent there). `stop_redirect(url)` lets the caller keep a redirect for itself
    (Workbooks' login page). Without `allow_redirects` (the default) a 3xx goes back to the caller.
    A 303 is never followed: it says the request was processed.
  * Every exchange (connect, headers, body) ends by the deadline and by `max_exchange_seconds`,
    however slowly the server sends (plugin.limits), and an answer larger than `max_body_bytes`
    is refused: both are `TransientError`s.

Every message is redacted (plugin.redact) and names the path, never the query string.
The retry shape follows stripe-python's `_http_client` (bounded, jittered, server-advised).

The environment (proxy variables, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE) is read once, not on every
request as `requests` does by default: see `EnvironmentSettings`.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import math
import os
import random
import time
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies
from urllib3.exceptions import NewConnectionError

from . import limits, redirects
from .deadline import Deadline
from .errors import RateLimited, TransientError, UnsafeRedirect
from .redact import redact

DEFAULT_USER_AGENT = "WorkbooksOutreachSync/0.1 (+python-requests)"

# Below this many seconds left a request is not started: it could not finish anyway.
MIN_REQUEST_SECONDS = 0.5


def parse_retry_hint(value: str | None, now: float) -> float | None:
    """Epoch seconds named by a `Retry-After` / `X-RateLimit-Reset` value, or None.

    Numbers above 1e9 are epoch timestamps (Outreach documents Retry-After as an alias of the
    epoch `X-RateLimit-Reset`), smaller numbers are delta seconds (RFC 9110); HTTP-dates and
    ISO-8601 timestamps (Outreach's 503 maintenance answers) are parsed too."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        # "1700000000, 1700003600": several windows, the first is the one that binds now
        number = float(text.split(",")[0].strip())
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0:
            return None
        return number if number > 1e9 else now + number
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


class _TimeUp(Exception):
    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds
        self.why = why


def _carry_cookies(cookies: dict | None, response: requests.Response) -> dict | None:
    """The cookies for the next hop: ours, with any new value the redirect set for one of them
    (Workbooks may issue a new session cookie on any answer, workbooks-api.md §2.2)."""
    if not cookies:
        return cookies
    return {name: response.cookies.get(name) or value for name, value in cookies.items()}


def _never_sent(exc: BaseException) -> bool:
    """True when a connection error proves the request never reached the server, so even a
    POST may be retried: a connect timeout, or a refused / unresolvable connection."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return True
        stack.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
    return False


class EnvironmentSettings:
    """What `requests` reads from the environment (with `trust_env`), read once per run.

    With `trust_env` on, every request re-reads the proxy variables (scanning the whole
    environment, twice), stats ~/.netrc and reads the CA-bundle variables: a sixth of the client's
    CPU per request here, more in a larger environment. A run's environment does not change, so the
    CA bundle is read here once and the proxies once per origin (scheme://host:port): NO_PROXY
    still decides per host, and the plugin talks to two or three fixed origins. ~/.netrc is not
    used at all: every credential comes from the parameters, and a netrc entry for the Outreach
    host would otherwise replace the Bearer token with Basic auth."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        # requests' own precedence: REQUESTS_CA_BUNDLE, then curl's variable
        self.ca_bundle: str | None = (environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
                                      or None)
        self._proxies: dict[str, dict[str, str]] = {}

    def proxies_for(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._proxies.get(origin)
        if found is None:
            found = self._proxies[origin] = get_environ_proxies(url)
        return found


class _Session(requests.Session):
    """A `requests.Session` that applies `EnvironmentSettings` exactly where requests would apply
    the live environment, so a caller's `verify=True` still means "the environment's CA bundle if
    it names one" and proxies still follow NO_PROXY, without the per-request reads."""

    def __init__(self, settings: EnvironmentSettings) -> None:
        super().__init__()
        self.trust_env = False
        self.environment = settings
        for prefix in ("https://", "http://"):
            self.mount(prefix, limits.WatchedAdapter())

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if verify is True or verify is None:
            verify = self.environment.ca_bundle or verify
        return super().merge_environment_settings(url, self._with_environment(url, proxies), stream,
                                                  verify, cert)

    def rebuild_proxies(self, prepared_request, proxies):
        # a redirect: the target's environment proxies are added, as requests itself does
        merged = self._with_environment(prepared_request.url, proxies)
        return super().rebuild_proxies(prepared_request, merged)

    def _with_environment(self, url: str, proxies: dict | None) -> dict:
        """The caller's proxies first, then the environment's for `url` (requests' precedence)."""
        merged = dict(proxies or {})
        for key, value in self.environment.proxies_for(url).items():
            merged.setdefault(key, value)
        return merged


class HttpClient:
    """See the module docstring. `requests_made` counts every request sent (retries and followed
    redirects included); the engine and the benchmark read it."""

    RETRY_STATUSES = frozenset({500, 502, 503, 504})

    def __init__(self, name: str, *, timeout: tuple[float, float] = (5, 60), verify: bool = True,
                 deadline: Deadline | None = None, user_agent: str = DEFAULT_USER_AGENT,
                 max_retries: int = 4, secrets: Callable[[], Iterable[str]] | None = None,
                 on_response: Callable[[requests.Response], None] | None = None,
                 max_wait: float = 60.0, backoff_base: float = 0.5, backoff_cap: float = 8.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None, max_redirects: int = 10,
                 max_exchange_seconds: float = limits.MAX_EXCHANGE_SECONDS,
                 max_body_bytes: int = limits.MAX_BODY_BYTES) -> None:
        self.name = name
        self.max_redirects = max_redirects
        self.max_exchange_seconds = max_exchange_seconds
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.verify = verify
        self.deadline = deadline or Deadline.unlimited()
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_response = on_response
        self._secret_sources: list[Callable[[], Iterable[str]]] = [secrets] if secrets else []
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        # A session handed in is used as its owner configured it (environment reads included).
        self.session = session or _Session(EnvironmentSettings())
        self.session.headers["User-Agent"] = user_agent
        self.requests_made = 0
        self.retries_made = 0

    # --- redaction ---------------------------------------------------------------------------------
    def add_secret_source(self, source: Callable[[], Iterable[str]]) -> None:
        """Register another callable returning secrets to mask (clients add their keys/tokens)."""
        self._secret_sources.append(source)

    def secrets(self) -> list[str]:
        found: list[str] = []
        for source in self._secret_sources:
            try:
                found.extend(s for s in source() if s)
            except Exception:  # noqa: BLE001 - redaction must never be what fails
                continue
        return found

    def redact(self, text: object) -> str:
        return redact(text, self.secrets())

    def describe(self, method: str, url: str) -> str:
        """`name METHOD /path` for messages: the query string (api_key, filters) is left out."""
        return f"{self.name} {method.upper()} {urlsplit(url).path or '/'}"

    # --- the request loop --------------------------------------------------------------------------
    def request(self, method: str, url: str, *, params: Any = None, data: Any = None, json: Any = None,
                headers: dict | None = None, cookies: dict | None = None, idempotent: bool,
                allow_redirects: bool = False, stop_redirect: Callable[[str], bool] | None = None,
                max_retries: int | None = None, timeout: tuple[float, float] | None = None) -> requests.Response:
        retries = self.max_retries if max_retries is None else max_retries
        first_url = url
        cookies = dict(cookies) if cookies else None
        hops: list[requests.Response] = []
        attempt = 0
        while True:
            what = self.describe(method, url)
            left = self.deadline.remaining()
            if left < MIN_REQUEST_SECONDS:
                raise TransientError(f"{what}: not sent, the run's time is up")
            try:
                response = self._exchange(method, url, params=params, data=data, json=json, headers=headers,
                                          cookies=cookies, timeout=timeout or self.timeout, left=left)
            except _TimeUp as exc:
                self.requests_made += 1
                raise TransientError(f"{what}: abandoned after {exc.seconds:.0f}s without a complete "
                                     f"answer ({exc.why})") from None
            except limits.BodyTooLarge as exc:
                self.requests_made += 1
                size = f"{exc.size / 1e6:.0f} MB" + ("" if exc.declared else " and more")
                raise TransientError(f"{what}: the answer is larger than the {self.max_body_bytes / 1e6:.0f} "
                                     f"MB this plugin reads ({size}); not read") from None
            except requests.exceptions.RequestException as exc:
                self.requests_made += 1
                retriable = idempotent or _never_sent(exc)
                reason = self._exception_reason(exc)
                if not retriable:
                    raise TransientError(f"{what}: {reason}; not retried because the server may "
                                         "have processed it") from None
                if attempt >= retries:
                    raise TransientError(f"{what}: {reason} (gave up after {attempt + 1} attempts)") from None
                self._wait(self._backoff(attempt), what, reason, rate_limited=False)
                attempt += 1
                continue

            self.requests_made += 1
            if self.on_response is not None:
                self.on_response(response)
            status = response.status_code

            if status == 429:
                retry_at = self._hint(response)
                if attempt >= retries:
                    raise RateLimited(f"{what}: rate limited (429) after {attempt + 1} attempts",
                                      retry_at=retry_at)
                wait = self._backoff(attempt) if retry_at is None else \
                    max(0.0, retry_at - self._clock()) + self._random.uniform(0.1, 0.5)
                self._wait(wait, what, "rate limited (429)", rate_limited=True, retry_at=retry_at)
                attempt += 1
                continue

            if status in self.RETRY_STATUSES or status >= 500:
                reason = f"HTTP {status}{self._body_hint(response)}"
                if not idempotent:
                    raise TransientError(f"{what}: {reason}; not retried because the server may "
                                         "have processed it")
                if attempt >= retries:
                    raise TransientError(f"{what}: {reason} (gave up after {attempt + 1} attempts)")
                retry_at = self._hint(response, rate_limited=False)
                wait = self._backoff(attempt) if retry_at is None else \
                    max(self._backoff(attempt), retry_at - self._clock())
                self._wait(wait, what, reason, rate_limited=False)
                attempt += 1
                continue

            target = redirects.location(response) if allow_redirects and status in redirects.FOLLOWED else None
            if target is not None and (stop_redirect is None or not stop_redirect(target)):
                self._check_redirect(what, status, target, first_url, len(hops))
                retry_at = self._hint(response, rate_limited=False)
                if retry_at is not None:
                    # the delay a rate-limiting redirect asks for, as a 429's (never past the deadline)
                    self._wait(max(0.0, retry_at - self._clock()), what, f"redirected (HTTP {status})",
                               rate_limited=True, retry_at=retry_at)
                hops.append(response)
                cookies = _carry_cookies(cookies, response)
                # The Location is the whole new target, its query included: ours is not added again.
                url, params = target, None
                continue

            response.history = hops
            return response

    def _exchange(self, method: str, url: str, *, params: Any, data: Any, json: Any, headers: dict | None,
                  cookies: dict | None, timeout: tuple[float, float], left: float) -> requests.Response:
        """One request and its whole answer, within min(`left`, max_exchange_seconds)."""
        budget = min(left, self.max_exchange_seconds)
        why = "the run's time is up" if left <= self.max_exchange_seconds else \
            f"no request may take longer than {self.max_exchange_seconds:.0f}s"
        connect_timeout, read_timeout = timeout
        with limits.bounded(budget) as exchange:
            try:
                response = self.session.request(
                    method, url, params=params, data=data, json=json, headers=headers, cookies=cookies,
                    timeout=(min(connect_timeout, budget), min(read_timeout, budget)),
                    verify=self.verify, allow_redirects=False, stream=True)
                limits.read_body(response, limit=self.max_body_bytes, exchange=exchange)
            except requests.exceptions.RequestException:
                if exchange.overdue():
                    raise _TimeUp(budget, why) from None
                raise
        return response

    def _check_redirect(self, what: str, status: int, target: str, first_url: str, hops: int) -> None:
        if not redirects.same_origin(target, first_url):
            raise UnsafeRedirect(f"{what}: redirected (HTTP {status}) to another host "
                                 f"({self.redact(redirects.host_of(target))}); not followed: the request "
                                 "carries credentials and data meant only for "
                                 f"{self.redact(redirects.host_of(first_url))}")
        if hops >= self.max_redirects:
            raise TransientError(f"{what}: more than {self.max_redirects} redirects in a row; given up")

    # --- helpers -----------------------------------------------------------------------------------
    def _hint(self, response: requests.Response, *, rate_limited: bool = True) -> float | None:
        """When the server said we may come back. `Retry-After` speaks about this very answer, so
        it comes first; on a 429, `X-RateLimit-Reset` (Outreach's epoch, the end of the window that
        ran out) is the fallback. On a 5xx the rate-limit headers say nothing about the failure."""
        now = self._clock()
        headers = ("Retry-After", "X-RateLimit-Reset") if rate_limited else ("Retry-After",)
        for header in headers:
            when = parse_retry_hint(response.headers.get(header), now)
            if when is not None:
                return when
        return None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter in [½, 1] of the step (stripe-python's shape)."""
        step = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return max(self.backoff_base / 2, step * self._random.uniform(0.5, 1.0))

    def _wait(self, seconds: float, what: str, reason: str, *, rate_limited: bool,
              retry_at: float | None = None) -> None:
        """Sleep `seconds`, unless that would outlast the deadline or `max_wait`: then give up
        now with the error the caller would have got, so the run can stop cleanly."""
        left = self.deadline.remaining() - MIN_REQUEST_SECONDS
        if seconds > self.max_wait or seconds > left:
            why = "past the run's deadline" if seconds > left else f"longer than {self.max_wait:.0f}s"
            message = f"{what}: {reason}; waiting {seconds:.0f}s would run {why}"
            if rate_limited:
                raise RateLimited(message, retry_at=retry_at if retry_at is not None
                                  else self._clock() + seconds)
            raise TransientError(message)
        self.retries_made += 1
        if seconds > 0:
            self._sleep(seconds)

    def _exception_reason(self, exc: BaseException) -> str:
        if isinstance(exc, requests.exceptions.Timeout):
            return "timed out"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"connection failed ({self.redact(type(exc).__name__)})"
        return self.redact(f"{type(exc).__name__}: {exc}")

    def _body_hint(self, response: requests.Response) -> str:
        text = (response.text or "").strip().replace("\n", " ")
        if not text:
            return ""
        return f": {self.redact(text[:300])}"

    def close(self) -> None:
        self.session.close()
