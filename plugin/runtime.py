"""The Process Engine adapter (DESIGN.md §3): where parameters come from, how the process log is
written, and which exit code an outcome gets. Scripts stay thin by leaning on this module.

Exit codes (workbooks-api.md §2.5): 0 the run did its work; 1 try again later (transient);
2 a person must act — Workbooks then disables the scheduled process, so 2 is never used for
anything a retry could fix.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from . import errors
from .errors import ActionRequired
from .redact import Redactor

LEVELS = ("error", "warning", "notice", "info", "debug")
EXIT_OK, EXIT_RETRY, EXIT_ACTION = 0, 1, 2

# Parameters that hold secrets: their values are redacted from every line we print.
SECRET_PARAMS = ("_workbooks_session_id", "workbooks_api_key", "_workbooks_api_logging_key",
                 "outreach_client_secret", "api_key", "password")


class ParamsError(ActionRequired):
    """The parameters themselves are unusable (bad JSON, missing connection details)."""


def load_params(argv: list[str] | None = None, environ: dict | None = None) -> dict:
    """Parameters: `--params FILE`, else env WORKBOOKS_PARAMS (JSON text), else the file named by
    env WORKBOOKS_PARAMS_FILE, else {}. Unknown arguments are left for the script."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--params")
    known, _ = parser.parse_known_args(argv)
    source, text = None, None
    if known.params:
        source = known.params
        text = _read(known.params)
    elif environ.get("WORKBOOKS_PARAMS"):
        source, text = "WORKBOOKS_PARAMS", environ["WORKBOOKS_PARAMS"]
    elif environ.get("WORKBOOKS_PARAMS_FILE"):
        source = environ["WORKBOOKS_PARAMS_FILE"]
        text = _read(source)
    if text is None:
        return {}
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise ParamsError(f"the parameters in {source} are not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"the parameters in {source} must be a JSON object")
    return params


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ParamsError(f"cannot read the parameters file {path}: {exc.strerror}") from None


def flag(params: dict, name: str, default: bool) -> bool:
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "t", "yes", "y", "on")


def number(params: dict, name: str, default: int) -> int:
    value = params.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ParamsError(f"parameter {name} must be a whole number, not {value!r}") from None


class Log:
    """`[level] message` lines on stdout (workbooks-api.md §2.5), every line passed through the
    run's Redactor so no token, key or session id is ever printed. The last line a run prints is
    its summary."""

    def __init__(self, stream: TextIO | None = None, level: str = "info",
                 redactor: Redactor | None = None) -> None:
        self.stream = stream or sys.stdout
        self.threshold = LEVELS.index(level) if level in LEVELS else LEVELS.index("info")
        self.redactor = redactor or Redactor()

    def write(self, level: str, message: str) -> None:
        if LEVELS.index(level) > self.threshold:
            return
        for line in self.redactor(str(message)).splitlines() or [""]:
            self.stream.write(f"[{level}] {line}\n")
        self.stream.flush()

    def error(self, message: str) -> None:
        self.write("error", message)

    def warning(self, message: str) -> None:
        self.write("warning", message)

    def notice(self, message: str) -> None:
        self.write("notice", message)

    def info(self, message: str) -> None:
        self.write("info", message)

    def debug(self, message: str) -> None:
        self.write("debug", message)


def secrets_in(params: dict) -> list[str]:
    return [str(params[k]) for k in SECRET_PARAMS if params.get(k)]


def exit_code_for(exc: BaseException | None) -> int:
    """0 for no exception; otherwise the exception's own code (an unexpected crash is 1: it is
    retried, never allowed to disable the process)."""
    return EXIT_OK if exc is None else errors.exit_code_for(exc)
