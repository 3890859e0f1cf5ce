"""Secret redaction for every message the plugin formats (DESIGN §3: tokens, API keys, session
ids and client secrets never appear in any output).

Two layers, because neither alone is enough:
  * the exact secret strings a client knows right now (its API key, session id, current tokens),
    in raw and URL-encoded form;
  * patterns for secret-bearing parameters and headers (`api_key=…`, `"access_token": "…"`,
    `Authorization: Bearer …`, the `Workbooks-Session` cookie), which also catch secrets the
    client never learned (e.g. a token inside an error body).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

_SECRET_NAMES = (r"api_key|access_token|refresh_token|client_secret|session_id|_?authenticity_token"
                 r"|password|id_token|_workbooks_session_id|workbooks_api_key|outreach_client_secret")
_PATTERNS: list[tuple[re.Pattern, str]] = [
    # form / query parameters: api_key=…  (also percent-encoded names are rare enough to ignore)
    (re.compile(rf"(?i)\b({_SECRET_NAMES})=([^&\s\"',;]+)"), rf"\1={MASK}"),
    # the OAuth authorisation code in a callback URL
    (re.compile(r"(?i)([?&]code=)[^&\s\"']+"), rf"\1{MASK}"),
    # JSON / repr: "access_token": "…"  or 'access_token': '…'
    (re.compile(rf"(?i)([\"']({_SECRET_NAMES})[\"']\s*:\s*)([\"'])[^\"']*\3"), rf"\1\3{MASK}\3"),
    # headers
    (re.compile(r"(?i)\b(bearer|basic)\s+(?!\*\*\*)[A-Za-z0-9\-._~+/=]+"), rf"\1 {MASK}"),
    # any scheme ("Token x", "Basic x") or a bare value
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)([A-Za-z]+\s+)?[^\s\"',}]+"),
     rf"\1\2{MASK}"),
    (re.compile(r"(?i)(workbooks-session=)[^;\s\"',}]+"), rf"\1{MASK}"),
]

# Shorter strings would mask ordinary words; real secrets are far longer.
_MIN_SECRET_LEN = 6


def redact(text: object, secrets: Iterable[str] = ()) -> str:
    """`text` as a string with every known secret and secret-looking parameter masked."""
    out = str(text)
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LEN},
                         key=len, reverse=True):
        for form in {secret, quote_plus(secret), quote(secret, safe="")}:
            out = out.replace(form, MASK)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


class Redactor:
    """Collects secret sources (callables returning the current secret strings, or fixed
    strings) so one object redacts for a whole run; the runtime's logger can share it."""

    def __init__(self, *sources: Callable[[], Iterable[str]]) -> None:
        self._sources: list[Callable[[], Iterable[str]]] = list(sources)
        self._fixed: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret:
            self._fixed.add(str(secret))

    def add_source(self, source: Callable[[], Iterable[str]]) -> None:
        self._sources.append(source)

    def secrets(self) -> list[str]:
        found = set(self._fixed)
        for source in self._sources:
            try:
                found.update(s for s in source() if s)
            except Exception:  # noqa: BLE001 - redaction must never be the thing that fails
                continue
        return list(found)

    def __call__(self, text: object) -> str:
        return redact(text, self.secrets())
