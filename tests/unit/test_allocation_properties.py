"""Properties of `plan_applications` (R3, R5): how payments are applied to an opportunity's invoices.

Inputs are what the sync engine can hand it: payments (net of refunds) and invoices oldest first, the
applications written so far — the movable payments' possibly no longer valid after a refund, a smaller
payment or a smaller invoice; the others' valid, since they were written to QuickBooks — and the set
of payments about to be written.
"""

from __future__ import annotations

import os
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.allocation import Applications, InvoiceDue, PaymentFunds, plan_applications

EXAMPLES = int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "200")) * 2
ZERO = Decimal("0.00")

amounts = st.integers(0, 50_000).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[PaymentFunds], list[InvoiceDue], Applications, set[str]]:
    payments = [PaymentFunds(f"p{i}", draw(amounts)) for i in range(draw(st.integers(0, 5)))]
    invoices = [InvoiceDue(f"j{i}", draw(amounts)) for i in range(draw(st.integers(0, 4)))]
    movable = {p.payment_id for p in payments if draw(st.booleans())}
    job_ids = [i.job_id for i in invoices] + ["j-gone"]  # an application to an invoice no longer planned
    room = {i.job_id: i.total for i in invoices}
    current: Applications = {}
    for p in payments:
        apps: dict[str, Decimal] = {}
        if p.payment_id in movable:
            # Whatever was written before: may now exceed the payment or the invoice.
            for job in draw(st.lists(st.sampled_from(job_ids), unique=True, max_size=3)):
                apps[job] = draw(amounts)
        else:
            # Written and not about to change: valid for the payment and for the invoices.
            left = p.net_amount
            for job in draw(st.lists(st.sampled_from(job_ids[:-1] or ["j-gone"]), unique=True, max_size=3)):
                if job not in room:
                    continue
                amount = min(draw(amounts), left, room[job])
                apps[job] = amount
                left -= amount
                room[job] -= amount
        current[p.payment_id] = apps
    return payments, invoices, current, movable


def applied(plan: Applications, job_id: str) -> Decimal:
    return sum((apps.get(job_id, ZERO) for apps in plan.values()), ZERO)


def leftover(plan: Applications, payment: PaymentFunds) -> Decimal:
    return payment.net_amount - sum(plan.get(payment.payment_id, {}).values(), ZERO)


@settings(max_examples=EXAMPLES, deadline=None)
@given(situations())
def test_never_over_applies_a_payment_or_an_invoice(situation) -> None:  # type: ignore[no-untyped-def]
    payments, invoices, current, movable = situation
    plan = plan_applications(payments, invoices, current, movable)
    for p in payments:
        assert leftover(plan, p) >= 0, f"{p.payment_id} applies more than it holds after refunds"
        assert all(type(a) is Decimal and a > 0 for a in plan.get(p.payment_id, {}).values())
    for invoice in invoices:
        assert applied(plan, invoice.job_id) <= invoice.total, f"invoice {invoice.job_id} over-applied"


@settings(max_examples=EXAMPLES, deadline=None)
@given(situations())
def test_only_movable_payments_change(situation) -> None:  # type: ignore[no-untyped-def]
    payments, invoices, current, movable = situation
    plan = plan_applications(payments, invoices, current, movable)
    for p in payments:
        if p.payment_id not in movable:
            kept = {job: amount for job, amount in current[p.payment_id].items() if amount > 0}
            assert plan.get(p.payment_id, {}) == kept
        else:
            planned = {i.job_id for i in invoices}
            assert set(plan.get(p.payment_id, {})) <= planned, "applied to an invoice that is not planned"


@settings(max_examples=EXAMPLES, deadline=None)
@given(situations())
def test_planning_again_from_the_plan_changes_nothing(situation) -> None:  # type: ignore[no-untyped-def]
    payments, invoices, current, movable = situation
    plan = plan_applications(payments, invoices, current, movable)
    assert plan_applications(payments, invoices, plan, movable) == plan
    # ...and a resync with every payment movable leaves a complete plan alone too.
    everyone = {p.payment_id for p in payments}
    settled = plan_applications(payments, invoices, plan, everyone)
    assert plan_applications(payments, invoices, settled, everyone) == settled


@settings(max_examples=EXAMPLES, deadline=None)
@given(situations())
def test_fills_the_oldest_open_invoice_first_and_leaves_nothing_idle(situation) -> None:  # type: ignore[no-untyped-def]
    payments, invoices, current, movable = situation
    plan = plan_applications(payments, invoices, current, movable)
    open_invoices = [i for i in invoices if applied(plan, i.job_id) < i.total]
    if open_invoices:
        # An invoice is left open only when the payments being written have nothing left to give.
        for p in payments:
            if p.payment_id in movable:
                assert leftover(plan, p) == 0, f"{p.payment_id} keeps money while {open_invoices[0]} is open"
    for k, invoice in enumerate(invoices):
        grew = any(
            plan.get(p, {}).get(invoice.job_id, ZERO) > current.get(p, {}).get(invoice.job_id, ZERO) for p in movable
        )
        if grew:
            older_open = [i.job_id for i in invoices[:k] if applied(plan, i.job_id) < i.total]
            assert not older_open, f"applied to {invoice.job_id} while older {older_open} is still open"


def test_a_refund_shrinks_the_application_and_the_rest_stays() -> None:
    """The example a bookkeeper checks by hand: 500 paid, 350 invoiced; a 300 refund leaves 200 to apply."""
    payments = [PaymentFunds("p1", Decimal("200.00")), PaymentFunds("p2", Decimal("100.00"))]
    invoices = [InvoiceDue("j1", Decimal("350.00"))]
    current = {"p1": {"j1": Decimal("350.00")}, "p2": {}}
    assert plan_applications(payments, invoices, current, {"p1"}) == {"p1": {"j1": Decimal("200.00")}, "p2": {}}
    assert plan_applications(payments, invoices, current, {"p1", "p2"}) == {
        "p1": {"j1": Decimal("200.00")},
        "p2": {"j1": Decimal("100.00")},
    }
