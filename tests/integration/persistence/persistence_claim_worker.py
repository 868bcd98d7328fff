"""A worker process for the multi-process claim test (importable by a spawned interpreter)."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for


def claim_until_empty(url: str, worker_id: str, now_iso: str) -> list[str]:
    """Claims jobs (never finishing them) until none is due; returns the claimed job ids."""
    now = datetime.fromisoformat(now_iso)
    engine = create_engine_for(url)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    claimed: list[str] = []
    try:
        while True:
            with factory() as uow:
                job = uow.jobs.claim_next(worker_id, now, now + timedelta(minutes=5))
                uow.commit()
            if job is None:
                return claimed
            claimed.append(job.job_id)
    finally:
        engine.dispose()
