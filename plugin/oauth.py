"""`OutreachAuth`: the Outreach OAuth tokens stored in API Data (state key `tokens`), refreshed
before they expire, with refresh-token rotation handled safely (reference/outreach-api.md §1).

The stored record: `access_token`, `refresh_token`, `token_type`, `expires_at` (epoch s),
`scopes` (list), `instance_url`, `database` ({"name", "id", "instance_id"} of the Workbooks
database that was authorised), `authorised_at`, `refreshed_at` (ISO UTC).

Rules:
  * `access_token()` refreshes when less than 5 minutes are left.
  * Rotation: every refresh returns a new refresh token and the old one may die at once. The new
    record is saved in API Data BEFORE the new access token is handed out. The save is retried
    (fresh read, then overwrite: ours is the newest token) with backoff inside the deadline. If it
    still fails the new tokens are kept in memory only, NOT used, and a TransientError ends the
    run (exit 1); every later `access_token()` call in this process first retries the save.
    What is lost if the process then ends: only this refresh. With Outreach's documented
    behaviour the old refresh token stays valid (up to 100 newer ones / 14 days), so the next run
    refreshes again; under strict single-use the next run gets `invalid_grant` → NotAuthorised.
  * In a dry run the store writes nothing, except this: a rotated refresh token is always saved,
    because dropping it would lose the authorisation. A dry run refreshes only when the access
    token has actually expired.
  * `invalid_grant` (or any 400/401 refusal) → NotAuthorised "Outreach is not authorised: run
    the authorisation". A rejected client id/secret → NotAuthorised naming them.
  * The token endpoint's 429 ("Retry later", text/plain) or 5xx while the current token is still
    valid → keep using the current token; when it has expired → RateLimited / TransientError.
  * Tokens authorised for another Workbooks database (a copy of production) → NotAuthorised with
    a message saying so; they are never used.
  * The token request never follows a redirect, not even on its own host: it carries the client
    secret and a refresh token or code, and a 307/308 would have them re-sent wherever Location
    says. A redirect there is an UnsafeRedirect (transient: a still-valid token is kept, as on a
    5xx). `revoke` makes no request at all (Outreach documents no revocation endpoint).

Client id/secret: `client_credentials(params, install)` picks them. Explicit parameters
(`outreach_client_id` + `outreach_client_secret`) win over the install state's `oauth_client`,
so an administrator can rotate the secret without reinstalling; a half pair is ignored.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from . import redirects
from .errors import NotAuthorised, OutreachError, RateLimited, TransientError, UnsafeRedirect, WorkbooksError
from .http import HttpClient
from .state import StateStore

TOKENS_KEY = "tokens"
REFRESH_MARGIN = 300          # refresh when fewer seconds than this are left
STILL_VALID_MARGIN = 30       # a token with less than this left is treated as expired
RETRY_REFRESH_AFTER = 60      # after a postponed refresh, keep the valid token this long before
                              # asking again (Outreach mints at most once a minute, R2.2)
DEFAULT_SCOPES = ("prospects.all", "accounts.all", "users.read", "sequences.read", "sequenceStates.read")

NOT_AUTHORISED = "Outreach is not authorised: run the authorisation"
#: How a refused authorisation code is reported (the web page answers it as a bad request).
CODE_REFUSED = "Outreach refused the authorisation code"


def client_credentials(params: dict, install: dict | None) -> tuple[str | None, str | None, str | None]:
    """(client_id, client_secret, redirect_uri): parameters win over `install["oauth_client"]`."""
    oauth_client = (install or {}).get("oauth_client") or {}
    redirect = params.get("outreach_redirect_uri") or oauth_client.get("redirect_uri")
    if params.get("outreach_client_id") and params.get("outreach_client_secret"):
        return str(params["outreach_client_id"]), str(params["outreach_client_secret"]), redirect
    if oauth_client.get("client_id") and oauth_client.get("client_secret"):
        return str(oauth_client["client_id"]), str(oauth_client["client_secret"]), redirect
    return None, None, redirect


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scopes(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(s) for s in value if s]
    return [s for s in str(value or "").replace("+", " ").split() if s]


class OutreachAuth:
    def __init__(self, state: StateStore, http: HttpClient, *, oauth_url: str, client_id: str | None,
                 client_secret: str | None, database: dict, redirect_uri: str | None = None,
                 dry_run: bool | None = None, log: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 save_attempts: int = 5) -> None:
        self.state = state
        self.http = http
        self.oauth_url = oauth_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.database = dict(database or {})
        self.redirect_uri = redirect_uri
        self.dry_run = state.dry_run if dry_run is None else dry_run
        self._log = log or (lambda level, message: None)
        self._clock = clock
        self._sleep = sleep
        self.save_attempts = save_attempts
        self._tokens: dict | None = None
        self._pending: dict | None = None     # refreshed but not yet saved: never handed out
        self._redeemed: list[dict] = []       # codes exchanged here, adopted or not
        self._postponed_at: float | None = None   # when a due refresh last failed transiently
        self.refreshes = 0
        http.add_secret_source(self.secrets)

    # --- what must never be printed ----------------------------------------------------------------
    def secrets(self) -> list[str]:
        found = [self.client_secret]
        for tokens in (self._tokens, self._pending, *self._redeemed):
            if tokens:
                found += [tokens.get("access_token"), tokens.get("refresh_token")]
        return [s for s in found if s]

    # --- the stored tokens -------------------------------------------------------------------------
    def _load(self) -> dict:
        if self._tokens is None:
            tokens = self.state.get(TOKENS_KEY)
            if not isinstance(tokens, dict) or not tokens.get("access_token"):
                raise NotAuthorised(NOT_AUTHORISED)
            self._tokens = tokens
        self._check_database(self._tokens)
        return self._tokens

    def _check_database(self, tokens: dict) -> None:
        """Refuse tokens bound to another Workbooks database: ids (logical id, instance id) decide
        when both sides have them, else the names; tokens with no identity are accepted."""
        stored = tokens.get("database") or {}
        current = self.database
        pairs = [(stored.get(f), current.get(f)) for f in ("id", "instance_id")]
        pairs = [(a, b) for a, b in pairs if a not in (None, "") and b not in (None, "")]
        if pairs:
            mismatch = any(str(a) != str(b) for a, b in pairs)
        else:
            mismatch = bool(stored.get("name") and current.get("name") and stored["name"] != current["name"])
        if not mismatch:
            return
        raise NotAuthorised(
            f"Outreach was authorised for the Workbooks database {stored.get('name')!r} "
            f"(id {stored.get('id')}, instance {stored.get('instance_id')}), but this is "
            f"{current.get('name')!r} (id {current.get('id')}, instance {current.get('instance_id')}). "
            "A copied database must not sync with the original's Outreach account: "
            "run the authorisation in this database")

    def status(self) -> dict | None:
        """What a status page may show (never a token): database, instance URL, scopes, expiry."""
        tokens = self.state.get(TOKENS_KEY)
        if not isinstance(tokens, dict) or not tokens.get("access_token"):
            return None
        return {k: tokens.get(k) for k in ("database", "instance_url", "scopes", "expires_at",
                                           "authorised_at", "refreshed_at", "outreach_user")}

    # --- handing out tokens ------------------------------------------------------------------------
    def access_token(self) -> str:
        """A usable access token, refreshed first when fewer than 5 minutes are left."""
        if self._pending is not None:
            self._save(self._pending)
        tokens = self._load()
        left = float(tokens.get("expires_at") or 0) - self._clock()
        if left > REFRESH_MARGIN:
            return tokens["access_token"]
        if self.dry_run and left > STILL_VALID_MARGIN:
            return tokens["access_token"]  # a dry run rotates nothing it does not have to
        if left > STILL_VALID_MARGIN and self._postponed_at is not None \
                and self._clock() - self._postponed_at < RETRY_REFRESH_AFTER:
            # The refresh just failed (throttled, down, or its answer lost): asking again before
            # every request would double the run's requests and keep hitting the throttle.
            return tokens["access_token"]
        return self._refresh(tokens, forced=False)

    def force_refresh(self) -> str:
        """After a 401: the stored access token is dead whatever its expiry says."""
        if self._pending is not None:
            self._save(self._pending)
        return self._refresh(self._load(), forced=True)

    def _refresh(self, tokens: dict, *, forced: bool, rechecked: bool = False) -> str:
        if not tokens.get("refresh_token"):
            raise NotAuthorised(NOT_AUTHORISED + " (no refresh token is stored)")
        self._require_client()
        still_valid = not forced and float(tokens.get("expires_at") or 0) - self._clock() > STILL_VALID_MARGIN
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                "client_id": self.client_id, "client_secret": self.client_secret}
        if self.redirect_uri:
            form["redirect_uri"] = self.redirect_uri
        try:
            answer = self._token_request(form, refusal=NOT_AUTHORISED + " (the stored refresh token was refused: {reason})")
        except NotAuthorised:
            newer = None if rechecked else self._rotated_elsewhere(tokens)
            if newer is None:
                raise
            self._log("info", "Outreach tokens were refreshed by another run meanwhile; using those")
            self._tokens = newer
            if newer.get("access_token") != tokens.get("access_token") and \
                    float(newer.get("expires_at") or 0) - self._clock() > STILL_VALID_MARGIN:
                return newer["access_token"]
            return self._refresh(newer, forced=forced, rechecked=True)
        except (RateLimited, TransientError) as exc:
            if still_valid:
                self._log("warning", f"Outreach token refresh postponed ({exc}); the current token "
                                     "is still valid")
                self._postponed_at = self._clock()
                return tokens["access_token"]
            raise
        new = self._record(answer, previous=tokens)
        new["refreshed_at"] = _iso(self._clock())
        self._postponed_at = None
        self._pending = new
        self._save(new)
        self.refreshes += 1
        self._log("info", "Outreach access token refreshed")
        return new["access_token"]

    def _rotated_elsewhere(self, used: dict) -> dict | None:
        """After the refresh token was refused: has another process stored newer tokens since we
        read ours? Two runs of the scheduled process may start together (Process Channels), and
        both refresh before taking the run lock; with single-use refresh tokens the slower one
        is refused. It must take the winner's tokens rather than report the authorisation lost
        (exit 2 disables the process). The winner saves a moment after its answer arrives, so
        look again briefly before giving up."""
        for attempt in range(3):
            if attempt:
                self._sleep(0.5)
            try:
                stored = self.state.get(TOKENS_KEY, fresh=True)
            except (TransientError, WorkbooksError):
                return None
            if isinstance(stored, dict) and stored.get("refresh_token") \
                    and stored["refresh_token"] != used.get("refresh_token"):
                self._check_database(stored)
                return stored
        return None

    # --- authorisation-code flow (the web process) -------------------------------------------------
    def authorize_url(self, state: str, scopes: Iterable[str] | str = DEFAULT_SCOPES) -> str:
        self._require_client()
        scope = scopes if isinstance(scopes, str) else " ".join(scopes)
        query = {"client_id": self.client_id, "response_type": "code", "scope": scope, "state": state}
        if self.redirect_uri:
            query["redirect_uri"] = self.redirect_uri
        return f"{self.oauth_url}/authorize?{urlencode(query)}"

    def exchange_code(self, code: str, *, instance_url: str | None = None) -> dict:
        """Exchange the callback's code, store the tokens bound to this database, and return the
        status summary (no tokens)."""
        return self.adopt(self.redeem_code(code, instance_url=instance_url))

    def redeem_code(self, code: str, *, instance_url: str | None = None) -> dict:
        """Exchange the callback's code for a token record bound to this database, NOT stored:
        the authorisation page decides first whether it may replace the current connection."""
        self._require_client()
        form = {"grant_type": "authorization_code", "code": code, "client_id": self.client_id,
                "client_secret": self.client_secret}
        if self.redirect_uri:
            form["redirect_uri"] = self.redirect_uri
        answer = self._token_request(form, refusal=CODE_REFUSED + " ({reason}): it expired or was "
                                                   "already used; start the authorisation again")
        now = self._clock()
        record = self._record(answer, previous={})
        record.update(instance_url=instance_url, database=dict(self.database), authorised_at=_iso(now),
                      refreshed_at=None)
        self._redeemed.append(record)   # not for use until adopted, but redacted from now on
        return record

    def adopt(self, record: dict) -> dict:
        """Store a record from `redeem_code` as the connection; returns the status summary."""
        self._pending = record
        self._save(record)
        return self.status() or {}

    def revoke(self) -> None:
        """Forget the tokens (the runner then exits 2: not authorised)."""
        self.state.delete(TOKENS_KEY)
        self._tokens = None
        self._pending = None

    # --- internals ---------------------------------------------------------------------------------
    def _require_client(self) -> None:
        if not self.client_id or not self.client_secret:
            raise NotAuthorised("the Outreach OAuth client id/secret are not configured: set "
                                "outreach_client_id and outreach_client_secret, or run the installer")

    def _token_request(self, form: dict, *, refusal: str) -> dict:
        response = self.http.request("POST", f"{self.oauth_url}/token", data=form, idempotent=False,
                                     max_retries=0, headers={"Accept": "application/json"},
                                     allow_redirects=False)
        if 300 <= response.status_code < 400:
            target = redirects.location(response)
            where = f" to {self.http.redact(redirects.host_of(target))}" if target else ""
            raise UnsafeRedirect(f"Outreach's token endpoint answered with a redirect (HTTP "
                                 f"{response.status_code}{where}); not followed: it would re-send the client "
                                 "secret and the refresh token or code. Check outreach_oauth_url")
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        if error in ("invalid_client", "unauthorized_client"):
            raise NotAuthorised(f"Outreach rejected the plugin's OAuth client ({error}): check "
                                "outreach_client_id / outreach_client_secret or reinstall")
        if response.status_code in (400, 401) or error == "invalid_grant":
            raise NotAuthorised(refusal.format(reason=error or f"HTTP {response.status_code}"))
        detail = self.http.redact((response.text or "")[:200])
        raise OutreachError(f"Outreach token endpoint answered HTTP {response.status_code}: {detail}",
                            status=response.status_code, error_id=error)

    def _record(self, answer: dict, *, previous: dict) -> dict:
        now = self._clock()
        expires_in = float(answer.get("expires_in") or 7200)
        expires_at = now + expires_in
        created = answer.get("created_at")
        if isinstance(created, (int, float)) and created > 1e9:
            expires_at = min(expires_at, float(created) + expires_in)   # whichever clock is stricter
        record = {k: v for k, v in previous.items()}
        record.update(access_token=answer["access_token"],
                      refresh_token=answer.get("refresh_token") or previous.get("refresh_token"),
                      token_type=answer.get("token_type", "bearer"), expires_at=int(expires_at),
                      scopes=_scopes(answer.get("scope")) or previous.get("scopes") or [])
        return record

    def _save(self, tokens: dict) -> None:
        """Persist before use, retrying inside the deadline; see the module docstring."""
        deadline = self.http.deadline
        last: Exception | None = None
        for attempt in range(self.save_attempts):
            try:
                if attempt:
                    self.state.get(TOKENS_KEY, fresh=True)   # pick up the current lock_version
                self.state.put(TOKENS_KEY, tokens, essential=True)
                self._tokens, self._pending = tokens, None
                return
            except (TransientError, WorkbooksError) as exc:
                last = exc
                wait = min(8.0, 0.5 * 2 ** attempt)
                if attempt + 1 >= self.save_attempts or deadline.remaining() < wait + 2:
                    break
                self._sleep(wait)
        raise TransientError("the refreshed Outreach token could not be saved in Workbooks "
                             f"({self.http.redact(last)}); it was not used. Try again later")
