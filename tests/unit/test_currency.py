"""SPEC.md section 7, Currency: amounts are accepted only in the company's home currency, never relabelled."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import Fault
from core.connection import QuickBooksConnection
from core.currency import CURRENCY_NOT_SUPPORTED, AmountCurrency, CompanyCurrency, currency_violations
from core.domain import Customer, EntityRef, EntityType, InvoiceLine, Job, Opportunity, Payment, PaymentMethod, Refund
from core.errors import FieldViolation, ValidationError
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "Smith", email="mary@example.com"))
PAYMENT = Payment("p1", D("500.00"), PaymentMethod.CREDIT_CARD, T, refunds=(Refund("r1", D("50.00"), T),))
JOB = Job("j1", "INV-1", date(2026, 4, 3), (InvoiceLine("Move", D("1"), D("350.00"), D("350.00")),))
USD_COMPANY = CompanyCurrency("USD")


def amounts(*pairs: tuple[str, str]) -> list[AmountCurrency]:
    return [AmountCurrency(field, code) for field, code in pairs]


def refused(violations: list[FieldViolation]) -> list[str]:
    assert all(v.reason == CURRENCY_NOT_SUPPORTED for v in violations)
    return [v.field for v in violations]


# --- the rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "USD"])
def test_the_home_currency_or_none_is_accepted(code: str) -> None:
    assert currency_violations(amounts(("payment.amount", code)), USD_COMPANY) == []


@pytest.mark.parametrize("code", ["EUR", "JPY", "CAD"])
def test_a_foreign_currency_is_refused_naming_its_field(code: str) -> None:
    violations = currency_violations(amounts(("payment.amount", code)), USD_COMPANY)
    assert refused(violations) == ["payment.amount.currency_code"]
    assert code in violations[0].description and "USD" in violations[0].description


def test_each_foreign_amount_is_named_and_only_those() -> None:
    request = amounts(
        ("payment.amount", "USD"),
        ("payment.refunds[0].amount", "EUR"),
        ("payment.refunds[1].amount", ""),
        ("payment.refunds[2].amount", "GBP"),
    )
    assert refused(currency_violations(request, USD_COMPANY)) == [
        "payment.refunds[0].amount.currency_code",
        "payment.refunds[2].amount.currency_code",
    ]


def test_the_home_currency_is_the_companys_not_usd() -> None:
    cad = CompanyCurrency("CAD")
    assert currency_violations(amounts(("a", "CAD"), ("b", "")), cad) == []
    assert refused(currency_violations(amounts(("a", "USD")), cad)) == ["a.currency_code"]


def test_multicurrency_companies_are_booked_in_the_home_currency_only() -> None:
    violations = currency_violations(amounts(("payment.amount", "EUR")), CompanyCurrency("USD", multicurrency=True))
    assert refused(violations) == ["payment.amount.currency_code"]
    assert "multicurrency" in violations[0].description


def test_before_the_company_is_known_usd_is_assumed() -> None:
    unknown = CompanyCurrency()
    assert currency_violations(amounts(("a", ""), ("b", "USD")), unknown) == []
    violations = currency_violations(amounts(("a", "EUR")), unknown)
    assert refused(violations) == ["a.currency_code"]
    assert "before the QuickBooks company's home currency is known" in violations[0].description


def test_a_validation_error_carries_the_currency_reason_only_when_every_field_is_refused_for_it() -> None:
    currency = FieldViolation("payment.amount.currency_code", "EUR", reason=CURRENCY_NOT_SUPPORTED)
    assert ValidationError([currency]).reason == CURRENCY_NOT_SUPPORTED
    assert ValidationError([currency, FieldViolation("payment.payment_id", "is required")]).reason == "INVALID_ARGUMENT"
    assert ValidationError([FieldViolation("x", "bad")]).reason == "INVALID_ARGUMENT"


# --- at accept time -------------------------------------------------------------------------------------


def connect(h: Harness, home: str, multicurrency: bool = False, tenant: str = "acme") -> None:
    with h.uow_factory() as uow:
        uow.tenants.ensure(tenant)
        uow.connections.save(
            QuickBooksConnection(
                tenant, "9130", "sandbox", "cid", "secret", "rt", home_currency=home, multicurrency=multicurrency
            )
        )
        uow.commit()


def nothing_stored(h: Harness, tenant: str = "acme") -> bool:
    with h.uow_factory() as uow:
        return (
            uow.snapshots.get_payment(tenant, "p1") is None
            and uow.snapshots.get_job(tenant, "j1") is None
            and uow.sync_records.get(tenant, EntityRef(EntityType.PAYMENT, "p1")) is None
            and uow.jobs.list_failed(tenant, offset=0, limit=10) == []
            and h.worker.drain() == 0
        )


def test_a_eur_payment_is_refused_and_nothing_is_stored() -> None:
    h = Harness()
    connect(h, "USD")
    with pytest.raises(ValidationError) as raised:
        h.service.sync_payment(h.principal(), OPP, PAYMENT, currencies=amounts(("payment.amount", "EUR")))
    assert raised.value.reason == CURRENCY_NOT_SUPPORTED
    assert [v.field for v in raised.value.violations] == ["payment.amount.currency_code"]
    assert nothing_stored(h)
    assert h.qbo().request_count == 0


def test_a_home_currency_payment_is_accepted_and_booked_as_sent() -> None:
    h = Harness()
    connect(h, "CAD")
    job = h.service.sync_payment(
        h.principal(), OPP, PAYMENT, currencies=amounts(("payment.amount", "CAD"), ("payment.refunds[0].amount", ""))
    )
    h.worker.drain()
    assert h.service.get_job(h.principal(), job.name).error is None
    assert [t.total for t in h.qbo().live("Payment")] == [D("500.00")]


def test_without_a_connection_only_usd_or_no_currency_is_accepted() -> None:
    h = Harness()
    h.service.sync_payment(h.principal(), OPP, PAYMENT, currencies=amounts(("payment.amount", "USD")))
    with pytest.raises(ValidationError) as raised:
        h.service.sync_payment(
            h.principal(), OPP, PAYMENT, "rid-2", currencies=amounts(("payment.refunds[0].amount", "JPY"))
        )
    assert [v.field for v in raised.value.violations] == ["payment.refunds[0].amount.currency_code"]


def test_a_close_out_names_every_foreign_amount_with_the_other_bad_fields() -> None:
    h = Harness()
    connect(h, "USD")
    no_number = Job("j1", "", JOB.service_date, JOB.lines)
    currencies = amounts(
        ("job.lines[0].unit_price", "EUR"), ("job.lines[0].amount", "EUR"), ("payments[0].amount", "USD")
    )
    with pytest.raises(ValidationError) as raised:
        h.service.close_out_job(h.principal(), OPP, no_number, [PAYMENT], currencies=currencies)
    assert [v.field for v in raised.value.violations] == [
        "job.number",
        "job.lines[0].unit_price.currency_code",
        "job.lines[0].amount.currency_code",
    ]
    assert raised.value.reason == "INVALID_ARGUMENT"  # not only a currency problem
    assert nothing_stored(h)


def test_an_invoice_resync_is_checked_too() -> None:
    h = Harness()
    connect(h, "USD")
    with pytest.raises(ValidationError) as raised:
        h.service.sync_invoice(h.principal(), OPP, JOB, [], currencies=amounts(("job.lines[0].amount", "MXN")))
    assert raised.value.reason == CURRENCY_NOT_SUPPORTED


def test_a_connected_company_never_read_is_read_before_a_labelled_amount_is_judged() -> None:
    h = Harness()
    connect(h, "")  # connected, but QuickBooks could not be read at connect time
    h.qbo().set_currency("CAD")
    with pytest.raises(ValidationError) as raised:
        h.service.sync_payment(h.principal(), OPP, PAYMENT, currencies=amounts(("payment.amount", "USD")))
    assert "CAD" in raised.value.violations[0].description
    with h.uow_factory() as uow:
        stored = uow.connections.get("acme")
        events = [e.kind.value for e in uow.audit.list("acme", limit=5)]
    assert stored is not None and stored.home_currency == "CAD" and "QUICKBOOKS_CURRENCY_READ" in events

    reads = h.qbo().request_count
    h.service.sync_payment(h.principal(), OPP, PAYMENT, currencies=amounts(("payment.amount", "CAD")))
    assert h.qbo().request_count == reads  # read once; from then on the stored preferences decide


def test_an_unlabelled_request_or_an_unreachable_company_does_not_block_accepting() -> None:
    h = Harness()
    connect(h, "")
    h.service.sync_payment(h.principal(), OPP, PAYMENT, "r1", currencies=amounts(("payment.amount", "")))
    assert h.qbo().request_count == 0  # "" is the home currency, whatever it is: nothing to read
    h.qbo().inject(Fault.UNAVAILABLE)
    h.service.sync_payment(h.principal(), OPP, PAYMENT, "r2", currencies=amounts(("payment.amount", "USD")))
    with h.uow_factory() as uow:
        stored = uow.connections.get("acme")
    assert stored is not None and stored.home_currency == ""  # still unread: USD assumed meanwhile
