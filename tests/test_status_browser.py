"""The status page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright
pointed at the system browser) against the Workbooks emulator's web-process route, which runs
scripts/outreach_authorise.py once per request as the Process Engine would (workbooks-api.md
§2.4, §2.5; tools/emulators/web_process.py). The administrator authorises Outreach in the browser,
the runner runs, the page shows health, backlog, chart and the records that need a person; a
record's data is fixed in Workbooks, Retry is clicked, the runner runs again and the page shows it
synced. A screenshot is kept in tests/artifacts/ (git-ignored; CI keeps the folder).

The test needs /usr/bin/chromium (`.ci/run` installs it when missing). It is skipped only when
env OUTREACH_SYNC_SKIP_BROWSER=1 says so; otherwise a missing browser fails it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.install_helpers import CLIENT_SECRET, assert_no_secrets
from tests.sync_harness import WEB_URL, Sandbox

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("OUTREACH_SYNC_CHROMIUM", "/usr/bin/chromium"))
# /work/.library/env/machines/python.md: without the background-networking flags Chromium keeps
# trying hosts this machine cannot reach.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WEB_PATH = "/wp/outreach_authorisation"
ODD_NAME = ("Zoë", "O'Brien \"Bo\" <b>&</b>")


def _playwright():
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium (.ci/run does)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "Playwright for Python is missing: pip install '.[test]'"
        sync_playwright = None
    if problem:
        if os.environ.get("OUTREACH_SYNC_SKIP_BROWSER") == "1":
            pytest.skip(problem)
        pytest.fail(problem + " (or set OUTREACH_SYNC_SKIP_BROWSER=1 to skip this test on purpose)")
    return sync_playwright


@pytest.fixture
def company(workbooks_server, outreach_server, tmp_path):
    """A small company like the demo's, the plugin installed with its web process served by the
    Workbooks emulator (the redirect URI registered with Outreach is that page's address)."""
    sb = Sandbox(workbooks_server, outreach_server, tmp_path)
    sb.outreach.add_user("owner@corp.example", "owner", "Olive", "Owner")
    sb.install(redirect_uri=f"{workbooks_server.url}{WEB_PATH}")
    sb.load_columns()
    sb.wb.serve_web_processes(ROOT, {"outreach_api_url": f"{outreach_server.url}/api/v2",
                                     "outreach_oauth_url": f"{outreach_server.url}/oauth",
                                     "outreach_web_url": WEB_URL})
    orgs = [sb.organisation(name)["id"] for name in ("Ahlers & Söhne <GmbH>", "Café Olé", "Sakura Seiki")]
    sb.people = [sb.person(email=f"p{n}@ahlers.example", first=f"Pat{n}", last="Lane", employer_link=orgs[n % 3])["id"]
                 for n in range(8)]
    sb.odd = sb.person(email="zoe@cafe-ole.example", first=ODD_NAME[0], last=ODD_NAME[1])["id"]
    sb.malformed = sb.person(email="sam.oduya@sakura-seiki", first="Sam", last="Oduya", employer_link=orgs[2])["id"]
    sb.outreach.seed({"prospects": [{"emails": ["jordan.reyes@cafe-ole.example"], "firstName": "Jordan"}]})
    sb.collision = sb.person(email="jordan.reyes@cafe-ole.example", first="Jordan", last="Reyes")["id"]
    return sb


def _writes(sb) -> int:
    """Workbooks requests that could change something (logins and logouts aside)."""
    return sum(n for key, n in sb.wb.counts.items()
               if not key.startswith("GET ") and "/login" not in key and "/logout" not in key
               and not key.startswith(("POST /wp/", "GET /wp/")))


def test_status_page_in_chromium_authorise_run_retry_and_see_it_synced(company):
    sb = company
    sync_playwright = _playwright()
    url = f"{sb.wb_server.url}{WEB_PATH}"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(60_000)          # each request starts the web process's script

            # Not connected yet: the page says so; the administrator authorises in this browser.
            page.goto(url)
            assert page.inner_text("h1") == "Outreach is not connected"
            assert "Outreach is not connected: nothing syncs until it is authorised" in page.inner_text("ul.health")
            page.get_by_role("link", name="Authorise Outreach").click()
            page.wait_for_selector("h1:text('Outreach is connected')")
            assert sb.wb.records("api_data") and _state(sb, "tokens")

            # The first run: 3 Organisations, 9 People synced, one malformed email, one collision.
            first = sb.run()
            assert first.code == 0, first.output
            page.goto(url)
            health = page.inner_text("ul.health")
            assert "2 records need a person" in health
            assert "Outreach was not reachable" not in health
            backlog = page.inner_text("text=Backlog and budget >> xpath=following-sibling::table[1]")
            assert "People" in backlog and "Organisations" in backlog
            assert "Outreach requests this hour:" in page.content()
            assert _runs_drawn(page) == 1
            rows = page.locator("tr.record")
            assert rows.count() == 2
            bad = page.locator(f'tr.record[data-id="{sb.malformed}"]')
            assert "invalid email address 'sam.oduya@sakura-seiki'" in bad.inner_text()
            duplicate = page.locator(f'tr.record[data-id="{sb.collision}"]')
            assert duplicate.get_by_text("The Outreach record that holds it").get_attribute("href") \
                .startswith(f"{WEB_URL}/prospects/")
            # What comes from outside is shown as text, never as markup.
            assert page.locator("b").count() == 0
            before = _writes(sb)
            page.reload()
            assert _writes(sb) == before                   # a GET never changes anything

            # The administrator fixes the email in Workbooks (the record is saved: a new
            # lock_version), comes back to the page and presses Retry.
            sb.wb.edit("people", sb.malformed, {"main_location[email]": "sam.oduya@sakura-seiki.example"})
            bad.get_by_role("button", name="Retry").click()
            page.wait_for_selector("p.notice")
            assert "1 record reset: the next run of Outreach Send/Receive tries again." in page.inner_text("p.notice")
            assert page.locator(f'tr.record[data-id="{sb.malformed}"]').count() == 0
            assert not sb.flags("person", sb.malformed)["sync_error"]

            second = sb.run()
            assert second.code == 0, second.output
            assert "people: 1 created" in second.summary
            page.goto(url)
            assert page.locator(f'tr.record[data-id="{sb.malformed}"]').count() == 0
            assert page.locator("tr.record").count() == 1          # the duplicate still waits for a person
            assert _runs_drawn(page) == 2
            synced = sb.flags("person", sb.malformed)
            assert synced["outreach_id"] and not synced["sync_error"]
            assert any("sam.oduya@sakura-seiki.example" in p["attributes"]["emails"] for p in sb.prospects())
            assert ODD_NAME[1] not in page.content()          # escaped in the HTML …
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
            html = page.content()
        finally:
            browser.close()
    tokens = _state(sb, "tokens")
    install = _state(sb, "install")
    assert_no_secrets(html, [sb.api_key, CLIENT_SECRET, tokens["access_token"], tokens["refresh_token"],
                             (install.get("oauth_client") or {}).get("client_secret"), *sb.wb.sessions])


def _state(sb, key: str):
    import json
    rows = [r for r in sb.wb.records("api_data") if r["key"] == f"outreach_sync.{key}"]
    return json.loads(rows[0]["value"]) if rows else None


def _runs_drawn(page) -> int:
    """Runs the chart's slots add up (each slot's bar names how many runs it holds)."""
    return sum(int(n) for n in page.eval_on_selector_all("svg.chart g.slot", "els => els.map(e => e.dataset.runs)"))
