"""Runs one sync job: the rules R1–R7 as a sequence of accounting-system writes.

Every write is recorded in its own transaction as soon as the accounting system confirms it, so a crash
between two writes loses nothing; before a create is sent, the intent is recorded, so a crash between
QuickBooks' commit and ours is found again (by request id replay and by the record's marker) rather than
written twice (R7).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from core.accounting import (
    AccountingCustomer,
    InvoiceSpec,
    LinkLine,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
    TxnSpec,
    request_id_for,
    spec_fingerprint,
)
from core.allocation import InvoiceDue, PaymentFunds, plan_applications, shrink_only
from core.domain import (
    ClosedJob,
    Customer,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncAction,
    SyncJob,
    SyncJobKind,
    SyncRecord,
    SyncResult,
    normalise,
)
from core.errors import (
    CustomerNameConflictError,
    CustomerUnusableError,
    DuplicateNameError,
    FailedPreconditionError,
    LinkedRecordGoneError,
    RecordGoneError,
    StaleRecordError,
)
from core.lease import FencedAccountingSystem, JobLease
from core.ports import AccountingSystem, AccountingSystems, Clock, UnitOfWorkFactory

MAX_NAME_SUFFIX = 50
# Runs of one job from the newest snapshots after QuickBooks said a record changed meanwhile (Fault 5010);
# beyond them the attempt fails, retryably.
MAX_STALE_ROUNDS = 3


def marker_for(tenant_id: str, entity: EntityRef, generation: int) -> str:
    """The tag written into a record's private note so that qbsync can find it again (R7)."""
    suffix = f"/{generation}" if generation else ""
    return f"[qbsync {tenant_id}/{entity.type.value.lower()}/{entity.id}{suffix}]"


def name_matches(quickbooks_name: str, crm_name: str) -> bool:
    """R1/R2: the DisplayName is the CRM name, or the CRM name with the ` - N` qbsync adds on a clash."""
    wanted = normalise(crm_name)
    found = normalise(quickbooks_name)
    return found == wanted or re.fullmatch(re.escape(wanted) + r" - \d+", found) is not None


def oldest_first(customer: AccountingCustomer) -> tuple[int, str]:
    """QBO Ids are increasing numbers: the lowest is the oldest."""
    return (int(customer.id), customer.id) if customer.id.isdigit() else (2**63, customer.id)


def refund_kind(method: PaymentMethod) -> TxnKind:
    """A refund of a check is written as a check, any other as an expense (QUICKBOOKS.md)."""
    return TxnKind.CHECK if method is PaymentMethod.CHECK else TxnKind.EXPENSE


class SyncEngine:
    def __init__(self, uow_factory: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._clock = clock

    def run(self, job: SyncJob, lease: JobLease) -> list[SyncResult]:
        """Runs the job while `lease` is held: every QuickBooks write and every record saved is refused
        with `LeaseLostError` once it is not (fencing), so a worker that stalled past its lease writes
        nothing over what the job's new owner wrote.

        A record QuickBooks says changed since qbsync wrote it (`StaleRecordError`: edited there, or
        written by the worker that took the job over) is never written from the snapshot this run loaded,
        which may be older than the newest accepted one: the run starts over from the newest snapshots and
        the record's current SyncToken, only while the lease is held, at most MAX_STALE_ROUNDS times."""
        accounting = FencedAccountingSystem(self._accounting.for_tenant(job.tenant_id), lease)
        results: list[SyncResult] = []
        rounds = 1
        while True:
            try:
                return self._run_once(job, lease, accounting, results)
            except StaleRecordError:
                lease.check()
                if rounds >= MAX_STALE_ROUNDS:
                    raise  # retryable: the worker tries again later, from the newest snapshots again
                rounds += 1

    def _run_once(
        self, job: SyncJob, lease: JobLease, accounting: AccountingSystem, results: list[SyncResult]
    ) -> list[SyncResult]:
        run = _JobRun(job, self._uow_factory, accounting, self._clock, lease, results=results)
        try:
            run.sync_target()
        except _CustomerReplaced as replaced:
            # What of the customer is already in QuickBooks still names the old customer, and a payment
            # can only link its own customer's records: move it all, link the new one, then sync again.
            run = _JobRun(
                job, self._uow_factory, accounting, self._clock, lease, results=run.results, replaced_customer=True
            )
            run.move_to_linked_customer(replaced.successor)
            run.sync_target()
        return run.results


@dataclass(frozen=True)
class _Successor:
    """The QuickBooks customer found or made to replace an unusable one, not yet linked: the link is
    saved only once everything of the CRM customer has moved to it, so that a move cut short (a crash,
    an outage) is done again by the retry, which finds the old customer unusable once more (R1, R7)."""

    record: SyncRecord
    customer: AccountingCustomer
    action: SyncAction


class _CustomerReplaced(Exception):
    """The linked QuickBooks customer was found deleted or inactive mid-job; `successor` replaces it (R1)."""

    def __init__(self, successor: _Successor) -> None:
        super().__init__(successor.customer.id)
        self.successor = successor


@dataclass
class _JobRun:
    job: SyncJob
    uow_factory: UnitOfWorkFactory
    accounting: AccountingSystem
    clock: Clock
    lease: JobLease
    results: list[SyncResult] = field(default_factory=list)
    customer_id: str = ""
    # Set once QuickBooks refused a payment for linking a record deleted there: from then on, what a
    # payment links is checked (one read each, at most once per job) and recreated if gone. Off by default
    # because reads are metered and such deletions are rare.
    verify_links: bool = False
    replaced_customer: bool = False
    # Records whose QuickBooks record this run wrote or saw live.
    confirmed: set[EntityRef] = field(default_factory=set)

    @property
    def tenant(self) -> str:
        return self.job.tenant_id

    # --- the two kinds of job ----------------------------------------------------------------------

    def sync_target(self) -> None:
        if self.job.kind is SyncJobKind.SYNC_PAYMENT:
            self.sync_payment(self.job.target.id)
        else:
            self.sync_invoice(self.job.target.id)

    def move_to_linked_customer(self, successor: _Successor) -> None:
        """Moves every opportunity of the CRM customer to `successor`, then links it (R1).

        QuickBooks refuses to change the customer of a record that a payment of another customer links,
        and refuses a payment linking another customer's records (see the emulator's store), so each
        opportunity moves in three steps: its payments go to the new customer linking nothing, then its
        refunds and invoices follow, then the payments link their refunds again and are re-applied. Each
        step only names the new customer, so it works wherever an interrupted earlier move left a record.
        """
        self.customer_id = successor.customer.id
        customer = self._opportunity().customer
        with self.uow_factory() as uow:
            opportunities = uow.snapshots.opportunities_of_customer(self.tenant, customer.customer_id)
        for opportunity in opportunities:
            self._move_opportunity(opportunity)
        self._link_customer(successor.record, successor.customer, successor.action)

    def _move_opportunity(self, opportunity: Opportunity) -> None:
        with self.uow_factory() as uow:
            payments = uow.snapshots.payments_of(self.tenant, opportunity.opportunity_id)
            closed = uow.snapshots.closed_jobs_of(self.tenant, opportunity.opportunity_id)
        written = [p for p in payments if self._record(EntityRef(EntityType.PAYMENT, p.payment_id)).quickbooks_id]
        for payment in written:
            self._detach_payment(opportunity, payment)
        for payment in written:
            kind = refund_kind(payment.method)
            for refund in payment.refunds:
                if self._record(EntityRef(EntityType.REFUND, refund.refund_id)).quickbooks_id:
                    self._write_refund(opportunity, payment, refund, kind)
        invoices = []
        for closed_job in closed:
            if self._record(EntityRef(EntityType.INVOICE, closed_job.job.job_id)).quickbooks_id:
                self._write_invoice(opportunity, closed_job)
                invoices.append(InvoiceDue(closed_job.job.job_id, closed_job.job.total))
        # What each payment applied before the move, trimmed to what payments and invoices now hold.
        plan = plan_applications(
            _funds(written), invoices, self._current_applications(written), movable={p.payment_id for p in written}
        )
        for payment in written:
            self._write_payment(opportunity, payment, plan.get(payment.payment_id, {}), force=False)

    def _detach_payment(self, opportunity: Opportunity, payment: Payment) -> None:
        """The payment on the new customer with no lines: it no longer holds its refunds and invoices on
        the old customer. Its record keeps the applications it had, to be restored after the move (also by
        a retry, if the move is cut short)."""
        applied = dict(self._record(EntityRef(EntityType.PAYMENT, payment.payment_id)).applied)
        self._write_payment_record(opportunity, payment, [], applied, force=False)

    def sync_payment(self, payment_id: str) -> None:
        """R3/R4/R6: the payment with all its refunds; applied only to invoices already synced."""
        opportunity, payments, closed = self._load_opportunity()
        payment = next((p for p in payments if p.payment_id == payment_id), None)
        if payment is None:
            raise FailedPreconditionError(f"payment {payment_id} is not known to qbsync")
        self._resolve_customer(opportunity.customer)
        invoices = [
            InvoiceDue(c.job.job_id, rec.amount)
            for c in closed
            if (rec := self._record(EntityRef(EntityType.INVOICE, c.job.job_id))).quickbooks_id
            and rec.amount is not None
        ]
        plan = plan_applications(
            _funds(payments), invoices, self._current_applications(payments), movable={payment_id}
        )
        self._write_payment(opportunity, payment, plan.get(payment_id, {}), force=True)

    def sync_invoice(self, job_id: str) -> None:
        """R5: the job's invoice, the opportunity's payments (and refunds) synced and applied to it."""
        opportunity, payments, closed = self._load_opportunity()
        this = next((c for c in closed if c.job.job_id == job_id), None)
        if this is None:
            raise FailedPreconditionError(f"job {job_id} has not been closed out: no invoice before close-out")
        self._resolve_customer(opportunity.customer)
        invoices: list[InvoiceDue] = []
        for c in closed:
            rec = self._record(EntityRef(EntityType.INVOICE, c.job.job_id))
            if c.job.job_id == job_id:
                invoices.append(InvoiceDue(job_id, c.job.total))
            elif rec.quickbooks_id and rec.amount is not None:
                invoices.append(InvoiceDue(c.job.job_id, rec.amount))
        current = self._current_applications(payments)
        plan = plan_applications(
            _funds(payments), invoices, current, movable={p.payment_id for p in payments}
        )
        # Lower applications first, so that neither a payment nor an invoice is ever over-applied
        # while this job's writes are under way.
        for payment in payments:
            lowered = shrink_only(current.get(payment.payment_id, {}), plan.get(payment.payment_id, {}))
            if lowered != current.get(payment.payment_id, {}):
                self._write_payment(opportunity, payment, lowered, force=False)
        self._write_invoice(opportunity, this)
        for payment in payments:
            self._write_payment(opportunity, payment, plan.get(payment.payment_id, {}), force=False)

    # --- R1/R2: the customer ------------------------------------------------------------------------

    def _resolve_customer(self, customer: Customer) -> str:
        entity = EntityRef(EntityType.CUSTOMER, customer.customer_id)
        record = self._record(entity)
        if record.quickbooks_id:
            self.customer_id = record.quickbooks_id
            return self.customer_id
        chosen, action = self._find_or_create_customer(customer, record)
        self._link_customer(record, chosen, action)
        return chosen.id

    def _successor_of(self, customer: Customer) -> _Successor:
        """R1 again for a customer whose linked QuickBooks customer is gone or inactive."""
        record = self._record(EntityRef(EntityType.CUSTOMER, customer.customer_id))
        # A new generation, so that creating the successor is not answered with the replay of the create
        # that made the unusable one. Not saved until the successor is linked: a retry counts the same.
        record.generation += 1
        chosen, action = self._find_or_create_customer(customer, record)
        return _Successor(record, chosen, action)

    def _find_or_create_customer(
        self, customer: Customer, record: SyncRecord
    ) -> tuple[AccountingCustomer, SyncAction]:
        name, email = customer.display_name, customer.email.strip()
        matches = [
            c
            for c in self.accounting.find_customers(name, email)
            if c.active and name_matches(c.display_name, name) and normalise(c.email) == normalise(email)
        ]
        if matches:
            return min(matches, key=oldest_first), SyncAction.LINKED
        return self._create_customer(customer, record), SyncAction.CREATED

    def _link_customer(self, record: SyncRecord, chosen: AccountingCustomer, action: SyncAction) -> None:
        record.quickbooks_id = chosen.id
        record.display_name = chosen.display_name
        record.quickbooks_type = "Customer"
        record.mark_synced(self.clock.now())
        self._save(record)
        self._report(SyncResult(record.entity, chosen.id, action))
        self.customer_id = chosen.id

    def _create_customer(self, customer: Customer, record: SyncRecord) -> AccountingCustomer:
        name = customer.display_name
        for n in range(1, MAX_NAME_SUFFIX + 1):
            candidate = name if n == 1 else f"{name} - {n}"
            new = NewCustomer(
                display_name=candidate,
                given_name=customer.first_name.strip(),
                family_name=customer.last_name.strip(),
                company_name=customer.company_name.strip(),
                email=customer.email.strip(),
                phone=customer.phone.strip(),
                note=f"CRM customer {customer.customer_id} "
                + marker_for(self.tenant, record.entity, record.generation),
            )
            try:
                return self.accounting.create_customer(
                    new,
                    request_id=request_id_for(self.tenant, record.entity, candidate, record.generation),
                )
            except DuplicateNameError:
                continue
        raise CustomerNameConflictError(
            f"QuickBooks already has customers, vendors or employees named {name!r} up to "
            f"{name!r} - {MAX_NAME_SUFFIX}; rename one of them and retry",
            metadata={"display_name": name},
        )

    # --- the transactions ------------------------------------------------------------------------

    def _write_payment(
        self, opportunity: Opportunity, payment: Payment, applications: dict, *, force: bool
    ) -> None:
        try:
            self._write_payment_once(opportunity, payment, applications, force=force)
        except LinkedRecordGoneError:
            self.verify_links = True
            self._write_payment_once(opportunity, payment, applications, force=True)

    def _write_payment_once(
        self, opportunity: Opportunity, payment: Payment, applications: dict, *, force: bool
    ) -> None:
        self._lower_refund_links_first(opportunity, payment, applications)
        kind = refund_kind(payment.method)
        lines: list[LinkLine] = []
        for refund in payment.refunds:
            refund_id = self._write_refund(opportunity, payment, refund, kind)
            lines.append(LinkLine(kind, refund_id, refund.amount))
        for job_id in applications:
            entity = EntityRef(EntityType.INVOICE, job_id)
            if not self._still_live(entity, TxnKind.INVOICE):
                # Deleted or voided in QuickBooks since it was written: a payment linking it would be
                # refused (and retrying would never help), so recreate it first (R6).
                closed = next(c for c in self._load_opportunity()[2] if c.job.job_id == job_id)
                self._write_invoice(opportunity, closed)
        lines += self._invoice_lines(applications)
        self._write_payment_record(opportunity, payment, lines, applications, force=force)

    def _lower_refund_links_first(self, opportunity: Opportunity, payment: Payment, applications: dict) -> None:
        """QuickBooks refuses an expense whose total falls below what a payment links to it: when a refund
        shrinks, the payment's line to it (and any application that must shrink) is lowered first."""
        record = self._record(EntityRef(EntityType.PAYMENT, payment.payment_id))
        if not record.quickbooks_id:
            return
        lines: list[LinkLine] = []
        shrinking = False
        for refund in payment.refunds:
            written = self._record(EntityRef(EntityType.REFUND, refund.refund_id))
            if not written.quickbooks_id or written.amount is None:
                continue
            shrinking = shrinking or refund.amount < written.amount
            linked = min(refund.amount, written.amount)
            lines.append(LinkLine(TxnKind(written.quickbooks_type), written.quickbooks_id, linked))
        if not shrinking:
            return
        lowered = shrink_only(record.applied, applications)
        self._write_payment_record(
            opportunity, payment, lines + self._invoice_lines(lowered), lowered, force=False
        )

    def _invoice_lines(self, applications: dict) -> list[LinkLine]:
        lines = []
        for job_id, amount in applications.items():
            invoice = self._record(EntityRef(EntityType.INVOICE, job_id))
            if invoice.quickbooks_id:
                lines.append(LinkLine(TxnKind.INVOICE, invoice.quickbooks_id, amount))
        return lines

    def _write_payment_record(
        self, opportunity: Opportunity, payment: Payment, lines: list[LinkLine], applications: dict, *, force: bool
    ) -> None:
        def spec(marker: str) -> PaymentSpec:
            return PaymentSpec(
                customer_id=self.customer_id,
                amount=payment.amount,
                txn_date=payment.received_time.date(),
                method=payment.method,
                reference=payment.reference,
                lines=tuple(lines),
                private_note=f"CRM payment {payment.payment_id}, opportunity {opportunity.number} {marker}",
                marker=marker,
            )

        def remember(record: SyncRecord) -> None:
            record.applied = dict(applications)
            record.amount = payment.amount

        target = self.job.target == EntityRef(EntityType.PAYMENT, payment.payment_id)
        self._write(EntityRef(EntityType.PAYMENT, payment.payment_id), spec, force=force or target, on_written=remember)

    def _write_refund(self, opportunity: Opportunity, payment: Payment, refund: Refund, kind: TxnKind) -> str:
        def spec(marker: str) -> RefundSpec:
            return RefundSpec(
                customer_id=self.customer_id,
                amount=refund.amount,
                txn_date=refund.refunded_time.date(),
                refund_kind=kind,
                memo=refund.memo or f"Refund of payment {payment.payment_id}",
                private_note=f"CRM refund {refund.refund_id} of payment {payment.payment_id}, "
                f"opportunity {opportunity.number} {marker}",
                marker=marker,
            )

        def remember(record: SyncRecord) -> None:
            record.amount = refund.amount

        # An explicit sync of the payment rewrites its refunds too; otherwise an unchanged refund is left
        # alone unless it was deleted or voided in QuickBooks: the payment about to be written must link
        # a live expense, or QuickBooks refuses it for good (R4, R6).
        target = self.job.target == EntityRef(EntityType.PAYMENT, payment.payment_id)
        entity = EntityRef(EntityType.REFUND, refund.refund_id)
        record = self._write(
            entity, spec, force=target or not self._still_live(entity, kind), on_written=remember
        )
        assert record.quickbooks_id is not None
        return record.quickbooks_id

    def _write_invoice(self, opportunity: Opportunity, closed: ClosedJob) -> None:
        job = closed.job

        def spec(marker: str) -> InvoiceSpec:
            return InvoiceSpec(
                customer_id=self.customer_id,
                doc_number=job.number,
                txn_date=job.service_date,
                lines=job.lines,
                private_note=f"CRM job {job.job_id}, opportunity {opportunity.number} {marker}",
                marker=marker,
            )

        def remember(record: SyncRecord) -> None:
            record.amount = job.total

        self._write(EntityRef(EntityType.INVOICE, job.job_id), spec, force=True, on_written=remember)

    def _write(
        self,
        entity: EntityRef,
        build: Callable[[str], TxnSpec],
        *,
        force: bool,
        on_written: Callable[[SyncRecord], None],
    ) -> SyncRecord:
        """Creates or updates one record (R6), exactly once (R7). `force` writes even when nothing
        changed, which is how a resync notices a record deleted in QuickBooks."""
        record = self._record(entity)
        try:
            return self._write_once(record, build, force=force, on_written=on_written)
        except CustomerUnusableError:
            if self.replaced_customer:
                raise  # the replacement is unusable too: fail, and let the retry start afresh
            # R1: the linked customer was deleted or made inactive in QuickBooks: find or make another.
            self.replaced_customer = True
            raise _CustomerReplaced(self._successor_of(self._opportunity().customer)) from None

    def _write_once(
        self,
        record: SyncRecord,
        build: Callable[[str], TxnSpec],
        *,
        force: bool,
        on_written: Callable[[SyncRecord], None],
    ) -> SyncRecord:
        spec = build(marker_for(self.tenant, record.entity, record.generation))
        digest = spec_fingerprint(spec)
        unchanged = record.quickbooks_id is not None and record.content_hash == digest
        if unchanged and not force:
            self._finish(record, digest, None, SyncAction.UNCHANGED, on_written)
            return record
        ref: QuickBooksRef | None = None
        action = SyncAction.UNCHANGED if unchanged else SyncAction.UPDATED
        if record.quickbooks_id:
            current = QuickBooksRef(spec.kind, record.quickbooks_id, record.sync_token or "0")
            try:
                ref = self.accounting.update(
                    current,
                    spec,
                    request_id=request_id_for(self.tenant, record.entity, "update", record.sync_token, digest),
                )
            except StaleRecordError as stale:
                # Changed in QuickBooks since qbsync wrote it: keep its current SyncToken, and let the run
                # start over from the newest snapshots (SyncEngine.run) rather than re-send this spec.
                record.sync_token = stale.sync_token
                self._save(record)
                raise
            except RecordGoneError:
                # R6: deleted or voided in QuickBooks: recreate it, under a new generation so that the
                # create is not answered with the replay of the first one.
                record.quickbooks_id = None
                record.sync_token = None
                record.generation += 1
                record.create_started = False
                self._save(record)
                spec = build(marker_for(self.tenant, record.entity, record.generation))
                digest = spec_fingerprint(spec)
        if ref is None:
            action = SyncAction.CREATED
            marker = marker_for(self.tenant, record.entity, record.generation)
            if record.create_started:
                # An earlier attempt sent this create and never heard back: it may exist already.
                found = self.accounting.find_by_marker(spec.kind, marker, self.customer_id)
                if found is not None:
                    ref = self.accounting.update(
                        found,
                        spec,
                        request_id=request_id_for(self.tenant, record.entity, "adopt", found.sync_token, digest),
                    )
            if ref is None:
                record.create_started = True
                self._save(record)
                ref = self.accounting.create(
                    spec, request_id=request_id_for(self.tenant, record.entity, "create", record.generation)
                )
        self._finish(record, digest, ref, action, on_written)
        return record

    def _still_live(self, entity: EntityRef, kind: TxnKind) -> bool:
        """False when the record qbsync wrote for `entity` is gone from QuickBooks (deleted or voided
        there); True when it is live or was never written (the write that follows creates it)."""
        if not self.verify_links or entity in self.confirmed:
            return True
        record = self._record(entity)
        if not record.quickbooks_id:
            return True
        found = self.accounting.find_by_marker(
            kind, marker_for(self.tenant, entity, record.generation), self.customer_id
        )
        if found is None:
            return False
        self.confirmed.add(entity)
        return True

    def _report(self, result: SyncResult) -> None:
        """One result per record: a record written twice in a job (lowered, then raised) reports the
        strongest of its actions."""
        strength = [SyncAction.UNCHANGED, SyncAction.LINKED, SyncAction.UPDATED, SyncAction.CREATED]
        for i, earlier in enumerate(self.results):
            if earlier.entity == result.entity:
                if strength.index(result.action) < strength.index(earlier.action):
                    result = SyncResult(result.entity, result.quickbooks_id, earlier.action)
                self.results[i] = result
                return
        self.results.append(result)

    def _finish(
        self,
        record: SyncRecord,
        digest: str,
        ref: QuickBooksRef | None,
        action: SyncAction,
        on_written: Callable[[SyncRecord], None],
    ) -> None:
        if ref is not None:
            self.confirmed.add(record.entity)
            record.quickbooks_id = ref.id
            record.sync_token = ref.sync_token
            record.quickbooks_type = ref.kind.value
        record.content_hash = digest
        record.create_started = False
        record.mark_synced(self.clock.now())
        on_written(record)
        self._save(record)
        assert record.quickbooks_id is not None
        self._report(SyncResult(record.entity, record.quickbooks_id, action))

    def _opportunity(self) -> Opportunity:
        with self.uow_factory() as uow:
            opportunity = uow.snapshots.get_opportunity(self.tenant, self.job.opportunity_id)
        if opportunity is None:
            raise FailedPreconditionError(f"opportunity {self.job.opportunity_id} is not known to qbsync")
        return opportunity

    def _load_opportunity(self) -> tuple[Opportunity, list[Payment], list[ClosedJob]]:
        opportunity = self._opportunity()
        with self.uow_factory() as uow:
            payments = uow.snapshots.payments_of(self.tenant, opportunity.opportunity_id)
            closed = uow.snapshots.closed_jobs_of(self.tenant, opportunity.opportunity_id)
        return opportunity, payments, closed

    def _current_applications(self, payments: list[Payment]) -> dict[str, dict]:
        return {
            p.payment_id: dict(self._record(EntityRef(EntityType.PAYMENT, p.payment_id)).applied)
            for p in payments
        }

    def _record(self, entity: EntityRef) -> SyncRecord:
        with self.uow_factory() as uow:
            record = uow.sync_records.get(self.tenant, entity)
        return record or SyncRecord(tenant_id=self.tenant, entity=entity)

    def _save(self, record: SyncRecord) -> None:
        self.lease.check()  # fencing: once the job is another worker's, its records are too
        with self.uow_factory() as uow:
            uow.sync_records.save(record)
            uow.commit()


def _funds(payments: list[Payment]) -> list[PaymentFunds]:
    return [PaymentFunds(p.payment_id, p.net_amount) for p in payments]
