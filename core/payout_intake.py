"""SPEC §9 at accept time: what a payout may list, and the jobs it needs queued before its deposit.

A payout names CRM records qbsync already has (payments, and refunds of them) by id. Accepting it checks,
in the request's transaction, that each is the tenant's and is in no other payout, that the parts add up to
the amount, then assigns the payments and refunds to the payout (each to one payout at most) and queues a
SyncPayment job for each listed payment not yet in QuickBooks as listed (its refunds ride with it, R4). The
payout's own job writes the deposit only, once they are (core/payout_sync.py): one writer per record, so the
payments keep their customer's lock (R7).
"""

from __future__ import annotations

from decimal import Decimal

from core.domain import EntityRef, EntityType, Opportunity, Payout, StoredPayment, SyncJobKind, SyncState
from core.errors import FailedPreconditionError, ValidationError
from core.outbox import VOIDED, Outbox
from core.ports import UnitOfWork
from core.validation import payout_parts_violations

PAYMENT_UNKNOWN = "PAYMENT_UNKNOWN"
REFUND_NOT_IN_PAYOUT = "REFUND_NOT_IN_PAYOUT"
PAYMENT_IN_ANOTHER_PAYOUT = "PAYMENT_IN_ANOTHER_PAYOUT"
REFUND_IN_ANOTHER_PAYOUT = "REFUND_IN_ANOTHER_PAYOUT"
PAYOUT_SPANS_COMPANIES = "PAYOUT_SPANS_COMPANIES"


def stage_payout(uow: UnitOfWork, tenant: str, payout: Payout, outbox: Outbox) -> str:
    """Checks the payout against what qbsync holds, saves it, and queues the payment jobs it waits for.
    Returns the branch whose connection the deposit goes to: its payments' (SPEC §10)."""
    payments = _listed_payments(uow, tenant, payout)
    refund_owners = _refund_owners(uow, tenant, payout)
    owners = {**payments, **{p.payment.payment_id: p for p in refund_owners.values()}}
    refund_amounts = {
        refund.refund_id: refund.amount
        for owner in owners.values()
        for refund in owner.payment.refunds
        if refund.refund_id in refund_owners
    }
    payment_amounts: dict[str, Decimal] = {pid: stored.payment.amount for pid, stored in payments.items()}
    violations = payout_parts_violations(payout, payment_amounts, refund_amounts)
    if violations:
        raise ValidationError(violations)
    _refuse_voided(uow, tenant, payout)
    _refuse_payments_of_other_payouts(uow, tenant, payout)
    _refuse_refunds_of_other_payouts(uow, tenant, payout)
    opportunities = {
        oid: _opportunity(uow, tenant, oid) for oid in dict.fromkeys(o.opportunity_id for o in owners.values())
    }
    branch = _one_company(uow, tenant, payout, list(opportunities.values()))
    uow.snapshots.save_payout(tenant, payout)
    for stored in owners.values():
        if _waits_for_its_job(uow, tenant, stored, payout):
            opportunity = opportunities[stored.opportunity_id]
            outbox.queue(uow, tenant, SyncJobKind.SYNC_PAYMENT, _payment_ref(stored.payment.payment_id), opportunity)
    return branch


def _refuse_voided(uow: UnitOfWork, tenant: str, payout: Payout) -> None:
    """SPEC §11: a payment (or refund) voided from the CRM is in no bank deposit: FAILED_PRECONDITION (reason
    VOIDED, as a sync naming it is), in one read of all their records."""
    listed = [(f"payout.payment_ids[{i}]", _payment_ref(p)) for i, p in enumerate(payout.payment_ids)]
    listed += [(f"payout.refund_ids[{i}]", EntityRef(EntityType.REFUND, r)) for i, r in enumerate(payout.refund_ids)]
    records = uow.sync_records.get_many(tenant, [ref for _, ref in listed])
    for path, ref in listed:
        if ref in records and records[ref].state is SyncState.VOIDED:
            raise FailedPreconditionError(
                f"{ref.type.value.lower()} {ref.id} was voided (VoidPayment) and is in no bank deposit: leave it "
                "out of the payout",
                metadata={"field": path},
                reason=VOIDED,
            )


def _opportunity(uow: UnitOfWork, tenant: str, opportunity_id: str) -> Opportunity:
    opportunity = uow.snapshots.get_opportunity(tenant, opportunity_id)
    assert opportunity is not None, "a payment is stored with its opportunity"
    return opportunity


def _one_company(uow: UnitOfWork, tenant: str, payout: Payout, opportunities: list[Opportunity]) -> str:
    """The branch of the payout's payments, which must all sync to one QuickBooks company: a Deposit lives in
    one company and links that company's payments only. Raises: `FailedPreconditionError` (reason
    PAYOUT_SPANS_COMPANIES) naming the branches when they sync to different companies."""
    branches = sorted({o.branch_id for o in opportunities})
    if len(branches) <= 1:
        return branches[0] if branches else ""
    companies: dict[str, list[str]] = {}
    for branch in branches:
        connection = uow.connections.for_branch(tenant, branch)
        companies.setdefault(connection.branch_id if connection is not None else "", []).append(branch or "(none)")
    if len(companies) > 1:
        raise FailedPreconditionError(
            f"payout {payout.payout_id} holds payments of branches that sync to different QuickBooks companies "
            f"({'; '.join(', '.join(b) for b in companies.values())}): a deposit lives in one company, so send "
            "one payout per company",
            reason=PAYOUT_SPANS_COMPANIES,
        )
    return branches[0]


def _listed_payments(uow: UnitOfWork, tenant: str, payout: Payout) -> dict[str, StoredPayment]:
    found: dict[str, StoredPayment] = {}
    unknown = []
    for payment_id in payout.payment_ids:
        stored = uow.snapshots.get_payment(tenant, payment_id)
        if stored is None:
            unknown.append(payment_id)
        else:
            found[payment_id] = stored
    if unknown:
        # Another tenant's payment is unknown here too: the two are never told apart.
        raise FailedPreconditionError(
            f"payout {payout.payout_id} lists payments qbsync was never sent: {', '.join(unknown)}; "
            "send each with SyncPayment (or CloseOutJob) first",
            metadata={"payment_ids": ",".join(unknown)},
            reason=PAYMENT_UNKNOWN,
        )
    return found


def _refund_owners(uow: UnitOfWork, tenant: str, payout: Payout) -> dict[str, StoredPayment]:
    """refund id → its payment. A refund netted from a payout must belong to a payment the payout lists, or
    to one an earlier payout deposited: a refund of a payment still in Undeposited Funds would take money
    from the bank that never reached it."""
    owners: dict[str, StoredPayment] = {}
    for refund_id in payout.refund_ids:
        owner_id = uow.snapshots.payment_of_refund(tenant, refund_id)
        stored = uow.snapshots.get_payment(tenant, owner_id) if owner_id is not None else None
        if stored is None:
            raise FailedPreconditionError(
                f"payout {payout.payout_id} lists refund {refund_id}, which qbsync was never sent: "
                "send it with its payment (SyncPayment) first",
                metadata={"refund_id": refund_id},
                reason=PAYMENT_UNKNOWN,
            )
        assert owner_id is not None
        holder = uow.snapshots.payout_of_payment(tenant, owner_id)
        if owner_id not in payout.payment_ids and holder in (None, payout.payout_id):
            raise FailedPreconditionError(
                f"payout {payout.payout_id} lists refund {refund_id} of payment {owner_id}, which is neither in "
                "this payout nor deposited by an earlier one",
                metadata={"refund_id": refund_id, "payment_id": owner_id},
                reason=REFUND_NOT_IN_PAYOUT,
            )
        owners[refund_id] = stored
    return owners


def _refuse_payments_of_other_payouts(uow: UnitOfWork, tenant: str, payout: Payout) -> None:
    for payment_id in payout.payment_ids:
        holder = uow.snapshots.payout_of_payment(tenant, payment_id)
        if holder is not None and holder != payout.payout_id:
            raise FailedPreconditionError(
                f"payment {payment_id} is already in payout {holder} (a payment is in one bank deposit only); "
                f"resync payout {holder} without it first",
                metadata={"payment_id": payment_id, "payout_id": holder},
                reason=PAYMENT_IN_ANOTHER_PAYOUT,
            )


def _refuse_refunds_of_other_payouts(uow: UnitOfWork, tenant: str, payout: Payout) -> None:
    """A refund is netted by one payout at most: netted by two, it would be taken from the bank twice."""
    for refund_id in payout.refund_ids:
        holder = uow.snapshots.payout_of_refund(tenant, refund_id)
        if holder is not None and holder != payout.payout_id:
            raise FailedPreconditionError(
                f"refund {refund_id} is already netted by payout {holder} (a refund comes out of one bank "
                f"deposit only); resync payout {holder} without it first",
                metadata={"refund_id": refund_id, "payout_id": holder},
                reason=REFUND_IN_ANOTHER_PAYOUT,
            )


def _waits_for_its_job(uow: UnitOfWork, tenant: str, stored: StoredPayment, payout: Payout) -> bool:
    """Whether the payment (or a refund of it the payout nets) is not in QuickBooks and no job of its own is
    queued to put it there: a PENDING record has one (R8)."""
    refs = [_payment_ref(stored.payment.payment_id)]
    netted = [r.refund_id for r in stored.payment.refunds if r.refund_id in payout.refund_ids]
    refs += [EntityRef(EntityType.REFUND, refund_id) for refund_id in netted]
    for ref in refs:
        record = uow.sync_records.get(tenant, ref)
        if record is None or (not record.quickbooks_id and record.state is not SyncState.PENDING):
            return True
    return False


def _payment_ref(payment_id: str) -> EntityRef:
    return EntityRef(EntityType.PAYMENT, payment_id)
