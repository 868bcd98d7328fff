"""PreviewSync (SPEC §11) on the in-memory core and the fake QuickBooks: the writes a sync would make, listed
with nothing stored and nothing written; bad input refused as the sync refuses it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    Permission,
    Refund,
)
from core.errors import PayoutWaitingError, PermissionDeniedError, RequestIdReusedError, ValidationError
from core.preview import PlannedAction, PlannedOperation
from core.service import SyncService
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))
CREATE, UPDATE = PlannedAction.CREATE, PlannedAction.UPDATE


def payment(payment_id: str = "p1", amount: str = "500.00", *refunds: Refund) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, f"ref-{payment_id}", tuple(refunds))


def refund(refund_id: str, amount: str) -> Refund:
    return Refund(refund_id, D(amount), T, "damaged sofa")


def ref(entity_type: EntityType, entity_id: str) -> EntityRef:
    return EntityRef(entity_type, entity_id)


@pytest.fixture
def h() -> Harness:
    return Harness()


def summary(operations: list[PlannedOperation]) -> list[tuple[EntityRef, str, PlannedAction, str, Decimal | None]]:
    return [(o.entity, o.quickbooks_entity, o.action, o.quickbooks_id, o.amount) for o in operations]


def previewed(h: Harness, accept: Callable[[SyncService], object]) -> list[PlannedOperation]:
    """The preview's operations, checked to have stored nothing and written nothing to QuickBooks."""
    qbo = h.qbo()
    before = copy.deepcopy(h.uow_factory.db.tables)
    writes, customers, txns = qbo.write_count, dict(qbo.customers), dict(qbo.txns)
    operations = h.preview.preview(accept)  # type: ignore[arg-type]
    assert h.uow_factory.db.tables == before  # no job, snapshot, record or audit event
    assert (qbo.write_count, qbo.customers, qbo.txns) == (writes, customers, txns)
    return operations


def test_a_new_customer_and_a_payment_with_refunds(h: Harness) -> None:
    p = h.principal()
    pay = payment("p1", "500.00", refund("r1", "50.00"), refund("r2", "25.00"))
    operations = previewed(h, lambda s: s.sync_payment(p, OPP, pay))

    assert summary(operations) == [
        (ref(EntityType.CUSTOMER, "c1"), "Customer", CREATE, "", None),
        (ref(EntityType.REFUND, "r1"), "Purchase", CREATE, "", D("50.00")),
        (ref(EntityType.REFUND, "r2"), "Purchase", CREATE, "", D("25.00")),
        (ref(EntityType.PAYMENT, "p1"), "Payment", CREATE, "", D("500.00")),
    ]
    customer, r1, r2, pay_op = operations
    assert customer.fields["DisplayName"] == "Mary O'Brien"
    assert customer.fields["PrimaryEmailAddr"] == "mary@example.com"
    assert r1.fields["EntityRef"] == customer.fields["Id"]  # the customer the preview would create
    assert pay_op.fields["CustomerRef"] == customer.fields["Id"]
    assert pay_op.fields["TotalAmt"] == "500.00"
    linked = sorted((line["LinkedTxn"]["TxnId"], line["Amount"]) for line in pay_op.fields["Line"])  # type: ignore[attr-defined, index]
    assert linked == sorted([(r1.fields["Id"], "50.00"), (r2.fields["Id"], "25.00")])


def test_then_the_sync_writes_what_the_preview_listed(h: Harness) -> None:
    p = h.principal()
    pay = payment("p1", "500.00", refund("r1", "50.00"))
    operations = previewed(h, lambda s: s.sync_payment(p, OPP, pay))
    h.service.sync_payment(p, OPP, pay)
    h.worker.drain()
    qbo = h.qbo()
    assert len(qbo.customers) == 1
    assert [t.spec.amount for t in qbo.live("Purchase")] == [
        o.amount for o in operations if o.quickbooks_entity == "Purchase"
    ]
    assert [t.spec.amount for t in qbo.live("Payment")] == [D("500.00")]


def test_a_known_customer_is_matched_not_created(h: Harness) -> None:
    p = h.principal()
    known = h.qbo().add_customer("Mary O'Brien", "mary@example.com")
    operations = previewed(h, lambda s: s.sync_payment(p, OPP, payment()))
    assert summary(operations) == [(ref(EntityType.PAYMENT, "p1"), "Payment", CREATE, "", D("500.00"))]
    assert operations[0].fields["CustomerRef"] == known


def test_a_resync_is_an_update_of_the_same_record(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment("p1", "500.00", refund("r1", "50.00")))
    h.worker.drain()
    qbo = h.qbo()
    (pay,) = qbo.live("Payment")
    (expense,) = qbo.live("Purchase")

    changed = payment("p1", "450.00", refund("r1", "40.00"))
    operations = previewed(h, lambda s: s.sync_payment(p, OPP, changed))
    assert sorted(summary(operations), key=str) == [
        (ref(EntityType.PAYMENT, "p1"), "Payment", UPDATE, pay.id, D("450.00")),
        (ref(EntityType.REFUND, "r1"), "Purchase", UPDATE, expense.id, D("40.00")),
    ]
    payment_update = next(o for o in operations if o.quickbooks_entity == "Payment")
    assert payment_update.fields["Line"] == [
        {"Amount": "40.00", "LinkedTxn": {"TxnId": expense.id, "TxnType": "Expense"}}
    ]


def test_an_unchanged_resync_plans_nothing(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment())
    h.worker.drain()
    assert previewed(h, lambda s: s.sync_payment(p, OPP, payment())) == []


def test_a_close_out_with_payments(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment("p1", "100.00"))
    h.worker.drain()
    (synced,) = h.qbo().live("Payment")
    payments = [payment("p1", "100.00"), payment("p2", "300.00")]

    operations = previewed(h, lambda s: s.close_out_job(p, OPP, MOVE, payments))
    assert summary(operations) == [
        (ref(EntityType.INVOICE, "j1"), "Invoice", CREATE, "", D("350.00")),
        (ref(EntityType.PAYMENT, "p1"), "Payment", UPDATE, synced.id, D("100.00")),  # applied, oldest first
        (ref(EntityType.PAYMENT, "p2"), "Payment", CREATE, "", D("300.00")),  # not yet synced: with its application
    ]
    invoice = next(o for o in operations if o.quickbooks_entity == "Invoice")
    assert invoice.amount == D("350.00")
    assert invoice.fields["DocNumber"] == "INV-1001"
    assert invoice.fields["TxnDate"] == "2026-04-03"
    assert invoice.fields["Line"] == [
        {"Description": "Move, 3.5 h", "Qty": "3.5", "UnitPrice": "100.00", "Amount": "350.00", "Taxable": False}
    ]
    applied = {o.entity.id: o.fields["Line"] for o in operations if o.quickbooks_entity == "Payment"}
    invoice_id = invoice.fields["Id"]
    assert applied["p1"] == [{"Amount": "100.00", "LinkedTxn": {"TxnId": invoice_id, "TxnType": "Invoice"}}]
    assert applied["p2"] == [{"Amount": "250.00", "LinkedTxn": {"TxnId": invoice_id, "TxnType": "Invoice"}}]


def test_sync_invoice_of_a_closed_job_updates_its_invoice(h: Harness) -> None:
    p = h.principal()
    h.service.close_out_job(p, OPP, MOVE, [])
    h.worker.drain()
    (invoice,) = h.qbo().live("Invoice")
    bigger = Job(
        "j1", "INV-1001", date(2026, 4, 3), (*MOVE.lines, InvoiceLine("Piano", D("1"), D("80.00"), D("80.00")))
    )
    operations = previewed(h, lambda s: s.sync_invoice(p, OPP, bigger, []))
    assert summary(operations) == [(ref(EntityType.INVOICE, "j1"), "Invoice", UPDATE, invoice.id, D("430.00"))]


def test_sync_invoice_before_close_out_is_refused_as_the_sync_refuses_it(h: Harness) -> None:
    p = h.principal()
    with pytest.raises(Exception) as previewing:
        h.preview.preview(lambda s: s.sync_invoice(p, OPP, MOVE, []))
    with pytest.raises(Exception) as syncing:
        h.service.sync_invoice(p, OPP, MOVE, [])
    assert type(previewing.value) is type(syncing.value) and str(previewing.value) == str(syncing.value)


def test_a_payout_deposits_its_payments(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment("p1", "200.00"))
    h.worker.drain()
    (p1,) = h.qbo().live("Payment")
    # p2 is known to qbsync (accepted) but its job not run: the preview runs it first, then the deposit.
    h.service.close_out_job(p, OPP, MOVE, [payment("p1", "200.00"), payment("p2", "150.00")])
    h.worker.drain()
    (p2,) = [t for t in h.qbo().live("Payment") if t.id != p1.id]
    payout = Payout("po1", date(2026, 4, 5), D("345.00"), ("p1", "p2"), fees=D("5.00"))
    operations = previewed(h, lambda s: s.sync_payout(p, payout))
    assert summary(operations) == [(ref(EntityType.PAYOUT, "po1"), "Deposit", CREATE, "", D("345.00"))]
    lines = operations[0].fields["Line"]
    assert [(line["Kind"], line["Amount"], line["LinkedTxnId"]) for line in lines] == [  # type: ignore[attr-defined, index]
        ("PAYMENT", "200.00", p1.id),
        ("PAYMENT", "150.00", p2.id),
        ("FEE", "-5.00", ""),
    ]


def test_a_payout_waiting_for_a_payment_queued_earlier_says_so(h: Harness) -> None:
    """Its deposit waits for that payment's own job, as the sync's first attempt would: the preview does not
    run jobs of earlier requests, and tells why the deposit cannot be planned yet."""
    p = h.principal()
    h.service.sync_payment(p, OPP, payment("p1", "200.00"))  # accepted, its job not run
    payout = Payout("po1", date(2026, 4, 5), D("200.00"), ("p1",))
    with pytest.raises(PayoutWaitingError):
        previewed(h, lambda s: s.sync_payout(p, payout))


def test_bad_input_is_the_sync_s_invalid_argument(h: Harness) -> None:
    p = h.principal()
    bad = Payment("", D("-1"), PaymentMethod.CASH, T, "", (refund("r1", "50.00"),))
    with pytest.raises(ValidationError) as previewing:
        h.preview.preview(lambda s: s.sync_payment(p, OPP, bad))
    with pytest.raises(ValidationError) as syncing:
        h.service.sync_payment(p, OPP, bad)
    assert previewing.value.violations == syncing.value.violations
    assert previewing.value.violations


def test_the_permission_is_sync(h: Harness) -> None:
    reader = h.principal(permissions=frozenset({Permission.READ}))
    with pytest.raises(PermissionDeniedError):
        h.preview.preview(lambda s: s.sync_payment(reader, OPP, payment()))


def test_a_record_deleted_in_quickbooks_is_planned_as_recreated(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment())
    h.worker.drain()
    qbo = h.qbo()
    (pay,) = qbo.live("Payment")
    qbo.delete(pay.id)
    reads = qbo.live_reads
    operations = previewed(h, lambda s: s.sync_payment(p, OPP, payment()))  # R6: the resync reads it live
    assert qbo.live_reads > reads
    assert summary(operations) == [(ref(EntityType.PAYMENT, "p1"), "Payment", CREATE, "", D("500.00"))]


def test_a_request_id_seen_before_is_answered_as_the_sync_answers_it(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, payment(), "req-1")
    h.worker.drain()
    assert previewed(h, lambda s: s.sync_payment(p, OPP, payment(), "req-1")) == []  # the same: nothing new
    with pytest.raises(RequestIdReusedError):
        h.preview.preview(lambda s: s.sync_payment(p, OPP, payment("p1", "450.00"), "req-1"))
    with pytest.raises(RequestIdReusedError):
        h.service.sync_payment(p, OPP, payment("p1", "450.00"), "req-1")
