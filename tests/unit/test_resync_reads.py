"""R6 on an explicit resync (issue 12): an unchanged payment and its refunds (and its customer) are read —
one request per kind, whatever their number — not rewritten; one deleted or voided in QuickBooks is
recreated, and the payment links the new one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import FakeQuickBooks
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncAction,
    SyncJobState,
    SyncResult,
)
from tests.unit.support import Harness

T = datetime(2026, 4, 1, 10, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "Lee", email="mary@example.com"))
PAYMENT = Payment(
    "p1",
    Decimal("500.00"),
    PaymentMethod.CREDIT_CARD,
    T,
    "ch_1",
    (Refund("r1", Decimal("20.00"), T), Refund("r2", Decimal("30.00"), T)),
)


def _sync(h: Harness) -> list[SyncResult]:
    p = h.principal()
    job = h.service.sync_payment(p, OPP, PAYMENT)
    h.worker.drain()
    done = h.service.get_job(p, job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    return done.results


def _linked(qbo: FakeQuickBooks) -> set[str]:
    (payment,) = qbo.live("Payment")
    return {line.txn_id for line in payment.spec.lines}  # type: ignore[attr-defined]


def test_a_resync_of_an_unchanged_payment_and_its_refunds_reads_them_and_writes_nothing() -> None:
    h = Harness()
    _sync(h)
    qbo = h.qbo()
    writes, reads, requests = qbo.write_count, qbo.live_reads, qbo.request_count

    results = _sync(h)

    assert qbo.write_count == writes
    # The customer (still active?), the two refunds in one read, the payment: reads only.
    assert qbo.live_reads - reads == 3
    assert qbo.request_count - requests == 3
    assert {r.action for r in results} == {SyncAction.UNCHANGED}
    assert {r.entity.type for r in results} == {EntityType.PAYMENT, EntityType.REFUND}


@pytest.mark.parametrize("how", ["delete", "void_in_quickbooks"])
def test_a_refund_gone_from_quickbooks_is_recreated_by_a_resync_and_linked_again(how: str) -> None:
    h = Harness()
    _sync(h)
    qbo = h.qbo()
    first = h.service.get_status(h.principal(), EntityRef(EntityType.REFUND, "r1")).quickbooks_id
    assert first is not None
    getattr(qbo, how)(first)

    results = {r.entity.id: r.action for r in _sync(h)}

    again = h.service.get_status(h.principal(), EntityRef(EntityType.REFUND, "r1")).quickbooks_id
    assert again not in (None, first)
    assert results == {"r1": SyncAction.CREATED, "r2": SyncAction.UNCHANGED, "p1": SyncAction.UPDATED}
    assert sorted(t.spec.amount for t in qbo.live("Purchase")) == [Decimal("20.00"), Decimal("30.00")]  # type: ignore[attr-defined]
    assert again in _linked(qbo) and len(_linked(qbo)) == 2


def test_a_payment_deleted_in_quickbooks_is_recreated_by_a_resync() -> None:
    h = Harness()
    _sync(h)
    qbo = h.qbo()
    (payment,) = qbo.live("Payment")
    qbo.delete(payment.id)
    refunds = {t.id for t in qbo.live("Purchase")}

    results = {r.entity.id: r.action for r in _sync(h)}

    assert results == {"r1": SyncAction.UNCHANGED, "r2": SyncAction.UNCHANGED, "p1": SyncAction.CREATED}
    (recreated,) = qbo.live("Payment")
    assert recreated.id != payment.id and _linked(qbo) == refunds
