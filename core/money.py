"""Money is an exact decimal amount in the company's currency, never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def to_money(value: Decimal | int | str) -> Decimal:
    """Quantize to cents; refuses floats so that no binary rounding ever slips in."""
    if isinstance(value, float):
        raise TypeError("money must never be a float")
    try:
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc


def has_at_most_cents(value: Decimal) -> bool:
    """True when the amount needs no rounding to be written to QuickBooks.

    Read from the digits, not by quantizing: quantizing 1E+40 to cents overflows the decimal context."""
    if not value.is_finite():
        return False
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    beyond_cents = -2 - exponent
    return beyond_cents <= 0 or all(d == 0 for d in digits[-beyond_cents:])


def money_sum(values: object) -> Decimal:
    total = ZERO
    for v in values:  # type: ignore[attr-defined]
        total += v
    return total
