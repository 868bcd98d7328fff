"""Dismissed sync errors (DismissSyncError): when an admin dismissed a FAILED job, and an index for the
console's recent jobs (a tenant's jobs, newest update first).

The column is nullable and no existing row changes: no job was dismissed before this revision.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite alters a table by copying it; on PostgreSQL this is a plain ALTER TABLE.
    with op.batch_alter_table("sync_jobs") as batch:
        batch.add_column(sa.Column("dismiss_time", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_sync_jobs_tenant_id_update_time"), "sync_jobs", ["tenant_id", "update_time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sync_jobs_tenant_id_update_time"), table_name="sync_jobs")
    with op.batch_alter_table("sync_jobs") as batch:
        batch.drop_column("dismiss_time")
