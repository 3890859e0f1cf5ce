"""Pure helpers for following redirects by hand (plugin.http) and for judging links an answer
hands us (Outreach's `links.next`): where a redirect points, and whether that is still the host
the request was meant for.

"The same host" is the origin: scheme, host and port. A redirect from https to http on the same
host, or to another port, is another origin, so a token, a session cookie or a request body is
never re-sent there.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

# Redirects that are followed by re-sending the same request (method, body, headers) to the
# Location. 303 ("see other") is not among them: it says the request WAS processed and the answer
# is elsewhere, so re-sending a write would replay it.
FOLLOWED = frozenset({301, 302, 307, 308})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, lower-cased, the scheme's default port filled in."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:          # a port that is not a number: no origin matches it
        port = -1
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(url: str, other: str) -> bool:
    return origin(url) == origin(other) and bool(origin(url)[1])


def host_of(url: str) -> str:
    """`host` or `host:port` as a message may name it (never the path or query: they may carry
    anything, a secret included)."""
    parts = urlsplit(str(url))
    host = parts.hostname or "(no host)"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def location(response) -> str | None:
    """The absolute URL a 3xx answer points at (Location resolved against the request's URL), or
    None when it names none."""
    target = (response.headers.get("Location") or "").strip()
    if not target:
        return None
    return urljoin(str(response.request.url if response.request is not None else response.url), target)
