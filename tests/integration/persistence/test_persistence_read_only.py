"""Read-only units of work (issue 12): on SQLite they begin without the write lock, so a read does not
queue behind a writer; none can commit, so nothing written in one lasts; every backend reads the same."""

from __future__ import annotations

import threading
import time

import pytest
from persistence_builders import Backend, sync_job
from sqlalchemy import event
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for


def test_a_read_only_unit_of_work_reads_what_was_committed(backend: Backend) -> None:
    job = sync_job("J1")
    with backend.uow() as uow:
        uow.jobs.add(job)
        uow.commit()
    with backend.uow.read_only() as uow:
        found = uow.jobs.get(job.tenant_id, job.job_id)
    assert found is not None and found.job_id == "J1"


def test_a_read_only_unit_of_work_cannot_commit(sql_backend: Backend) -> None:
    with sql_backend.uow.read_only() as uow:
        uow.jobs.add(sync_job("J1"))
        with pytest.raises(RuntimeError, match="read-only"):
            uow.commit()
    with sql_backend.uow() as uow:
        assert uow.jobs.get(sync_job("J1").tenant_id, "J1") is None


def test_on_sqlite_a_read_does_not_wait_for_a_writer_and_a_write_still_takes_the_lock(sqlite_url: URL) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(create_engine_for(sqlite_url))
    begins: list[str] = []

    @event.listens_for(factory.engine, "before_cursor_execute")
    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    job = sync_job("J1")
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with factory() as uow:
            uow.jobs.add(job)  # holds SQLite's write lock from BEGIN IMMEDIATE until the commit
            writing.set()
            release.wait(10)
            uow.commit()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        started = time.monotonic()
        with factory.read_only() as uow:
            assert uow.jobs.get(job.tenant_id, job.job_id) is None  # the snapshot before the writer's commit
        assert time.monotonic() - started < 5  # not queued behind the writer (busy_timeout is 30 s)
    finally:
        release.set()
        thread.join(10)
    factory.engine.dispose()
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]
