"""Pure planning pieces of the engine: snapshot diffs, account relation rules, owner matching,
watermarks (DESIGN.md §6)."""
from plugin import plan
from plugin.owners import OwnerDirectory
from plugin.snapshot import Snapshot, value_hash
from plugin.watermark import Watermark, WatermarkTracker


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
    decision = plan.plan_update(snap, {"title": "CTO"}, 1, 3, relate_account=True)
    assert decision.attributes == {} and decision.relationships == {"owner": 3}
    assert plan.plan_update(snap, {"title": "CTO"}, 1, 2, relate_account=True).empty
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
    tracker.needs_work("Wed Jan 01 12:00:05 UTC 2020", linked=True)
    held = tracker.result()
    assert held.at == "Wed Jan 01 12:00:05 UTC 2020" and held.done == {2: 1}
    tracker.needs_work("Wed Jan 01 12:00:01 UTC 2020", linked=False)   # condition 4 re-selects it
    assert tracker.result().at == "Wed Jan 01 12:00:05 UTC 2020"
    assert Watermark.from_state(held.to_state()) == held
