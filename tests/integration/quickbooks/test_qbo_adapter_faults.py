"""Failures on the way to QuickBooks, through the core and the real adapter against the emulator: tokens
expiring or dead, throttling, lost answers on every kind of write, stale SyncTokens."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import CoreRig, QboRig

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.quickbooks.emulator import EmulatorServer
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits
from adapters.system import SystemClock
from core.connection import ConnectionState
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncJobState,
)

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
MOVE = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))
DEPOSIT = Payment("p1", D("500.00"), PaymentMethod.CASH, T, "ref-p1", (Refund("r1", D("50.00"), T, "sofa"),))


@pytest.fixture
def core(rig: QboRig) -> CoreRig:
    return CoreRig(rig)


def live(rig: QboRig, entity: str) -> list[dict[str, Any]]:
    state = rig.state()
    voided = set(state["voided"])
    return [r for r in state["entities"][entity] if f"{entity}/{r['Id']}" not in voided]


# --- tokens ----------------------------------------------------------------------------------------


def test_an_access_token_expiring_mid_run_is_refreshed_and_the_rotated_token_saved(core: CoreRig, rig: QboRig) -> None:
    core.succeed(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    before = rig.connection()
    rig.admin("POST", "/tokens/expire", {"realm_id": rig.realm_id})  # QBO now answers 401 to the stored token
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [DEPOSIT]))
    after = rig.connection()
    assert after.refresh_token != before.refresh_token  # rotated, and saved
    assert after.access_token != before.access_token
    assert after.state is ConnectionState.CONNECTED
    assert any(e["status"] == 401 for e in rig.log())
    assert len(live(rig, "Invoice")) == 1
    # The saved pair works: another process' adapter, built from what was stored, refreshes with it.
    rig.admin("POST", "/tokens/expire", {"realm_id": rig.realm_id})
    other_process = QuickBooksAccountingSystems(
        rig.uow_factory, SystemClock(), limiter=InProcessRequestLimiter(), company_lock=InProcessCompanyLock()
    )
    other = QboRig(rig.server, rig.realm_id, rig.uow_factory, other_process)
    assert [c.display_name for c in other.system.find_customers("Mary O'Brien", "mary@example.com")] == ["Mary O'Brien"]
    assert rig.connection().refresh_token not in (before.refresh_token, after.refresh_token)


def test_a_dead_refresh_token_needs_a_reconnect(core: CoreRig, rig: QboRig) -> None:
    rig.admin("POST", "/tokens/revoke", {"realm_id": rig.realm_id})
    rig.admin("POST", "/tokens/expire", {"realm_id": rig.realm_id})
    done = core.finish(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    assert done.state is SyncJobState.FAILED
    assert done.error.reason == "QUICKBOOKS_RECONNECT_REQUIRED"
    connection = rig.connection()
    assert connection.state is ConnectionState.RECONNECT_REQUIRED and "invalid_grant" in connection.last_error
    assert connection.refresh_token not in done.error.message and connection.client_secret not in done.error.message


# --- throttling --------------------------------------------------------------------------------


@pytest.mark.parametrize("throttle_format", ["json", "xml"])
def test_throttling_loses_no_job_and_provokes_no_storm(emulator: EmulatorServer, throttle_format: str) -> None:
    # The emulator allows 3 requests a second; qbsync's limiter is left at Intuit's 10 so that 429s happen.
    rig = QboRig.connect(emulator, emulator_limits={"per_second": 3, "per_minute": 0, "concurrent": 0})
    rig.settings(retry_after=1, throttle_format=throttle_format)
    core = CoreRig(rig)
    jobs = []
    for n in range(5):
        opportunity = Opportunity(f"o{n}", f"10{n}", Customer(f"c{n}", "Client", str(n), email=f"c{n}@example.com"))
        pay = Payment(f"p{n}", D("100.00"), PaymentMethod.CASH, T, "", (Refund(f"r{n}", D("10.00"), T, ""),))
        jobs.append(core.service.sync_payment(core.principal, opportunity, pay))
    for job in jobs:
        core.succeed(job)
    log = rig.log()
    throttled = [e for e in log if e["status"] == 429]
    print(f"\n{throttle_format}: {len(log)} requests, {len(throttled)} throttled")
    assert len(live(rig, "Payment")) == 5 and len(live(rig, "Purchase")) == 5
    assert len(throttled) <= len(log) // 2  # each 429 is followed by a wait, never a burst of retries


def test_a_limiter_matching_the_company_limits_avoids_429s(emulator: EmulatorServer) -> None:
    rig = QboRig.connect(
        emulator,
        limits=RateLimits(per_minute=500, per_second=3, in_flight=2),
        emulator_limits={"per_second": 3, "per_minute": 0, "concurrent": 2},
    )
    core = CoreRig(rig)
    for n in range(3):
        opportunity = Opportunity(f"o{n}", f"10{n}", Customer(f"c{n}", "Client", str(n), email=f"c{n}@example.com"))
        core.succeed(
            core.service.sync_payment(
                core.principal, opportunity, Payment(f"p{n}", D("100.00"), PaymentMethod.CASH, T, "")
            )
        )
    assert [e for e in rig.log() if e["status"] == 429] == []


# --- lost answers on every write ------------------------------------------------------------------

FAULTS = ["http500", "http503", "timeout", "reset", "commit_then_reset", "commit_then_500"]
WRITES = ["Customer", "Purchase", "Invoice", "Payment"]


@pytest.mark.parametrize("entity", WRITES)
@pytest.mark.parametrize("kind", FAULTS)
def test_a_failed_create_leaves_exactly_one_record(core: CoreRig, rig: QboRig, kind: str, entity: str) -> None:
    rig.fault(kind, entity=entity, operation="create", seconds=3)  # the adapter's timeout is 2 s
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [DEPOSIT]))
    assert any(e["fault"] == kind for e in rig.log())
    for name in WRITES:
        assert len(live(rig, name)) == 1, (name, live(rig, name))
    (invoice,) = live(rig, "Invoice")
    assert D(str(invoice["Balance"])) == D("0.00")


@pytest.mark.parametrize("kind", ["http500", "timeout", "commit_then_reset", "commit_then_500"])
def test_a_failed_update_is_applied_once(core: CoreRig, rig: QboRig, kind: str) -> None:
    core.succeed(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    rig.fault(kind, entity="Payment", operation="update", seconds=3)
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [DEPOSIT]))
    (pay,) = live(rig, "Payment")
    assert sorted(line["LinkedTxn"][0]["TxnType"] for line in pay["Line"]) == ["Expense", "Invoice"]
    assert D(str(pay["UnappliedAmt"])) == D("100.00")


def test_faults_that_outlast_the_retries_fail_the_attempt_not_the_job(core: CoreRig, rig: QboRig) -> None:
    rig.fault("http503", entity="Payment", operation="create", count=4)  # every send of one attempt
    done = core.succeed(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    assert done.attempts == 2  # the worker ran the job again; the core looked before creating
    assert len(live(rig, "Payment")) == 1


# --- stale SyncToken ----------------------------------------------------------------------------


def test_a_record_edited_in_quickbooks_meanwhile_is_reread_and_updated(core: CoreRig, rig: QboRig) -> None:
    core.succeed(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    payment_id = core.service.get_status(core.principal, EntityRef(EntityType.PAYMENT, "p1")).quickbooks_id
    rig.act("Payment", payment_id, "update", {"PrivateNote": "edited by the bookkeeper"})
    rig.clear_log()
    core.succeed(core.service.close_out_job(core.principal, OPP, MOVE, [DEPOSIT]))
    assert any(e["status"] == 400 for e in rig.log())  # the 5010
    (pay,) = live(rig, "Payment")
    assert "CRM payment p1" in pay["PrivateNote"] and pay["SyncToken"] == "2"


# --- closed books ---------------------------------------------------------------------------------


def test_a_closed_period_fails_the_job_naming_the_date(core: CoreRig, rig: QboRig) -> None:
    closing_date = f"/realms/{rig.realm_id}/closing_date"
    rig.admin("POST", closing_date, {"date": "2026-04-30"})  # the payment is dated 2026-04-01
    payment = Payment("p1", D("500.00"), PaymentMethod.CASH, T, "ref-p1")
    job = core.service.sync_payment(core.principal, OPP, payment)
    done = core.finish(job)
    assert done.state is SyncJobState.FAILED
    assert done.attempts == 1  # not retryable: a person must reopen the books first
    assert done.error.reason == "QUICKBOOKS_CLOSED_PERIOD" and not done.error.retryable
    print(f"\n{done.error.message}")
    assert "2026-04-01" in done.error.message and "closed" in done.error.message
    assert "Close the books" in done.error.message
    writes = [e for e in rig.log() if e["entity"] == "Payment" and e["operation"] == "create"]
    # The job's requestid, then one fresh requestid confirming the refusal is not a replay; nothing more.
    assert [e["status"] for e in writes] == [400, 400]
    assert len({e["requestid"] for e in writes}) == 2 and not any(e["replayed"] for e in writes)
    assert live(rig, "Payment") == []

    rig.admin("POST", closing_date, {"date": None})  # the bookkeeper reopens the period
    rig.clear_log()
    core.service.retry(core.principal, job.name)
    core.succeed(job)
    (pay,) = live(rig, "Payment")
    assert pay["TxnDate"] == "2026-04-01" and D(str(pay["TotalAmt"])) == D("500.00")
    # The job's own requestid still answers with the old refusal (QBO replays errors too); the fresh one wrote.
    writes = [e for e in rig.log() if e["entity"] == "Payment" and e["operation"] == "create"]
    assert [(e["status"], e["replayed"]) for e in writes] == [(400, True), (200, False)]


def test_a_payment_closed_after_it_was_synced_fails_the_close_out_until_reopened(core: CoreRig, rig: QboRig) -> None:
    closing_date = f"/realms/{rig.realm_id}/closing_date"
    core.succeed(core.service.sync_payment(core.principal, OPP, DEPOSIT))
    rig.admin("POST", closing_date, {"date": "2026-04-02"})  # payment 2026-04-01 closed; the job's 04-03 open
    job = core.service.close_out_job(core.principal, OPP, MOVE, [DEPOSIT])
    done = core.finish(job)
    assert done.state is SyncJobState.FAILED and done.attempts == 1
    assert done.error.reason == "QUICKBOOKS_CLOSED_PERIOD"
    assert "update the payment" in done.error.message and "2026-04-01" in done.error.message
    (invoice,) = live(rig, "Invoice")  # written before the payment was refused
    assert D(str(invoice["Balance"])) == D("350.00")

    rig.admin("POST", closing_date, {"date": None})
    core.service.retry(core.principal, job.name)
    core.succeed(job)
    (pay,) = live(rig, "Payment")
    assert sorted(line["LinkedTxn"][0]["TxnType"] for line in pay["Line"]) == ["Expense", "Invoice"]
    assert len(live(rig, "Invoice")) == 1 and D(str(live(rig, "Invoice")[0]["Balance"])) == D("0.00")
