"""One Workbooks record on its way through a page of the send pipeline, and the outcome it ends
with. The pipeline's own bookkeeping lives here, never in the Workbooks row itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ...kinds import Kind
from ...snapshot import Snapshot


class Outcome(str, Enum):
    CREATED = "created"
    ADOPTED = "adopted"         # linked to a record an interrupted earlier run had created
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    ERROR = "error"
    PENDING = "pending"         # left for a later run

    @property
    def synced(self) -> bool:
        """Outreach holds this record's mapped values now (or already did)."""
        return self in (Outcome.CREATED, Outcome.ADOPTED, Outcome.UPDATED, Outcome.UNCHANGED)

    @property
    def flagged(self) -> bool:
        return self in (Outcome.DUPLICATE, Outcome.ERROR)


@dataclass
class Item:
    row: dict
    kind: Kind
    mapped: dict[str, Any] | None = None
    snapshot: Snapshot = field(default_factory=Snapshot)
    outreach_id: int | None = None
    linked: bool = False            # had an Outreach Id when read
    account: Any = None             # the parent's Outreach record (a prospect's account)
    owner: int | None = None
    employer_id: int | None = None  # the parent's Workbooks id (a person's Employer)
    assignee: int | None = None     # Assigned To queue id
    outcome: Outcome | None = None
    message: str | None = None
    adopted: bool = False
    stamp_marker: bool = False      # a link someone else made, found adoptable: our marker goes with the PATCH
    verified: bool = False          # a link without a snapshot of ours, checked against Outreach (links.py)
    new_snapshot: Snapshot | None = None
    attributes_sent: list[str] = field(default_factory=list)
    echo: str | None = None         # updatedAt of our Outreach write, when receive need not read it back
    remote: dict | None = None      # the Outreach record found for it (adopted, or its link proved)
    receive_again: list[int] = field(default_factory=list)  # Outreach ids receive must read next run
    written: bool = False           # the write-back landed
    write_failed: str | None = None  # why the write-back did not land

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def version(self) -> tuple[str | None, int | None]:
        return self.row.get("updated_at"), self.row.get("lock_version")

    # --- deciding the outcome ----------------------------------------------------------------------
    def fail(self, message: str) -> None:
        self.outcome, self.message = Outcome.ERROR, message

    def duplicate(self, message: str) -> None:
        self.outcome, self.message = Outcome.DUPLICATE, message

    def defer(self, reason: str) -> None:
        if self.outcome is None:
            self.outcome, self.message = Outcome.PENDING, reason

    def describe(self) -> str:
        """How the process log names the record: `person 12 (PER-12, Ann Lee)`."""
        return describe_row(self.kind, self.row)


def describe_row(kind: Kind, row: dict) -> str:
    ref = row.get("object_ref") or f"id {row.get('id')}"
    name = row.get("name")
    label = f"{kind.name} {row.get('id')} ({ref}"
    return label + (f", {name})" if name else ")")
