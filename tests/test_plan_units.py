"""Pure planning pieces of the engine: snapshot diffs, account relation rules, owner matching,
watermarks (DESIGN.md §6)."""
import datetime as dt

from plugin.sync.send import plan
from plugin.owners import OwnerDirectory
from plugin.snapshot import Snapshot, value_hash
from plugin.sync.send import watermark
from plugin.sync.send.watermark import Watermark, WatermarkTracker, exclusion


def test_snapshot_diff_reports_only_changed_attributes():
    snap = Snapshot().with_sent({"firstName": "Ann", "title": "CTO", "emails": ["a@x.io"]})
    assert snap.changed_attributes({"firstName": "Ann", "title": "CEO", "emails": ["a@x.io"]}) == {"title": "CEO"}
    assert snap.changed_attributes({"firstName": "Ann"}) == {}


def test_snapshot_round_trips_and_tolerates_garbage():
    snap = Snapshot().with_sent({"a": 1}, account=5, owner=7, employer=9)
    again = Snapshot.parse(snap.dump())
    assert again == snap
    assert Snapshot.parse("not json") == Snapshot()
    assert Snapshot.parse('{"v": 99, "a": {}}') == Snapshot()
    assert len(Snapshot().with_sent({"bio": "x" * 10_000}).dump()) < 60


def test_snapshot_of_remote_hashes_what_outreach_holds():
    resource = {"id": 3, "attributes": {"firstName": "Ann", "title": None},
                "relationships": {"account": {"data": {"type": "account", "id": 4}}, "owner": {"data": None}}}
    snap = Snapshot.of_remote(resource, ["firstName", "title", "lastName"])
    assert snap.attributes == {"firstName": value_hash("Ann"), "title": value_hash(None)}
    assert (snap.account, snap.owner) == (4, None)


def test_plan_account_rules():
    snap = Snapshot(account=11, employer=5)
    assert plan.plan_account(5, {"qualifies": True, "outreach_id": 12}, snap) == 12
    assert plan.plan_account(6, {"qualifies": True, "outreach_id": None}, snap) is plan.PENDING
    # not qualifying any more, same employer: keep the relation made earlier
    assert plan.plan_account(5, {"qualifies": False, "outreach_id": 12}, snap) == 11
    # a different, non-qualifying employer: no relation
    assert plan.plan_account(6, {"qualifies": False, "outreach_id": None}, snap) is None
    assert plan.plan_account(None, None, Snapshot()) is None


def test_plan_update_includes_changed_relationships_only():
    snap = Snapshot().with_sent({"title": "CTO"}, account=1, owner=2)
    decision = plan.plan_update(snap, {"title": "CTO"}, 1, 3, parent_relationship="account")
    assert decision.attributes == {} and decision.relationships == {"owner": 3}
    assert plan.plan_update(snap, {"title": "CTO"}, 1, 2, parent_relationship="account").empty
    assert plan.relationships_payload({"owner": None, "account": 4}) == {
        "owner": {"data": None}, "account": {"data": {"type": "account", "id": 4}}}


def test_email_checks():
    assert plan.check_prospect_emails({"emails": ["a@b.co"]}) is None
    assert "no email" in plan.check_prospect_emails({"emails": []})
    assert "invalid email" in plan.check_prospect_emails({"emails": ["a b@c.co"]})
    assert "invalid email" in plan.check_prospect_emails({"emails": ["nobody"]})


def test_owner_directory_matches_username_then_email():
    queues = {1: {"queue_type": "user", "owner[login_name]": "ann@corp.com", "owner[person_name]": "Ann Lee"},
              2: {"queue_type": "user", "owner[login_name]": "Bob@Corp.com", "owner[person_name]": "Bob"},
              3: {"queue_type": "shared", "owner[login_name]": "x@corp.com"},
              4: {"queue_type": "user", "owner[login_name]": "eve@corp.com", "owner[person_name]": "Eve"}}
    users = [{"id": 10, "attributes": {"username": "ann@corp.com", "email": "other@corp.com"}},
             {"id": 20, "attributes": {"username": "robert", "email": "bob@corp.com"}},
             {"id": 30, "attributes": {"username": "eve", "email": "eve2@corp.com", "locked": False}}]
    owners = OwnerDirectory(queues, users)
    assert owners.owner_for(1) == 10          # username equals the Workbooks login
    assert owners.owner_for(2) == 20          # email, case-insensitive
    assert owners.owner_for(3) is None        # a shared queue has no single user
    assert owners.owner_for(4) is None        # no exact match: owner left empty
    assert owners.owner_for("junk") is None


def test_watermark_keeps_ids_done_at_the_second_and_holds_for_linked_work():
    start = Watermark(at="Wed Jan 01 12:00:00 UTC 2020", done={1: 3})
    assert start.covers(1, "Wed Jan 01 12:00:00 UTC 2020", 3)
    assert not start.covers(1, "Wed Jan 01 12:00:00 UTC 2020", 4)   # edited again in the same second
    tracker = WatermarkTracker(start)
    for rid, when in ((2, "Wed Jan 01 12:00:05 UTC 2020"), (3, "Wed Jan 01 12:00:07 UTC 2020")):
        tracker.read(when)
        tracker.handled(rid, when, 1)
    result = tracker.result()
    assert result.at == "Wed Jan 01 12:00:07 UTC 2020" and result.done == {3: 1}
    tracker.needs_work(4, "Wed Jan 01 12:00:05 UTC 2020", 1, linked=True)
    held = tracker.result()
    assert held.at == "Wed Jan 01 12:00:05 UTC 2020" and held.done == {2: 1}
    tracker.needs_work(5, "Wed Jan 01 12:00:01 UTC 2020", 1, linked=False)   # condition 4 re-selects it
    assert tracker.result().at == "Wed Jan 01 12:00:05 UTC 2020"
    assert Watermark.from_state(held.to_state()) == held
    assert tracker.met(4, "Wed Jan 01 12:00:05 UTC 2020", 1) and not tracker.met(4, "Wed Jan 01 12:00:05 UTC 2020", 2)


def _page(*rows: tuple[int, str]) -> list[dict]:
    return [{"id": rid, "updated_at": f"Wed Jan 01 12:00:{sec:02d} UTC 2020", "lock_version": 1} for rid, sec in rows]


def test_a_second_read_while_still_going_on_is_read_again_once_the_scan_moved_past_it():
    """Page ending in 12:00:05 read when Workbooks had stamped nothing later: a record with a
    lower id saved in that second afterwards would sit behind the cursor. Once the scan has moved
    on to 12:00:06, 12:00:05 must be read again whole; until it is, the watermark stays on it."""
    tracker = WatermarkTracker(Watermark(), dt.datetime(2020, 1, 1, 12, 0, 5, tzinfo=dt.timezone.utc))
    tracker.page(_page((1, 2), (7, 5)))               # 12:00:05 may still have been going on
    tracker.read("Wed Jan 01 12:00:05 UTC 2020")
    tracker.handled(7, "Wed Jan 01 12:00:06 UTC 2020", 2)     # our write-back, a second later
    assert tracker.passed_open() == []                # the cursor has not passed 12:00:05 yet
    tracker.page(_page((7, 5)))
    tracker.read("Wed Jan 01 12:00:05 UTC 2020")
    tracker.pass_handled(("Wed Jan 01 12:00:05 UTC 2020", 7))  # moves the cursor to 12:00:06
    assert tracker.result().at == "Wed Jan 01 12:00:05 UTC 2020"   # not past the open second
    assert tracker.passed_open() == ["Wed Jan 01 12:00:05 UTC 2020"]
    assert tracker.handled_at("Wed Jan 01 12:00:05 UTC 2020") == []   # 7's version is at 12:00:06
    tracker.read_again("Wed Jan 01 12:00:05 UTC 2020")
    assert tracker.passed_open() == []
    assert tracker.result().at == "Wed Jan 01 12:00:06 UTC 2020"


def test_a_second_already_over_when_read_is_not_read_again():
    tracker = WatermarkTracker(Watermark(), dt.datetime(2020, 1, 1, 12, 0, 9, tzinfo=dt.timezone.utc))
    tracker.page(_page((1, 2), (7, 5)))               # Workbooks had stamped 12:00:09 already
    tracker.read("Wed Jan 01 12:00:05 UTC 2020")
    tracker.page(_page((8, 6)))                       # also over
    tracker.read("Wed Jan 01 12:00:06 UTC 2020")
    tracker.page(_page((9, 9)))
    tracker.read("Wed Jan 01 12:00:09 UTC 2020")
    assert tracker.result().at == "Wed Jan 01 12:00:09 UTC 2020"
    tracker = WatermarkTracker(Watermark(), None)     # nothing known: every page may be open
    tracker.page(_page((1, 2)))
    tracker.read("Wed Jan 01 12:00:02 UTC 2020")
    tracker.page(_page((2, 3)))                       # the first page proved 12:00:02 was reached
    tracker.read("Wed Jan 01 12:00:03 UTC 2020")
    assert tracker.result().at == "Wed Jan 01 12:00:02 UTC 2020"
    assert tracker.passed_open() == ["Wed Jan 01 12:00:02 UTC 2020"]


# --- the snapshot in a 255-character `string` field (workbooks-api.md §6.2, R2.2) -------------------------

def _run(stored: str | None, mapped: dict, limit: int = 255) -> tuple[dict, str | None]:
    """One engine pass over a record: what would be PATCHed, and the snapshot written back
    (the stored one when nothing was sent)."""
    snap = Snapshot.parse(stored)
    changed = snap.changed_attributes(mapped)
    if not changed:
        return {}, stored
    text = snap.with_sent(changed).dump(limit)
    assert len(text) <= limit
    return changed, text


def _mapping(n: int, **overrides) -> dict:
    values = {f"custom{i}": f"value {i}" for i in range(1, n + 1)}
    values.update(overrides)
    return values


def test_snapshot_within_a_limit_stays_readable_when_it_fits():
    snap = Snapshot().with_sent({"firstName": "Ann"}, account=5)
    assert snap.dump(255) == snap.dump() and snap.dump(255).startswith("{")


def test_compact_snapshot_reports_exactly_the_changed_attributes():
    mapped = _mapping(20, emails=["ann@acme.example"], firstName="Ann")
    text = Snapshot().with_sent(mapped, account=12, owner=3, employer=7, assignee=9).dump(255)
    assert text.startswith("2") and len(text) <= 255
    parsed = Snapshot.parse(text)
    assert (parsed.account, parsed.owner, parsed.employer, parsed.assignee) == (12, 3, 7, 9)
    assert parsed.changed_attributes(mapped) == {}
    changed, text = _run(text, {**mapped, "firstName": "Anne"})
    assert changed == {"firstName": "Anne"}
    assert _run(text, {**mapped, "firstName": "Anne"}) == ({}, text)          # stable: no request
    changed, text = _run(text, {**mapped, "firstName": "Ann"})                 # back to the old value
    assert changed == {"firstName": "Ann"}
    assert Snapshot.parse(text).changed_attributes({**mapped, "firstName": "Ann"}) == {}


def test_compact_snapshot_narrows_its_tokens_to_fit():
    widths = []
    for n in (10, 20, 30, 40):
        text = Snapshot().with_sent(_mapping(n), account=123456, owner=654321).dump(255)
        assert len(text) <= 255
        widths.append(text[:2])
    assert widths[0] == "28" and widths[-1] in ("24", "25")
    assert _run(Snapshot().with_sent(_mapping(30)).dump(255), _mapping(30)) == ({}, Snapshot().with_sent(
        _mapping(30)).dump(255))


def test_digest_snapshot_resends_everything_on_any_change_and_is_then_stable():
    mapped = _mapping(80)                                       # 80 tokens cannot fit in 255
    text = Snapshot().with_sent(mapped, account=1).dump(255)
    assert text.startswith("3;1;;;;") and len(text) < 40
    assert _run(text, mapped) == ({}, text)
    changed, text = _run(text, {**mapped, "custom5": "new"})
    assert changed == {**mapped, "custom5": "new"}                              # one PATCH with all
    assert _run(text, {**mapped, "custom5": "new"}) == ({}, text)


def test_an_attribute_left_out_of_the_mapping_never_makes_runs_loop():
    # skip_empty: an attribute may be absent one run and back the next
    full = _mapping(80)
    text = Snapshot().with_sent(full).dump(255)
    without = {k: v for k, v in full.items() if k != "custom1"}
    changed, text = _run(text, without)             # the digest differs: everything once...
    assert changed == without
    assert _run(text, without) == ({}, text)        # ...then nothing, run after run
    small = _mapping(12)
    text = Snapshot().with_sent(small).dump(255)
    assert text.startswith("2")
    less = {k: v for k, v in small.items() if k != "custom1"}
    changed, text = _run(text, {**less, "custom2": "changed"})
    assert changed == {"custom2": "changed"}
    changed, text = _run(text, small)               # custom1 is back with its old value: sent once
    assert changed == {"custom1": "value 1", "custom2": "value 2"}
    assert _run(text, small) == ({}, text)


def test_a_json_snapshot_too_long_for_the_field_moves_to_the_compact_form():
    mapped = _mapping(12)
    stored = Snapshot().with_sent(mapped).dump()                # written when the field was text
    assert len(stored) > 255
    assert Snapshot.parse(stored).changed_attributes(mapped) == {}
    changed, text = _run(stored, {**mapped, "custom3": "x"})
    assert changed == {"custom3": "x"} and text.startswith("2")


def test_rows_outside_the_pick_up_flags_are_recognised():
    # workbooks-api.md §3.2/§11: Workbooks may drop a filter it cannot apply; the engine checks
    # the flags on each row it got (booleans read as JSON true/false, §3.4, or words, §4.1)
    cols = {"sync": "s", "sync_error": "e", "duplicate": "d"}
    assert plan.outside_pickup({"s": True, "e": False, "d": False}, cols) is None
    assert plan.outside_pickup({"s": "1", "e": "", "d": None}, cols) is None
    assert plan.outside_pickup({"s": None, "e": False, "d": False}, cols) == "Sync to Outreach is not ticked"
    assert plan.outside_pickup({"e": False, "d": False}, cols) == "Sync to Outreach is not ticked"
    assert plan.outside_pickup({"s": True, "e": "true", "d": False}, cols) == "Outreach Sync Error is ticked"
    assert plan.outside_pickup({"s": True, "e": False, "d": 1}, cols) == "Outreach Duplicate is ticked"

    class Log:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

    log = Log()
    guard = plan.PickupGuard(log)
    assert not guard.outside({"id": 1, "s": True, "e": False, "d": False}, cols, "people")
    assert guard.outside({"id": 2, "s": False}, cols, "people")
    assert guard.outside({"id": 3, "s": True, "d": True}, cols, "people")
    assert guard.skipped == 2 and len(log.lines) == 1 and "id 2" in log.lines[0]


def test_clip_marks_a_cut():
    assert plan.clip("short", 255) == "short"
    clipped = plan.clip("x" * 300, 255)
    assert len(clipped) == 255 and clipped.endswith("…")


def test_handled_versions_ahead_of_the_scan_in_scan_order_and_passing_them():
    tracker = WatermarkTracker(Watermark())
    tracker.handled(7, "Fri Nov 27 10:00:02 UTC 2026", 3)
    tracker.handled(5, "Fri Nov 27 10:00:02 UTC 2026", 1)
    tracker.handled(9, "Fri Nov 27 10:00:01 UTC 2026", 2)
    assert tracker.handled_beyond(None) == [(9, 2), (5, 1), (7, 3)]
    assert tracker.handled_beyond(("Fri Nov 27 10:00:02 UTC 2026", 5)) == [(7, 3)]
    tracker.read("Fri Nov 27 10:00:01 UTC 2026")
    tracker.pass_handled(("Fri Nov 27 10:00:01 UTC 2026", 9))
    result = tracker.result()
    assert result.at == "Fri Nov 27 10:00:02 UTC 2026" and result.done == {5: 1, 7: 3}
    tracker.pass_handled(("Fri Nov 27 10:00:03 UTC 2026", 1))     # nothing ahead: stays put
    assert tracker.result().at == "Fri Nov 27 10:00:02 UTC 2026"
    assert tracker.handled_beyond(None, limit=2) == [(9, 2), (5, 1)]
    assert tracker.result().at == "Fri Nov 27 10:00:02 UTC 2026"


def test_exclusion_leaves_out_exact_versions_grouped_by_lock_version_within_its_limits(monkeypatch):
    filters, fm = exclusion([(4, 1), (2, 1), (9, 3)], first=5)
    assert filters == [("id", "eq", "2,4"), ("lock_version", "eq", 1), ("id", "eq", "9"), ("lock_version", "eq", 3)]
    assert fm == "NOT ((5 AND 6) OR (7 AND 8))"
    assert exclusion([], first=1) == ([], "")
    monkeypatch.setattr(watermark, "EXCLUDE_IDS", 2)
    assert exclusion([(1, 0), (2, 0), (3, 0)], first=1)[0] == [("id", "eq", "1,2"), ("lock_version", "eq", 0)]
    monkeypatch.setattr(watermark, "EXCLUDE_IDS", 100)
    monkeypatch.setattr(watermark, "EXCLUDE_VERSIONS", 2)
    filters, fm = exclusion([(1, 0), (2, 1), (3, 0), (4, 2), (5, 0)], first=1)
    assert filters[0::2] == [("id", "eq", "1,3"), ("id", "eq", "2")]   # a prefix in scan order
    assert fm == "NOT ((1 AND 2) OR (3 AND 4))"
