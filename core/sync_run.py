"""What every part of one sync job's run shares: the job, its fenced QuickBooks company, its records.

The customer matching (R1/R2), the plans (R3–R5) and the writers (R6/R7) each take a `SyncRun`
rather than the five ports it bundles, and read and save sync records only through it, so that one
place fences every save with the job's lease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from core.accounting import NO_TRACKING, Tracking
from core.domain import (
    ClosedJob,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    SyncJob,
    SyncRecord,
    SyncState,
    customer_link,
    in_lock_order,
)
from core.errors import CompanyChangedError, FailedPreconditionError
from core.lease import JobLease
from core.ports import AccountingSystem, Clock, UnitOfWork, UnitOfWorkFactory


class Planned(Protocol):
    def writes(self) -> list[EntityRef]:
        """The records the plan writes (those not in QuickBooks yet are created)."""
        ...


P = TypeVar("P", bound=Planned)


@dataclass(frozen=True)
class OpportunityBooks:
    """One opportunity as qbsync last received it, with the sync record of each of its payments, refunds
    and invoices (a record not yet written is a blank one): what a plan is made from."""

    opportunity: Opportunity
    payments: tuple[Payment, ...]
    closed: tuple[ClosedJob, ...]
    records: dict[EntityRef, SyncRecord]

    def record(self, entity_type: EntityType, entity_id: str) -> SyncRecord:
        return self.records[EntityRef(entity_type, entity_id)]

    def written(self, entity_type: EntityType, entity_id: str) -> bool:
        """Whether qbsync has a QuickBooks record for it (written at least once)."""
        return self.record(entity_type, entity_id).quickbooks_id is not None

    def maybe_written(self, entity_type: EntityType, entity_id: str) -> bool:
        """Whether QuickBooks may hold a record for it: written, or a create was sent and its answer lost
        (R7's create intent), so that it may exist without qbsync knowing its Id."""
        record = self.record(entity_type, entity_id)
        return record.quickbooks_id is not None or record.create_started

    def payment(self, payment_id: str) -> Payment | None:
        return next((p for p in self.payments if p.payment_id == payment_id), None)

    def closed_job(self, job_id: str) -> ClosedJob | None:
        return next((c for c in self.closed if c.job.job_id == job_id), None)


class SyncRun:
    """One run of a job: its records as the run knows them (read once, kept, newest wins), and the changes
    not yet committed. Every save is fenced by the job's lease.

    Durable before QuickBooks (R7): a create intent (`create_started`) is committed before its create is
    sent — a plan declares all its intents up front (`declare_creates`), committed together in one
    transaction. A record QuickBooks confirmed is kept here and committed with the run's next transaction:
    the next flush of intents, or the job's completion (`save_into`, the worker's final transaction). A
    crash before that loses nothing QuickBooks has: the record's intent is committed, so the retry finds
    the create again by its request id and marker (core.record_writer) rather than sending it twice."""

    def __init__(
        self,
        job: SyncJob,
        uow_factory: UnitOfWorkFactory,
        accounting: AccountingSystem,
        clock: Clock,
        lease: JobLease,
        *,
        company: str = "",
        realm_id: str = "",
        doc_number_prefix: str | None = "",
        tracking: Callable[[Opportunity], Tracking] = lambda _: NO_TRACKING,
    ) -> None:
        """`company`: the branch of the connection the job syncs to ("" the default one: SPEC §10), whose
        customers the run links; `realm_id`: that connection's company ("" unknown: a fake), which every record
        the run reads must be in (`CompanyChangedError`) and every record it writes is pinned to;
        `doc_number_prefix`: the invoice DocNumber's prefix, None when QuickBooks numbers invoices
        (InvoiceNumbering.QUICKBOOKS); `tracking`: the class and location of the job's branch mapping, resolved
        on first use (core/branch_tracking.py)."""
        self.job = job
        self.company = company
        self.realm_id = realm_id
        self.doc_number_prefix = doc_number_prefix
        self.tracking = tracking
        self.uow_factory = uow_factory
        self.accounting = accounting  # fenced by `lease` (core.lease.FencedAccountingSystem)
        self.clock = clock
        self.lease = lease
        # One object per record for the whole run: whoever changes a record changes this one, so a flush
        # can never write an older copy over a fresher state (an intent just declared, a confirmed write).
        self._records: dict[EntityRef, SyncRecord] = {}
        self._unsaved: dict[EntityRef, SyncRecord] = {}
        # Intents declared and committed by this run whose create has not been sent yet: nothing can exist
        # in QuickBooks for them, so no search by marker is due before sending it.
        self._unsent: set[EntityRef] = set()

    @property
    def tenant(self) -> str:
        return self.job.tenant_id

    def customer_ref(self, customer_id: str) -> EntityRef:
        """The record of the CRM customer's link in the run's company (`customer_link`)."""
        return customer_link(customer_id, self.company)

    def record(self, entity: EntityRef) -> SyncRecord:
        """The record as the run knows it: stored (read once), or a blank one for a CRM record never written."""
        known = self._records.get(entity)
        if known is None:
            with self.uow_factory.read_only() as uow:
                known = self._keep(entity, uow.sync_records.get(self.tenant, entity))
        return known

    def save(self, record: SyncRecord) -> None:
        """Keeps `record` as the newest state of its CRM record, committed with the run's next transaction."""
        self.lease.check()  # fencing: once the job is another worker's, its records are too
        self._records[record.entity] = record
        self._unsaved[record.entity] = record

    def prepare(self, make: Callable[[OpportunityBooks], P]) -> P:
        """The plan `make` makes from the job's books, read and its create intents committed in one
        transaction (`declare_creates`): the run's one read, and its one write before QuickBooks."""
        with self.uow_factory() as uow:
            plan = make(self._books_in(uow, self._opportunity_in(uow)))
            self._declare(plan.writes())
            self.save_into(uow)
            uow.commit()
        self._unsaved.clear()
        return plan

    def declare_creates(self, entities: list[EntityRef]) -> None:
        """R7, up front: marks each of `entities` not in QuickBooks as about to be created, and commits
        these intents (with whatever else is unsaved) in one transaction, before the first create."""
        if self._declare(entities):
            self.flush()

    def _declare(self, entities: list[EntityRef]) -> bool:
        declared = False
        for entity in entities:
            record = self.record(entity)
            if record.quickbooks_id is None and not record.create_started:
                record.create_started = True
                self.save(record)
                self._unsent.add(entity)
                declared = True
        return declared

    def intent_unsent(self, record: SyncRecord) -> bool:
        """Whether `record`'s intent was declared by this run and its create not sent yet."""
        return record.entity in self._unsent

    def sending_create(self, record: SyncRecord) -> None:
        """Right before `record`'s create is sent: its intent is committed first (R7)."""
        if record.entity in self._unsaved and record.create_started:
            self.flush()
        self._unsent.discard(record.entity)

    def flush(self) -> None:
        """Commits what is unsaved, in one transaction."""
        if not self._unsaved:
            return
        with self.uow_factory() as uow:
            self.save_into(uow)
            uow.commit()
        self._unsaved.clear()

    def save_into(self, uow: UnitOfWork) -> None:
        """Writes what is unsaved into `uow`, the caller's transaction (the job's completion), fenced by the
        lease. Forgotten here only by `flush`; the caller's commit makes it durable."""
        self.lease.check()
        for entity in in_lock_order(self._unsaved):
            uow.sync_records.save(self._unsaved[entity])

    def books(self) -> OpportunityBooks:
        """The job's opportunity, its payments and closed jobs as last received and all their records (and
        its customer's), in one read."""
        with self.uow_factory.read_only() as uow:
            return self._books_in(uow, self._opportunity_in(uow))

    def opportunity(self) -> Opportunity:
        """The job's opportunity, as last received."""
        with self.uow_factory.read_only() as uow:
            return self._opportunity_in(uow)

    def _opportunity_in(self, uow: UnitOfWork) -> Opportunity:
        """The job's opportunity, with its customer's record kept (R1 reads it next)."""
        opportunity = uow.snapshots.get_opportunity(self.tenant, self.job.opportunity_id)
        if opportunity is None:
            raise FailedPreconditionError(f"opportunity {self.job.opportunity_id} is not known to qbsync")
        customer = self.customer_ref(opportunity.customer.customer_id)
        if customer not in self._records:
            self._keep(customer, uow.sync_records.get(self.tenant, customer))
        return opportunity

    def books_of(self, opportunity: Opportunity) -> OpportunityBooks:
        """The newest snapshots of the opportunity's payments and closed jobs, with their records."""
        with self.uow_factory.read_only() as uow:
            return self._books_in(uow, opportunity)

    def _books_in(self, uow: UnitOfWork, opportunity: Opportunity) -> OpportunityBooks:
        # One transaction for the snapshots and all their records: one consistent read, not 1 + N. A
        # record the run knows already is not read again: the run's copy is the newest.
        payments = uow.snapshots.payments_of(self.tenant, opportunity.opportunity_id)
        closed = uow.snapshots.closed_jobs_of(self.tenant, opportunity.opportunity_id)
        entities = [EntityRef(EntityType.PAYMENT, p.payment_id) for p in payments]
        entities += [EntityRef(EntityType.REFUND, r.refund_id) for p in payments for r in p.refunds]
        entities += [EntityRef(EntityType.INVOICE, c.job.job_id) for c in closed]
        records = {
            entity: self._records.get(entity) or self._keep(entity, uow.sync_records.get(self.tenant, entity))
            for entity in entities
        }
        # SPEC §11: what was voided from the CRM is out of the books: no plan writes, applies or moves it.
        live = tuple(p for p in payments if not _voided(records, EntityType.PAYMENT, p.payment_id))
        open_jobs = tuple(c for c in closed if not _voided(records, EntityType.INVOICE, c.job.job_id))
        return OpportunityBooks(opportunity, live, open_jobs, records)

    def _keep(self, entity: EntityRef, stored: SyncRecord | None) -> SyncRecord:
        if stored is not None and stored.realm_id and self.realm_id and stored.realm_id != self.realm_id:
            raise CompanyChangedError(entity, stored.realm_id, self.realm_id)
        record = stored or SyncRecord(tenant_id=self.tenant, entity=entity)
        self._records[entity] = record
        return record

    def opportunities_of_customer(self) -> list[Opportunity]:
        """Every opportunity of the job's CRM customer: what moves when its QuickBooks customer does."""
        customer = self.opportunity().customer
        with self.uow_factory.read_only() as uow:
            return uow.snapshots.opportunities_of_customer(self.tenant, customer.customer_id)


def _voided(records: dict[EntityRef, SyncRecord], entity_type: EntityType, entity_id: str) -> bool:
    return records[EntityRef(entity_type, entity_id)].state is SyncState.VOIDED
