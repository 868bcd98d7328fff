"""`DriftRepository` over SQLAlchemy: the `drifts` and `drift_watermarks` tables (revision 0020)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from adapters.persistence.sqlalchemy.models import DriftRow, DriftWatermarkRow
from adapters.persistence.sqlalchemy.repositories import SqlRepository
from core.domain import Drift, DriftChange, EntityRef, EntityType
from core.ports import DriftRepository

_KEY = ("tenant_id", "entity_type", "entity_id")


class SqlAlchemyDriftRepository(SqlRepository, DriftRepository):
    def get(self, tenant_id: str, entity: EntityRef) -> Drift | None:
        row = self._first(DriftRow, tenant_id=tenant_id, entity_type=entity.type.value, entity_id=entity.id)
        return None if row is None else _drift_from(row)

    def save(self, drift: Drift) -> None:
        values = {
            "tenant_id": drift.tenant_id,
            "entity_type": drift.entity.type.value,
            "entity_id": drift.entity.id,
            "quickbooks_id": drift.quickbooks_id,
            "change": drift.change.value,
            "detected_time": drift.detected_time,
            "sync_token": drift.sync_token,
            "fields": ",".join(drift.fields),
        }
        self._upsert(DriftRow, values, _KEY)

    def clear(self, tenant_id: str, entity: EntityRef) -> None:
        self._session.execute(
            delete(DriftRow).where(
                DriftRow.tenant_id == tenant_id,
                DriftRow.entity_type == entity.type.value,
                DriftRow.entity_id == entity.id,
            )
        )

    def list(self, tenant_id: str, *, offset: int, limit: int) -> list[Drift]:
        rows = self._fresh(
            select(DriftRow)
            .where(DriftRow.tenant_id == tenant_id)
            .order_by(DriftRow.detected_time.desc(), DriftRow.entity_type, DriftRow.entity_id)
            .offset(offset)
            .limit(limit)
        )
        return [_drift_from(row) for row in rows]

    def watermark(self, tenant_id: str, branch_id: str = "") -> datetime | None:
        row = self._first(DriftWatermarkRow, tenant_id=tenant_id, branch_id=branch_id)
        return None if row is None else row.since

    def save_watermark(self, tenant_id: str, moment: datetime, branch_id: str = "") -> None:
        values = {"tenant_id": tenant_id, "branch_id": branch_id, "since": moment}
        self._upsert(DriftWatermarkRow, values, ("tenant_id", "branch_id"))


def _drift_from(row: DriftRow) -> Drift:
    return Drift(
        tenant_id=row.tenant_id,
        entity=EntityRef(EntityType(row.entity_type), row.entity_id),
        quickbooks_id=row.quickbooks_id,
        change=DriftChange(row.change),
        detected_time=row.detected_time,
        sync_token=row.sync_token,
        fields=tuple(f for f in row.fields.split(",") if f),
    )
