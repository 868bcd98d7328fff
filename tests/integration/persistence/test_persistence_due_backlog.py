"""The `due_backlog` contract on every backend (what the metrics scrape reads): due PENDING jobs over all
tenants, and since when the longest-waiting of them has been due; lease takeovers marked by claim_next."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from persistence_builders import Backend, at, sync_job
from sqlalchemy import event, inspect

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from core.domain import SyncJob, SyncJobState
from core.ports import DueBacklog


def _add(backend: Backend, *jobs: SyncJob) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def _backlog(backend: Backend, minutes: float) -> DueBacklog:
    with backend.uow() as uow:
        return uow.jobs.due_backlog(at(minutes))


def test_an_empty_queue_has_no_backlog(backend: Backend) -> None:
    assert _backlog(backend, 0) == DueBacklog(0, None)


def test_due_backlog_counts_due_pending_jobs_of_every_tenant_and_the_oldest_due_time(backend: Backend) -> None:
    _add(
        backend,
        sync_job("new", created=at(5)),  # due since it was created
        sync_job("other-tenant", tenant_id="t2", created=at(2)),
        sync_job("retry-due", created=at(0), next_attempt=at(3)),  # due since its retry time, not creation
        sync_job("retry-later", created=at(-60), next_attempt=at(30)),  # not due yet: not counted
        sync_job("running", state=SyncJobState.RUNNING, created=at(-50), lease_expires=at(60)),
        sync_job("failed", state=SyncJobState.FAILED, created=at(-40)),
        sync_job("succeeded", state=SyncJobState.SUCCEEDED, created=at(-30)),
    )
    assert _backlog(backend, 10) == DueBacklog(3, at(2))
    # A retry at exactly `now` is due (as claim_next's `<=`); before it, not.
    assert _backlog(backend, 3) == DueBacklog(3, at(2))
    assert _backlog(backend, 2.5) == DueBacklog(2, at(2))
    assert _backlog(backend, 60) == DueBacklog(4, at(2))


def test_claim_next_marks_a_claim_of_a_job_whose_lease_ran_out_as_a_takeover(backend: Backend) -> None:
    _add(backend, sync_job("j1"))
    with backend.uow() as uow:
        first = uow.jobs.claim_next("w1", at(0), at(0) + timedelta(minutes=2))
        uow.commit()
    assert first is not None and not first.taken_over  # it was PENDING
    with backend.uow() as uow:
        assert uow.jobs.claim_next("w2", at(1), at(3)) is None  # the lease still holds
        second = uow.jobs.claim_next("w2", at(3), at(5))
        uow.commit()
    assert second is not None and second.job_id == "j1" and second.claimed_by == "w2" and second.taken_over


def test_the_due_backlog_reads_indexes_never_the_whole_table(sql_backend: Backend) -> None:
    # With 100,000 pending jobs a scan of sync_jobs cost each /metrics scrape and /readyz probe half a
    # second; the oldest new job's creation time comes from the partial index of revision 0013 (usable only
    # while the query names the state as its WHERE does).
    assert sql_backend.url is not None
    _add(sql_backend, sync_job("new", created=at(5)), sync_job("retry", created=at(0), next_attempt=at(3)))
    engine = create_engine_for(sql_backend.url)
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, params, *_: statements.append((sql, params)))

    with SqlAlchemyUnitOfWorkFactory(engine).read_only() as uow:
        assert uow.jobs.due_backlog(at(10)) == DueBacklog(2, at(3))
    [(sql, params)] = [(sql, params) for sql, params in statements if "sync_jobs" in sql]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a few rows: the planner would scan them
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", params))
            assert "Seq Scan" not in plan, plan
        else:
            plan = "\n".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SCAN sync_jobs" not in plan and "TEMP B-TREE" not in plan, plan
    engine.dispose()
    assert "ix_sync_jobs_due_backlog" in plan, plan


def test_the_oldest_new_job_is_read_from_an_index_of_new_jobs_whatever_runs_or_waits_before_it(
    sql_backend: Backend,
) -> None:
    # The oldest jobs of a busy queue are RUNNING ones and retries scheduled later: walking the claim index in
    # creation order past them cost PostgreSQL 70,000 filtered rows (74 ms) per scrape at 100,000 open jobs.
    # Revision 0016's index (PostgreSQL) and 0015's (SQLite, where IS NULL is an equality) start at the job.
    assert sql_backend.url is not None
    _add(
        sql_backend,
        *(sync_job(f"running{n}", created=at(n), state=SyncJobState.RUNNING) for n in range(3)),
        *(sync_job(f"later{n}", created=at(3 + n), next_attempt=at(60)) for n in range(3)),
        sync_job("new", created=at(7)),
        sync_job("newer", created=at(8)),
    )
    engine = create_engine_for(sql_backend.url)
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, params, *_: statements.append((sql, params)))

    with SqlAlchemyUnitOfWorkFactory(engine).read_only() as uow:
        assert uow.jobs.due_backlog(at(10)) == DueBacklog(2, at(7))
    [(sql, params)] = [(sql, params) for sql, params in statements if "sync_jobs" in sql]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a few rows: the planner would scan them
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", params))
            assert "ix_sync_jobs_oldest_new" in plan, plan
            # Not a walk of another index in creation order, filtering out the jobs before the new one.
            assert "Filter: ((next_attempt_time IS NULL) AND" not in plan, plan
        else:
            plan = "\n".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "ix_sync_jobs_due_backlog (next_attempt_time=?)" in plan, plan
    engine.dispose()


def test_the_index_of_new_jobs_is_postgresql_s_alone(sql_backend: Backend) -> None:
    # SQLite reads its oldest new job from 0015's index: a second one would cost every enqueue its upkeep.
    assert sql_backend.url is not None
    engine = create_engine_for(sql_backend.url)
    try:
        with engine.connect() as connection:
            names = {index["name"] for index in inspect(connection).get_indexes("sync_jobs")}
    finally:
        engine.dispose()
    assert ("ix_sync_jobs_oldest_new" in names) == (engine.dialect.name == "postgresql"), names
