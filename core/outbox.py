"""Accepting a sync request as a transactional outbox (SPEC.md section 3): the CRM snapshot is stored, the
records it names are marked PENDING and a SyncJob is queued, all in one transaction — the job is never
queued without its data, nor the data without its job. A request_id makes a resend answer with the job it
made (R7), judged by the request's fingerprint (core/fingerprint.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

from core.domain import (
    AuditEvent,
    AuditKind,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    SyncJob,
    SyncJobKind,
    SyncRecord,
    SyncState,
    in_lock_order,
)
from core.errors import FailedPreconditionError, FieldViolation, RequestIdReusedError, ValidationError
from core.ports import Clock, IdSource, RequestIdTakenError, UnitOfWork, UnitOfWorkFactory
from core.validation import refunds_within_payment

PAYMENT_DEPOSITED = "PAYMENT_DEPOSITED"  # the reason a change to a payment in a payout is refused
VOIDED = "VOIDED"  # the reason a sync naming a record voided from the CRM is refused (SPEC §11)


class Outbox:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdSource, max_attempts: int) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids
        self._max_attempts = max_attempts

    def accept(
        self,
        tenant: str,
        kind: SyncJobKind,
        target: EntityRef,
        opportunity: Opportunity | None,
        request_id: str,
        fingerprint: str,
        stage: Callable[[UnitOfWork], Sequence[SyncRecord] | str | None],
    ) -> SyncJob:
        """Queues a job of `kind` for `target` after `stage` stored the request's snapshots (in the same
        transaction); a request_id seen before answers with its job instead, if the request is the same.
        `stage` may return the records it marked PENDING: the target among them is not read nor written again.
        `opportunity`: the one the job syncs; None for a payout, whose payments may belong to many: its `stage`
        returns the branch the job syncs to instead (SPEC §10; an opportunity's job syncs to its branch's)."""
        try:
            with self._uow_factory() as uow:
                if request_id:
                    earlier = uow.jobs.find_by_request_id(tenant, request_id)
                    if earlier is not None:
                        return _same_request(earlier, fingerprint, request_id)
                staged = stage(uow)
                branch = staged if isinstance(staged, str) else None
                records = staged if not isinstance(staged, str) else None
                marked = next((record for record in records or () if record.entity == target), None)
                job = self.queue(
                    uow,
                    tenant,
                    kind,
                    target,
                    opportunity,
                    request_id=request_id,
                    fingerprint=fingerprint,
                    marked=marked,
                    branch_id=branch,
                )
                uow.commit()
                return job
        except RequestIdTakenError:
            # Two identical requests raced: the other one won; answer as if we had come second.
            with self._uow_factory.read_only() as uow:
                earlier = uow.jobs.find_by_request_id(tenant, request_id)
            if earlier is None:
                raise
            return _same_request(earlier, fingerprint, request_id)

    def queue(
        self,
        uow: UnitOfWork,
        tenant: str,
        kind: SyncJobKind,
        target: EntityRef,
        opportunity: Opportunity | None,
        *,
        request_id: str = "",
        fingerprint: str = "",
        marked: SyncRecord | None = None,
        branch_id: str | None = None,
    ) -> SyncJob:
        """Adds the job to `uow` (the caller commits), its target PENDING, with its audit event. `marked`: the
        target's record if this unit of work marked it PENDING already (and so holds it as saved). `branch_id`:
        the branch the job syncs to; None: the opportunity's."""
        # Marking PENDING keeps last_synced_time, hence resync_available: one read serves both.
        (record,) = [marked] if marked is not None else mark_pending(uow, tenant, [target])
        now = self._clock.now()
        job = SyncJob(
            job_id=self._ids.new_id(),
            tenant_id=tenant,
            kind=kind,
            target=target,
            opportunity_id=opportunity.opportunity_id if opportunity else "",
            customer_id=opportunity.customer.customer_id if opportunity else "",
            create_time=now,
            update_time=now,
            resync=record.resync_available,
            request_id=request_id,
            request_fingerprint=fingerprint,
            max_attempts=self._max_attempts,
            identity_key=opportunity.customer.identity_key(tenant) if opportunity else "",
            branch_id=branch_id if branch_id is not None else (opportunity.branch_id if opportunity else ""),
        )
        uow.jobs.add(job, accepted=AuditEvent(tenant, now, AuditKind.accepted(kind), target, job.job_id, ""))
        return job

    @staticmethod
    def stage_opportunity(uow: UnitOfWork, tenant: str, opportunity: Opportunity, path: str) -> None:
        owner = uow.snapshots.save_opportunity_of_its_customer(tenant, opportunity)
        if owner is not None:
            raise ValidationError(
                [
                    FieldViolation(
                        f"{path}.customer.customer_id",
                        f"opportunity {opportunity.opportunity_id} belongs to customer {owner}",
                    )
                ]
            )

    @staticmethod
    def stage_payment(
        uow: UnitOfWork, tenant: str, opportunity: Opportunity, payment: Payment, path: str
    ) -> list[SyncRecord]:
        """Stores the payment (its refunds merged with those stored) and returns its records and its refunds',
        marked PENDING."""
        known = uow.snapshots.get_payment(tenant, payment.payment_id)
        if known is not None and known.opportunity_id != opportunity.opportunity_id:
            raise ValidationError(
                [FieldViolation(f"{path}.payment_id", f"payment {payment.payment_id} belongs to another opportunity")]
            )
        if known is not None:
            refuse_voided(uow, tenant, EntityRef(EntityType.PAYMENT, payment.payment_id), f"{path}.payment_id")
            _refuse_changing_deposited(uow, tenant, known.payment, payment, path)
        merged = payment.with_refunds_merged(known.payment if known else None)
        violations = refunds_within_payment(merged, path)
        for i, refund in enumerate(payment.refunds):
            owner = uow.snapshots.payment_of_refund(tenant, refund.refund_id)
            if owner is not None and owner != payment.payment_id:
                violations.append(
                    FieldViolation(
                        f"{path}.refunds[{i}].refund_id", f"refund {refund.refund_id} belongs to another payment"
                    )
                )
        if violations:
            raise ValidationError(violations)
        uow.snapshots.save_payment(tenant, opportunity.opportunity_id, merged)
        refs = [EntityRef(EntityType.PAYMENT, payment.payment_id)]
        refs += [EntityRef(EntityType.REFUND, r.refund_id) for r in merged.refunds]
        return mark_pending(uow, tenant, refs)


def mark_pending(uow: UnitOfWork, tenant: str, refs: list[EntityRef], *, keep_error: bool = False) -> list[SyncRecord]:
    """R8: the records a request names are PENDING until its job runs (in the request's transaction).
    Returns them as saved."""
    ordered = list(dict.fromkeys(in_lock_order(refs)))  # a ref named twice is one record
    known = uow.sync_records.get_many(tenant, ordered)
    records = {}
    for ref in ordered:
        record = known.get(ref) or SyncRecord(tenant_id=tenant, entity=ref)
        record.mark_pending(keep_error=keep_error)
        records[ref] = record
    uow.sync_records.save_many(list(records.values()))  # in lock order: the dict keeps `ordered`'s
    return [records[ref] for ref in refs]


def refuse_voided(uow: UnitOfWork, tenant: str, entity: EntityRef, path: str) -> None:
    """A record voided from the CRM is final (SPEC §11): a later sync naming it is FAILED_PRECONDITION (reason
    VOIDED) rather than bring it back to life in QuickBooks. The CRM leaves it out of its requests instead."""
    record = uow.sync_records.get(tenant, entity)
    if record is not None and record.state is SyncState.VOIDED:
        raise FailedPreconditionError(
            f"{entity.type.value.lower()} {entity.id} was voided (VoidPayment/VoidInvoice) and cannot be synced "
            "again: leave it out of the request",
            metadata={"field": path, "quickbooks_id": record.quickbooks_id or ""},
            reason=VOIDED,
        )


def _refuse_changing_deposited(uow: UnitOfWork, tenant: str, known: Payment, payment: Payment, path: str) -> None:
    """SPEC §9: a payment in a payout is in a bank deposit, which must keep matching the bank: its amount, and
    that of a refund any payout nets, cannot change (QuickBooks refuses the first too) until that payout is
    resynced without it."""
    if known.amount != payment.amount:
        payout_id = uow.snapshots.payout_of_payment(tenant, payment.payment_id)
        if payout_id is not None:
            _refuse_deposited(payment, payout_id, f"{path}.amount", f"payment {payment.payment_id} is deposited")
    earlier = {r.refund_id: r.amount for r in known.refunds}
    for i, refund in enumerate(payment.refunds):
        if earlier.get(refund.refund_id, refund.amount) == refund.amount:
            continue
        payout_id = uow.snapshots.payout_of_refund(tenant, refund.refund_id)
        if payout_id is not None:
            _refuse_deposited(payment, payout_id, f"{path}.refunds[{i}].amount", f"refund {refund.refund_id} is netted")


def _refuse_deposited(payment: Payment, payout_id: str, field: str, what: str) -> NoReturn:
    raise FailedPreconditionError(
        f"{what} in payout {payout_id}: its amount cannot change while it is; "
        f"resync payout {payout_id} without it first",
        metadata={"payment_id": payment.payment_id, "payout_id": payout_id, "field": field},
        reason=PAYMENT_DEPOSITED,
    )


def _same_request(earlier: SyncJob, fingerprint: str, request_id: str) -> SyncJob:
    if earlier.request_fingerprint != fingerprint:
        raise RequestIdReusedError(
            f"request_id {request_id!r} was already used for a different request",
            metadata={"request_id": request_id, "sync_job": earlier.name},
        )
    return earlier
