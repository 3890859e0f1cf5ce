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
     "fields":    {"person": {title: value_column_name}, "organisation": {...}},
     "field_ids": {"person": {title: id}, ...},
     "processes": {key: {"id", "title", "kind"}},
     "oauth_client": {"client_id", "client_secret", "redirect_uri"}   (only what was given)}
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
from .manifest import RESOURCE_TYPES, FieldDef, Manifest, ProcessDef, load_manifest

KIND_WORDS = {"person": "People", "organisation": "Organisations"}
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


class InstallConflict(ActionRequired):
    """Something in the database stops the install and a person must decide (message says what)."""


@dataclass
class FieldFinding:
    kind: str
    definition: FieldDef
    found: dict | None = None          # the admin/custom_fields row, when one exists
    drift: str | None = None           # why the existing field cannot serve as this one

    @property
    def label(self) -> str:
        return f"{KIND_WORDS[self.kind]}: field '{self.definition.title}'"

    @property
    def available(self) -> bool:
        return bool(self.found) and str(self.found.get("status") or "").lower() == "available"

    @property
    def column(self) -> str | None:
        return (self.found or {}).get("value_column_name") or None


@dataclass
class ProcessFinding:
    definition: ProcessDef
    found: dict | None = None
    missing_parameters: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)   # settings an administrator changed

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
                self.log.info(f"{item.label} is {item.column}")
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
        self.log.info("Outreach is authorised" if survey.authorised else
                      "Outreach is not authorised yet: open the 'Outreach Authorisation' web process")
        fields_ok = sum(1 for f in survey.fields if f.available and not f.drift)
        procs_ok = sum(1 for p in survey.processes if p.found)
        state_words = (f"install state version {survey.install.get('version')}" if survey.install
                       else "no install state")
        verdict = "all present" if not (missing or drifted) else f"{missing} missing, {drifted} drifted"
        return Outcome(1 if missing or drifted else 0,
                       f"check: {fields_ok} of {len(survey.fields)} fields, {procs_ok} of "
                       f"{len(survey.processes)} processes, {state_words}; {verdict}")

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
            self.log.notice(f"{item.label} already exists ({item.column}): adopted, not created again")

        created_fields = self._create_fields([f for f in survey.fields if f.found is None])
        self._wait_until_available([f for f in survey.fields if not f.available])

        writes = 0
        # Recorded before any process exists, so a run never finds a process without state.
        writes += self._record(survey, oauth_client)
        created, updated = self._ensure_processes(survey)
        if created or updated:
            writes += self._record(survey, oauth_client)

        if not (created_fields or created or updated or writes):
            return Outcome(0, f"install: nothing to do; version {self.manifest.version} is installed "
                              f"({len(survey.fields)} fields, {len(survey.processes)} processes)")
        verb = f"upgraded {previous} to" if previous and previous != self.manifest.version else "installed"
        parts = [f"{created_fields} fields created",
                 f"{len(adopted)} adopted" if adopted else None,
                 f"{created} processes created", f"{updated} processes updated" if updated else None,
                 "install state recorded" if writes else None]
        tail = "" if survey.authorised else "; next: authorise Outreach"
        return Outcome(0, f"install: {verb} version {self.manifest.version}: "
                          + ", ".join(p for p in parts if p) + tail)

    def _create_fields(self, missing: list[FieldFinding]) -> int:
        if not missing:
            return 0
        created = self.wb.create_custom_fields([field_row(f.kind, f.definition) for f in missing],
                                               asynchronous=True)
        if len(created) != len(missing):
            raise TransientError(f"Workbooks answered for {len(created)} of {len(missing)} new custom "
                                 "fields; run the installer again to finish")
        for item, row in zip(missing, created):
            item.found = {"title": item.definition.title, **row}
            self.log.info(f"{item.label} created ({item.column or 'column name pending'})")
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
                result = self._write_one(endpoint, {"__method": "POST", **wanted}, proc.label)
                proc.found = {**wanted, "id": result.id, "lock_version": result.lock_version}
                created += 1
                how = "" if proc.definition.kind != "scheduled" else \
                    (", enabled" if survey.authorised else ", disabled until Outreach is authorised")
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

    def _write_one(self, endpoint: str, row: dict, label: str):
        result = self.wb.batch(endpoint, [row])[0]
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
        for item in survey.fields:
            record["fields"][item.kind][item.definition.title] = item.column
            record["field_ids"][item.kind][item.definition.title] = item.found.get("id")
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
        typed = [f for f in same_title if _type_matches(f.get("data_type"), definition.data_type)]
        if len(typed) > 1:
            finding.found = typed[0]
            finding.drift = (f"exists {len(typed)} times "
                             f"({', '.join(str(f.get('value_column_name')) for f in typed)}); "
                             "the plugin cannot tell which to use: delete or rename the extra ones")
            return finding
        chosen = typed[0] if typed else same_title[0]
    finding.found = dict(chosen)
    if not _type_matches(chosen.get("data_type"), definition.data_type):
        finding.drift = (f"is a '{chosen.get('data_type')}' field, but the plugin needs "
                         f"'{definition.data_type}': rename or delete that field, then install again")
    return finding


def _match_process(proc: ProcessDef, listed: list[dict], recorded_id) -> ProcessFinding:
    finding = ProcessFinding(proc)
    by_id = [r for r in listed if recorded_id is not None and str(r.get("id")) == str(recorded_id)]
    by_title = [r for r in listed if _same_title(r.get("title") or r.get("name"), proc.title)]
    found = (by_id or by_title or [None])[0]
    if found is None:
        return finding
    finding.found = dict(found)
    current = parameters_of(found)
    finding.missing_parameters = [name for name in proc.parameters if name not in current]
    wanted = process_row(proc, enabled=True)
    for name in _OWNED_SETTINGS:
        if name in wanted and found.get(name) not in (None, "") and str(found[name]) != str(wanted[name]):
            finding.differences.append(f"{name} is {found[name]!r}, the manifest says {wanted[name]!r}")
    for name, default in proc.parameters.items():
        if name in current and str(current[name]).lower() != str(default).lower():
            finding.differences.append(f"parameter {name} is {current[name]!r} (default {default!r})")
    return finding


# --- what goes on the wire ---------------------------------------------------------------------------

def field_row(kind: str, definition: FieldDef) -> dict:
    """An `admin/custom_fields` create row for one manifest field. `is_hidden` keeps the field
    off forms until an administrator adds it to a layout (R2.2: the attribute name is a guess)."""
    row = {"title": definition.title, "resource_type": RESOURCE_TYPES[kind], "data_type": definition.data_type,
           "is_hidden": definition.hidden,
           "description": definition.description or f"Outreach Sync plugin field '{definition.key}'"}
    if definition.data_type == "boolean":
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
    parser.add_argument("--client-secret", help="the Outreach OAuth client secret (param outreach_client_secret)")
    parser.add_argument("--redirect-uri", help="the OAuth redirect URI registered with Outreach "
                        "(param outreach_redirect_uri); default: the web process works it out")
    parser.add_argument("--manifest", help="the manifest to install (default: the bundle's manifest.yaml)")
    parser.add_argument("--wait", type=float, default=360.0, metavar="SECONDS",
                        help="how long to wait for Workbooks to create custom fields (default 360)")
    args = parser.parse_args(argv)
    if args.purge and not args.uninstall:
        parser.error("--purge only goes with --uninstall")
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse, run one mode, print `[level] message` lines with the summary last; the exit code:
    0 done (or nothing to do), 1 try again / --check found something, 2 a person must act."""
    from .connection import open_workbooks
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
                  "client_secret": args.client_secret or params.get("outreach_client_secret"),
                  "redirect_uri": args.redirect_uri or params.get("outreach_redirect_uri")}
        redactor.add(client["client_secret"])
        manifest = load_manifest(args.manifest)
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
