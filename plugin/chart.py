"""The status page's picture of the last 24 hours: an inline SVG the page draws itself (no script,
no library). The day is cut into 96 slots of 15 minutes (a run a minute would otherwise be
1,440 bars on 700 pixels); each slot's stacked bar adds up the recorded runs in it: records
created, updated and failed (Sync Error or Duplicate; the receive side's errors too), and
received once the receive side reports counts. A red mark under the axis marks a slot with a failed run. Each bar carries a
`<title>` naming its runs, which browsers show on hover. Pure: runs in, markup out; every text it
writes goes through plugin.webpage.escape."""
from __future__ import annotations

import time
from typing import Sequence

from .history import WINDOW_SECONDS, Run
from .webpage import escape

WIDTH, HEIGHT = 720, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 30, 36          # margins around the plot area
SLOT_SECONDS = 15 * 60
SLOTS = WINDOW_SECONDS // SLOT_SECONDS
SERIES = (("created", "created", "#2e7d32"), ("updated", "updated", "#1565c0"),
          ("failed", "failed (Sync Error or Duplicate)", "#c62828"), ("received", "received", "#6a1b9a"))


def _values(run: Run) -> dict[str, int]:
    return {"created": run.total("created"), "updated": run.total("updated"), "failed": run.flagged,
            "received": run.records_received}


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^n at or above `value` (an axis that reads well)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def clock_text(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch))


def slots(runs: Sequence[Run], now: float) -> dict[int, list[Run]]:
    """Slot number (0 = the oldest quarter hour, SLOTS - 1 the one ending now) → its runs."""
    start = now - WINDOW_SECONDS
    found: dict[int, list[Run]] = {}
    for run in runs:
        if start < run.at <= now + 60:
            found.setdefault(min(SLOTS - 1, int((run.at - start) // SLOT_SECONDS)), []).append(run)
    return found


def svg(runs: Sequence[Run], now: float) -> str:
    start = now - WINDOW_SECONDS
    by_slot = slots(runs, now)
    shown = [r for slot in by_slot.values() for r in slot]
    series = [s for s in SERIES if s[0] != "received" or any(r.records_received for r in shown)]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    sums = {n: {name: sum(_values(r)[name] for r in slot) for name, _, _ in series} for n, slot in by_slot.items()}
    top = nice_ceiling(max([sum(v.values()) for v in sums.values()] + [1]))
    bar = plot_w / SLOTS
    totals = {name: sum(_values(r)[name] for r in shown) for name, _, _ in series}
    label = (f"Runs in the last 24 hours: {len(shown)}; "
             + ", ".join(f"{totals[name]} {words}" for name, words, _ in series)
             + f"; {sum(r.failed for r in shown)} runs failed")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    x_legend = LEFT
    for name, words, colour in series:
        out.append(f'<rect x="{x_legend}" y="8" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x_legend + 14}" y="17" font-size="11">{escape(words)}</text>')
        x_legend += 24 + 6 * len(words)
    out.append(f'<text x="{LEFT - 6}" y="{TOP + 4}" font-size="10" text-anchor="end">{top}</text>'
               f'<text x="{LEFT - 6}" y="{TOP + plot_h}" font-size="10" text-anchor="end">0</text>')
    for hours in range(0, 25, 6):
        x = LEFT + plot_w * hours / 24
        words = "now" if hours == 24 else clock_text(start + hours * 3600)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 4}" stroke="#888"/>'
                   f'<text x="{x:.1f}" y="{TOP + plot_h + 26}" font-size="10" text-anchor="middle">{words}</text>')
    for number in sorted(by_slot):
        slot, values = by_slot[number], sums[number]
        x = LEFT + number * bar
        failed = sum(r.failed for r in slot)
        tip = (f"{clock_text(start + number * SLOT_SECONDS)}–{clock_text(start + (number + 1) * SLOT_SECONDS)} "
               f"UTC, {len(slot)} run{'s' if len(slot) != 1 else ''}: "
               + ", ".join(f"{values[name]} {name}" for name, _, _ in series)
               + (f" ({failed} run{'s' if failed != 1 else ''} failed)" if failed else ""))
        out.append(f'<g class="slot" data-runs="{len(slot)}"><title>{escape(tip)}</title>'
                   f'<rect x="{x:.1f}" y="{TOP}" width="{bar:.1f}" height="{plot_h}" fill="transparent"/>')
        y = TOP + plot_h
        for name, _, colour in series:
            height = plot_h * values[name] / top
            if height > 0:
                y -= height
                out.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{height:.1f}" '
                           f'fill="{colour}"/>')
        if failed:
            out.append(f'<path d="M{x + bar / 2:.1f} {TOP + plot_h + 6} l-4 7 h8 z" fill="#c62828"/>')
        out.append("</g>")
    if not shown:
        out.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" font-size="13" text-anchor="middle" '
                   'fill="#666">No run has recorded work in the last 24 hours</text>')
    out.append("</svg>")
    return "".join(out)
