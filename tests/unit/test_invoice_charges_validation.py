"""SPEC §8 at accept: tax, discounts, tips, surcharges and card fees are checked before anything is stored.

Each rule names its field (INVALID_ARGUMENT with every offending field at once), through SyncService and
the fake QuickBooks as a CRM calls it; the totals are computed independently here (by hand), not by the
code under test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS
from core.domain import (
    Customer,
    Discount,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
)
from core.errors import FieldViolation, NotFoundError, ValidationError
from core.money import ZERO
from core.validation import MAX_TAX_RATE_NAME_LENGTH, job_request_limits, validate_job_request
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
MOVERS = InvoiceLine("Movers, 3.5 h", D("3.5"), D("100.00"), D("350.00"), taxable=True)
BOXES = InvoiceLine("Boxes", D("1"), D("49.99"), D("49.99"))


def job(**changes: object) -> Job:
    base = Job("j1", "1001", date(2026, 4, 3), (MOVERS, BOXES))
    return replace(base, **changes)  # type: ignore[arg-type]


def paid(payment_id: str = "p1", amount: str = "500.00", **changes: object) -> Payment:
    return replace(Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T), **changes)  # type: ignore[arg-type]


def violations(j: Job, payments: list[Payment] | None = None) -> list[FieldViolation]:
    payments = payments or []
    return [*validate_job_request(OPP, j, payments, ""), *job_request_limits(OPP, j, payments, QBO_FIELD_LIMITS)]


def fields(j: Job, payments: list[Payment] | None = None) -> list[str]:
    return [v.field for v in violations(j, payments)]


@pytest.fixture
def h() -> Harness:
    return Harness()


def refused(h: Harness, j: Job, payments: list[Payment] | None = None) -> list[FieldViolation]:
    """The violations of a CloseOutJob the service refuses; asserts that nothing was stored."""
    with pytest.raises(ValidationError) as caught:
        h.service.close_out_job(h.principal(), OPP, j, payments or [])
    with pytest.raises(NotFoundError):
        h.service.get_status(h.principal(), EntityRef(EntityType.INVOICE, j.job_id))
    with h.uow_factory() as uow:
        assert uow.snapshots.get_job("acme", j.job_id) is None
    assert h.worker.drain() == 0 and h.qbo().request_count == 0
    return caught.value.violations


# --- a job with every charge --------------------------------------------------------------------------


def test_a_job_with_tax_a_percent_discount_a_tip_and_a_surcharge_is_accepted_and_stored(h: Harness) -> None:
    # Lines 399.99; 10% off is 39.999 → 40.00 (half up); tax on the discounted taxable line (350 − 10%):
    # the CRM says 28.35; tip 20, card fee 3% of what was charged: 11.55.
    # 399.99 − 40.00 + 28.35 + 20.00 + 11.55 = 419.89
    full = job(
        tax=D("28.35"),
        tax_rate_name="WA Seattle 9%",
        discounts=(Discount("Spring move", percent=D("10")),),
        tip=D("20.00"),
        surcharge=D("11.55"),
        stated_total=D("419.89"),
    )
    assert violations(full) == []
    h.service.close_out_job(h.principal(), OPP, full, [paid(tip=D("20.00"), processing_fee=D("14.80"))])
    with h.uow_factory() as uow:
        stored = uow.snapshots.get_job("acme", "j1")
        stored_payment = uow.snapshots.get_payment("acme", "p1")
    assert stored is not None and stored.job == full and stored.job.total == D("419.89")
    assert stored_payment is not None
    assert (stored_payment.payment.tip, stored_payment.payment.processing_fee) == (D("20.00"), D("14.80"))


def test_amount_and_percent_discounts_together_and_a_total_to_the_cent() -> None:
    # 12.5% of 399.99 is 49.99875 → 50.00; plus 25.00 off: 324.99.
    discounts = (Discount("Loyal", percent=D("12.5")), Discount("Coupon", amount=D("25.00")))
    assert fields(job(discounts=discounts, stated_total=D("324.99"))) == []
    [wrong] = violations(job(discounts=discounts, stated_total=D("325.00")))
    assert wrong.field == "job.total"
    # Both totals and every part are named, so the CRM can see which sum disagrees.
    for part in ("325.00", "324.99", "399.99", "75.00", "tax 0.00", "tip 0.00", "surcharge 0.00"):
        assert part in wrong.description, part


def test_without_a_stated_total_nothing_is_compared() -> None:
    assert fields(job(tip=D("5.00"))) == []
    assert job(tip=D("5.00")).stated_total is None


def test_a_stated_total_of_zero_is_a_total_not_an_absence() -> None:
    assert fields(job(stated_total=D("0.00"))) == ["job.total"]


# --- amounts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tax", "tip", "surcharge"])
@pytest.mark.parametrize(("amount", "description"), [("-0.01", "must not be negative"), ("1.005", "whole cents")])
def test_tax_tip_and_surcharge_are_whole_cents_and_not_negative(name: str, amount: str, description: str) -> None:
    [violation] = violations(job(**{name: D(amount)}))
    assert violation.field == f"job.{name}" and description in violation.description


@pytest.mark.parametrize("name", ["tax", "tip", "surcharge"])
def test_tax_tip_and_surcharge_stay_within_what_quickbooks_holds(name: str) -> None:
    over = QBO_FIELD_LIMITS.max_amount + D("0.01")
    assert fields(job(**{name: over})) == [f"job.{name}"]


@pytest.mark.parametrize("name", ["tip", "processing_fee"])
@pytest.mark.parametrize(
    ("amount", "description"),
    [("-1.00", "must not be negative"), ("0.001", "whole cents"), ("500.01", "more than the payment's amount")],
)
def test_a_payments_tip_and_fee_are_cents_not_negative_and_within_it(name: str, amount: str, description: str) -> None:
    [violation] = violations(job(), [paid(**{name: D(amount)})])
    assert violation.field == f"payments[0].{name}" and description in violation.description


def test_a_payments_tip_and_fee_may_each_be_all_of_it() -> None:
    assert fields(job(), [paid(tip=D("500.00")), paid("p2", processing_fee=D("500.00"))]) == []


def test_the_invoice_total_with_its_charges_stays_within_what_quickbooks_holds() -> None:
    big = InvoiceLine("Move", D("1"), QBO_FIELD_LIMITS.max_amount, QBO_FIELD_LIMITS.max_amount, taxable=True)
    assert fields(job(lines=(big,))) == []
    assert fields(job(lines=(big,), tip=D("0.01"))) == ["job.total"]
    assert fields(job(lines=(big, big))) == ["job.lines"]  # the lines alone: named as before
    over = QBO_FIELD_LIMITS.max_amount + D("0.01")
    too_big = InvoiceLine("Move", D("1"), over, over, taxable=True)
    assert fields(job(lines=(too_big,), tip=D("1.00"))) == ["job.lines[0].unit_price", "job.lines[0].amount"]


# --- tax ------------------------------------------------------------------------------------------------


def test_tax_needs_a_taxable_line() -> None:
    untaxed = (replace(MOVERS, taxable=False), BOXES)
    [violation] = violations(job(lines=untaxed, tax=D("1.00")))
    assert violation.field == "job.tax" and "taxable" in violation.description
    assert fields(job(lines=untaxed, tax=D("0.00"))) == []
    assert fields(job(tax=D("1.00"))) == []  # MOVERS is taxable


def test_a_tax_rate_name_is_held_to_quickbooks_rate_names() -> None:
    assert fields(job(tax_rate_name="R" * MAX_TAX_RATE_NAME_LENGTH)) == []
    assert fields(job(tax_rate_name="R" * (MAX_TAX_RATE_NAME_LENGTH + 1))) == ["job.tax_rate_name"]


# --- discounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("discount", "field", "description"),
    [
        (Discount("none"), "job.discounts[0]", "needs an amount or a percent"),
        (Discount("both", amount=D("1.00"), percent=D("1")), "job.discounts[0]", "not both"),
        (Discount("zero", amount=D("0.00")), "job.discounts[0].amount", "greater than zero"),
        (Discount("negative", amount=D("-5.00")), "job.discounts[0].amount", "greater than zero"),
        (Discount("sub-cent", amount=D("5.001")), "job.discounts[0].amount", "whole cents"),
        (Discount("zero", percent=D("0")), "job.discounts[0].percent", "more than 0"),
        (Discount("negative", percent=D("-5")), "job.discounts[0].percent", "more than 0"),
        (Discount("over", percent=D("100.01")), "job.discounts[0].percent", "at most 100"),
        (Discount("huge", percent=D("1E+60")), "job.discounts[0].percent", "at most 100"),
        (Discount("fine", percent=D("12.345")), "job.discounts[0].percent", "at most 2 decimals"),
        (Discount("nan", percent=D("NaN")), "job.discounts[0].percent", "must be a number"),
    ],
)
def test_a_discount_is_one_positive_amount_or_one_percent_up_to_100(
    discount: Discount, field: str, description: str
) -> None:
    [violation] = violations(job(discounts=(discount,)))
    assert violation.field == field and description in violation.description


@pytest.mark.parametrize("percent", ["100", "0.01", "12.50", "12.500", "1E+1"])
def test_percents_quickbooks_can_show_are_accepted(percent: str) -> None:
    assert fields(job(discounts=(Discount("ok", percent=D(percent)),))) == []


def test_the_discounts_of_a_job_agree_on_before_or_after_tax() -> None:
    before, after = Discount("a", amount=D("1.00")), Discount("b", amount=D("1.00"), after_tax=True)
    assert fields(job(discounts=(before, before))) == []
    assert fields(job(discounts=(after, after))) == []
    [violation] = violations(job(discounts=(before, after, before)))
    assert violation.field == "job.discounts[1].after_tax" and "before tax or after it" in violation.description
    assert fields(job(discounts=(after, before, before))) == [
        "job.discounts[1].after_tax",
        "job.discounts[2].after_tax",
    ]


def test_the_discounts_together_are_at_most_the_lines() -> None:
    assert fields(job(discounts=(Discount("all", percent=D("100")),))) == []
    at_most = (Discount("a", amount=D("399.98")), Discount("b", amount=D("0.01")))
    assert fields(job(discounts=at_most)) == []
    over = (Discount("a", amount=D("399.98")), Discount("b", amount=D("0.02")))
    [violation] = violations(job(discounts=over, stated_total=D("1.00")))  # no total check on top
    assert (
        violation.field == "job.discounts" and "400.00" in violation.description and "399.99" in violation.description
    )


def test_discount_descriptions_fit_the_one_discount_line_quickbooks_gets() -> None:
    limit = QBO_FIELD_LIMITS.invoice_line_description
    long = Discount("D" * (limit + 1), amount=D("1.00"))
    assert fields(job(discounts=(long,))) == ["job.discounts[0].description"]
    # Each fits, but QuickBooks' one discount line names them all: that is named as the discounts.
    half = Discount("D" * (limit // 2), amount=D("1.00"))
    assert fields(job(discounts=(half,))) == []
    assert fields(job(discounts=(half, half))) == ["job.discounts"]


# --- all at once, nothing stored -------------------------------------------------------------------------


def test_every_bad_charge_is_named_at_once_and_nothing_is_stored(h: Harness) -> None:
    bad = job(
        lines=(replace(MOVERS, taxable=False), BOXES),
        tax=D("5.00"),
        tax_rate_name="T" * 101,
        discounts=(Discount("x", percent=D("150")), Discount("y", amount=D("-1.00"), after_tax=True)),
        tip=D("-2.00"),
        surcharge=D("0.001"),
        stated_total=D("1.00"),  # not compared: its parts are wrong
    )
    payment = paid(tip=D("600.00"), processing_fee=D("-0.50"))
    found = refused(h, bad, [payment])
    assert sorted(v.field for v in found) == [
        "job.discounts[0].percent",
        "job.discounts[1].after_tax",
        "job.discounts[1].amount",
        "job.surcharge",
        "job.tax",
        "job.tax_rate_name",
        "job.tip",
        "payments[0].processing_fee",
        "payments[0].tip",
    ]


def test_a_wrong_total_is_refused_by_the_service_with_nothing_stored(h: Harness) -> None:
    found = refused(h, job(tip=D("10.00"), stated_total=D("409.98")))
    assert [v.field for v in found] == ["job.total"]
    assert "409.99" in found[0].description  # 399.99 + 10.00


def test_amounts_of_any_size_are_named_not_crashed_on() -> None:
    huge = D("9E+999999")
    assert fields(job(tax=huge, stated_total=huge)) == ["job.tax"]
    assert fields(job(discounts=(Discount("x", amount=huge),))) == ["job.discounts[0].amount"]
    line = InvoiceLine("Move", D("1"), huge, huge, taxable=True)
    assert "job.lines[0].amount" in fields(job(lines=(line,), discounts=(Discount("x", percent=D("50")),)))


# --- text ------------------------------------------------------------------------------------------------


def test_control_characters_in_the_rate_name_and_discount_descriptions_become_one_space(h: Harness) -> None:
    sent = job(
        tax=D("1.00"),
        tax_rate_name="WA\tSeattle\n\n9%",
        discounts=(Discount("Spring\x00\x00move", percent=D("5")),),
    )
    h.service.close_out_job(h.principal(), OPP, sent, [])
    with h.uow_factory() as uow:
        stored = uow.snapshots.get_job("acme", "j1")
    assert stored is not None
    assert stored.job.tax_rate_name == "WA Seattle 9%"
    assert stored.job.discounts[0].description == "Spring move"


# --- the snapshots keep them (R4, R5) --------------------------------------------------------------------


def test_a_payments_tip_and_fee_survive_the_refund_merge_newest_version_winning(h: Harness) -> None:
    first = paid(tip=D("20.00"), processing_fee=D("14.80"), refunds=(Refund("r1", D("5.00"), T),))
    h.service.sync_payment(h.principal(), OPP, first)
    # The CRM resends the payment with a corrected fee and a second refund, but without the first refund.
    second = paid(tip=D("20.00"), processing_fee=D("14.50"), refunds=(Refund("r2", D("1.00"), T),))
    h.service.close_out_job(h.principal(), OPP, job(tip=D("20.00")), [second])
    with h.uow_factory() as uow:
        stored = uow.snapshots.get_payment("acme", "p1")
    assert stored is not None
    assert [r.refund_id for r in stored.payment.refunds] == ["r1", "r2"]  # R4: never dropped by omission
    assert (stored.payment.tip, stored.payment.processing_fee) == (D("20.00"), D("14.50"))
    assert first.with_refunds_merged(None) is first
    assert second.with_refunds_merged(first).processing_fee == D("14.50")


def test_a_resync_stores_the_jobs_new_tax_and_keeps_its_first_close_out(h: Harness) -> None:
    h.service.close_out_job(h.principal(), OPP, job(tax=D("28.35")), [])
    with h.uow_factory() as uow:
        first = uow.snapshots.get_job("acme", "j1")
    changed = job(tax=D("30.10"), tax_rate_name="new rate", discounts=(Discount("x", amount=D("1.00")),))
    h.service.sync_invoice(h.principal(), OPP, changed, [])
    with h.uow_factory() as uow:
        stored = uow.snapshots.get_job("acme", "j1")
    assert first is not None and stored is not None
    assert stored.job == changed and stored.closed_time == first.closed_time


# --- whatever the numbers, an answer -------------------------------------------------------------------

_ANY_DECIMAL = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-1000, max_value=1000, places=3),
    st.sampled_from([D("9E+999999"), D("-9E+999999"), D("1E-999999"), D("99.995"), D("100"), D("0.01")]),
)
_DISCOUNT = st.builds(
    Discount,
    description=st.text(max_size=5),
    amount=st.none() | _ANY_DECIMAL,
    percent=st.none() | _ANY_DECIMAL,
    after_tax=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    tax=_ANY_DECIMAL,
    tip=_ANY_DECIMAL,
    surcharge=_ANY_DECIMAL,
    discounts=st.lists(_DISCOUNT, max_size=3),
    stated_total=st.none() | _ANY_DECIMAL,
    line_amount=_ANY_DECIMAL,
)
def test_any_charges_are_judged_never_crashed_on(
    tax: Decimal,
    tip: Decimal,
    surcharge: Decimal,
    discounts: list[Discount],
    stated_total: Decimal | None,
    line_amount: Decimal,
) -> None:
    line = InvoiceLine("Move", D("1"), line_amount, line_amount, taxable=True)
    candidate = job(
        lines=(line, BOXES),
        tax=tax,
        tip=tip,
        surcharge=surcharge,
        discounts=tuple(discounts),
        stated_total=stated_total,
    )
    found = violations(candidate)  # never raises: every value is a violation or accepted
    if not found:
        # Accepted: the parts are cents, the discounts at most the lines, and the total adds up.
        assert candidate.discount_total <= candidate.lines_total
        assert stated_total is None or stated_total == candidate.total
        assert ZERO <= candidate.total <= QBO_FIELD_LIMITS.max_amount
