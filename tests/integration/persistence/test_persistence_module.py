"""The injector modules bind the UnitOfWorkFactory port lazily, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from injector import Injector

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.module import InMemoryPersistenceModule, SqlAlchemyPersistenceModule
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url
from core.ports import UnitOfWorkFactory


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
