"""The claim's index (issue 12): the open jobs (PENDING or RUNNING) in claim order, so that a claim reads
the first claimable job from an index instead of scanning and sorting the whole queue (100,000 pending
jobs cost a claim over a second).

Partial: finished jobs, most of the table over time, are never claimed and stay out of it. On PostgreSQL the
ids are in the "C" collation, as the claim orders them (adapters.persistence.sqlalchemy.jobs), so that the
index's order is the claim's; SQLite's BINARY collation is that order already. On SQLite the predicate reads
`+state`: the claim tests its job's state so (see jobs.py), and SQLite uses a partial index only for a
query whose WHERE has the index's own terms.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_sync_jobs_claim_order"
OPEN = "state IN ('PENDING', 'RUNNING')"
SQLITE_OPEN = "+state IN ('PENDING', 'RUNNING')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f'CREATE INDEX {INDEX} ON sync_jobs (create_time, job_id COLLATE "C", tenant_id COLLATE "C") WHERE {OPEN}'
        )
    else:
        op.execute(f"CREATE INDEX {INDEX} ON sync_jobs (create_time, job_id, tenant_id) WHERE {SQLITE_OPEN}")


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
