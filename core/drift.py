"""Drift (SPEC §11): records qbsync wrote that someone else changed in QuickBooks since.

A sweep reads the company's Change Data Capture from the connection's watermark (at most 30 days back: the
accounting system clamps it) and compares each changed record qbsync wrote with what qbsync last wrote:

- its SyncToken is the one qbsync stored: qbsync's own write, not drift;
- deleted in QuickBooks: DELETED; a customer reported deleted was merged into another (QuickBooks cannot
  delete a customer, only make it inactive or merge it): MERGED. Which customer survived the merge is not in
  QuickBooks' Change Data Capture, so qbsync's customer link is left for the bookkeeper to re-point;
- voided in QuickBooks: VOIDED, unless qbsync voided it itself (`SyncState.VOIDED`, never drift);
- otherwise a moved SyncToken is EDITED when a field qbsync wrote differs ("TotalAmt"; a total QuickBooks
  holds that is qbsync's last write is no drift, whatever else a bookkeeper changed).

A drifted record is marked `SyncState.DRIFTED` and its `Drift` stored, one per record: the same change seen
again (the same SyncToken) leaves the stored drift as it is, so a sweep may read overlapping pages. A webhook
naming changed entities is to feed `compare` the same way. A record with a sync queued or running (PENDING)
is left to its sync, which meets QuickBooks' newer SyncToken itself (StaleRecordError).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.accounting import ChangedEntity, ChangedRecord, RecordStatus
from core.domain import Drift, DriftChange, SyncRecord, SyncState
from core.ports import AccountingSystems, Clock, UnitOfWork, UnitOfWorkFactory

SWEPT_ENTITIES = (
    ChangedEntity.PAYMENT,
    ChangedEntity.INVOICE,
    ChangedEntity.PURCHASE,
    ChangedEntity.DEPOSIT,
    ChangedEntity.CUSTOMER,
)

# The QuickBooks types qbsync stores (`SyncRecord.quickbooks_type`) for each entity Change Data Capture names.
_TYPES = {
    ChangedEntity.PAYMENT: {"Payment"},
    ChangedEntity.INVOICE: {"Invoice"},
    ChangedEntity.PURCHASE: {"Expense", "Check"},
    ChangedEntity.DEPOSIT: {"Deposit"},
    ChangedEntity.CUSTOMER: {"Customer"},
}


def compare(record: SyncRecord, change: ChangedRecord) -> tuple[DriftChange, tuple[str, ...]] | None:
    """How `change` (QuickBooks now) departs from qbsync's last write of `record`, or None when it does not."""
    if record.state in (SyncState.VOIDED, SyncState.PENDING) or not record.quickbooks_id:
        return None
    if change.status is RecordStatus.DELETED:  # qbsync deletes nothing but through a void (VOIDED above)
        return (DriftChange.MERGED if change.entity is ChangedEntity.CUSTOMER else DriftChange.DELETED), ()
    if change.sync_token and change.sync_token == record.sync_token:
        return None  # qbsync's own write
    if change.status is RecordStatus.VOIDED:
        return DriftChange.VOIDED, ("TotalAmt",)
    fields: list[str] = []
    if change.total is not None and record.amount is not None and change.total != record.amount:
        fields.append("TotalAmt")
    return (DriftChange.EDITED, tuple(fields)) if fields else None


@dataclass
class DriftSweep:
    """Sweeps one connection's company for drift (`sweep`), as the CLI and the worker ask."""

    uow_factory: UnitOfWorkFactory
    systems: AccountingSystems
    clock: Clock

    def sweep(self, tenant_id: str, branch_id: str = "") -> list[Drift]:
        """Reads what QuickBooks changed since the connection's watermark, records the drift found (committed)
        and moves the watermark to the moment the read began. Returns the drifts this sweep found new.
        Raises: what the accounting system raises for a read (`AccountingUnavailableError`, `ThrottledError`,
        `ReconnectRequiredError`); the watermark then stays, so the next sweep reads the same changes again."""
        with self.uow_factory.read_only() as uow:
            connection = uow.connections.get(tenant_id, branch_id=branch_id)
            since = uow.drift.watermark(tenant_id, branch_id)
        started = self.clock.now()
        system = self.systems.for_tenant(tenant_id, connection, branch_id=branch_id)
        if since is None:
            since = started.replace(year=started.year - 1)  # "as far back as QuickBooks keeps": it clamps
        changes = system.changed_since(SWEPT_ENTITIES, since)
        realm_id = connection.realm_id if connection is not None else ""
        with self.uow_factory() as uow:
            found = self.record(uow, tenant_id, realm_id, changes)
            uow.drift.save_watermark(tenant_id, started, branch_id)
            uow.commit()
        return found

    def record(self, uow: UnitOfWork, tenant_id: str, realm_id: str, changes: Sequence[ChangedRecord]) -> list[Drift]:
        """Compares `changes` with the records qbsync wrote in company `realm_id` and stores the drift found,
        in `uow` (not committed). Returns the drifts new to storage."""
        by_id: dict[str, list[SyncRecord]] = {}
        for record in uow.sync_records.with_quickbooks_ids(tenant_id, [c.id for c in changes]):
            if record.realm_id in ("", realm_id) or not realm_id:
                by_id.setdefault(str(record.quickbooks_id), []).append(record)
        found: list[Drift] = []
        for change in changes:
            for record in by_id.get(change.id, []):
                if record.quickbooks_type not in _TYPES[change.entity]:
                    continue
                departure = compare(record, change)
                if departure is None:
                    continue
                known = uow.drift.get(tenant_id, record.entity)
                if known is not None and known.sync_token == change.sync_token and known.change is departure[0]:
                    continue  # the same change, seen again
                drift = Drift(
                    tenant_id,
                    record.entity,
                    change.id,
                    departure[0],
                    self.clock.now(),
                    sync_token=change.sync_token,
                    fields=departure[1],
                )
                uow.drift.save(drift)
                record.state = SyncState.DRIFTED
                uow.sync_records.save(record)
                found.append(drift)
        return found

    def list(self, tenant_id: str, *, offset: int, limit: int) -> list[Drift]:
        """The tenant's drifts, newest first."""
        with self.uow_factory.read_only() as uow:
            return uow.drift.list(tenant_id, offset=offset, limit=limit)
