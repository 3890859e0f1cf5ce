"""plugin/emails.py (issue 16 §6): an invisible character in an address is named with its place,
and addresses are compared NFC-normalised and lower-cased (outreach-api.md R2.3; RFC 6532 §3.1)."""
from __future__ import annotations

import unicodedata

import pytest

from plugin import emails
from plugin.sync.send import plan
from plugin.mapping import DEFAULT_MAPPING_PATH, load_mapping
from plugin.outreach import email_search_forms, normalise_emails


@pytest.mark.parametrize("address, said", [
    ("ann\u200b@acme.example", "U+200B ZERO WIDTH SPACE at position 4"),
    ("\u202eann@acme.example", "U+202E RIGHT-TO-LEFT OVERRIDE at position 1"),
    ("ann@acme\u2066.example", "U+2066 LEFT-TO-RIGHT ISOLATE at position 9"),
    ("an\u200dn@acme.example", "U+200D ZERO WIDTH JOINER at position 3"),
    ("ann@acme.example\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE at position 17"),
    ("an\u00adn@acme.example", "U+00AD SOFT HYPHEN at position 3"),
    ("ann\u00a0@acme.example", "U+00A0 NO-BREAK SPACE at position 4"),
    ("ann\u2060@acme.example", "U+2060 WORD JOINER at position 4"),
    ("ann\U000e0041@acme.example", "U+E0041 TAG LATIN CAPITAL LETTER A at position 4"),
    ("ann\ufe0f@acme.example", "U+FE0F VARIATION SELECTOR-16 at position 4"),
    ("ann\u3164@acme.example", "U+3164 HANGUL FILLER at position 4"),
    ("ann\t@acme.example", "U+0009 CHARACTER TABULATION at position 4"),
    ("ann\x00@acme.example", "U+0000 NULL at position 4"),
    ("ann\ue000@acme.example", "U+E000 PRIVATE USE CHARACTER at position 4"),
])
def test_an_invisible_character_is_named_with_its_position(address, said):
    assert emails.invisible(address) == said


@pytest.mark.parametrize("address", ["ann@acme.example", "josé@acme.example", "李@acme.example",
                                     "jose\u0301@acme.example", "in ner@acme.example", "o'brien+tag@acme.example"])
def test_visible_addresses_have_nothing_invisible(address):
    """A combining accent shows (on its letter); a plain space is a visible typo the syntax check names."""
    assert emails.invisible(address) is None


def test_addresses_are_compared_nfc_and_lower_cased_not_case_folded():
    composed, decomposed = "José@Acme.example", "Jose\u0301@Acme.example"
    assert composed != decomposed
    assert emails.normalise(composed) == emails.normalise(decomposed) == "josé@acme.example"
    assert emails.normalise("Straße@acme.example") == "straße@acme.example"     # casefold would say "strasse"
    assert emails.normalise("İ@acme.example") == unicodedata.normalize("NFC", "i\u0307@acme.example")
    assert emails.canonical(decomposed) == "José@Acme.example"                    # case is the mapping's


def test_a_prospect_with_an_invisible_character_in_its_email_gets_a_message_naming_it():
    problem = plan.check_prospect_emails({"emails": ["ok@acme.example", "ann\u200b@acme.example"]})
    assert problem == ("the email address 'ann\\u200b@acme.example' contains U+200B ZERO WIDTH SPACE at "
                       "position 4, an invisible character: retype the Email field")
    assert plan.check_prospect_emails({"emails": ["in ner@acme.example"]}).startswith("invalid email address")
    assert plan.check_prospect_emails({"emails": ["josé@acme.example"]}) is None


def test_look_ups_and_comparisons_use_the_compared_form():
    decomposed = "Jose\u0301@Acme.example"
    assert normalise_emails([decomposed, "josé@acme.example"]) == ["josé@acme.example"]
    assert email_search_forms([decomposed]) == [decomposed, "josé@acme.example"]


def test_the_mapping_sends_one_spelling_of_an_address():
    person = load_mapping(DEFAULT_MAPPING_PATH).objects["person"].bind({})
    assert person.map({"main_location[email]": "Zoe\u0308@Acme.example"})["emails"] == ["zoë@acme.example"]
