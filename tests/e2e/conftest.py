"""A real qbsync server on a free loopback port, SQLite underneath, real workers: with the fake QuickBooks
(`server`) or the real python-quickbooks adapter talking HTTP to the bundled emulator (`emulated`)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal

import grpc
import pytest
from injector import Injector

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import sync_service_pb2_grpc
from tests.e2e.emulated_company import connect_to_emulated, number_invoices_by_the_crm


@dataclass
class Server:
    target: str
    channel: grpc.Channel
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys
    companies: FakeQuickBooksCompanies
    database_url: str

    def key(self, tenant: str, *permissions: Permission) -> list[tuple[str, str]]:
        """Call metadata carrying a new key of `tenant` (all permissions unless named)."""
        key = self.keys.create(tenant, frozenset(permissions or Permission))
        return [("authorization", f"Bearer {key}")]


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(database_url)
    settings = Settings(
        database_url=database_url, listen="127.0.0.1:0", workers=2, grace_seconds=2, watch_poll_seconds=0.05
    )
    companies = FakeQuickBooksCompanies()
    injector = bootstrap(FakeQuickBooksModule(companies), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    try:
        yield Server(
            target,
            channel,
            sync_service_pb2_grpc.SyncServiceStub(channel),
            injector.get(ApiKeys),
            companies,
            database_url,
        )
    finally:
        channel.close()
        runtime.stop(grace=1)


@dataclass
class EmulatedServer:
    """qbsync with the real python-quickbooks adapter, syncing to the bundled emulator over HTTP."""

    target: str
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys
    emulator: EmulatorServer
    realm_id: str
    injector: Injector  # the server's own wiring: a test connects another tenant through its ConnectionService

    def key(self, tenant: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys.create(tenant, frozenset(Permission))}")]

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(
            f"{self.emulator.url}/_emulator/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read(), parse_float=Decimal)  # type: ignore[no-any-return]

    def records(self, entity: str) -> list[dict]:  # type: ignore[type-arg]
        """The live records of one QBO entity, as the emulator holds them."""
        state = self.admin("GET", f"realms/{self.realm_id}/state")
        gone = set(state["deleted"]) | set(state["voided"])
        return [r for r in state["entities"].get(entity, []) if r["Id"] not in gone]


@pytest.fixture
def emulated(tmp_path) -> Iterator[EmulatedServer]:  # type: ignore[no-untyped-def]
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(database_url)
    settings = replace(
        Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path)}),
        database_url=database_url,
        listen="127.0.0.1:0",
        workers=2,
        grace_seconds=2,
        watch_poll_seconds=0.05,
    )
    emulator = run_emulator("127.0.0.1", 0)
    company = emulator.create_realm(company_name="Acme Movers")
    number_invoices_by_the_crm(emulator, company["realm_id"])
    injector = bootstrap(settings=settings)  # the production wiring: QuickBooksModule over HTTP
    connect_to_emulated(injector.get(ConnectionService), "acme", company, emulator)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield EmulatedServer(
            f"127.0.0.1:{port}",
            sync_service_pb2_grpc.SyncServiceStub(channel),
            injector.get(ApiKeys),
            emulator,
            company["realm_id"],
            injector,
        )
    finally:
        channel.close()
        runtime.stop(grace=1)
        emulator.stop()
