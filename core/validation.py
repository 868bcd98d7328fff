"""Validation of what the CRM sends: every bad field is named, before anything is stored.

Field paths use the API's field names (`payment.refunds[1].amount`) so that callers in any language
can point at the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation, Overflow, localcontext

from core.accounting import DiscountSpec
from core.customer_matching import MAX_NAME_SUFFIX
from core.domain import Customer, Discount, Job, Opportunity, Payment, Payout
from core.errors import FieldViolation, quoted
from core.limits import FieldLimits, quantity_fits
from core.money import CENT, ZERO, has_at_most_cents, money_sum
from core.text import usable_as_id

MAX_REQUEST_ID_LENGTH = 50
MAX_ID_LENGTH = 100
# The opportunity number goes into every record's PrivateNote: bounded like an id, so that the notes qbsync
# composes always fit QuickBooks' PrivateNote (tests/unit/test_field_limits.py proves it).
MAX_OPPORTUNITY_NUMBER_LENGTH = 100
# Deliberately simple: one @, no spaces, a dot in the domain. QBO itself rejects worse.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# R2 may add up to " - 50" to a name that is taken.
_NAME_SUFFIX_ROOM = len(f" - {MAX_NAME_SUFFIX}")
# The CRM's name of the tax rate it charged: bounded as QuickBooks bounds its own rate names (TaxRate.Name,
# "Maximum of 100 chars" in Intuit's reference), so that it fits wherever the bookkeeper sees it beside them.
MAX_TAX_RATE_NAME_LENGTH = 100
# QuickBooks holds a discount percent with two decimals (12.75%) and drops any further ones (integrators'
# reports, *verify*); a CRM percent finer than that would name a discount QuickBooks cannot show.
MAX_PERCENT_DECIMALS = 2
_PERCENT_STEP = Decimal(1).scaleb(-MAX_PERCENT_DECIMALS)
_HUNDRED = Decimal(100)


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


def validate_payout_request(payout: Payout, request_id: str) -> list[FieldViolation]:
    """SPEC §9, what can be judged from the request alone; whether the parts add up needs the listed
    payments' stored amounts (`payout_parts_violations`, at staging)."""
    violations = [
        *_request_id(request_id),
        *_id(payout.payout_id, "payout.payout_id"),
        *_amount(payout.amount, "payout.amount"),
        *_amount(payout.fees, "payout.fees", allow_zero=True),
        *_amount(payout.chargebacks, "payout.chargebacks", allow_zero=True),
    ]
    for name, ids in (("payment_ids", payout.payment_ids), ("refund_ids", payout.refund_ids)):
        seen: set[str] = set()
        for i, value in enumerate(ids):
            violations += _id(value, f"payout.{name}[{i}]")
            if value in seen:
                violations.append(FieldViolation(f"payout.{name}[{i}]", f"{value} is listed twice"))
            seen.add(value)
    for i, adjustment in enumerate(payout.adjustments):
        path = f"payout.adjustments[{i}].amount"
        # Signed: a reserve held takes from the deposit, one released adds to it; zero would be a line of nothing.
        if not adjustment.amount.is_finite():
            violations.append(FieldViolation(path, "must be a number"))
        elif adjustment.amount == ZERO:
            violations.append(FieldViolation(path, "must not be zero"))
        elif not has_at_most_cents(adjustment.amount):
            violations.append(FieldViolation(path, f"must be in whole cents ({CENT})"))
    if not payout.payment_ids and not payout.adjustments:
        # A Deposit needs at least one line that brings money in.
        violations.append(FieldViolation("payout.payment_ids", "a payout needs at least one payment or adjustment"))
    return violations


def payout_parts_violations(
    payout: Payout, payment_amounts: Mapping[str, Decimal], refund_amounts: Mapping[str, Decimal]
) -> list[FieldViolation]:
    """SPEC §9: the listed payments − the listed refunds − fees − chargebacks + adjustments = amount, to the
    cent. Judged once every listed payment and refund is known (`*_amounts` hold their stored amounts)."""
    if any(p not in payment_amounts for p in payout.payment_ids) or any(
        r not in refund_amounts for r in payout.refund_ids
    ):
        return []  # an unknown payment or refund is named by its own precondition; no sum can be judged
    payments = money_sum(payment_amounts[p] for p in payout.payment_ids)
    refunds = money_sum(refund_amounts[r] for r in payout.refund_ids)
    parts = payments - refunds - payout.fees - payout.chargebacks + payout.adjustments_total
    if parts == payout.amount:
        return []
    return [
        FieldViolation(
            "payout.amount",
            f"{payout.amount} is not what the parts add up to: payments {payments} − refunds {refunds}"
            f" − fees {payout.fees} − chargebacks {payout.chargebacks} + adjustments"
            f" {payout.adjustments_total} = {parts}",
        )
    ]


def payout_request_limits(payout: Payout, limits: FieldLimits) -> list[FieldViolation]:
    violations = [
        *_amount_limit(payout.amount, "payout.amount", limits),
        *_amount_limit(payout.fees, "payout.fees", limits),
        *_amount_limit(payout.chargebacks, "payout.chargebacks", limits),
        *_date_limit(payout.arrival_date, "payout.arrival_date", limits),
    ]
    for i, adjustment in enumerate(payout.adjustments):
        path = f"payout.adjustments[{i}]"
        if adjustment.amount.is_finite() and abs(adjustment.amount) > limits.max_amount:
            violations.append(FieldViolation(f"{path}.amount", f"must be within ±{limits.max_amount}"))
        # The memo is the Deposit line's description, as a refund's memo is its expense line's.
        violations += _text_limit(adjustment.memo, f"{path}.memo", limits.expense_line_description)
    return violations


def request_id_violations(request_id: str) -> list[FieldViolation]:
    """What is wrong with a request's optional request_id (AIP-155): its length, control characters."""
    return _request_id(request_id)


def _request_id(request_id: str) -> list[FieldViolation]:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        return [FieldViolation("request_id", f"must be at most {MAX_REQUEST_ID_LENGTH} characters")]
    if not usable_as_id(request_id):
        return [FieldViolation("request_id", _NO_CONTROLS)]
    return []


def text_id_violations(value: str, path: str, *, required: bool = True) -> list[FieldViolation]:
    """A CRM id (or a branch, a service type): at most MAX_ID_LENGTH characters, no control characters;
    `required`: not blank. Branch ids are keys of connections and mappings, so they follow the ids' rules."""
    if not required and not value:
        return []
    return _id(value, path)


def _id(value: str, path: str) -> list[FieldViolation]:
    if not value.strip():
        return [FieldViolation(path, "is required")]
    if len(value) > MAX_ID_LENGTH:
        return [FieldViolation(path, f"must be at most {MAX_ID_LENGTH} characters")]
    if not usable_as_id(value):
        return [FieldViolation(path, _NO_CONTROLS)]
    return []


_NO_CONTROLS = "must not contain control or invisible formatting characters (tabs, line breaks, NUL...)"


def _opportunity(opportunity: Opportunity, path: str) -> list[FieldViolation]:
    return [
        *_id(opportunity.opportunity_id, f"{path}.opportunity_id"),
        *text_id_violations(opportunity.branch_id, f"{path}.branch_id", required=False),
        *text_id_violations(opportunity.service_type, f"{path}.service_type", required=False),
        *_customer(opportunity.customer, f"{path}.customer"),
    ]


def _customer(customer: Customer, path: str) -> list[FieldViolation]:
    violations = _id(customer.customer_id, f"{path}.customer_id")
    name = customer.display_name
    if not name:
        violations.append(
            FieldViolation(f"{path}.last_name", "a name is required: first_name and last_name, or company_name")
        )
    email = customer.email.strip()
    if email and not _EMAIL.match(email):
        violations.append(FieldViolation(f"{path}.email", f"{quoted(customer.email)} is not an email address"))
    return violations


def _amount(value: Decimal, path: str, *, allow_zero: bool = False) -> list[FieldViolation]:
    if not value.is_finite():
        return [FieldViolation(path, "must be a number")]
    if value < ZERO or (value == ZERO and not allow_zero):
        return [FieldViolation(path, "must be greater than zero" if not allow_zero else "must not be negative")]
    if not has_at_most_cents(value):
        return [FieldViolation(path, f"must be in whole cents ({CENT})")]
    return []


def _payment(payment: Payment, path: str) -> list[FieldViolation]:
    violations = [*_id(payment.payment_id, f"{path}.payment_id"), *_amount(payment.amount, f"{path}.amount")]
    for name, part in (("tip", payment.tip), ("processing_fee", payment.processing_fee)):
        part_violations = _amount(part, f"{path}.{name}", allow_zero=True)
        violations += part_violations
        # Both are parts of what the customer paid: the tip of the payment, the fee out of it.
        if not part_violations and payment.amount.is_finite() and part > payment.amount > ZERO:
            violations.append(
                FieldViolation(f"{path}.{name}", f"{part} is more than the payment's amount {payment.amount}")
            )
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
    refunded = money_sum(r.amount for r in payment.refunds if r.amount.is_finite() and r.amount > ZERO)
    if payment.amount.is_finite() and refunded > payment.amount > ZERO:
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
    if not job.lines:
        violations.append(FieldViolation(f"{path}.lines", "a closed-out job needs at least one invoice line"))
    for i, line in enumerate(job.lines):
        line_path = f"{path}.lines[{i}]"
        if not line.description.strip():
            violations.append(FieldViolation(f"{line_path}.description", "is required"))
        if not line.quantity.is_finite():
            violations.append(FieldViolation(f"{line_path}.quantity", "must be a number"))
        elif line.quantity <= ZERO:
            violations.append(FieldViolation(f"{line_path}.quantity", "must be greater than zero"))
        violations += _amount(line.unit_price, f"{line_path}.unit_price", allow_zero=True)
        line_violations = _amount(line.amount, f"{line_path}.amount", allow_zero=True)
        violations += line_violations
        if not line_violations and _line_amount_differs(line.quantity, line.unit_price, line.amount):
            violations.append(FieldViolation(f"{line_path}.amount", "must equal quantity × unit_price (to the cent)"))
    return violations + _job_charges(job, path)


def _job_charges(job: Job, path: str) -> list[FieldViolation]:
    """SPEC §8: tax, discounts, tip and surcharge, and the total they make with the lines."""
    violations: list[FieldViolation] = []
    for name, part in _charges(job):
        violations += _amount(part, f"{path}.{name}", allow_zero=True)
    if job.tax.is_finite() and job.tax > ZERO and not any(line.taxable for line in job.lines):
        violations.append(
            FieldViolation(f"{path}.tax", "tax is charged but no line is taxable: mark the taxed lines taxable")
        )
    for i, discount in enumerate(job.discounts):
        violations += _discount(discount, f"{path}.discounts[{i}]")
    # QuickBooks has one ApplyTaxAfterDiscount per invoice: the discounts cannot disagree about it.
    if job.discounts:
        first = job.discounts[0].after_tax
        for i, discount in enumerate(job.discounts[1:], start=1):
            if discount.after_tax != first:
                violations.append(
                    FieldViolation(
                        f"{path}.discounts[{i}].after_tax",
                        f"must be {str(first).lower()} like discounts[0].after_tax: QuickBooks takes all the "
                        "discounts of an invoice off either before tax or after it",
                    )
                )
    stated_violations = [] if job.stated_total is None else _amount(job.stated_total, f"{path}.total", allow_zero=True)
    violations += stated_violations
    totals = _totals(job)
    if totals is None:
        return violations  # a part is refused above: no sum of the parts would mean anything
    lines_total, discount_total, total = totals
    if discount_total > lines_total:
        violations.append(
            FieldViolation(
                f"{path}.discounts",
                f"the discounts total {discount_total}, which is more than the lines' total {lines_total}",
            )
        )
    elif job.stated_total is not None and not stated_violations and job.stated_total != total:
        violations.append(
            FieldViolation(
                f"{path}.total",
                f"is {job.stated_total} but the invoice totals {total}: lines {lines_total} − discounts "
                f"{discount_total} + tax {job.tax} + tip {job.tip} + surcharge {job.surcharge}",
            )
        )
    return violations


def _discount(discount: Discount, path: str) -> list[FieldViolation]:
    if discount.amount is None and discount.percent is None:
        return [FieldViolation(path, "needs an amount or a percent")]
    if discount.amount is not None and discount.percent is not None:
        return [FieldViolation(path, "is an amount or a percent, not both")]
    if discount.amount is not None:
        return _amount(discount.amount, f"{path}.amount")
    percent = discount.percent
    assert percent is not None
    if not percent.is_finite():
        return [FieldViolation(f"{path}.percent", "must be a number")]
    if not ZERO < percent <= _HUNDRED:
        return [FieldViolation(f"{path}.percent", "must be more than 0 and at most 100")]
    if percent != percent.quantize(_PERCENT_STEP):  # safe: at most 100 by now
        return [
            FieldViolation(
                f"{path}.percent",
                f"must have at most {MAX_PERCENT_DECIMALS} decimals (QuickBooks holds a percent such as 12.75): "
                "send the amount off instead",
            )
        ]
    return []


def _charges(job: Job) -> tuple[tuple[str, Decimal], ...]:
    """The job's amounts besides its lines and discounts, by field name."""
    return (("tax", job.tax), ("tip", job.tip), ("surcharge", job.surcharge))


def _totals(job: Job) -> tuple[Decimal, Decimal, Decimal] | None:
    """The lines' total, the discounts' total and the CRM total (SPEC §8), or None while any part of them
    is refused (then the parts' own violations say why, and a sum of them would mean nothing).

    Computed exactly: every amount is then in cents and below `_SUMMABLE`, so any sum of them, and a
    percent of one, keeps all its digits in `_SUM_CONTEXT`. Larger amounts are refused anyway, by QuickBooks'
    maximum amount (`job_request_limits`)."""
    amounts = [line.amount for line in job.lines] + [part for _, part in _charges(job)]
    amounts += [d.amount for d in job.discounts if d.amount is not None]
    if any(_amount(amount, "", allow_zero=True) or abs(amount) >= _SUMMABLE for amount in amounts):
        return None
    if any(_discount(discount, "") for discount in job.discounts):
        return None
    with localcontext(_SUM_CONTEXT):
        return job.lines_total, job.discount_total, job.total


_SUMMABLE = Decimal("1E+30")
# Sums of a few million amounts below _SUMMABLE, and a percent of them, to the cent: exact in 60 digits.
_SUM_CONTEXT = Context(prec=60, traps=[InvalidOperation, Overflow])


def _line_amount_differs(quantity: Decimal, unit_price: Decimal, amount: Decimal) -> bool:
    """The amount is not quantity × unit_price rounded half-up to the cent — QuickBooks' own rule (it refuses
    the line otherwise, Fault 6070). Computed exactly and with room for any exponent, so that an absurd
    quantity (9E+999999) is answered by the bounds below rather than by a decimal overflow here."""
    if not (quantity.is_finite() and unit_price.is_finite()) or quantity <= ZERO:
        return False
    with localcontext() as context:
        context.prec, context.Emax, context.Emin = 60, MAX_EMAX, MIN_EMIN
        difference = quantity * unit_price - amount
        return not -_HALF_CENT <= difference < _HALF_CENT


_HALF_CENT = CENT / 2


# --- what QuickBooks can hold (SPEC §7 "Text QBO cannot hold", "Bounds") ---------------------------------
# Run on a request already cleaned by core.text (no control characters left in names and notes). The
# numbers come from the accounting adapter (`FieldLimits`); this is the one place that applies them.


def payment_request_limits(opportunity: Opportunity, payment: Payment, limits: FieldLimits) -> list[FieldViolation]:
    return [*_opportunity_limits(opportunity, "opportunity", limits), *_payment_limits(payment, "payment", limits)]


def job_request_limits(
    opportunity: Opportunity, job: Job, payments: list[Payment], limits: FieldLimits
) -> list[FieldViolation]:
    violations = [*_opportunity_limits(opportunity, "opportunity", limits), *_job_limits(job, "job", limits)]
    for i, payment in enumerate(payments):
        violations += _payment_limits(payment, f"payments[{i}]", limits)
    return violations


def _text_limit(value: str, path: str, limit: int, *, why: str = "QuickBooks' limit") -> list[FieldViolation]:
    if len(value) > limit:
        return [FieldViolation(path, f"must be at most {limit} characters ({why}), not {len(value)}")]
    return []


def _opportunity_limits(opportunity: Opportunity, path: str, limits: FieldLimits) -> list[FieldViolation]:
    return [
        *_text_limit(
            opportunity.number,
            f"{path}.number",
            MAX_OPPORTUNITY_NUMBER_LENGTH,
            why="it goes into the note of every QuickBooks record",
        ),
        *_customer_limits(opportunity.customer, f"{path}.customer", limits),
    ]


def _customer_limits(customer: Customer, path: str, limits: FieldLimits) -> list[FieldViolation]:
    violations = [
        *_text_limit(customer.first_name.strip(), f"{path}.first_name", limits.given_name),
        *_text_limit(customer.last_name.strip(), f"{path}.last_name", limits.family_name),
        *_text_limit(customer.company_name.strip(), f"{path}.company_name", limits.company_name),
        # An e-mail that is no address is named once, by _customer; only a real address is measured.
        *(_text_limit(email, f"{path}.email", limits.email) if _EMAIL.match(email := customer.email.strip()) else []),
        *_text_limit(customer.phone.strip(), f"{path}.phone", limits.phone),
    ]
    # The DisplayName, with room for the " - N" a clashing name gets (R2).
    person = bool(customer.first_name.strip() or customer.last_name.strip())
    name_path = f"{path}.last_name" if person else f"{path}.company_name"
    if not any(v.field == name_path for v in violations):
        violations += _text_limit(customer.display_name, name_path, limits.display_name - _NAME_SUFFIX_ROOM)
    return violations


def _payment_limits(payment: Payment, path: str, limits: FieldLimits) -> list[FieldViolation]:
    violations = [
        *_amount_limit(payment.amount, f"{path}.amount", limits),
        *_date_limit(payment.received_time.date(), f"{path}.received_time", limits),
    ]
    for i, refund in enumerate(payment.refunds):
        refund_path = f"{path}.refunds[{i}]"
        violations += _amount_limit(refund.amount, f"{refund_path}.amount", limits)
        violations += _date_limit(refund.refunded_time.date(), f"{refund_path}.refunded_time", limits)
        violations += _text_limit(refund.memo, f"{refund_path}.memo", limits.expense_line_description)
    return violations


def _job_limits(job: Job, path: str, limits: FieldLimits) -> list[FieldViolation]:
    violations = [
        *_text_limit(job.number, f"{path}.number", limits.doc_number),
        *_date_limit(job.service_date, f"{path}.service_date", limits),
    ]
    line_violations: list[FieldViolation] = []
    for i, line in enumerate(job.lines):
        line_path = f"{path}.lines[{i}]"
        line_violations += _text_limit(line.description, f"{line_path}.description", limits.invoice_line_description)
        # A quantity that is no number or not positive is refused by _job already.
        if line.quantity.is_finite() and line.quantity > ZERO and not quantity_fits(line.quantity, limits):
            line_violations.append(
                FieldViolation(
                    f"{line_path}.quantity",
                    f"must have at most {limits.quantity_integer_digits} digits before the decimal point and "
                    f"{limits.quantity_fraction_digits} after",
                )
            )
        line_violations += _amount_limit(line.unit_price, f"{line_path}.unit_price", limits)
        line_violations += _amount_limit(line.amount, f"{line_path}.amount", limits)
    violations += line_violations
    # A part past the maximum is named itself; the total it makes then says nothing more.
    amount_violations: list[FieldViolation] = []
    for name, part in _charges(job):
        amount_violations += _amount_limit(part, f"{path}.{name}", limits)
    violations += _text_limit(
        job.tax_rate_name,
        f"{path}.tax_rate_name",
        MAX_TAX_RATE_NAME_LENGTH,
        why="as QuickBooks' own tax rate names",
    )
    for i, discount in enumerate(job.discounts):
        discount_path = f"{path}.discounts[{i}]"
        violations += _text_limit(discount.description, f"{discount_path}.description", limits.invoice_line_description)
        if discount.amount is not None:
            amount_violations += _amount_limit(discount.amount, f"{discount_path}.amount", limits)
    violations += amount_violations
    if line_violations or not all(line.amount.is_finite() for line in job.lines):
        return violations
    lines_total = money_sum(line.amount for line in job.lines)
    if lines_total > limits.max_amount:
        return violations + _amount_limit(lines_total, f"{path}.lines", limits, what="the invoice total")
    totals = _totals(job)
    if totals is None or amount_violations or any(v.field.startswith(f"{path}.discounts") for v in violations):
        return violations
    violations += _amount_limit(totals[2], f"{path}.total", limits, what="the invoice total (with its charges)")
    # The one discount line QuickBooks gets names every discount (core.accounting.DiscountSpec.of).
    discount_line = DiscountSpec.of(job)
    if discount_line is not None:
        violations += _text_limit(
            discount_line.description,
            f"{path}.discounts",
            limits.invoice_line_description,
            why="QuickBooks' limit of the one discount line's description, which names every discount",
        )
    return violations


def _amount_limit(value: Decimal, path: str, limits: FieldLimits, *, what: str = "") -> list[FieldViolation]:
    # Negative amounts and ones that are no number are refused by _amount already.
    if value.is_finite() and value > limits.max_amount:
        subject = f"{what} " if what else ""
        return [FieldViolation(path, f"{subject}must be at most {limits.max_amount} (QuickBooks holds no more)")]
    return []


def _date_limit(day: date, path: str, limits: FieldLimits) -> list[FieldViolation]:
    if not limits.earliest_date <= day <= limits.latest_date:
        return [
            FieldViolation(path, f"must be between {limits.earliest_date} and {limits.latest_date} (QuickBooks' range)")
        ]
    return []
