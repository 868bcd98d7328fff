"""The API with a big backlog (issue 12): 100,000 PENDING jobs, API RSS <= 200 MiB, 10,000 jobs enqueued in <= 20 s.

    .venv/bin/python bench/backlog.py [--jobs 100000] [--enqueue 10000] [--clients 32] [--databases sqlite,postgresql]

For each database (SQLite; PostgreSQL in a fresh schema when QBSYNC_TEST_DATABASE_URL or --database-url is
set):

1. Seeds a fresh database with `--jobs` PENDING SyncPayment jobs (and `--failed` FAILED ones, for
   ListSyncErrors to page through). How: the real `SyncService.sync_payment` accepts one payment in a
   scratch SQLite database; every row it stored there (opportunity and payment snapshots, the refund map,
   the customer's, payment's and refund's PENDING sync records, the job, its audit event) is read back and
   copied `--jobs` times into the bench database with bulk INSERTs, each copy with its own ids (the
   template's ids carry a marker that each copy replaces, the job a new uuid) and its times spread over the
   past (10 ms apart, in order). So the rows are what SyncPayment stores, without 100,000 accept calls.
2. Starts `qbsync serve --role api` (no workers) on it, with its /metrics and /readyz listener, and
   `qbsync console` on the same database.
3. Reads with the backlog in place, `--clients` concurrent gRPC clients for `--seconds` each: GetSyncStatus
   of backlog payments, and pages of ListSyncErrors (the first, and a later one by its page token); a few
   /metrics, /readyz and console home pages (signed in with an admin key), each timed.
4. Opens `--streams` WatchSyncJob streams on backlog jobs and keeps them open; then `--enqueue` SyncPayment
   calls, each a new payment, from `--clients` concurrent clients (spread over `--client-processes`
   processes), while /metrics, /readyz and the console's home page are fetched every second.
5. Prints the API process's peak RSS (VmHWM in /proc/<pid>/status), the enqueue's wall time and calls/s,
   p50/p99 of every read, then each issue-12 target with PASS/FAIL (the enqueue's as the time 10,000 jobs
   take at the rate measured: with --enqueue 10000, the wall time). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import requests

# The deployment helpers are shared with the scale tests, which must not depend on bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "scale"))

from scale_support import (  # noqa: E402
    POSTGRES_ENV,
    QBSYNC,
    Cluster,
    cpu_seconds,
    customer_message,
    fresh_database,
    payment_message,
)

from qbsync.v1 import resources_pb2 as r  # noqa: E402
from qbsync.v1 import sync_service_pb2 as s  # noqa: E402
from qbsync.v1 import sync_service_pb2_grpc as g  # noqa: E402

RSS_LIMIT_MIB = 200.0
# The target: 10,000 jobs enqueued in <= 20 s, i.e. >= 500 calls/s. A shorter --enqueue (make bench's) is
# held to the same rate, and its figure says how long 10,000 would take at it.
TARGET_ENQUEUE = 10_000
ENQUEUE_LIMIT_SECONDS = 20.0
TENANT = "bench"
MARK = "XMARKX"  # in every id of the template payment; each copy puts its number there
SEED_TABLES = ("opportunities", "payments", "refunds", "sync_records", "sync_jobs", "audit_events")
CHUNK = 5000


# --- seeding: one real accept, copied ----------------------------------------------------------------------


def backlog_payment(customer: str, n: int) -> s.SyncPaymentRequest:
    """What a CRM sends for a new deposit with one partial refund (bench/api.py's request)."""
    return s.SyncPaymentRequest(
        opportunity=customer_message(customer, "Backlog Customer"),
        payment=payment_message(f"pay-{customer}", Decimal(200 + n % 50), {f"ref-{customer}": Decimal("25.50")}),
    )


def template_rows(workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row one real SyncPayment accept stores, read back from a scratch SQLite database, by table."""
    from sqlalchemy import select

    from adapters.grpc import convert
    from adapters.persistence.sqlalchemy import create_engine_for, migrate
    from adapters.persistence.sqlalchemy.models import Base
    from core.auth import ApiKeys
    from core.domain import Permission
    from core.service import SyncService
    from qbsync.bootstrap import bootstrap

    url = f"sqlite:///{workdir / 'template.db'}"
    migrate(url)
    injector = bootstrap(settings=Cluster(url, workdir).settings())
    keys = injector.get(ApiKeys)
    principal = keys.authenticate(keys.create(TENANT, frozenset(Permission)), "ipv4:127.0.0.1")
    request = convert.payment_request_from_proto(backlog_payment(f"bk-{MARK}", 7))
    injector.get(SyncService).sync_payment(principal, request.opportunity, request.payment, request.request_id)
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            rows = {
                name: [dict(row._mapping) for row in connection.execute(select(Base.metadata.tables[name]))]
                for name in SEED_TABLES
            }
    finally:
        engine.dispose()
    for row in rows["audit_events"]:
        del row["id"]  # the database numbers them
    assert len(rows["sync_jobs"]) == 1, rows["sync_jobs"]
    return rows


def copies(
    template: dict[str, list[dict[str, Any]]], n: int, count: int, failed: bool
) -> dict[str, list[dict[str, Any]]]:
    """Copy `n` of `count`: every string with MARK gets the copy's number, the job a new id, every time moved
    back so that copy n is 10 ms older than copy n+1 (the last one now)."""
    from adapters.persistence.sqlalchemy import codec
    from core.domain import JobError

    number = f"{n:07d}"
    old_job_id = template["sync_jobs"][0]["job_id"]
    new_job_id = str(uuid.uuid4()) if "-" in old_job_id else uuid.uuid4().hex
    shift = timedelta(milliseconds=10 * (count - n))

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(MARK, number).replace(old_job_id, new_job_id)
        if isinstance(value, datetime):
            return value - shift
        return value

    out = {name: [{k: fix(v) for k, v in row.items()} for row in rows] for name, rows in template.items()}
    if failed:
        job = out["sync_jobs"][0]
        job.update(
            state="FAILED",
            attempts=job["max_attempts"],
            next_attempt_time=None,
            error=codec.error_to_json(
                JobError("QUICKBOOKS_REJECTED", "QuickBooks refused the payment: the deposit account is closed", False)
            ),
        )
    return out


def seed(url: str, template: dict[str, list[dict[str, Any]]], pending: int, failed: int) -> float:
    """Bulk-inserts `failed` FAILED then `pending` PENDING copies of the template; returns the seconds taken."""
    from adapters.persistence.sqlalchemy import create_engine_for
    from adapters.persistence.sqlalchemy.models import Base

    began = time.monotonic()
    total = pending + failed
    engine = create_engine_for(url)
    try:
        for start in range(0, total, CHUNK):
            batch: dict[str, list[dict[str, Any]]] = {name: [] for name in SEED_TABLES}
            for n in range(start, min(total, start + CHUNK)):
                for name, rows in copies(template, n, total, failed=n < failed).items():
                    batch[name].extend(rows)
            with engine.begin() as connection:
                for name in SEED_TABLES:
                    connection.execute(Base.metadata.tables[name].insert(), batch[name])
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE")  # as autovacuum would, soon after a bulk load
    finally:
        engine.dispose()
    return time.monotonic() - began


# --- the processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class Deployment:
    target: str  # the API's gRPC host:port
    api_pid: int
    http: str  # the API's /metrics, /readyz
    console: str  # the console's base URL
    console_pid: int
    key: str  # every permission of the bench tenant
    job_names: list[str]
    payment_ids: list[str]
    url: str  # the database's (the bench's own connections)
    api_backends: str  # on PostgreSQL, the application_name of the API's connections ("" on SQLite)


def tagged(url: str, application_name: str) -> str:
    """`url` whose PostgreSQL connections name themselves `application_name` in pg_stat_activity."""
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict({"application_name": application_name}).render_as_string(False)


def backend_cpu(dep: Deployment) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the API (the server runs on this machine)."""
    if not dep.api_backends:
        return {}
    from sqlalchemy import text

    from adapters.persistence.sqlalchemy import create_engine_for

    engine = create_engine_for(dep.url)
    try:
        with engine.connect() as connection:
            pids = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": dep.api_backends}
            ).scalars()
            return {pid: cpu_seconds(pid) for pid in pids}
    finally:
        engine.dispose()


@contextmanager
def deployment(url: str, workdir: Path, label: str) -> Iterator[Deployment]:
    from core.auth import ApiKeys
    from core.domain import Permission
    from qbsync.bootstrap import bootstrap

    metrics_port = free_port()

    class BacklogCluster(Cluster):
        def env(self, **extra: str) -> dict[str, str]:
            return super().env(QBSYNC_METRICS_LISTEN=f"127.0.0.1:{metrics_port}", **extra)

    # On PostgreSQL the API's connections carry a name, so that the CPU of their backends can be counted.
    api_backends = f"qbsync-backlog-{label}-{os.getpid()}" if url.startswith("postgresql") else ""
    cluster = BacklogCluster(tagged(url, api_backends) if api_backends else url, workdir)
    console_process: subprocess.Popen[bytes] | None = None
    try:
        key = bootstrap(settings=cluster.settings()).get(ApiKeys).create(TENANT, frozenset(Permission))
        api, target = cluster.start_api(f"backlog-api-{label}", role="api")
        out = workdir / f"backlog-console-{label}.out"
        env = cluster.env(QBSYNC_CONSOLE_SESSION_SECRET="b" * 40, QBSYNC_DATABASE_URL=url)
        with out.open("wb") as stdout, (workdir / f"backlog-console-{label}.err").open("wb") as stderr:
            console_process = subprocess.Popen(
                [*QBSYNC, "console", "--listen", "127.0.0.1:0"], env=env, stdout=stdout, stderr=stderr
            )
        deadline = time.monotonic() + 60
        while not (match := re.search(r"\(open (http://\S+)/\)", out.read_text())):
            if console_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start: {out.with_suffix('.err').read_text()}")
            time.sleep(0.05)
        names, payments = _backlog_ids(url)
        yield Deployment(
            target,
            api.pid,
            f"http://127.0.0.1:{metrics_port}",
            match.group(1),
            console_process.pid,
            key,
            names,
            payments,
            url,
            api_backends,
        )
    finally:
        if console_process is not None:
            console_process.terminate()
            console_process.wait(timeout=30)
        cluster.stop_all()


def _backlog_ids(url: str) -> tuple[list[str], list[str]]:
    """The PENDING jobs' names and the backlog's payment ids, for the reads to pick from."""
    from sqlalchemy import text

    from adapters.persistence.sqlalchemy import create_engine_for

    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            jobs = connection.execute(text("SELECT job_id, target_id FROM sync_jobs WHERE state = 'PENDING'")).all()
    finally:
        engine.dispose()
    return [f"syncJobs/{job_id}" for job_id, _ in jobs], [target for _, target in jobs]


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process' resident set at its highest so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# --- timing --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Timings:
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def add(self, began: float, error: str = "") -> None:
        if error:
            self.errors += 1
            self.first_error = self.first_error or error
        else:
            self.latencies_ms.append((time.monotonic() - began) * 1000)

    def percentile(self, share: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def line(self, label: str) -> str:
        errors = f"  errors {self.errors} ({self.first_error[:80]})" if self.errors else ""
        return (
            f"  {label:<34}{len(self.latencies_ms):>7} calls  p50 {self.percentile(0.5):>7.1f} ms"
            f"  p99 {self.percentile(0.99):>7.1f} ms{errors}"
        )


async def closed_loop(clients: int, seconds: float, call: Callable[[int, int], Any], timings: Timings) -> None:
    """`clients` callers back to back for `seconds`; `call(client, n)` returns the awaitable."""
    stop_at = time.monotonic() + seconds

    async def client(c: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            began = time.monotonic()
            try:
                await call(c, n)
                timings.add(began)
            except grpc.aio.AioRpcError as exc:
                timings.add(began, f"{exc.code().name}: {exc.details()}")
            n += 1

    await asyncio.gather(*(client(c) for c in range(clients)))


class WebClient:
    """/metrics, /readyz and the console's home page (signed in with the admin key), each call timed."""

    def __init__(self, dep: Deployment) -> None:
        self._dep = dep
        self.console = requests.Session()
        page = self.console.get(f"{dep.console}/signin", timeout=30)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:300]
        signed_in = self.console.post(
            f"{dep.console}/signin", data={"csrf": csrf.group(1), "api_key": dep.key}, timeout=30
        )
        assert signed_in.ok and "Sign out" in signed_in.text, signed_in.text[:300]
        self.timings = {"/metrics": Timings(), "/readyz": Timings(), "console home page": Timings()}

    def round(self) -> None:
        for name, fetch in (
            ("/metrics", lambda: requests.get(f"{self._dep.http}/metrics", timeout=60)),
            ("/readyz", lambda: requests.get(f"{self._dep.http}/readyz", timeout=60)),
            ("console home page", lambda: self.console.get(f"{self._dep.console}/", timeout=60)),
        ):
            began = time.monotonic()
            try:
                answer = fetch()
                ok = answer.status_code == 200 and (name != "console home page" or "Sign out" in answer.text)
                self.timings[name].add(began, "" if ok else f"HTTP {answer.status_code}: {answer.text[:80]}")
            except requests.RequestException as exc:
                self.timings[name].add(began, str(exc))

    def every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(seconds):
                self.round()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


# --- the enqueue ---------------------------------------------------------------------------------------------


async def _enqueue(
    target: str, key: str, requests: list[list[s.SyncPaymentRequest]], start_at: float
) -> dict[str, Any]:
    metadata = (("authorization", f"Bearer {key}"),)
    timings = Timings()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = g.SyncServiceStub(channel)
        await channel.channel_ready()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began_at = time.time()

        async def client(c: int) -> None:
            for request in requests[c]:
                began = time.monotonic()
                try:
                    await stub.SyncPayment(request, metadata=metadata, timeout=120)
                    timings.add(began)
                except grpc.aio.AioRpcError as exc:
                    timings.add(began, f"{exc.code().name}: {exc.details()}")

        cpu_began = time.process_time()
        await asyncio.gather(*(client(c) for c in range(len(requests))))
        cpu = time.process_time() - cpu_began
    return {**dataclasses.asdict(timings), "began": began_at, "ended": time.time(), "cpu": cpu}


def enqueue_process(target: str, key: str, clients: int, calls: int, prefix: str, start_at: float) -> dict[str, Any]:
    # The requests are built before the start: on this 2-core machine the clients' CPU is taken from the
    # server's, and a CRM builds its requests elsewhere. Every process starts at the same instant (time.time:
    # shared by processes), after its own import, request building and channel connection.
    shares = [calls // clients + (1 if c < calls % clients else 0) for c in range(clients)]
    requests = [[backlog_payment(f"{prefix}c{c}-{n}", n) for n in range(shares[c])] for c in range(clients)]
    return asyncio.run(_enqueue(target, key, requests, start_at))


@dataclasses.dataclass
class Enqueue:
    seconds: float  # from the first call to the last answer
    timings: Timings
    cpu: dict[str, float]  # CPU seconds spent meanwhile: "API", "console", "clients"

    @property
    def rate(self) -> float:
        return len(self.timings.latencies_ms) / self.seconds

    def cpu_line(self) -> str:
        calls = max(1, len(self.timings.latencies_ms))
        return "CPU per call: " + ", ".join(f"{who} {cpu / calls * 1000:.2f} ms" for who, cpu in self.cpu.items())


def enqueue(dep: Deployment, args: argparse.Namespace, label: str) -> Enqueue:
    """`--enqueue` SyncPayment calls from `--clients` clients over `--client-processes` processes: wall seconds
    from the first call to the last answer, every call's latency, and the CPU seconds each party spent
    meanwhile (the API and console processes from /proc, the client processes their own; the whole run's
    CPU, so wall time on a loaded machine can be told apart from work the API does)."""
    processes = min(args.client_processes, args.clients)
    clients = [args.clients // processes + (1 if p < args.clients % processes else 0) for p in range(processes)]
    calls = [args.enqueue // processes + (1 if p < args.enqueue % processes else 0) for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        start_at = time.time() + 5.0  # the pool's processes import grpc, build their requests and connect meanwhile
        running = pool.starmap_async(
            enqueue_process,
            [(dep.target, dep.key, clients[p], calls[p], f"{label}p{p}", start_at) for p in range(processes)],
        )
        time.sleep(max(0.0, start_at - time.time()))  # the servers' CPU from the first call on
        api_cpu, console_cpu, backends = cpu_seconds(dep.api_pid), cpu_seconds(dep.console_pid), backend_cpu(dep)
        results = running.get()
        cpu = {
            "API": cpu_seconds(dep.api_pid) - api_cpu,
            "console": cpu_seconds(dep.console_pid) - console_cpu,
            "clients": sum(result["cpu"] for result in results),
        }
        if dep.api_backends:
            # A backend opened during the enqueue counts from 0; one closed during it is not counted.
            cpu["API's PostgreSQL backends"] = sum(
                seconds - backends.get(pid, 0.0) for pid, seconds in backend_cpu(dep).items()
            )
    # From the first call of any process to the last answer of all.
    wall = max(result["ended"] for result in results) - min(result["began"] for result in results)
    merged = Timings()
    for result in results:
        merged.latencies_ms += result["latencies_ms"]
        merged.errors += result["errors"]
        merged.first_error = merged.first_error or result["first_error"]
    return Enqueue(wall, merged, cpu)


# --- one database --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    database: str
    seed_seconds: float
    rss_start_mib: float
    rss_peak_mib: float
    enqueue: Enqueue
    reads: dict[str, Timings]
    console_peak_mib: float
    empty_enqueue: Enqueue | None  # the same enqueue on an empty database, this run (None: --no-baseline)


async def _reads(dep: Deployment, args: argparse.Namespace) -> dict[str, Timings]:
    metadata = (("authorization", f"Bearer {dep.key}"),)
    pick = random.Random(12)
    timings = {"GetSyncStatus": Timings(), "ListSyncErrors first page": Timings(), "ListSyncErrors 2nd page": Timings()}
    async with grpc.aio.insecure_channel(dep.target) as channel:
        stub = g.SyncServiceStub(channel)

        def status(_c: int, _n: int) -> Any:
            entity = r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id=pick.choice(dep.payment_ids))
            return stub.GetSyncStatus(s.GetSyncStatusRequest(entity=entity), metadata=metadata, timeout=60)

        first = await stub.ListSyncErrors(s.ListSyncErrorsRequest(page_size=50), metadata=metadata, timeout=60)
        if len(first.sync_jobs) != min(50, args.failed):
            raise RuntimeError(f"ListSyncErrors gave {len(first.sync_jobs)} jobs, not {min(50, args.failed)}")

        def errors_page(token: str) -> Callable[[int, int], Any]:
            def call(_c: int, _n: int) -> Any:
                request = s.ListSyncErrorsRequest(page_size=50, page_token=token)
                return stub.ListSyncErrors(request, metadata=metadata, timeout=60)

            return call

        await closed_loop(args.clients, args.seconds, status, timings["GetSyncStatus"])
        await closed_loop(args.clients, args.seconds, errors_page(""), timings["ListSyncErrors first page"])
        await closed_loop(
            args.clients, args.seconds, errors_page(first.next_page_token), timings["ListSyncErrors 2nd page"]
        )
    return timings


async def _watch(dep: Deployment, count: int, opened: asyncio.Event, stop: asyncio.Event, timings: Timings) -> None:
    """`count` WatchSyncJob streams on backlog jobs, held open until `stop`; times each first message."""
    metadata = (("authorization", f"Bearer {dep.key}"),)
    async with grpc.aio.insecure_channel(dep.target) as channel:
        stub = g.SyncServiceStub(channel)
        streams = []
        for name in random.Random(7).sample(dep.job_names, count):
            began = time.monotonic()
            stream = stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=metadata, timeout=600)
            try:
                await stream.read()
                timings.add(began)
            except grpc.aio.AioRpcError as exc:
                timings.add(began, f"{exc.code().name}: {exc.details()}")
            streams.append(stream)
        opened.set()
        await stop.wait()
        for stream in streams:
            stream.cancel()


async def _enqueue_with_watchers(
    dep: Deployment, args: argparse.Namespace, label: str, web: WebClient, *, streams: bool = True
) -> tuple[Enqueue, Timings]:
    opened, stop = asyncio.Event(), asyncio.Event()
    watch_timings = Timings()
    watching = asyncio.create_task(_watch(dep, args.streams if streams else 0, opened, stop, watch_timings))
    await opened.wait()
    polling = threading.Event()
    poller = web.every(1.0, polling) if args.web_polling else None
    try:
        done = await asyncio.get_running_loop().run_in_executor(None, enqueue, dep, args, label)
    finally:
        polling.set()
        if poller is not None:
            poller.join(timeout=60)
        stop.set()
        await watching
    return done, watch_timings


def empty_enqueue(database: str, args: argparse.Namespace, workdir: Path) -> Enqueue:
    """The baseline: the same enqueue (and web polling) on an empty database of the same kind, in this run,
    so that the backlog's own cost shows as a ratio whatever the machine's load."""
    with fresh_database(database, args.database_url, workdir) as url, deployment(url, workdir, f"{database}0") as dep:
        done, _ = asyncio.run(_enqueue_with_watchers(dep, args, f"{database}0", WebClient(dep), streams=False))
        return done


def run_database(database: str, args: argparse.Namespace, workdir: Path, template: dict[str, Any]) -> Figures:
    baseline = empty_enqueue(database, args, workdir) if args.baseline else None
    with fresh_database(database, args.database_url, workdir) as url:
        seed_seconds = seed(url, template, args.jobs, args.failed)
        print(
            f"{database}: {args.jobs} PENDING and {args.failed} FAILED jobs seeded in {seed_seconds:.0f} s", flush=True
        )
        with deployment(url, workdir, database) as dep:
            rss_start = rss_mib(dep.api_pid)
            web = WebClient(dep)
            for _ in range(args.web_rounds):
                web.round()
            reads = asyncio.run(_reads(dep, args))
            done, watch_timings = asyncio.run(_enqueue_with_watchers(dep, args, database, web))
            web.round()
            reads["WatchSyncJob first message"] = watch_timings
            reads.update(web.timings)
            return Figures(
                database,
                seed_seconds,
                rss_start,
                peak_rss_mib(dep.api_pid),
                done,
                reads,
                peak_rss_mib(dep.console_pid),
                baseline,
            )


# --- the report ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="PENDING jobs seeded")
    parser.add_argument("--failed", type=int, default=500, help="FAILED jobs seeded (ListSyncErrors' pages)")
    parser.add_argument("--enqueue", type=int, default=10_000, help="SyncPayment calls timed")
    parser.add_argument("--clients", type=int, default=32, help="concurrent gRPC clients")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--streams", type=int, default=100, help="WatchSyncJob streams held open (the per-key cap)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per read measured")
    parser.add_argument(
        "--web-rounds", type=int, default=5, help="/metrics, /readyz, console rounds before the enqueue"
    )
    parser.add_argument(
        "--web-polling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch /metrics, /readyz and the console's home page every second during the enqueue",
    )
    parser.add_argument("--database-url", default=os.environ.get(POSTGRES_ENV, ""), help="PostgreSQL (optional)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first enqueue the same calls on an empty database (the ratio shows what the backlog costs)",
    )
    args = parser.parse_args()

    databases = [d for d in args.databases.split(",") if d == "sqlite" or (d == "postgresql" and args.database_url)]
    if "postgresql" in args.databases and not args.database_url:
        print(f"PostgreSQL skipped: set {POSTGRES_ENV} or --database-url")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="qbsync-bench-backlog-") as tmp:
        workdir = Path(tmp)
        template = template_rows(workdir)
        for database in databases:
            results.append(run_database(database, args, workdir, template))

    print(
        f"\nThe API with {args.jobs:,} PENDING jobs ({args.clients} clients, {args.streams} WatchSyncJob streams open)"
    )
    for f in results:
        print(f"{f.database}:")
        print(
            f"  API RSS at start {f.rss_start_mib:.0f} MiB, peak {f.rss_peak_mib:.0f} MiB;"
            f" console peak {f.console_peak_mib:.0f} MiB"
        )
        print(
            f"  enqueue of {args.enqueue:,}: {f.enqueue.seconds:.1f} s ({f.enqueue.rate:.0f} calls/s);"
            f" {f.enqueue.cpu_line()}"
        )
        if f.empty_enqueue is not None:
            empty = f.empty_enqueue
            print(
                f"  the same on an empty database (this run): {empty.seconds:.1f} s ({empty.rate:.0f} calls/s);"
                f" with the backlog {f.enqueue.rate / empty.rate:.0%} of that rate; {empty.cpu_line()}"
            )
        print(f.enqueue.timings.line("SyncPayment (during the enqueue)"))
        for name, timings in f.reads.items():
            print(timings.line(name))

    print("\nTargets (issue 12)")
    for f in results:
        verdict = "PASS" if f.rss_peak_mib <= RSS_LIMIT_MIB else "FAIL"
        print(
            f"  {verdict}  {f.database} API peak RSS with {args.jobs:,} pending jobs <= {RSS_LIMIT_MIB:g} MiB:"
            f" {f.rss_peak_mib:.0f} MiB"
        )
        rate = f.enqueue.rate
        ok = rate * ENQUEUE_LIMIT_SECONDS >= TARGET_ENQUEUE and f.enqueue.timings.errors == 0
        verdict = "PASS" if ok else "FAIL"
        errors = f", {f.enqueue.timings.errors} errors" if f.enqueue.timings.errors else ""
        measured = (
            "" if args.enqueue == TARGET_ENQUEUE else f" at the rate of {args.enqueue:,} in {f.enqueue.seconds:.1f} s"
        )
        print(
            f"  {verdict}  {f.database} enqueue of {TARGET_ENQUEUE:,} jobs with {args.jobs:,} pending"
            f" <= {ENQUEUE_LIMIT_SECONDS:g} s: {TARGET_ENQUEUE / rate if rate else float('inf'):.1f} s"
            f" ({rate:.0f} calls/s{measured}){errors}"
        )


if __name__ == "__main__":
    main()
