"""`make demo`: the whole product on one machine, in one command (DESIGN.md §8).

    python -m tools.demo [--keep-running] [--people N] [--report FILE] [--timeout SECONDS]

Starts both emulators as real HTTP servers (child processes, `python -m tools.emulators …`), seeds
a small company (tools/demo_company.py), then runs the plugin exactly as Workbooks would: the
installer, the authorisation web process (following the Outreach redirect as a browser does) and
the "Outreach Send/Receive" runner as a subprocess with a params file and env TIMEOUT, for
several cycles with users' edits between them. Everything printed is read back from the scripts'
own output or from the emulators (`/_emulator/…`), never assumed.

At the end it opens the administrators' status page the way a browser does, from the Workbooks
emulator's web-process route (`/wp/outreach_authorisation`, which runs the authorisation web
process once per request as Workbooks would), and prints its health lines and URL.
`--keep-running` leaves the emulators up (with demo credentials of the emulators printed, clearly
marked) until Ctrl-C: open that URL in a browser. `--report FILE` writes what happened and the
final state as JSON (the demo test reads it). Exit code: 0 when every step did what it should,
1 otherwise, 130 on Ctrl-C before the end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
import yaml

from plugin import fields
from plugin.kinds import KINDS
from tools import demo_company
from tools.demo_checks import shorten, verdicts
from tools.run_output import PrintedLines
from tools.web_browser import Browser, own_redirect

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
WEB_PROCESS_PATH = "/wp/outreach_authorisation"      # where Workbooks would serve the web process
OUTREACH_WEB_URL = "https://web.outreach.example"     # links written back into Outreach URL
STATE_PREFIX = "outreach_sync."
IMPORT_SIZE = 1000
MAX_BACKLOG_CYCLES = 12
RECEIVED_TITLE = "Head of Partnerships"     # what a rep corrects in Outreach
DEMO_SEQUENCE = "Spring webinar"
# The plugin's fields the demo reads back, by kind: title → key (the hidden snapshot aside).
FIELD_KEYS = {kind.name: {d.title: d.key for d in fields.definitions(kind.name) if d.key != "snapshot"}
              for kind in KINDS}
RESOURCE = {kind.name: kind.resource_type for kind in KINDS}


class DemoFailed(Exception):
    """A step did not do what it should; the message says which, in plain words."""


# --- output ------------------------------------------------------------------------------------------

class Out:
    """Everything the demo prints. Progress bars redraw in place only on a terminal; elsewhere
    (make in CI, the test) each update is one plain line, so logs stay readable."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._bar_open = False

    def line(self, text: str = "") -> None:
        self._close_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def section(self, number: int, title: str) -> None:
        self.line()
        self.line(f"{number}. {title}")

    def bar(self, done: int, total: int, label: str, final: bool = False) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        text = f"     [{'#' * filled}{'.' * (width - filled)}] {done:>5,}/{total:,} {label}"
        if self.tty:
            self.stream.write("\r" + text)
            self._bar_open = True
            if final:
                self._close_bar()
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _close_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False


# --- emulators as child processes ---------------------------------------------------------------------

class EmulatorProcess:
    """`python -m tools.emulators NAME --port 0 …` in its own session (so a Ctrl-C reaches only the
    demo, which then stops it cleanly); the first stdout line is its URL."""

    def __init__(self, api: str, switches: dict, log_dir: Path) -> None:
        self.api = api
        self.command = [sys.executable, "-m", "tools.emulators", api, "--port", "0"]
        for name, value in switches.items():
            self.command += ["--set", f"{name}={json.dumps(value)}"]
        self.log_path = log_dir / f"{api}-emulator.log"
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.http = requests.Session()

    def start(self, wait: float = 20.0) -> "EmulatorProcess":
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                            text=True, start_new_session=True, preexec_fn=_die_with_parent)
        ready, _, _ = select.select([self.process.stdout], [], [], wait)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("http"):
            self.stop()
            raise DemoFailed(f"the {self.api} emulator did not start (see {self.log_path})")
        self.url = line
        return self

    def control(self, method: str, path: str, body=None):
        try:
            answer = self.http.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=60)
        except requests.RequestException as exc:
            raise DemoFailed(f"the {self.api} emulator did not answer {method} /_emulator/{path} "
                             f"({type(exc).__name__}; see {self.log_path})") from None
        if answer.status_code >= 400:
            raise DemoFailed(f"{self.api} emulator: {method} /_emulator/{path} answered "
                             f"{answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def request_counts(self) -> dict[str, int]:
        """Requests served so far by "METHOD /path" (ids folded), control routes not included."""
        return self.control("GET", "requests")["counts"]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()          # the emulator exits 0 on SIGTERM
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the plugin's scripts, run as Workbooks runs them ----------------------------------------------------

@dataclass
class ScriptRun(PrintedLines):
    script: str
    code: int
    stdout: str
    stderr: str
    seconds: float

    def header(self, name: str) -> str | None:
        for line in self.lines:
            if line.lower().startswith(f"[header] {name.lower()}:"):
                return line.split(":", 1)[1].strip()
        return None


class Scripts:
    """Runs scripts/… by path with `--params FILE` (mode 0600, in a private temporary folder)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._n = 0

    def run(self, script: str, params: dict, *args: str, env: dict | None = None,
            on_tick=None, timeout: float = 600) -> ScriptRun:
        self._n += 1
        params_file = self.work / f"params-{self._n}.json"
        params_file.write_text(json.dumps(params), encoding="utf-8")
        params_file.chmod(0o600)
        out_path, err_path = self.work / f"out-{self._n}.txt", self.work / f"err-{self._n}.txt"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOKS_PARAMS")}
        environment.update(env or {})
        command = [sys.executable, str(SCRIPTS / script), *args, "--params", str(params_file)]
        started = time.monotonic()
        # Output goes to files, not pipes: a chatty run can never block on a full pipe while
        # the demo is busy drawing its progress bar.
        with out_path.open("w") as out, err_path.open("w") as err:
            child = subprocess.Popen(command, cwd=self.work, stdout=out, stderr=err, env=environment,
                                     start_new_session=True, preexec_fn=_die_with_parent)
            try:
                while not _exited(child, 0.05):
                    if on_tick:
                        on_tick()
                    if time.monotonic() - started > timeout:
                        child.kill()
            finally:
                if child.poll() is None:      # Ctrl-C while it runs: stop it, then go on stopping
                    child.terminate()
                    child.wait()
        return ScriptRun(script, child.returncode, out_path.read_text(encoding="utf-8", errors="replace"),
                         err_path.read_text(encoding="utf-8", errors="replace"), time.monotonic() - started)


# --- one send/receive cycle --------------------------------------------------------------------------------

COUNT_WORDS = ("created", "updated", "unchanged", "duplicate", "error", "pending")


def parse_summary(summary: str) -> dict[str, dict[str, int]]:
    """`people: 3 created, 1 updated, 0 duplicates, 1 error, 0 pending; organisations: …` →
    {"people": {"created": 3, …}, "organisations": {…}}. A count the runner does not print is
    absent (the table shows "–" for it, never a guess)."""
    text = summary.split(" — ", 1)[0]
    found: dict[str, dict[str, int]] = {}
    for kind, counts in re.findall(r"\b(people|organisations):([^;]*)", text):
        found[kind] = {}
        for number, word in re.findall(r"(\d+)\s+([a-z]+)", counts):
            for key in COUNT_WORDS:
                if word.startswith(key):
                    found[kind][key + ("s" if key in ("duplicate", "error") else "")] = int(number)
    return found


@dataclass
class Cycle:
    number: int
    key: str                             # first idle edits more import backlog steady
    change: str
    exit_code: int
    summary: str
    counts: dict
    outreach_requests: int
    workbooks_requests: int
    outreach_by_route: dict              # "PATCH /api/v2/prospects/{id}": n, this run only
    workbooks_by_route: dict
    runner_reported: dict
    seconds: float
    timeout: int
    progress: bool = False
    problems: list[str] = field(default_factory=list)
    output: str = ""                     # the run's whole process log (stdout)

    def total(self, key: str) -> int | None:
        values = [c[key] for c in self.counts.values() if key in c]
        return sum(values) if values else None

    @property
    def pending(self) -> int:
        return self.total("pending") or 0

    @property
    def stopped_early(self) -> bool:
        return "stopped early" in self.summary


# (heading, width, count key or None); counts are People + Organisations together.
COLUMNS = (("created", 8, "created"), ("updated", 8, "updated"), ("unchanged", 10, "unchanged"),
           ("dup", 5, "duplicates"), ("err", 5, "errors"), ("pending", 8, "pending"),
           ("Outreach", 9, None), ("Workbooks", 10, None), ("time", 7, None))
CHANGE_WIDTH = 42


def table_head() -> list[str]:
    requests_at = 6 + CHANGE_WIDTH + sum(w for _, w, key in COLUMNS if key)
    top = (" " * requests_at + "requests".center(19)).rstrip()
    head = f"  {'#':>2}  {'what changed before this run':<{CHANGE_WIDTH}}" + "".join(
        f"{name:>{width}}" for name, width, _ in COLUMNS)
    return [top, head]


def table_row(cycle: Cycle) -> str:
    cells = []
    for _, width, key in COLUMNS[:6]:
        value = cycle.total(key)
        cells.append(("–" if value is None else f"{value:,}").rjust(width))
    change = shorten(cycle.change, CHANGE_WIDTH - 1)
    return (f"  {cycle.number:>2}  {change:<{CHANGE_WIDTH}}" + "".join(cells)
            + f"{cycle.outreach_requests:>9,}{cycle.workbooks_requests:>10,}{cycle.seconds:>6.1f}s")


# --- the demo ------------------------------------------------------------------------------------------------

class Demo:
    def __init__(self, args: argparse.Namespace, out: Out, work: Path) -> None:
        self.args = args
        self.out = out
        self.work = work
        self.scripts = Scripts(work)
        self.company = demo_company.build(args.people)
        self.client_id = "outreach-sync-demo"
        self.client_secret = secrets.token_urlsafe(24)     # a demo credential, never printed
        self.wb: EmulatorProcess | None = None
        self.outreach: EmulatorProcess | None = None
        self.api_key = ""
        self.columns: dict[str, dict[str, str]] = {}
        self.person_ids: dict[str, int] = {}               # email (lower) -> Workbooks id
        self.queues: dict[str, dict] = {}                  # rep key -> Workbooks user summary
        self.outreach_user_ids: dict[str, int] = {}        # email -> Outreach user id
        self.imported: list[str] = []
        self.cycles: list[Cycle] = []
        self.steps: dict[str, dict] = {}
        self.browser: Browser | None = None                # the administrator's, once it opens the page
        self.timeout = args.timeout or _manifest_timeout()
        self.started = time.monotonic()

    def tell(self) -> tuple[dict, list[str]]:
        """The whole story, in order; returns the final state and the cases that went wrong."""
        self.start_emulators()
        self.seed()
        self.install()
        self.authorise()
        self.cycles_section()
        final = self.final_state()
        failures = self.show_outcome(final)
        self.what_next(final, self.args.keep_running)
        self.out.line()
        self.out.line(f"Demo {'finished' if not failures else 'FAILED'} in {time.monotonic() - self.started:.0f}s "
                      f"({len(self.cycles)} runs of the plugin).")
        return final, failures

    # --- 1. emulators ---------------------------------------------------------------------------
    def start_emulators(self) -> None:
        self.out.section(1, "Emulators (real HTTP servers on loopback, started as child processes)")
        self.wb = EmulatorProcess("workbooks", {"database_name": "Northwind Demo"}, self.work).start()
        users = [u["email"] for u in self.company.outreach_users]
        self.outreach = EmulatorProcess("outreach", {
            "excluded_domains": [demo_company.EXCLUDED_DOMAIN],   # Outreach's excluded-domain list
            "oauth_clients": "registered",                       # only our registered OAuth app
            "authorize_as_user": users[0],                       # who signs in at /oauth/authorize
        }, self.work).start()
        # The plugin bundle this checkout is, as if uploaded: the Workbooks emulator serves its web
        # process (the status page) under /wp/, with the parameters an administrator would set.
        self.wb.control("POST", "web_processes", {"bundle": str(ROOT), "parameters": {
            "outreach_api_url": f"{self.outreach.url}/api/v2", "outreach_oauth_url": f"{self.outreach.url}/oauth",
            "outreach_web_url": OUTREACH_WEB_URL}})
        for emulator in (self.wb, self.outreach):
            command, *switches = " ".join(shlex.quote(p) for p in emulator.command[1:]).split(" --set ")
            self.out.line(f"   {emulator.api.capitalize():<10} {emulator.url:<24} python {command}")
            for switch in switches:
                self.out.line(f"   {'':<10} {'':<24}   --set {switch}")

    # --- 2. the company --------------------------------------------------------------------------
    def seed(self) -> None:
        company = self.company
        self.out.section(2, "A small company, seeded through the emulators' control surface")
        for rep in company.reps:
            self.queues[rep["key"]] = self.wb.control("POST", "users", {"login_name": rep["login_name"],
                                                                        "person_name": rep["person_name"]})
        orgs = [self._wb_row(o, "organisation_queue_id") for o in company.organisations]
        people = [self._wb_row(p, "person_queue_id") for p in company.people]
        self.wb.control("POST", "seed", {"organisations": orgs, "people": people})
        self._load_person_ids()
        created = self.outreach.control("POST", "seed", {"users": company.outreach_users})
        self.outreach_user_ids = dict(zip([u["email"] for u in company.outreach_users], created["users"]))
        logins = {r["key"]: r["login_name"] for r in company.reps}
        existing = [{**{k: v for k, v in p.items() if k != "_owner"},
                     "owner": self.outreach_user_ids[logins[p["_owner"]]]} for p in company.outreach_prospects]
        self.outreach.control("POST", "seed", {"prospects": existing})
        self.api_key = self.wb.control("POST", "api_keys", {})["api_key"]
        self.outreach.control("POST", "clients", {"client_id": self.client_id, "client_secret": self.client_secret,
                                                  "redirect_uris": [self.redirect_uri]})
        self._describe_company()

    def _wb_row(self, row: dict, queue_key: str) -> dict:
        clean = {k: v for k, v in row.items() if not k.startswith("_")}
        clean["assigned_to"] = self.queues[row["_owner"]][queue_key]
        return clean

    def _describe_company(self) -> None:
        c, cases = self.company, self.company.cases
        matched = ", ".join(r["person_name"] for r in c.reps if r["outreach"])
        unmatched = ", ".join(r["person_name"] for r in c.reps if not r["outreach"])
        no_employer = len(cases["no_employer"])      # the excluded-domain person aside
        examples = ", ".join(f"{p['first']} {p['last']}" for p in cases["unicode_people"][3:8:2])
        for line in (
                f"Workbooks  {len(c.people)} People across {len(c.organisations)} Organisations, owned by "
                f"{len(c.reps)} sales reps (Workbooks users)",
                f"Outreach   {len(c.outreach_users)} users: {matched} match a rep; {unmatched} have no seat;",
                f"           {c.outreach_users[0]['email']} authorises the plugin",
                f"Cases      collision: {cases['collision']} is already an Outreach prospect "
                f"(added by hand as {c.outreach_prospects[0]['emails'][0]})",
                f"           excluded domain: {cases['excluded']};  malformed email: {cases['malformed']['bad']}",
                f"           Unicode: {len(cases['unicode_people'])} People ({examples}, …) and "
                f"{len(cases['unicode_organisations'])} Organisations",
                f"           {no_employer} People without an Employer; {len(cases['unflagged_organisations'])} "
                "Organisations never ticked for sync"):
            self.out.line("   " + line)

    # --- 3. installer ----------------------------------------------------------------------------
    def install(self) -> None:
        self.out.section(3, "Installer: python scripts/outreach_install.py --params FILE")
        params = {**self.wb_params(), "outreach_client_id": self.client_id,
                  "outreach_client_secret": self.client_secret, "outreach_redirect_uri": self.redirect_uri}
        run = self.scripts.run("outreach_install.py", params)
        self.out.line(f"   {run.summary}   (exit {run.code}, {run.seconds:.1f}s)")
        self.steps["install"] = {"exit_code": run.code, "summary": run.summary}
        if run.code != 0:
            self._show_failure(run)
            raise DemoFailed(f"the installer exited {run.code}")
        self._resolve_columns()
        people = [p for p in self.company.people if p["_flag"] == "now"]
        orgs = [o for o in self.company.organisations if o["_flag"]]
        self.tick(people)
        for org in orgs:
            self.wb.control("PATCH", f"records/organisations/{org['id']}", {self.columns["organisation"]["sync"]: True})
        self.out.line(f"   An administrator ticks \"Sync to Outreach\" on {len(orgs)} Organisations and "
                      f"{len(people)} People (the other {len(self.company.people) - len(people)} People "
                      "wait for a later cycle)")

    def _resolve_columns(self) -> None:
        """Custom-field column names by title, as the plugin finds them (never hard-coded)."""
        rows = self.wb.control("GET", "records/custom_fields")
        for kind, resource in RESOURCE.items():
            by_title = {r["title"]: r["value_column_name"] for r in rows if r["resource_type"] == resource}
            self.columns[kind] = {key: by_title[title] for title, key in FIELD_KEYS[kind].items()}

    def tick(self, people: list[dict]) -> None:
        column = self.columns["person"]["sync"]
        for person in people:
            pid = self.person_ids[person["main_location[email]"].lower()]
            self.wb.control("PATCH", f"records/people/{pid}", {column: True})

    # --- 4. authorisation ------------------------------------------------------------------------
    @property
    def redirect_uri(self) -> str:
        return f"{self.wb.url}{WEB_PROCESS_PATH}"

    def authorise(self) -> None:
        self.out.section(4, "Authorisation web process: python scripts/outreach_authorise.py, driven as a browser would")
        start = self._web({"action": "start"})
        location = start.header("Location") or ""
        if not location.startswith(self.outreach.url):
            self._show_failure(start)
            raise DemoFailed("the authorisation did not redirect to Outreach")
        self.out.line(f"   GET  {WEB_PROCESS_PATH}?action=start  → {_status(start)} to "
                      f"{_without_query(location)}?{_param_names(location)}")
        answer = requests.get(location, allow_redirects=False, timeout=30)
        back = answer.headers.get("Location", "")
        query = dict(parse_qsl(urlsplit(back).query))
        if answer.status_code != 302 or "code" not in query:
            raise DemoFailed(f"Outreach did not send the browser back with a code ({answer.status_code} {back[:120]})")
        self.out.line(f"   GET  {_without_query(location).replace(self.outreach.url, '(Outreach)')}"
                      f"  → {answer.status_code} back to {_without_query(back)}?{_param_names(back)}")
        callback = self._web({"code": query["code"], "state": query.get("state", "")})
        page = _page_summary(callback.stdout)
        self.out.line(f"   GET  {WEB_PROCESS_PATH}?code=…&state=…  → {_status(callback)} \"{page['headline']}\"")
        for line in page["lines"]:
            self.out.line(f"        {line}")
        self.steps["authorise"] = {"start": start.code, "callback": callback.code, "page": page["headline"]}
        if callback.code != 0 or _status(callback) != "200":
            self._show_failure(callback)
            raise DemoFailed("the authorisation callback failed")
        process = next((p for p in self.wb.control("GET", "records/scheduled_actions")
                        if p.get("title") == "Outreach Send/Receive"), {})
        if process.get("enabled") is None:
            # The schedule's API field names are unknown (workbooks-api.md R2.3): under the
            # emulator's strict default they do not stick, and the installer said what to set.
            self.out.line("   Scheduled process \"Outreach Send/Receive\": schedule and switch set by hand in "
                          "Workbooks, as the installer's notice lists (this demo runs it itself)")
        else:
            self.out.line(f"   Scheduled process \"Outreach Send/Receive\": enabled={process.get('enabled')}, "
                          f"every {process.get('frequency_minutes')} min, max run {process.get('timeout_seconds')}s")

    def _web(self, query: dict, follow: bool = True) -> ScriptRun:
        """One request from the administrator's browser, which keeps the page's cookie and follows
        a redirect back to the page itself (tools.web_browser)."""
        if self.browser is None:
            self.browser = Browser(urlsplit(self.wb.url).netloc, WEB_PROCESS_PATH, https=False)
        params = {**self.wb_params(), "outreach_api_url": f"{self.outreach.url}/api/v2",
                  "outreach_oauth_url": f"{self.outreach.url}/oauth", **self.browser.params(query)}
        run = self.scripts.run("outreach_authorise.py", params)
        self.browser.keep(run.lines)
        again = own_redirect(run.lines) if follow else None
        return self._web(again, follow=False) if again else run

    # --- 5. cycles ---------------------------------------------------------------------------------
    def wb_params(self) -> dict:
        return {"_workbooks_service": self.wb.url, "workbooks_api_key": self.api_key}

    def runner_params(self) -> dict:
        return {**self.wb_params(), "outreach_api_url": f"{self.outreach.url}/api/v2",
                "outreach_oauth_url": f"{self.outreach.url}/oauth", "outreach_web_url": OUTREACH_WEB_URL}

    def cycles_section(self) -> None:
        self.out.section(5, f"Send/receive cycles: python scripts/outreach_send_receive.py --params FILE, "
                            f"env TIMEOUT={self.timeout}")
        self.out.line("   Each row is one run, as Workbooks starts it every minute; requests are counted by the emulators.")
        self.out.line()
        for line in table_head():
            self.out.line(line)
        tagged = {tag: [p for p in self.company.people if p["_tag"] == tag]
                  for tag in ("title_edit", "reassign", "unmapped_edit", "later")}
        orgs = sum(1 for o in self.company.organisations if o["_flag"])
        people_now = sum(1 for p in self.company.people if p["_flag"] == "now")
        self.cycle("first", f"first run: {orgs} Orgs, {people_now} People ticked")
        self.cycle("echoes", "nothing (receive passes run 1's echoes)")
        self.cycle("idle", "nothing (an idle minute)")
        self.edit_people(tagged)
        self.cycle("edits", "job title, owner, salutation edited")
        self.outreach_activity()
        self.cycle("outreach", "in Outreach: title, opt-out, sequence")
        self.tick(tagged["later"])
        self.fix_malformed()
        self.cycle("more", f"{len(tagged['later'])} People ticked; bad email fixed+reset")
        self.import_people()
        self.cycle("import", f"{IMPORT_SIZE:,} People imported, all ticked", progress=True)
        for _ in range(MAX_BACKLOG_CYCLES):
            last = self.cycles[-1]
            if last.exit_code not in (0, 1) or (last.pending == 0 and not last.stopped_early):
                break
            self.cycle("backlog", "nothing (the backlog carries on)", progress=True)
        import_runs = [c for c in self.cycles if c.progress]
        if len(import_runs) == 1:
            self.out.line(f"      One run (which may last TIMEOUT={self.timeout}s) took the whole import; "
                          "with --timeout 5 the backlog spreads over several runs.")
        else:
            self.out.line(f"      The import took {len(import_runs)} runs of at most TIMEOUT={self.timeout}s; "
                          "each carried on where the last one stopped.")
        self.cycle("echoes", "nothing (receive passes the import's echoes)")
        self.cycle("steady", "nothing (steady state)")
        if any(c.total("unchanged") is None for c in self.cycles):
            self.out.line("   – : the runner's summary line does not report this count.")

    def cycle(self, key: str, change: str, progress: bool = False) -> Cycle:
        before = {"outreach": self.outreach.request_counts(), "workbooks": self.wb.request_counts()}
        ticker = self._import_ticker() if progress else None
        run = self.scripts.run("outreach_send_receive.py", self.runner_params(),
                               env={"TIMEOUT": str(self.timeout)}, on_tick=ticker,
                               timeout=self.timeout + 30)
        after = {"outreach": self.outreach.request_counts(), "workbooks": self.wb.request_counts()}
        spent = {api: _delta(before[api], after[api]) for api in before}
        reported = re.search(r"requests: Outreach (\d+), Workbooks (\d+)", run.stdout)
        cycle = Cycle(number=len(self.cycles) + 1, key=key, change=change, exit_code=run.code, summary=run.summary,
                      counts=parse_summary(run.summary),
                      outreach_requests=sum(spent["outreach"].values()),
                      workbooks_requests=sum(spent["workbooks"].values()),
                      outreach_by_route=spent["outreach"], workbooks_by_route=spent["workbooks"],
                      runner_reported={"outreach": int(reported[1]), "workbooks": int(reported[2])} if reported else {},
                      seconds=run.seconds, timeout=self.timeout, progress=progress,
                      problems=[l for l in run.lines[:-1] if l.startswith(("[error]", "[warning]"))],
                      output=run.stdout)
        self.cycles.append(cycle)
        if progress:
            self._import_bar(final=True)
        self.out.line(table_row(cycle) + ("" if run.code == 0 else f"  exit {run.code}"))
        self.out.line(f"      {run.summary}")
        for line in cycle.problems[:4]:
            self.out.line(f"      {shorten(line, 150)}")
        if len(cycle.problems) > 4:
            self.out.line(f"      … and {len(cycle.problems) - 4} more lines like these in the process log")
        if run.code == 2 or not run.summary:
            self._show_failure(run)
            raise DemoFailed(f"the runner exited {run.code}: {run.summary}")
        return cycle

    def edit_people(self, tagged: dict) -> None:
        """What sales does in Workbooks between two runs."""
        title, reassign, unmapped = (tagged[k][0] for k in ("title_edit", "reassign", "unmapped_edit"))
        self._edit(title, {"person_job_title": "VP Sales"})
        self._edit(reassign, {"assigned_to": self.queues["alice"]["person_queue_id"]})
        self._edit(unmapped, {"person_salutation": "Dr"})    # not mapped: must cost no Outreach request

    def outreach_activity(self) -> None:
        """What sales does in Outreach between two runs (the emulator's control surface plays the
        reps): a job title corrected, a prospect unsubscribing, a prospect added to a sequence and
        paused there. The verdicts check each arrived in Workbooks."""
        column = self.columns["person"]["outreach_id"]
        tagged = {p["main_location[email]"].lower() for p in self.company.people if p["_tag"]}
        linked = [p for p in self.wb.control("GET", "records/people")
                  if p.get(column) and str(p.get("main_location[email]") or "").lower() not in tagged]
        rep_edit, opt_out, sequence = (sorted(linked, key=lambda p: p["id"])[n] for n in (0, 1, 2))
        pid = {name: int(p[column]) for name, p in (("title", rep_edit), ("opt_out", opt_out), ("sequence", sequence))}
        answer = self.outreach.control("POST", "activity", {"actions": [
            {"do": "edit", "kind": "prospects", "id": pid["title"], "attributes": {"title": RECEIVED_TITLE}},
            {"do": "opt_out", "prospect": pid["opt_out"], "channel": "email"},
            {"do": "add_to_sequence", "prospect": pid["sequence"], "sequence": DEMO_SEQUENCE}]})
        state = next(r for r in answer["results"] if r["do"] == "add_to_sequence")
        self.outreach.control("POST", "activity", {"actions": [{"do": "set_state", "id": state["id"], "state": "paused"}]})
        self.company.cases["received"] = {"title": {"email": rep_edit["main_location[email]"], "title": RECEIVED_TITLE},
                                          "opt_out": opt_out["main_location[email]"],
                                          "sequence": {"email": sequence["main_location[email]"],
                                                       "name": DEMO_SEQUENCE, "state": "Active – Paused"}}

    def fix_malformed(self) -> None:
        bad = next(p for p in self.company.people if p["_tag"] == "malformed")
        self._edit(bad, {"main_location[email]": bad["_fixed_email"], self.columns["person"]["sync_error"]: False})
        self.person_ids[bad["_fixed_email"].lower()] = self.person_ids[bad["main_location[email]"].lower()]

    def _edit(self, person: dict, fields: dict) -> None:
        pid = self.person_ids[person["main_location[email]"].lower()]
        self.wb.control("PATCH", f"records/people/{pid}", fields)

    def import_people(self) -> None:
        taken = set(self.person_ids)
        rows = demo_company.bulk_import(IMPORT_SIZE, self.company.organisations, taken)
        sync = self.columns["person"]["sync"]
        seeded = [{**self._wb_row(r, "person_queue_id"), sync: True} for r in rows]
        self.wb.control("POST", "seed", {"people": seeded})
        self.imported = [r["main_location[email]"].lower() for r in rows]
        self._load_person_ids()

    def _import_ticker(self):
        """Progress of the import from the Outreach emulator's counters: prospects created so far."""
        base = min(IMPORT_SIZE, sum(c.counts.get("people", {}).get("created", 0) for c in self.cycles if c.progress))
        start = self._prospect_posts()
        self._bar_state = {"base": base, "start": start}
        last = [0.0]

        def tick() -> None:
            if not self.out.tty or time.monotonic() - last[0] < 0.25:
                return
            last[0] = time.monotonic()
            self._import_bar()
        return tick

    def _import_bar(self, final: bool = False) -> None:
        state = getattr(self, "_bar_state", None)
        if not state:
            return
        if final:
            done = self._imported_linked()
        else:
            done = min(IMPORT_SIZE, state["base"] + self._prospect_posts() - state["start"])
        self.out.bar(done, IMPORT_SIZE, "imported People now in Outreach", final=final)

    def _prospect_posts(self) -> int:
        return int(self.outreach.request_counts().get("POST /api/v2/prospects", 0))

    def _imported_linked(self) -> int:
        """Imported People with an Outreach Id, read from Workbooks (the exact count, after a run)."""
        column = self.columns["person"]["outreach_id"]
        wanted = set(self.imported)
        return sum(1 for p in self.wb.control("GET", "records/people")
                   if str(p.get("main_location[email]") or "").lower() in wanted and p.get(column))

    def _load_person_ids(self) -> None:
        for person in self.wb.control("GET", "records/people"):
            email = str(person.get("main_location[email]") or "").lower()
            if email:
                self.person_ids[email] = person["id"]

    # --- 6. final state ------------------------------------------------------------------------------
    def final_state(self) -> dict:
        people = self.wb.control("GET", "records/people")
        orgs = self.wb.control("GET", "records/organisations")
        prospects = self.outreach.control("GET", "records/prospects")["data"]
        accounts = self.outreach.control("GET", "records/accounts")["data"]
        users = self.outreach.control("GET", "records/users")["data"]
        state_keys = sorted(r["key"] for r in self.wb.control("GET", "records/api_data")
                            if str(r.get("key", "")).startswith(STATE_PREFIX))
        return {"workbooks": {"people": [self._trim_wb(p, "person") for p in people],
                              "organisations": [self._trim_wb(o, "organisation") for o in orgs],
                              "users": [{k: r[k] for k in ("key", "login_name", "person_name", "outreach")}
                                        | {"person_queue_id": self.queues[r["key"]]["person_queue_id"]}
                                        for r in self.company.reps]},
                "outreach": {"prospects": [_trim_outreach(p) for p in prospects],
                             "accounts": [_trim_outreach(a) for a in accounts],
                             "users": [{"id": u["id"], "email": u["attributes"]["email"],
                                        "username": u["attributes"]["username"]} for u in users]},
                "state_keys": state_keys}

    def _trim_wb(self, record: dict, kind: str) -> dict:
        base = ["id", "name", "assigned_to", "updated_at"]
        if kind == "person":
            base += ["person_first_name", "person_last_name", "person_job_title", "main_location[email]",
                     "employer_link", "imported", "no_email_soliciting", "no_phone_soliciting"]
        out = {k: record.get(k) for k in base}
        out.update({key: record.get(column) for key, column in self.columns[kind].items()})
        return out

    def show_outcome(self, final: dict) -> list[str]:
        """What happened to each seeded case, read from the final state; returns the failures."""
        self.out.section(6, "What happened to each seeded case (read back from both emulators)")
        checks = verdicts(self.company.cases, self.imported, final, [asdict(c) for c in self.cycles])
        for ok, text in checks:
            self.out.line(f"   {'✓' if ok else '✗'} {text}")
        prospects, accounts = len(final["outreach"]["prospects"]), len(final["outreach"]["accounts"])
        self.out.line(f"   Outreach now holds {prospects:,} prospects and {accounts} accounts; Workbooks "
                      f"{len(final['workbooks']['people']):,} People and {len(final['workbooks']['organisations'])} "
                      "Organisations.")
        return [text for ok, text in checks if not ok]

    # --- 7. what next --------------------------------------------------------------------------------
    def what_next(self, final: dict, keep_running: bool) -> None:
        self.out.section(7, "Look further")
        keys = ", ".join(k[len(STATE_PREFIX):] for k in final["state_keys"])
        self.out.line(f"   The plugin's state is in Workbooks API Data (automation/api_data), keys {STATE_PREFIX}…:")
        self.out.line(f"     {keys}")
        self.out.line("   Per record it writes back Outreach Id, Outreach URL, Outreach Last Synced, and the Outreach")
        self.out.line("   Sync Error / Outreach Duplicate flags with the Outreach Error Message; from Outreach it brings")
        self.out.line("   back opt-outs (No Email / No Call), the sequence state and the fields mapped `both`.")
        for line in self.status_page(keep_running):
            self.out.line(line)
        if not keep_running:
            self.out.line("   To explore both emulators with curl afterwards:  make demo ARGS=--keep-running")
            return
        for line in self._explore_lines():
            self.out.line(line)

    def status_page(self, keep_running: bool) -> list[str]:
        """The administrators' status page, fetched as a browser fetches it from Workbooks (the
        emulator's web-process route runs scripts/outreach_authorise.py for the request)."""
        url = f"{self.wb.url}{WEB_PROCESS_PATH}"
        try:
            answer = requests.get(url, timeout=120)
        except requests.RequestException as exc:
            raise DemoFailed(f"the status page did not answer ({type(exc).__name__})") from None
        page = _status_summary(answer.text)
        self.steps["status_page"] = {"http_status": answer.status_code, **page}
        if answer.status_code != 200 or not page["health"]:
            raise DemoFailed(f"the status page answered {answer.status_code} without its health section")
        where = "open it in a browser" if keep_running else "while the emulators run: make demo ARGS=--keep-running"
        return ([f"   The status page for administrators ({where}):", f"     {url}"]
                + [f"     • {shorten(text, 110)}" for text in page["health"]]
                + [f"     Records that need a person: {page['records']}; runs recorded in the last 24 hours: "
                   f"{page['runs']}"])

    def _explore_lines(self) -> list[str]:
        wb, outreach = self.wb.url, self.outreach.url
        connection_user = self.outreach_user_ids[self.company.outreach_users[0]["email"]]
        token = self.outreach.control("POST", "tokens", {"user_id": connection_user,
                                                         "client_id": "demo-curl"})["access_token"]
        url_column = self.columns["person"]["outreach_url"]
        email = self.company.cases["unicode_people"][3]["email"]
        params = json.dumps({**self.runner_params(), "workbooks_api_key": "WB_KEY"}).replace('"WB_KEY"', '"\'$WB_KEY\'"')
        return [
            "",
            f"   Workbooks emulator  {wb}",
            f"   Outreach emulator   {outreach}",
            "   DEMO CREDENTIALS of these two local emulators only (made up for this run):",
            f"     export WB_KEY={self.api_key}",
            f"     export OR_TOKEN={token}",
            "   The control surface (not part of the real APIs):",
            f"     curl -s {wb}/_emulator/requests | head -c 400; echo",
            f"     curl -s {outreach}/_emulator/records/accounts | head -c 400; echo",
            f"     curl -s -X POST {outreach}/_emulator/faults -H 'Content-Type: application/json' "
            "-d '{\"status\": 503, \"count\": 3}'   # the next 3 Outreach requests fail",
            "   The APIs, as the plugin calls them:",
            f"     curl -s \"{wb}/crm/people.api?api_key=$WB_KEY&client=api&api_version=1&_limit=3"
            f"&_select_columns[]=name&_select_columns[]={url_column}\"",
            f"     curl -s \"{wb}/automation/api_data.api?api_key=$WB_KEY&client=api&api_version=1"
            "&_select_columns[]=key&_select_columns[]=updated_at\"",
            f"     curl -s -g -H \"Authorization: Bearer $OR_TOKEN\" \"{outreach}/api/v2/prospects?filter[emails]={email}\"",
            "   Run the plugin once more, as Workbooks would:",
            f"     echo '{params}' > /tmp/demo-params.json",
            "     TIMEOUT=300 .venv/bin/python scripts/outreach_send_receive.py --params /tmp/demo-params.json",
        ]

    # --- helpers ---------------------------------------------------------------------------------
    def _show_failure(self, run: ScriptRun) -> None:
        for line in (run.stdout + run.stderr).splitlines()[-15:]:
            self.out.line(f"   | {line}")

    def report(self, final: dict | None, failures: list[str], elapsed: float) -> dict:
        return {"ok": not failures, "failures": failures, "elapsed_seconds": round(elapsed, 2),
                "timeout": self.timeout, "people_seeded": len(self.company.people),
                "emulators": {"workbooks": self.wb.url if self.wb else None,
                              "outreach": self.outreach.url if self.outreach else None},
                "steps": self.steps, "cycles": [asdict(c) for c in self.cycles],
                "cases": self.company.cases, "imported": self.imported, "final": final}

    def stop(self) -> None:
        for emulator in (self.outreach, self.wb):
            if emulator is not None:
                emulator.stop()


def _trim_outreach(resource: dict) -> dict:
    attrs, rels = resource.get("attributes") or {}, resource.get("relationships") or {}

    def rel(name: str):
        data = (rels.get(name) or {}).get("data")
        return data["id"] if isinstance(data, dict) else None
    out = {"id": resource["id"], "account": rel("account"), "owner": rel("owner")}
    for name in ("name", "emails", "firstName", "lastName", "title", "externalId", "customId", "domain",
                 "company", "externalSource", "emailOptedOut"):
        if name in attrs:
            out[name] = attrs[name]
    return out


def _exited(child: subprocess.Popen, within: float) -> bool:
    try:
        child.wait(timeout=within)
        return True
    except subprocess.TimeoutExpired:
        return False


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: n - before.get(key, 0) for key, n in sorted(after.items()) if n - before.get(key, 0)}


def _manifest_timeout() -> int:
    """The run limit Workbooks gives the scheduled process (manifest max_run_time_seconds)."""
    manifest = yaml.safe_load((ROOT / "manifest.yaml").read_text(encoding="utf-8"))
    return int(manifest["processes"]["scheduled"][0]["max_run_time_seconds"])


def _status(run: ScriptRun) -> str:
    return (run.header("Status") or "?").split()[0]


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _param_names(url: str) -> str:
    """The query's parameter names only: values (state, code) stay off the screen."""
    return "&".join(f"{k}=…" for k, _ in parse_qsl(urlsplit(url).query))


def _page_summary(stdout: str) -> dict:
    """The headline, notice and a few status rows of the web process's page (it never shows a
    token, so nothing here needs hiding)."""
    body = "\n".join(line for line in stdout.splitlines() if not line.startswith("[header] "))

    def text(html: str) -> str:
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    headline = re.search(r"<h1>(.*?)</h1>", body, re.S)
    lines = [text(m) for m in re.findall(r'<p class="(?:notice|problem)">(.*?)</p>', body, re.S)]
    rows = dict((text(k), text(v)) for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", body, re.S))
    lines += [f"{name}: {rows[name]}" for name in ("Authorised scopes", "Access token expires") if name in rows]
    return {"headline": text(headline[1]) if headline else text(body)[:80], "lines": lines}


def _status_summary(html: str) -> dict:
    """The status page's health sentences, records count and recorded runs, as text."""
    def text(fragment: str) -> str:
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())
    health = re.search(r'<ul class="health">(.*?)</ul>', html, re.S)
    records = re.search(r"Records that need a person \((\d[\d,]*)\)", html)
    runs = re.search(r"Runs in the last 24 hours</th><td>(\d+) recorded", html)
    return {"health": [text(item) for item in re.findall(r"<li[^>]*>(.*?)</li>", health.group(1), re.S)]
            if health else [],
            "records": int(records.group(1).replace(",", "")) if records else None,
            "runs": int(runs.group(1)) if runs else 0}


# --- entry point -----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the emulators up (with demo credentials) until Ctrl-C")
    parser.add_argument("--people", type=int, default=300, metavar="N",
                        help="People in the seeded company before the import (default 300, at least 60)")
    parser.add_argument("--report", metavar="FILE", help="write what happened and the final state as JSON")
    parser.add_argument("--timeout", type=int, metavar="SECONDS",
                        help="env TIMEOUT for each run (default: the manifest's max_run_time_seconds)")
    args = parser.parse_args(argv)
    if args.people < 60:
        parser.error("--people must be at least 60 (every seeded case needs room)")
    return args


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the demo dies, even by SIGKILL, so an
    emulator never outlives it holding a port. Elsewhere the demo's own clean-up has to do."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")      # a non-UTF-8 terminal gets '?' not a crash
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops the children too, like Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even when started with SIGINT ignored
    out = Out()
    out.line("Outreach Sync demo: the real plugin scripts against local Workbooks and Outreach emulators")
    final, failures, finished = None, [], False
    with tempfile.TemporaryDirectory(prefix="outreach-demo-") as tmp:
        demo = Demo(args, out, Path(tmp))
        try:
            final, failures = demo.tell()
            finished = True
            _write_report(args.report, demo, final, failures)
            if args.keep_running:
                out.line("Emulators are up. Press Ctrl-C to stop them.")
                while True:
                    time.sleep(3600)
        except DemoFailed as exc:
            failures.append(str(exc))
            out.line()
            out.line(f"Demo FAILED: {exc}")
            _write_report(args.report, demo, final, failures)
        except KeyboardInterrupt:
            out.line()
            out.line("Stopping the emulators…" if finished else "Interrupted: stopping the emulators…")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not cut the clean-up short
            demo.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if finished and args.keep_running:
                out.line("Emulators stopped.")
    if failures:
        return 1
    return 0 if finished else 130


def _write_report(path: str | None, demo: Demo, final: dict | None, failures: list[str]) -> None:
    if path:
        report = demo.report(final, failures, time.monotonic() - demo.started)
        Path(path).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
