"""R8's state transitions, as `SyncRecord` states them once for the service, the worker and the engine."""

from __future__ import annotations

from datetime import UTC, datetime

from core.domain import EntityRef, EntityType, SyncRecord, SyncState

EARLIER = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


def failed_record() -> SyncRecord:
    """A record synced once, whose latest sync failed."""
    return SyncRecord(
        "t1",
        EntityRef(EntityType.PAYMENT, "P1"),
        state=SyncState.FAILED,
        last_synced_time=EARLIER,
        last_error="the accounting period is closed",
    )


def test_a_new_request_is_pending_and_clears_the_last_error() -> None:
    record = failed_record()
    record.mark_pending()
    assert record.state is SyncState.PENDING
    assert record.last_error == ""
    assert record.last_synced_time == EARLIER  # still synced before: resync stays offered
    assert record.resync_available


def test_a_retry_of_a_failed_job_is_pending_and_keeps_the_error_until_it_runs() -> None:
    record = failed_record()
    record.mark_pending(keep_error=True)
    assert record.state is SyncState.PENDING
    assert record.last_error == "the accounting period is closed"


def test_synced_records_the_time_and_forgets_the_error() -> None:
    record = failed_record()
    record.mark_synced(NOW)
    assert record.state is SyncState.SYNCED
    assert record.last_synced_time == NOW
    assert record.last_error == ""


def test_a_scheduled_retry_stays_pending_and_shows_why_the_attempt_failed() -> None:
    record = SyncRecord("t1", EntityRef(EntityType.INVOICE, "J1"))
    record.mark_retrying("QuickBooks could not be reached")
    assert record.state is SyncState.PENDING
    assert record.last_error == "QuickBooks could not be reached"
    assert record.last_synced_time is None
    assert not record.resync_available


def test_failed_shows_the_error_and_keeps_the_last_successful_sync() -> None:
    record = SyncRecord("t1", EntityRef(EntityType.INVOICE, "J1"), state=SyncState.SYNCED, last_synced_time=EARLIER)
    record.mark_failed("the customer is inactive")
    assert record.state is SyncState.FAILED
    assert record.last_error == "the customer is inactive"
    assert record.last_synced_time == EARLIER
