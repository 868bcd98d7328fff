"""The logs of a real `qbsync serve` process (SPEC §12): a full sync through gRPC, the worker, python-quickbooks
over HTTP and the bundled emulator, with a QuickBooks outage, throttling, a closed period and access tokens
that live two seconds (so tokens are refreshed over and over, and once after QuickBooks refused one).

Its stderr is not a terminal, so it logs JSON: every line must parse, every job run must end with exactly
one outcome line carrying the job's fields, QuickBooks' failures must be warnings naming the operation,
status and attempt, and no secret involved — access and refresh tokens (every one the emulator issued),
the Intuit app's client secret, the API key, the encryption key — may appear anywhere in what it wrote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from adapters.persistence.encryption import generate_key
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_sync_service import job, opportunity, payment

QBSYNC = [sys.executable, "-m", "qbsync.cli"]
ACCESS_TOKEN_SECONDS = 2
AFTER_CLOSING = Timestamp(seconds=1767312000 + 60 * 86400)  # 2026-03-03: after the books' closing date
TERMINAL = (r.SyncJob.STATE_SUCCEEDED, r.SyncJob.STATE_FAILED)

Json = dict[str, Any]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = run_emulator("127.0.0.1", 0)
    try:
        # Short-lived access tokens (refreshed near expiry, i.e. every couple of seconds) and a Retry-After
        # short enough that a throttled request is retried within its call.
        admin(server, "settings", {"access_token_ttl": ACCESS_TOKEN_SECONDS, "retry_after": 1})
        yield server
    finally:
        server.stop()


def admin(server: EmulatorServer, path: str, body: Json) -> Any:
    answer = requests.post(f"{server.admin_url}/{path}", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


class Served:
    """`qbsync serve` in a process of its own, its stdout and stderr in files (not pipes: never blocks)."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.out, self.err = tmp_path / "serve.out", tmp_path / "serve.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*QBSYNC, "serve", "--listen", "127.0.0.1:0", "--workers", "1"], env=env, stdout=stdout, stderr=stderr
            )
        deadline = time.monotonic() + 60
        while not self.out.read_text().endswith("\n"):
            assert self.process.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, "qbsync serve did not start"
            time.sleep(0.05)
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", self.out.read_text())
        assert match, self.out.read_text()
        self.target = match.group(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def settled(stub: g.SyncServiceStub, name: str, md: list[tuple[str, str]], seconds: float = 60) -> r.SyncJob:
    deadline = time.monotonic() + seconds
    while True:
        found = stub.GetSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=10)
        if found.state in TERMINAL:
            return found
        assert time.monotonic() < deadline, f"{name} did not finish: {found}"
        time.sleep(0.1)


def later(p: r.Payment) -> r.Payment:
    p.received_time.CopyFrom(AFTER_CLOSING)
    return p


def test_a_full_sync_logs_json_lines_one_outcome_per_job_run_warnings_for_quickbooks_and_no_secret(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    encryption_key = generate_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env.update(
        QBSYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'logs.db'}",
        QBSYNC_DATA_DIR=str(tmp_path),
        QBSYNC_ENCRYPTION_KEY=encryption_key,
        QBSYNC_SHUTDOWN_GRACE_SECONDS="2",
        QBSYNC_LOG_LEVEL="DEBUG",  # everything any library says, so that a leak anywhere shows
    )
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    injector = bootstrap(settings=settings)
    company = emulator.create_realm(company_name="Logged Movers")
    realm = str(company["realm_id"])
    connect_to_emulated(injector.get(ConnectionService), "acme", company, emulator)
    key = injector.get(ApiKeys).create("acme", frozenset(Permission))
    md = [("authorization", f"Bearer {key}")]

    served = Served(tmp_path, env)
    try:
        with grpc.insecure_channel(served.target) as channel:
            stub = g.SyncServiceStub(channel)
            # 1. A deposit whose create meets a 503, then a 429: both retried within the call.
            for kind in ("http503", "throttle"):
                admin(emulator, "faults", {"kind": kind, "realm_id": realm, "entity": "Payment", "operation": "create"})
            first = later(payment("pay-1", "500.00"))
            deposit = stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=first), metadata=md)
            jobs = [settled(stub, deposit.name, md)]
            # 2. The close-out, with QuickBooks refusing its first access token (refreshed, then on).
            admin(emulator, "faults", {"kind": "auth401", "realm_id": realm})
            close_out = stub.CloseOutJob(
                s.CloseOutJobRequest(opportunity=opportunity(), job=job(), payments=[first]), metadata=md
            )
            jobs.append(settled(stub, close_out.name, md))
            # 3. A payment in a closed period: failed for good.
            admin(emulator, f"realms/{realm}/closing_date", {"date": "2026-01-31"})
            closed = stub.SyncPayment(
                s.SyncPaymentRequest(opportunity=opportunity("cust-2", "opp-2"), payment=payment("pay-2", "80.00")),
                metadata=md,
            )
            jobs.append(settled(stub, closed.name, md))
            admin(emulator, f"realms/{realm}/closing_date", {"date": None})
            # 4. A payment whose every send of the first attempt meets a 503: the job is retried later.
            admin(
                emulator,
                "faults",
                {"kind": "http503", "count": 4, "realm_id": realm, "entity": "Payment", "operation": "create"},
            )
            outage = stub.SyncPayment(
                s.SyncPaymentRequest(opportunity=opportunity("cust-3", "opp-3"), payment=later(payment("pay-3"))),
                metadata=md,
            )
            jobs.append(settled(stub, outage.name, md))
    finally:
        served.stop()
    assert served.process.returncode == 0, served.err.read_text()[-3000:]
    assert [j.state for j in jobs] == [
        r.SyncJob.STATE_SUCCEEDED,
        r.SyncJob.STATE_SUCCEEDED,
        r.SyncJob.STATE_FAILED,
        r.SyncJob.STATE_SUCCEEDED,
    ]

    text = served.err.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert lines and all({"event", "level", "logger", "timestamp"} <= line.keys() for line in lines)

    # One outcome line per job run (attempts), each with the job's fields; the last one says how it ended.
    outcomes = [line for line in lines if line["logger"] == "core.worker" and "outcome" in line]
    for found in jobs:
        runs = [line for line in outcomes if line["job"] == found.name]
        assert len(runs) == found.attempts, (found.name, runs)
        for line in runs:
            assert line["tenant"] == "acme" and line["attempts"] >= 1 and line["duration_ms"] >= 0
            assert line["kind"] in ("SYNC_PAYMENT", "CLOSE_OUT_JOB") and line["target"]
    assert len(outcomes) == sum(j.attempts for j in jobs)
    by_job = {j.name: [line for line in outcomes if line["job"] == j.name] for j in jobs}
    [one] = by_job[deposit.name]
    assert (one["outcome"], one["level"], one["kind"], one["target"]) == (
        "succeeded",
        "info",
        "SYNC_PAYMENT",
        "payment pay-1",
    )
    [failed] = by_job[closed.name]
    assert (failed["outcome"], failed["level"], failed["reason"]) == ("failed", "warning", "QUICKBOOKS_CLOSED_PERIOD")
    refused = {e["intuit_tid"] for e in emulator_requests(emulator, realm) if e["status"] == 400}
    assert failed["intuit_tid"] in refused  # the id Intuit's support would ask for
    info = error_details_pb2.ErrorInfo()
    assert jobs[2].error.details[0].Unpack(info) and info.metadata["intuit_tid"] == failed["intuit_tid"]  # API too
    retried, succeeded = by_job[outage.name]
    assert (retried["outcome"], retried["level"], retried["reason"]) == (
        "retry_scheduled",
        "info",
        "QUICKBOOKS_UNAVAILABLE",
    )
    assert retried["intuit_tid"] and retried["next_attempt_time"] and retried["attempts"] == 1
    assert (succeeded["outcome"], succeeded["attempts"]) == ("succeeded", 2)

    # QuickBooks' failures: one warning per failed request, with the operation, status and attempt.
    failures = [line for line in lines if line["event"] == "quickbooks request failed"]
    assert all(line["level"] == "warning" and line["status"] == 503 for line in failures)
    assert [line["attempt"] for line in failures] == [1, 1, 2, 3, 4]  # pay-1's one, then pay-3's four
    assert [line["will_retry"] for line in failures] == [True, True, True, True, False]
    assert {line["operation"] for line in failures} == {"creating the payment"}
    [throttled] = [line for line in lines if line["event"] == "quickbooks throttled the request"]
    assert (throttled["level"], throttled["status"], throttled["attempt"], throttled["retry_in_s"]) == (
        "warning",
        429,
        1,
        1.0,
    )

    # Tokens were refreshed, near expiry and after the refused token, and none was lost.
    state = emulator.state.oauth
    refreshed = [line for line in lines if line["event"] == "quickbooks tokens refreshed"]
    assert len(refreshed) >= 2 and state.refreshes[realm] >= len(refreshed)
    assert state.dead_refreshes.get(realm, 0) == 0
    [unauthorized] = [line for line in lines if line["event"] == "quickbooks refused the access token"]
    assert (unauthorized["level"], unauthorized["status"], unauthorized["will_retry"]) == ("info", 401, True)

    secrets = {
        "access token": set(state.access),  # every one issued, expired ones included
        "refresh token": set(state.refresh) | set(state.retired),  # live and rotated away
        "client secret": set(state.apps.values()),
        "API key": {key, key.split("_", 2)[2]},  # whole, and its secret part (qbs_<key id>_<secret>)
        "encryption key": {encryption_key},
    }
    assert len(secrets["access token"]) >= 3 and len(secrets["refresh token"]) >= 3
    written = text + served.out.read_text()
    # Named by kind and counted, not quoted: a failing test must not print the secrets it found.
    leaked = {kind: sum(value in written for value in values) for kind, values in secrets.items()}
    assert leaked == dict.fromkeys(secrets, 0)


def emulator_requests(server: EmulatorServer, realm: str) -> list[Json]:
    answer = requests.get(f"{server.admin_url}/requests", params={"realm_id": realm}, timeout=10)
    answer.raise_for_status()
    return list(answer.json()["requests"])
