"""Open streams against unary latency: the p50/p99 of a health check and of GetSyncStatus with 1,000
WatchSyncJob streams open (on jobs that do not end), against the same calls with no stream open.

    .venv/bin/python bench/streams.py [--streams 1000] [--calls 300] [--database-url URL]

Two baselines, each in a server process of its own (the client is this process): a bare grpc server with
the same handlers (SyncServicer and grpc's health servicer, the authentication interceptor the servicer
needs for its caller, nothing else), and the qbsync server as `qbsync serve` builds it, before any stream
opens. Then the streams open on that qbsync server (one job each, spread over ten API keys so that no key
passes QBSYNC_MAX_STREAMS_PER_KEY's default of 100), the same calls are timed again, and both ratios are
printed. Nobody works the jobs (no worker): they stay PENDING and their streams stay open.

SQLite in a temporary folder unless --database-url names a migrated database (e.g. PostgreSQL). Not a
test: it asserts nothing beyond every call answering; it finishes in well under two minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
from google.type.money_pb2 import Money
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.grpc.auth import AuthInterceptor  # noqa: E402
from adapters.grpc.servicer import SyncServicer  # noqa: E402
from adapters.persistence.sqlalchemy import migrate  # noqa: E402
from adapters.quickbooks.module import FakeQuickBooksModule  # noqa: E402
from core.auth import ApiKeys  # noqa: E402
from core.domain import Permission  # noqa: E402
from qbsync.bootstrap import bootstrap  # noqa: E402
from qbsync.config import Settings  # noqa: E402
from qbsync.runtime import Runtime  # noqa: E402
from qbsync.v1 import resources_pb2 as r  # noqa: E402
from qbsync.v1 import sync_service_pb2 as s  # noqa: E402
from qbsync.v1 import sync_service_pb2_grpc as g  # noqa: E402

KEYS = 10


def _settings(url: str) -> Settings:
    return Settings(database_url=url, listen="127.0.0.1:0", workers=0, grace_seconds=0, watch_poll_seconds=0.1)


def _serve(url: str, bare: bool, pipe: Connection) -> None:
    """A server process: sends its port, serves until told to stop."""
    settings = _settings(url)
    injector = bootstrap(FakeQuickBooksModule(), settings=settings)
    if bare:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            interceptors=[AuthInterceptor(injector.get(ApiKeys).authenticate)],
        )
        g.add_SyncServiceServicer_to_server(injector.get(SyncServicer), server)
        health_servicer = health.HealthServicer()
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        pipe.send(port)
        pipe.recv()
        server.stop(0).wait()
        return
    runtime = Runtime(injector)
    pipe.send(runtime.start())
    pipe.recv()
    runtime.stop(grace=0)


class ServerProcess:
    def __init__(self, url: str, bare: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(url, bare, child), daemon=True)
        self._process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the server process did not start")
        self.target = f"127.0.0.1:{self._pipe.recv()}"

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(30)


def _percentiles(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds, after a few warm-up calls."""
    for _ in range(10):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=100)
    return cuts[49], cuts[98]


def _measure(channel: grpc.Channel, md: list[tuple[str, str]], calls: int) -> dict[str, tuple[float, float]]:
    health_stub, sync_stub = health_pb2_grpc.HealthStub(channel), g.SyncServiceStub(channel)
    entity = r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="p-k0-0")
    return {
        "health Check": _percentiles(lambda: health_stub.Check(health_pb2.HealthCheckRequest(), timeout=10), calls),
        "GetSyncStatus": _percentiles(
            lambda: sync_stub.GetSyncStatus(s.GetSyncStatusRequest(entity=entity), metadata=md, timeout=10), calls
        ),
    }


def _accept(stub: g.SyncServiceStub, md: list[tuple[str, str]], payment_id: str) -> str:
    customer = r.Customer(customer_id="c-1", first_name="Mary", last_name="Smith", email="mary@example.com")
    payment = r.Payment(
        payment_id=payment_id,
        amount=Money(currency_code="USD", units=25),
        method=r.PAYMENT_METHOD_CASH,
        received_time={"seconds": 1_767_312_000},
    )
    opportunity = r.Opportunity(opportunity_id="o-1", number="1001", customer=customer)
    return stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity, payment=payment), metadata=md).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each kind per measurement")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    began = time.monotonic()

    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'qbsync.db'}"
        migrate(url)
        keys = bootstrap(FakeQuickBooksModule(), settings=_settings(url)).get(ApiKeys)
        mds = [[("authorization", f"Bearer {keys.create(f'bench-{i}', frozenset(Permission))}")] for i in range(KEYS)]

        bare = ServerProcess(url, bare=True)
        with grpc.insecure_channel(bare.target) as channel:
            stub = g.SyncServiceStub(channel)
            started = time.monotonic()
            names = [_accept(stub, mds[i % KEYS], f"p-k{i % KEYS}-{i // KEYS}") for i in range(args.streams)]
            accepted = time.monotonic() - started
            baseline_bare = _measure(channel, mds[0], args.calls)
        bare.stop()

        served = ServerProcess(url, bare=False)
        with grpc.insecure_channel(served.target) as channel:
            stub = g.SyncServiceStub(channel)
            baseline = _measure(channel, mds[0], args.calls)
            started = time.monotonic()
            streams = [
                stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=mds[i % KEYS], timeout=600)
                for i, name in enumerate(names)
            ]
            first = [next(stream) for stream in streams]
            opened = time.monotonic() - started
            assert all(job.state == r.SyncJob.STATE_PENDING for job in first)
            time.sleep(1)  # the change feed has been round a few times
            loaded = _measure(channel, mds[0], args.calls)
            still_open = sum(1 for stream in streams if stream.is_active())  # type: ignore[attr-defined]
            for stream in streams:
                stream.cancel()  # type: ignore[attr-defined]
        served.stop()

    print(
        f"{args.streams} jobs accepted in {accepted:.1f} s; "
        f"{args.streams} WatchSyncJob streams opened in {opened:.1f} s"
    )
    print(f"{still_open} streams still open while measuring ({args.calls} timed calls of each kind, one at a time)\n")
    header = f"{'call':<18} {'bare server':>16} {'qbsync, 0 streams':>20} {f'qbsync, {args.streams} streams':>24}"
    print(header + f" {'÷ bare':>9} {'÷ 0 streams':>12}")
    for call in ("health Check", "GetSyncStatus"):
        for index, label in ((0, "p50"), (1, "p99")):
            bare_ms, idle_ms, busy_ms = baseline_bare[call][index], baseline[call][index], loaded[call][index]
            name = f"{call} {label}"
            print(
                f"{name:<18} {bare_ms:>9.2f} ms {idle_ms:>17.2f} ms {busy_ms:>21.2f} ms"
                f" {busy_ms / bare_ms:>8.2f}x {busy_ms / idle_ms:>11.2f}x"
            )
    print(f"\ntotal {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
