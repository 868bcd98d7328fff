"""One contract for every persistence backend: the in-memory fake, SQLite and PostgreSQL must agree."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from persistence_builders import T0, Backend, at, crm_job, opportunity, payment, refund, sync_job

from core.domain import (
    ApiKey,
    AuditEvent,
    AuditKind,
    Discount,
    EntityRef,
    EntityType,
    JobError,
    Permission,
    StoredJob,
    StoredPayment,
    SyncAction,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
    SyncResult,
    SyncState,
)
from core.ports import RequestIdTakenError

PAYMENT_REF = EntityRef(EntityType.PAYMENT, "P1")


# --- transactions -------------------------------------------------------------------------------


def test_committed_changes_are_visible_to_later_units_of_work(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.snapshots.save_opportunity("t1", opportunity())
        uow.jobs.add(sync_job("j1"))
        uow.commit()

    with backend.uow() as uow:
        assert uow.tenants.exists("t1")
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity()
        assert uow.jobs.get("t1", "j1") is not None


def test_uncommitted_changes_are_invisible_to_others_and_discarded(backend: Backend) -> None:
    seen_by_other: list[object] = []

    def other_reader() -> None:
        with backend.uow() as other:
            seen_by_other.extend(
                [
                    other.tenants.exists("t1"),
                    other.snapshots.get_opportunity("t1", "O1"),
                    other.jobs.get("t1", "j1"),
                    other.sync_records.get("t1", PAYMENT_REF),
                    other.audit.list("t1", limit=10),
                ]
            )

    reader = threading.Thread(target=other_reader)
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.snapshots.save_opportunity("t1", opportunity())
        uow.jobs.add(sync_job("j1"))
        uow.sync_records.save(SyncRecord("t1", PAYMENT_REF))
        uow.audit.append(AuditEvent("t1", T0, AuditKind.SYNC_PAYMENT_ACCEPTED, None, "j1", "queued"))
        # Our own writes are visible inside the transaction...
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity()
        assert uow.jobs.get("t1", "j1") is not None
        # ...but not to another transaction. (On SQLite the reader waits for our write lock, so it
        # runs after the rollback below; elsewhere it runs now. Either way it must see nothing.)
        reader.start()
        reader.join(timeout=0.5)
        # leaving the block without commit() rolls back
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert seen_by_other == [False, None, None, None, []]

    with backend.uow() as uow:
        assert not uow.tenants.exists("t1")
        assert uow.snapshots.get_opportunity("t1", "O1") is None
        assert uow.jobs.get("t1", "j1") is None
        assert uow.sync_records.get("t1", PAYMENT_REF) is None
        assert uow.audit.list("t1", limit=10) == []


def test_rollback_discards_only_what_was_not_committed(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_opportunity("t1", opportunity(first_name="Ann"))
        uow.commit()
        uow.snapshots.save_opportunity("t1", opportunity(first_name="Bob"))
        uow.jobs.add(sync_job("j1"))
        uow.rollback()
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity(first_name="Ann")
        assert uow.jobs.get("t1", "j1") is None
        uow.commit()  # nothing left to commit

    with backend.uow() as uow:
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity(first_name="Ann")
        assert uow.jobs.get("t1", "j1") is None


def test_an_exception_in_the_block_rolls_back(backend: Backend) -> None:
    with pytest.raises(RuntimeError), backend.uow() as uow:
        uow.tenants.ensure("t1")
        raise RuntimeError("boom")
    with backend.uow() as uow:
        assert not uow.tenants.exists("t1")


# --- exact values -----------------------------------------------------------------------------------


def test_money_round_trips_as_exact_decimals(backend: Backend) -> None:
    stored_payment = payment(amount="1234567.89", refunds=(refund("R1", "0.10"), refund("R2", "0.01")))
    record = SyncRecord(
        "t1", PAYMENT_REF, amount=Decimal("1234567.89"), applied={"J1": Decimal("0.10"), "J2": Decimal("3")}
    )
    with backend.uow() as uow:
        uow.snapshots.save_payment("t1", "O1", stored_payment)
        uow.snapshots.save_job("t1", "O1", crm_job(), None)
        uow.sync_records.save(record)
        uow.commit()

    with backend.uow() as uow:
        got = uow.snapshots.get_payment("t1", "P1")
        got_record = uow.sync_records.get("t1", PAYMENT_REF)
        got_job = uow.snapshots.get_job("t1", "J1")
    assert got is not None and got_record is not None and got_job is not None
    got_payment = got.payment
    assert got_payment == stored_payment
    # Same value *and* same digits: no float ever got in the way.
    assert str(got_payment.amount) == "1234567.89"
    assert [str(r.amount) for r in got_payment.refunds] == ["0.10", "0.01"]
    assert str(got_record.amount) == "1234567.89"
    assert {k: str(v) for k, v in got_record.applied.items()} == {"J1": "0.10", "J2": "3"}
    assert got_job.job == crm_job()
    assert [str(line.quantity) for line in got_job.job.lines] == ["3.5", "1"]
    assert all(isinstance(v, Decimal) for v in got_record.applied.values())


def test_tax_discounts_tips_surcharges_and_fees_round_trip_exactly(backend: Backend) -> None:
    """SPEC §8's fields, with the digits they were sent with ("12.50" stays "12.50")."""
    base = crm_job("J1")
    charged = replace(
        base,
        lines=(replace(base.lines[0], taxable=True), base.lines[1]),
        tax=Decimal("37.80"),
        tax_rate_name="WA Seattle 9%",
        discounts=(
            Discount("Spring move", percent=Decimal("12.50"), after_tax=True),
            Discount("Coupon", amount=Decimal("10.00"), after_tax=True),
        ),
        tip=Decimal("20.00"),
        surcharge=Decimal("0.01"),
        stated_total=Decimal("415.36"),
    )
    plain = crm_job("J2")  # no charges: stated_total stays None, not zero
    tipped = replace(payment("P1", amount="500.00"), tip=Decimal("20.00"), processing_fee=Decimal("14.80"))
    with backend.uow() as uow:
        uow.snapshots.save_job("t1", "O1", charged, at(1))
        uow.snapshots.save_job("t1", "O1", plain, None)
        uow.snapshots.save_payment("t1", "O1", tipped)
        uow.commit()
    with backend.uow() as uow:
        got_charged, got_plain = uow.snapshots.get_job("t1", "J1"), uow.snapshots.get_job("t1", "J2")
        got_payment = uow.snapshots.get_payment("t1", "P1")
        closed = uow.snapshots.closed_jobs_of("t1", "O1")
    assert got_charged == StoredJob("O1", charged, at(1)) and [c.job for c in closed] == [charged]
    assert got_plain is not None and got_plain.job == plain and got_plain.job.stated_total is None
    assert [line.taxable for line in got_charged.job.lines] == [True, False]
    assert [str(d.percent) for d in got_charged.job.discounts] == ["12.50", "None"]
    assert [d.amount for d in got_charged.job.discounts] == [None, Decimal("10.00")]
    assert str(got_charged.job.stated_total) == "415.36" and str(got_charged.job.surcharge) == "0.01"
    assert got_payment is not None and got_payment.payment == tipped
    assert (str(got_payment.payment.tip), str(got_payment.payment.processing_fee)) == ("20.00", "14.80")


def test_datetimes_round_trip_timezone_aware(backend: Backend) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 30, 23, 59, 58, 999999, tzinfo=plus_two)
    job = replace(sync_job("j1", created=local), next_attempt_time=local + timedelta(days=1))
    with backend.uow() as uow:
        uow.jobs.add(job)
        uow.snapshots.save_job("t1", "O1", crm_job(), local)
        uow.sync_records.save(SyncRecord("t1", PAYMENT_REF, last_synced_time=local))
        uow.commit()

    with backend.uow() as uow:
        got_job = uow.jobs.get("t1", "j1")
        got_crm = uow.snapshots.get_job("t1", "J1")
        got_record = uow.sync_records.get("t1", PAYMENT_REF)
    assert got_job is not None and got_crm is not None and got_record is not None
    for value in (got_job.create_time, got_job.next_attempt_time, got_crm.closed_time, got_record.last_synced_time):
        assert value is not None
        assert value.utcoffset() is not None, "came back naive"
    assert got_job.create_time == local
    assert got_job.next_attempt_time == local + timedelta(days=1)
    assert got_crm.closed_time == local
    assert got_record.last_synced_time == local
    assert got_job.create_time.astimezone(UTC) == datetime(2025, 6, 30, 21, 59, 58, 999999, tzinfo=UTC)


# --- snapshots ------------------------------------------------------------------------------------


def test_opportunity_is_replaced_by_the_newest_and_kept_per_tenant(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_opportunity("t1", opportunity(first_name="Ann"))
        uow.snapshots.save_opportunity("t1", opportunity(first_name="Annie"))
        uow.snapshots.save_opportunity("t2", opportunity(first_name="Zed"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity(first_name="Annie")
        assert uow.snapshots.get_opportunity("t2", "O1") == opportunity(first_name="Zed")
        assert uow.snapshots.get_opportunity("t3", "O1") is None


def test_an_opportunity_is_saved_only_under_its_own_customer(backend: Backend) -> None:
    with backend.uow() as uow:
        assert uow.snapshots.save_opportunity_of_its_customer("t1", opportunity(first_name="Ann")) is None
        uow.commit()
    with backend.uow() as uow:
        # The same customer's opportunity is replaced by the newest...
        assert uow.snapshots.save_opportunity_of_its_customer("t1", opportunity(first_name="Annie")) is None
        # ...another customer's is refused, the stored one kept: its customer is named.
        assert uow.snapshots.save_opportunity_of_its_customer("t1", opportunity(customer_id="C2")) == "C1"
        # Per tenant: another tenant's opportunity of the same id belongs to nobody here.
        assert uow.snapshots.save_opportunity_of_its_customer("t2", opportunity(customer_id="C2")) is None
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_opportunity("t1", "O1") == opportunity(first_name="Annie")
        assert uow.snapshots.get_opportunity("t2", "O1") == opportunity(customer_id="C2")


def test_payments_with_refunds_and_the_refund_to_payment_map(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_payment("t1", "O1", payment("P1", refunds=(refund("R1"), refund("R2"))))
        uow.snapshots.save_payment("t2", "O1", payment("P9", refunds=(refund("R1"),)))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.payment_of_refund("t1", "R1") == "P1"
        assert uow.snapshots.payment_of_refund("t1", "R2") == "P1"
        assert uow.snapshots.payment_of_refund("t2", "R1") == "P9"
        assert uow.snapshots.payment_of_refund("t1", "R3") is None
        got = uow.snapshots.get_payment("t1", "P1")
        assert got is not None and got.opportunity_id == "O1"
        assert [r.refund_id for r in got.payment.refunds] == ["R1", "R2"]

        # A newer version replaces the stored payment, refunds and all (and may move opportunity).
        newer = payment("P1", amount="50.00", refunds=(refund("R2", "5.00"), refund("R3", "1.00")))
        uow.snapshots.save_payment("t1", "O2", newer)
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_payment("t1", "P1") == StoredPayment("O2", newer)
        assert uow.snapshots.payment_of_refund("t1", "R1") is None
        assert uow.snapshots.payment_of_refund("t1", "R3") == "P1"
        assert uow.snapshots.payment_of_refund("t2", "R1") == "P9"
        assert uow.snapshots.get_payment("t2", "P1") is None

        # A refund id seen last on another payment moves to it; one repeated counts once.
        uow.snapshots.save_payment("t1", "O2", payment("P2", refunds=(refund("R3"), refund("R3"))))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.payment_of_refund("t1", "R3") == "P2"
        assert uow.snapshots.payment_of_refund("t1", "R2") == "P1"
        uow.snapshots.save_payment("t1", "O2", payment("P2"))  # its refunds gone: none is mapped to it
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.payment_of_refund("t1", "R3") is None
        assert uow.snapshots.payment_of_refund("t1", "R2") == "P1"


def test_payments_of_lists_the_opportunitys_payments_oldest_first(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_payment("t1", "O1", payment("P3", received=at(10)))
        uow.snapshots.save_payment("t1", "O1", payment("P2", received=at(0)))
        uow.snapshots.save_payment("t1", "O1", payment("P1", received=at(10)))
        uow.snapshots.save_payment("t1", "O2", payment("P0", received=at(-5)))
        uow.snapshots.save_payment("t2", "O1", payment("P4", received=at(-5)))
        uow.commit()
    with backend.uow() as uow:
        assert [p.payment_id for p in uow.snapshots.payments_of("t1", "O1")] == ["P2", "P1", "P3"]
        assert uow.snapshots.payments_of("t1", "O9") == []


def test_save_job_keeps_the_first_closed_time(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_job("t1", "O1", crm_job("J1"), None)
        assert uow.snapshots.get_job("t1", "J1") == StoredJob("O1", crm_job("J1"), None)
        uow.snapshots.save_job("t1", "O1", crm_job("J1"), at(5))
        uow.snapshots.save_job("t1", "O1", crm_job("J1", "Packing"), None)  # must not erase it
        uow.snapshots.save_job("t1", "O1", crm_job("J1", "Storage"), at(9))  # nor replace it
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_job("t1", "J1") == StoredJob("O1", crm_job("J1", "Storage"), at(5))
        assert uow.snapshots.get_job("t2", "J1") is None


def test_closed_jobs_of_lists_close_outs_oldest_first(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_job("t1", "O1", crm_job("J-a"), at(30))
        uow.snapshots.save_job("t1", "O1", crm_job("J-c"), at(10))
        uow.snapshots.save_job("t1", "O1", crm_job("J-b"), at(10))
        uow.snapshots.save_job("t1", "O1", crm_job("J-open"), None)
        uow.snapshots.save_job("t1", "O2", crm_job("J-other"), at(1))
        uow.snapshots.save_job("t2", "O1", crm_job("J-tenant2"), at(1))
        uow.commit()
    with backend.uow() as uow:
        closed = uow.snapshots.closed_jobs_of("t1", "O1")
    assert [(c.job.job_id, c.closed_time) for c in closed] == [("J-b", at(10)), ("J-c", at(10)), ("J-a", at(30))]
    assert all(c.opportunity_id == "O1" and c.job == crm_job(c.job.job_id) for c in closed)


def test_a_customers_opportunities_are_listed_with_their_newest_customer_details(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.tenants.ensure("t2")
        for opportunity_id, customer_id in (("O2", "C1"), ("O1", "C1"), ("O3", "C2")):
            uow.snapshots.save_opportunity("t1", opportunity(opportunity_id, customer_id))
        uow.snapshots.save_opportunity("t2", opportunity("O9", "C1"))
        uow.snapshots.save_opportunity("t1", opportunity("O2", "C1", first_name="Anna"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.opportunities_of_customer("t1", "C1") == [
            opportunity("O1", "C1"),
            opportunity("O2", "C1", first_name="Anna"),
        ]
        assert uow.snapshots.opportunities_of_customer("t1", "C9") == []
        # Every opportunity of the tenant (a reconciliation, SPEC §11): by id, the newest version, no other tenant's.
        assert uow.snapshots.list_opportunities("t1") == [
            opportunity("O1", "C1"),
            opportunity("O2", "C1", first_name="Anna"),
            opportunity("O3", "C2"),
        ]
        assert uow.snapshots.list_opportunities("t3") == []


# --- sync records, keys, tenants, audit ----------------------------------------------------------


def test_sync_records_are_inserted_replaced_and_kept_per_tenant_and_type(backend: Backend) -> None:
    bare = SyncRecord("t1", PAYMENT_REF)
    with backend.uow() as uow:
        uow.sync_records.save(bare)
        uow.commit()
    with backend.uow() as uow:
        assert uow.sync_records.get("t1", PAYMENT_REF) == bare  # None fields and empty applied too
        full = SyncRecord(
            "t1",
            PAYMENT_REF,
            state=SyncState.SYNCED,
            quickbooks_id="145",
            sync_token="3",
            quickbooks_type="Payment",
            generation=2,
            create_started=True,
            content_hash="abc",
            last_synced_time=at(1),
            last_error="",
            display_name="Ann Lee",
            amount=Decimal("99.99"),
            applied={"J1": Decimal("40.00")},
        )
        uow.sync_records.save(full)
        uow.sync_records.save(SyncRecord("t1", EntityRef(EntityType.REFUND, "P1"), last_error="nope"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.sync_records.get("t1", PAYMENT_REF) == full
        # Back to None/empty: a replace, not a merge.
        uow.sync_records.save(replace(full, quickbooks_id=None, sync_token=None, amount=None, applied={}))
        uow.commit()
    with backend.uow() as uow:
        got = uow.sync_records.get("t1", PAYMENT_REF)
        assert got is not None
        assert (got.quickbooks_id, got.sync_token, got.amount, got.applied) == (None, None, None, {})
        refund_record = uow.sync_records.get("t1", EntityRef(EntityType.REFUND, "P1"))
        assert refund_record is not None and refund_record.last_error == "nope"
        assert uow.sync_records.get("t2", PAYMENT_REF) is None


def test_sync_records_are_read_and_saved_many_at_once(backend: Backend) -> None:
    refund_ref = EntityRef(EntityType.REFUND, "R1")
    other_ref = EntityRef(EntityType.REFUND, "R2")
    synced = SyncRecord("t1", PAYMENT_REF, state=SyncState.SYNCED, quickbooks_id="7", amount=Decimal("10.05"))
    with backend.uow() as uow:
        uow.sync_records.save_many([synced, SyncRecord("t1", refund_ref, last_error="nope")])
        uow.sync_records.save(SyncRecord("t2", other_ref, quickbooks_id="other tenant's"))
        uow.commit()
    with backend.uow() as uow:
        # Only the tracked ones, by entity; another tenant's record of the same id is not this one's.
        got = uow.sync_records.get_many("t1", [refund_ref, PAYMENT_REF, other_ref])
        assert got == {PAYMENT_REF: synced, refund_ref: SyncRecord("t1", refund_ref, last_error="nope")}
        assert str(got[PAYMENT_REF].amount) == "10.05"
        assert uow.sync_records.get_many("t1", [other_ref]) == {}
        assert uow.sync_records.get_many("t1", []) == {}
        # save_many replaces, as save does, and inserts what is new.
        uow.sync_records.save_many(
            [replace(synced, state=SyncState.PENDING, quickbooks_id=None), SyncRecord("t1", other_ref)]
        )
        uow.commit()
    with backend.uow() as uow:
        got = uow.sync_records.get_many("t1", [PAYMENT_REF, refund_ref, other_ref])
        assert got[PAYMENT_REF] == replace(synced, state=SyncState.PENDING, quickbooks_id=None)
        assert got[other_ref] == SyncRecord("t1", other_ref)
        assert got[refund_ref].last_error == "nope"
        assert uow.sync_records.get("t2", other_ref) == SyncRecord("t2", other_ref, quickbooks_id="other tenant's")


def test_api_keys_are_found_by_hash(backend: Backend) -> None:
    key = ApiKey("k1", "t1", "hash-1", frozenset({Permission.SYNC, Permission.QUICKBOOKS_VIEW}), at(0))
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.api_keys.add(key)
        uow.api_keys.add(ApiKey("k2", "t1", "hash-2", frozenset(), at(1)))
        uow.commit()
    with backend.uow() as uow:
        assert uow.api_keys.get_by_hash("hash-1") == key
        got = uow.api_keys.get_by_hash("hash-2")
        assert got is not None and got.permissions == frozenset() and got.key_id == "k2"
        assert uow.api_keys.get_by_hash("hash-3") is None


def test_tenant_ensure_is_idempotent(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.tenants.ensure("t1")
        uow.commit()
    with backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.commit()
        assert uow.tenants.exists("t1")
        assert not uow.tenants.exists("t2")


def test_audit_lists_newest_first_per_tenant(backend: Backend) -> None:
    payment_ref = EntityRef(EntityType.PAYMENT, "P1")
    events = [
        AuditEvent("t1", at(1), AuditKind.SYNC_PAYMENT_ACCEPTED, payment_ref, "j1", "first"),
        AuditEvent("t1", at(3), AuditKind.SYNC_SUCCEEDED, None, "j1", "third"),
        AuditEvent("t1", at(2), AuditKind.SYNC_RETRY_SCHEDULED, payment_ref, "j1", "second"),
        AuditEvent("t1", at(3), AuditKind.QUICKBOOKS_SETTINGS_UPDATED, None, "", "fourth, same time, appended later"),
        AuditEvent("t2", at(9), AuditKind.SYNC_PAYMENT_ACCEPTED, None, "j9", "other tenant"),
    ]
    with backend.uow() as uow:
        for event in events:
            uow.audit.append(event)
        uow.commit()
    with backend.uow() as uow:
        assert [e.message for e in uow.audit.list("t1", limit=10)] == [
            "fourth, same time, appended later",
            "third",
            "second",
            "first",
        ]
        assert uow.audit.list("t1", limit=2) == [events[3], events[1]]
        assert uow.audit.list("t1", limit=10)[-1] == events[0]
        assert [e.message for e in uow.audit.list("t2", limit=10)] == ["other tenant"]


def test_every_audit_kind_round_trips(backend: Backend) -> None:
    events = [AuditEvent("t1", at(i), kind, None, "", kind.name) for i, kind in enumerate(AuditKind)]
    with backend.uow() as uow:
        for event in events:
            uow.audit.append(event)
        uow.commit()
    with backend.uow() as uow:
        assert uow.audit.list("t1", limit=100) == events[::-1]


# --- jobs ------------------------------------------------------------------------------------------


def test_jobs_round_trip_and_are_found_only_by_their_tenant(backend: Backend) -> None:
    job = replace(
        sync_job("j1", request_id="req-1"),
        state=SyncJobState.FAILED,
        resync=True,
        attempts=3,
        results=[SyncResult(EntityRef(EntityType.CUSTOMER, "C1"), "58", SyncAction.LINKED)],
        error=JobError("QUICKBOOKS_THROTTLED", "Try later", True, {"retry_after": "60"}),
        claimed_by="w1",
        lease_expires=at(5),
    )
    with backend.uow() as uow:
        uow.jobs.add(job)
        uow.commit()
    with backend.uow() as uow:
        assert uow.jobs.get("t1", "j1") == job
        assert uow.jobs.get("t2", "j1") is None
        assert uow.jobs.find_by_request_id("t1", "req-1") == job
        assert uow.jobs.find_by_request_id("t2", "req-1") is None
        assert uow.jobs.find_by_request_id("t1", "req-2") is None


def test_saved_job_changes_are_stored_and_returned_jobs_are_copies(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.jobs.add(sync_job("j1"))
        uow.commit()
    with backend.uow() as uow:
        job = uow.jobs.get("t1", "j1")
        assert job is not None
        job.state = SyncJobState.SUCCEEDED
        job.results.append(SyncResult(PAYMENT_REF, "7", SyncAction.CREATED))
        unsaved = uow.jobs.get("t1", "j1")
        assert unsaved is not None and unsaved.state is SyncJobState.PENDING and unsaved.results == []
        uow.jobs.save(job)
        job.attempts = 99  # after save: must not leak into the stored job
        uow.commit()
    with backend.uow() as uow:
        stored = uow.jobs.get("t1", "j1")
        assert stored is not None
        assert stored.state is SyncJobState.SUCCEEDED and stored.attempts == 0
        assert stored.results == [SyncResult(PAYMENT_REF, "7", SyncAction.CREATED)]


def test_a_taken_request_id_is_refused_within_a_tenant_only(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.jobs.add(sync_job("j1", request_id="req-1"))
        with pytest.raises(RequestIdTakenError):
            uow.jobs.add(sync_job("j2", request_id="req-1"))
        # The transaction is still usable after the refusal (the caller looks up the holder).
        holder = uow.jobs.find_by_request_id("t1", "req-1")
        assert holder is not None and holder.job_id == "j1"
        uow.jobs.add(sync_job("j3", tenant_id="t2", request_id="req-1"))
        uow.jobs.add(sync_job("j4"))  # no request_id: never a clash
        uow.jobs.add(sync_job("j5"))
        uow.commit()
    with backend.uow() as uow:
        with pytest.raises(RequestIdTakenError):
            uow.jobs.add(sync_job("j6", request_id="req-1"))
        assert uow.jobs.find_by_request_id("t1", "") is None
        uow.commit()
    with backend.uow() as uow:
        assert uow.jobs.get("t1", "j2") is None
        assert uow.jobs.get("t1", "j6") is None
        assert [uow.jobs.get(t, j) is not None for t, j in [("t2", "j3"), ("t1", "j4"), ("t1", "j5")]] == [
            True,
            True,
            True,
        ]


def test_a_job_is_added_with_its_accepted_event_and_a_refused_one_leaves_none(backend: Backend) -> None:
    def accepted(job_id: str) -> AuditEvent:
        return AuditEvent("t1", T0, AuditKind.accepted(SyncJobKind.SYNC_PAYMENT), PAYMENT_REF, job_id, "")

    with backend.uow() as uow:
        uow.jobs.add(sync_job("j1", request_id="req-1"), accepted=accepted("j1"))
        with pytest.raises(RequestIdTakenError):
            uow.jobs.add(sync_job("j2", request_id="req-1"), accepted=accepted("j2"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.jobs.get("t1", "j1") is not None and uow.jobs.get("t1", "j2") is None
        assert [(e.job_id, e.kind, e.entity, e.time) for e in uow.audit.list("t1", limit=10)] == [
            ("j1", AuditKind.accepted(SyncJobKind.SYNC_PAYMENT), PAYMENT_REF, T0)
        ]


@pytest.mark.parametrize("first_commits", [True, False], ids=["first-commits", "first-rolls-back"])
def test_a_request_id_added_by_an_open_transaction_waits_for_its_outcome(backend: Backend, first_commits: bool) -> None:
    """Two identical requests race: the second learns the first's outcome, never a half-state."""
    first_added = threading.Event()
    outcome: list[str] = []

    def second() -> None:
        first_added.wait()
        try:
            with backend.uow() as uow:
                uow.jobs.add(sync_job("j-second", request_id="req-1"))
                uow.commit()
            outcome.append("added")
        except RequestIdTakenError:
            with backend.uow() as uow:
                holder = uow.jobs.find_by_request_id("t1", "req-1")
            outcome.append(f"taken by {holder.job_id if holder else None}")

    racer = threading.Thread(target=second)
    racer.start()
    with backend.uow() as uow:
        uow.jobs.add(sync_job("j-first", request_id="req-1"))
        first_added.set()
        time.sleep(0.3)  # the second is now waiting for this transaction
        if first_commits:
            uow.commit()
    racer.join(timeout=30)
    assert outcome == (["taken by j-first"] if first_commits else ["added"])


def _add(backend: Backend, *jobs: SyncJob) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def _claim(backend: Backend, worker: str, now: datetime, lease_minutes: float = 5) -> str | None:
    with backend.uow() as uow:
        job = uow.jobs.claim_next(worker, now, now + timedelta(minutes=lease_minutes))
        uow.commit()
    return None if job is None else job.job_id


def test_claim_next_takes_the_oldest_due_job_and_marks_it_running(backend: Backend) -> None:
    _add(
        backend,
        sync_job("j-new", created=at(2)),
        sync_job("j-old", created=at(0)),
        sync_job("j-mid", created=at(1), tenant_id="t2"),
    )
    now = at(10)
    with backend.uow() as uow:
        claimed = uow.jobs.claim_next("worker-1", now, at(15))
        uow.commit()
    assert claimed is not None and claimed.job_id == "j-old"
    assert (claimed.state, claimed.claimed_by, claimed.lease_expires, claimed.attempts, claimed.update_time) == (
        SyncJobState.RUNNING,
        "worker-1",
        at(15),
        1,
        now,
    )
    with backend.uow() as uow:
        assert uow.jobs.get("t1", "j-old") == claimed
    assert _claim(backend, "worker-2", now) == "j-mid"
    assert _claim(backend, "worker-2", now) == "j-new"
    assert _claim(backend, "worker-2", now) is None


def test_claim_next_waits_for_next_attempt_time_and_skips_finished_jobs(backend: Backend) -> None:
    finished = [replace(sync_job(f"j-{s.value}", created=at(-9)), state=s) for s in SyncJobState if s.done]
    _add(backend, replace(sync_job("j-later", created=at(0)), next_attempt_time=at(20)), *finished)
    assert _claim(backend, "w", at(19)) is None
    assert _claim(backend, "w", at(20)) == "j-later"  # due exactly at next_attempt_time


def test_claim_next_reclaims_a_job_whose_lease_expired(backend: Backend) -> None:
    _add(backend, sync_job("j1"))
    assert _claim(backend, "w1", at(0), lease_minutes=5) == "j1"
    assert _claim(backend, "w2", at(5)) is None  # lease still valid at its last instant
    with backend.uow() as uow:
        job = uow.jobs.claim_next("w2", at(6), at(11))
        uow.commit()
    assert job is not None and job.job_id == "j1"
    assert (job.claimed_by, job.attempts, job.lease_expires) == ("w2", 2, at(11))


def test_claim_next_never_runs_two_jobs_with_the_same_lock_key(backend: Backend) -> None:
    _add(
        backend,
        sync_job("j1", customer_id="C1", created=at(0)),
        sync_job("j2", customer_id="C1", created=at(1)),
        sync_job("j3", customer_id="C2", created=at(2)),
        sync_job("j4", customer_id="C1", created=at(3), tenant_id="t2"),  # another tenant's C1
    )
    assert _claim(backend, "w1", at(10)) == "j1"
    assert _claim(backend, "w2", at(10)) == "j3"  # j2 waits: C1 is being written
    assert _claim(backend, "w2", at(10)) == "j4"
    assert _claim(backend, "w2", at(10)) is None
    with backend.uow() as uow:
        job = uow.jobs.get("t1", "j1")
        assert job is not None
        job.state = SyncJobState.SUCCEEDED
        uow.jobs.save(job)
        uow.commit()
    assert _claim(backend, "w2", at(11)) == "j2"


def test_list_failed_is_newest_first_and_paginated(backend: Backend) -> None:
    def failed(job_id: str, updated: float, tenant_id: str = "t1") -> SyncJob:
        return replace(
            sync_job(job_id, tenant_id=tenant_id, created=at(0)), state=SyncJobState.FAILED, update_time=at(updated)
        )

    _add(
        backend,
        failed("j1", 1),
        failed("j2", 3),
        failed("j3", 2),
        failed("j4", 3),
        failed("j5", 0),
        failed("j9", 9, tenant_id="t2"),
        replace(sync_job("j-ok"), state=SyncJobState.SUCCEEDED, update_time=at(8)),
        replace(sync_job("j-pending"), update_time=at(8)),
    )
    with backend.uow() as uow:
        everything = [j.job_id for j in uow.jobs.list_failed("t1", offset=0, limit=100)]
        pages = [[j.job_id for j in uow.jobs.list_failed("t1", offset=o, limit=2)] for o in (0, 2, 4, 6)]
    assert everything == ["j4", "j2", "j3", "j1", "j5"]
    assert pages == [["j4", "j2"], ["j3", "j1"], ["j5"], []]


def test_a_dismissed_job_is_kept_with_its_dismiss_time_and_leaves_the_failed_list(backend: Backend) -> None:
    failed = replace(sync_job("j1", created=at(0)), state=SyncJobState.FAILED, update_time=at(1))
    _add(backend, failed, replace(sync_job("j2", created=at(0)), state=SyncJobState.FAILED, update_time=at(2)))
    with backend.uow() as uow:
        uow.jobs.save(replace(failed, dismiss_time=at(5), update_time=at(5)))
        uow.commit()
    with backend.uow() as uow:
        kept = uow.jobs.get("t1", "j1")
        other = uow.jobs.get("t1", "j2")
        listed = [j.job_id for j in uow.jobs.list_failed("t1", offset=0, limit=10)]
    assert kept is not None and (kept.state, kept.dismiss_time) == (SyncJobState.FAILED, at(5))
    assert other is not None and other.dismiss_time is None
    assert listed == ["j2"]


def test_list_recent_is_every_state_newest_first_limited_and_per_tenant(backend: Backend) -> None:
    _add(
        backend,
        replace(sync_job("j1", created=at(0)), state=SyncJobState.FAILED, update_time=at(1), dismiss_time=at(1)),
        replace(sync_job("j2", created=at(0)), state=SyncJobState.SUCCEEDED, update_time=at(3)),
        replace(sync_job("j3", created=at(0)), update_time=at(2)),
        replace(sync_job("j4", created=at(0)), update_time=at(3)),
        replace(sync_job("j9", tenant_id="t2", created=at(0)), update_time=at(9)),
    )
    with backend.uow() as uow:
        everything = [j.job_id for j in uow.jobs.list_recent("t1", limit=10)]
        two = [j.job_id for j in uow.jobs.list_recent("t1", limit=2)]
    assert everything == ["j4", "j2", "j3", "j1"]
    assert two == ["j4", "j2"]
