"""Currency: each connection records its QuickBooks company's home currency and whether multicurrency is on
(`Preferences.CurrencyPrefs`, SPEC.md section 7).

Existing connections get "" and false: "not read yet". qbsync then assumes USD until the preferences are
read, which happens the next time the tenant connects (README, "Currency").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quickbooks_connections") as batch:
        batch.add_column(sa.Column("home_currency", sa.String(), server_default="", nullable=False))
        batch.add_column(sa.Column("multicurrency", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("quickbooks_connections") as batch:
        batch.drop_column("multicurrency")
        batch.drop_column("home_currency")
