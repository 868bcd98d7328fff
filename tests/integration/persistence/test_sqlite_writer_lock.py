"""SQLite's writers queue on a lock in the process (engine.py), not in SQLite's busy handler (issue 12): two
threads' write transactions serialise, and the lock is given back however a transaction ends - commit,
rollback, an error in the block, an invalidated connection, a BEGIN that failed - so no writer can be
left waiting for a lock nobody holds."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from persistence_builders import sync_job
from sqlalchemy import event
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, engine
from core.errors import StorageUnavailableError


@pytest.fixture
def factory(sqlite_url: URL) -> Iterator[SqlAlchemyUnitOfWorkFactory]:
    made = SqlAlchemyUnitOfWorkFactory(create_engine_for(sqlite_url))
    yield made
    made.engine.dispose()


def _lock(url: URL) -> threading.Lock:
    assert url.database is not None
    return engine._writer_lock(url.database)


def test_two_threads_writing_serialise_on_the_process_lock(
    factory: SqlAlchemyUnitOfWorkFactory, sqlite_url: URL
) -> None:
    order: list[str] = []
    first_in, let_first_commit = threading.Event(), threading.Event()

    @event.listens_for(factory.engine, "before_cursor_execute")
    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            order.append(f"begin {threading.current_thread().name}")

    @event.listens_for(factory.engine, "commit")
    def committed(_conn: object) -> None:
        order.append(f"commit {threading.current_thread().name}")

    def write(job_id: str, hold: bool) -> None:
        with factory() as uow:
            uow.jobs.add(sync_job(job_id))
            if hold:
                first_in.set()
                let_first_commit.wait(10)
            uow.commit()

    first = threading.Thread(target=write, args=("J1", True), name="first")
    second = threading.Thread(target=write, args=("J2", False), name="second")
    first.start()
    assert first_in.wait(10)
    assert _lock(sqlite_url).locked()  # held by the open write transaction
    second.start()
    time.sleep(0.3)
    assert order == ["begin first"]  # the second writer waits before BEGIN, in the process
    let_first_commit.set()
    first.join(10)
    second.join(10)
    assert order == ["begin first", "commit first", "begin second", "commit second"]
    assert not _lock(sqlite_url).locked()
    with factory.read_only() as uow:
        assert {uow.jobs.get(sync_job("J1").tenant_id, j) is not None for j in ("J1", "J2")} == {True}


def test_an_error_in_the_block_gives_the_lock_back(factory: SqlAlchemyUnitOfWorkFactory, sqlite_url: URL) -> None:
    with pytest.raises(ZeroDivisionError), factory() as uow:
        uow.jobs.add(sync_job("J1"))
        assert _lock(sqlite_url).locked()
        _ = 1 / 0
    assert not _lock(sqlite_url).locked()


def test_a_failed_statement_and_a_rollback_give_the_lock_back(
    factory: SqlAlchemyUnitOfWorkFactory, sqlite_url: URL
) -> None:
    with factory() as uow:
        uow.jobs.add(sync_job("J1"))
        uow.commit()
    assert not _lock(sqlite_url).locked()
    with pytest.raises(Exception, match="UNIQUE"), factory() as uow:
        uow.jobs.add(sync_job("J1"))  # the same job_id: IntegrityError
    assert not _lock(sqlite_url).locked()
    with factory() as uow:
        uow.jobs.add(sync_job("J2"))
        uow.rollback()
        assert not _lock(sqlite_url).locked()


def test_an_invalidated_connection_gives_the_lock_back(factory: SqlAlchemyUnitOfWorkFactory, sqlite_url: URL) -> None:
    with factory() as uow:
        uow.jobs.add(sync_job("J1"))
        uow._require_session().connection().invalidate()  # the pool closes the DBAPI connection
        assert not _lock(sqlite_url).locked()
    with factory() as uow:  # and the next writer gets in at once
        uow.jobs.add(sync_job("J2"))
        uow.commit()
    assert not _lock(sqlite_url).locked()


def test_a_begin_refused_by_another_process_gives_the_lock_back(
    sqlite_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    factory = SqlAlchemyUnitOfWorkFactory(create_engine_for(sqlite_url))
    assert sqlite_url.database is not None
    other = sqlite3.connect(sqlite_url.database, isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailableError), factory() as uow:
            uow.jobs.add(sync_job("J1"))
        assert not _lock(sqlite_url).locked()
    finally:
        other.execute("ROLLBACK")
        other.close()
    with factory() as uow:
        uow.jobs.add(sync_job("J1"))
        uow.commit()
    factory.engine.dispose()


def test_a_second_write_transaction_in_the_same_thread_fails_as_sqlite_would_rather_than_hang(
    sqlite_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    factory = SqlAlchemyUnitOfWorkFactory(create_engine_for(sqlite_url))
    with factory() as outer:
        outer.jobs.add(sync_job("J1"))
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError), factory() as inner:
            inner.jobs.add(sync_job("J2"))
        assert time.monotonic() - started < 5
        outer.commit()
    assert not _lock(sqlite_url).locked()
    factory.engine.dispose()
