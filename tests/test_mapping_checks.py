"""The semantic checks: each one fires on the mistake it exists for, at the line and column of the
mistake, with a fix in the hint; and stays quiet on the valid base mapping."""
from __future__ import annotations

import pytest

from plugin.errors import InvalidMapping
from plugin.mapping import Problem, load_mapping
from tests.mapping_helpers import at, check, errors, mapping_text, only, position, warnings, write


def test_the_base_mapping_is_clean(tmp_path):
    assert check(tmp_path, mapping_text()) == []


def one_error(tmp_path, text, **kwargs) -> Problem:
    return only(errors(check(tmp_path, text, **kwargs)))


# --- targets --------------------------------------------------------------------------------------

def test_unknown_target_with_did_you_mean(tmp_path):
    text = mapping_text(person="""
        - source: linkedin_url
          target: linkedinUrl
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "linkedinUrl")
    assert problem.message == "`linkedinUrl` is not a prospect attribute in Outreach"
    assert problem.hint == "did you mean `linkedInUrl`?"


def test_unknown_target_without_a_near_miss_points_to_the_list(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: favouriteColour
    """))
    assert "docs/mappings.md" in problem.hint


def test_attribute_of_the_other_object_is_unknown(tmp_path):
    problem = one_error(tmp_path, mapping_text(organisation="""
        - source: person_first_name
          target: firstName
    """))
    assert "is not a account attribute" in problem.message or "not a account" in problem.message


@pytest.mark.parametrize("name", ["custom0", "custom151"])
def test_custom_fields_are_numbered_1_to_150(tmp_path, name):
    problem = one_error(tmp_path, mapping_text(person=f"""
        - source: x
          target: {name}
    """))
    assert problem.message == f"`{name}` does not exist: Outreach has custom1 to custom150"


def test_custom150_is_fine(tmp_path):
    assert check(tmp_path, mapping_text(person="""
        - source: x
          target: custom150
          transforms: [truncate]
    """)) == []


@pytest.mark.parametrize("section, target", [("person", "externalId"), ("organisation", "customId")])
def test_the_plugins_own_marker_is_reserved(tmp_path, section, target):
    text = mapping_text(**{section: f"""
        - source: id
          target: {target}
    """})
    problem = one_error(tmp_path, text)
    assert problem.message.startswith(f"`{target}` is reserved: the plugin writes the Workbooks id")
    assert "crash recovery" in problem.message


@pytest.mark.parametrize("target", ["name", "createdAt", "openCount", "externalSource"])
def test_read_only_targets(tmp_path, target):
    problem = one_error(tmp_path, mapping_text(person=f"""
        - source: x
          target: {target}
    """))
    assert problem.message.startswith(f"`{target}` is read-only in Outreach")


def test_two_fields_writing_the_same_target(tmp_path):
    text = mapping_text(person="""
        - source: person_job_title
          target: title
        - source: person_job_role
          target: title
    """)
    problem = one_error(tmp_path, text)
    first_line, _ = position(text, "target: title")
    assert (problem.line, problem.col) == position(text, "target: title", occurrence=2, offset=8)
    assert problem.message == f"`title` is already written by the field at line {first_line}"


def test_a_receive_field_does_not_clash_with_a_send_field(tmp_path):
    problems = check(tmp_path, mapping_text(person="""
        - source: person_job_title
          target: title
        - source: person_job_role
          target: title
          direction: receive
    """))
    assert errors(problems) == []


# --- match keys -----------------------------------------------------------------------------------

def test_prospect_match_key_must_be_emails(tmp_path):
    text = mapping_text().replace("target: prospect", "target: prospect\n    match_key: name")
    problem = one_error(tmp_path, text)
    assert problem.message.startswith("`match_key` cannot be `name`")
    assert problem.hint == "write `match_key: emails` (or leave it out)"


def test_prospect_emails_must_be_mapped(tmp_path):
    text = mapping_text().replace("target: emails", "target: custom1").replace(
        "transforms: [trim, lower, to_list]", "transforms: [trim]")
    problem = one_error(tmp_path, text)
    assert problem.message.startswith("no field sends `emails`, the match key")
    assert (problem.line, problem.col) == position(text, "person:")


@pytest.mark.parametrize("key", ["name", "domain", "customId"])
def test_account_match_keys(tmp_path, key):
    text = mapping_text(organisation="""
        - source: website
          target: domain
          transforms: [domain]
    """).replace("target: account", f"target: account\n    match_key: {key}")
    assert errors(check(tmp_path, text)) == []
    assert load_mapping(write(tmp_path, text)).objects["organisation"].match_key == key


def test_account_match_key_must_be_mapped_unless_it_is_customId(tmp_path):
    text = mapping_text().replace("target: account", "target: account\n    match_key: domain")
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "domain")
    assert problem.message.startswith("no field sends `domain`, the match key")
    assert problem.hint == "add a field with `target: domain`"


def test_unknown_account_match_key(tmp_path):
    text = mapping_text().replace("target: account", "target: account\n    match_key: Domain")
    problem = one_error(tmp_path, text)
    assert problem.hint == "did you mean `domain`?"


def test_exactly_one_match_key(tmp_path):
    text = mapping_text().replace("target: account", "target: account\n    match_key: [name, domain]")
    problem = one_error(tmp_path, text)
    assert problem.message == "`match_key` must be text, not a list"
    assert problem.hint == "write a single value, not a list"


def test_match_key_defaults(tmp_path):
    mapping = load_mapping(write(tmp_path, mapping_text()))
    assert mapping.objects["person"].match_key == "emails"
    assert mapping.objects["organisation"].match_key == "name"


def test_an_account_without_a_name_is_a_warning(tmp_path):
    text = mapping_text().replace("""      - source: name
        target: name
        transforms: [truncate]""", """      - source: website
        target: domain
        transforms: [domain]""").replace("target: account", "target: account\n    match_key: domain")
    problem = only(check(tmp_path, text))
    assert problem.severity == "warning"
    assert problem.message == "no field sends the account `name`"


# --- types ----------------------------------------------------------------------------------------

def test_a_list_target_needs_a_list(tmp_path):
    text = mapping_text(person="""
        - source: main_location[telephone]
          target: workPhones
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "workPhones")
    assert problem.message == ("`workPhones` is a list in Outreach, but this field produces the "
                               "Workbooks value unconverted")
    assert problem.hint.startswith("add `to_list`")


def test_a_text_target_cannot_take_a_list(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: main_location[telephone]
          target: custom4
          transforms: [to_list]
    """))
    assert problem.message == "`custom4` takes one text value, but this field produces a list"
    assert problem.hint == "add `join` at the end of `transforms`"


@pytest.mark.parametrize("section, target, fix", [
    ("organisation", "numberOfEmployees", "number"),
    ("organisation", "named", "boolean"),
    ("organisation", "foundedAt", "datetime"),
    ("person", "dateOfBirth", "date"),
    ("person", "score", "number"),
])
def test_typed_targets_need_their_conversion(tmp_path, section, target, fix):
    problem = one_error(tmp_path, mapping_text(**{section: f"""
        - source: x
          target: {target}
    """}))
    assert problem.hint == f"add `{fix}` at the end of `transforms`"


def test_date_into_a_datetime_target(tmp_path):
    problem = one_error(tmp_path, mapping_text(organisation="""
        - source: x
          target: foundedAt
          transforms: [date]
    """))
    assert problem.hint == "use `datetime` instead of `date`"


def test_constants_are_checked_against_their_target(tmp_path):
    assert errors(check(tmp_path, mapping_text(person="""
        - value: [workbooks]
          target: tags
        - value: true
          target: custom9
    """, organisation="""
        - value: 12
          target: numberOfEmployees
        - value: true
          target: named
    """))) == []
    problem = one_error(tmp_path, mapping_text(person="""
        - value: workbooks
          target: tags
    """))
    assert problem.message.startswith("`tags` is a list in Outreach, but this field produces text")


def test_a_constant_that_cannot_be_converted_is_an_error_at_load_time(tmp_path):
    text = mapping_text(organisation="""
        - value: "a dozen"
          target: numberOfEmployees
          transforms: [number]
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, '"a dozen"')
    assert problem.message == "the constant cannot be sent: `a dozen` is not a number"


def test_a_whole_number_constant_with_a_fraction(tmp_path):
    problem = one_error(tmp_path, mapping_text(organisation="""
        - value: 12.5
          target: numberOfEmployees
    """))
    assert "not a whole number" in problem.message


# --- transforms in their position -----------------------------------------------------------------

def test_a_text_transform_after_a_conversion(tmp_path):
    text = mapping_text(organisation="""
        - source: organisation_num_employees
          target: numberOfEmployees
          transforms: [number, trim]
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "trim]")
    assert problem.message == "`trim` cannot take a number (after `number`)"
    assert problem.hint == "move `trim` before `number`, which turns the value into a number"


def test_join_needs_a_list(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: custom1
          transforms: [join]
    """))
    assert problem.message == "`join` cannot take the Workbooks value unconverted"
    assert problem.hint == "`join` needs a list: put `to_list` or `split` before it"


def test_truncate_after_to_list(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: tags
          transforms: [to_list, truncate]
    """))
    assert problem.message == "`truncate` cannot take a list (after `to_list`)"


def test_split_needs_a_separator(tmp_path):
    text = mapping_text(person="""
        - source: x
          target: tags
          transforms: [split]
    """)
    problem = one_error(tmp_path, text)
    assert problem.message == "`split` needs a setting"
    assert problem.hint == 'write `- split: "|"`'


def test_transforms_that_take_no_setting(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: custom1
          transforms:
            - trim: yes
    """))
    assert problem.message == "`trim` takes no setting"


def test_two_transforms_in_one_item(tmp_path):
    text = mapping_text(person="""
        - source: x
          target: custom1
          transforms:
            - split: ","
              join: " "
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "join:")
    assert problem.hint == "start `join` on its own line with `- `"


def test_unknown_transform_with_did_you_mean(tmp_path):
    for spelling in ("[trim, lowercase]", "[trim, {lowr: }]"):
        problem = one_error(tmp_path, mapping_text(person=f"""
            - source: x
              target: custom1
              transforms: {spelling}
        """))
        assert problem.message.startswith("unknown transform `low")
        assert problem.hint == "did you mean `lower`?"


def test_default_belongs_with_value_map(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: custom1
          transforms:
            - trim
              default: x
    """.replace("- trim\n", "- truncate: 5\n")))
    assert problem.message == "`default` only works together with `value_map`"


def test_value_map_keys_must_be_text(tmp_path):
    text = mapping_text(person="""
        - source: x
          target: custom1
          transforms:
            - value_map: {Yes: "Y", "No": "N", 3: "three", "4": "four"}
    """)
    problems = errors(check(tmp_path, text))
    assert [(p.line, p.col) for p in problems] == [position(text, "Yes"), position(text, "3:")]
    assert problems[0].message.startswith("the key `Yes` is not text to YAML (it reads it as true/false)")
    assert problems[0].hint == 'put it in quotes: `"Yes": …`'
    assert "a number" in problems[1].message


def test_value_map_to_true_false_without_default_warns(tmp_path):
    problems = check(tmp_path, mapping_text(organisation="""
        - source: x
          target: named
          transforms:
            - boolean
            - value_map: {"true": true}
    """))
    assert errors(problems) == []
    assert only(warnings(problems)).hint == "add `default:` for everything else"


def test_value_map_mixing_text_and_true_false_for_a_text_target_warns(tmp_path):
    problem = only(check(tmp_path, mapping_text(person="""
        - source: x
          target: custom1
          transforms:
            - value_map: {"a": "A", "b": no}
            - truncate
    """)))
    assert problem.severity == "warning" and "quote every value" in problem.hint


def test_truncate_length_must_be_positive(tmp_path):
    text = mapping_text(person="""
        - source: x
          target: custom1
          transforms: [{truncate: 0}]
    """)
    problem = one_error(tmp_path, text)
    assert problem.message == "`truncate` must be at least 1, not 0"


@pytest.mark.parametrize("name", ["truncate", "max_length"])
def test_truncate_without_a_length_needs_a_target_with_a_limit(tmp_path, name):
    problem = one_error(tmp_path, mapping_text(person=f"""
        - source: employer_name
          target: company
          transforms: [{name}]
    """))
    assert problem.message == f"`{name}` has no Outreach limit to use: `company` has none"


@pytest.mark.parametrize("name, target, limit", [("truncate", "title", 255), ("max_length", "twitterUrl", 1000)])
def test_truncate_beyond_the_outreach_limit_warns_once(tmp_path, name, target, limit):
    problem = only(check(tmp_path, mapping_text(person=f"""
        - source: x
          target: {target}
          transforms: [{{{name}: 2000}}]
    """)))
    assert problem.severity == "warning"
    assert f"`{name}: 2000` is longer than Outreach's limit of {limit} for `{target}`" in problem.message


# --- Outreach's length limits (issue 16 §3: outreach-api.md §12) ----------------------------------

def test_a_field_that_can_outgrow_its_targets_limit_warns_at_the_target(tmp_path):
    text = mapping_text(person="""
        - source: twitter_url
          target: twitterUrl
          transforms: [trim]
    """)
    problem = only(check(tmp_path, text))
    assert problem.severity == "warning"
    assert (problem.line, problem.col) == position(text, "twitterUrl")
    assert problem.message == ("`twitterUrl` takes at most 1000 characters in Outreach, and this field "
                               "can send more: such a record would be flagged with Outreach Sync Error")
    assert "`truncate`" in problem.hint and "`max_length`" in problem.hint
    assert str(problem).startswith(f"{tmp_path / 'mapping.yaml'}:{problem.line}:{problem.col}: warning: ")


@pytest.mark.parametrize("target, transforms", [
    ("twitterUrl", "[trim, max_length]"), ("twitterUrl", "[{max_length: 500}]"), ("title", "[trim, truncate]"),
    ("title", "[upper, truncate, trim]"), ("custom3", "[date]"), ("custom3", "[boolean]"),
    ("custom3", '[{value_map: {"G": "Gold"}, default: "Other"}]'), ("company", "[trim]")])
def test_a_field_held_within_the_limit_is_quiet(tmp_path, target, transforms):
    """`truncate`/`max_length` hold the value to the limit, `trim` keeps it there, a date or a
    value_map with a default is short; `company` has no documented limit."""
    assert check(tmp_path, mapping_text(person=f"""
        - source: x
          target: {target}
          transforms: {transforms}
    """)) == []


@pytest.mark.parametrize("transforms", ["[truncate, upper]", "[truncate, lower]",
                                        '[truncate, {template: "{value} ({person_job_role})"}]',
                                        '[{value_map: {"G": "Gold"}}]'])
def test_a_step_after_the_cut_can_outgrow_it_again(tmp_path, transforms):
    """Case mapping can lengthen text ("ß".upper() is "SS"); a template adds text; a value_map
    without a default passes unmapped values through uncut."""
    problem = only(check(tmp_path, mapping_text(person=f"""
        - source: x
          target: title
          transforms: {transforms}
    """)))
    assert problem.severity == "warning" and problem.message.startswith("`title` takes at most 255")


def test_receive_only_fields_and_constants_are_not_length_checked_this_way(tmp_path):
    """A receive field sends nothing; a constant is checked whole, as an error when too long."""
    problems = check(tmp_path, mapping_text(person="""
        - source: x
          target: title
          direction: receive
        - value: Workbooks
          target: source
    """))
    assert not [p for p in problems if "characters in Outreach" in p.message]
    problem = one_error(tmp_path, mapping_text(person=f"""
        - value: {"x" * 256}
          target: source
    """))
    assert "Outreach allows 255 in `source`" in problem.message


def test_a_date_format_needs_strftime_codes(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: x
          target: dateOfBirth
          transforms: [{date: "dd/mm/yyyy"}]
    """))
    assert problem.message == "`dd/mm/yyyy` is not a date format"


# --- templates and sources ------------------------------------------------------------------------

def test_template_placeholders_must_name_columns(tmp_path):
    text = mapping_text(person="""
        - template: "{first name} {person_last_name}"
          target: custom2
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, '"{first name}')
    assert "`{first name}` is not a Workbooks column name" in problem.message


def test_value_placeholder_only_in_template_transforms(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - template: "{value}"
          target: custom2
    """))
    assert "only works in a `template` transform" in problem.message
    assert errors(check(tmp_path, mapping_text(person="""
        - source: person_job_title
          target: custom2
          transforms: [{template: "{value} at {employer_name}"}]
    """))) == []


def test_source_value_and_template_are_exclusive(tmp_path):
    text = mapping_text(person="""
        - source: person_first_name
          template: "{person_first_name}"
          target: custom2
    """)
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "template:")
    assert problem.message == "this field has both `source` and `template`"


def test_a_field_needs_a_source(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - target: custom2
    """))
    assert problem.message == "this field has no `source`, `value` or `template`"


def test_a_field_needs_a_target(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: person_first_name
    """))
    assert problem.message == "this field has no `target`"


def test_source_column_syntax(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - source: main location email
          target: custom2
    """))
    assert problem.message.startswith("the text `main location email`: a source is a Workbooks column name")
    problem = one_error(tmp_path, mapping_text(person="""
        - source: "queue_entry[queue[name]"
          target: custom2
    """))
    assert problem.message == "the brackets in `queue_entry[queue[name]` do not pair up"


WORKBOOKS_FIELDS = {"person": {"person_first_name", "person_last_name", "main_location[email]",
                               "main_location[town]", "cf_person_tier"},
                    "organisation": {"name", "website", "main_location"}}


def test_sources_are_checked_against_workbooks_when_its_fields_are_given(tmp_path):
    text = mapping_text(person="""
        - source: person_frist_name
          target: firstName
        - template: "{person_first_name} {person_lastname}"
          target: custom1
        - source: cf_person_tier
          target: custom2
    """, organisation="""
        - source: main_location[town]
          target: locality
    """)
    assert errors(check(tmp_path, text)) == []          # without Workbooks, nothing to check
    problems = errors(check(tmp_path, text, workbooks_fields=WORKBOOKS_FIELDS))
    assert [p.message for p in problems] == ["Workbooks has no person field `person_frist_name`",
                                             "Workbooks has no person field `person_lastname`"]
    assert [p.hint for p in problems] == ["did you mean `person_first_name`?",
                                          "did you mean `person_last_name`?"]


def test_custom_field_titles_are_resolved_at_bind(tmp_path):
    text = mapping_text(person="""
        - source: {custom_field: "Tier"}
          target: custom7
        - template: "{custom_field:Region} / {main_location[town]}"
          target: custom8
    """)
    person = load_mapping(write(tmp_path, text)).objects["person"]
    assert person.custom_field_titles == {"Tier", "Region"}
    assert "cf_person_tier" not in person.source_columns
    bound = person.bind({"TIER": "cf_person_tier", "Region": "cf_person_region_12"})
    assert bound.source_columns == ["main_location[email]", "cf_person_tier", "cf_person_region_12",
                                    "main_location[town]"]
    assert bound.map({"main_location[email]": "a@x.com", "cf_person_tier": "Gold",
                      "cf_person_region_12": "North", "main_location[town]": "York"}) == {
        "emails": ["a@x.com"], "custom7": "Gold", "custom8": "North / York"}


def test_an_unknown_title_at_bind_names_the_line(tmp_path):
    text = mapping_text(person="""
        - source: {custom_field: "Tier"}
          target: custom7
    """)
    person = load_mapping(write(tmp_path, text)).objects["person"]
    with pytest.raises(InvalidMapping) as caught:
        person.bind({"Tiers": "cf_person_tiers"})
    line, col = position(text, '"Tier"')
    assert caught.value.problems == [
        f'{tmp_path / "mapping.yaml"}:{line}:{col}: there is no person custom field titled "Tier" '
        'in Workbooks — did you mean "Tiers"?']


def test_an_ambiguous_title_at_bind(tmp_path):
    text = mapping_text(person="""
        - source: {custom_field: "tier"}
          target: custom7
    """)
    person = load_mapping(write(tmp_path, text)).objects["person"]
    with pytest.raises(InvalidMapping, match="more than one person custom field"):
        person.bind({"Tier": "a", "TIER": "b"})


# --- directions and sections ----------------------------------------------------------------------

def test_receive_and_both_are_active_and_receive_is_not_sent(tmp_path):
    text = mapping_text(person="""
        - source: person_job_title
          target: title
          direction: receive
        - source: person_first_name
          target: firstName
          direction: both
          conflict: outreach_wins
          transforms: [truncate]
    """)
    assert check(tmp_path, text) == []
    bound = load_mapping(write(tmp_path, text)).objects["person"].bind({})
    assert bound.map({"main_location[email]": "a@x.com", "person_job_title": "CTO",
                      "person_first_name": "Ann"}) == {"emails": ["a@x.com"], "firstName": "Ann"}
    receiving = {spec.target: spec for spec in bound.receiving}
    assert set(receiving) == {"title", "firstName"}
    assert receiving["firstName"].conflict == "outreach_wins" and receiving["title"].conflict == "workbooks_wins"
    assert bound.column(receiving["title"]) == "person_job_title"
    assert bound.received(receiving["firstName"], "Annie") == "Annie"


def test_a_transform_that_cannot_be_undone_needs_receive_transforms(tmp_path):
    text = mapping_text(person="""
        - source: main_location[telephone]
          target: workPhones
          direction: both
          transforms: [trim, to_list]
    """)
    problem = only(errors(check(tmp_path, text)))
    assert (problem.line, problem.col) == position(text, "to_list", 2)
    assert "`to_list` cannot be undone on the way back from Outreach" in problem.message
    assert "receive_transforms: [join]" in problem.hint
    fixed = text.replace("transforms: [trim, to_list]", "transforms: [trim, to_list]\n        receive_transforms: [join]")
    assert errors(check(tmp_path, fixed)) == []
    spec = load_mapping(write(tmp_path, fixed)).objects["person"].bind({}).receiving[0]
    assert load_mapping(write(tmp_path, fixed)).objects["person"].bind({}).received(spec, ["+44 1", "+44 2"]) \
        == "+44 1, +44 2"


def test_a_list_received_into_one_workbooks_field_needs_a_join(tmp_path):
    text = mapping_text(person="""
        - source: tags_text
          target: tags
          direction: receive
    """)
    problem = only(errors(check(tmp_path, text)))
    assert "a Workbooks field takes one value" in problem.message and "join" in problem.hint


def test_conflict_and_receive_transforms_only_where_they_apply(tmp_path):
    text = mapping_text(person="""
        - source: person_job_title
          target: title
          conflict: outreach_wins
        - source: person_last_name
          target: lastName
          receive_transforms: [trim]
    """)
    messages = [p.message for p in errors(check(tmp_path, text))]
    assert any("`conflict` only applies to a field with `direction: both`" in m for m in messages)
    assert any("`receive_transforms` only applies to a field that receives" in m for m in messages)


def test_read_only_attributes_can_be_received_not_sent(tmp_path):
    received = mapping_text(person="""
        - source: last_engaged
          target: engagedAt
          direction: receive
    """)
    assert errors(check(tmp_path, received)) == []
    both = received.replace("direction: receive", "direction: both")
    assert "read-only" in only(errors(check(tmp_path, both))).message


def test_two_fields_receiving_into_one_workbooks_field_is_an_error(tmp_path):
    text = mapping_text(person="""
        - source: person_job_title
          target: title
          direction: receive
        - source: person_job_title
          target: occupation
          direction: receive
    """)
    assert "already receives into this Workbooks field" in only(errors(check(tmp_path, text))).message


def test_a_receive_field_needs_a_source(tmp_path):
    problem = one_error(tmp_path, mapping_text(person="""
        - value: x
          target: custom1
          direction: both
    """))
    assert problem.message.startswith("a `both` field needs a `source`")


def test_other_sections_are_accepted_and_ignored_with_a_warning(tmp_path):
    text = mapping_text() + """\
  opportunity:
    target: opportunity
    fields:
      - source: name
        target: name
"""
    problem = only(check(tmp_path, text))
    assert problem.severity == "warning"
    assert problem.message == "section `opportunity` is not synced yet: the plugin ignores it"
    mapping = load_mapping(write(tmp_path, text))
    assert sorted(mapping.objects) == ["organisation", "person"]
    assert mapping.ignored == ["opportunity"]


def test_a_misspelt_section_is_an_error_not_an_ignored_section(tmp_path):
    text = mapping_text().replace("  organisation:", "  organization:")
    problem = one_error(tmp_path, text)
    assert (problem.line, problem.col) == position(text, "organization:")
    assert problem.hint == "did you mean `organisation`?"


def test_another_section_sending_to_prospects(tmp_path):
    text = mapping_text() + """\
  contacts:
    target: prospect
    fields:
      - source: name
        target: firstName
"""
    problem = one_error(tmp_path, text)
    assert problem.message == "section `contacts` sends to prospects, which only `person` does"


def test_sections_must_target_their_object(tmp_path):
    text = mapping_text().replace("target: account", "target: prospect")
    problem = one_error(tmp_path, text)
    assert problem.message.startswith("`target` cannot be `prospect`: Organisations are sent to Outreach accounts")


def test_load_mapping_raises_with_every_error_and_keeps_warnings_on_the_mapping(tmp_path):
    text = mapping_text(person="""
        - source: x
          target: linkedinUrl
        - source: y
          target: custom999
    """)
    with pytest.raises(InvalidMapping) as caught:
        load_mapping(write(tmp_path, text))
    assert len(caught.value.problems) == 2
    assert caught.value.exit_code == 2
    text = mapping_text(person="""
        - source: x
          target: firstName
          transforms: [{truncate: 300}]
    """)
    mapping = load_mapping(write(tmp_path, text))
    assert len(mapping.warnings) == 1 and mapping.version == 1
    assert at(mapping.warnings, *position(text, "300"))
