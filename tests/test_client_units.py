"""Pure helpers of the API client layer: no server needed."""
from __future__ import annotations

import datetime as dt
import email.utils
import io
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from plugin import endpoints, errors, limits, redirects
from plugin.deadline import Deadline
from plugin.fields import BUILT_IN, definitions
from plugin.http import parse_retry_hint
from plugin.outreach import chunk_values, email_search_forms, first_rate_value, normalise_emails, relationship
from plugin.redact import Redactor, redact
from plugin.runtime import ParamsError
from plugin.workbooks import (NO_VALUE, NULL_VALUE, _and_filter, encode_batch, encode_filter_value,
                              format_datetime, parse_batch_response, parse_datetime, wire_name)

NOW = 1_700_000_000.0
STALE = "This record cannot be saved since it has already been updated elsewhere."


# --- errors ---------------------------------------------------------------------------------------

def test_exit_codes():
    assert errors.TransientError("x").exit_code == 1
    assert errors.RateLimited("x", retry_at=5).exit_code == 1
    assert errors.NotAuthorised().exit_code == 2
    assert errors.NotInstalled().exit_code == 2
    assert errors.BadCredentials().exit_code == 2
    assert errors.InvalidMapping(["m.yaml:1:2: a — b"]).exit_code == 2
    assert errors.OutreachValidation("x", status=422).exit_code == 1
    assert errors.BudgetSpent().exit_code == 0
    assert errors.exit_code_for(ValueError()) == 1
    assert str(errors.NotAuthorised()) == "Outreach is not authorised: run the authorisation"
    mapping = errors.InvalidMapping(["a.yaml:1:1: x — y", "a.yaml:2:1: z — w"])
    assert mapping.problems == ["a.yaml:1:1: x — y", "a.yaml:2:1: z — w"]
    assert "a.yaml:2:1" in str(mapping)


# --- deadline -------------------------------------------------------------------------------------

def test_deadline_from_env():
    assert not Deadline.from_env(env={}).limited
    assert Deadline.from_env(default=30, env={}).total == 30
    d = Deadline.from_env(env={"TIMEOUT": "120"})
    assert d.limited and 119 < d.remaining() <= 120
    assert not d.expired() and d.expired(margin=121)
    assert Deadline.from_env(default=7, env={"TIMEOUT": "soon"}).total == 7
    assert Deadline.unlimited().remaining() == float("inf")


def test_deadline_uses_the_given_clock():
    now = [100.0]
    d = Deadline(10, clock=lambda: now[0])
    now[0] = 108
    assert d.remaining() == 2 and d.expired(margin=3)
    now[0] = 200
    assert d.remaining() == 0 and d.expired()


# --- retry hints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("5", NOW + 5),                         # delta seconds
    ("0", NOW),
    ("1700000123", 1700000123),              # epoch (> 1e9)
    ("1700000123, 1700003600", 1700000123),  # first of several values
    ("", None), (None, None), ("soon", None), ("-3", None),
])
def test_parse_retry_hint(value, expected):
    assert parse_retry_hint(value, NOW) == expected


def test_parse_retry_hint_dates():
    http_date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_hint(http_date, NOW) == NOW + 30
    iso = dt.datetime.fromtimestamp(NOW + 60, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert parse_retry_hint(iso, NOW) == NOW + 60


# --- redaction ------------------------------------------------------------------------------------

def test_redact_patterns_and_literals():
    text = ("GET https://x/crm/people.api?api_key=01234-56789&_dc=1 "
            'body {"access_token": "eyJabc.def", "refresh_token":"r-123456"} '
            "Authorization: Bearer eyJabc.def Cookie: Workbooks-Session=159376d0; "
            "client_secret=shhh-secret&code=abc123 session_id=deadbeef")
    out = redact(text)
    for secret in ("01234-56789", "eyJabc.def", "r-123456", "159376d0", "shhh-secret", "abc123", "deadbeef"):
        assert secret not in out
    assert "_dc=1" in out


def test_redact_authorization_headers():
    for header in ("Authorization: Bearer abc.def-ghi", "Authorization: Basic dXNlcjpwYXNz",
                   "{'Authorization': 'Token sekrit'}", "authorization=sekrit"):
        out = redact(header)
        assert not any(s in out for s in ("abc.def-ghi", "dXNlcjpwYXNz", "sekrit")), out


def test_redact_literal_and_url_encoded_secrets():
    secret = "tok/en+with=chars"
    out = redact(f"raw {secret} encoded {urlencode({'x': secret})}", [secret])
    assert secret not in out and "tok%2Fen" not in out
    assert redact("short ab", ["ab"]) == "short ab"      # too short to be a secret


def test_redactor_sources():
    current = ["first-secret"]
    r = Redactor(lambda: current)
    r.add("fixed-secret")
    assert "first-secret" not in r("a first-secret b fixed-secret")
    current[0] = "second-secret"
    assert r("second-secret") == "***"


# --- Workbooks encodings --------------------------------------------------------------------------

def test_datetime_round_trip():
    when = dt.datetime(2020, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert format_datetime(when) == "Wed Jan 01 12:00:00 UTC 2020"
    assert parse_datetime("Wed Jan 01 12:00:00 UTC 2020") == when
    assert parse_datetime("Fri Sept 7 14:00:00 UTC 2012") == dt.datetime(2012, 9, 7, 14, tzinfo=dt.timezone.utc)
    assert parse_datetime("2020-01-01T12:00:00Z") == when
    assert parse_datetime(" 2 May 2010") == dt.datetime(2010, 5, 2, tzinfo=dt.timezone.utc)
    assert parse_datetime(1577880000) == when
    assert parse_datetime("") is None and parse_datetime(None) is None
    naive = dt.datetime(2020, 1, 1, 12, 0, 0, 999999)
    assert format_datetime(naive) == "Wed Jan 01 12:00:00 UTC 2020"   # one-second resolution
    with pytest.raises(ValueError):
        parse_datetime("not a date")


def test_filter_values():
    assert encode_filter_value("eq", True) == "1" and encode_filter_value("eq", False) == "0"
    assert encode_filter_value("blank", None) == ""
    assert encode_filter_value("eq", [1, 2, 3]) == "1,2,3"
    assert encode_filter_value("eq", ["Acme, Inc.", "Other"]) == "Acme\\, Inc.,Other"
    assert encode_filter_value("eq", "1,2") == "1,2"     # a string is sent as it is (IN on the wire)
    when = dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert encode_filter_value("ge", when) == "Wed Jan 01 12:00:00 UTC 2020"


def test_and_filter_keeps_the_callers_logic():
    one = [("a", "eq", 1)]
    assert _and_filter([], None, ("id", "gt", 5)) == ([("id", "gt", 5)], None)
    assert _and_filter(one, None, ("id", "gt", 5))[1] is None
    assert _and_filter(one + one, "or", ("id", "gt", 5))[1] == "(1 OR 2) AND 3"
    assert _and_filter(one * 3, "1 AND (2 OR 3)", ("id", "gt", 5))[1] == "(1 AND (2 OR 3)) AND 4"


def test_wire_names():
    assert wire_name("name") == "name[]"
    assert wire_name("main_location[email]") == "main_location[email][]"
    assert wire_name("org_lead_party[main_location[email]]") == "org_lead_party[main_location][email][]"


def test_square_array_encoding():
    rows = [
        {"__method": "PUT", "id": 12, "lock_version": 3, "cf_person_outreach_id": "999"},
        {"__method": "POST", "name": "New", "main_location": {"email": "a@b.com"}, "flag": False},
        {"__method": "DELETE", "id": 14, "lock_version": 1},
        {"__method": "PUT", "id": 15, "lock_version": 0, "cf_person_outreach_id": None},
    ]
    body = encode_batch(rows)
    columns: dict[str, list[str]] = {}
    for name, value in body:
        columns.setdefault(name, []).append(value)
    assert columns["_ff[]"] == ["id"] * 4 and columns["_ft[]"] == ["eq"] * 4
    assert columns["_fc[]"] == ["12", "0", "14", "15"]
    assert columns["_fm"] == ["or"]
    assert columns["__method[]"] == ["PUT", "POST", "DELETE", "PUT"]
    assert columns["id[]"] == ["12", "0", "14", "15"]
    assert columns["lock_version[]"] == ["3", "0", "1", "0"]
    assert columns["cf_person_outreach_id[]"] == ["999", NO_VALUE, NO_VALUE, NULL_VALUE]
    assert columns["main_location[email][]"] == [NO_VALUE, "a@b.com", NO_VALUE, NO_VALUE]
    assert columns["flag[]"] == [NO_VALUE, "0", NO_VALUE, NO_VALUE]
    # every row has every key: a square array
    per_row = {name: len(values) for name, values in columns.items() if name.endswith("[]") and not name.startswith("_f")}
    assert set(per_row.values()) == {4}
    # the body survives form encoding with names percent-encoded, as requests sends it
    assert dict(parse_qsl(urlencode(body)))["_fm"] == "or"


def test_square_array_limits():
    with pytest.raises(ValueError):
        encode_batch([{"__method": "POST", "name": str(i)} for i in range(101)])
    with pytest.raises(ValueError):
        encode_batch([{"__method": "PUT", "name": "no id"}])
    creates = encode_batch([{"__method": "POST", "name": "a"}, {"__method": "POST", "name": "b"}])
    assert [v for k, v in creates if k == "_fc[]"] == ["0"]     # one `id eq 0` for all creates


# --- shape-agnostic batch results -------------------------------------------------------------------

ROWS = [{"__method": "PUT", "id": 12, "lock_version": 3}, {"__method": "POST", "name": "x"}]


def test_batch_results_success():
    payload = {"success": True, "affected_object_information": [{"success": True, "errors": [], "warnings": []}] * 2,
               "affected_objects": [{"id": 12, "lock_version": 4, "updated_at": "Wed Jan 01 12:00:00 UTC 2020"},
                                    {"id": 99, "lock_version": 0, "name": "x"}]}
    a, b = parse_batch_response(ROWS, payload)
    assert (a.ok, a.id, a.lock_version, a.stale) == (True, 12, 4, False)
    assert (b.ok, b.id, b.lock_version) == (True, 99, 0)
    assert a.affected["updated_at"].startswith("Wed")


def test_batch_results_readme_success_with_empty_info():
    payload = {"affected_object_information": [{}], "affected_objects": [{"id": 226, "lock_version": 0}],
               "flash": "Updated successfully", "success": True, "updates": {}}
    (result,) = parse_batch_response([{"__method": "POST", "name": "New"}], payload)
    assert result.ok and result.id == 226


def test_batch_results_stale_reference_shape():
    payload = {"success": False, "failures": [STALE],
               "errors": {"[]": {"lock_version": STALE}},
               "affected_object_information": [{"success": False, "errors": {"lock_version": [STALE]}, "warnings": {}}],
               "affected_objects": []}
    (result,) = parse_batch_response([ROWS[0]], payload)
    assert not result.ok and result.stale and result.id is None
    assert any("updated elsewhere" in e for e in result.errors)


def test_batch_results_stale_without_per_row_info():
    (result,) = parse_batch_response([ROWS[0]], {"success": False, "failures": [STALE]})
    assert not result.ok and result.stale


def test_batch_results_mixed_per_object():
    rows = [{"__method": "PUT", "id": 1, "lock_version": 1}, {"__method": "PUT", "id": 2, "lock_version": 5},
            {"__method": "POST", "name": "c"}]
    payload = {"success": False,
               "affected_object_information": [{"success": True, "errors": [], "warnings": []},
                                               {"success": False, "errors": {"lock_version": [STALE]}},
                                               {"success": True, "errors": {}, "warnings": {}}],
               # only the saved ones are listed: matched by id, then creates in order
               "affected_objects": [{"id": 1, "lock_version": 2}, {"id": 77, "lock_version": 0}]}
    a, b, c = parse_batch_response(rows, payload)
    assert (a.ok, a.lock_version) == (True, 2)
    assert (b.ok, b.stale) == (False, True)
    assert (c.ok, c.id) == (True, 77)


def test_batch_results_validation_failure_is_not_stale():
    payload = {"affected_object_errors": [{"refcode": ["'DUP' is already used"]}],
               "errors": {"[]": {"refcode": "'DUP' is already used"}}, "success": False}
    (result,) = parse_batch_response([{"__method": "POST", "refcode": "DUP"}], payload)
    assert not result.ok and not result.stale
    assert any("refcode" in e for e in result.errors)


def test_batch_results_unchanged_update_keeps_version():
    payload = {"success": True, "affected_object_information": [{"success": True, "errors": [], "warnings": []}],
               "affected_objects": [{"id": 12, "lock_version": 3}]}
    (result,) = parse_batch_response([ROWS[0]], payload)
    assert result.ok and result.lock_version == 3


# --- Outreach helpers -------------------------------------------------------------------------------

def test_normalise_emails():
    assert normalise_emails([" A@B.com", "a@b.com", None, "", "c@d.com"]) == ["a@b.com", "c@d.com"]


def test_email_search_forms_keep_the_given_case_and_add_lower_case():
    # outreach-api.md R2.3: whether filter[emails] ignores case is unknown
    assert email_search_forms([" A@B.com", "a@b.com", None, "", "c@d.com", "A@B.com"]) == [
        "A@B.com", "a@b.com", "c@d.com"]


def test_chunk_values_by_count_and_length():
    values = [f"user{i}@example.com" for i in range(120)]
    chunks = chunk_values(values, count=50)
    assert [len(c) for c in chunks] == [50, 50, 20]
    long = ["x" * 600 + f"{i}@e.com" for i in range(5)]
    assert all(len(c) <= 2 for c in chunk_values(long, chars=1500))
    assert chunk_values(["y" * 5000]) == [["y" * 5000]]


def test_rate_values_and_relationships():
    assert first_rate_value("9999, 19988") == 9999
    assert first_rate_value("42") == 42 and first_rate_value(None) is None and first_rate_value("x") is None
    assert relationship("owner", 5) == {"data": {"type": "user", "id": 5}}
    assert relationship("account", None) == {"data": None}


# --- fields ---------------------------------------------------------------------------------------

def test_field_definitions_from_manifest_and_fallback(tmp_path):
    keys = {"sync", "sync_error", "duplicate", "outreach_id", "outreach_url", "error_message",
            "last_synced", "snapshot"}
    receive = {"sequence_state", "sequence_name", "state_updated_at", "opted_out_at"}   # Person only (0.2.0)
    assert {d.key for d in definitions("person")} == keys | receive
    assert {d.key for d in definitions("organisation")} == keys
    assert {d.key for d in definitions("person") if d.optional} == receive
    assert [d.title for d in definitions("person")] == [d.title for d in BUILT_IN["person"]]
    assert definitions("person", tmp_path / "missing.yaml") == BUILT_IN["person"]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("custom_fields:\n  person:\n    - {key: sync, title: Sync Me, data_type: boolean}\n")
    assert [d.title for d in definitions("person", manifest)] == ["Sync Me"]
    assert definitions("organisation", manifest) == BUILT_IN["organisation"]
    with pytest.raises(ValueError):
        definitions("lead")


# --- where the plugin may connect (plugin.endpoints, issue 16 §4, §6) -------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, True), ("", True), (True, True), (False, False), ("true", True), ("FALSE", False), ("Yes", True),
    ("no", False), ("on", True), ("Off", False), ("1", True), ("0", False), (1, True), (0, False), (" true ", True)])
def test_verify_tls_takes_clear_spellings(value, expected):
    assert endpoints.verify_tls({"verify_tls": value}) is expected
    assert (endpoints.tls_warning({"verify_tls": value}) is None) is expected


@pytest.mark.parametrize("value", ["ture", "enabled", "2", 2, "t", "y", "disable", "null", [], {}])
def test_verify_tls_refuses_anything_else(value):
    with pytest.raises(ParamsError, match="parameter verify_tls must be true or false") as caught:
        endpoints.verify_tls({"verify_tls": value})
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("url", ["https://api.outreach.io/api/v2", "http://127.0.0.1:8080/api/v2",
                                 "http://localhost:9/oauth", "http://[::1]:9/api/v2", "http://127.8.9.10/x",
                                 "HTTPS://API.OUTREACH.IO/api/v2/"])
def test_outreach_urls_https_or_loopback(url):
    assert endpoints.outreach_url({"outreach_api_url": url}, "outreach_api_url") == url.rstrip("/")


@pytest.mark.parametrize("url, words", [
    ("http://api.outreach.io/api/v2", "must use https, not http (http://api.outreach.io)"),
    ("http://10.0.0.1/api/v2", "must use https"), ("http://localhost.evil.example/", "must use https"),
    ("ftp://api.outreach.io/api/v2", "must be an https:// URL"), ("api.outreach.io/api/v2", "must be an https:// URL"),
    ("https://user:pw@api.outreach.io/api/v2", "must not carry a user name or password"),
    ("https://api.outreach.io:port/api/v2", "must be an https:// URL")])
def test_outreach_urls_refused(url, words):
    with pytest.raises(ParamsError) as caught:
        endpoints.outreach_url({"outreach_oauth_url": url}, "outreach_oauth_url")
    assert f"parameter outreach_oauth_url {words}" in str(caught.value) and "pw@" not in str(caught.value)


def test_outreach_urls_default_when_unset():
    assert endpoints.outreach_urls({"outreach_api_url": ""}) == endpoints.DEFAULT_URLS


# --- redirect targets (plugin.redirects) and capped bodies (plugin.limits) ---------------------------------

def test_origins():
    assert redirects.same_origin("https://a.example/x?y", "HTTPS://A.example:443/z")
    assert not redirects.same_origin("https://a.example/", "http://a.example/")
    assert not redirects.same_origin("http://127.0.0.1:1/", "http://127.0.0.1:2/")
    assert not redirects.same_origin("https://a.example.evil/", "https://a.example/")
    assert not redirects.same_origin("https://a.example:nope/", "https://a.example/")
    assert redirects.host_of("https://user:pw@a.example:8443/p?api_key=k") == "a.example:8443"


def test_a_streamed_body_over_the_cap_is_refused_without_content_length():
    def response(size: int):
        answer = requests.Response()
        answer.raw = io.BytesIO(b"x" * size)
        answer.status_code = 200
        return answer
    ok = response(100)
    limits.read_body(ok, limit=100)
    assert ok.content == b"x" * 100
    with pytest.raises(limits.BodyTooLarge) as caught:
        limits.read_body(response(200_000), limit=100_000)
    assert caught.value.size > 100_000 and not caught.value.declared
