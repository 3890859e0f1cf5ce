"""Contract tests of the Outreach emulator's receive side (reference/outreach-api.md §12, with §2.1
shapes, §4 filters/sort/paging and the §4.1/§9 traps), over real HTTP: sequences, sequence states
and steps, the opt-out attributes, updatedAt/updater, and the control surface that plays the people
working in Outreach."""
from __future__ import annotations

import datetime as dt

import pytest
import requests

from tests.emulators.test_outreach_contract import ISO_MS, T0, connect, doc, err, freeze, rel
from tools.emulators.core import parse_iso

RECEIVE_SCOPES = ("prospects.all accounts.all users.read sequences.read sequenceStates.read "
                  "sequenceSteps.read")
STATES = "/api/v2/sequenceStates"
SEQUENCES = "/api/v2/sequences"


@pytest.fixture
def app(outreach_server):
    freeze(outreach_server)
    return outreach_server.app


@pytest.fixture
def api(outreach_server, app):
    client, _ = connect(outreach_server, RECEIVE_SCOPES)
    return client


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


def prospect(app, email: str, **attrs) -> int:
    return app.insert("prospects", {"emails": [email], **attrs})["id"]


def later(app, ms: int = 1) -> None:
    app.clock.advance(ms / 1000)


def stamp(value: str) -> dt.datetime:
    return parse_iso(value)


# ------------------------------------------------------------------- §12 resources and §2.1 shapes
def test_sequence_state_shape_and_relationships(outreach_server, app, api):
    """§12, §2.1: a sequence state is read-only, ms timestamps, relationships prospect, sequence,
    sequenceStep, account, user and creator (no updater: the OAS has none)."""
    account = app.insert("accounts", {"name": "Acme"})["id"]
    pid = app.insert("prospects", {"emails": ["sally@acme.com"]}, {"account": account})["id"]
    rep = app.add_user("rita@corp.com", "rita")
    state = app.add_to_sequence(pid, "Welcome", by=rep)
    r = api.get(f"{STATES}/{state['id']}")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["type"] == "sequenceState" and data["links"]["self"] == f"{outreach_server.url}{STATES}/{state['id']}"
    attrs = data["attributes"]
    assert attrs["state"] == "active" and attrs["stateChangedAt"] == attrs["updatedAt"] == attrs["createdAt"] == T0
    assert ISO_MS.match(attrs["activeAt"]) and attrs["pauseReason"] is None and attrs["deliverCount"] == 0
    relations = data["relationships"]
    assert relations["prospect"] == {"data": {"type": "prospect", "id": pid}}
    assert relations["sequence"]["data"]["type"] == "sequence"
    assert relations["sequenceStep"]["data"]["type"] == "sequenceStep"
    assert relations["account"] == {"data": {"type": "account", "id": account}}
    assert relations["user"] == relations["creator"] == {"data": {"type": "user", "id": rep}}
    assert "updater" not in relations
    assert relations["mailings"]["links"]["related"].endswith(f"mailings?filter[sequenceState][id]={state['id']}")


def test_sequence_shape(outreach_server, app, api):
    """§12: sequence name, enabled (read-only), sequenceType "date"/"interval", shareType,
    createdAt/updatedAt; owner, creator, updater; its steps by filter[sequence][id]."""
    rep = app.add_user("rita@corp.com", "rita")
    made = app.create_sequence("Follow-up", by=rep, sequence_type="date", steps=3)
    data = api.get(f"{SEQUENCES}/{made['id']}").json()["data"]
    attrs = data["attributes"]
    assert (attrs["name"], attrs["enabled"], attrs["sequenceType"], attrs["shareType"]) == (
        "Follow-up", True, "date", "shared")
    assert attrs["createdAt"] == attrs["updatedAt"] == T0 and attrs["sequenceStepCount"] == 3
    for name in ("owner", "creator", "updater"):
        assert data["relationships"][name] == {"data": {"type": "user", "id": rep}}
    steps = api.get("/api/v2/sequenceSteps", params={"filter[sequence][id]": str(made["id"]), "sort": "order"})
    assert [s["attributes"]["order"] for s in steps.json()["data"]] == [1, 2, 3]
    assert steps.json()["data"][0]["relationships"]["sequence"] == {"data": {"type": "sequence", "id": made["id"]}}


def test_prospect_active_sequence_states_lists_the_unfinished_ones(app, api):
    """§12: activeSequenceStates are the non-finished states (active, paused, failed, bounced,
    pending, disabled)."""
    pid = prospect(app, "a@acme.com")
    first = app.add_to_sequence(pid, "One")
    second = app.add_to_sequence(pid, "Two", state="paused")
    app.change_sequence_state(first["id"], "finished")
    relation = api.get(f"/api/v2/prospects/{pid}").json()["data"]["relationships"]["activeSequenceStates"]
    assert relation["data"] == [{"type": "sequenceState", "id": second["id"]}] and relation["meta"] == {"count": 1}


@pytest.mark.parametrize("state", ["active", "paused", "failed", "bounced", "pending", "disabled", "finished"])
def test_every_state_value_of_the_reference(app, api, state):
    """§12: state takes the six non-finished values plus finished; filter[state] finds each."""
    pid = prospect(app, "a@acme.com")
    made = app.add_to_sequence(pid, "S", state=state)
    assert ids(api.get(STATES, params={"filter[state]": state})) == [made["id"]]


def test_an_unknown_state_is_refused_by_the_control_surface(app):
    """§12: no eighth state value."""
    pid = prospect(app, "a@acme.com")
    with pytest.raises(ValueError, match="state must be one of"):
        app.add_to_sequence(pid, "S", state="running")


# ------------------------------------------------------------------- read-only to API clients
@pytest.mark.parametrize("method, path", [("POST", SEQUENCES), ("PATCH", f"{SEQUENCES}/1"), ("DELETE", f"{SEQUENCES}/1"),
                                          ("POST", STATES), ("DELETE", f"{STATES}/1"),
                                          ("POST", "/api/v2/sequenceSteps"), ("PATCH", "/api/v2/sequenceSteps/1")])
def test_writes_need_their_scope(app, api, method, path):
    """§1.3: the OAS has these writes; a token with only the .read scopes gets 403
    unauthorizedOauthScope naming the write (or delete) scope."""
    app.add_to_sequence(prospect(app, "a@acme.com"), "S")
    r = api.request(method, path, doc("sequence", {"name": "x"}, id=1) if method != "DELETE" else None)
    assert (r.status_code, err(r)["id"]) == (403, "unauthorizedOauthScope")
    action = "delete" if method == "DELETE" else "write"
    assert f".{action}'" in err(r)["detail"]


@pytest.mark.parametrize("method, path", [("POST", SEQUENCES), ("PATCH", f"{SEQUENCES}/1"), ("DELETE", f"{STATES}/1")])
def test_writes_with_the_scope_are_refused_as_unauthorized_requests(outreach_server, app, method, path):
    """§1.3 [S]: with the scope, the emulator answers as a governance profile that forbids the
    write does (403 unauthorizedRequest): it serves these resources read-only."""
    app.add_to_sequence(prospect(app, "a@acme.com"), "S")
    client, _ = connect(outreach_server, "sequences.all sequenceStates.all", email="w@corp.com", username="w")
    r = client.request(method, path, doc("sequence", {"name": "x"}, id=1) if method != "DELETE" else None)
    assert (r.status_code, err(r)["id"]) == (403, "unauthorizedRequest")
    assert app.record("sequences", 1)["attributes"]["name"] == "S" and app.record("sequenceStates", 1)


def test_sequence_states_have_no_patch(app, api):
    """§12 / OAS: /sequenceStates/{id} has GET and DELETE, no PATCH → 405."""
    r = api.patch(f"{STATES}/1", doc("sequenceState", {}, id=1))
    assert (r.status_code, err(r)["id"]) == (405, "methodNotAllowed")
    assert r.headers["Allow"] == "DELETE, GET"


@pytest.mark.parametrize("path, scope", [(STATES, "sequenceStates.read"), (SEQUENCES, "sequences.read"),
                                         ("/api/v2/sequenceSteps", "sequenceSteps.read")])
def test_reading_needs_the_read_scope(outreach_server, app, path, scope):
    """§1.3: a token without `<plural>.read` (or .all) → 403 unauthorizedOauthScope."""
    client, _ = connect(outreach_server, "prospects.all accounts.all users.read", email="x@corp.com", username="x")
    r = client.get(path)
    assert (r.status_code, err(r)["id"]) == (403, "unauthorizedOauthScope") and f"'{scope}'" in err(r)["detail"]


def test_missing_records_are_404(app, api):
    """§5.2: GET of a missing sequence state / sequence → 404 resourceNotFound."""
    for path, word in ((f"{STATES}/9", "sequenceState"), (f"{SEQUENCES}/9", "sequence")):
        r = api.get(path)
        assert (r.status_code, err(r)["id"]) == (404, "resourceNotFound") and f"'{word}'" in err(r)["detail"]


def test_a_deleted_sequence_leaves_its_states_pointing_at_it(app, api):
    """§12 [I]: "delete this sequence": the state still names it, the sequence is a 404, an
    include leaves it out, and the state's updatedAt does not move."""
    pid = prospect(app, "a@acme.com")
    state = app.add_to_sequence(pid, "Gone")
    sequence_id = state["relationships"]["sequence"]["data"]["id"]
    later(app, 500)
    assert app.delete_sequence(sequence_id)
    data = api.get(f"{STATES}/{state['id']}", params={"include": "sequence"}).json()
    assert data["data"]["relationships"]["sequence"] == {"data": {"type": "sequence", "id": sequence_id}}
    assert data["included"] == [] and data["data"]["attributes"]["updatedAt"] == T0
    assert api.get(f"{SEQUENCES}/{sequence_id}").status_code == 404
    assert ids(api.get("/api/v2/sequenceSteps")) == []


def test_a_deleted_prospect_leaves_its_states(app, api):
    """§12 [I], §9 (deletes are not in the updatedAt feed): deleting a prospect leaves its
    sequence states, still naming it; the prospect is a 404."""
    pid = prospect(app, "a@acme.com")
    state = app.add_to_sequence(pid, "S")
    assert app.delete("prospects", pid)
    data = api.get(f"{STATES}/{state['id']}").json()["data"]
    assert data["relationships"]["prospect"] == {"data": {"type": "prospect", "id": pid}}
    assert ids(api.get(STATES, params={"filter[prospect][id]": str(pid)})) == [state["id"]]
    assert api.get(f"/api/v2/prospects/{pid}").status_code == 404


def test_a_rep_created_prospect_looks_like_an_api_created_one(app, api):
    """§3.1 externalSource (e.g. "outreach-api"), [I]: a person's create carries the same value,
    so only creator/updater tell it from the plugin's."""
    made = app.rep_create("prospects", {"emails": ["rep-made@acme.com"]})
    assert api.get(f"/api/v2/prospects/{made['id']}").json()["data"]["attributes"]["externalSource"] == "outreach-api"


# ------------------------------------------------------------------- §4 list semantics on states
def make_states(app, n: int, step_ms: int = 1000) -> list[int]:
    made = []
    for i in range(n):
        made.append(app.add_to_sequence(prospect(app, f"p{i}@acme.com"), "S")["id"])
        later(app, step_ms)
    return made


def test_filter_updated_at_legacy_and_new_syntax_are_inclusive(app, api):
    """§4.1 [C]: `a..inf`, `neginf..b`, `a..b` and newFilterSyntax `[gte]`/`[lte]` include their
    bounds (the server here honours upper bounds: upper_bound_ignored_rate 0)."""
    app.config["upper_bound_ignored_rate"] = 0
    make_states(app, 3)          # updatedAt 12:47:26.000, :27.000, :28.000
    get = lambda **p: ids(api.get(STATES, params=p))  # noqa: E731
    assert get(**{"filter[updatedAt]": "2024-01-11T12:47:27.000Z..inf"}) == [2, 3]
    assert get(**{"filter[updatedAt]": "neginf..2024-01-11T12:47:27.000Z"}) == [1, 2]
    assert get(**{"filter[updatedAt]": "2024-01-11T12:47:27.000Z..2024-01-11T12:47:27.000Z"}) == [2]
    new = {"newFilterSyntax": "true"}
    assert get(**new, **{"filter[updatedAt][gte]": "2024-01-11T12:47:27.000Z"}) == [2, 3]
    assert get(**new, **{"filter[updatedAt][gte]": "2024-01-11T12:47:27.001Z"}) == [3]
    assert get(**new, **{"filter[updatedAt][gte]": "2024-01-11T12:47:26.000Z",
                         "filter[updatedAt][lte]": "2024-01-11T12:47:27.000Z"}) == [1, 2]


def test_filters_by_prospect_id_state_and_id(app, api):
    """§4.1, §12: filter[prospect][id] (comma = any of), filter[state], filter[id]."""
    a, b = prospect(app, "a@acme.com"), prospect(app, "b@acme.com")
    s1 = app.add_to_sequence(a, "One")["id"]
    s2 = app.add_to_sequence(a, "Two", state="paused")["id"]
    s3 = app.add_to_sequence(b, "One")["id"]
    assert ids(api.get(STATES, params={"filter[prospect][id]": str(a)})) == [s1, s2]
    assert ids(api.get(STATES, params={"filter[prospect][id]": f"{a},{b}"})) == [s1, s2, s3]
    assert ids(api.get(STATES, params={"filter[state]": "paused"})) == [s2]
    assert ids(api.get(STATES, params={"filter[id]": f"{s3},{s1}"})) == [s1, s3]
    assert ids(api.get(STATES, params={"newFilterSyntax": "true", "filter[prospect][id][]": str(b)})) == [s3]
    assert ids(api.get(SEQUENCES, params={"filter[name]": "Two"})) == [2]


@pytest.mark.parametrize("name", ["errorReason", "activeAt", "prospect][email", "optOutCount"])
def test_unfilterable_attributes_are_refused(app, api, name):
    """§12 badges: errorReason, activeAt and optOutCount carry no filterable badge; relationships
    filter by id only → 400 filterParameter.unknownAttribute."""
    r = api.get(STATES, params={f"filter[{name}]": "x"})
    assert (r.status_code, err(r)["id"]) == (400, "filterParameter.unknownAttribute")


def test_sort_updated_at_both_ways_and_multi_key(app, api):
    """§4.2: sort=updatedAt, -updatedAt, and several keys (state,-updatedAt); unsortable → 400.
    (The §9 unsorted trap is off here: unsorted_window_ms 0.)"""
    app.config["unsorted_window_ms"] = 0
    made = make_states(app, 3)
    app.change_sequence_state(made[0], "paused")       # now the latest change
    assert ids(api.get(STATES, params={"sort": "updatedAt"})) == [2, 3, 1]
    assert ids(api.get(STATES, params={"sort": "-updatedAt"})) == [1, 3, 2]
    assert ids(api.get(STATES, params={"sort": "state,-updatedAt"})) == [3, 2, 1]
    r = api.get(STATES, params={"sort": "errorReason"})
    assert (r.status_code, err(r)["id"]) == (400, "sortParameter.unknownAttribute")


def test_cursor_paging_with_absolute_next_links_and_page_size_limit(outreach_server, app, api):
    """§4.3: page[size] ≤ 1000, links.next absolute with every parameter, missing on the last
    page; keyset paging covers every state once."""
    app.config["unsorted_window_ms"] = 0
    make_states(app, 7, step_ms=10)
    params = {"newFilterSyntax": "true", "filter[updatedAt][gte]": T0, "sort": "updatedAt", "page[size]": "3"}
    body = api.get(STATES, params=params).json()
    assert body["links"]["next"].startswith(f"{outreach_server.url}{STATES}?")
    assert "filter[updatedAt][gte]=" in body["links"]["next"] and "page[after]=" in body["links"]["next"]
    seen = [r["id"] for r in body["data"]]
    while "next" in body["links"]:
        body = api.get(body["links"]["next"]).json()
        seen += [r["id"] for r in body["data"]]
    assert seen == list(range(1, 8))
    r = api.get(STATES, params={"page[size]": "1001"})
    assert (r.status_code, err(r)["id"]) == (400, "pageParameter.invalidValue")
    assert api.get(STATES, params={"page[size]": "1000"}).status_code == 200


def test_sparse_fieldsets_and_include(app, api):
    """§2.5: fields[sequenceState]=state,prospect; fields[sequence]=name with include=sequence;
    an unknown field → 400."""
    pid = prospect(app, "a@acme.com")
    app.add_to_sequence(pid, "Welcome")
    body = api.get(STATES, params={"fields[sequenceState]": "state,prospect", "include": "sequence",
                                   "fields[sequence]": "name"}).json()
    assert body["data"][0]["attributes"] == {"state": "active"}
    assert set(body["data"][0]["relationships"]) == {"prospect"}
    assert body["included"][0]["attributes"] == {"name": "Welcome"}
    r = api.get(STATES, params={"fields[sequenceState]": "nope"})
    assert (r.status_code, err(r)["id"]) == (400, "fieldsParameter.unknownResourceField")


# ------------------------------------------------------------------- §12 opt-out attributes
def patch(api, pid, attrs):
    r = api.patch(f"/api/v2/prospects/{pid}", doc("prospect", attrs, id=pid))
    assert r.status_code == 200, r.text
    return r.json()["data"]["attributes"]


def test_opted_out_stamps_opted_out_at_and_false_reverts_and_clears(app, api):
    """§12: optedOut true → optedOutAt = the time of the request; resending true moves neither
    the stamp nor updatedAt; false reverts and clears the stamp."""
    pid = prospect(app, "a@acme.com")
    later(app, 1500)
    attrs = patch(api, pid, {"optedOut": True})
    assert attrs["optedOut"] is True and attrs["optedOutAt"] == attrs["updatedAt"] == "2024-01-11T12:47:27.500Z"
    later(app, 1000)
    again = patch(api, pid, {"optedOut": True})
    assert again["optedOutAt"] == again["updatedAt"] == "2024-01-11T12:47:27.500Z"
    cleared = patch(api, pid, {"optedOut": False})
    assert cleared["optedOut"] is False and cleared["optedOutAt"] is None
    assert cleared["updatedAt"] == "2024-01-11T12:47:28.500Z"


@pytest.mark.parametrize("flag, status, stamp_name", [("emailOptedOut", "emailsOptStatus", "emailsOptedAt"),
                                                      ("callOptedOut", "callsOptStatus", "callsOptedAt")])
def test_granular_opt_outs_set_their_status_and_stamp(app, api, flag, status, stamp_name):
    """§12: emailOptedOut true → emailsOptStatus "opted_out" and emailsOptedAt; callOptedOut
    likewise; optedOut is untouched (granular opt-out, the default). Opting back in sets
    "opted_in" and stamps the opt-in (switch granular_opt_in_stamp "stamp"): a stamp alone
    never means "opted out"."""
    pid = prospect(app, "a@acme.com")
    later(app, 1000)
    out = patch(api, pid, {flag: True})
    assert (out[flag], out[status], out[stamp_name]) == (True, "opted_out", "2024-01-11T12:47:27.000Z")
    assert out["optedOut"] is None and out["optedOutAt"] is None
    later(app, 1000)
    back = patch(api, pid, {flag: False})
    assert (back[flag], back[status], back[stamp_name]) == (False, "opted_in", "2024-01-11T12:47:28.000Z")


def test_granular_opt_in_stamp_switch_clears(app, api):
    """§12 [I], switch granular_opt_in_stamp="clear": an opt-in clears emailsOptedAt instead."""
    app.config["granular_opt_in_stamp"] = "clear"
    pid = prospect(app, "a@acme.com")
    patch(api, pid, {"emailOptedOut": True})
    back = patch(api, pid, {"emailOptedOut": False})
    assert (back["emailsOptStatus"], back["emailsOptedAt"]) == ("opted_in", None)


def test_writing_the_status_sets_the_boolean(app, api):
    """§12: emailsOptStatus "opted_out" is the same opt-out as emailOptedOut true."""
    pid = prospect(app, "a@acme.com")
    attrs = patch(api, pid, {"emailsOptStatus": "opted_out"})
    assert (attrs["emailOptedOut"], attrs["emailsOptedAt"]) == (True, T0)


def test_without_granular_opt_out_the_three_flags_are_one(app, api):
    """§12, switch granular_opt_out=false: emailOptedOut/callOptedOut mean "opted out in general
    if granular opt-out is not enabled": all three flags and their stamps follow."""
    app.config["granular_opt_out"] = False
    pid = prospect(app, "a@acme.com")
    attrs = patch(api, pid, {"emailOptedOut": True})
    assert (attrs["optedOut"], attrs["emailOptedOut"], attrs["callOptedOut"]) == (True, True, True)
    assert attrs["optedOutAt"] == attrs["emailsOptedAt"] == attrs["callsOptedAt"] == T0


@pytest.mark.parametrize("name", ["optedOut", "emailOptedOut", "callOptedOut", "emailsOptStatus"])
def test_opt_out_attributes_are_not_filterable(app, api, name):
    """§12: none of the opt-out attributes carries the filterable badge → 400 like any
    unfilterable filter; opt-outs are found through the updatedAt feed."""
    value = "opted_out" if name == "emailsOptStatus" else "true"
    r = api.get("/api/v2/prospects", params={f"filter[{name}]": value})
    assert (r.status_code, err(r)["id"]) == (400, "filterParameter.unknownAttribute")


@pytest.mark.parametrize("name", ["optedOutAt", "emailsOptedAt", "callsOptedAt"])
def test_opt_out_stamps_are_read_only(app, api, name):
    """§12: the stamps are read-only: a write → 400 permittedParams.unknownAttribute."""
    pid = prospect(app, "a@acme.com")
    r = api.patch(f"/api/v2/prospects/{pid}", doc("prospect", {name: T0}, id=pid))
    assert (r.status_code, err(r)["id"]) == (400, "permittedParams.unknownAttribute")


# ------------------------------------------------------------------- §12 updatedAt and updater
def test_api_writes_stamp_creator_updater_and_updated_at(outreach_server, app):
    """§12: creator/updater are the token's user on create and on a changing PATCH; updatedAt in
    ms ISO Z moves with a change, not with a PATCH that changes nothing."""
    client, uid = connect(outreach_server, RECEIVE_SCOPES, email="plugin@corp.com", username="plugin")
    created = client.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]})).json()["data"]
    assert created["relationships"]["creator"] == created["relationships"]["updater"] == {
        "data": {"type": "user", "id": uid}}
    app.rep_edit("prospects", created["id"], {"title": "CTO"})           # a rep, now the updater
    later(app, 250)
    same = patch(client, created["id"], {"title": "CTO"})
    assert same["updatedAt"] == T0
    assert app.record("prospects", created["id"])["relationships"]["updater"]["data"]["id"] != uid
    changed = client.patch(f"/api/v2/prospects/{created['id']}",
                           doc("prospect", {"title": "CEO"}, id=created["id"])).json()["data"]
    assert changed["attributes"]["updatedAt"] == "2024-01-11T12:47:26.250Z"
    assert changed["relationships"]["updater"] == {"data": {"type": "user", "id": uid}}


def test_a_rep_edit_stamps_the_rep_and_bumps_updated_at(app, api):
    """§12: "a rep edits this prospect in Outreach": attributes and relationships change,
    updatedAt moves, updater = the rep; an edit to the same values stamps nothing."""
    rep = app.add_user("rita@corp.com", "rita")
    account = app.insert("accounts", {"name": "Acme"})["id"]
    pid = prospect(app, "a@acme.com")
    later(app, 1000)
    app.rep_edit("prospects", pid, {"title": "VP Sales", "workPhones": ["+44 1"]}, {"account": account}, by="rita")
    data = api.get(f"/api/v2/prospects/{pid}").json()["data"]
    assert data["attributes"]["title"] == "VP Sales" and data["attributes"]["updatedAt"] == "2024-01-11T12:47:27.000Z"
    assert data["relationships"]["updater"] == {"data": {"type": "user", "id": rep}}
    assert data["relationships"]["account"] == {"data": {"type": "account", "id": account}}
    later(app, 1000)
    app.rep_edit("prospects", pid, {"title": "VP Sales"}, by="rita")
    assert api.get(f"/api/v2/prospects/{pid}").json()["data"]["attributes"]["updatedAt"] == "2024-01-11T12:47:27.000Z"


def test_a_rep_edits_an_account(app, api):
    """§12: the account's updater/updatedAt follow a rep's edit too."""
    rep = app.add_user("rita@corp.com", "rita")
    account = app.insert("accounts", {"name": "Acme"})["id"]
    later(app, 5)
    app.rep_edit("accounts", account, {"industry": "Food"}, by=rep)
    data = api.get(f"/api/v2/accounts/{account}").json()["data"]
    assert data["attributes"]["industry"] == "Food" and data["attributes"]["updatedAt"] == "2024-01-11T12:47:26.005Z"
    assert data["relationships"]["updater"] == {"data": {"type": "user", "id": rep}}


def test_a_rep_creates_a_prospect_with_and_without_an_account(app, api):
    """§12: "a rep creates a prospect in Outreach": creator = updater = the rep."""
    rep = app.add_user("rita@corp.com", "rita")
    account = app.rep_create("accounts", {"name": "New Co"}, by=rep)["id"]
    alone = app.rep_create("prospects", {"emails": ["solo@new.co"], "firstName": "Solo"}, by=rep)
    employed = app.rep_create("prospects", {"emails": ["emp@new.co"]}, {"account": account}, by=rep)
    for made in (alone, employed):
        data = api.get(f"/api/v2/prospects/{made['id']}").json()["data"]
        assert data["relationships"]["creator"] == data["relationships"]["updater"] == {
            "data": {"type": "user", "id": rep}}
    assert api.get(f"/api/v2/prospects/{employed['id']}").json()["data"]["relationships"]["account"]["data"]["id"] == account
    with pytest.raises(ValueError, match="email hash has already been taken"):
        app.rep_create("prospects", {"emails": ["solo@new.co"]})


def test_the_default_rep_is_never_the_plugins_user(outreach_server, app, api):
    """Control surface: with no `by`, "a rep" is a user of its own, so a rep's change never looks
    like the plugin's own write."""
    pid = prospect(app, "a@acme.com")
    app.rep_edit("prospects", pid, {"title": "CTO"})
    updater = api.get(f"/api/v2/prospects/{pid}").json()["data"]["relationships"]["updater"]["data"]["id"]
    assert app.record("users", updater)["attributes"]["email"] == "rep@outreach-emulator.example"
    assert updater != 1


def test_a_rep_edit_is_checked_like_the_api_unless_raw(app):
    """§5.2: a rep's value the API would refuse is refused (the record named); `raw` stores it,
    to stand in for data Outreach holds that its API refuses today."""
    pid = prospect(app, "a@acme.com")
    with pytest.raises(ValueError, match=f"prospects {pid}: Data provided is too long"):
        app.rep_edit("prospects", pid, {"title": "x" * 300})
    app.rep_edit("prospects", pid, {"title": "x" * 300}, raw=True)
    assert len(app.record("prospects", pid)["attributes"]["title"]) == 300


def test_a_sequence_change_bumps_the_state_not_the_prospect(app, api):
    """§12: a state change moves its stateChangedAt and updatedAt; whether it moves the
    prospect's updatedAt is not in the reference: switch sequence_state_bumps_prospect, False
    by default (the prospect feed alone never shows it)."""
    pid = prospect(app, "a@acme.com")
    state = app.add_to_sequence(pid, "S")
    later(app, 2000)
    app.change_sequence_state(state["id"], "paused", pause_reason="Out of office")
    attrs = api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]
    assert (attrs["state"], attrs["pauseReason"]) == ("paused", "Out of office")
    assert attrs["stateChangedAt"] == attrs["updatedAt"] == "2024-01-11T12:47:28.000Z"
    assert api.get(f"/api/v2/prospects/{pid}").json()["data"]["attributes"]["updatedAt"] == T0
    app.config["sequence_state_bumps_prospect"] = True
    later(app, 1000)
    app.change_sequence_state(state["id"], "failed", error_reason="Mailbox disconnected")
    assert api.get(f"/api/v2/prospects/{pid}").json()["data"]["attributes"]["updatedAt"] == "2024-01-11T12:47:29.000Z"
    assert api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]["errorReason"] == "Mailbox disconnected"


def test_a_state_changed_at_can_be_given_and_the_same_state_is_no_change(app, api):
    """§12: stateChangedAt is when the state changed (a test may say when); setting the state it
    already has changes nothing."""
    state = app.add_to_sequence(prospect(app, "a@acme.com"), "S")
    later(app, 3000)
    app.change_sequence_state(state["id"], "finished", at="2024-01-11T12:47:27.123Z")
    attrs = api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]
    assert (attrs["stateChangedAt"], attrs["updatedAt"]) == ("2024-01-11T12:47:27.123Z", "2024-01-11T12:47:29.000Z")
    later(app, 1000)
    app.change_sequence_state(state["id"], "finished")
    assert api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]["updatedAt"] == "2024-01-11T12:47:29.000Z"


def test_renaming_a_sequence_bumps_it(app, api):
    """§12: sequence updatedAt is readonly/filterable/sortable and moves with a change."""
    made = app.create_sequence("Old")
    later(app, 1000)
    app.rep_edit("sequences", made["id"], {"name": "New"})
    assert ids(api.get(SEQUENCES, params={"filter[updatedAt]": "2024-01-11T12:47:27.000Z..inf"})) == [made["id"]]


def test_updated_at_never_moves_backwards(app, api):
    """§2.1: a change under a clock set back keeps the later stamp (updatedAt is a feed key)."""
    pid = prospect(app, "a@acme.com")
    later(app, 5000)
    app.rep_edit("prospects", pid, {"title": "A"})
    later(app, -3000)
    app.rep_edit("prospects", pid, {"title": "B"})
    assert api.get(f"/api/v2/prospects/{pid}").json()["data"]["attributes"]["updatedAt"] == "2024-01-11T12:47:31.000Z"


# ------------------------------------------------------------------- control-surface opt-outs
def test_a_prospect_opting_out_itself_leaves_the_updater(outreach_server, app, api):
    """§12 [I], switch self_opt_out_updater="unchanged": an unsubscribe by the prospect (by=None)
    does not make anyone the updater, so the last writer (here the plugin) stays: a client must
    read opt-outs from the attributes, never skip a change because the updater is itself."""
    client, uid = connect(outreach_server, RECEIVE_SCOPES, email="plugin@corp.com", username="plugin")
    pid = client.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]})).json()["data"]["id"]
    later(app, 10)
    app.opt_out(pid, "email")
    data = api.get(f"/api/v2/prospects/{pid}").json()["data"]
    assert data["attributes"]["emailOptedOut"] is True and data["attributes"]["updatedAt"] == "2024-01-11T12:47:26.010Z"
    assert data["relationships"]["updater"] == {"data": {"type": "user", "id": uid}}
    app.config["self_opt_out_updater"] = "none"
    app.opt_out(pid, "call")
    assert api.get(f"/api/v2/prospects/{pid}").json()["data"]["relationships"]["updater"] == {"data": None}


def test_a_rep_opting_a_prospect_out_and_back_in(app, api):
    """§12: opt_out / opt_in by a rep: the flags, stamps and the rep as updater."""
    rep = app.add_user("rita@corp.com", "rita")
    pid = prospect(app, "a@acme.com")
    app.opt_out(pid, "all", by=rep)
    attrs = api.get(f"/api/v2/prospects/{pid}").json()["data"]
    assert attrs["attributes"]["optedOut"] is True and attrs["attributes"]["optedOutAt"] == T0
    assert attrs["relationships"]["updater"]["data"]["id"] == rep
    later(app, 1000)
    app.opt_in(pid, "all", by=rep)
    back = api.get(f"/api/v2/prospects/{pid}").json()["data"]["attributes"]
    assert (back["optedOut"], back["optedOutAt"], back["updatedAt"]) == (False, None, "2024-01-11T12:47:27.000Z")


def test_an_email_opt_out_finishes_active_sequences(app, api):
    """§12 [I], switch opt_out_finishes_sequences=True: opting out of email (or of everything)
    finishes the prospect's unfinished sequence states, stamped like any state change; a call
    opt-out (granular) leaves them."""
    pid = prospect(app, "a@acme.com")
    state = app.add_to_sequence(pid, "S")
    later(app, 1000)
    app.opt_out(pid, "call")
    assert api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]["state"] == "active"
    app.opt_out(pid, "email")
    attrs = api.get(f"{STATES}/{state['id']}").json()["data"]["attributes"]
    assert (attrs["state"], attrs["stateChangedAt"]) == ("finished", "2024-01-11T12:47:27.000Z")
    app.config["opt_out_finishes_sequences"] = False
    other = app.add_to_sequence(pid, "T")
    app.opt_out(pid, "all")
    assert api.get(f"{STATES}/{other['id']}").json()["data"]["attributes"]["state"] == "active"


# ------------------------------------------------------------------- §4.1/§9 traps
def updated_feed(api, since: str, until: str | None = None, **extra) -> requests.Response:
    params = {"newFilterSyntax": "true", "filter[updatedAt][gte]": since, "sort": "updatedAt", **extra}
    if until:
        params["filter[updatedAt][lte]"] = until
    return api.get("/api/v2/prospects", params=params)


def test_upper_bound_ignored_always_and_never(app, api):
    """§9 [C] (EST: "the API sometimes ignores the server-side upper-bound filter"), switch
    upper_bound_ignored_rate: 1 drops every `[lte]` and `a..b` bound on updatedAt, 0 none."""
    for i in range(3):
        prospect(app, f"p{i}@acme.com")
        later(app, 1000)
    app.config["upper_bound_ignored_rate"] = 1
    assert ids(updated_feed(api, T0, "2024-01-11T12:47:26.000Z")) == [1, 2, 3]
    legacy = api.get("/api/v2/prospects", params={"filter[updatedAt]": f"{T0}..2024-01-11T12:47:26.000Z"})
    assert ids(legacy) == [1, 2, 3]
    app.config["upper_bound_ignored_rate"] = 0
    assert ids(updated_feed(api, T0, "2024-01-11T12:47:26.000Z")) == [1]


def test_upper_bound_ignored_sometimes_by_default_and_the_same_way_each_time(outreach_server, app, api):
    """§9 [C], default upper_bound_ignored_rate 0.5: some bounded queries lose their bound and
    some keep it; the dice are the trap_seed and the query's number, so a replay is identical
    and another seed differs."""
    for i in range(3):
        prospect(app, f"p{i}@acme.com")
        later(app, 1000)

    def pattern() -> list[int]:
        return [len(ids(updated_feed(api, T0, "2024-01-11T12:47:26.000Z"))) for _ in range(16)]

    first = pattern()
    assert set(first) == {1, 3}
    app._bounded_queries = 0       # the dice restart as on a fresh emulator
    assert pattern() == first
    app._bounded_queries, app.config["trap_seed"] = 0, 7
    assert pattern() != first


def test_results_are_sometimes_unsorted_within_a_page_but_paging_is_complete(app, api):
    """§9 [C] (EST: "sometimes returns results unsorted within a query"), switch
    unsorted_window_ms (default 1000): within a page sorted by updatedAt, neighbours less than a
    second apart may come swapped; the pages still hold every record once, and the same page
    comes back the same way (seeded by trap_seed and the page's ids)."""
    for i in range(40):
        prospect(app, f"p{i}@acme.com")
        later(app, 100)
    pages, orders = [], []
    body = updated_feed(api, T0, **{"page[size]": "10"}).json()
    while True:
        pages.append([r["id"] for r in body["data"]])
        orders.append([r["attributes"]["updatedAt"] for r in body["data"]])
        if "next" not in body["links"]:
            break
        body = api.get(body["links"]["next"]).json()
    assert sorted(sum(pages, [])) == list(range(1, 41))
    assert any(order != sorted(order) for order in orders)
    assert [sorted(p) for p in pages] == [list(range(n, n + 10)) for n in (1, 11, 21, 31)]
    again = updated_feed(api, T0, **{"page[size]": "10"}).json()
    assert [r["id"] for r in again["data"]] == pages[0]
    app.config["unsorted_window_ms"] = 0
    exact = updated_feed(api, T0, **{"page[size]": "10"}).json()
    assert [r["id"] for r in exact["data"]] == list(range(1, 11))


def test_records_far_apart_are_never_swapped(app, api):
    """§9: only close updatedAt values come unsorted (more than unsorted_window_ms apart: never)."""
    for i in range(20):
        prospect(app, f"p{i}@acme.com")
        later(app, 1001)
    assert ids(updated_feed(api, T0, **{"page[size]": "20"})) == list(range(1, 21))


# ------------------------------------------------------------------- control surface over HTTP
def control(server, path, body=None):
    return requests.post(f"{server.url}/_emulator/{path}", json=body, timeout=30)


def test_one_control_call_changes_a_thousand_prospects_uncounted(outreach_server, app, api):
    """Control surface: bulk actions in one POST /_emulator/activity, stamped like API changes,
    not counted as API requests (nor against the rate limit)."""
    for i in range(1000):
        prospect(app, f"p{i}@acme.com")
    later(app, 1000)
    before = app.total_requests
    actions = [{"do": "edit", "kind": "prospects", "id": i, "attributes": {"title": f"T{i}"}} for i in range(1, 1001)]
    actions += [{"do": "opt_out", "prospect": 5, "channel": "email"},
                {"do": "add_to_sequence", "prospect": 6, "sequence": "Welcome"},
                {"do": "set_state", "id": 1, "state": "paused", "pauseReason": "Manual"},
                {"do": "create", "kind": "prospects", "attributes": {"emails": ["new@acme.com"]}}]
    r = control(outreach_server, "activity", {"by": None, "actions": actions})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 1004 and results[-1] == {"do": "create", "kind": "prospects", "id": 1001,
                                                    "updatedAt": "2024-01-11T12:47:27.000Z"}
    assert app.total_requests == before
    app.config["upper_bound_ignored_rate"] = 0
    changed = updated_feed(api, "2024-01-11T12:47:27.000Z", **{"page[size]": "1000", "count": "true"}).json()
    assert changed["meta"]["count"] == 1001
    assert app.record("prospects", 5)["attributes"]["emailsOptStatus"] == "opted_out"
    assert app.record("sequenceStates", 1)["attributes"]["state"] == "paused"


def test_a_bad_action_is_a_400_naming_it(outreach_server, app):
    """Control surface: the first bad action stops the call with a 400 naming its index."""
    prospect(app, "a@acme.com")
    r = control(outreach_server, "activity", {"actions": [
        {"do": "edit", "kind": "prospects", "id": 1, "attributes": {"title": "ok"}},
        {"do": "opt_out", "prospect": 99}]})
    assert r.status_code == 400 and "action 1 (opt_out)" in r.json()["error"] and "no prospect 99" in r.json()["error"]
    assert app.record("prospects", 1)["attributes"]["title"] == "ok"
    for bad in ({"do": "dance"}, {"do": "set_state", "id": 1, "state": "x"},
                {"do": "edit", "kind": "sequenceStates", "id": 1}):
        assert control(outreach_server, "activity", {"actions": [bad]}).status_code == 400


def test_add_to_sequence_by_name_reuses_the_sequence(app, api):
    """Control surface: "add this prospect to a sequence", creating the sequence when needed."""
    a, b = prospect(app, "a@acme.com"), prospect(app, "b@acme.com")
    app.add_to_sequence(a, "Welcome")
    app.add_to_sequence(b, "Welcome")
    assert ids(api.get(SEQUENCES)) == [1]
    assert [s["relationships"]["sequence"]["data"]["id"] for s in api.get(STATES).json()["data"]] == [1, 1]
