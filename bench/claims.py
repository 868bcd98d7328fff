"""Claims (issue 12): claim latency with a big backlog, and claimers in parallel on PostgreSQL.

    .venv/bin/python bench/claims.py [--jobs 100000] [--claims 30] [--databases sqlite,postgresql]

For each database (SQLite; PostgreSQL in a fresh schema when QBSYNC_TEST_DATABASE_URL or --database-url is
set):

1. Seeds `--jobs` PENDING jobs (bulk INSERTs, distinct customers, create_times 10 ms apart).
2. Claim latency: `--claims` claims, each `claim_next` in its own unit of work, committed, timed one by one;
   first at migration 0012 (the baseline: no claim index), then after `upgrade head` (0013's partial index
   in claim order). Prints p50/p99 of both, their ratio, and the claim statement's plan.
3. PostgreSQL only, claimers in parallel: `--threads` threads claim for `--seconds`, each holding its claim's
   transaction `--hold-ms` before committing (a worker's round trips to a database across a network); the
   baseline is the same with the single lock every claim took before (`pg_advisory_xact_lock(hashtext(
   'qbsync-claim'))`) taken first. Prints claims/s of both and the ratio.

Targets: claim p99 with the index <= 10% of the p99 without it (the same run); parallel claimers >= 2x the
single-lock baseline's claims/s.
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alembic import command  # noqa: E402
from sqlalchemy import Engine, event, insert, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from adapters.persistence.sqlalchemy import (  # noqa: E402
    SqlAlchemyUnitOfWorkFactory,
    create_engine_for,
    migrate,
)
from adapters.persistence.sqlalchemy.jobs import _values  # noqa: E402
from adapters.persistence.sqlalchemy.migrate import alembic_config  # noqa: E402
from adapters.persistence.sqlalchemy.models import SyncJobRow  # noqa: E402
from core.domain import EntityRef, EntityType, SyncJob, SyncJobKind  # noqa: E402
from tests.postgres_schema import POSTGRES_ENV, fresh_postgres_schema  # noqa: E402

P99_SHARE = 0.10
PARALLEL_SHARE = 2.0
_OLD_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('qbsync-claim'))")


def seed(engine: Engine, jobs: int) -> None:
    start = datetime.now(UTC) - timedelta(hours=jobs * 0.01 / 3600 + 1)
    with SqlAlchemyUnitOfWorkFactory(engine)() as uow:
        uow.tenants.ensure("t1")
        uow.commit()
    batch = 5_000
    with engine.begin() as connection:
        for first in range(0, jobs, batch):
            rows = []
            for n in range(first, min(first + batch, jobs)):
                created = start + timedelta(milliseconds=10 * n)
                job = SyncJob(
                    job_id=f"job-{n:07}",
                    tenant_id="t1",
                    kind=SyncJobKind.SYNC_PAYMENT,
                    target=EntityRef(EntityType.PAYMENT, f"P{n}"),
                    opportunity_id=f"O{n}",
                    customer_id=f"C{n}",
                    create_time=created,
                    update_time=created,
                    identity_key=f"customer-{n}@example.com",
                )
                rows.append(_values(job))
            connection.execute(insert(SyncJobRow), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE sync_jobs"))


def claim_latencies(engine: Engine, claims: int) -> list[float]:
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    timings: list[float] = []
    for n in range(claims):
        began = time.perf_counter()
        now = datetime.now(UTC)
        with factory() as uow:
            job = uow.jobs.claim_next(f"bench-{n}", now, now + timedelta(minutes=30))
            uow.commit()
        timings.append((time.perf_counter() - began) * 1000)
        assert job is not None
    return timings


def plan(engine: Engine) -> str:
    """The plan of the claim's ordered SELECT, as a real claim sends it (its SQL and driver parameters)."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "ORDER BY" in statement and not captured:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        claim_latencies(engine, 1)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = captured[0]
    postgres = engine.dialect.name == "postgresql"
    fresh = create_engine_for(engine.url)  # a new connection: no plan cached from before the migration
    with fresh.connect() as connection:
        rows = connection.exec_driver_sql(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, parameters)
        lines = "\n".join(f"    {row[0] if postgres else row[-1]}" for row in rows)
    fresh.dispose()
    return lines


def parallel_claims(engine: Engine, threads: int, seconds: float, hold_ms: float, single_lock: bool) -> float:
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    stop = threading.Event()
    counts = [0] * threads

    def claimer(index: int) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            with factory() as uow:
                if single_lock:
                    session: Session = uow._session.session()  # type: ignore[attr-defined]  # noqa: SLF001 - the old lock
                    session.execute(_OLD_LOCK)
                job = uow.jobs.claim_next(f"par-{index}", now, now + timedelta(minutes=30))
                time.sleep(hold_ms / 1000)
                uow.commit()
            if job is not None:
                counts[index] += 1

    workers = [threading.Thread(target=claimer, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


@contextmanager
def database(name: str, workdir: Path) -> Iterator[str]:
    if name == "postgresql":
        with fresh_postgres_schema("claims_bench") as url:
            yield url.render_as_string(hide_password=False)
        return
    url = f"sqlite:///{workdir / 'claims.db'}"
    migrate(url)
    yield url


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(name: str, url: str, args: argparse.Namespace) -> list[str]:
    targets: list[str] = []
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:  # the baseline: the schema before the claim index
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0012")
        began = time.perf_counter()
        seed(engine, args.jobs)
        print(f"{name}: seeded {args.jobs:,} PENDING jobs in {time.perf_counter() - began:.1f} s")
        print(f"  claim plan without the claim index:\n{plan(engine)}")
        before = claim_latencies(engine, args.claims)
        migrate(url)
        if name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE sync_jobs"))
        print(f"  claim plan with the claim index (0013):\n{plan(engine)}")
        after = claim_latencies(engine, args.claims)
        p50b, p99b = statistics.median(before), percentile(before, 0.99)
        p50a, p99a = statistics.median(after), percentile(after, 0.99)
        print(f"  claim without the index: p50 {p50b:.1f} ms, p99 {p99b:.1f} ms ({args.claims} claims)")
        print(f"  claim with the index:    p50 {p50a:.1f} ms, p99 {p99a:.1f} ms ({p99a / p99b:.3f}x the p99)")
        verdict = "PASS" if p99a <= P99_SHARE * p99b else "FAIL"
        targets.append(
            f"  {verdict}  {name} claim p99 with {args.jobs:,} pending jobs <= {P99_SHARE:.0%} of it without the"
            f" claim index: {p99a / p99b:.1%} ({p99a:.1f} ms vs {p99b:.0f} ms)"
        )
        if name == "postgresql":
            locked = parallel_claims(engine, args.threads, args.seconds, args.hold_ms, single_lock=True)
            free = parallel_claims(engine, args.threads, args.seconds, args.hold_ms, single_lock=False)
            print(
                f"  {args.threads} claimers holding each claim {args.hold_ms:g} ms: {free:.0f} claims/s;"
                f" with the single claim lock {locked:.0f} claims/s"
            )
            ratio = free / locked
            verdict = "PASS" if ratio >= PARALLEL_SHARE else "FAIL"
            targets.append(
                f"  {verdict}  postgresql claims in parallel, {args.threads} claimers vs one claim lock"
                f" >= {PARALLEL_SHARE:g}x: {ratio:.2f}x"
            )
    finally:
        engine.dispose()
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="PENDING jobs seeded")
    # Few by default: without the index a PostgreSQL claim of 100,000 pending jobs takes seconds.
    parser.add_argument("--claims", type=int, default=30, help="claims timed, with and without the index")
    parser.add_argument("--threads", type=int, default=4, help="parallel claimers (PostgreSQL)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per parallel run")
    parser.add_argument("--hold-ms", type=float, default=20.0, help="how long each claim's transaction stays open")
    parser.add_argument("--database-url", default=os.environ.get(POSTGRES_ENV, ""), help="PostgreSQL (optional)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    if args.database_url:
        os.environ[POSTGRES_ENV] = args.database_url
    names = [d for d in args.databases.split(",") if d == "sqlite" or (d == "postgresql" and args.database_url)]
    if "postgresql" in args.databases and not args.database_url:
        print(f"PostgreSQL skipped: set {POSTGRES_ENV} or --database-url")
    targets: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qbsync-bench-claims-") as tmp:
        for name in names:
            with database(name, Path(tmp)) as url:
                targets += run(name, url, args)
    print("\nTargets (issue 12)")
    for line in targets:
        print(line)


if __name__ == "__main__":
    main()
