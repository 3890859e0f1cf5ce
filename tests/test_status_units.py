"""The status page's pure parts: the run history's entries and bounds (plugin/history.py), the
error grouping, links and estimates (plugin/status.py), the health sentences
(plugin/statusview.py) and the chart (plugin/chart.py)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from plugin import chart, history
from plugin.errors import TransientError
from plugin.history import History, Run
from plugin.kinds import ORGANISATION, PERSON
from plugin.status import (Facts, KindFacts, clear_estimate, error_group, notice_of, outreach_url, record_url,
                           requests_per_record)
from plugin.statusview import health
from plugin.sync.report import RunReport

NOW = 1_800_000_000.0


# --- history ------------------------------------------------------------------------------------------

@dataclass
class Received:
    people_updated: int = 0
    opt_outs: int = 0
    sequence_states: int = 0
    errors: int = 0
    note: str = "not a count"


def report(**per_kind) -> RunReport:
    made = RunReport()
    for kind, counts in per_kind.items():
        for name, value in counts.items():
            setattr(made.counts[kind], name, value)
    return made


def test_an_entry_keeps_the_nonzero_counts_per_kind_and_the_receive_counts_once_they_exist():
    done = report(person={"created": 3, "unchanged": 9, "errors": 1}, organisation={"updated": 2})
    assert history.entry(at=NOW, exit_code=0, report=done, outreach_requests=7) == {
        "at": int(NOW), "exit": 0, "outreach": 7,
        "kinds": {"organisation": {"updated": 2}, "person": {"created": 3, "errors": 1}}}
    done.received = Received(people_updated=2, opt_outs=1)            # the receive half, when it lands
    assert history.entry(at=NOW, exit_code=0, report=done)["received"] == {"people_updated": 2, "opt_outs": 1}
    done.received = None
    assert "received" not in history.entry(at=NOW, exit_code=0, report=done)


def test_failures_are_told_apart_by_the_client_that_raised_them():
    assert history.failure_source(TransientError("outreach GET /api/v2/prospects: 503 (gave up)")) == "outreach"
    assert history.failure_source(TransientError("workbooks PUT /crm/people.api: timed out")) == "workbooks"
    assert history.failure_source(TransientError("state 'lock' was changed by another run")) == "other"
    assert history.failure_source(None) is None


@pytest.mark.parametrize("run, previous, expected", [
    ({"at": 1, "exit": 0}, None, True),                                             # the first ever
    ({"at": 2, "exit": 0}, {"at": 1, "exit": 0, "outreach": 3}, False),             # empty-handed, no news
    ({"at": 2, "exit": 0, "outreach": 1}, {"at": 1, "exit": 0}, True),
    ({"at": 2, "exit": 0, "kinds": {"person": {"errors": 1}}}, {"at": 1, "exit": 0}, True),
    ({"at": 2, "exit": 0, "stopped": True, "kinds": {"person": {"pending": 5}}},
     {"at": 1, "exit": 0, "stopped": True, "outreach": 800, "kinds": {"person": {"created": 800, "pending": 5}}},
     False),                                                                        # waiting for the budget
    ({"at": 2, "exit": 0, "stopped": True, "kinds": {"person": {"pending": 6}}},
     {"at": 1, "exit": 0, "stopped": True, "kinds": {"person": {"pending": 5}}}, True),
    ({"at": 2, "exit": 1, "failure": "outreach"}, {"at": 1, "exit": 1, "failure": "outreach"}, True),
    ({"at": 2, "exit": 0, "received": {"opt_outs": 1}}, {"at": 1, "exit": 0}, True),
])
def test_which_runs_are_worth_a_write(run, previous, expected):
    assert history.worth_recording(run, previous) is expected


def test_the_stored_value_keeps_24_hours_and_stays_small():
    old = [{"at": int(NOW) - history.WINDOW_SECONDS - 10, "exit": 0}]
    value = history.updated({"runs": old}, {"at": int(NOW), "exit": 0}, budget={"window_start": 1, "used": 2},
                            hourly_budget=8000, web_url="https://web.outreach.io", summary="x\ny " * 200,
                            failure_text=None, now=NOW)
    assert [r["at"] for r in value["runs"]] == [int(NOW)]
    assert value["budget"] == {"window_start": 1, "used": 2} and len(value["last"]["summary"]) <= 300
    busy = {"at": 0, "exit": 1, "failure": "outreach", "outreach": 12345,
            "kinds": {"person": {n: 999 for n in history.COUNTS}, "organisation": {n: 999 for n in history.COUNTS}}}
    runs = [{**busy, "at": int(NOW) - 60 * n} for n in range(history.MAX_RUNS + 50, 0, -1)]
    value = history.updated({"runs": runs}, {**busy, "at": int(NOW)}, budget={}, hourly_budget=1, web_url="",
                            summary="", failure_text="f", now=NOW)
    assert len(json.dumps(value, separators=(",", ":"))) <= history.MAX_CHARS
    assert value["runs"][-1]["at"] == int(NOW) and len(value["runs"]) < history.MAX_RUNS
    assert [r["at"] for r in value["runs"]] == sorted(r["at"] for r in value["runs"])


def test_a_stored_value_that_is_not_what_we_wrote_reads_as_an_empty_history():
    for stored in (None, "text", [], {"runs": "x"}, {"runs": [1, "a", {"exit": 0}, {"at": "x"}]}):
        assert History.from_state(stored).runs == []
    legacy = History.from_state(None, {"window_start": 5, "used": 7})
    assert legacy.budget == {"window_start": 5, "used": 7} and legacy.hourly_budget is None


# --- grouping, links, estimates ---------------------------------------------------------------------------

@pytest.mark.parametrize("message, group", [
    ("main_location[email] → emails: not a valid email address", "main_location[email] → emails"),
    ("Duplicate: Outreach prospect 17 already has email a@b.example", "Duplicate"),
    ("the linked Outreach prospect 17 no longer exists (deleted in Outreach?): clear Outreach Id",
     "the linked Outreach prospect … no longer exists (deleted in Outreach?)"),
    ("Outreach refuses the email address ann@x.example, bo@x.example: its domain is excluded",
     "Outreach refuses the email address …"),
    ("invalid email address 'bad-email': correct the Email field", "invalid email address …"),
    ("the website https://acme.example is too long", "the website https://acme.example is too long"),
    ("", "(no message)"), (None, "(no message)"), ("   \n ", "(no message)"),
])
def test_error_groups(message, group):
    assert error_group(message) == group
    assert error_group(message.replace("17", "18") if message else message) == group


def test_record_links_fill_only_their_four_names_and_only_make_http_links():
    row = {"id": 12, "object_ref": "PERS-12"}
    assert record_url(None, "https://secure.workbooks.com/", PERSON, row) == \
        "https://secure.workbooks.com/crm/people/12"
    assert record_url("https://secure.workbooks.com/=IDNzMjN/{object_ref}", "x", PERSON, row) == \
        "https://secure.workbooks.com/=IDNzMjN/PERS-12"
    assert record_url("https://h/{id.__class__}/{id}", "x", ORGANISATION, row) == "https://h/{id.__class__}/12"
    for template in ("javascript:alert({id})", "data:text/html,{id}", "//evil/{id}", "{service}"):
        assert record_url(template, "", PERSON, row) is None
    assert record_url(None, "https://wb", PERSON, {"id": 3, "object_ref": "a b/<c>"}) == "https://wb/crm/people/3"
    assert record_url("https://wb/{object_ref}", "", PERSON, {"id": 3, "object_ref": "a b/<c>"}) == \
        "https://wb/a%20b%2F%3Cc%3E"


def test_the_outreach_link_of_a_duplicate():
    assert outreach_url("https://web.outreach.io", PERSON, "Duplicate: Outreach prospect 17 already has email x") \
        == "https://web.outreach.io/prospects/17"
    assert outreach_url("javascript:x", ORGANISATION, "Duplicate: Outreach account 4, 9 already has name 'A'") \
        == "https://web.outreach.io/accounts/4"
    assert outreach_url("https://web.outreach.io", PERSON, "Duplicate: Outreach says the email is taken") is None


def test_the_time_to_clear_a_backlog_at_the_budget():
    assert clear_estimate(0, 1.0, 8000, 0, None, NOW) == 0
    assert clear_estimate(500, 1.0, 8000, 0, None, NOW) == 60                       # within the next run
    assert clear_estimate(500, 1.0, 8000, 7900, NOW + 1800, NOW) == 1800 + 60       # the next hour
    assert clear_estimate(25_000, 1.0, 8000, 8000, NOW + 600, NOW) == 600 + 3 * 3600 + 60
    assert clear_estimate(10, 1.0, 0, 0, None, NOW) is None


def test_requests_per_record_comes_from_the_day_s_runs():
    runs = History([Run(at=NOW - 60, exit=0, kinds={"person": {"created": 100}}, outreach=120)], {}, None, None, {})
    assert requests_per_record(runs, NOW) == pytest.approx(1.2)
    assert requests_per_record(History([], {}, None, None, {}), NOW) == 1.0


def test_the_retry_notice_takes_only_numbers_from_the_address():
    assert notice_of({"_query_done": "retried", "_query_count": "2"}) == \
        "2 records reset: the next run of Outreach Send/Receive tries again."
    assert notice_of({"_query_done": "retried", "_query_count": "<script>", "_query_changed": "1"}).startswith(
        "No record was reset. 1 record changed in Workbooks")
    assert notice_of({"_query_done": "<b>hi</b>", "_query_count": "1"}) is None


# --- health ---------------------------------------------------------------------------------------------

def facts(**kw) -> Facts:
    base = dict(now=NOW, installed=True, connection_problem=None, history=History([], {}, 8000, None, {}),
                hourly_budget=8000, kinds=[KindFacts(PERSON, 0, 0, 0), KindFacts(ORGANISATION, 0, 0, 0)])
    return Facts(**{**base, **kw})


def test_health_sentences():
    assert [s.text for s in health(facts(installed=False))][0].startswith("The plugin is not installed")
    assert health(facts())[0].text == "Nothing needs a person."
    off = health(facts(process={"title": "Outreach Send/Receive", "enabled": False}))
    assert off[0].level == "problem" and "is switched off in Workbooks" in off[0].text
    stopped = History([Run(at=NOW - 60, exit=2, failure="outreach")], {}, 8000, None,
                      {"failure": "Outreach is not authorised: run the authorisation"})
    assert health(facts(history=stopped))[0].text == (
        "The last run stopped because a person must act: Outreach is not authorised: run the authorisation.")
    one = History([Run(at=NOW - 60, exit=1, failure="workbooks")], {}, 8000, None, {"failure": "workbooks GET x"})
    assert health(facts(history=one))[0].text.startswith("Workbooks failed the last run (since ")
    busy = facts(lock={"owner": "abc", "acquired_at": "2027-01-15T08:00:00+00:00"},
                 kinds=[KindFacts(PERSON, 9, 0, 0)])
    assert [s.text for s in health(busy) if s.level == "notice"] == [
        "A run is in progress (started 2027-01-15T08:00:00+00:00)."]


# --- the chart ------------------------------------------------------------------------------------------

def test_the_chart_adds_up_runs_per_quarter_hour_and_marks_failed_ones():
    runs = [Run(at=NOW - 10, exit=0, kinds={"person": {"created": 3}}),
            Run(at=NOW - 70, exit=1, failure="outreach", kinds={"person": {"errors": 1}}),
            Run(at=NOW - 5 * 3600, exit=0, kinds={"organisation": {"updated": 40}}),
            Run(at=NOW - 30 * 3600, exit=0, kinds={"person": {"created": 999}})]     # older than a day
    svg = chart.svg(runs, NOW)
    slots = re.findall(r'<g class="slot" data-runs="(\d+)"><title>([^<]*)</title>', svg)
    assert sorted(int(n) for n, _ in slots) == [1, 2]
    assert any("2 runs: 3 created, 0 updated, 1 failed (1 run failed)" in title for _, title in slots)
    assert "received" not in svg and svg.count('fill="#c62828"/>') >= 1 and "999" not in svg
    assert ">50<" in svg                                                 # the axis: 40 → 50
    runs[0].received = {"opt_outs": 2, "people_updated": 3, "errors": 1}
    assert (runs[0].records_received, runs[0].flagged) == (5, 1)     # receive's failures count as failed
    assert "received" in chart.svg(runs, NOW)
    assert "No run has recorded work in the last 24 hours" in chart.svg([], NOW)
    assert [chart.nice_ceiling(n) for n in (0, 1, 3, 7, 11, 240, 5000)] == [1, 1, 5, 10, 20, 500, 5000]
