"""Payouts in every persistence backend (SPEC §9): the snapshot round-trips exactly, the payment → payout
and refund → payout assignments follow the newest snapshot (a resync that drops a payment or refund frees
it), per tenant, and the tenant's payouts are listed newest first, in pages that neither overlap nor skip
one."""

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


def _payout(
    payout_id: str = "PO1", *payment_ids: str, fees: str = "8.90", refund_ids: tuple[str, ...] = ("R1",)
) -> Payout:
    return Payout(
        payout_id=payout_id,
        arrival_date=date(2026, 3, 4),
        amount=Decimal("1234.56"),
        payment_ids=payment_ids or ("P1", "P2"),
        refund_ids=refund_ids,
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
        assert uow.snapshots.payout_of_refund("t1", "R1") == "PO1"
        assert uow.snapshots.payout_of_refund("t2", "R1") is None
        assert uow.snapshots.payout_of_refund("t1", "R2") is None
        assert uow.snapshots.payout_of_refund("t1", "P1") is None  # a payment is not a refund


def test_a_resync_drops_and_adds_refunds_and_a_dropped_one_may_be_netted_by_another_payout(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.snapshots.save_payout("t1", _payout("PO1", "P1", refund_ids=("R1", "R2")))
        uow.snapshots.save_payout("t2", _payout("PO1", "P1", refund_ids=("R1",)))
        uow.commit()
    with backend.uow() as uow:
        uow.snapshots.save_payout("t1", _payout("PO1", "P1", refund_ids=("R2", "R3")))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.get_payout("t1", "PO1") == _payout("PO1", "P1", refund_ids=("R2", "R3"))
        assert [uow.snapshots.payout_of_refund("t1", r) for r in ("R1", "R2", "R3")] == [None, "PO1", "PO1"]
        assert uow.snapshots.payout_of_refund("t2", "R1") == "PO1"  # the other tenant's is its own
        uow.snapshots.save_payout("t1", _payout("PO2", "P2", refund_ids=("R1",)))
        uow.commit()
    with backend.uow() as uow:
        assert uow.snapshots.payout_of_refund("t1", "R1") == "PO2"
        # A resync netting none frees them all, and keeps its payments.
        uow.snapshots.save_payout("t1", _payout("PO1", "P1", refund_ids=()))
        uow.commit()
    with backend.uow() as uow:
        assert [uow.snapshots.payout_of_refund("t1", r) for r in ("R1", "R2", "R3")] == ["PO2", None, None]
        assert uow.snapshots.payout_of_payment("t1", "P1") == "PO1"


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
        assert uow.snapshots.payout_of_refund("t1", "R1") is None


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


def test_migration_0011_assigns_existing_payouts_refunds_each_to_one_payout(sql_backend: Backend) -> None:
    """Refunds netted before 0011 are assigned from the payouts' snapshots; one that two payouts netted (nothing
    stopped it before) goes to the one that arrived first. Payment assignments are kept."""
    with sql_backend.uow() as uow:
        first = replace(_payout("PO1", "P1", refund_ids=("R1",)), arrival_date=date(2026, 3, 4))
        later = replace(_payout("PO0", "P2", refund_ids=("R1", "R2")), arrival_date=date(2026, 3, 5))
        uow.snapshots.save_payout("t1", first)
        uow.snapshots.save_payout("t1", later)  # saved last: R1 is PO0's until the migration rebuilds
        uow.snapshots.save_payout("t2", _payout("PO9", "P1", refund_ids=("R1",)))
        uow.commit()
    with sql_backend.uow() as uow:
        assert uow.snapshots.payout_of_refund("t1", "R1") == "PO0"
    _migrate_to(sql_backend.url, "0010", down=True)
    _migrate_to(sql_backend.url, "head", down=False)
    with sql_backend.uow() as uow:
        assert [uow.snapshots.payout_of_refund("t1", r) for r in ("R1", "R2")] == ["PO1", "PO0"]
        assert uow.snapshots.payout_of_refund("t2", "R1") == "PO9"
        assert [uow.snapshots.payout_of_payment("t1", p) for p in ("P1", "P2")] == ["PO1", "PO0"]
        assert uow.snapshots.get_payout("t1", "PO0") == later
