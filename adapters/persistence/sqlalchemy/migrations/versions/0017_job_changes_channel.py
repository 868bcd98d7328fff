"""Job change notifications on the schema's own channel, and only for what a stream shows (PostgreSQL).

0010's trigger notified `qbsync_job_changes` — database-wide, so every API listening in any schema of the
database received every other schema's job changes — on every update of a sync_jobs row, lease extensions
included (one NOTIFY per heartbeat that no stream shows). Now: `qbsync_job_changes_<md5 of the schema, 16 hex>`
(adapters.persistence.sqlalchemy.work_signal.channel_for), on every insert, and on an update only when a column
WatchSyncJob shows changed (adapters.persistence.sqlalchemy.job_changes._VISIBLE).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VISIBLE = ("state", "attempts", "results", "error", "next_attempt_time", "update_time")


def _notify_function(channel: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION qbsync_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify({channel}, json_build_array(NEW.tenant_id, NEW.job_id)::text);
            RETURN NULL;
        END
        $$
        """


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_notify_function("'qbsync_job_changes_' || substr(md5(TG_TABLE_SCHEMA), 1, 16)"))
    old = ", ".join(f"OLD.{column}" for column in _VISIBLE)
    new = ", ".join(f"NEW.{column}" for column in _VISIBLE)
    op.execute("DROP TRIGGER IF EXISTS sync_jobs_notify_change ON sync_jobs")
    op.execute(
        "CREATE TRIGGER sync_jobs_notify_insert AFTER INSERT ON sync_jobs "
        "FOR EACH ROW EXECUTE FUNCTION qbsync_notify_job_change()"
    )
    op.execute(
        "CREATE TRIGGER sync_jobs_notify_change AFTER UPDATE ON sync_jobs "
        f"FOR EACH ROW WHEN (({old}) IS DISTINCT FROM ({new})) EXECUTE FUNCTION qbsync_notify_job_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS sync_jobs_notify_insert ON sync_jobs")
    op.execute("DROP TRIGGER IF EXISTS sync_jobs_notify_change ON sync_jobs")
    op.execute(_notify_function("'qbsync_job_changes'"))
    op.execute(
        "CREATE TRIGGER sync_jobs_notify_change AFTER INSERT OR UPDATE ON sync_jobs "
        "FOR EACH ROW EXECUTE FUNCTION qbsync_notify_job_change()"
    )
