"""One company at QuickBooks' ceiling: how close the request limiter lets a deployment come to QBO's per-company
limits (500 requests a minute, 10 a second, 10 in flight) without being throttled.

    .venv/bin/python bench/company_ceiling.py [--seconds 60] [--workers 3] [--threads 4] [--latency 100]

One tenant, one emulator company with QBO's own limits and `--latency` ms added to every request. A backlog
of new-customer deposits (3 QBO calls each: customer look-up, customer, payment; fewer when concurrent
look-ups and customer creates of the company ride in batches) larger than the limits allow in `--seconds`
is enqueued through the API first; then the workers start, all at once, and drive the
company. Measured from the company's first QBO request for `--seconds`: requests per minute answered (vs the
ceiling the limiter is configured with, `RateLimits().per_minute`), 429s the emulator returned, and syncs
per second completed. On PostgreSQL `--workers` worker processes share the company through the database's
limiter; on SQLite one process (API and workers) uses the in-process one.

Why a run of 60 s measures the per-minute ceiling: the backlog is there from the first request, so a
limiter that admits each request at the first instant the one-second and one-minute windows (and the
in-flight cap) allow reaches the minute's 500 within it (at 10 a second that takes 50 s); each later minute
repeats the first one's admissions a window's length later, so a shortfall in the first minute is one in
every minute. `--seconds 120` shows the second minute too.

Prints each target as `  PASS  <label>: <figure>` or `  FAIL  ...`. Not a test: PostgreSQL runs need
QBSYNC_TEST_DATABASE_URL (or --database-url); without one only SQLite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc

# The deployment helpers are shared with the scale tests, which must not depend on bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "scale"))

from scale_support import (  # noqa: E402
    POSTGRES_ENV,
    Cluster,
    Emulator,
    customer_message,
    fresh_postgres_schema,
    job_states,
    payment_message,
)

from adapters.persistence.sqlalchemy import migrate  # noqa: E402
from core.ports import RateLimits  # noqa: E402
from qbsync.v1 import sync_service_pb2 as s  # noqa: E402
from qbsync.v1 import sync_service_pb2_grpc as g  # noqa: E402

CEILING_SHARE = 0.97  # of the limiter's configured requests a minute
TODAY_SYNCS_PER_SECOND = 2.78  # 500 a minute / 3 calls per new-customer deposit, before batching
# What the backlog is sized with: the payment's call at least (look-ups and creates may ride in batches), so
# that the backlog lasts the measured span however well the requests batch.
CALLS_PER_SYNC = 1
STATE_POLL_SECONDS = 0.25


@dataclass
class Figures:
    label: str
    seconds: float
    answered: int  # QBO requests answered (not throttled) within the measured span
    throttled: Counter[str]  # 429s over the whole run, by the limit the emulator said was broken
    synced: int  # jobs succeeded within the measured span
    peak_in_flight: int
    ceiling_per_minute: int

    @property
    def per_minute(self) -> float:
        return self.answered * 60 / self.seconds

    @property
    def share(self) -> float:
        return self.per_minute / self.ceiling_per_minute

    @property
    def syncs_per_second(self) -> float:
        return self.synced / self.seconds

    @property
    def calls_per_sync(self) -> float:
        return self.answered / self.synced if self.synced else 0.0


@contextmanager
def database(kind: str, postgres: str, workdir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with fresh_postgres_schema(postgres) as url:
            yield url
        return
    url = f"sqlite:///{workdir / 'bench.db'}"
    migrate(url)
    yield url


def run(kind: str, args: argparse.Namespace, emulator: Emulator, workdir: Path) -> Figures:
    emulator.admin("POST", "reset")
    emulator.admin("POST", "settings", {"latency_ms": args.latency})  # QBO's own limits: the defaults
    limits = RateLimits()
    backlog = int(limits.per_minute * args.seconds / 60 / CALLS_PER_SYNC * 1.3) + 20
    with database(kind, args.database_url, workdir) as url:
        cluster = Cluster(url, workdir)
        try:
            realm, metadata = cluster.connect_tenant("tenant0", emulator)
            api, target = cluster.start_api()
            with grpc.insecure_channel(target) as channel:
                stub = g.SyncServiceStub(channel)
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda req: stub.SyncPayment(req, metadata=metadata, timeout=60), _deposits(backlog)))
            mark = time.time()  # the requests before (connecting the tenant) are not the workers'
            if kind == "sqlite":
                # One process serves a SQLite database: the API stops, the all-in-one process takes over.
                api.terminate()
                api.wait(timeout=30)
                # Connecting the tenant (above) sent requests to the company from this bench's process, whose
                # in-process limiter is not the deployment's: QBO's meter would count them in the workers'
                # first minute, which no single-process deployment would do (its own limiter would have
                # counted them). The emulator forgets them (its log before `mark` is not measured anyway).
                emulator.admin("DELETE", "requests")
                cluster.start_api("all", role="all", threads=args.threads * args.workers)
                label = f"sqlite, 1 process x {args.threads * args.workers} threads"
            else:
                for n in range(args.workers):
                    cluster.start_worker(f"worker{n}", threads=args.threads, wait=False)
                label = f"postgresql, {args.workers} workers x {args.threads} threads"
            samples = _sample_states(url, emulator, realm, mark, args.seconds)
            log = _workers_requests(emulator, realm, mark)
            if args.dump:
                (Path(args.dump) / f"{kind}.json").write_text(json.dumps(log, default=str))
        finally:
            cluster.stop_all()
    first = float(log[0]["started_at"])
    end = first + args.seconds
    inside = [entry for entry in log if float(entry["started_at"]) < end]
    times = [t for t, _ in samples]
    at_end = samples[max(0, bisect_right(times, end) - 1)][1]
    return Figures(
        label=label,
        seconds=args.seconds,
        answered=sum(1 for entry in inside if not entry["throttled"]),
        throttled=Counter(str(entry["throttled"]) for entry in log if entry["throttled"]),
        synced=at_end,
        peak_in_flight=max(int(entry["in_flight_at_start"]) for entry in log),
        ceiling_per_minute=limits.per_minute,
    )


def _workers_requests(emulator: Emulator, realm: str, mark: float) -> list[dict[str, Any]]:
    """The company's API requests since `mark` (wall clock, as the emulator logs them), oldest first."""
    log = [e for e in emulator.requests(realm) if "in_flight_at_start" in e and float(e["started_at"]) >= mark]
    return sorted(log, key=lambda e: float(e["started_at"]))


def _sample_states(url: str, emulator: Emulator, realm: str, mark: float, seconds: float) -> list[tuple[float, int]]:
    """(wall-clock time, jobs succeeded) every STATE_POLL_SECONDS until `seconds` after the company's first
    request (the emulator logs wall-clock times)."""
    samples: list[tuple[float, int]] = []
    first: float | None = None
    while first is None or time.time() < first + seconds + STATE_POLL_SECONDS:
        samples.append((time.time(), job_states(url)["SUCCEEDED"]))
        if first is None:
            log = _workers_requests(emulator, realm, mark)
            first = float(log[0]["started_at"]) if log else None
        time.sleep(STATE_POLL_SECONDS)
    return samples


def _deposits(count: int) -> list[s.SyncPaymentRequest]:
    """`count` deposits, each by a customer new to the company."""
    return [
        s.SyncPaymentRequest(
            opportunity=customer_message(f"c-{n:05d}", f"Ceiling{n:05d} Customer"),
            payment=payment_message(f"pay-{n}", Decimal(200 + n % 50)),
        )
        for n in range(count)
    ]


def print_figures(rows: list[Figures]) -> None:
    header = (
        f"{'setup':<36} {'secs':>5} {'answered':>8} {'req/min':>8} {'ceiling':>7} {'429s':>5} {'syncs/s':>7} "
        f"{'peak':>4} {'calls/sync':>10}"
    )
    print(header)
    print("-" * len(header))
    for f in rows:
        print(
            f"{f.label:<36} {f.seconds:>5.0f} {f.answered:>8} {f.per_minute:>8.1f} {f.ceiling_per_minute:>7} "
            f"{f.throttled.total():>5} {f.syncs_per_second:>7.2f} {f.peak_in_flight:>4} {f.calls_per_sync:>10.2f}"
        )
    print("peak: most QBO requests in flight at once for the company, as the emulator saw them\n")
    for f in rows:
        verdict = "PASS" if f.share >= CEILING_SHARE else "FAIL"
        print(
            f"  {verdict}  {f.label} requests/min >= {CEILING_SHARE:.0%} of the ceiling: "
            f"{f.share:.1%} ({f.per_minute:.0f} of {f.ceiling_per_minute})"
        )
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(f.throttled.items()))
        verdict = "PASS" if not f.throttled else "FAIL"
        print(f"  {verdict}  {f.label} 429s provoked = 0: {f.throttled.total()}{f' ({reasons})' if reasons else ''}")
        verdict = "PASS" if f.syncs_per_second > TODAY_SYNCS_PER_SECOND else "FAIL"
        print(f"  {verdict}  {f.label} syncs/s per company > {TODAY_SYNCS_PER_SECOND}: {f.syncs_per_second:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="measured span from the first QBO request")
    parser.add_argument("--workers", type=int, default=3, help="worker processes on PostgreSQL")
    parser.add_argument("--threads", type=int, default=4, help="worker threads per worker process")
    parser.add_argument("--latency", type=int, default=100, help="ms added to every QBO request")
    parser.add_argument("--databases", default="postgresql,sqlite", help="which databases to run")
    parser.add_argument("--dump", default="", help="a directory to write the emulator's request log to")
    parser.add_argument("--database-url", default=os.environ.get(POSTGRES_ENV, ""), help="PostgreSQL URL")
    args = parser.parse_args(argv)
    kinds = args.databases.split(",")
    if "postgresql" in kinds and not args.database_url:
        print(f"{POSTGRES_ENV} not set: SQLite only", file=sys.stderr)
        kinds.remove("postgresql")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qbsync-ceiling-") as tmp:
        emulator = Emulator(Path(tmp))
        try:
            for kind in kinds:
                workdir = Path(tmp) / kind
                workdir.mkdir()
                rows.append(run(kind, args, emulator, workdir))
                print(f"  done: {kind}", file=sys.stderr, flush=True)
        finally:
            emulator.stop()
    print_figures(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
