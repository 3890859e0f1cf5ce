"""End to end (issue 16 §3): Outreach's attribute limits from its OpenAPI document (reference
outreach-api.md §12) against the faithful Outreach emulator. The shipped mapping's own fields for
prospect `twitterUrl` (1000 characters) and account `locality` (255) are used as shipped, fed from
Workbooks text fields long enough to break the limits (Workbooks' own string fields stop at 255).

Before the fix the plugin sent both values, and the emulator, like Outreach, refused them with 422
validationDataTooLongError, whose body names no attribute: the organisation was flagged and its
people went unrelated, the person was flagged with "Data provided is too long.". Now the town is
cut (`truncate`), and the web address, which a cut would spoil (`max_length`), never leaves: its
record is flagged with the Workbooks field and the limit named."""
from __future__ import annotations

import pytest
import yaml

from plugin.mapping import DEFAULT_MAPPING_PATH
from tests.mapping_helpers import bundled
from tests.sync_harness import Sandbox

LONG_URL = "https://social.example/" + "x" * 1000          # 1,023 characters
LONG_TOWN = "Llanfair " * 40                                 # 360 characters


def _fed_from(fields: list[dict], target: str, source: dict) -> None:
    """The shipped field for `target`, as shipped, reading `source` instead."""
    [field] = [f for f in fields if f["target"] == target]
    field["source"] = source


@pytest.fixture
def sb(workbooks_server, outreach_server, tmp_path, monkeypatch):
    sb = Sandbox(workbooks_server, outreach_server, tmp_path).ready()
    sb.social = sb.wb.add_custom_field("people", "Social profile", "text")
    sb.area = sb.wb.add_custom_field("organisations", "Trading area", "text")
    mapping = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    _fed_from(mapping["objects"]["person"]["fields"], "twitterUrl", {"custom_field": "Social profile"})
    _fed_from(mapping["objects"]["organisation"]["fields"], "locality", {"custom_field": "Trading area"})
    sb.extra["mapping"] = bundled(monkeypatch, tmp_path, yaml.safe_dump(mapping, allow_unicode=True), "limits.yaml")
    return sb


def test_values_over_outreachs_limits_are_cut_or_flagged_never_refused(sb):
    org = sb.organisation("Long Town Ltd", **{sb.area: LONG_TOWN})["id"]
    long_url = sb.person(email="tw@acme.example", employer_link=org, **{sb.social: LONG_URL})["id"]
    fine = sb.person(email="ok@acme.example", employer_link=org, **{sb.social: "https://social.example/ok"})["id"]

    result = sb.run()
    assert result.code == 0, result.output

    # account locality (255): cut, and the organisation synced with its people related to it
    assert not sb.flags("organisation", org)["sync_error"], sb.flags("organisation", org)
    [account] = sb.accounts()
    assert account["attributes"]["locality"] == LONG_TOWN[:255]
    prospect = {p["attributes"]["emails"][0]: p for p in sb.prospects()}
    assert prospect["ok@acme.example"]["attributes"]["twitterUrl"] == "https://social.example/ok"
    assert prospect["ok@acme.example"]["relationships"]["account"]["data"]["id"] == account["id"]

    # prospect twitterUrl (1000): not cut and not sent; the record names the field and the limit
    flags = sb.flags("person", long_url)
    assert flags["sync_error"] and not flags["outreach_id"]
    assert flags["error_message"].startswith(f'custom field "Social profile" ({sb.social}) → twitterUrl: '
                                             "is 1023 characters long; Outreach allows 1000 in `twitterUrl`")
    assert "tw@acme.example" not in prospect
    assert sb.flags("person", fine)["outreach_id"]
    # Outreach was asked to create only what fits: one account, one prospect
    assert (sb.outreach_requests("POST", "/api/v2/accounts"), sb.outreach_requests("POST", "/api/v2/prospects")) == (1, 1)
