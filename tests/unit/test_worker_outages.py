"""A database outage in the middle of a job is retried, never a permanent failure (R7: nothing is lost).

The persistence adapter reports an outage as StorageUnavailableError, a domain error; the worker must
treat it like QuickBooks being away - retry later - not like the other domain errors, which need a person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from core.connection import QuickBooksConnection
from core.domain import Customer, Opportunity, Payment, PaymentMethod, Permission, Principal, SyncJob, SyncJobState
from core.errors import StorageUnavailableError
from core.lease import JobLease
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from tests.unit.support import CountingIds, StepClock


class EngineDuringAnOutage(SyncEngine):
    """The real engine, but the database goes away during the first run."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.outages = 1

    def run_unsaved(self, job: SyncJob, lease: JobLease, connection: QuickBooksConnection | None = None):  # type: ignore[no-untyped-def]
        if self.outages:
            self.outages -= 1
            raise StorageUnavailableError()
        return super().run_unsaved(job, lease, connection)


def test_a_job_cut_short_by_a_database_outage_is_retried_and_then_succeeds() -> None:
    uow_factory = InMemoryUnitOfWorkFactory()
    companies = FakeQuickBooksCompanies()
    clock = StepClock()
    service = SyncService(uow_factory, companies, clock, CountingIds())
    worker = SyncWorker(uow_factory, EngineDuringAnOutage(uow_factory, companies, clock), clock)
    with uow_factory() as uow:
        uow.tenants.ensure("acme")
        uow.commit()
    principal = Principal("acme", frozenset(Permission))
    payment = Payment("p1", Decimal("100.00"), PaymentMethod.CHECK, datetime(2026, 1, 5, tzinfo=UTC))
    job = service.sync_payment(principal, Opportunity("o1", "1001", Customer("c1", "Ann", "Lee")), payment)

    first = worker.run_next("w1")
    assert first is not None and first.state is SyncJobState.PENDING  # not FAILED: it will be tried again
    assert first.error is not None and (first.error.reason, first.error.retryable) == ("DATABASE_UNAVAILABLE", True)

    with uow_factory() as uow:  # once the backoff has passed
        stored = uow.jobs.get("acme", job.job_id)
        assert stored is not None and stored.next_attempt_time is not None
        stored.next_attempt_time = None
        uow.jobs.save(stored)
        uow.commit()
    second = worker.run_next("w1")
    assert second is not None and second.state is SyncJobState.SUCCEEDED
