"""Pure decisions of a run: what to do with one Workbooks record, given what Outreach holds.
No I/O here, so every rule of the seed can be tested without a server."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...emails import invisible
from ...snapshot import Snapshot

# Deliberately permissive (Outreach is the final judge), but catches the common typos that
# would otherwise become a 422 per record: spaces, missing @, missing dot in the domain.
_EMAIL = re.compile(r"^[^\s@,;<>]+@[^\s@,;<>]+\.[^\s@,;<>]+$")

PENDING = object()   # the record must wait (e.g. its Employer is on its way to Outreach)


_TRUE_WORDS = frozenset({"true", "t", "on", "1", "yes", "y"})      # workbooks-api.md §4.1


def flag_value(value: Any) -> bool:
    """A Workbooks checkbox as read back: JSON true/false (§3.4 [O]), or a word (§4.1)."""
    if isinstance(value, bool):
        return value
    return value is not None and str(value).strip().lower() in _TRUE_WORDS


def outside_pickup(row: dict, columns: dict[str, str]) -> str | None:
    """Why a record the pick-up query returned does not meet that query's own flags, or None.
    Workbooks may drop a filter on a column it does not know (workbooks-api.md §3.2 is silent;
    emulator switch `unknown_filter_field`), which would make the query match everything: a
    record only counts as picked up when it carries the flag values asked for (a column Workbooks
    does not know reads null, §3.3, so Sync to Outreach is then not ticked)."""
    if not flag_value(row.get(columns["sync"])):
        return "Sync to Outreach is not ticked"
    if flag_value(row.get(columns["sync_error"])):
        return "Outreach Sync Error is ticked"
    if flag_value(row.get(columns["duplicate"])):
        return "Outreach Duplicate is ticked"
    return None


class PickupGuard:
    """`outside(...)`: skip a record `outside_pickup` rejects, warning once per run."""

    def __init__(self, log) -> None:
        self.log = log
        self.skipped = 0

    def outside(self, row: dict, columns: dict[str, str], label: str) -> bool:
        reason = outside_pickup(row, columns)
        if reason is None:
            return False
        if not self.skipped:
            self.log.warning(f"Workbooks returned {label} the pick-up query excludes (e.g. id {row.get('id')}: "
                             f"{reason}), so it did not apply one of its filters; such records are skipped. "
                             "Check the plugin's fields with the installer's --check")
        self.skipped += 1
        return True


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[:max(0, limit - 1)] + "…"


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value)) and invisible(value) is None


def check_prospect_emails(attributes: dict) -> str | None:
    """Why a prospect cannot be created or kept in step, or None. Outreach dedupes prospects by
    email, so a prospect without one could never be matched again (sync-practices C2)."""
    emails = attributes.get("emails")
    if not emails:
        return "no email address: Outreach needs one to create a prospect (fill in the Email field)"
    bad = [e for e in emails if not valid_email(e)]
    if bad and isinstance(bad[0], str) and invisible(bad[0]):     # a look-alike of another address
        return f"the email address {bad[0]!r} contains {invisible(bad[0])}, an invisible character: retype the Email field"
    if bad:
        return f"invalid email address {bad[0]!r}: correct the Email field"
    return None


def plan_account(employer_id: int | None, employer: dict | None, snapshot: Snapshot):
    """The Outreach account a prospect should be related to.

    An Employer that qualifies and is in Outreach → its account. One that qualifies but is not in
    Outreach yet → PENDING (relate on a later run rather than never). One that does not qualify:
    keep the relation we made earlier if the Employer is unchanged (un-ticking an organisation
    should not rewrite its people in Outreach), otherwise no relation.
    """
    if employer_id and employer is not None and employer["qualifies"]:
        return employer["outreach_id"] if employer["outreach_id"] else PENDING
    if employer_id and employer_id == snapshot.employer:
        return snapshot.account
    return None


@dataclass
class Decision:
    """What to send to Outreach for one linked record."""
    attributes: dict[str, Any] = field(default_factory=dict)
    relationships: dict[str, int | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.attributes and not self.relationships


def plan_update(snapshot: Snapshot, mapped: dict, account, owner, *, parent_relationship: str | None) -> Decision:
    """What to PATCH: the mapped attributes that changed since the snapshot, and the parent
    relationship (a prospect's `account`; None for a kind without a parent) and owner when
    they changed."""
    decision = Decision(attributes=snapshot.changed_attributes(mapped))
    if parent_relationship and account != snapshot.account:
        decision.relationships[parent_relationship] = account
    if owner != snapshot.owner:
        decision.relationships["owner"] = owner
    return decision


def relationships_payload(relationships: dict[str, int | None]) -> dict:
    type_of = {"account": "account", "owner": "user"}
    return {name: {"data": ({"type": type_of[name], "id": rid} if rid is not None else None)}
            for name, rid in relationships.items()}


def outreach_int(value) -> int | None:
    """The Outreach Id field is text in Workbooks; a hand-edited value may be junk."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
