"""The contract of `AccountingSystem.changed_since` (QuickBooks' Change Data Capture), run against the in-memory
fake and against the real python-quickbooks adapter over HTTP to the emulator: both report the same changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from core.accounting import ChangedEntity, ChangedRecord, PaymentSpec, RecordStatus, TxnKind
from core.domain import PaymentMethod

ALL = list(ChangedEntity)


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def payment(customer_id: str, amount: str = "300.10", marker: str = "[m-p1]") -> PaymentSpec:
    return PaymentSpec(
        customer_id, Decimal(amount), date(2026, 1, 2), PaymentMethod.CASH, "R-77", (), f"CRM payment {marker}", marker
    )


def since() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def txns(changes: list[ChangedRecord]) -> dict[str, ChangedRecord]:
    return {c.id: c for c in changes if c.entity is not ChangedEntity.CUSTOMER}


def test_a_written_payment_is_reported_live_with_its_token_total_and_customer(company: Company) -> None:
    start = since()
    customer = company.add_customer("Ada Lovelace")
    ref = company.system.create(payment(customer), request_id="r1")
    changes = company.system.changed_since(ALL, start)
    record = txns(changes)[ref.id]
    assert (record.entity, record.status, record.sync_token) == (ChangedEntity.PAYMENT, RecordStatus.LIVE, "0")
    assert (record.total, record.customer_id) == (Decimal("300.10"), customer)
    assert start <= record.last_updated <= datetime.now(UTC) + timedelta(seconds=1)
    assert any(c.entity is ChangedEntity.CUSTOMER and c.id == customer for c in changes)


def test_only_the_entities_asked_for_are_reported(company: Company) -> None:
    start = since()
    customer = company.add_customer("Ada Lovelace")
    company.system.create(payment(customer), request_id="r1")
    changes = company.system.changed_since([ChangedEntity.INVOICE, ChangedEntity.DEPOSIT], start)
    assert changes == []


def test_nothing_changed_after_the_moment_asked_is_nothing(company: Company) -> None:
    customer = company.add_customer("Ada Lovelace")
    company.system.create(payment(customer), request_id="r1")
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert company.system.changed_since(ALL, later) == []


def test_an_edit_in_quickbooks_moves_the_sync_token(company: Company) -> None:
    start = since()
    customer = company.add_customer("Ada Lovelace")
    ref = company.system.create(payment(customer), request_id="r1")
    company.touch(TxnKind.PAYMENT, ref.id)
    record = txns(company.system.changed_since(ALL, start))[ref.id]
    assert (record.status, record.sync_token) == (RecordStatus.LIVE, "1")


def test_a_deleted_record_is_reported_deleted(company: Company) -> None:
    start = since()
    customer = company.add_customer("Ada Lovelace")
    ref = company.system.create(payment(customer), request_id="r1")
    company.delete(TxnKind.PAYMENT, ref.id)
    record = txns(company.system.changed_since([ChangedEntity.PAYMENT], start))[ref.id]
    assert (record.entity, record.status, record.total) == (ChangedEntity.PAYMENT, RecordStatus.DELETED, None)


def test_a_record_voided_in_quickbooks_is_reported_voided_at_zero(company: Company) -> None:
    start = since()
    customer = company.add_customer("Ada Lovelace")
    ref = company.system.create(payment(customer), request_id="r1")
    company.void(TxnKind.PAYMENT, ref.id)
    record = txns(company.system.changed_since([ChangedEntity.PAYMENT], start))[ref.id]
    assert (record.status, record.total, record.sync_token) == (RecordStatus.VOIDED, Decimal("0.00"), "1")
