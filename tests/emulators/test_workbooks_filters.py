"""Contract tests for reads: paging, sorting, counting, column selection and the full filter
grammar of reference/workbooks-api.md §3."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.emulators.test_workbooks_contract import Api, api, filters  # noqa: F401  (fixture)

UTC = dt.timezone.utc


@pytest.fixture
def people(api):
    """Five people with varied values; the clock is frozen at 2023-09-01 10:00 UTC for the inserts."""
    app = api.app
    app.clock.set(dt.datetime(2023, 9, 1, 10, 0, 0, tzinfo=UTC))
    app.clock.freeze(True)
    flag = app.add_custom_field("people", "Sync to Outreach", "boolean")
    outreach_id = app.add_custom_field("people", "Outreach Id", "string")
    score = app.add_custom_field("people", "Score", "decimal")
    rows = [
        {"name": "Alice Smith", "main_location[email]": "alice@acme.test", flag: True, outreach_id: "", score: "1.5"},
        {"name": "Bob Jones", "main_location[email]": "bob@acme.test", flag: False, outreach_id: "17", score: "20"},
        {"name": "Carol Smithers", "main_location[email]": None, flag: True, outreach_id: None, score: None},
        {"name": "Dan Brown", "main_location[email]": "dan@other.test", flag: True, outreach_id: "42", score: "3"},
        {"name": "Smith, John", "main_location[email]": "john@acme.test", flag: False, outreach_id: None,
         score: "-2"},
    ]
    ids = []
    for offset, fields in enumerate(rows):
        app.clock.set(dt.datetime(2023, 9, 1, 10, 0, offset, tzinfo=UTC))
        ids.append(app.insert("people", fields)["id"])
    app.clock.set(dt.datetime(2023, 9, 1, 12, 0, 0, tzinfo=UTC))
    return {"ids": ids, "flag": flag, "outreach_id": outreach_id, "score": score, "api": api}


def names(api: Api, params) -> list[str]:
    return [r["name"] for r in api.rows("crm/people", [*params, ("_select_columns[]", "name")])]


# --- §3.1 paging, sorting, counting ----------------------------------------------------------------------

def test_start_limit_and_total(people):
    # workbooks-api.md §3.1: 0-based _start, _limit rows, total counts every match
    api = people["api"]
    payload = api.get("crm/people", [("_start", "1"), ("_limit", "2"), ("_select_columns[]", "id")]).json()
    assert payload["data"] == [{"id": people["ids"][1]}, {"id": people["ids"][2]}]
    assert payload["total"] == 5


def test_limit_without_start_is_honoured(people):
    # workbooks-api.md §3.1 [O]: 2025 traffic honours _limit without _start (switch limit_requires_start)
    api = people["api"]
    assert len(api.rows("crm/people", [("_limit", "1")])) == 1
    api.app.config["limit_requires_start"] = True
    assert len(api.rows("crm/people", [("_limit", "1")])) == 5
    assert len(api.rows("crm/people", [("_limit", "1"), ("_start", "0")])) == 1


def test_default_page_size_and_max_limit_cap(api):
    # workbooks-api.md §3.1 default page 100; §11 result-size limits (switch max_limit, silently capped)
    for i in range(130):
        api.app.insert("api_data", {"key": f"k{i}", "value": str(i)})
    assert len(api.rows("automation/api_data")) == 100
    payload = api.get("automation/api_data", [("_start", "0"), ("_limit", "500")]).json()
    assert (len(payload["data"]), payload["total"]) == (100, 130)
    api.app.config["max_limit"] = 120
    assert len(api.rows("automation/api_data", [("_start", "0"), ("_limit", "500")])) == 120
    assert len(api.rows("automation/api_data", [("_start", "120"), ("_limit", "500")])) == 10


@pytest.mark.parametrize("spelling", ["__skip_total_rows", "_skip_total_rows"])
def test_skip_total_rows(people, spelling):
    # workbooks-api.md §3.1: both spellings; total then equals the rows returned
    payload = people["api"].get("crm/people", [(spelling, "true"), ("_start", "0"), ("_limit", "2")]).json()
    assert len(payload["data"]) == 2
    assert payload["total"] == 2


def test_sort_and_direction(people):
    # workbooks-api.md §3.1: _sort/_dir, case-insensitive strings (§3.2 [I])
    api = people["api"]
    assert names(api, [("_sort", "name"), ("_dir", "ASC")]) == [
        "Alice Smith", "Bob Jones", "Carol Smithers", "Dan Brown", "Smith, John"]
    assert names(api, [("_sort", "name"), ("_dir", "DESC")]) == [
        "Smith, John", "Dan Brown", "Carol Smithers", "Bob Jones", "Alice Smith"]
    assert names(api, [("_sort", "created_at"), ("_dir", "DESC"), ("_limit", "2"), ("_start", "0")]) == [
        "Smith, John", "Dan Brown"]


def test_multi_column_sort_arrays(people):
    # workbooks-api.md §3.1: _sort[]=a&_dir[]=DESC&_sort[]=b&_dir[]=ASC; NULLs first ascending
    api = people["api"]
    order = names(api, [("_sort[]", people["flag"]), ("_dir[]", "DESC"), ("_sort[]", people["outreach_id"]),
                        ("_dir[]", "ASC")])
    assert order == ["Carol Smithers", "Alice Smith", "Dan Brown", "Smith, John", "Bob Jones"]


def test_bad_paging_and_sorting_are_refused(people):
    # workbooks-api.md §11: 406 unacceptable parameters
    api = people["api"]
    for params in ([("_start", "x")], [("_limit", "-1")], [("_sort", "no_such_column")],
                   [("_sort", "name"), ("_dir", "SIDEWAYS")]):
        response = api.get("crm/people", params)
        assert response.status_code == 406, params
        assert response.json()["success"] is False


# --- §3.3 column selection -----------------------------------------------------------------------------------

def test_select_columns_exact_and_unknown_null(people):
    # workbooks-api.md §3.3: only the requested columns, in order; unknown ones null
    rows = people["api"].rows("crm/people", [("_select_columns[]", "lock_version"), ("_select_columns[]", "name"),
                                             ("_select_columns[]", "no_such_column"), ("_limit", "1")])
    assert rows == [{"lock_version": 0, "name": "Alice Smith", "no_such_column": None}]
    assert list(rows[0]) == ["lock_version", "name", "no_such_column"]


def test_all_columns_without_selection(people):
    # workbooks-api.md §3.3: without _select_columns every column comes back, custom fields included
    row = people["api"].rows("crm/people", [("_limit", "1")])[0]
    assert row[people["flag"]] is True
    assert row[people["score"]] == "1.5"              # §6.2: decimal is a string
    assert len(row) > 80


# --- §3.2 filters ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,value,expected", [
    ("eq", "alice smith", ["Alice Smith"]),                        # string eq ignores case [I]
    ("ne", "Alice Smith", ["Bob Jones", "Carol Smithers", "Dan Brown", "Smith, John"]),
    ("ct", "SMITH", ["Alice Smith", "Carol Smithers", "Smith, John"]),
    ("nct", "smith", ["Bob Jones", "Dan Brown"]),
    ("bg", "smith", ["Smith, John"]),
    ("nbg", "smith", ["Alice Smith", "Bob Jones", "Carol Smithers", "Dan Brown"]),
    ("gt", "carol smithers", ["Dan Brown", "Smith, John"]),
    ("ge", "carol smithers", ["Carol Smithers", "Dan Brown", "Smith, John"]),
    ("lt", "bob jones", ["Alice Smith"]),
    ("le", "bob jones", ["Alice Smith", "Bob Jones"]),
])
def test_string_operators(people, op, value, expected):
    # workbooks-api.md §3.2 operator table (string types)
    assert names(people["api"], filters(("name", op, value))) == expected


def test_blank_and_not_blank(people):
    # workbooks-api.md §3.2: blank matches NULL or "" [I]; the ignored _fc[] is still required
    api, column = people["api"], people["outreach_id"]
    assert names(api, filters((column, "blank", ""))) == ["Alice Smith", "Carol Smithers", "Smith, John"]
    assert names(api, filters((column, "not_blank", "ignored"))) == ["Bob Jones", "Dan Brown"]
    assert names(api, filters(("main_location[email]", "blank", ""))) == ["Carol Smithers"]


@pytest.mark.parametrize("op,value", [("true", ""), ("eq", "1"), ("eq", "true"), ("eq", "TRUE"),
                                      ("ne", "0"), ("ne", "false")])
def test_boolean_true_forms(people, op, value):
    # workbooks-api.md §3.2: true/false operators; booleans under eq/ne as 1/0 (true/false accepted)
    assert names(people["api"], filters((people["flag"], op, value))) == ["Alice Smith", "Carol Smithers", "Dan Brown"]


@pytest.mark.parametrize("op,value", [("false", ""), ("eq", "0"), ("eq", "false"), ("ne", "1")])
def test_boolean_false_forms(people, op, value):
    # workbooks-api.md §3.2
    assert names(people["api"], filters((people["flag"], op, value))) == ["Bob Jones", "Smith, John"]


def test_numeric_comparisons(people):
    # workbooks-api.md §3.2: gt ge lt le on numbers (decimal custom field and integer id)
    api, score, ids = people["api"], people["score"], people["ids"]
    assert names(api, filters((score, "gt", "3"))) == ["Bob Jones"]
    assert names(api, filters((score, "ge", "3"))) == ["Bob Jones", "Dan Brown"]
    assert names(api, filters((score, "lt", "1.5"))) == ["Smith, John"]
    assert names(api, filters((score, "le", "1.50"))) == ["Alice Smith", "Smith, John"]
    assert names(api, filters(("id", "gt", str(ids[2])))) == ["Dan Brown", "Smith, John"]
    assert names(api, filters(("id", "le", str(ids[0])))) == ["Alice Smith"]


def test_eq_comma_list_is_in_with_escape(people):
    # workbooks-api.md §3.2: `_fc[]` under eq is an IN list; `\,` is a literal comma
    api, ids = people["api"], people["ids"]
    assert names(api, filters(("id", "eq", f"{ids[0]},{ids[3]}"))) == ["Alice Smith", "Dan Brown"]
    assert names(api, filters(("name", "eq", "Smith, John"))) == []
    assert names(api, filters(("name", "eq", "Smith\\, John"))) == ["Smith, John"]
    assert names(api, filters(("name", "eq", "Bob Jones,Smith\\, John"))) == ["Bob Jones", "Smith, John"]


def test_single_filter_without_brackets(people):
    # workbooks-api.md §3.2: with one filter the brackets may be omitted
    api = people["api"]
    assert names(api, [("_ff", "name"), ("_ft", "bg"), ("_fc", "dan")]) == ["Dan Brown"]


def test_between_and_not_between(people):
    # workbooks-api.md §3.2: _fc[]=JSON([a,b]), inclusive like ge+le
    api, score = people["api"], people["score"]
    assert names(api, filters((score, "between", "JSON([1.5,3])"))) == ["Alice Smith", "Dan Brown"]
    assert names(api, filters((score, "not_between", "JSON([1.5,3])"))) == ["Bob Jones", "Smith, John"]
    assert names(api, filters(("created_at", "between", "JSON([2023-09-01,2023-09-01])"))) == [
        "Alice Smith", "Bob Jones", "Carol Smithers", "Dan Brown", "Smith, John"]
    assert names(api, filters(("created_at", "between",
                               'JSON(["Fri Sep 01 10:00:01 UTC 2023","2023-09-01T10:00:03Z"])'))) == [
        "Bob Jones", "Carol Smithers", "Dan Brown"]


def test_null_and_negative_operators_switch(people):
    # workbooks-api.md §3.2 [I]: NULLs never match ne/nct/nbg (SQL); switch null_matches_negative_operators
    api, column = people["api"], people["outreach_id"]
    assert names(api, filters((column, "ne", "42"))) == ["Alice Smith", "Bob Jones"]
    assert names(api, filters((column, "nct", "4"))) == ["Alice Smith", "Bob Jones"]
    api.app.config["null_matches_negative_operators"] = True
    assert names(api, filters((column, "ne", "42"))) == ["Alice Smith", "Bob Jones", "Carol Smithers", "Smith, John"]
    assert names(api, filters((column, "nbg", "4"))) == ["Alice Smith", "Bob Jones", "Carol Smithers", "Smith, John"]


# --- datetime filters ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "Fri Sep 01 10:00:02 UTC 2023",          # default format
    "Fri Sept 1 10:00:02 UTC 2023",          # loose form from the README
    "2023-09-01T10:00:02Z",                  # ISO with Z
    "2023-09-01T11:00:02+01:00",             # ISO with an offset
    "2023-09-01T10:00:02.000Z",              # ISO with milliseconds
    "1693562402",                            # epoch seconds
])
def test_datetime_filter_input_forms(people, value):
    # workbooks-api.md §3.2 and §8: datetime filters accept the default format, ISO and epoch
    api = people["api"]
    assert names(api, filters(("created_at", "eq", value))) == ["Carol Smithers"]
    assert names(api, filters(("created_at", "ge", value))) == ["Carol Smithers", "Dan Brown", "Smith, John"]
    assert names(api, filters(("created_at", "lt", value))) == ["Alice Smith", "Bob Jones"]


def test_bare_date_on_datetime_matches_whole_day(people):
    # workbooks-api.md §3.2: `_ff[]=created_at&_ft[]=eq&_fc[]=2023-09-01` matches that whole day
    api = people["api"]
    assert len(names(api, filters(("created_at", "eq", "2023-09-01")))) == 5
    assert names(api, filters(("created_at", "eq", "2023-09-02"))) == []
    assert len(names(api, filters(("created_at", "eq", " 1 Sep 2023")))) == 5
    assert names(api, filters(("created_at", "gt", "2023-09-01"))) == []        # after that day
    assert len(names(api, filters(("created_at", "le", "2023-09-01")))) == 5     # on or before
    assert names(api, filters(("created_at", "lt", "2023-09-01"))) == []


def test_today_operators(people):
    # workbooks-api.md §3.2: today, ge_today, gt_today, le_today, lt_today (emulator clock, UTC)
    api = people["api"]
    app = api.app
    app.clock.set(dt.datetime(2023, 9, 2, 9, 0, 0, tzinfo=UTC))
    bob = people["ids"][1]
    app.edit("people", bob, {"person_job_title": "Changed Today"})
    assert names(api, filters(("updated_at", "today", ""))) == ["Bob Jones"]
    assert names(api, filters(("updated_at", "ge_today", ""))) == ["Bob Jones"]
    assert names(api, filters(("updated_at", "gt_today", ""))) == []
    assert len(names(api, filters(("updated_at", "lt_today", "")))) == 4
    assert len(names(api, filters(("updated_at", "le_today", "")))) == 5
    response = api.get("crm/people", filters(("name", "today", "")))
    assert response.status_code == 406


def test_date_custom_field_filters(api):
    # workbooks-api.md §3.2 with §6.2 dates: eq/gt on a date field, ISO and `%e %b %Y` inputs
    column = api.app.add_custom_field("people", "Renewal Date", "date")
    api.app.insert("people", {"name": "Early", column: "2018-01-31"})
    api.app.insert("people", {"name": "Late", column: "31 Jan 2029"})
    assert names(api, filters((column, "eq", "31 Jan 2018"))) == ["Early"]
    assert names(api, filters((column, "gt", "2020-01-01"))) == ["Late"]
    assert names(api, filters((column, "eq", "Wed Jan 31 16:30:00 UTC 2029"))) == ["Late"]


# --- _fm combinations --------------------------------------------------------------------------------------------

def test_fm_or_and_default_and(people):
    # workbooks-api.md §3.2: _fm and (default) / or; `_fm[]=or` is read as _fm
    api, flag = people["api"], people["flag"]
    both = filters((flag, "true", ""), ("name", "ct", "smith"))
    assert names(api, both) == ["Alice Smith", "Carol Smithers"]
    assert names(api, both + [("_fm", "AND")]) == ["Alice Smith", "Carol Smithers"]
    assert names(api, both + [("_fm", "or")]) == ["Alice Smith", "Carol Smithers", "Dan Brown", "Smith, John"]
    assert names(api, both + [("_fm[]", "or")]) == ["Alice Smith", "Carol Smithers", "Dan Brown", "Smith, John"]


def test_fm_boolean_expression_plugin_rule(people):
    # workbooks-api.md §3.2: the Outreach pick-up rule 1 AND 2 AND 3 AND (4 OR 5)
    api, app = people["api"], people["api"].app
    error = app.add_custom_field("people", "Outreach Sync Error", "boolean")
    duplicate = app.add_custom_field("people", "Outreach Duplicate", "boolean")
    app.edit("people", people["ids"][3], {duplicate: True})                     # Dan: duplicate
    params = filters((people["flag"], "eq", "1"), (error, "eq", "0"), (duplicate, "eq", "0"),
                     (people["outreach_id"], "blank", ""), ("updated_at", "ge", "Fri Sep 01 10:00:02 UTC 2023"))
    assert names(api, params + [("_fm", "1 AND 2 AND 3 AND (4 OR 5)")]) == ["Alice Smith", "Carol Smithers"]
    assert names(api, params + [("_fm", "1 AND 2 AND 3 AND 4 AND 5")]) == ["Carol Smithers"]


@pytest.mark.parametrize("expression,expected", [
    ("NOT 1", ["Bob Jones", "Smith, John"]),
    ("!1", ["Bob Jones", "Smith, John"]),
    ("1 XOR 2", ["Dan Brown", "Smith, John"]),
    ("not (1 or 2)", ["Bob Jones"]),
    ("1 AND NOT 2 OR 3", ["Bob Jones", "Dan Brown"]),          # AND binds tighter than OR
    ("1 AND (NOT 2 OR 3)", ["Dan Brown"]),
    ("((1)) AND ((((2))))", ["Alice Smith", "Carol Smithers"]),
    ("3 OR 2 XOR 1", ["Bob Jones", "Dan Brown", "Smith, John"]),  # XOR binds tighter than OR
    ("1 XOR 2 XOR 3", ["Bob Jones", "Dan Brown", "Smith, John"]),   # odd number true
])
def test_fm_expression_grammar(people, expression, expected):
    # workbooks-api.md §3.2: AND, OR, XOR, NOT/! and parentheses over 1-based filter numbers
    params = filters((people["flag"], "true", ""), ("name", "ct", "smith"), ("name", "eq", "Bob Jones"))
    assert names(people["api"], params + [("_fm", expression)]) == expected


@pytest.mark.parametrize("expression", ["1 AND", "(1 OR 2", "1 2", "4", "0", "1 AND ) 2", "1 NAND 2",
                                        "OR OR", "1 && 2", "(" * 200 + "1" + ")" * 200, "1 OR 2; DROP TABLE"])
def test_fm_bad_expressions_are_refused(people, expression):
    # workbooks-api.md §3.2, §11: a bad expression is an error answer (406), never a crash
    params = filters((people["flag"], "true", ""), ("name", "ct", "smith"), ("name", "eq", "Bob Jones"))
    response = people["api"].get("crm/people", params + [("_fm", expression)])
    assert response.status_code == 406
    payload = response.json()
    assert payload["success"] is False
    assert "_fm" in payload["errors"]["[]"]


def test_filter_json(people):
    # workbooks-api.md §3.2: _filter_json=[["name","ct","..."],[...]]
    api = people["api"]
    assert names(api, [("_filter_json", '[["name","ct","smith"],["main_location[email]","ct","acme"]]')]) == [
        "Alice Smith", "Smith, John"]
    assert names(api, [("_filter_json", f'[["{people["flag"]}","eq",true]]')]) == [
        "Alice Smith", "Carol Smithers", "Dan Brown"]
    assert names(api, [("_filter_json", '[["name","ct","smith"],["name","bg","dan"]]'), ("_fm", "1 OR 2")]) == [
        "Alice Smith", "Carol Smithers", "Dan Brown", "Smith, John"]


@pytest.mark.parametrize("params", [
    filters(("name", "resembles", "x")),
    [("_ff[]", "name"), ("_ft[]", "eq")],                                   # _fc[] missing
    filters(("id", "eq", "abc")),
    filters(("created_at", "ge", "not a date")),
    filters(("created_at", "ge", "Fri Sep 01 10:00:02 BST 2023")),          # only UTC is accepted
    filters(("id", "between", "JSON([1])")),
    [("_filter_json", "[[not json")],
    [("_filter_json", '{"name": "x"}')],
])
def test_bad_filters_are_refused(people, params):
    # workbooks-api.md §3.2, §11: 406 with the API's error shape
    response = people["api"].get("crm/people", params)
    assert response.status_code == 406
    payload = response.json()
    assert payload["success"] is False and payload["failures"]


def test_unknown_filter_field_is_ignored_by_default(people):
    # Switch unknown_filter_field (default "ignore"): the reference is silent (§3.2, §11), so the
    # filter is dropped as if never sent: AND keeps the other filters, OR then matches everything
    api = people["api"]
    everyone = names(api, [])
    assert names(api, filters(("no_such_field", "eq", "1"))) == everyone
    assert names(api, filters(("no_such_field", "true", ""), ("name", "bg", "dan"))) == ["Dan Brown"]
    assert names(api, filters(("no_such_field", "true", ""), ("name", "bg", "dan")) + [("_fm", "1 OR 2")]) == everyone
    assert api.get("crm/people", filters(("no_such_field", "resembles", "1"))).status_code == 406   # bad operator still


def test_unknown_filter_field_is_refused_when_switched_to_error(people):
    # Switch unknown_filter_field="error": 406 with the API's error shape (§11)
    api = people["api"]
    api.app.config["unknown_filter_field"] = "error"
    response = api.get("crm/people", filters(("no_such_field", "eq", "1")))
    assert response.status_code == 406
    assert response.json()["success"] is False and "no_such_field" in response.json()["failures"][0]


# --- deleted records ----------------------------------------------------------------------------------------------

def test_deleted_records_hidden_unless_filtered(people):
    # workbooks-api.md §3.2 "Visibility of Deleted Objects"
    api, app, ids = people["api"], people["api"].app, people["ids"]
    app.clock.set(dt.datetime(2023, 9, 5, 8, 0, 0, tzinfo=UTC))
    app.delete("people", ids[1])
    assert "Bob Jones" not in names(api, [])
    assert api.get("crm/people").json()["total"] == 4
    assert names(api, filters(("is_deleted", "eq", "1"))) == ["Bob Jones"]
    deleted_since = filters(("is_deleted", "eq", "1"), ("updated_at", "gt", "Fri Sept 1 14:00:00 UTC 2023"))
    assert names(api, deleted_since) == ["Bob Jones"]
    everything = filters(("updated_at", "ge", "2023-09-01"), ("is_deleted", "true", ""), ("is_deleted", "false", ""))
    assert len(names(api, everything + [("_fm", "1 AND (2 OR 3)")])) == 5
