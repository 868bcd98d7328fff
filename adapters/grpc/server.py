"""The gRPC server: SyncService (and ConnectionService) behind the interceptors, with health and reflection.

The port is served with TLS (and mTLS, given a client CA) when `tls` is given, in plaintext otherwise;
whether plaintext is acceptable on the address is the caller's rule (`qbsync.tls`). The port is this
server's alone: grpc's SO_REUSEPORT is turned off, so a second server on a taken port fails to bind
(`ListenError`) instead of silently sharing the calls with the first.

Stopping is graceful: health turns NOT_SERVING first (so load balancers stop sending calls), then
`server.stop(grace)` lets calls in flight finish for up to `grace` seconds.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import weakref
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.grpc._handlers import ChainedInterceptor
from adapters.grpc.auth import Authenticate, AuthInterceptor
from adapters.grpc.connection_servicer import ConnectionServicer
from adapters.grpc.decoding import DecodingInterceptor
from adapters.grpc.errors import ErrorMappingInterceptor
from adapters.grpc.metrics import MetricsInterceptor
from adapters.grpc.servicer import SyncServicer
from qbsync.v1 import connection_service_pb2, connection_service_pb2_grpc, sync_service_pb2, sync_service_pb2_grpc

log = logging.getLogger(__name__)

SYNC_SERVICE_NAME: str = sync_service_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name
CONNECTION_SERVICE_NAME: str = connection_service_pb2.DESCRIPTOR.services_by_name["ConnectionService"].full_name
# The thread pool's default size (QBSYNC_GRPC_THREADS). The server's Python runs under one GIL, so a thread
# helps only while its call waits outside it (a PostgreSQL round trip, a QuickBooks call of
# ConnectionService); beyond that, threads fight over the GIL and every call costs more CPU. Measured with
# bench/api.py's servers (`--server-threads 4`, 8, 16; runs of each size interleaved in one session, 32 and
# 200 clients, issue 12): on SQLite, 16 threads cost 17-30% more server CPU per call than 8 (SyncPayment
# 1.68 vs 1.40 ms, GetSyncStatus 0.63 vs 0.44 ms at 32 clients); on PostgreSQL, 4 threads starved the
# round trips (SyncPayment at 200 clients 176/s vs 317/s at 8 and 323/s at 16), while 8 was within the
# noise of 16. So 8: a PostgreSQL deployment under heavy concurrent load may set 16.
DEFAULT_MAX_WORKERS = 8

# Each server's health servicer, for stop_gracefully(); weak, so a dropped server is not kept alive.
_HEALTH: weakref.WeakKeyDictionary[grpc.Server, health.HealthServicer] = weakref.WeakKeyDictionary()
_SERVICES: weakref.WeakKeyDictionary[grpc.Server, tuple[str, ...]] = weakref.WeakKeyDictionary()


def build_server(
    servicer: SyncServicer,
    authenticate: Authenticate,
    listen: str,
    max_workers: int = DEFAULT_MAX_WORKERS,
    *,
    connection_servicer: ConnectionServicer | None = None,
    tls: ServerTls | None = None,
) -> tuple[grpc.Server, int]:
    """A server (not started yet) bound to `listen`, and its port: "127.0.0.1:0" picks a free one.

    `max_workers` bounds the calls served at once; an open WatchSyncJob stream holds none once it has
    started (adapters.grpc.watch), so streams never crowd out unary calls or the health check.
    `connection_servicer`, when given, also serves qbsync.v1.ConnectionService. `tls`, when given, is the
    only way in: the port speaks no plaintext. Raises ListenError when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="qbsync-grpc"),
        interceptors=interceptors_for(authenticate),
        options=[("grpc.so_reuseport", 0)],
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
    _SERVICES[server] = ("", *services)

    reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    taken = f"cannot listen on {listen}: the port is taken (is another qbsync serving there?)"
    if _is_taken(listen):
        raise ListenError(taken)
    try:
        port = server.add_secure_port(listen, tls.credentials()) if tls else server.add_insecure_port(listen)
    except RuntimeError as exc:  # grpc says only "Failed to bind to address ..."
        if _is_taken(listen):  # taken in the meantime
            raise ListenError(taken) from exc
        raise ListenError(f"cannot listen on {listen}: not an address of this machine") from exc
    return server, port


def interceptors_for(authenticate: Authenticate) -> list[grpc.ServerInterceptor]:
    """The server's interceptors, chained into one (a single look-up per call on grpc's polling thread).
    Metrics outermost (it counts the status the others chose); error mapping next, so it also maps what
    authentication raises; decoding last, so that a caller is authenticated before its request bytes are
    judged."""
    chain = [MetricsInterceptor(), ErrorMappingInterceptor(), AuthInterceptor(authenticate), DecodingInterceptor()]
    return [ChainedInterceptor(chain)]


def _is_taken(listen: str) -> bool:
    """Whether another socket listens on `listen` already, asked of the operating system before grpc binds:
    grpc would add its own error line on stderr, and keeps the reason for its debug log."""
    host, _, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not port.isdigit() or int(port) == 0:
        return False
    try:
        addresses = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False  # not resolvable: grpc's bind fails, and that is the error
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As grpc binds (SO_REUSEADDR: a port in TIME_WAIT is free), so only a listening socket is "taken".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


class ListenError(RuntimeError):
    """The server could not bind its address: taken by another process, or not an address of this machine."""


@dataclass(frozen=True)
class ServerTls:
    """PEM bytes: the certificate chain the server presents, its private key, and (for mTLS) the CA
    certificates a client's certificate must chain to; with `client_ca`, a client without one is refused."""

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class GrpcServerFactory:
    """What the API server is built from, as the composition root wires it. `build()` binds the port, so
    it is called by whoever starts the server (the runtime), never while the injector is being built."""

    servicer: SyncServicer
    authenticate: Authenticate
    listen: str
    connection_servicer: ConnectionServicer | None = None
    max_workers: int = DEFAULT_MAX_WORKERS
    tls: ServerTls | None = None

    def build(self) -> tuple[grpc.Server, int]:
        """A new server (not started yet) and its port; see `build_server`."""
        return build_server(
            self.servicer,
            self.authenticate,
            self.listen,
            self.max_workers,
            connection_servicer=self.connection_servicer,
            tls=self.tls,
        )


def set_serving(server: grpc.Server, serving: bool) -> None:
    """Health SERVING or NOT_SERVING for every service of `server` (the runtime's database probe says
    which). Once a graceful stop began, health stays NOT_SERVING whatever is set."""
    health_servicer = _HEALTH.get(server)
    if health_servicer is None:
        return
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in _SERVICES.get(server, ("",)):
        health_servicer.set(service, status)


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
