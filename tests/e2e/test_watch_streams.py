"""WatchSyncJob over the real wiring: streams hold no server thread, one change feed serves them all
(PostgreSQL LISTEN/NOTIFY, one poller on SQLite), and an API key may hold only so many open streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type.money_pb2 import Money
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from injector import Injector

from adapters.grpc.server import DEFAULT_MAX_WORKERS
from adapters.grpc.servicer import SyncServicer
from adapters.persistence.sqlalchemy import migrate
from adapters.persistence.sqlalchemy.job_changes import PolledJobChanges, PostgresJobChanges
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission, SyncJobState
from core.ports import UnitOfWorkFactory
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g
from tests.postgres_schema import fresh_postgres_schema


@dataclass
class Api:
    injector: Injector
    channel: grpc.Channel
    stub: g.SyncServiceStub
    backend: str

    def key(self, tenant: str = "acme") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.injector.get(ApiKeys).create(tenant, frozenset(Permission))}")]

    def accept(self, md: list[tuple[str, str]], payment_id: str = "p-1") -> r.SyncJob:
        customer = r.Customer(customer_id="c-1", first_name="Mary", last_name="Smith", email="mary@example.com")
        payment = r.Payment(
            payment_id=payment_id,
            amount=Money(currency_code="USD", units=25),
            method=r.PAYMENT_METHOD_CASH,
            received_time={"seconds": 1_767_312_000},
        )
        opportunity = r.Opportunity(opportunity_id="o-1", number="1001", customer=customer)
        return self.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity, payment=payment), metadata=md)

    def set_state(self, name: str, state: SyncJobState, attempts: int, tenant: str = "acme") -> None:
        """As a worker would, in another transaction than any stream's."""
        uow = self.injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
        with uow() as tx:
            job = tx.jobs.get(tenant, name.rpartition("/")[2])
            assert job is not None
            tx.jobs.save(replace(job, state=state, attempts=attempts))
            tx.commit()

    def watch(self, name: str, md: list[tuple[str, str]]) -> Iterator[r.SyncJob]:
        return self.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=30)  # type: ignore[no-any-return]


def _serve(url: str, backend: str, poll_seconds: float, max_streams: int) -> Iterator[Api]:
    settings = Settings(
        database_url=url,
        listen="127.0.0.1:0",
        workers=0,  # nobody works the jobs: they stay PENDING unless a test moves them
        grace_seconds=1,
        watch_poll_seconds=poll_seconds,
        max_streams_per_key=max_streams,
    )
    injector = bootstrap(FakeQuickBooksModule(), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Api(injector, channel, g.SyncServiceStub(channel), backend)
    finally:
        channel.close()
        runtime.stop(grace=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """On PostgreSQL the poll interval is long (5 s): an update that arrives sooner came by NOTIFY."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'qbsync.db'}"
        migrate(url)
        yield from _serve(url, "sqlite", 0.05, 100)
        return
    with fresh_postgres_schema("w") as pg_url:
        yield from _serve(pg_url.render_as_string(hide_password=False), "postgresql", 5.0, 100)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(url)
    yield from _serve(url, "sqlite", 0.05, 3)


def test_a_stream_sees_its_jobs_updates_from_the_shared_feed_and_ends_with_the_job(api: Api) -> None:
    feed = api.injector.get(SyncServicer).watch._changes
    assert isinstance(feed, PostgresJobChanges if api.backend == "postgresql" else PolledJobChanges)
    md = api.key()
    job = api.accept(md)
    stream = api.watch(job.name, md)
    assert next(stream).state == r.SyncJob.STATE_PENDING
    time.sleep(0.3)  # the feed is listening (PostgreSQL) or has read the job once (SQLite)

    started = time.monotonic()
    api.set_state(job.name, SyncJobState.RUNNING, 1)
    running = next(stream)
    assert (running.state, running.attempts) == (r.SyncJob.STATE_RUNNING, 1)
    assert time.monotonic() - started < 2  # on PostgreSQL: far sooner than its 5 s poll, so by NOTIFY

    api.set_state(job.name, SyncJobState.SUCCEEDED, 1)
    assert [u.state for u in stream] == [r.SyncJob.STATE_SUCCEEDED]  # and then the stream ended
    assert api.injector.get(SyncServicer).watch.open_count() == 0


def test_many_open_streams_leave_health_and_unary_calls_prompt(api: Api) -> None:
    md = api.key()
    jobs = [api.accept(md, f"p-{i}") for i in range(5)]
    threads_before = threading.active_count()
    streams = [api.watch(jobs[i % 5].name, md) for i in range(5 * DEFAULT_MAX_WORKERS)]  # 5x the pool's threads
    assert all(next(stream).state == r.SyncJob.STATE_PENDING for stream in streams)
    assert api.injector.get(SyncServicer).watch.open_count() == len(streams)

    health = health_pb2_grpc.HealthStub(api.channel)
    for _ in range(5):
        started = time.monotonic()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
        entity = r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="p-0")
        assert api.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=entity), metadata=md, timeout=2).state
        assert time.monotonic() - started < 1
    # The streams took no thread of their own: at most grpc's pool (started as calls need it), the hub's one
    # thread and the client's; a thread per stream would be 5x the pool more.
    assert threading.active_count() - threads_before <= DEFAULT_MAX_WORKERS + 4

    # One change reaches every stream of that job, and only those.
    api.set_state(jobs[0].name, SyncJobState.SUCCEEDED, 1)
    for stream in streams[::5]:
        assert [u.state for u in stream] == [r.SyncJob.STATE_SUCCEEDED]
    assert api.injector.get(SyncServicer).watch.open_count() == len(streams) - len(streams[::5])


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
    return info


def test_a_key_holding_its_most_streams_is_refused_another(sqlite_api: Api) -> None:
    md, other = sqlite_api.key(), sqlite_api.key()
    job = sqlite_api.accept(md)
    streams = [sqlite_api.watch(job.name, md) for _ in range(3)]
    assert all(next(stream).state == r.SyncJob.STATE_PENDING for stream in streams)

    with pytest.raises(grpc.RpcError) as refused:
        next(sqlite_api.watch(job.name, md))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = _error_info(refused.value)
    assert (info.domain, info.reason, dict(info.metadata)) == (
        "qbsync",
        "TOO_MANY_STREAMS",
        {"max_streams_per_key": "3"},
    )

    # Another key has its own allowance; and a stream that ends frees its place.
    assert next(sqlite_api.watch(job.name, other)).state == r.SyncJob.STATE_PENDING
    streams[0].cancel()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while sqlite_api.injector.get(SyncServicer).watch.open_count() > 3:  # 2 of md's, 1 of other's
        assert time.monotonic() < deadline, "the cancelled stream was never let go"
        time.sleep(0.02)
    assert next(sqlite_api.watch(job.name, md)).state == r.SyncJob.STATE_PENDING


def test_a_stream_on_a_job_that_has_ended_sends_it_once_and_ends(sqlite_api: Api) -> None:
    md = sqlite_api.key()
    job = sqlite_api.accept(md)
    sqlite_api.set_state(job.name, SyncJobState.FAILED, 3)
    assert [u.state for u in sqlite_api.watch(job.name, md)] == [r.SyncJob.STATE_FAILED]
    assert sqlite_api.injector.get(SyncServicer).watch.open_count() == 0
