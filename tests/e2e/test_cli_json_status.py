"""The operators' scripting surface: `errors --json`, `payouts --json`, `status` (text and --json) and
`retry --all`, through click's runner on a real SQLite database; mistakes are one line and exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from core.domain import (
    EntityRef,
    EntityType,
    JobError,
    Payout,
    PayoutAdjustment,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
    SyncState,
)
from qbsync.cli import main

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
DISCOVERY = "http://127.0.0.1:8765/.well-known/openid_configuration"


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlAlchemyUnitOfWorkFactory]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("QBSYNC_DATABASE_URL", url)
    monkeypatch.setenv("QBSYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QBSYNC_ENCRYPTION_KEY", raising=False)
    migrate(url)
    engine = create_engine_for(url)
    try:
        yield SqlAlchemyUnitOfWorkFactory(engine, SecretBox(key_file=tmp_path / "data" / "secret.key"))
    finally:
        engine.dispose()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _job(job_id: str, minutes: int, tenant: str = "acme", state: SyncJobState = SyncJobState.FAILED) -> SyncJob:
    failed = state is SyncJobState.FAILED
    return SyncJob(
        job_id=job_id,
        tenant_id=tenant,
        kind=SyncJobKind.SYNC_PAYMENT,
        target=EntityRef(EntityType.PAYMENT, f"pay-{job_id}"),
        opportunity_id="O1",
        customer_id="C1",
        create_time=T0,
        update_time=T0 + timedelta(minutes=minutes),
        state=state,
        attempts=8,
        error=JobError("QUICKBOOKS_REJECTED", f"closed period ({job_id})", False, {"code": "6140"}) if failed else None,
    )


@pytest.fixture
def failures(ops: SqlAlchemyUnitOfWorkFactory) -> SqlAlchemyUnitOfWorkFactory:
    with ops() as uow:
        for tenant in ("acme", "other", "calm"):
            uow.tenants.ensure(tenant)
        for index in range(105):  # more than one page of the use case (100): --all must read them all
            uow.jobs.add(_job(f"f{index:03}", index))
        uow.jobs.add(_job("done", 200, state=SyncJobState.SUCCEEDED))
        uow.jobs.add(_job("theirs", 7, tenant="other"))
        uow.commit()
    return ops


# --- errors --json -------------------------------------------------------------------------------------------


def test_errors_json_carries_every_field_newest_first(failures: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("errors", "--tenant", "acme", "--limit", "2", "--json")
    assert code == 0, output
    jobs = json.loads(output)
    assert [job["name"] for job in jobs] == ["syncJobs/f104", "syncJobs/f103"]
    assert jobs[0] == {
        "name": "syncJobs/f104",
        "kind": "SYNC_PAYMENT",
        "target": {"type": "PAYMENT", "id": "pay-f104"},
        "state": "FAILED",
        "attempts": 8,
        "create_time": "2026-02-01T09:00:00Z",
        "update_time": "2026-02-01T10:44:00Z",
        "error": {
            "reason": "QUICKBOOKS_REJECTED",
            "message": "closed period (f104)",
            "retryable": False,
            "metadata": {"code": "6140"},
        },
    }
    assert json.loads(_run("errors", "--tenant", "calm", "--json")[1]) == []  # none: still a JSON document


# --- retry --all ---------------------------------------------------------------------------------------------


def test_retry_all_retries_every_failed_job_once(failures: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("retry", "--tenant", "acme", "--all")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[-1] == "retried 105 failed jobs of tenant 'acme'"
    named = [line.split()[0] for line in lines[:-1]]
    assert len(named) == len(set(named)) == 105  # each once, across the two pages
    assert set(named) == {f"syncJobs/f{index:03}" for index in range(105)}
    with failures() as uow:
        acme = [uow.jobs.get("acme", f"f{index:03}") for index in range(105)]
        theirs = uow.jobs.get("other", "theirs")
        done = uow.jobs.get("acme", "done")
    assert all(job is not None and job.state is SyncJobState.PENDING for job in acme)
    assert theirs is not None and theirs.state is SyncJobState.FAILED  # another tenant's: untouched
    assert done is not None and done.state is SyncJobState.SUCCEEDED
    assert json.loads(_run("errors", "--tenant", "acme", "--json")[1]) == []
    # Nothing left to retry: a count of zero, not an error.
    assert _run("retry", "--tenant", "acme", "--all") == (0, "retried 0 failed jobs of tenant 'acme'\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retry", "--tenant", "acme"], "give either a job name (syncJobs/ID"),
        (["retry", "--tenant", "acme", "--all", "syncJobs/f001"], "give either a job name (syncJobs/ID"),
        (["retry", "--tenant", "nobody", "--all"], "unknown tenant 'nobody'"),
        (["retry", "--tenant", "acme", "jobs/f001"], "name: must look like syncJobs/{id}"),
        (["errors", "--tenant", "nobody", "--json"], "unknown tenant 'nobody'"),
        (["payouts", "--tenant", "nobody", "--json"], "unknown tenant 'nobody'"),
        (["status", "--tenant", "nobody", "payment:pay-1"], "unknown tenant 'nobody'"),
        (["status", "--tenant", "acme", "payment"], "ENTITY_TYPE:ID must look like payment:pay-1, not 'payment'"),
        (["status", "--tenant", "acme", "payment:"], "ENTITY_TYPE:ID must look like payment:pay-1"),
        (["status", "--tenant", "acme", "paymnt:pay-1"], "unknown entity type 'paymnt': use one of payment, refund"),
        (["status", "--tenant", "acme", "payment:pay\x00-1"], "entity.id: must not contain control"),
    ],
)
def test_operator_mistakes_are_one_line_and_exit_2(
    failures: SqlAlchemyUnitOfWorkFactory, args: list[str], message: str
) -> None:
    code, output = _run(*args)
    assert code == 2
    assert output.splitlines() == [output.strip()] and output.startswith("Error: ")
    assert message in output
    with failures() as uow:
        job = uow.jobs.get("acme", "f001")
    assert job is not None and job.state is SyncJobState.FAILED  # nothing was retried


# --- status --------------------------------------------------------------------------------------------------


@pytest.fixture
def records(ops: SqlAlchemyUnitOfWorkFactory) -> SqlAlchemyUnitOfWorkFactory:
    code, output = _run(
        "connect",
        *("--tenant", "acme", "--realm-id", "4620", "--client-id", "cid", "--client-secret", "cs"),
        *("--refresh-token", "rt", "--environment", DISCOVERY, "--api-base-url", "http://127.0.0.1:8765/v3"),
    )
    assert code == 0, output
    with ops() as uow:
        uow.tenants.ensure("calm")
        uow.sync_records.save(
            SyncRecord(
                "acme",
                EntityRef(EntityType.PAYMENT, "pay-1"),
                SyncState.SYNCED,
                "42",
                quickbooks_type="Payment",
                last_synced_time=T0,
            )
        )
        uow.sync_records.save(
            SyncRecord(
                "acme",
                EntityRef(EntityType.INVOICE, "job-9"),
                SyncState.FAILED,
                last_error="the books are closed before 2026-01-31",
            )
        )
        uow.commit()
    return ops


def test_status_shows_a_synced_record_with_its_link(records: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("status", "--tenant", "acme", "PAYMENT:pay-1", "--json")
    assert code == 0, output
    assert json.loads(output) == {
        "entity": {"type": "PAYMENT", "id": "pay-1"},
        "state": "SYNCED",
        "quickbooks_id": "42",
        "last_synced_time": "2026-02-01T09:00:00Z",
        "last_error": None,
        "resync_available": True,
        "link": "https://app.sandbox.qbo.intuit.com/app/recvpayment?txnId=42&deeplinkcompanyid=4620",
    }
    code, output = _run("status", "--tenant", "acme", "payment:pay-1")
    assert code == 0, output
    assert output.splitlines() == [
        "payment:pay-1  SYNCED",
        "  quickbooks id:  42",
        "  last synced:    2026-02-01T09:00:00Z",
        "  last error:     -",
        "  link:           https://app.sandbox.qbo.intuit.com/app/recvpayment?txnId=42&deeplinkcompanyid=4620",
    ]


def test_status_of_a_failed_or_unknown_record(records: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("status", "--tenant", "acme", "invoice:job-9", "--json")
    assert code == 0, output
    status = json.loads(output)
    assert status["state"] == "FAILED" and status["last_error"] == "the books are closed before 2026-01-31"
    assert status["link"] is None and status["quickbooks_id"] is None and status["resync_available"] is False
    code, output = _run("status", "--tenant", "acme", "invoice:job-9")
    assert "  link:           - (not in QuickBooks yet)" in output.splitlines()
    # Another tenant's record, like one never sent, is not found (one line, exit 1).
    for tenant, entity in (("calm", "payment:pay-1"), ("acme", "refund:ref-1")):
        code, output = _run("status", "--tenant", tenant, entity)
        assert code == 1 and output.splitlines() == [output.strip()]
        assert "not found (qbsync was never sent it)" in output


# --- payouts --json ------------------------------------------------------------------------------------------


def test_payouts_json_carries_the_parts_and_the_deposit(ops: SqlAlchemyUnitOfWorkFactory) -> None:
    with ops() as uow:
        uow.tenants.ensure("acme")
        payout = Payout(
            "po-jan5",
            date(2026, 1, 5),
            Decimal("431.00"),
            ("p1", "p2"),
            ("r1",),
            fees=Decimal("14.00"),
            adjustments=(PayoutAdjustment(Decimal("-5.00"), "reserve"),),
        )
        uow.snapshots.save_payout("acme", payout)
        record = SyncRecord("acme", EntityRef(EntityType.PAYOUT, "po-jan5"), SyncState.SYNCED, "145")
        uow.sync_records.save(replace(record, last_synced_time=T0))
        uow.snapshots.save_payout("acme", Payout("po-jan7", date(2026, 1, 7), Decimal("75.00"), ("p3",)))
        uow.sync_records.save(
            SyncRecord("acme", EntityRef(EntityType.PAYOUT, "po-jan7"), SyncState.FAILED, last_error="p3 failed")
        )
        uow.commit()
    code, output = _run("payouts", "--tenant", "acme", "--json")
    assert code == 0, output
    listed = json.loads(output)
    assert [p["payout_id"] for p in listed] == ["po-jan7", "po-jan5"]
    assert listed[1] == {
        "payout_id": "po-jan5",
        "arrival_date": "2026-01-05",
        "amount": "431.00",
        "payment_ids": ["p1", "p2"],
        "refund_ids": ["r1"],
        "fees": "14.00",
        "chargebacks": "0.00",
        "adjustments": [{"amount": "-5.00", "memo": "reserve"}],
        "state": "SYNCED",
        "quickbooks_id": "145",
        "last_synced_time": "2026-02-01T09:00:00Z",
        "last_error": None,
    }
    assert listed[0]["state"] == "FAILED" and listed[0]["last_error"] == "p3 failed"
    assert listed[0]["quickbooks_id"] is None
