"""The Outreach emulator's attribute limits follow Outreach's OpenAPI document (reference
outreach-api.md §12, the extract outreach-attributes.json): every prospect and account string
with a maxLength accepts exactly that many characters and answers one more with 422
validationDataTooLongError (§5.2); the 255-character ones follow the string_max_length switch."""
from __future__ import annotations

import json

import pytest

from tests.emulators.test_outreach_contract import api, doc, err  # noqa: F401 — `api` is a fixture
from tools.emulators.outreach import OAS_ATTRIBUTES

OAS = json.loads(OAS_ATTRIBUTES.read_text(encoding="utf-8"))["objects"]
# §3.1/§3.2: no readonly badge, but treated as server-set (refused as unknown on write).
SERVER_SET = {("prospect", "externalSource"), ("account", "externalSource")}


def _limited(kind: str) -> list[tuple[str, str, int]]:
    """Writable strings with a maxLength; of custom1..custom150 (all alike) the first and last."""
    return [(kind, name, spec["maxLength"]) for name, spec in OAS[kind]["attributes"].items()
            if spec.get("type") == "string" and spec.get("maxLength") and not spec.get("readonly")
            and (kind, name) not in SERVER_SET and name not in _MIDDLE_CUSTOM]


_MIDDLE_CUSTOM = {f"custom{n}" for n in range(2, 150)}


def _post(api, kind: str, attributes: dict):
    if kind == "account":
        attributes = {"name": "Acme", **attributes}
    return api.post(f"/api/v2/{kind}s", doc(kind, attributes))


def test_the_issue_s_examples_are_in_the_extract():
    """§12 names them: prospect twitterUrl 1000, facebookUrl 255, githubUrl 1000; account locality 255."""
    limits = {(k, n): m for k, n, m in _limited("prospect") + _limited("account")}
    assert limits[("prospect", "twitterUrl")] == 1000
    assert limits[("prospect", "facebookUrl")] == 255
    assert limits[("prospect", "githubUrl")] == 1000
    assert limits[("account", "locality")] == 255


@pytest.mark.parametrize("kind,name,limit", _limited("prospect") + _limited("account"))
def test_every_oas_string_limit_is_enforced(api, kind, name, limit):
    """§12, §5.2: exactly maxLength characters pass; one more is 422 validationDataTooLongError."""
    assert _post(api, kind, {name: "x" * limit}).status_code == 201
    r = _post(api, kind, {name: "x" * (limit + 1)})
    assert (r.status_code, err(r)["id"]) == (422, "validationDataTooLongError")


@pytest.mark.parametrize("kind,name", [("prospect", "twitterUrl"), ("prospect", "facebookUrl"),
                                       ("account", "locality"), ("account", "tickerSymbol")])
def test_the_string_max_length_switch_covers_only_the_255_character_strings(outreach_server, api, kind, name):
    """§3.1, §12: string_max_length=50 (JF's mock) applies to every 255-character string and to
    no other limit (twitterUrl stays at 1000)."""
    outreach_server.app.config["string_max_length"] = 50
    limit = OAS[kind]["attributes"][name]["maxLength"]
    if limit == 255:
        assert _post(api, kind, {name: "x" * 50}).status_code == 201
        assert _post(api, kind, {name: "x" * 51}).status_code == 422
    else:
        assert _post(api, kind, {name: "x" * limit}).status_code == 201
        assert _post(api, kind, {name: "x" * (limit + 1)}).status_code == 422
