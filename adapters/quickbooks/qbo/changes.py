"""What QuickBooks changed since a moment: its Change Data Capture (`AccountingSystem.changed_since`).

`GET /cdc?entities=A,B&changedSince=ISO` answers `CDCResponse[0].QueryResponse`, one entry per entity, each
holding at most 1,000 objects, oldest change first. An entity whose page is full is asked again on its own
from the last LastUpdatedTime of that page (an object seen twice is kept as its latest): Intuit documents no
other paging. A deleted object (and a customer merged away) comes back as `{"Id", "status": "Deleted",
"MetaData"}`; a voided Payment or Invoice comes back live with the signs `is_voided` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.mapping import is_voided
from core.accounting import ChangedEntity, ChangedRecord, RecordStatus
from core.errors import AccountingUnavailableError

CDC_PAGE = 1000  # QuickBooks' most objects per entity in one answer
LOOK_BACK = timedelta(days=30)  # how far back QuickBooks keeps changes


def changed_since(session: CompanySession, entities: Sequence[ChangedEntity], since: datetime) -> list[ChangedRecord]:
    earliest = datetime.now(UTC) - LOOK_BACK + timedelta(minutes=1)  # a minute's margin for clock skew
    start = max(since.astimezone(UTC), earliest)
    found: dict[tuple[ChangedEntity, str], ChangedRecord] = {}
    pending = {entity: start for entity in dict.fromkeys(entities)}
    while pending:
        moment = min(pending.values())
        asked = [entity for entity, at in pending.items() if at == moment]
        pages = _read(session, asked, moment)
        for entity in asked:
            rows = pages.get(entity, [])
            for row in rows:
                record = _record(entity, row)
                found[(entity, record.id)] = record
            latest = max((_updated(row) for row in rows), default=moment)
            if len(rows) >= CDC_PAGE and latest > moment:
                pending[entity] = latest
            elif len(rows) >= CDC_PAGE:
                raise AccountingUnavailableError(
                    f"QuickBooks reported more than {CDC_PAGE} {entity.value} changes at one moment ({moment}): "
                    "they cannot be paged through"
                )
            else:
                del pending[entity]
    return sorted(found.values(), key=lambda r: (r.last_updated, r.entity.value, _id_order(r.id)))


def _read(session: CompanySession, entities: list[ChangedEntity], since: datetime) -> dict[ChangedEntity, list[Any]]:
    names = ",".join(entity.value for entity in entities)
    stamp = quote(since.isoformat(timespec="seconds"))
    answer = session.call(
        lambda qb: qb.get(f"{qb.api_url}/company/{qb.company_id}/cdc?entities={names}&changedSince={stamp}", {}),
        write=False,
        what=f"reading what QuickBooks changed since {since.isoformat()}",
    )
    pages: dict[ChangedEntity, list[Any]] = {}
    responses = answer.get("CDCResponse") if isinstance(answer, dict) else None
    for response in responses or []:
        for query in response.get("QueryResponse") or []:
            for entity in entities:
                rows = query.get(entity.value)
                if isinstance(rows, list):
                    pages.setdefault(entity, []).extend(rows)
    return pages


def _record(entity: ChangedEntity, row: dict[str, Any]) -> ChangedRecord:
    entity_id = str(row.get("Id"))
    token = str(row.get("SyncToken", ""))
    if str(row.get("status", "")).lower() == "deleted":
        return ChangedRecord(entity, entity_id, token, RecordStatus.DELETED, _updated(row))
    status = RecordStatus.VOIDED if is_voided(row) else RecordStatus.LIVE
    total = row.get("TotalAmt")
    customer = row.get("CustomerRef") or (row.get("EntityRef") if entity is ChangedEntity.PURCHASE else None)
    return ChangedRecord(
        entity,
        entity_id,
        token,
        status,
        _updated(row),
        None if total is None or entity is ChangedEntity.CUSTOMER else Decimal(str(total)),
        str(customer.get("value", "")) if isinstance(customer, dict) else "",
    )


def _updated(row: dict[str, Any]) -> datetime:
    meta = row.get("MetaData") or {}
    stamp = meta.get("LastUpdatedTime") or meta.get("CreateTime")
    if not stamp:
        return datetime.now(UTC)
    return datetime.fromisoformat(str(stamp)).astimezone(UTC)


def _id_order(entity_id: str) -> tuple[int, str]:
    return (int(entity_id), "") if entity_id.isdigit() else (0, entity_id)
