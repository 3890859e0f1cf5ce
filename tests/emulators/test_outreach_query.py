"""Contract tests of the Outreach emulator's filters, sorting, paging and counting
(reference/outreach-api.md §4, R2.3)."""
from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from tests.emulators.test_outreach_contract import connect, doc, err, freeze, rel


@pytest.fixture
def api(outreach_server):
    freeze(outreach_server)
    client, _ = connect(outreach_server)
    return client


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


def make_prospects(api, *people):
    for attrs in people:
        assert api.post("/api/v2/prospects", doc("prospect", attrs)).status_code == 201


# ----------------------------------------------------------------------------------- filters
def test_filter_emails_matches_any_email_case_insensitively(api):
    """§4.1, R2.3: filter[emails] matches any of the prospect's emails; case ignored by default."""
    make_prospects(api, {"emails": ["a@acme.com", "Second@Acme.com"]}, {"emails": ["b@acme.com"]})
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "second@acme.com"})) == [1]
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "A@ACME.COM"})) == [1]
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "nobody@acme.com"})) == []


def test_filter_emails_case_switch(outreach_server, api):
    """R2.3 / §10.7: email_filter_case_insensitive=false → exact matching."""
    outreach_server.app.config["email_filter_case_insensitive"] = False
    make_prospects(api, {"emails": ["Sally@acme.com"]})
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "sally@acme.com"})) == []
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "Sally@acme.com"})) == [1]


def test_filter_emails_primary_only_switch(outreach_server, api):
    """R2.3 / §10.7: email_filter_matches="primary" → only a prospect's first email is searched
    (default "any", R2.3's suggestion)."""
    outreach_server.app.config["reject_duplicate_emails"] = False      # two prospects may share one
    make_prospects(api, {"emails": ["a@acme.com", "second@acme.com"]}, {"emails": ["second@acme.com"]})
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "second@acme.com"})) == [1, 2]
    outreach_server.app.config["email_filter_matches"] = "primary"
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "second@acme.com"})) == [2]
    assert ids(api.get("/api/v2/prospects", params={"filter[emails]": "A@acme.com"})) == [1]   # case still ignored
    assert ids(api.get("/api/v2/prospects", params={"newFilterSyntax": "true",
                                                    "filter[emails][]": "second@acme.com"})) == [2]


def test_comma_is_or(api):
    """§4.1: a comma list means any of."""
    make_prospects(api, {"emails": ["a@acme.com"]}, {"emails": ["b@acme.com"]}, {"emails": ["c@acme.com"]})
    r = api.get("/api/v2/prospects", params={"filter[emails]": "a@acme.com,c@acme.com,zz@acme.com"})
    assert ids(r) == [1, 3]
    assert ids(api.get("/api/v2/prospects", params={"filter[id]": "3,1"})) == [1, 3]


def test_account_filters_name_domain_custom_id(api):
    """§4.1: filter[name] (exact), filter[domain], filter[customId] on accounts."""
    for name, domain, custom in (("Acme Corporation", "acme.com", "WB-1"), ("Acme", "acme.org", "WB-2")):
        api.post("/api/v2/accounts", doc("account", {"name": name, "domain": domain, "customId": custom}))
    assert ids(api.get("/api/v2/accounts", params={"filter[name]": "Acme Corporation"})) == [1]
    assert ids(api.get("/api/v2/accounts", params={"filter[name]": "acme"})) == []  # exact, case-sensitive
    assert ids(api.get("/api/v2/accounts", params={"filter[domain]": "acme.org"})) == [2]
    assert ids(api.get("/api/v2/accounts", params={"filter[customId]": "WB-1,WB-2"})) == [1, 2]


def test_user_filters_email_and_username(outreach_server, api):
    """§4.1: users by filter[email] / filter[username]; filter[locked]."""
    outreach_server.app.add_user("jdoe@corp.com", "jdoe", locked=True)
    assert ids(api.get("/api/v2/users", params={"filter[email]": "jdoe@corp.com"})) == [2]
    assert ids(api.get("/api/v2/users", params={"filter[username]": "rep"})) == [1]
    assert ids(api.get("/api/v2/users", params={"filter[locked]": "false"})) == [1]


def test_filter_id_list_and_range(api):
    """§4.1: filter[id]=5..10 is an inclusive range."""
    make_prospects(api, *({"firstName": f"P{i}"} for i in range(1, 8)))
    assert ids(api.get("/api/v2/prospects", params={"filter[id]": "2..4"})) == [2, 3, 4]
    assert ids(api.get("/api/v2/prospects", params={"filter[id]": "6..inf"})) == [6, 7]
    assert ids(api.get("/api/v2/prospects", params={"filter[id]": "neginf..2"})) == [1, 2]


def test_filter_updated_at_ranges_are_inclusive(outreach_server, api):
    """§4.1: updatedAt ranges a..b, a..inf, neginf..b, inclusive at both ends (SG adds 1 ms).
    The grammar with the server honouring its upper bounds: the §9 trap that drops them is
    pinned in test_outreach_receive.py."""
    outreach_server.app.config["upper_bound_ignored_rate"] = 0
    for i in range(3):
        make_prospects(api, {"firstName": f"P{i}"})
        outreach_server.app.clock.advance(1)
    # updatedAt: 12:47:26.000, :27.000, :28.000
    get = lambda value: ids(api.get("/api/v2/prospects", params={"filter[updatedAt]": value}))  # noqa: E731
    assert get("2024-01-11T12:47:27.000Z..inf") == [2, 3]
    assert get("2024-01-11T12:47:27.001Z..inf") == [3]
    assert get("neginf..2024-01-11T12:47:27.000Z") == [1, 2]
    assert get("2024-01-11T12:47:26.000Z..2024-01-11T12:47:27.000Z") == [1, 2]
    assert get("2024-01-12..inf") == []
    assert get("2024-01-11..inf") == [1, 2, 3]
    outreach_server.app.clock.advance(10)
    api.patch("/api/v2/prospects/1", doc("prospect", {"firstName": "changed"}, id=1))
    assert get("2024-01-11T12:47:30.000Z..inf") == [1]
    created = api.get("/api/v2/prospects", params={"filter[createdAt]": "2024-01-11T12:47:27.000Z..inf"})
    assert ids(created) == [2, 3]


def test_filter_by_account_and_owner_id(outreach_server, api):
    """§3.2, §3.3: filter[account][id] and filter[owner][id]."""
    other = outreach_server.app.add_user("o@corp.com", "o")
    api.post("/api/v2/accounts", doc("account", {"name": "A", "customId": "WB-A"}))
    api.post("/api/v2/accounts", doc("account", {"name": "B"}))
    api.post("/api/v2/prospects", doc("prospect", {}, {"account": rel("account", 1), "owner": rel("user", other)}))
    api.post("/api/v2/prospects", doc("prospect", {}, {"account": rel("account", 2)}))
    api.post("/api/v2/prospects", doc("prospect", {}))
    assert ids(api.get("/api/v2/prospects", params={"filter[account][id]": "2"})) == [2]
    assert ids(api.get("/api/v2/prospects", params={"filter[account][id]": "1,2"})) == [1, 2]
    assert ids(api.get("/api/v2/prospects", params={"filter[owner][id]": str(other)})) == [1]
    assert ids(api.get("/api/v2/prospects", params={"filter[account][customId]": "WB-A"})) == [1]
    assert ids(api.get("/api/v2/accounts", params={"filter[owner][id]": "1"})) == []


def test_filters_combine_with_and(api):
    """§4.1: several filters must all hold."""
    make_prospects(api, {"firstName": "Sally", "title": "CTO"}, {"firstName": "Sally", "title": "CEO"})
    assert ids(api.get("/api/v2/prospects", params={"filter[firstName]": "Sally", "filter[title]": "CEO"})) == [2]


def test_null_and_notnull(api):
    """§4.1: __null__ / __notnull__."""
    make_prospects(api, {"title": "CTO"}, {"firstName": "x"})
    assert ids(api.get("/api/v2/prospects", params={"filter[title]": "__null__"})) == [2]
    assert ids(api.get("/api/v2/prospects", params={"filter[title]": "__notnull__"})) == [1]


def test_new_filter_syntax(api):
    """§4.1: newFilterSyntax=true: [] lists, [gte]/[lte], and values with commas taken literally."""
    for name in ("Acme, Inc.", "Beta", "Gamma"):
        api.post("/api/v2/accounts", doc("account", {"name": name}))
    assert ids(api.get("/api/v2/accounts", params={"newFilterSyntax": "true", "filter[name]": "Acme, Inc."})) == [1]
    assert ids(api.get("/api/v2/accounts", params={"filter[name]": "Acme, Inc."})) == []  # legacy splits
    r = api.get("/api/v2/accounts", params=[("newFilterSyntax", "true"), ("filter[name][]", "Beta"),
                                            ("filter[name][]", "Gamma")])
    assert ids(r) == [2, 3]
    r = api.get("/api/v2/accounts", params={"newFilterSyntax": "true", "filter[id][gte]": "2", "filter[id][lte]": "2"})
    assert ids(r) == [2]
    r = api.get("/api/v2/accounts", params={"newFilterSyntax": "true",
                                            "filter[updatedAt][gte]": "2024-01-11T12:47:26.000Z"})
    assert ids(r) == [1, 2, 3]


def test_bracket_operators_need_new_filter_syntax(api):
    """§4.1: [gte]/[lte] require newFilterSyntax=true; without it → 400 [I]."""
    r = api.get("/api/v2/accounts", params={"filter[id][gte]": "2"})
    assert (r.status_code, err(r)["id"]) == (400, "filterParameter.invalidValue")


@pytest.mark.parametrize("name", ["externalId", "custom1", "company", "nope", "account"])
def test_non_filterable_attributes_are_400(api, name):
    """§3.1, §4.1 [I]: filtering on a non-filterable attribute (e.g. externalId) → 400."""
    r = api.get("/api/v2/prospects", params={f"filter[{name}]": "x"})
    assert r.status_code == 400
    assert err(r)["id"] == "filterParameter.unknownAttribute"
    assert r.headers["Content-Type"] == "application/vnd.api+json"


@pytest.mark.parametrize("key,value", [("filter[id]", "abc"), ("filter[id]", "1..x"),
                                       ("filter[updatedAt]", "yesterday..inf"), ("filter[named]", "maybe"),
                                       ("filter[buyerIntentScore]", "high")])
def test_bad_filter_values_are_400(api, key, value):
    """Issue #2: bad filter values answer 400 in the error shape, never crash."""
    r = api.get("/api/v2/accounts", params={key: value})
    assert (r.status_code, err(r)["id"]) == (400, "filterParameter.invalidValue")


def test_unnamed_accounts_are_hidden_from_the_index(outreach_server, api):
    """§3.2 [V]: "Only named accounts will show up on the collection index."""
    api.post("/api/v2/accounts", doc("account", {"name": "Shown"}))
    api.post("/api/v2/accounts", doc("account", {"name": "Hidden", "named": False}))
    assert ids(api.get("/api/v2/accounts")) == [1]
    assert ids(api.get("/api/v2/accounts", params={"filter[named]": "false"})) == [2]
    assert api.get("/api/v2/accounts/2").status_code == 200


def test_prefix_search_q(api):
    """§4.1 [S]: filter[q] prefix search on prospects and accounts."""
    make_prospects(api, {"firstName": "Sally"}, {"firstName": "Bob", "emails": ["sal@x.com"]}, {"firstName": "Al"})
    assert ids(api.get("/api/v2/prospects", params={"filter[q]": "sal"})) == [1, 2]


# ------------------------------------------------------------------------------------- sorting
def test_sort_ascending_descending_and_multi_key(api):
    """§4.2: sort=x, sort=-x, sort=a,-b; nulls last ascending."""
    make_prospects(api, {"firstName": "B", "lastName": "Z"}, {"firstName": "A", "lastName": "Y"},
                   {"firstName": "B", "lastName": "X"}, {"lastName": "W"})
    assert ids(api.get("/api/v2/prospects", params={"sort": "firstName"})) == [2, 1, 3, 4]
    assert ids(api.get("/api/v2/prospects", params={"sort": "-firstName"})) == [4, 1, 3, 2]
    assert ids(api.get("/api/v2/prospects", params={"sort": "firstName,-lastName"})) == [2, 1, 3, 4]
    assert ids(api.get("/api/v2/prospects", params={"sort": "-id"})) == [4, 3, 2, 1]


@pytest.mark.parametrize("sort", ["externalId", "account.name", "emails", "-nope"])
def test_bad_sort_is_400(api, sort):
    """§4.2: unsortable attributes and the deprecated relationship sort → 400 [I]."""
    r = api.get("/api/v2/prospects", params={"sort": sort})
    assert (r.status_code, err(r)["id"]) == (400, "sortParameter.unknownAttribute")


# -------------------------------------------------------------------------------------- paging
def test_default_page_is_50_and_next_link_carries_params(outreach_server, api):
    """§2, §4.3: default 50; links.next absolute, with the original params plus page[after]."""
    for i in range(120):
        outreach_server.app.insert("prospects", {"firstName": f"P{i:03d}", "title": "x"})
    r = api.get("/api/v2/prospects", params={"filter[title]": "x", "sort": "firstName"})
    body = r.json()
    assert len(body["data"]) == 50
    assert body["links"]["first"] == (f"{outreach_server.url}/api/v2/prospects?filter[title]=x&sort=firstName")
    nxt = body["links"]["next"]
    assert nxt.startswith(f"{outreach_server.url}/api/v2/prospects?filter[title]=x&sort=firstName&page[after]=")
    assert "prev" not in body["links"]
    seen = ids(r)
    while "next" in body["links"]:
        r = api.get(body["links"]["next"])
        body = r.json()
        seen += ids(r)
    assert seen == list(range(1, 121))
    assert len(body["data"]) == 20 and "next" not in body["links"] and "prev" in body["links"]


def test_cursor_is_opaque_base64_json_keyset(outreach_server, api):
    """§4.3 [C]: the cursor decodes to base64 JSON with the sort values and id."""
    for i in range(3):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    nxt = api.get("/api/v2/prospects", params={"page[size]": "2", "sort": "updatedAt"}).json()["links"]["next"]
    cursor = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(nxt).query))["page[after]"]
    payload = json.loads(base64.b64decode(cursor))
    assert payload == {"cn": "ApiV2::ProspectsController", "sp": "updatedAt,id",
                       "sv": ["2024-01-11T12:47:26.000Z"], "id": 2, "v": 1}


def test_keyset_paging_survives_inserts_and_deletes(outreach_server, api):
    """§4.3: a cursor is a position, not an offset: deleting seen rows skips nothing."""
    for i in range(6):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    r = api.get("/api/v2/prospects", params={"page[size]": "3"})
    assert ids(r) == [1, 2, 3]
    outreach_server.app.delete("prospects", 1)
    outreach_server.app.delete("prospects", 2)
    assert ids(api.get(r.json()["links"]["next"])) == [4, 5, 6]


def test_prev_link_goes_back(outreach_server, api):
    """§4.3 [S]: page[before] and links.prev."""
    for i in range(5):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    second = api.get(api.get("/api/v2/prospects", params={"page[size]": "2"}).json()["links"]["next"])
    assert ids(second) == [3, 4]
    assert ids(api.get(second.json()["links"]["prev"])) == [1, 2]


def test_page_size_limits(outreach_server, api):
    """§4.3, §10.9: page[size] up to 1000; above → 400 (default) or clamp (switch)."""
    outreach_server.app.insert("prospects", {"firstName": "A"})
    assert api.get("/api/v2/prospects", params={"page[size]": "1000"}).status_code == 200
    r = api.get("/api/v2/prospects", params={"page[size]": "1001"})
    assert (r.status_code, err(r)["id"]) == (400, "pageParameter.invalidValue")
    for bad in ("0", "-1", "ten"):
        assert api.get("/api/v2/prospects", params={"page[size]": bad}).status_code == 400
    outreach_server.app.config["page_size_over_max"] = "clamp"
    assert api.get("/api/v2/prospects", params={"page[size]": "5000"}).status_code == 200


@pytest.mark.parametrize("cursor", ["garbage", "e30=", base64.b64encode(b'{"cn":"x"}').decode(), "!!!"])
def test_bad_cursor_is_400(api, cursor):
    """§4.3: a cursor that is not ours → 400, never a crash."""
    r = api.get("/api/v2/prospects", params={"page[after]": cursor})
    assert (r.status_code, err(r)["id"]) == (400, "pageParameter.invalidValue")


def test_cursor_from_another_sort_is_400(outreach_server, api):
    """§4.3: a cursor is tied to its sort."""
    for i in range(3):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    nxt = api.get("/api/v2/prospects", params={"page[size]": "1"}).json()["links"]["next"]
    cursor = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(nxt).query))["page[after]"]
    r = api.get("/api/v2/prospects", params={"page[after]": cursor, "sort": "-id"})
    assert r.status_code == 400


def test_offset_paging_deprecated_mode(outreach_server, api):
    """§4.3: page[offset] (max 10,000) + page[limit]."""
    for i in range(5):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    r = api.get("/api/v2/prospects", params={"page[offset]": "2", "page[limit]": "2"})
    assert ids(r) == [3, 4]
    assert "page[offset]=4" in r.json()["links"]["next"]
    assert api.get("/api/v2/prospects", params={"page[offset]": "10001"}).status_code == 400


def test_count(outreach_server, api):
    """§4.4: count=true → meta.count and count_truncated; no count by default (new apps)."""
    for i in range(3):
        outreach_server.app.insert("prospects", {"firstName": f"P{i}"})
    body = api.get("/api/v2/prospects", params={"count": "true", "page[size]": "1"}).json()
    assert body["meta"] == {"count": 3, "count_truncated": False}
    assert "count" not in api.get("/api/v2/prospects").json()["meta"]
    assert "count" not in api.get("/api/v2/prospects", params={"count": "false"}).json()["meta"]
    outreach_server.app.config["count_default"] = True
    assert api.get("/api/v2/prospects").json()["meta"]["count"] == 3


def test_empty_collection(api):
    """§4.3: no data → empty list, links.first only."""
    body = api.get("/api/v2/accounts").json()
    assert body["data"] == [] and set(body["links"]) == {"first"}


# --------------------------------------------------------------------------- include / fields
def test_include_related_account_and_owner(api):
    """§2.5: include=account,owner adds the related resources once each."""
    api.post("/api/v2/accounts", doc("account", {"name": "Acme"}))
    for _ in range(2):
        api.post("/api/v2/prospects", doc("prospect", {}, {"account": rel("account", 1), "owner": rel("user", 1)}))
    body = api.get("/api/v2/prospects", params={"include": "account,owner"}).json()
    assert [(r["type"], r["id"]) for r in body["included"]] == [("account", 1), ("user", 1)]
    one = api.get("/api/v2/prospects/1", params={"include": "account"}).json()
    assert one["included"][0]["attributes"]["name"] == "Acme"
    assert api.get("/api/v2/prospects", params={"include": "mailings"}).status_code == 400


def test_sparse_fieldsets(api):
    """§2.5: fields[prospect]=a,b; unknown field → 400 fieldsParameter.unknownResourceField."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A", "lastName": "B"}))
    data = api.get("/api/v2/prospects/1", params={"fields[prospect]": "firstName,account"}).json()["data"]
    assert data["attributes"] == {"firstName": "A"}
    assert list(data["relationships"]) == ["account"]
    r = api.get("/api/v2/prospects", params={"fields[prospect]": "firstName,bogus"})
    assert (r.status_code, err(r)["id"]) == (400, "fieldsParameter.unknownResourceField")
