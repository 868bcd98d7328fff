"""SPEC §9 payouts on the in-memory core and the fake QuickBooks: what a payout may list (accept), the jobs it
queues for its payments, and the one bank deposit its job writes (run), on examples checkable by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies, FakeTxn
from core.accounting import DepositLineKind, DepositSpec, QuickBooksRef, TxnSpec
from core.connection import QuickBooksConnection
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    PayoutAdjustment,
    Permission,
    Refund,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncState,
)
from core.errors import BookkeepingError, FailedPreconditionError, PermissionDeniedError, ValidationError
from core.limits import FieldLimits
from core.ports import UNFENCED, AccountingSystem, AccountingSystems, ForwardingAccountingSystem, WriteFence
from tests.unit.support import Harness, HookedCompanies

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
ARRIVAL = date(2026, 4, 3)
ANN = Customer("c1", "Ann", "Lee", email="ann@example.com")
BOB = Customer("c2", "Bob", "Ray", email="bob@example.com")
OPP_ANN = Opportunity("o1", "1001", ANN)
OPP_BOB = Opportunity("o2", "1002", BOB)
PO1 = EntityRef(EntityType.PAYOUT, "po1")


def payment(payment_id: str, amount: str, *refunds: Refund) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, f"ref-{payment_id}", tuple(refunds))


def refund(refund_id: str, amount: str) -> Refund:
    return Refund(refund_id, D(amount), T, "damaged sofa")


def payout(payout_id: str, amount: str, *payment_ids: str, **parts: object) -> Payout:
    return Payout(payout_id, ARRIVAL, D(amount), tuple(payment_ids), **parts)  # type: ignore[arg-type]


@pytest.fixture
def h() -> Harness:
    companies = FakeQuickBooksCompanies()
    return Harness(companies=companies, accounting=HookedCompanies(companies))


def hooks(h: Harness) -> HookedCompanies:
    assert isinstance(h.accounting, HookedCompanies)
    return h.accounting


def synced(h: Harness, *payments: Payment, opportunity: Opportunity = OPP_ANN) -> None:
    """The payments accepted and their jobs run: in QuickBooks, each SYNCED."""
    for p in payments:
        h.service.sync_payment(h.principal(), opportunity, p)
    h.worker.drain()
    for p in payments:
        assert record(h, EntityRef(EntityType.PAYMENT, p.payment_id)).state is SyncState.SYNCED


def ended(h: Harness, job: SyncJob) -> SyncJob:
    with h.uow_factory() as uow:
        stored = uow.jobs.get(job.tenant_id, job.job_id)
    assert stored is not None
    return stored


def record(h: Harness, entity: EntityRef, tenant: str = "acme"):  # type: ignore[no-untyped-def]
    with h.uow_factory() as uow:
        found = uow.sync_records.get(tenant, entity)
    assert found is not None, entity
    return found


def all_jobs(h: Harness, kind: SyncJobKind | None = None) -> list[SyncJob]:
    jobs = sorted(h.uow_factory.db.tables.jobs.values(), key=lambda j: j.create_time)
    return [j for j in jobs if kind is None or j.kind is kind]


def payment_jobs_of(h: Harness, payment_id: str) -> list[SyncJob]:
    return [j for j in all_jobs(h, SyncJobKind.SYNC_PAYMENT) if j.target.id == payment_id]


def deposits(qbo: FakeQuickBooks) -> list[FakeTxn]:
    return qbo.live("Deposit")


def the_deposit(qbo: FakeQuickBooks) -> DepositSpec:
    live = deposits(qbo)
    assert len(live) == 1, live
    spec = live[0].spec
    assert isinstance(spec, DepositSpec)
    return spec


def qbo_id(h: Harness, payment_id: str) -> str:
    quickbooks_id = record(h, EntityRef(EntityType.PAYMENT, payment_id)).quickbooks_id
    assert quickbooks_id
    return quickbooks_id


def refused(call: Callable[[], object]) -> FailedPreconditionError:
    with pytest.raises(FailedPreconditionError) as caught:
        call()
    return caught.value


def assert_nothing_stored(h: Harness, payout_id: str, *payment_ids: str) -> None:
    with h.uow_factory() as uow:
        assert uow.snapshots.get_payout("acme", payout_id) is None
        assert uow.sync_records.get("acme", EntityRef(EntityType.PAYOUT, payout_id)) is None
        for payment_id in payment_ids:
            assert uow.snapshots.payout_of_payment("acme", payment_id) is None
    assert all_jobs(h, SyncJobKind.SYNC_PAYOUT) == []


def set_next_attempt(h: Harness, job: SyncJob, when: datetime | None) -> None:
    with h.uow_factory() as uow:
        stored = uow.jobs.get(job.tenant_id, job.job_id)
        assert stored is not None
        uow.jobs.save(dataclasses.replace(stored, next_attempt_time=when))
        uow.commit()


def claim(h: Harness, worker: str) -> SyncJob | None:
    now = h.clock.now()
    with h.uow_factory() as uow:
        job = uow.jobs.claim_next(worker, now, now + timedelta(minutes=10))
        uow.commit()
    return job


# --- accept: what a payout may list ------------------------------------------------------------------


def test_a_payment_qbsync_was_never_sent_is_unknown(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p9")))
    assert error.reason == "PAYMENT_UNKNOWN"
    assert error.metadata["payment_ids"] == "p9"
    assert_nothing_stored(h, "po1", "p1")


def test_another_tenants_payment_is_unknown_too(h: Harness) -> None:
    h.service.sync_payment(h.principal("globex"), OPP_ANN, payment("p1", "300.00"))
    h.worker.drain()
    assert record(h, EntityRef(EntityType.PAYMENT, "p1"), tenant="globex").state is SyncState.SYNCED
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1")))
    assert error.reason == "PAYMENT_UNKNOWN"
    assert_nothing_stored(h, "po1", "p1")


def test_an_unknown_refund_is_unknown(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r9",))))
    assert (error.reason, error.metadata["refund_id"]) == ("PAYMENT_UNKNOWN", "r9")


def test_a_refund_of_a_listed_payment_is_netted(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00")))
    job = h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r1",)))
    assert (job.kind, job.target, job.state) == (SyncJobKind.SYNC_PAYOUT, PO1, SyncJobState.PENDING)
    with h.uow_factory() as uow:
        assert uow.snapshots.payout_of_payment("acme", "p1") == "po1"
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED
    assert [(line.kind, line.amount) for line in the_deposit(h.qbo()).lines] == [
        (DepositLineKind.PAYMENT, D("300.00")),
        (DepositLineKind.REFUND, D("-50.00")),
    ]


def test_a_refund_of_a_payment_an_earlier_payout_deposited_is_netted(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00")), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    h.worker.drain()
    # The refund was made after p1 reached the bank: the processor takes it from the next payout.
    job = h.service.sync_payout(h.principal(), payout("po2", "150.00", "p2", refund_ids=("r1",)))
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED, ended(h, job).error
    second = record(h, EntityRef(EntityType.PAYOUT, "po2")).quickbooks_id
    spec = h.qbo().txn(second).spec
    assert isinstance(spec, DepositSpec)
    assert [(line.kind, line.amount, line.txn_id) for line in spec.lines] == [
        (DepositLineKind.PAYMENT, D("200.00"), qbo_id(h, "p2")),
        (DepositLineKind.REFUND, D("-50.00"), ""),
    ]
    with h.uow_factory() as uow:  # p1 stays in the first payout; the second does not take it over
        assert uow.snapshots.payout_of_payment("acme", "p1") == "po1"


def test_a_refund_of_a_payment_in_no_payout_is_refused(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00")), payment("p2", "200.00"))
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "150.00", "p2", refund_ids=("r1",))))
    assert error.reason == "REFUND_NOT_IN_PAYOUT"
    assert (error.metadata["refund_id"], error.metadata["payment_id"]) == ("r1", "p1")
    assert_nothing_stored(h, "po1", "p2")


def test_a_resync_that_drops_a_payment_cannot_keep_netting_its_refund(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00")), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "450.00", "p1", "p2", refund_ids=("r1",)))
    # p1 held by this very payout is not "deposited by an earlier one": once dropped, its refund is no one's.
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "150.00", "p2", refund_ids=("r1",))))
    assert error.reason == "REFUND_NOT_IN_PAYOUT"


def test_a_payment_in_another_payout_is_refused(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po2", "500.00", "p1", "p2")))
    assert error.reason == "PAYMENT_IN_ANOTHER_PAYOUT"
    assert (error.metadata["payment_id"], error.metadata["payout_id"]) == ("p1", "po1")
    with h.uow_factory() as uow:
        assert uow.snapshots.get_payout("acme", "po2") is None
        assert uow.snapshots.payout_of_payment("acme", "p2") is None
    assert [j.target.id for j in all_jobs(h, SyncJobKind.SYNC_PAYOUT)] == ["po1"]


def test_parts_that_do_not_add_up_name_the_amount_and_store_nothing(h: Harness) -> None:
    h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00", refund("r1", "50.00")))
    before = all_jobs(h)
    # 300 − 50 − 14 − 6 + 10 = 240, not 241
    bad = payout(
        "po1",
        "241.00",
        "p1",
        refund_ids=("r1",),
        fees=D("14.00"),
        chargebacks=D("6.00"),
        adjustments=(PayoutAdjustment(D("10.00"), "reserve released"),),
    )
    with pytest.raises(ValidationError) as caught:
        h.service.sync_payout(h.principal(), bad)
    assert [v.field for v in caught.value.violations] == ["payout.amount"]
    assert "= 240.00" in caught.value.violations[0].description
    assert_nothing_stored(h, "po1", "p1")
    assert all_jobs(h) == before  # not even a job for the payment
    # The same payout at the right amount is accepted: the rule, not the example, refused it.
    h.service.sync_payout(h.principal(), dataclasses.replace(bad, amount=D("240.00")))
    assert [j.target for j in all_jobs(h, SyncJobKind.SYNC_PAYOUT)] == [PO1]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (payout("po1", "600.00", "p1", "p1"), "payout.payment_ids[1]"),
        (
            payout("po1", "300.00", "p1", adjustments=(PayoutAdjustment(D("0"), "nothing"),)),
            "payout.adjustments[0].amount",
        ),
        (payout("po1", "314.00", "p1", fees=D("-14.00")), "payout.fees"),
        (payout("po1", "10.00"), "payout.payment_ids"),
        (payout("po1", "250.00", "p1", refund_ids=("r1", "r1")), "payout.refund_ids[1]"),
    ],
    ids=["duplicate payment", "zero adjustment", "negative fees", "nothing coming in", "duplicate refund"],
)
def test_what_the_request_alone_shows_wrong_is_named_by_field(h: Harness, bad: Payout, field: str) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "25.00")))
    with pytest.raises(ValidationError) as caught:
        h.service.sync_payout(h.principal(), bad)
    assert field in [v.field for v in caught.value.violations]
    assert_nothing_stored(h, "po1", "p1")


def test_a_payout_needs_the_sync_permission(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    reader = h.principal(permissions=frozenset(Permission) - {Permission.SYNC})
    with pytest.raises(PermissionDeniedError):
        h.service.sync_payout(reader, payout("po1", "300.00", "p1"))
    assert_nothing_stored(h, "po1", "p1")


# --- accept: the payment jobs a payout queues -------------------------------------------------------


def test_a_payment_whose_job_is_pending_gets_no_second_one(h: Harness) -> None:
    own = h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00"))
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    assert [j.job_id for j in payment_jobs_of(h, "p1")] == [own.job_id]


def test_a_synced_payment_gets_no_job(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    before = payment_jobs_of(h, "p1")
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    assert payment_jobs_of(h, "p1") == before


def failing_payment_writes(h: Harness) -> None:
    """The next payment written to QuickBooks is refused for good (a closed period, say)."""

    def refuse() -> None:
        raise BookkeepingError("QuickBooks refused the payment: the books are closed (injected)")

    hooks(h).hook("acme", "create", "before", refuse)


def test_a_failed_payment_gets_exactly_one_new_job_and_the_deposit_follows(h: Harness) -> None:
    failing_payment_writes(h)
    h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00", refund("r1", "50.00")))
    h.worker.drain()
    assert record(h, EntityRef(EntityType.PAYMENT, "p1")).state is SyncState.FAILED
    assert len(payment_jobs_of(h, "p1")) == 1
    # Listed as a payment and as the owner of a netted refund: still one job for it.
    job = h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r1",)))
    jobs = payment_jobs_of(h, "p1")
    assert len(jobs) == 2
    new = jobs[-1]
    assert (new.state, new.opportunity_id, new.customer_id) == (SyncJobState.PENDING, "o1", "c1")
    assert new.create_time < job.create_time  # queued before the payout's own job: claimed first
    h.worker.drain()
    assert ended(h, new).state is SyncJobState.SUCCEEDED
    assert ended(h, job).state is SyncJobState.SUCCEEDED
    assert the_deposit(h.qbo()).total == D("250.00")


def test_a_payment_synced_without_its_netted_refund_gets_a_job_for_it(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    # The refund comes later; its job fails for good, so it is not in QuickBooks.
    failing_payment_writes(h)
    h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00", refund("r1", "50.00")))
    h.worker.drain()
    assert not record(h, EntityRef(EntityType.REFUND, "r1")).quickbooks_id
    before = len(payment_jobs_of(h, "p1"))
    h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r1",)))
    assert len(payment_jobs_of(h, "p1")) == before + 1


# --- run: the deposit ---------------------------------------------------------------------------------


def test_the_payout_job_waits_retryably_while_its_payment_job_has_not_run(h: Harness) -> None:
    own = h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00"))
    job = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    # The payment's job waits out a retry (QuickBooks throttled it, say): the payout's job is claimed first.
    set_next_attempt(h, own, T + timedelta(days=365))
    first = h.worker.run_next("w1")
    assert first is not None and first.job_id == job.job_id
    assert first.state is SyncJobState.PENDING
    assert first.error is not None
    assert (first.error.reason, first.error.retryable) == ("PAYOUT_WAITING_FOR_PAYMENTS", True)
    assert "payment p1" in first.error.message
    assert deposits(h.qbo()) == []
    assert record(h, PO1).state is SyncState.PENDING
    set_next_attempt(h, own, None)
    h.worker.drain()
    done = ended(h, job)
    assert (done.state, done.attempts) == (SyncJobState.SUCCEEDED, 2)
    assert [line.txn_id for line in the_deposit(h.qbo()).lines] == [qbo_id(h, "p1")]


def test_waiting_for_its_payments_uses_up_none_of_the_payout_jobs_attempts(h: Harness) -> None:
    own = h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00"))
    job = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    set_next_attempt(h, own, T + timedelta(days=365))  # the payment's job in a long backoff (an outage)
    for _ in range(job.max_attempts + 3):  # more rounds than the job has attempts
        waited = h.worker.run_next("w1")
        assert waited is not None and waited.job_id == job.job_id
        assert waited.state is SyncJobState.PENDING
    set_next_attempt(h, own, None)
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED


def test_a_payment_whose_sync_failed_fails_the_payout_and_a_retry_of_both_recovers(h: Harness) -> None:
    failing_payment_writes(h)
    own = h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00"))
    job = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    h.worker.drain()
    done = ended(h, job)
    assert done.state is SyncJobState.FAILED
    assert done.error is not None
    # Retryable: the payment's failure may have been an outage that used up its attempts; both are listed.
    assert (done.error.reason, done.error.retryable) == ("PAYOUT_PAYMENT_FAILED", True)
    assert done.attempts == done.max_attempts
    assert "payment p1" in done.error.message and "books are closed" in done.error.message
    assert record(h, PO1).state is SyncState.FAILED
    assert deposits(h.qbo()) == []
    failed, _ = h.service.list_errors(h.principal(), 10, "")
    assert {j.job_id for j in failed} == {own.job_id, job.job_id}
    for failed_job in failed:  # the cause fixed (the hook refused once), as `qbsync retry --all` does
        h.service.retry(h.principal(), failed_job.name)
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED
    assert [line.txn_id for line in the_deposit(h.qbo()).lines] == [qbo_id(h, "p1")]


def test_the_deposit_as_quickbooks_holds_it(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00")))
    synced(h, payment("p2", "200.00"), opportunity=OPP_BOB)
    # 300 + 200 − 50 − 14 − 6 − 10 = 420
    job = h.service.sync_payout(
        h.principal(),
        payout(
            "po1",
            "420.00",
            "p1",
            "p2",
            refund_ids=("r1",),
            fees=D("14.00"),
            chargebacks=D("6.00"),
            adjustments=(PayoutAdjustment(D("-10.00"), "reserve held"),),
        ),
    )
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED
    qbo = h.qbo()
    spec = the_deposit(qbo)
    assert [(line.kind, line.amount, line.txn_id) for line in spec.lines] == [
        (DepositLineKind.PAYMENT, D("300.00"), qbo_id(h, "p1")),
        (DepositLineKind.PAYMENT, D("200.00"), qbo_id(h, "p2")),
        (DepositLineKind.REFUND, D("-50.00"), ""),
        (DepositLineKind.FEE, D("-14.00"), ""),
        (DepositLineKind.CHARGEBACK, D("-6.00"), ""),
        (DepositLineKind.ADJUSTMENT, D("-10.00"), ""),
    ]
    assert spec.lines[-1].memo == "reserve held"
    assert (spec.total, spec.txn_date, spec.customer_id) == (D("420.00"), ARRIVAL, "")
    assert "[qbsync acme/payout/po1]" in spec.private_note
    deposit_id = deposits(qbo)[0].id
    stored = record(h, PO1)
    assert (stored.state, stored.quickbooks_id, stored.amount) == (SyncState.SYNCED, deposit_id, D("420.00"))
    assert qbo.deposit_holding(qbo_id(h, "p1")) == deposit_id
    assert qbo.deposit_holding(qbo_id(h, "p2")) == deposit_id
    assert qbo.undeposited_funds() == D("0")  # §9 Books: nothing of qbsync's left in Undeposited Funds
    assert h.service.get_link(h.principal(), PO1).endswith(
        f"/app/deposit?txnId={deposit_id}&deeplinkcompanyid={qbo.realm_id}"
    )


def test_a_resync_that_drops_a_payment_updates_the_deposit_and_releases_it(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p2"))
    h.worker.drain()
    qbo = h.qbo()
    deposit_id = deposits(qbo)[0].id
    resync = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    h.worker.drain()
    assert ended(h, resync).state is SyncJobState.SUCCEEDED
    assert [t.id for t in deposits(qbo)] == [deposit_id]
    assert qbo.txn(deposit_id).sync_token == 1
    assert [line.txn_id for line in the_deposit(qbo).lines] == [qbo_id(h, "p1")]
    assert qbo.deposit_holding(qbo_id(h, "p2")) is None
    assert qbo.undeposited_funds() == D("200.00")
    with h.uow_factory() as uow:
        assert uow.snapshots.payout_of_payment("acme", "p2") is None
    # Released: the next payout takes it.
    taken = h.service.sync_payout(h.principal(), payout("po2", "200.00", "p2"))
    h.worker.drain()
    assert ended(h, taken).state is SyncJobState.SUCCEEDED
    second = record(h, EntityRef(EntityType.PAYOUT, "po2")).quickbooks_id
    assert second != deposit_id and qbo.deposit_holding(qbo_id(h, "p2")) == second
    assert qbo.undeposited_funds() == D("0")


def test_a_payout_taking_a_payment_before_the_old_deposit_released_it_waits_retryably(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p2"))
    h.worker.drain()
    release = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    take = h.service.sync_payout(h.principal(), payout("po2", "200.00", "p2"))
    # Two payouts' jobs do not block each other: the taker may run while the old deposit still holds p2.
    set_next_attempt(h, release, T + timedelta(days=365))
    first = h.worker.run_next("w1")
    assert first is not None and first.job_id == take.job_id
    assert first.state is SyncJobState.PENDING
    assert first.error is not None
    assert (first.error.reason, first.error.retryable) == ("PAYMENT_ALREADY_DEPOSITED", True)
    assert len(deposits(h.qbo())) == 1
    set_next_attempt(h, release, None)
    h.worker.drain()
    assert ended(h, release).state is SyncJobState.SUCCEEDED
    assert ended(h, take).state is SyncJobState.SUCCEEDED
    second = record(h, EntityRef(EntityType.PAYOUT, "po2")).quickbooks_id
    assert h.qbo().deposit_holding(qbo_id(h, "p2")) == second
    assert len(deposits(h.qbo())) == 2


class _TotalOff(ForwardingAccountingSystem):
    """QuickBooks answering a deposit total a cent off what was sent (a line it treated differently)."""

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        ref = super().create(spec, request_id=request_id, fence=fence)
        if isinstance(spec, DepositSpec) and ref.total is not None:
            return dataclasses.replace(ref, total=ref.total + D("0.01"))
        return ref


@dataclasses.dataclass
class _TotalOffCompanies(AccountingSystems):
    companies: FakeQuickBooksCompanies

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        return _TotalOff(self.companies.for_tenant(tenant_id, connection, branch_id=branch_id))

    @property
    def field_limits(self) -> FieldLimits:  # type: ignore[override]
        return self.companies.field_limits


def test_a_deposit_total_quickbooks_answers_differently_fails_the_payout() -> None:
    companies = FakeQuickBooksCompanies()
    h = Harness(companies=companies, accounting=_TotalOffCompanies(companies))
    synced(h, payment("p1", "300.00"))
    job = h.service.sync_payout(h.principal(), payout("po1", "286.00", "p1", fees=D("14.00")))
    h.worker.drain()
    done = ended(h, job)
    assert done.state is SyncJobState.FAILED
    assert done.error is not None
    assert done.error.reason == "DEPOSIT_TOTAL_MISMATCH"
    assert dict(done.error.metadata) == {"payout_amount": "286.00", "quickbooks_total": "286.01"}
    # The deposit written is remembered: a resync updates it rather than write a second one.
    assert record(h, PO1).quickbooks_id == deposits(h.qbo())[0].id


def test_a_crash_after_quickbooks_committed_the_deposit_leaves_one_deposit(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))

    def crash() -> None:
        raise RuntimeError("worker killed after QuickBooks committed (injected)")

    hooked = hooks(h).hook("acme", "create", "after", crash)
    job = h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p2"))
    first = h.worker.run_next("w1")
    assert first is not None and first.state is SyncJobState.PENDING  # the crash: retried
    assert len(deposits(h.qbo())) == 1  # QuickBooks has it, qbsync does not know
    h.worker.drain()
    done = ended(h, job)
    assert (done.state, done.attempts) == (SyncJobState.SUCCEEDED, 2)
    assert len(deposits(h.qbo())) == 1
    assert record(h, PO1).quickbooks_id == deposits(h.qbo())[0].id
    assert hooked.amounts == []  # no payment was written again


def test_a_deposited_payments_amount_cannot_change_until_the_payout_drops_it(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p2"))
    h.worker.drain()
    error = refused(lambda: h.service.sync_payment(h.principal(), OPP_ANN, payment("p2", "210.00")))
    assert error.reason == "PAYMENT_DEPOSITED"
    assert (error.metadata["payout_id"], error.metadata["field"]) == ("po1", "payment.amount")
    # The same amount (a refund added, a note) is not a change of amount: accepted.
    h.service.sync_payment(h.principal(), OPP_ANN, payment("p2", "200.00"))
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    changed = h.service.sync_payment(h.principal(), OPP_ANN, payment("p2", "210.00"))
    h.worker.drain()
    assert ended(h, changed).state is SyncJobState.SUCCEEDED
    assert h.qbo().txn(qbo_id(h, "p2")).total == D("210.00")


# --- run: who blocks whom ----------------------------------------------------------------------------


def test_a_payout_job_and_a_customers_payment_job_run_side_by_side(h: Harness) -> None:
    synced(h, payment("p1", "300.00"))
    own = h.service.sync_payment(h.principal(), OPP_ANN, payment("p2", "200.00"))
    job = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    assert (own.lock_key, job.lock_key) == ("acme/customer/c1", "acme/payout/po1")
    first, second = claim(h, "w1"), claim(h, "w2")
    assert (first and first.job_id, second and second.job_id) == (own.job_id, job.job_id)


def test_two_jobs_of_one_payout_never_run_at_once(h: Harness) -> None:
    synced(h, payment("p1", "300.00"), payment("p2", "200.00"))
    first = h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    again = h.service.sync_payout(h.principal(), payout("po1", "500.00", "p1", "p2"))
    other = h.service.sync_payout(h.principal(), payout("po2", "1.00", adjustments=(PayoutAdjustment(D("1.00")),)))
    assert first.lock_key == again.lock_key != other.lock_key
    held = claim(h, "w1")
    assert held is not None and held.job_id == first.job_id
    # The resync waits for the first job's lease; another payout's job does not.
    later = claim(h, "w2")
    assert later is not None and later.job_id == other.job_id
    assert claim(h, "w3") is None


def test_a_netted_refunds_amount_cannot_change_while_its_payout_nets_it(h: Harness) -> None:
    synced(h, payment("p1", "300.00", refund("r1", "50.00"), refund("r2", "10.00")))
    h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r1",)))
    h.worker.drain()
    bigger = payment("p1", "300.00", refund("r1", "60.00"), refund("r2", "10.00"))
    error = refused(lambda: h.service.sync_payment(h.principal(), OPP_ANN, bigger))
    assert error.reason == "PAYMENT_DEPOSITED"
    assert (error.metadata["payout_id"], error.metadata["field"]) == ("po1", "payment.refunds[0].amount")
    # A refund the payout does not net may change: the deposit does not hold it.
    changed = h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "300.00", refund("r2", "12.00")))
    h.worker.drain()
    assert ended(h, changed).state is SyncJobState.SUCCEEDED


# --- a refund is netted by one payout at most ----------------------------------------------------------


def netted_by(h: Harness, refund_id: str) -> str | None:
    with h.uow_factory() as uow:
        return uow.snapshots.payout_of_refund("acme", refund_id)


def refund_netted_by_a_later_payout(h: Harness) -> None:
    """p1 deposited by po1 without its refund r1 (made after p1 reached the bank), which po2 nets."""
    synced(h, payment("p1", "300.00", refund("r1", "50.00")), payment("p2", "200.00"), payment("p3", "100.00"))
    h.service.sync_payout(h.principal(), payout("po1", "300.00", "p1"))
    h.service.sync_payout(h.principal(), payout("po2", "150.00", "p2", refund_ids=("r1",)))
    h.worker.drain()
    assert (netted_by(h, "r1"), record(h, EntityRef(EntityType.PAYOUT, "po2")).state) == ("po2", SyncState.SYNCED)


def test_a_refund_another_payout_nets_is_refused_and_nothing_is_stored(h: Harness) -> None:
    refund_netted_by_a_later_payout(h)
    payout_jobs = all_jobs(h, SyncJobKind.SYNC_PAYOUT)
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po3", "50.00", "p3", refund_ids=("r1",))))
    assert error.reason == "REFUND_IN_ANOTHER_PAYOUT"
    assert (error.metadata["refund_id"], error.metadata["payout_id"]) == ("r1", "po2")
    with h.uow_factory() as uow:
        assert uow.snapshots.get_payout("acme", "po3") is None
        assert uow.snapshots.payout_of_payment("acme", "p3") is None
        assert uow.sync_records.get("acme", EntityRef(EntityType.PAYOUT, "po3")) is None
    # Nor may the payment's own payout take it over: a resync of po1 netting r1 too is refused, po1 as it was.
    error = refused(lambda: h.service.sync_payout(h.principal(), payout("po1", "250.00", "p1", refund_ids=("r1",))))
    assert (error.reason, error.metadata["payout_id"]) == ("REFUND_IN_ANOTHER_PAYOUT", "po2")
    with h.uow_factory() as uow:
        assert uow.snapshots.get_payout("acme", "po1") == payout("po1", "300.00", "p1")
    assert netted_by(h, "r1") == "po2"
    assert all_jobs(h, SyncJobKind.SYNC_PAYOUT) == payout_jobs
    assert h.worker.drain() == 0
    # The bank was debited the refund once: po2's deposit alone nets it.
    netting = [
        d
        for d in deposits(h.qbo())
        if isinstance(d.spec, DepositSpec) and any(line.kind is DepositLineKind.REFUND for line in d.spec.lines)
    ]
    assert [d.id for d in netting] == [record(h, EntityRef(EntityType.PAYOUT, "po2")).quickbooks_id]


def test_a_resync_that_drops_a_refund_frees_it_for_another_payout(h: Harness) -> None:
    refund_netted_by_a_later_payout(h)
    h.service.sync_payout(h.principal(), payout("po2", "200.00", "p2"))
    assert netted_by(h, "r1") is None
    job = h.service.sync_payout(h.principal(), payout("po3", "50.00", "p3", refund_ids=("r1",)))
    assert netted_by(h, "r1") == "po3"
    h.worker.drain()
    assert ended(h, job).state is SyncJobState.SUCCEEDED, ended(h, job).error
    totals = {p: h.qbo().txn(record(h, EntityRef(EntityType.PAYOUT, p)).quickbooks_id).total for p in ("po2", "po3")}
    assert totals == {"po2": D("200.00"), "po3": D("50.00")}


def test_a_refund_a_later_payout_nets_cannot_change_amount_until_it_is_dropped(h: Harness) -> None:
    refund_netted_by_a_later_payout(h)
    bigger = payment("p1", "300.00", refund("r1", "60.00"))
    error = refused(lambda: h.service.sync_payment(h.principal(), OPP_ANN, bigger))
    assert error.reason == "PAYMENT_DEPOSITED"
    # Named by the payout that nets the refund, not by po1, which deposited the payment.
    assert (error.metadata["payout_id"], error.metadata["field"]) == ("po2", "payment.refunds[0].amount")
    with h.uow_factory() as uow:
        stored = uow.snapshots.get_payment("acme", "p1")
    assert stored is not None and [r.amount for r in stored.payment.refunds] == [D("50.00")]
    assert h.worker.drain() == 0
    # Once po2 no longer nets it, the refund may change (p1's own amount is still po1's to keep).
    h.service.sync_payout(h.principal(), payout("po2", "200.00", "p2"))
    h.worker.drain()
    changed = h.service.sync_payment(h.principal(), OPP_ANN, bigger)
    h.worker.drain()
    assert ended(h, changed).state is SyncJobState.SUCCEEDED, ended(h, changed).error
    assert h.qbo().txn(record(h, EntityRef(EntityType.REFUND, "r1")).quickbooks_id).total == D("60.00")
    error = refused(lambda: h.service.sync_payment(h.principal(), OPP_ANN, payment("p1", "310.00")))
    assert (error.reason, error.metadata["payout_id"], error.metadata["field"]) == (
        "PAYMENT_DEPOSITED",
        "po1",
        "payment.amount",
    )
