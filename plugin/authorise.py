"""The authorisation web process: connect an Outreach account by OAuth 2.0 (authorisation code).

Workbooks runs a web process per HTTP request and hands it the request in the parameters, with
prefixes (workbooks-api.md §2.4): `_query_*` (query string), `_post_*` (form), `_server_*` (server
variables), `_cookie_*` (cookies). The process answers by printing `[header] <header line>` lines,
then the body (plugin.webpage writes them so that nothing reflected can add a line of its own).

Actions (`action` in the query or the form):
  start     302 to `{outreach_oauth_url}/authorize` with a `state` nonce bound to this database
            and to this browser (plugin.websession's cookie; a browser without one is given one
            and sent back here first, so a cross-site hit that carries no cookie stores nothing)
  callback  (also: any request carrying `code` or `error`) check the state — issued here, for
            this browser, unexpired, unused, in this database —, exchange the code, and store
            the tokens (plugin.oauth). When they would replace a connection to another Outreach
            user (or to a user this page cannot identify), they are held instead, and the page
            asks: `replace` (POST) switches, `keep` (POST) discards them
  status    (default) what is connected: database, Outreach user, instance URL, scopes, expiry —
            never a token
  revoke    delete the stored tokens (a POST from this page's form; a GET only asks); the runner
            then exits 2 with "Outreach is not authorised: run the authorisation". From the
            command line: `outreach_authorise.py --revoke`.
  retry, retry_all   (POST, from the status page's forms) reset the Sync Error / Duplicate flags
            of one record, or of every record with one kind of error (plugin/status.py)

The status action is also the administrators' status page (plugin/status.py reads it,
plugin/statusview.py draws it): health, backlog and budget, the last 24 hours, and the records
that need a person. A GET never changes anything.

Every form carries plugin.websession's anti-forgery token; a POST without it changes nothing.
Exit codes: 0 for every page a request deserves, hostile or mistaken ones included (exit 2
disables the web process in Workbooks); 2 only when a person must fix the configuration (no
OAuth client, no known address, Workbooks credentials refused); 1 for a fault.

Pending states (API Data `oauth_state`) are kept per browser: at most MAX_PENDING_PER_BROWSER
each (a browser's own oldest is dropped), at most MAX_PENDING_STATES in all; when that is full, a
browser with none in progress is asked to try later, so no flood pushes out an authorisation in
progress. Only digests of the nonce and of the browser id are stored.

A database copied from production carries production's API Data, tokens included: the tokens
and every pending `state` record which database they belong to, and both are refused elsewhere.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
import time
import traceback
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from plugin.errors import ActionRequired, NotAuthorised, PluginError
from plugin.outreach_user import describe_user, same_user
from plugin.status import ActionRefused, notice_of
from plugin.webpage import Page, clip, error_page, escape, html_page
from plugin.websession import (FormGuard, browser_digest, browser_id, new_browser_id, request_method,
                               same_browser, set_cookie)

#: How long an authorisation started here may take to come back (the admin logs in to Outreach).
STATE_TTL_SECONDS = 600
#: Pending starts kept per browser (two tabs, a retry); that browser's older ones are dropped.
MAX_PENDING_PER_BROWSER = 3
#: Pending starts kept in all, so a flood of starts cannot grow API Data without limit.
MAX_PENDING_STATES = 30
#: How long tokens that would replace the connection wait for a person's answer.
REPLACEMENT_TTL_SECONDS = 600
REPLACEMENT_KEY = "oauth_replacement"

class AuthorisationFailed(ActionRequired):
    """The page cannot work until a person fixes the configuration (exit 2); says what to do."""


class RequestRefused(Exception):
    """This request cannot be accepted (forged, replayed, expired, from another browser or
    address): a plain error page and exit 0, because nobody needs to fix anything."""

    def __init__(self, message: str, *, status: int = 400, title: str = "Outreach was not connected"):
        super().__init__(message)
        self.status = status
        self.title = title


# --- the request ----------------------------------------------------------------------------------

def request_value(params: dict, name: str) -> str | None:
    """A request parameter: the form wins over the query string (a revoke is a POST)."""
    for prefix in ("_post_", "_json_post_", "_query_"):
        value = params.get(prefix + name)
        if value not in (None, ""):
            return str(value)
    return None


def action_of(params: dict) -> str:
    explicit = (request_value(params, "action") or "").strip().lower()
    if explicit:
        return explicit
    # Outreach sends the browser back to the redirect URI with only `code` and `state` (or
    # `error`), so a request carrying those is the callback whatever else it says.
    if request_value(params, "code") or request_value(params, "error"):
        return "callback"
    return "status"


_HOST = re.compile(r"^(?P<host>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
                   r"|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def redirect_uri(params: dict, service: str | None = None) -> str:
    """The web process's own URL, the OAuth redirect URI: parameter `redirect_uri` (it must match
    what is registered with Outreach), else rebuilt from the server variables, query removed —
    and then only when the request's Host is the Workbooks service's own (`service`): the Host
    header is the client's to choose, and the redirect URI carries the authorisation code."""
    explicit = params.get("redirect_uri")
    if explicit:
        return str(explicit)
    host = params.get("_server_HTTP_HOST") or params.get("_server_SERVER_NAME")
    path = params.get("_server_REQUEST_URI") or params.get("_server_SCRIPT_NAME") or params.get("_server_PHP_SELF")
    if not host or not path:
        raise ActionRequired("cannot tell this web process's address: set its redirect_uri parameter "
                             "to the URL registered with Outreach")
    scheme = str(params.get("_server_REQUEST_SCHEME") or "").lower()
    if scheme not in ("http", "https"):
        https = str(params.get("_server_HTTPS") or "").lower()
        # Workbooks serves over TLS; plain http only when the server says so.
        scheme = "http" if https in ("off", "0") else "https"
    host = _service_host(str(host), scheme, service)
    parts = urlsplit(str(path))
    route = parts.path or "/"
    if not route.startswith("/") or route.startswith("//") or "\\" in route or "@" in route:
        raise RequestRefused(f"This page's path ({clip(route, 80)}) is not one it can be registered "
                             "under. Open it from Workbooks.", title="Outreach authorisation refused")
    return urlunsplit((scheme, host, route, "", ""))


def _service_host(host: str, scheme: str, service: str | None) -> str:
    """`host` when it names the Workbooks service (same host and port), else RequestRefused."""
    wanted = urlsplit(service or "")
    found = _HOST.match(host.strip().lower())
    if found and wanted.hostname:
        name = found.group("host").strip("[]")
        port = int(found.group("port")) if found.group("port") else _DEFAULT_PORTS.get(scheme)
        try:
            service_port = wanted.port or _DEFAULT_PORTS.get(wanted.scheme)
        except ValueError:
            service_port = None
        if name == wanted.hostname.lower() and port == service_port:
            return found.group(0)
    raise RequestRefused(
        f"This page was reached under the address '{clip(host, 80)}', which is not this Workbooks "
        f"service's ({wanted.netloc or 'unknown'}). Open the page from Workbooks; if Workbooks is "
        "reached through another address, run the installer with --redirect-uri and the URL "
        "registered with Outreach.", title="Outreach authorisation refused")


def same_database(a: dict | None, b: dict | None) -> bool:
    """Whether two database identities name the same database, by the rule plugin.oauth applies
    to stored tokens: the ids (logical id, instance id) decide when both sides carry them, else
    the names; with nothing to compare, sameness is not proven."""
    if not a or not b:
        return False
    pairs = [(a.get(k), b.get(k)) for k in ("id", "instance_id")]
    pairs = [(x, y) for x, y in pairs if x not in (None, "") and y not in (None, "")]
    if pairs:
        return all(str(x) == str(y) for x, y in pairs)
    return bool(a.get("name")) and a.get("name") == b.get("name")


def describe_database(identity: dict | None) -> str:
    if not identity:
        return "an unknown database"
    name = identity.get("name") or "unnamed"
    return f"{name} (id {identity.get('id')}, instance {identity.get('instance_id')})"


# --- the web process ---------------------------------------------------------------------------------

class AuthorisationProcess:
    """Handles one request. `auth` is a plugin.oauth.OutreachAuth (its client id/secret may be
    missing: start/callback then say how to configure them), `state` a plugin.state.StateStore,
    `database` this database's identity (WorkbooksClient.database). `identify(access_token)`
    names the Outreach user a new token acts as (plugin.outreach_user), None when unknown.
    `on_authorised` runs after tokens are stored and may return a line for the page (e.g. "the
    sync process is enabled"). `address_problem`: why this page's own address was refused."""

    def __init__(self, params: dict, *, state, auth, database: dict, scopes: list[str],
                 instance_url: str | None = None, on_authorised: Callable[[], str | None] | None = None,
                 identify: Callable[[str], dict | None] | None = None,
                 address_problem: RequestRefused | None = None, clock: Callable[[], float] = time.time,
                 status_page=None):
        self.params = params
        self.status_page = status_page      # plugin.status.StatusPage, or None: the connection only
        self.state = state
        self.auth = auth
        self.database = database
        self.scopes = scopes
        self.instance_url = instance_url
        self.on_authorised = on_authorised
        self.identify = identify or (lambda token: None)
        self.address_problem = address_problem
        self._clock = clock
        self.browser = browser_id(params)
        self._issued: str | None = None          # a browser id this answer hands out
        self._held_tokens: list[dict] = []

    @property
    def oauth_configured(self) -> bool:
        return bool(getattr(self.auth, "client_id", None) and getattr(self.auth, "client_secret", None))

    def secrets(self) -> list[str]:
        """Tokens this request read from held replacements: the redactor masks them too."""
        return [t.get(k) for t in self._held_tokens for k in ("access_token", "refresh_token") if t.get(k)]

    def handle(self) -> Page:
        action = action_of(self.params)
        handlers = {"start": self.start, "callback": self.callback, "status": self.status,
                    "revoke": self.revoke, "replace": self.replace, "keep": self.keep}
        if self.status_page is not None:
            handlers.update(retry=self.retry, retry_all=self.retry_all)
        handler = handlers.get(action)
        try:
            if handler is None:
                raise RequestRefused(f"The action '{clip(action, 60)}' is not one this page knows. "
                                     "Use start, status or revoke.", title="Unknown action")
            page = handler()
        except RequestRefused as exc:
            page = error_page(exc.status, exc.title, str(exc), exit_code=0)
        except AuthorisationFailed as exc:
            page = error_page(400, "Outreach was not connected", str(exc), exit_code=exc.exit_code)
        except PluginError as exc:
            status = 502 if exc.exit_code == 1 else 400
            page = error_page(status, "Something went wrong", str(exc), exit_code=exc.exit_code)
        if self._issued:
            page.with_header(*set_cookie(self._issued, path=self._cookie_path(), secure=self._secure()))
        return page

    # --- the browser -----------------------------------------------------------------------------
    def _browser(self) -> str:
        """This browser's id, handing it one (Set-Cookie on this answer) when it has none."""
        if self.browser is None:
            self.browser = self._issued = new_browser_id()
        return self.browser

    @property
    def guard(self) -> FormGuard:
        return FormGuard(self._browser())

    def _cookie_path(self) -> str | None:
        own = getattr(self.auth, "redirect_uri", None)
        return urlsplit(own).path if own else None

    def _secure(self) -> bool:
        own = getattr(self.auth, "redirect_uri", None)
        if own:
            return urlsplit(own).scheme == "https"
        return str(self.params.get("_server_HTTPS") or "").lower() not in ("", "off", "0")

    def _require_client(self) -> None:
        if not self.oauth_configured:
            raise AuthorisationFailed("The Outreach OAuth client is not configured: run the installer "
                                      "with --client-id and a client secret (or set the "
                                      "outreach_client_id and outreach_client_secret parameters).")
        if self.address_problem is not None:
            raise self.address_problem
        if not getattr(self.auth, "redirect_uri", None):
            raise AuthorisationFailed("This page cannot tell its own address: set its redirect_uri "
                                      "parameter to the URL registered with Outreach.")

    # --- start ---------------------------------------------------------------------------------------
    def start(self) -> Page:
        self._require_client()
        if self.browser is None:
            if request_value(self.params, "cookie_check"):
                raise RequestRefused("Your browser did not send back the cookie this page set, so the "
                                     "authorisation could not be tied to it. Allow cookies for this "
                                     "site, then open this page again.")
            # Come back with the cookie first: a hit that cannot carry it (another site's image
            # or frame) then stores no state at all.
            self._browser()
            return Page(303, [("Location", "?action=start&cookie_check=1"), ("Cache-Control", "no-store")],
                        "")
        now = self._clock()
        pending = [p for p in self._pending() if p.get("expires_at", 0) > now]
        mine = [p for p in pending if same_browser(self.browser, p.get("browser_sha256"))]
        others = [p for p in pending if p not in mine]
        kept = mine[-(MAX_PENDING_PER_BROWSER - 1):]
        if len(others) + len(kept) + 1 > MAX_PENDING_STATES:
            if not kept:
                soonest = min(int(p.get("expires_at", now)) for p in others)
                raise RequestRefused(
                    f"Too many authorisations are in progress in this database ({len(others)}, started "
                    "from other browsers). Each lasts at most "
                    f"{STATE_TTL_SECONDS // 60} minutes: try again after "
                    f"{time.strftime('%H:%M UTC', time.gmtime(soonest))}.", status=429,
                    title="Outreach authorisation is busy")
            kept = kept[1:]
        nonce = secrets.token_urlsafe(32)
        record = {"nonce_sha256": _digest(nonce), "browser_sha256": browser_digest(self.browser),
                  "database": dict(self.database), "created_at": int(now),
                  "expires_at": int(now + STATE_TTL_SECONDS)}
        self.state.put("oauth_state", {"pending": others + kept + [record]})
        location = self.auth.authorize_url(nonce, self.scopes)
        page = html_page("Connecting to Outreach", f'<p>Continue to <a href="{escape(location)}">Outreach</a> '
                                                   "to authorise.</p>", status=302)
        page.headers.insert(0, ("Location", location))
        return page

    def _pending(self) -> list[dict]:
        stored = self.state.get("oauth_state")
        pending = stored.get("pending") if isinstance(stored, dict) else None
        return [p for p in pending or [] if isinstance(p, dict)]

    # --- callback ------------------------------------------------------------------------------------
    def callback(self) -> Page:
        error = request_value(self.params, "error")
        if error:
            description = request_value(self.params, "error_description") or ""
            said = clip(error, 100) + (": " + clip(description) if description else "")
            raise RequestRefused(f"Outreach did not grant access ({said}). Nothing was stored; start "
                                 "again when ready.")
        code = request_value(self.params, "code")
        nonce = request_value(self.params, "state")
        if not code or not nonce:
            raise RequestRefused("The answer from Outreach is incomplete (no code or no state). "
                                 "Start the authorisation again from this page.")
        self._consume_state(nonce)
        self._require_client()
        try:
            record = self.auth.redeem_code(code, instance_url=self.instance_url)
        except NotAuthorised as exc:
            from plugin.oauth import CODE_REFUSED
            if str(exc).startswith(CODE_REFUSED):
                raise RequestRefused(str(exc)) from None     # a forged or stale code: nothing to fix
            raise
        user = self.identify(record["access_token"])
        record["outreach_user"] = user
        current = self.auth.status()
        if current is None or same_user(current.get("outreach_user"), user):
            self.auth.adopt(record)
            return self._connected("Outreach is connected.")
        return self._hold(record, current)

    def _consume_state(self, nonce: str) -> None:
        """Single use: the matching record is removed before the code is exchanged, so a replayed
        callback fails even when the exchange itself fails."""
        now = self._clock()
        digest = _digest(nonce)
        pending = self._pending()
        match = next((p for p in pending if hmac.compare_digest(str(p.get("nonce_sha256", "")), digest)), None)
        remaining = [p for p in pending if p is not match and p.get("expires_at", 0) > now]
        if match is not None or len(remaining) != len(pending):
            self.state.put("oauth_state", {"pending": remaining})
        again = " Start the authorisation again from this page."
        if match is None:
            raise RequestRefused("This authorisation link is not one this database started, or it "
                                 "was already used." + again)
        if match.get("expires_at", 0) <= now:
            raise RequestRefused("This authorisation took too long and has expired." + again)
        if not same_browser(self.browser, match.get("browser_sha256")):
            # Whoever started it is not this browser: someone else's authorisation, sent here
            # to connect their Outreach account in this administrator's name.
            raise RequestRefused("This authorisation was started in another browser, so it is not "
                                 "accepted here. Nothing was changed. If you started it, finish it "
                                 "in the browser you started it from." + again)
        if not same_database(match.get("database"), self.database):
            raise RequestRefused(
                f"This authorisation was started in {describe_database(match.get('database'))}, not in "
                f"this database ({describe_database(self.database)}). Start it again from this database.")

    def _connected(self, headline_note: str) -> Page:
        notes = [headline_note]
        if self.on_authorised is not None:
            extra = self.on_authorised()
            if extra:
                notes.append(extra)
        return self.status(notice=" ".join(notes))

    # --- replacing a connection to someone else ------------------------------------------------------
    def _hold(self, record: dict, current: dict) -> Page:
        now = self._clock()
        self.state.put(REPLACEMENT_KEY, {
            "tokens": record, "browser_sha256": browser_digest(self._browser()),
            "database": dict(self.database), "created_at": int(now),
            "expires_at": int(now + REPLACEMENT_TTL_SECONDS)})
        self._held_tokens.append(record)
        was, new = current.get("outreach_user"), record.get("outreach_user")
        body = (f"<p>Outreach is connected as <strong>{escape(describe_user(was))}</strong>. This "
                f"authorisation was granted by <strong>{escape(describe_user(new))}</strong>.</p>"
                "<p>Replacing the connection makes every later sync write to Outreach as the new user. "
                "If you did not just authorise Outreach yourself, keep the current connection.</p>"
                + self.guard.form("replace", "Replace the connection")
                + self.guard.form("keep", "Keep the current connection")
                + f"<p>Nothing changes unless you choose within {REPLACEMENT_TTL_SECONDS // 60} minutes.</p>")
        return html_page("Replace the Outreach connection?", body)

    def _held(self) -> dict | None:
        held = self.state.get(REPLACEMENT_KEY)
        if not isinstance(held, dict) or not isinstance(held.get("tokens"), dict):
            return None
        self._held_tokens.append(held["tokens"])
        return held

    def replace(self) -> Page:
        if not self.guard.accepts(self.params, "replace"):
            raise RequestRefused("This request to replace the Outreach connection did not come from this "
                                 "page's form. Nothing was changed.", status=403)
        held = self._held()
        if held is None or not same_browser(self.browser, held.get("browser_sha256")):
            raise RequestRefused("No new authorisation is waiting for this browser. Nothing was changed.")
        self.state.delete(REPLACEMENT_KEY)
        if held.get("expires_at", 0) <= self._clock():
            raise RequestRefused("The new authorisation waited too long and was discarded. Nothing was "
                                 "changed; start the authorisation again if you still want to switch.")
        if not same_database(held.get("database"), self.database):
            raise RequestRefused("The new authorisation was made in another database. Nothing was changed.")
        self._require_client()
        self.auth.adopt(held["tokens"])
        return self._connected(f"Outreach is connected as {describe_user(held['tokens'].get('outreach_user'))}, "
                               "replacing the previous connection.")

    def keep(self) -> Page:
        if not self.guard.accepts(self.params, "keep"):
            raise RequestRefused("This request did not come from this page's form. Nothing was changed.",
                                 status=403)
        held = self._held()
        if held is not None and same_browser(self.browser, held.get("browser_sha256")):
            self.state.delete(REPLACEMENT_KEY)
        return self.status(notice="The current Outreach connection was kept; the new authorisation was "
                                  "discarded.")

    # --- status --------------------------------------------------------------------------------------
    def status(self, notice: str | None = None) -> Page:
        shown = self.auth.status()     # never holds a token: database, instance URL, scopes, expiry
        rows: list[tuple[str, str]] = [("This database", describe_database(self.database))]
        problem = None
        if not shown:
            headline = "Outreach is not connected"
            intro = "<p>No Outreach account is authorised for this database.</p>"
        else:
            user = shown.get("outreach_user")
            rows += [
                ("Authorised by database", describe_database(shown.get("database"))),
                ("Outreach user", describe_user(user) if user else "not known"),
                ("Outreach instance URL", str(shown.get("instance_url") or "unknown")),
                ("Authorised scopes", " ".join(_scopes_of(shown)) or "unknown"),
                ("Access token expires", _expiry_words(shown.get("expires_at"), self._clock())),
                ("Authorised at", str(shown.get("authorised_at") or "unknown")),
            ]
            intro = ""
            if same_database(shown.get("database"), self.database):
                headline = "Outreach is connected"
            else:
                headline = "Outreach is connected to a different database"
                problem = ("These tokens were authorised in another Workbooks database (this one is "
                           "probably a copy of it). The sync refuses to use them. Revoke access here, "
                           "then authorise again from this database.")
        table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        if notice is None and self.status_page is not None:
            notice = notice_of(self.params)
        parts = [f'<p class="notice">{escape(notice)}</p>' if notice else "",
                 f'<p class="problem">{escape(problem)}</p>' if problem else ""]
        if self.status_page is not None:
            unusable = problem or (None if shown else "Outreach is not connected: nothing syncs until it is "
                                   "authorised (Authorise Outreach, under Outreach connection below).")
            parts += [self._status_sections(unusable), "<h2>Outreach connection</h2>"]
        parts += [intro, f"<table>{table}</table>",
                  '<p><a class="button" href="?action=start">Authorise Outreach</a></p>']
        if shown:
            parts.append(self.guard.form("revoke", "Revoke access"))
        return html_page(headline, "".join(parts))

    def _status_sections(self, connection_problem: str | None) -> str:
        from plugin.statusview import render
        try:
            page = int(request_value(self.params, "page") or 1)
        except ValueError:
            page = 1
        try:
            return render(self.status_page.facts(connection_problem, page), self.guard)
        except PluginError as exc:
            return f'<p class="problem">The sync status could not be read: {escape(clip(str(exc)))}</p>'

    # --- retry (the status page's records that need a person) -----------------------------------------
    def retry(self) -> Page:
        return self._retry("retry", self.status_page.retry)

    def retry_all(self) -> Page:
        return self._retry("retry_all", self.status_page.retry_all)

    def _retry(self, purpose: str, act: Callable[[dict], tuple[int, int]]) -> Page:
        if not self.guard.accepts(self.params, purpose):
            if request_method(self.params) == "POST":
                # Another site's form, or a replayed one: a flag is reset only from this page.
                raise RequestRefused("This Retry did not come from the status page's form. Nothing was "
                                     "changed.", status=403, title="Retry refused")
            return html_page("Retry", "<p>Records are retried with the Retry buttons of the status page; "
                                      "nothing was changed.</p><p><a href=\"?action=status\">Open the status "
                                      "page</a></p>")
        form = {k[len("_post_"):]: v for k, v in self.params.items() if k.startswith("_post_")}
        try:
            reset, changed = act(form)
        except ActionRefused as exc:
            raise RequestRefused(str(exc), status=exc.status, title="Nothing was reset") from None
        # Back to the page (303): a reload of it sends nothing again.
        return Page(303, [("Location", f"?done=retried&count={reset}&changed={changed}"),
                          ("Cache-Control", "no-store")], "")

    # --- revoke --------------------------------------------------------------------------------------
    def revoke(self) -> Page:
        if not self.guard.accepts(self.params, "revoke"):
            # A link, an image or another site's form must not disconnect the sync: revoking
            # takes this page's own form, which carries its anti-forgery token.
            posted = request_method(self.params) == "POST"
            body = ("<p class=\"problem\">This request did not come from this page's form. Nothing was "
                    "changed.</p>" if posted else "")
            body += ("<p>Revoking deletes the stored Outreach tokens; the sync stops until Outreach is "
                     "authorised again.</p>" + self.guard.form("revoke", "Revoke access"))
            return html_page("Revoke Outreach access?", body, status=403 if posted else 200)
        had_tokens = self.auth.status() is not None
        self.auth.revoke()
        if self.state.get(REPLACEMENT_KEY):
            self.state.delete(REPLACEMENT_KEY)      # nor may a held authorisation outlive it
        return self.status(notice="Outreach access was revoked: the stored tokens are deleted. The sync "
                                  "stops until Outreach is authorised again."
                           if had_tokens else "There were no stored Outreach tokens to revoke.")


# --- helpers --------------------------------------------------------------------------------------

def _digest(nonce: str) -> str:
    # Only a hash is stored: API Data is readable by other processes in the database.
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def _scopes_of(tokens: dict) -> list[str]:
    scopes = tokens.get("scopes") or tokens.get("scope") or []
    if isinstance(scopes, str):
        scopes = scopes.replace("+", " ").split()
    return [str(s) for s in scopes]


def _expiry_words(expires_at: Any, now: float) -> str:
    try:
        when = float(expires_at)
    except (TypeError, ValueError):
        return "unknown"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    left = int(when - now)
    if left <= 0:
        return f"{stamp} (expired; it is refreshed on the next run)"
    return f"{stamp} (in {left // 60} min)"


# --- the web process's entry point (scripts/outreach_authorise.py) ------------------------------------

SEND_RECEIVE_KEY = "send_receive"


def enable_sync_process(workbooks, install: dict | None) -> str | None:
    """The installer creates "Outreach Send/Receive" disabled until Outreach is authorised (and a
    run that finds no tokens exits 2, which disables it): switch it on now. Failing to is not
    fatal — the page says what to do instead. When Workbooks does not show `enabled` (R2.3),
    or does not show it switched on after the write, the page asks a person to switch it on."""
    from .install import AUTOMATION_MENU, PROCESS_ENDPOINTS

    recorded = ((install or {}).get("processes") or {}).get(SEND_RECEIVE_KEY) or {}
    if not recorded.get("id"):
        return None
    endpoint = PROCESS_ENDPOINTS["scheduled"]
    title = recorded.get("title") or "Outreach Send/Receive"
    by_hand = (f"Now switch on the scheduled process '{title}' in Workbooks ({AUTOMATION_MENU}) and "
               "check that it runs every minute: the sync starts with its next run.")
    try:
        rows = workbooks.get(endpoint, filters=[("id", "eq", recorded["id"])],
                             columns=["id", "lock_version", "enabled"], limit=1)
        if not rows:
            return f"The scheduled process '{title}' was not found: run the installer again."
        row = rows[0]
        if row.get("enabled") is None:
            # Workbooks does not show `enabled` (its API name is a guess, workbooks-api.md R2.3):
            # writing it would be refused, or silently dropped. A person switches it on.
            return by_hand
        if row.get("enabled") in (True, "true", "1", 1):
            return None
        result = workbooks.batch(endpoint, [{"__method": "PUT", "id": row["id"],
                                             "lock_version": row.get("lock_version") or 0, "enabled": True}])[0]
        if result.ok and result.affected.get("enabled") in (True, "true", "1", 1):
            return f"The scheduled process '{title}' is enabled: the sync starts within a minute."
        if result.ok:
            return by_hand        # accepted, yet not shown back as enabled: not to be trusted
        reason = "; ".join(result.errors) or "no reason given"
    except PluginError as exc:
        reason = str(exc)
    return f"Enable the scheduled process '{title}' under Automation to start syncing ({reason})."


def main(argv: list[str] | None = None) -> int:
    """Answer one web request: `[header]` lines, then the page. Exit 0 for every page a request
    deserves (refused ones too), 2 when a person must fix the configuration, 1 for a fault.
    `--revoke` (a person at a command line, not a web request): delete the stored tokens."""
    from .connection import open_workbooks
    from .endpoints import outreach_urls, tls_warning, verify_tls
    from .manifest import load_manifest
    from .http import HttpClient
    from .oauth import OutreachAuth, client_credentials
    from .outreach_user import connected_user
    from .redact import Redactor
    from .runtime import Log, load_params
    from .state import StateStore
    from .status import STATE_KEYS as STATUS_KEYS, StatusPage

    redactor = Redactor()
    connection = None
    revoke_here = "--revoke" in (argv or [])
    try:
        params = load_params(argv)
        manifest = load_manifest()
        defaults = manifest.process("authorise").parameters
        settings = {**defaults, **{k: v for k, v in params.items() if v not in (None, "")}}
        connection = open_workbooks(settings, redactor, name="workbooks")
        state = StateStore(connection.workbooks)
        state.prefetch(["install", "tokens", "oauth_state", REPLACEMENT_KEY, *STATUS_KEYS])
        install = state.get("install")
        client_id, client_secret, recorded_redirect = client_credentials(settings, install)
        redactor.add(client_secret)
        address_problem = None
        try:
            own_url = settings.get("redirect_uri") or recorded_redirect or \
                redirect_uri(settings, connection.workbooks.service)
        except ActionRequired:
            own_url = None                      # only start/callback need it; they say so
        except RequestRefused as exc:
            own_url, address_problem = None, exc
        settings.update(outreach_urls(settings))    # https only, the runner's rule (ParamsError → exit 2)
        if tls_warning(settings):
            print(f"[warning] {tls_warning(settings)}", file=sys.stderr)
        oauth_http = HttpClient("outreach-oauth", verify=verify_tls(settings),
                                deadline=connection.deadline, secrets=lambda: [client_secret or ""])
        redactor.add_source(oauth_http.secrets)
        auth = OutreachAuth(state, oauth_http, oauth_url=str(settings["outreach_oauth_url"]),
                            client_id=client_id, client_secret=client_secret,
                            database=connection.workbooks.database, redirect_uri=own_url)
        if revoke_here:
            auth.revoke()
            state.delete(REPLACEMENT_KEY)
            Log(redactor=redactor).notice("Outreach access was revoked: the stored tokens are deleted")
            return 0
        workbooks = connection.workbooks
        api_url = str(settings.get("outreach_api_url") or "") or None
        process = AuthorisationProcess(
            settings, state=state, auth=auth, database=workbooks.database, scopes=manifest.scopes,
            instance_url=api_url, on_authorised=lambda: enable_sync_process(workbooks, install),
            identify=(lambda token: connected_user(oauth_http, api_url, token)) if api_url else None,
            address_problem=address_problem, status_page=StatusPage(workbooks, state, install, settings))
        redactor.add_source(process.secrets)
        page = process.handle()
    except PluginError as exc:
        if revoke_here:
            Log(redactor=redactor).error(f"revoke failed: {exc}")
            return exc.exit_code
        page = error_page(502 if exc.exit_code == 1 else 400, "Outreach authorisation is unavailable",
                          redactor(str(exc)), exit_code=exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the browser must get a page, never a traceback
        # The details go to stderr (the process log), redacted; the page stays plain.
        print(redactor(traceback.format_exc()), file=sys.stderr)
        page = error_page(500, "Outreach authorisation failed",
                          f"An unexpected error occurred ({type(exc).__name__}). Try again; if it "
                          "persists, the process log has the details.", exit_code=1)
    finally:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - logging out is a courtesy
                pass
    for line in page.lines():
        print(redactor(line))
    return page.exit_code
