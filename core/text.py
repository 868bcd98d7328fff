"""Text QuickBooks cannot hold is never sent (SPEC.md section 7).

Applied to a request before it is validated, fingerprinted or stored, so that what qbsync keeps, compares
(R1) and writes is the same text.

- A *control character* is any Unicode Cc (C0 and C1 controls: NUL, tab, newline, carriage return, DEL,
  NEL...), Zl and Zp (line and paragraph separators: line breaks in all but name), Cs (a lone surrogate:
  not encodable as UTF-8, so neither storable nor sendable) and the noncharacters (U+FFFE, U+FFFF...),
  which XML — QBO's own storage — refuses. Format characters (Cf: zero-width joiner, bidirectional marks,
  soft hyphen) are kept in names and notes — they are part of how emoji and right-to-left names are
  written — but refused in ids, where an invisible character can only be a mistake.
- Ids (payment_id, customer_id, request_id...) are keys: one with a control or format character is refused.
- Names and notes have each run of control characters collapsed to one space.
- Names (DisplayName, GivenName, FamilyName, CompanyName) have `:` replaced by a space too — QBO reserves it
  for the customer:sub-customer hierarchy — and their spaces tidied. A space, not a dash: a dash could make
  "Unit : 2" read as "Unit - 2", the form R2 gives a clashing name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from core.domain import Customer, Discount, InvoiceLine, Job, Opportunity, Payment, Payout, Refund

_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_ID_REFUSED_CATEGORIES = _CONTROL_CATEGORIES | {"Cf"}
_SPACES = re.compile(r"\s+")


def is_control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROL_CATEGORIES or _is_noncharacter(char)


def _is_noncharacter(char: str) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane: never text (XML, so QBO, refuses them)."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def usable_as_id(value: str) -> bool:
    """False when the id holds a control or format character."""
    return not any(is_control(c) or unicodedata.category(c) in _ID_REFUSED_CATEGORIES for c in value)


def collapse_controls(text: str) -> str:
    """Each run of control characters becomes one space; everything else (ordinary spaces too) is kept."""
    out: list[str] = []
    in_run = False
    for char in text:
        if is_control(char):
            if not in_run:
                out.append(" ")
            in_run = True
        else:
            out.append(char)
            in_run = False
    return "".join(out)


def clean_name(text: str) -> str:
    """A name as QBO can hold it: no control characters, no ':', single inner spaces, no outer ones."""
    return _SPACES.sub(" ", collapse_controls(text).replace(":", " ")).strip()


def clean_customer(customer: Customer) -> Customer:
    return replace(
        customer,
        first_name=clean_name(customer.first_name),
        last_name=clean_name(customer.last_name),
        company_name=clean_name(customer.company_name),
        email=collapse_controls(customer.email),
        phone=collapse_controls(customer.phone),
    )


def clean_opportunity(opportunity: Opportunity) -> Opportunity:
    return replace(
        opportunity, number=collapse_controls(opportunity.number), customer=clean_customer(opportunity.customer)
    )


def clean_payment(payment: Payment) -> Payment:
    return replace(
        payment,
        reference=collapse_controls(payment.reference),
        refunds=tuple(_clean_refund(r) for r in payment.refunds),
    )


def _clean_refund(refund: Refund) -> Refund:
    return replace(refund, memo=collapse_controls(refund.memo))


def clean_payout(payout: Payout) -> Payout:
    """The adjustments' memos are the Deposit lines' descriptions: notes, cleaned like a refund's memo."""
    return replace(payout, adjustments=tuple(replace(a, memo=collapse_controls(a.memo)) for a in payout.adjustments))


def clean_job(job: Job) -> Job:
    """The tax rate's name and the discounts' descriptions are notes too: they reach the invoice's
    discount line and what the bookkeeper reads beside QuickBooks' own rates."""
    return replace(
        job,
        number=collapse_controls(job.number),
        lines=tuple(_clean_line(li) for li in job.lines),
        tax_rate_name=collapse_controls(job.tax_rate_name),
        discounts=tuple(_clean_discount(d) for d in job.discounts),
    )


def _clean_line(line: InvoiceLine) -> InvoiceLine:
    return replace(line, description=collapse_controls(line.description))


def _clean_discount(discount: Discount) -> Discount:
    return replace(discount, description=collapse_controls(discount.description))
