"""The claim rule itself (core/claim_rule.py), at its edges: what the persistence contract holds every
backend to must first be what SPEC's R7 needs (nothing lost, one writer per customer and identity)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.claim_rule import blocks, claimed, holds_lease, is_due, next_to_claim
from core.domain import EntityRef, EntityType, SyncJob, SyncJobKind, SyncJobState

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def _job(job_id: str, tenant_id: str = "t1", customer_id: str = "c1", **changes: object) -> SyncJob:
    job = SyncJob(
        job_id=job_id,
        tenant_id=tenant_id,
        kind=SyncJobKind.SYNC_PAYMENT,
        target=EntityRef(EntityType.PAYMENT, f"P-{job_id}"),
        opportunity_id="O1",
        customer_id=customer_id,
        create_time=NOW,
        update_time=NOW,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


def _running(job_id: str, lease_expires: datetime | None, customer_id: str = "c1", identity_key: str = "") -> SyncJob:
    return _job(
        job_id,
        customer_id=customer_id,
        state=SyncJobState.RUNNING,
        claimed_by="w0",
        lease_expires=lease_expires,
        identity_key=identity_key,
    )


def test_a_pending_job_is_due_from_its_next_attempt_time_on() -> None:
    assert is_due(_job("j"), NOW)
    assert is_due(_job("j", next_attempt_time=NOW), NOW)
    assert not is_due(_job("j", next_attempt_time=NOW + US), NOW)


def test_a_running_job_is_due_again_only_once_its_lease_ran_out() -> None:
    assert not is_due(_running("j", NOW), NOW) and holds_lease(_running("j", NOW), NOW)
    assert is_due(_running("j", NOW - US), NOW) and not holds_lease(_running("j", NOW - US), NOW)
    assert is_due(_running("j", None), NOW) and not holds_lease(_running("j", None), NOW)


def test_finished_jobs_are_never_due() -> None:
    for state in (SyncJobState.SUCCEEDED, SyncJobState.FAILED):
        assert not is_due(_job("j", state=state), NOW)
        assert next_to_claim([_job("j", state=state)], NOW) is None


def test_a_lease_holder_blocks_its_lock_key_and_its_non_empty_identity_key() -> None:
    holder = _running("h", NOW, identity_key="t1/identity/x")
    assert blocks(holder, _job("j"))  # same customer, same lock_key
    assert blocks(holder, _job("j", customer_id="c2", identity_key="t1/identity/x"))
    assert not blocks(holder, _job("j", customer_id="c2"))
    assert not blocks(_running("h", NOW), _job("j", customer_id="c2"))  # "" never matches ""
    assert not blocks(holder, _job("j", tenant_id="t2"))  # lock_key names the tenant
    assert not blocks(holder, holder)


def test_the_next_claim_is_the_oldest_free_due_job() -> None:
    older = _job("b", customer_id="c2", create_time=NOW - US)
    table = [
        _running("h", NOW),
        _job("a", create_time=NOW - 2 * US),  # oldest, but blocked by h
        _job("c", customer_id="c3"),
        older,
    ]
    assert next_to_claim(table, NOW) == older
    assert next_to_claim([*table[:3], _running("h2", NOW, customer_id="c2")], NOW) == table[2]


def test_ties_fall_through_to_job_id_then_tenant_id_by_code_point() -> None:
    table = [_job("j0", "t1", "c1"), _job("J2", "t2", "c2"), _job("J2", "T1", "c3")]
    assert next_to_claim(table, NOW) == table[2]


def test_a_claim_runs_the_job_for_the_worker_and_counts_an_attempt() -> None:
    job = _job("j", attempts=2, next_attempt_time=NOW)
    taken = claimed(job, "w1", NOW, NOW + timedelta(minutes=5))
    assert taken == replace(
        job,
        state=SyncJobState.RUNNING,
        claimed_by="w1",
        lease_expires=NOW + timedelta(minutes=5),
        attempts=3,
        update_time=NOW,
    )
    assert job.state is SyncJobState.PENDING  # a new value
