"""The authorisation web process: connect an Outreach account by OAuth 2.0 (authorisation code).

Workbooks runs a web process per HTTP request and hands it the request in the parameters, with
prefixes (workbooks-api.md §2.4): `_query_*` (query string), `_post_*` (form), `_server_*` (server
variables). The process answers by printing `[header] <header line>` lines, then the body.

Actions (`action` in the query or the form):
  start     302 to `{outreach_oauth_url}/authorize` with a `state` nonce bound to this database
  callback  (also: any request carrying `code` or `error`) check the state, exchange the code,
            store the tokens (plugin.oauth), then show the status page
  status    (default) what is connected: database, instance URL, scopes, expiry — never a token
  revoke    delete the stored tokens (POST, or run outside a web request); the runner then
            exits 2 with "Outreach is not authorised: run the authorisation"

A database copied from production carries production's API Data, tokens included: the tokens
and every pending `state` record which database they belong to, and both are refused elsewhere.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from plugin.errors import ActionRequired, PluginError

#: How long an authorisation started here may take to come back (the admin logs in to Outreach).
STATE_TTL_SECONDS = 600
#: Pending starts kept at once (two browser tabs, a retry); older ones are dropped.
MAX_PENDING_STATES = 5


class AuthorisationFailed(ActionRequired):
    """The callback cannot be accepted; the message says why in the administrator's words."""


@dataclass
class Page:
    """One web-process answer: a status, headers and a body."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    exit_code: int = 0

    def lines(self) -> list[str]:
        out = [f"[header] Status: {self.status}"]
        out += [f"[header] {name}: {value}" for name, value in self.headers]
        return out + ([self.body] if self.body else [])


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


def request_method(params: dict) -> str | None:
    method = params.get("_server_REQUEST_METHOD")
    return str(method).upper() if method else None


def redirect_uri(params: dict) -> str:
    """The web process's own URL, the OAuth redirect URI: parameter `redirect_uri` (it must match
    what is registered with Outreach), else rebuilt from the server variables, query removed."""
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
    parts = urlsplit(str(path))
    return urlunsplit((scheme, str(host), parts.path or "/", "", ""))


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
    `database` this database's identity (WorkbooksClient.database). `on_authorised` runs after a
    successful callback and may return a line for the page (e.g. "the sync process is enabled")."""

    def __init__(self, params: dict, *, state, auth, database: dict, scopes: list[str],
                 instance_url: str | None = None, on_authorised: Callable[[], str | None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.params = params
        self.state = state
        self.auth = auth
        self.database = database
        self.scopes = scopes
        self.instance_url = instance_url
        self.on_authorised = on_authorised
        self._clock = clock

    @property
    def oauth_configured(self) -> bool:
        return bool(getattr(self.auth, "client_id", None) and getattr(self.auth, "client_secret", None))

    def handle(self) -> Page:
        action = action_of(self.params)
        handlers = {"start": self.start, "callback": self.callback, "status": self.status,
                    "revoke": self.revoke}
        handler = handlers.get(action)
        if handler is None:
            return error_page(400, "Unknown action", f"The action '{action}' is not one this page knows. "
                              "Use start, status or revoke.", exit_code=2)
        try:
            return handler()
        except AuthorisationFailed as exc:
            return error_page(400, "Outreach was not connected", str(exc), exit_code=exc.exit_code)
        except PluginError as exc:
            status = 502 if exc.exit_code == 1 else 400
            return error_page(status, "Something went wrong", str(exc), exit_code=exc.exit_code)

    def _require_client(self) -> None:
        if not self.oauth_configured:
            raise AuthorisationFailed("The Outreach OAuth client is not configured: run the installer "
                                      "with --client-id and --client-secret (or set the "
                                      "outreach_client_id and outreach_client_secret parameters).")
        if not getattr(self.auth, "redirect_uri", None):
            raise AuthorisationFailed("This page cannot tell its own address: set its redirect_uri "
                                      "parameter to the URL registered with Outreach.")

    # --- start ---------------------------------------------------------------------------------------
    def start(self) -> Page:
        self._require_client()
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        pending = [p for p in self._pending() if p.get("expires_at", 0) > now]
        pending.append({"nonce_sha256": _digest(nonce), "database": dict(self.database),
                        "created_at": int(now), "expires_at": int(now + STATE_TTL_SECONDS)})
        self.state.put("oauth_state", {"pending": pending[-MAX_PENDING_STATES:]})
        location = self.auth.authorize_url(nonce, self.scopes)
        return Page(302, [("Location", location), ("Cache-Control", "no-store")],
                    _document("Connecting to Outreach",
                              f'<p>Continue to <a href="{_e(location)}">Outreach</a> to authorise.</p>'))

    def _pending(self) -> list[dict]:
        stored = self.state.get("oauth_state")
        pending = stored.get("pending") if isinstance(stored, dict) else None
        return [p for p in pending or [] if isinstance(p, dict)]

    # --- callback ------------------------------------------------------------------------------------
    def callback(self) -> Page:
        error = request_value(self.params, "error")
        if error:
            description = request_value(self.params, "error_description") or ""
            raise AuthorisationFailed(f"Outreach did not grant access ({error}{': ' + description if description else ''}). "
                                      "Nothing was stored; start again when ready.")
        code = request_value(self.params, "code")
        nonce = request_value(self.params, "state")
        if not code or not nonce:
            raise AuthorisationFailed("The answer from Outreach is incomplete (no code or no state). "
                                      "Start the authorisation again from this page.")
        self._consume_state(nonce)
        self._require_client()
        self.auth.exchange_code(code, instance_url=self.instance_url)
        notes = ["Outreach is connected."]
        if self.on_authorised is not None:
            extra = self.on_authorised()
            if extra:
                notes.append(extra)
        return self.status(notice=" ".join(notes))

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
        if match is None:
            raise AuthorisationFailed("This authorisation link is not one this database started, or it "
                                      "was already used. Start the authorisation again from this page.")
        if match.get("expires_at", 0) <= now:
            raise AuthorisationFailed("This authorisation took too long and has expired. "
                                      "Start the authorisation again from this page.")
        if not same_database(match.get("database"), self.database):
            raise AuthorisationFailed(
                f"This authorisation was started in {describe_database(match.get('database'))}, not in "
                f"this database ({describe_database(self.database)}). Start it again from this database.")

    # --- status --------------------------------------------------------------------------------------
    def status(self, notice: str | None = None) -> Page:
        shown = self.auth.status()     # never holds a token: database, instance URL, scopes, expiry
        rows: list[tuple[str, str]] = [("This database", describe_database(self.database))]
        problem = None
        if not shown:
            headline = "Outreach is not connected"
            intro = "<p>No Outreach account is authorised for this database.</p>"
        else:
            rows += [
                ("Authorised by database", describe_database(shown.get("database"))),
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
        table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        parts = [f'<p class="notice">{_e(notice)}</p>' if notice else "",
                 f'<p class="problem">{_e(problem)}</p>' if problem else "",
                 intro, f"<table>{table}</table>",
                 '<p><a class="button" href="?action=start">Authorise Outreach</a></p>']
        if shown:
            parts.append(_REVOKE_FORM)
        return Page(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                    _document(headline, "".join(parts)))

    # --- revoke --------------------------------------------------------------------------------------
    def revoke(self) -> Page:
        method = request_method(self.params)
        if method is not None and method != "POST":
            # A link or an image must not disconnect the sync: revoking takes the form's POST.
            body = ("<p>Revoking deletes the stored Outreach tokens; the sync stops until Outreach is "
                    "authorised again.</p>" + _REVOKE_FORM)
            return Page(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                        _document("Revoke Outreach access?", body))
        had_tokens = self.auth.status() is not None
        self.auth.revoke()
        return self.status(notice="Outreach access was revoked: the stored tokens are deleted. The sync "
                                  "stops until Outreach is authorised again."
                           if had_tokens else "There were no stored Outreach tokens to revoke.")


_REVOKE_FORM = ('<form method="post" action="?action=revoke"><input type="hidden" name="action" '
                'value="revoke"><button type="submit">Revoke access</button></form>')


def error_page(status: int, title: str, message: str, *, exit_code: int) -> Page:
    body = f'<p class="problem">{_e(message)}</p><p><a href="?action=status">Back to the Outreach status</a></p>'
    return Page(status, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                _document(title, body), exit_code=exit_code)


# --- helpers --------------------------------------------------------------------------------------

def _digest(nonce: str) -> str:
    # Only a hash is stored: API Data is readable by other processes in the database.
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


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


def _document(title: str, inner: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
            f"{_e(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:48em}"
            "th{text-align:left;padding-right:1em;vertical-align:top}"
            ".problem{color:#a00}.notice{color:#060}"
            f"</style></head><body><h1>{_e(title)}</h1>{inner}</body></html>")


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
    """Answer one web request: `[header]` lines, then the page. Exit 0 for a page shown as
    intended, 2 when a person must act (bad or foreign state, not configured), 1 for a fault."""
    from .connection import open_workbooks
    from .endpoints import outreach_urls, tls_warning, verify_tls
    from .manifest import load_manifest
    from .http import HttpClient
    from .oauth import OutreachAuth, client_credentials
    from .redact import Redactor
    from .runtime import load_params
    from .state import StateStore

    redactor = Redactor()
    connection = None
    try:
        params = load_params(argv)
        manifest = load_manifest()
        defaults = manifest.process("authorise").parameters
        settings = {**defaults, **{k: v for k, v in params.items() if v not in (None, "")}}
        connection = open_workbooks(settings, redactor, name="workbooks")
        state = StateStore(connection.workbooks)
        state.prefetch(["install", "tokens", "oauth_state"])
        install = state.get("install")
        client_id, client_secret, recorded_redirect = client_credentials(settings, install)
        redactor.add(client_secret)
        try:
            own_url = settings.get("redirect_uri") or recorded_redirect or redirect_uri(settings)
        except ActionRequired:
            own_url = None                      # only start/callback need it; they say so
        settings.update(outreach_urls(settings))    # https only, the runner's rule (ParamsError → exit 2)
        if tls_warning(settings):
            print(f"[warning] {tls_warning(settings)}", file=sys.stderr)
        oauth_http = HttpClient("outreach-oauth", verify=verify_tls(settings),
                                deadline=connection.deadline, secrets=lambda: [client_secret or ""])
        redactor.add_source(oauth_http.secrets)
        auth = OutreachAuth(state, oauth_http, oauth_url=str(settings["outreach_oauth_url"]),
                            client_id=client_id, client_secret=client_secret,
                            database=connection.workbooks.database, redirect_uri=own_url)
        workbooks = connection.workbooks
        page = AuthorisationProcess(
            settings, state=state, auth=auth, database=workbooks.database, scopes=manifest.scopes,
            instance_url=str(settings.get("outreach_api_url") or "") or None,
            on_authorised=lambda: enable_sync_process(workbooks, install)).handle()
    except PluginError as exc:
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
