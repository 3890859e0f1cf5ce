"""The browser on the other side of a web process: a cookie that names it, and forms bound to it.

Workbooks hands a web process the request's cookies as `_cookie_<name>` parameters (the PHP
binding copies them into `$_COOKIE`, workbooks-api.md §2.4 [V]); the raw `Cookie` header, when a
runtime passes it as `_server_HTTP_COOKIE`, is read as a fallback (that reading is ours, [I]).
A page sets the cookie with a `[header] Set-Cookie: …` line (§2.5 `header()`).

* `browser_id(params)` is the random id in the cookie, or None. It is 256 bits from `secrets`;
  only digests of it are ever stored (API Data is readable by other users of the database).
* `set_cookie(id, …)` is the header that gives a browser its id: HttpOnly (no script reads it),
  SameSite=Lax (a cross-site image, frame or form POST does not carry it; the top-level GET back
  from Outreach does), Secure when the page is served over TLS.
* `FormGuard` is the anti-forgery token of a page's forms: an HMAC of the form's purpose keyed
  by the browser id. Another site can make the browser POST, but cannot read the cookie or the
  page, so it cannot produce the token. `accepts()` takes a POST only (a missing or unknown
  method is not one) that carries the right token for that purpose.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from http.cookies import CookieError, SimpleCookie

from .webpage import escape

COOKIE = "outreach_sync_browser"
COOKIE_MAX_AGE = 30 * 24 * 3600
TOKEN_FIELD = "form_token"
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")          # secrets.token_urlsafe(32)


def new_browser_id() -> str:
    return secrets.token_urlsafe(32)


def browser_id(params: dict) -> str | None:
    """The browser's id from its cookie; anything not shaped like one we issued is no id."""
    value = params.get(f"_cookie_{COOKIE}")
    if value in (None, ""):
        value = _from_header(params.get("_server_HTTP_COOKIE"))
    value = str(value or "")
    return value if _ID.match(value) else None


def _from_header(raw) -> str | None:
    if not raw:
        return None
    try:
        jar = SimpleCookie()
        jar.load(str(raw))
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def browser_digest(browser: str) -> str:
    """What a stored record keeps to recognise the browser again (never the id itself)."""
    return hashlib.sha256(f"outreach-sync browser|{browser}".encode("utf-8")).hexdigest()


def same_browser(browser: str | None, digest: object) -> bool:
    return bool(browser) and isinstance(digest, str) and hmac.compare_digest(browser_digest(browser), digest)


def set_cookie(browser: str, *, path: str | None, secure: bool) -> tuple[str, str]:
    parts = [f"{COOKIE}={browser}", f"Max-Age={COOKIE_MAX_AGE}", "HttpOnly", "SameSite=Lax"]
    if path and re.fullmatch(r"/[A-Za-z0-9._~/%-]*", path):
        parts.insert(1, f"Path={path}")
    if secure:
        parts.append("Secure")
    return "Set-Cookie", "; ".join(parts)


def request_method(params: dict) -> str | None:
    method = params.get("_server_REQUEST_METHOD")
    return str(method).strip().upper() if method else None


class FormGuard:
    """Anti-forgery tokens for the forms of pages shown to one browser (see the module docstring)."""

    def __init__(self, browser: str | None) -> None:
        self.browser = browser

    def token(self, purpose: str) -> str | None:
        if not self.browser:
            return None
        return hmac.new(self.browser.encode("utf-8"), f"outreach-sync form|{purpose}".encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def form(self, purpose: str, label: str, *, fields: dict[str, str] | None = None) -> str:
        """A POST form whose `action` field is `purpose`, carrying the token."""
        hidden = {"action": purpose, **(fields or {}), TOKEN_FIELD: self.token(purpose) or ""}
        inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items())
        return (f'<form method="post" action="?action={escape(purpose)}">{inputs}'
                f'<button type="submit">{escape(label)}</button></form>')

    def accepts(self, params: dict, purpose: str) -> bool:
        if request_method(params) != "POST":
            return False
        expected = self.token(purpose)
        given = params.get(f"_post_{TOKEN_FIELD}")
        return bool(expected) and isinstance(given, str) and hmac.compare_digest(given, expected)
