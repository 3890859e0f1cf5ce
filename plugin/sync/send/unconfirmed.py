"""Creates this plugin cannot be sure about: the match-key values each was sent with, kept in API
Data until its write-back succeeds.

A record created by a run whose answer (or whose write-back) was lost is found again next run,
and adopted because it carries our marker. Prospects are found by a look-up on their emails
(`externalId` is not filterable, outreach-api.md §3.1): if the email is edited in between, that
look-up misses it and a second prospect would be created, so the emails it was created with are
looked up too. Accounts are found by their marker; the note then tells our own create, renamed
in Workbooks since, from an account someone else marked (send/links.py: a marker alone is not
proof). Costs nothing while nothing fails: the key is read with the rest of the state and written
only when it changes.
"""
from __future__ import annotations

import time

from ...errors import PluginError
from ...kinds import Kind
from ...state import unconfirmed_key
from ..context import RunContext

KEEP_SECONDS = 14 * 86400


class UnconfirmedCreates:
    def __init__(self, ctx: RunContext, kind: Kind) -> None:
        self.ctx, self.kind = ctx, kind
        self.key = unconfirmed_key(kind.name)
        self._note: dict[str, dict] | None = None     # loaded on first use
        self._before: dict[str, dict] = {}

    def note(self) -> dict[str, dict]:
        if self._note is None:
            value = self.ctx.state.get(self.key)
            self._note = {str(k): dict(v) for k, v in value.items() if isinstance(v, dict)} \
                if isinstance(value, dict) else {}
            self._before = {k: dict(v) for k, v in self._note.items()}
        return self._note

    def keys_for(self, record_id: int) -> list[str]:
        """The match-key values an earlier create of this record may have been sent with."""
        entry = self.note().get(str(record_id), {})
        return [e for e in entry.get("keys") or entry.get("emails") or [] if isinstance(e, str)]

    def creating(self, record_id: int, values: list[str]) -> None:
        """Before the create is sent: until its write-back succeeds its outcome is not certain."""
        entry = self.note().setdefault(str(record_id), {})
        entry["keys"] = sorted(set(self.keys_for(record_id)) | set(values or []))
        entry.pop("emails", None)            # the name 0.1 gave them
        entry["at"] = int(time.time())

    def confirmed(self, record_id: int) -> None:
        """Its outcome is in Workbooks now."""
        if self._note:
            self._note.pop(str(record_id), None)

    def save(self) -> None:
        if self._note is None or self._note == self._before:
            return
        now = time.time()
        note = {k: v for k, v in self._note.items() if now - float(v.get("at") or now) < KEEP_SECONDS}
        try:
            # Retried: without this note, a person whose email is edited before the next run
            # would get a second Prospect (a fault storm lost it once in 48).
            self.ctx.state.put_until_saved(self.key, note)
        except PluginError as exc:
            self.ctx.log.warning(f"could not note the creates whose outcome is unknown ({exc})")
