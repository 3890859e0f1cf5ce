"""Pure decisions of the receive side: what one Outreach record changes on its linked Workbooks
record. No I/O here.

Three-way, against the snapshot (the values both sides last agreed on, plugin/snapshot.py):
  * a `receive` field takes Outreach's value whenever it differs from Workbooks';
  * a `both` field takes it only when Outreach changed since the snapshot; if Workbooks changed
    too, the field's `conflict` rule decides (workbooks_wins: leave it, the send half PATCHes
    Workbooks' value; outreach_wins: take it); changed on neither side, nothing is written.
  * a `both` field with `skip_empty` that Workbooks holds empty takes Outreach's value: empty
    means "no value" there both ways (it never clears Outreach either);
  * Opt-outs are a ratchet: an Outreach opt-out sets No Email / No Call; nothing here ever
    clears one.
A compact snapshot that keeps one digest for all attributes is first resolved into the values
each side held (Snapshot.learn_base); where it cannot be, Workbooks wins and the send half sends.
After a write the snapshot takes, for each attribute received, what the send half would now send
(so our write to Workbooks never causes a write back to Outreach: no echo), and Outreach's value
wherever both sides hold the same. Any other attribute the write moved (one derived from a
received field, such as a send-only `domain` from a received website, or `emailOptedOut` from a
No Email ticked by Outreach's general opt-out) stays unagreed, so the send half sends it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ... import transforms as tf
from ...snapshot import Snapshot
from ...workbooks import parse_datetime
from .cursor import parse_time
from ..send.plan import flag_value

OPTED_OUT = "opted_out"
OPTED_OUT_LABEL = "Opted Out"
# Outreach's sequence state → what the Person shows (workbooks-outreach-plugin-kb.md §2.9; the
# pairing itself is [I], outreach-api.md §12).
STATE_LABELS = {"active": "Active – Running", "paused": "Active – Paused", "finished": "Finished",
                "pending": "Pending", "disabled": "Disabled", "failed": "Failed", "bounced": "Bounced"}
NOT_FINISHED = ("active", "paused", "pending", "failed", "bounced", "disabled")


@dataclass
class Change:
    column: str
    label: str          # how the log names the field: "title → person_job_title", "No Email"
    old: Any
    new: Any
    mapped: bool = True  # a mapped field (False: an opt-out or a sequence-state field)
    target: str | None = None   # the Outreach attribute a mapped field was received from


@dataclass
class RecordPlan:
    """What to write onto one Workbooks record."""
    changes: list[Change] = field(default_factory=list)
    opt_outs: list[str] = field(default_factory=list)     # "No Email", "No Call" set by this plan
    snapshot: Snapshot | None = None                        # the new snapshot, when it changed
    problems: list[str] = field(default_factory=list)      # values that cannot be received
    send_pending: bool = True                               # the send half still has work here

    @property
    def fields(self) -> dict[str, Any]:
        return {c.column: c.new for c in self.changes}

    @property
    def mapped_changes(self) -> list[Change]:
        return [c for c in self.changes if c.mapped]

    @property
    def empty(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class OptOutColumns:
    """Where a Person's opt-outs go: Workbooks' standard No Email / No Call (workbooks-api.md
    §5.2) and the plugin's own fields (the sequence-state ones may be missing on an older
    installation)."""
    no_email: str = "no_email_soliciting"
    no_phone: str = "no_phone_soliciting"
    opted_out_at: str | None = None
    sequence_state: str | None = None
    state_updated_at: str | None = None


def same_value(current: Any, new: Any) -> bool:
    """Whether a Workbooks field already holds `new` (Workbooks answers numbers and flags in its
    own spelling: "12", "1", true)."""
    if tf.is_empty(current) and tf.is_empty(new):
        return True
    if isinstance(new, bool) or isinstance(current, bool):
        return flag_value(current) == flag_value(new)
    if isinstance(new, (int, float)):
        try:
            return float(str(current).replace(",", "")) == float(new)
        except (TypeError, ValueError):
            return False
    return tf.as_text(current) == tf.as_text(new)


def plan_record(mapping, row: dict, remote: dict, snapshot: Snapshot, *, now: dt.datetime,
                opt_out_columns: OptOutColumns | None = None, take_fields: bool = True,
                format_time=None, mapped: dict | None = None) -> RecordPlan:
    """`mapping`: the kind's BoundMapping; `row`: the Workbooks record as read (every mapped
    column); `remote`: the Outreach record's attributes; `take_fields`: False for a record that
    receives only its opt-outs (flagged, or sharing the address of an opted-out prospect);
    `mapped`: `mapping.map(row)` when the caller has it already (the send half)."""
    plan = RecordPlan()
    forward, failed = (mapped, []) if mapped is not None else mapping.map_partial(row)
    snapshot.learn_base(forward, {spec.target: remote[spec.target] for spec in mapping.mapping.fields
                                  if spec.sends and spec.target in remote})
    # Which attributes Workbooks changed since the snapshot (this also teaches a compact
    # snapshot which of its tokens stand for which attribute).
    workbooks_changed = set(snapshot.changed_attributes(forward)) | {f[1] for f in failed}
    if take_fields:
        for spec in mapping.receiving:
            _plan_field(plan, mapping, spec, row, remote, snapshot, workbooks_changed)
    if opt_out_columns is not None:
        _plan_opt_outs(plan, row, remote, now, opt_out_columns, format_time)
    if plan.problems:
        plan.changes = [c for c in plan.changes if not c.mapped]   # opt-outs only: never half a record
    if plan.empty:
        return plan
    after, after_failed = mapping.map_partial({**row, **plan.fields})
    received = {c.target for c in plan.mapped_changes}
    agreed = {name: value for name, value in after.items()
              if remote.get(name) == value or (name in received and forward.get(name) != value)}
    new = snapshot.with_sent(agreed) if agreed else snapshot
    plan.snapshot = new if agreed else None
    plan.send_pending = bool(after_failed) or bool(new.changed_attributes(after))
    return plan


def _plan_field(plan: RecordPlan, mapping, spec, row: dict, remote: dict, snapshot: Snapshot,
                workbooks_changed: set[str]) -> None:
    if spec.target not in remote:
        return                                  # not in the answer (a sparse fieldset): nothing known
    value = remote.get(spec.target)
    if spec.skip_empty and tf.is_empty(value):
        return
    column = mapping.column(spec)
    label = f"{spec.target} → {column}"
    try:
        new = mapping.received(spec, value)
    except tf.TransformError as exc:
        plan.problems.append(f"{label}: {exc}")
        return
    current = row.get(column)
    if same_value(current, new):
        return
    # skip_empty: an empty Workbooks value is no value, never sent; Outreach's fills it
    if spec.direction == "both" and not (spec.skip_empty and tf.is_empty(current)):
        if snapshot.agrees(spec.target, value) is True:
            return                              # Outreach still holds the agreed value: Workbooks changed
        if spec.target in workbooks_changed and spec.conflict != "outreach_wins":
            return                              # changed on both sides: Workbooks wins, send PATCHes it
    plan.changes.append(Change(column, label, current, new, target=spec.target))


def opted_out(remote: dict, channel: str) -> bool:
    """Outreach's opt-out attributes (outreach-api.md §12): `optedOut` (in general),
    `emailOptedOut` / `emailsOptStatus`, `callOptedOut` / `callsOptStatus`."""
    if channel == "email":
        return remote.get("optedOut") is True or remote.get("emailOptedOut") is True \
            or remote.get("emailsOptStatus") == OPTED_OUT
    return remote.get("callOptedOut") is True or remote.get("callsOptStatus") == OPTED_OUT


def opted_out_at(remote: dict, channel: str) -> str | None:
    keys = ("optedOutAt", "emailsOptedAt") if channel == "email" else ("callsOptedAt",)
    return next((remote[k] for k in keys if remote.get(k)), None)


def _plan_opt_outs(plan: RecordPlan, row: dict, remote: dict, now: dt.datetime, cols: OptOutColumns,
                   format_time) -> None:
    when = None
    for channel, column, word in (("email", cols.no_email, "No Email"), ("call", cols.no_phone, "No Call")):
        if not opted_out(remote, channel) or flag_value(row.get(column)):
            continue        # not opted out there, or already ticked: nothing to do (never unticked)
        plan.changes.append(Change(column, word, row.get(column), True, mapped=False))
        plan.opt_outs.append(word)
        when = when or opted_out_at(remote, channel)
    if not plan.opt_outs:
        return
    stamp = format_time(parse_time(when) or now) if format_time else (when or now.isoformat())
    if cols.opted_out_at and tf.is_empty(row.get(cols.opted_out_at)):
        plan.changes.append(Change(cols.opted_out_at, "Opted Out At", None, stamp, mapped=False))
    if "No Email" in plan.opt_outs and cols.sequence_state \
            and row.get(cols.sequence_state) != OPTED_OUT_LABEL:
        plan.changes.append(Change(cols.sequence_state, "Sequence State", row.get(cols.sequence_state),
                                   OPTED_OUT_LABEL, mapped=False))
        if cols.state_updated_at:
            plan.changes.append(Change(cols.state_updated_at, "State Updated At",
                                       row.get(cols.state_updated_at), stamp, mapped=False))


# --- sequence states -----------------------------------------------------------------------------------
def state_rank(state: dict) -> tuple:
    """Which of a prospect's sequence states the Person shows: a non-finished one before a finished
    one, then the most recently changed (its `updatedAt`), then the highest id."""
    attrs = state.get("attributes") or {}
    return (attrs.get("state") in NOT_FINISHED, parse_time(attrs.get("updatedAt")) or dt.datetime.min.replace(
        tzinfo=dt.timezone.utc), int(state.get("id") or 0))


def plan_sequence_state(row: dict, state: dict, sequence_name: str, cols: dict[str, str], *,
                        no_email_column: str, format_time) -> list[Change]:
    """The Person's sequence fields for the state it should show (none when they already do, or
    when an opt-out shows: a later sequence change never hides an opt-out)."""
    if row.get(cols["sequence_state"]) == OPTED_OUT_LABEL and flag_value(row.get(no_email_column)):
        return []
    attrs = state.get("attributes") or {}
    label = STATE_LABELS.get(attrs.get("state"), str(attrs.get("state") or "").title())
    changed = parse_time(attrs.get("stateChangedAt")) or parse_time(attrs.get("updatedAt"))
    wanted = [(cols["sequence_state"], "Sequence State", label),
              (cols.get("sequence_name"), "Sequence", sequence_name),
              (cols.get("state_updated_at"), "State Updated At", format_time(changed) if changed else None)]
    return [Change(column, what, row.get(column), value, mapped=False) for column, what, value in wanted
            if column and not same_time_or_value(row.get(column), value)]


def same_time_or_value(current: Any, new: Any) -> bool:
    if same_value(current, new):
        return True
    a, b = _when_any(current), _when_any(new)
    return a is not None and a == b


def _when_any(value: Any) -> dt.datetime | None:
    try:
        return parse_datetime(value)
    except (ValueError, TypeError):
        return None
