"""The runner as Workbooks runs it (DESIGN.md §3): a separate process with a params file and
env TIMEOUT; exit codes 0/1/2 and the summary as the last line; no secret in any output."""
from __future__ import annotations

import pytest

from tests.mapping_helpers import bundle_copy
from tests.sync_harness import Sandbox


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    return Sandbox(workbooks_server, outreach_server, tmp_path).ready()


def test_success_exits_0_with_the_summary_last(sb):
    sb.person(email="ann@acme.example")
    result = sb.run_script()
    assert result.code == 0, result.output
    assert result.summary.startswith("[notice] people: 1 created, 0 updated")
    assert all(line.startswith("[") for line in result.lines), result.output


def test_backlog_left_at_timeout_exits_0_and_says_what_is_pending(sb):
    for n in range(30):
        sb.person(email=f"t{n}@acme.example")
    # every Outreach request takes 0.25 s; a 6 s budget leaves a backlog
    sb.outreach.add_fault(path=r"^/api/v2/prospects$", method="POST", latency=0.25, count=None)
    result = sb.run_script(env={"TIMEOUT": "6"})
    assert result.code == 0, result.output
    created = len(sb.prospects())
    assert 0 < created < 30
    assert "stopped early" in result.summary and "time limit" in result.summary
    assert f"people: {created} created" in result.summary
    assert f"{30 - created} pending; organisations" in result.summary
    sb.outreach.clear_faults()
    assert sb.run_script().code == 0
    assert len(sb.prospects()) == 30


def test_linked_records_put_off_at_timeout_are_counted_as_pending(sb):
    people = [sb.person(email=f"t{n}@acme.example", person_job_title="Old")["id"] for n in range(20)]
    assert sb.run().code == 0
    for pid in people:
        sb.wb.edit("people", pid, {"person_job_title": "New"})
    sb.person(email="new@acme.example")              # and one not yet in Outreach
    sb.outreach.add_fault(path=r"^/api/v2/prospects", method="PATCH", latency=0.25, count=None)
    result = sb.run_script(env={"TIMEOUT": "5"})
    assert result.code == 0, result.output
    updated = sum(p["attributes"]["title"] == "New" for p in sb.prospects())
    assert 0 < updated < 20
    created = len(sb.prospects()) - 20
    assert f"people: {created} created, {updated} updated" in result.summary
    assert f"{20 - updated + 1 - created} pending; organisations" in result.summary


def test_outreach_5xx_storm_exits_1_and_flags_nothing(sb):
    person = sb.person(email="storm@acme.example")
    sb.outreach.add_fault(path=r"^/api/v2/", status=503, count=None)
    result = sb.run_script(env={"TIMEOUT": "20"})
    assert result.code == 1, result.output
    assert "0 errors" in result.summary and "1 pending" in result.summary
    flags = sb.flags("person", person["id"])
    assert not flags["sync_error"] and not flags["duplicate"]


def test_workbooks_unreachable_exits_1(sb, tmp_path):
    params = sb.params(_workbooks_service="http://127.0.0.1:9")   # nothing listens on the discard port
    result = sb.run_script(params=params, env={"TIMEOUT": "20"})
    assert result.code == 1, result.output
    assert result.summary.startswith("[error] ")


def test_invalid_mapping_exits_2_before_writing_anything(sb, tmp_path):
    bad = ("version: 1\nobjects:\n  person:\n    target: prospect\n    match_key: emails\n"
           "    fields:\n      - source: person_first_name\n        target: firstNam\n")
    bundle = bundle_copy(tmp_path / "bundle", {"bad.yaml": bad})
    sb.person(email="ann@acme.example")
    sb.reset_counts()
    result = sb.run_script(mapping="mappings/bad.yaml", script=bundle / "scripts" / "outreach_send_receive.py")
    assert result.code == 2, result.output
    assert "bad.yaml:8:" in result.output and "firstName" in result.output
    assert sb.wb.total_requests == 0 and sb.outreach.total_requests == 0


def test_not_authorised_exits_2_with_a_clear_message(sb):
    revoke = sb.revoke()
    assert revoke.code == 0, revoke.output
    sb.person(email="ann@acme.example")
    result = sb.run_script()
    assert result.code == 2, result.output
    assert "Outreach is not authorised: run the authorisation" in result.summary
    assert sb.prospects() == []


def test_not_installed_exits_2(workbooks_server, outreach_server, tmp_path):
    sb = Sandbox(workbooks_server, outreach_server, tmp_path)
    result = sb.run_script()
    assert result.code == 2, result.output
    assert "not installed" in result.summary


def test_no_secret_in_any_output_of_a_full_run(sb):
    sb.organisation("Acme Ltd")
    sb.person(email="ann@acme.example")
    sb.person(email="bad-email")
    result = sb.run_script(log_level="debug")
    tokens = [r["value"] for r in sb.wb.records("api_data") if r["key"].endswith(".tokens")]
    import json
    stored = json.loads(tokens[0])
    secrets = [sb.api_key, stored["access_token"], stored["refresh_token"]]
    secrets += [v for r in sb.wb.records("api_data") if r["key"].endswith(".install")
                for v in [json.loads(r["value"]).get("oauth_client", {}).get("client_secret")] if v]
    assert len(secrets) == 4
    for secret in secrets:
        assert secret not in result.output
