"""Leases outlive long jobs while their worker lives; a worker that lost its lease writes nothing more, in
QuickBooks or here, and a record changed meanwhile is rewritten only from the newest snapshot (R7, issue 7).
Jobs of one customer identity (normalised name and email) are kept apart even across CRM customers.

Time is a `ManualClock`: a lease runs out when a test moves the clock, never by waiting. The lease is long
enough (in real seconds) that the heartbeat thread never beats during a test; tests beat by hand.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from core.accounting import BatchWrite, NewCustomer, PaymentSpec, QuickBooksRef, TxnKind
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
    SyncJob,
    SyncJobState,
    SyncState,
)
from core.errors import LeaseLostError
from core.lease import Beats, FencedAccountingSystem, JobLease, LeaseHeartbeat
from core.ports import AccountingSystem, UnitOfWork, WriteFence
from core.service import SyncService
from core.sync_engine import MAX_STALE_ROUNDS, SyncEngine
from core.worker import SyncWorker
from tests.unit.support import CountingIds, HookedCompanies, ManualClock

LEASE = timedelta(minutes=10)
PAST_LEASE = LEASE + timedelta(seconds=1)
ANN = Customer("c1", "Ann", "Lee", email="ann@example.com")
OPP = Opportunity("o1", "1001", ANN)
P1 = EntityRef(EntityType.PAYMENT, "p1")


class Rig:
    """The core on in-memory persistence and the fake QuickBooks, behind a hook, with a manual clock."""

    def __init__(self) -> None:
        self.uow_factory = InMemoryUnitOfWorkFactory()
        self.companies = HookedCompanies(FakeQuickBooksCompanies())
        self.clock = ManualClock()
        self.service = SyncService(self.uow_factory, self.companies, self.clock, CountingIds())
        self.engine = SyncEngine(self.uow_factory, self.companies, self.clock)
        self.worker = SyncWorker(
            self.uow_factory, self.engine, self.clock, lease=LEASE, backoff_base=timedelta(0), backoff_cap=timedelta(0)
        )
        with self.uow_factory() as uow:
            uow.tenants.ensure("acme")
            uow.commit()
        self.principal = Principal("acme", frozenset(Permission))

    @property
    def qbo(self) -> FakeQuickBooks:
        companies = self.companies.companies
        assert isinstance(companies, FakeQuickBooksCompanies)
        return companies.for_tenant("acme")

    def sync(self, amount: str, *refunds: Refund, opportunity: Opportunity = OPP, payment_id: str = "p1") -> SyncJob:
        self.clock.advance(timedelta(seconds=1))  # jobs accepted one after the other are claimed in that order
        payment = Payment(payment_id, Decimal(amount), PaymentMethod.CHECK, self.clock.now(), "", refunds)
        return self.service.sync_payment(self.principal, opportunity, payment)

    def stored(self, job: SyncJob) -> SyncJob:
        with self.uow_factory() as uow:
            stored = uow.jobs.get(job.tenant_id, job.job_id)
        assert stored is not None
        return stored

    def audit(self) -> list[str]:
        with self.uow_factory() as uow:
            return [event.kind.value for event in uow.audit.list("acme", limit=100)]

    def payment_amount(self) -> Decimal:
        (payment,) = self.qbo.live("Payment")
        return payment.spec.amount  # type: ignore[union-attr]

    def claim(self, worker_id: str) -> SyncJob:
        now = self.clock.now()
        with self.uow_factory() as uow:
            job = uow.jobs.claim_next(worker_id, now, now + LEASE)
            uow.commit()
        assert job is not None
        return job

    def heartbeat(self, job: SyncJob, worker_id: str) -> LeaseHeartbeat:
        return LeaseHeartbeat(self.uow_factory, self.clock, job, worker_id, lease=LEASE)


def _take_over(rig: Rig) -> None:
    """w1 stalls here past its lease; w2 claims the job and runs everything due to the end."""
    rig.clock.advance(PAST_LEASE)
    rig.worker.drain("w2")


# --- the heartbeat ----------------------------------------------------------------------------------


def test_beats_keep_the_lease_past_its_first_expiry_and_no_one_else_claims_it() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    heartbeat = rig.heartbeat(job, "w1")
    assert job.lease_expires is not None and heartbeat.lease.expires == job.lease_expires
    for _ in range(4):  # four leases: without the beats it would have run out thrice
        rig.clock.advance(LEASE / 3)
        assert heartbeat.beat()
        with rig.uow_factory() as uow:
            assert uow.jobs.claim_next("w2", rig.clock.now(), rig.clock.now() + LEASE) is None
            uow.commit()
    assert rig.clock.now() > job.lease_expires and heartbeat.lease.held()
    stored = rig.stored(job)
    expected = (SyncJobState.RUNNING, "w1", heartbeat.lease.expires)
    assert (stored.state, stored.claimed_by, stored.lease_expires) == expected
    assert heartbeat.beats == 4


def test_a_beat_that_finds_the_job_claimed_by_another_worker_loses_the_lease_for_good() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    heartbeat = rig.heartbeat(job, "w1")
    rig.clock.advance(PAST_LEASE)
    taken = rig.claim("w2")
    assert not heartbeat.beat()
    assert heartbeat.lease.lost and not heartbeat.lease.held()
    with pytest.raises(LeaseLostError):
        heartbeat.lease.check()
    assert rig.stored(job).lease_expires == taken.lease_expires  # w1 did not extend w2's lease


def test_a_lease_whose_beats_fail_is_lost_when_the_clock_reaches_its_last_expiry() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    database = {"up": True}

    def uow_factory() -> UnitOfWork:
        if not database["up"]:
            raise ConnectionError("the database is unreachable")
        return rig.uow_factory()

    heartbeat = LeaseHeartbeat(uow_factory, rig.clock, job, "w1", lease=LEASE)
    rig.clock.advance(LEASE / 3)
    assert heartbeat.beat()
    last_expiry = heartbeat.lease.expires
    database["up"] = False
    rig.clock.advance(LEASE / 3)
    assert heartbeat.beat()  # a missed beat is survivable: the lease still runs
    rig.clock.advance(last_expiry - rig.clock.now() - timedelta(microseconds=1))
    assert heartbeat.lease.held()
    rig.clock.advance(timedelta(microseconds=1))  # the instant of the last expiry: others may claim it next
    assert not heartbeat.beat() and heartbeat.lease.lost
    database["up"] = True
    assert not heartbeat.beat()  # lost is final, even though no one has claimed the job yet
    assert rig.stored(job).lease_expires == last_expiry


def test_one_thread_beats_every_running_jobs_lease_and_none_after_its_run_ends() -> None:
    rig = Rig()
    rig.sync("100.00")
    bo = Opportunity("o2", "1002", Customer("c2", "Bo", "Li", email="bo@example.com"))  # not held back by Ann's
    rig.sync("50.00", opportunity=bo, payment_id="p2")
    first, second = rig.claim("w1"), rig.claim("w2")
    beats = Beats(idle_seconds=0.2)
    threads: set[str] = set()

    def recording_factory() -> UnitOfWork:
        threads.add(threading.current_thread().name)
        return rig.uow_factory()

    every = timedelta(milliseconds=20)
    one = LeaseHeartbeat(recording_factory, rig.clock, first, "w1", lease=LEASE, interval=every, beats=beats)
    two = LeaseHeartbeat(recording_factory, rig.clock, second, "w2", lease=LEASE, interval=every, beats=beats)
    with one, two:
        deadline = threading.Event()
        while (one.beats < 3 or two.beats < 3) and not deadline.wait(0.01):
            pass
    ended = (one.beats, two.beats)
    assert min(ended) >= 3
    assert threads == {"lease-beats"}
    threading.Event().wait(0.1)  # five intervals
    assert (one.beats, two.beats) == ended


def test_a_run_that_ends_during_its_beat_waits_for_that_beat() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    beating, finish = threading.Event(), threading.Event()

    def slow_factory() -> UnitOfWork:
        beating.set()
        assert finish.wait(10)
        return rig.uow_factory()

    heartbeat = LeaseHeartbeat(
        slow_factory, rig.clock, job, "w1", lease=LEASE, interval=timedelta(milliseconds=10), beats=Beats()
    )
    heartbeat.__enter__()
    assert beating.wait(10)
    exited = threading.Event()
    threading.Thread(target=lambda: (heartbeat.__exit__(None, None, None), exited.set()), daemon=True).start()
    assert not exited.wait(0.1)  # the beat under way may still extend the lease: the run has not ended yet
    finish.set()
    assert exited.wait(10) and heartbeat.beats == 1


def test_a_lease_extended_by_a_beat_is_held_until_the_new_expiry() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    lease = JobLease(job, "w1", rig.clock, rig.clock.now() + timedelta(seconds=10))
    lease.extended(rig.clock.now() + timedelta(seconds=30))
    rig.clock.advance(timedelta(seconds=29))
    assert lease.held()
    rig.clock.advance(timedelta(seconds=1))
    assert not lease.held()


# --- fencing: a worker that lost its lease writes nothing more ----------------------------------------


def test_a_lost_lease_refuses_every_write_before_it_is_sent_and_lets_reads_through() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    fenced = FencedAccountingSystem(rig.qbo, JobLease(job, "w1", rig.clock, rig.clock.now() + LEASE))
    customer = fenced.create_customer(NewCustomer("Ann Lee", "Ann", "Lee", "", "", "", ""), request_id="c")
    spec = PaymentSpec(customer.id, Decimal("1.00"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "", "[m]")
    rig.clock.advance(PAST_LEASE)
    sent = rig.qbo.request_count
    writes = [
        lambda: fenced.create_customer(NewCustomer("Bo Li", "", "", "", "", "", ""), request_id="c2"),
        lambda: fenced.create(spec, request_id="p"),
        lambda: fenced.update(QuickBooksRef(TxnKind.PAYMENT, "1", "0"), spec, request_id="u"),
        lambda: fenced.write_many([BatchWrite(spec, "b1"), BatchWrite(spec, "b2")]),
    ]
    for write in writes:
        with pytest.raises(LeaseLostError):
            write()
    assert rig.qbo.request_count == sent  # nothing reached QuickBooks
    assert [c.id for c in fenced.find_customers("Ann Lee", "")] == [customer.id]  # reads change nothing


@pytest.mark.parametrize(("stalls_after", "writes_by_w1"), [("create_customer", 1), ("create", 2)])
def test_a_worker_whose_lease_is_taken_mid_job_makes_no_further_write(stalls_after: str, writes_by_w1: int) -> None:
    rig = Rig()
    job = rig.sync("100.00", Refund("r1", Decimal("40.00"), rig.clock.now(), "sofa"))
    counted: list[int] = []

    def take_over() -> None:
        counted.append(rig.qbo.write_count)  # w1's writes so far
        _take_over(rig)
        counted.append(rig.qbo.write_count)  # and w2's

    rig.companies.hook("acme", stalls_after, "after", take_over)
    ended = rig.worker.run_next("w1")

    assert ended is not None and ended.job_id == job.job_id
    assert counted[0] == writes_by_w1  # the customer, and the refund expense if it stalled after that
    assert rig.qbo.write_count == counted[1]  # w1 resumed and wrote nothing more
    assert len(rig.qbo.customers) == 1 and len(rig.qbo.live("Purchase")) == 1 and len(rig.qbo.live("Payment")) == 1
    stored = rig.stored(job)
    assert (stored.state, stored.claimed_by, stored.attempts) == (SyncJobState.SUCCEEDED, "", 2)  # w2's outcome
    assert rig.audit().count("SYNC_SUCCEEDED") == 1
    assert "SYNC_FAILED" not in rig.audit() and "SYNC_RETRY_SCHEDULED" not in rig.audit()
    assert rig.service.get_status(rig.principal, P1).state is SyncState.SYNCED


def test_a_worker_whose_lease_ran_out_stops_even_if_no_one_claimed_the_job_yet() -> None:
    rig = Rig()
    job = rig.sync("100.00")
    rig.companies.hook("acme", "create_customer", "after", lambda: rig.clock.advance(PAST_LEASE))
    rig.worker.run_next("w1")

    assert rig.qbo.write_count == 1  # the customer; no payment
    stored = rig.stored(job)
    assert (stored.state, stored.claimed_by, stored.error) == (SyncJobState.RUNNING, "w1", None)  # left as it was
    with rig.uow_factory() as uow:
        customer = uow.sync_records.get("acme", EntityRef(EntityType.CUSTOMER, "c1"))
    assert customer is None  # the record save after the write was fenced too
    rig.worker.drain("w2")  # the lease has run out: another worker takes the job and finishes it
    assert rig.stored(job).state is SyncJobState.SUCCEEDED
    assert len(rig.qbo.customers) == 1 and len(rig.qbo.live("Payment")) == 1  # w2 linked w1's customer


# --- stale SyncTokens: never an older snapshot over a newer one ----------------------------------------


def test_a_stalled_update_sent_after_a_newer_resync_never_overwrites_it() -> None:
    rig = Rig()
    rig.sync("100.00")
    rig.worker.drain("w0")
    older = rig.sync("200.00")
    newer: list[SyncJob] = []

    def stall_then_resume() -> None:
        # w1's update passed its lease check and is on its way (200.00, the SyncToken it read) when w1
        # stalls; meanwhile the CRM sends 300.00 and w2 writes it.
        rig.clock.advance(PAST_LEASE)
        newer.append(rig.sync("300.00"))
        rig.worker.drain("w2")
        assert rig.payment_amount() == Decimal("300.00")

    hooked = rig.companies.hook("acme", "update", "sending", stall_then_resume)
    writes_before = rig.qbo.write_count
    rig.worker.run_next("w1")

    assert rig.payment_amount() == Decimal("300.00")  # QuickBooks refused w1's stale update; no retry
    assert rig.qbo.stale_token_refusals == 1
    # w1's, then w2's: its second job finds the payment unchanged and live (read, not rewritten).
    assert hooked.amounts == [Decimal("200.00"), Decimal("300.00")]
    assert rig.qbo.write_count - writes_before == 1  # w2's one update (of its two jobs), none of w1's
    assert rig.stored(older).state is rig.stored(newer[0]).state is SyncJobState.SUCCEEDED
    record = rig.service.get_status(rig.principal, P1)
    assert record.amount == Decimal("300.00") and record.sync_token == str(rig.qbo.live("Payment")[0].sync_token)
    assert rig.audit().count("SYNC_SUCCEEDED") == 3 and "SYNC_RETRY_SCHEDULED" not in rig.audit()


def test_a_write_handed_on_with_the_lease_held_is_not_sent_once_it_runs_out_before_sending() -> None:
    rig = Rig()
    rig.sync("100.00")
    rig.worker.drain("w0")
    older = rig.sync("200.00")
    newer: list[SyncJob] = []

    def stall_then_resume() -> None:
        # The fenced view handed w1's update on with the lease held; w1 stalls before it is sent.
        rig.clock.advance(PAST_LEASE)
        newer.append(rig.sync("300.00"))
        rig.worker.drain("w2")

    hooked = rig.companies.hook("acme", "update", "before", stall_then_resume)
    writes_before = rig.qbo.write_count
    rig.worker.run_next("w1")

    # w1's, then w2's: its second job finds the payment unchanged and live (read, not rewritten).
    assert hooked.amounts == [Decimal("200.00"), Decimal("300.00")]
    assert rig.qbo.write_count - writes_before == 1  # w2's one update (its second job: unchanged, read)
    assert rig.qbo.stale_token_refusals == 0  # w1's was checked as it would leave, and never sent
    assert rig.payment_amount() == Decimal("300.00")
    assert rig.stored(older).state is rig.stored(newer[0]).state is SyncJobState.SUCCEEDED


def test_the_fake_checks_a_writes_fence_before_it_is_sent_and_counts_nothing_refused() -> None:
    rig = Rig()
    rig.sync("100.00")
    lease = JobLease(rig.claim("w1"), "w1", rig.clock, rig.clock.now() + LEASE)
    customer = rig.qbo.create_customer(NewCustomer("Ann Lee", "", "", "", "", "", ""), request_id="c", fence=lease)
    spec = PaymentSpec(customer.id, Decimal("1.00"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "", "[m]")
    paid = rig.qbo.create(spec, request_id="p", fence=lease)
    rig.clock.advance(PAST_LEASE)
    sent = rig.qbo.request_count
    with pytest.raises(LeaseLostError):
        rig.qbo.update(paid, spec, request_id="u", fence=lease)
    with pytest.raises(LeaseLostError):
        rig.qbo.create(spec, request_id="p2", fence=lease)
    assert rig.qbo.request_count == sent and len(rig.qbo.live("Payment")) == 1


class _Recording:
    """Stands for an accounting system: records each call and checks a write's fence as a real one does."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., object]:
        def call(*args: object, fence: WriteFence | None = None, **kwargs: object) -> object:
            if fence is not None:
                fence.check()
            self.calls.append(name)
            return name

        return call


@pytest.mark.parametrize("method", [name for name in dir(AccountingSystem) if not name.startswith("_")])
def test_every_port_method_is_forwarded_and_every_write_is_fenced(method: str) -> None:
    """Whatever the port holds, now or later: a method taking a fence is a write and is refused once the
    lease is lost; any other is handed on as is."""
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    system = _Recording()
    fenced = FencedAccountingSystem(system, JobLease(job, "w1", rig.clock, rig.clock.now() + LEASE))  # type: ignore[arg-type]
    parameters = inspect.signature(getattr(AccountingSystem, method)).parameters
    positional = [None for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"]
    keywords = {p.name: "x" for p in parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "fence"}
    assert getattr(fenced, method)(*positional, **keywords) == method
    rig.clock.advance(PAST_LEASE)
    if "fence" in parameters:
        with pytest.raises(LeaseLostError):
            getattr(fenced, method)(*positional, **keywords)
        assert system.calls == [method]
    else:
        assert getattr(fenced, method)(*positional, **keywords) == method
        assert system.calls == [method, method]


def test_a_fenced_view_checks_the_runs_lease_and_a_callers_own_fence() -> None:
    rig = Rig()
    rig.sync("100.00")
    job = rig.claim("w1")
    fenced = FencedAccountingSystem(rig.qbo, JobLease(job, "w1", rig.clock, rig.clock.now() + LEASE))
    other = JobLease(job, "w1", rig.clock, rig.clock.now() + timedelta(seconds=1))
    rig.clock.advance(timedelta(seconds=1))  # the caller's fence is gone, the run's lease is not
    sent = rig.qbo.request_count
    with pytest.raises(LeaseLostError):
        fenced.create_customer(NewCustomer("Bo Li", "", "", "", "", "", ""), request_id="c", fence=other)
    assert rig.qbo.request_count == sent
    fenced.create_customer(NewCustomer("Bo Li", "", "", "", "", "", ""), request_id="c")
    assert rig.qbo.request_count == sent + 1


def test_a_record_changed_in_quickbooks_is_rewritten_from_the_newest_snapshot_while_the_lease_is_held() -> None:
    rig = Rig()
    rig.sync("100.00")
    rig.worker.drain("w0")
    older = rig.sync("200.00")
    (payment,) = rig.qbo.live("Payment")

    def edited_meanwhile() -> None:
        payment.sync_token += 1  # a bookkeeper edits the payment in QuickBooks
        rig.sync("300.00")  # and the CRM sends a newer version (its job waits for this one)

    hooked = rig.companies.hook("acme", "update", "before", edited_meanwhile)
    ended = rig.worker.run_next("w1")

    assert ended is not None and ended.job_id == older.job_id and ended.state is SyncJobState.SUCCEEDED
    assert ended.attempts == 1  # in the same attempt: the run started over from the newest snapshot
    assert hooked.amounts == [Decimal("200.00"), Decimal("300.00")]  # the 200.00 was refused, never re-sent
    assert rig.payment_amount() == Decimal("300.00")
    assert rig.service.get_status(rig.principal, P1).sync_token == str(payment.sync_token)


def test_a_record_that_keeps_changing_fails_the_attempt_retryably_after_bounded_rounds() -> None:
    rig = Rig()
    rig.sync("100.00")
    rig.worker.drain("w0")
    job = rig.sync("200.00")
    (payment,) = rig.qbo.live("Payment")

    def edited() -> None:
        payment.sync_token += 1

    rig.companies.hook("acme", "update", "before", edited, times=MAX_STALE_ROUNDS)
    ended = rig.worker.run_next("w1")

    assert rig.qbo.stale_token_refusals == MAX_STALE_ROUNDS
    assert ended is not None and ended.state is SyncJobState.PENDING  # retried later, from the newest snapshot
    assert ended.error is not None and ended.error.reason == "QUICKBOOKS_RECORD_CHANGED" and ended.error.retryable
    assert rig.payment_amount() == Decimal("100.00")
    rig.worker.drain("w1")
    assert rig.stored(job).state is SyncJobState.SUCCEEDED and rig.payment_amount() == Decimal("200.00")


def test_an_older_queued_sync_run_after_a_newer_one_was_accepted_writes_the_newer_snapshot() -> None:
    rig = Rig()
    hooked = rig.companies.watch("acme")
    rig.sync("100.00")
    rig.sync("200.00")
    rig.sync("300.00")
    assert rig.worker.drain("w1") == 3
    # Each job writes the newest accepted snapshot: never an older amount after a newer one (the first
    # writes it; the next two find it unchanged and live in QuickBooks, and write nothing).
    assert hooked.amounts == [Decimal("300.00")]
    assert rig.qbo.live_reads == 4  # each of the two: its customer, its payment
    assert rig.payment_amount() == Decimal("300.00")


# --- one writer per customer identity ------------------------------------------------------------------


def test_jobs_of_two_crm_customers_with_one_name_and_email_never_run_at_once() -> None:
    rig = Rig()
    first = rig.sync("100.00")
    twin = Customer("c2", " ann ", "LEE", email="ANN@example.com ")  # another CRM record, same person
    other = Customer("c3", "Ann", "Lee", email="ann.lee@example.com")
    second = rig.sync("100.00", opportunity=Opportunity("o2", "1002", twin), payment_id="p2")
    third = rig.sync("100.00", opportunity=Opportunity("o3", "1003", other), payment_id="p3")
    assert first.identity_key == second.identity_key != third.identity_key
    assert first.identity_key.startswith("acme/") and first.lock_key != second.lock_key

    started, gate = threading.Event(), threading.Event()
    claimed: list[SyncJob] = []

    def hold() -> None:
        started.set()
        assert gate.wait(30)

    rig.companies.hook("acme", "create_customer", "before", hold)
    thread = threading.Thread(target=lambda: rig.worker.run_next("w1"))
    thread.start()
    try:
        assert started.wait(10)
        claimed.append(rig.claim("w2"))
        with rig.uow_factory() as uow:
            now = rig.clock.now()
            assert uow.jobs.claim_next("w2", now, now + LEASE) is None  # the twin's job waits
            uow.commit()
    finally:
        gate.set()
        thread.join(30)
    assert claimed[0].job_id == third.job_id
    assert rig.stored(first).state is SyncJobState.SUCCEEDED
    assert rig.claim("w2").job_id == second.job_id
