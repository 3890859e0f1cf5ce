"""The administrators' status page (plugin/status.py, plugin/statusview.py) rendered by the real
authorisation web process against the emulators, from seeded states: healthy, failing, a backlog,
errors and duplicates. Content and escaping are asserted on the page's own output lines; Retry
and Retry-all are POSTs with the page's anti-forgery token; a GET never writes to Workbooks."""
from __future__ import annotations

import json
import re
import time
from html import unescape

import pytest
import requests

from tests.install_helpers import CLIENT_SECRET, form_token
from plugin.mapping import DEFAULT_MAPPING_PATH
from tests.mapping_helpers import bundled
from tests.reliability.test_secrets import SecretWatch
from tests.sync_harness import WEB_URL, Sandbox
from tools.web_browser import Browser

HISTORY_KEY = "outreach_sync.run_history"


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path):
    sandbox = Sandbox(workbooks_server, outreach_server, tmp_path)
    sandbox.watch = SecretWatch(sandbox)
    return sandbox.ready()


# --- helpers ----------------------------------------------------------------------------------------

def writes(sb) -> dict[str, int]:
    """Workbooks requests that could change something (logins and logouts aside)."""
    return {key: n for key, n in sb.wb.counts.items()
            if not key.startswith("GET ") and "/login" not in key and "/logout" not in key}


def seed_history(sb, runs: list[dict], *, last: dict | None = None, budget: dict | None = None,
                 hourly_budget: int = 8000) -> None:
    value = {"version": 1, "budget": budget or {}, "hourly_budget": hourly_budget, "web_url": WEB_URL,
             "last": last or {"at": runs[-1]["at"], "exit": runs[-1]["exit"], "summary": "people: …",
                              "failure": None},
             "runs": runs}
    rows = [r for r in sb.wb.records("api_data") if r["key"] == HISTORY_KEY]
    if rows:
        sb.wb.edit("api_data", rows[0]["id"], {"value": json.dumps(value)})
    else:
        sb.wb.insert("api_data", {"key": HISTORY_KEY, "value": json.dumps(value)})


def history(sb) -> dict | None:
    rows = [r for r in sb.wb.records("api_data") if r["key"] == HISTORY_KEY]
    return json.loads(rows[0]["value"]) if rows else None


def health(page) -> list[tuple[str, str]]:
    """(class, text) of each health sentence."""
    found = re.search(r'<ul class="health">(.*?)</ul>', page.output, re.S)
    assert found, page.output
    return [(cls, unescape(text)) for cls, text in re.findall(r'<li class="(\w+)">(.*?)</li>', found.group(1))]


def record_rows(page) -> dict[int, str]:
    return {int(i): row for i, row in re.findall(r'<tr class="record" data-kind="\w+" data-id="(\d+)">(.*?)</tr>',
                                                 page.output, re.S)}


def retry_form(page, record_id: int) -> dict:
    """The hidden fields of the Retry form in the row of `record_id`, as a browser posts them."""
    row = record_rows(page)[record_id]
    form = re.search(r'<form method="post" action="\?action=retry">(.*?)</form>', row, re.S).group(1)
    return {k: unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form)}


def now() -> int:
    return int(time.time())


# --- seeded states ------------------------------------------------------------------------------------

def test_healthy_idle_state_says_nothing_needs_a_person_and_draws_the_day(sb):
    sb.person(email="ann@acme.example")
    assert sb.run().code == 0
    t = now()
    seed_history(sb, [{"at": t - 7200, "exit": 0, "kinds": {"person": {"created": 40}}, "outreach": 41},
                      {"at": t - 3000, "exit": 0, "kinds": {"person": {"updated": 3}}, "outreach": 3},
                      {"at": t - 600, "exit": 0, "kinds": {"person": {"created": 1}}, "outreach": 1}],
                 last={"at": t - 600, "exit": 0, "summary": "people: 1 created, 0 updated, 0 duplicates, 0 errors, "
                       "0 pending; organisations: 0 created", "failure": None})
    page = sb.web({})
    assert page.code == 0 and "[header] Status: 200" in page.output
    sentences = health(page)
    assert sentences[0] == ("ok", "Nothing needs a person.")
    assert not [s for s in sentences if s[0] == "problem"]
    assert any(text.startswith("Idle since ") for cls, text in sentences)
    assert "Runs in the last 24 hours</th><td>3 recorded, 0 failed" in page.output
    assert "people: 1 created, 0 updated, 0 duplicates, 0 errors, 0 pending" in page.output
    assert "Nothing is waiting to be sent." in page.output
    assert "Records that need a person (0)" in page.output
    slots = re.findall(r'<g class="slot" data-runs="(\d+)"><title>([^<]*)</title>', page.output)
    assert sum(int(n) for n, _ in slots) == 3
    assert any("40 created" in title for _, title in slots)


def test_failing_state_names_how_many_runs_outreach_was_unreachable(sb):
    t = now()
    runs = [{"at": t - 3600, "exit": 0, "kinds": {"person": {"created": 2}}, "outreach": 2}]
    runs += [{"at": t - 60 * (14 - n), "exit": 1, "failure": "outreach", "kinds": {"person": {"pending": 5}},
              "stopped": True} for n in range(14)]
    seed_history(sb, runs, last={"at": runs[-1]["at"], "exit": 1, "summary": "people: 0 created … — stopped early",
                                 "failure": "outreach GET /api/v2/prospects: 503 Service Unavailable (gave up "
                                            "after 5 attempts)"})
    page = sb.web({})
    problems = [text for cls, text in health(page) if cls == "problem"]
    assert any(text.startswith("Outreach was not reachable for the last 14 runs (since ")
               and "503 Service Unavailable" in text for text in problems), problems
    assert "Runs in the last 24 hours</th><td>15 recorded, 14 failed" in page.output
    assert "failed: the next run tries again" in page.output
    assert page.output.count('l-4 7 h8 z" fill="#c62828"') >= 1          # failed runs marked on the chart


def test_backlog_state_counts_what_waits_the_budget_and_the_time_to_clear_it(sb):
    for n in range(30):
        sb.person(email=f"b{n}@acme.example")
    t = now()
    seed_history(sb, [{"at": t - 120, "exit": 0, "kinds": {"person": {"created": 100, "pending": 30}},
                       "outreach": 100, "stopped": True}],
                 budget={"window_start": t - 1800, "used": 100}, hourly_budget=100)
    page = sb.web({})
    assert re.search(r"<tr><th>People</th><td>30</td><td>0</td><td>0</td></tr>", page.output), page.output
    assert "Outreach requests this hour: 100 of 100 (the hour ends " in page.output
    notices = [text for cls, text in health(page) if cls == "notice"]
    assert any(text.startswith("The hourly Outreach budget is spent (100 of 100 requests): the sync carries on at")
               for text in notices), notices
    # 30 records at 1 request each, the next hour's budget from in 30 minutes: about half an hour
    estimate = re.search(r"the 30 records waiting are sent in about ([^.]+)\.", page.output)
    assert estimate and estimate.group(1) in ("30 minutes", "31 minutes"), page.output


def test_a_backlog_nobody_works_on_is_a_problem(sb):
    sb.person(email="stuck@acme.example")
    seed_history(sb, [{"at": now() - 3 * 3600, "exit": 0, "kinds": {"person": {"created": 1}}, "outreach": 1}])
    problems = [text for cls, text in health(sb.web({})) if cls == "problem"]
    assert any("1 record is waiting, but no run has worked on them since" in t and "is switched on" in t
               for t in problems), problems


NASTY_NAME = ("Zoë <script>alert(1)</script> & \"Bo\" O'Brien", "Smith\n[header] Location: https://evil.example")
NASTY_MESSAGE = ("Outreach rejected the prospect: <img src=x onerror=alert(1)> & \"quoted\"\n"
                 "[header] Set-Cookie: outreach_sync_browser=stolen")


def test_errors_and_duplicates_are_listed_newest_first_escaped_with_their_links(sb):
    org = sb.organisation("Ahlers & <Söhne>")
    sb.outreach.insert("prospects", {"emails": ["dup@acme.example"], "firstName": "Dup"})
    bad = sb.person(email="bad-email", first="Bob", last="Bad")
    dup = sb.person(email="dup@acme.example", first="Dee", last="Dup")
    assert sb.run().code == 0
    nasty = sb.person(email="z@acme.example", first=NASTY_NAME[0], last=NASTY_NAME[1])
    sb.wb.edit("people", nasty["id"], {sb.col("person", "sync_error"): True,
                                      sb.col("person", "error_message"): NASTY_MESSAGE})
    page = sb.web({})
    rows = record_rows(page)
    assert list(rows) == [nasty["id"], dup["id"], bad["id"]]               # newest first
    text = page.output
    # Nothing reflected can open a line of its own: every line but the headers is page text.
    assert [line for line in page.lines if line.startswith("[")] == [
        line for line in page.lines[:4] if line.startswith("[header] ")]
    for raw in (*NASTY_NAME, NASTY_MESSAGE, "<script>", "<img"):
        assert raw not in text
    assert "Zoë &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Bo&quot; O&#x27;Brien" in rows[nasty["id"]]
    assert "&lt;img src=x onerror=alert(1)&gt;" in rows[nasty["id"]]
    assert "&#10;[header] Set-Cookie" in rows[nasty["id"]]
    assert "Outreach prospect " in rows[dup["id"]]
    outreach_link = re.search(r'<a href="([^"]+)">The Outreach record that holds it</a>', rows[dup["id"]])
    prospect = [p for p in sb.prospects() if "dup@acme.example" in p["attributes"]["emails"]][0]
    assert outreach_link and outreach_link.group(1) == f"{WEB_URL}/prospects/{prospect['id']}"
    assert f'<a href="{sb.wb_server.url}/crm/people/{bad["id"]}">Bob Bad</a>' in rows[bad["id"]]
    assert "invalid email address &#x27;bad-email&#x27;" in rows[bad["id"]]
    assert re.search(r"<tr><th>People</th><td>0</td><td>2</td><td>1</td></tr>", text)
    assert any(t.startswith("3 records need a person") for c, t in health(page) if c == "problem")
    assert sb.flags("organisation", org["id"])["outreach_id"] and 'data-kind="organisation"' not in text
    assert "Records that need a person (3)" in text


def test_the_workbooks_record_link_follows_the_template_and_refuses_other_schemes(sb):
    bad = sb.person(email="bad-email", first="Bob", last="Bad")
    assert sb.run().code == 0
    sb.extra["workbooks_record_url"] = "https://secure.workbooks.example/=IDNzMjN/{object_ref}"
    assert 'href="https://secure.workbooks.example/=IDNzMjN/PERS-' in record_rows(sb.web({}))[bad["id"]]
    sb.extra["workbooks_record_url"] = "javascript:alert({id})"
    row = record_rows(sb.web({}))[bad["id"]]
    assert "javascript:" not in row and "<a href" not in row.split("</td>")[0]


def test_an_invalid_mapping_is_named_with_its_file_and_line(sb, monkeypatch, tmp_path):
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    line = text.splitlines().index("        target: firstName") + 1
    sb.extra["mapping"] = bundled(monkeypatch, tmp_path, text.replace("target: firstName", "target: firstNam", 1))
    problems = [text for cls, text in health(sb.web({})) if cls == "problem"]
    assert any(text.startswith(f"The mapping is invalid: mappings/custom.yaml:{line}:17: ") and "firstName" in text
               and str(tmp_path) not in text for text in problems), problems


def test_records_are_paged_newest_first(sb):
    ids = []
    for n in range(30):
        person = sb.person(email=f"bad{n}", first=f"P{n:02d}")
        ids.append(person["id"])
        sb.wb.clock.advance(1)
    assert sb.run().code == 0
    first, second = sb.web({}), sb.web({"page": "2"})
    assert len(record_rows(first)) == 25 and len(record_rows(second)) == 5
    assert set(record_rows(first)) | set(record_rows(second)) == set(ids)
    assert '<a href="?page=2">Older</a>' in first.output and "page 1 of 2" in first.output
    assert '<a href="?page=1">Newer</a>' in second.output


# --- a GET never changes anything; no secret on the page ---------------------------------------------

def test_no_get_writes_anything(sb):
    sb.person(email="bad-email")
    assert sb.run().code == 0
    page = sb.web({})
    before = writes(sb)
    for request in ({}, {"page": "2"}, {"action": "status"}, {"done": "retried", "count": "3"},
                    {"action": "retry"}, {"action": "retry_all"}, {"action": "retry", "kind": "person", "id": "1",
                                                                   "lock_version": "0", "form_token":
                                                                   form_token(page.output, "retry")}):
        answer = sb.web(request)
        assert answer.code == 0, answer.output
    assert writes(sb) == before


def test_no_secret_in_the_html_in_either_connection_mode(sb):
    sb.person(email="bad-email")
    sb.outreach.insert("prospects", {"emails": ["dup@acme.example"]})
    sb.person(email="dup@acme.example")
    assert sb.run().code == 0
    pages = [sb.web({}).output]
    # The Process Engine's way: the emulator's web-process route with a session of its own.
    from pathlib import Path
    sb.wb.serve_web_processes(Path(__file__).resolve().parent.parent,
                              {k: v for k, v in sb.params().items() if k.startswith("outreach_")})
    answer = requests.get(f"{sb.wb_server.url}/wp/outreach_authorisation", timeout=60)
    assert answer.status_code == 200 and "Records that need a person (2)" in answer.text
    pages.append(answer.text)
    tokens = json.loads([r for r in sb.wb.records("api_data") if r["key"] == "outreach_sync.tokens"][0]["value"])
    assert {tokens["access_token"], tokens["refresh_token"], CLIENT_SECRET, sb.api_key} <= sb.watch.all()
    assert any(s.get("application_name") == "Process Engine" for s in sb.watch.sessions)
    for html in pages:
        assert sb.watch.leaks(html) == []


# --- Retry ----------------------------------------------------------------------------------------------

def test_a_retry_post_without_the_token_is_refused_and_changes_nothing(sb):
    bad = sb.person(email="bad-email")
    assert sb.run().code == 0
    page = sb.web({})
    form = retry_form(page, bad["id"])
    before = writes(sb)
    forged = sb.web({**form, "form_token": ""}, method="POST")
    other = sb.web(form, method="POST", browser=Browser("evil.example", "/wp/outreach_authorisation"))
    wrong_purpose = sb.web({**form, "form_token": form_token(page.output, "revoke")}, method="POST")
    for answer in (forged, other, wrong_purpose):
        assert answer.code == 0 and "[header] Status: 403" in answer.output, answer.output
        assert "did not come from the status page&#x27;s form. Nothing was changed." in answer.output
    assert writes(sb) == before
    assert sb.flags("person", bad["id"])["sync_error"] is True


def test_retry_resets_the_flag_and_the_next_run_syncs_the_fixed_record(sb):
    bad = sb.person(email="bad-email", first="Bob")
    assert sb.run().code == 0
    page = sb.web({})
    form = retry_form(page, bad["id"])
    sb.wb.edit("people", bad["id"], {"main_location[email]": "bob@acme.example"})   # the fix: a new version
    done = sb.web(form, method="POST", follow=False)
    assert "[header] Status: 303" in done.output
    assert "[header] Location: ?done=retried&count=1&changed=0" in done.output
    after = sb.web({"done": "retried", "count": "1", "changed": "0"})
    assert '<p class="notice">1 record reset: the next run of Outreach Send/Receive tries again.</p>' in after.output
    assert bad["id"] not in record_rows(after)
    assert sb.flags("person", bad["id"])["sync_error"] is False
    assert sb.run().code == 0
    assert sb.flags("person", bad["id"])["outreach_id"]


def test_retry_leaves_a_record_whose_error_changed_since_the_page_was_shown(sb):
    bad = sb.person(email="bad-email")
    assert sb.run().code == 0
    form = retry_form(sb.web({}), bad["id"])
    sb.wb.edit("people", bad["id"], {sb.col("person", "error_message"): "something else went wrong: see it"})
    done = sb.web(form, method="POST", follow=False)
    assert "[header] Location: ?done=retried&count=0&changed=1" in done.output
    notice = sb.web({"done": "retried", "count": "0", "changed": "1"}).output
    assert "1 record changed in Workbooks after this page was shown, so kept the flag" in notice
    assert sb.flags("person", bad["id"])["sync_error"] is True


def test_retry_all_resets_every_record_with_that_kind_of_error_and_no_other(sb):
    same = [sb.person(email=f"bad{n}", first=f"Same{n}")["id"] for n in range(3)]
    sb.outreach.insert("prospects", {"emails": ["dup@acme.example"]})
    dup = sb.person(email="dup@acme.example")["id"]
    assert sb.run().code == 0
    page = sb.web({})
    groups = re.findall(r'name="group" value="([^"]*)"', page.output)
    assert sorted(unescape(g) for g in groups) == ["Duplicate", "invalid email address …"]
    token = form_token(page.output, "retry_all")
    done = sb.web({"action": "retry_all", "kind": "person", "group": "invalid email address …",
                   "form_token": token}, method="POST", follow=False)
    assert "[header] Location: ?done=retried&count=3&changed=0" in done.output
    assert all(sb.flags("person", pid)["sync_error"] is False for pid in same)
    assert sb.flags("person", dup)["duplicate"] is True
    assert sb.web({"action": "retry_all", "kind": "person", "group": "invalid email address …"},
                  method="POST").output.count("Status: 403") == 1


# --- what the runner leaves -----------------------------------------------------------------------------

def test_the_runner_records_working_and_failing_runs_but_not_idle_ones(sb):
    sb.person(email="ann@acme.example")
    assert sb.run().code == 0
    stored = history(sb)
    assert [r["kinds"] for r in stored["runs"]] == [{"person": {"created": 1}}]
    assert stored["runs"][0]["outreach"] >= 1 and stored["budget"]["used"] >= 1
    assert stored["hourly_budget"] == 8000 and stored["web_url"] == WEB_URL
    sb.outreach.clock.advance(10)
    assert sb.run().code == 0               # receive passes Outreach's echo of the create (a run that works)
    stored = history(sb)
    version = [r for r in sb.wb.records("api_data") if r["key"] == HISTORY_KEY][0]["lock_version"]
    sb.reset_counts()
    assert sb.run().code == 0                                     # idle: nothing to do
    assert writes(sb) == {} and history(sb) == stored
    assert [r for r in sb.wb.records("api_data") if r["key"] == HISTORY_KEY][0]["lock_version"] == version
    sb.person(email="bo@acme.example")
    sb.outreach.add_fault(path=r"^/api/v2/", status=503, count=None)
    assert sb.run(env={"TIMEOUT": "20"}).code == 1
    failed = history(sb)["runs"][-1]
    assert failed["exit"] == 1 and failed["failure"] == "outreach"
    assert history(sb)["last"]["failure"].startswith("outreach ")


def test_a_tally_in_the_legacy_key_is_used_until_the_history_holds_one(sb):
    sb.wb.insert("api_data", {"key": "outreach_sync.outreach_budget",
                              "value": json.dumps({"window_start": now() - 60, "used": 8000})})
    sb.person(email="ann@acme.example")
    result = sb.run()
    assert result.code == 0 and "budget" in result.summary
    assert sb.prospects() == []
    stored = history(sb)
    assert stored["budget"]["used"] == 8000 and stored["runs"][-1]["stopped"] is True


def test_a_retry_naming_no_record_or_kind_is_refused_plainly(sb):
    bad = sb.person(email="bad-email")
    assert sb.run().code == 0
    form = retry_form(sb.web({}), bad["id"])
    before = writes(sb)
    for changed in ({"kind": "invoice"}, {"id": "12; DROP"}, {"lock_version": ""}, {"kind": "<script>"}):
        answer = sb.web({**form, **changed}, method="POST")
        assert answer.code == 0 and "[header] Status: 400" in answer.output, answer.output
        assert "Nothing was changed." in answer.output and "<script>" not in answer.output
    assert writes(sb) == before and sb.flags("person", bad["id"])["sync_error"] is True


def test_the_page_reads_the_state_once_and_asks_outreach_nothing(sb):
    sb.person(email="bad-email")
    assert sb.run().code == 0
    sb.reset_counts()
    assert "Records that need a person (1)" in sb.web({}).output
    assert sb.wb.count_of("GET", r"automation/api_data") == 1          # history, lock, watermarks: one read
    # login, state, the scheduled process; per kind: waiting, errors, duplicates, one page
    assert sb.wb.total_requests == 3 + 4 * 2
    assert sb.outreach.total_requests == 0


def test_the_scheduled_process_as_workbooks_shows_it_switched_off_and_when_it_last_ran(sb):
    sb.wb.config["unverified_attributes"] = True          # R2.3: the schedule's API names are guesses
    [process] = [p for p in sb.wb.records("scheduled_actions") if p["title"] == "Outreach Send/Receive"]
    sb.wb.edit("scheduled_actions", process["id"], {"enabled": False, "last_run_at": "2027-01-15T08:00:00Z"})
    sentences = health(sb.web({}))
    assert ("problem", "The scheduled process 'Outreach Send/Receive' is switched off in Workbooks (Workbooks "
            "switches it off when a run ends with exit code 2): nothing syncs until it is switched on again.") \
        in sentences
    assert ("ok", "Workbooks last started 'Outreach Send/Receive' at 2027-01-15 08:00 UTC.") in sentences
