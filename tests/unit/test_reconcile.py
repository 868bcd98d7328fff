"""SPEC §11 ReconcileCompany on the in-memory core and the fake QuickBooks: a company whose books agree reports
nothing; each change a bookkeeper makes in QuickBooks is named, with the CRM's and QuickBooks' amounts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import FakeTxn
from core.accounting import DepositLine, DepositLineKind, DepositSpec, PaymentSpec
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
    SyncJob,
    SyncJobState,
)
from core.errors import PermissionDeniedError, ValidationError
from core.reconcile import Difference
from tests.unit.support import Harness
from tests.unit.test_branches import Branches, acme, succeeded
from tests.unit.test_branches import opportunity as branch_opportunity
from tests.unit.test_branches import payment as branch_payment

D = Decimal
__all__ = ["acme"]  # the branch stories' fixture, used here by name
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
APRIL = (date(2026, 4, 1), date(2026, 4, 30))
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))
P1 = Payment("p1", D("500.00"), PaymentMethod.CREDIT_CARD, T, "ref-p1", (Refund("r1", D("50.00"), T, "sofa"),))
P2 = Payment("p2", D("120.00"), PaymentMethod.CREDIT_CARD, T, "ref-p2")


@pytest.fixture
def h() -> Harness:
    return Harness()


def run(h: Harness, job: SyncJob) -> None:
    h.worker.drain()
    assert h.service.get_job(h.principal(), job.name).state is SyncJobState.SUCCEEDED


def synced_company(h: Harness) -> None:
    """p1 (500.00, refund r1 of 50.00) applied to j1's invoice (350.00); p2 (120.00) in payout po1."""
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, P1))
    run(h, h.service.close_out_job(p, OPP, MOVE, [P1]))
    run(h, h.service.sync_payment(p, OPP, P2))
    run(h, h.service.sync_payout(p, Payout("po1", date(2026, 4, 5), D("120.00"), ("p2",))))


def reconcile(h: Harness, period: tuple[date, date] = APRIL) -> list[Difference]:
    return h.reconcile.reconcile(h.principal(), *period)


def txn(h: Harness, entity_type: EntityType, entity_id: str) -> FakeTxn:
    with h.uow_factory.read_only() as uow:
        record = uow.sync_records.get("acme", EntityRef(entity_type, entity_id))
    assert record is not None and record.quickbooks_id is not None
    return h.qbo().txn(record.quickbooks_id)


def test_a_company_whose_books_agree_reports_nothing(h: Harness) -> None:
    synced_company(h)
    assert reconcile(h) == []


def test_a_payment_amount_edited_in_quickbooks_is_named_with_both_amounts(h: Harness) -> None:
    synced_company(h)
    edited = txn(h, EntityType.PAYMENT, "p2")
    assert isinstance(edited.spec, PaymentSpec)
    edited.spec, edited.quickbooks_total = replace(edited.spec, amount=D("102.00")), None  # TotalAmt from the spec

    differences = reconcile(h)

    assert [(d.entity, d.quickbooks_id, d.what, d.crm_amount, d.quickbooks_amount) for d in differences] == [
        (EntityRef(EntityType.PAYMENT, "p2"), edited.id, "payment amount differs", D("120.00"), D("102.00"))
    ]
    assert differences[0].customer_id == "c1"


def test_a_refund_expense_deleted_in_quickbooks_is_named(h: Harness) -> None:
    synced_company(h)
    expense = txn(h, EntityType.REFUND, "r1")
    h.qbo().delete(expense.id)

    differences = {(d.entity, d.what): d for d in reconcile(h)}

    deleted = differences[(EntityRef(EntityType.REFUND, "r1"), "refund expense deleted in QuickBooks")]
    assert (deleted.quickbooks_id, deleted.crm_amount, deleted.quickbooks_amount) == (expense.id, D("50.00"), None)
    # QuickBooks took the link to it off the payment as well: the payment's applied total no longer agrees.
    unlinked = [d for (entity, _), d in differences.items() if entity == EntityRef(EntityType.PAYMENT, "p1")]
    assert [(d.crm_amount, d.quickbooks_amount) for d in unlinked] == [(D("400.00"), D("350.00"))]


def test_an_invoice_voided_in_quickbooks_is_named(h: Harness) -> None:
    synced_company(h)
    invoice = txn(h, EntityType.INVOICE, "j1")
    h.qbo().void_in_quickbooks(invoice.id)

    differences = {(d.entity, d.what): d for d in reconcile(h)}

    voided = differences[(EntityRef(EntityType.INVOICE, "j1"), "invoice voided in QuickBooks but not in the CRM")]
    assert (voided.quickbooks_id, voided.crm_amount, voided.quickbooks_amount) == (invoice.id, D("350.00"), D("0"))


def test_an_invoice_total_edited_in_quickbooks_is_named_with_its_balance(h: Harness) -> None:
    synced_company(h)
    invoice = txn(h, EntityType.INVOICE, "j1")
    invoice.quickbooks_total = D("400.00")

    found = {d.what: (d.crm_amount, d.quickbooks_amount) for d in reconcile(h)}

    assert found == {
        "invoice total differs": (D("350.00"), D("400.00")),
    }  # its balance is still its total less what was applied: 50.00 open, as QuickBooks says


def test_a_deposit_edited_in_quickbooks_is_named_with_the_payment_left_in_undeposited_funds(h: Harness) -> None:
    synced_company(h)
    deposit = txn(h, EntityType.PAYOUT, "po1")
    assert isinstance(deposit.spec, DepositSpec)
    lines = (DepositLine(DepositLineKind.ADJUSTMENT, D("100.00"), memo="cash"),)
    deposit.spec, deposit.quickbooks_total = replace(deposit.spec, lines=lines), None  # TotalAmt from the spec
    payment = txn(h, EntityType.PAYMENT, "p2")

    found = {(d.entity, d.what): (d.quickbooks_id, d.crm_amount, d.quickbooks_amount) for d in reconcile(h)}

    assert found == {
        (EntityRef(EntityType.PAYOUT, "po1"), "deposit total differs from the payout's amount"): (
            deposit.id,
            D("120.00"),
            D("100.00"),
        ),
        (
            EntityRef(EntityType.PAYMENT, "p2"),
            "payment still in Undeposited Funds, though payout po1 deposited it",
        ): (payment.id, D("120.00"), D("120.00")),
    }


def test_a_payment_voided_through_qbsync_is_no_difference(h: Harness) -> None:
    p = h.principal()
    run(h, h.service.sync_payment(p, OPP, P1))
    run(h, h.service.close_out_job(p, OPP, MOVE, [P1]))
    run(h, h.service.void_payment(p, "p1"))
    assert reconcile(h) == []


def test_a_record_never_synced_is_reported_as_such(h: Harness) -> None:
    p = h.principal()
    h.service.sync_payment(p, OPP, P2)  # accepted, PENDING, not yet run

    differences = reconcile(h)

    assert [(d.entity, d.quickbooks_id, d.what, d.crm_amount, d.quickbooks_amount) for d in differences] == [
        (EntityRef(EntityType.PAYMENT, "p2"), "", "payment not synced to QuickBooks", D("120.00"), None)
    ]


def test_only_the_period_is_reconciled(h: Harness) -> None:
    synced_company(h)
    h.qbo().delete(txn(h, EntityType.REFUND, "r1").id)
    assert reconcile(h, (date(2026, 5, 1), date(2026, 5, 31))) == []


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (None, date(2026, 4, 30), "start_date"),
        (date(2026, 4, 1), None, "end_date"),
        (date(2026, 4, 30), date(2026, 4, 1), "end_date"),
        (date(2025, 1, 1), date(2026, 4, 1), "end_date"),
    ],
)
def test_a_missing_reversed_or_too_long_period_is_refused_naming_the_field(
    h: Harness, start: date | None, end: date | None, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        h.reconcile.reconcile(h.principal(), start, end)
    assert [v.field for v in caught.value.violations] == [field]


def test_reconcile_needs_the_read_permission(h: Harness) -> None:
    with pytest.raises(PermissionDeniedError):
        h.reconcile.reconcile(h.principal(permissions=frozenset({Permission.SYNC})), *APRIL)


def test_each_branch_is_reconciled_in_the_company_its_connection_holds(acme: Branches) -> None:
    """North has its own company; the default connection's company holds the rest (SPEC §10). Each company
    is read once per kind of record, and a change in one company is reported for that branch's record only."""
    succeeded(acme.sync(branch_opportunity("north", "o1"), branch_payment("p1", "300.00")))
    succeeded(acme.sync(branch_opportunity("south", "o2"), branch_payment("p2", "200.00")))
    north, default = acme.company("north"), acme.company("")
    assert acme.core.reconcile.reconcile(acme.principal, *APRIL) == []

    with acme.store.read_only() as uow:
        record = uow.sync_records.get("acme", EntityRef(EntityType.PAYMENT, "p1"))
    assert record is not None and record.quickbooks_id is not None
    edited = north.txn(record.quickbooks_id)
    assert isinstance(edited.spec, PaymentSpec)
    edited.spec, edited.quickbooks_total = replace(edited.spec, amount=D("250.00")), None
    reads = north.live_reads, default.live_reads

    differences = acme.core.reconcile.reconcile(acme.principal, *APRIL)

    assert [(d.entity.id, d.branch_id, d.what, d.crm_amount, d.quickbooks_amount) for d in differences] == [
        ("p1", "north", "payment amount differs", D("300.00"), D("250.00"))
    ]
    assert (north.live_reads - reads[0], default.live_reads - reads[1]) == (1, 1)  # one query by Id each
