"""Payout refunds (SPEC.md section 9): which payout nets each refund, as `payout_payments` holds which payout
each payment is in. `payout_refunds` is keyed by the refund alone, so the database itself holds a refund to
at most one payout (netted twice, it would be taken from the bank twice); it is rewritten from the payout's
snapshot on every save, so a resync that drops a refund frees it.

Rows are filled from the payouts' JSON snapshots. Before this revision nothing stopped two payouts netting
one refund: such a refund goes to the payout that arrived first (then the lowest payout_id), and the later
one's next resync is refused (REFUND_IN_ANOTHER_PAYOUT) until it no longer nets it. No existing row changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_payouts = sa.table(
    "payouts",
    sa.column("tenant_id", sa.String()),
    sa.column("payout_id", sa.String()),
    sa.column("data", sa.Text()),
)


def upgrade() -> None:
    payout_refunds = op.create_table(
        "payout_refunds",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("refund_id", sa.String(), nullable=False),
        sa.Column("payout_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "payout_id"],
            ["payouts.tenant_id", "payouts.payout_id"],
            name=op.f("fk_payout_refunds_tenant_id_payout_id_payouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "refund_id", name=op.f("pk_payout_refunds")),
    )
    op.create_index(
        op.f("ix_payout_refunds_tenant_id_payout_id"), "payout_refunds", ["tenant_id", "payout_id"], unique=False
    )
    connection = op.get_bind()
    # Read in Python, not with SQL JSON functions: SQLite and PostgreSQL spell them differently.
    payouts = []
    for tenant_id, payout_id, data in connection.execute(
        sa.select(_payouts.c.tenant_id, _payouts.c.payout_id, _payouts.c.data)
    ).all():
        snapshot = json.loads(data)
        payouts.append((snapshot["arrival_date"], payout_id, tenant_id, snapshot.get("refund_ids", [])))
    assigned: dict[tuple[str, str], str] = {}
    for _, payout_id, tenant_id, refund_ids in sorted(payouts):  # ISO dates sort as dates
        for refund_id in refund_ids:
            assigned.setdefault((tenant_id, refund_id), payout_id)
    if assigned:
        op.bulk_insert(
            payout_refunds,
            [
                {"tenant_id": tenant_id, "refund_id": refund_id, "payout_id": payout_id}
                for (tenant_id, refund_id), payout_id in assigned.items()
            ],
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_refunds_tenant_id_payout_id"), table_name="payout_refunds")
    op.drop_table("payout_refunds")
