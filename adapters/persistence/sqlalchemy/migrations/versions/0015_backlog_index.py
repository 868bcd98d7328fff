"""The due backlog's index (issue 12): the PENDING jobs by (next_attempt_time, create_time), so that the
queue gauges (/metrics) and the database probe (/readyz, gRPC health) read the due backlog from a narrow
index: the count over it alone, the oldest due job from its first entries. Before, each read every PENDING
row of the table (100,000 pending jobs: about half a second per scrape, per probe).

Partial: only PENDING jobs, so finished jobs (most of the table over time) neither grow it nor cost its
upkeep. The query names the state as a literal (adapters.persistence.sqlalchemy.jobs): a partial index
serves only a plan that knows the query's WHERE says what its own says.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_sync_jobs_due_backlog"


def upgrade() -> None:
    op.execute(f"CREATE INDEX {INDEX} ON sync_jobs (next_attempt_time, create_time) WHERE state = 'PENDING'")


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
