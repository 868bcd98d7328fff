"""The composition root: the only place that names concrete adapters.

`bootstrap()` builds the production wiring — persistence, coordination (chosen here, once, from the
database URL), QuickBooks, Intuit's OAuth, the use cases and the gRPC API — for every entry point: the
server (`qbsync.runtime`), the CLI and the tests. A tester passes modules that override it, e.g.
`bootstrap(InMemoryPersistenceModule(), FakeQuickBooksModule())`. Later modules win.
"""

from __future__ import annotations

from datetime import timedelta

from injector import Injector, Module, provider, singleton

from adapters.coordination import INTUIT_RATE_LIMITS, InProcessCoordinationModule, PostgresCoordinationModule
from adapters.grpc.connection_servicer import ConnectionServicer
from adapters.grpc.server import GrpcServerFactory
from adapters.grpc.servicer import SyncServicer
from adapters.grpc.watch import JobChanges
from adapters.metrics import PrometheusMetrics
from adapters.persistence.module import SqlAlchemyPersistenceModule
from adapters.quickbooks.module import QuickBooksModule
from adapters.quickbooks.oauth_module import IntuitAuthorizationModule
from adapters.system import SystemClock, UuidIdSource
from core.auth import ApiKeys
from core.auth_throttle import FailedAuthentications
from core.connections_service import ConnectionService
from core.ports import (
    AccountingSystems,
    Clock,
    IdSource,
    Metrics,
    QuickBooksAuthorization,
    RateLimits,
    UnitOfWorkFactory,
    WorkSignal,
)
from core.preview import SyncPreview
from core.reconcile import ReconcileService
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from qbsync.config import Settings
from qbsync.tls import check_listen_is_safe, load_server_tls


class SettingsModule(Module):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @singleton
    @provider
    def settings(self) -> Settings:
        return self._settings


class SystemModule(Module):
    @singleton
    @provider
    def clock(self) -> Clock:
        return SystemClock()

    @singleton
    @provider
    def ids(self) -> IdSource:
        return UuidIdSource()


class MetricsModule(Module):
    """The core's `Metrics` port on Prometheus (adapters.metrics); one per wiring, which also tells the
    runtime's /readyz when a claim loop last ran."""

    @singleton
    @provider
    def prometheus_metrics(self) -> PrometheusMetrics:
        return PrometheusMetrics()

    @singleton
    @provider
    def metrics(self, prometheus: PrometheusMetrics) -> Metrics:
        return prometheus


class CoreModule(Module):
    """The use cases, built from whatever adapters the other modules bind."""

    @singleton
    @provider
    def sync_service(
        self, uow: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock, ids: IdSource
    ) -> SyncService:
        return SyncService(uow, accounting, clock, ids)

    @singleton
    @provider
    def sync_preview(
        self, uow: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock, ids: IdSource
    ) -> SyncPreview:
        return SyncPreview(uow, accounting, clock, ids)

    @singleton
    @provider
    def reconcile_service(self, uow: UnitOfWorkFactory, accounting: AccountingSystems) -> ReconcileService:
        return ReconcileService(uow, accounting)

    @singleton
    @provider
    def connection_service(
        self,
        uow: UnitOfWorkFactory,
        authorization: QuickBooksAuthorization,
        accounting: AccountingSystems,
        clock: Clock,
        ids: IdSource,
        settings: Settings,
    ) -> ConnectionService:
        return ConnectionService(
            uow,
            authorization,
            clock,
            ids,
            accounting=accounting,
            default_environment=settings.qbo_environment,
            default_redirect_uri=settings.qbo_redirect_uri,
        )

    @singleton
    @provider
    def failed_authentications(self, clock: Clock) -> FailedAuthentications:
        return FailedAuthentications(clock)

    @singleton
    @provider
    def api_keys(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdSource, failures: FailedAuthentications) -> ApiKeys:
        return ApiKeys(uow, clock, ids, failures)

    @singleton
    @provider
    def sync_worker(
        self,
        uow: UnitOfWorkFactory,
        accounting: AccountingSystems,
        clock: Clock,
        settings: Settings,
        metrics: Metrics,
    ) -> SyncWorker:
        lease = timedelta(seconds=settings.lease_seconds)
        return SyncWorker(
            uow,
            SyncEngine(uow, accounting, clock),
            clock,
            lease=lease,
            metrics=metrics,
            work_signal=work_signal_for(uow),
        )


class GrpcModule(Module):
    """The gRPC API: both servicers and the server they are served by, on the settings' address. The
    server is provided as a factory: binding its port is the runtime's act, when it starts."""

    @singleton
    @provider
    def sync_servicer(
        self,
        service: SyncService,
        preview: SyncPreview,
        reconcile: ReconcileService,
        settings: Settings,
        uow: UnitOfWorkFactory,
    ) -> SyncServicer:
        return SyncServicer(
            service,
            preview=preview,
            reconcile=reconcile,
            poll_seconds=settings.watch_poll_seconds,
            changes=job_changes_for(uow),
            max_streams_per_key=settings.max_streams_per_key,
        )

    @singleton
    @provider
    def connection_servicer(self, service: ConnectionService) -> ConnectionServicer:
        return ConnectionServicer(service)

    @singleton
    @provider
    def server_factory(
        self, servicer: SyncServicer, connection_servicer: ConnectionServicer, keys: ApiKeys, settings: Settings
    ) -> GrpcServerFactory:
        # Checked here, before anything binds: plaintext beyond loopback is refused, TLS files must be sound.
        check_listen_is_safe(settings)
        return GrpcServerFactory(
            servicer,
            keys.authenticate,
            settings.listen,
            connection_servicer,
            max_workers=settings.grpc_threads,
            tls=load_server_tls(settings),
        )


def job_changes_for(uow: UnitOfWorkFactory) -> JobChanges | None:
    """WatchSyncJob's one change feed for the database `uow` writes to: LISTEN/NOTIFY on PostgreSQL, one
    poller on SQLite; none for the in-memory store (each watched job is re-read every tick: no SQL)."""
    engine = getattr(uow, "engine", None)  # SqlAlchemyUnitOfWorkFactory's
    if engine is None:
        return None
    from adapters.persistence.sqlalchemy.job_changes import job_changes_for as for_engine

    return for_engine(engine)


def work_signal_for(uow: UnitOfWorkFactory) -> WorkSignal | None:
    """What wakes idle workers of the database `uow` writes to: its notifications on PostgreSQL; none on
    SQLite or in memory (the workers poll)."""
    engine = getattr(uow, "engine", None)  # SqlAlchemyUnitOfWorkFactory's
    if engine is None:
        return None
    from adapters.persistence.sqlalchemy.work_signal import work_signal_for as for_engine

    return for_engine(engine)


def coordination_module(database_url: str, rate_limits: RateLimits = INTUIT_RATE_LIMITS) -> Module:
    """Where the QuickBooks request limits and the token-refresh lock are kept: in PostgreSQL, which many
    processes share, so that they hold for all of them; in this process on SQLite (one process does the
    work) and with the in-memory fake."""
    from adapters.persistence.sqlalchemy.engine import normalise_url

    if normalise_url(database_url).get_backend_name() == "postgresql":
        return PostgresCoordinationModule(database_url, rate_limits)
    return InProcessCoordinationModule(rate_limits)


def bootstrap(*overrides: Module, settings: Settings | None = None) -> Injector:
    """The production wiring for `settings` (default: from the environment), with `overrides` last.

    Each concrete adapter comes from one module, so an override replaces it whole: a tester's
    `InMemoryPersistenceModule()` binds the unit of work, `FakeQuickBooksModule()` the accounting systems,
    `InProcessCoordinationModule()` the limiter and lock (when the settings name a PostgreSQL database).
    """
    settings = settings or Settings.from_env()
    modules: list[Module] = [
        SettingsModule(settings),
        SystemModule(),
        SqlAlchemyPersistenceModule(settings.database_url, settings.encryption_keys, settings.key_file),
        coordination_module(settings.database_url),
        QuickBooksModule(),
        IntuitAuthorizationModule(settings.qbo_client_id, settings.qbo_client_secret),
        MetricsModule(),
        CoreModule(),
        GrpcModule(),
        *overrides,
    ]
    return Injector(modules, auto_bind=False)
