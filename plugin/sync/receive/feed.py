"""One Outreach change feed read page by page from its cursor: the part every feed shares.

The lock-free probe (`has_work`) reads the first page and keeps it; once the lock is held and the
state read again, `run` uses that page when the cursor did not move meanwhile, so a run with work
costs no extra request for having looked first. An idle minute costs one request per feed.
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
        tracker = FeedTracker(cursor)
        first = self._first_page(cursor)
        return any(tracker.fresh(r) for r in first)

    def _first_page(self, cursor: FeedCursor) -> list[dict]:
        state = cursor.to_state()
        if self._probe is not None and self._probe[0] == state:
            return self._probe[1]
        first: list[dict] = []
        self._pages = None
        if self.ctx.outreach_stopped:
            return first
        try:
            with self.ctx.outreach_work():
                self._pages = self.ctx.outreach.changed_since(self.plural, cursor.since(), fields=self.fields)
                first = next(self._pages, [])
        except MissingScope as exc:
            self._missing(exc)
        self._probe = (state, first)
        return first

    def pages(self, cursor: FeedCursor) -> Iterator[list[dict]]:
        """The feed's pages from `cursor`, the probe's first page reused."""
        first = self._first_page(cursor)
        pages, self._probe = self._pages, None
        if first:
            yield first
        while pages is not None and not self.ctx.outreach_stopped and not self.ctx.time_is_up():
            page: list[dict] | None = None
            try:
                with self.ctx.outreach_work():
                    page = next(pages, None)
            except MissingScope as exc:
                self._missing(exc)
            if not page:
                return
            yield page

    def _missing(self, exc: MissingScope) -> None:
        if self.unavailable is None:
            self.ctx.log.warning(f"receiving {self.plural} is skipped: {exc}")
        self.unavailable = str(exc)

    def run(self) -> None:
        if not self.ready or self.ctx.outreach_stopped:
            return
        tracker = FeedTracker(self.cursor())
        try:
            for page in self.pages(tracker.start):
                for record in page:
                    if not tracker.fresh(record):
                        tracker.handled(record)     # applied already: still moves the cursor on
                self.apply([r for r in page if r.get("id") is not None and tracker.fresh(r)], tracker)
                if self.ctx.time_is_up():
                    break
        finally:
            if not self.ctx.dry_run and tracker.moved:
                new = tracker.result()
                if new.to_state() != tracker.start.to_state():
                    self.ctx.state.put(self.key, new.to_state())

    def apply(self, records: list[dict], tracker: FeedTracker) -> None:
        raise NotImplementedError
