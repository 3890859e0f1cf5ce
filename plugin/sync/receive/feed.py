"""One Outreach change feed read page by page from its cursor: the part every feed shares.

The lock-free probe (`has_work`) reads the first page and keeps it (and the next ones while a
page holds only records already applied); once the lock is held and the state read again, `run`
uses those pages when the cursor did not move meanwhile, so a run with work costs no extra
request for having looked first. An idle minute costs one request per feed. Records the cursor
names to be read again (`FeedCursor.again`) are read by id after the pages, 50 a request.
"""
from __future__ import annotations

from typing import Iterator

from ...errors import MissingScope
from ...state import receive_key
from ..context import RunContext
from .cursor import FeedCursor, FeedTracker


class Feed:
    plural: str = ""                # the Outreach collection read
    fields: list[str] | None = None  # its sparse fieldset

    def __init__(self, ctx: RunContext, key_feed: str) -> None:
        self.ctx = ctx
        self.key = receive_key(key_feed)
        self._probe: tuple[dict | None, list[dict]] | None = None    # (cursor state, first page)
        self._pages: Iterator[list[dict]] | None = None
        self.unavailable: str | None = None      # why this feed cannot be read (a missing scope)

    @property
    def ready(self) -> bool:
        """Whether the installation holds what this feed writes (subclasses say)."""
        return True

    def cursor(self) -> FeedCursor:
        return FeedCursor.from_state(self.ctx.state.get(self.key))

    def has_work(self) -> bool:
        if not self.ready:
            return False
        cursor = self.cursor()
        if cursor.again and not self.ctx.outreach_stopped:
            return True
        tracker = FeedTracker(cursor)
        pages = self._probe_pages(cursor)
        while True:
            if any(tracker.fresh(r) for r in pages[-1]):
                return True
            if self._read_more() is None:
                break
        # Nothing new. More than a page of it (a burst of changes inside the cursor's overlap):
        # a run settles the cursor past them, or every idle minute would read them all again.
        return len(pages) > 1 and not cursor.settled

    def _probe_pages(self, cursor: FeedCursor) -> list[list[dict]]:
        """The pages read so far from `cursor` (the first one at least), kept for the run."""
        state = cursor.to_state()
        if self._probe is not None and self._probe[0] == state:
            return self._probe[1]
        self._pages = None
        self._probe = (state, [[]])
        if self.ctx.outreach_stopped:
            return self._probe[1]
        try:
            with self.ctx.outreach_work():
                self._pages = self.ctx.outreach.changed_since(self.plural, cursor.since(), fields=self.fields)
                self._probe[1][0] = next(self._pages, [])
        except MissingScope as exc:
            self._missing(exc)
            self._pages = None
        return self._probe[1]

    def _read_more(self) -> list[dict] | None:
        """The next page of the probed read (kept with the others); None at its end."""
        page: list[dict] | None = None
        if self._pages is None or self._probe is None or self.ctx.outreach_stopped or self.ctx.time_is_up():
            return None
        try:
            with self.ctx.outreach_work():
                page = next(self._pages, None)
        except MissingScope as exc:
            self._missing(exc)
        if not page:
            self._pages = None
            return None
        self._probe[1].append(page)
        return page

    def pages(self, cursor: FeedCursor) -> Iterator[list[dict]]:
        """The feed's pages from `cursor`, those the probe read first."""
        probed = self._probe_pages(cursor)
        n = 0
        while True:
            if n < len(probed):
                page: list[dict] | None = probed[n]
            else:
                page = self._read_more()
            n += 1
            if not page:
                break
            yield page
        self._probe = self._pages = None

    def _missing(self, exc: MissingScope) -> None:
        if self.unavailable is None:
            self.ctx.log.warning(f"receiving {self.plural} is skipped: {exc}")
        self.unavailable = str(exc)

    def run(self) -> None:
        if not self.ready or self.ctx.outreach_stopped:
            return
        tracker = FeedTracker(self.cursor())
        anything_new, whole, read = False, True, 0
        try:
            for page in self.pages(tracker.start):
                read += 1
                for record in page:
                    if not tracker.fresh(record):
                        tracker.handled(record)     # applied already: still moves the cursor on
                fresh = self.skip_own([r for r in page if r.get("id") is not None and tracker.fresh(r)], tracker)
                anything_new = anything_new or bool(fresh)
                self.apply(fresh, tracker)
                if self.ctx.time_is_up():
                    whole = False
                    break
            # Nothing new but our own echoes (written by an earlier run, so long committed):
            # settled, unless a single page, which costs nothing to read again (no state write).
            if whole and read > 1 and not anything_new and not self.ctx.outreach_stopped \
                    and self.unavailable is None:
                tracker.settle()
            if whole and tracker.again and not self.ctx.outreach_stopped and self.unavailable is None:
                self._read_again(tracker)
        finally:
            if not self.ctx.dry_run and tracker.moved:
                new = tracker.result()
                if new.to_state() != tracker.start.to_state():
                    self.ctx.state.put(self.key, new.to_state())

    def _read_again(self, tracker: FeedTracker) -> None:
        """The records the cursor names by id, applied as if they had just changed; those not
        applied yet stay named (one that no longer exists is dropped)."""
        ids, records = list(tracker.again), None
        with self.ctx.outreach_work():
            records = self.ctx.outreach.find_by_ids(self.plural, ids, fields=self.fields)
        if records is None:                     # the read was cut short (budget, fault): kept for later
            return
        scratch = FeedTracker(FeedCursor())    # their times say nothing about the feed's cursor
        self.apply_again(records, scratch)
        tracker.again = [rid for rid in ids if not scratch.applied(rid)]

    def apply_again(self, records: list[dict], tracker: FeedTracker) -> None:
        self.apply(records, tracker)

    def skip_own(self, records: list[dict], tracker: FeedTracker) -> list[dict]:
        """Records that are only our own writes are passed (handled) here; the rest returned."""
        return records

    def apply(self, records: list[dict], tracker: FeedTracker) -> None:
        raise NotImplementedError
