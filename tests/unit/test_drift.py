"""SPEC §11 drift: a sweep of QuickBooks' Change Data Capture finds the records qbsync wrote that someone else
edited, voided or deleted in QuickBooks (the in-memory core and the fake QuickBooks)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.accounting import ChangedEntity, ChangedRecord, RecordStatus
from core.domain import (
    Customer,
    DriftChange,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    SyncJob,
    SyncJobState,
    SyncRecord,
    SyncState,
)
from core.drift import DriftSweep
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
P1 = EntityRef(EntityType.PAYMENT, "p1")


def payment(payment_id: str, amount: str) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, f"ref-{payment_id}", ())


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.qbo().now = h.clock.now  # QuickBooks' LastUpdatedTime on the harness's clock
    return h


def sweep(h: Harness) -> DriftSweep:
    return DriftSweep(h.uow_factory, h.companies, h.clock)


def run(h: Harness, job: SyncJob) -> SyncJob:
    h.worker.drain()
    done = h.service.get_job(h.principal(), job.name)
    assert done.state is SyncJobState.SUCCEEDED, done.error
    return done


def record(h: Harness, entity: EntityRef) -> SyncRecord:
    with h.uow_factory.read_only() as uow:
        found = uow.sync_records.get("acme", entity)
    assert found is not None
    return found


def synced_payment(h: Harness) -> str:
    run(h, h.service.sync_payment(h.principal(), OPP, payment("p1", "500.00")))
    quickbooks_id = record(h, P1).quickbooks_id
    assert quickbooks_id is not None
    return quickbooks_id


def test_qbsyncs_own_writes_are_never_drift(h: Harness) -> None:
    synced_payment(h)
    run(h, h.service.sync_payment(h.principal(), OPP, payment("p1", "450.00")))  # an update, by qbsync
    assert sweep(h).sweep("acme") == []
    assert record(h, P1).state is SyncState.SYNCED
    assert sweep(h).list("acme", offset=0, limit=10) == []


def test_an_amount_edited_in_quickbooks_is_drift_naming_the_total(h: Harness) -> None:
    quickbooks_id = synced_payment(h)
    h.qbo().edit_in_quickbooks(quickbooks_id, total=D("499.00"))
    found = sweep(h).sweep("acme")
    assert [(d.entity, d.quickbooks_id, d.change, d.fields) for d in found] == [
        (P1, quickbooks_id, DriftChange.EDITED, ("TotalAmt",))
    ]
    assert record(h, P1).state is SyncState.DRIFTED
    assert [d.entity for d in sweep(h).list("acme", offset=0, limit=10)] == [P1]


def test_an_edit_leaving_what_qbsync_wrote_is_not_drift(h: Harness) -> None:
    quickbooks_id = synced_payment(h)
    h.qbo().edit_in_quickbooks(quickbooks_id)  # a memo, say: the SyncToken moves, the total does not
    assert sweep(h).sweep("acme") == []
    assert record(h, P1).state is SyncState.SYNCED


def test_a_delete_and_a_void_in_quickbooks_are_drift(h: Harness) -> None:
    deleted = synced_payment(h)
    run(h, h.service.sync_payment(h.principal(), OPP, payment("p2", "20.00")))
    voided = record(h, EntityRef(EntityType.PAYMENT, "p2")).quickbooks_id
    assert voided is not None
    h.qbo().delete(deleted)
    h.qbo().void_in_quickbooks(voided)
    found = {d.quickbooks_id: d.change for d in sweep(h).sweep("acme")}
    assert found == {deleted: DriftChange.DELETED, voided: DriftChange.VOIDED}


def test_a_void_through_qbsync_is_not_drift(h: Harness) -> None:
    synced_payment(h)
    run(h, h.service.void_payment(h.principal(), "p1"))
    assert sweep(h).sweep("acme") == []
    assert record(h, P1).state is SyncState.VOIDED


def test_the_same_change_seen_twice_is_one_drift(h: Harness) -> None:
    quickbooks_id = synced_payment(h)
    h.qbo().edit_in_quickbooks(quickbooks_id, total=D("1.00"))
    first = sweep(h).sweep("acme")
    assert len(first) == 1
    change = ChangedRecord(
        ChangedEntity.PAYMENT, quickbooks_id, first[0].sync_token, RecordStatus.LIVE, T, D("1.00"), ""
    )
    with h.uow_factory() as uow:
        again = sweep(h).record(uow, "acme", "", [change, change])
        uow.commit()
    assert again == []
    assert sweep(h).sweep("acme") == []
    drifts = sweep(h).list("acme", offset=0, limit=10)
    assert [(d.entity, d.detected_time) for d in drifts] == [(P1, first[0].detected_time)]


def test_a_sweep_reads_from_the_watermark_of_the_last(h: Harness) -> None:
    synced_payment(h)
    sweep(h).sweep("acme")
    with h.uow_factory.read_only() as uow:
        mark = uow.drift.watermark("acme")
    assert mark is not None
    later = h.qbo().changed_since(list(ChangedEntity), mark)
    assert later == []
