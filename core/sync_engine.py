"""Runs one sync job: R1/R2 resolve the customer, a plan (R3–R5) decides the writes, the writers do them
(R4, R6, R7). Where each part lives:

- `core.customer_matching`: R1 Customer match, R2 Unique names;
- `core.sync_plans`: R3 Deposit = payment only, R5 Invoice at close-out, the customer move of R1;
- `core.transaction_writer`: R4 Refunds ride with their payment, R6 for what a payment links;
- `core.record_writer`: R6 Resync updates, never duplicates, R7 Exactly once (markers, generations);
- `core.payout_sync`: SPEC §9, a payout's bank deposit (its payments are their own jobs');
- `core.void_sync`: SPEC §11, voids from the CRM (a payment with its refunds, an invoice);
- `core.sync_run`: the job's records, saved only while its lease is held (fencing, R7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.branch_tracking import BranchTracking
from core.connection import InvoiceNumbering, QuickBooksConnection
from core.customer_matching import CustomerMatching
from core.domain import SyncJob, SyncJobKind, SyncResult
from core.errors import CustomerUnusableError, LeaseLostError, StaleRecordError
from core.lease import FencedAccountingSystem, JobLease
from core.payout_sync import write_payout_deposit
from core.ports import AccountingSystems, Clock, UnitOfWork, UnitOfWorkFactory
from core.record_writer import RecordWriter, SyncResults
from core.sync_plans import Plan, plan_customer_move, plan_invoice_sync, plan_payment_sync
from core.sync_run import OpportunityBooks, SyncRun
from core.transaction_writer import TransactionWriter
from core.void_sync import run_invoice_void, run_payment_void

# Runs of one job from the newest snapshots after QuickBooks said a record changed meanwhile (Fault 5010);
# beyond them the attempt fails, retryably.
MAX_STALE_ROUNDS = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedRun:
    """A job's run that did all it had to: what it did, and its run, whose last confirmed records are
    still to be committed (`save_records`, in the transaction that records the job's outcome)."""

    results: list[SyncResult]
    run: SyncRun

    def save_records(self, uow: UnitOfWork) -> None:
        """Writes the records into `uow`, fenced by the job's lease (`LeaseLostError` once it is lost)."""
        self.run.save_into(uow)


@dataclass(frozen=True)
class Synced:
    """The job's plan was carried out for the customer it was given."""


@dataclass(frozen=True)
class CustomerChanged:
    """QuickBooks refused a write because the linked customer is deleted or inactive there (R1)."""


Outcome = Synced | CustomerChanged


class SyncEngine:
    def __init__(self, uow_factory: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._clock = clock

    def run(self, job: SyncJob, lease: JobLease) -> list[SyncResult]:
        """Runs the job (see `run_unsaved`) and commits its records at once."""
        finished = self.run_unsaved(job, lease)
        finished.run.flush()
        return finished.results

    def run_unsaved(self, job: SyncJob, lease: JobLease, connection: QuickBooksConnection | None = None) -> FinishedRun:
        """Runs the job while `lease` is held: every QuickBooks write and every record saved is refused
        with `LeaseLostError` once it is not (fencing), so a worker that stalled past its lease writes
        nothing over what the job's new owner wrote. The records QuickBooks confirmed last are left for the
        caller to commit with the job's outcome (`FinishedRun.save_records`): their create intents are
        committed already (R7). A run that fails commits them itself before the error goes on.

        A record QuickBooks says changed since qbsync wrote it (`StaleRecordError`: edited there, or
        written by the worker that took the job over) is never written from the snapshot this run loaded,
        which may be older than the newest accepted one: the run starts over from the newest snapshots and
        the record's current SyncToken, only while the lease is held, at most MAX_STALE_ROUNDS times.

        `connection`: the stored connection the job syncs to (`ConnectionRepository.for_branch` of its branch),
        read in the claim's transaction (None: read here)."""
        if connection is None:
            with self._uow_factory.read_only() as uow:
                connection = uow.connections.for_branch(job.tenant_id, job.branch_id)
        company = connection.branch_id if connection is not None else ""
        unfenced = self._accounting.for_tenant(job.tenant_id, connection, branch_id=company)
        accounting = FencedAccountingSystem(unfenced, lease)
        tracking = BranchTracking(connection, unfenced, self._accounting, self._uow_factory, self._clock)
        run = SyncRun(
            job,
            self._uow_factory,
            accounting,
            self._clock,
            lease,
            company=company,
            realm_id=connection.realm_id if connection is not None else "",
            doc_number_prefix=_doc_number_prefix(connection),
            tracking=tracking.for_opportunity,
        )
        results = SyncResults()
        try:
            for round_ in range(1, MAX_STALE_ROUNDS + 1):
                try:
                    self._run_once(run, results)
                    return FinishedRun(results.as_list(), run)
                except StaleRecordError:
                    lease.check()
                    if round_ == MAX_STALE_ROUNDS:
                        raise  # retryable: the worker tries again later, from the newest snapshots again
        except LeaseLostError:
            raise  # the records are the new owner's now
        except BaseException:
            _save_what_was_confirmed(run)
            raise
        raise AssertionError("unreachable: the last round returns or raises")

    def _run_once(self, run: SyncRun, results: SyncResults) -> None:
        if run.job.kind is SyncJobKind.SYNC_PAYOUT:
            write_payout_deposit(run, results)  # a deposit names no customer: nothing to match (SPEC §9)
            return
        if run.job.kind is SyncJobKind.VOID_PAYMENT:
            run_payment_void(run, results)  # voids only what is written already: no customer to match
            return
        if run.job.kind is SyncJobKind.VOID_INVOICE:
            run_invoice_void(run, results)
            return
        matching = CustomerMatching(run, results)
        # A target qbsync does not know fails here, before anything is written. The plan is made from the
        # same snapshot of the opportunity as the customer it is written for.
        plan = run.prepare(lambda books: self._plan_of(run, books))
        customer = plan.books.opportunity.customer
        if isinstance(self._carry_out(plan, self._writer(run, matching.resolve(customer), results)), Synced):
            return
        # What of the customer is already in QuickBooks still names the old customer, and a payment can
        # only link its own customer's records: move it all, link the new one, then sync again. Should the
        # new one prove unusable too, the job fails (CustomerUnusableError) and the retry starts afresh.
        replaced = run.record(run.customer_ref(customer.customer_id)).quickbooks_id or ""
        successor = matching.successor(customer)
        writer = self._writer(run, successor.customer.id, results, replaced_customer_id=replaced)
        for opportunity in run.opportunities_of_customer():
            writer.carry_out(plan_customer_move(run.books_of(opportunity)))
        matching.link(successor)
        writer.carry_out(self._plan_of(run, run.books()))

    @staticmethod
    def _plan_of(run: SyncRun, books: OpportunityBooks) -> Plan:
        """The plan of the job's target, from the newest snapshots and records."""
        if run.job.kind is SyncJobKind.SYNC_PAYMENT:
            return plan_payment_sync(books, run.job.target.id)
        return plan_invoice_sync(books, run.job.target.id)

    @staticmethod
    def _writer(
        run: SyncRun, customer_id: str, results: SyncResults, *, replaced_customer_id: str = ""
    ) -> TransactionWriter:
        records = RecordWriter(run, customer_id, results, replaced_customer_id=replaced_customer_id)
        return TransactionWriter(run, records)

    @staticmethod
    def _carry_out(plan: Plan, writer: TransactionWriter) -> Outcome:
        try:
            writer.carry_out(plan)
        except CustomerUnusableError:
            return CustomerChanged()
        return Synced()


def _doc_number_prefix(connection: QuickBooksConnection | None) -> str | None:
    """What comes before the job number in the invoice's DocNumber; None when QuickBooks numbers invoices."""
    if connection is None:
        return ""  # an accounting system without a stored connection (a fake): the CRM's numbers, unprefixed
    if connection.invoice_numbering is InvoiceNumbering.QUICKBOOKS:
        return None
    return connection.settings.doc_number_prefix


def _save_what_was_confirmed(run: SyncRun) -> None:
    """A failed run still commits what QuickBooks confirmed (the retry then need not find it again by its
    marker). Best effort: should the database fail too, the committed intents make the retry find them."""
    try:
        run.flush()
    except Exception:  # noqa: BLE001 - the run's own error is the one to report
        log.warning("could not save the records of sync job %s before it failed", run.job.name, exc_info=True)
