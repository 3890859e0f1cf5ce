"""The sync snapshot: what this plugin last sent to Outreach for one record, kept in the hidden
"Outreach Sync Snapshot" field so a later run can tell which mapped values really changed.

Values are stored as short hashes, not verbatim: the field stays small whatever the record holds
(a 10,000-character biography costs 12 characters), and no personal data is duplicated.
Relationships (account, owner) and the Employer id are kept verbatim because they are small ids
the planner needs to reason about (see `plan_account`).

The field may be a 255-character `string` (Workbooks refused `text`: workbooks-api.md R2.2, §6.2),
where the readable form (version 1, JSON, ~30 characters per attribute) does not fit a mapping of
more than about eight attributes. `dump(limit)` then writes, in the first form that fits:

* version 2, `2<w>;acc;own;emp;asg;oid;wid;<tokens>`: per attribute one token of `w` base64
  characters (8 down to 4, i.e. 48 to 24 bits) of a hash of (attribute name, value hash), sorted,
  names not stored. An attribute is unchanged when its token is present. 30 attributes fit at w=6.
* version 3, `3;acc;own;emp;asg;oid;wid;<digest>`: one digest of every (name, value hash) pair;
  any change then re-sends every mapped attribute (one PATCH, as any change costs), nothing is
  lost; the receive side works out which side changed what by trying the values each side holds
  (`learn_base`).
Snapshots written before the link ids existed lack `oid;wid` (six parts) and read as such.

Both are sound: a token or digest only ever says "unchanged" for the value that was sent (a false
"unchanged" needs a hash collision: 2^-24 per changed attribute at the narrowest), and what cannot
be told apart is sent again. Version 2 cannot say which token belonged to an attribute that has
since changed, so `changed_attributes` names the tokens it matches, and `with_sent` keeps only
named entries: an attribute absent from the mapping at that time (skip_empty) loses its token and
is re-sent once when it comes back.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
TOKEN_WIDTHS = (8, 7, 6, 5, 4)
DIGEST_WIDTH = 16


def value_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


def _token(name: str, hashed: str, width: int) -> str:
    digest = hashlib.sha1(f"{name}\0{hashed}".encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:width]


def _digest(pairs: dict[str, str]) -> str:
    canonical = json.dumps(sorted(pairs.items()), separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(hashlib.sha1(canonical.encode("utf-8")).digest()).decode("ascii")[:DIGEST_WIDTH]


def _id_or_none(text: str) -> int | None:
    return int(text) if text.strip().lstrip("-").isdigit() else None


@dataclass
class Snapshot:
    attributes: dict[str, str] = field(default_factory=dict)   # attribute -> value_hash
    account: int | None = None
    owner: int | None = None
    employer: int | None = None
    assignee: int | None = None      # the Assigned To queue the owner was worked out from
    # The link this snapshot was made for, (Outreach record, Workbooks record): a link this plugin
    # made itself carries both, so an Outreach Id typed in, or copied from another record with its
    # snapshot, is told apart (sync/linked.py). Snapshots written before they existed have neither.
    outreach_id: int | None = None
    record_id: int | None = None
    # Read from a compact form (version 2 / 3), not yet matched to attribute names:
    tokens: frozenset[str] | None = None
    width: int = 0
    digest: str | None = None
    # The attribute names the last changed_attributes/with_sent dealt with: the mapping's current
    # set, which a digest (version 3) must cover exactly (names the mapping no longer sends would
    # make it differ on every run).
    scope: frozenset[str] | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | None) -> "Snapshot":
        """An unreadable or foreign snapshot counts as empty: the worst case is one PATCH that
        re-sends every mapped value, never a lost update."""
        if not text:
            return cls()
        try:
            if text.startswith(("2", "3")) and ";" in text:
                return cls._parse_compact(text)
            data = json.loads(text)
            if data.get("v") != VERSION:
                return cls()
            return cls(attributes=dict(data.get("a") or {}), account=data.get("acc"),
                       owner=data.get("own"), employer=data.get("emp"), assignee=data.get("asg"),
                       outreach_id=data.get("oid"), record_id=data.get("wid"))
        except (ValueError, TypeError, AttributeError):
            return cls()

    @classmethod
    def _parse_compact(cls, text: str) -> "Snapshot":
        parts = text.split(";")
        if len(parts) == 6:                                 # written before the link ids existed
            parts[5:5] = ["", ""]
        if len(parts) != 8:
            raise ValueError("not a compact snapshot")
        head, acc, own, emp, asg, oid, wid, body = parts
        ids = dict(account=_id_or_none(acc), owner=_id_or_none(own), employer=_id_or_none(emp),
                   assignee=_id_or_none(asg), outreach_id=_id_or_none(oid), record_id=_id_or_none(wid))
        if head == "3" and len(body) == DIGEST_WIDTH:
            return cls(digest=body, **ids)
        width = int(head[1:]) if head[:1] == "2" and head[1:].isdigit() else 0
        if width not in TOKEN_WIDTHS or len(body) % width:
            return cls()
        return cls(tokens=frozenset(body[i:i + width] for i in range(0, len(body), width)), width=width, **ids)

    def dump(self, limit: int | None = None) -> str:
        """The stored text; within `limit` characters when given (a `string` field holds 255):
        the readable JSON form if it fits, else the compact forms described above."""
        data: dict[str, Any] = {"v": VERSION, "a": dict(sorted(self.attributes.items()))}
        for key, value in (("acc", self.account), ("own", self.owner), ("emp", self.employer),
                           ("asg", self.assignee), ("oid", self.outreach_id), ("wid", self.record_id)):
            if value is not None:
                data[key] = value
        text = json.dumps(data, separators=(",", ":"))
        if limit is None or len(text) <= limit:
            return text
        ids = ";".join("" if v is None else str(v)
                       for v in (self.account, self.owner, self.employer, self.assignee, self.outreach_id,
                                 self.record_id))
        for width in TOKEN_WIDTHS:
            tokens = sorted({_token(name, hashed, width) for name, hashed in self.attributes.items()})
            text = f"2{width};{ids};" + "".join(tokens)
            if len(text) <= limit:
                return text
        current = self.attributes if self.scope is None else \
            {name: hashed for name, hashed in self.attributes.items() if name in self.scope}
        return f"3;{ids};{_digest(current)}"

    def changed_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The mapped attributes whose value differs from what was last sent. Attributes absent
        from `attributes` (e.g. skip_empty with an empty source) are left alone in Outreach.
        A compact snapshot learns here which attribute each matching token stands for."""
        hashed = {name: value_hash(value) for name, value in attributes.items()}
        self.scope = frozenset(attributes)
        if self.digest is not None:
            if _digest(hashed) != self.digest:
                return dict(attributes)          # cannot tell which: all are sent again
            self.attributes.update(hashed)
            self.digest = None
            return {}
        changed = {}
        for name, value in attributes.items():
            if self.attributes.get(name) == hashed[name]:
                continue
            if self.tokens is not None and _token(name, hashed[name], self.width) in self.tokens:
                self.attributes[name] = hashed[name]
                continue
            changed[name] = value
        return changed

    def learn_base(self, ours: dict[str, Any], theirs: dict[str, Any], most: int = 8) -> None:
        """A digest (version 3) names no attribute, so it cannot say which side changed what. The
        base was, attribute by attribute, what one side holds now (or neither, when both changed
        it): each combination of the values the two sides hold where they differ is tried, and the
        one that reproduces the digest is the base, known by name from then on. `ours`: what the
        send half would send now; `theirs`: Outreach's values of the attributes the mapping
        sends (one Workbooks left empty under skip_empty may have been in the base too). Past
        `most` differences, or when nothing matches, the digest stays as it is."""
        if self.digest is None:
            return
        hashed = {name: value_hash(value) for name, value in ours.items()}
        theirs_hashed = {name: value_hash(value) for name, value in theirs.items()}
        differing = sorted(n for n, h in theirs_hashed.items() if hashed.get(n) != h)
        if len(differing) > most:
            return
        for mask in range(1 << len(differing)):
            trial = dict(hashed)
            for bit, name in enumerate(differing):
                if mask >> bit & 1:
                    trial[name] = theirs_hashed[name]
            if _digest(trial) == self.digest:
                self.attributes.update(trial)
                self.digest = None
                return

    @property
    def empty(self) -> bool:
        """No snapshot at all (never synced by this plugin, or unreadable)."""
        return not self.attributes and self.tokens is None and self.digest is None \
            and self.outreach_id is None and self.record_id is None

    def agrees(self, name: str, value: Any) -> bool | None:
        """Whether `value` is the last agreed value of attribute `name` (what was last synced):
        the receive side's base for a three-way comparison. None when this snapshot cannot tell
        (a digest, version 3, names no attribute). A compact token absent means "not that value"."""
        hashed = value_hash(value)
        if name in self.attributes:
            return self.attributes[name] == hashed
        if self.tokens is not None:
            return _token(name, hashed, self.width) in self.tokens
        if self.digest is not None:
            return None
        return False

    def with_sent(self, attributes: dict[str, Any], *, account: Any = ..., owner: Any = ...,
                  employer: Any = ..., assignee: Any = ..., outreach_id: Any = ...,
                  record_id: Any = ...) -> "Snapshot":
        """What Outreach holds after sending `attributes`. Unmatched compact entries (tokens,
        digest) are dropped: they may stand for values just replaced."""
        merged = dict(self.attributes)
        merged.update({name: value_hash(value) for name, value in attributes.items()})
        scope = None if self.scope is None else self.scope | frozenset(attributes)
        return Snapshot(attributes=merged, scope=scope,
                        account=self.account if account is ... else account,
                        owner=self.owner if owner is ... else owner,
                        employer=self.employer if employer is ... else employer,
                        assignee=self.assignee if assignee is ... else assignee,
                        outreach_id=self.outreach_id if outreach_id is ... else outreach_id,
                        record_id=self.record_id if record_id is ... else record_id)

    @classmethod
    def of_remote(cls, resource: dict, attribute_names) -> "Snapshot":
        """What an existing Outreach record holds, for adopting a record created by an earlier,
        interrupted run: hashing the remote values lets the normal diff PATCH only what differs."""
        remote = resource.get("attributes") or {}
        rels = resource.get("relationships") or {}
        return cls(attributes={n: value_hash(remote.get(n)) for n in attribute_names if n in remote},
                   account=_relationship_id(rels, "account"), owner=_relationship_id(rels, "owner"),
                   outreach_id=_id_or_none(str(resource.get("id") or "")))


def _relationship_id(relationships: dict, name: str) -> int | None:
    data = (relationships.get(name) or {}).get("data")
    return data.get("id") if isinstance(data, dict) else None
