"""StateStore (API Data) and the run lock, over HTTP against the Workbooks emulator."""
from __future__ import annotations

import json
import threading
import time

import pytest

from plugin.errors import TransientError
from plugin.state import StateStore

from .client_helpers import api_key_client, recorded, workbooks_http


def _rows(app, key):
    return [r for r in app.records("api_data") if r["key"] == key]


def test_values_round_trip_as_json(workbooks_server):
    app = workbooks_server.app
    store = StateStore(api_key_client(workbooks_server))
    assert store.get("watermark.people") is None and store.get("missing", default=7) == 7
    value = {"at": "Wed Jan 01 12:00:00 UTC 2020", "ids": [1, 2, 3], "name": "Zoë ✓", "big": "x" * 100_000}
    store.put("watermark.people", value)
    assert StateStore(api_key_client(workbooks_server)).get("watermark.people") == value
    (row,) = _rows(app, "outreach_sync.watermark.people")
    assert json.loads(row["value"]) == value
    store.put("watermark.people", {"at": None})
    assert StateStore(api_key_client(workbooks_server)).get("watermark.people") == {"at": None}
    assert len(_rows(app, "outreach_sync.watermark.people")) == 1          # updated, not re-created


def test_unchanged_values_cost_no_request(workbooks_server):
    http = workbooks_http()
    wire = recorded(http)
    store = StateStore(api_key_client(workbooks_server, http))
    store.put("install", {"version": "1"})
    sent = len(wire.sent)
    store.put("install", {"version": "1"})
    assert len(wire.sent) == sent


def test_a_concurrent_change_is_a_transient_conflict(workbooks_server):
    first = StateStore(api_key_client(workbooks_server))
    second = StateStore(api_key_client(workbooks_server))
    first.put("tokens", {"n": 1})
    assert second.get("tokens") == {"n": 1}
    first.put("tokens", {"n": 2})
    with pytest.raises(TransientError, match="changed by another run"):
        second.put("tokens", {"n": 3})
    second.put("tokens", {"n": 3})          # the conflict dropped the cache: a retry reads afresh
    assert first.get("tokens", fresh=True) == {"n": 3}


def test_delete_and_prefetch(workbooks_server):
    http = workbooks_http()
    wire = recorded(http)
    store = StateStore(api_key_client(workbooks_server, http))
    for key in ("a", "b", "c"):
        store.put(key, {"key": key})
    fresh = StateStore(store.workbooks)
    sent = len(wire.sent)
    fresh.prefetch(["a", "b", "missing"])
    assert len(wire.sent) == sent + 1
    assert fresh.get("a") == {"key": "a"} and fresh.get("b") == {"key": "b"} and fresh.get("missing") is None
    assert len(wire.sent) == sent + 1
    store.delete("a")
    assert StateStore(store.workbooks).get("a") is None


def test_dry_run_reads_but_never_writes(workbooks_server):
    app = workbooks_server.app
    StateStore(api_key_client(workbooks_server)).put("watermark.people", {"at": "old"})
    dry = StateStore(api_key_client(workbooks_server), dry_run=True)
    writes_before = app.count_of("PUT")
    assert dry.get("watermark.people") == {"at": "old"}
    dry.put("watermark.people", {"at": "new"})
    dry.put("lock", {"owner": "x"})
    dry.delete("install")
    assert dry.acquire_lock("dry", 60) is True
    dry.release_lock("dry")
    assert dry.get("watermark.people") == {"at": "new"}          # consistent within the run
    assert app.count_of("PUT") == writes_before
    assert json.loads(_rows(app, "outreach_sync.watermark.people")[0]["value"]) == {"at": "old"}


# --- the run lock ---------------------------------------------------------------------------------------

def test_lock_is_exclusive_and_released_only_by_its_owner(workbooks_server):
    a = StateStore(api_key_client(workbooks_server))
    b = StateStore(api_key_client(workbooks_server))
    assert a.acquire_lock("run-a", 300)
    assert not b.acquire_lock("run-b", 300)
    b.release_lock("run-b")                       # not b's: nothing happens
    assert not b.acquire_lock("run-b", 300)
    assert a.acquire_lock("run-a", 300)           # the owner may extend it
    assert b.lock_holder()["owner"] == "run-a"
    a.release_lock("run-a")
    assert b.lock_holder() is None
    assert b.acquire_lock("run-b", 300)


def _race(server, n: int, prepare=None) -> list[bool]:
    stores = [StateStore(api_key_client(server)) for _ in range(n)]
    if prepare:
        prepare(stores)
    barrier = threading.Barrier(n)
    results: list[bool] = [False] * n
    failures: list[BaseException] = []

    def run(i):
        try:
            barrier.wait()
            results[i] = stores[i].acquire_lock(f"runner-{i}", 300)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    return results


@pytest.mark.parametrize("attempt", range(3))
def test_two_runners_racing_for_a_new_lock_exactly_one_wins(workbooks_server, attempt):
    results = _race(workbooks_server, 2)
    assert results.count(True) == 1
    rows = _rows(workbooks_server.app, "outreach_sync.lock")
    assert len(rows) == 1                          # the loser removed its own row
    winner = results.index(True)
    assert json.loads(rows[0]["value"])["owner"] == f"runner-{winner}"


@pytest.mark.parametrize("attempt", range(3))
def test_runners_racing_for_a_free_lock_exactly_one_wins(workbooks_server, attempt):
    def prepare(stores):
        assert stores[0].acquire_lock("earlier", 300)
        stores[0].release_lock("earlier")
    results = _race(workbooks_server, 4, prepare)
    assert results.count(True) == 1


def test_create_race_leftovers_lowest_id_counts(workbooks_server):
    app = workbooks_server.app
    app.insert("api_data", {"key": "outreach_sync.lock", "value": json.dumps({"owner": None})})
    app.insert("api_data", {"key": "outreach_sync.lock", "value": json.dumps({"owner": "ghost", "ttl": 9999})})
    store = StateStore(api_key_client(workbooks_server))
    assert store.acquire_lock("me", 300)          # the lowest row was free
    rows = _rows(app, "outreach_sync.lock")
    assert len(rows) == 1 and json.loads(rows[0]["value"])["owner"] == "me"


def test_an_expired_lock_is_taken_over_by_workbooks_clock(workbooks_server):
    app = workbooks_server.app
    a = StateStore(api_key_client(workbooks_server))
    assert a.acquire_lock("crashed-run", 60)
    app.clock.advance(120)                        # Workbooks' time moves on; the runner died
    now = [time.time() + 120]                     # (and so does ours)
    b = StateStore(api_key_client(workbooks_server), clock=lambda: now[0])
    assert b.acquire_lock("next-run", 60)
    assert b.lock_holder()["owner"] == "next-run"


def test_a_fast_local_clock_cannot_steal_a_live_lock(workbooks_server):
    a = StateStore(api_key_client(workbooks_server))
    assert a.acquire_lock("live-run", 60)
    skewed = StateStore(api_key_client(workbooks_server), clock=lambda: time.time() + 3600)
    assert not skewed.acquire_lock("skewed-run", 60)   # Workbooks' clock says: not expired yet
    assert a.lock_holder()["owner"] == "live-run"


def test_lock_write_failure_is_transient(workbooks_server):
    app = workbooks_server.app
    store = StateStore(api_key_client(workbooks_server))
    app.add_fault(method="PUT", path="/automation/api_data.api", status=500)
    with pytest.raises(TransientError):
        store.acquire_lock("me", 60)


def test_a_failing_release_is_retried_while_the_deadline_allows_and_no_longer(workbooks_server):
    """A lock left behind blocks every run until its TTL, so the release is retried (with
    backoff) for as long as the run's deadline leaves room for a try, and then given up in time."""
    from plugin.deadline import Deadline
    app = workbooks_server.app
    http = workbooks_http()
    store = StateStore(api_key_client(workbooks_server, http))
    assert store.acquire_lock("run", 60)
    app.add_fault(method="PUT", path="/automation/api_data.api", status=502, count=2)
    store.release_lock("run")                                   # third try: freed
    assert store.lock_holder() is None
    assert store.acquire_lock("run", 60)
    http.deadline = Deadline(2.9)                               # a run stopped for time: < 3 s left
    app.add_fault(method="PUT", path="/automation/api_data.api", status=502, count=None)
    before, started = app.count_of("PUT", r"api_data"), time.monotonic()
    with pytest.raises(TransientError):
        store.release_lock("run")
    assert time.monotonic() - started < 2.9
    assert app.count_of("PUT", r"api_data") - before >= 3      # retried, not given up at once
    app.clear_faults()
    assert store.lock_holder()["owner"] == "run"
