"""Which branch a CRM record's QuickBooks company is found by (SPEC §10).

A payment, refund or invoice is in the company its opportunity's branch syncs to; a payout in its payments'
(core/payout_intake.py made sure they share one); a customer link in whichever company the caller names by
branch, since one CRM customer may be linked in several. `ConnectionRepository.for_branch` then says which
connection that branch syncs to.
"""

from __future__ import annotations

from core.domain import EntityRef, EntityType
from core.ports import UnitOfWork


def branch_of_record(uow: UnitOfWork, tenant_id: str, entity: EntityRef, branch_id: str) -> str:
    """The branch whose connection holds `entity`'s QuickBooks record: `branch_id` for a customer; for the
    others their opportunity's ("" when qbsync does not know the record: the default connection)."""
    if entity.type is EntityType.CUSTOMER:
        return branch_id
    opportunity_id = _opportunity_of(uow, tenant_id, entity)
    opportunity = uow.snapshots.get_opportunity(tenant_id, opportunity_id) if opportunity_id else None
    return opportunity.branch_id if opportunity is not None else ""


def _opportunity_of(uow: UnitOfWork, tenant_id: str, entity: EntityRef) -> str | None:
    match entity.type:
        case EntityType.PAYMENT:
            payment = uow.snapshots.get_payment(tenant_id, entity.id)
            return payment.opportunity_id if payment is not None else None
        case EntityType.REFUND:
            owner = uow.snapshots.payment_of_refund(tenant_id, entity.id)
            payment = uow.snapshots.get_payment(tenant_id, owner) if owner is not None else None
            return payment.opportunity_id if payment is not None else None
        case EntityType.INVOICE:
            job = uow.snapshots.get_job(tenant_id, entity.id)
            return job.opportunity_id if job is not None else None
        case EntityType.PAYOUT:
            payout = uow.snapshots.get_payout(tenant_id, entity.id)
            for payment_id in payout.payment_ids if payout is not None else ():
                payment = uow.snapshots.get_payment(tenant_id, payment_id)
                if payment is not None:
                    return payment.opportunity_id
            return None
    return None
