"""`qbsync serve --role api|worker|all` as separate processes sharing one database: an API process accepts
syncs but runs none, a worker process runs them without opening a port, and both stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = run_emulator("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "QBSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'roles.db'}",
        "QBSYNC_DATA_DIR": str(tmp_path),
        "QBSYNC_ENCRYPTION_KEY": generate_key(),
        "QBSYNC_SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.pop("QBSYNC_ROLE", None)
    env.pop("QBSYNC_WORKERS", None)
    return {**env, **extra}


def _connected_key(env: dict[str, str], emulator: EmulatorServer, tenant: str) -> list[tuple[str, str]]:
    """Migrates, connects `tenant` to the emulator and returns call metadata with a key of the tenant,
    all from this process: the served processes must find it all in the shared database."""
    settings = Settings.from_env(env)
    migrate(settings.database_url)
    injector = bootstrap(settings=settings)
    company = emulator.create_realm(company_name=f"{tenant} Movers")
    connect_to_emulated(injector.get(ConnectionService), tenant, company, emulator)
    key = injector.get(ApiKeys).create(tenant, frozenset(Permission))
    return [("authorization", f"Bearer {key}")]


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Starts `qbsync serve ...` and returns it with its first line of output."""
    process = subprocess.Popen(
        [*QBSYNC, "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"qbsync serve exited early: {process.stderr.read() if process.stderr else ''}"
    return process, line


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM; the process must exit 0 within its grace period (plus start-up slack)."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _state(stub: g.SyncServiceStub, name: str, md: list[tuple[str, str]]) -> int:
    return int(stub.GetSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=10).state)


def test_an_api_process_and_a_worker_process_share_the_work(tmp_path: Path, emulator: EmulatorServer) -> None:
    env = _env(tmp_path, QBSYNC_WORKERS="1")
    md = _connected_key(env, emulator, "acme")
    api, line = _start(["--listen", "127.0.0.1:0"], {**env, "QBSYNC_ROLE": "api"})  # the role from the env
    worker = None
    try:
        match = re.search(r"serving on (127\.0\.0\.1:\d+) with no workers", line)
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = g.SyncServiceStub(channel)
            accepted = stub.SyncPayment(
                s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md, timeout=10
            )
            time.sleep(1.5)  # an "all" process would have synced it by now; the API process must not
            assert _state(stub, accepted.name, md) == r.SyncJob.STATE_PENDING
            assert emulator.state.realms and all(
                not realm.state()["entities"].get("Payment") for realm in emulator.state.realms.values()
            )

            # The worker is told to listen on a free port, and must leave it free: it has no API.
            port = _free_port()
            worker, line = _start(["--role", "worker", "--listen", f"127.0.0.1:{port}"], env)
            assert "running 1 workers, no API" in line, line
            deadline = time.monotonic() + 60
            while _state(stub, accepted.name, md) != r.SyncJob.STATE_SUCCEEDED:
                assert time.monotonic() < deadline, "the worker process did not run the job"
                time.sleep(0.2)
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0
        _stop(worker)
        _stop(api)
    finally:
        for process in (api, worker):
            if process is not None and process.poll() is None:
                process.kill()


def test_a_worker_process_stops_gracefully_mid_job(tmp_path: Path, emulator: EmulatorServer) -> None:
    """SIGTERM while a sync waits on a slow QuickBooks: the worker stops claiming and exits 0 promptly."""
    env = _env(tmp_path, QBSYNC_WORKERS="2", QBSYNC_ROLE="worker")
    md = _connected_key(env, emulator, "acme")
    emulator.state.settings.latency_ms = 500  # every QBO call takes half a second
    api, line = _start(["--role", "api", "--listen", "127.0.0.1:0"], env)  # the flag beats QBSYNC_ROLE
    worker = None
    try:
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", line)
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            stub = g.SyncServiceStub(channel)
            names = [
                stub.SyncPayment(
                    s.SyncPaymentRequest(opportunity=opportunity(f"c-{n}", f"o-{n}"), payment=payment(f"p-{n}")),
                    metadata=md,
                    timeout=10,
                ).name
                for n in range(6)
            ]
            worker, line = _start([], env)
            assert "no API" in line, line
            deadline = time.monotonic() + 30
            while all(_state(stub, name, md) == r.SyncJob.STATE_PENDING for name in names):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            started = time.monotonic()
            _stop(worker)
            assert time.monotonic() - started < 10
            # It stopped claiming: most of the six jobs (1.5 s of QBO calls each) are left for another worker.
            time.sleep(1)
            assert sum(_state(stub, name, md) == r.SyncJob.STATE_SUCCEEDED for name in names) < len(names)
        _stop(api)
    finally:
        for process in (api, worker):
            if process is not None and process.poll() is None:
                process.kill()


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    bad_flag = subprocess.run(
        [*QBSYNC, "serve", "--role", "db"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert bad_flag.returncode != 0 and "db" in bad_flag.stderr
    bad_env = subprocess.run(
        [*QBSYNC, "serve"], env=_env(tmp_path, QBSYNC_ROLE="db"), capture_output=True, text=True, timeout=60
    )
    assert bad_env.returncode != 0 and "role" in bad_env.stderr
