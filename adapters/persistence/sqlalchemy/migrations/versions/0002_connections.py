"""Each tenant's QuickBooks connection, its secrets encrypted in one column.

Plain SQLAlchemy types, as in 0001: UtcDateTime is DateTime(timezone=True).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quickbooks_connections",
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("realm_id", sa.String(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("api_base_url", sa.Text(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("access_token_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("connect_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("company_name", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_quickbooks_connections")),
    )


def downgrade() -> None:
    op.drop_table("quickbooks_connections")
