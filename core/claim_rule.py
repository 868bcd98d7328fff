"""Which sync job a worker may claim next: the claim rule, stated once.

Workers take jobs from one shared queue. The rule has to give two guarantees at once (R7): nothing
accepted is lost (a job whose worker died is taken again once its lease runs out), and nothing runs
twice at once (one writer per customer and its records, and per customer identity in QuickBooks, so two
CRM customers with one name and email cannot both find no QuickBooks customer and both create one).

- **Due.** A PENDING job is due once its `next_attempt_time` has come (`<=`: at that very instant), or
  at once when it has none. A RUNNING job is due again only once its lease has run out (`<`: at the
  lease's last instant it is still held), or when it has no lease at all (a claim always sets one, so
  such a job can only come from a bug or a manual edit, and leaving it stuck forever would lose it).
  Jobs in any other state are done and never claimed.
- **Blocked.** A job holding a lease (RUNNING, lease not yet run out) blocks every other job with the
  same `lock_key`, and every other job with the same non-empty `identity_key` (an empty one, from jobs
  accepted before qbsync recorded identities, blocks nothing).
- **Next.** The next claim is the first due, unblocked job in claim order: oldest `create_time`, then
  `job_id`, then `tenant_id`, so the order is total and every backend picks the same job.
- **Claimed.** Claiming makes the job RUNNING for the worker until the new lease expires, and counts
  one more attempt.

This module is the domain statement. The in-memory fake applies it directly; the SQL adapter
(`adapters/persistence/sqlalchemy/jobs.py`) writes the same rule as one atomic statement, and the
persistence contract suite (`tests/integration/persistence/test_claim_rule_contract.py`) proves every
backend picks what `next_to_claim` picks. Pure functions over `SyncJob` values: the claim's atomicity
(no two workers take the same job, or two blocking jobs) is the repository's part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from core.domain import SyncJob, SyncJobState


def is_due(job: SyncJob, now: datetime) -> bool:
    """PENDING and its time has come, or RUNNING under a lease that has run out (or no lease)."""
    if job.state is SyncJobState.PENDING:
        return job.next_attempt_time is None or job.next_attempt_time <= now
    if job.state is SyncJobState.RUNNING:
        return job.lease_expires is None or job.lease_expires < now
    return False


def holds_lease(job: SyncJob, now: datetime) -> bool:
    """RUNNING under a lease that has not run out: this job's worker may still be writing.

    Exactly the complement of an expired lease among RUNNING jobs, so a job is never both due and
    holding its lease, and at no instant do two workers both own it.
    """
    return job.state is SyncJobState.RUNNING and job.lease_expires is not None and job.lease_expires >= now


def blocks(holder: SyncJob, job: SyncJob) -> bool:
    """Whether `holder`, were it holding a lease, keeps `job` from being claimed: another job with the
    same lock_key, or the same non-empty identity_key."""
    if (holder.tenant_id, holder.job_id) == (job.tenant_id, job.job_id):
        return False
    same_identity = bool(job.identity_key) and holder.identity_key == job.identity_key
    return holder.lock_key == job.lock_key or same_identity


def claim_order(job: SyncJob) -> tuple[datetime, str, str]:
    """The queue's order: oldest first, ties broken by job_id then tenant_id (a total order)."""
    return (job.create_time, job.job_id, job.tenant_id)


def claimable(jobs: Iterable[SyncJob], now: datetime) -> list[SyncJob]:
    """Every job a worker may claim at `now`, in claim order: due, and blocked by no lease holder."""
    table = list(jobs)
    holders = [job for job in table if holds_lease(job, now)]
    free = (job for job in table if is_due(job, now) and not any(blocks(holder, job) for holder in holders))
    return sorted(free, key=claim_order)


def next_to_claim(jobs: Iterable[SyncJob], now: datetime) -> SyncJob | None:
    """The job the next claim at `now` takes from the table `jobs`, or None when none may be claimed."""
    candidates = claimable(jobs, now)
    return candidates[0] if candidates else None


def claimed(job: SyncJob, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob:
    """The job as a claim by `worker_id` at `now` leaves it: RUNNING under a lease until `lease_expires`,
    one more attempt. A new value; `job` is unchanged."""
    return dataclasses.replace(
        job,
        state=SyncJobState.RUNNING,
        claimed_by=worker_id,
        lease_expires=lease_expires,
        attempts=job.attempts + 1,
        update_time=now,
        taken_over=job.state is SyncJobState.RUNNING,
    )
