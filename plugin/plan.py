"""Pure decisions of a run: what to do with one Workbooks record, given what Outreach holds.
No I/O here, so every rule of the seed can be tested without a server."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .snapshot import Snapshot

# Deliberately permissive (Outreach is the final judge), but catches the common typos that
# would otherwise become a 422 per record: spaces, missing @, missing dot in the domain.
_EMAIL = re.compile(r"^[^\s@,;<>]+@[^\s@,;<>]+\.[^\s@,;<>]+$")

PENDING = object()   # the record must wait (e.g. its Employer is on its way to Outreach)


@dataclass(frozen=True)
class ObjectKind:
    name: str            # "person" | "organisation"  (mapping section, state keys, logs)
    endpoint: str        # Workbooks controller
    outreach_type: str   # "prospect" | "account"
    web_path: str        # path segment of the Outreach web URL
    marker_attribute: str  # where the Workbooks id is stamped, to recognise our own records
    label: str           # plural for the summary line

    def marker(self, database_id, record_id) -> str:
        return f"workbooks:{database_id}:{self.name}:{record_id}"


ORGANISATION = ObjectKind("organisation", "crm/organisations", "account", "accounts", "customId",
                          "organisations")
PERSON = ObjectKind("person", "crm/people", "prospect", "prospects", "externalId", "people")


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL.match(value))


def check_prospect_emails(attributes: dict) -> str | None:
    """Why a prospect cannot be created or kept in step, or None. Outreach dedupes prospects by
    email, so a prospect without one could never be matched again (sync-practices C2)."""
    emails = attributes.get("emails")
    if not emails:
        return "no email address: Outreach needs one to create a prospect (fill in the Email field)"
    bad = [e for e in emails if not valid_email(e)]
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


def plan_update(snapshot: Snapshot, mapped: dict, account, owner, *, relate_account: bool) -> Decision:
    decision = Decision(attributes=snapshot.changed_attributes(mapped))
    if relate_account and account != snapshot.account:
        decision.relationships["account"] = account
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
