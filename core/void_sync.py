"""SPEC §11 "Voids from the CRM": VoidPayment and VoidInvoice, accepted and run.

QuickBooks refuses to void a record another one still links (a payment inside a deposit, an invoice a payment
applies to), so a void lets go of the links first, then voids:

- a payment: the payment is updated with no lines (its applications to invoices and its links to its refund
  expenses undone), each refund expense is voided (deleted: QuickBooks' API cannot void a Purchase, see
  `AccountingSystem.void`), then the payment is voided;
- an invoice: each payment applied to it is updated without that invoice's line (keeping its other lines: its
  unapplied amount grows), then the invoice is voided.

Every record voided ends VOIDED (R8), keeping its QuickBooks Id; a voided payment applies nothing. R10 holds:
what QuickBooks voided counts zero there, and the plans leave voided records out (`core.sync_run`), as the
accept of a later sync refuses them (`core.outbox.refuse_voided`).

Exactly once (R7): every step can run again after a crash. An update is sent with the request id a resend
replays (and a stale SyncToken makes the engine run the void again from the current one); a void takes no
request id in QuickBooks but is idempotent — a record voided already is answered as voided — and a record the
run found VOIDED is not sent again.
"""

from __future__ import annotations

from decimal import Decimal

from core.accounting import LinkLine, QuickBooksRef, TxnKind, request_id_for, spec_fingerprint
from core.domain import (
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    SyncAction,
    SyncRecord,
    SyncResult,
    SyncState,
)
from core.errors import FailedPreconditionError, NotFoundError, RecordGoneError, StaleRecordError
from core.outbox import PAYMENT_DEPOSITED, mark_pending
from core.ports import UnitOfWork
from core.record_writer import SyncResults, marker_for
from core.sync_run import SyncRun
from core.transaction_writer import payment_spec, refund_kind

# --- accept --------------------------------------------------------------------------------------------


def payment_to_void(uow: UnitOfWork, tenant: str, payment_id: str) -> tuple[Opportunity, Payment]:
    """The payment as last received and its opportunity; NOT_FOUND when qbsync never received it."""
    stored = uow.snapshots.get_payment(tenant, payment_id)
    opportunity = uow.snapshots.get_opportunity(tenant, stored.opportunity_id) if stored else None
    if stored is None or opportunity is None:
        raise NotFoundError(f"payment {payment_id} not found")
    return opportunity, stored.payment


def invoice_to_void(uow: UnitOfWork, tenant: str, job_id: str) -> Opportunity:
    """The opportunity of the job whose invoice is voided; NOT_FOUND when qbsync never received the job."""
    stored = uow.snapshots.get_job(tenant, job_id)
    opportunity = uow.snapshots.get_opportunity(tenant, stored.opportunity_id) if stored else None
    if stored is None or opportunity is None:
        raise NotFoundError(f"job {job_id} not found")
    if not stored.closed_out:
        raise FailedPreconditionError(f"job {job_id} has not been closed out: it has no invoice to void")
    return opportunity


def stage_payment_void(uow: UnitOfWork, tenant: str, payment: Payment) -> list[SyncRecord]:
    """In the accept's transaction: refuses a payment QuickBooks does not hold, or holds inside a deposit
    (SPEC §9: the deposit must keep matching the bank, so the payout is resynced without it first); marks the
    payment and its refunds PENDING."""
    ref = EntityRef(EntityType.PAYMENT, payment.payment_id)
    _require_written(uow, tenant, ref, f"payment {payment.payment_id}")
    payout_id = uow.snapshots.payout_of_payment(tenant, payment.payment_id)
    what = f"payment {payment.payment_id} is deposited"
    for refund in payment.refunds:
        if payout_id is None and (payout_id := uow.snapshots.payout_of_refund(tenant, refund.refund_id)):
            what = f"refund {refund.refund_id} of payment {payment.payment_id} is netted"
    if payout_id is not None:
        raise FailedPreconditionError(
            f"{what} in payout {payout_id}: QuickBooks cannot void it while the payout's deposit holds it; "
            f"take it out of payout {payout_id} and resync the payout (SyncPayout) first",
            metadata={"payment_id": payment.payment_id, "payout_id": payout_id},
            reason=PAYMENT_DEPOSITED,
        )
    return _mark_pending_unless_voided(
        uow, tenant, [ref, *(EntityRef(EntityType.REFUND, r.refund_id) for r in payment.refunds)]
    )


def stage_invoice_void(uow: UnitOfWork, tenant: str, job_id: str) -> list[SyncRecord]:
    """In the accept's transaction: refuses an invoice QuickBooks does not hold; marks it PENDING."""
    ref = EntityRef(EntityType.INVOICE, job_id)
    _require_written(uow, tenant, ref, f"the invoice of job {job_id}")
    return _mark_pending_unless_voided(uow, tenant, [ref])


def _mark_pending_unless_voided(uow: UnitOfWork, tenant: str, refs: list[EntityRef]) -> list[SyncRecord]:
    """The records PENDING until the void has run, but those voided already: they stay VOIDED (a void asked
    again finds them so and sends nothing for them)."""
    known = uow.sync_records.get_many(tenant, refs)
    voided = [known[ref] for ref in refs if ref in known and known[ref].state is SyncState.VOIDED]
    return [*mark_pending(uow, tenant, [ref for ref in refs if ref not in {v.entity for v in voided}]), *voided]


def _require_written(uow: UnitOfWork, tenant: str, ref: EntityRef, what: str) -> None:
    record = uow.sync_records.get(tenant, ref)
    if record is None or record.quickbooks_id is None:
        state = record.state.value if record is not None else SyncState.NOT_SYNCED.value
        raise FailedPreconditionError(
            f"{what} is not in QuickBooks (never synced): there is nothing to void", metadata={"state": state}
        )


# --- run -----------------------------------------------------------------------------------------------


def run_payment_void(run: SyncRun, results: SyncResults) -> None:
    with run.uow_factory.read_only() as uow:
        opportunity, payment = payment_to_void(uow, run.tenant, run.job.target.id)
    voids = _Voids(run, results, opportunity)
    entity = EntityRef(EntityType.PAYMENT, payment.payment_id)
    record = run.record(entity)
    refunds = [run.record(EntityRef(EntityType.REFUND, r.refund_id)) for r in payment.refunds]
    if record.state is not SyncState.VOIDED and (record.applied or any(r.quickbooks_id for r in refunds)):
        voids.update_payment(payment, record, lines=[], applied={})  # QuickBooks voids no linked record
    for refund in refunds:
        voids.void(refund, refund_kind(payment.method))
    voids.void(record, TxnKind.PAYMENT)


def run_invoice_void(run: SyncRun, results: SyncResults) -> None:
    job_id = run.job.target.id
    with run.uow_factory.read_only() as uow:
        opportunity = invoice_to_void(uow, run.tenant, job_id)
        payments = uow.snapshots.payments_of(run.tenant, opportunity.opportunity_id)
    voids = _Voids(run, results, opportunity)
    invoice = run.record(EntityRef(EntityType.INVOICE, job_id))
    for payment in payments:
        record = run.record(EntityRef(EntityType.PAYMENT, payment.payment_id))
        if record.state is SyncState.VOIDED or job_id not in record.applied:
            continue
        applied = {job: amount for job, amount in record.applied.items() if job != job_id}
        voids.update_payment(payment, record, lines=voids.lines_of(payment, applied), applied=applied)
    voids.void(invoice, TxnKind.INVOICE)


class _Voids:
    """The writes of one void run, for one opportunity."""

    def __init__(self, run: SyncRun, results: SyncResults, opportunity: Opportunity) -> None:
        self._run = run
        self._results = results
        self._opportunity = opportunity

    def lines_of(self, payment: Payment, applied: dict[str, Decimal]) -> list[LinkLine]:
        """The payment's lines as last written, applying `applied`: its links to its refund expenses (those not
        voided), then its applications."""
        lines = []
        for refund in payment.refunds:
            record = self._run.record(EntityRef(EntityType.REFUND, refund.refund_id))
            if record.quickbooks_id and record.state is not SyncState.VOIDED:
                lines.append(LinkLine(refund_kind(payment.method), record.quickbooks_id, refund.amount))
        for job_id, amount in applied.items():
            invoice = self._run.record(EntityRef(EntityType.INVOICE, job_id))
            if invoice.quickbooks_id and invoice.state is not SyncState.VOIDED:
                lines.append(LinkLine(TxnKind.INVOICE, invoice.quickbooks_id, amount))
        return lines

    def update_payment(
        self, payment: Payment, record: SyncRecord, *, lines: list[LinkLine], applied: dict[str, Decimal]
    ) -> None:
        """The payment in place with `lines` only. A payment gone from QuickBooks links nothing any more; a
        stale SyncToken is kept and raised, for the engine to run the void again from it."""
        assert record.quickbooks_id is not None
        customer = self._run.record(self._run.customer_ref(self._opportunity.customer.customer_id))
        build = payment_spec(customer.quickbooks_id or "", self._opportunity, payment, lines)
        spec = build(marker_for(self._run.tenant, record.entity, record.generation))
        digest = spec_fingerprint(spec)
        current = QuickBooksRef(TxnKind.PAYMENT, record.quickbooks_id, record.sync_token or "0")
        request_id = request_id_for(self._run.tenant, record.entity, "update", record.sync_token, digest)
        try:
            written = self._run.accounting.update(current, spec, request_id=request_id)
        except StaleRecordError as stale:
            record.sync_token = stale.sync_token
            self._run.save(record)
            raise
        except RecordGoneError:
            record.applied = applied  # deleted or voided in QuickBooks: it applies nothing there now
            self._run.save(record)
            return
        record.sync_token = written.sync_token
        record.content_hash = digest
        record.applied = applied
        self._run.save(record)
        self._results.report(SyncResult(record.entity, written.id, SyncAction.UPDATED))

    def void(self, record: SyncRecord, kind: TxnKind) -> None:
        """Voids the record's QuickBooks record (idempotent, see `AccountingSystem.void`); one deleted in
        QuickBooks counts zero already. Either way it ends VOIDED."""
        if record.quickbooks_id is None:
            return  # never written (a refund whose sync is still to come): nothing in QuickBooks to void
        if record.state is not SyncState.VOIDED:
            try:
                voided = self._run.accounting.void(QuickBooksRef(kind, record.quickbooks_id, record.sync_token or "0"))
                record.sync_token = voided.sync_token
            except RecordGoneError:
                pass
        record.create_started = False
        record.mark_voided(self._run.clock.now())
        self._run.save(record)
        self._results.report(SyncResult(record.entity, record.quickbooks_id, SyncAction.VOIDED))
