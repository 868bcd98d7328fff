"""The core's `Metrics` port on Prometheus (prometheus-client), the queue's collector, and what a process'
/metrics serves (`ScrapeTarget`).

Metrics live in prometheus-client's process-wide registry, as the library intends, each defined by the
adapter that records it: the gRPC calls in `adapters.grpc.metrics` (its interceptor), the QuickBooks
requests in `adapters.quickbooks.qbo.metrics`, the jobs and leases here (the core reports them through
`PrometheusMetrics`). What must be asked of the database at scrape time (the queue) is a collector of one
process' wiring (`QueueCollector`), served next to them by `ScrapeTarget`.

Labels are bounded sets, never a tenant, a record id or a name: a tenant label would grow with the
customer base (an operator finds a tenant's jobs with `qbsync errors`, and its log lines carry
`tenant`). Here: job `kind` (SyncJobKind values), `outcome` (succeeded, retry, failed) and `reason` (the
core's error reason codes, `QbsyncError.reason`, a fixed list in core.errors; "" on success). The gRPC
and QuickBooks modules list theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from core.ports import Clock, Metrics, UnitOfWorkFactory

JOBS_ENDED = Counter(
    "qbsync_sync_jobs_ended",
    "Runs of sync jobs that ended, by job kind, outcome (succeeded, retry, failed) and reason code.",
    ["kind", "outcome", "reason"],
)
LEASE_TAKEOVERS = Counter(
    "qbsync_sync_job_lease_takeovers",
    "Jobs claimed whose previous worker's lease had run out (that worker died or stalled), by kind.",
    ["kind"],
)
CLAIM_LOOP_LAST = Gauge(
    "qbsync_worker_claim_loop_last_run_timestamp_seconds",
    "When a worker of this process last went round its claim loop (Unix time); 0 before the first.",
)


class PrometheusMetrics(Metrics):
    """The core's `Metrics` port on the counters above; also remembers when a claim loop last ran (for
    readiness: a worker process whose loops stopped is not ready)."""

    def __init__(self) -> None:
        self._last_loop: float | None = None  # time.monotonic()
        self._guard = threading.Lock()

    def job_ended(self, kind: str, outcome: str, reason: str) -> None:
        JOBS_ENDED.labels(kind, outcome, reason).inc()

    def lease_taken_over(self, kind: str) -> None:
        LEASE_TAKEOVERS.labels(kind).inc()

    def claim_loop_ran(self) -> None:
        with self._guard:
            self._last_loop = time.monotonic()
        CLAIM_LOOP_LAST.set_to_current_time()

    def seconds_since_claim_loop(self) -> float | None:
        """How long ago a claim loop last went round; None if none has yet."""
        with self._guard:
            last = self._last_loop
        return None if last is None else time.monotonic() - last


class QueueCollector(Collector):
    """The queue, read from the database at each scrape: due PENDING jobs and how long the oldest of
    them has waited. One aggregate query (`SyncJobRepository.due_backlog`) in a read-only unit of work
    (on SQLite, a scrape must not hold the write lock that every enqueue waits for); when the database
    cannot be read the two gauges are left out of that scrape (absent, not a false 0) and
    `qbsync_database_up` says 0."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape; nothing to check for clashes at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("qbsync_database_up", "1 when the database answered this scrape's query, else 0.")
        now = self._clock.now()
        try:
            with self._uow_factory.read_only() as uow:
                backlog = uow.jobs.due_backlog(now)
        except Exception:  # noqa: BLE001 - a scrape must answer, whatever the database does
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "qbsync_queue_due_jobs", "PENDING sync jobs that are due now (waiting for a worker).", value=backlog.jobs
        )
        age = 0.0 if backlog.oldest_due_since is None else max(0.0, (now - backlog.oldest_due_since).total_seconds())
        yield GaugeMetricFamily(
            "qbsync_queue_oldest_due_job_age_seconds",
            "How long the longest-waiting due job has been due; 0 when none is.",
            value=age,
        )


class ScrapeTarget(Collector):
    """What one process' /metrics serves: the process-wide registry plus this wiring's collectors (a
    test process builds several wirings; the process-wide registry must not hold any of them)."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        for collector in self._collectors:
            yield from collector.collect()
