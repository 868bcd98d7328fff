"""The claim's index and the workers' wake-up (issue 12).

The index: the open jobs (PENDING or RUNNING) in claim order, so that a claim reads
the first claimable job from an index instead of scanning and sorting the whole queue (100,000 pending
jobs cost a claim over a second).

Partial: finished jobs, most of the table over time, are never claimed and stay out of it. On PostgreSQL the
ids are in the "C" collation, as the claim orders them (adapters.persistence.sqlalchemy.jobs), so that the
index's order is the claim's; SQLite's BINARY collation is that order already. On SQLite the predicate reads
`+state`: the claim tests its job's state so (see jobs.py), and SQLite uses a partial index only for a
query whose WHERE has the index's own terms.

The wake-up, on PostgreSQL only: a trigger sends NOTIFY on its schema's channel
(`qbsync_jobs_<md5 of the schema, 16 hex>`) whenever a sync_jobs row becomes PENDING with no next attempt
time (a job added, or retried with RetrySync), in the writer's transaction, so that idle workers
(adapters.persistence.sqlalchemy.work_signal LISTENs) claim it at its commit instead of at their next poll.
A retry scheduled for later sends nothing: the workers' polling finds it once it is due.
The payload is empty, so that the notifications of one transaction fold into one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_sync_jobs_claim_order"
OPEN = "state IN ('PENDING', 'RUNNING')"
SQLITE_OPEN = "+state IN ('PENDING', 'RUNNING')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute(f"CREATE INDEX {INDEX} ON sync_jobs (create_time, job_id, tenant_id) WHERE {SQLITE_OPEN}")
        return
    op.execute(
        f'CREATE INDEX {INDEX} ON sync_jobs (create_time, job_id COLLATE "C", tenant_id COLLATE "C") WHERE {OPEN}'
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION qbsync_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- One channel per schema (work_signal.channel_for): NOTIFY is database-wide, and deployments (or
            -- test runs) sharing a database in schemas of their own must not wake each other's workers.
            PERFORM pg_notify('qbsync_jobs_' || substr(md5(TG_TABLE_SCHEMA), 1, 16), '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER sync_jobs_notify_work AFTER INSERT OR UPDATE OF state, next_attempt_time ON sync_jobs "
        "FOR EACH ROW WHEN (NEW.state = 'PENDING' AND NEW.next_attempt_time IS NULL) "
        "EXECUTE FUNCTION qbsync_notify_work()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS sync_jobs_notify_work ON sync_jobs")
        op.execute("DROP FUNCTION IF EXISTS qbsync_notify_work()")
    op.execute(f"DROP INDEX {INDEX}")
