"""The sync rules (SPEC.md section 2) on examples a bookkeeper can check by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import FakeQuickBooks, Fault
from core.accounting import InvoiceSpec, LinkLine, PaymentSpec, RefundSpec, TxnKind
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Permission,
    Refund,
    SyncJobState,
    SyncState,
)
from core.errors import FieldViolation, NotFoundError, PermissionDeniedError, ValidationError
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))


def payment(
    payment_id: str = "p1", amount: str = "500.00", *refunds: Refund, method=PaymentMethod.CREDIT_CARD
) -> Payment:
    return Payment(payment_id, D(amount), method, T, f"ref-{payment_id}", tuple(refunds))


def refund(refund_id: str, amount: str) -> Refund:
    return Refund(refund_id, D(amount), T, "damaged sofa")


@pytest.fixture
def h() -> Harness:
    return Harness()


def run(h: Harness, job) -> None:  # type: ignore[no-untyped-def]
    h.worker.drain()
    done = h.service.get_job(h.principal(), job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error


def only(qbo: FakeQuickBooks, entity: str):  # type: ignore[no-untyped-def]
    live = qbo.live(entity)
    assert len(live) == 1, live
    return live[0]


def test_deposit_with_two_refunds_then_close_out(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    deposit = payment("p1", "500.00", refund("r1", "50.00"), refund("r2", "25.00"))
    run(h, h.service.sync_payment(p, OPP, deposit))

    # R3: a deposit is a payment, unapplied, with no invoice; R4: each refund an expense, linked.
    assert qbo.live("Invoice") == []
    customer = only_customer(qbo)
    assert (customer.display_name, customer.email) == ("Mary O'Brien", "mary@example.com")
    expenses = sorted(qbo.live("Purchase"), key=lambda t: t.spec.amount)
    assert [(t.spec.amount, t.kind, t.spec.customer_id) for t in expenses] == [
        (D("25.00"), TxnKind.EXPENSE, customer.id),
        (D("50.00"), TxnKind.EXPENSE, customer.id),
    ]
    pay = only(qbo, "Payment")
    assert pay.spec.amount == D("500.00") and pay.spec.customer_id == customer.id
    assert set(pay.spec.lines) == {
        LinkLine(TxnKind.EXPENSE, expenses[0].id, D("25.00")),
        LinkLine(TxnKind.EXPENSE, expenses[1].id, D("50.00")),
    }
    assert qbo.unapplied_amount(pay.id) == D("425.00")

    # R5: the close-out makes the invoice and applies what the payment has left, up to its total.
    run(h, h.service.close_out_job(p, OPP, MOVE, [deposit]))
    invoice = only(qbo, "Invoice")
    assert isinstance(invoice.spec, InvoiceSpec)
    assert (invoice.spec.doc_number, invoice.spec.total, invoice.spec.customer_id) == (
        "INV-1001",
        D("350.00"),
        customer.id,
    )
    pay = only(qbo, "Payment")
    assert LinkLine(TxnKind.INVOICE, invoice.id, D("350.00")) in pay.spec.lines
    assert qbo.invoice_balance(invoice.id) == D("0.00")
    assert qbo.unapplied_amount(pay.id) == D("75.00")
    assert len(qbo.live("Purchase")) == 2  # the refunds were not written twice

    status = h.service.get_status(p, EntityRef(EntityType.INVOICE, "j1"))
    assert (status.state, status.quickbooks_id, status.resync_available) == (SyncState.SYNCED, invoice.id, True)


def only_customer(qbo: FakeQuickBooks):  # type: ignore[no-untyped-def]
    assert len(qbo.customers) == 1, qbo.customers
    return next(iter(qbo.customers.values()))


def test_a_name_taken_by_a_vendor_or_another_customer_gets_a_suffix(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    qbo.add_vendor("Mary O'Brien")
    other = qbo.add_customer("Mary O'Brien - 2", "someone.else@example.com")
    run(h, h.service.sync_payment(p, OPP, payment()))
    link = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert link != other
    created = qbo.customers[link]
    assert (created.display_name, created.email) == ("Mary O'Brien - 3", "mary@example.com")
    assert (created.given_name, created.family_name) == ("Mary", "O'Brien")  # the CRM name is kept


def test_the_same_name_and_email_elsewhere_in_the_crm_reuses_the_customer(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    theirs = qbo.add_customer("mary  o'brien", "MARY@example.com")
    run(h, h.service.sync_payment(p, OPP, payment()))
    assert h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id == theirs
    assert len(qbo.customers) == 1


def test_a_linked_customer_is_reused_without_a_query(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.sync_payment(p, OPP, payment("p1")))
    before = qbo.request_count
    run(h, h.service.sync_payment(p, OPP, payment("p2", "80.00")))
    assert qbo.request_count - before == 1  # the payment's create, and no customer query


def test_a_refund_after_close_out_shrinks_the_application(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.close_out_job(p, OPP, MOVE, [payment("p1", "500.00")]))
    invoice = only(qbo, "Invoice")
    assert qbo.invoice_balance(invoice.id) == D("0.00")

    run(h, h.service.sync_payment(p, OPP, payment("p1", "500.00", refund("r1", "300.00"))))
    pay = only(qbo, "Payment")
    expense = only(qbo, "Purchase")
    assert set(pay.spec.lines) == {
        LinkLine(TxnKind.EXPENSE, expense.id, D("300.00")),
        LinkLine(TxnKind.INVOICE, invoice.id, D("200.00")),
    }
    assert qbo.invoice_balance(invoice.id) == D("150.00")
    assert qbo.unapplied_amount(pay.id) == D("0.00")


def test_a_smaller_invoice_on_resync_lowers_the_application_first(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.close_out_job(p, OPP, MOVE, [payment("p1", "500.00")]))
    cheaper = Job("j1", "INV-1001", MOVE.service_date, (InvoiceLine("Move, 1 h", D("1"), D("100.00"), D("100.00")),))
    run(h, h.service.sync_invoice(p, OPP, cheaper, [payment("p1", "500.00")]))
    invoice = only(qbo, "Invoice")
    assert invoice.spec.total == D("100.00") and qbo.invoice_balance(invoice.id) == D("0.00")
    assert qbo.unapplied_amount(only(qbo, "Payment").id) == D("400.00")


@pytest.mark.parametrize("how", ["delete", "void_in_quickbooks"])
def test_a_payment_deleted_in_quickbooks_is_recreated_on_resync(h: Harness, how: str) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.sync_payment(p, OPP, payment()))
    first = only(qbo, "Payment").id
    getattr(qbo, how)(first)
    job = h.service.sync_payment(p, OPP, payment())
    assert job.resync
    run(h, job)
    again = only(qbo, "Payment")
    assert again.id != first
    assert h.service.get_status(p, EntityRef(EntityType.PAYMENT, "p1")).quickbooks_id == again.id


@pytest.mark.parametrize("gone", ["Invoice", "Purchase"])
def test_a_payment_written_after_what_it_links_was_deleted_recreates_that(h: Harness, gone: str) -> None:
    """Found by the state machine: the payment linked the deleted record and QBO refused it for good."""
    p, qbo = h.principal(), h.qbo()
    deposit = payment("p1", "500.00", refund("r1", "10.00"))
    run(h, h.service.close_out_job(p, OPP, MOVE, [deposit]))
    victim = only(qbo, gone).id
    qbo.delete(victim)
    if gone == "Invoice":
        run(h, h.service.sync_payment(p, OPP, deposit))  # an ordinary resync of the payment
    else:  # a second close-out rewrites the payment's applications, not the (unchanged) refund
        second = Job("j2", "INV-1002", MOVE.service_date, MOVE.lines)
        run(h, h.service.close_out_job(p, OPP, second, [deposit]))
    assert len(qbo.live(gone)) == 1 and qbo.live(gone)[0].id != victim
    pay = only(qbo, "Payment")
    linked = {line.txn_id for line in pay.spec.lines}
    assert all(qbo.txn(txn_id).live for txn_id in linked)


def test_a_customer_deactivated_in_quickbooks_is_resolved_again(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    deposit = payment("p1", "500.00", refund("r1", "20.00"))
    run(h, h.service.sync_payment(p, OPP, deposit))
    first = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert first is not None
    qbo.deactivate_customer(first)
    run(h, h.service.sync_payment(p, OPP, deposit))
    second = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert second != first and qbo.customers[second].active
    assert qbo.customers[second].display_name == "Mary O'Brien - 2"  # the inactive one keeps its name
    assert only(qbo, "Payment").spec.customer_id == second
    assert only(qbo, "Purchase").spec.customer_id == second


def _close_out_story(h: Harness) -> None:
    """Every kind of write: customer, refund, payment and invoice creates, then updates."""
    p = h.principal()
    deposit = payment("p1", "500.00", refund("r1", "50.00"))
    run(h, h.service.sync_payment(p, OPP, deposit))
    run(h, h.service.close_out_job(p, OPP, MOVE, [deposit, payment("p2", "40.00", method=PaymentMethod.CHECK)]))
    run(h, h.service.sync_payment(p, OPP, payment("p1", "500.00", refund("r1", "50.00"), refund("r2", "300.00"))))


def _calls_in_story() -> int:
    h = Harness()
    _close_out_story(h)
    return h.qbo().request_count


@pytest.mark.parametrize("forget", [False, True], ids=["replay", "no-replay"])
@pytest.mark.parametrize("call", range(_calls_in_story()))
def test_a_write_committed_but_unanswered_is_not_written_twice(call: int, forget: bool) -> None:
    """COMMIT_THEN_LOSE on each call of the story in turn, with and without requestid replay."""
    h = Harness()
    qbo = h.qbo()
    qbo.inject(*[Fault.NONE] * call, Fault.COMMIT_THEN_LOSE)
    if forget:
        real_claim = h.worker.run_next

        def run_next_forgetting(worker_id: str):  # type: ignore[no-untyped-def]
            qbo.forget_request_ids()
            return real_claim(worker_id)

        h.worker.run_next = run_next_forgetting  # type: ignore[method-assign]
    _close_out_story(h)
    assert len(qbo.customers) == 1
    assert len(qbo.live("Payment")) == 2
    assert sorted(t.spec.amount for t in qbo.live("Purchase")) == [D("50.00"), D("300.00")]
    invoice = only(qbo, "Invoice")
    # p1 (500 - 50) paid the 350 invoice; the 300 refund leaves it 150 to apply (p2 is not moved).
    assert qbo.invoice_balance(invoice.id) == D("200.00")
    paid = sum((t.spec.amount for t in qbo.live("Payment")), D("0"))
    assert paid == D("540.00")


def test_validation_names_every_field_and_stores_nothing(h: Harness) -> None:
    p = h.principal()
    nameless = Opportunity("", "1001", Customer("c9", email="not an email"))
    bad = Payment("p9", D("10.001"), PaymentMethod.CASH, T, "", (Refund("r9", D("-1"), T), Refund("r9", D("20"), T)))
    with pytest.raises(ValidationError) as caught:
        h.service.sync_payment(p, nameless, bad, "x" * 51)
    fields = {v.field for v in caught.value.violations}
    assert fields >= {
        "request_id",
        "opportunity.opportunity_id",
        "opportunity.customer.last_name",
        "opportunity.customer.email",
        "payment.amount",
        "payment.refunds[0].amount",
        "payment.refunds[1].refund_id",
    }
    with pytest.raises(ValidationError) as caught:
        h.service.sync_payment(p, OPP, payment("p1", "100.00", refund("r1", "60.00"), refund("r2", "40.01")))
    assert [v.field for v in caught.value.violations] == ["payment.refunds"]
    bad_job = Job("j1", "", MOVE.service_date, (InvoiceLine("", D("2"), D("10.00"), D("25.00")),))
    with pytest.raises(ValidationError) as caught:
        h.service.close_out_job(p, OPP, bad_job, [payment("p1"), payment("p1")])
    assert {v.field for v in caught.value.violations} >= {
        "job.number",
        "job.lines[0].description",
        "job.lines[0].amount",
        "payments[1].payment_id",
    }
    for entity in (
        EntityRef(EntityType.PAYMENT, "p9"),
        EntityRef(EntityType.PAYMENT, "p1"),
        EntityRef(EntityType.REFUND, "r1"),
        EntityRef(EntityType.INVOICE, "j1"),
    ):
        with pytest.raises(NotFoundError):
            h.service.get_status(p, entity)
    assert h.worker.drain() == 0
    assert h.qbo().request_count == 0


def test_refunds_sent_earlier_count_against_the_payment(h: Harness) -> None:
    """The CRM may send only the new refund; those seen before still count (R4)."""
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "100.00", refund("r1", "60.00"))))
    with pytest.raises(ValidationError) as caught:
        h.service.sync_payment(p, OPP, payment("p1", "100.00", refund("r2", "40.01")))
    assert [v.field for v in caught.value.violations] == ["payment.refunds"]
    with pytest.raises(NotFoundError):
        h.service.get_status(p, EntityRef(EntityType.REFUND, "r2"))


def test_permissions(h: Harness) -> None:
    reader = h.principal(permissions=frozenset({Permission.READ}))
    syncer = h.principal(permissions=frozenset({Permission.SYNC}))
    with pytest.raises(PermissionDeniedError):
        h.service.sync_payment(reader, OPP, payment())
    with pytest.raises(PermissionDeniedError):
        h.service.close_out_job(reader, OPP, MOVE, [])
    job = h.service.sync_payment(syncer, OPP, payment())
    with pytest.raises(PermissionDeniedError):
        h.service.get_job(syncer, job.name)
    with pytest.raises(PermissionDeniedError):
        h.service.get_link(reader, EntityRef(EntityType.PAYMENT, "p1"))
    assert h.service.get_job(reader, job.name).name == job.name


def test_conversion_violations_are_reported_after_the_permission_with_the_use_cases_own(h: Harness) -> None:
    """An adapter's conversion violations (the gRPC adapter's) go into the use case: a caller without the
    permission is denied whatever they say; one with it gets them in one ValidationError with the use case's
    findings, a field the adapter named being judged by the adapter only (it holds a stand-in)."""
    reader = h.principal(permissions=frozenset({Permission.READ}))
    syncer = h.principal(permissions=frozenset({Permission.SYNC}))
    mixed = FieldViolation("payment.amount", "units and nanos must have the same sign")
    unnamed = Opportunity("o1", "1001", Customer("c1", last_name="Doe", email="not an email"))
    stand_in = payment("p1", "-1.00")  # validation alone would say payment.amount "must be positive"
    no_type = [FieldViolation("entity.type", "is required")]
    some_entity = EntityRef(EntityType.PAYMENT, "")
    calls = [
        (reader, lambda who: h.service.sync_payment(who, unnamed, stand_in, conversion_violations=[mixed])),
        (reader, lambda who: h.service.close_out_job(who, unnamed, MOVE, [stand_in], conversion_violations=[mixed])),
        (reader, lambda who: h.service.sync_invoice(who, unnamed, MOVE, [stand_in], conversion_violations=[mixed])),
        (syncer, lambda who: h.service.get_status(who, some_entity, conversion_violations=no_type)),
        (reader, lambda who: h.service.get_link(who, some_entity, conversion_violations=no_type)),
    ]
    for lacking, call in calls:
        with pytest.raises(PermissionDeniedError):
            call(lacking)
        with pytest.raises(ValidationError):
            call(h.principal())

    with pytest.raises(ValidationError) as caught:
        h.service.sync_payment(h.principal(), unnamed, stand_in, conversion_violations=[mixed])
    assert caught.value.violations[0] == mixed
    assert [v.field for v in caught.value.violations] == ["payment.amount", "opportunity.customer.email"]
    with pytest.raises(ValidationError) as caught:
        h.service.get_status(h.principal(), some_entity, conversion_violations=no_type)
    assert [v.field for v in caught.value.violations] == ["entity.type", "entity.id"]
    assert h.worker.drain() == 0
    assert h.qbo().request_count == 0


def test_another_tenants_records_are_not_found(h: Harness) -> None:
    acme, rival = h.principal("acme"), h.principal("rival")
    job = h.service.sync_payment(acme, OPP, payment())
    run(h, job)
    with pytest.raises(NotFoundError):
        h.service.get_job(rival, job.name)
    with pytest.raises(NotFoundError):
        h.service.retry(rival, job.name)
    with pytest.raises(NotFoundError):
        h.service.get_status(rival, EntityRef(EntityType.PAYMENT, "p1"))
    with pytest.raises(NotFoundError):
        h.service.get_link(rival, EntityRef(EntityType.PAYMENT, "p1"))
    assert h.qbo("rival").txns == {}


def test_checks_are_refunded_by_check(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "90.00", refund("r1", "90.00"), method=PaymentMethod.CHECK)))
    expense = only(qbo, "Purchase")
    assert isinstance(expense.spec, RefundSpec) and expense.kind is TxnKind.CHECK
    pay = only(qbo, "Payment")
    assert isinstance(pay.spec, PaymentSpec)
    assert pay.spec.lines == (LinkLine(TxnKind.CHECK, expense.id, D("90.00")),)
    assert qbo.unapplied_amount(pay.id) == D("0.00")


def test_a_customer_deactivated_after_close_out_moves_invoice_and_payment(h: Harness) -> None:
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.close_out_job(p, OPP, MOVE, [payment("p1", "500.00")]))
    first = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert first is not None
    qbo.deactivate_customer(first)
    run(h, h.service.sync_payment(p, OPP, payment("p1", "500.00")))
    second = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert only(qbo, "Invoice").spec.customer_id == second == only(qbo, "Payment").spec.customer_id


OPP_2 = Opportunity("o2", "1002", MARY)
MOVE_2 = Job("j2", "INV-1002", date(2026, 4, 5), (InvoiceLine("Packing", D("1"), D("80.00"), D("80.00")),))


def _replacement_story(h: Harness) -> tuple[str, Payment]:
    """Two opportunities of one customer in QuickBooks — a fully refunded deposit, a partly refunded check,
    payments applied to invoices — then the customer is made inactive. Returns it and the payment to resync."""
    p, qbo = h.principal(), h.qbo()
    run(h, h.service.sync_payment(p, OPP, payment("p1", "200.00", refund("r1", "200.00"))))
    paid = [payment("p1", "200.00", refund("r1", "200.00")), payment("p2", "400.00")]
    run(h, h.service.close_out_job(p, OPP, MOVE, paid))
    check = payment("p3", "100.00", refund("r2", "30.00"), method=PaymentMethod.CHECK)
    run(h, h.service.close_out_job(p, OPP_2, MOVE_2, [check]))
    first = h.service.get_status(p, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert first is not None
    qbo.deactivate_customer(first)
    return first, payment("p2", "400.00", refund("r3", "50.00"))


def _calls_to_replace() -> int:
    h = Harness()
    _, resync = _replacement_story(h)
    before = h.qbo().request_count
    run(h, h.service.sync_payment(h.principal(), OPP, resync))
    return h.qbo().request_count - before


@pytest.mark.parametrize("fault", [Fault.UNAVAILABLE, Fault.COMMIT_THEN_LOSE])
@pytest.mark.parametrize("call", range(_calls_to_replace()))
def test_a_replacement_cut_short_is_completed_by_the_retry(call: int, fault: Fault) -> None:
    """R1/R7: the customer is found inactive and the opportunity's move fails at each call in turn; the retry
    finds the same successor and finishes the move, whatever state the first attempt left QuickBooks in."""
    h = Harness()
    qbo = h.qbo()
    first, resync = _replacement_story(h)
    qbo.inject(*[Fault.NONE] * call, fault)
    run(h, h.service.sync_payment(h.principal(), OPP, resync))
    second = h.service.get_status(h.principal(), EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert second != first and len(qbo.customers) == 2  # one successor, made once
    txns = qbo.live("Payment") + qbo.live("Purchase") + qbo.live("Invoice")
    assert len(txns) == 3 + 3 + 2 and {t.spec.customer_id for t in txns} == {second}
    for pay in qbo.live("Payment"):
        assert isinstance(pay.spec, PaymentSpec)
        assert qbo.unapplied_amount(pay.id) >= 0
    refunds = {t.id: t.spec.amount for t in qbo.live("Purchase")}
    linked = {
        line.txn_id: line.amount
        for t in qbo.live("Payment")
        for line in t.spec.lines  # type: ignore[union-attr]
        if line.txn_kind is not TxnKind.INVOICE
    }
    assert linked == refunds and sorted(refunds.values()) == [D("30.00"), D("50.00"), D("200.00")]
    # p2 (400 - 50) still pays the 350 invoice in full; p3 (100 - 30) the 80 one as far as it can.
    balances = sorted(qbo.invoice_balance(t.id) for t in qbo.live("Invoice"))
    assert balances == [D("0.00"), D("10.00")]
