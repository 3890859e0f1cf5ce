"""`OutreachClient`: JSON:API requests to Outreach (reference/outreach-api.md), batched look-ups,
create/patch, users, and a request budget that keeps the plugin below Outreach's per-user limit.

The access token goes to the configured `api_url`'s origin (scheme, host, port) and nowhere
else: a paging link (`links.next`) or any absolute URL naming another origin is refused before a
token is fetched for it (UnsafeRedirect, naming the host), and redirects are followed only on
that origin (plugin.http), so a 307 never carries a prospect's JSON to another host.

Errors (simple-salesforce style status → exception map):
  401 → one forced token refresh and one retry; a second 401 → NotAuthorised.
  403 unauthorizedOauthScope → NotAuthorised naming the missing scope; other 403 → OutreachError.
  404 → OutreachNotFound; 422 → OutreachValidation; other 4xx → OutreachError (id, detail,
  pointer from `errors[0]`). 429/5xx/timeouts are retried by HttpClient (PATCH and GET are
  idempotent; POST is never replayed).

Budget: `hourly_budget` requests per hour (default 8000 of Outreach's 10,000), counted in the
`budget_state` dict the engine loads from and saves to API Data: {"window_start": epoch,
"used": n} (mutated in place). Outreach's own `X-RateLimit-Remaining` (first value of
"9999, 19988") is honoured too, less a safety margin, until its `X-RateLimit-Reset`.
`budget_left` is the smaller of the two; when it reaches 0, BudgetSpent is raised BEFORE sending,
so the plugin never provokes a 429.
"""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlencode

import requests

from . import redirects
from .emails import normalise
from .errors import (BudgetSpent, MissingScope, NotAuthorised, OutreachError, OutreachNotFound,
                     OutreachValidation, TransientError, UnsafeRedirect)
from .http import HttpClient
from .oauth import OutreachAuth

MEDIA_TYPE = "application/vnd.api+json"
PAGE_SIZE = 1000                 # Outreach's maximum page[size]
CHUNK_COUNT = 50                 # values per comma-OR filter
CHUNK_CHARS = 1500               # encoded characters of filter values per request (URL length)
WINDOW = 3600
REMAINING_SAFETY = 50            # never spend Outreach's last requests: other integrations share them

PLURALS = {"prospect": "prospects", "account": "accounts", "user": "users"}
RELATIONSHIP_TYPES = {"account": "account", "owner": "user", "creator": "user", "updater": "user",
                      "stage": "stage", "persona": "persona"}


def _plural(kind: str) -> str:
    return PLURALS.get(kind, kind if kind.endswith("s") else kind + "s")


def _singular(plural: str) -> str:
    """The JSON:API type of a collection (`sequenceStates` → `sequenceState`), for `fields[…]`."""
    return next((k for k, v in PLURALS.items() if v == plural), plural[:-1] if plural.endswith("s") else plural)


def chunk_values(values: Iterable[str], *, count: int = CHUNK_COUNT, chars: int = CHUNK_CHARS) -> list[list[str]]:
    """Split values into groups of at most `count` values whose URL-encoded, comma-joined length
    stays within `chars` (a single over-long value travels alone)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for value in values:
        cost = len(urlencode({"v": value})) - 2 + 3   # the value plus an encoded comma
        if current and (len(current) >= count or size + cost > chars):
            chunks.append(current)
            current, size = [], 0
        current.append(value)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def normalise_emails(emails: Iterable[str | None]) -> list[str]:
    """Stripped, in the form addresses are compared in (plugin.emails.normalise: NFC, lower-cased),
    de-duplicated (first occurrence order), blanks dropped."""
    seen: dict[str, None] = {}
    for email in emails:
        text = normalise((email or "").strip())
        if text:
            seen.setdefault(text, None)
    return list(seen)


def email_search_forms(emails: Iterable[str | None]) -> list[str]:
    """The values to look emails up by: each email as given (stripped) and in its compared form
    (plugin.emails.normalise: NFC, lower-cased), de-duplicated, blanks dropped. Whether
    Outreach's `filter[emails]` ignores case is not known (outreach-api.md R2.3): an
    exact-matching server still finds a prospect stored with the given mixed case, and a
    case-insensitive one answers the same prospect twice (merged by id)."""
    seen: dict[str, None] = {}
    for email in emails:
        text = (email or "").strip()
        if text:
            seen.setdefault(text, None)
            seen.setdefault(normalise(text), None)
    return list(seen)


def _needs_new_syntax(value: str) -> bool:
    """The legacy filter syntax reads `,` as OR and `..` as a range."""
    return "," in value or ".." in value


def first_rate_value(header: str | None) -> int | None:
    """`X-RateLimit-Remaining` may read "9999, 19988": the first value is the hourly one."""
    if header is None:
        return None
    match = re.match(r"\s*(-?\d+)", str(header))
    return int(match.group(1)) if match else None


def relationship(name: str, value: Any) -> dict:
    """Shorthand → JSON:API: an id → {"data": {"type", "id"}}, None → {"data": None},
    a dict is passed through."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {"data": None}
    return {"data": {"type": RELATIONSHIP_TYPES.get(name, name), "id": int(value)}}


class OutreachClient:
    def __init__(self, api_url: str, auth: OutreachAuth, http: HttpClient, *, hourly_budget: int = 8000,
                 budget_state: dict | None = None, clock: Callable[[], float] = time.time) -> None:
        self.api_url = api_url.rstrip("/")
        self.auth = auth
        self.http = http
        self.hourly_budget = int(hourly_budget)
        self.budget_state = budget_state if budget_state is not None else {}
        self._clock = clock
        self.requests_made = 0
        self._remaining: int | None = None
        self._remaining_until: float | None = None
        self.reserved = 0        # requests the current work must leave for others (see keeping)
        self.http.on_response = self._chain(self.http.on_response)

    # --- budget ------------------------------------------------------------------------------------
    def _chain(self, previous: Callable | None) -> Callable[[requests.Response], None]:
        def on_response(response: requests.Response) -> None:
            if previous is not None:
                previous(response)
            if response.request is not None and str(response.request.url).startswith(self.api_url):
                self._note(response)
        return on_response

    def _window(self) -> dict:
        now = self._clock()
        state = self.budget_state
        start = state.get("window_start")
        if not isinstance(start, (int, float)) or now >= start + WINDOW or start > now + 60:
            state["window_start"] = int(now)
            state["used"] = 0
        state.setdefault("used", 0)
        return state

    def _note(self, response: requests.Response) -> None:
        self.requests_made += 1
        self._window()["used"] += 1
        remaining = first_rate_value(response.headers.get("X-RateLimit-Remaining"))
        if remaining is not None:
            self._remaining = remaining
            reset = first_rate_value(response.headers.get("X-RateLimit-Reset"))
            now = self._clock()
            self._remaining_until = (reset if reset and reset > 1e9 else now + (reset or WINDOW))

    @property
    def budget_left(self) -> int:
        state = self._window()
        left = self.hourly_budget - int(state.get("used", 0))
        if self._remaining is not None:
            if self._remaining_until is not None and self._clock() >= self._remaining_until:
                self._remaining = None          # Outreach's window has reset
            else:
                left = min(left, self._remaining - REMAINING_SAFETY)
        return max(0, left)

    def seconds_left_in_window(self) -> float:
        """Until the plugin's own hourly budget starts again."""
        return max(0.0, self._window()["window_start"] + WINDOW - self._clock())

    @contextmanager
    def keeping(self, reserve: int) -> Iterator[None]:
        """Inside: the budget counts as spent while only `reserve` requests are left, so that
        work (a send backlog) can never take the requests another part of the run needs later in
        the hour (receive's polls: an opt-out must not wait an hour)."""
        before, self.reserved = self.reserved, max(0, int(reserve))
        try:
            yield
        finally:
            self.reserved = before

    def _spend_check(self) -> None:
        left = self.budget_left
        if left > self.reserved:
            return
        state = self._window()
        if left > 0:
            raise BudgetSpent(f"the hourly Outreach request budget is spent but for the {self.reserved} "
                              f"requests kept for receiving changes ({state['used']} of {self.hourly_budget} "
                              "used this hour)", retry_at=state["window_start"] + WINDOW)
        own_spent = self.hourly_budget - int(state["used"]) <= 0
        retry_at = state["window_start"] + WINDOW if own_spent or not self._remaining_until \
            else self._remaining_until
        raise BudgetSpent(f"the hourly Outreach request budget is spent ({state['used']} of "
                          f"{self.hourly_budget} used this hour; Outreach reports "
                          f"{self._remaining if self._remaining is not None else 'no limit'} remaining)",
                          retry_at=retry_at)

    # --- the request -------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        """An API path → its URL. An absolute URL (a paging link an answer handed us) is taken only
        on the configured API origin: the token must never reach another host."""
        if not re.match(r"^[a-z][a-z0-9+.-]*://", path, re.I):
            return f"{self.api_url}/{path.lstrip('/')}"
        if not redirects.same_origin(path, self.api_url):
            raise UnsafeRedirect(f"Outreach handed the plugin a link to another host "
                                 f"({self.http.redact(redirects.host_of(path))}) than outreach_api_url's "
                                 f"({redirects.host_of(self.api_url)}); not followed, no token sent there")
        return path

    def request(self, method: str, path: str, *, params: Any = None, body: Any = None,
                idempotent: bool | None = None) -> dict | None:
        """One API call, JSON:API in and out; returns the decoded body (None for 204)."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "PATCH", "DELETE")
        url = self._url(path)
        for attempt in (1, 2):
            self._spend_check()
            token = self.auth.access_token() if attempt == 1 else self.auth.force_refresh()
            headers = {"Authorization": f"Bearer {token}", "Accept": MEDIA_TYPE}
            if body is not None:
                headers["Content-Type"] = MEDIA_TYPE
            response = self.http.request(method, url, params=params, json=body, headers=headers,
                                         idempotent=idempotent, allow_redirects=True)
            if response.status_code != 401:
                return self._result(method, url, response)
        raise NotAuthorised("Outreach refused a freshly refreshed access token (HTTP 401): the "
                            "authorisation was probably revoked; run the authorisation")

    def _result(self, method: str, url: str, response: requests.Response) -> dict | None:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise TransientError(f"Outreach {method} {self._path(url)}: answered HTTP {status} "
                                     "without JSON") from None
        if 300 <= status < 400:
            # Followable redirects on the API's origin were followed (plugin.http): this one says
            # the request was processed elsewhere (303) or names no Location. Never a record's fault.
            raise TransientError(f"Outreach {method} {self._path(url)}: redirected (HTTP {status}) in a "
                                 "way the plugin does not follow; not re-sent")
        error = self._first_error(response)
        error_id = error.get("id")
        detail = error.get("detail") or error.get("details") or error.get("title") or \
            error.get("description") or error.get("error")
        pointer = (error.get("source") or {}).get("pointer") if isinstance(error.get("source"), dict) else None
        detail = self.http.redact(detail) if detail else None
        where = f"Outreach {method} {self._path(url)}"
        text = f"{where}: HTTP {status}" + (f" {error_id}" if error_id else "") + (f": {detail}" if detail else "")
        if status == 403 and error_id == "unauthorizedOauthScope":
            scope = re.search(r"scope '([^']+)'", detail or "")
            missing = scope.group(1) if scope else "a required scope"
            raise MissingScope(missing, f"the Outreach authorisation lacks the scope {missing!r}: run the "
                                        "authorisation again and grant it")
        kwargs = dict(status=status, error_id=error_id, detail=detail, pointer=pointer)
        if status == 404:
            raise OutreachNotFound(text, **kwargs)
        if status == 422:
            raise OutreachValidation(text, **kwargs)
        raise OutreachError(text, **kwargs)

    @staticmethod
    def _first_error(response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            return {"detail": (response.text or "")[:200].strip() or None}
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return errors[0]
            return body
        return {}

    @staticmethod
    def _path(url: str) -> str:
        return re.sub(r"^https?://[^/]+", "", url).split("?")[0]

    # --- collections -------------------------------------------------------------------------------
    def iter_pages(self, path: str, params: list[tuple[str, str]] | None = None) -> Iterator[list[dict]]:
        """Follow `links.next` (absolute URLs that carry every parameter) until it is missing."""
        url: str | None = self._url(path)
        query: Any = list(params or [])
        seen: set[str] = set()
        while url:
            body = self.request("GET", url, params=query) or {}
            data = body.get("data") or []
            yield data if isinstance(data, list) else [data]
            next_url = (body.get("links") or {}).get("next")
            if not next_url or not data:
                return
            if next_url in seen:
                raise OutreachError(f"Outreach GET {self._path(next_url)}: paging loop (the same next link twice)")
            seen.add(next_url)
            url, query = next_url, None

    def list_all(self, path: str, params: list[tuple[str, str]] | None = None) -> list[dict]:
        return [item for page in self.iter_pages(path, params) for item in page]

    def find_prospects_by_emails(self, emails: Iterable[str | None]) -> list[dict]:
        """Prospects having any of `emails`, each searched as given and lower-cased
        (`email_search_forms`; callers compare case-insensitively). Plain values are OR-ed in
        `filter[emails]=a,b,c` chunks; a value with `,` or `..` (which the legacy syntax would
        read as OR / range) is looked up alone with `newFilterSyntax=true`."""
        values = email_search_forms(emails)
        plain = [v for v in values if not _needs_new_syntax(v)]
        special = [v for v in values if _needs_new_syntax(v)]
        found: dict[Any, dict] = {}
        for chunk in chunk_values(plain):
            for item in self.list_all("prospects", [("filter[emails]", ",".join(chunk)),
                                                    ("page[size]", str(PAGE_SIZE))]):
                found.setdefault(item.get("id"), item)
        for value in special:
            for item in self.list_all("prospects", [("newFilterSyntax", "true"), ("filter[emails][]", value),
                                                    ("page[size]", str(PAGE_SIZE))]):
                found.setdefault(item.get("id"), item)
        return list(found.values())

    def find_accounts(self, attribute: str, values: Iterable[str | None]) -> list[dict]:
        """Accounts whose `attribute` (name, domain, customId) equals any of `values`. Always the
        new filter syntax (`filter[name][]=…` repeated): account names often contain commas."""
        wanted = list(dict.fromkeys(str(v).strip() for v in values if v is not None and str(v).strip()))
        found: dict[Any, dict] = {}
        for chunk in chunk_values(wanted):
            params = [("newFilterSyntax", "true"), *((f"filter[{attribute}][]", v) for v in chunk),
                      ("page[size]", str(PAGE_SIZE))]
            for item in self.list_all("accounts", params):
                found.setdefault(item.get("id"), item)
        return list(found.values())

    def changed_since(self, plural: str, since: str | None, *, fields: Iterable[str] | None = None,
                      page_size: int = PAGE_SIZE) -> Iterator[list[dict]]:
        """Pages of `plural` (prospects, accounts, sequenceStates…) changed at or after `since`
        (ISO 8601; None: everything), in `updatedAt` order (outreach-api.md §12: updatedAt is
        filterable and sortable on these; the bound is inclusive, §4.1). `fields`: a sparse
        fieldset for the type (attributes and relationships to return)."""
        params = [("newFilterSyntax", "true"), ("sort", "updatedAt,id"), ("page[size]", str(page_size))]
        if since:
            params.append(("filter[updatedAt][gte]", since))
        if fields is not None:
            params.append((f"fields[{_singular(plural)}]", ",".join(fields)))
        yield from self.iter_pages(plural, params)

    def find_by_ids(self, plural: str, ids: Iterable[Any], *, extra: Iterable[tuple[str, str]] = (),
                    fields: Iterable[str] | None = None) -> list[dict]:
        """Records of `plural` with these ids, `filter[id]` comma lists in chunks."""
        wanted = [str(int(i)) for i in dict.fromkeys(ids)]
        found: list[dict] = []
        for chunk in chunk_values(wanted):
            params = [("filter[id]", ",".join(chunk)), *extra, ("page[size]", str(PAGE_SIZE))]
            if fields is not None:
                params.append((f"fields[{_singular(plural)}]", ",".join(fields)))
            found += self.list_all(plural, params)
        return found

    def find_related(self, plural: str, relationship: str, ids: Iterable[Any], *,
                     extra: Iterable[tuple[str, str]] = ()) -> list[dict]:
        """Records of `plural` whose to-one `relationship` is one of `ids`
        (`filter[prospect][id]=1,2,3`: relationship filters by id only, DOC-DEPR)."""
        wanted = [str(int(i)) for i in dict.fromkeys(ids)]
        found: list[dict] = []
        for chunk in chunk_values(wanted):
            found += self.list_all(plural, [(f"filter[{relationship}][id]", ",".join(chunk)), *extra,
                                            ("page[size]", str(PAGE_SIZE))])
        return found

    def list_users(self) -> list[dict]:
        return self.list_all("users", [("page[size]", str(PAGE_SIZE))])

    # --- single resources --------------------------------------------------------------------------
    def get(self, kind: str, resource_id: Any) -> dict:
        body = self.request("GET", f"{_plural(kind)}/{int(resource_id)}") or {}
        return body.get("data") or {}

    def create(self, kind: str, attributes: dict, relationships: dict | None = None) -> dict:
        """POST a new resource (never replayed after an ambiguous failure: the engine looks it up
        before creating again next run)."""
        data: dict[str, Any] = {"type": kind, "attributes": attributes}
        if relationships:
            data["relationships"] = {k: relationship(k, v) for k, v in relationships.items()}
        body = self.request("POST", _plural(kind), body={"data": data}, idempotent=False) or {}
        return body.get("data") or {}

    def update(self, kind: str, resource_id: Any, attributes: dict | None = None,
               relationships: dict | None = None) -> dict:
        """PATCH only what is given (type and id included, as JSON:API requires)."""
        data: dict[str, Any] = {"type": kind, "id": int(resource_id)}
        if attributes:
            data["attributes"] = attributes
        if relationships:
            data["relationships"] = {k: relationship(k, v) for k, v in relationships.items()}
        body = self.request("PATCH", f"{_plural(kind)}/{int(resource_id)}", body={"data": data}) or {}
        return body.get("data") or {}

    def delete(self, kind: str, resource_id: Any) -> None:
        self.request("DELETE", f"{_plural(kind)}/{int(resource_id)}")
