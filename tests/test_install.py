"""The installer end to end: scripts/outreach_install.py as a subprocess, over real HTTP, against
the Workbooks emulator."""
from __future__ import annotations

import json

import pytest
import yaml

from plugin.manifest import load_manifest
from tests.install_helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ROOT, Plugin, assert_no_secrets

PERSON, ORGANISATION = "Private::Crm::Person", "Private::Crm::Organisation"
MANIFEST = load_manifest()
TITLES = {kind: [f.title for f in MANIFEST.custom_fields(kind)] for kind in ("person", "organisation")}
KIND_OF = {"Private::Crm::Person": "person", "Private::Crm::Organisation": "organisation"}


@pytest.fixture
def plugin(workbooks_server, tmp_path):
    """The emulator's earlier, lenient model: the made-up schedule/hidden attribute names exist
    and every guessed data_type is accepted (switches unverified_attributes, custom_field_data_types).
    The strict defaults have their own tests below (`strict`)."""
    workbooks_server.app.config.update(unverified_attributes=True, custom_field_data_types="reference")
    return Plugin(workbooks_server, tmp_path)


@pytest.fixture
def strict(workbooks_server, tmp_path):
    """The Workbooks emulator's defaults: made-up attribute names unknown, verified types only."""
    return Plugin(workbooks_server, tmp_path)


def by_title(fields: list[dict]) -> dict[str, dict]:
    return {f["title"]: f for f in fields}


def test_install_on_an_empty_database_creates_fields_processes_and_state(plugin):
    run = plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET)

    assert run.returncode == 0, run.output
    assert run.summary.startswith("[notice] install: installed version 0.2.0: 20 fields created")
    assert all(line.startswith("[") for line in run.lines)
    for resource_type in (PERSON, ORGANISATION):
        fields = by_title(plugin.fields(resource_type))
        assert sorted(fields) == sorted(TITLES[KIND_OF[resource_type]])
        for definition in MANIFEST.custom_fields(KIND_OF[resource_type]):
            field = fields[definition.title]
            assert field["status"] == "Available"
            assert field["data_type"] == definition.data_type
            assert field["is_hidden"] is definition.hidden
    assert by_title(plugin.fields(PERSON))["Outreach Sync Snapshot"]["is_hidden"] is True

    [scheduled] = plugin.processes("scheduled_actions")
    assert scheduled["title"] == "Outreach Send/Receive"
    assert scheduled["frequency_minutes"] == 1
    assert scheduled["script_name"] == "scripts/outreach_send_receive.py"
    assert scheduled["timeout_seconds"] == 300
    assert scheduled["enabled"] is False            # until Outreach is authorised
    assert json.loads(scheduled["parameters"]) == {
        "outreach_api_url": "https://api.outreach.io/api/v2", "outreach_oauth_url": "https://api.outreach.io/oauth",
        "outreach_web_url": "https://web.outreach.io", "mapping": "mappings/default.yaml", "dry_run": False,
        "verify_tls": True, "outreach_hourly_budget": 8000}
    [web] = plugin.processes("web_actions")
    assert web["title"] == "Outreach Authorisation"
    assert web["web_identifier"] == "outreach_authorisation"
    assert web["script_name"] == "scripts/outreach_authorise.py"

    install = plugin.state("install")
    assert install["version"] == "0.2.0" and install["plugin"] == "outreach-sync"
    assert install["fields"]["person"]["Outreach Id"] == "cf_person_outreach_id"
    assert install["fields"]["organisation"]["Sync to Outreach"] == "cf_organisation_sync_to_outreach"
    assert install["processes"]["send_receive"]["id"] == scheduled["id"]
    assert install["processes"]["authorise"]["id"] == web["id"]
    assert install["oauth_client"] == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert_no_secrets(run.output, [plugin.api_key, CLIENT_SECRET])


def test_reinstall_is_a_no_op_with_zero_writes(plugin):
    assert plugin.install().returncode == 0
    plugin.wb.app.reset_counts()

    again = plugin.install()

    assert again.returncode == 0, again.output
    assert "nothing to do" in again.summary
    assert plugin.writes() == {}
    assert len(plugin.fields()) == 20
    assert len(plugin.processes("scheduled_actions")) == 1 and len(plugin.processes("web_actions")) == 1


def test_check_reports_a_complete_install_and_then_what_is_missing(plugin):
    assert plugin.install().returncode == 0
    plugin.wb.app.reset_counts()

    ok = plugin.install("--check")
    assert ok.returncode == 0, ok.output
    assert ok.summary.endswith("all present")
    assert "Outreach is not authorised yet" in ok.stdout

    person_id = by_title(plugin.fields(PERSON))["Outreach URL"]["id"]
    plugin.wb.app.delete("custom_fields", person_id)
    process = plugin.processes("scheduled_actions")[0]
    plugin.wb.app.delete("scheduled_actions", process["id"])

    missing = plugin.install("--check")
    assert missing.returncode == 1
    assert "[warning] People: field 'Outreach URL' is missing" in missing.stdout
    assert "[warning] the scheduled process 'Outreach Send/Receive' is missing" in missing.stdout
    assert "2 missing" in missing.summary
    assert plugin.writes() == {}                     # --check never writes

    # Install repairs exactly what is missing.
    repaired = plugin.install()
    assert repaired.returncode == 0, repaired.output
    assert "1 fields created" in repaired.summary and "1 processes created" in repaired.summary
    assert plugin.install("--check").returncode == 0


def test_check_notes_settings_an_administrator_changed_without_failing(plugin):
    assert plugin.install().returncode == 0
    process = plugin.processes("scheduled_actions")[0]
    params = json.loads(process["parameters"])
    params["outreach_hourly_budget"] = 5000
    plugin.wb.app.edit("scheduled_actions", process["id"], {"parameters": json.dumps(params)})

    check = plugin.install("--check")
    assert check.returncode == 0, check.output
    assert "[notice] the scheduled process 'Outreach Send/Receive': parameter outreach_hourly_budget is 5000" \
        in check.stdout
    # and install leaves the administrator's value alone
    plugin.wb.app.reset_counts()
    assert "nothing to do" in plugin.install().summary
    assert json.loads(plugin.processes("scheduled_actions")[0]["parameters"])["outreach_hourly_budget"] == 5000


def test_check_on_an_empty_database_exits_1(plugin):
    check = plugin.install("--check")
    assert check.returncode == 1
    assert "[warning] the install state (API Data 'install') is missing" in check.stdout
    assert check.summary.startswith("[warning] check: 0 of 20 fields, 0 of 2 processes, no install state")


def test_half_finished_install_is_adopted_not_duplicated(plugin):
    # An earlier install created the fields, then died before recording anything.
    plugin.wb.app.add_fault(method="PUT", path="/automation/api_data", status=500, count=None)
    first = plugin.install()
    assert first.returncode == 1, first.output
    assert first.summary.startswith("[error] install failed:")
    assert len(plugin.fields()) == 20 and plugin.state("install") is None
    assert plugin.processes("scheduled_actions") == []
    plugin.wb.app.clear_faults()

    second = plugin.install()

    assert second.returncode == 0, second.output
    assert "0 fields created, 20 adopted" in second.summary
    assert "[notice] People: field 'Outreach Id' already exists (cf_person_outreach_id): adopted" in second.stdout
    assert len(plugin.fields()) == 20
    assert plugin.state("install")["fields"]["person"]["Outreach Id"] == "cf_person_outreach_id"
    assert len(plugin.processes("scheduled_actions")) == 1


def test_fields_still_being_created_are_waited_for_bounded_then_finished_by_a_rerun(plugin):
    # Workbooks creates fields asynchronously: each stays "Pending" for a few reads.
    plugin.wb.app.config["custom_field_pending_polls"] = 3
    slow = plugin.install("--wait", "0")
    assert slow.returncode == 1, slow.output
    assert "20 custom field(s) were still being created after 0 s; run the installer again to finish" \
        in slow.summary
    assert {f["status"] for f in plugin.fields()} == {"Pending"}
    assert plugin.processes("scheduled_actions") == [] and plugin.state("install") is None

    done = plugin.install()

    assert done.returncode == 0, done.output
    assert "0 fields created, 20 adopted" in done.summary
    assert "[info] waiting for Workbooks to make 20 custom field(s) available" in done.stdout
    assert len(plugin.fields()) == 20
    assert {f["status"] for f in plugin.fields()} == {"Available"}
    assert len(plugin.processes("scheduled_actions")) == 1


def test_a_title_collision_gets_a_suffixed_column_and_the_state_records_it(plugin):
    # An administrator's own field already owns the column name `cf_person_outreach_id`.
    taken = plugin.wb.app.add_custom_field("people", "Outreach ID!", "string")
    assert taken == "cf_person_outreach_id"

    run = plugin.install()

    assert run.returncode == 0, run.output
    ours = by_title(plugin.fields(PERSON))["Outreach Id"]["value_column_name"]
    assert ours.startswith("cf_person_outreach_id_")
    assert plugin.state("install")["fields"]["person"]["Outreach Id"] == ours


def test_an_existing_field_of_the_wrong_type_stops_the_install_before_any_write(plugin):
    plugin.wb.app.add_custom_field("organisations", "Outreach Id", "boolean")
    plugin.wb.app.reset_counts()

    run = plugin.install()

    assert run.returncode == 2
    assert "[error] Organisations: field 'Outreach Id' already exists and is a 'boolean' field, but the " \
           "plugin needs 'string'" in run.stdout
    assert "nothing was changed" in run.summary
    assert plugin.writes() == {}


def test_upgrade_adds_only_what_is_new(plugin, tmp_path):
    # An installation made by 0.1.0: the same manifest without the Person's receive fields and
    # without a process parameter the newer version has.
    older = yaml.safe_load((ROOT / "manifest.yaml").read_text())
    older["version"] = "0.1.0"
    older["custom_fields"]["person"] = [f for f in older["custom_fields"]["person"] if not f.get("optional")]
    del older["processes"]["scheduled"][0]["parameters"]["outreach_hourly_budget"]
    old_manifest = tmp_path / "old-manifest.yaml"
    old_manifest.write_text(yaml.safe_dump(older, sort_keys=False))
    assert plugin.install("--manifest", str(old_manifest)).returncode == 0
    assert len(plugin.fields(PERSON)) == 8
    process = plugin.processes("scheduled_actions")[0]
    params = json.loads(process["parameters"])
    params["dry_run"] = True                           # an administrator's choice
    plugin.wb.app.edit("scheduled_actions", process["id"], {"parameters": json.dumps(params)})
    check = plugin.install("--check")
    assert "Outreach Sequence State" in check.output and check.returncode == 1   # --check names what is missing
    plugin.wb.app.reset_counts()

    run = plugin.install()                              # this version's manifest

    assert run.returncode == 0, run.output
    assert "upgraded 0.1.0 to version 0.2.0: 4 fields created, 0 processes created, 1 processes updated" \
        in run.summary
    assert sorted(f["title"] for f in plugin.fields(PERSON)) == sorted(TITLES["person"])
    assert {"Outreach Sequence State", "Outreach Sequence", "Outreach State Updated At",
            "Outreach Opted Out At"} <= set(TITLES["person"])
    assert len(plugin.fields(ORGANISATION)) == 8
    params = json.loads(plugin.processes("scheduled_actions")[0]["parameters"])
    assert params["outreach_hourly_budget"] == 8000 and params["dry_run"] is True
    assert plugin.state("install")["version"] == "0.2.0"
    assert plugin.wb.app.count_of("PUT", "custom_fields") == 1      # one create request
    assert len(plugin.processes("web_actions")) == 1


def test_uninstall_removes_processes_and_state_but_keeps_fields_and_data(plugin):
    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET).returncode == 0
    person = plugin.wb.app.insert("people", {"name": "Ada Lovelace", "cf_person_outreach_id": "123"})

    run = plugin.install("--uninstall")

    assert run.returncode == 0, run.output
    assert run.summary == ("[notice] uninstall: 2 processes removed, 1 plugin state items removed (Outreach "
                           "tokens included), 20 custom fields kept with their data (--purge deletes them)")
    assert plugin.processes("scheduled_actions") == [] and plugin.processes("web_actions") == []
    assert plugin.state_keys() == []
    assert len(plugin.fields()) == 20
    assert plugin.wb.app.record("people", person["id"])["cf_person_outreach_id"] == "123"
    assert plugin.install("--check").returncode == 1
    assert_no_secrets(run.output, [plugin.api_key, CLIENT_SECRET])


def test_uninstall_with_purge_deletes_the_fields_too(plugin):
    assert plugin.install().returncode == 0

    run = plugin.install("--uninstall", "--purge")

    assert run.returncode == 0, run.output
    assert "20 custom fields deleted with their data" in run.summary
    assert plugin.fields() == []


def test_purge_needs_uninstall(plugin):
    run = plugin.install("--purge")
    assert run.returncode == 2
    assert "--purge only goes with --uninstall" in run.stderr


def test_wrong_credentials_fail_clearly_without_printing_the_key(plugin):
    bad_key = "99999-88888-77777-66666-55555-44444-33333-22222"

    run = plugin.install(params=plugin.params(workbooks_api_key=bad_key))

    assert run.returncode == 2
    assert run.summary.startswith("[error] install failed: the Workbooks API key or login was not recognised")
    assert "administer custom fields and processes" in run.summary
    assert_no_secrets(run.output, [bad_key])


def test_missing_permission_fails_clearly(plugin):
    plugin.wb.app.add_fault(path="/admin/custom_fields", status=403, count=None)

    run = plugin.install()

    assert run.returncode == 2
    assert "may not use the API" in run.summary
    assert plugin.state("install") is None


def test_workbooks_unreachable_is_transient(plugin):
    run = plugin.install(params=plugin.params(_workbooks_service="http://127.0.0.1:9"))
    assert run.returncode == 1
    assert run.summary.startswith("[error] install failed:")


def test_no_credentials_at_all(plugin):
    run = plugin.install(params={"_workbooks_service": plugin.wb.url})
    assert run.returncode == 2
    assert "no Workbooks credentials in the parameters" in run.summary


def test_process_engine_session_and_params_from_the_environment(plugin):
    session = plugin.wb.app.create_session()
    params = {"_workbooks_service": plugin.wb.url, "_workbooks_username": session["username"],
              "_workbooks_session_id": session["session_id"],
              "_workbooks_logical_database_id": session["logical_database_id"],
              "_workbooks_api_logging_key": "log-key-123456", "_workbooks_client_name": "Process Engine"}
    # WORKBOOKS_PARAMS (JSON text) when there is no --params FILE
    import subprocess
    import sys
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "outreach_install.py")],
                          capture_output=True, text=True, timeout=120,
                          env={"WORKBOOKS_PARAMS": json.dumps(params), "PATH": "/usr/bin:/bin"})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed version 0.2.0" in done.stdout.splitlines()[-1]
    assert len(plugin.fields()) == 20
    assert_no_secrets(done.stdout + done.stderr, [session["session_id"], "log-key-123456"])


def test_invalid_manifest_is_refused_with_file_and_line(plugin, tmp_path):
    broken = tmp_path / "manifest.yaml"
    broken.write_text((ROOT / "manifest.yaml").read_text().replace("every_minutes: 1", "every_minutes: often"))

    run = plugin.install("--manifest", str(broken))

    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1) if "every_minutes" in text)
    assert run.returncode == 2
    assert run.lines == [
        f"[error] manifest.yaml:{line}:22: processes.scheduled[0].every_minutes — must be a whole number, "
        "not 'often'",
        "[error] install failed: the plugin manifest is invalid (1 problem)"]
    assert plugin.fields() == []


# --- the strict readings of the Workbooks emulator (workbooks-api.md R2.2, R2.3) --------------------------

STAND_INS = {"Outreach URL": "string", "Outreach Error Message": "string", "Outreach Last Synced": "date",
             "Outreach Sync Snapshot": "string"}


def _manual_steps(run) -> list[str]:
    return [line[len("[notice]   - "):] for line in run.lines if line.startswith("[notice]   - ")]


def _assert_manual_steps(run, *, authorised: bool = False) -> None:
    steps = _manual_steps(run)
    assert "the scheduled process 'Outreach Send/Receive': run it every 1 minute" in steps
    assert "the scheduled process 'Outreach Send/Receive': maximum run time 300 seconds" in steps
    assert ("the scheduled process 'Outreach Send/Receive': switch it on once Outreach is authorised"
            + (" (it is): make sure it is on" if authorised else
               " with the 'Outreach Authorisation' web process (a run before that exits 2, which switches "
               "the process off)")) in steps
    assert any(s.startswith("the scheduled process 'Outreach Send/Receive': script parameters "
                            "outreach_api_url = https://api.outreach.io/api/v2, ") and "dry_run = false" in s
               and "outreach_hourly_budget = 8000" in s for s in steps)
    assert "the web process 'Outreach Authorisation': maximum run time 60 seconds" in steps
    assert any(s.startswith("the field 'Outreach Sync Snapshot' on People and Organisations: hide it") for s in steps)
    assert len(steps) == 7, steps


def test_install_copes_with_refused_types_and_unknown_settings_in_api_key_mode(strict):
    # Emulator defaults: custom_field_data_types "verified" refuses url/text/datetime (R2.2 [I]);
    # unverified_attributes False: is_hidden and the schedule settings are silently dropped in
    # API-key mode (§2.1 [O]). The install succeeds with stand-in types and tells the
    # administrator exactly what to set by hand.
    run = strict.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET)

    assert run.returncode == 0, run.output
    assert run.summary == ("[notice] install: installed version 0.2.0: 20 fields created, 2 processes created, "
                           "install state recorded; next: authorise Outreach; 7 settings to make by hand in "
                           "Workbooks (see the notices above)")
    assert ("[info] People: field 'Outreach URL' created (cf_person_outreach_url): a 'string' field standing in "
            "for 'url' (Workbooks refused 'url', 'uri'); the plugin keeps what it writes there within 255 "
            "characters") in run.lines
    assert ("[info] Organisations: field 'Outreach Last Synced' created (cf_organisation_outreach_last_synced): "
            "a 'date' field standing in for 'datetime' (Workbooks refused 'datetime', 'date_time'); it keeps the "
            "day, not the time of day") in run.lines
    _assert_manual_steps(run)
    for resource_type in (PERSON, ORGANISATION):
        fields = by_title(strict.fields(resource_type))
        assert sorted(fields) == sorted(TITLES[KIND_OF[resource_type]])
        for title, field in fields.items():
            assert field["data_type"] == STAND_INS.get(title, field["data_type"])
            assert "is_hidden" not in field
    install = strict.state("install")
    for kind in ("person", "organisation"):
        assert {t: install["field_types"][kind][t] for t in STAND_INS} == STAND_INS
        assert install["field_types"][kind]["Sync to Outreach"] == "boolean"
    [scheduled] = strict.processes("scheduled_actions")
    assert scheduled["script_name"] == "scripts/outreach_send_receive.py"
    assert not {"frequency_minutes", "enabled", "timeout_seconds", "parameters"} & set(scheduled)
    assert install["processes"]["send_receive"]["id"] == scheduled["id"]

    # --check: the same steps as notices, never counted as missing or drifted
    strict.wb.app.reset_counts()
    check = strict.install("--check")
    assert check.returncode == 0, check.output
    assert check.summary == ("[notice] check: 20 of 20 fields, 2 of 2 processes, install state version 0.2.0; "
                             "all present; 7 settings to make by hand in Workbooks (see the notices above)")
    assert ("[info] People: field 'Outreach Error Message' is cf_person_outreach_error_message: a 'string' field "
            "standing in for 'text'; the plugin keeps what it writes there within 255 characters") in check.lines
    _assert_manual_steps(check)
    assert not [line for line in check.lines if line.startswith("[warning]")]

    # and a reinstall neither writes (no parameters pushed again and again) nor fails
    again = strict.install()
    assert again.returncode == 0 and "nothing to do" in again.summary, again.output
    _assert_manual_steps(again)
    assert strict.writes() == {}


def test_install_in_a_strict_session_sends_again_without_the_unknown_attributes(strict):
    # Under the Process Engine the client logs in with _strict_attribute_checking (§2.2): Workbooks
    # refuses rows naming is_hidden or the schedule settings; the installer creates them without.
    session = strict.wb.app.create_session()
    params = {"_workbooks_service": strict.wb.url, "_workbooks_username": session["username"],
              "_workbooks_session_id": session["session_id"],
              "_workbooks_logical_database_id": session["logical_database_id"]}

    run = strict.install(params=params)

    assert run.returncode == 0, run.output
    assert "20 fields created, 2 processes created" in run.summary
    assert len(strict.fields()) == 20 and len(strict.processes("web_actions")) == 1
    assert {f["title"]: f["data_type"] for f in strict.fields(PERSON) if f["title"] in STAND_INS} == STAND_INS
    _assert_manual_steps(run)
    counts = strict.wb.app.counts
    # a round refused for is_hidden, then url→uri→string and datetime→date_time→date: 4 field writes
    assert sum(n for key, n in counts.items() if key.startswith("PUT ") and "custom_fields" in key) == 4
    assert sum(n for key, n in counts.items() if key.startswith("PUT ") and "_actions" in key) == 4


def test_check_and_reinstall_accept_stand_in_fields_made_by_hand(strict):
    # An administrator (or an earlier plugin version) made "Outreach URL" a string field: it serves
    strict.wb.app.add_custom_field("people", "Outreach URL", "string")
    run = strict.install()
    assert run.returncode == 0, run.output
    assert ("[notice] People: field 'Outreach URL' already exists (cf_person_outreach_url, a 'string' field): "
            "adopted, not created again") in run.lines
    assert strict.state("install")["field_types"]["person"]["Outreach URL"] == "string"
    assert strict.install("--check").returncode == 0


def test_authorising_with_unknown_settings_asks_for_the_process_to_be_switched_on(workbooks_server,
                                                                                   outreach_server, tmp_path):
    # workbooks-api.md R2.3: `enabled` has no known API name, so the authorisation cannot switch
    # the process on; its page and a later --check say to do it by hand
    outreach_server.app.add_user("owner@acme.example", "owner")
    plugin = Plugin(workbooks_server, tmp_path, outreach_server)
    assert plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                          "--redirect-uri", REDIRECT_URI).returncode == 0
    _, callback = plugin.authorise()
    assert callback.returncode == 0 and callback.status == 200, callback.output
    assert "Now switch on the scheduled process &#x27;Outreach Send/Receive&#x27; in Workbooks" in callback.body
    check = plugin.install("--check")
    assert check.returncode == 0
    _assert_manual_steps(check, authorised=True)


class _RefusingWorkbooks:
    """Just enough of WorkbooksClient for Installer._create_fields: refuses rows naming
    `is_hidden` without saying why, and every data_type but `accepted`."""

    def __init__(self, accepted: set[str]):
        self.accepted = accepted
        self.rounds: list[list[tuple[str, bool]]] = []

    def batch(self, endpoint, rows, extra=()):
        from plugin.workbooks import RowResult
        self.rounds.append([(r["data_type"], "is_hidden" in r) for r in rows])
        results = []
        for n, row in enumerate(rows):
            if "is_hidden" in row:
                results.append(RowResult(ok=False, errors=["the object could not be saved"]))
            elif row["data_type"] not in self.accepted:
                results.append(RowResult(ok=False, errors=["data_type: unknown type"]))
            else:
                results.append(RowResult(ok=True, id=100 + n, affected={
                    "id": 100 + n, "status": "Available", "value_column_name": f"cf_{n}", "data_type": row["data_type"]}))
        return results


def _installer(wb):
    import io
    from plugin.install import Installer
    from plugin.runtime import Log
    out = io.StringIO()
    return Installer(wb, state=None, manifest=MANIFEST, log=Log(out, level="debug")), out


def test_refused_attributes_and_types_fall_back_field_by_field():
    # workbooks-api.md R2.2: an unexplained refusal of a row naming is_hidden drops it first;
    # a refused type moves to the next of TYPE_FALLBACKS
    from plugin.install import FieldFinding
    wb = _RefusingWorkbooks({"boolean", "string", "date"})
    installer, out = _installer(wb)
    by_title = {d.title: d for d in MANIFEST.custom_fields("person")}
    items = [FieldFinding("person", by_title[t]) for t in ("Sync to Outreach", "Outreach URL", "Outreach Last Synced")]
    assert installer._create_fields(items) == 3
    assert [item.data_type for item in items] == ["boolean", "string", "date"]
    assert [item.refused_types for item in items] == [[], ["url", "uri"], ["datetime", "date_time"]]
    assert wb.rounds[0] == [("boolean", True), ("url", True), ("datetime", True)]
    assert wb.rounds[1] == [("boolean", False), ("url", False), ("datetime", False)]
    assert len(wb.rounds) == 4
    assert "Workbooks refused is_hidden" in out.getvalue()


def test_a_field_whose_every_type_is_refused_stops_the_install_clearly():
    from plugin.install import FieldFinding, InstallConflict
    wb = _RefusingWorkbooks({"boolean"})
    installer, _ = _installer(wb)
    url = next(d for d in MANIFEST.custom_fields("person") if d.title == "Outreach URL")
    with pytest.raises(InstallConflict) as caught:
        installer._create_fields([FieldFinding("person", url)])
    assert "as any of url, uri, string" in str(caught.value) and "data_type: unknown type" in str(caught.value)
