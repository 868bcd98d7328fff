"""WatchSyncJob's change feed on PostgreSQL (migration 0017): a job's change is announced on its own
schema's channel only, and a lease extension (which no stream shows) announces nothing.

A listener's first wait answers None (LISTEN just took effect); later waits answer the watched jobs that
changed. Timeouts are generous: a notification ends the wait at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from persistence_builders import at, sync_job
from sqlalchemy import Engine

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from adapters.persistence.sqlalchemy.job_changes import PostgresJobChanges
from tests.postgres_schema import fresh_postgres_schema

NOTIFIED = 10.0  # seconds: only a regression waits this long
QUIET = 0.3  # seconds to wait for a notification that must not come
WATCHED = frozenset({("t1", "watched")})


@pytest.fixture
def engines() -> Iterator[tuple[Engine, Engine]]:
    with fresh_postgres_schema("changes_a") as url_a, fresh_postgres_schema("changes_b") as url_b:
        a, b = create_engine_for(url_a), create_engine_for(url_b)
        yield a, b
        a.dispose()
        b.dispose()


@pytest.fixture
def feed(engines: tuple[Engine, Engine]) -> Iterator[PostgresJobChanges]:
    feed = PostgresJobChanges(engines[0])
    assert feed.wait(WATCHED, NOTIFIED) is None  # LISTEN took effect
    yield feed
    feed.close()


def _add_watched(engine: Engine) -> None:
    with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
        tx.jobs.add(sync_job("watched", created=at(1)))
        tx.commit()


def test_a_job_added_in_another_schema_is_not_announced_here(
    engines: tuple[Engine, Engine], feed: PostgresJobChanges
) -> None:
    _add_watched(engines[1])  # the same tenant and job id, in the other schema
    assert feed.wait(WATCHED, QUIET) == set()
    _add_watched(engines[0])
    assert feed.wait(WATCHED, NOTIFIED) == set(WATCHED)


def test_a_lease_extension_is_not_announced_and_a_claim_is(
    engines: tuple[Engine, Engine], feed: PostgresJobChanges
) -> None:
    engine = engines[0]
    _add_watched(engine)
    assert feed.wait(WATCHED, NOTIFIED) == set(WATCHED)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    now = at(60)
    with factory() as tx:
        job = tx.jobs.claim_next("w1", now, now + timedelta(minutes=5))
        tx.commit()
    assert job is not None
    assert feed.wait(WATCHED, NOTIFIED) == set(WATCHED)  # RUNNING: a stream shows it
    with factory() as tx:
        assert tx.jobs.extend_lease("t1", "watched", "w1", now + timedelta(minutes=10))
        tx.commit()
    assert feed.wait(WATCHED, QUIET) == set()
