"""Issue 12: the engine sends a payment's refunds in one batch request, and a close-out's payment updates in
another, keeping R6/R7 as the single writes do: a batch whose answer was lost is found again (one QuickBooks
record per refund), and a write refused alone inside a batch ends as it would have sent alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from adapters.quickbooks.fake import FakeQuickBooksCompanies, Fault
from core.accounting import BatchWrite, QuickBooksRef
from core.connection import QuickBooksConnection
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncJobState,
    SyncResult,
)
from core.errors import AccountingError
from core.limits import FieldLimits
from core.ports import UNFENCED, AccountingSystem, AccountingSystems, ForwardingAccountingSystem, WriteFence
from tests.unit.support import Harness

T = datetime(2026, 4, 1, 10, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "Lee", email="mary@example.com"))
FIRST = Payment("p0", Decimal("50.00"), PaymentMethod.CREDIT_CARD, T, "ch_0")


def _refunds(*amounts: str) -> tuple[Refund, ...]:
    return tuple(Refund(f"r{n}", Decimal(a), T) for n, a in enumerate(amounts, start=1))


def _payment(*refunds: str) -> Payment:
    return Payment("p1", Decimal("500.00"), PaymentMethod.CREDIT_CARD, T, "ch_1", _refunds(*refunds))


def _sync(h: Harness, payment: Payment) -> list[SyncResult]:
    p = h.principal()
    job = h.service.sync_payment(p, OPP, payment)
    h.worker.drain()
    done = h.service.get_job(p, job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    return done.results


def _purchases(h: Harness) -> dict[str, Decimal]:
    """The live refunds of payment p1 in QuickBooks, by Id: their amounts."""
    return {t.id: t.spec.amount for t in h.qbo().live("Purchase") if "payment p1" in t.spec.private_note}  # type: ignore[attr-defined]


def _linked(h: Harness, payment_id: str) -> set[str]:
    record = h.service.get_status(h.principal(), EntityRef(EntityType.PAYMENT, payment_id))
    (payment,) = [t for t in h.qbo().live("Payment") if t.id == record.quickbooks_id]
    return {line.txn_id for line in payment.spec.lines}  # type: ignore[attr-defined]


def test_a_payments_refunds_go_in_one_batch_then_the_payment_linking_them() -> None:
    h = Harness()
    _sync(h, FIRST)  # the customer is in QuickBooks: what is counted is the refunds and their payment
    qbo = h.qbo()
    before = qbo.request_count

    _sync(h, _payment("10.00", "20.00", "30.00"))

    assert qbo.request_count - before == 2
    assert sorted(_purchases(h).values()) == [Decimal("10.00"), Decimal("20.00"), Decimal("30.00")]
    assert _linked(h, "p1") == set(_purchases(h))


def test_a_batch_of_refunds_whose_answer_was_lost_is_found_again_by_the_retry_one_record_per_refund() -> None:
    h = Harness()
    _sync(h, FIRST)
    qbo = h.qbo()
    # The batch of refunds (the job's first request) commits in QuickBooks, and its answer is lost.
    qbo.inject(Fault.COMMIT_THEN_LOSE)
    qbo.forget_request_ids()  # nor is the replay of request ids relied on: the markers find the refunds

    p = h.principal()
    job = h.service.sync_payment(p, OPP, _payment("10.00", "20.00"))
    h.worker.drain()

    done = h.service.get_job(p, job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    assert done.attempts == 2  # the fault struck: the first attempt lost the batch's answer
    assert sorted(_purchases(h).values()) == [Decimal("10.00"), Decimal("20.00")]
    assert _linked(h, "p1") == set(_purchases(h))
    for refund in ("r1", "r2"):
        status = h.service.get_status(p, EntityRef(EntityType.REFUND, refund))
        assert status.quickbooks_id in _purchases(h)


class _Unbatched(ForwardingAccountingSystem):
    """QuickBooks without its batch endpoint: each write of a batch sent as its single request."""

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        results: list[QuickBooksRef | AccountingError] = []
        for w in writes:
            try:
                if w.ref is None:
                    results.append(self.create(w.spec, request_id=w.request_id, fence=fence))
                else:
                    results.append(self.update(w.ref, w.spec, request_id=w.request_id, fence=fence))
            except AccountingError as refused:
                results.append(refused)
        return results


class _UnbatchedCompanies(AccountingSystems):
    def __init__(self, companies: FakeQuickBooksCompanies) -> None:
        self._companies = companies

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        return _Unbatched(self._companies.for_tenant(tenant_id, connection, branch_id=branch_id))

    @property
    def field_limits(self) -> FieldLimits:  # type: ignore[override]
        return self._companies.field_limits


def _edited_refund_then_resynced(batched: bool) -> tuple[Harness, list[SyncResult]]:
    """Both refunds change in the CRM, one of them was edited in QuickBooks meanwhile: its update is
    refused as stale while the other's lands; the run starts over from its current SyncToken."""
    companies = FakeQuickBooksCompanies()
    h = Harness(companies=companies, accounting=None if batched else _UnbatchedCompanies(companies))
    _sync(h, FIRST)
    _sync(h, _payment("10.00", "20.00"))
    r1 = h.service.get_status(h.principal(), EntityRef(EntityType.REFUND, "r1")).quickbooks_id
    assert r1 is not None
    h.qbo().txns[r1].sync_token += 1  # a bookkeeper edits the refund in QuickBooks
    return h, _sync(h, _payment("15.00", "25.00"))


def test_a_refund_refused_as_stale_inside_a_batch_ends_as_the_single_writes_do() -> None:
    batched, batched_results = _edited_refund_then_resynced(batched=True)
    single, single_results = _edited_refund_then_resynced(batched=False)

    assert batched.qbo().stale_token_refusals == single.qbo().stale_token_refusals == 1
    assert batched_results == single_results
    assert sorted(_purchases(batched).values()) == sorted(_purchases(single).values())
    assert sorted(_purchases(batched).values()) == [Decimal("15.00"), Decimal("25.00")]
    assert _linked(batched, "p1") == set(_purchases(batched))
    # Fewer requests, for the same outcome.
    assert batched.qbo().request_count < single.qbo().request_count


def test_a_close_out_sends_the_invoice_then_its_payments_in_one_batch() -> None:
    h = Harness()
    payments = [Payment(f"p{n}", Decimal("100.00"), PaymentMethod.CASH, T, f"ch_{n}") for n in range(1, 5)]
    for payment in payments:
        _sync(h, payment)
    qbo = h.qbo()
    before = qbo.request_count
    line = InvoiceLine("Moving", Decimal("4"), Decimal("100.00"), Decimal("400.00"))
    p = h.principal()

    job = h.service.close_out_job(p, OPP, Job("j1", "1001", date(2026, 4, 2), (line,)), payments)
    h.worker.drain()

    done = h.service.get_job(p, job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    # The invoice number checked free (SPEC §10), the invoice, and the 4 payments applying it in one batch.
    assert qbo.request_count - before == 3
    (invoice,) = qbo.live("Invoice")
    assert qbo.invoice_balance(invoice.id) == Decimal("0.00")
    assert {invoice.id} == {i for payment in payments for i in _linked(h, payment.payment_id)}
