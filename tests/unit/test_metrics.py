"""The metrics' parts on their own: what the worker tells the `Metrics` port (outcomes, reasons, lease
takeovers), the Prometheus adapter of the port, the queue collector, the QBO operation label, and the
health listener's /healthz and /readyz over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import adapters.grpc.metrics  # noqa: F401  (registers the gRPC families, as a server process imports them)
from adapters.metrics import PrometheusMetrics, QueueCollector
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies, Fault
from adapters.quickbooks.qbo.metrics import qbo_operation
from core.domain import Customer, Opportunity, Payment, PaymentMethod, Permission, Principal, SyncJobState
from core.errors import StorageUnavailableError
from core.ports import Metrics, UnitOfWork
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from qbsync.health import HealthListener, HealthMonitor, Readiness
from tests.unit.support import CountingIds, ManualClock

LEASE = timedelta(minutes=10)
OPP = Opportunity("o1", "1001", Customer("c1", "Ann", "Lee", email="ann@example.com"))


@dataclass
class Recorded(Metrics):
    ended: list[tuple[str, str, str]] = field(default_factory=list)
    takeovers: list[str] = field(default_factory=list)
    loops: int = 0

    def job_ended(self, kind: str, outcome: str, reason: str) -> None:
        self.ended.append((kind, outcome, reason))

    def lease_taken_over(self, kind: str) -> None:
        self.takeovers.append(kind)

    def claim_loop_ran(self) -> None:
        self.loops += 1


class Rig:
    def __init__(self) -> None:
        self.uow_factory = InMemoryUnitOfWorkFactory()
        self.companies = FakeQuickBooksCompanies()
        self.clock = ManualClock()
        self.metrics = Recorded()
        self.service = SyncService(self.uow_factory, self.companies, self.clock, CountingIds())
        self.worker = SyncWorker(
            self.uow_factory,
            SyncEngine(self.uow_factory, self.companies, self.clock),
            self.clock,
            lease=LEASE,
            backoff_base=timedelta(0),
            backoff_cap=timedelta(0),
            metrics=self.metrics,
        )
        with self.uow_factory() as uow:
            uow.tenants.ensure("acme")
            uow.commit()

    @property
    def qbo(self) -> FakeQuickBooks:
        return self.companies.for_tenant("acme")

    def sync(self, payment_id: str = "p1") -> None:
        self.clock.advance(timedelta(seconds=1))
        payment = Payment(payment_id, Decimal("100.00"), PaymentMethod.CHECK, self.clock.now(), "", ())
        self.service.sync_payment(Principal("acme", frozenset(Permission)), OPP, payment)


def test_the_worker_reports_each_run_by_kind_outcome_and_reason() -> None:
    rig = Rig()
    rig.sync()
    rig.qbo.inject(Fault.UNAVAILABLE, Fault.UNAVAILABLE, Fault.UNAVAILABLE, Fault.UNAVAILABLE)
    first = rig.worker.run_next("w1")
    assert first is not None and first.state is SyncJobState.PENDING  # rescheduled
    while (ran := rig.worker.run_next("w1")) is not None and ran.state is SyncJobState.PENDING:
        pass
    assert ran is not None and ran.state is SyncJobState.SUCCEEDED
    retries = [e for e in rig.metrics.ended if e[1] == "retry"]
    assert retries and set(retries) == {("SYNC_PAYMENT", "retry", "QUICKBOOKS_UNAVAILABLE")}
    assert rig.metrics.ended[-1] == ("SYNC_PAYMENT", "succeeded", "")
    assert len(rig.metrics.ended) == ran.attempts  # one report per run
    assert rig.metrics.takeovers == []


def test_a_job_claimed_after_its_previous_workers_lease_ran_out_is_a_takeover() -> None:
    rig = Rig()
    rig.sync()
    with rig.uow_factory() as uow:  # worker w1 claims it, then dies
        assert uow.jobs.claim_next("w1", rig.clock.now(), rig.clock.now() + LEASE) is not None
        uow.commit()
    assert rig.worker.run_next("w2") is None  # its lease holds
    rig.clock.advance(LEASE + timedelta(seconds=1))
    taken = rig.worker.run_next("w2")
    assert taken is not None and taken.state is SyncJobState.SUCCEEDED and taken.attempts == 2
    assert rig.metrics.takeovers == ["SYNC_PAYMENT"]
    assert rig.metrics.ended == [("SYNC_PAYMENT", "succeeded", "")]


def test_a_job_whose_retries_ran_out_is_reported_failed_with_its_reason() -> None:
    rig = Rig()
    rig.sync()
    rig.qbo.inject(*[Fault.UNAVAILABLE] * 100)
    rig.worker.drain()
    with rig.uow_factory() as uow:
        [failed] = uow.jobs.list_failed("acme", offset=0, limit=10)
    assert failed.attempts == failed.max_attempts
    assert rig.metrics.ended == [("SYNC_PAYMENT", "retry", "QUICKBOOKS_UNAVAILABLE")] * (failed.attempts - 1) + [
        ("SYNC_PAYMENT", "failed", "QUICKBOOKS_UNAVAILABLE")
    ]


def test_the_claim_loop_reports_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    rig = Rig()
    stop = threading.Event()
    rounds = iter(range(3))

    def run_next(worker_id: str) -> None:
        if next(rounds, None) is None:
            stop.set()

    monkeypatch.setattr(rig.worker, "run_next", run_next)
    rig.worker.run_until(stop, "w1", idle_seconds=0)
    assert rig.metrics.loops == 4  # three rounds and the one that stopped the loop


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_prometheus_metrics_count_into_the_process_registry() -> None:
    metrics = PrometheusMetrics()
    ended = ("qbsync_sync_jobs_ended_total", {"kind": "SYNC_PAYOUT", "outcome": "retry", "reason": "X_TEST"})
    before, takeovers = sample(ended[0], **ended[1]), sample("qbsync_sync_job_lease_takeovers_total", kind="K_TEST")
    metrics.job_ended("SYNC_PAYOUT", "retry", "X_TEST")
    metrics.job_ended("SYNC_PAYOUT", "retry", "X_TEST")
    metrics.lease_taken_over("K_TEST")
    assert sample(ended[0], **ended[1]) == before + 2
    assert sample("qbsync_sync_job_lease_takeovers_total", kind="K_TEST") == takeovers + 1
    assert metrics.seconds_since_claim_loop() is None
    metrics.claim_loop_ran()
    since = metrics.seconds_since_claim_loop()
    assert since is not None and 0 <= since < 5
    assert sample("qbsync_worker_claim_loop_last_run_timestamp_seconds") > 0


def collected(collector: QueueCollector) -> dict[str, float]:
    return {s.name: s.value for family in collector.collect() for s in family.samples}


def test_the_queue_collector_reads_due_jobs_and_the_oldest_ones_wait_at_scrape_time() -> None:
    rig = Rig()
    collector = QueueCollector(rig.uow_factory, rig.clock)
    assert collected(collector) == {
        "qbsync_database_up": 1,
        "qbsync_queue_due_jobs": 0,
        "qbsync_queue_oldest_due_job_age_seconds": 0,
    }
    rig.sync("p1")  # accepted at +1 s
    rig.sync("p2")  # +2 s (another customer's lock key does not matter: both are due)
    rig.clock.advance(timedelta(seconds=58))
    assert collected(collector) == {
        "qbsync_database_up": 1,
        "qbsync_queue_due_jobs": 2,
        "qbsync_queue_oldest_due_job_age_seconds": 59,
    }
    rig.worker.drain()
    assert collected(collector)["qbsync_queue_due_jobs"] == 0


class _Down:
    """A unit-of-work factory whose database is down."""

    def __call__(self) -> UnitOfWork:
        raise StorageUnavailableError("the database is down")


def test_the_queue_collector_leaves_the_gauges_out_when_the_database_is_down() -> None:
    assert collected(QueueCollector(_Down(), ManualClock())) == {"qbsync_database_up": 0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "url", "label"),
    [
        ("POST", "http://127.0.0.1:1/v3/company/9130/invoice?minorversion=75&requestid=abc", "POST invoice"),
        ("GET", "https://quickbooks.api.intuit.com/v3/company/9130/customer/42", "GET customer"),
        ("post", "https://x/v3/company/9130/query?query=select%20*%20from%20Customer%20where%20x", "POST query"),
        ("GET", "https://x/v3/company/9130/preferences", "GET preferences"),
        ("GET", "https://x/v3/company/9130/Customer_42x", "GET other"),  # not a plain entity name
        ("GET", "https://x/elsewhere", "GET other"),
    ],
)
def test_the_qbo_operation_label_names_the_endpoint_never_an_id_or_a_query(method: str, url: str, label: str) -> None:
    assert qbo_operation(method, url) == label


@contextmanager
def listening(readiness: Readiness) -> Iterator[str]:
    listener = HealthListener("127.0.0.1:0", readiness, QueueCollector(InMemoryUnitOfWorkFactory(), ManualClock()))
    listener.start()
    try:
        yield f"http://{listener.address}"
    finally:
        listener.stop()


def test_readyz_says_which_part_is_not_ready_and_healthz_stays_up() -> None:
    database = {"up": True}
    serving = {"up": False}
    workers = PrometheusMetrics()
    readiness = Readiness(lambda: database["up"], workers, claim_loop_seconds=60, api=lambda: serving["up"])
    with listening(readiness) as url:
        answer = requests.get(f"{url}/readyz", timeout=5)
        assert answer.status_code == 503
        assert answer.json()["checks"] == {
            "database": "ok",
            "workers": "no claim loop has run yet",
            "api": "not serving",
        }
        workers.claim_loop_ran()
        serving["up"] = True
        assert requests.get(f"{url}/readyz", timeout=5).json() == {
            "status": "ok",
            "checks": {"database": "ok", "workers": "ok", "api": "ok"},
        }
        database["up"] = False
        answer = requests.get(f"{url}/readyz", timeout=5)
        assert answer.status_code == 503 and answer.json()["checks"]["database"] == "unreachable"
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        families = {f.name for f in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=5).text)}
        assert {"qbsync_queue_due_jobs", "qbsync_grpc_server_handled", "qbsync_qbo_requests"} <= families


def test_readyz_of_a_worker_process_fails_when_its_claim_loop_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = PrometheusMetrics()
    workers.claim_loop_ran()
    readiness = Readiness(lambda: True, workers, claim_loop_seconds=30)
    assert readiness.report() == (True, {"database": "ok", "workers": "ok"})
    monkeypatch.setattr(workers, "seconds_since_claim_loop", lambda: 31.0)
    assert readiness.report() == (False, {"database": "ok", "workers": "no claim loop for 31s"})


def test_the_health_monitor_passes_on_each_change_of_the_database() -> None:
    answers = iter([True, True, False, False, True])
    told: list[bool] = []
    monitor = HealthMonitor(lambda: next(answers), told.append, interval=60)
    for _ in range(5):
        monitor.check()
    assert told == [True, False, True]


def test_the_grafana_dashboard_is_json_whose_panels_query_only_metrics_qbsync_exports() -> None:
    import json
    import re
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    from adapters import metrics as job_metrics
    from adapters.grpc import metrics as grpc_metrics
    from adapters.quickbooks.qbo import metrics as qbo_metrics

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-qbsync.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queried = {name for expr in exprs for name in re.findall(r"\bqbsync_[a-z_]+", expr)}
    rig = Rig()
    exported = {s.name for family in QueueCollector(rig.uow_factory, rig.clock).collect() for s in family.samples}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    defined = [*vars(job_metrics).values(), *vars(grpc_metrics).values(), *vars(qbo_metrics).values()]
    for metric in defined:
        if isinstance(metric, MetricWrapperBase):
            exported |= {f"{f.name}{suffix}" for f in metric.describe() for suffix in suffixes[f.type]}
    assert queried and queried <= exported, queried - exported
    assert {
        "qbsync_queue_due_jobs",
        "qbsync_sync_jobs_ended_total",
        "qbsync_qbo_limiter_wait_seconds_bucket",
    } <= queried
