"""SQLite's job-change poller (WatchSyncJob's feed) reads without the write lock: a poll every tick must not
queue behind, nor hold up, the enqueues and claims of its process."""

from __future__ import annotations

from persistence_builders import sync_job
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from adapters.persistence.sqlalchemy.job_changes import PolledJobChanges


def test_a_poll_reads_the_watched_jobs_while_a_writer_holds_the_write_lock(sqlite_url: URL) -> None:
    engine = create_engine_for(sqlite_url)
    try:
        uow_factory = SqlAlchemyUnitOfWorkFactory(engine)
        with uow_factory() as uow:
            uow.jobs.add(sync_job("j1"))
            uow.commit()
        changes = PolledJobChanges(engine)
        with uow_factory() as writer:  # BEGIN IMMEDIATE: this process' writer lock and SQLite's
            writer.jobs.add(sync_job("j2"))
            # A poll that wanted the write lock would wait out the busy timeout, then report an outage (None).
            assert changes.wait(frozenset({("t1", "j1")}), 0) == [("t1", "j1")]
            writer.commit()
    finally:
        engine.dispose()
