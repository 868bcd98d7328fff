"""Test data for the persistence contract suite (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import URL

from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncJob,
    SyncJobKind,
    SyncJobState,
)
from core.ports import UnitOfWorkFactory


@dataclass
class Backend:
    """One persistence backend under test: its unit-of-work factory and, for SQL, its database URL."""

    name: str
    uow: UnitOfWorkFactory
    url: URL | None = None  # None for the in-memory fake


T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def opportunity(opportunity_id: str = "O1", customer_id: str = "C1", first_name: str = "Ann") -> Opportunity:
    customer = Customer(
        customer_id=customer_id,
        first_name=first_name,
        last_name="Lee",
        company_name="",
        email="ann@example.com",
        phone="555-0100",
    )
    return Opportunity(opportunity_id=opportunity_id, number="1001", customer=customer)


def payment(
    payment_id: str = "P1",
    amount: str = "1234567.89",
    received: datetime = T0,
    refunds: tuple[Refund, ...] = (),
) -> Payment:
    return Payment(
        payment_id=payment_id,
        amount=Decimal(amount),
        method=PaymentMethod.CHECK,
        received_time=received,
        reference="chk 42",
        refunds=refunds,
    )


def refund(refund_id: str, amount: str = "0.10", when: datetime = T0) -> Refund:
    return Refund(refund_id=refund_id, amount=Decimal(amount), refunded_time=when, memo="dent")


def crm_job(job_id: str = "J1", description: str = "Movers") -> Job:
    lines = (
        InvoiceLine(description, Decimal("3.5"), Decimal("120.00"), Decimal("420.00")),
        InvoiceLine("Truck", Decimal("1"), Decimal("0.10"), Decimal("0.10")),
    )
    return Job(job_id=job_id, number="J-100", service_date=date(2025, 2, 28), lines=lines)


def sync_job(
    job_id: str,
    *,
    tenant_id: str = "t1",
    customer_id: str | None = None,
    created: datetime = T0,
    request_id: str = "",
    state: SyncJobState = SyncJobState.PENDING,
    next_attempt: datetime | None = None,
    lease_expires: datetime | None = None,
    identity_key: str = "",
    attempts: int = 0,
    payout_id: str = "",
) -> SyncJob:
    """A SyncPayment job; with `payout_id`, that payout's SyncPayout job instead, which names no opportunity,
    customer or identity (its lock key is `<tenant>/payout/<payout_id>`, SPEC §9)."""
    return SyncJob(
        job_id=job_id,
        tenant_id=tenant_id,
        kind=SyncJobKind.SYNC_PAYOUT if payout_id else SyncJobKind.SYNC_PAYMENT,
        target=EntityRef(EntityType.PAYOUT, payout_id) if payout_id else EntityRef(EntityType.PAYMENT, f"P-{job_id}"),
        opportunity_id="" if payout_id else "O1",
        customer_id="" if payout_id else customer_id if customer_id is not None else f"C-{job_id}",
        create_time=created,
        update_time=created,
        state=state,
        attempts=attempts,
        request_id=request_id,
        request_fingerprint="fp" if request_id else "",
        next_attempt_time=next_attempt,
        claimed_by="w0" if state is SyncJobState.RUNNING else "",
        lease_expires=lease_expires,
        identity_key="" if payout_id else identity_key,
    )
