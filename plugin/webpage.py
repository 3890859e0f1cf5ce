"""A web process's answer, written safely onto Workbooks' line protocol.

Workbooks reads a web process's stdout line by line (workbooks-api.md §2.5: `header($str)` prints
`[header] <str>`, and the body follows): a line that starts with `[` is an instruction to the
runtime, not page text. So nothing that reaches stdout may carry its own line break, and no body
line may start with `[`:

  * header names and values lose every control character and line separator (a newline in a
    reflected value would otherwise print a standalone `[header] Location: …` line);
  * `escape()` (HTML escaping for everything a page shows) also encodes line breaks as
    character references, so reflected text stays on the line it was put on;
  * `Page.lines()` still splits the body on every line separator a reader might honour and
    encodes a leading `[` of any body line as `&#91;` (it renders the same).

What a page reflects from the request is cut with `clip()` first (a 2 MB `error_description`
must not come back whole).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

#: How much of a value taken from the request a page shows.
REFLECT_LIMIT = 300

# Everything Python's str.splitlines() breaks on, plus the other C0/C1 controls and DEL: a
# runtime reading lines may honour any of them.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")

HTML = "text/html; charset=utf-8"


def clip(value: Any, limit: int = REFLECT_LIMIT) -> str:
    """A request value fit to show: at most `limit` characters, marked when cut."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters not shown)"


def escape(value: Any) -> str:
    """HTML-escape, and encode line breaks and other controls as character references."""
    return _CONTROLS.sub(lambda m: f"&#{ord(m.group()):d};", html.escape(str(value), quote=True))


def header_value(value: Any) -> str:
    return _CONTROLS.sub(" ", str(value)).strip()


@dataclass
class Page:
    """One web-process answer: a status, headers and a body."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    exit_code: int = 0

    def lines(self) -> list[str]:
        out = [f"[header] Status: {int(self.status)}"]
        for name, value in self.headers:
            if not _HEADER_NAME.match(str(name)):
                raise ValueError(f"not a header name: {name!r}")     # ours are constants: a bug
            out.append(f"[header] {name}: {header_value(value)}")
        for line in _BREAKS.split(self.body) if self.body else []:
            out.append("&#91;" + line[1:] if line.startswith("[") else line)
        return out

    def with_header(self, name: str, value: str) -> "Page":
        self.headers.append((name, value))
        return self


def document(title: str, inner: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
            f"{escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:48em}"
            "th{text-align:left;padding-right:1em;vertical-align:top}"
            ".problem{color:#a00}.notice{color:#060}form{display:inline-block;margin-right:1em}"
            f"</style></head><body><h1>{escape(title)}</h1>{inner}</body></html>")


def html_page(title: str, inner: str, *, status: int = 200, exit_code: int = 0) -> Page:
    # Pages show the connection's state: never cached, by the browser or a proxy.
    return Page(status, [("Content-Type", HTML), ("Cache-Control", "no-store")], document(title, inner),
                exit_code=exit_code)


def error_page(status: int, title: str, message: str, *, exit_code: int) -> Page:
    body = (f'<p class="problem">{escape(message)}</p>'
            '<p><a href="?action=status">Back to the Outreach status</a></p>')
    return html_page(title, body, status=status, exit_code=exit_code)
