"""Fencing through the real adapter over HTTP to the emulator (issue 7): a worker whose lease was taken
mid-job sends QuickBooks nothing more, and a stalled worker's update never lands over a newer resync.
The writes are counted on the emulator's request log; leases run out on a manual clock, not by waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from qbo_support import TENANT, QboRig

from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    JobState,
    Opportunity,
    Payment,
    PaymentMethod,
    Permission,
    Principal,
    Refund,
    SyncJob,
)
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


class FencedCore:
    """The core on the rig's unit of work and the real adapter (behind a hook), with a manual clock."""

    def __init__(self, rig: QboRig) -> None:
        # Imported here, as qbo_support does: this directory's modules are imported before `tests` is.
        from tests.unit.support import CountingIds, HookedCompanies, ManualClock

        self.rig = rig
        self.clock: ManualClock = ManualClock(datetime(2026, 4, 2, tzinfo=UTC))
        self.companies: HookedCompanies = HookedCompanies(rig.systems)
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

    def job(self, job: SyncJob) -> SyncJob:
        return self.service.get_job(self.principal, job.name)

    def audit(self) -> list[str]:
        with self.rig.uow_factory() as uow:
            return [event.kind for event in uow.audit.list(TENANT, limit=100)]


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
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)  # w2's run, recorded by w2
    assert core.audit().count("SYNC_SUCCEEDED") == 1 and "SYNC_RETRY_SCHEDULED" not in core.audit()


def test_a_stalled_update_sent_after_a_newer_resync_never_overwrites_it(core: FencedCore, rig: QboRig) -> None:
    core.sync("500.00")
    core.worker.drain("w0")
    older = core.sync("400.00")
    newer: list[SyncJob] = []

    def stall_then_resume() -> None:
        # w1 checked its lease and is sending 400.00 with the SyncToken it read when it stalls; meanwhile the
        # CRM sends 300.00 and w2 writes it.
        newer.append(core.sync("300.00"))
        core.take_over()

    core.companies.hook(TENANT, "update", "before", stall_then_resume)
    rig.clear_log()
    core.worker.run_next("w1")

    (payment,) = live(rig, "Payment")
    assert Decimal(str(payment["TotalAmt"])) == Decimal("300.00")  # the newer resync stands
    sent = [e for e in writes(rig) if e["entity"] == "Payment"]
    # w2's two updates (the older job, then the newer, both from the newest snapshot), then w1's stale one,
    # refused (5010), and not retried: after it only the one read for the current SyncToken.
    assert [e["status"] for e in sent] == [200, 200, 400]
    assert [e["operation"] for e in rig.log()[-2:]] == ["update", "read"]
    assert payment["SyncToken"] == "2"
    assert core.job(older).state is core.job(newer[0]).state is JobState.SUCCEEDED
    record = core.service.get_status(core.principal, EntityRef(EntityType.PAYMENT, "p1"))
    assert record.amount == Decimal("300.00") and record.sync_token == "2"
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

    assert done is not None and done.job_id == older.job_id and done.state is JobState.SUCCEEDED
    assert done.attempts == 1
    sent = [(e["status"], e["operation"]) for e in rig.log() if e["entity"] == "Payment"]
    assert sent == [(400, "update"), (200, "read"), (200, "update")]  # one read for the token, one rewrite
    (rewritten,) = live(rig, "Payment")
    assert Decimal(str(rewritten["TotalAmt"])) == Decimal("300.00") and rewritten["SyncToken"] == "2"
    assert "CRM payment p1" in rewritten["PrivateNote"]
