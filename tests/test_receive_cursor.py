"""The receive feed's cursor (pure): overlap, records already applied, pending ones holding it,
settling, and the records named to be read again by id."""
from __future__ import annotations

from plugin.sync.receive.cursor import FeedCursor, FeedTracker


def rec(rid, when):
    return {"id": rid, "attributes": {"updatedAt": when}}


def test_the_next_read_starts_five_seconds_before_the_newest_change_applied():
    tracker = FeedTracker(FeedCursor())
    tracker.handled(rec(1, "2026-01-01T10:00:00.000Z"))
    tracker.handled(rec(2, "2026-01-01T10:00:09.500Z"))
    cursor = FeedCursor.from_state(tracker.result().to_state())
    assert cursor.at == "2026-01-01T10:00:09.500Z"
    assert cursor.since() == "2026-01-01T10:00:04.500Z"
    assert cursor.seen == {"2": "2026-01-01T10:00:09.500Z"}     # 1 is behind the overlap
    assert not FeedTracker(cursor).fresh(rec(2, "2026-01-01T10:00:09.500Z"))
    assert FeedTracker(cursor).fresh(rec(2, "2026-01-01T10:00:09.501Z"))


def test_a_pending_record_holds_the_cursor_at_its_own_time():
    tracker = FeedTracker(FeedCursor(at="2026-01-01T09:00:00.000Z"))
    tracker.pending(rec(1, "2026-01-01T10:00:00.000Z"))
    tracker.handled(rec(2, "2026-01-01T10:05:00.000Z"))
    tracker.settle()
    cursor = tracker.result()
    assert cursor.at == "2026-01-01T10:00:00.000Z" and "1" not in cursor.seen and not cursor.settled


def test_records_named_again_survive_until_applied_and_need_no_high_water_mark():
    cursor = FeedCursor.from_state({"again": [7, "12", "x", 3]})
    assert cursor.at is None and cursor.again == ["3", "7", "12"] and cursor.since() is None
    assert cursor.to_state() == {"again": ["3", "7", "12"]}
    tracker = FeedTracker(cursor)
    tracker.again = ["7"]                       # 3 and 12 applied by this run
    assert tracker.moved
    assert tracker.result().to_state() == {"again": ["7"]}
    kept = FeedTracker(FeedCursor(at="2026-01-01T10:00:00.000Z", again=["5"]))
    kept.handled(rec(9, "2026-01-01T10:01:00.000Z"))
    state = kept.result().to_state()
    assert state["again"] == ["5"] and state["at"] == "2026-01-01T10:01:00.000Z"
    assert FeedCursor.from_state({"at": "2026-01-01T10:00:00.000Z", "settled": True}).to_state() == \
        {"at": "2026-01-01T10:00:00.000Z", "seen": {}, "settled": True}


def test_a_runs_echoes_fit_the_send_watermark_in_their_compact_form_and_read_back_exactly():
    import json

    from plugin.sync.send.watermark import ECHO_CHARS, Watermark, decode_echoes, encode_echoes
    # 8,000 creates of one run (the hourly budget), ~30 ms apart, ids nearly consecutive
    echoes = {str(5_000_000 + 3 * n): f"2026-03-01T10:{n * 30 // 60_000:02d}:{n * 30 // 1000 % 60:02d}."
                                       f"{n * 30 % 1000:03d}Z" for n in range(8_000)}
    echoes["77"] = "2026-03-01T10:00:00Z"               # not Outreach's own form: kept as it is
    state = json.loads(json.dumps(Watermark(at="2026-03-01 10:00:00", echoes=echoes).to_state()))
    assert len(json.dumps(state)) < 50_000
    assert Watermark.from_state(state).echoes == echoes
    assert decode_echoes({"9": "2026-03-01T10:00:00.000Z"}) == {"9": "2026-03-01T10:00:00.000Z"}   # 0.2 before
    # far apart ids and times: the oldest give way, the text stays bounded
    scattered = {str(10 ** 9 - 7_919 * n): f"2026-0{1 + n % 9}-01T10:00:00.{n % 1000:03d}Z" for n in range(12_000)}
    encoded = encode_echoes(scattered)
    kept = decode_echoes(encoded)
    assert len(encoded["timed"]) <= ECHO_CHARS and 0 < len(kept) < len(scattered)
    assert all(scattered[k] == v for k, v in kept.items())
    newest = max(scattered.values())
    assert newest in kept.values()
