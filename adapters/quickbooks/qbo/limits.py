"""QuickBooks Online's field limits: the one table qbsync checks requests against (SPEC.md section 7).

The core validates every request against `QBO_FIELD_LIMITS` before it accepts a job (it gets them through
`AccountingSystems.field_limits`, from this adapter or the fake, which uses the same table); mapping.py
truncates the one field that is shortened on purpose with the same number. The emulator keeps its own
"QBO says" copy of the limits QBO enforces (adapters/quickbooks/emulator/store.py), deliberately not imported
from here: it stands for QuickBooks, and a test (tests/integration/quickbooks/test_field_limits.py) checks
that this table is never looser than what the emulator enforces.

Sources: Intuit's API reference (Customer, Payment, Purchase, Invoice: "max N chars" per attribute) and the
Fault QBO answers when one is exceeded (2050 "String length is either shorter or longer than supported by
specification... Min:0 Max:N supported. Supplied length:M").

README.md's "QuickBooks' limits" table is `markdown_table()` (printed by `python -m adapters.quickbooks.qbo.limits`;
tests/unit/test_field_limits.py keeps the two in step).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from core.limits import TRUNCATED_ON_PURPOSE, FieldLimits

QBO_FIELD_LIMITS = FieldLimits(
    display_name=500,  # Customer.DisplayName
    given_name=100,  # Customer.GivenName
    family_name=100,  # Customer.FamilyName
    company_name=100,  # Customer.CompanyName
    email=100,  # Customer.PrimaryEmailAddr.Address
    phone=30,  # Customer.PrimaryPhone.FreeFormNumber
    payment_reference=21,  # Payment.PaymentRefNum
    private_note=4000,  # Payment/Purchase/Invoice.PrivateNote
    expense_line_description=4000,  # Purchase.Line.Description
    doc_number=21,  # Invoice.DocNumber
    invoice_line_description=4000,  # Invoice.Line.Description
    # Intuit documents no maximum amount. 15 significant digits (13 before the point, 2 after) is the most a
    # binary double — what many QBO clients and reports read amounts into — carries exactly to the cent;
    # anything near it is not a moving company's money anyway. *verify* against a sandbox.
    max_amount=Decimal("9999999999999.99"),
    # SPEC §7: QBO's date pickers and reports work within these years.
    earliest_date=date(1900, 1, 1),
    latest_date=date(2099, 12, 31),
    # SPEC §7: SalesItemLineDetail.Qty as QBO stores it.
    quantity_integer_digits=10,
    quantity_fraction_digits=6,
)

# Where each limit applies: (FieldLimits attribute, QBO field, the request field it comes from).
WHERE_APPLIED = (
    ("display_name", "Customer.DisplayName", "customer first_name + last_name, or company_name (+ ' - N', R2)"),
    ("given_name", "Customer.GivenName", "customer.first_name"),
    ("family_name", "Customer.FamilyName", "customer.last_name"),
    ("company_name", "Customer.CompanyName", "customer.company_name"),
    ("email", "Customer.PrimaryEmailAddr", "customer.email"),
    ("phone", "Customer.PrimaryPhone", "customer.phone"),
    ("payment_reference", "Payment.PaymentRefNum", "payment.reference"),
    ("private_note", "Payment/Purchase/Invoice.PrivateNote", "composed by qbsync from CRM ids and numbers"),
    ("expense_line_description", "Purchase.Line.Description", "refunds[].memo"),
    ("doc_number", "Invoice.DocNumber", "settings' DocNumber prefix + job.number"),
    ("invoice_line_description", "Invoice.Line.Description", "job.lines[].description"),
)


_OUTCOME = {
    **dict.fromkeys(TRUNCATED_ON_PURPOSE, "truncated on purpose"),
    "private_note": "cannot be: ids and opportunity.number (INVALID_ARGUMENT past 100 characters) bound it",
}


def markdown_table(limits: FieldLimits = QBO_FIELD_LIMITS) -> str:
    """The limits as README.md shows them."""
    rows = ["| QBO field | at most | from | when longer |", "|---|---|---|---|"]
    for attribute, qbo_field, source in WHERE_APPLIED:
        outcome = _OUTCOME.get(attribute, "INVALID_ARGUMENT")
        rows.append(f"| {qbo_field} | {getattr(limits, attribute)} characters | {source} | {outcome} |")
    rows.append(
        f"| amounts (TotalAmt, Line.Amount, UnitPrice) | {limits.max_amount} | every Money and the invoice "
        "total | INVALID_ARGUMENT |"
    )
    rows.append(
        f"| TxnDate | {limits.earliest_date} to {limits.latest_date} | received_time, refunded_time, "
        "service_date | INVALID_ARGUMENT |"
    )
    rows.append(
        f"| SalesItemLineDetail.Qty | {limits.quantity_integer_digits} digits before the point, "
        f"{limits.quantity_fraction_digits} after | job.lines[].quantity | INVALID_ARGUMENT |"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
