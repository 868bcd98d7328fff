"""Payouts in every persistence backend (SPEC §9): the snapshot round-trips exactly, and the payment →
payout assignment follows the newest snapshot (a resync that drops a payment frees it), per tenant."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from persistence_builders import Backend, opportunity, payment

from core.domain import Payout, PayoutAdjustment


def _payout(payout_id: str = "PO1", *payment_ids: str, fees: str = "8.90") -> Payout:
    return Payout(
        payout_id=payout_id,
        arrival_date=date(2026, 3, 4),
        amount=Decimal("1234.56"),
        payment_ids=payment_ids or ("P1", "P2"),
        refund_ids=("R1",),
        fees=Decimal(fees),
        chargebacks=Decimal("0.00"),
        adjustments=(PayoutAdjustment(Decimal("-10.05"), "reserve held"), PayoutAdjustment(Decimal("0.01"), "")),
    )


def test_a_payout_round_trips_exactly_and_per_tenant(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_opportunity("t1", opportunity())
        for payment_id in ("P1", "P2"):
            uow.snapshots.save_payment("t1", "O1", payment(payment_id))
        uow.snapshots.save_payout("t1", _payout())
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_payout("t1", "PO1") == _payout()
        assert uow.snapshots.get_payout("t2", "PO1") is None
        assert uow.snapshots.get_payout("t1", "PO2") is None
        assert uow.snapshots.payout_of_payment("t1", "P1") == "PO1"
        assert uow.snapshots.payout_of_payment("t1", "P2") == "PO1"
        assert uow.snapshots.payout_of_payment("t2", "P1") is None
        assert uow.snapshots.payout_of_payment("t1", "P3") is None


def test_a_resync_drops_and_adds_payments_and_a_dropped_one_may_join_another_payout(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_payout("t1", _payout("PO1", "P1", "P2"))
        uow.commit()
    with backend.uow() as uow:
        uow.snapshots.save_payout("t1", _payout("PO1", "P1", "P3", fees="1.00"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_payout("t1", "PO1") == _payout("PO1", "P1", "P3", fees="1.00")
        assert uow.snapshots.payout_of_payment("t1", "P2") is None
        assert uow.snapshots.payout_of_payment("t1", "P3") == "PO1"
        uow.snapshots.save_payout("t1", _payout("PO2", "P2"))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.payout_of_payment("t1", "P2") == "PO2"
        assert uow.snapshots.payout_of_payment("t1", "P1") == "PO1"


def test_an_uncommitted_payout_is_discarded(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_payout("t1", _payout())
        uow.rollback()
    with backend.uow() as uow:
        assert uow.snapshots.get_payout("t1", "PO1") is None
        assert uow.snapshots.payout_of_payment("t1", "P1") is None
