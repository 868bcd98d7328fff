"""Metrics and health of a real `qbsync serve` process (SPEC §12): a sync through gRPC, the worker,
python-quickbooks over HTTP and the bundled emulator (with a 429 and a refused access token on the way),
then /metrics scraped over HTTP and parsed with prometheus-client's own parser; /readyz and gRPC health
while the database is there, gone, and back.

"The database is gone" is the jobs table renamed away under the running process (the test runs as root,
so a SQLite file cannot be made unreadable; renaming the table is what every query of the process then
meets: "no such table"), and renamed back.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

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
from tests.e2e.test_sync_service import opportunity, payment

QBSYNC = [sys.executable, "-m", "qbsync.cli"]
SYNC_PAYMENT = "/qbsync.v1.SyncService/SyncPayment"
GET_SYNC_JOB = "/qbsync.v1.SyncService/GetSyncJob"
WATCH_SYNC_JOB = "/qbsync.v1.SyncService/WatchSyncJob"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = run_emulator("127.0.0.1", 0)
    try:
        admin(server, "settings", {"retry_after": 1})  # a throttled request is retried within its call
        yield server
    finally:
        server.stop()


def admin(server: EmulatorServer, path: str, body: dict[str, Any]) -> Any:
    answer = requests.post(f"{server.admin_url}/{path}", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env.update(
        QBSYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'metrics.db'}",
        QBSYNC_DATA_DIR=str(tmp_path),
        QBSYNC_ENCRYPTION_KEY=generate_key(),
        QBSYNC_SHUTDOWN_GRACE_SECONDS="2",
        **extra,
    )
    return env


class Served:
    """`qbsync serve` in a process of its own, its output in files; the gRPC and metrics addresses it printed."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.out, self.err = tmp_path / "serve.out", tmp_path / "serve.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*QBSYNC, "serve", "--listen", "127.0.0.1:0", "--workers", "1"], env=env, stdout=stdout, stderr=stderr
            )
        deadline = time.monotonic() + 60
        while "/readyz on http://" not in self.out.read_text():
            assert self.process.poll() is None, self.err.read_text()[-3000:]
            assert time.monotonic() < deadline, "qbsync serve did not start"
            time.sleep(0.05)
        out = self.out.read_text()
        grpc_address = re.search(r"serving on (127\.0\.0\.1:\d+)", out)
        metrics_address = re.search(r"/readyz on (http://127\.0\.0\.1:\d+)", out)
        assert grpc_address and metrics_address, out
        self.target, self.http = grpc_address.group(1), metrics_address.group(1)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.http + path, timeout=10)

    def scrape(self) -> Samples:
        answer = self.get("/metrics")
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def eventually(check: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_sync_moves_the_job_rpc_and_quickbooks_metrics_and_readiness_follows_the_database(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    env = base_env(tmp_path, QBSYNC_METRICS_LISTEN="127.0.0.1:0", QBSYNC_HEALTH_PROBE_SECONDS="0.2")
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    injector = bootstrap(settings=settings)
    company = emulator.create_realm(company_name="Measured Movers")
    realm = str(company["realm_id"])
    connect_to_emulated(injector.get(ConnectionService), "acme", company, emulator)
    key = injector.get(ApiKeys).create("acme", frozenset(Permission))
    md = [("authorization", f"Bearer {key}")]
    connecting = len(emulator_requests(emulator, realm))  # what connecting asked, from this test's process

    served = Served(tmp_path, env)
    try:
        assert served.get("/healthz").status_code == 200
        eventually(lambda: served.get("/readyz").status_code == 200, "never ready")
        assert served.get("/readyz").json() == {
            "status": "ok",
            "checks": {"database": "ok", "workers": "ok", "api": "ok"},
        }
        assert served.get("/nothing").status_code == 404
        before = served.scrape()
        assert value(before, "qbsync_database_up") == 1 and value(before, "qbsync_queue_due_jobs") == 0

        # QuickBooks refuses the first access token (refreshed, then on) and throttles the payment's create.
        admin(emulator, "faults", {"kind": "auth401", "realm_id": realm})
        admin(emulator, "faults", {"kind": "throttle", "realm_id": realm, "entity": "Payment", "operation": "create"})
        with grpc.insecure_channel(served.target) as channel:
            stub = g.SyncServiceStub(channel)
            accepted = stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md)
            deadline = time.monotonic() + 60
            while (found := stub.GetSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md)).state not in (
                r.SyncJob.STATE_SUCCEEDED,
                r.SyncJob.STATE_FAILED,
            ):
                assert time.monotonic() < deadline, found
                time.sleep(0.1)
            assert found.state == r.SyncJob.STATE_SUCCEEDED, found
            watched = list(stub.WatchSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md, timeout=10))
            assert [w.state for w in watched] == [r.SyncJob.STATE_SUCCEEDED]  # a finished job: sent, then ended
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=[("authorization", "Bearer nope")])
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        after = served.scrape()

        # The job, counted once by its kind and outcome.
        assert value(after, "qbsync_sync_jobs_ended_total", kind="SYNC_PAYMENT", outcome="succeeded", reason="") == 1
        assert total(after, "qbsync_sync_jobs_ended_total") == 1
        # The RPCs, by method and code, and their latency histograms.
        assert value(after, "qbsync_grpc_server_handled_total", method=SYNC_PAYMENT, code="OK") == 1
        polls = value(after, "qbsync_grpc_server_handled_total", method=GET_SYNC_JOB, code="OK")
        assert polls >= 1
        assert value(after, "qbsync_grpc_server_handled_total", method=GET_SYNC_JOB, code="UNAUTHENTICATED") == 1
        assert value(after, "qbsync_grpc_server_handling_seconds_count", method=SYNC_PAYMENT) == 1
        assert value(after, "qbsync_grpc_server_handled_total", method=WATCH_SYNC_JOB, code="OK") == 1
        assert value(after, "qbsync_grpc_server_handling_seconds_count", method=WATCH_SYNC_JOB) == 1
        assert value(after, "qbsync_grpc_server_handling_seconds_count", method=GET_SYNC_JOB) == polls + 1
        assert value(after, "qbsync_grpc_server_handling_seconds_bucket", method=SYNC_PAYMENT, le="+Inf") == 1
        assert value(after, "qbsync_grpc_server_handling_seconds_sum", method=SYNC_PAYMENT) > 0
        # QuickBooks: the requests by operation and status, the 429, the 401, the retries, the refresh.
        assert value(after, "qbsync_qbo_requests_total", operation="POST payment", status="429") == 1
        assert value(after, "qbsync_qbo_requests_total", operation="POST payment", status="200") == 1
        assert total(after, "qbsync_qbo_requests_total", status="401") == 1
        assert value(after, "qbsync_qbo_throttled_responses_total", operation="POST payment") == 1
        assert value(after, "qbsync_qbo_request_retries_total", cause="throttled") == 1
        assert value(after, "qbsync_qbo_request_retries_total", cause="unauthorized") == 1
        assert value(after, "qbsync_qbo_token_refreshes_total", outcome="refreshed") >= 1
        sent = total(after, "qbsync_qbo_requests_total")
        # Every request of the served process that the emulator saw, no more.
        assert sent == len(emulator_requests(emulator, realm)) - connecting >= 4
        assert value(after, "qbsync_qbo_limiter_wait_seconds_count") == sent  # each waited for the limiter once
        assert total(after, "qbsync_qbo_request_duration_seconds_count") == sent
        # Nothing queued; the claim loop's timestamp is recent.
        assert (
            value(after, "qbsync_queue_due_jobs") == 0 and value(after, "qbsync_queue_oldest_due_job_age_seconds") == 0
        )
        assert time.time() - value(after, "qbsync_worker_claim_loop_last_run_timestamp_seconds") < 30
        assert value(after, "qbsync_sync_job_lease_takeovers_total", kind="SYNC_PAYMENT") == 0

        # The database gone: /readyz 503 naming it, gRPC health NOT_SERVING, /metrics still answers.
        with grpc.insecure_channel(served.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

            assert status() == SERVING
            rename(tmp_path / "metrics.db", "sync_jobs", "sync_jobs_away")
            eventually(lambda: served.get("/readyz").status_code == 503, "/readyz stayed 200 without the database")
            answer = served.get("/readyz").json()
            assert answer["status"] == "not ready" and answer["checks"]["database"] == "unreachable"
            assert answer["checks"]["api"] == "ok"
            eventually(lambda: status() == NOT_SERVING, "gRPC health stayed SERVING without the database")
            gone = served.scrape()
            assert value(gone, "qbsync_database_up") == 0
            assert ("qbsync_queue_due_jobs", frozenset()) not in gone  # absent, not a false 0
            assert served.get("/healthz").status_code == 200  # alive all the same: no restart wanted

            # And back.
            rename(tmp_path / "metrics.db", "sync_jobs_away", "sync_jobs")
            eventually(lambda: served.get("/readyz").status_code == 200, "/readyz stayed 503 with the database back")
            eventually(lambda: status() == SERVING, "gRPC health stayed NOT_SERVING with the database back")
            assert value(served.scrape(), "qbsync_database_up") == 1
    finally:
        served.stop()
    assert served.process.returncode == 0, served.err.read_text()[-3000:]


def rename(database: Path, table: str, to: str) -> None:
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(f"ALTER TABLE {table} RENAME TO {to}")


def emulator_requests(server: EmulatorServer, realm: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{server.admin_url}/requests", params={"realm_id": realm}, timeout=10)
    answer.raise_for_status()
    requests_seen: list[dict[str, Any]] = answer.json()["requests"]
    return requests_seen


def test_a_taken_metrics_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(tmp_path, QBSYNC_METRICS_LISTEN=f"127.0.0.1:{port}")
        migrate(Settings.from_env(env).database_url)
        done = subprocess.run(
            [*QBSYNC, "serve", "--listen", "127.0.0.1:0", "--role", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 78, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"Error: configuration: cannot listen on 127.0.0.1:{port} for metrics: the port is taken "
        "(is another qbsync serving there?); choose another with QBSYNC_METRICS_LISTEN"
    ), done.stderr
    assert "Traceback" not in done.stderr
