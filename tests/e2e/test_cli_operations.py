"""The operators' commands: `connect`, `errors`, `retry` and `payouts` through click's runner on a real SQLite
database, and `emulator` as a real process stopped with SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from core.connection import ConnectionState, QuickBooksConnection
from core.domain import (
    EntityRef,
    EntityType,
    JobError,
    Payout,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
    SyncState,
)
from qbsync.cli import main

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
LOOPBACK_DISCOVERY = "http://127.0.0.1:8765/.well-known/openid_configuration"


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlAlchemyUnitOfWorkFactory]:
    """Configuration as an operator's shell would have it; yields a unit-of-work factory on the same
    database that reads connections with the key file the commands generate."""
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


# --- connect ---------------------------------------------------------------------------------------------


def _connect_args(**overrides: str) -> list[str]:
    options = {
        "--tenant": "acme",
        "--realm-id": "4620",
        "--client-id": "cid",
        "--client-secret": "s3cret-client",
        "--refresh-token": "rt-s3cret",
        "--environment": LOOPBACK_DISCOVERY,
        "--api-base-url": "http://127.0.0.1:8765/v3",
        **overrides,
    }
    return ["connect", *[part for pair in options.items() for part in pair]]


def test_connect_stores_the_connection_encrypted_and_creates_the_tenant(
    ops: SqlAlchemyUnitOfWorkFactory, tmp_path: Path
) -> None:
    code, output = _run(*_connect_args())
    assert code == 0, output
    assert "connected tenant 'acme' to QuickBooks company 4620" in output
    assert "preferences could not be read yet" in output  # nothing serves the endpoint: the read failed
    assert "s3cret" not in output
    with ops() as uow:
        assert uow.tenants.exists("acme")
        stored = uow.connections.get("acme")
    assert stored is not None
    assert (stored.refresh_token, stored.client_secret, stored.access_token) == ("rt-s3cret", "s3cret-client", "")
    assert stored.state is ConnectionState.CONNECTED and stored.api_base_url == "http://127.0.0.1:8765/v3"
    assert b"s3cret" not in (tmp_path / "ops.db").read_bytes()


def test_connect_takes_secrets_from_the_environment(
    ops: SqlAlchemyUnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBSYNC_CONNECT_CLIENT_SECRET", "from-env-secret")
    monkeypatch.setenv("QBSYNC_CONNECT_REFRESH_TOKEN", "from-env-rt")
    args = [a for a in _connect_args() if a not in ("--client-secret", "s3cret-client", "--refresh-token", "rt-s3cret")]
    code, output = _run(*args, "--environment", "sandbox", "--api-base-url", "")
    assert code == 0, output
    with ops() as uow:
        stored = uow.connections.get("acme")
    assert stored is not None and stored.refresh_token == "from-env-rt" and stored.environment == "sandbox"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--api-base-url", "http://qbo.example.com/v3", "plain http is refused for 'qbo.example.com'"),
        ("--environment", "http://10.0.0.5/.well-known/openid_configuration", "plain http is refused for '10.0.0.5'"),
        ("--environment", "Sandbox", "use sandbox, production or a discovery document URL"),
    ],
)
def test_connect_refuses_unsafe_or_unknown_endpoints(
    ops: SqlAlchemyUnitOfWorkFactory, option: str, value: str, message: str
) -> None:
    code, output = _run(*_connect_args(**{option: value}))
    assert code == 2
    assert message in output
    with ops() as uow:
        assert uow.connections.get("acme") is None


# --- errors and retry ----------------------------------------------------------------------------------------


def _failed_job(job_id: str, minutes: int) -> SyncJob:
    return SyncJob(
        job_id=job_id,
        tenant_id="acme",
        kind=SyncJobKind.SYNC_PAYMENT,
        target=EntityRef(EntityType.PAYMENT, f"pay-{job_id}"),
        opportunity_id="O1",
        customer_id="C1",
        create_time=T0,
        update_time=T0 + timedelta(minutes=minutes),
        state=SyncJobState.FAILED,
        attempts=8,
        error=JobError("QUICKBOOKS_REJECTED", f"closed period ({job_id})", retryable=False),
    )


@pytest.fixture
def failures(ops: SqlAlchemyUnitOfWorkFactory) -> SqlAlchemyUnitOfWorkFactory:
    with ops() as uow:
        uow.tenants.ensure("acme")
        uow.tenants.ensure("other")
        uow.jobs.add(_failed_job("old", 1))
        uow.jobs.add(_failed_job("new", 5))
        uow.jobs.add(replace(_failed_job("done", 9), state=SyncJobState.SUCCEEDED, error=None))
        uow.jobs.add(replace(_failed_job("theirs", 7), tenant_id="other"))
        uow.commit()
    return ops


def test_errors_lists_failed_jobs_newest_first(failures: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("errors", "--tenant", "acme")
    assert code == 0, output
    lines = output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["syncJobs/new", "syncJobs/old"]
    assert "QUICKBOOKS_REJECTED: closed period (new)" in lines[0] and "attempts=8" in lines[0]
    code, output = _run("errors", "--tenant", "acme", "--limit", "1")
    assert output.strip().splitlines()[0].startswith("syncJobs/new") and len(output.strip().splitlines()) == 1


def test_errors_for_a_tenant_without_failures_or_unknown(failures: SqlAlchemyUnitOfWorkFactory) -> None:
    with failures() as uow:
        uow.tenants.ensure("calm")
        uow.commit()
    assert _run("errors", "--tenant", "calm") == (0, "no failed syncs for tenant 'calm'\n")
    code, output = _run("errors", "--tenant", "nobody")
    assert code == 2 and "unknown tenant 'nobody'" in output


def test_retry_puts_a_failed_job_back_in_the_queue(failures: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("retry", "--tenant", "acme", "syncJobs/old")
    assert code == 0, output
    assert "syncJobs/old is PENDING again" in output
    with failures() as uow:
        job = uow.jobs.get("acme", "old")
    assert job is not None and job.state is SyncJobState.PENDING and job.max_attempts > job.attempts
    assert [line.split()[0] for line in _run("errors", "--tenant", "acme")[1].splitlines()] == ["syncJobs/new"]


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("syncJobs/done", 1, "only a FAILED job can be retried"),
        ("syncJobs/theirs", 1, "syncJobs/theirs not found"),  # another tenant's job is not found
        ("jobs/old", 2, "must look like syncJobs/{id}"),
    ],
)
def test_retry_refusals(failures: SqlAlchemyUnitOfWorkFactory, name: str, code: int, message: str) -> None:
    exit_code, output = _run("retry", "--tenant", "acme", name)
    assert exit_code == code
    assert message in output


# --- payouts --------------------------------------------------------------------------------------------------


def _payout_record(payout_id: str, state: SyncState, quickbooks_id: str | None = None, error: str = "") -> SyncRecord:
    return SyncRecord("acme", EntityRef(EntityType.PAYOUT, payout_id), state, quickbooks_id, last_error=error)


@pytest.fixture
def payouts(ops: SqlAlchemyUnitOfWorkFactory) -> SqlAlchemyUnitOfWorkFactory:
    with ops() as uow:
        for tenant in ("acme", "other", "calm"):
            uow.tenants.ensure(tenant)
        deposited = Payout("po-jan5", date(2026, 1, 5), Decimal("436.00"), ("p1", "p2"), ("r1",), fees=Decimal("14.00"))
        uow.snapshots.save_payout("acme", deposited)
        uow.sync_records.save(_payout_record("po-jan5", SyncState.SYNCED, "145"))
        waiting = Payout("po-jan7", date(2026, 1, 7), Decimal("75.00"), ("p3",))
        uow.snapshots.save_payout("acme", waiting)
        uow.sync_records.save(
            _payout_record("po-jan7", SyncState.FAILED, error="PAYOUT_PAYMENT_FAILED: payment p3 failed to sync")
        )
        uow.snapshots.save_payout("acme", Payout("po-jan6", date(2026, 1, 6), Decimal("9.99"), ("p4",)))
        uow.sync_records.save(_payout_record("po-jan6", SyncState.PENDING))
        uow.snapshots.save_payout("other", Payout("po-theirs", date(2026, 2, 1), Decimal("1.00"), ("p9",)))
        uow.commit()
    return ops


def test_payouts_lists_each_payout_newest_first_with_its_deposit(payouts: SqlAlchemyUnitOfWorkFactory) -> None:
    code, output = _run("payouts", "--tenant", "acme")
    assert code == 0, output
    assert output.splitlines() == [
        "po-jan7  2026-01-07  75.00  payments=1  FAILED  deposit=-  PAYOUT_PAYMENT_FAILED: payment p3 failed to sync",
        "po-jan6  2026-01-06  9.99  payments=1  PENDING  deposit=-",
        "po-jan5  2026-01-05  436.00  payments=2  SYNCED  deposit=145",
    ]
    code, output = _run("payouts", "--tenant", "acme", "--limit", "2")
    assert [line.split()[0] for line in output.splitlines()] == ["po-jan7", "po-jan6"]


def test_payouts_for_a_tenant_without_any_unknown_or_with_more_than_a_page(
    payouts: SqlAlchemyUnitOfWorkFactory,
) -> None:
    assert _run("payouts", "--tenant", "calm") == (0, "no payouts for tenant 'calm'\n")
    code, output = _run("payouts", "--tenant", "nobody")
    assert code == 2 and "unknown tenant 'nobody'" in output
    with payouts() as uow:
        for day in range(105):  # past the use case's 100 a page: the command asks for the next
            payout = Payout(f"po{day:03}", date(2025, 1, 1) + timedelta(days=day), Decimal("1.00"), (f"q{day}",))
            uow.snapshots.save_payout("calm", payout)
        uow.commit()
    code, output = _run("payouts", "--tenant", "calm", "--limit", "103")
    ids = [line.split()[0] for line in output.splitlines()]
    assert ids == [f"po{day:03}" for day in range(104, 1, -1)]
    assert "NOT_SYNCED  deposit=-" in output.splitlines()[0]  # stored without a record: shown as never synced


# --- emulator -------------------------------------------------------------------------------------------------


def test_emulator_serves_until_sigterm(tmp_path: Path) -> None:
    """Its output is read by one thread from the start (so nothing a first `readline` buffered can be lost),
    and the emulator is used only once it printed the connect command, i.e. once its company exists."""
    errors = (tmp_path / "stderr.txt").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "qbsync.cli", "emulator", "--port", "0", "--realm", "4620"],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env={**os.environ, "QBSYNC_DATA_DIR": str(tmp_path)},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read_all() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # end of output

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    seen: list[str] = []

    def until(text: str) -> str:
        while not any(text in line for line in seen):
            line = lines.get(timeout=30)
            assert line is not None, "".join(seen) + (tmp_path / "stderr.txt").read_text()
            seen.append(line)
        return "".join(seen)

    try:
        match = re.search(r"emulator on (http://127\.0\.0\.1:\d+)", until("emulator on"))
        assert match, "".join(seen)
        url = match.group(1)
        assert "qbsync connect --tenant demo --realm-id 4620" in until("qbsync connect")
        discovery = requests.get(f"{url}/.well-known/openid_configuration", timeout=5).json()
        assert discovery["token_endpoint"] == f"{url}/oauth2/v1/tokens/bearer"
        assert requests.get(f"{url}/_emulator/realms", timeout=5).json()["realms"] == ["4620"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        reader.join(timeout=15)
        out = until("emulator stopped")
    finally:
        if process.poll() is None:
            process.kill()
        errors.close()
    assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert "emulator stopped" in out


def test_a_printed_connect_command_works(ops: SqlAlchemyUnitOfWorkFactory) -> None:
    """The line `qbsync emulator --realm` prints is a valid `qbsync connect` (loopback http accepted)."""
    from adapters.quickbooks.emulator import run_emulator

    server = run_emulator("127.0.0.1", 0)
    try:
        creds = server.create_realm(realm_id="77")
        code, output = _run(
            *_connect_args(
                **{
                    "--realm-id": creds["realm_id"],
                    "--client-id": creds["client_id"],
                    "--client-secret": creds["client_secret"],
                    "--refresh-token": creds["refresh_token"],
                    "--environment": server.discovery_url,
                    "--api-base-url": server.base_api_url,
                }
            )
        )
        live = requests.get(f"{server.admin_url}/realms/77/state", timeout=5).json()["tokens"]["refresh_tokens"]
    finally:
        server.stop()
    assert code == 0, output
    with ops() as uow:
        stored = uow.connections.get("acme")
    assert isinstance(stored, QuickBooksConnection) and stored.realm_id == "77"
    # Connecting read the company's currency, which took an access token: the refresh token given was
    # used once and the rotated one stored (the one the emulator still honours).
    assert stored.home_currency == "USD"
    assert stored.refresh_token in live
    assert "home currency USD, multicurrency off; sales tax automated" in output  # what the read found
