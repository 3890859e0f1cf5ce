"""manifest.yaml and its validator: the real manifest is valid and says what the design says;
every kind of mistake is reported at its FILE:LINE:COL in plain words."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from plugin import fields
from plugin.manifest import (SCHEMA_PATH, InvalidManifest, load_manifest, validate_manifest_file)

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "manifest.yaml").read_text(encoding="utf-8")


def problems_for(tmp_path: Path, text: str, **kw) -> list[str]:
    path = tmp_path / "manifest.yaml"
    path.write_text(text, encoding="utf-8")
    return [str(p).replace(f"{path}", "manifest.yaml") for p in validate_manifest_file(path, **kw)]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def test_the_schema_is_valid_draft_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_real_manifest_is_valid_and_matches_the_design():
    assert validate_manifest_file() == []
    manifest = load_manifest()
    assert manifest.name == "outreach-sync" and manifest.version == "0.2.0"
    assert manifest.scopes == ["prospects.all", "accounts.all", "users.read", "sequences.read", "sequenceStates.read"]
    assert {k: s["file"] for k, s in manifest.scripts.items()} == {
        "send_receive": "scripts/outreach_send_receive.py", "install": "scripts/outreach_install.py",
        "authorise": "scripts/outreach_authorise.py"}

    send = manifest.process("send_receive")
    assert (send.kind, send.title, send.every_minutes) == ("scheduled", "Outreach Send/Receive", 1)
    assert send.script_file == "scripts/outreach_send_receive.py" and send.entry_point == "main"
    assert send.max_run_time_seconds >= 60
    assert send.parameters == {  # DESIGN.md §3 defaults
        "outreach_api_url": "https://api.outreach.io/api/v2", "outreach_oauth_url": "https://api.outreach.io/oauth",
        "outreach_web_url": "https://web.outreach.io", "mapping": "mappings/default.yaml", "dry_run": False,
        "verify_tls": True, "outreach_hourly_budget": 8000}
    web = manifest.process("authorise")
    assert (web.kind, web.title, web.script_file) == ("web", "Outreach Authorisation", "scripts/outreach_authorise.py")


def test_custom_fields_are_exactly_the_designed_ones_and_fields_py_agrees():
    manifest = load_manifest()
    expected = [("sync", "Sync to Outreach", "boolean", False),
                ("sync_error", "Outreach Sync Error", "boolean", False),
                ("duplicate", "Outreach Duplicate", "boolean", False),
                ("outreach_id", "Outreach Id", "string", False),
                ("outreach_url", "Outreach URL", "url", False),
                ("error_message", "Outreach Error Message", "text", False),
                ("last_synced", "Outreach Last Synced", "datetime", False),
                ("snapshot", "Outreach Sync Snapshot", "text", True)]
    receive = [("sequence_state", "Outreach Sequence State", "string", False),      # DESIGN §5, Person only
               ("sequence_name", "Outreach Sequence", "string", False),
               ("state_updated_at", "Outreach State Updated At", "datetime", False),
               ("opted_out_at", "Outreach Opted Out At", "datetime", False)]
    for kind, wanted in (("person", expected + receive), ("organisation", expected)):
        got = [(f.key, f.title, f.data_type, f.hidden) for f in manifest.custom_fields(kind)]
        assert got == wanted
        assert [(d.key, d.title, d.data_type, d.hidden) for d in fields.definitions(kind)] == wanted
        # fields.py's built-in fallback must say the same as the manifest, optional ones included
        assert [(d.key, d.title, d.data_type, d.hidden, d.optional) for d in fields.BUILT_IN[kind]] == \
            [(f.key, f.title, f.data_type, f.hidden, f.optional) for f in manifest.custom_fields(kind)]


def test_the_scripts_named_by_the_manifest_exist_with_their_entry_points():
    import ast
    for script in load_manifest().scripts.values():
        path = ROOT / script["file"]
        assert path.is_file(), f"{script['file']} is missing"
        tree = ast.parse(path.read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        names |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert script["entry_point"] in names, f"{script['file']} has no {script['entry_point']}"


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = TEXT.replace("title: Outreach Sync\n", "title: [Outreach Sync\n", 1)
    [problem] = problems_for(tmp_path, text)
    assert problem.startswith("manifest.yaml:")
    assert "not valid YAML" in problem


def test_wrong_type_points_at_the_value(tmp_path):
    text = TEXT.replace("every_minutes: 1", "every_minutes: often")
    line = line_of(text, "every_minutes")
    assert problems_for(tmp_path, text) == [
        f"manifest.yaml:{line}:22: processes.scheduled[0].every_minutes — must be a whole number, not 'often'"]


def test_unquoted_version_is_explained(tmp_path):
    text = TEXT.replace("version: 0.2.0", "version: 1.0")
    assert problems_for(tmp_path, text) == [
        f"manifest.yaml:{line_of(text, 'version:')}:10: version — must be text, not 1.0 (put it in quotes)"]


def test_unknown_key_points_at_the_key(tmp_path):
    text = TEXT.replace("      every_minutes: 1\n", "      every_minutes: 1\n      run_every: 5\n")
    [problem] = problems_for(tmp_path, text)
    assert problem.startswith(f"manifest.yaml:{line_of(text, 'run_every')}:7: processes.scheduled[0].run_every — "
                              "unknown key 'run_every' (allowed here: every_minutes, key, log_level,")


def test_missing_key_points_at_its_parent(tmp_path):
    text = TEXT.replace("      web_identifier: outreach_authorisation\n", "")
    [problem] = problems_for(tmp_path, text)
    assert problem == (f"manifest.yaml:{line_of(text, '- key: authorise')}:7: processes.web[0] — "
                       "'web_identifier' is missing")


def test_bad_enum_and_pattern_in_plain_words(tmp_path):
    text = TEXT.replace("data_type: url", "data_type: link").replace("  install:\n", "  Install:\n")
    found = problems_for(tmp_path, text)
    assert any("custom_fields.person[4].data_type — must be one of: boolean, string, text, url, datetime, "
               "date, decimal (got 'link')" in p for p in found)
    assert any("scripts.Install — the name 'Install': use lower-case letters, digits and '_'" in p for p in found)


def test_duplicate_yaml_keys_are_reported(tmp_path):
    text = TEXT.replace("title: Outreach Sync\n", "title: Outreach Sync\ntitle: Outreach Sync 2\n", 1)
    found = problems_for(tmp_path, text)
    assert found == [f"manifest.yaml:{line_of(text, 'Outreach Sync 2')}:1: 'title' appears twice "
                     f"(first at line {line_of(text, 'title: Outreach Sync')})"]


def test_semantic_checks(tmp_path):
    text = (TEXT.replace("      script: authorise\n", "      script: authorize\n")
            .replace("users.read", "users.write")
            .replace("{key: snapshot,", "{key: snapshot_text,")
            .replace("title: Outreach Duplicate", "title: outreach sync error"))
    found = problems_for(tmp_path, text)
    assert any("processes.web[0].script — names the script 'authorize', which is not under scripts: "
               "(known: authorise, install, send_receive)" in p for p in found)
    assert any("oauth.scopes — the sync needs users read access: add users.read" in p for p in found)
    assert any("custom_fields.person — the plugin needs a field with key 'snapshot'" in p for p in found)
    assert any("custom_fields.person[2].title — the title 'outreach sync error' is already used by "
               "custom_fields.person[1]" in p for p in found)


def test_missing_script_files_are_reported_when_asked(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "outreach_install.py").write_text("def main(): pass\n")
    found = problems_for(tmp_path, TEXT, check_files=True)
    assert [p.split(" — ")[1] for p in found] == [
        "the file scripts/outreach_send_receive.py does not exist",
        "the file scripts/outreach_authorise.py does not exist"]
    assert problems_for(tmp_path, TEXT) == []


def test_load_manifest_raises_with_every_problem(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text(TEXT.replace("every_minutes: 1", "every_minutes: 0").replace("max_run_time_seconds: 300",
                                                                                 "max_run_time_seconds: 5"))
    with pytest.raises(InvalidManifest) as caught:
        load_manifest(path)
    assert caught.value.exit_code == 2
    assert len(caught.value.problems) == 2
    assert "every_minutes — must be at least 1 (got 0)" in caught.value.problems[0]
    assert "max_run_time_seconds — must be at least 10 (got 5)" in caught.value.problems[1]
    assert str(caught.value).splitlines()[0] == "the plugin manifest is invalid (2 problems):"


def test_empty_and_non_mapping_manifests(tmp_path):
    assert problems_for(tmp_path, "") == ["manifest.yaml:1:1: the manifest is empty"]
    assert problems_for(tmp_path, "- a\n- b\n") == ["manifest.yaml:1:1: the manifest must be a mapping of keys to values"]
