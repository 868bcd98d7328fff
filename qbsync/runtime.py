"""A running qbsync process: the gRPC API and the background workers, stopped gracefully."""

from __future__ import annotations

import logging
import threading

import grpc
from injector import Injector

from adapters.grpc.connection_servicer import ConnectionServicer
from adapters.grpc.server import build_server, stop_gracefully
from adapters.grpc.servicer import SyncServicer
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.service import SyncService
from core.worker import SyncWorker
from qbsync.config import Settings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, injector: Injector, settings: Settings) -> None:
        self._injector = injector
        self._settings = settings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: grpc.Server | None = None
        self.port = 0

    def start(self) -> int:
        """Starts the workers and the server; returns the port the API listens on."""
        worker = self._injector.get(SyncWorker)
        for n in range(self._settings.workers):
            thread = threading.Thread(
                target=worker.run_until, args=(self._stop, f"worker-{n}"), name=f"qbsync-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        servicer = SyncServicer(self._injector.get(SyncService), poll_seconds=self._settings.watch_poll_seconds)
        self.server, self.port = build_server(
            servicer,
            self._injector.get(ApiKeys).authenticate,
            self._settings.listen,
            connection_servicer=ConnectionServicer(self._injector.get(ConnectionService)),
        )
        self.server.start()
        log.info("qbsync listening on port %s with %s workers", self.port, self._settings.workers)
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, calls in flight get `grace` seconds, then the workers stop after their
        current job (a job cut short is simply claimed again once its lease runs out)."""
        grace = self._settings.grace_seconds if grace is None else grace
        if self.server is not None:
            stop_gracefully(self.server, grace)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=grace)
