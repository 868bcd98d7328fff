"""qbsync's Prometheus metrics (prometheus-client): what every adapter counts, and the core's `Metrics` port.

The counters and histograms live in prometheus-client's process-wide registry, as the library intends:
the gRPC interceptor (`adapters.grpc.metrics`), the QuickBooks client (`adapters.quickbooks.qbo`) and the
worker (through `PrometheusMetrics`, the core's port) record into them wherever they run. What must be
asked of the database at scrape time (the queue) is a collector of one process' wiring
(`QueueCollector`), served next to them by `scrape_target`.

Labels are bounded sets, never a tenant, a record id or a name: a tenant label would grow with the
customer base (an operator finds a tenant's jobs with `qbsync errors`, and its log lines carry
`tenant`). The sets:
- gRPC `method`: the full method names of the served services; `code`: a gRPC status code name;
- job `kind`: SyncJobKind values; `outcome`: succeeded, retry, failed; `reason`: core error reason codes
  (`QbsyncError.reason`, a fixed list in core.errors), "" on success;
- QBO `operation`: the HTTP method and the first path segment after the company, e.g. "POST invoice",
  "GET query", "GET customer" (never the id, nor the query); `status`: the HTTP status, "none" when no
  answer came; retry `cause`: throttled, unauthorized, server_error, transport; token refresh
  `outcome`: refreshed, refused, failed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from core.ports import Clock, Metrics, UnitOfWorkFactory

# Latency buckets in seconds: a GetSyncStatus answers in milliseconds; a QBO request in tenths of a
# second to tens of seconds (timeouts, throttling).
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_QBO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

GRPC_HANDLED = Counter(
    "qbsync_grpc_server_handled", "gRPC calls answered, by method and status code.", ["method", "code"]
)
GRPC_HANDLING_SECONDS = Histogram(
    "qbsync_grpc_server_handling_seconds",
    "Time from a gRPC call's arrival to its answer (a stream: to its end), by method.",
    ["method"],
    buckets=_FAST_BUCKETS,
)
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
QBO_REQUESTS = Counter(
    "qbsync_qbo_requests", "HTTP requests sent to the QuickBooks API, by operation and status.", ["operation", "status"]
)
QBO_REQUEST_SECONDS = Histogram(
    "qbsync_qbo_request_duration_seconds",
    "Time a QuickBooks API request took once sent (the limiter's wait excluded), by operation.",
    ["operation"],
    buckets=_QBO_BUCKETS,
)
QBO_THROTTLED = Counter(
    "qbsync_qbo_throttled_responses",
    "Answers of QuickBooks saying it throttled a request (HTTP 429 or Fault 3001), by operation.",
    ["operation"],
)
QBO_RETRIES = Counter(
    "qbsync_qbo_request_retries",
    "QuickBooks requests sent again after a failure, by cause (throttled, unauthorized, server_error, transport).",
    ["cause"],
)
QBO_TOKEN_REFRESHES = Counter(
    "qbsync_qbo_token_refreshes",
    "Access token refreshes at Intuit, by outcome (refreshed, refused, failed).",
    ["outcome"],
)
QBO_LIMITER_WAIT_SECONDS = Histogram(
    "qbsync_qbo_limiter_wait_seconds",
    "Time a QuickBooks request waited for the per-company request limiter before it could be sent.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0),
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
    them has waited. One aggregate query (`SyncJobRepository.due_backlog`); when the database cannot be
    read the two gauges are left out of that scrape (absent, not a false 0) and
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
            with self._uow_factory() as uow:
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


_SEGMENT = re.compile(r"[a-z]{1,40}")


def qbo_operation(method: str, url: str) -> str:
    """A bounded label for a QuickBooks API request: the HTTP method and the path's first segment after
    /company/{realm}/ ("POST invoice", "GET query"), never an id; "other" for anything else."""
    parts = urlsplit(url).path.strip("/").split("/")
    segment = "other"
    if "company" in parts:
        rest = parts[parts.index("company") + 2 :]
        if rest and _SEGMENT.fullmatch(rest[0].lower()):
            segment = rest[0].lower()
    return f"{method.upper()} {segment}"
