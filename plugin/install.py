"""The installer: custom fields, the two processes, and the recorded install state.

Every mode first *surveys* the database (reads only), then compares it with the manifest:

* install   — creates what is missing (fields, then processes), adopts what already exists by
              title (a half-finished earlier install is finished, not duplicated), and records
              the result in API Data key `install`. When nothing differs it writes nothing.
              An upgrade adds only what is new: fields, processes, process parameters.
* check     — reports what is missing or drifted and writes nothing; exit 1 when something is.
* uninstall — removes the processes and the plugin's state (tokens included); keeps the custom
              fields and their data unless `purge`.

Order, for a crash half-way: fields first (a rerun adopts them by title), then the install state,
then the web process, then the scheduled process — so the scheduled process never runs against a
database without install state. It is created disabled until Outreach is authorised (a run
without tokens exits 2, which would disable it anyway); the authorisation enables it.

The install state (`install`):
    {"plugin", "version", "installed_at",
     "fields":      {"person": {title: value_column_name}, "organisation": {...}},
     "field_ids":   {"person": {title: id}, ...},
     "field_types": {"person": {title: data_type Workbooks holds}, ...},
     "processes":   {key: {"id", "title", "kind"}},
     "oauth_client": {"client_id", "client_secret", "redirect_uri"}   (only what was given)}

What Workbooks may not take (workbooks-api.md R2.2, R2.3 — no public source names these):
* a field type: the URL, date-time and text `data_type` spellings are guesses. When Workbooks
  refuses one, the field is created with the next type of `TYPE_FALLBACKS` (ending in `string`,
  which R2.2 verifies); the type used is recorded in `field_types` and reported, and the engine
  keeps what it writes within a `string` field's 255 characters (runner → SyncSettings).
* `is_hidden` on fields and the schedule settings of processes (`frequency_minutes`, `enabled`,
  `timeout_seconds`, `parameters`): under `_strict_attribute_checking` Workbooks refuses them, so
  the row is sent again without them; in API-key mode they are silently dropped. Either way what
  Workbooks did not keep is found by reading it back (an attribute Workbooks does not know is
  absent from the record), and the administrator is told exactly what to set by hand; `--check`
  reports the same as notices, not as drift.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ActionRequired, BadCredentials, PluginError, TransientError
from .kinds import KINDS
from .manifest import RESOURCE_TYPES, FieldDef, Manifest, ProcessDef, load_manifest

KIND_WORDS = {k.name: k.words for k in KINDS}
PROCESS_ENDPOINTS = {"scheduled": "automation/scheduled_actions", "web": "automation/web_actions"}
FIELDS_ENDPOINT = "admin/custom_fields"
API_DATA_ENDPOINT = "automation/api_data"

# Workbooks spellings that mean the same field type (workbooks-api.md R2.2: the URL and date-time
# spellings are not published, so a field we adopt may use any of them).
_TYPE_ALIASES = {"url": {"url", "uri"}, "datetime": {"datetime", "date_time", "var_date_time"},
                 "string": {"string"}, "text": {"text"}, "boolean": {"boolean", "checkbox"},
                 "date": {"date"}, "decimal": {"decimal"}}
# Process settings the installer owns; an administrator's change to one is reported by --check.
_OWNED_SETTINGS = ("script_name", "frequency_minutes", "timeout_seconds", "web_identifier")
# The data_type values to try, in order, for a manifest type. Only `string` and `date` (R2.2)
# and boolean/picklist/decimal (§6.3) are verified; the URL/date-time/text spellings are guesses.
TYPE_FALLBACKS = {"url": ("url", "uri", "string"), "datetime": ("datetime", "date_time", "date", "string"),
                  "text": ("text", "string")}
# Attribute names the installer sends that no public source confirms (R2.2, R2.3).
UNVERIFIED_FIELD_ATTRIBUTES = ("is_hidden",)
UNVERIFIED_PROCESS_SETTINGS = ("frequency_minutes", "enabled", "timeout_seconds", "parameters")
# Where an administrator finds processes in Workbooks (KB: Start > Configuration > Automation).
AUTOMATION_MENU = "Configuration > Automation"


class InstallConflict(ActionRequired):
    """Something in the database stops the install and a person must decide (message says what)."""


@dataclass
class FieldFinding:
    kind: str
    definition: FieldDef
    found: dict | None = None          # the admin/custom_fields row, when one exists
    drift: str | None = None           # why the existing field cannot serve as this one
    refused_types: list[str] = field(default_factory=list)   # data_types Workbooks refused (this install)

    @property
    def label(self) -> str:
        return f"{KIND_WORDS[self.kind]}: field '{self.definition.title}'"

    @property
    def available(self) -> bool:
        return bool(self.found) and str(self.found.get("status") or "").lower() == "available"

    @property
    def column(self) -> str | None:
        return (self.found or {}).get("value_column_name") or None

    @property
    def data_type(self) -> str:
        return str((self.found or {}).get("data_type") or self.definition.data_type).lower()

    @property
    def stand_in(self) -> bool:
        """The field exists with a fallback type instead of the manifest's (TYPE_FALLBACKS)."""
        return bool(self.found) and not _type_matches(self.data_type, self.definition.data_type)

    @property
    def hidden_unknown(self) -> bool:
        """A field that should be hidden, whose `is_hidden` Workbooks does not show (R2.2: the
        attribute name is a guess), so it must be hidden by hand."""
        return bool(self.definition.hidden and self.found and self.found.get("is_hidden") is None)


@dataclass
class ProcessFinding:
    definition: ProcessDef
    found: dict | None = None
    missing_parameters: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)   # settings an administrator changed
    unknown_settings: list[str] = field(default_factory=list)   # not shown by Workbooks: set by hand

    @property
    def label(self) -> str:
        word = "scheduled process" if self.definition.kind == "scheduled" else "web process"
        return f"{word} '{self.definition.title}'"


@dataclass
class Survey:
    fields: list[FieldFinding]
    processes: list[ProcessFinding]
    install: dict | None
    authorised: bool


@dataclass
class Outcome:
    exit_code: int
    summary: str


class Installer:
    def __init__(self, workbooks, state, manifest: Manifest, log, *, wait_seconds: float = 360.0,
                 poll_seconds: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.wb = workbooks
        self.state = state
        self.manifest = manifest
        self.log = log
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._sleep = sleep
        self._clock = clock

    # --- survey (reads only) -----------------------------------------------------------------
    def survey(self) -> Survey:
        self.state.prefetch(["install", "tokens"])
        install = self.state.get("install")
        install = install if isinstance(install, dict) else None
        recorded = (install or {}).get("fields") or {}
        fields: list[FieldFinding] = []
        for kind, resource_type in RESOURCE_TYPES.items():
            existing = self.wb.custom_fields(resource_type)
            for definition in self.manifest.custom_fields(kind):
                fields.append(_match_field(kind, definition, existing,
                                           (recorded.get(kind) or {}).get(definition.title)))
        recorded_procs = (install or {}).get("processes") or {}
        listed = {kind: self.wb.get_all(endpoint) for kind, endpoint in PROCESS_ENDPOINTS.items()}
        processes = [_match_process(proc, listed[proc.kind], (recorded_procs.get(proc.key) or {}).get("id"))
                     for proc in self.manifest.processes]
        tokens = self.state.get("tokens")
        return Survey(fields, processes, install, authorised=isinstance(tokens, dict) and bool(tokens))

    # --- check ----------------------------------------------------------------------------------
    def check(self) -> Outcome:
        survey = self.survey()
        missing = drifted = 0
        recorded = (survey.install or {}).get("fields") or {}
        for item in survey.fields:
            if item.found is None:
                missing += 1
                self.log.warning(f"{item.label} is missing")
            elif item.drift:
                drifted += 1
                self.log.warning(f"{item.label} {item.drift}")
            elif not item.available:
                missing += 1
                self.log.warning(f"{item.label} ({item.column}) is still being created by Workbooks "
                                 f"(status {item.found.get('status')!r})")
            elif survey.install and (recorded.get(item.kind) or {}).get(item.definition.title) != item.column:
                drifted += 1
                self.log.warning(f"{item.label} is {item.column}, but the install state records "
                                 f"{(recorded.get(item.kind) or {}).get(item.definition.title)}")
            else:
                self.log.info(f"{item.label} is {item.column}" + _type_words(item))
        for proc in survey.processes:
            if proc.found is None:
                missing += 1
                self.log.warning(f"the {proc.label} is missing")
                continue
            enabled = proc.found.get("enabled")
            state_words = "" if enabled is None or proc.definition.kind != "scheduled" else \
                (", enabled" if enabled else ", disabled")
            self.log.info(f"the {proc.label} exists (id {proc.found.get('id')}{state_words})")
            if enabled is False and proc.definition.kind == "scheduled" and survey.authorised:
                # Exit 2 (e.g. an invalid mapping) switches it off; someone may also have on purpose.
                self.log.warning(f"the {proc.label} is switched off although Outreach is authorised: "
                                 "nothing syncs until it is switched on again")
            if proc.missing_parameters:
                missing += 1
                self.log.warning(f"the {proc.label} lacks the parameter(s) {', '.join(proc.missing_parameters)}")
            for difference in proc.differences:
                # Administrators may tune these on purpose: reported, never reverted by install.
                self.log.notice(f"the {proc.label}: {difference}")
        if survey.install is None:
            missing += 1
            self.log.warning("the install state (API Data 'install') is missing")
        elif survey.install.get("version") != self.manifest.version:
            drifted += 1
            self.log.warning(f"version {survey.install.get('version')} is installed, this bundle is "
                             f"{self.manifest.version}: run the installer to upgrade")
        # Settings Workbooks' API does not show cannot be checked: say what to set by hand, every
        # time, without counting them as missing (they never will show).
        steps = self._report_manual_steps(survey)
        self.log.info("Outreach is authorised" if survey.authorised else
                      "Outreach is not authorised yet: open the 'Outreach Authorisation' web process")
        fields_ok = sum(1 for f in survey.fields if f.available and not f.drift)
        procs_ok = sum(1 for p in survey.processes if p.found)
        state_words = (f"install state version {survey.install.get('version')}" if survey.install
                       else "no install state")
        verdict = "all present" if not (missing or drifted) else f"{missing} missing, {drifted} drifted"
        return Outcome(1 if missing or drifted else 0,
                       f"check: {fields_ok} of {len(survey.fields)} fields, {procs_ok} of "
                       f"{len(survey.processes)} processes, {state_words}; {verdict}" + _steps_words(steps))

    def _report_manual_steps(self, survey: Survey) -> int:
        """Notice lines telling the administrator exactly what to set by hand in Workbooks; the
        number of settings."""
        steps = manual_steps(self.manifest, survey)
        if steps:
            self.log.notice("Workbooks' API did not take these settings (they have no published API "
                            f"names); set them by hand in Workbooks ({AUTOMATION_MENU}, and the fields' settings):")
            for step in steps:
                self.log.notice(f"  - {step}")
        return len(steps)

    # --- install ----------------------------------------------------------------------------------
    def install(self, *, oauth_client: dict | None = None) -> Outcome:
        survey = self.survey()
        previous = (survey.install or {}).get("version")
        blocked = [f for f in survey.fields if f.drift]
        if blocked:
            for item in blocked:
                self.log.error(f"{item.label} already exists and {item.drift}")
            raise InstallConflict(f"{len(blocked)} existing field(s) conflict with the plugin's fields; "
                                  "nothing was changed")
        # Fields without install state: an earlier install stopped half-way (or someone created
        # them by hand). Adopting them by title finishes that install instead of duplicating.
        adopted = [f for f in survey.fields if f.found] if survey.install is None else []
        for item in adopted:
            self.log.notice(f"{item.label} already exists ({item.column}{_type_words(item, brief=True)}): "
                            "adopted, not created again")

        created_fields = self._create_fields([f for f in survey.fields if f.found is None])
        self._wait_until_available([f for f in survey.fields if not f.available])

        writes = 0
        # Recorded before any process exists, so a run never finds a process without state.
        writes += self._record(survey, oauth_client)
        created, updated = self._ensure_processes(survey)
        if created or updated:
            writes += self._record(survey, oauth_client)

        steps = self._report_manual_steps(survey)
        if not (created_fields or created or updated or writes):
            return Outcome(0, f"install: nothing to do; version {self.manifest.version} is installed "
                              f"({len(survey.fields)} fields, {len(survey.processes)} processes)"
                              + _steps_words(steps))
        verb = f"upgraded {previous} to" if previous and previous != self.manifest.version else "installed"
        parts = [f"{created_fields} fields created",
                 f"{len(adopted)} adopted" if adopted else None,
                 f"{created} processes created", f"{updated} processes updated" if updated else None,
                 "install state recorded" if writes else None]
        tail = "" if survey.authorised else "; next: authorise Outreach"
        return Outcome(0, f"install: {verb} version {self.manifest.version}: "
                          + ", ".join(p for p in parts if p) + tail + _steps_words(steps))

    def _create_fields(self, missing: list[FieldFinding]) -> int:
        """Create the missing fields in batches (`_asynchronous_cf`). A row Workbooks refuses is
        sent again: first without the unverified attributes when it sent any (R2.2: is_hidden is
        a guess, refused under strict attribute checking), else with the next type of
        TYPE_FALLBACKS (R2.2: only string and date are verified among the plain types)."""
        if not missing:
            return 0
        plans = {id(item): {"types": list(TYPE_FALLBACKS.get(item.definition.data_type,
                                                             (item.definition.data_type,))),
                            "unverified": True} for item in missing}
        pending = list(missing)
        while pending:
            rows = [field_row(item.kind, item.definition, data_type=plans[id(item)]["types"][0],
                              unverified=plans[id(item)]["unverified"]) for item in pending]
            results = self.wb.batch(FIELDS_ENDPOINT, [{**row, "__method": "POST"} for row in rows],
                                    extra=[("_asynchronous_cf", "true")])
            if len(results) != len(pending):
                raise TransientError(f"Workbooks answered for {len(results)} of {len(pending)} new custom "
                                     "fields; run the installer again to finish")
            retry = []
            for item, row, result in zip(pending, rows, results):
                plan = plans[id(item)]
                if result.ok:
                    item.found = {"title": item.definition.title, "data_type": row["data_type"],
                                  **{k: v for k, v in result.affected.items() if v is not None or k == "id"}}
                    self.log.info(f"{item.label} created ({item.column or 'column name pending'})"
                                  + _type_words(item))
                    continue
                reason = "; ".join(result.errors) or "no reason given"
                sent_unverified = [a for a in UNVERIFIED_FIELD_ATTRIBUTES if a in row]
                if sent_unverified and (any(a in reason for a in sent_unverified) or "data_type" not in reason):
                    plan["unverified"] = False
                    self.log.debug(f"{item.label}: Workbooks refused {', '.join(sent_unverified)} ({reason}); "
                                   "creating it without")
                    retry.append(item)
                    continue
                item.refused_types.append(row["data_type"])
                plan["types"].pop(0)
                if not plan["types"]:
                    raise InstallConflict(f"Workbooks refused to create the {item.label} as any of "
                                          f"{', '.join(item.refused_types)} (last answer: {reason}); "
                                          "the fields created so far are kept and adopted by the next install")
                self.log.debug(f"{item.label}: Workbooks refused the type '{row['data_type']}' ({reason}); "
                               f"trying '{plan['types'][0]}'")
                retry.append(item)
            pending = retry
        return len(missing)

    def _wait_until_available(self, pending: list[FieldFinding]) -> None:
        """Workbooks may create fields asynchronously (`_asynchronous_cf`): poll, bounded, until
        every one is Available. Giving up is transient: a rerun adopts them and waits again."""
        if not pending:
            return
        give_up = self._clock() + self.wait_seconds
        announced = False
        polls = 0
        while True:
            waiting = [item for item in pending if not item.available]
            if not waiting:
                return
            if self._clock() >= give_up:
                raise TransientError(f"{len(waiting)} custom field(s) were still being created after "
                                     f"{int(self.wait_seconds)} s; run the installer again to finish")
            if not announced:
                self.log.info(f"waiting for Workbooks to make {len(waiting)} custom field(s) available")
                announced = True
            rows = self.wb.get(FIELDS_ENDPOINT, filters=[("id", "eq", [item.found["id"] for item in waiting])],
                               columns=["id", "lock_version", "status", "value_column_name"], limit=100)
            by_id = {str(r.get("id")): r for r in rows}
            for item in waiting:
                fresh = by_id.get(str(item.found["id"]))
                if fresh is None:
                    raise InstallConflict(f"{item.label} disappeared while it was being created; "
                                          "run the installer again")
                item.found.update({k: v for k, v in fresh.items() if v not in (None, "")})
            if any(not item.available for item in waiting):
                # Quick at first (a few fields on an empty database take moments), then every
                # poll_seconds, never past the bound.
                delay = min(self.poll_seconds, 0.25 * 2 ** polls, max(0.0, give_up - self._clock()))
                polls += 1
                self._sleep(delay)

    def _ensure_processes(self, survey: Survey) -> tuple[int, int]:
        created = updated = 0
        # The web process first: the scheduled one is the last thing an install adds.
        for proc in sorted(survey.processes, key=lambda p: p.definition.kind != "web"):
            endpoint = PROCESS_ENDPOINTS[proc.definition.kind]
            if proc.found is None:
                wanted = process_row(proc.definition, enabled=survey.authorised)
                result = self._create_process(endpoint, wanted, proc.label)
                proc.found = {**{k: v for k, v in wanted.items() if k not in UNVERIFIED_PROCESS_SETTINGS},
                              **{k: v for k, v in result.affected.items() if v is not None},
                              "id": result.id, "lock_version": result.lock_version}
                # What Workbooks shows back is what it kept (an unknown attribute is absent).
                proc.unknown_settings = [n for n in UNVERIFIED_PROCESS_SETTINGS
                                         if n in wanted and proc.found.get(n) is None]
                created += 1
                enabled = proc.found.get("enabled")
                how = "" if proc.definition.kind != "scheduled" or enabled is None else \
                    (", enabled" if enabled else ", disabled until Outreach is authorised")
                self.log.info(f"the {proc.label} created (id {result.id}{how})")
            elif proc.missing_parameters:
                # An upgrade adds new parameters with their defaults and keeps every value an
                # administrator set.
                merged = {**{k: proc.definition.parameters[k] for k in proc.missing_parameters},
                          **parameters_of(proc.found)}
                row = {"__method": "PUT", "id": proc.found["id"],
                       "lock_version": proc.found.get("lock_version") or 0,
                       "parameters": encode_parameters(merged)}
                result = self._write_one(endpoint, row, proc.label)
                proc.found.update(parameters=row["parameters"], lock_version=result.lock_version)
                updated += 1
                self.log.info(f"the {proc.label} gained the parameter(s) {', '.join(proc.missing_parameters)}")
                proc.missing_parameters = []
        return created, updated

    def _create_process(self, endpoint: str, wanted: dict, label: str):
        """Create a process; when Workbooks refuses it and unverified settings were sent (R2.3:
        their API names are guesses; strict attribute checking reports them), create it again
        with the verified fields only."""
        result = self.wb.batch(endpoint, [{"__method": "POST", **wanted}])[0]
        if result.ok:
            return result
        dropped = [n for n in UNVERIFIED_PROCESS_SETTINGS if n in wanted]
        if not dropped or result.stale:
            return self._write_one(endpoint, {"__method": "POST", **wanted}, label, result=result)
        self.log.info(f"the {label}: Workbooks refused {', '.join(dropped)} "
                      f"({'; '.join(result.errors) or 'no reason given'}); creating it without")
        verified = {k: v for k, v in wanted.items() if k not in UNVERIFIED_PROCESS_SETTINGS}
        return self._write_one(endpoint, {"__method": "POST", **verified}, label)

    def _write_one(self, endpoint: str, row: dict, label: str, *, result=None):
        result = result or self.wb.batch(endpoint, [row])[0]
        if not result.ok:
            if result.stale:
                raise TransientError(f"the {label} was changed while installing; run the installer again")
            raise InstallConflict(f"Workbooks refused to save the {label}: "
                                  f"{'; '.join(result.errors) or 'no reason given'}")
        return result

    def _record(self, survey: Survey, oauth_client: dict | None) -> int:
        """Write the install state when it differs from what is stored; returns writes made."""
        previous = survey.install or {}
        record: dict[str, Any] = {
            "plugin": self.manifest.name,
            "version": self.manifest.version,
            "fields": {kind: {} for kind in RESOURCE_TYPES},
            "field_ids": {kind: {} for kind in RESOURCE_TYPES},
            "processes": {},
            # Kept from the first install, so an unchanged reinstall compares equal.
            "installed_at": previous.get("installed_at") or _utc_now(),
        }
        record["field_types"] = {kind: {} for kind in RESOURCE_TYPES}
        for item in survey.fields:
            record["fields"][item.kind][item.definition.title] = item.column
            record["field_ids"][item.kind][item.definition.title] = item.found.get("id")
            # The runner keeps what it writes within a `string` stand-in's 255 characters.
            record["field_types"][item.kind][item.definition.title] = item.data_type
        for proc in survey.processes:
            if proc.found is not None:
                record["processes"][proc.definition.key] = {
                    "id": proc.found.get("id"), "title": proc.definition.title, "kind": proc.definition.kind}
        client = {**(previous.get("oauth_client") or {}), **{k: v for k, v in (oauth_client or {}).items() if v}}
        if client:
            record["oauth_client"] = client
        if record == previous:
            return 0
        self.state.put("install", record)
        survey.install = record
        return 1

    # --- uninstall ---------------------------------------------------------------------------------
    def uninstall(self, *, purge: bool = False) -> Outcome:
        survey = self.survey()
        removed_procs = 0
        # The scheduled process first, so no run starts against half-removed state.
        for proc in sorted(survey.processes, key=lambda p: p.definition.kind != "scheduled"):
            if proc.found is None:
                continue
            row = {"__method": "DELETE", "id": proc.found["id"], "lock_version": proc.found.get("lock_version") or 0}
            self._write_one(PROCESS_ENDPOINTS[proc.definition.kind], row, proc.label)
            removed_procs += 1
            self.log.info(f"the {proc.label} removed")
        removed_keys = self._remove_state()
        present = [f for f in survey.fields if f.found and not f.drift]
        if purge and present:
            results = self.wb.delete(FIELDS_ENDPOINT, [{"id": f.found["id"],
                                                        "lock_version": f.found.get("lock_version") or 0}
                                                       for f in present])
            failed = [f"{item.label}: {'; '.join(r.errors)}" for item, r in zip(present, results) if not r.ok]
            if failed:
                raise InstallConflict("Workbooks refused to delete " + " | ".join(failed))
            self.log.warning(f"{len(present)} custom fields deleted, with the data they held")
            fields_words = f"{len(present)} custom fields deleted with their data"
        else:
            fields_words = (f"{len(present)} custom fields kept with their data"
                            + (" (--purge deletes them)" if present else ""))
        return Outcome(0, f"uninstall: {removed_procs} processes removed, {removed_keys} plugin state "
                          f"items removed (Outreach tokens included), {fields_words}")

    def _remove_state(self) -> int:
        """Every API Data row under the plugin's prefix: install, tokens, watermarks, lock, …,
        including keys a later version may add."""
        prefix = self.state.full_key("")
        rows = [r for r in self.wb.get_all(API_DATA_ENDPOINT, filters=[("key", "bg", prefix)],
                                           columns=["id", "lock_version", "key"])
                if str(r.get("key") or "").startswith(prefix)]
        if not rows:
            return 0
        results = self.wb.delete(API_DATA_ENDPOINT, [{"id": r["id"], "lock_version": r.get("lock_version") or 0}
                                                     for r in rows])
        failed = [r for r in results if not r.ok]
        if failed:
            raise TransientError(f"{len(failed)} plugin state item(s) could not be removed: "
                                 f"{'; '.join(e for r in failed for e in r.errors)}; run the uninstall again")
        keys = sorted({str(r["key"])[len(prefix):] for r in rows})
        self.log.info(f"plugin state removed: {', '.join(keys)}")
        return len(keys)


# --- matching what exists to what the manifest wants --------------------------------------------------

def _match_field(kind: str, definition: FieldDef, existing: list[dict], recorded_column: str | None) -> FieldFinding:
    finding = FieldFinding(kind, definition)
    same_title = [f for f in existing if _same_title(f.get("title"), definition.title)]
    if not same_title:
        return finding
    # Several fields with our title: the one we recorded wins, else the only one of our type.
    chosen = next((f for f in same_title if recorded_column and f.get("value_column_name") == recorded_column), None)
    if chosen is None:
        typed = [f for f in same_title if _type_matches(f.get("data_type"), definition.data_type)] or \
            [f for f in same_title if _type_serves(f.get("data_type"), definition.data_type)]
        if len(typed) > 1:
            finding.found = typed[0]
            finding.drift = (f"exists {len(typed)} times "
                             f"({', '.join(str(f.get('value_column_name')) for f in typed)}); "
                             "the plugin cannot tell which to use: delete or rename the extra ones")
            return finding
        chosen = typed[0] if typed else same_title[0]
    finding.found = dict(chosen)
    if not _type_serves(chosen.get("data_type"), definition.data_type):
        wanted = " or ".join(f"'{t}'" for t in TYPE_FALLBACKS.get(definition.data_type, (definition.data_type,)))
        finding.drift = (f"is a '{chosen.get('data_type')}' field, but the plugin needs {wanted}: "
                         "rename or delete that field, then install again")
    return finding


def _match_process(proc: ProcessDef, listed: list[dict], recorded_id) -> ProcessFinding:
    finding = ProcessFinding(proc)
    by_id = [r for r in listed if recorded_id is not None and str(r.get("id")) == str(recorded_id)]
    by_title = [r for r in listed if _same_title(r.get("title") or r.get("name"), proc.title)]
    found = (by_id or by_title or [None])[0]
    if found is None:
        return finding
    finding.found = dict(found)
    wanted = process_row(proc, enabled=True)
    # A setting Workbooks does not show (its API name is a guess, R2.3) is set by hand, never
    # counted as missing: it would be missing forever.
    finding.unknown_settings = [n for n in UNVERIFIED_PROCESS_SETTINGS if n in wanted and found.get(n) is None]
    current = parameters_of(found)
    if "parameters" not in finding.unknown_settings:
        finding.missing_parameters = [name for name in proc.parameters if name not in current]
    for name in _OWNED_SETTINGS:
        if name in wanted and found.get(name) not in (None, "") and str(found[name]) != str(wanted[name]):
            finding.differences.append(f"{name} is {found[name]!r}, the manifest says {wanted[name]!r}")
    for name, default in proc.parameters.items():
        if name in current and str(current[name]).lower() != str(default).lower():
            finding.differences.append(f"parameter {name} is {current[name]!r} (default {default!r})")
    return finding


# --- what goes on the wire ---------------------------------------------------------------------------

def field_row(kind: str, definition: FieldDef, *, data_type: str | None = None, unverified: bool = True) -> dict:
    """An `admin/custom_fields` create row for one manifest field, as `data_type` (default the
    manifest's). `is_hidden` keeps the field off forms until an administrator adds it to a layout
    (R2.2: the attribute name is a guess; `unverified=False` leaves it out)."""
    data_type = data_type or definition.data_type
    row = {"title": definition.title, "resource_type": RESOURCE_TYPES[kind], "data_type": data_type,
           "description": definition.description or f"Outreach Sync plugin field '{definition.key}'"}
    if unverified:
        row["is_hidden"] = definition.hidden
    if data_type == "boolean":
        row["default_value_boolean"] = False
    return row


def process_row(proc: ProcessDef, *, enabled: bool) -> dict:
    """The `automation/scheduled_actions` / `web_actions` fields for a manifest process. Only
    title, name, script_name, web_identifier and log_level are documented (workbooks-api.md §9,
    R2.3); the schedule fields follow the emulator's model."""
    row: dict[str, Any] = {"title": proc.title, "name": proc.title, "script_name": proc.script_file,
                           "log_level": proc.log_level, "timeout_seconds": proc.max_run_time_seconds,
                           "parameters": encode_parameters(proc.parameters)}
    if proc.kind == "scheduled":
        row["frequency_minutes"] = proc.every_minutes
        row["enabled"] = enabled
    else:
        row["web_identifier"] = proc.web_identifier
    return row


def encode_parameters(parameters: dict) -> str:
    return json.dumps(parameters, sort_keys=True)


def parameters_of(found: dict) -> dict:
    value = found.get("parameters")
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            decoded = json.loads(value)
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def _same_title(a, b) -> bool:
    return isinstance(a, str) and isinstance(b, str) and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _type_matches(actual, wanted: str) -> bool:
    return str(actual or "").lower() in _TYPE_ALIASES.get(wanted, {wanted})


def _type_serves(actual, wanted: str) -> bool:
    """The field's type is the manifest's or one of its stand-ins (TYPE_FALLBACKS)."""
    return any(_type_matches(actual, t) for t in TYPE_FALLBACKS.get(wanted, (wanted,)))


def _type_words(item: FieldFinding, *, brief: bool = False) -> str:
    if not item.stand_in:
        return ""
    if brief:
        return f", a '{item.data_type}' field"
    refused = f" (Workbooks refused {', '.join(repr(t) for t in item.refused_types)})" if item.refused_types else ""
    notes = {"string": "; the plugin keeps what it writes there within 255 characters",
             "date": "; it keeps the day, not the time of day"}
    return (f": a '{item.data_type}' field standing in for '{item.definition.data_type}'{refused}"
            + notes.get(item.data_type, ""))


def _steps_words(steps: int) -> str:
    if not steps:
        return ""
    return f"; {steps} setting{'s' if steps != 1 else ''} to make by hand in Workbooks (see the notices above)"


def manual_steps(manifest: Manifest, survey: Survey) -> list[str]:
    """What the administrator must set by hand in the Workbooks UI because its API did not show
    (so did not take) it: the processes' schedule settings (R2.3) and hidden fields (R2.2)."""
    steps: list[str] = []
    for proc in survey.processes:
        if proc.found is None or not proc.unknown_settings:
            continue
        definition = proc.definition
        where = f"the {proc.label}"
        unknown = set(proc.unknown_settings)
        if "frequency_minutes" in unknown and definition.every_minutes:
            steps.append(f"{where}: run it every {definition.every_minutes} "
                         f"minute{'s' if definition.every_minutes != 1 else ''}")
        if "timeout_seconds" in unknown:
            steps.append(f"{where}: maximum run time {definition.max_run_time_seconds} seconds")
        if "enabled" in unknown and definition.kind == "scheduled":
            steps.append(f"{where}: switch it on once Outreach is authorised" +
                         (" (it is): make sure it is on" if survey.authorised else
                          " with the 'Outreach Authorisation' web process (a run before that exits 2, "
                          "which switches the process off)"))
        if "parameters" in unknown and definition.parameters:
            values = ", ".join(f"{name} = {_parameter_text(value)}" for name, value in definition.parameters.items())
            steps.append(f"{where}: script parameters {values} (optional: the script uses these values "
                         "when a parameter is not set; set one only to change it)")
    hidden = sorted({item.definition.title for item in survey.fields if item.hidden_unknown})
    for title in hidden:
        kinds = " and ".join(KIND_WORDS[k] for k in RESOURCE_TYPES
                             if any(i.kind == k and i.definition.title == title and i.hidden_unknown
                                    for i in survey.fields))
        steps.append(f"the field '{title}' on {kinds}: hide it (keep it off the forms); it holds what the "
                     "plugin last sent, and editing it by hand only makes the next run send the record again")
    return steps


def _parameter_text(value) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the command line (scripts/outreach_install.py) -------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="outreach_install.py",
        description="Install, check or remove the Outreach Sync plugin in a Workbooks database.")
    parser.add_argument("--params", metavar="FILE", help="connection parameters (JSON); else env "
                        "WORKBOOKS_PARAMS or WORKBOOKS_PARAMS_FILE")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report what is missing or drifted; change nothing")
    mode.add_argument("--uninstall", action="store_true", help="remove the processes and the plugin state")
    parser.add_argument("--purge", action="store_true", help="with --uninstall: delete the custom fields "
                        "and their data too")
    parser.add_argument("--client-id", help="the Outreach OAuth client id (param outreach_client_id)")
    parser.add_argument("--client-secret", help="the Outreach OAuth client secret: visible to other users "
                        "(ps, shell history), prefer one of the next three")
    parser.add_argument("--client-secret-file", metavar="FILE", help="read the client secret from FILE "
                        f"(else env {SECRET_ENV}, else param outreach_client_secret, else a prompt when "
                        "--client-id is given at a terminal)")
    parser.add_argument("--redirect-uri", help="the OAuth redirect URI registered with Outreach "
                        "(param outreach_redirect_uri); default: the web process's own address, accepted "
                        "only when it is the Workbooks service's host")
    parser.add_argument("--manifest", help="the manifest to install (default: the bundle's manifest.yaml)")
    parser.add_argument("--wait", type=float, default=360.0, metavar="SECONDS",
                        help="how long to wait for Workbooks to create custom fields (default 360)")
    args = parser.parse_args(argv)
    if args.purge and not args.uninstall:
        parser.error("--purge only goes with --uninstall")
    return args


SECRET_ENV = "OUTREACH_CLIENT_SECRET"


def client_secret_of(args: argparse.Namespace, params: dict, log, *, environ: dict | None = None,
                     stdin=None, ask: Callable[[str], str] | None = None) -> str | None:
    """The OAuth client secret, from (in order) --client-secret (with a warning: the command line
    is visible in `ps` and shell history), --client-secret-file, env OUTREACH_CLIENT_SECRET, the
    parameter outreach_client_secret, or — when --client-id is given and stdin is a terminal — a
    prompt that does not echo. None when none of them has one."""
    import getpass
    import os
    environ = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    if args.client_secret:
        log.warning("the OAuth client secret was given with --client-secret, where other users of this "
                    f"computer can see it (ps, shell history): use --client-secret-file, env {SECRET_ENV} "
                    "or the prompt instead")
        return args.client_secret
    if args.client_secret_file:
        try:
            with open(args.client_secret_file, encoding="utf-8") as handle:
                secret = handle.read(4096).strip()
        except OSError as exc:
            raise ActionRequired(f"cannot read the client secret file {args.client_secret_file}: "
                                 f"{exc.strerror or exc}") from None
        if not secret:
            raise ActionRequired(f"the client secret file {args.client_secret_file} is empty")
        return secret
    for value in (environ.get(SECRET_ENV), params.get("outreach_client_secret")):
        if value:
            return str(value)
    if args.client_id and getattr(stdin, "isatty", lambda: False)():
        secret = (ask or getpass.getpass)("Outreach OAuth client secret (not shown): ").strip()
        return secret or None
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse, run one mode, print `[level] message` lines with the summary last; the exit code:
    0 done (or nothing to do), 1 try again / --check found something, 2 a person must act."""
    from .connection import open_workbooks
    from .endpoints import tls_warning
    from .redact import Redactor
    from .runtime import Log, exit_code_for, load_params
    from .state import StateStore

    redactor = Redactor()
    log = Log(redactor=redactor)
    args = parse_args(argv)
    connection = None
    mode = "check" if args.check else "uninstall" if args.uninstall else "install"
    try:
        params = load_params(["--params", args.params] if args.params else [])
        client = {"client_id": args.client_id or params.get("outreach_client_id"),
                  "client_secret": client_secret_of(args, params, log),
                  "redirect_uri": args.redirect_uri or params.get("outreach_redirect_uri")}
        redactor.add(client["client_secret"])
        manifest = load_manifest(args.manifest)
        if tls_warning(params):
            log.warning(tls_warning(params))
        connection = open_workbooks(params, redactor, name="workbooks")
        database = connection.workbooks.database
        log.info(f"{manifest.name} {manifest.version}: {mode} in the Workbooks database "
                 f"{database.get('name')!r} (id {database.get('id')})")
        installer = Installer(connection.workbooks, StateStore(connection.workbooks), manifest, log,
                              wait_seconds=args.wait)
        if args.check:
            outcome = installer.check()
        elif args.uninstall:
            outcome = installer.uninstall(purge=args.purge)
        else:
            outcome = installer.install(oauth_client=client)
    except BadCredentials as exc:
        log.error(f"{mode} failed: {exc}. The installer needs a Workbooks API key (or session) of a "
                  "user who may use the API and administer custom fields and processes")
        return exit_code_for(exc)
    except PluginError as exc:
        # A multi-line message (e.g. manifest problems, one a line) prints its details first,
        # so the headline is still the last line: the process summary.
        head, *details = str(exc).splitlines() or [""]
        for line in details:
            log.error(line)
        log.error(f"{mode} failed: {head.rstrip(':')}")
        return exit_code_for(exc)
    except Exception as exc:  # noqa: BLE001 - a crash must still end with a summary line
        print(redactor(traceback.format_exc()), file=sys.stderr)
        log.error(f"{mode} failed unexpectedly: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - logging out is a courtesy
                pass
    if outcome.exit_code == 0:
        log.notice(outcome.summary)
    else:
        log.warning(outcome.summary)
    return outcome.exit_code
