"""The plans of R3, R5 and R1's customer move, decided from books alone: no QuickBooks, no storage.

What the engine will write, and in what order, can be read off a plan; these examples pin the decisions a
bookkeeper would check (a deposit stays unapplied, shrinking applications are lowered before anything is
raised, a move detaches payments before their refunds and invoices follow).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from core.domain import (
    ClosedJob,
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncRecord,
)
from core.errors import FailedPreconditionError
from core.sync_plans import (
    DetachPayment,
    WriteInvoice,
    WritePayment,
    WriteRefund,
    plan_customer_move,
    plan_invoice_sync,
    plan_payment_sync,
)
from core.sync_run import OpportunityBooks

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))


def pay(payment_id: str, amount: str, *refunds: Refund) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, "", tuple(refunds))


def closed(job_id: str, total: str) -> ClosedJob:
    line = InvoiceLine("Move", D("1"), D(total), D(total))
    return ClosedJob("o1", Job(job_id, f"INV-{job_id}", date(2026, 4, 3), (line,)), T)


def books(payments: list[Payment], jobs: list[ClosedJob], written: dict[EntityRef, SyncRecord]) -> OpportunityBooks:
    """Books whose records are blank except those in `written`."""
    entities = [EntityRef(EntityType.PAYMENT, p.payment_id) for p in payments]
    entities += [EntityRef(EntityType.REFUND, r.refund_id) for p in payments for r in p.refunds]
    entities += [EntityRef(EntityType.INVOICE, c.job.job_id) for c in jobs]
    records = {e: written.get(e) or SyncRecord(tenant_id="acme", entity=e) for e in entities}
    return OpportunityBooks(OPP, tuple(payments), tuple(jobs), records)


def written(entity_type: EntityType, entity_id: str, *, amount: str, applied: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    entity = EntityRef(entity_type, entity_id)
    record = SyncRecord(tenant_id="acme", entity=entity, quickbooks_id=f"qb-{entity_id}", amount=D(amount))
    record.applied = {job: D(a) for job, a in (applied or {}).items()}
    return entity, record


def test_r3_a_deposit_before_close_out_is_one_unapplied_payment_write() -> None:
    p1 = pay("p1", "200.00")
    plan = plan_payment_sync(books([p1], [], {}), "p1")
    assert plan.steps == [WritePayment(p1, {})]


def test_r3_a_payment_after_close_out_applies_only_to_invoices_already_in_quickbooks() -> None:
    p1, p2 = pay("p1", "200.00"), pay("p2", "300.00")
    j1, j2 = closed("j1", "400.00"), closed("j2", "100.00")
    inv1 = written(EntityType.INVOICE, "j1", amount="400.00")
    plan = plan_payment_sync(books([p1, p2], [j1, j2], dict([inv1])), "p2")
    # j2 is closed out but not in QuickBooks yet: nothing is applied to it, and no invoice is written.
    assert plan.steps == [WritePayment(p2, {"j1": D("300.00")})]


def test_r3_a_payment_qbsync_does_not_know_is_refused_before_anything_is_planned() -> None:
    with pytest.raises(FailedPreconditionError, match="payment p9"):
        plan_payment_sync(books([], [], {}), "p9")


def test_r5_no_invoice_before_close_out() -> None:
    with pytest.raises(FailedPreconditionError, match="not been closed out"):
        plan_invoice_sync(books([pay("p1", "10.00")], [], {}), "j1")


def test_r5_the_invoice_is_written_then_every_payment_applied_oldest_first() -> None:
    p1, p2 = pay("p1", "300.00"), pay("p2", "300.00")
    j1 = closed("j1", "500.00")
    plan = plan_invoice_sync(books([p1, p2], [j1], {}), "j1")
    assert plan.steps == [
        WriteInvoice(j1),
        WritePayment(p1, {"j1": D("300.00")}),
        WritePayment(p2, {"j1": D("200.00")}),
    ]


def test_r5_an_application_that_must_shrink_is_lowered_before_the_invoice_and_the_raises() -> None:
    # p1 applied 300 to j1; a 100 refund since leaves it 200 to apply. The lowered application is
    # written before the invoice, so the payment is never over-applied while the job runs.
    r1 = Refund("r1", D("100.00"), T)
    p1 = pay("p1", "300.00", r1)
    j1 = closed("j1", "300.00")
    records = dict(
        [
            written(EntityType.PAYMENT, "p1", amount="300.00", applied={"j1": "300.00"}),
            written(EntityType.INVOICE, "j1", amount="300.00"),
        ]
    )
    plan = plan_invoice_sync(books([p1], [j1], records), "j1")
    assert plan.steps == [
        WritePayment(p1, {"j1": D("200.00")}),
        WriteInvoice(j1),
        WritePayment(p1, {"j1": D("200.00")}),
    ]


def test_r1_a_move_detaches_payments_then_moves_refunds_and_invoices_then_reapplies() -> None:
    r1 = Refund("r1", D("50.00"), T)
    p1, p2 = pay("p1", "300.00", r1), pay("p2", "80.00")  # p2 never reached QuickBooks: it is not moved
    j1, j2 = closed("j1", "200.00"), closed("j2", "90.00")  # j2 not in QuickBooks either
    records = dict(
        [
            written(EntityType.PAYMENT, "p1", amount="300.00", applied={"j1": "200.00"}),
            written(EntityType.REFUND, "r1", amount="50.00"),
            written(EntityType.INVOICE, "j1", amount="200.00"),
        ]
    )
    plan = plan_customer_move(books([p1, p2], [j1, j2], records))
    assert plan.steps == [
        DetachPayment(p1),
        WriteRefund(p1, r1),
        WriteInvoice(j1),
        WritePayment(p1, {"j1": D("200.00")}),
    ]


def test_r1_a_move_of_an_opportunity_with_nothing_in_quickbooks_writes_nothing() -> None:
    plan = plan_customer_move(books([pay("p1", "10.00")], [closed("j1", "10.00")], {}))
    assert plan.steps == []
