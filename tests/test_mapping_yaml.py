"""Broken YAML and schema violations are reported at the right FILE:LINE:COL, in plain words,
all at once."""
from __future__ import annotations

import re

import pytest

from plugin.mapping import Problem, load_mapping, validate_mapping_file
from tests.mapping_helpers import check, errors, mapping_text, only, position, write

LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")


def test_problem_format():
    problem = Problem("m.yaml", 3, 7, "what is wrong", "how to fix it")
    assert str(problem) == "m.yaml:3:7: what is wrong — how to fix it"
    warning = Problem("m.yaml", 1, 1, "odd", "", "warning")
    assert str(warning) == "m.yaml:1:1: warning: odd"


# --- YAML syntax ----------------------------------------------------------------------------------

def test_tab_indentation_is_reported_on_every_line_with_a_tab(tmp_path):
    text = mapping_text().replace("    target: prospect", "\ttarget: prospect").replace(
        "        target: name", "\t\ttarget: name")
    problems = check(tmp_path, text)
    assert [(p.line, p.col) for p in problems] == [
        (position(text, "\ttarget: prospect")[0], 1), (position(text, "\t\ttarget: name")[0], 1)]
    assert problems[0].message == "a tab is used for indentation"
    assert problems[0].hint == "YAML indents with spaces only: replace the tab with spaces"


def test_tabs_that_yaml_accepts_are_fine(tmp_path):
    text = mapping_text(person='- value: "a\tb"\n  target: custom1\n  note: |\n    line one\n    \tindented')
    assert check(tmp_path, text) == []


def test_a_tab_before_a_comment_is_reported_too(tmp_path):
    text = mapping_text().replace("version: 1", "version: 1\n\t# a comment")
    problem = only(check(tmp_path, text))
    assert (problem.line, problem.col, problem.message) == (2, 1, "a tab is used for indentation")


def test_a_line_indented_too_deep(tmp_path):
    text = mapping_text().replace("        target: emails", "         target: emails")
    problem = only(check(tmp_path, text))
    line, _ = position(text, "target: emails")
    assert problem.line == line
    assert problem.message == "unexpected `:` on this line"
    assert "indented more than the key above it" in problem.hint


def test_a_list_item_indented_too_little(tmp_path):
    text = mapping_text(person="""
        - source: a
          target: custom1
    """).replace("      - source: a", "     - source: a")
    problem = only(check(tmp_path, text))
    assert (problem.line, problem.col) == position(text, "- source: a")
    assert problem.message == "this line is not lined up with the lines above it"


def test_a_key_without_colon(tmp_path):
    text = mapping_text().replace("target: account", "target account")
    problem = only(check(tmp_path, text))
    assert problem.line == position(text, "target account")[0] + 1
    assert problem.message == "unexpected `:` on this line: the line above has no `:`"
    assert problem.hint == "write the line above as `key: value` (`target account` has no `:`)"


def test_an_unclosed_quote_points_at_the_opening_quote(tmp_path):
    text = mapping_text(person="""
        - template: "{person_first_name}
          target: custom1
    """)
    problem = only(check(tmp_path, text))
    assert (problem.line, problem.col) == position(text, '"{person_first_name}')
    assert problem.message == "the file ends inside quoted text"


def test_duplicate_keys_are_errors_at_the_second_key(tmp_path):
    text = mapping_text(person="""
        - source: person_first_name
          target: firstName
          target: lastName
          transforms: [truncate]
    """)
    problem = only(check(tmp_path, text))
    assert (problem.line, problem.col) == position(text, "target: lastName")
    first_line = position(text, "target: firstName")[0]
    assert problem.message == f"`target` appears twice in this block (first at line {first_line})"
    assert problem.hint == "remove one of them: YAML would silently keep only the last"


def test_duplicate_sections_are_errors(tmp_path):
    text = mapping_text() + "  person:\n    target: prospect\n    fields: [{source: a, target: emails, transforms: [to_list]}]\n"
    problems = check(tmp_path, text)
    assert [p.message for p in problems] == ["`person` appears twice in this block (first at line 3)"]


def test_duplicate_value_map_keys_as_yaml_sees_them(tmp_path):
    text = mapping_text(person="""
        - source: a
          target: custom1
          transforms:
            - value_map: {"x": "1", "x": "2"}
            - truncate
    """)
    problem = only(check(tmp_path, text))
    assert problem.message.startswith("`x` appears twice")


def test_empty_file_and_two_documents(tmp_path):
    assert only(check(tmp_path, "# nothing here\n")).message == "the mapping file is empty"
    problem = only(check(tmp_path, mapping_text() + "---\nversion: 1\n"))
    assert problem.message == "the file holds more than one YAML document"


def test_missing_file():
    problem = only(validate_mapping_file("/nonexistent/mapping.yaml"))
    assert str(problem) == "/nonexistent/mapping.yaml:1:1: the mapping file does not exist — check the path"


def test_anchors_aliases_and_merge_keys_work_like_safe_load(tmp_path):
    text = mapping_text(person="""
        - source: person_first_name
          target: firstName
          transforms: &names [trim, truncate]
        - source: person_last_name
          target: lastName
          transforms: *names
        - &job
          source: person_job_title
          target: title
          transforms: [truncate]
        - <<: *job
          target: custom1
    """)
    assert check(tmp_path, text) == []
    person = load_mapping(write(tmp_path, text)).objects["person"].bind({})
    assert person.map({"main_location[email]": "a@x.com", "person_first_name": " Ann ",
                       "person_last_name": "Lee ", "person_job_title": "CTO"}) == {
        "emails": ["a@x.com"], "firstName": "Ann", "lastName": "Lee", "title": "CTO", "custom1": "CTO"}


# --- schema ---------------------------------------------------------------------------------------

def test_unknown_keys_with_did_you_mean(tmp_path):
    text = mapping_text(person="""
        - source: a
          targte: custom1
          skip_emtpy: true
    """).replace("target: account", "target: account\n    match-key: name")
    problems = errors(check(tmp_path, text))
    found = {(p.line, p.col): (p.message, p.hint) for p in problems}
    assert found[position(text, "targte")] == ("unknown key `targte` in a field", "did you mean `target`?")
    assert found[position(text, "skip_emtpy")] == ("unknown key `skip_emtpy` in a field",
                                                   "did you mean `skip_empty`?")
    assert found[position(text, "match-key")] == ("unknown key `match-key`", "did you mean `match_key`?")


def test_an_attribute_written_as_a_key(tmp_path):
    text = mapping_text(person="""
        - firstName: person_first_name
    """)
    problems = errors(check(tmp_path, text))
    unknown = [p for p in problems if p.message.startswith("unknown key")]
    assert unknown[0].hint.startswith("a field is written `- source: <Workbooks field>`")


def test_a_section_at_the_top_level(tmp_path):
    text = "version: 1\nperson:\n  target: prospect\nobjects: {}\n"
    problems = check(tmp_path, text)
    assert any(p.message == "`person` is not a top-level key" and p.hint == "indent it under `objects:`"
               for p in problems)


@pytest.mark.parametrize("field, expected_message, expected_hint", [
    ("skip_empty: yes please", "`skip_empty` must be true or false, not the text `yes please`",
     "write `true` or `false`"),
    ("transforms: trim", "`transforms` must be a list, not the text `trim`",
     "write it as a list: `[trim]`, or one `- trim` line per item"),
    ("target: 12", "`target` must be text, not the number `12`", 'put it in quotes: `"12"`'),
    ("target:", "`target` must be text, not empty", "write a value after the `:`"),
    ("direction: sned", "`direction` cannot be `sned`: direction is one of send, receive or both",
     "did you mean `send`?"),
])
def test_wrong_types_and_values(tmp_path, field, expected_message, expected_hint):
    item = "- source: a\n  target: custom1\n  " + field if not field.startswith("target") \
        else "- source: a\n  " + field
    text = mapping_text(person=item)
    problem = only(errors(check(tmp_path, text)))
    assert (problem.message, problem.hint) == (expected_message, expected_hint)
    assert (problem.line, problem.col) == position(text, field, offset=field.index(":") + 2) \
        if not field.endswith(":") else True


def test_a_date_where_text_is_expected_suggests_quotes(tmp_path):
    text = mapping_text(person="""
        - value: 2024-01-01
          target: custom1
    """)
    problem = only(check(tmp_path, text))
    assert (problem.line, problem.col) == position(text, "2024-01-01")
    assert problem.message == ("`value` must be text, a number, true or false or a list, not a date "
                               "(`2024-01-01`)")
    assert problem.hint == 'put it in quotes: `"2024-01-01"`'


def test_version(tmp_path):
    assert only(check(tmp_path, mapping_text().replace("version: 1", "version: 2"))).message == \
        "version 2 is not supported: this plugin reads mapping files of `version: 1`"
    assert only(check(tmp_path, mapping_text().replace("version: 1", 'version: "1"'))).hint == \
        "remove the quotes: `version: 1`"
    problem = only(check(tmp_path, mapping_text().replace("version: 1\n", "")))
    assert (problem.line, problem.col, problem.message) == (1, 1, "the file has no `version`")


def test_missing_sections_and_fields(tmp_path):
    text = "version: 1\nobjects:\n  person:\n    target: prospect\n"
    messages = [p.message for p in check(tmp_path, text)]
    assert "there is no `organisation` section" in messages
    assert "`person` has no `fields`" in messages


def test_empty_fields_list(tmp_path):
    text = mapping_text().replace("""      - source: name
        target: name
        transforms: [truncate]""", "").replace("    fields:\n\n", "    fields: []\n")
    problem = only(errors(check(tmp_path, text)))
    assert problem.message == "`fields` is empty"


def test_every_problem_is_reported_at_once_in_file_order(tmp_path):
    text = mapping_text(person="""
        - source: a
          target: linkedinUrl
        - source: b
          target: custom1
          transforms: [lowr]
    """, organisation="""
        - source: c
          target: numberOfEmployees
    """).replace("version: 1", "version: 3")
    problems = check(tmp_path, text)
    assert len(problems) == 4
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    for problem in problems:
        match = LOCATION.match(str(problem))
        assert match and match["file"] == str(tmp_path / "mapping.yaml") and " — " in match["rest"]


# --- robustness -----------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from plugin.mapping import DEFAULT_MAPPING_PATH, analyse_text  # noqa: E402

DEFAULT_LINES = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").splitlines()
NOISE = st.sampled_from(["\t", " ", ":", "- ", "{", "[", '"', "'", "&a ", "*a", "<<: *a", "yes", "~",
                         "? ", "#", "target: name", "transforms: [", "value_map: {Yes: 1}", "!!binary x"])


@st.composite
def mutated(draw):
    lines = list(DEFAULT_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "insert", "indent", "dedent"]))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "insert":
            column = draw(st.integers(0, len(lines[index])))
            lines[index] = lines[index][:column] + draw(NOISE) + lines[index][column:]
        elif action == "indent":
            lines[index] = " " + lines[index]
        else:
            lines[index] = lines[index][1:]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_any_damaged_mapping_gives_problems_never_a_crash(text):
    problems, compiler = analyse_text(text, "m.yaml")
    line_count = text.count("\n") + 1
    for problem in problems:
        assert 1 <= problem.line <= line_count + 1 and problem.col >= 1
        assert problem.message
    if not any(p.is_error for p in problems):
        assert set(compiler.objects) == {"person", "organisation"}


# --- input that once crashed the validator ---------------------------------------------------------

def test_a_nul_byte_is_a_problem_not_a_crash(tmp_path):
    problems = check(tmp_path, "version: 1\x00\n")
    assert len(problems) == 1 and problems[0].line == 1
    assert "not valid YAML" in problems[0].message


def test_a_list_as_target_is_a_problem_not_a_crash(tmp_path):
    text = mapping_text().replace("target: name", "target: [name]", 1)
    problems = check(tmp_path, text)
    assert any("`target` must be text, not a list" in p.message for p in problems)


# --- hostile files (issue 16 §4) -------------------------------------------------------------------

def _nested_aliases(levels: int, width: int) -> str:
    """`width ** levels` values from a few hundred bytes: each block repeats the one above."""
    names = [f"n{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:])]
    return mapping_text() + "\n".join(lines) + "\n"


def test_nested_aliases_beyond_50000_values_are_one_problem_not_a_build(tmp_path):
    """10**5 values here (an alias bomb is 9**9): refused once 50,000 are built, nothing more said."""
    problem = only(check(tmp_path, _nested_aliases(5, 10)))
    assert problem.message.startswith("this file stands for more than 50,000 values")
    assert "`*aliases`" in problem.message and problem.hint


def test_nested_merges_are_counted_before_they_are_made(tmp_path):
    text = mapping_text() + "m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}\n" + "".join(
        f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 10)}]}}\n" for n in range(1, 5))
    problem = only(check(tmp_path, text))
    assert problem.message.startswith("this file stands for more than 50,000 values")


def test_aliases_well_within_the_limit_are_read_as_before(tmp_path):
    """1,000 values: only the schema speaks (the extra top-level keys are unknown to it)."""
    problems = check(tmp_path, _nested_aliases(3, 10))
    assert [p.message for p in problems] == ["unknown key `n0`", "unknown key `n1`", "unknown key `n2`"]


def test_at_most_100_problems_are_reported_and_the_rest_counted(tmp_path):
    fields = "".join(f"- source: x{i}\n  target: notAnAttribute{i}\n" for i in range(150))
    problems = check(tmp_path, mapping_text(person=fields))
    assert len(problems) == 101
    assert problems[-1].message == "50 more problems not shown" and problems[-1].is_error


def test_left_out_warnings_stay_warnings(tmp_path):
    from plugin.yamldoc import WARNING, Problem, capped
    many = [Problem("f", n, 1, "w", severity=WARNING) for n in range(1, 120)]
    assert not capped(many)[-1].is_error and len(capped(many)) == 101


def test_a_problem_quotes_at_most_a_short_excerpt_of_the_file_on_one_line(tmp_path):
    """`mapping: /etc/passwd` once printed the whole file inside one problem."""
    text = "\n".join(f"user{n}:x:{n}:{n}:User {n}:/home/user{n}:/bin/bash" for n in range(200)) + "\n"
    [problem] = check(tmp_path, text)
    shown = str(problem)
    assert "user0:x:0:0" in shown and "user10:" not in shown and len(shown) < 400
    key = mapping_text(person='- source: x\n  target: title\n  transforms: [truncate]\n  "a\\nb [error] fake": 1\n')
    lines = [str(p) for p in check(tmp_path, key)]
    assert lines and all("\n" not in line for line in lines)
    assert any("a\\nb [error] fake" in line for line in lines)


def test_a_device_or_a_folder_is_not_read_and_a_huge_file_is_refused_unread(tmp_path):
    assert only(validate_mapping_file(tmp_path)).message == (
        "the mapping file is not a regular file (a device, a folder or a pipe)")
    huge = write(tmp_path, "version: 1\n" + "#" * (1 << 20), "huge.yaml")
    assert only(validate_mapping_file(huge)).message == "the mapping file is larger than 1 MB"
