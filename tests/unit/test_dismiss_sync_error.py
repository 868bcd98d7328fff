"""DismissSyncError: a FAILED job leaves the sync errors list, keeps its history and can still be retried;
and the recent jobs the console shows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import Fault
from core.domain import (
    AuditKind,
    Customer,
    Opportunity,
    Payment,
    PaymentMethod,
    Permission,
    SyncJob,
    SyncJobState,
)
from core.errors import FailedPreconditionError, NotFoundError, PermissionDeniedError, ValidationError
from tests.unit.support import Harness

T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))


def failed_job(h: Harness, payment_id: str = "p1") -> SyncJob:
    h.qbo().inject(*[Fault.UNAVAILABLE] * 8)
    job = h.service.sync_payment(h.principal(), OPP, Payment(payment_id, Decimal(100), PaymentMethod.CASH, T))
    h.worker.drain()
    assert h.service.get_job(h.principal(), job.name).state is SyncJobState.FAILED
    return job


def errors(h: Harness) -> list[str]:
    jobs, _ = h.service.list_errors(h.principal(), 0, "")
    return [job.name for job in jobs]


def test_a_dismissed_job_leaves_the_errors_and_keeps_its_history() -> None:
    h = Harness()
    first, second = failed_job(h, "p1"), failed_job(h, "p2")
    assert errors(h) == [second.name, first.name]

    dismissed = h.service.dismiss(h.principal(), first.name)

    assert dismissed.dismiss_time is not None and dismissed.state is SyncJobState.FAILED
    assert errors(h) == [second.name]
    kept = h.service.get_job(h.principal(), first.name)
    assert (kept.state, kept.attempts, kept.dismiss_time) == (SyncJobState.FAILED, 8, dismissed.dismiss_time)
    assert kept.error is not None
    with h.uow_factory() as uow:
        newest = uow.audit.list("acme", limit=1)[0]
    assert (newest.kind, newest.job_id) == (AuditKind.SYNC_ERROR_DISMISSED, first.job_id)


def test_dismissing_twice_keeps_the_first_dismissal() -> None:
    h = Harness()
    job = failed_job(h)
    once = h.service.dismiss(h.principal(), job.name)
    again = h.service.dismiss(h.principal(), job.name)
    assert again.dismiss_time == once.dismiss_time
    with h.uow_factory() as uow:
        kinds = [e.kind for e in uow.audit.list("acme", limit=100)]
    assert kinds.count(AuditKind.SYNC_ERROR_DISMISSED) == 1


def test_a_dismissed_job_can_be_retried_and_is_an_error_again_if_it_fails_again() -> None:
    h = Harness()
    job = failed_job(h)
    h.service.dismiss(h.principal(), job.name)

    retried = h.service.retry(h.principal(), job.name)
    assert (retried.state, retried.dismiss_time) == (SyncJobState.PENDING, None)
    h.qbo().inject(*[Fault.UNAVAILABLE] * 8)
    h.worker.drain()
    assert errors(h) == [job.name]


def test_only_a_failed_job_can_be_dismissed() -> None:
    h = Harness()
    job = h.service.sync_payment(h.principal(), OPP, Payment("p1", Decimal(100), PaymentMethod.CASH, T))
    with pytest.raises(FailedPreconditionError, match="only a FAILED job can be dismissed") as pending:
        h.service.dismiss(h.principal(), job.name)
    assert pending.value.metadata == {"state": "PENDING"}
    h.worker.drain()
    with pytest.raises(FailedPreconditionError) as succeeded:
        h.service.dismiss(h.principal(), job.name)
    assert succeeded.value.metadata == {"state": "SUCCEEDED"}


def test_dismiss_needs_the_sync_permission_a_known_job_and_a_job_name() -> None:
    h = Harness()
    job = failed_job(h)
    reader = h.principal(permissions=frozenset({Permission.READ}))
    with pytest.raises(PermissionDeniedError):
        h.service.dismiss(reader, job.name)
    with pytest.raises(NotFoundError):
        h.service.dismiss(h.principal(), "syncJobs/nope")
    with pytest.raises(NotFoundError):
        h.service.dismiss(h.principal("other"), job.name)  # another tenant's job is not found
    with pytest.raises(ValidationError) as bad:
        h.service.dismiss(h.principal(), "jobs/1")
    assert [v.field for v in bad.value.violations] == ["name"]
    assert errors(h) == [job.name]


def test_recent_jobs_are_newest_first_in_any_state_and_limited() -> None:
    h = Harness()
    failed = failed_job(h, "p1")
    ok = h.service.sync_payment(h.principal(), OPP, Payment("p2", Decimal(5), PaymentMethod.CASH, T))
    h.worker.drain()
    pending = h.service.sync_payment(h.principal(), OPP, Payment("p3", Decimal(6), PaymentMethod.CASH, T))
    h.service.dismiss(h.principal(), failed.name)  # dismissed jobs stay in the recent jobs

    recent = h.service.recent_jobs(h.principal(), 10)
    assert [(j.name, j.state) for j in recent] == [
        (failed.name, SyncJobState.FAILED),
        (pending.name, SyncJobState.PENDING),
        (ok.name, SyncJobState.SUCCEEDED),
    ]
    assert [j.name for j in h.service.recent_jobs(h.principal(), 2)] == [failed.name, pending.name]
    assert h.service.recent_jobs(h.principal("other"), 10) == []
    with pytest.raises(ValidationError) as bad:
        h.service.recent_jobs(h.principal(), 0)
    assert [v.field for v in bad.value.violations] == ["limit"]
