"""A real qbsync server on a free loopback port: SQLite underneath, the fake QuickBooks, real workers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import sync_service_pb2_grpc


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
    runtime = Runtime(injector, settings)
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
