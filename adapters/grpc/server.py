"""The gRPC server: SyncService (and ConnectionService) behind the interceptors, with health and reflection.

Stopping is graceful: health turns NOT_SERVING first (so load balancers stop sending calls), then
`server.stop(grace)` lets calls in flight finish for up to `grace` seconds.
"""

from __future__ import annotations

import logging
import signal
import threading
import weakref
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.grpc.auth import Authenticate, AuthInterceptor
from adapters.grpc.connection_servicer import ConnectionServicer
from adapters.grpc.decoding import DecodingInterceptor
from adapters.grpc.errors import ErrorMappingInterceptor
from adapters.grpc.servicer import SyncServicer
from qbsync.v1 import connection_service_pb2, connection_service_pb2_grpc, sync_service_pb2, sync_service_pb2_grpc

log = logging.getLogger(__name__)

SYNC_SERVICE_NAME: str = sync_service_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name
CONNECTION_SERVICE_NAME: str = connection_service_pb2.DESCRIPTOR.services_by_name["ConnectionService"].full_name
DEFAULT_MAX_WORKERS = 16

# Each server's health servicer, for stop_gracefully(); weak, so a dropped server is not kept alive.
_HEALTH: weakref.WeakKeyDictionary[grpc.Server, health.HealthServicer] = weakref.WeakKeyDictionary()


def build_server(
    servicer: SyncServicer,
    authenticate: Authenticate,
    listen: str,
    max_workers: int = DEFAULT_MAX_WORKERS,
    *,
    connection_servicer: ConnectionServicer | None = None,
) -> tuple[grpc.Server, int]:
    """A server (not started yet) bound to `listen`, and its port: "127.0.0.1:0" picks a free one.

    `max_workers` bounds the calls served at once; each open WatchSyncJob stream holds one.
    `connection_servicer`, when given, also serves qbsync.v1.ConnectionService.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="qbsync-grpc"),
        # Error mapping first (outermost), so it also maps what authentication raises; decoding last, so
        # that a caller is authenticated before its request bytes are judged.
        interceptors=[ErrorMappingInterceptor(), AuthInterceptor(authenticate), DecodingInterceptor()],
    )
    sync_service_pb2_grpc.add_SyncServiceServicer_to_server(servicer, server)
    services = [SYNC_SERVICE_NAME]
    if connection_servicer is not None:
        connection_service_pb2_grpc.add_ConnectionServiceServicer_to_server(connection_servicer, server)
        services.append(CONNECTION_SERVICE_NAME)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", *services):  # "" is the whole server
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    _HEALTH[server] = health_servicer

    reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    port = server.add_insecure_port(listen)  # raises RuntimeError when it cannot bind
    return server, port


@dataclass(frozen=True)
class GrpcServerFactory:
    """What the API server is built from, as the composition root wires it. `build()` binds the port, so
    it is called by whoever starts the server (the runtime), never while the injector is being built."""

    servicer: SyncServicer
    authenticate: Authenticate
    listen: str
    connection_servicer: ConnectionServicer | None = None
    max_workers: int = DEFAULT_MAX_WORKERS

    def build(self) -> tuple[grpc.Server, int]:
        """A new server (not started yet) and its port; see `build_server`."""
        return build_server(
            self.servicer,
            self.authenticate,
            self.listen,
            self.max_workers,
            connection_servicer=self.connection_servicer,
        )


def stop_gracefully(server: grpc.Server, grace_seconds: float) -> None:
    """Health NOT_SERVING for every service, then stop: calls in flight get `grace_seconds` to end."""
    health_servicer = _HEALTH.get(server)
    if health_servicer is not None:
        health_servicer.enter_graceful_shutdown()
    server.stop(grace_seconds).wait()


def serve_until_signalled(
    server: grpc.Server,
    grace_seconds: float,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Blocks until one of `signals` arrives, then stops the (started) server gracefully.

    Must run on the main thread (Python delivers signals there). The previous handlers are restored
    before returning, so a second Ctrl-C during the grace period behaves as it did before.
    """
    received = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping within %s s", signal.Signals(signum).name, grace_seconds)
        received.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        received.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stop_gracefully(server, grace_seconds)
