"""Payout listing (`qbsync payouts`, SPEC.md section 9): each payout's arrival date gets its own column,
so that payouts are listed newest first by the database, with an index in that order.

Rows saved before this revision get the date from their JSON snapshot. The column stays nullable: making
it NOT NULL on SQLite means recreating `payouts`, and with foreign keys on, dropping the old table would
cascade to `payout_payments` (the downgrade drops the column in place for the same reason). Every save
writes it, so no row is left without one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_payouts = sa.table(
    "payouts",
    sa.column("tenant_id", sa.String()),
    sa.column("payout_id", sa.String()),
    sa.column("arrival_date", sa.Date()),
    sa.column("data", sa.Text()),
)


def upgrade() -> None:
    op.add_column("payouts", sa.Column("arrival_date", sa.Date(), nullable=True))
    connection = op.get_bind()
    # Read in Python, not with SQL JSON functions: SQLite and PostgreSQL spell them differently.
    for tenant_id, payout_id, data in connection.execute(
        sa.select(_payouts.c.tenant_id, _payouts.c.payout_id, _payouts.c.data)
    ).all():
        connection.execute(
            _payouts.update()
            .where(_payouts.c.tenant_id == tenant_id, _payouts.c.payout_id == payout_id)
            .values(arrival_date=date.fromisoformat(json.loads(data)["arrival_date"]))
        )
    op.create_index(
        op.f("ix_payouts_tenant_id_arrival_date_payout_id"),
        "payouts",
        ["tenant_id", "arrival_date", "payout_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payouts_tenant_id_arrival_date_payout_id"), table_name="payouts")
    # A plain DROP COLUMN (SQLite has it since 3.35), not batch mode's copy of the table: dropping the old
    # `payouts` would cascade to `payout_payments` and lose every payment's assignment.
    op.drop_column("payouts", "arrival_date")
