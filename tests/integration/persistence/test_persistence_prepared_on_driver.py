"""Prepared statements run on the DBAPI cursor (prepared.on_driver, issue 12) and still behave as statements
run through SQLAlchemy: the engine's listeners see each one, a refused statement stays the error it is, and a
connection that dies in the middle of a unit of work is an outage, invalidated and replaced."""

from __future__ import annotations

import pytest
from persistence_builders import sync_job
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from core.errors import StorageUnavailableError


def test_a_prepared_statement_is_seen_by_the_listeners_and_a_clash_stays_an_integrity_error(sqlite_url: URL) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(create_engine_for(sqlite_url))
    seen: list[str] = []

    @event.listens_for(factory.engine, "before_cursor_execute")
    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement.split()[0])

    with factory() as uow:
        uow.jobs.add(sync_job("J1"))
        uow.commit()
    with pytest.raises(sa_exc.IntegrityError), factory() as uow:
        uow.jobs.add(sync_job("J1", request_id="another"))  # the same job_id: the primary key refuses it
    with factory.read_only() as uow:
        assert uow.jobs.get(sync_job("J1").tenant_id, "J1") is not None
    factory.engine.dispose()
    assert seen == ["BEGIN", "INSERT", "BEGIN", "INSERT", "BEGIN", "SELECT"]


def test_a_connection_that_dies_inside_a_unit_of_work_is_an_outage_and_is_replaced(postgres_url: URL) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(create_engine_for(postgres_url))
    backends: list[int] = []

    @event.listens_for(factory.engine, "checkout")
    def checked_out(dbapi_connection: object, *_args: object) -> None:
        backends.append(dbapi_connection.info.backend_pid)  # type: ignore[attr-defined]  # psycopg's

    job = sync_job("J1")
    admin = create_engine_for(postgres_url)
    with pytest.raises(StorageUnavailableError) as raised, factory.read_only() as uow:
        assert uow.jobs.get(job.tenant_id, "J1") is None  # the transaction is open on its connection
        with admin.begin() as connection:  # what a restart does to it
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({backends[-1]})")
        uow.jobs.get(job.tenant_id, "J1")
    admin.dispose()
    cause = raised.value.__cause__
    assert isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated  # as SQLAlchemy wraps it
    dead = backends[-1]
    with factory.read_only() as uow:
        assert uow.jobs.get(job.tenant_id, "J1") is None
    assert backends[-1] != dead  # invalidated, not handed out again
    factory.engine.dispose()
