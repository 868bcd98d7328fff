"""SPEC.md section 8, the company's sales tax mode: read from QuickBooks' Preferences (TaxPrefs) with the currency,
stored with the connection, and checked when a job is accepted: a job charging tax for a company without sales
tax set up in QuickBooks is refused (INVALID_ARGUMENT, reason SALES_TAX_NOT_SET_UP, naming `job.tax`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from adapters.quickbooks.fake import Fault
from core.company_preferences import SALES_TAX_NOT_SET_UP, CompanyPreferences, sales_tax_violations
from core.company_tax import SalesTax
from core.connection import ConnectionState, QuickBooksConnection
from core.currency import CompanyCurrency
from core.domain import Customer, EntityRef, EntityType, InvoiceLine, Job, Opportunity
from core.errors import ValidationError
from tests.unit.support import Harness

D = Decimal
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "Smith", email="mary@example.com"))
LINE = InvoiceLine("Move", D("1"), D("350.00"), D("350.00"), taxable=True)
TAXED = Job("j1", "INV-1", date(2026, 4, 3), (LINE,), tax=D("28.00"), tax_rate_name="CA 8%")
UNTAXED = Job("j1", "INV-1", date(2026, 4, 3), (LINE,))


# --- the rule ----------------------------------------------------------------------------------------


def test_only_tax_charged_to_a_company_without_sales_tax_is_refused() -> None:
    [violation] = sales_tax_violations(D("28.00"), SalesTax.NONE)
    assert (violation.field, violation.reason) == ("job.tax", SALES_TAX_NOT_SET_UP)
    assert "set up sales tax in QuickBooks" in violation.description and "28.00" in violation.description
    assert sales_tax_violations(D("0"), SalesTax.NONE) == []
    assert sales_tax_violations(D("0.00"), SalesTax.NONE) == []
    for mode in (SalesTax.AUTOMATED, SalesTax.MANUAL, None):  # None: never read, so not known to lack it
        assert sales_tax_violations(D("28.00"), mode) == []
    assert ValidationError([violation]).reason == SALES_TAX_NOT_SET_UP


# --- at accept time -------------------------------------------------------------------------------------


def connect(h: Harness, sales_tax: SalesTax | None, state: ConnectionState = ConnectionState.CONNECTED) -> None:
    with h.uow_factory() as uow:
        uow.tenants.ensure("acme")
        uow.connections.save(
            QuickBooksConnection(
                "acme", "9130", "sandbox", "cid", "secret", "rt", home_currency="USD", sales_tax=sales_tax, state=state
            )
        )
        uow.commit()


def stored(h: Harness) -> QuickBooksConnection:
    with h.uow_factory() as uow:
        found = uow.connections.get("acme")
    assert found is not None
    return found


def audit_kinds(h: Harness) -> list[str]:
    with h.uow_factory() as uow:
        return [e.kind.value for e in uow.audit.list("acme", limit=20)]


def nothing_stored(h: Harness) -> bool:
    with h.uow_factory() as uow:
        return (
            uow.snapshots.get_job("acme", "j1") is None
            and uow.sync_records.get("acme", EntityRef(EntityType.INVOICE, "j1")) is None
            and h.worker.drain() == 0
        )


def test_a_taxed_job_for_a_company_without_sales_tax_is_refused_and_nothing_is_stored() -> None:
    h = Harness()
    connect(h, SalesTax.NONE)
    h.qbo().sales_tax = SalesTax.NONE
    with pytest.raises(ValidationError) as raised:
        h.service.close_out_job(h.principal(), OPP, TAXED, [])
    assert raised.value.reason == SALES_TAX_NOT_SET_UP
    assert [v.field for v in raised.value.violations] == ["job.tax"]
    assert "set up sales tax in QuickBooks" in raised.value.violations[0].description
    assert nothing_stored(h)
    assert h.qbo().write_count == 0


def test_a_resend_after_sales_tax_was_set_up_in_quickbooks_is_accepted() -> None:
    h = Harness()
    connect(h, SalesTax.NONE)
    h.qbo().sales_tax = SalesTax.NONE
    with pytest.raises(ValidationError):
        h.service.close_out_job(h.principal(), OPP, TAXED, [], "r1")
    h.qbo().sales_tax = SalesTax.AUTOMATED  # the bookkeeper turned sales tax on, as the refusal said
    accepted = h.service.close_out_job(h.principal(), OPP, TAXED, [], "r2")
    assert accepted.job_id
    assert stored(h).sales_tax is SalesTax.AUTOMATED
    assert "QUICKBOOKS_SALES_TAX_READ" in audit_kinds(h)


def test_an_untaxed_job_for_a_company_without_sales_tax_is_accepted_without_asking_quickbooks() -> None:
    h = Harness()
    connect(h, SalesTax.NONE)
    h.service.close_out_job(h.principal(), OPP, UNTAXED, [])
    assert h.qbo().request_count == 0


@pytest.mark.parametrize("mode", [SalesTax.AUTOMATED, SalesTax.MANUAL])
def test_a_taxed_job_for_a_company_with_sales_tax_is_accepted_on_the_stored_mode(mode: SalesTax) -> None:
    h = Harness()
    connect(h, mode)
    h.qbo().sales_tax = SalesTax.NONE  # what QuickBooks says now is not asked: the stored mode decides
    h.service.close_out_job(h.principal(), OPP, TAXED, [])
    assert h.qbo().request_count == 0


def test_a_connected_company_never_read_is_read_before_a_taxed_job_is_judged() -> None:
    h = Harness()
    connect(h, None)  # connected, but QuickBooks could not be read at connect time
    h.qbo().sales_tax = SalesTax.NONE
    with pytest.raises(ValidationError) as raised:
        h.service.close_out_job(h.principal(), OPP, TAXED, [])
    assert raised.value.reason == SALES_TAX_NOT_SET_UP
    assert stored(h).sales_tax is SalesTax.NONE
    assert "QUICKBOOKS_SALES_TAX_READ" in audit_kinds(h)


def test_an_unknown_mode_refuses_nothing() -> None:
    h = Harness()
    h.service.close_out_job(h.principal(), OPP, TAXED, [], "r1")  # not connected at all
    connect(h, None)
    h.qbo().sales_tax = SalesTax.NONE
    h.qbo().inject(Fault.UNAVAILABLE)  # and QuickBooks cannot be read now
    h.service.close_out_job(h.principal(), OPP, TAXED, [], "r2")
    assert stored(h).sales_tax is None  # still unread


def test_a_company_that_must_reconnect_is_judged_on_what_was_last_read() -> None:
    h = Harness()
    connect(h, SalesTax.NONE, ConnectionState.RECONNECT_REQUIRED)
    with pytest.raises(ValidationError):
        h.service.close_out_job(h.principal(), OPP, TAXED, [])
    assert h.qbo().request_count == 0  # its tokens are dead: nothing to ask


def test_the_tax_refusal_is_named_with_the_other_bad_fields() -> None:
    h = Harness()
    connect(h, SalesTax.NONE)
    h.qbo().sales_tax = SalesTax.NONE
    no_number = Job("j1", "", TAXED.service_date, TAXED.lines, tax=TAXED.tax)
    with pytest.raises(ValidationError) as raised:
        h.service.close_out_job(h.principal(), OPP, no_number, [])
    assert [v.field for v in raised.value.violations] == ["job.number", "job.tax"]
    assert raised.value.reason == "INVALID_ARGUMENT"  # not only a sales tax problem
    assert nothing_stored(h)


def test_an_invoice_resync_is_checked_too() -> None:
    h = Harness()
    connect(h, SalesTax.NONE)
    h.qbo().sales_tax = SalesTax.NONE
    with pytest.raises(ValidationError) as raised:
        h.service.sync_invoice(h.principal(), OPP, TAXED, [])
    assert raised.value.reason == SALES_TAX_NOT_SET_UP


# --- read with the currency ------------------------------------------------------------------------------


def test_one_read_gives_the_currency_and_the_sales_tax() -> None:
    h = Harness()
    qbo = h.qbo()
    qbo.set_currency("CAD")
    qbo.sales_tax = SalesTax.MANUAL
    # A new company numbers its invoices itself (custom transaction numbers off), as QuickBooks' own do.
    expected = CompanyPreferences(CompanyCurrency("CAD"), SalesTax.MANUAL, custom_txn_numbers=False)
    assert qbo.company_preferences() == expected
    assert qbo.request_count == 1
