"""A running qbsync process: the gRPC API and/or the background workers (its role), stopped gracefully.

Everything it runs comes from the injector `bootstrap()` built (the settings, the workers, the server
factory): the runtime only starts and stops it.

One machine runs both in one process (role "all"). At scale, API processes sit behind a load balancer and
worker processes only claim jobs from the shared database: they never talk to each other, so either kind
can be added, removed or killed independently.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import replace

import grpc
from injector import Injector

from adapters.grpc.server import GrpcServerFactory, set_serving, stop_gracefully
from adapters.metrics import PrometheusMetrics, QueueCollector
from core.ports import Clock, UnitOfWorkFactory
from core.worker import SyncWorker
from qbsync.config import Settings
from qbsync.health import DatabaseProbe, HealthListener, HealthMonitor, Readiness

log = logging.getLogger(__name__)


class Runtime:
    """The threads and server of one process, as `injector`'s settings say. `role` overrides the settings'
    role (tests, benchmarks)."""

    def __init__(self, injector: Injector, role: str | None = None) -> None:
        self._injector = injector
        settings = injector.get(Settings)
        self._settings = settings if role is None else replace(settings, role=role)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: grpc.Server | None = None
        self.port = 0
        self.health: HealthListener | None = None  # QBSYNC_METRICS_LISTEN's listener, when set
        self.monitor: HealthMonitor | None = None  # gRPC health from the database, for an API process
        self._serving = False

    @property
    def role(self) -> str:
        return self._settings.role

    def start(self) -> int:
        """Starts what the role asks for; returns the port the API listens on (0 for a worker process)."""
        if self._settings.metrics_listen:
            # Bound first, like the gRPC port: a taken port is one line (MetricsListenError), nothing started.
            self.health = self._health_listener()
            self.health.start()
        if self._settings.serves_api:
            # Bound before any worker starts: a taken port or a TLS mistake stops the process with nothing
            # to clean up (see ListenError and ConfigError).
            try:
                self.server, self.port = self._injector.get(GrpcServerFactory).build()
            except BaseException:
                if self.health is not None:
                    self.health.stop()
                raise
        if self._settings.runs_workers:
            self._start_workers()
        if self.server is not None:
            self.server.start()
            self._serving = True
            server = self.server
            self.monitor = HealthMonitor(
                self._database_probe(),
                lambda serving: set_serving(server, serving),
                self._settings.health_probe_seconds,
            )
            self.monitor.start()
        log.info(
            "qbsync started as %s: %s, %s worker threads",
            self._settings.role,
            f"listening on port {self.port}" if self.server is not None else "no API",
            len(self._threads),
        )
        return self.port

    def _database_probe(self) -> DatabaseProbe:
        return DatabaseProbe(self._injector.get(UnitOfWorkFactory), self._injector.get(Clock))  # type: ignore[type-abstract]

    def _health_listener(self) -> HealthListener:
        readiness = Readiness(
            database=self._database_probe(),
            workers=self._injector.get(PrometheusMetrics) if self._settings.runs_workers else None,
            claim_loop_seconds=self._settings.ready_claim_loop_seconds,
            api=(lambda: self._serving) if self._settings.serves_api else None,
        )
        uow = self._injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
        return HealthListener(self._settings.metrics_listen, readiness, QueueCollector(uow, self._injector.get(Clock)))  # type: ignore[type-abstract]

    def _start_workers(self) -> None:
        worker = self._injector.get(SyncWorker)
        # Worker ids must be unique across every process sharing the database: the lease check
        # (`claimed_by`) is what stops a worker whose lease ran out from overwriting the job's new owner.
        prefix = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        for n in range(self._settings.workers):
            thread = threading.Thread(
                target=worker.run_until,
                args=(self._stop, f"{prefix}-worker-{n}"),
                name=f"qbsync-worker-{n}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, calls in flight get `grace` seconds, then the workers stop after their
        current job (a job cut short is simply claimed again once its lease runs out)."""
        grace = self._settings.grace_seconds if grace is None else grace
        self._serving = False  # /readyz says 503 from now on
        if self.monitor is not None:
            self.monitor.stop()
        if self.server is not None:
            stop_gracefully(self.server, grace)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=grace)
        if self.health is not None:
            self.health.stop()
