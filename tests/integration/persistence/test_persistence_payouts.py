"""Payouts in every persistence backend (SPEC §9): the snapshot round-trips exactly, the payment → payout
assignment follows the newest snapshot (a resync that drops a payment frees it), per tenant, and the
tenant's payouts are listed newest first, in pages that neither overlap nor skip one."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from alembic import command
from persistence_builders import Backend, opportunity, payment
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import create_engine_for
from adapters.persistence.sqlalchemy.migrate import alembic_config
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


def _listed(backend: Backend, tenant_id: str, *, offset: int = 0, limit: int = 100) -> list[str]:
    with backend.uow() as uow:
        return [p.payout_id for p in uow.snapshots.list_payouts(tenant_id, offset=offset, limit=limit)]


def _save_dated(backend: Backend, tenant_id: str, *dated: tuple[str, date]) -> None:
    with backend.uow() as uow:
        for payout_id, arrival in dated:
            uow.snapshots.save_payout(tenant_id, replace(_payout(payout_id, f"{payout_id}-P"), arrival_date=arrival))
        uow.commit()


def test_payouts_are_listed_newest_arrival_first_then_by_id_descending_per_tenant(backend: Backend) -> None:
    march, april = date(2026, 3, 4), date(2026, 4, 1)
    # Saved out of order; ids that a locale collation would sort otherwise ("b" after "B" and "_").
    _save_dated(backend, "t1", ("PO-B", march), ("PO-a", april), ("PO-b", march), ("PO_1", march), ("PO-A", april))
    _save_dated(backend, "t2", ("PO-Z", date(2027, 1, 1)))
    assert _listed(backend, "t1") == ["PO-a", "PO-A", "PO_1", "PO-b", "PO-B"]
    assert _listed(backend, "t2") == ["PO-Z"]
    assert _listed(backend, "t3") == []
    # Pages: consecutive offsets cover the list exactly once.
    pages = [_listed(backend, "t1", offset=offset, limit=2) for offset in (0, 2, 4, 6)]
    assert pages == [["PO-a", "PO-A"], ["PO_1", "PO-b"], ["PO-B"], []]


def test_a_resync_that_moves_the_arrival_date_moves_the_payout_in_the_list(backend: Backend) -> None:
    _save_dated(backend, "t1", ("PO1", date(2026, 3, 4)), ("PO2", date(2026, 3, 5)))
    assert _listed(backend, "t1") == ["PO2", "PO1"]
    _save_dated(backend, "t1", ("PO1", date(2026, 3, 6)))
    assert _listed(backend, "t1") == ["PO1", "PO2"]
    with backend.uow() as uow:
        listed = uow.snapshots.list_payouts("t1", offset=0, limit=1)
    assert listed == [replace(_payout("PO1", "PO1-P"), arrival_date=date(2026, 3, 6))]  # the whole snapshot


def _migrate_to(url: URL | None, revision: str, *, down: bool) -> None:
    assert url is not None
    engine = create_engine_for(url)
    try:
        with engine.begin() as db:
            config = alembic_config(url)
            config.attributes["connection"] = db
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def test_migration_0007_dates_existing_payouts_and_keeps_their_payments(sql_backend: Backend) -> None:
    """Payouts stored before 0007 get their arrival date from their snapshot, and lose no assignment."""
    _save_dated(sql_backend, "t1", ("PO1", date(2026, 3, 4)), ("PO2", date(2026, 3, 5)))
    _migrate_to(sql_backend.url, "0006", down=True)
    _migrate_to(sql_backend.url, "head", down=False)
    assert _listed(sql_backend, "t1") == ["PO2", "PO1"]
    with sql_backend.uow() as uow:
        assert uow.snapshots.payout_of_payment("t1", "PO1-P") == "PO1"
        assert uow.snapshots.get_payout("t1", "PO2") == replace(_payout("PO2", "PO2-P"), arrival_date=date(2026, 3, 5))
