"""The invoice contract of SPEC §8, run against the in-memory fake and against the real adapter talking HTTP
to the emulator: a taxed, discounted invoice with a tip and a surcharge totals the same in both, each write
answers QuickBooks' TotalAmt, and the company's sales tax mode and the emulator's disagree controls move that
total the same way in both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from core.accounting import DiscountSpec, InvoiceSpec, LinkLine, NewCustomer, PaymentSpec
from core.company_lists import ListKind
from core.company_tax import SalesTax
from core.connection import ListRef
from core.domain import InvoiceLine, PaymentMethod
from core.errors import BookkeepingError


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def set_up_items(company: Company) -> None:
    """What a bookkeeper sets up for SPEC §8: a Tips item on a liability account, a surcharge item."""
    tips_payable = company.add_list_entry(
        ListKind.ACCOUNT, "Tips payable", "Other Current Liability", "OtherCurrentLiabilities"
    )
    tips = company.add_list_entry(ListKind.ITEM, "Tips", "Service", income_account_id=tips_payable)
    surcharge = company.add_list_entry(ListKind.ITEM, "Card surcharge", "Service", income_account_id="4")
    company.use_settings(tips_item=ListRef(tips), surcharge_item=ListRef(surcharge), discount_account=ListRef("6"))


def customer(company: Company) -> str:
    new = NewCustomer("Tess Taxpayer", "", "", "", "tess@example.com", "", "CRM customer c1")
    return company.system.create_customer(new, request_id="c-1").id


LINES = (
    InvoiceLine("Moving, 3 movers", Decimal("3.5"), Decimal("100.00"), Decimal("350.00"), taxable=True),
    InvoiceLine("Boxes", Decimal("2"), Decimal("5.05"), Decimal("10.10"), taxable=True),
    InvoiceLine("Stairs fee", Decimal("1"), Decimal("40.00"), Decimal("40.00")),
)


def taxed_invoice(customer_id: str, *, tax: str = "25.53", marker: str = "[m-i1]") -> InvoiceSpec:
    """Lines 400.10, a 10% discount of the moving before tax (35.00), tax 25.53, tip 30, surcharge 12.34."""
    return InvoiceSpec(
        customer_id,
        "1001",
        date(2026, 1, 4),
        LINES,
        f"CRM job j1 {marker}",
        marker,
        tax=Decimal(tax),
        tax_rate_name="Portland 8%",
        discount=DiscountSpec(Decimal("35.00"), "Spring (10%)", apply_tax_after_discount=True),
        tip=Decimal("30.00"),
        surcharge=Decimal("12.34"),
    )


def test_a_taxed_discounted_invoice_with_tip_and_surcharge_totals_as_the_crm(company: Company) -> None:
    set_up_items(company)
    spec = taxed_invoice(customer(company))
    assert spec.total == Decimal("432.97")  # 400.10 − 35.00 + 25.53 + 30.00 + 12.34

    created = company.system.create(spec, request_id="i-1")
    assert created.total == spec.total
    assert company.invoice_figures(created.id) == (Decimal("432.97"), Decimal("432.97"))

    # Resynced with another tax: the update answers the new total.
    retaxed = taxed_invoice(spec.customer_id, tax="27.00")
    updated = company.system.update(created, retaxed, request_id="i-2")
    assert (updated.sync_token, updated.total) == ("1", Decimal("434.44"))

    # Paid in full against that total: nothing left, and not a cent more can be applied.
    paying = PaymentSpec(
        spec.customer_id,
        Decimal("434.44"),
        date(2026, 1, 5),
        PaymentMethod.CASH,
        "",
        (LinkLine(created.kind, created.id, Decimal("434.44")),),
        "CRM payment p1 [m-p1]",
        "[m-p1]",
    )
    paid = company.system.create(paying, request_id="p-1")
    assert paid.total == Decimal("434.44")
    assert company.invoice_figures(created.id) == (Decimal("434.44"), Decimal("0.00"))


def test_every_write_answers_its_total(company: Company) -> None:
    customer_id = customer(company)
    plain = InvoiceSpec(customer_id, "1002", date(2026, 1, 4), LINES[2:], "CRM job j2 [m-i2]", "[m-i2]")
    assert company.system.create(plain, request_id="i-1").total == Decimal("40.00")
    deposit = PaymentSpec(
        customer_id, Decimal("12.30"), date(2026, 1, 5), PaymentMethod.CASH, "", (), "CRM payment p1 [m-p1]", "[m-p1]"
    )
    assert company.system.create(deposit, request_id="p-1").total == Decimal("12.30")


def test_automated_sales_tax_ignoring_the_override_drifts_the_same_in_both(company: Company) -> None:
    set_up_items(company)
    company.set_sales_tax(ignore_total_tax=True)
    created = company.system.create(taxed_invoice(customer(company)), request_id="i-1")
    # AST's own tax: 8.25% of the taxable 360.10 less its share of the discount before tax (35.00 × 360.10 /
    # 442.44 = 28.49): 8.25% of 331.61 = 27.36. The total is not the CRM's 432.97.
    assert created.total == Decimal("434.80")
    assert company.invoice_figures(created.id)[0] == Decimal("434.80")


def test_the_drift_control_adds_to_the_total(company: Company) -> None:
    set_up_items(company)
    company.set_sales_tax(invoice_total_drift=Decimal("0.01"))
    created = company.system.create(taxed_invoice(customer(company)), request_id="i-1")
    assert created.total == Decimal("432.98")


def test_a_manual_tax_company_keeps_the_crm_tax(company: Company) -> None:
    set_up_items(company)
    company.set_sales_tax(SalesTax.MANUAL)
    company.use_settings(tax_code=ListRef("1"))  # "Sales tax", made when the company switched to manual
    found = company.system.find_list_entry(ListKind.TAX_CODE, ListRef(name="Sales tax"))
    assert found is not None and found.id == "1"
    created = company.system.create(taxed_invoice(customer(company)), request_id="i-1")
    assert created.total == Decimal("432.97")


def test_a_company_without_sales_tax_takes_untaxed_invoices_and_refuses_tax(company: Company) -> None:
    set_up_items(company)
    company.set_sales_tax(SalesTax.NONE)
    customer_id = customer(company)
    untaxed = taxed_invoice(customer_id, tax="0.00")  # taxable lines, but no tax charged
    assert company.system.create(untaxed, request_id="i-1").total == Decimal("407.44")
    with pytest.raises(BookkeepingError, match="Sales tax is not set up"):
        company.system.create(taxed_invoice(customer_id, marker="[m-i2]"), request_id="i-2")
