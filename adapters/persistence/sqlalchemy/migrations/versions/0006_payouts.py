"""Payouts (SPEC.md section 9): each payout's newest snapshot, and which payout each payment is in.

`payout_payments` is keyed by the payment alone, so the database itself holds a payment to at most one
payout; it is rewritten from the payout's snapshot on every save, so a resync that drops a payment frees
it. No existing row changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("payout_id", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "payout_id", name=op.f("pk_payouts")),
    )
    op.create_table(
        "payout_payments",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("payment_id", sa.String(), nullable=False),
        sa.Column("payout_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "payout_id"],
            ["payouts.tenant_id", "payouts.payout_id"],
            name=op.f("fk_payout_payments_tenant_id_payout_id_payouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "payment_id", name=op.f("pk_payout_payments")),
    )
    op.create_index(
        op.f("ix_payout_payments_tenant_id_payout_id"), "payout_payments", ["tenant_id", "payout_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_payments_tenant_id_payout_id"), table_name="payout_payments")
    op.drop_table("payout_payments")
    op.drop_table("payouts")
