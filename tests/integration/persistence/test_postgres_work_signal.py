"""Idle workers woken by PostgreSQL (issue 12): a job added or retried on another connection signals every
waiting worker at its commit (migration 0013's NOTIFY), and a claim or a retry scheduled for later does not.

The waits' timeouts are generous: a signal ends the wait at once, and the assertions are on what `wait`
returned (signalled or timed out), never on how long it took.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from persistence_builders import at, sync_job
from sqlalchemy import Engine

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from adapters.persistence.sqlalchemy.work_signal import PostgresWorkSignal, work_signal_for
from core.domain import SyncJobState
from tests.postgres_schema import fresh_postgres_schema

SIGNALLED = 10.0  # seconds: only a regression waits this long
QUIET = 0.3  # seconds to wait for a signal that must not come


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with fresh_postgres_schema("signal") as url:
        engine = create_engine_for(url)
        yield engine
        engine.dispose()


@pytest.fixture
def signal(engine: Engine) -> Iterator[PostgresWorkSignal]:
    signal = PostgresWorkSignal(engine)
    # The first wait starts the listener, which signals once LISTEN is in effect (what was enqueued before
    # is unknown to it).
    assert signal.wait(SIGNALLED)
    yield signal
    signal.close()


def test_a_job_added_on_another_connection_wakes_a_waiting_worker(engine: Engine, signal: PostgresWorkSignal) -> None:
    assert not signal.wait(QUIET)  # nothing enqueued yet
    woken: list[bool] = []

    def wait() -> None:
        signal.wait(0)  # a thread's first wait also counts the signals before it: start from now
        woken.append(signal.wait(SIGNALLED))

    waiter = threading.Thread(target=wait)
    waiter.start()
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    with uow() as tx:
        tx.jobs.add(sync_job("added", created=at(1)))
        tx.commit()
    waiter.join(timeout=SIGNALLED + 5)
    assert woken == [True]


def test_a_signal_before_the_wait_still_counts(engine: Engine, signal: PostgresWorkSignal) -> None:
    with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
        tx.jobs.add(sync_job("early", created=at(2)))
        tx.commit()
    assert signal.wait(SIGNALLED)
    assert not signal.wait(QUIET)  # and counts once


def test_claims_and_later_retries_send_no_signal_and_retry_sync_does(
    engine: Engine, signal: PostgresWorkSignal
) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    with factory() as tx:
        tx.jobs.add(sync_job("retried", created=at(3)))
        tx.commit()
    assert signal.wait(SIGNALLED)
    now = at(60)
    with factory() as tx:
        job = tx.jobs.claim_next("w1", now, now + timedelta(minutes=5))
        tx.commit()
    assert job is not None
    assert not signal.wait(QUIET)
    job.state, job.next_attempt_time, job.claimed_by, job.lease_expires = SyncJobState.PENDING, at(90), "", None
    with factory() as tx:
        tx.jobs.save(job)  # a retry scheduled for later: the workers' polling finds it when it is due
        tx.commit()
    assert not signal.wait(QUIET)
    job.next_attempt_time = None
    with factory() as tx:
        tx.jobs.save(job)  # as RetrySync leaves it: due at once
        tx.commit()
    assert signal.wait(SIGNALLED)


def test_sqlite_has_no_signal(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'qbsync.db'}")
    try:
        assert work_signal_for(engine) is None
    finally:
        engine.dispose()
