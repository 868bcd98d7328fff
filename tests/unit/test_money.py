"""core/money.py: whether an amount is in whole cents, read from its digits (no rounding, no overflow)."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import CENT, has_at_most_cents

_WIDE = Context(prec=200, Emax=10**6, Emin=-(10**6))


_FINITE = {"allow_nan": False, "allow_infinity": False}


@given(st.decimals(**_FINITE) | st.decimals(places=2, **_FINITE) | st.decimals(places=5, **_FINITE))
def test_an_amount_has_at_most_cents_exactly_when_cents_hold_it_unchanged(value: Decimal) -> None:
    # quantize in a context wide enough for any value drawn: the independent answer.
    assert has_at_most_cents(value) == (_WIDE.quantize(value, CENT) == value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.00", True),
        ("1.5", True),
        ("1E+40", True),
        ("1.230", True),
        ("1.235", False),
        ("0.001", False),
        ("-0.00", True),
        ("NaN", False),
        ("Infinity", False),
    ],
)
def test_whole_cents_by_example(text: str, expected: bool) -> None:
    assert has_at_most_cents(Decimal(text)) is expected
