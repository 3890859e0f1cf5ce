"""Receive planning against compact snapshots and opt-out mappings (pure units)."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from plugin.mapping import DEFAULT_MAPPING_PATH, InvalidMapping, load_mapping
from plugin.snapshot import Snapshot
from plugin.sync.receive.plan import plan_record

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def person_mapping(tmp_path, edit=None):
    data = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    if edit:
        edit(data)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_mapping(path).objects["person"].bind({})


def field(data, target):
    return next(f for f in data["objects"]["person"]["fields"] if f["target"] == target)


ROW = {"person_first_name": "Ann", "person_last_name": "Lee", "person_job_title": "Buyer",
       "main_location[email]": "ann@acme.example", "linkedin_url": "https://linkedin.example/ann"}


def digest_snapshot(mapping, row) -> Snapshot:
    sent = mapping.map(row)
    text = Snapshot().with_sent(sent).dump(limit=25)          # too small for tokens: version 3
    assert text.startswith("3;"), text
    return Snapshot.parse(text), sent


def test_digest_snapshot_outreach_wins_reverts_a_workbooks_only_edit(tmp_path):
    mapping = person_mapping(tmp_path, lambda d: field(d, "title").update(conflict="outreach_wins"))
    snapshot, sent = digest_snapshot(mapping, ROW)
    edited = {**ROW, "person_job_title": "Manager"}            # Workbooks edit; Outreach untouched
    plan = plan_record(mapping, edited, dict(sent), snapshot, now=NOW)
    assert plan.fields == {}, plan.fields                      # fails: {'person_job_title': 'Buyer'}


def test_digest_snapshot_workbooks_wins_drops_a_reps_edit_of_another_field(tmp_path):
    mapping = person_mapping(tmp_path)
    snapshot, sent = digest_snapshot(mapping, ROW)
    edited = {**ROW, "person_job_title": "Manager"}            # Workbooks edits title ...
    remote = {**sent, "linkedInUrl": "https://linkedin.example/ann-lee"}   # ... a rep edits LinkedIn
    plan = plan_record(mapping, edited, remote, snapshot, now=NOW)
    # fails: nothing received, and send then re-sends every attribute (the digest cannot tell
    # which changed), overwriting the rep's LinkedIn with Workbooks' old one
    assert plan.fields.get("linkedin_url") == "https://linkedin.example/ann-lee", plan.fields


@pytest.mark.parametrize("edit, says", [
    (lambda f: f.update(direction="both"), "opt-outs come back from Outreach on their own"),
    (lambda f: f.update(transforms=["boolean"]), "may only ever be set from Workbooks, never cleared"),
    (lambda f: f.update(transforms=["boolean", {"value_map": {"true": True, "false": False}, "default": None}]),
     "never cleared"),
    (lambda f: (f.pop("source"), f.pop("transforms"), f.update(value=False)), "never cleared"),
])
def test_a_mapping_that_could_undo_an_opt_out_is_refused(tmp_path, edit, says):
    data = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    edit(field(data, "emailOptedOut"))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(InvalidMapping) as refused:
        load_mapping(path)
    assert says in str(refused.value) and "m.yaml:" in str(refused.value), str(refused.value)


def _send(mapping, stored: str, row: dict, limit):
    """What the send half does: diff against the stored snapshot, write with_sent back."""
    snapshot = Snapshot.parse(stored)
    changed = snapshot.changed_attributes(mapping.map(row))
    return snapshot.with_sent(changed).dump(limit)


@pytest.mark.parametrize("limit", [None, 100])        # readable JSON, then the compact form
def test_an_empty_skip_empty_field_takes_outreachs_value_whatever_the_snapshots_form(tmp_path, limit):
    """skip_empty: empty is "no value" both ways. Cleared in Workbooks, it is not sent (Outreach
    keeps its value) and is filled from Outreach again, the same with either snapshot form (the
    compact one cannot remember a value it no longer sends)."""
    mapping = person_mapping(tmp_path)
    stored = Snapshot().with_sent(mapping.map(ROW)).dump(limit)
    remote = dict(mapping.map(ROW))              # what Outreach holds: the last agreed values
    edited = {**ROW, "linkedin_url": "", "person_job_title": "Manager"}   # cleared + another edit
    stored = _send(mapping, stored, edited, limit)
    remote["title"] = "Manager"                  # the PATCH
    plan = plan_record(mapping, edited, remote, Snapshot.parse(stored), now=NOW)
    assert plan.fields == {"linkedin_url": ROW["linkedin_url"]}, (stored, plan.fields)
    assert not plan.send_pending


@pytest.mark.parametrize("limit", [None, 100])
def test_a_field_cleared_in_workbooks_without_skip_empty_is_not_filled_again(tmp_path, limit):
    mapping = person_mapping(tmp_path, lambda d: field(d, "linkedInUrl").pop("skip_empty", None))
    stored = Snapshot().with_sent(mapping.map(ROW)).dump(limit)
    remote = dict(mapping.map(ROW))
    edited = {**ROW, "linkedin_url": ""}         # cleared, not sent yet: receive runs first
    plan = plan_record(mapping, edited, remote, Snapshot.parse(stored), now=NOW)
    assert plan.fields == {}, plan.fields        # the send half clears it in Outreach
    assert mapping.map(edited)["linkedInUrl"] in (None, "")
