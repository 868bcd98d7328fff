"""Validation of what the CRM sends: every bad field is named, before anything is stored.

Field paths use the API's field names (`payment.refunds[1].amount`) so that callers in any language
can point at the offending input.
"""

from __future__ import annotations

import re
from decimal import Decimal

from core.domain import Customer, Job, Opportunity, Payment
from core.errors import FieldViolation, quoted
from core.money import CENT, ZERO, has_at_most_cents, money_sum

MAX_REQUEST_ID_LENGTH = 50
MAX_ID_LENGTH = 100
# Deliberately simple: one @, no spaces, a dot in the domain. QBO itself rejects worse.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# QBO forbids these in a DisplayName.
_FORBIDDEN_NAME_CHARS = (":", "\t", "\n")


def validate_payment_request(opportunity: Opportunity, payment: Payment, request_id: str) -> list[FieldViolation]:
    return [
        *_request_id(request_id),
        *_opportunity(opportunity, "opportunity"),
        *_payment(payment, "payment"),
    ]


def validate_job_request(
    opportunity: Opportunity, job: Job, payments: list[Payment], request_id: str
) -> list[FieldViolation]:
    violations = [*_request_id(request_id), *_opportunity(opportunity, "opportunity"), *_job(job, "job")]
    seen: set[str] = set()
    for i, payment in enumerate(payments):
        violations += _payment(payment, f"payments[{i}]")
        if payment.payment_id in seen:
            violations.append(FieldViolation(f"payments[{i}].payment_id", "the same payment is listed twice"))
        seen.add(payment.payment_id)
    return violations


def _request_id(request_id: str) -> list[FieldViolation]:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        return [FieldViolation("request_id", f"must be at most {MAX_REQUEST_ID_LENGTH} characters")]
    return []


def _id(value: str, path: str) -> list[FieldViolation]:
    if not value.strip():
        return [FieldViolation(path, "is required")]
    if len(value) > MAX_ID_LENGTH:
        return [FieldViolation(path, f"must be at most {MAX_ID_LENGTH} characters")]
    return []


def _opportunity(opportunity: Opportunity, path: str) -> list[FieldViolation]:
    return [
        *_id(opportunity.opportunity_id, f"{path}.opportunity_id"),
        *_customer(opportunity.customer, f"{path}.customer"),
    ]


def _customer(customer: Customer, path: str) -> list[FieldViolation]:
    violations = _id(customer.customer_id, f"{path}.customer_id")
    name = customer.display_name
    if not name:
        violations.append(
            FieldViolation(f"{path}.last_name", "a name is required: first_name and last_name, or company_name")
        )
    elif any(c in name for c in _FORBIDDEN_NAME_CHARS):
        violations.append(FieldViolation(f"{path}.last_name", "a name cannot contain ':', tabs or line breaks"))
    elif len(name) > 90:  # QBO's DisplayName limit is 100; leave room for a " - 12" suffix (R2).
        violations.append(FieldViolation(f"{path}.last_name", "the name must be at most 90 characters"))
    email = customer.email.strip()
    if email and not _EMAIL.match(email):
        violations.append(FieldViolation(f"{path}.email", f"{quoted(customer.email)} is not an email address"))
    return violations


def _amount(value: Decimal, path: str, *, allow_zero: bool = False) -> list[FieldViolation]:
    if value < ZERO or (value == ZERO and not allow_zero):
        return [FieldViolation(path, "must be greater than zero" if not allow_zero else "must not be negative")]
    if not has_at_most_cents(value):
        return [FieldViolation(path, f"must be in whole cents ({CENT})")]
    return []


def _payment(payment: Payment, path: str) -> list[FieldViolation]:
    violations = [*_id(payment.payment_id, f"{path}.payment_id"), *_amount(payment.amount, f"{path}.amount")]
    seen: set[str] = set()
    for i, refund in enumerate(payment.refunds):
        violations += _id(refund.refund_id, f"{path}.refunds[{i}].refund_id")
        violations += _amount(refund.amount, f"{path}.refunds[{i}].amount")
        if refund.refund_id in seen:
            violations.append(FieldViolation(f"{path}.refunds[{i}].refund_id", "the same refund is listed twice"))
        seen.add(refund.refund_id)
    violations += refunds_within_payment(payment, path)
    return violations


def refunds_within_payment(payment: Payment, path: str) -> list[FieldViolation]:
    """R4: the refunds of a payment never exceed the payment."""
    refunded = money_sum(r.amount for r in payment.refunds if r.amount > ZERO)
    if refunded > payment.amount > ZERO:
        return [
            FieldViolation(
                f"{path}.refunds",
                f"refunds total {refunded} which is more than the payment's {payment.amount}",
            )
        ]
    return []


def _job(job: Job, path: str) -> list[FieldViolation]:
    violations = [*_id(job.job_id, f"{path}.job_id")]
    if not job.number.strip():
        violations.append(FieldViolation(f"{path}.number", "is required (it becomes the invoice number)"))
    elif len(job.number) > 21:  # QBO DocNumber holds 21 characters.
        violations.append(FieldViolation(f"{path}.number", "must be at most 21 characters"))
    if not job.lines:
        violations.append(FieldViolation(f"{path}.lines", "a closed-out job needs at least one invoice line"))
    for i, line in enumerate(job.lines):
        line_path = f"{path}.lines[{i}]"
        if not line.description.strip():
            violations.append(FieldViolation(f"{line_path}.description", "is required"))
        if line.quantity <= ZERO:
            violations.append(FieldViolation(f"{line_path}.quantity", "must be greater than zero"))
        violations += _amount(line.unit_price, f"{line_path}.unit_price", allow_zero=True)
        line_violations = _amount(line.amount, f"{line_path}.amount", allow_zero=True)
        violations += line_violations
        if not line_violations and line.quantity > ZERO and abs(line.quantity * line.unit_price - line.amount) >= CENT:
            violations.append(
                FieldViolation(f"{line_path}.amount", "must equal quantity × unit_price (to the cent)")
            )
    return violations
