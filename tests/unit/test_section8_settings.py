"""SPEC section 8's settings without a company: which records need which setting, how a TaxCode reads
(Intuit's own sample rows), and what the rules say about entries of the wrong kind."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from adapters.quickbooks.qbo.lists import _usable_id, list_entry
from adapters.quickbooks.qbo.settings import settings_needed
from core.accounting import DiscountSpec, InvoiceSpec, PaymentSpec, RefundSpec, TxnKind
from core.company_lists import LIST_SETTINGS, TAX_CODE_PSEUDO, TAX_CODE_RATE, ListEntry, ListKind
from core.company_tax import SalesTax
from core.connection import ListRef
from core.domain import InvoiceLine, PaymentMethod

D = Decimal
PLAIN = InvoiceSpec(
    "7", "INV-1", date(2026, 4, 3), (InvoiceLine("Move", D("1"), D("300.00"), D("300.00")),), "note", "[m]"
)
TAXED = replace(PLAIN, lines=(replace(PLAIN.lines[0], taxable=True),), tax=D("18.75"))


@pytest.mark.parametrize(
    ("spec", "sales_tax", "needed"),
    [
        (PLAIN, SalesTax.MANUAL, ("income_item",)),
        (replace(PLAIN, tip=D("20.00")), None, ("income_item", "tips_item")),
        (replace(PLAIN, surcharge=D("9.00")), None, ("income_item", "surcharge_item")),
        (
            replace(PLAIN, discount=DiscountSpec(D("30.00"), "Spring (10%)", True), tip=D("1.00"), surcharge=D("2")),
            None,
            ("income_item", "discount_account", "tips_item", "surcharge_item"),
        ),
        # A rate is named only where the company's sales tax is manual: automated sales tax picks its own
        # (and keeps the TotalTax sent), a company without sales tax has none, an unread mode is automated.
        (TAXED, SalesTax.MANUAL, ("income_item", "tax_code")),
        (replace(PLAIN, tax=D("1.00")), SalesTax.MANUAL, ("income_item", "tax_code")),  # tax charged
        (replace(PLAIN, lines=TAXED.lines), SalesTax.MANUAL, ("income_item", "tax_code")),  # a TAX line
        (TAXED, SalesTax.AUTOMATED, ("income_item",)),
        (TAXED, SalesTax.NONE, ("income_item",)),
        (TAXED, None, ("income_item",)),
        (
            PaymentSpec("7", D("5"), date(2026, 4, 3), PaymentMethod.CASH, "", (), "n", "[m]"),
            SalesTax.MANUAL,
            ("deposit_account",),
        ),
        (
            RefundSpec("7", D("5"), date(2026, 4, 3), TxnKind.CHECK, "", "n", "[m]"),
            SalesTax.MANUAL,
            ("refund_bank_account", "accounts_receivable_account"),
        ),
    ],
)
def test_a_record_needs_only_the_settings_it_uses(
    spec: InvoiceSpec, sales_tax: SalesTax | None, needed: tuple[str, ...]
) -> None:
    assert settings_needed(spec, sales_tax) == needed


# Intuit's TaxCode page: "select * from TaxCode" answers these (trimmed).
CALIFORNIA = {"Id": "2", "Name": "California", "TaxGroup": True, "Taxable": True, "Active": True}
CUSTOM = {"Id": "CustomSalesTax", "Name": "CustomSalesTax", "TaxGroup": True, "Taxable": True}
PSEUDO_TAX = {"Id": "TAX", "Name": "TAX", "TaxGroup": False, "Taxable": True}
PSEUDO_NON = {"Id": "NON", "Name": "NON", "TaxGroup": False, "Taxable": False}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (CALIFORNIA, ListEntry(ListKind.TAX_CODE, "2", "California", True, TAX_CODE_RATE)),
        (CUSTOM, ListEntry(ListKind.TAX_CODE, "CustomSalesTax", "CustomSalesTax", True, TAX_CODE_RATE)),
        (PSEUDO_TAX, ListEntry(ListKind.TAX_CODE, "TAX", "TAX", True, TAX_CODE_PSEUDO)),
        (PSEUDO_NON, ListEntry(ListKind.TAX_CODE, "NON", "NON", True, TAX_CODE_PSEUDO)),
        # TaxGroup left out: QBO's default (true), unless the Id is a pseudo code's.
        ({"Id": "5", "Name": "Boston", "Active": False}, ListEntry(ListKind.TAX_CODE, "5", "Boston", False, "rate")),
        ({"Id": "NON", "Name": "NON"}, ListEntry(ListKind.TAX_CODE, "NON", "NON", True, TAX_CODE_PSEUDO)),
    ],
)
def test_a_tax_code_reads_as_a_rate_or_a_pseudo_code(row: dict[str, object], expected: ListEntry) -> None:
    assert list_entry(ListKind.TAX_CODE, row) == expected


def test_only_rates_are_tax_codes_an_invoice_may_name() -> None:
    rule = LIST_SETTINGS["tax_code"]
    assert rule.problem(ListRef("2"), list_entry(ListKind.TAX_CODE, CALIFORNIA)) is None
    said = rule.problem(ListRef("TAX"), list_entry(ListKind.TAX_CODE, PSEUDO_TAX))
    assert said == (
        "'TAX' (Id TAX) is a pseudo tax code; the tax code must be a rate tax code: choose one of the "
        "company's sales tax rates (TAX and NON only mark lines taxable or not)"
    )
    assert rule.problem(ListRef(name="Cambridge"), None) == "QuickBooks has no tax code named 'Cambridge'"


@pytest.mark.parametrize(
    ("kind", "entry_id", "usable"),
    [
        (ListKind.TAX_CODE, "TAX", True),
        (ListKind.TAX_CODE, "CustomSalesTax", True),
        (ListKind.TAX_CODE, "12", True),
        (ListKind.TAX_CODE, "../Invoice/1", False),
        (ListKind.TAX_CODE, "T A X", False),
        (ListKind.TAX_CODE, "ТАХ", False),  # Cyrillic look-alikes: not an Id QBO makes
        (ListKind.ACCOUNT, "TAX", False),  # only tax codes have Ids that are not numbers
        (ListKind.ITEM, "12", True),
    ],
)
def test_only_ids_qbo_makes_reach_a_url(kind: ListKind, entry_id: str, usable: bool) -> None:
    assert _usable_id(kind, entry_id) is usable


@pytest.mark.parametrize(
    ("setting", "entry", "fine"),
    [
        ("discount_account", ListEntry(ListKind.ACCOUNT, "9", "Discounts given", True, "Income"), True),
        ("discount_account", ListEntry(ListKind.ACCOUNT, "9", "Misc", True, "Other Income"), False),
        ("processing_fee_account", ListEntry(ListKind.ACCOUNT, "9", "Bank charges", True, "Expense"), True),
        ("processing_fee_account", ListEntry(ListKind.ACCOUNT, "9", "Fees", True, "Other Expense"), True),
        ("processing_fee_account", ListEntry(ListKind.ACCOUNT, "9", "Checking", True, "Bank"), False),
        # A tips item on a liability account (the crew's tips) is the bookkeeper's choice.
        ("tips_item", ListEntry(ListKind.ITEM, "9", "Tips", True, "Service", income_account_id="12"), True),
        ("tips_item", ListEntry(ListKind.ITEM, "9", "Tips", True, "Service"), False),
        ("surcharge_item", ListEntry(ListKind.ITEM, "9", "Surcharge", True, "NonInventory", "", "4"), True),
        ("surcharge_item", ListEntry(ListKind.ITEM, "9", "Surcharge", True, "Category", "", "4"), False),
        ("surcharge_item", ListEntry(ListKind.ITEM, "9", "Surcharge", False, "Service", "", "4"), False),
    ],
)
def test_the_section_8_rules(setting: str, entry: ListEntry, fine: bool) -> None:
    assert (LIST_SETTINGS[setting].problem(entry.ref, entry) is None) is fine
