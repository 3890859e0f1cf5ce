"""Email addresses: the characters that make a look-alike of another address, and the form in
which addresses are compared. Pure functions, no I/O.

    invisible(address) -> str | None   "U+200B ZERO WIDTH SPACE at position 4", or None
    canonical(address) -> str          NFC: what is sent (case stays the mapping's choice)
    normalise(address) -> str          NFC, then lower-cased: what is compared and looked up

How Outreach compares addresses is not published: its uniqueness error speaks of an "email
hash", and reference outreach-api.md R2.3 recommends sending and comparing lower-cased
addresses (the emulator compares them lower-cased). So: Unicode lower-casing (`str.lower`), not
case folding (`str.casefold` turns "ß" into "ss", which would merge two addresses Outreach keeps
apart and rewrite the mailbox name sent). Before that, NFC (RFC 6532 §3.1: internationalised
addresses should be NFC), because "é" written as one character or as "e" plus a combining
accent looks the same and is the same address to a person, but not to a byte-wise comparison.
"""
from __future__ import annotations

import unicodedata

# Categories no one types into an address on purpose: controls, format characters (zero-width
# space, joiners, bidirectional marks, embeddings, overrides and isolates, word joiner, BOM, soft
# hyphen, tags), separators other than the plain space (no-break, em, ideographic space...),
# private-use, surrogates and unassigned code points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cs", "Cn"})
# Characters that render as nothing although Unicode files them elsewhere.
_INVISIBLE_CHARACTERS = frozenset(
    [0x034F,                                    # COMBINING GRAPHEME JOINER
     0x115F, 0x1160, 0x3164, 0xFFA0,            # Hangul fillers
     0x17B4, 0x17B5,                            # Khmer inherent vowels
     0x2800]                                    # BRAILLE PATTERN BLANK
    + list(range(0xFE00, 0xFE10))               # variation selectors
    + list(range(0xE0100, 0xE01F0)))            # variation selectors supplement
# A plain space is a typo anyone can see; the address syntax check says so.
_VISIBLE_SPACE = " "
# Names unicodedata does not give.
_CONTROL_NAMES = {0x00: "NULL", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN",
                  0x1B: "ESCAPE", 0x7F: "DELETE"}
_CATEGORY_NAMES = {"Cc": "CONTROL CHARACTER", "Co": "PRIVATE USE CHARACTER", "Cs": "SURROGATE",
                   "Cn": "UNASSIGNED CHARACTER"}


def _is_invisible(ch: str) -> bool:
    if ch == _VISIBLE_SPACE:
        return False
    return unicodedata.category(ch) in _INVISIBLE_CATEGORIES or ord(ch) in _INVISIBLE_CHARACTERS


def character_name(ch: str) -> str:
    """`U+200B ZERO WIDTH SPACE`: the code point and its Unicode name."""
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(ord(ch)) or _CATEGORY_NAMES.get(
        unicodedata.category(ch), "CHARACTER")
    return f"U+{ord(ch):04X} {name}"


def invisible(address: str) -> str | None:
    """The first invisible character of `address` and its place, counted from 1, e.g.
    "U+200B ZERO WIDTH SPACE at position 4"; None when there is none."""
    for position, ch in enumerate(address, start=1):
        if _is_invisible(ch):
            return f"{character_name(ch)} at position {position}"
    return None


def canonical(address: str) -> str:
    return unicodedata.normalize("NFC", address)


def normalise(address: str) -> str:
    # NFC again after lower-casing: "İ".lower() is "i" plus a combining dot.
    return unicodedata.normalize("NFC", canonical(address).lower())
