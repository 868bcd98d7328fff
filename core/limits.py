"""What the accounting system can hold (SPEC.md section 7, "Bounds" and "Text QBO cannot hold").

The core checks every request against these limits before it accepts a job, so that a value QuickBooks
would refuse is an INVALID_ARGUMENT naming the field, never a failed job. The numbers are not the core's:
the accounting adapter supplies them (`AccountingSystems.field_limits`); for QuickBooks Online they live in
one table in adapters/quickbooks/qbo/limits.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class FieldLimits:
    """The longest text (in characters) and the largest numbers each written field may carry.

    Text fields are named after what qbsync writes there. Amounts are checked as written (to the cent),
    quantities by their digits before and after the decimal point, dates by their day.
    """

    # Customer
    display_name: int
    given_name: int
    family_name: int
    company_name: int
    email: int
    phone: int
    # Payment, refund expense/check, invoice
    payment_reference: int  # PaymentRefNum: truncated on purpose, never refused (TRUNCATED_ON_PURPOSE)
    private_note: int
    expense_line_description: int  # the refund's memo
    doc_number: int
    invoice_line_description: int
    # Numbers
    max_amount: Decimal
    earliest_date: date
    latest_date: date
    quantity_integer_digits: int
    quantity_fraction_digits: int


TRUNCATED_ON_PURPOSE = {
    "payment_reference": "Payment.PaymentRefNum keeps the first characters of payment.reference; the whole "
    "reference stays in the CRM (card processors' transaction ids are often longer than QBO holds)",
}
"""The fields qbsync shortens instead of refusing, and why (SPEC §7: "except the ones qbsync documents")."""


def quantity_fits(quantity: Decimal, limits: FieldLimits) -> bool:
    """True when the quantity has at most the allowed digits before and after the decimal point.

    Works on the digits, never by arithmetic, so that a quantity like 9E+999999 cannot overflow here."""
    if not quantity.is_finite():
        return False
    _sign, digits, exponent = quantity.as_tuple()
    assert isinstance(exponent, int)
    # Trailing zeros after the point say nothing ("3.500000000" is 3.5); strip them from the digits
    # themselves (normalize() would round to the context's precision first).
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if all(d == 0 for d in digits):
        return True
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    return integer_digits <= limits.quantity_integer_digits and fraction_digits <= limits.quantity_fraction_digits
