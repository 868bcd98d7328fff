"""What the real adapter sends QuickBooks for an invoice with tax, a discount, a tip and a surcharge (SPEC §8),
read from the emulator's request log, in each sales tax mode; and the core's INVOICE_TOTAL_MISMATCH when the
emulator is made to disagree."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import CoreRig, QboRig

from core.accounting import DiscountSpec, InvoiceSpec
from core.company_tax import SalesTax
from core.connection import ListRef
from core.domain import Customer, Discount, InvoiceLine, Job, Opportunity, Payment, PaymentMethod, SyncJobState

D = Decimal


def set_up(rig: QboRig) -> dict[str, str]:
    """A Tips item on a liability account and a surcharge item, set as the tenant's settings."""
    tips_payable = rig.seed("Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"})["Id"]
    tips = rig.seed("Item", {"Name": "Tips", "Type": "Service", "IncomeAccountRef": {"value": tips_payable}})["Id"]
    surcharge = rig.seed("Item", {"Name": "Card surcharge", "Type": "Service", "IncomeAccountRef": {"value": "4"}})[
        "Id"
    ]
    discounts = next(a["Id"] for a in rig.records("Account") if a["Name"] == "Discounts given")
    rig.use_settings(tips_item=ListRef(tips), surcharge_item=ListRef(surcharge), discount_account=ListRef(discounts))
    rig.settings(log_bodies=True)
    return {"tips": tips, "surcharge": surcharge, "discounts": discounts}


def spec(customer_id: str) -> InvoiceSpec:
    lines = (
        InvoiceLine("Moving, 3 movers", D("3.5"), D("100.00"), D("350.00"), taxable=True),
        InvoiceLine("Stairs fee", D("1"), D("40.00"), D("40.00")),
    )
    return InvoiceSpec(
        customer_id,
        "1001",
        date(2026, 1, 4),
        lines,
        "CRM job j1 [m-i1]",
        "[m-i1]",
        tax=D("28.00"),
        discount=DiscountSpec(D("39.00"), "Spring (10%)", apply_tax_after_discount=True),
        tip=D("30.00"),
        surcharge=D("12.34"),
    )


def sent_invoice(rig: QboRig) -> dict[str, Any]:
    return next(e["body"] for e in reversed(rig.log()) if e["entity"] == "Invoice" and e.get("body"))  # type: ignore[no-any-return]


def customer(rig: QboRig) -> str:
    return str(rig.seed("Customer", {"DisplayName": "Tess Taxpayer"})["Id"])


def test_an_automated_tax_company_gets_tax_codes_total_tax_and_the_discount_line(rig: QboRig) -> None:
    items = set_up(rig)
    assert rig.connection().sales_tax is None  # not read yet: written as for automated sales tax
    created = rig.system.create(spec(customer(rig)), request_id="i-1")
    assert created.total == D("421.34")  # 390.00 − 39.00 + 28.00 + 30.00 + 12.34

    body = sent_invoice(rig)
    sales = [line for line in body["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [(line["Amount"], line["SalesItemLineDetail"]["TaxCodeRef"]["value"]) for line in sales] == [
        ("350.00", "TAX"),
        ("40.00", "NON"),
        ("30.00", "NON"),
        ("12.34", "NON"),
    ]
    assert [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in sales[2:]] == [
        items["tips"],
        items["surcharge"],
    ]
    assert [line.get("Description") for line in sales[2:]] == ["Tip", "Card surcharge"]
    assert "Qty" not in sales[2]["SalesItemLineDetail"]
    (discount,) = [line for line in body["Line"] if line["DetailType"] == "DiscountLineDetail"]
    assert discount == {
        "Amount": "39.00",
        "Description": "Spring (10%)",
        "DetailType": "DiscountLineDetail",
        "DiscountLineDetail": {"PercentBased": False, "DiscountAccountRef": {"value": items["discounts"]}},
    }
    assert body["ApplyTaxAfterDiscount"] is True
    assert body["TxnTaxDetail"] == {"TotalTax": "28.00"}  # no tax code: automated sales tax ignores one


def test_a_manual_tax_company_gets_the_tax_code_setting(rig: QboRig) -> None:
    set_up(rig)
    rig.set_sales_tax(SalesTax.MANUAL)
    code = rig.admin("GET", "/realms/" + rig.realm_id + "/state")["entities"]["TaxCode"][0]["Id"]
    rig.use_settings(tax_code=ListRef(code))
    created = rig.system.create(spec(customer(rig)), request_id="i-1")
    assert created.total == D("421.34")
    assert sent_invoice(rig)["TxnTaxDetail"] == {"TotalTax": "28.00", "TxnTaxCodeRef": {"value": code}}


def test_a_company_without_sales_tax_gets_no_tax_codes(rig: QboRig) -> None:
    set_up(rig)
    rig.set_sales_tax(SalesTax.NONE)
    untaxed = dataclasses.replace(spec(customer(rig)), tax=D("0.00"))
    created = rig.system.create(untaxed, request_id="i-1")
    assert created.total == D("393.34")
    body = sent_invoice(rig)
    assert all("TaxCodeRef" not in line.get("SalesItemLineDetail", {}) for line in body["Line"])
    assert "TxnTaxDetail" not in body


def test_an_invoice_without_tax_or_extras_is_written_as_before(rig: QboRig) -> None:
    rig.settings(log_bodies=True)
    lines = (InvoiceLine("Move", D("1"), D("100.00"), D("100.00")),)
    plain = InvoiceSpec(customer(rig), "1002", date(2026, 1, 4), lines, "CRM job j2 [m-i2]", "[m-i2]")
    assert rig.system.create(plain, request_id="i-1").total == D("100.00")
    body = sent_invoice(rig)
    assert [line["DetailType"] for line in body["Line"]] == ["SalesItemLineDetail"]
    assert body["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "NON"}
    assert "TxnTaxDetail" not in body and "ApplyTaxAfterDiscount" not in body


# --- through the core ---------------------------------------------------------------------------------

T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
OPP = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
TAXED_MOVE = Job(
    "j1",
    "INV-1001",
    date(2026, 4, 3),
    (
        InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00"), taxable=True),
        InvoiceLine("Boxes", D("2"), D("5.00"), D("10.00")),
    ),
    tax=D("26.73"),
    tax_rate_name="Portland 8.25%",
    discounts=(Discount("Spring", percent=D("10")),),
    tip=D("40.00"),
    surcharge=D("9.99"),
)  # 360.00 − 36.00 + 26.73 + 40.00 + 9.99 = 400.72


@pytest.fixture
def core(rig: QboRig) -> CoreRig:
    return CoreRig(rig)


def test_a_taxed_job_closes_out_paid_in_full(core: CoreRig, rig: QboRig) -> None:
    set_up(rig)
    assert TAXED_MOVE.total == D("400.72")
    paid = Payment("p1", D("400.72"), PaymentMethod.CREDIT_CARD, T, "ref-p1", tip=D("40.00"))
    core.succeed(core.service.close_out_job(core.principal, OPP, TAXED_MOVE, [paid]))
    (invoice,) = rig.exact_state()["entities"]["Invoice"]
    assert (invoice["TotalAmt"], invoice["Balance"]) == (D("400.72"), D("0.00"))
    assert invoice["TxnTaxDetail"]["TotalTax"] == D("26.73")


@pytest.mark.parametrize("control", [{"invoice_total_drift": D("0.01")}, {"ignore_total_tax": True}])
def test_a_quickbooks_total_that_differs_fails_the_job_naming_both(
    core: CoreRig, rig: QboRig, control: dict[str, Any]
) -> None:
    set_up(rig)
    rig.set_sales_tax(**control)
    paid = Payment("p1", D("400.72"), PaymentMethod.CREDIT_CARD, T, "ref-p1")
    done = core.finish(core.service.close_out_job(core.principal, OPP, TAXED_MOVE, [paid]))
    assert done.state is SyncJobState.FAILED
    assert done.error is not None and done.error.reason == "INVOICE_TOTAL_MISMATCH"
    assert "400.72" in done.error.message
    # Nothing was applied to the wrong total: the invoice stays open, no payment line links it.
    state = rig.exact_state()
    (invoice,) = state["entities"]["Invoice"]
    assert invoice["Balance"] == invoice["TotalAmt"] != D("400.72")
    assert not any(p.get("Line") for p in state["entities"]["Payment"])


def test_a_create_whose_answer_was_lost_still_answers_its_total(rig: QboRig) -> None:
    set_up(rig)
    rig.fault("commit_then_reset", entity="Invoice", operation="create")
    created = rig.system.create(spec(customer(rig)), request_id="i-1")
    assert created.total == D("421.34")
    assert len(rig.records("Invoice")) == 1  # found by its marker, not written twice
    assert [e["outcome"] for e in rig.log() if e["entity"] == "Invoice"] == ["reset"]
