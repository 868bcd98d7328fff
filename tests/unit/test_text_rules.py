"""core/text.py answers as its one definition of a control character (`is_control`) does, read character by
character, whatever shortcut it takes for text that needs no cleaning (SPEC §7, "Text QBO cannot hold")."""

from __future__ import annotations

import re
import sys
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.domain import Customer, Opportunity, Payment, PaymentMethod, Refund
from core.text import clean_name, clean_opportunity, clean_payment, collapse_controls, is_control, usable_as_id


def _reference_collapse(text: str) -> str:
    """SPEC §7 read literally: each run of control characters becomes one space."""
    out, in_run = [], False
    for char in text:
        if is_control(char):
            if not in_run:
                out.append(" ")
            in_run = True
        else:
            out.append(char)
            in_run = False
    return "".join(out)


def _reference_usable_as_id(value: str) -> bool:
    return not any(is_control(c) or unicodedata.category(c) == "Cf" for c in value)


def _reference_clean_name(text: str) -> str:
    return re.sub(r"\s+", " ", _reference_collapse(text).replace(":", " ")).strip()


def test_no_printable_character_is_a_control_format_or_space_character_but_the_ascii_space() -> None:
    """What the shortcut for printable text rests on, for every code point (surrogates and astral planes too)."""
    wrong = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if not char.isprintable():
            continue
        if is_control(char) or unicodedata.category(char) == "Cf":
            wrong.append(f"U+{code:04X} is printable but refused")
        elif char != " " and (re.fullmatch(r"\s", char) or char.strip() != char):
            wrong.append(f"U+{code:04X} is printable but white space")
    assert wrong == []


def test_every_kind_of_character_the_definition_names_is_not_printable() -> None:
    """The other side, so the test above could fail: each category and the noncharacters are met."""
    for char in ["\x00", "\t", "\n", "\x7f", "\x85", "\u2028", "\u2029", "\ud800", "\udfff", "\ufdd0", "\ufffe"]:
        assert is_control(char) and not char.isprintable(), f"U+{ord(char):04X}"
    for char in ["\U0001fffe", "\U0010ffff", "\u200d", "\u00ad"]:
        assert not usable_as_id(f"id{char}") and not char.isprintable(), f"U+{ord(char):04X}"


# Text of every sort: printable (ASCII, accents, CJK, emoji), the ASCII space and ':', other spaces (NBSP,
# ideographic), controls, lone surrogates, format characters, noncharacters, private-use and astral code points.
_SPECIAL = st.sampled_from(
    [" ", ":", "\t", "\n", "\r", "\x00", "\x1f", "\x7f", "\x85", "\xa0", "\u2028", "\u2029", "\u3000", "\u200d"]
    + ["\u00ad", "\ufeff", "\ud83d", "\udc00", "\ufdd0", "\ufdef", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff"]
    + ["\ue000", "\U000f0000", "\U0001f600", "é", "李", "\u0378"]
)
_ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=sys.maxunicode, exclude_categories=())
TEXT = st.lists(st.one_of(_SPECIAL, _ANY_CHARACTER, st.sampled_from("ab Z9-'.")), max_size=30).map("".join)


@given(TEXT)
def test_collapse_controls_is_the_per_character_rule(text: str) -> None:
    assert collapse_controls(text) == _reference_collapse(text)


@given(TEXT)
def test_usable_as_id_is_the_per_character_rule(text: str) -> None:
    assert usable_as_id(text) == _reference_usable_as_id(text)


@given(TEXT)
def test_clean_name_is_the_per_character_rule(text: str) -> None:
    assert clean_name(text) == _reference_clean_name(text)


T = datetime(2026, 4, 1, tzinfo=UTC)


def test_a_clean_request_is_returned_as_it_came_and_a_dirty_one_cleaned() -> None:
    """Cleaning copies only what it changes; what it returns is what the per-character rule makes."""
    customer = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
    opportunity = Opportunity("o1", "1001", customer)
    payment = Payment("p1", Decimal("5.00"), PaymentMethod.CASH, T, "ref", (Refund("r1", Decimal("1.00"), T, "memo"),))
    assert clean_opportunity(opportunity) is opportunity
    assert clean_payment(payment) is payment

    dirty = Payment(
        "p1", Decimal("5.00"), PaymentMethod.CASH, T, "re\tf", (Refund("r1", Decimal("1.00"), T, "a\n\nb"),)
    )
    cleaned = clean_payment(dirty)
    assert cleaned.reference == "re f" and cleaned.refunds[0].memo == "a b"
    renamed = clean_opportunity(Opportunity("o1", "10\x0001", Customer("c1", "Ma:ry", " O'Brien ")))
    assert (
        renamed.number == "10 01" and renamed.customer.first_name == "Ma ry" and renamed.customer.last_name == "O'Brien"
    )
