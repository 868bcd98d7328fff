"""The oldest new job's index, on PostgreSQL only (issue 12): the creation times of the PENDING jobs never
tried yet (next_attempt_time NULL), so that the due backlog's oldest new job (jobs.due_backlog, read by every
/metrics scrape and /readyz probe) is this index's first entry.

Without it PostgreSQL's min(create_time) walks the claim index (0013) in creation order and filters out the
RUNNING jobs and the retries scheduled later on its way: with 100,000 open jobs of which the 70,000 oldest were
such, 70,000 rows removed by the filter and 4,326 buffers, 74 ms a scrape. It cannot start from 0015's index
(next_attempt_time, create_time): its planner does not take `IS NULL` on the first column as a fixed value, so
that index is not in create_time order to it. SQLite's planner does (IS NULL is an equality there), and reads
the oldest new job from 0015's index already, so SQLite does not pay this index's upkeep on every enqueue.

Partial, as 0015's: finished, running and retried jobs stay out of it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_sync_jobs_oldest_new"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE INDEX {INDEX} ON sync_jobs (create_time) WHERE state = 'PENDING' AND next_attempt_time IS NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX {INDEX}")
