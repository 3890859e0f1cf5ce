"""The benchmark's request-count targets (issue 8), asserted as counts — never times — on the
`--quick` data (1,000 People, 200 Organisations, 20 owners), with the real runner in-process and no
injected latency. Outreach's per-record ratios do not depend on the size; Workbooks' do (a run has
a fixed cost of ~20 requests for login, lock, watermarks and budget), so its targets are asserted
as their parts: reads paged at 100, write-backs batched at 100, a bounded fixed cost. The literal
full-size figure is in the slow test at the end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import bench

ROOT = Path(__file__).resolve().parent.parent
S = bench.QUICK


@pytest.fixture(scope="module")
def economy(tmp_path_factory):
    """backlog → echo → steady → trickle on one database (what `--scenario trickle` runs)."""
    run = bench.Bench(S, latency_ms=0, in_process=True, workdir=tmp_path_factory.mktemp("economy"),
                      log=lambda _text: None)
    try:
        report = run.run(["backlog", "echo", "steady", "trickle", "received"])
        yield report["scenarios"], report["targets"]
    finally:
        run.close()


def pages(n: int) -> int:
    return math.ceil(n / 100)


def test_backlog_outreach_requests_per_created_record(economy):
    backlog = economy[0]["backlog"]
    created = S.people + S.organisations
    assert backlog["records"] == created and backlog["backlog_left"] == 0
    assert all(code == 0 for code in backlog["exit_codes"])
    outreach = backlog["outreach"]
    assert outreach["create"] == created                         # one POST per record, no retries
    assert outreach["update"] == 0 and outreach["other"] == 0
    assert outreach["users"] == backlog["runs"]                   # users read once per run
    assert outreach["receive"] <= 3 * backlog["runs"]             # the receive half's polls, one per feed
    # Look-ups batched: prospects by email (≤ 50 values or 1,500 URL characters per request, so
    # 2–3 per page of 100), accounts by customId then name (2 chunks each per page).
    assert outreach["lookup"] <= 3 * pages(S.people) + 5 * pages(S.organisations)
    assert backlog["outreach_send_total"] / created <= 1.05
    assert set(backlog["outreach_statuses"]) <= {"200", "201"}


def test_backlog_workbooks_reads_paged_and_writes_batched(economy):
    backlog = economy[0]["backlog"]
    raw, runs = backlog["workbooks_requests"], backlog["runs"]
    people_pages, org_pages = pages(S.people), pages(S.organisations)
    assert raw.get("PUT /crm/people.api", 0) == people_pages                 # write-backs at 100
    assert raw.get("PUT /crm/organisations.api", 0) == org_pages
    # Reads at 100: each page once, plus per run and kind at most the first look, one page of the
    # run's own write-backs (the scan then asks Workbooks to leave the rest out, so it does not
    # page through them), the empty answer that ends the scan, and reading again the second the
    # seeding ended in when the run started inside it (WatermarkTracker.passed_open); plus closing
    # the last second and, once per database, proving the lock_version filter.
    assert raw.get("GET /crm/people.api", 0) <= people_pages + 4 * runs + 2
    assert raw.get("GET /crm/organisations.api", 0) <= org_pages + 4 * runs + 2
    fixed = sum(n for key, n in raw.items() if "/crm/people" not in key and "/crm/organisations" not in key)
    assert fixed <= 25 * runs                                                # login, lock, state, queues


def test_the_run_after_a_full_sync_sends_nothing_and_writes_no_record(economy):
    """Only our own writes changed anything: the send scan leaves its write-backs out, and the
    receive half passes Outreach's echoes of our creates (its cursor moves: state, not records)."""
    echo = economy[0]["echo"]
    assert echo["exit_codes"] == [0]
    assert echo["outreach_send_total"] == 0
    assert echo["outreach"]["receive"] <= 3 + math.ceil((S.people + S.organisations) / 1000)
    assert not any(key.startswith("PUT /crm/") for key in echo["workbooks_requests"])


def test_an_idle_run_polls_three_feeds_and_costs_at_most_four_workbooks_requests(economy):
    steady = economy[0]["steady"]
    assert steady["exit_codes"] == [0]
    assert steady["outreach_send_total"] == 0 and steady["outreach"]["receive"] <= 3
    assert steady["outreach_api_total"] == steady["outreach"]["receive"]      # GETs only
    assert steady["workbooks"]["total"] <= 4


def test_trickle_sends_exactly_one_patch_per_edited_record_with_only_the_changed_attribute(economy):
    trickle = economy[0]["trickle"]
    edited = math.ceil(S.people / S.trickle_every)
    assert trickle["edited"] == edited
    assert trickle["outreach"]["update"] == edited
    assert trickle["outreach_send_total"] == edited
    assert trickle["patches"] == trickle["patches_only_changed_attribute"] == edited
    assert trickle["patched_attributes"] == ["title"] and trickle["patched_relationships"] == []
    assert trickle["workbooks_requests"].get("PUT /crm/people.api") == 1      # one batched write-back


def test_received_changes_cost_a_handful_of_polls_and_echo_nothing(economy):
    received = economy[0]["received"]
    assert received["exit_codes"] == [0] and received["after_exit_code"] == 0
    assert received["titles_received"] == received["titles"]
    assert received["opt_outs_received"] == received["opt_outs"]
    assert received["states_received"] == received["enrolled"]
    assert received["outreach_send_total"] == 0 and received["outreach"]["receive"] <= 12
    # reads of the linked People paged at 99, their writes batched at 100, plus the run's frame
    people = received["titles"] + received["opt_outs"] + received["enrolled"]
    assert received["workbooks_requests"].get("PUT /crm/people.api", 0) <= 3 * pages(people)
    assert received["after_outreach_sent"] == 0 and received["after_workbooks_record_writes"] == 0


def test_naive_baseline_ratios(economy):
    scenarios = economy[0]
    backlog = scenarios["backlog"]
    assert backlog["naive"]["outreach"] == 2 * backlog["records"] + 1
    assert backlog["ratio_vs_naive"]["outreach"] > 1.9
    assert backlog["ratio_vs_naive"]["workbooks"] > 10
    assert scenarios["echo"]["naive"]["outreach"] == backlog["records"]


def test_pacing_spreads_the_backlog_without_a_429_within_five_percent_of_the_minimum(tmp_path):
    """Emulator limit 1,000/hour, plugin budget 800: one-minute runs on a simulated clock."""
    run = bench.Bench(S, latency_ms=0, in_process=True, workdir=tmp_path, log=lambda _text: None)
    try:
        report = run.run(["pacing"])
    finally:
        run.close()
    pacing = report["scenarios"]["pacing"]
    assert pacing["rate_limit_per_hour"] == 1_000 and pacing["hourly_budget"] == 800
    assert pacing["responses_429"] == 0
    assert set(pacing["outreach_statuses"]) <= {"200", "201"}
    assert pacing["backlog_left"] == 0
    assert set(pacing["exit_codes"]) == {0}
    assert pacing["budget_windows_needed"] == 2
    # the first hour's budget, but for what the send half keeps for the receive half's polls (an
    # eighth of it at the start of the hour) and the first run's own three polls
    assert 800 - 800 // 8 - 3 <= pacing["working_run_requests"][0] <= 800
    # an opt-out made in Outreach while the backlog has spent the hour's budget arrives within two runs
    assert pacing["opt_out_latency_runs"] is not None and pacing["opt_out_latency_runs"] <= 2
    assert max(pacing["requests_per_clock_hour"].values()) <= 1_000 - bench.REMAINING_SAFETY
    assert pacing["finish_over_minimum"] <= 1.05
    # The work resumes within a minute of the budget window reopening.
    assert pacing["working_run_minutes"][-1] <= 61


def test_runner_budget_clock_follows_the_offset(monkeypatch):
    from plugin import runner
    monkeypatch.setenv(runner.CLOCK_OFFSET_ENV, "3600")
    assert runner._budget_clock()() - time.time() == pytest.approx(3600, abs=5)
    monkeypatch.delenv(runner.CLOCK_OFFSET_ENV)
    assert runner._budget_clock() is time.time


def test_cli_quick_smoke(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--latency-ms", "0",
                           "--scenario", "steady", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Request counts" in done.stdout and "| steady" in done.stdout and "Targets" in done.stdout
    report = json.loads(out.read_text())
    assert list(report["scenarios"]) == ["steady"]                     # backlog and echo ran, unreported
    steady = report["scenarios"]["steady"]
    assert steady["outreach_send_total"] == 0 and steady["outreach"]["receive"] <= 3
    assert steady["workbooks"]["total"] <= 4
    assert steady["peak_rss_mb"] and steady["cpu_seconds"] is not None  # measured on the subprocess


@pytest.mark.slow
def test_cli_quick_all_scenarios(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--latency-ms", "0",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert list(report["scenarios"]) == list(bench.SCENARIOS)
    assert report["scenarios"]["pacing"]["responses_429"] == 0
    assert report["scenarios"]["scale"]["backlog_left"] == 0
    assert report["scenarios"]["scale"]["peak_rss_mb"] < 150


@pytest.mark.slow
def test_full_size_backlog_request_targets(tmp_path):
    """The issue's literal backlog figures at full size (10,000 People, 2,000 Organisations)."""
    run = bench.Bench(bench.FULL, latency_ms=0, in_process=True, workdir=tmp_path, log=lambda _text: None)
    try:
        report = run.run(["backlog"])
    finally:
        run.close()
    targets = {t["target"]: t for t in report["targets"]}
    assert targets["backlog: Outreach requests per created record"]["met"]
    backlog = report["scenarios"]["backlog"]
    assert targets["backlog: Workbooks requests per record"]["met"]
    assert backlog["workbooks"]["total"] / backlog["records"] <= 0.03
