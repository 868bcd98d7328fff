"""Carries out a plan's steps (core.sync_plans): the payments, refunds and invoices as QuickBooks has them.

R4 is here: a payment is written after its refunds, linking each (a Purchase — or a Check for a check
payment — against A/R); R6 is here for what a payment links: a refund or invoice deleted or voided in
QuickBooks is recreated before the payment that must link it. Each record itself is written by
`core.record_writer` (R6/R7).

Writes go together where QuickBooks allows (its batch endpoint, through `RecordWriter.write_many`): a
payment's refunds in one request, then the payment (batch items cannot see each other's new Ids); a run
of consecutive payment steps of a plan — a close-out's payments applying the invoice written before them —
in one request. A plan never puts a payment next to another it must wait for: the lowering of
applications comes first, then the invoice, then the payments that only raise theirs (core.sync_plans).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core.accounting import (
    NO_TRACKING,
    DiscountSpec,
    InvoiceSpec,
    LinkLine,
    PaymentSpec,
    RefundSpec,
    Tracking,
    TxnKind,
)
from core.allocation import shrink_only
from core.domain import ClosedJob, EntityRef, EntityType, Job, Opportunity, Payment, PaymentMethod, Refund, SyncRecord
from core.errors import AccountingError, CustomerUnusableError, InvoiceTotalMismatchError, LinkedRecordGoneError
from core.record_writer import RecordWriter, SpecBuilder, WriteItem, Written
from core.sync_plans import DetachPayment, Plan, Step, WriteInvoice, WritePayment, WriteRefund
from core.sync_run import OpportunityBooks, SyncRun


def refund_kind(method: PaymentMethod) -> TxnKind:
    """A refund of a check is written as a check, any other as an expense (QUICKBOOKS.md)."""
    return TxnKind.CHECK if method is PaymentMethod.CHECK else TxnKind.EXPENSE


class TransactionWriter:
    """Writes the steps of plans for one QuickBooks customer. The job's own payment, when it is the
    target, is checked with its refunds and invoices: an explicit sync is how a resync repairs them (R4,
    R6) — what is unchanged is read, and rewritten only when gone or edited in QuickBooks."""

    def __init__(self, run: SyncRun, records: RecordWriter) -> None:
        self._run = run
        self._records = records
        self._books: OpportunityBooks | None = None

    def carry_out(self, plan: Plan) -> None:
        self._books = plan.books
        # R7 up front: every create the plan may send has its intent committed, in one transaction.
        self._run.declare_creates(plan.writes())
        for group in _payments_together(plan.steps):
            if isinstance(group, list):
                self._write_payments(group)
            else:
                self._do(group)

    def _do(self, step: Step) -> None:
        match step:
            case WritePayment():
                self._write_payments([step])
            case DetachPayment(payment):
                applied = dict(self._run.record(_payment_ref(payment)).applied)
                _landed(self._records.write_many([self._payment_item(payment, [], applied, force=False)]))
            case WriteRefund(payment, refund):
                self._write_refunds([(payment, refund)])
            case WriteInvoice(closed):
                self._write_invoice(closed)

    @property
    def _opportunity(self) -> Opportunity:
        assert self._books is not None, "carry_out sets the books"
        return self._books.opportunity

    @property
    def _tracking(self) -> Tracking:
        """The class and location of the opportunity's branch (SPEC §10): resolved at the first write that
        carries them (a payment carries none), once per run."""
        return self._run.tracking(self._opportunity)

    def _explicit(self, payment: Payment) -> bool:
        return self._run.job.target == _payment_ref(payment)

    def _write_payments(self, steps: list[WritePayment]) -> None:
        """Consecutive payment steps of a plan, their payments in one request (and their refunds in one
        before): a plan orders its steps so that payments next to each other may land in any order."""
        try:
            outcomes = self._write_payments_once(steps)
        except LinkedRecordGoneError as gone:  # refused a write lowering its links first: no payment sent yet
            outcomes = [gone] * len(steps)
        _landed([o for o in outcomes if not isinstance(o, LinkedRecordGoneError)])
        refused = [
            replace(s, force=True) for s, o in zip(steps, outcomes, strict=True) if isinstance(o, LinkedRecordGoneError)
        ]
        if refused:
            # QuickBooks refused a payment for linking a record deleted there: what payments link is
            # checked from now on, and what is gone recreated before the payment is written again.
            self._records.verify_links_from_now_on()
            _landed(self._write_payments_once(refused))

    def _write_payments_once(self, steps: list[WritePayment]) -> list[Written | AccountingError]:
        for step in steps:
            self._lower_refund_links_first(step.payment, step.applications)
        for step in steps:
            if self._explicit(step.payment):
                self._check_live(step.payment, step.applications)
        # R4: a payment is written after its refunds, which it links.
        refunds = self._write_refunds([(step.payment, refund) for step in steps for refund in step.payment.refunds])
        items = []
        for step in steps:
            payment, applications = step.payment, step.applications
            kind = refund_kind(payment.method)
            lines = [LinkLine(kind, refunds[refund.refund_id], refund.amount) for refund in payment.refunds]
            for job_id in applications:
                if not self._records.still_live(EntityRef(EntityType.INVOICE, job_id), TxnKind.INVOICE):
                    # Deleted or voided in QuickBooks since it was written: a payment linking it would be
                    # refused (and retrying would never help), so recreate it first (R6).
                    assert self._books is not None
                    closed = self._books.closed_job(job_id)
                    assert closed is not None, "a payment applies only to its opportunity's closed jobs"
                    self._write_invoice(closed)
            lines += self._invoice_lines(applications)
            items.append(self._payment_item(payment, lines, applications, force=step.force))
        return self._records.write_many(items)

    def _check_live(self, payment: Payment, applications: dict[str, Decimal]) -> None:
        """An explicit sync (a resync) of an unchanged payment must still notice its records deleted or
        voided in QuickBooks (R6), or its customer made inactive (R1): the customer, the unchanged refunds
        and the invoices it applies are read — one request for each kind — rather than rewritten; a gone
        one is recreated before the payment links it.
        The payment itself is read by its own write (`RecordWriter.write`, `resync`)."""
        customer, opportunity = self._records.customer_id, self._opportunity
        # A payment about to be written (new or changed) hears of its customer and invoices from QuickBooks'
        # answer; only one that would be left alone has them read.
        unchanged_payment = self._payment_unchanged(payment, applications)
        if unchanged_payment and customer not in self._run.accounting.active_customers([customer]):
            # As QuickBooks would refuse the payment's next write: re-resolve the customer and move (R1).
            raise CustomerUnusableError(f"the QuickBooks customer {customer} is inactive")
        unchanged = [
            entity
            for refund in payment.refunds
            if self._records.unchanged(
                entity := EntityRef(EntityType.REFUND, refund.refund_id),
                refund_spec(customer, opportunity, payment, refund, self._tracking),
            )
        ]
        self._records.check_live(refund_kind(payment.method), unchanged)
        if unchanged_payment:
            invoices = [EntityRef(EntityType.INVOICE, job_id) for job_id in applications]
            self._records.check_live(TxnKind.INVOICE, invoices)

    def _payment_unchanged(self, payment: Payment, applications: dict[str, Decimal]) -> bool:
        """Whether the payment, linking its refunds as written and `applications`, is as last written."""
        kind = refund_kind(payment.method)
        lines = []
        for refund in payment.refunds:
            written = self._run.record(EntityRef(EntityType.REFUND, refund.refund_id)).quickbooks_id
            if written is None:
                return False
            lines.append(LinkLine(kind, written, refund.amount))
        lines += self._invoice_lines(applications)
        spec = payment_spec(self._records.customer_id, self._opportunity, payment, lines)
        return self._records.unchanged(_payment_ref(payment), spec)

    def _lower_refund_links_first(self, payment: Payment, applications: dict[str, Decimal]) -> None:
        """QuickBooks refuses an expense whose total falls below what a payment links to it: when a refund
        shrinks, the payment's line to it (and any application that must shrink) is lowered first."""
        record = self._run.record(_payment_ref(payment))
        if not record.quickbooks_id:
            return
        lines: list[LinkLine] = []
        shrinking = False
        for refund in payment.refunds:
            written = self._run.record(EntityRef(EntityType.REFUND, refund.refund_id))
            if not written.quickbooks_id or written.amount is None:
                continue
            shrinking = shrinking or refund.amount < written.amount
            linked = min(refund.amount, written.amount)
            lines.append(LinkLine(TxnKind(written.quickbooks_type), written.quickbooks_id, linked))
        if shrinking:
            lowered = shrink_only(record.applied, applications)
            lines += self._invoice_lines(lowered)
            _landed(self._records.write_many([self._payment_item(payment, lines, lowered, force=False)]))

    def _invoice_lines(self, applications: dict[str, Decimal]) -> list[LinkLine]:
        lines = []
        for job_id, amount in applications.items():
            invoice = self._run.record(EntityRef(EntityType.INVOICE, job_id))
            if invoice.quickbooks_id:
                lines.append(LinkLine(TxnKind.INVOICE, invoice.quickbooks_id, amount))
        return lines

    def _payment_item(
        self, payment: Payment, lines: list[LinkLine], applications: dict[str, Decimal], *, force: bool
    ) -> WriteItem:
        def remember(record: SyncRecord) -> None:
            record.applied = dict(applications)
            record.amount = payment.amount

        spec = payment_spec(self._records.customer_id, self._opportunity, payment, lines)
        return WriteItem(_payment_ref(payment), spec, remember, force=force, resync=self._explicit(payment))

    def _write_refunds(self, refunds: list[tuple[Payment, Refund]]) -> dict[str, str]:
        """The refunds, in one request: the QuickBooks Id of each, by refund id."""
        items = []
        for payment, refund in refunds:

            def remember(record: SyncRecord, amount: Decimal = refund.amount) -> None:
                record.amount = amount

            # An unchanged refund is left alone unless it was deleted or voided in QuickBooks (read so by
            # an explicit sync of its payment, or after QuickBooks refused a link): the payment about to
            # be written must link a live expense, or QuickBooks refuses it for good (R4, R6).
            spec = refund_spec(self._records.customer_id, self._opportunity, payment, refund, self._tracking)
            entity = EntityRef(EntityType.REFUND, refund.refund_id)
            force = not self._records.still_live(entity, refund_kind(payment.method))
            items.append(WriteItem(entity, spec, remember, force=force, resync=self._explicit(payment)))
        ids = {}
        for written in _landed(self._records.write_many(items)):
            assert written.record.quickbooks_id is not None
            ids[written.record.entity.id] = written.record.quickbooks_id
        return ids

    def _write_invoice(self, closed: ClosedJob) -> None:
        job = closed.job

        def remember(record: SyncRecord) -> None:
            record.amount = job.total

        spec = invoice_spec(
            self._records.customer_id, self._opportunity, job, self._tracking, self._run.doc_number_prefix
        )
        entity = EntityRef(EntityType.INVOICE, job.job_id)
        written = self._records.write(entity, spec, force=True, on_written=remember)
        # SPEC §8: the books never show a balance the customer does not owe. The record is saved first
        # (it is in QuickBooks); the job then fails before any payment is applied to a wrong total.
        if written.quickbooks_total is not None and written.quickbooks_total != job.total:
            raise InvoiceTotalMismatchError(job.job_id, job.total, written.quickbooks_total)


# The QuickBooks shapes: each builder makes a record's spec from the marker of the record's generation.


def payment_spec(customer_id: str, opportunity: Opportunity, payment: Payment, lines: list[LinkLine]) -> SpecBuilder:
    def spec(marker: str) -> PaymentSpec:
        return PaymentSpec(
            customer_id=customer_id,
            amount=payment.amount,
            txn_date=payment.received_time.date(),
            method=payment.method,
            reference=payment.reference,
            lines=tuple(lines),
            private_note=f"CRM payment {payment.payment_id}, opportunity {opportunity.number} {marker}",
            marker=marker,
        )

    return spec


def refund_spec(
    customer_id: str, opportunity: Opportunity, payment: Payment, refund: Refund, tracking: Tracking = NO_TRACKING
) -> SpecBuilder:
    def spec(marker: str) -> RefundSpec:
        return RefundSpec(
            customer_id=customer_id,
            amount=refund.amount,
            txn_date=refund.refunded_time.date(),
            refund_kind=refund_kind(payment.method),
            memo=refund.memo or f"Refund of payment {payment.payment_id}",
            private_note=f"CRM refund {refund.refund_id} of payment {payment.payment_id}, "
            f"opportunity {opportunity.number} {marker}",
            marker=marker,
            tracking=tracking,
        )

    return spec


def invoice_spec(
    customer_id: str,
    opportunity: Opportunity,
    job: Job,
    tracking: Tracking = NO_TRACKING,
    doc_number_prefix: str | None = "",
) -> SpecBuilder:
    """`doc_number_prefix` None: QuickBooks numbers the invoice (SPEC §10), and the job number goes in the memo."""
    discount = DiscountSpec.of(job)
    # With no tax charged, every line goes as NON: automated sales tax is reported not to honour a zero
    # TotalTax override and would add its own tax to TAX lines (QUICKBOOKS.md), and a line nobody was
    # charged tax on is, for the books, not taxable on this invoice.
    lines = job.lines if job.tax else tuple(replace(line, taxable=False) for line in job.lines)

    def spec(marker: str) -> InvoiceSpec:
        return InvoiceSpec(
            customer_id=customer_id,
            doc_number="" if doc_number_prefix is None else doc_number_prefix + job.number,
            memo=f"Job {job.number}" if doc_number_prefix is None else "",
            txn_date=job.service_date,
            lines=lines,
            private_note=f"CRM job {job.job_id}, opportunity {opportunity.number} {marker}",
            marker=marker,
            tax=job.tax,
            tax_rate_name=job.tax_rate_name,
            discount=discount,
            tip=job.tip,
            surcharge=job.surcharge,
            tracking=tracking,
        )

    return spec


def _payment_ref(payment: Payment) -> EntityRef:
    return EntityRef(EntityType.PAYMENT, payment.payment_id)


def _payments_together(steps: list[Step]) -> list[Step | list[WritePayment]]:
    """The steps, each run of consecutive payment steps as one group (written together)."""
    grouped: list[Step | list[WritePayment]] = []
    for step in steps:
        if isinstance(step, WritePayment) and grouped and isinstance(grouped[-1], list):
            grouped[-1].append(step)
        else:
            grouped.append([step] if isinstance(step, WritePayment) else step)
    return grouped


def _landed(outcomes: list[Written | AccountingError]) -> list[Written]:
    """The writes, once every one landed: else the first refusal, raised once the others were kept."""
    for outcome in outcomes:
        if isinstance(outcome, AccountingError):
            raise outcome
    return [o for o in outcomes if isinstance(o, Written)]
