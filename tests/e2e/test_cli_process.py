"""The `qbsync` command as an operator runs it: migrate, create a key, serve, stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g

QBSYNC = [sys.executable, "-m", "qbsync.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "QBSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}", "QBSYNC_WORKERS": "1"}


def test_migrate_keys_serve_and_graceful_stop(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([*QBSYNC, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    created = subprocess.run(
        [*QBSYNC, "keys", "create", "--tenant", "acme", "--permissions", "read"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("qbs_")
    assert key not in (tmp_path / "ops.db").read_bytes().decode("latin-1")  # only the hash is stored

    bad = subprocess.run(
        [*QBSYNC, "keys", "create", "--tenant", "acme", "--permissions", "read,root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "root" in bad.stderr

    server = subprocess.Popen(
        [*QBSYNC, "serve", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", line)
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = g.SyncServiceStub(channel)
            status = None
            try:
                stub.GetSyncStatus(
                    s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="nope")),
                    metadata=[("authorization", f"Bearer {key}")],
                    timeout=10,
                )
            except grpc.RpcError as err:
                status = err.code()
            assert status == grpc.StatusCode.NOT_FOUND  # authenticated with the printed key
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
        _, stderr = server.communicate(timeout=5)
        assert key not in stderr  # the key never reaches a log line
    finally:
        if server.poll() is None:
            server.kill()


def test_make_run_demo_and_the_readme_first_call(tmp_path: Path) -> None:
    """What `make run` starts (`qbsync demo`), then the first call the README and the banner print."""
    env = {**_env(tmp_path), "QBSYNC_DATA_DIR": str(tmp_path)}
    demo = subprocess.Popen(
        [*QBSYNC, "demo", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        banner = ""
        while "first_call" not in banner:
            line = demo.stdout.readline()
            assert line, f"demo exited early: {demo.stderr.read() if demo.stderr else ''}"
            banner += line
        command = re.search(r"python -m qbsync\.first_call --target (\S+) --key (\S+)", banner)
        assert command, banner
        call = subprocess.run(
            [sys.executable, "-m", "qbsync.first_call", "--target", command.group(1), "--key", command.group(2)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        assert "STATE_SUCCEEDED" in call.stdout
        assert "ENTITY_TYPE_PAYMENT" in call.stdout and "SYNC_ACTION_CREATED" in call.stdout
        assert "View in QuickBooks: https://app.sandbox.qbo.intuit.com/app/recvpayment?txnId=" in call.stdout
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
