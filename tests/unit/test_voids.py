"""SPEC §11 voids from the CRM (VoidPayment, VoidInvoice) on the in-memory core and the fake QuickBooks:
what QuickBooks holds afterwards, the records' states, and what is refused at accept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import FakeQuickBooks, FakeTxn, Fault
from core.accounting import LinkLine, PaymentSpec, TxnKind
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
    SyncAction,
    SyncJob,
    SyncJobState,
    SyncRecord,
    SyncState,
)
from core.errors import (
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    RequestIdReusedError,
    ValidationError,
)
from core.money import ZERO
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))
PACKING = Job("j2", "INV-1002", date(2026, 4, 4), (InvoiceLine("Packing", D("1"), D("100.00"), D("100.00")),))


def payment(payment_id: str, amount: str, *refunds: Refund) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, f"ref-{payment_id}", tuple(refunds))


def refund(refund_id: str, amount: str) -> Refund:
    return Refund(refund_id, D(amount), T, "damaged sofa")


@pytest.fixture
def h() -> Harness:
    return Harness()


def run(h: Harness, job: SyncJob) -> SyncJob:
    h.worker.drain()
    done = h.service.get_job(h.principal(), job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    return done


def record(h: Harness, entity_type: EntityType, entity_id: str) -> SyncRecord:
    with h.uow_factory.read_only() as uow:
        found = uow.sync_records.get("acme", EntityRef(entity_type, entity_id))
    assert found is not None
    return found


def txn(qbo: FakeQuickBooks, h: Harness, entity_type: EntityType, entity_id: str) -> FakeTxn:
    quickbooks_id = record(h, entity_type, entity_id).quickbooks_id
    assert quickbooks_id is not None
    return qbo.txn(quickbooks_id)


def lines_of(t: FakeTxn) -> set[LinkLine]:
    assert isinstance(t.spec, PaymentSpec)
    return set(t.spec.lines)


def refused(call: Callable[[], object]) -> FailedPreconditionError:
    with pytest.raises(FailedPreconditionError) as caught:
        call()
    return caught.value


def paid_invoice_with_refund(h: Harness) -> None:
    """p1 (500.00, refund r1 of 50.00) applied to j1's invoice (350.00), which it pays in full."""
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "500.00", refund("r1", "50.00"))))
    run(h, h.service.close_out_job(p, OPP, MOVE, [payment("p1", "500.00", refund("r1", "50.00"))]))


def test_voiding_a_payment_undoes_its_application_removes_its_refund_and_voids_it(h: Harness) -> None:
    paid_invoice_with_refund(h)
    qbo = h.qbo()
    invoice = txn(qbo, h, EntityType.INVOICE, "j1")
    assert qbo.invoice_balance(invoice.id) == ZERO
    payment_id = record(h, EntityType.PAYMENT, "p1").quickbooks_id
    refund_id = record(h, EntityType.REFUND, "r1").quickbooks_id

    done = run(h, h.service.void_payment(h.principal(), "p1"))

    voided = qbo.txn(payment_id or "")
    assert voided.voided and voided.total == ZERO and lines_of(voided) == set()
    assert qbo.txn(refund_id or "").deleted  # QuickBooks' API cannot void a Purchase: deleted
    assert qbo.live("Purchase") == [] and qbo.live("Payment") == []
    assert qbo.invoice_balance(invoice.id) == D("350.00")  # the customer owes the move again
    assert record(h, EntityType.INVOICE, "j1").state is SyncState.SYNCED
    for entity_type, entity_id, quickbooks_id in [
        (EntityType.PAYMENT, "p1", payment_id),
        (EntityType.REFUND, "r1", refund_id),
    ]:
        voided_record = record(h, entity_type, entity_id)
        assert voided_record.state is SyncState.VOIDED
        assert voided_record.quickbooks_id == quickbooks_id  # R8: the Id is kept
        assert voided_record.applied == {}
    actions = {(r.entity.id, r.action) for r in done.results}
    assert {("p1", SyncAction.VOIDED), ("r1", SyncAction.VOIDED)} <= actions


def test_voiding_an_invoice_lets_go_of_it_in_each_payment_keeping_their_other_lines(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    p1, p2 = payment("p1", "200.00"), payment("p2", "300.00", refund("r2", "20.00"))
    run(h, h.service.sync_payment(p, OPP, p1))
    run(h, h.service.sync_payment(p, OPP, p2))
    run(h, h.service.close_out_job(p, OPP, MOVE, [p1, p2]))  # 350.00: 200.00 of p1, 150.00 of p2
    run(h, h.service.close_out_job(p, OPP, PACKING, [p1, p2]))  # 100.00 of p2
    assert record(h, EntityType.PAYMENT, "p2").applied == {"j1": D("150.00"), "j2": D("100.00")}
    move, packing = txn(qbo, h, EntityType.INVOICE, "j1"), txn(qbo, h, EntityType.INVOICE, "j2")
    r2 = record(h, EntityType.REFUND, "r2").quickbooks_id or ""

    run(h, h.service.void_invoice(p, "j1"))

    assert move.voided and move.total == ZERO
    assert record(h, EntityType.INVOICE, "j1").state is SyncState.VOIDED
    assert record(h, EntityType.INVOICE, "j1").quickbooks_id == move.id
    first, second = txn(qbo, h, EntityType.PAYMENT, "p1"), txn(qbo, h, EntityType.PAYMENT, "p2")
    assert first.live and second.live and first.total == D("200.00") and second.total == D("300.00")
    assert lines_of(first) == set()  # all of its 200.00 unapplied now
    assert lines_of(second) == {
        LinkLine(TxnKind.EXPENSE, r2, D("20.00")),
        LinkLine(TxnKind.INVOICE, packing.id, D("100.00")),
    }
    assert record(h, EntityType.PAYMENT, "p1").applied == {}
    assert record(h, EntityType.PAYMENT, "p2").applied == {"j2": D("100.00")}
    assert qbo.invoice_balance(packing.id) == ZERO

    # A later sync of a payment leaves the voided invoice out: nothing is applied to it again.
    run(h, h.service.sync_payment(p, OPP, p1))
    assert lines_of(txn(qbo, h, EntityType.PAYMENT, "p1")) == set()
    assert move.voided and len(qbo.live("Invoice")) == 1


def test_a_voided_record_is_not_synced_again(h: Harness) -> None:
    paid_invoice_with_refund(h)
    p = h.principal()
    run(h, h.service.void_payment(p, "p1"))
    error = refused(lambda: h.service.sync_payment(p, OPP, payment("p1", "500.00", refund("r1", "50.00"))))
    assert error.reason == "VOIDED" and "voided" in error.message
    run(h, h.service.void_invoice(p, "j1"))
    assert refused(lambda: h.service.sync_invoice(p, OPP, MOVE, [])).reason == "VOIDED"
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.VOIDED  # the refusals changed nothing


def test_a_deposited_payment_is_refused_until_its_payout_lets_go_of_it(h: Harness) -> None:
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "300.00")))
    run(h, h.service.sync_payout(p, Payout("po1", date(2026, 4, 5), D("300.00"), ("p1",))))
    error = refused(lambda: h.service.void_payment(p, "p1"))
    assert error.reason == "PAYMENT_DEPOSITED" and "po1" in error.message and "resync" in error.message
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.SYNCED


def test_a_request_id_makes_a_void_idempotent(h: Harness) -> None:
    paid_invoice_with_refund(h)
    p = h.principal()
    first = h.service.void_payment(p, "p1", "void-p1")
    assert h.service.void_payment(p, "p1", "void-p1").name == first.name
    with pytest.raises(RequestIdReusedError):
        h.service.void_invoice(p, "j1", "void-p1")
    run(h, first)
    assert h.service.void_payment(p, "p1", "void-p1").name == first.name  # after it ran, too


def test_voiding_twice_changes_nothing_more(h: Harness) -> None:
    paid_invoice_with_refund(h)
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.void_payment(p, "p1"))
    calls = qbo.request_count
    job = h.service.void_payment(p, "p1")
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.VOIDED  # not PENDING: nothing is to come
    run(h, job)
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.VOIDED
    assert record(h, EntityType.REFUND, "r1").state is SyncState.VOIDED
    assert qbo.request_count == calls  # voided already: QuickBooks is not even asked


def test_what_qbsync_never_received_is_not_found_and_what_is_not_in_quickbooks_cannot_be_voided(h: Harness) -> None:
    p = h.principal()
    with pytest.raises(NotFoundError):
        h.service.void_payment(p, "nope")
    with pytest.raises(NotFoundError):
        h.service.void_invoice(p, "nope")
    h.service.sync_payment(p, OPP, payment("p1", "400.00"))  # accepted, not run yet
    assert "not in QuickBooks" in refused(lambda: h.service.void_payment(p, "p1")).message
    h.service.close_out_job(p, OPP, MOVE, [payment("p1", "400.00")])
    assert "not in QuickBooks" in refused(lambda: h.service.void_invoice(p, "j1")).message


def test_another_tenants_payment_is_not_found(h: Harness) -> None:
    paid_invoice_with_refund(h)
    with pytest.raises(NotFoundError):
        h.service.void_payment(h.principal("globex"), "p1")


def test_voiding_needs_the_sync_permission_and_a_usable_id(h: Harness) -> None:
    reader = h.principal(permissions=frozenset({Permission.READ}))
    with pytest.raises(PermissionDeniedError):
        h.service.void_payment(reader, "p1")
    with pytest.raises(ValidationError) as caught:
        h.service.void_invoice(h.principal(), " ", "x" * 51)
    assert {v.field for v in caught.value.violations} == {"job_id", "request_id"}


@pytest.mark.parametrize("calls_before", range(5))
def test_a_void_whose_answer_was_lost_is_run_again_without_doubling_anything(h: Harness, calls_before: int) -> None:
    """R7: whichever call of the void commits in QuickBooks and loses its answer, the retry ends in the same
    books: one payment, voided; the refund removed; the invoice owed again."""
    paid_invoice_with_refund(h)
    qbo = h.qbo()
    invoice = txn(qbo, h, EntityType.INVOICE, "j1")
    qbo.faults.extend([Fault.NONE] * calls_before + [Fault.COMMIT_THEN_LOSE])

    run(h, h.service.void_payment(h.principal(), "p1"))

    payments = [t for t in qbo.txns.values() if t.entity == "Payment"]
    assert len(payments) == 1 and payments[0].voided
    assert qbo.live("Purchase") == [] and qbo.invoice_balance(invoice.id) == D("350.00")
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.VOIDED
    assert record(h, EntityType.REFUND, "r1").state is SyncState.VOIDED


def test_a_payout_listing_a_voided_payment_is_refused(h: Harness) -> None:
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "300.00")))
    run(h, h.service.void_payment(p, "p1"))
    error = refused(lambda: h.service.sync_payout(p, Payout("po1", date(2026, 4, 5), D("300.00"), ("p1",))))
    assert error.reason == "VOIDED" and error.metadata["field"] == "payout.payment_ids[0]"


def test_a_sync_accepted_before_the_void_and_run_after_it_fails_saying_so(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "300.00")))
    earlier = h.service.sync_payment(p, OPP, payment("p1", "310.00"))  # queued, not run yet
    with h.uow_factory() as uow:
        stored = uow.jobs.get("acme", earlier.job_id)
        assert stored is not None
        stored.next_attempt_time = datetime(2030, 1, 1, tzinfo=UTC)  # runs after the void
        uow.jobs.save(stored)
        uow.commit()
    void = h.service.void_payment(p, "p1")
    assert h.worker.run_next("w1") is not None
    assert h.service.get_job(p, void.name).state is SyncJobState.SUCCEEDED
    with h.uow_factory() as uow:
        stored = uow.jobs.get("acme", earlier.job_id)
        assert stored is not None
        stored.next_attempt_time = None
        uow.jobs.save(stored)
        uow.commit()
    h.worker.drain()

    failed = h.service.get_job(p, earlier.name)
    assert failed.state is SyncJobState.FAILED and failed.error is not None and failed.error.reason == "VOIDED"
    assert record(h, EntityType.PAYMENT, "p1").state is SyncState.VOIDED  # the failure leaves the void as it is
    (voided,) = [t for t in qbo.txns.values() if t.entity == "Payment"]
    assert voided.voided and voided.total == ZERO
