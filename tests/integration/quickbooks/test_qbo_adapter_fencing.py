"""Fencing through the real adapter over HTTP to the emulator (issue 7): a worker whose lease was taken
mid-job sends QuickBooks nothing more, and a stalled worker's update never lands over a newer resync.
The lease is checked as each write request leaves the adapter, so a worker that waited inside it (for the
rate limiter, a token refresh, a retry's back-off) past its lease sends nothing more either.
The writes are counted on the emulator's request log; leases run out on a manual clock, not by waiting."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from qbo_support import FAST_RETRY, TENANT, Company, EmulatedCompany, FakeCompany, QboRig

from adapters.inprocess import InProcessCompanyLock, UnlimitedRequestLimiter
from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from adapters.quickbooks.qbo import QuickBooksAccountingSystems
from adapters.quickbooks.qbo.tokens import TimeoutAuthClient
from core.accounting import NewCustomer, PaymentSpec
from core.connection import QuickBooksConnection
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
)
from core.errors import LeaseLostError
from core.ports import RequestLimiter, WriteFence
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker

if TYPE_CHECKING:
    from tests.unit.support import HookedCompanies, ManualClock

LEASE = timedelta(minutes=10)  # in real seconds too: the heartbeat thread never beats during a test
PAST_LEASE = LEASE + timedelta(seconds=1)
PAID = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
WRITES = ("create", "update", "delete", "void")


class Stalls:
    """Where a worker can wait inside the adapter: for the rate limiter ("limiter"), in a token refresh
    ("refresh"), before a retry (the back-off after a 5xx, the wait a 429 asks for: "backoff"). A test arms
    one; the next wait there lasts past the lease (the manual clock moves on by `PAST_LEASE`), once.
    Unarmed, none of them waits at all."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._armed: set[str] = set()
        self.happened: list[str] = []

    def arm(self, where: str) -> None:
        self._armed.add(where)

    def wait(self, where: str) -> None:
        if where in self._armed:
            self._armed.discard(where)
            self._clock.advance(PAST_LEASE)
            self.happened.append(where)

    def backoff(self, seconds: float) -> None:
        """The adapter's `sleep` (between retries): no real waiting in these tests."""
        self.wait("backoff")


class StallingLimiter(RequestLimiter):
    """Admits every request, after the "limiter" stall when it is armed."""

    def __init__(self, stalls: Stalls) -> None:
        self._stalls = stalls
        self._limiter = UnlimitedRequestLimiter()

    @contextmanager
    def acquire(self, realm_id: str, *, batch: bool = False) -> Iterator[None]:
        self._stalls.wait("limiter")
        with self._limiter.acquire(realm_id, batch=batch):
            yield

    def batch_room(self, realm_id: str) -> bool:
        return True


class StallingAuthClient(TimeoutAuthClient):
    """intuit-oauth's client against the emulator's token endpoint, with the "refresh" stall after Intuit
    answered (the new tokens are real, and are stored)."""

    def __init__(self, connection: QuickBooksConnection, stalls: Stalls) -> None:
        super().__init__(
            connection.client_id,
            connection.client_secret,
            connection.redirect_uri or "http://localhost/callback",
            connection.environment,
            timeout=2.0,
        )
        self._stalls = stalls

    def refresh(self, refresh_token: str | None = None) -> None:
        super().refresh(refresh_token=refresh_token)
        self._stalls.wait("refresh")


class FencedCore:
    """The core on the rig's unit of work and the real adapter (behind a hook), with a manual clock that
    the adapter's tokens, limiter and back-off run on too."""

    def __init__(self, rig: QboRig) -> None:
        # Imported here, as qbo_support does: this directory's modules are imported before `tests` is.
        from tests.unit.support import CountingIds, HookedCompanies, ManualClock

        self.rig = rig
        self.clock: ManualClock = ManualClock(datetime(2026, 4, 2, tzinfo=UTC))
        self.stalls = Stalls(self.clock)
        self.systems = QuickBooksAccountingSystems(
            rig.uow_factory,
            self.clock,
            http_timeout=2.0,
            limiter=StallingLimiter(self.stalls),
            company_lock=InProcessCompanyLock(),
            retry=FAST_RETRY,
            sleep=self.stalls.backoff,
            auth_client_factory=lambda connection: StallingAuthClient(connection, self.stalls),
        )
        self.companies: HookedCompanies = HookedCompanies(self.systems)
        self.service = SyncService(rig.uow_factory, self.companies, self.clock, CountingIds())
        engine = SyncEngine(rig.uow_factory, self.companies, self.clock)
        self.worker = SyncWorker(
            rig.uow_factory, engine, self.clock, lease=LEASE, backoff_base=timedelta(0), backoff_cap=timedelta(0)
        )
        self.principal = Principal(TENANT, frozenset(Permission))

    def sync(self, amount: str, *refunds: Refund) -> SyncJob:
        self.clock.advance(timedelta(seconds=1))
        payment = Payment("p1", Decimal(amount), PaymentMethod.CASH, PAID, "r", refunds)
        return self.service.sync_payment(self.principal, OPP, payment)

    def take_over(self) -> None:
        """The worker running now stalls past its lease; w2 claims the job and runs all that is due."""
        self.clock.advance(PAST_LEASE)
        self.worker.drain("w2")

    def token_expiring(self) -> None:
        """The access token the adapter holds is at its expiry: its next request refreshes it first."""
        session = self.systems.for_tenant(TENANT).session
        session.adopt(dataclasses.replace(session.connection, access_token_expires=self.clock.now()))

    def job(self, job: SyncJob) -> SyncJob:
        return self.service.get_job(self.principal, job.name)

    def audit(self) -> list[str]:
        with self.rig.uow_factory() as uow:
            return [event.kind.value for event in uow.audit.list(TENANT, limit=100)]


@pytest.fixture
def core(rig: QboRig) -> FencedCore:
    return FencedCore(rig)


def writes(rig: QboRig) -> list[dict[str, Any]]:
    return [e for e in rig.log() if e["operation"] in WRITES]


def live(rig: QboRig, entity: str) -> list[dict[str, Any]]:
    state = rig.state()
    voided = set(state["voided"])
    return [r for r in state["entities"][entity] if f"{entity}/{r['Id']}" not in voided]


@pytest.mark.parametrize(("stalls_after", "writes_by_w1"), [("create_customer", 1), ("create", 2)])
def test_a_worker_whose_lease_is_taken_mid_job_sends_quickbooks_no_further_write(
    core: FencedCore, rig: QboRig, stalls_after: str, writes_by_w1: int
) -> None:
    job = core.sync("500.00", Refund("r1", Decimal("50.00"), PAID, "sofa"))
    seen: dict[str, int] = {}

    def take_over() -> None:
        seen["w1"] = len(writes(rig))
        core.take_over()
        seen["w2"] = len(writes(rig))

    core.companies.hook(TENANT, stalls_after, "after", take_over)
    rig.clear_log()
    core.worker.run_next("w1")

    assert seen["w1"] == writes_by_w1  # the customer, and the refund expense when it stalled after that
    assert len(writes(rig)) == seen["w2"] > seen["w1"]  # w1 resumed and sent nothing more
    assert [r["DisplayName"] for r in live(rig, "Customer")] == ["Mary O'Brien"]
    assert len(live(rig, "Purchase")) == 1
    (payment,) = live(rig, "Payment")
    assert Decimal(str(payment["TotalAmt"])) == Decimal("500.00")
    done = core.job(job)
    assert (done.state, done.attempts) == (SyncJobState.SUCCEEDED, 2)  # w2's run, recorded by w2
    assert core.audit().count("SYNC_SUCCEEDED") == 1 and "SYNC_RETRY_SCHEDULED" not in core.audit()


def test_a_stalled_update_sent_after_a_newer_resync_never_overwrites_it(core: FencedCore, rig: QboRig) -> None:
    core.sync("500.00")
    core.worker.drain("w0")
    older = core.sync("400.00")
    newer: list[SyncJob] = []

    def stall_then_resume() -> None:
        # w1's update passed its lease check and is on its way (400.00, the SyncToken it read) when w1
        # stalls; meanwhile the CRM sends 300.00 and w2 writes it.
        newer.append(core.sync("300.00"))
        core.take_over()

    core.companies.hook(TENANT, "update", "sending", stall_then_resume)
    rig.clear_log()
    core.worker.run_next("w1")

    (payment,) = live(rig, "Payment")
    assert Decimal(str(payment["TotalAmt"])) == Decimal("300.00")  # the newer resync stands
    sent = [e for e in writes(rig) if e["entity"] == "Payment"]
    # w2's update (the older job, from the newest snapshot; the newer job finds it unchanged and live, and
    # writes nothing), then w1's stale one, refused (5010), and not retried: after it only the one read
    # for the current SyncToken.
    assert [e["status"] for e in sent] == [200, 400]
    assert [e["operation"] for e in rig.log()[-2:]] == ["update", "read"]
    assert payment["SyncToken"] == "1"
    assert core.job(older).state is core.job(newer[0]).state is SyncJobState.SUCCEEDED
    record = core.service.get_status(core.principal, EntityRef(EntityType.PAYMENT, "p1"))
    assert record.amount == Decimal("300.00") and record.sync_token == "1"
    assert "SYNC_RETRY_SCHEDULED" not in core.audit() and "SYNC_FAILED" not in core.audit()


def test_a_payment_edited_in_quickbooks_is_rewritten_from_the_newest_snapshot(core: FencedCore, rig: QboRig) -> None:
    core.sync("500.00")
    core.worker.drain("w0")
    older = core.sync("400.00")
    (payment,) = live(rig, "Payment")

    def edited_meanwhile() -> None:
        rig.act("Payment", payment["Id"], "update", {"PrivateNote": "edited by the bookkeeper"})
        core.sync("300.00")  # a newer version arrives while this job runs; its own job waits

    core.companies.hook(TENANT, "update", "before", edited_meanwhile)
    rig.clear_log()
    done = core.worker.run_next("w1")

    assert done is not None and done.job_id == older.job_id and done.state is SyncJobState.SUCCEEDED
    assert done.attempts == 1
    sent = [(e["status"], e["operation"]) for e in rig.log() if e["entity"] == "Payment"]
    assert sent == [(400, "update"), (200, "read"), (200, "update")]  # one read for the token, one rewrite
    (rewritten,) = live(rig, "Payment")
    assert Decimal(str(rewritten["TotalAmt"])) == Decimal("300.00") and rewritten["SyncToken"] == "2"
    assert "CRM payment p1" in rewritten["PrivateNote"]


# --- the lease is checked as each request leaves, after every wait inside the adapter -------------------


def _left_to_its_new_owner(core: FencedCore, job: SyncJob) -> None:
    """w1 recorded nothing (the job is as it claimed it); w2 then runs it to the end."""
    stalled = core.job(job)
    assert (stalled.state, stalled.attempts) == (SyncJobState.RUNNING, 1)
    core.worker.drain("w2")
    done = core.job(job)
    assert (done.state, done.attempts) == (SyncJobState.SUCCEEDED, 2)


def test_a_write_that_waited_at_the_rate_limiter_past_its_lease_is_never_sent(core: FencedCore, rig: QboRig) -> None:
    job = core.sync("500.00")
    # The customer create is handed to the adapter with the lease held; its request then waits to be admitted.
    core.companies.hook(TENANT, "create_customer", "before", lambda: core.stalls.arm("limiter"))
    rig.clear_log()
    core.worker.run_next("w1")

    assert core.stalls.happened == ["limiter"]
    assert writes(rig) == []  # admitted after its lease ran out: not sent
    _left_to_its_new_owner(core, job)
    assert [(e["entity"], e["status"]) for e in writes(rig)] == [("Customer", 200), ("Payment", 200)]  # w2's
    assert [r["DisplayName"] for r in live(rig, "Customer")] == ["Mary O'Brien"]


def test_a_write_whose_token_refresh_outlasted_its_lease_is_never_sent(core: FencedCore, rig: QboRig) -> None:
    job = core.sync("500.00")
    first_token = rig.connection().access_token

    def token_expires_then_refresh_stalls() -> None:
        core.token_expiring()
        core.stalls.arm("refresh")

    core.companies.hook(TENANT, "create_customer", "before", token_expires_then_refresh_stalls)
    rig.clear_log()
    core.worker.run_next("w1")

    assert core.stalls.happened == ["refresh"]
    assert rig.connection().access_token != first_token  # the refresh went through and was kept
    assert writes(rig) == []  # but the write waiting on it was not sent
    _left_to_its_new_owner(core, job)
    assert [(e["entity"], e["status"]) for e in writes(rig)] == [("Customer", 200), ("Payment", 200)]


@pytest.mark.parametrize(("fault", "status"), [("http500", 500), ("throttle", 429)])
def test_a_retry_is_not_sent_once_the_lease_ran_out_in_the_back_off(
    core: FencedCore, rig: QboRig, fault: str, status: int
) -> None:
    job = core.sync("500.00")
    rig.fault(fault, entity="Customer", operation="create")
    core.companies.hook(TENANT, "create_customer", "before", lambda: core.stalls.arm("backoff"))
    rig.clear_log()
    core.worker.run_next("w1")

    assert core.stalls.happened == ["backoff"]  # the back-off after a 5xx, or the wait a 429 asks for
    assert [(e["entity"], e["status"]) for e in writes(rig)] == [("Customer", status)]  # the retry was not sent
    _left_to_its_new_owner(core, job)
    assert [(e["entity"], e["status"]) for e in writes(rig)][1:] == [("Customer", 200), ("Payment", 200)]
    assert [r["DisplayName"] for r in live(rig, "Customer")] == ["Mary O'Brien"]


def test_a_refusal_is_not_sent_again_under_a_fresh_requestid_once_the_lease_is_lost(
    core: FencedCore, rig: QboRig
) -> None:
    rig.admin("POST", f"/realms/{rig.realm_id}/closing_date", {"date": "2026-04-30"})  # paid on 2026-04-01
    job = core.sync("500.00")
    # w1 stalls while its payment create is on the wire; QuickBooks refuses it (closed books).
    core.companies.hook(TENANT, "create", "sending", lambda: core.clock.advance(PAST_LEASE))
    rig.clear_log()
    core.worker.run_next("w1")

    sent = [e for e in writes(rig) if e["entity"] == "Payment"]
    assert [e["status"] for e in sent] == [400]  # not confirmed under a fresh requestid: the lease is gone
    stalled = core.job(job)
    assert (stalled.state, stalled.error) == (SyncJobState.RUNNING, None)  # w1 did not fail the job either
    assert "SYNC_FAILED" not in core.audit()


def test_a_stalled_update_is_not_sent_at_all_once_a_newer_resync_took_over(core: FencedCore, rig: QboRig) -> None:
    core.sync("500.00")
    core.worker.drain("w0")
    older = core.sync("400.00")
    newer: list[SyncJob] = []

    def stall_then_resume() -> None:
        # w1 handed its update (400.00) to the adapter with its lease held, and stalls before it is sent.
        newer.append(core.sync("300.00"))
        core.take_over()

    core.companies.hook(TENANT, "update", "before", stall_then_resume)
    rig.clear_log()
    core.worker.run_next("w1")

    (payment,) = live(rig, "Payment")
    assert Decimal(str(payment["TotalAmt"])) == Decimal("300.00")
    sent = [e for e in writes(rig) if e["entity"] == "Payment"]
    # w2's one update (its second job finds the payment unchanged and live); w1's never left, not even to be
    # refused.
    assert [e["status"] for e in sent] == [200]
    assert payment["SyncToken"] == "1"
    assert core.job(older).state is core.job(newer[0]).state is SyncJobState.SUCCEEDED
    assert "SYNC_RETRY_SCHEDULED" not in core.audit() and "SYNC_FAILED" not in core.audit()


# --- the port's contract, on the fake and on the emulator: the fence is checked once per write sent ---------


class Gate(WriteFence):
    """A fence that counts its checks, and refuses once closed."""

    def __init__(self) -> None:
        self.open = True
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if not self.open:
            raise LeaseLostError("the gate is closed")


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def test_every_write_checks_its_fence_as_it_is_sent_and_a_refused_one_writes_nothing(company: Company) -> None:
    system, gate = company.system, Gate()
    customer = system.create_customer(NewCustomer("Gate Keeper", "", "", "", "", "", "n"), request_id="c", fence=gate)
    spec = PaymentSpec(customer.id, Decimal("10.00"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "note", "[m]")
    paid = system.create(spec, request_id="p", fence=gate)
    updated = system.update(paid, dataclasses.replace(spec, amount=Decimal("12.00")), request_id="u", fence=gate)
    assert gate.checks == 3  # one per write request sent; reads (settings, look-ups) are not fenced

    gate.open = False
    refused = [
        lambda: system.create_customer(NewCustomer("Shut Out", "", "", "", "", "", "n"), request_id="c2", fence=gate),
        lambda: system.create(dataclasses.replace(spec, marker="[m2]"), request_id="p2", fence=gate),
        lambda: system.update(updated, spec, request_id="u2", fence=gate),
    ]
    for write in refused:
        with pytest.raises(LeaseLostError):
            write()
    assert gate.checks == 6
    assert "Shut Out" not in {c.display_name for c in system.find_customers("Shut Out", "")}
    assert company.live_count("Payment") == 1
    assert company.payment_amount(updated.id) == Decimal("12.00")
