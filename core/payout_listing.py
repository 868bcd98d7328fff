"""What an operator sees of a tenant's payouts (SPEC.md section 9): each payout as last received, with where
its QuickBooks Deposit stands.

Read-only; the paging and the permission check are SyncService.list_payouts'.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import EntityRef, EntityType, Payout, SyncRecord
from core.ports import UnitOfWork


@dataclass(frozen=True)
class PayoutStatus:
    """One payout and its sync record: `record.state`, `record.quickbooks_id` (the Deposit's Id) and
    `record.last_error` say whether the bank deposit is in QuickBooks yet, and why not."""

    payout: Payout
    record: SyncRecord


def payouts_page(uow: UnitOfWork, tenant_id: str, *, offset: int, limit: int) -> list[PayoutStatus]:
    """The tenant's payouts newest arrival first (SnapshotRepository.list_payouts' order), each with its
    record. Every accepted payout has one (it is marked PENDING as it is stored); a payout without one is
    shown as never synced rather than dropped, so that the list holds every payout the tenant sent."""
    statuses = []
    for payout in uow.snapshots.list_payouts(tenant_id, offset=offset, limit=limit):
        entity = EntityRef(EntityType.PAYOUT, payout.payout_id)
        record = uow.sync_records.get(tenant_id, entity) or SyncRecord(tenant_id, entity)
        statuses.append(PayoutStatus(payout, record))
    return statuses
