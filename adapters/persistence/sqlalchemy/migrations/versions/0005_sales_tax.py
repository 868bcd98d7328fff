"""Sales tax: each connection records how its QuickBooks company treats sales tax (`Preferences.TaxPrefs`,
SPEC.md section 8): AUTOMATED, MANUAL or NONE.

Existing connections get NULL: "not read yet". A job charging tax is then not refused for the company's
mode; the first such job (or the next connect) reads the preferences (README, "Tax, discounts and tips").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quickbooks_connections") as batch:
        batch.add_column(sa.Column("sales_tax", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quickbooks_connections") as batch:
        batch.drop_column("sales_tax")
