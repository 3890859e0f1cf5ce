"""Contract tests of the Outreach emulator's resources: shapes (§2), attributes (§3) and validation
(§5) of reference/outreach-api.md, over real HTTP. Helpers here are shared by test_outreach_*.py."""
from __future__ import annotations

import json
import re

import pytest
import requests

from tools.emulators.core import parse_iso

JSONAPI = "application/vnd.api+json"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
T0 = "2024-01-11T12:47:26.000Z"
ALL_SCOPES = "prospects.all accounts.all users.all"


class Api:
    """A minimal JSON:API client bound to one access token."""

    def __init__(self, url: str, token: str | None):
        self.url, self.token = url, token

    def request(self, method, path, body=None, params=None, content_type=JSONAPI, headers=None):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            h["Content-Type"] = content_type
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        h.update(headers or {})
        url = path if path.startswith("http") else self.url + path
        return requests.request(method, url, data=data, params=params, headers=h, timeout=10,
                                allow_redirects=False)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def freeze(server, when: str = T0) -> None:
    server.app.clock.freeze(True)
    server.app.clock.set(parse_iso(when))


def connect(server, scopes: str = ALL_SCOPES, email="rep@corp.com", username="rep") -> tuple[Api, int]:
    uid = server.app.add_user(email, username, "Rita", "Rep")
    token = server.app.issue_tokens(uid, scopes)["access_token"]
    return Api(server.url, token), uid


def doc(kind: str, attributes: dict | None = None, relationships: dict | None = None, **extra) -> dict:
    data = {"type": kind, **extra}
    if attributes is not None:
        data["attributes"] = attributes
    if relationships is not None:
        data["relationships"] = relationships
    return {"data": data}


def rel(kind: str, rid) -> dict:
    return {"data": None if rid is None else {"type": kind, "id": rid}}


def err(response) -> dict:
    return response.json()["errors"][0]


@pytest.fixture
def api(outreach_server):
    freeze(outreach_server)
    client, _ = connect(outreach_server)
    return client


# ------------------------------------------------------------------------------------- §2 shapes
def test_create_prospect_201_full_shape(outreach_server, api):
    """§2.1, §2.3: 201, integer id, links.self, to-one data, to-many links only, ms timestamps."""
    uid = outreach_server.app.add_user("owner@corp.com", "owner")
    account = api.post("/api/v2/accounts", doc("account", {"name": "Acme Corporation"})).json()["data"]
    r = api.post("/api/v2/prospects", doc(
        "prospect", {"firstName": "Sally", "lastName": "Smith", "emails": ["sally@acme.com"], "tags": ["workbooks"]},
        {"account": rel("account", account["id"]), "owner": rel("user", uid)}))
    assert r.status_code == 201
    assert r.headers["Content-Type"] == JSONAPI
    data = r.json()["data"]
    assert data["type"] == "prospect" and data["id"] == 1 and isinstance(data["id"], int)
    assert data["links"] == {"self": f"{outreach_server.url}/api/v2/prospects/1"}
    assert data["relationships"]["account"] == {"data": {"type": "account", "id": account["id"]}}
    assert data["relationships"]["owner"] == {"data": {"type": "user", "id": uid}}
    assert data["relationships"]["mailings"] == {
        "links": {"related": f"{outreach_server.url}/api/v2/mailings?filter[prospect][id]=1"}}
    assert data["relationships"]["favorites"] == {"meta": {"count": 0}}  # neither data nor links
    attrs = data["attributes"]
    assert attrs["createdAt"] == attrs["updatedAt"] == "2024-01-11T12:47:26.000Z"
    assert attrs["name"] == "Sally Smith"  # §3.1 read-only full name
    assert attrs["company"] == "Acme Corporation"  # §3.1 account's name when unset
    assert attrs["externalSource"] == "outreach-api"
    assert attrs["custom150"] is None and "custom151" not in attrs
    assert attrs["emails"] == ["sally@acme.com"] and attrs["tags"] == ["workbooks"]


def test_create_account_example_of_reference(outreach_server, api):
    """§2.3: the account example → 201 with links.self and the owner relationship."""
    uid = outreach_server.app.add_user("five@corp.com", "five")
    r = api.post("/api/v2/accounts", doc("account", {
        "name": "Acme Corporation", "domain": "acme.com", "websiteUrl": "https://www.acme.com",
        "industry": "Manufacturing", "numberOfEmployees": 250, "customId": "WB-ORG-123", "custom1": "x"},
        {"owner": rel("user", uid)}))
    assert r.status_code == 201
    data = r.json()["data"]
    assert data["links"]["self"] == f"{outreach_server.url}/api/v2/accounts/{data['id']}"
    assert data["attributes"]["numberOfEmployees"] == 250
    assert data["attributes"]["customId"] == "WB-ORG-123"
    assert data["attributes"]["named"] is True
    assert data["relationships"]["owner"] == {"data": {"type": "user", "id": uid}}
    assert data["relationships"]["prospects"] == {
        "links": {"related": f"{outreach_server.url}/api/v2/prospects?filter[account][id]={data['id']}"}}


def test_get_one_and_missing_is_404_resource_not_found(api):
    """§5.2: 404 resourceNotFound with the documented detail text."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    assert api.get("/api/v2/prospects/1").json()["data"]["attributes"]["firstName"] == "A"
    r = api.get("/api/v2/prospects/99")
    assert r.status_code == 404 and r.headers["Content-Type"] == JSONAPI
    assert r.json() == {"errors": [{"id": "resourceNotFound", "title": "Resource Not Found",
                                    "detail": "Could not find 'prospect' with ID '99'."}]}
    assert err(api.get("/api/v2/accounts/abc"))["detail"] == "Could not find 'account' with ID 'abc'."


def test_patch_changes_only_sent_attributes_and_bumps_updated_at(outreach_server, api):
    """§2.4: 200; only sent attributes change; arrays replaced whole; updatedAt bumped."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "Sally", "title": "CTO",
                                                   "emails": ["sally@acme.com"]}))
    outreach_server.app.clock.advance(90.5)
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"title": "CEO",
                                                           "emails": ["sally@acme.com", "s.smith@acme.com"]}, id=1))
    assert r.status_code == 200
    attrs = r.json()["data"]["attributes"]
    assert attrs["title"] == "CEO" and attrs["firstName"] == "Sally"
    assert attrs["emails"] == ["sally@acme.com", "s.smith@acme.com"]
    assert attrs["createdAt"] == "2024-01-11T12:47:26.000Z"
    assert attrs["updatedAt"] == "2024-01-11T12:48:56.500Z"


def test_patch_without_change_keeps_updated_at(outreach_server, api):
    """§2.1 / DESIGN: updatedAt moves only on a real change."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "Sally"}))
    outreach_server.app.clock.advance(60)
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"firstName": "Sally"}, id=1))
    assert r.status_code == 200
    assert r.json()["data"]["attributes"]["updatedAt"] == "2024-01-11T12:47:26.000Z"


def test_patch_accepts_string_id_matching_url(api):
    """§2.4: data.id must equal the URL id (JSON:API clients may send it as a string)."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    assert api.patch("/api/v2/prospects/1", doc("prospect", {"firstName": "B"}, id="1")).status_code == 200


def test_patch_id_mismatch_is_409(api):
    """§2.4 [I]: a body id differing from the URL → 409 (JSON:API; Outreach's status is unknown)."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "B"}))
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"firstName": "C"}, id=2))
    assert r.status_code == 409 and err(r)["id"] == "conflict"
    assert api.get("/api/v2/prospects/1").json()["data"]["attributes"]["firstName"] == "A"


def test_patch_requires_type_and_id(api):
    """§2.4: data.type and data.id are required (OAS); wrong envelope → 422 pointer /data (§5.2)."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    r = api.patch("/api/v2/prospects/1", {"data": {"type": "prospect", "attributes": {"firstName": "B"}}})
    assert r.status_code == 422
    assert err(r) == {"id": "validationError", "title": "Validation Error", "detail": "Id can't be blank.",
                      "source": {"pointer": "/data"}}
    r = api.patch("/api/v2/prospects/1", {"data": {"id": 1, "attributes": {"firstName": "B"}}})
    assert r.status_code == 422 and err(r)["source"] == {"pointer": "/data"}
    r = api.patch("/api/v2/prospects/1", doc("account", {"name": "B"}, id=1))
    assert r.status_code == 409


def test_patch_and_delete_missing_are_404(api):
    """§2.2, §5.2: PATCH/DELETE on a missing id → 404 resourceNotFound."""
    r = api.patch("/api/v2/prospects/7", doc("prospect", {"firstName": "B"}, id=7))
    assert r.status_code == 404 and err(r)["detail"] == "Could not find 'prospect' with ID '7'."
    assert api.delete("/api/v2/accounts/7").status_code == 404


def test_delete_204_then_gone(api):
    """§2.2: DELETE → 204 with no body; afterwards 404."""
    api.post("/api/v2/accounts", doc("account", {"name": "Acme"}))
    r = api.delete("/api/v2/accounts/1")
    assert r.status_code == 204 and r.content == b""
    assert api.get("/api/v2/accounts/1").status_code == 404


def test_relationship_to_missing_account_is_422(api):
    """§2.3 / issue #2: a relationship to a record that does not exist → 422 with its pointer."""
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}, {"account": rel("account", 42)}))
    assert r.status_code == 422
    assert err(r) == {"id": "validationError", "title": "Validation Error",
                      "detail": "Could not find 'account' with ID '42'.",
                      "source": {"pointer": "/data/relationships/account"}}
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}, {"owner": rel("user", 999)}))
    assert r.status_code == 422 and err(r)["source"]["pointer"] == "/data/relationships/owner"
    r = api.post("/api/v2/prospects", doc("prospect", {}, {"account": rel("user", 1)}))
    assert r.status_code == 422 and err(r)["source"]["pointer"] == "/data/relationships/account"
    assert api.get("/api/v2/prospects").json()["data"] == []


def test_null_relationship_clears_account(api):
    """§2.3: relationships.account.data null clears the link; company falls back to unset."""
    api.post("/api/v2/accounts", doc("account", {"name": "Acme"}))
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}, {"account": rel("account", 1)}))
    r = api.patch("/api/v2/prospects/1", doc("prospect", relationships={"account": rel("account", None)}, id=1))
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["relationships"]["account"] == {"data": None}
    assert data["attributes"]["company"] is None


def test_explicit_company_wins_over_account_name(api):
    """§3.1: company is the account's name only when not set."""
    api.post("/api/v2/accounts", doc("account", {"name": "Acme"}))
    r = api.post("/api/v2/prospects", doc("prospect", {"company": "Acme Ltd"}, {"account": rel("account", 1)}))
    assert r.json()["data"]["attributes"]["company"] == "Acme Ltd"


def test_unknown_and_read_only_attributes_are_400(api):
    """§2.5, §5.2: unknown or non-writable attribute → 400 permittedParams.unknownAttribute."""
    r = api.post("/api/v2/prospects", doc("prospect", {"linkedinUrl": "x"}))  # case-sensitive name
    assert r.status_code == 400
    assert err(r)["id"] == "permittedParams.unknownAttribute"
    assert err(r)["source"] == {"pointer": "/data/attributes/linkedinUrl"}
    for read_only in ("name", "createdAt", "updatedAt", "externalSource", "openCount", "optedOutAt"):
        r = api.post("/api/v2/prospects", doc("prospect", {read_only: None}))
        assert (r.status_code, err(r)["id"]) == (400, "permittedParams.unknownAttribute"), read_only
    r = api.post("/api/v2/accounts", doc("account", {"name": "A", "custom151": "x"}))
    assert r.status_code == 400
    assert api.get("/api/v2/prospects", params={"count": "true"}).json()["meta"]["count"] == 0


def test_client_generated_id_rejected(api):
    """JSON:API guess [I]: POST with data.id → 403; nothing created."""
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}, id=5))
    assert r.status_code == 403 and err(r)["id"] == "clientGeneratedIdNotSupported"


def test_post_type_mismatch_is_409(api):
    """JSON:API guess [I]: a POST of another type into the collection → 409."""
    r = api.post("/api/v2/prospects", doc("account", {"name": "A"}))
    assert r.status_code == 409 and err(r)["id"] == "conflict"


def test_bad_json_and_bad_envelope(api):
    """Issue #2: malformed bodies get the API's error shape, never a crash."""
    r = api.post("/api/v2/prospects", "{not json")
    assert r.status_code == 400 and err(r)["id"] == "badRequest"
    for body in ("[]", "null", '"x"', "{}", '{"data": []}', '{"data": "x"}'):
        r = api.post("/api/v2/prospects", body)
        assert r.status_code == 422, body
        assert err(r)["source"] == {"pointer": "/data"}
    r = api.post("/api/v2/prospects", {"data": {"type": "prospect", "attributes": ["x"]}})
    assert r.status_code == 422 and err(r)["source"] == {"pointer": "/data/attributes"}


# ------------------------------------------------------------------------------ media type (§2)
def test_strict_content_type_415_with_details_key(api):
    """§2 [V] DOC-MR: wrong Content-Type → 415 with the documented body (note `details`)."""
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}), content_type="application/json")
    assert r.status_code == 415
    assert r.headers["Content-Type"] == JSONAPI
    assert r.json() == {"errors": [{"id": "unsupportedMediaType", "title": "Unsupported Media Type",
                                    "details": "Expected Content-Type header to be 'application/vnd.api+json'."}]}
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"firstName": "B"}, id=1), content_type="text/plain")
    assert r.status_code == 415


def test_content_type_switch_accepts_application_json(outreach_server, api):
    """§2 caveat, §10.4: strict_content_type=false also accepts application/json."""
    outreach_server.app.config["strict_content_type"] = False
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}), content_type="application/json")
    assert r.status_code == 201 and r.headers["Content-Type"] == JSONAPI
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}), content_type="text/plain")
    assert r.status_code == 415


def test_charset_parameter_is_accepted(api):
    """§2: the media type is what counts; a charset parameter does not make it another type."""
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}),
                 content_type="application/vnd.api+json; charset=utf-8")
    assert r.status_code == 201


# ----------------------------------------------------------------------------- attributes (§3)
def test_custom_fields_1_to_150_and_their_limit(api):
    """§3.1: custom1..custom150, strings up to 32000; longer → 422 validationDataTooLongError."""
    r = api.post("/api/v2/prospects", doc("prospect", {"custom1": "a", "custom150": "z" * 32000}))
    assert r.status_code == 201
    assert r.json()["data"]["attributes"]["custom150"] == "z" * 32000
    r = api.post("/api/v2/prospects", doc("prospect", {"custom7": "z" * 32001}))
    assert r.status_code == 422
    assert r.json() == {"errors": [{"id": "validationDataTooLongError", "title": "Validation Data Too Long Error",
                                    "detail": "Data provided is too long."}]}
    assert api.post("/api/v2/prospects", doc("prospect", {"custom151": "x"})).status_code == 400


@pytest.mark.parametrize("attribute,limit", [("firstName", 255), ("title", 255), ("addressCity", 255),
                                             ("externalId", 255), ("linkedInUrl", 1000),
                                             ("personalNote1", 65535)])
def test_prospect_string_limits(api, attribute, limit):
    """§3.1 max lengths: exactly the limit passes, one more is 422 validationDataTooLongError."""
    assert api.post("/api/v2/prospects", doc("prospect", {attribute: "x" * limit})).status_code == 201
    r = api.post("/api/v2/prospects", doc("prospect", {attribute: "x" * (limit + 1)}))
    assert (r.status_code, err(r)["id"]) == (422, "validationDataTooLongError")


def test_string_max_length_switch_models_jellyfish_50(outreach_server, api):
    """§3.1: JF's mock rejects names over 50; string_max_length=50 applies that to 255-char strings."""
    outreach_server.app.config["string_max_length"] = 50
    assert api.post("/api/v2/prospects", doc("prospect", {"firstName": "x" * 50})).status_code == 201
    r = api.post("/api/v2/prospects", doc("prospect", {"lastName": "x" * 51}))
    assert (r.status_code, err(r)["id"]) == (422, "validationDataTooLongError")
    r = api.post("/api/v2/accounts", doc("account", {"name": "x" * 51}))
    assert r.status_code == 422
    assert api.post("/api/v2/prospects", doc("prospect", {"custom1": "x" * 51})).status_code == 201


@pytest.mark.parametrize("kind,attribute,value", [
    ("account", "numberOfEmployees", "250"), ("account", "numberOfEmployees", True),
    ("account", "named", "yes"), ("account", "tags", "a,b"), ("account", "buyerIntentScore", "high"),
    ("prospect", "firstName", 5), ("prospect", "tags", [1, 2]), ("prospect", "emails", "a@b.com"),
    ("prospect", "optedOut", "true"), ("prospect", "dateOfBirth", "11/01/1990"),
    ("prospect", "addedAt", "yesterday"), ("prospect", "score", "1.5")])
def test_wrong_type_is_422_with_pointer(api, kind, attribute, value):
    """§5.2: a wrongly typed attribute → 422 validationError pointing at it."""
    attrs = {attribute: value, **({"name": "Acme"} if kind == "account" and attribute != "name" else {})}
    r = api.post(f"/api/v2/{kind}s", doc(kind, attrs))
    assert r.status_code == 422
    assert err(r)["id"] == "validationError"
    assert err(r)["source"] == {"pointer": f"/data/attributes/{attribute}"}


def test_account_requires_a_name(api):
    """§5.1 documented example: "Name can't be blank." pointer /data/attributes/name."""
    r = api.post("/api/v2/accounts", doc("account", {"domain": "acme.com"}))
    assert r.status_code == 422
    assert r.json() == {"errors": [{"id": "validationError", "title": "Validation Error",
                                    "detail": "Name can't be blank.",
                                    "source": {"pointer": "/data/attributes/name"}}]}


def test_accounts_accept_duplicate_names_and_custom_ids(api):
    """R2.6 [V]: account name is not unique; customId not enforced by default."""
    for _ in range(2):
        r = api.post("/api/v2/accounts", doc("account", {"name": "Acme", "customId": "WB-1"}))
        assert r.status_code == 201
    assert [a["id"] for a in api.get("/api/v2/accounts", params={"filter[name]": "Acme"}).json()["data"]] == [1, 2]


def test_strict_account_custom_id_switch(outreach_server, api):
    """R2.6 [I]: strict_account_custom_id → duplicate customId 422 pointer /data/attributes/customId."""
    outreach_server.app.config["strict_account_custom_id"] = True
    assert api.post("/api/v2/accounts", doc("account", {"name": "A", "customId": "WB-1"})).status_code == 201
    r = api.post("/api/v2/accounts", doc("account", {"name": "B", "customId": "WB-1"}))
    assert r.status_code == 422 and err(r)["source"] == {"pointer": "/data/attributes/customId"}
    # re-asserting its own customId on PATCH is fine
    assert api.patch("/api/v2/accounts/1", doc("account", {"customId": "WB-1"}, id=1)).status_code == 200


def test_opted_out_stamps_opted_out_at(outreach_server, api):
    """§3.1: setting optedOut true stamps optedOutAt; false reverts."""
    api.post("/api/v2/prospects", doc("prospect", {"firstName": "A"}))
    outreach_server.app.clock.advance(10)
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"optedOut": True}, id=1))
    assert r.json()["data"]["attributes"]["optedOutAt"] == "2024-01-11T12:47:36.000Z"
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"optedOut": False}, id=1))
    assert r.json()["data"]["attributes"]["optedOutAt"] is None


def test_datetime_attributes_are_normalised_to_ms_utc(api):
    """§2.1: date-times come back ISO 8601 UTC with milliseconds."""
    r = api.post("/api/v2/prospects", doc("prospect", {"addedAt": "2024-03-01T10:00:00+02:00",
                                                       "dateOfBirth": "1990-01-11"}))
    attrs = r.json()["data"]["attributes"]
    assert attrs["addedAt"] == "2024-03-01T08:00:00.000Z"
    assert attrs["dateOfBirth"] == "1990-01-11"
    assert ISO_MS.match(attrs["createdAt"])


def test_users_read_and_shape(outreach_server, api):
    """§3.3: users are readable with email, username, name; custom1..5 limit 225."""
    r = api.get("/api/v2/users/1")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["type"] == "user" and data["id"] == 1
    assert data["attributes"]["email"] == "rep@corp.com"
    assert data["attributes"]["username"] == "rep"
    assert data["attributes"]["name"] == "Rita Rep"
    assert data["attributes"]["locked"] is False
    assert data["links"]["self"] == f"{outreach_server.url}/api/v2/users/1"
    assert api.patch("/api/v2/users/1", doc("user", {"custom5": "x" * 225}, id=1)).status_code == 200
    r = api.patch("/api/v2/users/1", doc("user", {"custom5": "x" * 226}, id=1))
    assert (r.status_code, err(r)["id"]) == (422, "validationDataTooLongError")
    assert api.patch("/api/v2/users/1", doc("user", {"custom6": "x"}, id=1)).status_code == 400


def test_user_email_cannot_be_updated_and_delete_is_405(api):
    """§3.3: user email "Cannot be updated via the API"; the API has no DELETE /users."""
    r = api.patch("/api/v2/users/1", doc("user", {"email": "new@corp.com"}, id=1))
    assert (r.status_code, err(r)["id"]) == (400, "permittedParams.unknownAttribute")
    r = api.delete("/api/v2/users/1")
    assert r.status_code == 405 and err(r)["id"] == "methodNotAllowed"


# ------------------------------------------------------------------------------ validation (§5)
def test_duplicate_email_on_create_is_422_case_insensitive(api):
    """§5.2: one prospect per email; the exact body Jellyfish matches in production."""
    assert api.post("/api/v2/prospects", doc("prospect", {"emails": ["sally@acme.com"]})).status_code == 201
    r = api.post("/api/v2/prospects", doc("prospect", {"emails": ["other@acme.com", "SALLY@Acme.com"]}))
    assert r.status_code == 422
    assert r.json() == {"errors": [{"id": "validationError", "title": "Validation Error",
                                    "detail": "Contacts email hash has already been taken.",
                                    "source": {"pointer": "/data"}}]}
    assert api.get("/api/v2/prospects", params={"count": "true"}).json()["meta"]["count"] == 1


def test_duplicate_email_on_update_is_422(api):
    """§5.2: uniqueness holds on PATCH too, but a prospect may keep its own email."""
    api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]}))
    api.post("/api/v2/prospects", doc("prospect", {"emails": ["b@acme.com"]}))
    r = api.patch("/api/v2/prospects/2", doc("prospect", {"emails": ["b@acme.com", "A@acme.com"]}, id=2))
    assert r.status_code == 422 and err(r)["detail"] == "Contacts email hash has already been taken."
    r = api.patch("/api/v2/prospects/2", doc("prospect", {"emails": ["b@acme.com"], "title": "x"}, id=2))
    assert r.status_code == 200


def test_email_freed_after_delete_and_after_change(api):
    """§5.2: uniqueness is against current prospects only."""
    api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]}))
    api.patch("/api/v2/prospects/1", doc("prospect", {"emails": ["z@acme.com"]}, id=1))
    assert api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]})).status_code == 201
    api.delete("/api/v2/prospects/2")
    assert api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]})).status_code == 201


def test_reject_duplicate_emails_switch(outreach_server, api):
    """R2.6 / §10.8: reject_duplicate_emails=false models "Purposeful Duplicates"."""
    outreach_server.app.config["reject_duplicate_emails"] = False
    for _ in range(2):
        assert api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]})).status_code == 201
    found = api.get("/api/v2/prospects", params={"filter[emails]": "a@acme.com"}).json()["data"]
    assert [p["id"] for p in found] == [1, 2]


def test_excluded_domain_on_create_and_update(outreach_server, api):
    """§5.2: the org's excluded domains → 422 on POST and PATCH."""
    outreach_server.app.config["excluded_domains"] = ["corp.com"]
    r = api.post("/api/v2/prospects", doc("prospect", {"emails": ["boss@CORP.com"]}))
    assert r.status_code == 422
    assert r.json() == {"errors": [{"id": "validationError", "title": "Validation Error",
                                    "detail": "Contacts contact is using an excluded email address.",
                                    "source": {"pointer": "/data"}}]}
    api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]}))
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"emails": ["a@acme.com", "x@corp.com"]}, id=1))
    assert r.status_code == 422 and err(r)["detail"] == "Contacts contact is using an excluded email address."
    assert api.get("/api/v2/prospects/1").json()["data"]["attributes"]["emails"] == ["a@acme.com"]


def test_malformed_email_is_422_pointer_emails(api):
    """§5.2: a bad email → 422 validationError pointer /data/attributes/emails."""
    r = api.post("/api/v2/prospects", doc("prospect", {"emails": ["not-an-email"]}))
    assert r.status_code == 422
    assert err(r)["id"] == "validationError"
    assert err(r)["source"] == {"pointer": "/data/attributes/emails"}


def test_patch_unchanged_email_switch(outreach_server, api):
    """§5.2, §10.6 [I]: patch_unchanged_email_error → re-asserting the same emails gives
    validationDuplicateValueError; off by default."""
    api.post("/api/v2/prospects", doc("prospect", {"emails": ["a@acme.com"]}))
    assert api.patch("/api/v2/prospects/1", doc("prospect", {"emails": ["a@acme.com"]}, id=1)).status_code == 200
    outreach_server.app.config["patch_unchanged_email_error"] = True
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"emails": ["A@acme.com"]}, id=1))
    assert r.status_code == 422
    assert r.json() == {"errors": [{"id": "validationDuplicateValueError",
                                    "title": "Validation Duplicate Value Error",
                                    "detail": "A Contact with this email_hash already exists."}]}
    r = api.patch("/api/v2/prospects/1", doc("prospect", {"emails": ["a@acme.com", "b@acme.com"]}, id=1))
    assert r.status_code == 200


def test_prospect_without_emails_is_allowed(api):
    """§9 (jellyfish#2207): creating a prospect without emails works; emails renders []."""
    r = api.post("/api/v2/prospects", doc("prospect", {"firstName": "NoMail"}))
    assert r.status_code == 201 and r.json()["data"]["attributes"]["emails"] == []
