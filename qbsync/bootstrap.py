"""The composition root: the only place that names concrete adapters.

`bootstrap()` builds the production wiring; a tester passes modules that override it, e.g.
`bootstrap(InMemoryPersistenceModule(), FakeQuickBooksModule())`. Later modules win.
"""

from __future__ import annotations

from datetime import timedelta

from injector import Injector, Module, provider, singleton

from adapters.persistence.module import SqlAlchemyPersistenceModule
from adapters.quickbooks.module import QuickBooksModule
from adapters.quickbooks.oauth_module import IntuitAuthorizationModule
from adapters.system import SystemClock, UuidIdSource
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.ports import AccountingSystems, Clock, IdSource, QuickBooksAuthorization, UnitOfWorkFactory
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker
from qbsync.config import Settings


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
    def api_keys(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdSource) -> ApiKeys:
        return ApiKeys(uow, clock, ids)

    @singleton
    @provider
    def sync_worker(
        self, uow: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock, settings: Settings
    ) -> SyncWorker:
        lease = timedelta(seconds=settings.lease_seconds)
        return SyncWorker(uow, SyncEngine(uow, accounting, clock), clock, lease=lease)


def bootstrap(*overrides: Module, settings: Settings | None = None) -> Injector:
    settings = settings or Settings.from_env()
    modules: list[Module] = [
        SettingsModule(settings),
        SystemModule(),
        SqlAlchemyPersistenceModule(settings.database_url, settings.encryption_keys, settings.key_file),
        QuickBooksModule(),
        IntuitAuthorizationModule(settings.qbo_client_id, settings.qbo_client_secret),
        CoreModule(),
        *overrides,
    ]
    return Injector(modules, auto_bind=False)
