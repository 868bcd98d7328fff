"""Sync throughput: 1, 2 and 4 worker processes on PostgreSQL against 1 process on SQLite, each against the
QBO emulator with 0 ms and 100 ms added to every QuickBooks request, several companies at once.

    .venv/bin/python bench/throughput.py [--syncs 120] [--tenants 4] [--threads 4] [--latency 0,100]

Each run gets a fresh database and fresh emulator companies, submits `--syncs` SyncPayment calls (a new
payment with one refund, spread over ten customers per tenant) through the API with generated stubs, and
times until every job has ended. It prints syncs/s, QuickBooks requests/s (from the emulator's request
log) and where the CPU went (API, workers, emulator, as a share of one core), plus the peak number of
requests in flight per company. Not a test: it asserts nothing beyond every job having succeeded.
PostgreSQL runs need QBSYNC_TEST_DATABASE_URL (or --database-url); without one only SQLite runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc

# The deployment helpers are shared with the scale tests, which must not depend on bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "scale"))

from scale_support import (  # noqa: E402
    POSTGRES_ENV,
    Cluster,
    Emulator,
    cpu_seconds,
    customer_message,
    fresh_postgres_schema,
    job_states,
    payment_message,
)

from adapters.persistence.sqlalchemy import migrate  # noqa: E402
from qbsync.v1 import sync_service_pb2 as s  # noqa: E402
from qbsync.v1 import sync_service_pb2_grpc as g  # noqa: E402

CUSTOMERS_PER_TENANT = 10


@dataclass
class Setup:
    label: str
    database: str  # "sqlite" or "postgresql"
    worker_processes: int


@dataclass
class Figures:
    setup: Setup
    latency_ms: int
    syncs: int
    seconds: float
    qbo_requests: int
    cpu_api: float  # share of one core over the run
    cpu_workers: float
    cpu_emulator: float
    peak_in_flight: int
    failed: int

    @property
    def syncs_per_second(self) -> float:
        return self.syncs / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.qbo_requests / self.seconds


@contextmanager
def database(setup: Setup, postgres: str, workdir: Path) -> Iterator[str]:
    if setup.database == "postgresql":
        with fresh_postgres_schema(postgres) as url:
            yield url
        return
    url = f"sqlite:///{workdir / 'bench.db'}"
    migrate(url)
    yield url


def run(setup: Setup, latency_ms: int, args: argparse.Namespace, emulator: Emulator, workdir: Path) -> Figures:
    emulator.admin("POST", "reset")
    emulator.admin("POST", "settings", {"latency_ms": latency_ms})  # QBO's own limits: the defaults
    with database(setup, args.database_url, workdir) as url:
        cluster = Cluster(url, workdir)
        try:
            tenants = [cluster.connect_tenant(f"tenant{t}", emulator) for t in range(args.tenants)]
            if setup.database == "sqlite":
                # One machine: the API and the workers in one process, as `qbsync serve` runs by default.
                process, target = cluster.start_api("all", role="all", threads=args.threads)
                api, workers = process, [process]
            else:
                api, target = cluster.start_api()
                workers = [
                    cluster.start_worker(f"worker{n}", threads=args.threads) for n in range(setup.worker_processes)
                ]
            requests = _payments(args.syncs, len(tenants))
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in {api, *workers}}
            emulator_before = cpu_seconds(emulator.process.pid)
            started = time.monotonic()
            with grpc.insecure_channel(target) as channel:
                stub = g.SyncServiceStub(channel)
                with ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda req: stub.SyncPayment(req[1], metadata=tenants[req[0]][1], timeout=60), requests
                        )
                    )
            while True:
                states = job_states(url)
                if states["PENDING"] + states["RUNNING"] == 0:
                    break
                time.sleep(0.05)
            seconds = time.monotonic() - started
            cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
            emulator_cpu = cpu_seconds(emulator.process.pid) - emulator_before
            log = [entry for entry in emulator.requests() if entry.get("realm_id") and "in_flight_at_start" in entry]
            worker_pids = {p.pid for p in workers}
            return Figures(
                setup=setup,
                latency_ms=latency_ms,
                syncs=args.syncs,
                seconds=seconds,
                qbo_requests=len(log),
                cpu_api=(cpu[api.pid] if api.pid not in worker_pids else 0.0) / seconds,
                cpu_workers=sum(cpu[pid] for pid in worker_pids) / seconds,
                cpu_emulator=emulator_cpu / seconds,
                peak_in_flight=max((int(entry["in_flight_at_start"]) for entry in log), default=0),
                failed=states["FAILED"],
            )
        finally:
            cluster.stop_all()


def _payments(count: int, tenants: int) -> list[tuple[int, s.SyncPaymentRequest]]:
    """`count` new payments, round-robin over tenants and their customers."""
    out = []
    for n in range(count):
        tenant = n % tenants
        customer = f"c{tenant}-{(n // tenants) % CUSTOMERS_PER_TENANT:02d}"
        payment = payment_message(f"pay-{n}", Decimal(200 + n % 50), {f"ref-{n}": Decimal("25.50")})
        opportunity = customer_message(customer, f"Bench{customer.replace('-', '')} Customer")
        out.append((tenant, s.SyncPaymentRequest(opportunity=opportunity, payment=payment)))
    return out


def print_table(rows: list[Figures]) -> None:
    header = (
        f"{'setup':<26} {'latency':>7} {'syncs':>5} {'secs':>6} {'syncs/s':>8} {'QBO req/s':>9} "
        f"{'req/sync':>8} {'cpu api':>7} {'cpu wrk':>7} {'cpu emu':>7} {'peak':>4} {'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    for f in rows:
        print(
            f"{f.setup.label:<26} {f.latency_ms:>5}ms {f.syncs:>5} {f.seconds:>6.1f} {f.syncs_per_second:>8.2f} "
            f"{f.requests_per_second:>9.1f} {f.qbo_requests / f.syncs:>8.1f} {f.cpu_api:>7.0%} "
            f"{f.cpu_workers:>7.0%} {f.cpu_emulator:>7.0%} {f.peak_in_flight:>4} {f.failed:>6}"
        )
    print(
        f"\ncpu: share of one core (this machine has {os.cpu_count()}); "
        "peak: most QBO requests in flight at once for one company"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syncs", type=int, default=120, help="sync calls per run")
    parser.add_argument("--tenants", type=int, default=4, help="tenants, each with its own QBO company")
    parser.add_argument("--threads", type=int, default=4, help="worker threads per worker process")
    parser.add_argument("--latency", default="0,100", help="comma-separated ms added to every QBO request")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts on PostgreSQL")
    parser.add_argument("--database-url", default=os.environ.get(POSTGRES_ENV, ""), help="PostgreSQL URL")
    args = parser.parse_args(argv)
    setups = [Setup("sqlite, 1 process (all)", "sqlite", 1)]
    if args.database_url:
        setups += [
            Setup(f"postgresql, api + {n} worker{'s' if n > 1 else ''}", "postgresql", n)
            for n in map(int, args.processes.split(","))
        ]
    else:
        print(f"{POSTGRES_ENV} not set: SQLite only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qbsync-bench-") as tmp:
        emulator = Emulator(Path(tmp))
        try:
            for latency in map(int, args.latency.split(",")):
                for setup in setups:
                    workdir = Path(tmp) / f"{setup.database}-{setup.worker_processes}-{latency}"
                    workdir.mkdir()
                    rows.append(run(setup, latency, args, emulator, workdir))
                    print(f"  done: {setup.label}, {latency} ms", file=sys.stderr, flush=True)
        finally:
            emulator.stop()
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
