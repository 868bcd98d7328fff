"""ReconcileCompany (SPEC §11): the CRM's totals as qbsync last received them against QuickBooks' books.

For a period (inclusive, over each CRM record's own date: a payment's received date, a refund's refund date,
a job's service date, a payout's arrival date), every payment, refund, closed-out invoice and payout qbsync
received is compared with what QuickBooks holds for it now, and every difference is listed in words a
bookkeeper understands, with both amounts (R10: the books balance). What is compared:

- a record qbsync never synced (NOT_SYNCED, PENDING, FAILED): reported as such, with the CRM's amount;
- deleted in QuickBooks, or voided there while the CRM still has it; a record voided through qbsync
  (SyncState.VOIDED) is voided on purpose and no difference;
- a payment's or refund's amount, an invoice's total, a deposit's total against the payout's amount;
- an invoice's balance against its total less what qbsync applied to it (`SyncRecord.applied`);
- what a payment's lines link (its invoices and refund expenses) against what qbsync wrote;
- a payment a payout lists that its deposit no longer takes out of Undeposited Funds.

QuickBooks is read as little as possible (reads are metered: QUICKBOOKS.md): one query per kind of record
and company (`AccountingSystem.read_amounts`, by Id), the records grouped by the company their branch syncs to
(SPEC §10). The period is at most a year for the same reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from core.accounting import QuickBooksAmounts, TxnKind
from core.connection import QuickBooksConnection
from core.domain import (
    EntityRef,
    EntityType,
    Job,
    Payment,
    Payout,
    Permission,
    Principal,
    SyncRecord,
    SyncState,
)
from core.errors import FieldViolation, ValidationError, merge_violations
from core.money import ZERO, money_sum
from core.ports import AccountingSystems, UnitOfWork, UnitOfWorkFactory
from core.service import require
from core.transaction_writer import refund_kind

# QuickBooks' reads are metered (QUICKBOOKS.md): a year of records is what a bookkeeper closes at once, and
# bounds what one call may read.
MAX_PERIOD_DAYS = 366
_PAYOUT_PAGE = 500


@dataclass(frozen=True)
class Difference:
    """One way QuickBooks' books differ from the CRM for `entity`: `what` in a bookkeeper's words, the amount
    the CRM (as qbsync last received it) says and the one QuickBooks holds (None where there is none: a
    deleted record, one never synced). `quickbooks_id` "" when the record is not in QuickBooks;
    `customer_id` the CRM customer ("" for a payout); `branch_id` the opportunity's branch."""

    entity: EntityRef
    quickbooks_id: str
    what: str
    crm_amount: Decimal | None
    quickbooks_amount: Decimal | None
    customer_id: str = ""
    branch_id: str = ""


@dataclass
class _Check:
    """One CRM record to compare: what it is, its CRM amount and what qbsync knows of its QuickBooks record."""

    entity: EntityRef
    kind: TxnKind
    crm_amount: Decimal
    record: SyncRecord | None
    customer_id: str
    branch_id: str
    payment: Payment | None = None
    job: Job | None = None
    payout: Payout | None = None


def period_violations(start: date | None, end: date | None) -> list[FieldViolation]:
    """The period's faults, each naming its field: both dates required, in order, at most a year apart."""
    violations: list[FieldViolation] = []
    if start is None:
        violations.append(FieldViolation("start_date", "a valid date is required"))
    if end is None:
        violations.append(FieldViolation("end_date", "a valid date is required"))
    if start is not None and end is not None:
        if end < start:
            violations.append(FieldViolation("end_date", "must not be before start_date"))
        elif (end - start).days >= MAX_PERIOD_DAYS:
            violations.append(
                FieldViolation(
                    "end_date",
                    "the period is at most a year: QuickBooks meters reads, reconcile a year at a time",
                )
            )
    return violations


@dataclass
class _Period:
    """The period's records to compare, and what each invoice's balance should reflect: what qbsync applied
    to it (by job id), summed over the records of every payment of its opportunity, whatever their dates;
    and the sync records of the payments payouts list and of the refunds of the period's payments."""

    checks: list[_Check] = field(default_factory=list)
    applied: dict[str, Decimal] = field(default_factory=dict)
    others: dict[EntityRef, SyncRecord] = field(default_factory=dict)


class ReconcileService:
    """ReconcileCompany: permission `read`; writes nothing, in qbsync or QuickBooks."""

    def __init__(self, uow_factory: UnitOfWorkFactory, accounting: AccountingSystems) -> None:
        self._uow_factory = uow_factory
        self._accounting = accounting

    def reconcile(
        self,
        principal: Principal,
        start: date | None,
        end: date | None,
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> list[Difference]:
        """Every difference between the CRM's records of the period and QuickBooks' books, by entity; none for
        a company whose books agree. INVALID_ARGUMENT naming the field for a missing, reversed or too long
        period (with `conversion_violations`, the fields an adapter could not read). QuickBooks' errors
        (unreachable, throttled, reconnect required) are raised as they are."""
        require(principal, Permission.READ)
        violations = merge_violations(conversion_violations, period_violations(start, end))
        if violations:
            raise ValidationError(violations)
        assert start is not None and end is not None
        tenant = principal.tenant_id
        with self._uow_factory.read_only() as uow:
            period = _read_period(uow, tenant, start, end)
            routes: dict[str, QuickBooksConnection | None] = {}
            companies: dict[str, list[_Check]] = defaultdict(list)
            connection_of: dict[str, QuickBooksConnection | None] = {}
            for check in period.checks:
                if check.branch_id not in routes:
                    routes[check.branch_id] = uow.connections.for_branch(tenant, check.branch_id)
                connection = routes[check.branch_id]
                company = connection.branch_id if connection is not None else ""
                connection_of[company] = connection
                companies[company].append(check)
        differences: list[Difference] = []
        for company, checks in companies.items():
            differences += self._reconcile_company(tenant, company, connection_of[company], checks, period)
        return sorted(differences, key=lambda d: (d.entity.type.value, d.entity.id, d.what))

    def _reconcile_company(
        self,
        tenant: str,
        company: str,
        connection: QuickBooksConnection | None,
        checks: list[_Check],
        period: _Period,
    ) -> list[Difference]:
        differences: list[Difference] = []
        synced: dict[TxnKind, list[_Check]] = defaultdict(list)
        for check in checks:
            record = check.record
            if record is not None and record.state is SyncState.VOIDED:
                continue  # voided through qbsync, on purpose: no difference
            if record is None or record.quickbooks_id is None:
                error = f": {record.last_error}" if record is not None and record.last_error else ""
                differences.append(
                    _diff(check, "", f"{_NOUNS[check.entity.type]} not synced to QuickBooks{error}", None)
                )
                continue
            synced[check.kind].append(check)
        if not synced:
            return differences
        accounting = self._accounting.for_tenant(tenant, connection, branch_id=company)
        books = {kind: accounting.read_amounts(kind, [_qbo_id(c) for c in found]) for kind, found in synced.items()}
        for kind, found in synced.items():
            for check in found:
                differences += _compare(check, books[kind], period)
        return differences


def _qbo_id(check: _Check) -> str:
    assert check.record is not None and check.record.quickbooks_id is not None
    return check.record.quickbooks_id


def _read_period(uow: UnitOfWork, tenant: str, start: date, end: date) -> _Period:
    """The period's CRM records with their sync records, read in one transaction."""
    period = _Period()
    applying: list[EntityRef] = []  # the payments of opportunities with an invoice of the period
    others: list[EntityRef] = []
    for opportunity in uow.snapshots.list_opportunities(tenant):
        customer = opportunity.customer.customer_id
        branch = opportunity.branch_id
        payments = uow.snapshots.payments_of(tenant, opportunity.opportunity_id)
        for payment in payments:
            if start <= payment.received_time.date() <= end:
                period.checks.append(
                    _Check(
                        EntityRef(EntityType.PAYMENT, payment.payment_id),
                        TxnKind.PAYMENT,
                        payment.amount,
                        None,
                        customer,
                        branch,
                        payment=payment,
                    )
                )
                others += [EntityRef(EntityType.REFUND, r.refund_id) for r in payment.refunds]
            for refund in payment.refunds:
                if start <= refund.refunded_time.date() <= end:
                    period.checks.append(
                        _Check(
                            EntityRef(EntityType.REFUND, refund.refund_id),
                            refund_kind(payment.method),
                            refund.amount,
                            None,
                            customer,
                            branch,
                        )
                    )
        invoices = [
            closed.job
            for closed in uow.snapshots.closed_jobs_of(tenant, opportunity.opportunity_id)
            if start <= closed.job.service_date <= end
        ]
        for job in invoices:
            period.checks.append(
                _Check(
                    EntityRef(EntityType.INVOICE, job.job_id),
                    TxnKind.INVOICE,
                    job.total,
                    None,
                    customer,
                    branch,
                    job=job,
                )
            )
        if invoices:
            applying += [EntityRef(EntityType.PAYMENT, p.payment_id) for p in payments]
    offset = 0
    while True:
        page = uow.snapshots.list_payouts(tenant, offset=offset, limit=_PAYOUT_PAGE)
        for payout in page:
            if start <= payout.arrival_date <= end:
                period.checks.append(
                    _Check(
                        EntityRef(EntityType.PAYOUT, payout.payout_id),
                        TxnKind.DEPOSIT,
                        payout.amount,
                        None,
                        "",
                        _branch_of_payout(uow, tenant, payout),
                        payout=payout,
                    )
                )
                others += [EntityRef(EntityType.PAYMENT, p) for p in payout.payment_ids]
        if len(page) < _PAYOUT_PAGE or page[-1].arrival_date < start:  # newest arrival first: the rest is older
            break
        offset += _PAYOUT_PAGE
    records = uow.sync_records.get_many(tenant, [*{c.entity for c in period.checks}, *applying, *others])
    for check in period.checks:
        check.record = records.get(check.entity)
    applied: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for entity in dict.fromkeys(applying):
        record = records.get(entity)
        if record is not None and record.state is not SyncState.VOIDED:
            for job_id, amount in record.applied.items():
                applied[job_id] += amount
    period.applied = dict(applied)
    period.others = records
    return period


def _branch_of_payout(uow: UnitOfWork, tenant: str, payout: Payout) -> str:
    """A payout is in its payments' company (core/payout_intake.py made sure they share one)."""
    for payment_id in payout.payment_ids:
        stored = uow.snapshots.get_payment(tenant, payment_id)
        opportunity = uow.snapshots.get_opportunity(tenant, stored.opportunity_id) if stored else None
        if opportunity is not None:
            return opportunity.branch_id
    return ""


def _compare(check: _Check, books: dict[str, QuickBooksAmounts], period: _Period) -> list[Difference]:
    qbo_id = _qbo_id(check)
    noun = _NOUNS[check.entity.type]
    held = books.get(qbo_id)
    if held is None:
        return [_diff(check, qbo_id, f"{noun} deleted in QuickBooks", None)]
    if held.voided:
        return [_diff(check, qbo_id, f"{noun} voided in QuickBooks but not in the CRM", held.total)]
    differences: list[Difference] = []
    if held.total != check.crm_amount:
        what = "invoice total differs" if check.job is not None else f"{noun} amount differs"
        if check.payout is not None:
            what = "deposit total differs from the payout's amount"
        differences.append(_diff(check, qbo_id, what, held.total))
    if check.job is not None:
        expected = held.total - period.applied.get(check.job.job_id, ZERO)
        if held.open != expected:
            differences.append(
                _diff(
                    check,
                    qbo_id,
                    "invoice balance differs from its total less the payments qbsync applied",
                    held.open,
                    crm_amount=expected,
                )
            )
    if check.payment is not None:
        assert check.record is not None
        refunds = [period.others.get(EntityRef(EntityType.REFUND, r.refund_id)) for r in check.payment.refunds]
        linked_refunds = money_sum(
            r.amount
            for r, rec in zip(check.payment.refunds, refunds, strict=True)
            if rec is not None and rec.quickbooks_id and rec.state is not SyncState.VOIDED
        )
        expected_links = money_sum(check.record.applied.values()) + linked_refunds
        if held.linked != expected_links:
            differences.append(
                _diff(
                    check,
                    qbo_id,
                    "payment's applied total differs (what it pays on invoices and links to refund expenses)",
                    held.linked,
                    crm_amount=expected_links,
                )
            )
    if check.payout is not None:
        for payment_id in check.payout.payment_ids:
            record = period.others.get(EntityRef(EntityType.PAYMENT, payment_id))
            if record is None or not record.quickbooks_id or record.state is SyncState.VOIDED:
                continue
            if record.quickbooks_id not in held.linked_ids:
                differences.append(
                    Difference(
                        EntityRef(EntityType.PAYMENT, payment_id),
                        record.quickbooks_id,
                        f"payment still in Undeposited Funds, though payout {check.payout.payout_id} deposited it",
                        record.amount,
                        record.amount,
                        branch_id=check.branch_id,
                    )
                )
    return differences


def _diff(
    check: _Check,
    quickbooks_id: str,
    what: str,
    quickbooks_amount: Decimal | None,
    *,
    crm_amount: Decimal | None = None,
) -> Difference:
    return Difference(
        check.entity,
        quickbooks_id,
        what,
        check.crm_amount if crm_amount is None else crm_amount,
        quickbooks_amount,
        check.customer_id,
        check.branch_id,
    )


_NOUNS = {
    EntityType.PAYMENT: "payment",
    EntityType.REFUND: "refund expense",
    EntityType.INVOICE: "invoice",
    EntityType.PAYOUT: "deposit",
    EntityType.CUSTOMER: "customer",
}
