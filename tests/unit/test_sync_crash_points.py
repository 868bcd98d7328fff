"""R6/R7 with the run's few transactions (issue 12): a worker that dies at any point of a sync — at each
commit of its database, or right after each write QuickBooks confirmed — and a retry by another worker
leave exactly one QuickBooks record per CRM record, with nothing lost.

A crash is a `Crash` (not an `Exception`: nothing in qbsync catches it) after which the dead worker's
database refuses every commit, as a killed process commits nothing more."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    Permission,
    Principal,
    Refund,
    SyncJobState,
    SyncState,
)
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from tests.unit.support import CountingIds, HookedCompanies, ManualClock

LEASE = timedelta(seconds=60)
T = ManualClock().now()


class Crash(BaseException):
    """The worker's process dies here."""


class _DyingUnitOfWork:
    def __init__(self, uow: Any, factory: DyingUnitOfWorkFactory) -> None:
        self._uow = uow
        self._factory = factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    def __enter__(self) -> _DyingUnitOfWork:
        self._uow.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._uow.__exit__(*exc)

    def commit(self) -> None:
        self._factory.committing()
        self._uow.commit()


class DyingUnitOfWorkFactory:
    """The worker's database: dies at its `crash_at`-th commit (that commit lost), or when `die()` is called."""

    def __init__(self, factory: InMemoryUnitOfWorkFactory, crash_at: int = 0) -> None:
        self._factory = factory
        self.crash_at = crash_at
        self.commits = 0
        self.dead = False

    def __call__(self) -> _DyingUnitOfWork:
        return _DyingUnitOfWork(self._factory(), self)

    def read_only(self) -> _DyingUnitOfWork:
        return _DyingUnitOfWork(self._factory.read_only(), self)

    def committing(self) -> None:
        self.commits += 1
        if self.commits == self.crash_at:
            self.die()
        if self.dead:
            raise Crash()

    def die(self) -> None:
        self.dead = True


class Deployment:
    """CRM-facing service on the database; a worker that may die, and a second one that takes over."""

    def __init__(self, crash_at: int = 0) -> None:
        self.db = InMemoryUnitOfWorkFactory()
        self.companies = FakeQuickBooksCompanies()
        self.hooked = HookedCompanies(self.companies)
        self.clock = ManualClock()
        self.service = SyncService(self.db, self.companies, self.clock, CountingIds())
        self.dying = DyingUnitOfWorkFactory(self.db, crash_at)
        self.worker = self._worker(self.dying)  # type: ignore[arg-type]
        with self.db() as uow:
            uow.tenants.ensure("acme")
            uow.commit()
        self.principal = Principal("acme", frozenset(Permission))

    def _worker(self, uow_factory: Any) -> SyncWorker:
        engine = SyncEngine(uow_factory, self.hooked, self.clock)
        return SyncWorker(uow_factory, engine, self.clock, lease=LEASE, backoff_base=timedelta(0))

    def accept(self) -> str:
        customer = Customer("c1", "Mary", "Lee", email="mary@example.com")
        refunds = (Refund("r1", Decimal("10.00"), T), Refund("r2", Decimal("5.00"), T))
        payment = Payment("p1", Decimal("100.00"), PaymentMethod.CASH, T, "", refunds)
        return self.service.sync_payment(self.principal, Opportunity("o1", "1001", customer), payment).name

    def crash_after(self, write: str, nth: int) -> None:
        """The worker dies right after QuickBooks confirmed its `nth` write named `write`."""
        seen = [0]

        def hook() -> None:
            seen[0] += 1
            if seen[0] == nth:
                self.dying.die()
                raise Crash()

        self.hooked.hook("acme", write, "after", hook, times=nth)

    def run_until_crash_then_retry(self, job: str) -> None:
        with pytest.raises(Crash):
            self.worker.drain("w1")
        self.hooked.hooked.clear()
        self.clock.advance(LEASE * 2)  # the dead worker's lease runs out: the job is claimed again
        self._worker(self.db).drain("w2")
        assert self.service.get_job(self.principal, job).state is SyncJobState.SUCCEEDED

    @property
    def qbo(self) -> FakeQuickBooks:
        return self.companies.for_tenant("acme")


def _commits_of_a_clean_run() -> int:
    deployment = Deployment()
    deployment.accept()
    assert deployment.worker.run_next("w1") is not None
    return deployment.dying.commits


def _assert_exactly_once(deployment: Deployment) -> None:
    qbo = deployment.qbo
    assert len(qbo.customers) == 1
    (payment,) = qbo.live("Payment")
    refunds = qbo.live("Purchase")
    assert sorted(r.spec.amount for r in refunds) == [Decimal("5.00"), Decimal("10.00")]  # type: ignore[attr-defined]
    linked = {line.txn_id for line in payment.spec.lines}  # type: ignore[attr-defined]
    assert linked == {r.id for r in refunds}
    with deployment.db() as uow:
        stored = {
            ref.id: uow.sync_records.get("acme", ref)
            for ref in (
                EntityRef(EntityType.PAYMENT, "p1"),
                EntityRef(EntityType.REFUND, "r1"),
                EntityRef(EntityType.REFUND, "r2"),
            )
        }
    assert stored["p1"] is not None and stored["p1"].quickbooks_id == payment.id
    assert {r.quickbooks_id for r in (stored["r1"], stored["r2"]) if r is not None} == {r.id for r in refunds}
    assert not any(r is None or r.create_started for r in stored.values())


def test_a_clean_run_commits_three_times() -> None:
    # The claim, the books read with the create intents, the records with the job's completion.
    assert _commits_of_a_clean_run() == 3


@pytest.mark.parametrize("crash_at", range(1, _commits_of_a_clean_run() + 1))
def test_a_crash_at_any_commit_then_a_retry_writes_each_record_once(crash_at: int) -> None:
    deployment = Deployment(crash_at)
    job = deployment.accept()
    deployment.run_until_crash_then_retry(job)
    _assert_exactly_once(deployment)


# The customer, the two refunds in one batch (a crash there is a batch whose answer was lost: the retry
# finds both by their request ids and markers), then the payment linking them.
WRITES: list[tuple[str, int]] = [("create_customer", 1), ("write_many", 1), ("create", 1)]


@pytest.mark.parametrize(("write", "nth"), WRITES)
def test_a_crash_right_after_quickbooks_confirmed_a_write_then_a_retry_writes_it_once(write: str, nth: int) -> None:
    deployment = Deployment()
    job = deployment.accept()
    deployment.crash_after(write, nth)
    deployment.run_until_crash_then_retry(job)
    _assert_exactly_once(deployment)


def test_the_crash_points_are_real() -> None:
    """Each injected crash stops the first worker before the job is done (else the tests above prove nothing)."""
    for write, nth in WRITES:
        deployment = Deployment()
        job = deployment.accept()
        deployment.crash_after(write, nth)
        with pytest.raises(Crash):
            deployment.worker.drain("w1")
        assert deployment.service.get_job(deployment.principal, job).state is SyncJobState.RUNNING


# --- SPEC §11: a void that dies anywhere is run again without doubling anything --------------------------

# The payment unlinked from its refunds (one update), each refund expense deleted, then the payment voided.
VOID_WRITES: list[tuple[str, int]] = [("update", 1), ("void", 1), ("void", 2), ("void", 3)]


def _synced_then_void_accepted(crash_at: int = 0) -> tuple[Deployment, str]:
    deployment = Deployment(crash_at)
    deployment.accept()
    deployment._worker(deployment.db).drain("w0")  # the payment and its refunds are in QuickBooks
    return deployment, deployment.service.void_payment(deployment.principal, "p1").name


def _assert_voided_once(deployment: Deployment) -> None:
    qbo = deployment.qbo
    payments = [t for t in qbo.txns.values() if t.entity == "Payment"]
    assert len(payments) == 1 and payments[0].voided
    purchases = [t for t in qbo.txns.values() if t.entity == "Purchase"]
    assert len(purchases) == 2 and all(t.deleted for t in purchases)
    with deployment.db() as uow:
        for ref in (
            EntityRef(EntityType.PAYMENT, "p1"),
            EntityRef(EntityType.REFUND, "r1"),
            EntityRef(EntityType.REFUND, "r2"),
        ):
            stored = uow.sync_records.get("acme", ref)
            assert stored is not None and stored.state is SyncState.VOIDED and stored.quickbooks_id


def _commits_of_a_clean_void() -> int:
    deployment, _ = _synced_then_void_accepted()
    before = deployment.dying.commits
    assert deployment.worker.run_next("w1") is not None
    return deployment.dying.commits - before


@pytest.mark.parametrize("crash_at", range(1, _commits_of_a_clean_void() + 1))
def test_a_void_crashing_at_any_commit_then_retried_voids_once(crash_at: int) -> None:
    deployment, job = _synced_then_void_accepted(crash_at)
    deployment.run_until_crash_then_retry(job)
    _assert_voided_once(deployment)


@pytest.mark.parametrize(("write", "nth"), VOID_WRITES)
def test_a_void_crashing_right_after_quickbooks_confirmed_a_write_then_retried_voids_once(write: str, nth: int) -> None:
    deployment, job = _synced_then_void_accepted()
    deployment.crash_after(write, nth)
    with pytest.raises(Crash):
        deployment.worker.drain("w1")
    assert deployment.service.get_job(deployment.principal, job).state is SyncJobState.RUNNING  # a real crash point
    deployment.hooked.hooked.clear()
    deployment.clock.advance(LEASE * 2)
    deployment._worker(deployment.db).drain("w2")
    assert deployment.service.get_job(deployment.principal, job).state is SyncJobState.SUCCEEDED
    _assert_voided_once(deployment)
