"""Scale-out: one writer per customer identity, and QuickBooks request limits shared by every process.

- `sync_jobs.identity_key`: jobs of different CRM customers with the same normalised name and email are
  not run at once (claim_next). Unfinished jobs get their key from the stored opportunity here; finished
  ones keep "" (nothing will claim them again without a retry, and "" only means "lock_key alone").
- `qbo_request_slots` and `qbo_request_starts`: the PostgreSQL request limiter's in-flight leases and
  admission times per company. Created on SQLite too, unused there, so both dialects have one schema.

Plain SQLAlchemy types, as in 0001: UtcDateTime is DateTime(timezone=True).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.domain import Customer

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_jobs") as batch:
        batch.add_column(sa.Column("identity_key", sa.String(), server_default="", nullable=False))
    op.create_index(op.f("ix_sync_jobs_identity_key_state"), "sync_jobs", ["identity_key", "state"], unique=False)
    _fill_identity_keys()
    op.create_table(
        "qbo_request_slots",
        sa.Column("slot_id", sa.String(), nullable=False),
        sa.Column("realm_id", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slot_id", name=op.f("pk_qbo_request_slots")),
    )
    op.create_index(
        op.f("ix_qbo_request_slots_realm_id_expires"), "qbo_request_slots", ["realm_id", "expires"], unique=False
    )
    op.create_table(
        "qbo_request_starts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("realm_id", sa.String(), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qbo_request_starts")),
    )
    op.create_index(
        op.f("ix_qbo_request_starts_realm_id_started"), "qbo_request_starts", ["realm_id", "started"], unique=False
    )


def _fill_identity_keys() -> None:
    """Keys for the jobs still waiting or running, from their opportunity's customer as stored."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT j.tenant_id, j.job_id, o.customer_id, o.first_name, o.last_name, o.company_name, o.email "
            "FROM sync_jobs j JOIN opportunities o "
            "ON o.tenant_id = j.tenant_id AND o.opportunity_id = j.opportunity_id "
            "WHERE j.state IN ('PENDING', 'RUNNING')"
        )
    ).all()
    for tenant_id, job_id, customer_id, first_name, last_name, company_name, email in rows:
        customer = Customer(customer_id, first_name, last_name, company_name, email)
        connection.execute(
            sa.text("UPDATE sync_jobs SET identity_key = :key WHERE tenant_id = :tenant AND job_id = :job"),
            {"key": customer.identity_key(tenant_id), "tenant": tenant_id, "job": job_id},
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_qbo_request_starts_realm_id_started"), table_name="qbo_request_starts")
    op.drop_table("qbo_request_starts")
    op.drop_index(op.f("ix_qbo_request_slots_realm_id_expires"), table_name="qbo_request_slots")
    op.drop_table("qbo_request_slots")
    op.drop_index(op.f("ix_sync_jobs_identity_key_state"), table_name="sync_jobs")
    with op.batch_alter_table("sync_jobs") as batch:
        batch.drop_column("identity_key")
