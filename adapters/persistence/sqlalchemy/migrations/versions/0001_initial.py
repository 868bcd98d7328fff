"""The initial schema: tenants and keys, CRM snapshots, sync records, the job queue, the audit log.

Written with plain SQLAlchemy types rather than the models' TypeDecorators, so that this revision stays
as it is when the models change: UtcDateTime is stored as DateTime(timezone=True) (timestamptz on
PostgreSQL) and ExactDecimal as VARCHAR(64).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=True),
        sa.Column("entity_id", sa.String(), nullable=True),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_tenant_id_time"), "audit_events", ["tenant_id", "time"], unique=False)
    op.create_table(
        "crm_jobs",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("opportunity_id", sa.String(), nullable=False),
        sa.Column("closed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "job_id", name=op.f("pk_crm_jobs")),
    )
    op.create_index(
        op.f("ix_crm_jobs_tenant_id_opportunity_id"),
        "crm_jobs",
        ["tenant_id", "opportunity_id"],
        unique=False,
    )
    op.create_table(
        "opportunities",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("opportunity_id", sa.String(), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("first_name", sa.Text(), nullable=False),
        sa.Column("last_name", sa.Text(), nullable=False),
        sa.Column("company_name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "opportunity_id", name=op.f("pk_opportunities")),
    )
    op.create_table(
        "payments",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("opportunity_id", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "payment_id", name=op.f("pk_payments")),
    )
    op.create_index(
        op.f("ix_payments_tenant_id_opportunity_id"),
        "payments",
        ["tenant_id", "opportunity_id"],
        unique=False,
    )
    op.create_table(
        "sync_jobs",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target_type", sa.String(), nullable=False),
        sa.Column("target_id", sa.String(), nullable=False),
        sa.Column("opportunity_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("lock_key", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("resync", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("request_fingerprint", sa.String(), nullable=False),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(), nullable=False),
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "job_id", name=op.f("pk_sync_jobs")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_sync_jobs_tenant_id_request_id")),
    )
    op.create_index(op.f("ix_sync_jobs_lock_key_state"), "sync_jobs", ["lock_key", "state"], unique=False)
    op.create_index(
        op.f("ix_sync_jobs_state_next_attempt_time"),
        "sync_jobs",
        ["state", "next_attempt_time"],
        unique=False,
    )
    op.create_index(
        op.f("ix_sync_jobs_tenant_id_state_update_time"),
        "sync_jobs",
        ["tenant_id", "state", "update_time"],
        unique=False,
    )
    op.create_table(
        "sync_records",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("quickbooks_id", sa.String(), nullable=True),
        sa.Column("sync_token", sa.String(), nullable=True),
        sa.Column("quickbooks_type", sa.String(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("create_started", sa.Boolean(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("last_synced_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("amount", sa.String(length=64), nullable=True),
        sa.Column("applied", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "entity_type", "entity_id", name=op.f("pk_sync_records")),
    )
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "refunds",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("refund_id", sa.String(), nullable=False),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "payment_id"],
            ["payments.tenant_id", "payments.payment_id"],
            name=op.f("fk_refunds_tenant_id_payment_id_payments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "refund_id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_tenant_id_payment_id"), "refunds", ["tenant_id", "payment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refunds_tenant_id_payment_id"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_table("tenants")
    op.drop_table("sync_records")
    op.drop_index(op.f("ix_sync_jobs_tenant_id_state_update_time"), table_name="sync_jobs")
    op.drop_index(op.f("ix_sync_jobs_state_next_attempt_time"), table_name="sync_jobs")
    op.drop_index(op.f("ix_sync_jobs_lock_key_state"), table_name="sync_jobs")
    op.drop_table("sync_jobs")
    op.drop_index(op.f("ix_payments_tenant_id_opportunity_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_table("opportunities")
    op.drop_index(op.f("ix_crm_jobs_tenant_id_opportunity_id"), table_name="crm_jobs")
    op.drop_table("crm_jobs")
    op.drop_index(op.f("ix_audit_events_tenant_id_time"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
