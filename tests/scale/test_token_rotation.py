"""Tokens never lost (issue 7): with Intuit-strict rotation (a refresh token dies the moment it is used) and
access tokens that live two seconds, three worker processes sharing PostgreSQL refresh tokens and save
looked-up settings (fresh companies: every default is found on first use) while an admin keeps saving
settings through the API process. No write of the connection may roll back a rotated refresh token: every
job must end SUCCEEDED, every tenant CONNECTED, and QuickBooks must never have been sent a dead refresh
token. Tokens are refreshed near their expiry, not before every request.

Before the fix (every writer put back the whole row it had read; a fixed five-minute refresh margin, so a
refresh before every request), tenants went RECONNECT_REQUIRED and their jobs FAILED.

Needs PostgreSQL (QBSYNC_TEST_DATABASE_URL; .ci/run sets it): SQLite serialises every write anyway.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from scale_support import (
    POSTGRES_ENV,
    Cluster,
    Emulator,
    customer_message,
    job_message,
    payment_message,
    rows,
    running_emulator,
    wait_until_settled,
)

from qbsync.v1 import connection_service_pb2 as cs
from qbsync.v1 import connection_service_pb2_grpc as cg
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set: several qbsync processes need PostgreSQL (.ci/run sets it)",
    ),
]

TENANTS = ("atlas", "bayside", "cedar", "delta")
CUSTOMERS_PER_TENANT = 3
WORKER_PROCESSES = 3
THREADS_PER_WORKER = 2
ACCESS_TOKEN_SECONDS = 2
SETTLE_WITHIN_SECONDS = 60  # after the last job was accepted (the machine may be busy)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    settings = {"access_token_ttl": ACCESS_TOKEN_SECONDS, "refresh_token_rotation": "strict"}
    with running_emulator(tmp_path, settings) as server:
        yield server


def failed_jobs(database_url: str) -> list[tuple[str, str, str]]:
    """(tenant, kind, error) of every FAILED job."""
    failed = rows(database_url, "SELECT tenant_id, kind, error FROM sync_jobs WHERE state = 'FAILED'")
    return [(str(tenant), str(kind), str(error)) for tenant, kind, error in failed]


def connection_states(database_url: str) -> dict[str, str]:
    connections = rows(database_url, "SELECT tenant_id, state FROM quickbooks_connections")
    return {str(tenant): str(state) for tenant, state in connections}


def sync_customer(stub: g.SyncServiceStub, md: list[tuple[str, str]], tenant: str, c: int) -> list[str]:
    """A deposit with a refund (deposit account, payment methods, refund bank and A/R accounts are looked
    up), a second deposit, then the close-out (the income item is looked up)."""
    cid = f"{tenant}-cust-{c}"
    opportunity = customer_message(cid, f"Rotation{c} {tenant.title()}")
    deposit = payment_message(f"{cid}-p1", Decimal(100 + c), {f"{cid}-r1": Decimal("10.00")})
    second = payment_message(f"{cid}-p2", Decimal(50 + c))
    names = [
        stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity, payment=deposit), metadata=md, timeout=30).name,
        stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity, payment=second), metadata=md, timeout=30).name,
    ]
    close_out = s.CloseOutJobRequest(
        opportunity=opportunity, job=job_message(f"job{c}", 3, Decimal("90.00")), payments=[deposit, second]
    )
    names.append(stub.CloseOutJob(close_out, metadata=md, timeout=30).name)
    return [str(name) for name in names]


def keep_saving_settings(
    channel: grpc.Channel, tenants: dict[str, tuple[str, list[tuple[str, str]]]], stop: threading.Event
) -> int:
    """An admin saving a setting over and over (always the same value), round the tenants; returns how
    many saves were made."""
    stub = cg.ConnectionServiceStub(channel)
    request = cs.UpdateSettingsRequest(settings=cs.Settings(doc_number_prefix="M-"))
    request.update_mask.paths.append("doc_number_prefix")
    for saves, tenant in enumerate(itertools.cycle(TENANTS)):
        if stop.is_set():
            return saves
        stub.UpdateSettings(request, metadata=tenants[tenant][1], timeout=30)
    raise AssertionError("unreachable")


def test_strict_rotation_with_short_lived_tokens_across_worker_processes_loses_no_token(
    cluster: Cluster, emulator: Emulator, database_url: str
) -> None:
    tenants = {tenant: cluster.connect_tenant(tenant, emulator) for tenant in TENANTS}
    _, target = cluster.start_api()
    for n in range(WORKER_PROCESSES):
        cluster.start_worker(f"worker-{n}", threads=THREADS_PER_WORKER)

    stop = threading.Event()
    with grpc.insecure_channel(target) as channel, ThreadPoolExecutor(7) as pool:
        admin = pool.submit(keep_saving_settings, channel, tenants, stop)
        try:
            stub = g.SyncServiceStub(channel)
            work = [(tenant, c) for c in range(CUSTOMERS_PER_TENANT) for tenant in TENANTS]
            batches = pool.map(lambda tc: sync_customer(stub, tenants[tc[0]][1], *tc), work)
            names = [name for batch in batches for name in batch]
            states = wait_until_settled(database_url, SETTLE_WITHIN_SECONDS)
        finally:
            stop.set()
        assert admin.result(timeout=30) > 0

    assert states == Counter({"SUCCEEDED": len(names)}), (states, failed_jobs(database_url))
    assert connection_states(database_url) == dict.fromkeys(TENANTS, "CONNECTED")
    for realm_id, _ in tenants.values():
        tokens = emulator.state(realm_id)["tokens"]
        # Intuit-strict rotation would have refused a dead refresh token; none was ever sent.
        assert tokens["dead_refreshes"] == 0, tokens
        api_calls = len(emulator.requests(realm_id))
        # Refreshed near expiry (in the last fifth of a 2-second life, or after a 401), not before every
        # request.
        assert 1 <= tokens["refreshes"] < api_calls / 2, (tokens["refreshes"], api_calls)
    assert emulator.admin("GET", "errors")["errors"] == []
