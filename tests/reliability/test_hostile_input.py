"""Suite 6 (issue 7): hostile input. Every case lives in one database and one run, next to a
control group of ordinary records, because the requirement is twofold: each case gets a defined
outcome (synced, cleaned, or flagged with a clear message naming what is wrong), and none of them
stops the others.

The default mapping is extended (in a temporary copy) with long-text fields, so 10,000-character
values travel end to end: a person's biography → personalNote1, a custom text field "Notes" →
custom1 (whose 32,000-character limit a 40,000-character value exceeds), an organisation's
description → description.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from plugin.mapping import DEFAULT_MAPPING_PATH
from tests.mapping_helpers import bundle_copy, bundled
from tests.reliability.helpers import audit, before_request, is_clean, run_until_clean
from tests.sync_harness import Sandbox

LONG = ("0123456789" * 1000)            # 10,000 characters
TOO_LONG = "x" * 40_000                 # over custom1's 32,000


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path, monkeypatch):
    sb = Sandbox(workbooks_server, outreach_server, tmp_path).ready()
    sb.notes = sb.wb.add_custom_field("people", "Notes", "text")
    mapping = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    mapping["objects"]["person"]["fields"] += [
        {"source": "biography", "target": "personalNote1", "skip_empty": True},
        {"source": {"custom_field": "Notes"}, "target": "custom1", "skip_empty": True}]
    mapping["objects"]["organisation"]["fields"] += [
        {"source": "description", "target": "description", "skip_empty": True}]
    sb.extra["mapping"] = bundled(monkeypatch, tmp_path, yaml.safe_dump(mapping, allow_unicode=True),
                                  "hostile-mapping.yaml")
    return sb


# (label, Workbooks fields, expected): expected is ("synced", {attribute: value}) or
# ("error", regex the Outreach Error Message must match)
PEOPLE = [
    ("spaces around", {"main_location[email]": "  sp@acme.example  "},
     ("synced", {"emails": ["sp@acme.example"]})),
    ("space inside", {"main_location[email]": "in ner@acme.example"}, ("error", r"invalid email.*in ner")),
    ("capitals", {"main_location[email]": "CAPS@ACME.Example"}, ("synced", {"emails": ["caps@acme.example"]})),
    ("two, comma", {"main_location[email]": "two1@acme.example, two2@acme.example"},
     ("synced", {"emails": ["two1@acme.example", "two2@acme.example"]})),
    ("two; semicolon", {"main_location[email]": "three1@acme.example;three2@acme.example"},
     ("synced", {"emails": ["three1@acme.example", "three2@acme.example"]})),
    ("two, space", {"main_location[email]": "four1@acme.example four2@acme.example"}, ("error", r"invalid email")),
    ("no email", {"main_location[email]": None}, ("error", r"no email")),
    ("blank email", {"main_location[email]": "   "}, ("error", r"no email")),
    ("not an email", {"main_location[email]": "not-an-email"}, ("error", r"invalid email.*not-an-email")),
    ("no dot", {"main_location[email]": "a@b"}, ("error", r"invalid email")),
    ("no local part", {"main_location[email]": "@acme.example"}, ("error", r"invalid email")),
    ("double at", {"main_location[email]": "a@@acme.example"}, ("error", r"invalid email")),
    ("angle brackets", {"main_location[email]": "<x@acme.example>"}, ("error", r"invalid email")),
    ("trailing dot", {"main_location[email]": "dot@acme.example."}, ("error", r"(?i)email")),
    ("unicode email", {"main_location[email]": "josé@acme.example"}, ("synced", {"emails": ["josé@acme.example"]})),
    # Issue 16 §6: invisible characters make look-alikes of other addresses; each is named.
    ("zero-width space", {"main_location[email]": "zw\u200bsp@acme.example"},
     ("error", r"U\+200B ZERO WIDTH SPACE at position 3")),
    ("right-to-left override", {"main_location[email]": "gpj\u202e@acme.example"},
     ("error", r"U\+202E RIGHT-TO-LEFT OVERRIDE at position 4")),
    ("no-break space inside", {"main_location[email]": "nb\u00a0sp@acme.example"},
     ("error", r"U\+00A0 NO-BREAK SPACE at position 3")),
    ("soft hyphen", {"main_location[email]": "soft\u00adhy@acme.example"}, ("error", r"U\+00AD SOFT HYPHEN")),
    ("unicode and emoji", {"person_first_name": "Zoë 🚀", "person_last_name": "Ñúñez 李",
                           "person_job_title": "Directeur général — 🌍"},
     ("synced", {"firstName": "Zoë 🚀", "lastName": "Ñúñez 李", "title": "Directeur général — 🌍"})),
    ("255 characters", {"person_first_name": "F" * 247, "person_job_title": "T" * 255},
     ("synced", {"firstName": "F" * 247, "title": "T" * 255})),
    ("10,000 characters", {"biography": LONG, "NOTES": LONG},
     ("synced", {"personalNote1": LONG, "custom1": LONG})),
    ("too long after mapping", {"NOTES": TOO_LONG}, ("error", r"custom1|Notes|40000|32000")),
    ("html", {"person_first_name": "<script>alert('x')</script>", "person_last_name": "<b>Bold</b> &amp; Co"},
     ("synced", {"firstName": "<script>alert('x')</script>", "lastName": "<b>Bold</b> &amp; Co"})),
    ("formulas", {"person_first_name": "=cmd|' /C calc'!A0", "person_last_name": "+SUM(1+1)",
                  "person_job_title": "@HYPERLINK(\"http://evil.example\")"},
     ("synced", {"firstName": "=cmd|' /C calc'!A0", "lastName": "+SUM(1+1)",
                 "title": "@HYPERLINK(\"http://evil.example\")"})),
    ("nulls", {"person_first_name": None, "person_last_name": None, "person_job_title": None},
     ("synced", {"firstName": None, "lastName": None, "title": None})),
    ("newline in a name", {"person_first_name": "Line\nBreak", "person_last_name": "[error] fake"},
     ("synced", {"firstName": "Line\nBreak"})),
    ("junk Outreach Id", {"OUTREACH_ID": "abc"}, ("error", r"Outreach Id 'abc' is not a number")),
    ("negative Outreach Id", {"OUTREACH_ID": "-5"}, ("error", r"not a number")),
    ("Outreach Id of nothing", {"OUTREACH_ID": "987654"}, ("error", r"987654 no longer exists")),
    ("garbage snapshot", {"OUTREACH_ID": "LINKED", "SNAPSHOT": "{not json"}, ("synced", {"title": "Garbage"})),
]


def build_people(sb, org_deleted, shared_queue, locked_queue):
    cols = {"NOTES": sb.notes, "OUTREACH_ID": sb.col("person", "outreach_id"),
            "SNAPSHOT": sb.col("person", "snapshot")}
    made = {}
    for n, (label, fields, expected) in enumerate(PEOPLE):
        data = {"main_location[email]": f"h{n}@acme.example", "person_first_name": f"H{n}",
                "person_last_name": "Hostile"}
        for key, value in fields.items():
            data[cols.get(key, key)] = value
        if data.get(cols["OUTREACH_ID"]) == "LINKED":
            # a linked record whose snapshot someone mangled: link it for real first
            pre = sb.outreach.insert("prospects", {"emails": [data["main_location[email]"]],
                                                   "externalId": f"workbooks:1:person:{len(sb.wb.records('people')) + 1}"})
            data[cols["OUTREACH_ID"]] = str(pre["id"])
            data["person_job_title"] = "Garbage"
        email = data.pop("main_location[email]")
        rec = sb.person(email=email, first=data.pop("person_first_name"), last=data.pop("person_last_name"), **data)
        made[label] = (rec["id"], expected)
    # Employer deleted between being linked and the run; a queue with no user; a locked seat.
    made["deleted employer"] = (sb.person(email="orphan@acme.example", employer_link=org_deleted)["id"],
                                ("synced", {"emails": ["orphan@acme.example"]}))
    made["shared queue"] = (sb.person(email="shared@acme.example", assigned_to=shared_queue)["id"],
                            ("synced", {"owner": None}))
    made["locked seat"] = (sb.person(email="locked@acme.example", assigned_to=locked_queue)["id"],
                           ("synced", {"owner": None}))
    return made


ORGS = [
    ("comma in the name", {"name": "Smith, Jones & Co"}, ("synced", {"name": "Smith, Jones & Co"})),
    ("emoji name", {"name": "Café 🍰 Ltd"}, ("synced", {"name": "Café 🍰 Ltd"})),
    ("html name", {"name": "<i>Acme</i>"}, ("synced", {"name": "<i>Acme</i>"})),
    ("formula name", {"name": "=HYPERLINK(\"x\")"}, ("synced", {"name": "=HYPERLINK(\"x\")"})),
    ("10,000-character description", {"name": "Long Desc Ltd", "description": LONG},
     ("synced", {"description": LONG})),
]


def test_every_hostile_record_gets_a_defined_outcome_and_none_stops_the_others(sb):
    gone = sb.organisation("Gone Ltd", sync=False)
    shared = sb.wb.add_queue("person_queues", "Unassigned leads", "shared")["id"]
    seat = sb.wb.add_user("frozen@corp.example", "Frozen Seat")
    sb.outreach.add_user("frozen@corp.example", "frozen@corp.example", locked=True)
    people = build_people(sb, gone["id"], shared, seat["person_queue_id"])
    sb.wb.delete("organisations", gone["id"])
    orgs = {label: (sb.organisation(**fields)["id"], expected) for label, fields, expected in ORGS}
    control = [sb.person(email=f"ok{n}@acme.example", first=f"Ok{n}")["id"] for n in range(5)]
    control_orgs = [sb.organisation(f"Fine {n} Ltd")["id"] for n in range(2)]

    first = sb.run()
    assert first.code == 0, first.output
    # the process log stays a log: every line is `[level] …`, the summary is last
    assert all(re.match(r"^\[(error|warning|notice|info|debug)\] ", line) for line in first.lines), first.output
    assert first.summary.startswith("[notice] people: ")

    problems = []
    by_id = {"person": {p["id"]: p for p in sb.prospects()}, "organisation": {a["id"]: a for a in sb.accounts()}}
    for kind, cases in (("person", people), ("organisation", orgs)):
        for label, (rid, (outcome, detail)) in cases.items():
            flags = sb.flags(kind, rid)
            if outcome == "error":
                if not flags["sync_error"] or not re.search(detail, flags["error_message"] or ""):
                    problems.append(f"{kind} {label!r}: expected an error matching {detail!r}, got {flags}")
                elif not any(f"{kind} {rid} " in line and "Outreach Sync Error" in line for line in first.logged("error")):
                    problems.append(f"{kind} {label!r}: flagged without an [error] line naming it")
                continue
            target = by_id[kind].get(int(flags["outreach_id"] or 0))
            if flags["sync_error"] or flags["duplicate"] or target is None:
                problems.append(f"{kind} {label!r}: expected synced, got {flags}")
                continue
            for attribute, want in detail.items():
                got = (target["relationships"]["owner"]["data"] if attribute == "owner"
                       else target["attributes"].get(attribute))
                if got != want:
                    problems.append(f"{kind} {label!r}: {attribute} is {str(got)[:80]!r}, expected {str(want)[:80]!r}")
    for pid in control:
        if not sb.flags("person", pid)["outreach_id"]:
            problems.append(f"control person {pid} was not synced")
    for oid in control_orgs:
        if not sb.flags("organisation", oid)["outreach_id"]:
            problems.append(f"control organisation {oid} was not synced")
    assert not problems, "\n".join(problems)

    # Nothing hostile loops: the next run sends nothing.
    sb.reset_counts()
    again = sb.run()
    assert again.code == 0 and sb.send_requests() == 0 and sb.receive_requests() <= 3, again.output
    print(f"hostile inputs tried: {len(people) + len(orgs)} ({len(people)} people, {len(orgs)} organisations)")


def test_look_alike_emails_make_no_second_prospect(sb):
    """Issue 16 §6: "zoë" typed as one character or as "o" and a combining diaeresis, and with a
    zero-width space inside, all look like zoë@acme.example. Each used to create a prospect of its
    own; now the decomposed one is the same address (NFC), so Outreach Duplicate, and the one with
    the invisible character is refused naming it."""
    zoe = sb.person(email="zoë@acme.example")["id"]
    assert sb.run().code == 0
    decomposed = sb.person(email="Zoe\u0308@acme.example", first="Twin")["id"]
    hidden = sb.person(email="zo\u200bë@acme.example", first="Other")["id"]
    result = sb.run()
    assert result.code == 0, result.output
    [prospect] = sb.prospects()
    assert prospect["attributes"]["emails"] == ["zoë@acme.example"]
    assert str(prospect["id"]) == sb.flags("person", zoe)["outreach_id"]
    assert sb.flags("person", decomposed)["duplicate"], sb.flags("person", decomposed)
    flags = sb.flags("person", hidden)
    assert flags["sync_error"] and "U+200B ZERO WIDTH SPACE at position 3" in flags["error_message"], flags


def test_records_deleted_between_query_and_write_back(sb):
    keep = [sb.person(email=f"keep{n}@acme.example")["id"] for n in range(3)]
    linked = sb.person(email="linked@acme.example", person_job_title="A")["id"]
    assert sb.run().code == 0
    sb.wb.edit("people", linked, {"person_job_title": "B"})
    doomed_new = sb.person(email="doomed@acme.example")["id"]
    victims = [doomed_new, linked]
    before_request(sb.wb, "PUT", r"crm/people\.api", lambda: [sb.wb.delete("people", v) for v in victims])
    result = sb.run()
    assert result.code == 0, result.output
    assert any("could not write back" in line or "deleted" in line for line in result.logged("warning")), result.output
    for pid in keep:
        assert sb.flags("person", pid)["outreach_id"]
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert audit(sb).problems == []


def test_records_deleted_between_query_and_outreach_create(sb):
    pids = [sb.person(email=f"c{n}@acme.example")["id"] for n in range(4)]
    before_request(sb.outreach, "POST", r"/api/v2/prospects$", lambda: sb.wb.delete("people", pids[-1]))
    result = sb.run()
    assert result.code == 0, result.output
    for pid in pids[:-1]:
        assert sb.flags("person", pid)["outreach_id"]
    runs = run_until_clean(sb)
    assert is_clean(runs[-1]), runs[-1].output
    assert audit(sb).problems == []


def test_record_deleted_during_a_stale_write_back_retry(sb):
    pid = sb.person(email="racy@acme.example")["id"]
    other = sb.person(email="calm@acme.example")["id"]
    calls = [0]

    def edit_then_delete():
        calls[0] += 1
        if calls[0] == 1:
            sb.wb.edit("people", pid, {"person_job_title": "Edited"})     # makes our write stale
        elif calls[0] == 2:
            pass
    before_request(sb.wb, "PUT", r"crm/people\.api", edit_then_delete, times=None)
    before_request(sb.wb, "GET", r"crm/people\.api", lambda: sb.wb.delete("people", pid) if calls[0] == 1 else None,
                   times=None)
    result = sb.run()
    assert result.code == 0, result.output
    assert sb.flags("person", other)["outreach_id"]
    assert "Traceback" not in result.output


def test_a_linked_person_whose_email_is_cleared_keeps_its_employer_relation(sb):
    """A linked Prospect needs no email to stay in step (Outreach already knows it), and its
    Employer must still be worked out: clearing the email once dropped the account relation,
    and a later change of Employer was ignored. (Found by the property suite.)"""
    acme = sb.organisation("Acme Ltd")["id"]
    beta = sb.organisation("Beta plc")["id"]
    pid = sb.person(email="ann@acme.example", employer_link=acme)["id"]
    assert sb.run().code == 0
    account = {a["attributes"]["name"]: a["id"] for a in sb.accounts()}
    sb.wb.edit("people", pid, {"main_location[email]": None})
    assert sb.run().code == 0
    [prospect] = sb.prospects()
    assert prospect["relationships"]["account"]["data"]["id"] == account["Acme Ltd"]
    sb.wb.edit("people", pid, {"employer_link": beta})
    assert sb.run().code == 0
    [prospect] = sb.prospects()
    assert prospect["relationships"]["account"]["data"]["id"] == account["Beta plc"]
    assert prospect["attributes"]["company"] == "Beta plc"
    assert audit(sb).problems == []


# --- the `mapping` parameter and the mapping file (issue 16 §4) -------------------------------------
# Each run is the real runner, started as Workbooks starts it, in a process whose memory is capped
# (1 GB of address space): what the plugin did before the fix (read /dev/zero to the end, build an
# alias bomb value by value) ends there, in a MemoryError, instead of taking the machine down.

MEMORY_CAP = 1 << 30
ALIAS_BOMB = "version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
MERGE_BOMB = "version: 1\na: &a {" + ", ".join(f"k{i}: {i}" for i in range(9)) + "}\n" + "".join(
    f"{n}: &{n} {{<<: [{', '.join([f'*{p}'] * 9)}]}}\n" for p, n in zip("abcdefgh", "bcdefghi"))


def run_capped(sb, script, mapping: str, timeout: float = 90) -> tuple[int, str]:
    """The runner of the bundle at `script`, with `mapping` as its parameter, memory capped."""
    params = sb.tmp / "capped-params.json"
    params.write_text(json.dumps(sb.params(mapping=mapping)), encoding="utf-8")
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (%d, %d)); "
            "sys.argv = [sys.argv[1], '--params', sys.argv[2]]; runpy.run_path(sys.argv[0], run_name='__main__')"
            % (MEMORY_CAP, MEMORY_CAP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
    done = subprocess.run([sys.executable, "-c", code, str(script), str(params)], capture_output=True, text=True,
                          timeout=timeout, env={**env, "TIMEOUT": "10"}, cwd=sb.tmp)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def bare(workbooks_server, outreach_server, tmp_path):
    """A database the plugin is not even installed in: the mapping is checked before anything connects."""
    return Sandbox(workbooks_server, outreach_server, tmp_path)


@pytest.fixture
def bundle(tmp_path):
    """An unpacked bundle whose mappings/ folder holds hostile files beside the shipped default."""
    root = bundle_copy(tmp_path / "bundle", {"bomb.yaml": ALIAS_BOMB, "merges.yaml": MERGE_BOMB,
                                             "huge.yaml": "version: 1\n" + "#" * (2 << 20) + "\n"})
    (root / "mappings" / "passwd.yaml").symlink_to("/etc/passwd")
    os.mkfifo(root / "mappings" / "pipe.yaml")
    return root / "scripts" / "outreach_send_receive.py"


@pytest.mark.parametrize("value, says", [
    ("/etc/passwd", "`/etc/passwd` is an absolute path"),
    ("/dev/zero", "`/dev/zero` is an absolute path"),
    ("../../../../../../etc/passwd", "leads out of the mappings/ folder (`..`)"),
    ("mappings/passwd.yaml", "is a link that leads out of the mappings/ folder"),
    ("mappings/pipe.yaml", "is not a regular file"),
    ("mappings", "is not a regular file"),
])
def test_the_mapping_parameter_reads_only_the_bundles_mappings_folder(bare, bundle, value, says):
    """Issue 16 §4: `mapping: /etc/passwd` printed the file's lines as YAML problems, `/dev/zero`
    ran past TIMEOUT (a FIFO waits for a writer for ever). Now each is refused at once: exit 2, a
    message naming the parameter, nothing of the file shown, nothing connected."""
    code, output = run_capped(bare, bundle, value)
    assert code == 2, output
    assert says in output and ("`mapping` parameter" in output or "mapping file" in output), output
    assert "root:" not in output and "/bin/" not in output, output
    assert bare.wb.total_requests == 0 and bare.outreach.total_requests == 0


@pytest.mark.parametrize("name", ["bomb.yaml", "merges.yaml"])
def test_a_yaml_alias_bomb_is_an_invalid_mapping_not_a_machine_out_of_memory(bare, bundle, name):
    """Issue 16 §4: 353 bytes of nested aliases grew to 3.6 GB, then exit 1, retried every
    minute. Nested `<<` merges multiply the same way. Now: exit 2, "the mapping is invalid"."""
    assert len((bundle.parent.parent / "mappings" / name).read_bytes()) < 600
    code, output = run_capped(bare, bundle, f"mappings/{name}")
    assert code == 2, output
    assert "the mapping is invalid (1 problem)" in output
    assert "stands for more than 50,000 values" in output
    assert bare.wb.total_requests == 0


def test_a_mapping_file_over_1_mb_is_refused_before_it_is_parsed(bare, bundle):
    code, output = run_capped(bare, bundle, "mappings/huge.yaml")
    assert code == 2, output
    assert "huge.yaml:1:1: the mapping file is larger than 1 MB" in output


def test_the_consultants_validator_refuses_a_device_instead_of_reading_it_for_ever(tmp_path):
    """tools/validate_mapping takes any path on the consultant's machine, and still reads only
    regular files: /dev/zero is a problem, not a hang."""
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (%d, %d)); "
            "sys.argv = ['validate_mapping', '/dev/zero']; runpy.run_module('tools.validate_mapping', run_name='__main__')"
            % (MEMORY_CAP, MEMORY_CAP))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("/dev/zero:1:1: the mapping file is not a regular file"), done.stdout
