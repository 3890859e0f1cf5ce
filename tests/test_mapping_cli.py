"""`python -m tools.validate_mapping`: output format, exit codes, preview, and the check against a
real (emulated) Workbooks database."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.mapping import DEFAULT_MAPPING_PATH
from tests.mapping_helpers import mapping_text, position, write
from tools.validate_mapping import main

ROOT = Path(__file__).resolve().parent.parent
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<warning>warning: )?"
                          r"(?P<what>.+?)(?: — (?P<fix>.+))?$")

BROKEN = mapping_text(person="""
    - source: linkedin_url
      target: linkedinUrl
    - source: x
      target: custom1
      transforms: [lowr]
""")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_clean_mapping_exits_0_and_prints_no_problems(capsys):
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH)
    assert code == 0
    assert out == ""
    assert err.strip() == (f"{DEFAULT_MAPPING_PATH}: OK (person → prospect: 17 fields; "
                           "organisation → account: 6 fields)")


def test_problems_exit_1_one_line_each_in_the_documented_format(tmp_path, capsys):
    path = write(tmp_path, BROKEN)
    code, out, err = run(capsys, path)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        match = PROBLEM_LINE.match(line)
        assert match and match["file"] == str(path) and match["fix"], line
    line, col = position(BROKEN, "linkedinUrl")
    assert lines[0] == (f"{path}:{line}:{col}: `linkedinUrl` is not a prospect attribute in Outreach — "
                        "did you mean `linkedInUrl`?")
    assert "did you mean `lower`?" in lines[1]
    assert err.strip() == f"{path}: 2 errors, 0 warnings"


def test_warnings_do_not_fail_unless_strict(tmp_path, capsys):
    path = write(tmp_path, mapping_text(person="""
        - source: person_job_title
          target: title
          transforms: [{truncate: 300}]
    """))
    code, out, err = run(capsys, path)
    assert code == 0 and ": warning: `truncate: 300` is longer than" in out and "1 warning" in err
    code, out, err = run(capsys, path, "--strict")
    assert code == 1


def test_as_a_module_from_the_shell(tmp_path):
    path = write(tmp_path, BROKEN)
    bad = subprocess.run([sys.executable, "-m", "tools.validate_mapping", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    good = subprocess.run([sys.executable, "-m", "tools.validate_mapping", "mappings/default.yaml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (bad.returncode, good.returncode) == (1, 0)
    assert bad.stdout.count("\n") == 2 and good.stdout == ""


def test_bad_arguments_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("WORKBOOKS_API_KEY", raising=False)
    with pytest.raises(SystemExit) as caught:
        main([str(DEFAULT_MAPPING_PATH), "--workbooks", "http://127.0.0.1:9"])
    assert caught.value.code == 2
    assert "--workbooks needs --api-key" in capsys.readouterr().err


# --- preview --------------------------------------------------------------------------------------

def test_preview_prints_the_outreach_payload(tmp_path, capsys):
    record = write(tmp_path, json.dumps({"person_first_name": " Ann", "person_last_name": "Lee",
                                         "main_location[email]": "ANN@X.EXAMPLE", "person_job_title": "CTO",
                                         "no_email_soliciting": False}), "ann.json")
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", record)
    assert code == 0
    assert json.loads(out) == {"data": {"type": "prospect", "attributes": {
        "firstName": "Ann", "lastName": "Lee", "title": "CTO", "emails": ["ann@x.example"]}}}
    assert "left out because empty (skip_empty, Outreach keeps its value): middleName" in err
    assert "match key emails: 'ann@x.example'" in err


def test_preview_of_an_organisation_chosen_from_a_file_with_both(tmp_path, capsys):
    record = write(tmp_path, json.dumps({"person": {"person_first_name": "Ann"},
                                         "organisation": {"name": "Acme", "organisation_num_employees": "12"}}))
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", record, "--object", "organisation")
    assert code == 0
    assert json.loads(out)["data"] == {"type": "account", "attributes": {"name": "Acme", "numberOfEmployees": 12}}
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", record)
    assert code == 2 and "choose one with --object" in err


def test_preview_of_a_record_that_cannot_be_mapped_exits_1(tmp_path, capsys):
    record = write(tmp_path, json.dumps([{"name": "Acme", "organisation_num_employees": "a few"}]), "org.json")
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", record, "--object", "organisation")
    assert code == 1
    assert out.strip() == (f"{record}: cannot map organisation_num_employees → numberOfEmployees: "
                           "`a few` is not a number")


def test_preview_guesses_custom_field_columns_without_workbooks(tmp_path, capsys):
    path = write(tmp_path, mapping_text(person="""
        - source: {custom_field: "Lead Tier"}
          target: custom7
          transforms: [truncate]
    """))
    record = write(tmp_path, json.dumps({"main_location[email]": "a@x.example", "cf_person_lead_tier": "Gold"}),
                   "r.json")
    code, out, err = run(capsys, path, "--preview", record, "--object", "person")
    assert code == 0
    assert json.loads(out)["data"]["attributes"]["custom7"] == "Gold"
    assert 'assuming custom field "Lead Tier" is column cf_person_lead_tier' in err


def test_preview_needs_a_valid_mapping_and_a_readable_record(tmp_path, capsys):
    record = write(tmp_path, "{}", "r.json")
    code, out, err = run(capsys, write(tmp_path, BROKEN), "--preview", record)
    assert code == 1 and out.count("\n") == 2                  # problems, no preview
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", tmp_path / "missing.json")
    assert code == 2 and "does not exist" in err
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", write(tmp_path, "{nope", "bad.json"))
    assert code == 2 and "not a JSON record" in err
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--preview", record)
    assert code == 2 and "add --object" in err


# --- against Workbooks (the emulator) -------------------------------------------------------------

@pytest.fixture
def workbooks(workbooks_server):
    app = workbooks_server.app
    column = app.add_custom_field("person", "Lead Tier", "string")
    person = app.insert("people", {"person_first_name": "Ann", "person_last_name": "Lee",
                                   "main_location[email]": "Ann@X.example", column: "Gold"})
    return workbooks_server.url, app.create_api_key(), person["id"], column


def test_workbooks_fields_are_checked_and_titles_resolved(tmp_path, capsys, workbooks):
    url, key, _, _ = workbooks
    text = mapping_text(person="""
        - source: {custom_field: "Lead Tier"}
          target: custom7
          transforms: [truncate]
        - source: person_lst_name
          target: lastName
          transforms: [truncate]
    """)
    code, out, err = run(capsys, write(tmp_path, text), "--workbooks", url, "--api-key", key)
    assert code == 1
    line, col = position(text, "person_lst_name")
    assert out.splitlines() == [f"{tmp_path / 'mapping.yaml'}:{line}:{col}: Workbooks has no person field "
                                "`person_lst_name` — did you mean `person_last_name`?"]
    assert key not in out + err


def test_workbooks_unknown_custom_field_title(tmp_path, capsys, workbooks):
    url, key, _, _ = workbooks
    text = mapping_text(person="""
        - source: {custom_field: "Lead Tire"}
          target: custom7
    """)
    code, out, err = run(capsys, write(tmp_path, text), "--workbooks", url, "--api-key", key)
    assert code == 1
    assert out.strip().endswith('there is no person custom field titled "Lead Tire" in Workbooks — '
                                'did you mean "Lead Tier"?')


def test_workbooks_preview_of_a_real_record(tmp_path, capsys, workbooks):
    url, key, person_id, _ = workbooks
    text = mapping_text(person="""
        - source: {custom_field: "Lead Tier"}
          target: custom7
          transforms: [truncate]
        - template: "{person_first_name} {person_last_name}"
          target: custom8
          transforms: [truncate]
    """)
    code, out, err = run(capsys, write(tmp_path, text), "--workbooks", url, "--api-key", key,
                         "--preview-id", person_id, "--object", "person")
    assert code == 0, out + err
    assert json.loads(out)["data"]["attributes"] == {"emails": ["ann@x.example"], "custom7": "Gold",
                                                     "custom8": "Ann Lee"}


def test_workbooks_refusing_the_key_exits_2_without_showing_it(capsys, workbooks):
    url, _, _, _ = workbooks
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--workbooks", url, "--api-key", "00000-11111-secret")
    assert code == 2
    assert err.startswith("cannot check against Workbooks:") and "secret" not in err


def test_workbooks_preview_of_a_missing_record(capsys, workbooks):
    url, key, _, _ = workbooks
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--workbooks", url, "--api-key", key, "--preview-id", 999999)
    assert code == 2 and "Workbooks has no person with id 999999" in err


def test_the_api_key_may_come_from_the_environment(tmp_path, capsys, monkeypatch, workbooks):
    url, key, _, _ = workbooks
    monkeypatch.setenv("WORKBOOKS_API_KEY", key)
    code, out, err = run(capsys, DEFAULT_MAPPING_PATH, "--workbooks", url)
    assert code == 0, out + err
