"""What the sync-time checks of a company's settings found in its lists, kept for every process (issue 12):
a new worker process's first sync of a company another process checked makes no look-ups
(core/company_lookups.py).

A new table; nothing existing changes. It starts empty: each company's settings are checked once more, by
the first sync after the upgrade, as every new process did before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "company_lookups",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("realm_id", sa.String(), nullable=False),
        sa.Column("against", sa.Text(), nullable=False),
        sa.Column("found_id", sa.String(), nullable=False),
        sa.Column("found_name", sa.Text(), nullable=False),
        sa.Column("checked_time", sa.DateTime(timezone=True), nullable=False),  # UtcDateTime, as in 0002
        sa.PrimaryKeyConstraint("tenant_id", "kind", "name", name=op.f("pk_company_lookups")),
    )


def downgrade() -> None:
    op.drop_table("company_lookups")
