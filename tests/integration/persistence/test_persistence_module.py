"""The injector modules bind the UnitOfWorkFactory port lazily, once; the composition root binds the
coordination ports to what the database can share."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from injector import Injector, Module, provider

from adapters.coordination import InProcessCoordinationModule
from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.module import InMemoryPersistenceModule, SqlAlchemyPersistenceModule
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock
from adapters.persistence.sqlalchemy.engine import normalise_url
from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter
from adapters.quickbooks.coalescing import CoalescingAccountingSystems
from adapters.quickbooks.module import QuickBooksModule
from adapters.quickbooks.qbo import QuickBooksAccountingSystems
from adapters.system import SystemClock
from core.ports import AccountingSystems, Clock, CompanyLock, RateLimits, RequestLimiter, UnitOfWorkFactory
from qbsync.bootstrap import bootstrap, coordination_module
from qbsync.config import Settings


def test_in_memory_module_binds_one_shared_factory() -> None:
    injector = Injector([InMemoryPersistenceModule()], auto_bind=False)
    factory = injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
    assert isinstance(factory, InMemoryUnitOfWorkFactory)
    assert injector.get(UnitOfWorkFactory) is factory  # type: ignore[type-abstract]
    with factory() as uow:
        uow.tenants.ensure("t1")
        uow.commit()
    with injector.get(UnitOfWorkFactory)() as uow:  # type: ignore[type-abstract]
        assert uow.tenants.exists("t1")


def test_sqlalchemy_module_touches_the_database_only_when_used(tmp_path: Path) -> None:
    database = tmp_path / "qbsync.db"
    module = SqlAlchemyPersistenceModule(f"sqlite:///{database}")
    injector = Injector([module], auto_bind=False)
    assert not database.exists()

    factory = injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
    assert isinstance(factory, SqlAlchemyUnitOfWorkFactory)
    assert injector.get(UnitOfWorkFactory) is factory  # type: ignore[type-abstract]
    assert not database.exists()  # engines connect on first use

    migrate(f"sqlite:///{database}")
    with factory() as uow:
        uow.tenants.ensure("t1")
        uow.commit()
    with factory() as uow:
        assert uow.tenants.exists("t1")
    factory.engine.dispose()


def test_bare_postgresql_urls_mean_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_in_memory_is_refused() -> None:
    with pytest.raises(ValueError, match="SQLite file"):
        create_engine_for("sqlite://")


# --- the coordination ports follow the database (chosen once, by the composition root) ---------------------


def test_in_memory_and_sqlite_deployments_get_in_process_coordination(tmp_path: Path) -> None:
    settings = Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path)})
    sqlite = f"sqlite:///{tmp_path / 'q.db'}"
    for injector in (
        Injector([InMemoryPersistenceModule(), coordination_module(sqlite)], auto_bind=False),
        Injector([SqlAlchemyPersistenceModule(sqlite), coordination_module(sqlite)], auto_bind=False),
        bootstrap(InMemoryPersistenceModule(), settings=replace(settings, database_url=sqlite)),
    ):
        limiter = injector.get(RequestLimiter)  # type: ignore[type-abstract]
        assert isinstance(limiter, InProcessRequestLimiter)
        assert isinstance(injector.get(CompanyLock), InProcessCompanyLock)  # type: ignore[type-abstract]
        assert injector.get(RequestLimiter) is limiter  # type: ignore[type-abstract]
    assert not (tmp_path / "q.db").exists()


def test_postgresql_deployments_get_coordination_shared_by_every_process(tmp_path: Path) -> None:
    limits = RateLimits(per_minute=100, per_second=2, in_flight=1)
    # No server at this address: binding must not connect (engines connect on first use).
    url = "postgresql://qbsync@127.0.0.1:1/none"
    injector = Injector([coordination_module(url, limits)], auto_bind=False)
    limiter = injector.get(RequestLimiter)  # type: ignore[type-abstract]
    assert isinstance(limiter, PostgresRequestLimiter) and limiter.limits == limits
    assert isinstance(injector.get(CompanyLock), PostgresCompanyLock)  # type: ignore[type-abstract]
    assert injector.get(CompanyLock) is injector.get(CompanyLock)  # type: ignore[type-abstract]

    settings = Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path), "QBSYNC_DATABASE_URL": url})
    production = bootstrap(settings=settings)
    assert isinstance(production.get(RequestLimiter), PostgresRequestLimiter)  # type: ignore[type-abstract]
    assert isinstance(production.get(CompanyLock), PostgresCompanyLock)  # type: ignore[type-abstract]
    # A tester keeps the database and overrides the coordination alone.
    overridden = bootstrap(InProcessCoordinationModule(limits), settings=settings)
    assert isinstance(overridden.get(RequestLimiter), InProcessRequestLimiter)  # type: ignore[type-abstract]


def test_the_quickbooks_module_uses_the_bound_limiter_and_lock() -> None:
    class Clocks(Module):
        @provider
        def clock(self) -> Clock:
            return SystemClock()

    injector = Injector(
        [InMemoryPersistenceModule(), InProcessCoordinationModule(), Clocks(), QuickBooksModule()], auto_bind=False
    )
    coalescing = injector.get(AccountingSystems)  # type: ignore[type-abstract]
    assert isinstance(coalescing, CoalescingAccountingSystems)
    systems = coalescing.inner
    assert isinstance(systems, QuickBooksAccountingSystems)
    assert systems._limiter is injector.get(RequestLimiter)  # type: ignore[type-abstract]
    assert systems._tokens._company_lock is injector.get(CompanyLock)  # type: ignore[type-abstract]
