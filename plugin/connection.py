"""Opening the Workbooks connection for the installer and the authorisation web process, from the
same parameters as the runner (DESIGN §3): `_workbooks_service` plus the Process Engine's
`_workbooks_*` session keys, or `workbooks_api_key`; `verify_tls`; env `TIMEOUT`.

Every secret the connection knows (API key, session ids, parameters such as the OAuth client
secret) is registered with one Redactor, which the log shares, so nothing printed carries one.
"""
from __future__ import annotations

from dataclasses import dataclass

from .deadline import Deadline
from .endpoints import verify_tls
from .http import HttpClient
from .redact import Redactor
from .runtime import secrets_in
from .workbooks import WorkbooksClient


@dataclass
class Connection:
    workbooks: WorkbooksClient
    http: HttpClient
    deadline: Deadline

    def close(self) -> None:
        # A Process-Engine session is ended; an API-key client has nothing to end.
        try:
            self.workbooks.logout()
        finally:
            self.http.close()


def open_workbooks(params: dict, redactor: Redactor, *, name: str = "workbooks",
                   default_timeout: float | None = None, deadline: Deadline | None = None) -> Connection:
    """Log in to Workbooks. Raises BadCredentials / TransientError (plugin.workbooks).
    `deadline`: the caller's, when its clock started earlier than this call (the runner's)."""
    fixed = secrets_in(params)
    for secret in fixed:
        redactor.add(secret)
    deadline = deadline or Deadline.from_env(default_timeout)
    # The client learns more secrets as it goes (session ids, tokens); the log asks it each time.
    http = HttpClient(name, verify=verify_tls(params), deadline=deadline,
                      secrets=lambda: fixed)
    redactor.add_source(http.secrets)
    try:
        workbooks = WorkbooksClient.connect(params, http)
    except BaseException:
        http.close()
        raise
    return Connection(workbooks, http, deadline)
