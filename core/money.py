"""Money is an exact decimal amount in the company's currency, never a float."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def has_at_most_cents(value: Decimal) -> bool:
    """True when the amount needs no rounding to be written to QuickBooks.

    Read from the digits, not by quantizing: quantizing 1E+40 to cents overflows the decimal context."""
    if not value.is_finite():
        return False
    if value.same_quantum(CENT):
        return True  # exactly cents, as every converted amount is: no need to read its digits
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    beyond_cents = -2 - exponent
    return beyond_cents <= 0 or all(d == 0 for d in digits[-beyond_cents:])


def money_sum(values: object) -> Decimal:
    total = ZERO
    for v in values:  # type: ignore[attr-defined]
        total += v
    return total
