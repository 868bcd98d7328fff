"""How an operator's tools see a running process: /metrics, /healthz and /readyz over HTTP, and gRPC
health kept in step with the database.

The HTTP listener (`QBSYNC_METRICS_LISTEN`, every role, the worker included) is prometheus-client's WSGI
app (`make_wsgi_app`) behind a small router, served by the standard library's wsgiref in one daemon
thread, with prometheus-client's ThreadingWSGIServer (a thread per request, so a slow scrape never
holds up a health check). Why not an ASGI framework: three GET endpoints of a few bytes, hit every few
seconds by Prometheus and a kubelet, need no event loop, no new dependency, and must keep answering
whatever the gRPC server's threads or event loop are doing.

- `/metrics`: the process-wide metrics plus this process' queue collector (adapters.metrics);
- `/healthz`: 200 while the process runs (a liveness probe: restart it when this fails);
- `/readyz`: 200 when the process can do its work, else 503, with a JSON body saying which part is not:
  the database answers a query; for a process running workers, a claim loop went round within
  `QBSYNC_READY_CLAIM_LOOP_SECONDS`; for an API process, its gRPC server is serving.

`HealthMonitor` probes the database every `QBSYNC_HEALTH_PROBE_SECONDS` from a thread of its own and sets
the gRPC health of every served service: NOT_SERVING while the database is unreachable, SERVING again
once it answers (a load balancer's health checks then send calls elsewhere meanwhile).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from adapters.metrics import PrometheusMetrics, QueueCollector, ScrapeTarget
from core.ports import Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    """No access line on stderr per scrape (wsgiref's default): every few seconds, it would drown the log."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class' name
        pass


class _ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MetricsListenError(RuntimeError):
    """The metrics listener could not bind its address (taken, or not an address of this machine)."""


class DatabaseProbe:
    """Whether the database answers: one cheap aggregate query (the one a scrape runs for the queue), read
    only (on SQLite, a probe every few seconds must not take the write lock that enqueues wait for)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self) -> bool:
        try:
            with self._uow_factory.read_only() as uow:
                uow.jobs.due_backlog(self._clock.now())
        except Exception:  # noqa: BLE001 - down, locked out, never migrated: not ready, whatever the cause
            return False
        return True


@dataclass
class Readiness:
    """What /readyz checks; `workers` and `api` are None for a process that does not run them."""

    database: Callable[[], bool]
    workers: PrometheusMetrics | None = None
    claim_loop_seconds: float = 300.0
    api: Callable[[], bool] | None = None

    def report(self) -> tuple[bool, dict[str, str]]:
        checks = {"database": "ok" if self.database() else "unreachable"}
        if self.workers is not None:
            since = self.workers.seconds_since_claim_loop()
            if since is None:
                checks["workers"] = "no claim loop has run yet"
            elif since > self.claim_loop_seconds:
                checks["workers"] = f"no claim loop for {since:.0f}s"
            else:
                checks["workers"] = "ok"
        if self.api is not None:
            checks["api"] = "ok" if self.api() else "not serving"
        return all(value == "ok" for value in checks.values()), checks


def health_app(readiness: Readiness, metrics: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /healthz, /readyz, and `metrics` (prometheus-client's app) for /metrics."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            ready, checks = readiness.report()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _json(start_response, status, {"status": "ok" if ready else "not ready", "checks": checks})
        return _json(start_response, "404 Not Found", {"error": "not found: try /metrics, /healthz or /readyz"})

    return app


def _json(start_response: StartResponse, status: str, body: dict[str, object]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class HealthListener:
    """The HTTP listener of one process; `start()` binds (raising MetricsListenError), `stop()` closes."""

    def __init__(self, listen: str, readiness: Readiness, queue: QueueCollector) -> None:
        self.listen = listen
        self._app = health_app(readiness, make_wsgi_app(ScrapeTarget(queue)))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.address = listen  # host:port once bound (the port chosen when it was 0)

    def start(self) -> int:
        host, _, port = self.listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        server_class = _ThreadingWSGIServer6 if ":" in host else ThreadingWSGIServer
        try:
            self._server = make_server(host, int(port), self._app, server_class, handler_class=_QuietHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsListenError(
                    f"cannot listen on {self.listen} for metrics: the port is taken "
                    "(is another qbsync serving there?); choose another with QBSYNC_METRICS_LISTEN"
                ) from None
            raise MetricsListenError(
                f"cannot listen on {self.listen} for metrics ({exc.strerror}); check QBSYNC_METRICS_LISTEN"
            ) from None
        self.port = self._server.server_port
        self.address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="qbsync-metrics", daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz", extra={"listen": self.address})
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class HealthMonitor:
    """Probes the database every `interval` seconds and passes the answer to `set_serving` when it
    changes (and once at the start); logs each change, as an operator wants to know."""

    def __init__(self, probe: Callable[[], bool], set_serving: Callable[[bool], None], interval: float) -> None:
        self._probe = probe
        self._set_serving = set_serving
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qbsync-health", daemon=True)
        self.serving: bool | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)

    def check(self) -> bool:
        """One probe, and health set if it changed; what the thread does every interval."""
        serving = self._probe()
        if serving != self.serving:
            if self.serving is not None:
                if serving:
                    log.info("the database answers again: gRPC health SERVING")
                else:
                    log.warning("the database does not answer: gRPC health NOT_SERVING")
            self.serving = serving
            self._set_serving(serving)
        return serving

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the monitor must outlive anything a probe does
                log.exception("the health probe failed")
            if self._stop.wait(self._interval):
                return
