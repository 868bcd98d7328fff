"""SPEC section 8's settings without a company: which records need which setting, how a TaxCode reads
(Intuit's own sample rows), and what the rules say about entries of the wrong kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.inprocess import InProcessCompanyLock
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.qbo.lists import _usable_id, list_entry
from adapters.quickbooks.qbo.lookups import CompanyLookups
from adapters.quickbooks.qbo.settings import SettingsResolver, _default_by_name, settings_needed
from adapters.system import SystemClock
from core.accounting import DiscountSpec, InvoiceSpec, PaymentSpec, RefundSpec, TxnKind
from core.company_lists import LIST_SETTINGS, TAX_CODE_PSEUDO, TAX_CODE_RATE, ListEntry, ListKind
from core.company_tax import SalesTax
from core.connection import ListRef, QuickBooksConnection, QuickBooksSettings
from core.domain import InvoiceLine, PaymentMethod
from core.errors import BookkeepingError

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


# --- the resolver, over a company stub that answers as QBO's JSON does ----------------------------------


class StubCompany:
    """Stands for `CompanySession`: the tenant's connection, and QBO answering reads and queries from
    `rows` (entity -> records). Every query sent is kept, so a test sees what QuickBooks was asked."""

    def __init__(self, connection: QuickBooksConnection, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.connection = connection
        self.rows = rows
        self.queries: list[str] = []

    def call(self, operation: Callable[[Any], Any], *, write: bool, what: str, **_: Any) -> Any:
        assert not write, what
        return operation(self)

    def adopt(self, connection: QuickBooksConnection) -> None:
        self.connection = connection

    # the python-quickbooks client's reads
    def get_single_object(self, entity: str, entry_id: str) -> dict[str, Any]:
        for row in self.rows.get(entity, []):
            if row["Id"] == entry_id:
                return {entity: row}
        raise AssertionError(f"{entity} {entry_id} was read but the stub has none")

    def query(self, select: str) -> dict[str, Any]:
        self.queries.append(select)
        entity = select.split(" FROM ")[1].split()[0]
        named = re.search(r"Name = '((?:\\.|[^'])*)'", select)
        rows = [r for r in self.rows.get(entity, []) if named is None or r["Name"] == named.group(1)]
        return {"QueryResponse": {entity: rows}}


SERVICES = {"Id": "1", "Name": "Services", "Type": "Service", "IncomeAccountRef": {"value": "4"}}


def _resolver(
    sales_tax: SalesTax | None, settings: QuickBooksSettings, **rows: list[dict[str, Any]]
) -> tuple[StubCompany, SettingsResolver]:
    connection = QuickBooksConnection(
        "acme",
        "4620",
        "sandbox",
        "id",
        "secret",
        "refresh",
        sales_tax=sales_tax,
        settings=replace(settings, income_item=ListRef("1", "Services")),
    )
    uow = InMemoryUnitOfWorkFactory()
    with uow() as tx:
        tx.tenants.ensure("acme")
        tx.connections.save(connection)
        tx.commit()
    company = StubCompany(connection, {"Item": [SERVICES], **rows})
    lookups = CompanyLookups(uow, SystemClock(), InProcessCompanyLock())
    return company, SettingsResolver(company, uow, lookups)  # type: ignore[arg-type]


TAX_CODES = [CALIFORNIA, PSEUDO_TAX, {"Id": "3", "Name": "Boston", "TaxGroup": True, "Active": True}]


def test_a_job_s_tax_rate_name_is_the_invoice_s_tax_code_for_that_invoice_only() -> None:
    company, resolver = _resolver(
        SalesTax.MANUAL, QuickBooksSettings(tax_code=ListRef("2", "California")), TaxCode=TAX_CODES
    )
    used = resolver.for_spec(replace(TAXED, tax_rate_name=" Boston "))
    assert used.tax_code == ListRef("3", "Boston")
    assert company.queries == [
        "SELECT * FROM TaxCode WHERE Name = 'Boston' AND Active IN (true, false) STARTPOSITION 1 MAXRESULTS 1000"
    ]
    assert company.connection.settings.tax_code == ListRef("2", "California")  # the setting stays the default
    resolver.for_spec(replace(TAXED, tax_rate_name="boston"))
    assert len(company.queries) == 1  # found once, remembered
    # No rate of that name (or only a pseudo code): the tax code setting, checked, is the default.
    assert resolver.for_spec(replace(TAXED, tax_rate_name="Cambridge")).tax_code == ListRef("2", "California")
    assert resolver.for_spec(replace(TAXED, tax_rate_name="TAX")).tax_code == ListRef("2", "California")


def test_a_job_s_unknown_tax_rate_without_a_tax_code_setting_fails_naming_both() -> None:
    _, resolver = _resolver(SalesTax.MANUAL, QuickBooksSettings(), TaxCode=TAX_CODES)
    with pytest.raises(BookkeepingError) as failed:
        resolver.for_spec(replace(TAXED, tax_rate_name="Cambridge"))
    assert str(failed.value) == (
        "the tax code setting is not set, and the job's tax rate 'Cambridge' is no active sales tax rate in "
        "QuickBooks: create that rate in QuickBooks, or set the tax code"
    )


def test_with_automated_sales_tax_the_job_s_rate_name_is_not_looked_up() -> None:
    company, resolver = _resolver(SalesTax.AUTOMATED, QuickBooksSettings(), TaxCode=TAX_CODES)
    used = resolver.for_spec(replace(TAXED, tax_rate_name="Boston"))
    assert not used.tax_code.is_set and company.queries == []


def _entry(entry_id: str, name: str, type_: str, sub_type: str = "", active: bool = True) -> ListEntry:
    return ListEntry(ListKind.ACCOUNT, entry_id, name, active, type_, sub_type)


@pytest.mark.parametrize(
    ("setting", "entries", "chosen"),
    [
        # The names in order of preference, whatever the Ids.
        (
            "processing_fee_account",
            [_entry("3", "Bank charges", "Expense"), _entry("9", "Merchant account fees", "Expense")],
            ListRef("9", "Merchant account fees"),
        ),
        # An entry of that name its rule refuses (inactive, or of the wrong type) is passed over.
        (
            "processing_fee_account",
            [
                _entry("3", "Merchant account fees", "Expense", active=False),
                _entry("4", "Bank Charges", "Income"),
                _entry("5", "Bank Charges & Fees", "Expense"),
            ],
            ListRef("5", "Bank Charges & Fees"),
        ),
        # Failing a name, the lowest Id of the use's AccountSubType.
        (
            "discount_account",
            [
                _entry("12", "Promo", "Income", "DiscountsRefundsGiven"),
                _entry("11", "Sale", "Income", "DiscountsRefundsGiven"),
                _entry("2", "Sales", "Income"),
            ],
            ListRef("11", "Sale"),
        ),
        ("discount_account", [_entry("2", "Sales", "Income"), _entry("3", "Discounts given", "Expense")], None),
        # A sub-account by its own name.
        ("discount_account", [_entry("7", "Sales:Discounts Given", "Income")], ListRef("7", "Sales:Discounts Given")),
    ],
)
def test_a_section_8_default_is_found_by_name_then_by_detail_type(
    setting: str, entries: list[ListEntry], chosen: ListRef | None
) -> None:
    assert _default_by_name(setting, entries) == chosen
