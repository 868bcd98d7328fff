"""One composition root: the server a runtime starts is the one `bootstrap()` wires from the settings, and a
tester's modules replace the production ones (no database, no QuickBooks) with nothing else to build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
from google.type.money_pb2 import Money
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.coordination import InProcessCoordinationModule
from adapters.grpc.server import DEFAULT_MAX_WORKERS, GrpcServerFactory
from adapters.grpc.servicer import SyncServicer
from adapters.inprocess import InProcessRequestLimiter
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.module import InMemoryPersistenceModule
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission
from core.ports import RequestLimiter, UnitOfWorkFactory
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g


def settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path)})
    return replace(base, listen="127.0.0.1:0", workers=1, grace_seconds=1, watch_poll_seconds=0.03, **changes)


def test_the_grpc_module_builds_the_server_from_the_settings(tmp_path: Path) -> None:
    injector = bootstrap(InMemoryPersistenceModule(), FakeQuickBooksModule(), settings=settings(tmp_path))
    factory = injector.get(GrpcServerFactory)
    assert factory is injector.get(GrpcServerFactory)
    assert factory.listen == "127.0.0.1:0"
    assert factory.servicer is injector.get(SyncServicer)
    assert factory.servicer._poll_seconds == 0.03
    assert factory.connection_servicer is not None
    assert not (tmp_path / "qbsync.db").exists()  # the in-memory module replaced the SQLite one


def test_the_grpc_thread_pool_size_comes_from_the_settings(tmp_path: Path) -> None:
    configured = Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path), "QBSYNC_GRPC_THREADS": "6"})
    assert configured.grpc_threads == 6
    injector = bootstrap(InMemoryPersistenceModule(), FakeQuickBooksModule(), settings=replace(configured, workers=1))
    assert injector.get(GrpcServerFactory).max_workers == 6
    assert Settings.from_env({}).grpc_threads == DEFAULT_MAX_WORKERS


def test_a_tester_runs_the_whole_service_on_the_fakes(tmp_path: Path) -> None:
    companies = FakeQuickBooksCompanies()
    injector = bootstrap(InMemoryPersistenceModule(), FakeQuickBooksModule(companies), settings=settings(tmp_path))
    assert isinstance(injector.get(UnitOfWorkFactory), InMemoryUnitOfWorkFactory)  # type: ignore[type-abstract]
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        key = injector.get(ApiKeys).create("acme", frozenset(Permission))
        md = [("authorization", f"Bearer {key}")]
        customer = r.Customer(customer_id="c-1", first_name="Mary", last_name="Smith", email="mary@example.com")
        payment = r.Payment(
            payment_id="p-1",
            amount=Money(currency_code="USD", units=25),
            method=r.PAYMENT_METHOD_CASH,
            received_time={"seconds": 1_767_312_000},
        )
        stub = g.SyncServiceStub(channel)
        job = stub.SyncPayment(
            s.SyncPaymentRequest(
                opportunity=r.Opportunity(opportunity_id="o-1", number="1001", customer=customer), payment=payment
            ),
            metadata=md,
            timeout=10,
        )
        *_, final = stub.WatchSyncJob(s.GetSyncJobRequest(name=job.name), metadata=md, timeout=30)
        assert final.state == r.SyncJob.STATE_SUCCEEDED, final.error
        assert len(companies.for_tenant("acme").live("Payment")) == 1
    finally:
        channel.close()
        runtime.stop(grace=1)


def test_a_postgresql_deployment_can_keep_its_coordination_in_process(tmp_path: Path) -> None:
    url = "postgresql+psycopg://qbsync@127.0.0.1:1/none"  # nothing listens: wiring must not connect
    injector = bootstrap(InProcessCoordinationModule(), settings=settings(tmp_path, database_url=url))
    assert isinstance(injector.get(RequestLimiter), InProcessRequestLimiter)  # type: ignore[type-abstract]
