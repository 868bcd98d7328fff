"""What every part of one sync job's run shares: the job, its fenced QuickBooks company, its records.

The customer matching (R1/R2), the plans (R3–R5) and the writers (R6/R7) each take a `SyncRun`
rather than the five ports it bundles, and read and save sync records only through it, so that one
place fences every save with the job's lease.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import ClosedJob, EntityRef, EntityType, Opportunity, Payment, SyncJob, SyncRecord
from core.errors import FailedPreconditionError
from core.lease import JobLease
from core.ports import AccountingSystem, Clock, UnitOfWorkFactory


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


@dataclass(frozen=True)
class SyncRun:
    job: SyncJob
    uow_factory: UnitOfWorkFactory
    accounting: AccountingSystem  # fenced by `lease` (core.lease.FencedAccountingSystem)
    clock: Clock
    lease: JobLease

    @property
    def tenant(self) -> str:
        return self.job.tenant_id

    def record(self, entity: EntityRef) -> SyncRecord:
        """The record as stored now, or a blank one for a CRM record never written."""
        with self.uow_factory() as uow:
            record = uow.sync_records.get(self.tenant, entity)
        return record or SyncRecord(tenant_id=self.tenant, entity=entity)

    def save(self, record: SyncRecord) -> None:
        """Saves at once, in its own transaction (a crash right after loses nothing QuickBooks has)."""
        self.lease.check()  # fencing: once the job is another worker's, its records are too
        with self.uow_factory() as uow:
            uow.sync_records.save(record)
            uow.commit()

    def opportunity(self) -> Opportunity:
        """The job's opportunity, as last received."""
        with self.uow_factory() as uow:
            opportunity = uow.snapshots.get_opportunity(self.tenant, self.job.opportunity_id)
        if opportunity is None:
            raise FailedPreconditionError(f"opportunity {self.job.opportunity_id} is not known to qbsync")
        return opportunity

    def books_of(self, opportunity: Opportunity) -> OpportunityBooks:
        """The newest snapshots of the opportunity's payments and closed jobs, with their records."""
        # One transaction for the snapshots and all their records: one consistent read, not 1 + N.
        with self.uow_factory() as uow:
            payments = uow.snapshots.payments_of(self.tenant, opportunity.opportunity_id)
            closed = uow.snapshots.closed_jobs_of(self.tenant, opportunity.opportunity_id)
            entities = [EntityRef(EntityType.PAYMENT, p.payment_id) for p in payments]
            entities += [EntityRef(EntityType.REFUND, r.refund_id) for p in payments for r in p.refunds]
            entities += [EntityRef(EntityType.INVOICE, c.job.job_id) for c in closed]
            records = {
                entity: uow.sync_records.get(self.tenant, entity) or SyncRecord(tenant_id=self.tenant, entity=entity)
                for entity in entities
            }
        return OpportunityBooks(opportunity, tuple(payments), tuple(closed), records)

    def opportunities_of_customer(self) -> list[Opportunity]:
        """Every opportunity of the job's CRM customer: what moves when its QuickBooks customer does."""
        customer = self.opportunity().customer
        with self.uow_factory() as uow:
            return uow.snapshots.opportunities_of_customer(self.tenant, customer.customer_id)
