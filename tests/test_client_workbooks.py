"""WorkbooksClient over real HTTP against the Workbooks emulator."""
from __future__ import annotations

import datetime as dt

import pytest

from plugin.errors import BadCredentials, RateLimited, TransientError, WorkbooksError
from plugin.fields import resolve_columns
from plugin.errors import NotInstalled
from plugin.workbooks import WorkbooksClient, format_datetime, parse_datetime

from .client_helpers import Sleeps, api_key_client, engine_params, recorded, workbooks_http

PEOPLE = "crm/people"


def _people(app, n, **extra):
    return [app.insert("people", {"name": f"Person {i:03d}", "main_location[email]": f"p{i}@example.com", **extra})
            for i in range(n)]


# --- connecting -------------------------------------------------------------------------------------

def test_api_key_mode_learns_the_database_and_sends_the_key_every_time(workbooks_server):
    http = workbooks_http()
    wire = recorded(http)
    wb = api_key_client(workbooks_server, http)
    assert wb.database == workbooks_server.app.database
    wb.get(PEOPLE)
    wb.batch(PEOPLE, [{"__method": "POST", "name": "Ann Example"}])
    for index in range(len(wire.sent)):
        params = wire.params(index)
        assert params["client"] == ["api"] and params["api_version"] == ["1"]
        assert params["api_key"] == [wb.api_key]
        # issue 16 §2: the URL holds the cache buster and the time limit, nothing else; the key
        # travels in the body, on reads too (workbooks-api.md §1.2, §1.3)
        assert sorted(dict(wire.sent[index].query)) == ["_dc", "_max_request_duration"]
        assert ("api_key", wb.api_key) in wire.sent[index].form
        assert "Cookie" not in wire.sent[index].headers      # never drifts into session mode
    read = wire.params(1)
    assert read["__skip_total_rows"] == ["true"] and read["_start"] == ["0"] and read["_limit"] == ["100"]
    assert wire.sent[1].method == "GET"                      # a read is still a GET, with a body
    write = wire.params(2)
    assert write["_method"] == ["PUT"] and write["_per_object_transactions"] == ["true"]


def test_engine_mode_reconnects_and_uses_the_new_session(workbooks_server):
    app = workbooks_server.app
    params = engine_params(workbooks_server)
    http = workbooks_http()
    wire = recorded(http)
    wb = WorkbooksClient.connect(params, http)
    assert wb.session_mode and wb.session_id != params["_workbooks_session_id"]
    assert wb.authenticity_token and wb.database["id"] == app.database["id"]
    wb.get(PEOPLE)
    (created,) = wb.batch(PEOPLE, [{"__method": "POST", "name": "Made In Engine"}])
    assert created.ok and app.record("people", created.id)["created_through"] == "Outreach Sync"
    login, read, write = (wire.params(i) for i in range(3))
    assert login["username"] == [params["_workbooks_username"]]
    assert login["session_id"] == [params["_workbooks_session_id"]]
    assert login["logical_database_id"] == [str(params["_workbooks_logical_database_id"])]
    assert [p["api_logging_seq"] for p in (login, read, write)] == [["1"], ["2"], ["3"]]
    assert all(p["api_logging_key"] == ["run-log-key"] for p in (login, read, write))
    assert "_authenticity_token" not in read and write["_authenticity_token"] == [wb.authenticity_token]
    assert f"Workbooks-Session={wb.session_id}" in wire.sent[2].headers["Cookie"]
    # the engine's original session id is dead now: reconnecting with it again is refused
    with pytest.raises(TransientError):
        WorkbooksClient.connect(params, workbooks_http())


def test_logout_ends_the_session(workbooks_server):
    wb = WorkbooksClient.connect(engine_params(workbooks_server), workbooks_http())
    wb.logout()
    wb._logged_in = True   # pretend we did not notice: the next read must fail, not return HTML
    # the read is sent to the login page (§2.3); reconnecting with the ended session is refused
    with pytest.raises(TransientError, match="login page .*reconnecting failed.*no_session_found"):
        wb.get(PEOPLE)


@pytest.mark.parametrize("status, reason, expected", [
    (401, "unrecognised_name_or_password", BadCredentials),
    (403, "no_permission_for_api", BadCredentials),
    (403, "database_archived", BadCredentials),
    (401, "session_expired", TransientError),
    (401, "no_session", TransientError),
    (403, "database_being_migrated", TransientError),
    (401, "some_reason_added_later", TransientError),
])
def test_login_failures_are_classified(workbooks_server, status, reason, expected):
    workbooks_server.app.add_fault(path="/login.api", status=status,
                                   body={"success": False, "failure_reason": reason, "failure_message": "no"})
    with pytest.raises(expected) as caught:
        WorkbooksClient.connect(engine_params(workbooks_server), workbooks_http())
    assert caught.value.exit_code == (2 if expected is BadCredentials else 1)


def test_a_wrong_api_key_is_bad_credentials_and_never_printed(workbooks_server):
    key = "11111-22222-33333-44444-55555-66666-77777-88888"
    with pytest.raises(BadCredentials) as caught:
        WorkbooksClient.connect({"_workbooks_service": workbooks_server.url, "workbooks_api_key": key},
                                workbooks_http())
    assert caught.value.exit_code == 2 and key not in str(caught.value)
    assert "not recognised" in str(caught.value)


def test_missing_connection_parameters():
    with pytest.raises(BadCredentials, match="_workbooks_service"):
        WorkbooksClient.connect({"workbooks_api_key": "x"}, workbooks_http())
    with pytest.raises(BadCredentials, match="credentials"):
        WorkbooksClient.connect({"_workbooks_service": "http://127.0.0.1:9"}, workbooks_http())


def test_login_timeouts_are_transient(workbooks_server):
    workbooks_server.app.add_fault(path="/login.api", latency=2.0)
    http = workbooks_http(timeout=(1, 0.5))
    with pytest.raises(TransientError, match="timed out"):
        WorkbooksClient.connect(engine_params(workbooks_server), http)


# --- reading ------------------------------------------------------------------------------------------

def test_get_with_filters_columns_and_sorting(workbooks_server):
    app = workbooks_server.app
    _people(app, 5)
    app.insert("people", {"name": "Acme, Inc. Contact", "main_location[email]": "acme@example.com"})
    wb = api_key_client(workbooks_server)
    rows = wb.get(PEOPLE, filters=[("name", "bg", "Person"), ("main_location[email]", "ne", "p1@example.com")],
                  columns=["id", "name", "main_location[email]"], sort="name", direction="DESC")
    assert [r["name"] for r in rows] == ["Person 004", "Person 003", "Person 002", "Person 000"]
    assert set(rows[0]) == {"id", "name", "main_location[email]"}
    either = wb.get(PEOPLE, filters=[("name", "eq", "Person 001"), ("name", "eq", "Person 002")], fm="or")
    assert sorted(r["name"] for r in either) == ["Person 001", "Person 002"]
    inside = wb.get(PEOPLE, filters=[("name", "eq", ["Acme, Inc. Contact", "Person 000"])])
    assert sorted(r["name"] for r in inside) == ["Acme, Inc. Contact", "Person 000"]
    multi = wb.get(PEOPLE, sort=["name", "id"], direction=["ASC", "DESC"], columns=["name"], limit=2)
    assert [r["name"] for r in multi] == ["Acme, Inc. Contact", "Person 000"]
    assert wb.count(PEOPLE, filters=[("name", "bg", "Person")]) == 5


def test_iter_pages_streams_with_a_keyset(workbooks_server):
    app = workbooks_server.app
    _people(app, 250)
    http = workbooks_http()
    wire = recorded(http)
    wb = api_key_client(workbooks_server, http)
    pages = wb.iter_pages(PEOPLE, columns=["id", "name"])
    sizes = []
    for page in pages:
        sizes.append(len(page))
    assert sizes == [100, 100, 50]
    reads = [wire.params(i) for i in range(1, len(wire.sent))]
    assert len(reads) == 3
    assert "id" in reads[1]["_ff[]"] and reads[1]["_ft[]"][-1] == "gt" and reads[1]["_fc[]"][-1] == "100"


def test_iter_pages_misses_nothing_while_the_caller_changes_the_set(workbooks_server):
    """The queue technique: records leave the filter as they are processed. Offset paging would
    skip half of them; the id keyset does not."""
    app = workbooks_server.app
    column = app.add_custom_field("people", "Needs Work", "boolean")
    people = _people(app, 230, **{column: True})
    wb = api_key_client(workbooks_server)
    seen = []
    for page in wb.iter_pages(PEOPLE, filters=[(column, "true", "")], columns=["id", "lock_version"]):
        seen += [r["id"] for r in page]
        results = wb.batch(PEOPLE, [{"__method": "PUT", "id": r["id"], "lock_version": r["lock_version"],
                                     column: False} for r in page])
        assert all(r.ok for r in results)
    assert sorted(seen) == sorted(p["id"] for p in people)


def test_reads_survive_rate_limit_redirects(workbooks_server):
    app = workbooks_server.app
    _people(app, 30)
    wb = api_key_client(workbooks_server)
    expected = wb.get(PEOPLE, filters=[("name", "ct", "01")], columns=["id", "name"])
    app.config["rate_limit_redirect_every"] = 2          # every 2nd request goes to the delaying URL
    before = wb.http.requests_made
    for _ in range(3):
        again = wb.get(PEOPLE, filters=[("name", "ct", "01")], columns=["id", "name"])
        assert again == expected and 0 < len(again) < 30   # the filters travelled with the redirect
    assert wb.http.requests_made - before > 3          # redirects happened and were followed


# --- redirects followed by hand (issue 16 §1: workbooks-api.md §11, §2.3) ----------------------------

def _long_filter(app) -> list[tuple]:
    """A read like the scan's: a filter far longer than any URL should carry (the old client sent
    it as a GET body and lost it on a redirect)."""
    wanted = [r["id"] for r in app.records("people")][::3]
    return [("id", "eq", wanted + list(range(100_000, 100_400)))]


@pytest.mark.parametrize("mode", ["api_key", "engine"])
def test_a_long_filtered_read_survives_n_redirects_with_the_same_result(workbooks_server, mode):
    """§11: the delaying URL gets the same method and the same body, hop after hop, so the answer is
    the one the unredirected read gets. (Before: requests re-sent a bodiless GET. With an API key
    that lost the key too; with a session cookie it read every record, unfiltered.)"""
    app = workbooks_server.app
    _people(app, 40)
    wb = api_key_client(workbooks_server) if mode == "api_key" else \
        WorkbooksClient.connect(engine_params(workbooks_server), workbooks_http())
    filters = _long_filter(app)
    expected = wb.get(PEOPLE, filters=filters, columns=["id", "name"])
    assert 0 < len(expected) < 40
    app.config["rate_limit_redirect_delay"] = 0.05
    app.add_fault(method="GET", path=r"crm/people", status=302, redirect="delay", min_body=2000, count=3)
    app.reset_counts()
    assert wb.get(PEOPLE, filters=filters, columns=["id", "name"]) == expected
    hops = [e for e in app.request_log if "crm/people" in e["path"]]
    assert [e["path"] for e in hops] == ["/crm/people.api"] + ["/delay/crm/people.api"] * 3
    assert len({e["body_bytes"] for e in hops}) == 1 and hops[0]["body_bytes"] > 2000   # the same body each hop
    assert wb.http.requests_made >= 4


def test_a_redirected_write_is_sent_again_whole_and_applied_once(workbooks_server):
    """§11 + §2.3: a 302 comes before Workbooks processes a request, so the redirected PUT was not
    applied; re-sending it, body and all, to the delaying URL applies it once. (Before: refused,
    'not replayed', so every write-back failed while Workbooks rate-limited.)"""
    app = workbooks_server.app
    wb = api_key_client(workbooks_server)
    app.add_fault(method="PUT", path=r"crm/people", status=302, redirect="delay", count=2)
    (created,) = wb.batch(PEOPLE, [{"__method": "POST", "name": "Written Through"}])
    assert created.ok and created.id
    assert [p["name"] for p in app.records("people")] == ["Written Through"]
    assert app.count_of("PUT", r"^/delay/crm/people") == 2


def test_a_303_is_never_followed(workbooks_server):
    """303 says the request was processed elsewhere: a write re-sent there would be replayed."""
    app = workbooks_server.app
    wb = api_key_client(workbooks_server)
    app.add_fault(method="PUT", path=r"crm/people", status=303, redirect="delay", count=1)
    with pytest.raises(TransientError, match=r"HTTP 303.*not re-sent"):
        wb.batch(PEOPLE, [{"__method": "POST", "name": "Once"}])
    assert app.count_of("PUT", r"^/delay/") == 0


def test_redirect_hops_are_bounded(workbooks_server):
    app = workbooks_server.app
    wb = api_key_client(workbooks_server)
    app.add_fault(method="GET", path=r"crm/people", status=302, redirect="delay", count=None)
    with pytest.raises(TransientError, match="more than 10 redirects"):
        wb.get(PEOPLE)
    assert app.count_of("GET", r"crm/people") == 11


def test_a_redirect_delay_is_waited_inside_the_deadline(workbooks_server):
    """A Retry-After on the redirect (none is documented, §11) is honoured like a 429's; one past
    the deadline is not waited but reported."""
    app = workbooks_server.app
    sleeps = Sleeps()
    wb = api_key_client(workbooks_server, workbooks_http(deadline=30, sleep=sleeps))
    app.add_fault(method="GET", path=r"crm/people", status=302, redirect="delay", headers={"Retry-After": "2"})
    assert wb.get(PEOPLE) == []
    assert len(sleeps.calls) == 1 and 1.5 < sleeps.calls[0] <= 2.0       # the fake sleep: asked, not slept
    app.add_fault(method="GET", path=r"crm/people", status=302, redirect="delay", headers={"Retry-After": "600"})
    with pytest.raises(RateLimited, match="redirected"):
        wb.get(PEOPLE)
    assert len(sleeps.calls) == 1


def test_a_redirect_to_the_login_page_reconnects_in_engine_mode(workbooks_server):
    """§2.3: an ended session is answered with a 302 to the login page. In Process-Engine mode the
    client reconnects (a new session) and sends the request again; following the redirect would
    only fetch an HTML page. With an API key there is nothing to reconnect: a clear error."""
    app = workbooks_server.app
    _people(app, 3)
    wb = WorkbooksClient.connect(engine_params(workbooks_server), workbooks_http())
    old_session = wb.session_id
    app.add_fault(method="PUT", path=r"crm/people", status=302, count=1)        # → /login
    (created,) = wb.batch(PEOPLE, [{"__method": "POST", "name": "After Reconnect"}])
    assert created.ok and wb.session_id != old_session
    assert app.count_of("POST", r"login\.api") == 2 and app.count_of("GET", r"^/login$") == 0
    assert len(wb.get(PEOPLE)) == 4

    key_client = api_key_client(workbooks_server)
    app.add_fault(method="GET", path=r"crm/people", status=302, count=1)
    with pytest.raises(TransientError, match="login page: the API key was not accepted"):
        key_client.get(PEOPLE)


def test_show_and_datetimes(workbooks_server):
    app = workbooks_server.app
    person = app.insert("people", {"name": "Shown Person"})
    wb = api_key_client(workbooks_server)
    shown = wb.show(PEOPLE, person["id"])
    assert shown["name"] == "Shown Person"
    updated = parse_datetime(shown["updated_at"])
    assert format_datetime(updated) == shown["updated_at"]
    same_second = wb.get(PEOPLE, filters=[("updated_at", "ge", updated)], columns=["id"])
    assert [r["id"] for r in same_second] == [person["id"]]
    later = wb.get(PEOPLE, filters=[("updated_at", "gt", updated + dt.timedelta(seconds=1))])
    assert later == []
    with pytest.raises(WorkbooksError) as caught:
        wb.show(PEOPLE, 999999)
    assert caught.value.status == 404


def test_queues_custom_fields_and_metadata(workbooks_server):
    app = workbooks_server.app
    user = app.add_user("rita@example.com", "Rita Rep")
    wb = api_key_client(workbooks_server)
    queues = wb.queues("person")
    mine = queues[user["person_queue_id"]]
    assert mine["queue_type"] == "user" and mine["owner[login_name]"] == "rita@example.com"
    assert mine["owner[person_name]"] == "Rita Rep"
    created = wb.create_custom_fields([{"title": "Outreach Id", "resource_type": "Private::Crm::Person",
                                        "data_type": "string"}])
    assert created[0]["value_column_name"].startswith("cf_person_outreach_id")
    titles = {f["title"] for f in wb.custom_fields("person")}
    assert "Outreach Id" in titles
    pending = wb.create_custom_fields([{"title": "Later Field", "resource_type": "Private::Crm::Person",
                                        "data_type": "string"}], asynchronous=True)
    assert pending[0]["status"].lower() != "available"
    types = wb.metadata_types(["Private::Crm::Person"])
    assert types and types[0]["class_name"] == "Private::Crm::Person"


def test_resolve_columns_by_title_with_suffixes(workbooks_server):
    app = workbooks_server.app
    app.add_custom_field("people", "Outreach Id", "string")          # someone else's, first
    wb = api_key_client(workbooks_server)
    with pytest.raises(NotInstalled) as caught:
        resolve_columns(wb, "person")
    assert "Sync to Outreach" in str(caught.value) and "Outreach Id" not in str(caught.value)
    titles = [("Sync to Outreach", "boolean"), ("Outreach Sync Error", "boolean"),
              ("Outreach Duplicate", "boolean"), ("Outreach Id", "string"), ("Outreach URL", "url"),
              ("Outreach Error Message", "text"), ("Outreach Last Synced", "datetime"),
              ("Outreach Sync Snapshot", "text")]
    ours = {title: app.add_custom_field("people", title, data_type) for title, data_type in titles}
    assert ours["Outreach Id"] != "cf_person_outreach_id"             # the collision got a suffix
    columns = resolve_columns(wb, "person", recorded={"Outreach Id": ours["Outreach Id"]})
    assert columns["outreach_id"] == ours["Outreach Id"] and columns["sync"] == ours["Sync to Outreach"]
    assert resolve_columns(wb, "person")["outreach_id"] == "cf_person_outreach_id"   # else lowest id
    with pytest.raises(NotInstalled, match="Organisations"):
        resolve_columns(wb, "organisation")


# --- writing ------------------------------------------------------------------------------------------

def test_batch_reports_each_row_including_stale_lock_versions(workbooks_server):
    app = workbooks_server.app
    a, b, c = _people(app, 3)
    app.edit("people", b["id"], {"name": "Edited By A User"})          # b's lock_version moves on
    wb = api_key_client(workbooks_server)
    results = wb.batch(PEOPLE, [
        {"__method": "PUT", "id": a["id"], "lock_version": a["lock_version"], "person_job_title": "CEO"},
        {"__method": "PUT", "id": b["id"], "lock_version": b["lock_version"], "person_job_title": "CTO"},
        {"__method": "POST", "name": "Brand New", "main_location": {"email": "new@example.com"}},
        {"__method": "DELETE", "id": c["id"], "lock_version": c["lock_version"]},
    ])
    ok_a, stale_b, created, deleted = results
    assert ok_a.ok and ok_a.id == a["id"] and ok_a.lock_version == a["lock_version"] + 1
    assert not stale_b.ok and stale_b.stale and any("updated elsewhere" in e for e in stale_b.errors)
    assert created.ok and created.id and app.record("people", created.id)["main_location[email]"] == "new@example.com"
    assert deleted.ok
    assert app.record("people", b["id"])["person_job_title"] is None      # the user's edit is kept
    assert app.record("people", b["id"])["name"] == "Edited By A User"


@pytest.mark.parametrize("shape", ["full", "failures_only", "row_errors_only"])
@pytest.mark.parametrize("per_object_top_success", [False, True])
def test_stale_lock_version_is_detected_whatever_the_failure_shape(workbooks_server, shape, per_object_top_success):
    # workbooks-api.md §4.4, R2.4: the stale lock_version JSON is unknown; the emulator's switch
    # failure_shape gives each plausible reading, and parse_batch_response must see "stale" in all
    app = workbooks_server.app
    app.config.update(failure_shape=shape, per_object_failure_top_success=per_object_top_success)
    a, b = _people(app, 2)
    app.edit("people", b["id"], {"name": "Edited By A User"})
    wb = api_key_client(workbooks_server)
    (alone,) = wb.batch(PEOPLE, [{"__method": "PUT", "id": b["id"], "lock_version": b["lock_version"],
                                  "person_job_title": "CTO"}])
    assert not alone.ok and alone.stale, alone
    fine, stale = wb.batch(PEOPLE, [
        {"__method": "PUT", "id": a["id"], "lock_version": a["lock_version"], "person_job_title": "CEO"},
        {"__method": "PUT", "id": b["id"], "lock_version": b["lock_version"], "person_job_title": "CTO"}])
    assert not stale.ok and stale.stale
    if shape == "failures_only":
        # no per-object information: which object failed cannot be told, so neither counts as
        # saved (a caller re-reads both and writes again: the saved one then changes nothing)
        assert not fine.ok and fine.stale
    else:
        assert fine.ok and fine.lock_version == a["lock_version"] + 1
    assert app.record("people", a["id"])["person_job_title"] == "CEO"      # saved (per-object transactions)
    assert app.record("people", b["id"])["person_job_title"] is None


def test_batch_validation_failures_are_per_row(workbooks_server):
    app = workbooks_server.app
    (a,) = _people(app, 1)
    wb = api_key_client(workbooks_server)
    good, bad = wb.batch(PEOPLE, [
        {"__method": "PUT", "id": a["id"], "lock_version": a["lock_version"], "name": "Still Fine"},
        {"__method": "PUT", "id": a["id"] + 1000, "lock_version": 0, "name": "Nobody"},
    ])
    assert good.ok and not bad.ok and not bad.stale and bad.errors


def test_batch_chunks_to_100_rows_per_request(workbooks_server):
    app = workbooks_server.app
    http = workbooks_http()
    wire = recorded(http)
    wb = api_key_client(workbooks_server, http)
    results = wb.batch(PEOPLE, [{"__method": "POST", "name": f"Bulk {i}"} for i in range(150)])
    assert len(results) == 150 and all(r.ok for r in results)
    assert len({r.id for r in results}) == 150
    assert [s.method for s in wire.sent].count("PUT") == 2
    assert len(app.records("people")) == 150


def test_a_write_is_never_replayed_after_an_ambiguous_failure(workbooks_server):
    app = workbooks_server.app
    wb = api_key_client(workbooks_server)
    app.add_fault(method="PUT", path="/crm/people.api", reset=True, when="after")
    with pytest.raises(TransientError, match="not retried"):
        wb.batch(PEOPLE, [{"__method": "POST", "name": "Exactly Once"}])
    assert app.count_of("PUT", r"/crm/people") == 1
    assert [r["name"] for r in app.records("people")] == ["Exactly Once"]
    app.add_fault(method="PUT", path="/crm/people.api", status=500)
    with pytest.raises(TransientError, match="500"):
        wb.batch(PEOPLE, [{"__method": "POST", "name": "Not Twice"}])
    assert app.count_of("PUT", r"/crm/people") == 2


def test_reads_are_retried_on_5xx(workbooks_server):
    app = workbooks_server.app
    _people(app, 2)
    http = workbooks_http(backoff_base=0.01)
    wb = api_key_client(workbooks_server, http)
    before = http.requests_made
    app.add_fault(method="GET", path="/crm/people.api", status=503, count=2)
    assert len(wb.get(PEOPLE)) == 2
    assert http.requests_made - before == 3


def test_an_expired_session_is_transient_for_reads_and_writes(workbooks_server):
    app = workbooks_server.app
    wb = WorkbooksClient.connect(engine_params(workbooks_server), workbooks_http())
    app.clock.advance(app.config["session_idle_seconds"] + 60)
    with pytest.raises(TransientError):
        wb.get(PEOPLE)
    with pytest.raises(TransientError):
        wb.batch(PEOPLE, [{"__method": "POST", "name": "Lost Session"}])
    assert app.records("people") == []


def test_no_secret_in_any_error_message(workbooks_server):
    app = workbooks_server.app
    params = engine_params(workbooks_server)
    wb = WorkbooksClient.connect(params, workbooks_http(backoff_base=0.01, max_retries=1))
    messages = []
    app.add_fault(method="GET", path="/crm/people.api", status=500, count=None,
                  body={"success": False, "errors": f"session {wb.session_id} token {wb.authenticity_token}"})
    with pytest.raises(TransientError) as caught:
        wb.get(PEOPLE)
    messages.append(str(caught.value))
    app.clear_faults()
    app.add_fault(method="PUT", path="/crm/people.api", reset=True)
    with pytest.raises(TransientError) as caught:
        wb.batch(PEOPLE, [{"__method": "POST", "name": "x"}])
    messages.append(str(caught.value))
    key_client = api_key_client(workbooks_server)
    app.add_fault(method="GET", path="/crm/people.api", status=406,
                  body={"success": False, "errors": {"[]": {"api_key": key_client.api_key}}})
    with pytest.raises(WorkbooksError) as caught:
        key_client.get(PEOPLE)
    messages.append(str(caught.value))
    secrets = [wb.session_id, wb.authenticity_token, params["_workbooks_session_id"], key_client.api_key]
    for message in messages:
        assert message
        for secret in secrets:
            assert secret not in message, message
