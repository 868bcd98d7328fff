"""The drift repository's contract (core/drift.py) and the records found by QuickBooks Id: memory, SQLite and
PostgreSQL agree."""

from __future__ import annotations

from datetime import timedelta

from persistence_builders import T0, Backend

from core.domain import Drift, DriftChange, EntityRef, EntityType, SyncRecord, SyncState

P1 = EntityRef(EntityType.PAYMENT, "p1")
P2 = EntityRef(EntityType.PAYMENT, "p2")
EDITED = Drift("acme", P1, "12", DriftChange.EDITED, T0, sync_token="3", fields=("TotalAmt", "CustomerRef"))
DELETED = Drift("acme", P2, "13", DriftChange.DELETED, T0 + timedelta(seconds=5))


def _save(backend: Backend, *drifts: Drift) -> None:
    with backend.uow() as uow:
        for drift in drifts:
            uow.drift.save(drift)
        uow.commit()


def test_drifts_round_trip_exactly_per_tenant_newest_first(backend: Backend) -> None:
    _save(backend, EDITED, DELETED, Drift("globex", P1, "1", DriftChange.MERGED, T0))
    with backend.uow() as uow:
        assert uow.drift.get("acme", P1) == EDITED
        assert uow.drift.list("acme", offset=0, limit=10) == [DELETED, EDITED]
        assert uow.drift.list("acme", offset=1, limit=10) == [EDITED]
        assert uow.drift.list("acme", offset=0, limit=1) == [DELETED]
        assert [d.change for d in uow.drift.list("globex", offset=0, limit=10)] == [DriftChange.MERGED]
        assert uow.drift.get("nobody", P1) is None


def test_a_drift_saved_again_replaces_and_clear_forgets_it(backend: Backend) -> None:
    _save(backend, EDITED)
    voided = Drift("acme", P1, "12", DriftChange.VOIDED, T0 + timedelta(1), sync_token="4", fields=("TotalAmt",))
    _save(backend, voided)
    with backend.uow() as uow:
        assert uow.drift.list("acme", offset=0, limit=10) == [voided]
        uow.drift.clear("acme", P1)
        uow.drift.clear("acme", P2)  # none: nothing happens
        uow.commit()
    with backend.uow() as uow:
        assert uow.drift.get("acme", P1) is None


def test_a_rolled_back_drift_is_not_kept(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.drift.save(EDITED)
    with backend.uow() as uow:
        assert uow.drift.get("acme", P1) is None


def test_watermarks_are_per_connection(backend: Backend) -> None:
    with backend.uow() as uow:
        assert uow.drift.watermark("acme") is None
        uow.drift.save_watermark("acme", T0)
        uow.drift.save_watermark("acme", T0 + timedelta(1), "boston")
        uow.commit()
    with backend.uow() as uow:
        uow.drift.save_watermark("acme", T0 + timedelta(2))
        uow.commit()
    with backend.uow() as uow:
        assert uow.drift.watermark("acme") == T0 + timedelta(2)
        assert uow.drift.watermark("acme", "boston") == T0 + timedelta(1)
        assert uow.drift.watermark("globex") is None


def test_records_are_found_by_quickbooks_id(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.tenants.ensure("acme")
        uow.tenants.ensure("globex")
        for tenant, entity, quickbooks_id in [("acme", P1, "12"), ("acme", P2, "13"), ("globex", P1, "12")]:
            uow.sync_records.save(
                SyncRecord(tenant, entity, SyncState.DRIFTED, quickbooks_id, "0", "Payment", realm_id="9130")
            )
        uow.sync_records.save(SyncRecord("acme", EntityRef(EntityType.PAYMENT, "p3")))  # never written
        uow.commit()
    with backend.uow() as uow:
        found = uow.sync_records.with_quickbooks_ids("acme", ["12", "99"])
        assert [(r.entity, r.state, r.realm_id) for r in found] == [(P1, SyncState.DRIFTED, "9130")]
        assert {r.entity for r in uow.sync_records.with_quickbooks_ids("acme", ["12", "13"])} == {P1, P2}
        assert uow.sync_records.with_quickbooks_ids("acme", []) == []
