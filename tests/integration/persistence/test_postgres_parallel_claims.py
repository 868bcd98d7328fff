"""PostgreSQL claimers do not wait for each other (issue 12): while one claim's transaction is still open,
a claimer on another connection takes the next job at once, and passes over a job whose lock_key or
identity_key the open claim holds instead of waiting for it.

Each second claim runs on a thread and must end while the first transaction is still open (the join's
timeout only keeps a regression from hanging the suite: with one lock for every claimer, the second claim
waits for the first commit, so it is still running when the join gives up).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from persistence_builders import Backend, at, sync_job
from sqlalchemy import delete
from sqlalchemy.engine import URL

from adapters.persistence.encryption import SecretBox, generate_key
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from adapters.persistence.sqlalchemy.models import SyncJobRow
from core.domain import SyncJob
from tests.postgres_schema import fresh_postgres_schema

NOW = at(60)
LEASE = NOW + timedelta(minutes=5)


@pytest.fixture(scope="module")
def schema() -> Iterator[URL]:
    """One migrated schema for the module (a migration costs seconds); each test empties its queue."""
    with fresh_postgres_schema("claims") as url:
        yield url


@pytest.fixture
def postgres(schema: URL) -> Iterator[Backend]:
    engine = create_engine_for(schema)
    with engine.begin() as connection:
        connection.execute(delete(SyncJobRow))
    try:
        yield Backend("postgresql", SqlAlchemyUnitOfWorkFactory(engine, SecretBox([generate_key()])), schema)
    finally:
        engine.dispose()


def _add(backend: Backend, *jobs: SyncJob) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def _claim_meanwhile(backend: Backend, worker_id: str) -> list[SyncJob | None]:
    """Claims on a connection of its own, on a thread, and commits; returns what it claimed, once it ended."""
    claimed: list[SyncJob | None] = []

    def claim() -> None:
        with backend.uow() as uow:
            claimed.append(uow.jobs.claim_next(worker_id, NOW, LEASE))
            uow.commit()

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the second claim waited for the first claim's transaction"
    return claimed


def test_a_second_claimer_takes_the_next_job_while_the_first_claim_is_open(postgres: Backend) -> None:
    _add(postgres, sync_job("j1", created=at(1)), sync_job("j2", created=at(2)))
    with postgres.uow() as first:
        mine = first.jobs.claim_next("w1", NOW, LEASE)
        assert mine is not None and mine.job_id == "j1"

        assert [job.job_id if job else None for job in _claim_meanwhile(postgres, "w2")] == ["j2"]
        first.commit()
    with postgres.uow() as uow:
        claimers = {job_id: uow.jobs.get("t1", job_id) for job_id in ("j1", "j2")}
    assert {job_id: job.claimed_by for job_id, job in claimers.items() if job} == {"j1": "w1", "j2": "w2"}


def test_a_second_claimer_passes_over_the_open_claims_lock_key(postgres: Backend) -> None:
    # j2 has j1's customer: not claimable while j1 is being claimed, so the second claimer takes j3.
    _add(
        postgres,
        sync_job("j1", customer_id="C1", created=at(1)),
        sync_job("j2", customer_id="C1", created=at(2)),
        sync_job("j3", customer_id="C2", created=at(3)),
    )
    with postgres.uow() as first:
        assert first.jobs.claim_next("w1", NOW, LEASE) is not None

        assert [job.job_id if job else None for job in _claim_meanwhile(postgres, "w2")] == ["j3"]
        first.commit()
    # Once the first claim is committed j1 holds its lease, so j2 stays blocked.
    assert _claim_meanwhile(postgres, "w3") == [None]


def test_a_second_claimer_passes_over_the_open_claims_identity_key(postgres: Backend) -> None:
    # Two customers, one identity in QuickBooks: j2 waits for j1 whatever its customer.
    _add(
        postgres,
        sync_job("j1", customer_id="C1", identity_key="ann/lee", created=at(1)),
        sync_job("j2", customer_id="C2", identity_key="ann/lee", created=at(2)),
    )
    with postgres.uow() as first:
        assert first.jobs.claim_next("w1", NOW, LEASE) is not None

        assert _claim_meanwhile(postgres, "w2") == [None]
        first.commit()
    assert _claim_meanwhile(postgres, "w3") == [None]


def test_an_open_claim_in_another_schema_holds_none_of_our_keys(postgres: Backend) -> None:
    # Advisory locks are database-wide: a deployment in another schema with a job of the same keys (the same
    # tenant, customer and identity) must not make our claimer pass over ours.
    with fresh_postgres_schema("claims_other") as other_url:
        other_engine = create_engine_for(other_url)
        try:
            other = Backend(
                "postgresql", SqlAlchemyUnitOfWorkFactory(other_engine, SecretBox([generate_key()])), other_url
            )
            job = sync_job("j1", customer_id="C1", identity_key="ann/lee", created=at(1))
            _add(other, job)
            _add(postgres, job)
            with other.uow() as elsewhere:
                assert elsewhere.jobs.claim_next("w1", NOW, LEASE) is not None

                assert [claimed.job_id if claimed else None for claimed in _claim_meanwhile(postgres, "w2")] == ["j1"]
                elsewhere.commit()
        finally:
            other_engine.dispose()
