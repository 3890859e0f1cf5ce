"""Workbooks "Assigned To" → Outreach owner.

`assigned_to` holds a queue id (workbooks-api.md §7). A personal queue (queue_type "user") names
its user through `owner[login_name]` (an email) and `owner[person_name]`. The seed's rule: the
Outreach user whose username matches the Workbooks user name exactly becomes the owner; we also
accept an exact match on the login, then on the email (emails compare case-insensitively, as
mail systems do). No match leaves the owner empty, which is what the seed promises.
"""
from __future__ import annotations

from typing import Iterable


class OwnerDirectory:
    def __init__(self, queues: dict[int, dict], users: Iterable[dict]) -> None:
        self._queues = queues
        self._by_username: dict[str, int] = {}
        self._by_email: dict[str, int] = {}
        for user in users:
            attrs = user.get("attributes") or {}
            if attrs.get("locked"):
                continue  # a locked seat cannot own prospects usefully
            if attrs.get("username"):
                self._by_username.setdefault(attrs["username"], user["id"])
            if attrs.get("email"):
                self._by_email.setdefault(attrs["email"].strip().lower(), user["id"])

    def assignee(self, queue_id) -> tuple[str | None, str | None]:
        """(login_name, person_name) of the user behind a queue, or (None, None)."""
        queue = self._queues.get(_as_int(queue_id))
        if not queue or (queue.get("queue_type") or "").lower() != "user":
            return None, None
        return queue.get("owner[login_name]"), queue.get("owner[person_name]")

    def owner_for(self, queue_id) -> int | None:
        login, person_name = self.assignee(queue_id)
        for candidate in (login, person_name):
            if candidate and candidate in self._by_username:
                return self._by_username[candidate]
        if login:
            return self._by_email.get(login.strip().lower())
        return None


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
