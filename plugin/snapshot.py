"""The sync snapshot: what this plugin last sent to Outreach for one record, kept in the hidden
"Outreach Sync Snapshot" field so a later run can tell which mapped values really changed.

Values are stored as short hashes, not verbatim: the field stays small whatever the record holds
(a 10,000-character biography costs 12 characters), and no personal data is duplicated.
Relationships (account, owner) and the Employer id are kept verbatim because they are small ids
the planner needs to reason about (see `plan_account`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1


def value_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


@dataclass
class Snapshot:
    attributes: dict[str, str] = field(default_factory=dict)   # attribute -> value_hash
    account: int | None = None
    owner: int | None = None
    employer: int | None = None
    assignee: int | None = None      # the Assigned To queue the owner was worked out from

    @classmethod
    def parse(cls, text: str | None) -> "Snapshot":
        """An unreadable or foreign snapshot counts as empty: the worst case is one PATCH that
        re-sends every mapped value, never a lost update."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != VERSION:
                return cls()
            return cls(attributes=dict(data.get("a") or {}), account=data.get("acc"),
                       owner=data.get("own"), employer=data.get("emp"), assignee=data.get("asg"))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        data: dict[str, Any] = {"v": VERSION, "a": dict(sorted(self.attributes.items()))}
        for key, value in (("acc", self.account), ("own", self.owner), ("emp", self.employer),
                           ("asg", self.assignee)):
            if value is not None:
                data[key] = value
        return json.dumps(data, separators=(",", ":"))

    def changed_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The mapped attributes whose value differs from what was last sent. Attributes absent
        from `attributes` (e.g. skip_empty with an empty source) are left alone in Outreach."""
        return {name: value for name, value in attributes.items()
                if self.attributes.get(name) != value_hash(value)}

    def with_sent(self, attributes: dict[str, Any], *, account: Any = ..., owner: Any = ...,
                  employer: Any = ..., assignee: Any = ...) -> "Snapshot":
        merged = dict(self.attributes)
        merged.update({name: value_hash(value) for name, value in attributes.items()})
        return Snapshot(attributes=merged,
                        account=self.account if account is ... else account,
                        owner=self.owner if owner is ... else owner,
                        employer=self.employer if employer is ... else employer,
                        assignee=self.assignee if assignee is ... else assignee)

    @classmethod
    def of_remote(cls, resource: dict, attribute_names) -> "Snapshot":
        """What an existing Outreach record holds, for adopting a record created by an earlier,
        interrupted run: hashing the remote values lets the normal diff PATCH only what differs."""
        remote = resource.get("attributes") or {}
        rels = resource.get("relationships") or {}
        return cls(attributes={n: value_hash(remote.get(n)) for n in attribute_names if n in remote},
                   account=_relationship_id(rels, "account"), owner=_relationship_id(rels, "owner"))


def _relationship_id(relationships: dict, name: str) -> int | None:
    data = (relationships.get(name) or {}).get("data")
    return data.get("id") if isinstance(data, dict) else None
