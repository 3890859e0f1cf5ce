"""Machinery shared by the reliability suites (issue 7): fresh emulator pairs, a mixed scenario, an
independent oracle of what Outreach and the Workbooks write-backs must look like, the real runner
run as a subprocess that can be killed at a chosen request, and "rerun until clean".

The oracle (`audit`) is deliberately written from the seed and DESIGN §6, not from plugin code:
if it imported the plugin's mapping or planner, a bug there would be checked against itself.
It covers the fields the suites write (names, job title, email, employer; organisation name and
industry) and returns a list of readable problems rather than failing on the first, so a failing
crash point or storm seed reports everything that went wrong at once.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from plugin.workbooks import parse_datetime as parse_wb_datetime
from tests.sync_harness import WEB_URL, Result, Sandbox
from tools.emulators.core import ServerHandle
from tools.run_output import PrintedLines
from tools.emulators.outreach import OutreachEmulator
from tools.emulators.workbooks import WorkbooksEmulator

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "scripts" / "outreach_send_receive.py"
PREFIX = "outreach_sync."

# What the default mapping (mappings/default.yaml) does to the fields the suites use. Outreach
# limits these strings to 255 characters and the mapping truncates them (`truncate`).
STRING_LIMIT = 255
_EMAIL = re.compile(r"^[^\s@,;<>]+@[^\s@,;<>]+\.[^\s@,;<>]+$")
_LIST_SEPARATORS = re.compile(r"[,;\r\n]+")


# --- emulators and sandboxes ---------------------------------------------------------------------

@contextlib.contextmanager
def fresh_sandbox(tmp_path: Path, *, workbooks: dict | None = None, outreach: dict | None = None,
                  wb_clock_offset: float = 0.0) -> Iterator[Sandbox]:
    """A new pair of emulators with the plugin installed and Outreach authorised. Suites that
    need many independent databases in one test (the crash sweep, storms) use this instead of the
    per-test fixtures. `wb_clock_offset` shifts Workbooks' clock (see `expire_stale_lock`)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    with ServerHandle(WorkbooksEmulator(**(workbooks or {}))) as wb, \
            ServerHandle(OutreachEmulator(**(outreach or {}))) as outreach_server:
        if wb_clock_offset:
            wb.app.clock.advance(wb_clock_offset)
        sb = Sandbox(wb, outreach_server, tmp_path).ready()
        yield sb
        assert not wb.app.internal_errors, wb.app.internal_errors
        assert not outreach_server.app.internal_errors, outreach_server.app.internal_errors


def state(sb: Sandbox, key: str):
    rows = sorted((r for r in sb.wb.records("api_data") if r["key"] == PREFIX + key), key=lambda r: r["id"])
    return json.loads(rows[0]["value"]) if rows and rows[0]["value"] else None


def lock_holder(sb: Sandbox) -> str | None:
    value = state(sb, "lock")
    return value.get("owner") if isinstance(value, dict) else None


# --- the mixed scenario ----------------------------------------------------------------------------

@dataclass
class Scenario:
    """Records created by `mixed_scenario`: what the oracle needs to know beyond the data."""
    rep_queue: int | None = None          # a Workbooks queue whose user has an Outreach seat
    rep_user: int | None = None           # that Outreach user
    people: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)

    @property
    def owners(self) -> dict[int, int]:
        return {self.rep_queue: self.rep_user} if self.rep_queue else {}


def mixed_scenario(sb: Sandbox) -> Scenario:
    """Issue 7's mixed scenario. A first, fault-free run links some records; then the edits and
    new records the run under test must handle: new organisations and people (one owned by a rep
    with an Outreach seat), updates to linked people and an organisation, a duplicate of each kind
    (a foreign Outreach record with the same match key) and errors (an excluded email domain,
    which Outreach refuses with a 422, and an invalid email, refused before any request)."""
    sc = Scenario()
    rep = sb.wb.add_user("rep@corp.example", "Rita Rep")
    sc.rep_queue = rep["person_queue_id"]
    sc.rep_user = sb.outreach.add_user("rep@corp.example", "rita", "Rita", "Rep")
    sb.outreach.config["excluded_domains"] = ["blocked.example"]

    sc.orgs["acme"] = sb.organisation("Acme Ltd", industry="Widgets")["id"]
    sc.people["ann"] = sb.person(email="ann@acme.example", first="Ann", last="Lee", person_job_title="CTO",
                                 employer_link=sc.orgs["acme"])["id"]
    sc.people["bob"] = sb.person(email="bob@acme.example", first="Bob", last="Ray",
                                 employer_link=sc.orgs["acme"])["id"]
    first = sb.run()
    assert first.code == 0 and "0 pending" in first.summary, first.output

    # updates to linked records
    sb.wb.edit("people", sc.people["ann"], {"person_job_title": "CEO"})
    sb.wb.edit("people", sc.people["bob"], {"person_last_name": "Ray-Jones", "assigned_to": sc.rep_queue})
    sb.wb.edit("organisations", sc.orgs["acme"], {"industry": "Gadgets"})
    # new records
    sc.orgs["beta"] = sb.organisation("Beta plc", industry="Logistics")["id"]
    sc.orgs["gamma"] = sb.organisation("Gamma GmbH")["id"]
    sc.people["cat"] = sb.person(email="cat@beta.example", first="Cat", last="Ng", person_job_title="VP",
                                 employer_link=sc.orgs["beta"], assigned_to=sc.rep_queue)["id"]
    sc.people["dan"] = sb.person(email="Dan@Beta.example", first="Dan", last="Oh",
                                 employer_link=sc.orgs["beta"])["id"]
    sc.people["eve"] = sb.person(email="eve@acme.example", first="Eve", last="Poe",
                                 employer_link=sc.orgs["acme"])["id"]
    sc.people["fay"] = sb.person(email="fay@solo.example", first="Fay", last="Quinn")["id"]
    sc.people["gus"] = sb.person(email="gus@gamma.example", first="Gus", last="Roe",
                                 employer_link=sc.orgs["gamma"])["id"]
    # duplicates: someone else's records already in Outreach
    sb.outreach.insert("prospects", {"emails": ["hal@dupe.example"], "firstName": "Hal (theirs)"})
    sc.people["hal"] = sb.person(email="hal@dupe.example", first="Hal", last="Sun")["id"]
    sb.outreach.insert("accounts", {"name": "Delta Corp"})
    sc.orgs["delta"] = sb.organisation("Delta Corp")["id"]
    # errors
    sc.people["ivy"] = sb.person(email="ivy@blocked.example", first="Ivy", last="Tam")["id"]
    sc.people["jon"] = sb.person(email="jon at nowhere", first="Jon", last="Uhl")["id"]
    return sc


# --- the oracle ----------------------------------------------------------------------------------------

def mapped_emails(raw) -> list[str]:
    """main_location[email] through `trim, lower, to_list` (to_list splits on , ; and newlines)."""
    if raw is None:
        return []
    return [e.strip() for e in _LIST_SEPARATORS.split(str(raw).strip().lower()) if e.strip()]


def mapped_text(raw) -> str | None:
    """`trim, truncate` into a 255-character Outreach string; empty becomes null."""
    if raw is None:
        return None
    text = str(raw).strip()[:STRING_LIMIT]
    return text or None


@dataclass
class Audit:
    problems: list[str]
    checked: int              # Workbooks records whose outcome was checked

    def __bool__(self) -> bool:
        return not self.problems


def audit(sb: Sandbox, *, owners: dict[int, int] | None = None, ignore: set[tuple[str, int]] = frozenset(),
          excluded_domains: set[str] | None = None, check_values: bool = True,
          expected: dict[tuple[str, int], str] | None = None) -> Audit:
    """Compare both systems with what the seed says they must hold. `owners` maps Assigned-To
    queue ids to the Outreach user that must own those prospects (any other queue: no owner);
    `ignore` lists (kind, id) records whose outcome a test decides itself. `expected` replaces
    the oracle's own verdicts, (kind, id) → "healthy" | "error" | "duplicate" | "flagged" (either
    flag) | "healthy-or-flagged" (flagged, or else healthy in every respect) — for callers that
    know the history (the property suite)."""
    db = sb.wb.database["id"]
    problems: list[str] = []
    excluded = {d.lower() for d in (excluded_domains if excluded_domains is not None
                                    else sb.outreach.config.get("excluded_domains") or [])}
    records = {"person": sb.wb.records("people"), "organisation": sb.wb.records("organisations")}
    remote = {"person": sb.prospects(), "organisation": sb.accounts()}
    marker_attr = {"person": "externalId", "organisation": "customId"}
    web_path = {"person": "prospects", "organisation": "accounts"}

    # Outreach side: every record is someone else's (no marker) or ours for one live Workbooks record.
    by_marker: dict[str, dict[str, list]] = {k: defaultdict(list) for k in remote}
    foreign: dict[str, list[dict]] = {k: [] for k in remote}
    for kind, items in remote.items():
        for item in items:
            marker = item["attributes"].get(marker_attr[kind])
            if marker and str(marker).startswith(f"workbooks:{db}:"):
                by_marker[kind][marker].append(item)
            else:
                foreign[kind].append(item)
        for marker, found in by_marker[kind].items():
            if len(found) > 1:
                problems.append(f"{len(found)} Outreach {web_path[kind]} carry the marker {marker}: "
                                f"ids {[f['id'] for f in found]} (a duplicate was created)")
    # A record deleted in Workbooks keeps its Outreach twin (the plugin deletes nothing there).
    ids = {kind: {r["id"] for r in sb.wb.records(endpoint, include_deleted=True)}
           for kind, endpoint in (("person", "people"), ("organisation", "organisations"))}
    for kind in remote:
        for marker in by_marker[kind]:
            _, _, mkind, mid = marker.split(":", 3)
            if mkind != kind or int(mid) not in ids[kind]:
                problems.append(f"Outreach holds {marker}, which names no Workbooks {kind}")

    col = sb.col
    if expected is None:
        expected = _expected_outcomes(sb, records, foreign, excluded, ignore)
    account_of: dict[int, int | None] = {}
    checked = 0
    for kind in ("organisation", "person"):
        for rec in records[kind]:
            rid = rec["id"]
            outcome = expected.get((kind, rid))
            if outcome is None:
                continue
            checked += 1
            label = f"{kind} {rid} ({rec.get('name')!r})"
            flags = {key: rec.get(col(kind, key)) for key in sb.columns[kind]}
            mine = by_marker[kind].get(f"workbooks:{db}:{kind}:{rid}", [])
            if outcome in ("flagged", "healthy-or-flagged"):
                if flags["sync_error"] or flags["duplicate"]:
                    if not flags["error_message"]:
                        problems.append(f"{label}: flagged without an Outreach Error Message")
                    continue
                if outcome == "flagged":
                    problems.append(f"{label}: expected a flag, flags are {_brief(flags)}")
                    continue
                outcome = "healthy"
            if outcome in ("error", "duplicate"):
                flag_key = "sync_error" if outcome == "error" else "duplicate"
                if not flags[flag_key]:
                    problems.append(f"{label}: expected Outreach {flag_key} = TRUE, flags are {_brief(flags)}")
                if not flags["error_message"]:
                    problems.append(f"{label}: flagged without an Outreach Error Message")
                # A record linked before it went wrong (an edit Outreach then refused) keeps its
                # twin; what must never happen is a twin the record does not point to.
                linked_twin = len(mine) == 1 and str(mine[0]["id"]) == str(flags["outreach_id"] or "")
                if mine and not linked_twin:
                    problems.append(f"{label}: flagged, yet Outreach holds records marked for it "
                                    f"{[m['id'] for m in mine]} (Outreach Id {flags['outreach_id']!r})")
                continue
            # healthy: linked once, written back, values in step
            if flags["sync_error"] or flags["duplicate"]:
                problems.append(f"{label}: a healthy record carries a flag: {_brief(flags)}")
                continue
            if len(mine) != 1:
                problems.append(f"{label}: {len(mine)} Outreach records carry its marker (expected 1)")
                continue
            target = mine[0]
            if str(flags["outreach_id"] or "") != str(target["id"]):
                problems.append(f"{label}: Outreach Id {flags['outreach_id']!r}, but its Outreach record is "
                                f"{target['id']}")
            if flags["outreach_url"] != f"{WEB_URL}/{web_path[kind]}/{target['id']}":
                problems.append(f"{label}: Outreach URL {flags['outreach_url']!r}")
            if not flags["last_synced"] or not flags["snapshot"]:
                problems.append(f"{label}: write-back incomplete (last synced {flags['last_synced']!r}, "
                                f"snapshot {'set' if flags['snapshot'] else 'missing'})")
            if flags["error_message"]:
                problems.append(f"{label}: a healthy record keeps the error message {flags['error_message']!r}")
            if kind == "organisation":
                account_of[rid] = target["id"]
            if check_values:
                problems += [f"{label}: {p}" for p in _value_problems(
                    kind, rec, target, account_of, records, expected, owners,
                    {k: col(k, "last_synced") for k in ("person", "organisation")})]
    return Audit(problems, checked)


def _expected_outcomes(sb, records, foreign, excluded, ignore) -> dict[tuple[str, int], str]:
    """(kind, id) → "healthy" | "error" | "duplicate" for every qualifying record. Records
    sharing a match key with each other form a group: exactly one of them may be healthy (which
    one depends on processing order), so the group is marked "group:<key>" and settled after."""
    col = sb.col
    out: dict[tuple[str, int], str] = {}
    foreign_emails = {e.lower() for p in foreign["person"] for e in p["attributes"].get("emails") or []}
    foreign_names = {a["attributes"].get("name") for a in foreign["organisation"]}
    groups: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for kind in ("organisation", "person"):
        for rec in records[kind]:
            key = (kind, rec["id"])
            if key in ignore or not rec.get(col(kind, "sync")):
                continue
            if kind == "organisation":
                name = mapped_text(rec.get("name"))
                if not name:
                    out[key] = "error"
                elif name in foreign_names:
                    out[key] = "duplicate"
                else:
                    groups[(kind, name.lower())].append(key)
                continue
            emails = mapped_emails(rec.get("main_location[email]"))
            if not emails and rec.get(col(kind, "outreach_id")):
                out[key] = "healthy"      # linked: Outreach knows it; only a new Prospect needs an email
            elif not emails or not all(_EMAIL.match(e) for e in emails):
                out[key] = "error"
            elif any(e.rsplit("@", 1)[1] in excluded for e in emails):
                out[key] = "error"
            elif any(e in foreign_emails for e in emails):
                out[key] = "duplicate"
            else:
                for email in emails:
                    groups[(kind, email)].append(key)
    # A record in several groups (several emails) is settled by its first email: the suites keep
    # multi-address records apart from others, so this stays simple.
    settled: set[tuple[str, int]] = set()
    for (kind, _), members in groups.items():
        members = [m for m in members if m not in settled]
        settled.update(members)
        if len(members) == 1:
            out[members[0]] = "healthy"
            continue
        healthy = [m for m in members if _is_healthy(sb, m)]
        winner = healthy[0] if len(healthy) == 1 else min(members)
        for m in members:
            out[m] = "healthy" if m == winner else "duplicate"
    return out


def _is_healthy(sb, key) -> bool:
    kind, rid = key
    rec = sb.get(kind, rid)
    return bool(rec.get(sb.col(kind, "outreach_id"))) and not rec.get(sb.col(kind, "duplicate")) \
        and not rec.get(sb.col(kind, "sync_error"))


def _synced_before(person: dict, org: dict, *, sb_columns) -> bool:
    """True when the person may have been last synced before its Employer was: its Last Synced
    is earlier, or the same second (one-second resolution cannot tell those apart)."""
    mine, theirs = person.get(sb_columns["person"]), org.get(sb_columns["organisation"])
    if not mine or not theirs:
        return bool(theirs)
    return parse_wb_datetime(mine) <= parse_wb_datetime(theirs)


def _value_problems(kind, rec, target, account_of, records, expected, owners, columns) -> list[str]:
    attrs = target["attributes"]
    rels = target.get("relationships") or {}
    problems = []

    def compare(attribute, want):
        if attrs.get(attribute) != want:
            problems.append(f"Outreach {attribute} is {attrs.get(attribute)!r}, Workbooks says {want!r}")

    if kind == "organisation":
        compare("name", mapped_text(rec.get("name")))
        if mapped_text(rec.get("industry")):          # skip_empty: an empty value leaves Outreach alone
            compare("industry", mapped_text(rec.get("industry")))
        return problems
    compare("firstName", mapped_text(rec.get("person_first_name")))
    compare("lastName", mapped_text(rec.get("person_last_name")))
    compare("title", mapped_text(rec.get("person_job_title")))
    compare("emails", mapped_emails(rec.get("main_location[email]")))
    account = (rels.get("account") or {}).get("data")
    account = account["id"] if account else None
    employer = rec.get("employer_link")
    synced_employer = bool(employer) and employer in account_of and \
        expected.get(("organisation", employer)) in ("healthy", "healthy-or-flagged")
    org = next((o for o in records["organisation"] if o["id"] == employer), {}) if employer else {}
    # The person was last synced before its Employer was: the Employer reached Outreach (or
    # was renamed while not synced) after it. Relation and `company` follow on the person's
    # next edit (the engine's documented rule; tests/test_sync_engine.py).
    later = bool(employer) and _synced_before(rec, org, sb_columns=columns)
    if (rec.get("employer_name") or "").strip() and (not employer or (synced_employer and not later)):
        compare("company", rec["employer_name"].strip())
    if not employer:
        if account is not None:
            problems.append(f"related to account {account}, but it has no Employer")
    elif synced_employer:
        want = account_of.get(employer)
        if account != want and not (account is None and later):
            problems.append(f"related to account {account}, its Employer's account is {want}")
    if owners is not None:
        owner = (rels.get("owner") or {}).get("data")
        owner = owner["id"] if owner else None
        want = owners.get(rec.get("assigned_to"))
        if owner != want:
            problems.append(f"owner is {owner}, Assigned To {rec.get('assigned_to')} means {want}")
    return problems


def _brief(flags: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in flags.items() if k in ("sync_error", "duplicate", "outreach_id",
                                                                       "error_message"))


# --- running ---------------------------------------------------------------------------------------------

def pending_in(summary: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) pending", summary))


def is_clean(result: Result) -> bool:
    return (result.code == 0 and "people:" in result.summary and pending_in(result.summary) == 0
            and "stopped early" not in result.summary) or result.summary.startswith("[notice] nothing to sync")


def run_until_clean(sb: Sandbox, *, limit: int = 6, **kw) -> list[Result]:
    """Rerun the runner (in-process) until a run ends cleanly: exit 0, nothing pending, not
    stopped early, or nothing to sync at all. Returns every run; the caller asserts on them."""
    runs = []
    for _ in range(limit):
        result = sb.run(**kw)
        runs.append(result)
        if is_clean(result):
            break
    return runs


def jump_ahead(sb: Sandbox, monkeypatch, seconds: float) -> None:
    """Move time forward for the lock's purposes: Workbooks' clock (which stamps the lock row)
    and the clock the plugin's StateStore reads (in-process runs only), together. A lock a
    killed or cut-off run left behind then looks as old as it would `seconds` later."""
    from plugin.state import StateStore
    defaults = dict(StateStore.__init__.__kwdefaults__)
    base = defaults["clock"]
    defaults["clock"] = lambda: base() + seconds
    monkeypatch.setattr(StateStore.__init__, "__kwdefaults__", defaults)
    sb.wb.clock.advance(seconds)


def expire_stale_lock(sb: Sandbox, offset: float) -> None:
    """Runs under test happen with Workbooks' clock `offset` seconds in the past (a negative
    `wb_clock_offset`); bringing it back to the present makes a lock a killed (or cut-off) run
    left behind look exactly as old as it would be after the lock's TTL had passed in real
    life. The plugin checks expiry against its own clock and against Workbooks' (StateStore),
    so the clock cannot simply be moved forward: the local clock would still say "live"."""
    sb.wb.clock.advance(-offset)


# --- a runner in its own process, killable at a chosen request ------------------------------------------

class Tripwire:
    """Stops one emulator at its `k`-th API request (1-based, counted from arming) until released,
    so a test can kill the client at that exact boundary. `after=True`: the request is processed
    first (the server did the work; the client never hears). `after=False`: the request is never
    processed (the client died before it arrived)."""

    def __init__(self, app, k: int, *, after: bool) -> None:
        self.app, self.k, self.after = app, k, after
        self.hit = threading.Event()
        self.release = threading.Event()
        self.seen = 0
        self._original = app.dispatch
        app.dispatch = self._dispatch

    def _dispatch(self, request):
        if self._next() != self.k:
            return self._original(request)
        if self.after:
            response = self._original(request)
            self.hit.set()
            self.release.wait(30)
            return response
        self.hit.set()
        self.release.wait(30)
        return self.app.error_response(500, "the client was gone before this request was processed")

    def _next(self) -> int:
        self.seen += 1
        return self.seen

    def disarm(self) -> None:
        self.release.set()
        self.app.dispatch = self._original


def before_request(app, method: str, path: str, action, *, times: int | None = 1) -> list[int]:
    """Call `action()` inside the emulator just before it processes a matching request (the
    first `times` of them; None: all): a user's edit landing between the plugin's read and its
    write. Runs under the emulator's lock, so the edit and the request cannot interleave any
    other way. Returns a one-item list counting the calls."""
    original = app.dispatch
    calls = [0]

    def dispatch(request):
        if request.method == method and re.search(path, request.path) and (times is None or calls[0] < times):
            calls[0] += 1
            action()
        return original(request)
    app.dispatch = dispatch
    return calls


@dataclass
class ProcessRun(PrintedLines):
    code: int | None          # None: killed
    stdout: str
    stderr: str
    killed: bool
    seconds: float


def spawn_runner(sb: Sandbox, *, env: dict | None = None, **params) -> subprocess.Popen:
    """The real scheduled script, `python scripts/outreach_send_receive.py --params FILE`, as
    Workbooks runs it."""
    sb._n += 1
    path = sb.tmp / f"params-{sb._n}.json"
    path.write_text(json.dumps(sb.params(**params)), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("WORKBOOKS_PARAMS") and k != "TIMEOUT"}
    environment.update(env or {})
    return subprocess.Popen([sys.executable, str(RUNNER), "--params", str(path)], cwd=sb.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def run_process(sb: Sandbox, *, kill_on: threading.Event | None = None, timeout: float = 60,
                env: dict | None = None, **params) -> ProcessRun:
    """Run the script to its end, or SIGKILL it as soon as `kill_on` is set."""
    start = time.monotonic()
    proc = spawn_runner(sb, env=env, **params)
    killed = False
    deadline = start + timeout
    while proc.poll() is None:
        if kill_on is not None and kill_on.wait(0.01):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"the runner outlived {timeout}s")
        if kill_on is None:
            time.sleep(0.01)
    out, err = proc.communicate()
    return ProcessRun(None if killed else proc.returncode, out, err, killed, time.monotonic() - start)
