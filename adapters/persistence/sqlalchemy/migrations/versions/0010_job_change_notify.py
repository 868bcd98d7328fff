"""Job change notifications (WatchSyncJob's change feed): on PostgreSQL, every insert or update of a
sync_jobs row sends NOTIFY `qbsync_job_changes` with `["<tenant_id>", "<job_id>"]`, in the writer's own
transaction, whichever process writes (adapters.persistence.sqlalchemy.job_changes LISTENs).

Nothing on SQLite: one process serves a SQLite database, and its streams share one poller instead.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION qbsync_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('qbsync_job_changes', json_build_array(NEW.tenant_id, NEW.job_id)::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER sync_jobs_notify_change AFTER INSERT OR UPDATE ON sync_jobs "
        "FOR EACH ROW EXECUTE FUNCTION qbsync_notify_job_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS sync_jobs_notify_change ON sync_jobs")
    op.execute("DROP FUNCTION IF EXISTS qbsync_notify_job_change()")
