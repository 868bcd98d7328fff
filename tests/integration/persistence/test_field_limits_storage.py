"""No NUL reaches the database (SPEC.md section 7): PostgreSQL cannot store one in text, SQLite would pass
it on to QuickBooks. Through SyncService on each backend (PostgreSQL when QBSYNC_TEST_DATABASE_URL is set):
NULs and other control characters in names and notes are collapsed before anything is stored, and ids,
request ids and looked-up ids that hold one are INVALID_ARGUMENT — never a database error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from persistence_builders import Backend

from adapters.quickbooks.fake import FakeQuickBooksCompanies
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Permission,
    Principal,
    Refund,
    SyncJobState,
)
from core.errors import ValidationError
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker

T = datetime(2026, 4, 1, 10, tzinfo=UTC)
NUL = "\x00"


def test_nul_in_names_and_notes_is_collapsed_before_it_is_stored(backend: Backend) -> None:
    companies = FakeQuickBooksCompanies()
    service, worker, principal = _core(backend, companies)
    customer = Customer("c1", f"Mary{NUL}", f"O'Brien{NUL}Smith", f"Acme{NUL}", f"mary{NUL}@example.com", f"555{NUL}1")
    opportunity = Opportunity("o1", f"10{NUL}01", customer)
    payment = Payment(
        "p1", Decimal("100.00"), PaymentMethod.CASH, T, f"chk{NUL}1", (Refund("r1", Decimal("10.00"), T, f"sofa{NUL}"),)
    )
    job = Job(
        "j1",
        f"J{NUL}1",
        date(2026, 4, 2),
        (InvoiceLine(f"Move{NUL}", Decimal("1"), Decimal("50.00"), Decimal("50.00")),),
    )
    with pytest.raises(ValidationError) as refused:  # the e-mail, once cleaned, is no e-mail address
        service.sync_payment(principal, opportunity, payment)
    assert [v.field for v in refused.value.violations] == ["opportunity.customer.email"]
    opportunity = Opportunity(
        "o1",
        f"10{NUL}01",
        Customer("c1", f"Mary{NUL}", f"O'Brien{NUL}Smith", f"Acme{NUL}", f"mary@example.com{NUL}", f"555{NUL}1"),
    )
    accepted = [
        service.sync_payment(principal, opportunity, payment),
        service.close_out_job(principal, opportunity, job, [payment]),
    ]
    worker.drain()
    for job_accepted in accepted:
        assert service.get_job(principal, job_accepted.name).state is SyncJobState.SUCCEEDED
    qbo = companies.for_tenant("acme")
    (made,) = qbo.customers.values()
    assert made.display_name == "Mary O'Brien Smith"
    texts = [t.spec.private_note for e in ("Payment", "Purchase", "Invoice") for t in qbo.live(e)]
    texts += [t.spec.memo for t in qbo.live("Purchase")]  # type: ignore[attr-defined]
    assert texts and not any(NUL in text for text in texts)


def test_nul_in_ids_and_lookups_is_invalid_argument_not_a_database_error(backend: Backend) -> None:
    service, _, principal = _core(backend, FakeQuickBooksCompanies())
    opportunity = Opportunity(f"o{NUL}", "1", Customer(f"c{NUL}", "Mary", "O'Brien"))
    payment = Payment(f"p{NUL}", Decimal("1.00"), PaymentMethod.CASH, T, "", (Refund(f"r{NUL}", Decimal("1"), T),))
    with pytest.raises(ValidationError) as refused:
        service.sync_payment(principal, opportunity, payment, f"q{NUL}")
    assert len(refused.value.violations) == 5
    for lookup in (
        lambda: service.get_status(principal, EntityRef(EntityType.PAYMENT, f"p{NUL}")),
        lambda: service.get_link(principal, EntityRef(EntityType.INVOICE, f"j{NUL}")),
        lambda: service.get_job(principal, f"syncJobs/{NUL}"),
        lambda: service.retry(principal, f"syncJobs/j{NUL}"),
    ):
        with pytest.raises(ValidationError):
            lookup()


class _Clock:
    def __init__(self) -> None:
        self._now = T

    def now(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


class _Ids:
    def __init__(self) -> None:
        self._next = 0

    def new_id(self) -> str:
        self._next += 1
        return f"id{self._next}"


def _core(backend: Backend, companies: FakeQuickBooksCompanies) -> tuple[SyncService, SyncWorker, Principal]:
    clock = _Clock()
    service = SyncService(backend.uow, companies, clock, _Ids())
    worker = SyncWorker(
        backend.uow,
        SyncEngine(backend.uow, companies, clock),
        clock,
        backoff_base=timedelta(0),
        backoff_cap=timedelta(0),
    )
    with backend.uow() as uow:
        uow.tenants.ensure("acme")
        uow.commit()
    return service, worker, Principal("acme", frozenset(Permission))
