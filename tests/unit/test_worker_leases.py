"""Leases outlive long jobs while their worker lives, and a worker that lost its job records nothing (R7);
jobs of one customer identity (normalised name and email) are kept apart even across CRM customers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.system import SystemClock
from core.domain import Customer, JobState, Opportunity, Payment, PaymentMethod, Permission, Principal, SyncJob
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from tests.unit.support import CountingIds

LEASE = timedelta(seconds=0.3)
PAID = datetime(2026, 1, 5, tzinfo=UTC)


class GatedEngine(SyncEngine):
    """The real engine, held at the start of each run until the test opens the gate."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.started = threading.Event()
        self.gate = threading.Event()

    def run(self, job: SyncJob):  # type: ignore[no-untyped-def]
        self.started.set()
        assert self.gate.wait(30)
        return super().run(job)


ANN = Customer("c1", "Ann", "Lee", email="ann@example.com")


def _setup(customer: Customer = ANN):  # type: ignore[no-untyped-def]
    uow_factory = InMemoryUnitOfWorkFactory()
    companies = FakeQuickBooksCompanies()
    clock = SystemClock()
    service = SyncService(uow_factory, companies, clock, CountingIds())
    engine = GatedEngine(uow_factory, companies, clock)
    worker = SyncWorker(uow_factory, engine, clock, lease=LEASE)
    with uow_factory() as uow:
        uow.tenants.ensure("acme")
        uow.commit()
    principal = Principal("acme", frozenset(Permission))
    job = service.sync_payment(principal, Opportunity("o1", "1001", customer), _payment("p1"))
    return uow_factory, service, engine, worker, principal, job


def _payment(payment_id: str) -> Payment:
    return Payment(payment_id, Decimal("100.00"), PaymentMethod.CHECK, PAID)


def _stored(uow_factory: InMemoryUnitOfWorkFactory, job: SyncJob) -> SyncJob:
    with uow_factory() as uow:
        stored = uow.jobs.get(job.tenant_id, job.job_id)
    assert stored is not None
    return stored


def _run_in_thread(worker: SyncWorker, worker_id: str) -> tuple[threading.Thread, list[SyncJob | None]]:
    ended: list[SyncJob | None] = []
    thread = threading.Thread(target=lambda: ended.append(worker.run_next(worker_id)))
    thread.start()
    return thread, ended


def test_a_job_running_longer_than_its_lease_keeps_it_and_no_one_else_claims_it() -> None:
    uow_factory, _, engine, worker, _, job = _setup()
    thread, ended = _run_in_thread(worker, "w1")
    assert engine.started.wait(10)
    first_lease = _stored(uow_factory, job).lease_expires
    assert first_lease is not None

    deadline = time.monotonic() + 4 * LEASE.total_seconds()  # four leases: it would have expired thrice
    while time.monotonic() < deadline:
        now = datetime.now(UTC)
        with uow_factory() as uow:
            assert uow.jobs.claim_next("w2", now, now + LEASE) is None, "a live worker's job was taken"
            uow.commit()
        time.sleep(0.02)
    extended = _stored(uow_factory, job)
    assert (extended.state, extended.claimed_by) == (JobState.RUNNING, "w1")
    assert extended.lease_expires is not None and extended.lease_expires > first_lease

    engine.gate.set()
    thread.join(30)
    assert ended[0] is not None and ended[0].state is JobState.SUCCEEDED
    done = _stored(uow_factory, job)
    time.sleep(2 * LEASE.total_seconds())  # the heartbeat has stopped: nothing touches the job any more
    assert _stored(uow_factory, job) == done
    assert (done.state, done.claimed_by, done.lease_expires) == (JobState.SUCCEEDED, "", None)


def test_a_worker_whose_job_was_reclaimed_does_not_overwrite_the_new_owner() -> None:
    uow_factory, _, engine, worker, _, job = _setup()
    thread, ended = _run_in_thread(worker, "w1")
    assert engine.started.wait(10)
    # As if w1 had stalled past its lease and w2 had claimed the job (w1's heartbeat finds out).
    with uow_factory() as uow:
        taken = uow.jobs.get_for_update(job.tenant_id, job.job_id)
        assert taken is not None
        taken.claimed_by = "w2"
        taken.lease_expires = datetime.now(UTC) + timedelta(minutes=5)
        uow.jobs.save(taken)
        uow.commit()
    time.sleep(2 * LEASE.total_seconds())
    engine.gate.set()
    thread.join(30)

    stored = _stored(uow_factory, job)
    assert (stored.state, stored.claimed_by) == (JobState.RUNNING, "w2")
    assert stored.lease_expires == taken.lease_expires  # w1's heartbeat did not extend w2's lease
    assert stored.results == [] and stored.attempts == 1
    with uow_factory() as uow:
        kinds = [event.kind for event in uow.audit.list("acme", limit=20)]
    assert "SYNC_SUCCEEDED" not in kinds
    assert ended[0] is not None


def test_jobs_of_two_crm_customers_with_one_name_and_email_never_run_at_once() -> None:
    uow_factory, service, engine, worker, principal, first = _setup(ANN)
    twin = Customer("c2", " ann ", "LEE", email="ANN@example.com ")  # another CRM record, same person
    other = Customer("c3", "Ann", "Lee", email="ann.lee@example.com")
    second = service.sync_payment(principal, Opportunity("o2", "1002", twin), _payment("p2"))
    third = service.sync_payment(principal, Opportunity("o3", "1003", other), _payment("p3"))
    assert first.identity_key == second.identity_key != third.identity_key
    assert first.identity_key.startswith("acme/") and first.lock_key != second.lock_key

    thread, _ = _run_in_thread(worker, "w1")
    assert engine.started.wait(10)
    now = datetime.now(UTC)
    with uow_factory() as uow:
        claimed = uow.jobs.claim_next("w2", now, now + timedelta(minutes=5))
        assert uow.jobs.claim_next("w2", now, now + timedelta(minutes=5)) is None  # the twin's job waits
        uow.commit()
    assert claimed is not None and claimed.job_id == third.job_id
    engine.gate.set()
    thread.join(30)
    with uow_factory() as uow:
        after = uow.jobs.claim_next("w2", datetime.now(UTC), datetime.now(UTC) + timedelta(minutes=5))
        uow.commit()
    assert after is not None and after.job_id == second.job_id
