"""What people do in Outreach, for tests, the demo and the benchmark: the part of the Outreach
emulator's control surface that changes records the way Outreach's own users do, so the plugin's
receive side can be proven against it (reference/outreach-api.md §12, cited as §n).

Every action stamps what Outreach would: `updatedAt` (milliseconds, never backwards) on each record
it really changes, `updater` = the acting user (`creator` too on a create), the opt-out attributes'
own stamps (§12 table, through the same code as API writes), a sequence state's `stateChangedAt`.
A value equal to the current one is no change and stamps nothing. Nothing here is counted as an API
request or against a rate limit.

The acting user (`by`): a user id, email or username; None means "a rep", a user the emulator
creates on first use (rep@outreach-emulator.example, so never the plugin's own OAuth user unless a
test says so). For an opt-out or opt-in with `by=None` the PROSPECT acts (an unsubscribe link), and
the `updater` follows the switch self_opt_out_updater.

Python API (OutreachEmulator methods): rep_edit, rep_create, opt_out, opt_in, create_sequence,
add_to_sequence, change_sequence_state, delete_sequence, activity (many actions in one call).
Control route (JSON): POST /_emulator/activity {"by"?, "actions": [{"do": ..., ...}, ...]} ->
{"results": [{"do", "kind", "id", "updatedAt"}, ...]}. Actions and their keys:
  edit             kind, id, attributes?, relationships?, raw?, by?
  create           kind, attributes?, relationships?, raw?, by?
  opt_out, opt_in  prospect, channel? ("all" | "email" | "call"; default "all"), by?
  create_sequence  name, sequenceType? ("date" | "interval"), shareType?, enabled?, steps?, by?
  add_to_sequence  prospect, sequence (id, or a name: created when missing), state?, step?, by?
  set_state        id (the sequence state), state, pauseReason?, errorReason?, step?, stateChangedAt?
  delete_sequence  id
`raw` skips the API's attribute checks (types, limits, read-only, unique emails), to stand in for
data Outreach holds that its API would refuse today. Actions run in order; the first bad one stops
the call with a 400 naming its index (the ones before it are applied).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .core import parse_iso

CHANNEL_FLAGS = {"all": "optedOut", "email": "emailOptedOut", "call": "callOptedOut"}
SEQUENCE_TYPES = ("date", "interval")        # §12: sequenceType "date" / "interval"
DEFAULT_REP = {"email": "rep@outreach-emulator.example", "username": "outreach.rep",
               "first_name": "Outreach", "last_name": "Rep"}
EDITABLE = ("prospects", "accounts", "sequences")


class ActionError(ValueError):
    """A control-surface action that cannot be done as asked (a test's mistake, not an API answer)."""


class OutreachActivity:
    """Mixed into OutreachEmulator; relies on its stores, lock, clock and record primitives
    (`_add_record`, `_change`, `_bump`, `_clean_attributes`, `_insert_relationship`, `render`)."""

    # ------------------------------------------------------------------------------ the actors
    def rep(self, by: Any = None) -> int:
        """The id of the user `by` names, or of the emulator's default rep (created on first use)."""
        with self.lock:
            if by is None:
                if self._default_rep not in self.stores["users"]:
                    found = self._index_lookup("users", "email", DEFAULT_REP["email"])
                    self._default_rep = min(found) if found else self.add_user(**DEFAULT_REP)
                return self._default_rep
            if isinstance(by, int) or (isinstance(by, str) and by.isdigit()):
                if int(by) in self.stores["users"]:
                    return int(by)
            else:
                for key in ("email", "username"):
                    ids = self._index_lookup("users", key, by)
                    if ids:
                        return min(ids)
            raise ActionError(f"no Outreach user {by!r}")

    # ------------------------------------------------------------------------------ records
    def rep_edit(self, kind: str, record_id: int, attributes: dict | None = None,
                 relationships: dict | None = None, by: Any = None, raw: bool = False) -> dict:
        """"A rep edits this prospect/account (or renames this sequence) in Outreach"."""
        with self.lock:
            kind, record = self._edit(kind, record_id, attributes, relationships, by, raw)
            return self.render(kind, record)

    def rep_create(self, kind: str, attributes: dict | None = None, relationships: dict | None = None,
                   by: Any = None, raw: bool = False) -> dict:
        """"A rep creates a prospect (with or without an account) or an account in Outreach"."""
        with self.lock:
            kind, record = self._create_as_rep(kind, attributes, relationships, by, raw)
            return self.render(kind, record)

    def _edit(self, kind: str, record_id: Any, attributes: dict | None, relationships: dict | None,
              by: Any, raw: bool) -> tuple[str, dict]:
        kind = self._editable(kind)
        record = self._existing(kind, record_id)
        actor = self.rep(by)
        attrs = self._checked(kind, attributes or {}, creating=False, raw=raw, what=f"{kind} {record['id']}")
        rels = self._relationships(kind, relationships or {})
        self._guarded(lambda: self._change(kind, record, attrs, rels, actor, check=not raw),
                      f"{kind} {record['id']}")
        return kind, record

    def _create_as_rep(self, kind: str, attributes: dict | None, relationships: dict | None,
                       by: Any, raw: bool) -> tuple[str, dict]:
        kind = self._editable(kind)
        if kind == "sequences":
            raise ActionError("create sequences with create_sequence")
        actor = self.rep(by)
        attrs = self._checked(kind, attributes or {}, creating=True, raw=raw, what=f"new {kind[:-1]}")
        rels = self._relationships(kind, relationships or {})
        record = self._guarded(lambda: self._add_record(kind, attrs, rels, actor, check=not raw), f"new {kind[:-1]}")
        return kind, record

    # ------------------------------------------------------------------------------ opt-outs (§12)
    def opt_out(self, prospect_id: int, channel: str = "all", by: Any = None) -> dict:
        """"This prospect opts out": of everything (`optedOut`), of email or of calls. With
        `by=None` the prospect itself does it (an unsubscribe link)."""
        with self.lock:
            return self.render("prospects", self._opt(prospect_id, channel, True, by))

    def opt_in(self, prospect_id: int, channel: str = "all", by: Any = None) -> dict:
        """"This prospect opts back in" (the reverse of opt_out)."""
        with self.lock:
            return self.render("prospects", self._opt(prospect_id, channel, False, by))

    def _opt(self, prospect_id: Any, channel: str, out: bool, by: Any) -> dict:
        if channel not in CHANNEL_FLAGS:
            raise ActionError(f"channel must be one of {', '.join(CHANNEL_FLAGS)}, not {channel!r}")
        record = self._existing("prospects", prospect_id)
        if by is None:      # the prospect itself: the updater is not a user of ours (switch)
            keep = self.config["self_opt_out_updater"] == "unchanged"
            changed = self._change("prospects", record, {CHANNEL_FLAGS[channel]: out}, {}, None,
                                   set_updater=not keep, check=False)
            actor = record.get("updater") if keep else None
        else:
            actor = self.rep(by)
            changed = self._change("prospects", record, {CHANNEL_FLAGS[channel]: out}, {}, actor, check=False)
        stops_email = channel in ("all", "email") or not self.config["granular_opt_out"]
        if out and changed and stops_email and self.config["opt_out_finishes_sequences"]:
            for state_id in self._active_states(record["id"]):
                self._set_state(self.stores["sequenceStates"][state_id], "finished", actor=actor)
        return record

    # ------------------------------------------------------------------------------ sequences (§12)
    def create_sequence(self, name: str, by: Any = None, sequence_type: str = "interval",
                        share_type: str = "shared", enabled: bool = True, steps: int = 1) -> dict:
        """A sequence with `steps` steps (order 1..n), owned and created by the acting user."""
        with self.lock:
            return self.render("sequences", self._new_sequence(name, by, sequence_type, share_type, enabled, steps))

    def add_to_sequence(self, prospect_id: int, sequence: Any, state: str = "active", by: Any = None,
                        step: int | None = None) -> dict:
        """"Add this prospect to a sequence": a new sequence state. `sequence` is an id, or a
        name (a sequence of that name is created when none exists)."""
        with self.lock:
            return self.render("sequenceStates", self._enrol(prospect_id, sequence, state, by, step))

    def change_sequence_state(self, state_id: int, state: str, *, pause_reason: str | None = None,
                              error_reason: str | None = None, step: int | None = None,
                              at: Any = None, by: Any = None) -> dict:
        """"Change the state of this sequence state": `stateChangedAt` (= `at`, default now),
        `updatedAt`; `activeAt` when it becomes active; the reasons when given."""
        with self.lock:
            record = self._existing("sequenceStates", state_id)
            actor = self.rep(by) if by is not None else None
            self._set_state(record, state, pause_reason=pause_reason, error_reason=error_reason,
                            step=step, at=at, actor=actor)
            return self.render("sequenceStates", record)

    def delete_sequence(self, sequence_id: int) -> bool:
        """"Delete this sequence": it and its steps go; its states stay and still point at it
        (a GET of the sequence is then a 404), and no state's updatedAt moves [I]."""
        with self.lock:
            found = self._existing("sequences", sequence_id)
            for step_id in [i for i, s in self.stores["sequenceSteps"].items() if s["rels"].get("sequence") == found["id"]]:
                self.delete("sequenceSteps", step_id)
            return self.delete("sequences", found["id"])

    def _new_sequence(self, name: Any, by: Any, sequence_type: str, share_type: str, enabled: bool,
                      steps: int) -> dict:
        if not isinstance(name, str) or not name.strip():
            raise ActionError("a sequence needs a name")
        if sequence_type not in SEQUENCE_TYPES:
            raise ActionError(f"sequenceType must be one of {', '.join(SEQUENCE_TYPES)}, not {sequence_type!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ActionError("a sequence needs at least one step")
        actor = self.rep(by)
        now = self._iso_now()
        counts = {n: 0 for n, a in self._attrs("sequences").items() if a.kind == "int" and a.ro}
        attrs = {**counts, "name": name, "sequenceType": sequence_type, "shareType": share_type,
                 "enabled": bool(enabled), "enabledAt": now if enabled else None, "locked": False,
                 "sequenceStepCount": steps, "tags": []}
        sequence = self._add_record("sequences", attrs, {"owner": actor}, actor, check=False)
        for order in range(1, steps + 1):
            step_counts = {n: 0 for n, a in self._attrs("sequenceSteps").items() if a.kind == "int" and a.ro}
            self._add_record("sequenceSteps", {**step_counts, "order": order, "stepType": "auto_email",
                                               "displayName": f"Step {order} (Auto email)"},
                             {"sequence": sequence["id"]}, actor, check=False)
        return sequence

    def _enrol(self, prospect_id: Any, sequence: Any, state: str, by: Any, step: int | None) -> dict:
        prospect = self._existing("prospects", prospect_id)
        self._check_state(state)
        if isinstance(sequence, int) or (isinstance(sequence, str) and sequence.isdigit()):
            seq = self._existing("sequences", sequence)
        else:
            named = sorted(self._index_lookup("sequences", "name", sequence))
            seq = self.stores["sequences"][named[0]] if named else self._new_sequence(
                sequence, by, "interval", "shared", True, 1)
        actor = self.rep(by)
        now = self._iso_now()
        counts = {n: 0 for n, a in self._attrs("sequenceStates").items() if a.kind == "int"}
        attrs = {**counts, "state": state, "stateChangedAt": now, "activeAt": now if state == "active" else None,
                 "pauseReason": None, "errorReason": None, "repliedAt": None, "callCompletedAt": None}
        rels = {"prospect": prospect["id"], "sequence": seq["id"], "sequenceStep": self._step_id(seq["id"], step or 1),
                "account": prospect["rels"].get("account"), "user": actor}
        record = self._add_record("sequenceStates", attrs, rels, actor, check=False)
        self._state_touches_prospect(prospect["id"])
        return record

    def _set_state(self, record: dict, state: str, *, pause_reason: str | None = None,
                   error_reason: str | None = None, step: int | None = None, at: Any = None,
                   actor: int | None = None) -> None:
        self._check_state(state)
        attrs: dict[str, Any] = {}
        if state != record["attrs"].get("state"):
            attrs["state"] = state
            attrs["stateChangedAt"] = self._iso(at) if at is not None else self._iso_now()
            if state == "active":
                attrs["activeAt"] = self._iso_now()
        for name, value in (("pauseReason", pause_reason), ("errorReason", error_reason)):
            if value is not None:
                if not isinstance(value, str) or len(value) > 255:
                    raise ActionError(f"{name} must be a string of at most 255 characters")
                attrs[name] = value
        rels = {}
        if step is not None:
            rels["sequenceStep"] = self._step_id(record["rels"].get("sequence"), step)
        # A state has no updater (§12); its creator stays who enrolled the prospect.
        if self._change("sequenceStates", record, attrs, rels, actor, set_updater=False, check=False):
            self._state_touches_prospect(record["rels"].get("prospect"))

    def _state_touches_prospect(self, prospect_id: int | None) -> None:
        """Switch sequence_state_bumps_prospect: whether a state's change moves its prospect's
        updatedAt is not in the reference; by default it does not (the harder case: the
        prospect feed alone never shows a sequence change)."""
        prospect = self.stores["prospects"].get(prospect_id)
        if prospect is not None and self.config["sequence_state_bumps_prospect"]:
            self._bump(prospect)

    def _step_id(self, sequence_id: int | None, order: int) -> int | None:
        steps = [s for s in self.stores["sequenceSteps"].values() if s["rels"].get("sequence") == sequence_id]
        found = [s["id"] for s in steps if s["attrs"].get("order") == order]
        if steps and not found:
            raise ActionError(f"sequence {sequence_id} has no step {order}")
        return found[0] if found else None

    @staticmethod
    def _check_state(state: Any) -> None:
        values = _api().SEQUENCE_STATE_VALUES
        if state not in values:
            raise ActionError(f"state must be one of {', '.join(values)}, not {state!r}")

    # ------------------------------------------------------------------------------ many at once
    def activity(self, actions: list[dict], by: Any = None) -> list[dict]:
        """Run many actions in one call (a benchmark's thousands of changed prospects cost one
        control request): [{"do": ..., ...}] as the module docstring lists. Returns, per action,
        {"do", "kind", "id", "updatedAt"}."""
        if not isinstance(actions, list):
            raise ActionError("actions must be a list")
        results = []
        with self.lock:
            for index, action in enumerate(actions):
                try:
                    results.append(self._run_action(action, by))
                except (ActionError, ValueError, KeyError, TypeError) as exc:
                    raise ActionError(f"action {index} ({_describe(action)}): {exc}") from None
        return results

    def _run_action(self, action: dict, by: Any) -> dict:
        if not isinstance(action, dict):
            raise ActionError("an action must be an object")
        do = action.get("do")
        actor = action.get("by", by)
        if do == "edit":
            kind, record = self._edit(action["kind"], action["id"], action.get("attributes"),
                                      action.get("relationships"), actor, bool(action.get("raw")))
        elif do == "create":
            kind, record = self._create_as_rep(action["kind"], action.get("attributes"), action.get("relationships"),
                                               actor, bool(action.get("raw")))
        elif do in ("opt_out", "opt_in"):
            kind, record = "prospects", self._opt(action["prospect"], action.get("channel", "all"),
                                                  do == "opt_out", actor)
        elif do == "create_sequence":
            kind, record = "sequences", self._new_sequence(
                action["name"], actor, action.get("sequenceType", "interval"), action.get("shareType", "shared"),
                action.get("enabled", True), action.get("steps", 1))
        elif do == "add_to_sequence":
            kind, record = "sequenceStates", self._enrol(action["prospect"], action["sequence"],
                                                         action.get("state", "active"), actor, action.get("step"))
        elif do == "set_state":
            kind, record = "sequenceStates", self._existing("sequenceStates", action["id"])
            self._set_state(record, action["state"], pause_reason=action.get("pauseReason"),
                            error_reason=action.get("errorReason"), step=action.get("step"),
                            at=action.get("stateChangedAt"), actor=self.rep(actor) if actor is not None else None)
        elif do == "delete_sequence":
            record = self._existing("sequences", action["id"])
            self.delete_sequence(record["id"])
            return {"do": do, "kind": "sequences", "id": record["id"], "updatedAt": None}
        else:
            raise ActionError(f"unknown action {do!r}")
        return {"do": do, "kind": kind, "id": record["id"], "updatedAt": self._iso(record["updatedAt"])}

    def _control_activity(self, body: dict) -> list[dict]:
        return self.activity(body.get("actions"), body.get("by"))

    # ------------------------------------------------------------------------------ helpers
    def _editable(self, kind: str) -> str:
        kind = self._kind_name(kind)
        if kind not in EDITABLE:
            raise ActionError(f"{kind} cannot be edited here; use the sequence actions")
        return kind

    def _existing(self, kind: str, record_id: Any) -> dict:
        kind = self._kind_name(kind)
        try:
            found = self.stores[kind].get(int(record_id))
        except (TypeError, ValueError):
            found = None
        if found is None:
            raise ActionError(f"no {kind[:-1]} {record_id!r}")
        return found

    def _checked(self, kind: str, attributes: dict, *, creating: bool, raw: bool, what: str) -> dict:
        if not isinstance(attributes, dict):
            raise ActionError("attributes must be an object")
        if raw:
            return dict(attributes)
        return self._guarded(lambda: self._clean_attributes(kind, attributes, creating), what)

    def _relationships(self, kind: str, relationships: dict) -> dict:
        if not isinstance(relationships, dict):
            raise ActionError("relationships must be an object")
        return {name: self._insert_relationship(kind, name, value) for name, value in relationships.items()}

    def _guarded(self, step: Callable[[], Any], what: str) -> Any:
        """The API's refusal of a value, as the control surface's error naming the record."""
        try:
            return step()
        except _api().ApiError as error:
            detail = error.body["errors"][0] if error.body else {}
            raise ActionError(f"{what}: {detail.get('detail') or detail.get('title') or error}") from None

    def _iso_now(self) -> str:
        return self._iso(self.now())

    @staticmethod
    def _iso(value: Any) -> str | None:
        if value is None:
            return None
        when = value if isinstance(value, dt.datetime) else parse_iso(str(value))
        return _api().iso_ms(_api().truncate_ms(when))

    @staticmethod
    def _attrs(kind: str) -> dict:
        return _api().ATTRS[kind]

    @staticmethod
    def _kind_name(kind: str) -> str:
        return _api()._kind(kind)


def _api():
    """The emulator's own module, looked up on use: it imports this one to build its class."""
    from . import outreach
    return outreach


def _describe(action: Any) -> str:
    return str(action.get("do")) if isinstance(action, dict) else type(action).__name__
