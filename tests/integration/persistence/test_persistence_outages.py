"""The SQLAlchemy unit of work turns the database's outages into StorageUnavailableError (and nothing else).

A database that cannot be reached (a SQLite file in a missing folder, PostgreSQL on a port where nothing
listens, as while it restarts), or that fails the statement for a reason of its own, leaves the unit of
work as the core's StorageUnavailableError, so that neither the gRPC adapter nor the workers need to
know SQLAlchemy. What is about the statement itself (a duplicate key) stays what it was. With PostgreSQL
(QBSYNC_TEST_DATABASE_URL), connections killed by a restart are replaced: the next unit of work works.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from core.domain import ApiKey, Permission
from core.errors import StorageUnavailableError

SECRET_HASH = "5e3c7a1b-the-hash-of-a-key-never-logged"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/no-such-folder/qbsync.db",
        "postgresql+psycopg://qbsync@127.0.0.1:{port}/qbsync?connect_timeout=2",
    ],
    ids=["sqlite-unopenable", "postgresql-refused"],
)
def test_an_unreachable_database_is_storage_unavailable(url: str, tmp_path: Path) -> None:
    engine = create_engine_for(url.format(tmp=tmp_path, port=closed_port()))
    uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
    with pytest.raises(StorageUnavailableError) as raised, uow_factory() as uow:
        uow.api_keys.get_by_hash(SECRET_HASH)
    assert raised.value.reason == "DATABASE_UNAVAILABLE" and raised.value.retryable
    assert isinstance(raised.value.__cause__, sa_exc.OperationalError)
    engine.dispose()


def test_the_outage_is_logged_with_the_drivers_words_never_the_statements_parameters(
    sqlite_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine_for(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE api_keys"))  # the statement now fails in the database itself
    uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
    with caplog.at_level(logging.WARNING), pytest.raises(StorageUnavailableError) as raised, uow_factory() as uow:
        uow.api_keys.get_by_hash(SECRET_HASH)
    assert SECRET_HASH in str(raised.value.__cause__)  # SQLAlchemy's message quotes the parameters...
    assert "no such table: api_keys" in caplog.text
    assert SECRET_HASH not in caplog.text  # ...the log line does not
    engine.dispose()


def test_a_statement_the_database_refuses_stays_what_it_is(sqlite_url: URL) -> None:
    engine = create_engine_for(sqlite_url)
    uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
    key = ApiKey("k1", "acme", SECRET_HASH, frozenset({Permission.READ}), datetime(2026, 1, 1, tzinfo=UTC))
    with uow_factory() as uow:
        uow.tenants.ensure("acme")
        uow.api_keys.add(key)
        uow.commit()
    with pytest.raises(sa_exc.IntegrityError), uow_factory() as uow:
        uow.api_keys.add(key)
    engine.dispose()


def test_after_postgresql_drops_the_connection_the_next_unit_of_work_works(postgres_url: URL) -> None:
    engine = create_engine_for(postgres_url)
    uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
    with uow_factory() as uow:
        assert uow.api_keys.get_by_hash(SECRET_HASH) is None
    with engine.connect() as connection:  # the pooled connection the unit of work used (the pool holds one)
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = create_engine_for(postgres_url)
    with admin.begin() as connection:  # what a restart does to the pooled connection
        # Waits (up to 5 s) until the backend has ended, so its goodbye is on the socket before the next use.
        connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend})
    admin.dispose()
    with uow_factory() as uow:
        assert uow.api_keys.get_by_hash(SECRET_HASH) is None
    with engine.connect() as connection:  # the dead one was replaced, not reused
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend
    engine.dispose()


def test_a_live_pooled_connection_is_used_without_a_ping_and_a_dropped_one_is_pinged(
    postgres_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine_for(postgres_url)
    pings: list[bool] = []
    ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: object) -> bool:
        pings.append(True)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
    for _ in range(3):
        with uow_factory() as uow:
            assert uow.api_keys.get_by_hash(SECRET_HASH) is None
    assert pings == []  # no round trip of its own before a unit of work on a connection the server kept
    with engine.connect() as connection:
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = create_engine_for(postgres_url)
    with admin.begin() as connection:
        # Waits (up to 5 s) until the backend has ended, so its goodbye is on the socket before the next use.
        connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend})
    admin.dispose()
    with uow_factory() as uow:
        assert uow.api_keys.get_by_hash(SECRET_HASH) is None
    assert len(pings) == 1  # the server said goodbye on that socket: pinged, failed, replaced
    engine.dispose()
