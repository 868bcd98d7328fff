"""SyncService.list_payouts (SPEC §9): every payout of the tenant, newest arrival first, with where its
QuickBooks Deposit stands, in pages; READ permission; bad paging refused naming the field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import Fault
from core.domain import Customer, Opportunity, Payment, PaymentMethod, Payout, Permission, SyncState
from core.errors import PermissionDeniedError, ValidationError
from tests.unit.support import Harness

PAID = datetime(2026, 1, 2, tzinfo=UTC)


def _pay(h: Harness, *amounts: tuple[str, str], tenant: str = "acme") -> None:
    opportunity = Opportunity("o1", "1001", Customer("c1", "Ann", "Lee", "", "ann@example.com", ""))
    for payment_id, amount in amounts:
        payment = Payment(payment_id, Decimal(amount), PaymentMethod.CHECK, PAID)
        h.service.sync_payment(h.principal(tenant), opportunity, payment)
    h.worker.drain()


def test_payouts_are_listed_newest_first_with_their_deposit_state_id_and_error() -> None:
    h = Harness()
    reader = h.principal(permissions=frozenset({Permission.READ}))
    _pay(h, ("p1", "300.00"), ("p2", "200.00"), ("p3", "75.00"))
    h.service.sync_payout(h.principal(), Payout("po-synced", date(2026, 1, 5), Decimal("300.00"), ("p1",)))
    h.worker.drain()
    h.qbo().inject(*[Fault.UNAVAILABLE] * 8)  # every attempt of the next payout's job
    h.service.sync_payout(h.principal(), Payout("po-failed", date(2026, 1, 7), Decimal("200.00"), ("p2",)))
    h.worker.drain()
    _pay(h, ("p9", "9.00"), tenant="other")
    h.service.sync_payout(h.principal("other"), Payout("po-other", date(2026, 2, 1), Decimal("9.00"), ("p9",)))
    h.service.sync_payout(h.principal(), Payout("po-queued", date(2026, 1, 6), Decimal("75.00"), ("p3",)))  # not run

    listed, token = h.service.list_payouts(reader, 0, "")

    assert token == ""
    assert [s.payout.payout_id for s in listed] == ["po-failed", "po-queued", "po-synced"]
    failed, queued, synced = listed
    assert (failed.record.state, failed.record.quickbooks_id) == (SyncState.FAILED, None)
    assert "unavailable" in failed.record.last_error
    assert (queued.record.state, queued.record.quickbooks_id, queued.record.last_error) == (SyncState.PENDING, None, "")
    deposit = h.qbo().txn(synced.record.quickbooks_id or "")
    assert (synced.record.state, deposit.total, synced.record.last_error) == (SyncState.SYNCED, Decimal("300.00"), "")
    assert synced.payout == Payout("po-synced", date(2026, 1, 5), Decimal("300.00"), ("p1",))


def test_payouts_are_paged_and_each_page_follows_the_last() -> None:
    h = Harness()
    p = h.principal()
    _pay(h, *[(f"p{day}", "10.00") for day in range(1, 6)])
    for day in range(1, 6):
        h.service.sync_payout(p, Payout(f"po{day}", date(2026, 1, day), Decimal("10.00"), (f"p{day}",)))
    first, token = h.service.list_payouts(p, 2, "")
    second, token2 = h.service.list_payouts(p, 2, token)
    last, token3 = h.service.list_payouts(p, 2, token2)
    assert [[s.payout.payout_id for s in page] for page in (first, second, last)] == [
        ["po5", "po4"],
        ["po3", "po2"],
        ["po1"],
    ]
    assert (token, token2, token3) == ("2", "4", "")


def test_listing_payouts_needs_read_and_refuses_bad_paging_naming_the_fields() -> None:
    h = Harness()
    with pytest.raises(PermissionDeniedError):
        h.service.list_payouts(h.principal(permissions=frozenset({Permission.SYNC})), 0, "")
    with pytest.raises(ValidationError) as refused:
        h.service.list_payouts(h.principal(), -1, "²")
    assert [v.field for v in refused.value.violations] == ["page_size", "page_token"]
