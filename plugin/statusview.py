"""The status page's HTML, from plugin.status.Facts: health at a glance, backlog and budget, the
last 24 hours (plugin.chart), and the records that need a person with their Retry forms. Pure:
facts and a FormGuard in, markup out. Everything shown that comes from outside — names, error
messages, Outreach's texts, the mapping's problems — goes through plugin.webpage.escape, and
links only ever carry http(s) addresses plugin.status built."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from . import chart
from .status import (PAGE_SIZE, Facts, Flagged, budget_now, clear_estimate, message_digest, records_words,
                     requests_per_record)
from .webpage import escape
from .websession import FormGuard

#: No recorded run for this long while records wait (and the hour's budget is not spent): say so.
STALLED_SECONDS = 15 * 60
STYLE = ("<style>body{max-width:72em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.ok{color:#060}"
         "table.records td,table.records th{padding:.25em .6em;border-bottom:1px solid #eee;vertical-align:top}"
         "ul.health li{margin:.3em 0}.message{white-space:pre-wrap}.muted{color:#666}td.who{min-width:11em}"
         "td.when{white-space:nowrap}"
         ".chart{max-width:100%;height:auto}</style>")


@dataclass(frozen=True)
class Sentence:
    level: str          # "problem" (a person must act), "notice", "ok"
    text: str


def when(epoch: float | None, *, seconds: bool = False) -> str:
    if epoch is None:
        return "unknown"
    pattern = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime(pattern)


def duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


# --- health -------------------------------------------------------------------------------------

def health(facts: Facts) -> list[Sentence]:
    """What the administrator must know, worst first; "Nothing needs a person" when all is well."""
    found: list[Sentence] = []
    problem = lambda text: found.append(Sentence("problem", text))        # noqa: E731
    notice = lambda text: found.append(Sentence("notice", text))          # noqa: E731
    history, now = facts.history, facts.now
    if not facts.installed:
        problem("The plugin is not installed in this database: run the installer "
                "(scripts/outreach_install.py).")
        return found
    if facts.connection_problem:
        problem(facts.connection_problem)
    if facts.mapping_problem:
        problem(f"The mapping is invalid: {facts.mapping_problem}. Nothing syncs until {facts.mapping} is "
                "corrected (each run stops before writing anything).")
    process = facts.process or {}
    title = process.get("title") or "Outreach Send/Receive"
    if process.get("missing"):
        problem(f"The scheduled process '{title}' is missing in Workbooks: run the installer again.")
    elif process.get("enabled") in (False, 0, "0", "false"):
        problem(f"The scheduled process '{title}' is switched off in Workbooks (Workbooks switches it off "
                "when a run ends with exit code 2): nothing syncs until it is switched on again.")
    streak = history.failing_streak()
    last = history.last
    if streak and streak[0].exit == 2:
        problem(f"The last run stopped because a person must act: {last.get('failure') or last.get('summary')}.")
    elif streak:
        since = when(streak[-1].at)
        reason = last.get("failure") or last.get("summary") or "no reason recorded"
        runs = "the last run" if len(streak) == 1 else f"the last {len(streak)} runs"
        if streak[0].failure == "outreach":
            problem(f"Outreach was not reachable for {runs} (since {since}): {reason}. "
                    "Each run tries again; nothing is lost meanwhile.")
        elif streak[0].failure == "workbooks":
            problem(f"Workbooks failed {runs} (since {since}): {reason}. Each run tries again.")
        else:
            problem(f"{runs.capitalize()} failed (since {since}): {reason}. Each run tries again.")
    used, window_end = budget_now(history, now)
    spent = window_end is not None and used >= facts.hourly_budget
    latest = history.runs[-1] if history.runs else None
    if facts.lock:
        started = facts.lock.get("acquired_at")
        notice(f"A run is in progress{f' (started {started})' if started else ''}.")
    elif facts.pending and not spent and not facts.connection_problem and not facts.mapping_problem \
            and (latest is None or now - latest.at > STALLED_SECONDS):
        since = f"since {when(latest.at)}" if latest else "yet"
        problem(f"{records_words(facts.pending)} {'is' if facts.pending == 1 else 'are'} waiting, but no run has "
                f"worked on them {since}: check in Workbooks (Configuration > Automation) that '{title}' is "
                "switched on and runs every minute.")
    if facts.flagged:
        problem(f"{records_words(facts.flagged)} need{'s' if facts.flagged == 1 else ''} a person: see "
                "Records that need a person below.")
    if spent:
        notice(f"The hourly Outreach budget is spent ({used:,} of {facts.hourly_budget:,} requests): "
               f"the sync carries on at {when(window_end)}.")
    for what in facts.unread:
        notice(f"Could not read {what}; reload the page to try again.")
    if not any(s.level == "problem" for s in found):
        found.insert(0, Sentence("ok", "Nothing needs a person."))
    if latest and not facts.lock and not facts.pending and not streak:
        found.append(Sentence("ok", f"Idle since {when(latest.at)}: the last run that found work; runs since "
                                    "then found nothing to do."))
    if process.get("last_run_at"):
        found.append(Sentence("ok", f"Workbooks last started '{title}' at {when(process['last_run_at'])}."))
    return found


# --- the page ---------------------------------------------------------------------------------------

def render(facts: Facts, guard: FormGuard) -> str:
    parts = [STYLE, _health_section(facts)]
    if facts.installed:
        parts += [_backlog_section(facts), _chart_section(facts), _records_section(facts, guard)]
    return "".join(parts)


def _health_section(facts: Facts) -> str:
    items = "".join(f'<li class="{s.level}">{escape(s.text)}</li>' for s in health(facts))
    history, now = facts.history, facts.now
    rows = []
    last = history.last
    if history.runs:
        latest = history.runs[-1]
        outcome = ("finished" if latest.exit == 0 and not latest.stopped else
                   "stopped early; the next run carries on" if latest.exit == 0 else
                   "failed: the next run tries again" if latest.exit == 1 else
                   "stopped: a person must act")
        recent = history.within(now)
        rows += [("Last run", f"{when(latest.at, seconds=True)}, {outcome}"),
                 ("Its summary", str(last.get("summary") or "")),
                 ("Runs in the last 24 hours", f"{len(recent)} recorded, {sum(r.failed for r in recent)} failed")]
    else:
        rows.append(("Last run", "no run has recorded work yet"))
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<h2>Health</h2><ul class="health">{items}</ul><table>{table}</table>'


def _backlog_section(facts: Facts) -> str:
    def cell(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"
    rows = "".join(f"<tr><th>{escape(k.kind.words)}</th><td>{cell(k.pending)}</td><td>{cell(k.errors)}</td>"
                   f"<td>{cell(k.duplicates)}</td></tr>" for k in facts.kinds)
    used, window_end = budget_now(facts.history, facts.now)
    budget = (f"Outreach requests this hour: {used:,} of {facts.hourly_budget:,}"
              + (f" (the hour ends {when(window_end)})" if window_end else ""))
    per_record = requests_per_record(facts.history, facts.now)
    eta = clear_estimate(facts.pending, per_record, facts.hourly_budget, used, window_end, facts.now)
    if not facts.pending:
        clear = "Nothing is waiting to be sent."
    elif eta is None:
        clear = "The hourly budget is 0: nothing can be sent."
    else:
        clear = (f"At {facts.hourly_budget:,} requests an hour (about {per_record:.2f} per record) the "
                 f"{records_words(facts.pending)} waiting are sent in about {duration(eta)}.")
    return ("<h2>Backlog and budget</h2><table><tr><th></th><th>Waiting to sync</th><th>Sync Error</th>"
            f"<th>Duplicate</th></tr>{rows}</table><p>{escape(budget)}</p><p>{escape(clear)}</p>")


def _chart_section(facts: Facts) -> str:
    return f"<h2>The last 24 hours</h2>{chart.svg(facts.history.runs, facts.now)}"


def _records_section(facts: Facts, guard: FormGuard) -> str:
    head = f"<h2>Records that need a person ({facts.flagged:,})</h2>"
    if not facts.records:
        return head + '<p class="ok">None: no record has Outreach Sync Error or Outreach Duplicate ticked.</p>'
    intro = ("<p>Fix what the message says in Workbooks (or in Outreach, for a duplicate), then press "
             "Retry: the flag is unticked and the next run tries the record again.</p>")
    groups = _groups(facts.records, guard)
    rows = "".join(_record_row(r, guard) for r in facts.records)
    table = ('<table class="records"><tr><th>Record</th><th>Problem</th><th>Error Message</th>'
             f"<th>When</th><th></th></tr>{rows}</table>")
    return head + intro + groups + table + _pager(facts)


def _groups(records: Iterable[Flagged], guard: FormGuard) -> str:
    seen: dict[tuple[str, str], int] = {}
    for record in records:
        seen[(record.kind.name, record.group)] = seen.get((record.kind.name, record.group), 0) + 1
    kinds = {r.kind.name: r.kind for r in records}
    items = "".join(
        f"<li>{escape(kinds[kind].words)}: <q>{escape(group)}</q> ({n} on this page) "
        + guard.form("retry_all", f"Retry all {kinds[kind].words} with this error",
                     fields={"kind": kind, "group": group}) + "</li>"
        for (kind, group), n in seen.items())
    return f"<p>Kinds of error on this page:</p><ul>{items}</ul>"


def _record_row(record: Flagged, guard: FormGuard) -> str:
    name = escape(record.name)
    link = f'<a href="{escape(record.workbooks_url)}">{name}</a>' if record.workbooks_url else name
    problems = " and ".join({"sync_error": "Sync Error", "duplicate": "Duplicate"}[f] for f in record.flags)
    message = f'<span class="message">{escape(record.message)}</span>'
    if record.outreach_url:
        message += f'<br><a href="{escape(record.outreach_url)}">The Outreach record that holds it</a>'
    elif "duplicate" in record.flags:
        message += '<br><span class="muted">The message names no Outreach record: search Outreach for it.</span>'
    retry = guard.form("retry", "Retry", fields={"kind": record.kind.name, "id": str(record.id),
                                                  "lock_version": str(record.lock_version),
                                                  "message": message_digest(record.message)})
    return (f'<tr class="record" data-kind="{escape(record.kind.name)}" data-id="{record.id}">'
            f"<td class=\"who\">{link}<br><span class=\"muted\">{escape(record.kind.words)}, {escape(record.ref)}"
            f"</span></td><td>{escape(problems)}</td><td>{message}</td>"
            f"<td class=\"when\">{escape(when(record.updated_at))}</td>"
            f"<td>{retry}</td></tr>")


def _pager(facts: Facts) -> str:
    if facts.pages <= 1:
        return ""
    links = []
    if facts.page > 1:
        links.append(f'<a href="?page={facts.page - 1}">Newer</a>')
    links.append(f"page {facts.page} of {facts.pages} ({PAGE_SIZE} a page)")
    if facts.page < facts.pages:
        links.append(f'<a href="?page={facts.page + 1}">Older</a>')
    return f"<p>{' · '.join(links)}</p>"
