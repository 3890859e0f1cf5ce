"""A browser, as far as a Workbooks web process can tell: the request parameters Workbooks would
hand the process for one HTTP request, and the cookies it keeps between requests.

Workbooks passes a web process the request as parameters with prefixes (workbooks-api.md §2.4,
CL-PHP): `_server_*` (server variables), `_query_*`, `_post_*`, and `_cookie_*` (the request's
cookies). The process sets a cookie with a `[header] Set-Cookie: …` line (§2.5 `header()`). The
reference shows the prefixes but not the runtime's side, so this is our reading ([I]): a cookie
set by a page comes back as `_cookie_<name>` on the next request, and a `Location` relative to
the page (`?action=…`) is followed as a browser follows a 30x. The test harness, the install
helpers and the demo all talk to the web process through it.
"""
from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Iterable
from urllib.parse import parse_qsl, urlencode

SET_COOKIE = "[header] set-cookie:"


class Browser:
    def __init__(self, host: str, path: str, *, https: bool = True) -> None:
        self.host, self.path, self.https = host, path, https
        self.cookies: dict[str, str] = {}

    def params(self, request: dict, method: str = "GET") -> dict:
        """The parameters of one request: `request` holds its query (GET) or form (POST) values."""
        prefix = "_post_" if method == "POST" else "_query_"
        query = "?" + urlencode({k: "x" for k in request}) if request and method != "POST" else ""
        server = {"_server_REQUEST_METHOD": method, "_server_HTTP_HOST": self.host,
                  "_server_REQUEST_URI": self.path + query, "_server_HTTPS": "on" if self.https else "off"}
        cookies = {f"_cookie_{name}": value for name, value in self.cookies.items()}
        return {**server, **cookies, **{prefix + k: v for k, v in request.items()}}

    def keep(self, lines: Iterable[str]) -> None:
        """Take the cookies a page set (a `Max-Age=0` one is deleted, as a browser would)."""
        for line in lines:
            if not line.lower().startswith(SET_COOKIE):
                continue
            jar = SimpleCookie()
            try:
                jar.load(line.split(":", 1)[1].strip())
            except CookieError:
                continue
            for name, morsel in jar.items():
                if morsel["max-age"] in ("0", 0):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


def own_redirect(lines: Iterable[str]) -> dict | None:
    """The query of a 30x back to the page itself (`Location: ?…`), which a browser follows."""
    status, location = None, None
    for line in lines:
        lower = line.lower()
        if lower.startswith("[header] status:"):
            status = line.split(":", 1)[1].strip().split()[0]
        elif lower.startswith("[header] location:"):
            location = line.split(":", 1)[1].strip()
    if status in ("301", "302", "303", "307") and location and location.startswith("?"):
        return dict(parse_qsl(location[1:]))
    return None
