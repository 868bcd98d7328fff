"""Drift (SPEC §11, issue 14): what drift sweeps found changed in QuickBooks, and where each connection's next
sweep reads QuickBooks' changes from.

`drifts` holds one row per CRM record whose QuickBooks record someone else edited, voided, deleted or merged;
`drift_watermarks` one row per connection (tenant_id, branch_id). Both start empty: a connection's first sweep
reads as far back as QuickBooks keeps changes (30 days). `sync_records` gains an index on (tenant_id,
quickbooks_id), how a sweep finds which of the changed records qbsync wrote; its rows are left as they are
(`SyncState.DRIFTED` is a new value of its string `state`).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drifts",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("quickbooks_id", sa.String(), nullable=False),
        sa.Column("change", sa.String(), nullable=False),
        sa.Column("detected_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sync_token", sa.String(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "entity_type", "entity_id", name=op.f("pk_drifts")),
    )
    op.create_index(op.f("ix_drifts_tenant_id_detected_time"), "drifts", ["tenant_id", "detected_time"])
    op.create_table(
        "drift_watermarks",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("branch_id", sa.String(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "branch_id", name=op.f("pk_drift_watermarks")),
    )
    op.create_index(op.f("ix_sync_records_tenant_id_quickbooks_id"), "sync_records", ["tenant_id", "quickbooks_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sync_records_tenant_id_quickbooks_id"), table_name="sync_records")
    op.drop_table("drift_watermarks")
    op.drop_index(op.f("ix_drifts_tenant_id_detected_time"), table_name="drifts")
    op.drop_table("drifts")
