"""SPEC §9 at run time: a payout's one bank deposit, from the payout's newest snapshot.

The deposit links each listed payment out of Undeposited Funds for its whole amount, and nets from it what
the processor kept back: one line per refund, one for the fees, one for the chargebacks, one per adjustment.
Its lines add up to the payout's amount (checked at accept), and QuickBooks' total is compared with it
after the write: a deposit that does not match the bank feed is the one thing a payout must never leave.

The job writes the deposit only. A payment (or netted refund) not yet in QuickBooks as the payout lists it
has its own SyncPayment job, queued at accept (core/payout_intake.py): until it has run, this job fails
retryably rather than write a payment under another job's nose (R7: one writer per record).
"""

from __future__ import annotations

from core.accounting import NO_TRACKING, DepositLine, DepositLineKind, DepositSpec, Tracking
from core.domain import EntityRef, EntityType, Opportunity, Payout, StoredPayment, SyncRecord, SyncState
from core.errors import (
    DepositTotalMismatchError,
    FailedPreconditionError,
    PayoutPaymentFailedError,
    PayoutWaitingError,
)
from core.record_writer import RecordWriter, SpecBuilder, SyncResults
from core.sync_run import SyncRun


def write_payout_deposit(run: SyncRun, results: SyncResults) -> None:
    payout, payments, opportunities = _load(run)
    lines = [*_payment_lines(run, payout, payments), *_kept_back_lines(run, payout, payments)]
    entity = EntityRef(EntityType.PAYOUT, payout.payout_id)

    def remember(record: SyncRecord) -> None:
        record.amount = payout.amount

    # Forced: an explicit sync rewrites the deposit, which is how a resync finds it deleted in QuickBooks.
    spec = deposit_spec(payout, lines, _tracking(run, opportunities))
    written = RecordWriter(run, "", results).write(entity, spec, force=True, on_written=remember)
    if written.quickbooks_total is not None and written.quickbooks_total != payout.amount:
        raise DepositTotalMismatchError(payout.payout_id, payout.amount, written.quickbooks_total)


def deposit_spec(payout: Payout, lines: list[DepositLine], tracking: Tracking = NO_TRACKING) -> SpecBuilder:
    def spec(marker: str) -> DepositSpec:
        return DepositSpec(
            txn_date=payout.arrival_date,
            lines=tuple(lines),
            private_note=f"CRM payout {payout.payout_id} {marker}",
            marker=marker,
            tracking=tracking,
        )

    return spec


def _tracking(run: SyncRun, opportunities: list[Opportunity]) -> Tracking:
    """The deposit's class and location (SPEC §10): its payments' branch mapping when they all share one
    branch and service type; none when they are several branches' (a deposit has one location, and its
    payment lines, linked out of Undeposited Funds, take no class)."""
    kinds = {(o.branch_id, o.service_type) for o in opportunities}
    return run.tracking(opportunities[0]) if len(kinds) == 1 else NO_TRACKING


def _load(run: SyncRun) -> tuple[Payout, dict[str, StoredPayment], list[Opportunity]]:
    """The payout, every payment it lists or nets a refund of, as last received, and their opportunities."""
    with run.uow_factory() as uow:
        payout = uow.snapshots.get_payout(run.tenant, run.job.target.id)
        if payout is None:
            raise FailedPreconditionError(f"payout {run.job.target.id} is not known to qbsync")
        ids = list(payout.payment_ids)
        ids += [owner for r in payout.refund_ids if (owner := uow.snapshots.payment_of_refund(run.tenant, r))]
        payments = {pid: stored for pid in ids if (stored := uow.snapshots.get_payment(run.tenant, pid))}
        owners = dict.fromkeys(stored.opportunity_id for stored in payments.values())
        opportunities = [o for oid in owners if (o := uow.snapshots.get_opportunity(run.tenant, oid))]
    return payout, payments, opportunities


def _payment_lines(run: SyncRun, payout: Payout, payments: dict[str, StoredPayment]) -> list[DepositLine]:
    lines = []
    waiting = _Waiting(payout)
    for payment_id in payout.payment_ids:
        payment = payments[payment_id].payment
        record = run.record(EntityRef(EntityType.PAYMENT, payment_id))
        # QuickBooks takes a payment into a deposit whole: for its TotalAmt as written, which must be the
        # amount listed (a payment whose change is still queued is waited for).
        if waiting.ready(record, payment.amount):
            memo = f"Payment {payment_id}" + (f" ({payment.reference})" if payment.reference else "")
            assert record.quickbooks_id is not None
            lines.append(DepositLine(DepositLineKind.PAYMENT, payment.amount, record.quickbooks_id, memo))
    waiting.raise_if_any()
    return lines


def _kept_back_lines(run: SyncRun, payout: Payout, payments: dict[str, StoredPayment]) -> list[DepositLine]:
    """What the processor kept back (negative lines) and the adjustments (signed)."""
    refunds = {r.refund_id: (p.payment.payment_id, r) for p in payments.values() for r in p.payment.refunds}
    lines = []
    waiting = _Waiting(payout)
    for refund_id in payout.refund_ids:
        payment_id, refund = refunds[refund_id]
        # Netted against the refund's own expense, which must be in the books for the refund to count once.
        if waiting.ready(run.record(EntityRef(EntityType.REFUND, refund_id)), refund.amount):
            memo = f"Refund {refund_id} of payment {payment_id}" + (f": {refund.memo}" if refund.memo else "")
            lines.append(DepositLine(DepositLineKind.REFUND, -refund.amount, memo=memo))
    waiting.raise_if_any()
    if payout.fees:
        lines.append(DepositLine(DepositLineKind.FEE, -payout.fees, memo="Processing fees"))
    if payout.chargebacks:
        lines.append(DepositLine(DepositLineKind.CHARGEBACK, -payout.chargebacks, memo="Chargebacks"))
    for adjustment in payout.adjustments:
        lines.append(DepositLine(DepositLineKind.ADJUSTMENT, adjustment.amount, memo=adjustment.memo or "Adjustment"))
    return lines


class _Waiting:
    """Which records a deposit needs are not yet in QuickBooks as listed: failed for good (a person must
    fix them first), or with their job still to run (retry later)."""

    def __init__(self, payout: Payout) -> None:
        self._payout = payout
        self._failed: list[SyncRecord] = []
        self._pending: list[SyncRecord] = []

    def ready(self, record: SyncRecord, amount: object) -> bool:
        if record.quickbooks_id and record.amount == amount:
            return True
        (self._failed if record.state is SyncState.FAILED else self._pending).append(record)
        return False

    def raise_if_any(self) -> None:
        payout = self._payout.payout_id
        if self._failed:
            first = self._failed[0]
            raise PayoutPaymentFailedError(
                f"payout {payout} waits for {_named(self._failed)}, whose sync failed ({first.last_error}); fix "
                "that and retry its sync (`qbsync retry --all` retries this payout too)"
            )
        if self._pending:
            raise PayoutWaitingError(
                f"payout {payout} waits for {_named(self._pending)} to be synced to QuickBooks (queued)"
            )


def _named(records: list[SyncRecord]) -> str:
    return ", ".join(f"{r.entity.type.value.lower()} {r.entity.id}" for r in records)
