"""SPEC section 8's settings through the real adapter against the emulator: each is resolved only when a
record needs it, by name where QuickBooks has a conventional entry, saved, and a missing one fails the
record naming the setting and how to fix it."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import CoreRig, QboRig

from adapters.quickbooks.qbo.settings import SETTING_INVALID
from core.accounting import DiscountSpec, InvoiceSpec, NewCustomer
from core.company_tax import SalesTax
from core.connection import ListRef, QuickBooksSettings
from core.domain import Customer, InvoiceLine, Job, Opportunity, SyncJobState
from core.errors import BookkeepingError

D = Decimal
LINE = InvoiceLine("Move, 3 h", D("3"), D("100.00"), D("300.00"))


def _account_id(rig: QboRig, name: str) -> str:
    [found] = [a for a in rig.records("Account") if a["Name"] == name]
    return str(found["Id"])


def _discounts_given(rig: QboRig) -> dict[str, Any]:
    """QBO's "Discounts given" Income account: the company's own when it has one, else made as QBO does."""
    for account in rig.records("Account"):
        if account["Name"] == "Discounts given":
            return account
    return rig.seed(
        "Account", {"Name": "Discounts given", "AccountType": "Income", "AccountSubType": "DiscountsRefundsGiven"}
    )


def _tips_on_a_liability(rig: QboRig, name: str = "Tips") -> dict[str, Any]:
    payable = rig.seed("Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"})
    return rig.seed("Item", {"Name": name, "Type": "Service", "IncomeAccountRef": {"value": payable["Id"]}})


def _customer(rig: QboRig) -> str:
    return rig.system.create_customer(NewCustomer("Mary O'Brien", "", "", "", "", "", ""), request_id="c1").id


def _invoice(customer_id: str, marker: str, **changes: Any) -> InvoiceSpec:
    spec = InvoiceSpec(customer_id, f"INV-{marker}", date(2026, 4, 3), (LINE,), f"note [{marker}]", f"[{marker}]")
    return dataclasses.replace(spec, **changes)


def _store(rig: QboRig, **changes: Any) -> None:
    connection = rig.connection()
    with rig.uow_factory() as uow:
        uow.connections.save(dataclasses.replace(connection, **changes))
        uow.commit()


def _queries(rig: QboRig) -> list[dict[str, Any]]:
    return [r for r in rig.log() if r["operation"] == "query"]


def test_defaults_are_found_by_name_saved_and_not_looked_up_again(rig: QboRig) -> None:
    tips = _tips_on_a_liability(rig)
    surcharge = rig.seed(
        "Item",
        {"Name": "Card surcharge", "Type": "Service", "IncomeAccountRef": {"value": _account_id(rig, "Services")}},
    )
    discounts = _discounts_given(rig)
    customer = _customer(rig)
    spec = _invoice(
        customer, "m1", tip=D("20.00"), surcharge=D("9.00"), discount=DiscountSpec(D("30.00"), "Spring (10%)", True)
    )

    rig.system.create(spec, request_id="i1")

    saved = rig.connection().settings
    assert saved.tips_item == ListRef(str(tips["Id"]), "Tips")
    assert saved.surcharge_item == ListRef(str(surcharge["Id"]), "Card surcharge")
    assert saved.discount_account == ListRef(str(discounts["Id"]), "Discounts given")
    # Nothing needed them: no default is looked up, none is recorded.
    assert not saved.tax_code.is_set and not saved.processing_fee_account.is_set

    rig.clear_log()
    rig.system.create(_invoice(customer, "m2", tip=D("5.00"), surcharge=D("1.00")), request_id="i2")
    assert _queries(rig) == []  # saved and checked once: the next invoice is one write
    assert [r["entity"] for r in rig.log()] == ["Invoice"]


def test_a_record_that_needs_no_section_8_setting_looks_none_up(rig: QboRig) -> None:
    customer = _customer(rig)
    rig.system.create(_invoice(customer, "m1"), request_id="i0")  # the income item is resolved here
    rig.clear_log()
    rig.system.create(_invoice(customer, "m2"), request_id="i1")
    assert _queries(rig) == []
    saved = rig.connection().settings
    assert (saved.tips_item, saved.surcharge_item, saved.discount_account, saved.tax_code) == (ListRef(),) * 4


def test_a_missing_tips_item_fails_the_invoice_naming_the_setting_and_writes_nothing(rig: QboRig) -> None:
    customer = _customer(rig)
    rig.seed("Item", {"Name": "Tips", "Type": "Inventory"})  # no Service or NonInventory item: no default
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(_invoice(customer, "m1", tip=D("20.00")), request_id="i1")
    assert failed.value.reason == SETTING_INVALID
    said = str(failed.value)
    assert said.startswith("the tips item setting is not set and QuickBooks has no item named 'Tips' or 'Tip'")
    assert "create one in QuickBooks" in said and "or set the tips item" in said
    assert rig.records("Invoice") == []
    assert not rig.connection().settings.tips_item.is_set


def test_a_missing_tips_item_fails_a_tipped_job_and_creating_one_fixes_it(rig: QboRig) -> None:
    core = CoreRig(rig)
    opportunity = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
    job = Job("j1", "INV-1001", date(2026, 4, 3), (LINE,), tip=D("25.00"))

    failed = core.finish(core.service.close_out_job(core.principal, opportunity, job, []))

    assert failed.state is SyncJobState.FAILED
    assert failed.error.reason == SETTING_INVALID
    assert "the tips item setting is not set" in failed.error.message
    assert rig.records("Invoice") == []

    tips = _tips_on_a_liability(rig, "Gratuity")
    core.succeed(core.service.close_out_job(core.principal, opportunity, job, []))
    assert rig.connection().settings.tips_item == ListRef(str(tips["Id"]), "Gratuity")
    assert len(rig.records("Invoice")) == 1


def test_a_configured_item_made_inactive_fails_naming_its_setting(rig: QboRig) -> None:
    tips = _tips_on_a_liability(rig)
    surcharge = rig.seed(
        "Item", {"Name": "Surcharge", "Type": "Service", "IncomeAccountRef": {"value": _account_id(rig, "Services")}}
    )
    _store(
        rig,
        settings=QuickBooksSettings(tips_item=ListRef(str(tips["Id"])), surcharge_item=ListRef(str(surcharge["Id"]))),
    )
    rig.act("Item", str(surcharge["Id"]), "deactivate")
    customer = _customer(rig)
    with pytest.raises(
        BookkeepingError, match=r"the surcharge item setting cannot be used: 'Surcharge' \(Id \d+\) is inactive"
    ):
        rig.system.create(_invoice(customer, "m1", tip=D("2.00"), surcharge=D("3.00")), request_id="i1")
    assert rig.records("Invoice") == []


def test_a_discount_without_a_discount_account_fails_naming_it(rig: QboRig) -> None:
    discounts = _discounts_given(rig)
    rig.act("Account", str(discounts["Id"]), "deactivate")
    customer = _customer(rig)
    spec = _invoice(customer, "m1", discount=DiscountSpec(D("10.00"), "Loyalty", True))
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(spec, request_id="i1")
    assert str(failed.value).startswith(
        "the discount account setting is not set and QuickBooks has no Income account named 'Discounts given'"
    )
    # An Income account of the discounts detail type, whatever its name, is the next choice.
    other = rig.seed(
        "Account", {"Name": "Promotions", "AccountType": "Income", "AccountSubType": "DiscountsRefundsGiven"}
    )
    rig.system.create(spec, request_id="i2")
    assert rig.connection().settings.discount_account == ListRef(str(other["Id"]), "Promotions")


def test_a_taxed_invoice_of_a_manual_tax_company_needs_a_tax_code_and_an_automated_one_does_not(rig: QboRig) -> None:
    customer = _customer(rig)
    taxed = _invoice(customer, "m1", lines=(dataclasses.replace(LINE, taxable=True),), tax=D("18.75"))
    _store(rig, sales_tax=SalesTax.MANUAL)
    with pytest.raises(BookkeepingError) as failed:
        rig.system.create(taxed, request_id="i1")
    assert failed.value.reason == SETTING_INVALID
    assert str(failed.value) == (
        "the tax code setting is not set: this company's sales tax is manual, so a taxed invoice must name a "
        "sales tax rate. Set the tax code, or send the job's tax_rate_name"
    )
    assert rig.records("Invoice") == []

    # With automated sales tax QuickBooks picks the rates itself: no tax code is asked for.
    _store(rig, sales_tax=SalesTax.AUTOMATED)
    rig.systems.for_tenant("acme")  # the stored connection is read again by the next system
    made = rig.system.create(taxed, request_id="i2")
    assert [i["Id"] for i in rig.records("Invoice")] == [made.id]
    assert not rig.connection().settings.tax_code.is_set


def test_a_manual_tax_invoice_takes_the_rate_named_by_the_job_else_the_tax_code_setting(rig: QboRig) -> None:
    rig.admin("POST", f"/realms/{rig.realm_id}/sales_tax", {"sales_tax": "MANUAL"})
    rate = rig.seed("TaxRate", {"Name": "Boston", "RateValue": "6.25"})
    detail = {"TaxRateRef": {"value": rate["Id"]}, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}
    code = rig.seed("TaxCode", {"Name": "Boston", "SalesTaxRateList": {"TaxRateDetail": [detail]}})
    _store(rig, sales_tax=SalesTax.MANUAL)
    customer = _customer(rig)
    taxed = _invoice(
        customer, "m1", lines=(dataclasses.replace(LINE, taxable=True),), tax=D("18.75"), tax_rate_name="boston"
    )
    made = rig.system.create(taxed, request_id="i1")
    [invoice] = [i for i in rig.records("Invoice") if i["Id"] == made.id]
    assert invoice["TxnTaxDetail"]["TxnTaxCodeRef"]["value"] == code["Id"]
    assert not rig.connection().settings.tax_code.is_set  # the job's rate is used for its invoice only
    # No rate name on the job: the tax_code setting names the rate.
    _store(rig, settings=dataclasses.replace(rig.connection().settings, tax_code=ListRef(code["Id"])))
    unnamed = dataclasses.replace(taxed, tax_rate_name="", marker="[m2]", private_note="n [m2]", doc_number="X2")
    assert rig.system.create(unnamed, request_id="i2").total == D("318.75")
