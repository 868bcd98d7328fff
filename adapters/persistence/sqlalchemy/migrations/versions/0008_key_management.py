"""API key management (SPEC.md section 12): when a key expires, when it was revoked, when it was last used.

Plain SQLAlchemy types, as in 0001: UtcDateTime is DateTime(timezone=True). All three are nullable and no
existing row changes: the keys issued so far never expire, are not revoked and have no recorded use.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("expires_at", "revoked_at", "last_used_at")


def upgrade() -> None:
    # batch_alter_table: SQLite alters a table by copying it; on PostgreSQL these are plain ALTER TABLEs.
    with op.batch_alter_table("api_keys") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
