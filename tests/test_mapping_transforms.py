"""Every transform at map time: what it makes of good input, and the per-record error it raises
for input it cannot convert."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from plugin import catalogue
from plugin import transforms as tf
from plugin.mapping import DEFAULT_MAPPING_PATH, RecordMappingError, load_mapping
from tests.mapping_helpers import mapping_text, write


def run(name, value, arg=None, options=(), record=None, attribute=None):
    step = tf.Step(name, arg, tuple(options))
    if name == "template":
        step = tf.Step(name, arg, (), tf.parse_template(arg, allow_value=True))
    return tf.apply(step, value, tf.Context(record or {}, attribute=attribute))


# --- text -----------------------------------------------------------------------------------------

def test_trim_lower_upper_on_text_and_lists():
    assert run("trim", "  Ann  ") == "Ann"
    assert run("lower", "Ann@Example.COM") == "ann@example.com"
    assert run("upper", "ls1 1aa") == "LS1 1AA"
    assert run("trim", [" a ", "b "]) == ["a", "b"]
    assert run("lower", ["A", "B"]) == ["a", "b"]


def test_text_transforms_leave_empty_empty_and_read_numbers_as_text():
    for name in ("trim", "lower", "upper"):
        assert run(name, None) is None
    assert run("upper", 12) == "12"


def test_to_list_splits_at_commas_semicolons_and_new_lines_and_drops_empties():
    assert run("to_list", "a@x.com; b@x.com,c@x.com\nd@x.com,, ") == ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
    assert run("to_list", "+44 1234 567890") == ["+44 1234 567890"]   # spaces are not separators
    assert run("to_list", ["a", " ", "b"]) == ["a", "b"]
    assert run("to_list", "") is None
    assert run("to_list", None) is None
    assert run("to_list", 42) == ["42"]


def test_split_uses_exactly_the_given_separator():
    assert run("split", "red | green |blue", "|") == ["red", "green", "blue"]
    assert run("split", "a,b", "|") == ["a,b"]
    assert run("split", None, "|") is None


def test_join_joins_non_empty_items():
    assert run("join", ["1 High St", "", "Floor 2"], ", ") == "1 High St, Floor 2"
    assert run("join", ["a", "b"]) == "a, b"           # default separator
    assert run("join", []) is None
    assert run("join", None, " / ") is None


@given(st.text())
def test_to_list_never_yields_blank_or_untrimmed_items(text):
    result = run("to_list", text)
    assert result is None or all(item and item == item.strip() for item in result)


# --- templates ------------------------------------------------------------------------------------

def test_template_transform_reads_the_value_and_other_columns():
    record = {"person_job_role": "Scientist"}
    assert run("template", "Dr", "{value} ({person_job_role})", record=record) == "Dr (Scientist)"


def test_template_tidies_spaces_left_by_empty_placeholders_and_is_empty_when_all_are():
    template = tf.parse_template("{a} {b} {c}", allow_value=False)
    ctx = tf.Context({"a": "Ann", "b": None, "c": "Lee"})
    assert tf.render(template, ctx) == "Ann Lee"
    assert tf.render(template, tf.Context({})) is None


def test_template_placeholders_nested_columns_custom_fields_and_literal_braces():
    template = tf.parse_template("{{x}} {main_location[town]} {custom_field: Tier }", allow_value=False)
    assert template.refs == [tf.Ref(column="main_location[town]"), tf.Ref(title="Tier")]
    ctx = tf.Context({"main_location[town]": "Leeds", "cf_person_tier": "Gold"},
                     resolve=lambda ref: "cf_person_tier" if ref.title else ref.column)
    assert tf.render(template, ctx) == "{x} Leeds Gold"


@pytest.mark.parametrize("text, fragment", [
    ("{first", "is not closed"),
    ("first}", "has no matching"),
    ("{first name}", "is not a Workbooks column name"),
    ("{}", "names no field"),
    ("{custom_field:}", "has no title"),
    ("{value}", "only works in a `template` transform"),
])
def test_template_syntax_errors(text, fragment):
    with pytest.raises(tf.TemplateSyntaxError) as caught:
        tf.parse_template(text, allow_value=False)
    assert fragment in caught.value.message


# --- value_map ------------------------------------------------------------------------------------

TIERS = {"Gold": "Tier 1", "Silver": "Tier 2"}


def test_value_map_maps_listed_values_and_passes_others_through_without_default():
    assert run("value_map", "Gold", TIERS) == "Tier 1"
    assert run("value_map", "Bronze", TIERS) == "Bronze"


def test_value_map_default_covers_unlisted_values_but_not_empty_ones():
    options = (("default", "Other"),)
    assert run("value_map", "Bronze", TIERS, options) == "Other"
    assert run("value_map", "", TIERS, options) is None
    assert run("value_map", None, TIERS, options) is None
    assert run("value_map", "", {**TIERS, "": "None given"}, options) == "None given"


def test_value_map_ignores_case_and_spaces_when_there_is_no_exact_match():
    assert run("value_map", " gold ", TIERS) == "Tier 1"


def test_value_map_reads_true_false_and_numbers_as_text_keys():
    assert run("value_map", True, {"true": "Yes", "false": "No"}) == "Yes"
    assert run("value_map", 3, {"3": "three"}) == "three"


def test_value_map_on_a_list_maps_each_item():
    assert run("value_map", ["Gold", "Silver", "Tin"], TIERS, (("default", None),)) == ["Tier 1", "Tier 2"]


# --- truncate -------------------------------------------------------------------------------------

def test_truncate_to_n_or_to_the_outreach_limit_of_the_target():
    assert run("truncate", "abcdef", 3) == "abc"
    title = catalogue.attribute("prospect", "title")
    assert run("truncate", "x" * 300, attribute=title) == "x" * 255
    assert run("truncate", None, 3) is None


# --- max_length -----------------------------------------------------------------------------------

def test_max_length_passes_a_value_within_the_limit_unchanged():
    url = catalogue.attribute("prospect", "twitterUrl")
    assert run("max_length", "https://x.example/" + "a" * 982, attribute=url) == "https://x.example/" + "a" * 982
    assert run("max_length", None, attribute=url) is None
    assert run("max_length", 12345, 5) == 12345


def test_max_length_refuses_a_longer_value_naming_the_target_and_its_limit():
    url = catalogue.attribute("prospect", "twitterUrl")
    with pytest.raises(tf.TransformError, match=r"is 1001 characters long; Outreach allows 1000 in `twitterUrl`"):
        run("max_length", "u" * 1001, attribute=url)
    with pytest.raises(tf.TransformError, match=r"is 6 characters long; the mapping allows 5"):
        run("max_length", "abcdef", 5, attribute=url)


def test_the_default_mapping_flags_a_too_long_web_address_and_cuts_a_too_long_town():
    """Issue 16 §3: prospect twitterUrl takes 1000 characters, account locality 255 (OAS, §12).
    A web address is not cut: the record's error names the Workbooks field and the target."""
    mapping = load_mapping(DEFAULT_MAPPING_PATH)
    person = mapping.objects["person"].bind({})
    with pytest.raises(RecordMappingError) as caught:
        person.map({"main_location[email]": "a@x.example", "twitter_url": "https://t.example/" + "x" * 1000})
    assert (caught.value.field, caught.value.target) == ("twitter_url", "twitterUrl")
    assert str(caught.value).startswith("twitter_url → twitterUrl: is 1018 characters long; Outreach allows 1000")
    organisation = mapping.objects["organisation"].bind({})
    mapped = organisation.map({"name": "Acme", "main_location[town]": "T" * 300})
    assert mapped["locality"] == "T" * 255


def test_domain_refuses_a_host_name_longer_than_253_characters():
    with pytest.raises(tf.TransformError, match="is not a web address"):
        run("domain", "https://" + "a." * 127 + "xn--p1ai")
    assert run("domain", "https://" + "a." * 100 + "xn--p1ai/x") == "a." * 100 + "xn--p1ai"


# --- dates ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("22 May 2009", "2009-05-22"),
    (" 2 May 2010", "2010-05-02"),              # Workbooks pads days < 10 with a space
    ("1 September 2023", "2023-09-01"),         # the README's full month name
    ("2009-05-22", "2009-05-22"),
    ("Fri May 15 23:36:54 UTC 2009", "2009-05-15"),
    ("2023-09-01T09:00:00Z", "2023-09-01"),
])
def test_date_reads_workbooks_and_iso_forms(value, expected):
    assert run("date", value) == expected


def test_date_with_an_explicit_format_and_empty_input():
    assert run("date", "31/12/2029", "%d/%m/%Y") == "2029-12-31"
    assert run("date", "") is None


@pytest.mark.parametrize("value", ["31 Foo 2020", "yesterday", "32 May 2020", True])
def test_date_rejects_what_is_not_a_date(value):
    with pytest.raises(tf.TransformError, match="is not a date"):
        run("date", value)


@pytest.mark.parametrize("value, expected", [
    ("Fri May 15 14:36:54 UTC 2009", "2009-05-15T14:36:54Z"),
    ("Fri Sept 7 14:00:00 UTC 2012", "2012-09-07T14:00:00Z"),
    ("2020-01-01T12:00:00Z", "2020-01-01T12:00:00Z"),
    ("2020-01-01T13:00:00+01:00", "2020-01-01T12:00:00Z"),
    ("2020-01-01 12:00:00", "2020-01-01T12:00:00Z"),     # no zone: Workbooks speaks UTC
    ("22 May 2009", "2009-05-22T00:00:00Z"),
    (1577880000, "2020-01-01T12:00:00Z"),
    ("1577880000", "2020-01-01T12:00:00Z"),
])
def test_datetime_reads_workbooks_iso_and_epoch_forms(value, expected):
    assert run("datetime", value) == expected


def test_datetime_with_an_explicit_format_and_bad_input():
    assert run("datetime", "01/02/2020 10:30", "%d/%m/%Y %H:%M") == "2020-02-01T10:30:00Z"
    with pytest.raises(tf.TransformError, match="is not a date-time"):
        run("datetime", "soon")


# --- boolean, number, domain ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("yes", True), ("No", False), ("1", True), ("0", False),
    (1, True), (0, False), ("on", True), ("off", False), ("TRUE", True), ("", None), (None, None),
])
def test_boolean(value, expected):
    assert run("boolean", value) is expected


def test_boolean_rejects_anything_else():
    with pytest.raises(tf.TransformError, match="is not true/false"):
        run("boolean", "maybe")


@pytest.mark.parametrize("value, expected", [
    ("42", 42), (" 12.5 ", 12.5), ("1,250", 1250), ("-3", -3), ("1e3", 1000), ("50.0", 50),
    ("1500.00 GBP 1", 1500), (7, 7), (2.5, 2.5), ("", None), (None, None),
])
def test_number(value, expected):
    result = run("number", value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value", ["abc", "12 apples", "1,2,3", "nan", True])
def test_number_rejects_what_is_not_a_number(value):
    with pytest.raises(tf.TransformError, match="not a number"):
        run("number", value)


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_number_reads_any_integer_written_as_text(n):
    assert run("number", str(n)) == n


@pytest.mark.parametrize("value, expected", [
    ("https://www.acme.com/contact", "www.acme.com"),
    ("http://Acme.CO.UK:8080/x?y=1", "acme.co.uk"),
    ("acme.com/about", "acme.com"),
    ("www.acme.com", "www.acme.com"),
    ("https://user:pw@shop.acme.io", "shop.acme.io"),
])
def test_domain_is_the_host_of_a_web_address(value, expected):
    assert run("domain", value) == expected


def test_domain_can_strip_www_and_leaves_empty_empty():
    assert run("domain", "https://www.acme.com", {"strip_www": True}) == "acme.com"
    assert run("domain", "  ") is None


@pytest.mark.parametrize("value", ["n/a", "not a website", "http://", "localhost"])
def test_domain_rejects_what_is_not_a_web_address(value):
    with pytest.raises(tf.TransformError, match="is not a web address"):
        run("domain", value)


# --- fitting the final value to its attribute -----------------------------------------------------

def attr(obj, name):
    return catalogue.attribute(obj, name)


def test_fit_checks_the_outreach_length_limit():
    assert tf.fit("x" * 255, attr("prospect", "title")) == "x" * 255
    with pytest.raises(tf.TransformError, match="Outreach allows 255 in `title`.*truncate"):
        tf.fit("x" * 256, attr("prospect", "title"))


def test_fit_empty_values_become_null_or_an_empty_list():
    assert tf.fit("  ", attr("prospect", "title")) is None
    assert tf.fit(None, attr("prospect", "emails")) == []


def test_fit_numbers_and_true_false_into_text_targets():
    assert tf.fit(12, attr("prospect", "custom1")) == "12"
    assert tf.fit(True, attr("prospect", "custom1")) == "true"


def test_fit_integers_and_other_types():
    assert tf.fit(12.0, attr("account", "numberOfEmployees")) == 12
    with pytest.raises(tf.TransformError, match="not a whole number"):
        tf.fit(12.5, attr("account", "numberOfEmployees"))
    with pytest.raises(tf.TransformError, match="not true/false"):
        tf.fit("yes", attr("account", "named"))
    with pytest.raises(tf.TransformError, match="takes one value"):
        tf.fit(["a", "b"], attr("prospect", "title"))
    assert tf.fit("2020-01-01", attr("prospect", "dateOfBirth")) == "2020-01-01"


# --- per-record errors through the mapping --------------------------------------------------------

def bound(tmp_path, person="", organisation="", titles=None, section="organisation"):
    mapping = load_mapping(write(tmp_path, mapping_text(person, organisation)))
    return mapping.objects[section].bind(titles or {})


def test_invalid_input_is_a_record_error_naming_the_workbooks_field_and_reason(tmp_path):
    org = bound(tmp_path, organisation="""
        - source: organisation_num_employees
          target: numberOfEmployees
          transforms: [number]
    """)
    with pytest.raises(RecordMappingError) as caught:
        org.map({"name": "Acme", "organisation_num_employees": "abc"})
    exc = caught.value
    assert isinstance(exc, ValueError)
    assert (exc.field, exc.target) == ("organisation_num_employees", "numberOfEmployees")
    assert exc.reason == "`abc` is not a number"
    assert str(exc) == "organisation_num_employees → numberOfEmployees: `abc` is not a number"


def test_a_record_error_lists_every_failing_field(tmp_path):
    org = bound(tmp_path, organisation="""
        - source: organisation_num_employees
          target: numberOfEmployees
          transforms: [number]
        - source: website
          target: domain
          transforms: [domain]
    """)
    with pytest.raises(RecordMappingError) as caught:
        org.map({"name": "Acme", "organisation_num_employees": "many", "website": "n/a"})
    assert [e[0] for e in caught.value.errors] == ["organisation_num_employees", "website"]
    assert "website → domain: `n/a` is not a web address" in str(caught.value)


def test_a_custom_field_by_title_is_named_with_its_column_in_record_errors(tmp_path):
    person = bound(tmp_path, person="""
        - source: {custom_field: "Head Count"}
          target: custom3
          transforms: [number]
    """, titles={"Head Count": "cf_person_head_count"}, section="person")
    with pytest.raises(RecordMappingError) as caught:
        person.map({"main_location[email]": "a@x.com", "cf_person_head_count": "lots"})
    assert caught.value.field == 'custom field "Head Count" (cf_person_head_count)'


def test_too_long_after_mapping_is_a_record_error(tmp_path):
    person = bound(tmp_path, person="""
        - source: person_job_title
          target: title
    """, section="person")
    with pytest.raises(RecordMappingError, match="person_job_title → title: is 300 characters long"):
        person.map({"main_location[email]": "a@x.com", "person_job_title": "x" * 300})
