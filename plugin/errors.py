"""The plugin's typed exceptions. Each one knows the runner exit code it leads to (DESIGN §3):

  0  the run did its work (BudgetSpent: the hourly Outreach budget is used up, carry on next hour)
  1  a transient fault stopped it: try again later
  2  a person must act (this disables the scheduled process, so never for anything a retry fixes)

Every message is safe to print: whoever raises one redacts secrets first (plugin.redact).
"""
from __future__ import annotations

from typing import Any


class PluginError(Exception):
    """Base of everything the plugin raises on purpose. Unexpected answers default to exit 1:
    a retry costs one minute, a wrong exit 2 disables the process until someone notices."""

    exit_code = 1

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- transient (exit 1) ---------------------------------------------------------------------------

class TransientError(PluginError):
    """Network, timeouts, 5xx, 429, lock conflicts: retried next run, never flags a record."""

    exit_code = 1


class RateLimited(TransientError):
    """A 429 we could not wait out inside this run. `retry_at` is epoch seconds when known."""

    def __init__(self, message: str = "rate limited", retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class UnsafeRedirect(TransientError):
    """A redirect or a paging link the plugin will not follow: to another host than the one the
    request was for (it would carry a token, a session cookie or personal data there), or on a
    request that never follows one (the OAuth token request, which carries the client secret).
    Nothing was sent to the named host. Transient, so no record is flagged for it; the run stops
    and its log names the host."""


# --- a person must act (exit 2) -------------------------------------------------------------------

class ActionRequired(PluginError):
    exit_code = 2


class NotAuthorised(ActionRequired):
    def __init__(self, message: str = "Outreach is not authorised: run the authorisation") -> None:
        super().__init__(message)


class MissingScope(NotAuthorised):
    """Outreach refused a request for want of one OAuth scope (403 unauthorizedOauthScope). An
    authorisation made before a feature needed that scope lacks it: the feature can be skipped
    with a warning while everything else carries on; left uncaught it is still exit 2."""

    def __init__(self, scope: str, message: str) -> None:
        super().__init__(message)
        self.scope = scope


class NotInstalled(ActionRequired):
    def __init__(self, message: str = "the plugin is not installed: run the installer") -> None:
        super().__init__(message)


class InvalidMapping(ActionRequired):
    """`problems` are already formatted `FILE:LINE:COL: … — …`, one per problem."""

    def __init__(self, problems: list[str] | str, message: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        if message is None:
            count = len(self.problems)
            head = f"the mapping is invalid ({count} problem{'s' if count != 1 else ''})"
            message = "\n".join([head + ":", *self.problems]) if self.problems else head
        super().__init__(message)


class BadCredentials(ActionRequired):
    """Workbooks rejected the API key / login, or the user may not use the API."""

    def __init__(self, message: str = "Workbooks rejected the credentials",
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


# --- answers we did not expect (exit 1 unless a subclass says otherwise) --------------------------

class ApiError(PluginError):
    def __init__(self, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class WorkbooksError(ApiError):
    pass


class OutreachError(ApiError):
    """`error_id`, `detail`, `pointer` come from the JSON:API `errors[0]`."""

    def __init__(self, message: str, status: int | None = None, error_id: str | None = None,
                 detail: str | None = None, pointer: str | None = None) -> None:
        super().__init__(message, status, detail)
        self.error_id = error_id
        self.pointer = pointer


class OutreachNotFound(OutreachError):
    """404: the linked Prospect/Account no longer exists in Outreach (a permanent record error)."""


class OutreachValidation(OutreachError):
    """422: duplicate email hash, excluded email, data too long, …"""


# --- stop early, nothing wrong (exit 0) -----------------------------------------------------------

class BudgetSpent(PluginError):
    """The plugin's own hourly Outreach request budget (or Outreach's remaining quota, less a
    safety margin) is used up. Raised BEFORE sending, so Outreach never answers 429. The run stops
    starting Outreach work and exits 0: the backlog is normal and the next hour carries on."""

    exit_code = 0

    def __init__(self, message: str = "the hourly Outreach request budget is spent",
                 retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


def exit_code_for(exc: BaseException) -> int:
    """The runner's exit code for any exception: ours know theirs, anything else is a bug → 1."""
    return exc.exit_code if isinstance(exc, PluginError) else 1
