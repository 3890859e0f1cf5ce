"""The shipped mapping, schema and guide: the default mapping validates and maps realistic
Workbooks records; the schema is a valid draft 2020-12 schema editors can use; the guide lists
every Outreach target."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from plugin import catalogue
from plugin.mapping import (DEFAULT_MAPPING_PATH, SCHEMA_PATH, RecordMappingError, load_mapping,
                            validate_mapping_file)

ROOT = Path(__file__).resolve().parent.parent

# As Workbooks returns them (workbooks-api §3.4, §5, §6.2): flat keys, related fields in brackets,
# null or "" when empty, JSON booleans, ids as integers.
PERSON = {
    "id": 4711, "lock_version": 3, "name": "Van Tran", "object_ref": "PERS-4711",
    "created_at": "Fri Oct 17 16:55:31 UTC 2025", "updated_at": "Fri Oct 17 16:55:31 UTC 2025",
    "person_first_name": "Van ", "person_middle_name": None, "person_last_name": "Tran",
    "person_personal_title": "Dr.", "person_job_title": "Head of Research",
    "person_job_role": "Scientist/Technologist",
    "employer_link": 88, "employer_name": "Snap Fresh Ltd",
    "main_location[email]": " Van.Tran@SnapFresh.example ",
    "main_location[telephone]": "+44 113 496 0000", "main_location[mobile]": "",
    "main_location[street_address]": "Unit 4\nHarbour Road", "main_location[town]": "Leeds",
    "main_location[county_province_state]": "West Yorkshire", "main_location[postcode]": "ls1 4ap",
    "main_location[country]": "United Kingdom",
    "website": "https://snapfresh.example/team/van", "linkedin_url": "https://www.linkedin.com/in/vantran",
    "twitter_url": None, "no_email_soliciting": False, "cf_person_tier": "Gold",
}

ORGANISATION = {
    "id": 88, "lock_version": 1, "name": " Snap Fresh Ltd", "industry": "Food & Drink",
    "website": "https://www.snapfresh.example/contact", "organisation_num_employees": "1,250",
    "organisation_annual_revenue": "  0", "main_location[town]": "Leeds",
    "main_location[country]": "United Kingdom",
}


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(DEFAULT_MAPPING_PATH)


def test_the_default_mapping_has_no_problems_at_all():
    assert validate_mapping_file(DEFAULT_MAPPING_PATH) == []


def test_the_default_mapping_starts_with_the_editor_schema_line():
    first = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./mapping.schema.json"
    assert (DEFAULT_MAPPING_PATH.parent / "mapping.schema.json").resolve() == SCHEMA_PATH


def test_the_schema_is_a_valid_draft_2020_12_schema_and_accepts_the_default():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml
    data = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data)) == []


def test_the_default_maps_a_realistic_person(mapping):
    person = mapping.objects["person"].bind({})
    assert person.map(PERSON) == {
        "firstName": "Van",
        "lastName": "Tran",
        "title": "Head of Research",
        "emails": ["van.tran@snapfresh.example"],
        "workPhones": ["+44 113 496 0000"],
        "addressStreet": "Unit 4, Harbour Road",
        "addressCity": "Leeds",
        "addressState": "West Yorkshire",
        "addressZip": "LS1 4AP",
        "addressCountry": "United Kingdom",
        "websiteUrl1": "https://snapfresh.example/team/van",
        "linkedInUrl": "https://www.linkedin.com/in/vantran",
        "company": "Snap Fresh Ltd",
    }


def test_the_default_passes_on_an_email_opt_out_but_never_an_opt_in(mapping):
    person = mapping.objects["person"].bind({})
    assert person.map({**PERSON, "no_email_soliciting": True})["emailOptedOut"] is True
    assert "emailOptedOut" not in person.map({**PERSON, "no_email_soliciting": False})


def test_the_default_clears_names_and_title_but_keeps_optional_details(mapping):
    person = mapping.objects["person"].bind({})
    blank = {k: None for k in PERSON} | {"main_location[email]": "a@x.example"}
    assert person.map(blank) == {"firstName": None, "lastName": None, "title": None,
                                 "emails": ["a@x.example"]}


def test_the_default_maps_a_realistic_organisation(mapping):
    organisation = mapping.objects["organisation"].bind({})
    assert organisation.map(ORGANISATION) == {
        "name": "Snap Fresh Ltd",
        "domain": "www.snapfresh.example",
        "websiteUrl": "https://www.snapfresh.example/contact",
        "industry": "Food & Drink",
        "numberOfEmployees": 1250,
        "locality": "Leeds",
    }


def test_a_bad_organisation_value_is_a_record_error(mapping):
    organisation = mapping.objects["organisation"].bind({})
    with pytest.raises(RecordMappingError) as caught:
        organisation.map({**ORGANISATION, "organisation_num_employees": "about fifty"})
    assert caught.value.field == "organisation_num_employees"


def test_source_columns_and_match_values(mapping):
    person = mapping.objects["person"].bind({})
    organisation = mapping.objects["organisation"].bind({})
    assert "main_location[email]" in person.source_columns
    assert len(person.source_columns) == len(set(person.source_columns))
    assert organisation.source_columns == ["name", "website", "industry", "organisation_num_employees",
                                           "main_location[town]"]
    assert person.match_value(person.map(PERSON)) == "van.tran@snapfresh.example"
    assert person.match_value({"emails": []}) is None
    assert person.match_value({"emails": ["", "B@X.example"]}) == "b@x.example"
    assert organisation.match_value(organisation.map(ORGANISATION)) == "Snap Fresh Ltd"
    assert organisation.match_value({"name": "  "}) is None
    assert person.source_of("emails") == "main_location[email]"
    assert person.source_of("tags") is None


def test_the_default_targets_the_right_objects(mapping):
    assert mapping.version == 1
    assert {n: o.target for n, o in mapping.objects.items()} == {"person": "prospect", "organisation": "account"}
    assert mapping.objects["person"].match_key == "emails"
    assert mapping.objects["organisation"].match_key == "name"
    assert mapping.objects["person"].custom_field_titles == set()


# --- the guide ------------------------------------------------------------------------------------

GUIDE = ROOT / "docs" / "mappings.md"


@pytest.mark.parametrize("obj", ["prospect", "account"])
def test_the_guide_lists_every_writable_target(obj):
    text = GUIDE.read_text(encoding="utf-8")
    for name in catalogue.writable_names(obj):
        if re.fullmatch(r"custom\d+", name):
            continue
        assert f"`{name}`" in text, f"{obj} attribute {name} missing from docs/mappings.md"
    assert "custom1" in text and "custom150" in text


@pytest.mark.parametrize("obj, heading", [("prospect", "#### Prospect attributes"),
                                          ("account", "#### Account attributes")])
def test_the_guides_max_lengths_are_the_catalogues(obj, heading):
    """Issue 16 §3: the consultant reads the limits (twitterUrl 1000, locality 255) in the guide."""
    table = GUIDE.read_text(encoding="utf-8").split(heading, 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \|", table, re.M)
    assert len(rows) > 20
    for name, length in rows:
        expected = catalogue.attribute(obj, name).max_length
        assert length.strip() == ("" if expected is None else str(expected)), f"{obj} {name}"


def test_the_guide_documents_every_transform():
    from plugin.transforms import SPECS
    text = GUIDE.read_text(encoding="utf-8")
    for name in SPECS:
        assert f"### `{name}`" in text, f"transform {name} has no section in docs/mappings.md"


def test_the_guides_yaml_examples_are_valid(tmp_path):
    """Every complete mapping in the guide (a ```yaml block starting with `version: 1`) validates,
    without a warning: a consultant copies them."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "version: 1" in b]
    assert blocks
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.yaml"
        path.write_text(block, encoding="utf-8")
        assert [str(p) for p in validate_mapping_file(path)] == []      # nor any warning
