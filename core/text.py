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
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from core.domain import Customer, Discount, InvoiceLine, Job, Opportunity, Payment, Payout, PayoutAdjustment, Refund

_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_ID_REFUSED_CATEGORIES = _CONTROL_CATEGORIES | {"Cf"}
_SPACES = re.compile(r"\s+")

_Record = TypeVar("_Record")


def is_control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROL_CATEGORIES or _is_noncharacter(char)


def _is_noncharacter(char: str) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane: never text (XML, so QBO, refuses them)."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


# Speed, not a second definition: `str.isprintable()` is False for every character in Unicode's "Other"
# (Cc, Cf, Cs, Co, Cn — noncharacters are Cn) and "Separator" (Zs, Zl, Zp) categories but the ASCII space,
# so a printable string holds neither a control nor a format character (tests/unit/test_text_rules.py
# checks it for every code point). Nearly all text a CRM sends is printable and is then returned as it is,
# without a look at each character; the rest is read character by character against `is_control`.


def usable_as_id(value: str) -> bool:
    """False when the id holds a control or format character."""
    return value.isprintable() or not any(
        not c.isprintable() and (is_control(c) or unicodedata.category(c) in _ID_REFUSED_CATEGORIES) for c in value
    )


def collapse_controls(text: str) -> str:
    """Each run of control characters becomes one space; everything else (ordinary spaces too) is kept."""
    if text.isprintable():
        return text
    out: list[str] = []
    in_run = False
    for char in text:
        if not char.isprintable() and is_control(char):
            if not in_run:
                out.append(" ")
            in_run = True
        else:
            out.append(char)
            in_run = False
    return "".join(out)


def clean_name(text: str) -> str:
    """A name as QBO can hold it: no control characters, no ':', single inner spaces, no outer ones."""
    if text.isprintable() and ":" not in text and "  " not in text and text[:1] != " " and text[-1:] != " ":
        # The only white space a printable string can hold is " ": nothing below would change this one.
        return text
    return _SPACES.sub(" ", collapse_controls(text).replace(":", " ")).strip()


def _unless_unchanged(record: _Record, **cleaned: object) -> _Record:
    """`record` with the cleaned values, or `record` itself when cleaning changed none (the cleaners return
    the very object they were given for text that needs nothing): most requests are clean, and a copy of a
    frozen dataclass is not free."""
    if all(value is getattr(record, name) for name, value in cleaned.items()):
        return record
    return replace(record, **cleaned)  # type: ignore[type-var]


def _each(clean: Callable[[_Record], _Record], records: tuple[_Record, ...]) -> tuple[_Record, ...]:
    """The cleaned records as a tuple, the same tuple when none changed (see `_unless_unchanged`)."""
    cleaned = tuple(clean(r) for r in records)
    unchanged = isinstance(records, tuple) and all(new is old for new, old in zip(cleaned, records, strict=True))
    return records if unchanged else cleaned


def clean_customer(customer: Customer) -> Customer:
    return _unless_unchanged(
        customer,
        first_name=clean_name(customer.first_name),
        last_name=clean_name(customer.last_name),
        company_name=clean_name(customer.company_name),
        email=collapse_controls(customer.email),
        phone=collapse_controls(customer.phone),
    )


def clean_opportunity(opportunity: Opportunity) -> Opportunity:
    return _unless_unchanged(
        opportunity, number=collapse_controls(opportunity.number), customer=clean_customer(opportunity.customer)
    )


def clean_payment(payment: Payment) -> Payment:
    return _unless_unchanged(
        payment, reference=collapse_controls(payment.reference), refunds=_each(_clean_refund, payment.refunds)
    )


def _clean_refund(refund: Refund) -> Refund:
    return _unless_unchanged(refund, memo=collapse_controls(refund.memo))


def clean_payout(payout: Payout) -> Payout:
    """The adjustments' memos are the Deposit lines' descriptions: notes, cleaned like a refund's memo."""
    return _unless_unchanged(payout, adjustments=_each(_clean_adjustment, payout.adjustments))


def _clean_adjustment(adjustment: PayoutAdjustment) -> PayoutAdjustment:
    return _unless_unchanged(adjustment, memo=collapse_controls(adjustment.memo))


def clean_job(job: Job) -> Job:
    """The tax rate's name and the discounts' descriptions are notes too: they reach the invoice's
    discount line and what the bookkeeper reads beside QuickBooks' own rates."""
    return _unless_unchanged(
        job,
        number=collapse_controls(job.number),
        lines=_each(_clean_line, job.lines),
        tax_rate_name=collapse_controls(job.tax_rate_name),
        discounts=_each(_clean_discount, job.discounts),
    )


def _clean_line(line: InvoiceLine) -> InvoiceLine:
    return _unless_unchanged(line, description=collapse_controls(line.description))


def _clean_discount(discount: Discount) -> Discount:
    return _unless_unchanged(discount, description=collapse_controls(discount.description))
