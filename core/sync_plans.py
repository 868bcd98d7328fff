"""R3 Deposit = payment only, R5 Invoice at close-out, and the move of R1: what a job writes, in what order.

A plan is decided from one opportunity's books (snapshots and sync records) before anything is written,
as a list of steps; `core.transaction_writer` carries the steps out. Deciding is pure, so each rule can
be read, and checked, apart from QuickBooks' replies. R4 (refunds ride with their payment) is in every
payment step: writing a payment writes its refunds first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from core.allocation import Applications, InvoiceDue, PaymentFunds, plan_applications, shrink_only
from core.domain import ClosedJob, EntityRef, EntityType, Payment, Refund, SyncState
from core.errors import FailedPreconditionError
from core.outbox import VOIDED
from core.sync_run import OpportunityBooks


@dataclass(frozen=True)
class WritePayment:
    """The payment with its refunds (R4), applying `applications` (job id → amount) and nothing else."""

    payment: Payment
    applications: dict[str, Decimal]
    force: bool = False  # written even if unchanged: how a resync finds a record deleted in QuickBooks


@dataclass(frozen=True)
class DetachPayment:
    """The payment on the new customer linking nothing, so that its refunds and invoices can follow it;
    its record keeps the applications it had, to be restored once they have (also by a retry)."""

    payment: Payment


@dataclass(frozen=True)
class WriteRefund:
    payment: Payment
    refund: Refund


@dataclass(frozen=True)
class WriteInvoice:
    closed: ClosedJob


Step = WritePayment | DetachPayment | WriteRefund | WriteInvoice


@dataclass(frozen=True)
class Plan:
    books: OpportunityBooks
    steps: list[Step] = field(default_factory=list)

    def writes(self) -> list[EntityRef]:
        """The records the steps write (those not in QuickBooks yet are created): R7 declares their
        intents before the first write."""
        entities: list[EntityRef] = []
        for step in self.steps:
            match step:
                case WritePayment(payment):  # with its refunds, first (R4)
                    entities += [EntityRef(EntityType.REFUND, r.refund_id) for r in payment.refunds]
                    entities.append(EntityRef(EntityType.PAYMENT, payment.payment_id))
                case DetachPayment(payment):
                    entities.append(EntityRef(EntityType.PAYMENT, payment.payment_id))
                case WriteRefund(_, refund):
                    entities.append(EntityRef(EntityType.REFUND, refund.refund_id))
                case WriteInvoice(closed):
                    entities.append(EntityRef(EntityType.INVOICE, closed.job.job_id))
        return entities


def plan_payment_sync(books: OpportunityBooks, payment_id: str) -> Plan:
    """R3: the payment (with its refunds, R4), applied only to invoices already in QuickBooks, oldest
    first; with none, it stays unapplied and no invoice is made."""
    payment = books.payment(payment_id)
    if payment is None:
        _refuse_voided(books, EntityRef(EntityType.PAYMENT, payment_id))
        raise FailedPreconditionError(f"payment {payment_id} is not known to qbsync")
    invoices = [
        InvoiceDue(c.job.job_id, record.amount)
        for c in books.closed
        if (record := books.record(EntityType.INVOICE, c.job.job_id)).quickbooks_id and record.amount is not None
    ]
    plan = plan_applications(_funds(books.payments), invoices, _applied(books, books.payments), movable={payment_id})
    # Not forced: an explicit sync reads what is unchanged rather than rewriting it (core.record_writer).
    return Plan(books, [WritePayment(payment, plan.get(payment_id, {}))])


def plan_invoice_sync(books: OpportunityBooks, job_id: str) -> Plan:
    """R5: the job's invoice, with every payment of the opportunity (and its refunds) synced and applied
    to it oldest first. Applications that must shrink are lowered first, so that neither a payment nor an
    invoice is ever over-applied while the job's writes are under way."""
    this = books.closed_job(job_id)
    if this is None:
        _refuse_voided(books, EntityRef(EntityType.INVOICE, job_id))
        raise FailedPreconditionError(f"job {job_id} has not been closed out: no invoice before close-out")
    invoices: list[InvoiceDue] = []
    for c in books.closed:
        record = books.record(EntityType.INVOICE, c.job.job_id)
        if c.job.job_id == job_id:
            invoices.append(InvoiceDue(job_id, c.job.total))
        elif record.quickbooks_id and record.amount is not None:
            invoices.append(InvoiceDue(c.job.job_id, record.amount))
    current = _applied(books, books.payments)
    plan = plan_applications(_funds(books.payments), invoices, current, movable={p.payment_id for p in books.payments})
    steps: list[Step] = []
    for payment in books.payments:
        before = current.get(payment.payment_id, {})
        lowered = shrink_only(before, plan.get(payment.payment_id, {}))
        if lowered != before:
            steps.append(WritePayment(payment, lowered))
    steps.append(WriteInvoice(this))
    steps += [WritePayment(p, plan.get(p.payment_id, {})) for p in books.payments]
    return Plan(books, steps)


def plan_customer_move(books: OpportunityBooks) -> Plan:
    """R1, once the linked QuickBooks customer is replaced: what of the opportunity is in QuickBooks moves
    to the new customer. QuickBooks refuses to change the customer of a record that a payment of another
    customer links, and refuses a payment linking another customer's records (see the emulator's store),
    so it moves in three steps: its payments go to the new customer linking nothing, then its refunds and
    invoices follow, then the payments link their refunds again and are re-applied. Each step only names
    the new customer, so it works wherever an interrupted earlier move left a record."""
    # A record whose create was sent but never answered may be in QuickBooks on the old customer: it moves
    # too (the writer adopts it there by its marker). Such a payment may link an invoice, which could not
    # move before the payment lets go of it.
    written = [p for p in books.payments if books.maybe_written(EntityType.PAYMENT, p.payment_id)]
    steps: list[Step] = [DetachPayment(p) for p in written]
    steps += [
        WriteRefund(p, r) for p in written for r in p.refunds if books.maybe_written(EntityType.REFUND, r.refund_id)
    ]
    invoices = [c for c in books.closed if books.maybe_written(EntityType.INVOICE, c.job.job_id)]
    steps += [WriteInvoice(c) for c in invoices]
    # What each payment applied before the move, trimmed to what payments and invoices now hold.
    plan = plan_applications(
        _funds(written),
        [InvoiceDue(c.job.job_id, c.job.total) for c in invoices],
        _applied(books, written),
        movable={p.payment_id for p in written},
    )
    steps += [WritePayment(p, plan.get(p.payment_id, {})) for p in written]
    return Plan(books, steps)


def _refuse_voided(books: OpportunityBooks, entity: EntityRef) -> None:
    """A sync accepted before its record was voided (SPEC §11), run after the void (a retry): the books leave
    the voided record out, and the job fails saying so rather than that the record is unknown."""
    record = books.records.get(entity)
    if record is not None and record.state is SyncState.VOIDED:
        raise FailedPreconditionError(
            f"{entity.type.value.lower()} {entity.id} was voided since this sync was accepted: it is not synced again",
            reason=VOIDED,
        )


def _funds(payments: tuple[Payment, ...] | list[Payment]) -> list[PaymentFunds]:
    return [PaymentFunds(p.payment_id, p.net_amount) for p in payments]


def _applied(books: OpportunityBooks, payments: tuple[Payment, ...] | list[Payment]) -> Applications:
    """What each payment applies now, as last written."""
    return {p.payment_id: dict(books.record(EntityType.PAYMENT, p.payment_id).applied) for p in payments}
