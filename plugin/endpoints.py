"""The parameters that say where and how the plugin connects to Outreach, checked the same way by
every process that reads them (the runner, the installer, the authorisation web process):

  * `outreach_api_url` and `outreach_oauth_url` must be https: the access and refresh tokens and
    the OAuth client secret travel to them. Plain http is allowed only for a loopback address
    (the local emulators). No user name or password in the URL.
  * `verify_tls` takes only clear spellings: true/false, yes/no, on/off, 1/0 (any case) or a JSON
    boolean; unset means true. A typo (`ture`, `enabled`, `2`) must not switch certificate checks
    off, so anything else is refused.

A refusal is a ParamsError naming the parameter (exit 2: a person must fix the parameter; no
retry could). `tls_warning` is the line every run logs while verify_tls is off.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .runtime import ParamsError

DEFAULT_URLS = {
    "outreach_api_url": "https://api.outreach.io/api/v2",
    "outreach_oauth_url": "https://api.outreach.io/oauth",
}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})

TLS_OFF = ("verify_tls is off: TLS certificates are not checked, so anyone between this process and "
           "Outreach or Workbooks can read the tokens and the data; set verify_tls to true")


def verify_tls(params: dict) -> bool:
    value = params.get("verify_tls")
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "…"
    raise ParamsError(f"parameter verify_tls must be true or false (also yes/no, on/off, 1/0), not {shown}: "
                      "certificate checks are switched off only when that is said clearly")


def tls_warning(params: dict) -> str | None:
    """The warning to log on this run, or None while certificates are checked."""
    return None if verify_tls(params) else TLS_OFF


def outreach_url(params: dict, name: str) -> str:
    """The parameter `name` (DEFAULT_URLS when unset), refused unless https or loopback http."""
    value = params.get(name)
    value = DEFAULT_URLS[name] if value in (None, "") else str(value).strip()
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname
        parts.port                      # noqa: B018 - raises on a port that is not a number
    except ValueError:
        host = None
    if scheme not in ("https", "http") or not host:
        raise ParamsError(f"parameter {name} must be an https:// URL such as {DEFAULT_URLS[name]}, not "
                          f"{_shown(value)}")
    if parts.username is not None or parts.password is not None:
        raise ParamsError(f"parameter {name} must not carry a user name or password ({scheme}://…@{host}): "
                          "Outreach is authorised by OAuth, not by credentials in the URL")
    if scheme == "http" and not _loopback(host):
        raise ParamsError(f"parameter {name} must use https, not http ({scheme}://{host}): the tokens and "
                          "the OAuth client secret would travel in clear text (plain http is allowed "
                          "only for a loopback address, such as the local emulators)")
    return value.rstrip("/")


def outreach_urls(params: dict) -> dict[str, str]:
    """Both Outreach URLs, checked: {"outreach_api_url": …, "outreach_oauth_url": …}."""
    return {name: outreach_url(params, name) for name in DEFAULT_URLS}


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    """Enough of a bad URL to recognise it, never its user info, path or query."""
    parts = urlsplit(value)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}…"
    return repr(value[:20] + ("…" if len(value) > 20 else ""))
