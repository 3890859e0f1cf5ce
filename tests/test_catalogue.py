"""plugin/catalogue.py: the prospect and account attributes are Outreach's OpenAPI facts (reference
outreach-api.md §12, outreach-attributes.json), read from the copy the plugin ships; only the
documented overrides differ from the extract."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin import catalogue

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "outreach-attributes.json"
SHIPPED = json.loads(catalogue.ATTRIBUTES_PATH.read_text(encoding="utf-8"))["objects"]
# §3.1/§3.2: no readonly badge in the OAS, but server-set for the plugin.
SERVER_SET = {("prospect", "externalSource"), ("account", "externalSource")}


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference is not beside this checkout")
def test_the_shipped_copy_is_the_reference_extract():
    assert catalogue.ATTRIBUTES_PATH.read_bytes() == REFERENCE.read_bytes()


def test_the_shipped_copy_is_inside_the_plugin_package():
    assert catalogue.ATTRIBUTES_PATH.relative_to(ROOT / "plugin")


@pytest.mark.parametrize("kind", ["prospect", "account"])
def test_every_oas_attribute_is_in_the_catalogue_with_its_facts(kind):
    for name, spec in SHIPPED[kind]["attributes"].items():
        attr = catalogue.attribute(kind, name)
        assert attr is not None, name
        assert attr.max_length == spec.get("maxLength"), name
        assert attr.filterable == bool(spec.get("filterable")), name
        assert attr.sortable == bool(spec.get("sortable")), name
        if (kind, name) not in SERVER_SET:
            assert attr.writable == (not spec.get("readonly")), name
    assert set(catalogue.names(kind)) == set(SHIPPED[kind]["attributes"])


@pytest.mark.parametrize("kind,name,limit", [
    ("prospect", "twitterUrl", 1000), ("prospect", "facebookUrl", 255), ("prospect", "githubUrl", 1000),
    ("prospect", "stackOverflowUrl", 1000), ("prospect", "linkedInId", 255), ("prospect", "linkedInUrl", 1000),
    ("account", "locality", 255), ("account", "companyType", 255), ("account", "tickerSymbol", 255),
    ("account", "annualRevenueRange", 255), ("account", "sharingTeamId", 255)])
def test_the_limits_the_issue_found_missing(kind, name, limit):
    """Issue 16 §3: limits the OAS gives and the catalogue did not know (§12's examples first)."""
    assert catalogue.attribute(kind, name).max_length == limit


def test_types_come_from_the_oas_types_and_formats():
    assert catalogue.attribute("prospect", "emails").type == catalogue.LIST
    assert catalogue.attribute("prospect", "emails").format == "email"
    assert catalogue.attribute("prospect", "dateOfBirth").type == catalogue.DATE
    assert catalogue.attribute("prospect", "addedAt").type == catalogue.DATETIME
    assert catalogue.attribute("prospect", "score").type == catalogue.NUMBER
    assert catalogue.attribute("prospect", "linkedInConnections").type == catalogue.INTEGER
    assert catalogue.attribute("account", "named").type == catalogue.BOOLEAN
    assert catalogue.attribute("account", "naicsCodes").type == catalogue.LIST


def test_server_set_and_read_only_attributes_are_not_writable():
    for kind, name in SERVER_SET | {("prospect", "name"), ("prospect", "createdAt"), ("account", "touchedAt")}:
        assert not catalogue.attribute(kind, name).writable, (kind, name)
    assert "externalSource" not in catalogue.writable_names("prospect")


def test_custom_fields_1_to_150():
    for kind in ("prospect", "account"):
        customs = [n for n in catalogue.names(kind) if n.startswith("custom") and n[6:].isdigit()]
        assert sorted(int(n[6:]) for n in customs) == list(range(1, catalogue.CUSTOM_FIELD_COUNT + 1))
        assert {catalogue.attribute(kind, n).max_length for n in customs} == {catalogue.CUSTOM_FIELD_MAX_LENGTH}
