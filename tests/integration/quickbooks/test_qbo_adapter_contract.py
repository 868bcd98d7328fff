"""One contract for the `AccountingSystem` port, run against the in-memory fake and against the real
python-quickbooks adapter talking HTTP to the emulator: both must behave the same where the core can see."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from core.accounting import (
    InvoiceSpec,
    LinkLine,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
)
from core.company_lists import LIST_SETTINGS, ListEntry, ListKind
from core.connection import ListRef
from core.currency import CompanyCurrency
from core.domain import InvoiceLine, PaymentMethod
from core.errors import (
    BookkeepingError,
    CustomerUnusableError,
    DuplicateNameError,
    LinkedRecordGoneError,
    RecordGoneError,
    StaleRecordError,
)


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


def new_customer(name: str, email: str = "", note: str = "CRM customer c1") -> NewCustomer:
    return NewCustomer(name, "", "", "", email, "", note)


def payment(
    customer_id: str, amount: str = "300.10", lines: tuple[LinkLine, ...] = (), marker: str = "[m-p1]"
) -> PaymentSpec:
    return PaymentSpec(
        customer_id,
        Decimal(amount),
        date(2026, 1, 2),
        PaymentMethod.CASH,
        "R-77",
        lines,
        f"CRM payment p1 {marker}",
        marker,
    )


def refund(
    customer_id: str, amount: str = "50.00", kind: TxnKind = TxnKind.EXPENSE, marker: str = "[m-r1]"
) -> RefundSpec:
    return RefundSpec(
        customer_id, Decimal(amount), date(2026, 1, 3), kind, "deposit back", f"CRM refund {marker}", marker
    )


def invoice(customer_id: str, marker: str = "[m-i1]") -> InvoiceSpec:
    lines = (
        InvoiceLine("Moving, 3 movers", Decimal("3.5"), Decimal("100.00"), Decimal("350.00")),
        InvoiceLine("Boxes", Decimal("2"), Decimal("5.05"), Decimal("10.10")),
    )
    return InvoiceSpec(customer_id, "1001", date(2026, 1, 4), lines, f"CRM job j1 {marker}", marker)


# --- customers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Pat O'Brien", "Back\\Slash Movers", "Anna Smith"])
def test_a_created_customer_is_found_by_email_and_by_name(company: Company, name: str) -> None:
    created = company.system.create_customer(new_customer(name, "pat@example.com"), request_id="c-1")
    assert created.display_name == name and created.email == "pat@example.com" and created.active

    by_email = company.system.find_customers(name, "pat@example.com")
    assert created.id in {c.id for c in by_email}

    nameless = company.system.create_customer(new_customer(name + " - 2"), request_id="c-2")
    by_name = {c.id for c in company.system.find_customers(name, "")}
    assert nameless.id in by_name


def test_a_taken_name_is_a_duplicate_whoever_holds_it(company: Company) -> None:
    company.add_vendor("Acme Movers")
    with pytest.raises(DuplicateNameError):
        company.system.create_customer(new_customer("Acme Movers"), request_id="c-1")
    company.add_customer("Old Client", active=False)
    with pytest.raises(DuplicateNameError):
        company.system.create_customer(new_customer("Old Client"), request_id="c-2")


def test_inactive_customers_are_not_found(company: Company) -> None:
    active = company.add_customer("Jo Doe", "jo@example.com")
    inactive = company.add_customer("Jo Doe - 2", "jo@example.com", active=False)
    found = {c.id for c in company.system.find_customers("Jo Doe", "jo@example.com")}
    assert active in found and inactive not in found


def test_a_repeated_request_id_replays_the_first_create(company: Company) -> None:
    first = company.system.create_customer(new_customer("Same Request"), request_id="c-same")
    again = company.system.create_customer(new_customer("Same Request"), request_id="c-same")
    assert again.id == first.id
    customer = first.id
    one = company.system.create(payment(customer), request_id="p-same")
    two = company.system.create(payment(customer), request_id="p-same")
    assert one.id == two.id
    assert company.live_count("Payment") == 1


# --- transactions ------------------------------------------------------------------------------


def test_payment_links_its_refund_and_its_invoice(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Link Test"), request_id="c-1").id
    paid = company.system.create(payment(customer, "500.00"), request_id="p-1")
    assert paid.kind is TxnKind.PAYMENT and paid.sync_token == "0"
    expense = company.system.create(refund(customer, "50.00"), request_id="r-1")
    check = company.system.create(refund(customer, "25.00", TxnKind.CHECK, "[m-r2]"), request_id="r-2")
    assert (expense.kind, check.kind) == (TxnKind.EXPENSE, TxnKind.CHECK)
    billed = company.system.create(invoice(customer), request_id="i-1")

    lines = (
        LinkLine(TxnKind.EXPENSE, expense.id, Decimal("50.00")),
        LinkLine(TxnKind.CHECK, check.id, Decimal("25.00")),
        LinkLine(TxnKind.INVOICE, billed.id, Decimal("360.10")),
    )
    updated = company.system.update(paid, payment(customer, "500.00", lines), request_id="p-2")
    assert updated.id == paid.id and updated.sync_token == "1"
    assert sorted(company.payment_links(paid.id)) == sorted(
        [("Expense", expense.id), ("Check", check.id), ("Invoice", billed.id)]
    )
    # All lines are sent every time: dropping one removes it.
    fewer = company.system.update(updated, payment(customer, "500.00", lines[:1]), request_id="p-3")
    assert company.payment_links(paid.id) == [("Expense", expense.id)]
    assert fewer.sync_token == "2"


def test_a_stale_sync_token_is_refused_with_the_current_one_and_nothing_written(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Stale Token"), request_id="c-1").id
    paid = company.system.create(payment(customer), request_id="p-1")
    company.touch(TxnKind.PAYMENT, paid.id)  # edited in QuickBooks (or by a worker that took the job over)
    with pytest.raises(StaleRecordError) as stale:
        company.system.update(paid, payment(customer, "310.00"), request_id="p-2")
    assert stale.value.sync_token == "1" and stale.value.retryable
    assert company.payment_amount(paid.id) == Decimal("300.10")  # the older spec was not re-applied

    fresh = QuickBooksRef(TxnKind.PAYMENT, paid.id, stale.value.sync_token)
    updated = company.system.update(fresh, payment(customer, "310.00"), request_id="p-3")
    assert updated.id == paid.id and updated.sync_token == "2"
    assert company.payment_amount(paid.id) == Decimal("310.00")


def test_a_stale_sync_token_on_a_deleted_record_says_it_is_gone(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Stale Gone"), request_id="c-1").id
    paid = company.system.create(payment(customer), request_id="p-1")
    company.touch(TxnKind.PAYMENT, paid.id)
    company.delete(TxnKind.PAYMENT, paid.id)
    with pytest.raises(RecordGoneError):
        company.system.update(paid, payment(customer, "310.00"), request_id="p-2")


@pytest.mark.parametrize(
    ("kind", "how"),
    [
        (TxnKind.PAYMENT, "delete"),
        (TxnKind.PAYMENT, "void"),
        (TxnKind.INVOICE, "delete"),
        (TxnKind.INVOICE, "void"),
        (TxnKind.EXPENSE, "delete"),
    ],
)
def test_updating_a_deleted_or_voided_record_says_it_is_gone(company: Company, kind: TxnKind, how: str) -> None:
    customer = company.system.create_customer(new_customer("Gone Record"), request_id="c-1").id
    spec = {TxnKind.PAYMENT: payment(customer), TxnKind.INVOICE: invoice(customer), TxnKind.EXPENSE: refund(customer)}[
        kind
    ]
    ref = company.system.create(spec, request_id="t-1")
    getattr(company, how)(kind, ref.id)
    with pytest.raises(RecordGoneError):
        company.system.update(ref, spec, request_id="t-2")
    assert company.system.find_by_marker(kind, spec.marker, customer) is None


def test_a_payment_linking_a_deleted_refund_is_refused_as_linked_gone(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Linked Gone"), request_id="c-1").id
    paid = company.system.create(payment(customer), request_id="p-1")
    expense = company.system.create(refund(customer), request_id="r-1")
    company.delete(TxnKind.EXPENSE, expense.id)
    with pytest.raises(LinkedRecordGoneError):
        company.system.update(
            paid, payment(customer, lines=(LinkLine(TxnKind.EXPENSE, expense.id, Decimal("50.00")),)), request_id="p-2"
        )


@pytest.mark.parametrize("kind", [TxnKind.PAYMENT, TxnKind.EXPENSE, TxnKind.INVOICE])
def test_writing_for_an_inactive_customer_is_refused_as_unusable(company: Company, kind: TxnKind) -> None:
    customer = company.system.create_customer(new_customer("Soon Inactive"), request_id="c-1").id
    spec = {TxnKind.PAYMENT: payment(customer), TxnKind.INVOICE: invoice(customer), TxnKind.EXPENSE: refund(customer)}[
        kind
    ]
    ref = company.system.create(spec, request_id="t-1")
    company.deactivate_customer(customer)
    with pytest.raises(CustomerUnusableError):
        company.system.create(spec, request_id="t-2")
    with pytest.raises(CustomerUnusableError):
        company.system.update(ref, spec, request_id="t-3")


@pytest.mark.parametrize("kind", [TxnKind.EXPENSE, TxnKind.CHECK, TxnKind.INVOICE])
@pytest.mark.parametrize("old_inactive", [False, True], ids=["active", "inactive"])
def test_a_linked_record_moves_to_another_customer_once_unlinked(
    company: Company, kind: TxnKind, old_inactive: bool
) -> None:
    """R1: the strict reading of QBO (see the emulator's store): a record a payment links keeps its customer,
    and a payment links only its own customer's records; unlink, move, link again is accepted."""
    old = company.system.create_customer(new_customer("Moving Away"), request_id="c-1").id
    new = company.system.create_customer(new_customer("Moving Away - 2"), request_id="c-2").id

    def linked_spec(customer: str) -> InvoiceSpec | RefundSpec:
        return invoice(customer) if kind is TxnKind.INVOICE else refund(customer, kind=kind)

    target = company.system.create(linked_spec(old), request_id="t-1")
    line = LinkLine(kind, target.id, Decimal("50.00"))
    paid = company.system.create(payment(old, lines=(line,)), request_id="p-1")
    if old_inactive:
        company.deactivate_customer(old)
    else:
        with pytest.raises(BookkeepingError):
            company.system.update(target, linked_spec(new), request_id="t-2")
    with pytest.raises(BookkeepingError):
        company.system.update(paid, payment(new, lines=(line,)), request_id="p-2")

    paid = company.system.update(paid, payment(new), request_id="p-3")
    assert company.payment_links(paid.id) == []
    target = company.system.update(target, linked_spec(new), request_id="t-3")
    paid = company.system.update(paid, payment(new, lines=(line,)), request_id="p-4")
    assert company.payment_links(paid.id) == [(kind.value, target.id)]


def test_find_by_marker_finds_the_live_record_only(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Marker Test"), request_id="c-1").id
    paid = company.system.create(payment(customer, marker="[qbsync acme/payment/p1]"), request_id="p-1")
    company.system.create(payment(customer, marker="[qbsync acme/payment/p1/1]"), request_id="p-2")
    expense = company.system.create(refund(customer, marker="[qbsync acme/refund/r1]"), request_id="r-1")
    billed = company.system.create(invoice(customer, marker="[qbsync acme/invoice/j1]"), request_id="i-1")

    assert company.system.find_by_marker(TxnKind.PAYMENT, "[qbsync acme/payment/p1]", customer) == QuickBooksRef(
        TxnKind.PAYMENT, paid.id, "0"
    )
    found = company.system.find_by_marker(TxnKind.EXPENSE, "[qbsync acme/refund/r1]", customer)
    assert found is not None and found.id == expense.id
    found = company.system.find_by_marker(TxnKind.INVOICE, "[qbsync acme/invoice/j1]", customer)
    assert found is not None and found.id == billed.id
    assert company.system.find_by_marker(TxnKind.PAYMENT, "[qbsync acme/payment/p9]", customer) is None
    company.void(TxnKind.PAYMENT, paid.id)
    assert company.system.find_by_marker(TxnKind.PAYMENT, "[qbsync acme/payment/p1]", customer) is None


def test_read_live_answers_the_live_records_of_the_kind_with_their_sync_tokens(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Live Reads"), request_id="c-1").id
    kept = company.system.create(refund(customer, marker="[m-r1]"), request_id="r-1")
    deleted = company.system.create(refund(customer, marker="[m-r2]"), request_id="r-2")
    check = company.system.create(refund(customer, kind=TxnKind.CHECK, marker="[m-r3]"), request_id="r-3")
    paid = company.system.create(payment(customer, marker="[m-p1]"), request_id="p-1")
    voided = company.system.create(payment(customer, marker="[m-p2]"), request_id="p-2")
    edited = company.system.update(paid, payment(customer, amount="310.00", marker="[m-p1]"), request_id="p-3")
    company.delete(TxnKind.EXPENSE, deleted.id)
    company.void(TxnKind.PAYMENT, voided.id)

    expenses = company.system.read_live(TxnKind.EXPENSE, [kept.id, deleted.id, check.id, "999999"])
    assert expenses == {kept.id: QuickBooksRef(TxnKind.EXPENSE, kept.id, kept.sync_token)}  # a check is no expense
    payments = company.system.read_live(TxnKind.PAYMENT, [paid.id, voided.id])
    assert payments == {paid.id: QuickBooksRef(TxnKind.PAYMENT, paid.id, edited.sync_token)}
    assert edited.sync_token != paid.sync_token
    assert company.system.read_live(TxnKind.CHECK, [check.id]).keys() == {check.id}


def test_read_amounts_answers_totals_balances_and_links_voided_ones_included(company: Company) -> None:
    """ReconcileCompany's read (SPEC §11): the fake and python-quickbooks over the emulator answer alike."""
    customer = company.system.create_customer(new_customer("Amount Reads"), request_id="c-1").id
    paid = company.system.create(payment(customer, "500.00"), request_id="p-1")
    expense = company.system.create(refund(customer, "50.00"), request_id="r-1")
    gone = company.system.create(refund(customer, "20.00", marker="[m-r2]"), request_id="r-2")
    billed = company.system.create(invoice(customer), request_id="i-1")
    lines = (
        LinkLine(TxnKind.EXPENSE, expense.id, Decimal("50.00")),
        LinkLine(TxnKind.INVOICE, billed.id, Decimal("300.00")),
    )
    company.system.update(paid, payment(customer, "500.00", lines), request_id="p-2")
    voided = company.system.create(payment(customer, "80.00", marker="[m-p2]"), request_id="p-3")
    company.void(TxnKind.PAYMENT, voided.id)
    company.delete(TxnKind.EXPENSE, gone.id)

    payments = company.system.read_amounts(TxnKind.PAYMENT, [paid.id, voided.id, "999999"])
    assert payments.keys() == {paid.id, voided.id}
    held = payments[paid.id]
    assert (held.total, held.open, held.linked, held.voided) == (
        Decimal("500.00"),
        Decimal("150.00"),
        Decimal("350.00"),
        False,
    )
    assert held.linked_ids == {expense.id, billed.id} and held.customer_id == customer
    assert payments[voided.id].voided and payments[voided.id].total == Decimal("0")
    invoices = company.system.read_amounts(TxnKind.INVOICE, [billed.id])
    assert (invoices[billed.id].total, invoices[billed.id].open) == (Decimal("360.10"), Decimal("60.10"))
    expenses = company.system.read_amounts(TxnKind.EXPENSE, [expense.id, gone.id])
    assert expenses.keys() == {expense.id} and expenses[expense.id].total == Decimal("50.00")


def test_links_open_the_record_in_the_right_company(company: Company) -> None:
    link = company.system.link_for(TxnKind.CHECK, "42")
    assert link.startswith("https://app.sandbox.qbo.intuit.com/app/check?txnId=42&deeplinkcompanyid=")
    assert "/app/customerdetail?nameId=7&" in company.system.link_for(None, "7")


# --- the company's lists (what settings point to) ----------------------------------------------------

# A new company's chart of accounts and lists, as QBO (and the emulator) seed them and the fake copies.
SEEDED = [
    (ListKind.ACCOUNT, "1", "Checking", "Bank", "Checking", ""),
    (ListKind.ACCOUNT, "2", "Undeposited Funds", "Other Current Asset", "UndepositedFunds", ""),
    (ListKind.ACCOUNT, "3", "Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable", ""),
    (ListKind.ACCOUNT, "4", "Services", "Income", "ServiceFeeIncome", ""),
    (ListKind.ACCOUNT, "5", "Credit Card", "Credit Card", "CreditCard", ""),
    (ListKind.ACCOUNT, "6", "Discounts given", "Income", "DiscountsRefundsGiven", ""),  # a discount line's account
    (ListKind.ITEM, "1", "Services", "Service", "", "4"),
    (ListKind.PAYMENT_METHOD, "2", "Check", "NON_CREDIT_CARD", "", ""),
    (ListKind.PAYMENT_METHOD, "3", "Credit Card", "CREDIT_CARD", "", ""),
]


@pytest.mark.parametrize(("kind", "entry_id", "name", "type_", "sub_type", "income"), SEEDED)
def test_a_list_entry_is_found_by_id_and_by_name(
    company: Company, kind: ListKind, entry_id: str, name: str, type_: str, sub_type: str, income: str
) -> None:
    expected = ListEntry(kind, entry_id, name, True, type_, sub_type, income)
    assert company.system.find_list_entry(kind, ListRef(entry_id)) == expected
    assert company.system.find_list_entry(kind, ListRef(entry_id, "a name that is ignored")) == expected
    assert company.system.find_list_entry(kind, ListRef(name=name)) == expected
    assert company.system.find_list_entry(kind, ListRef(name=f"  {name.upper()} ")) == expected


@pytest.mark.parametrize(
    "ref",
    [
        ListRef("999"),
        ListRef("abc"),
        ListRef("../Customer/1"),
        ListRef("²"),
        ListRef(name="No Such Account"),
        ListRef(name="Checking:Sub"),
    ],
)
def test_what_the_company_lacks_is_none(company: Company, ref: ListRef) -> None:
    assert company.system.find_list_entry(ListKind.ACCOUNT, ref) is None


def test_inactive_entries_are_found_and_say_so(company: Company) -> None:
    company.deactivate_list_entry(ListKind.ACCOUNT, "1")
    company.deactivate_list_entry(ListKind.PAYMENT_METHOD, "2")
    for kind, entry_id, name in [(ListKind.ACCOUNT, "1", "Checking"), (ListKind.PAYMENT_METHOD, "2", "Check")]:
        by_id = company.system.find_list_entry(kind, ListRef(entry_id))
        by_name = company.system.find_list_entry(kind, ListRef(name=name))
        assert by_id is not None and by_id == by_name and not by_id.active


def test_entries_made_in_quickbooks_are_found_with_their_types(company: Company) -> None:
    bank = company.add_list_entry(ListKind.ACCOUNT, "O'Brien\\Savings", "Bank", "Savings")
    goods = company.add_list_entry(ListKind.ITEM, "Boxes", "NonInventory", income_account_id="4")
    method = company.add_list_entry(ListKind.PAYMENT_METHOD, "Venmo")
    found = company.system.find_list_entry(ListKind.ACCOUNT, ListRef(name="o'brien\\savings"))
    assert found == ListEntry(ListKind.ACCOUNT, bank, "O'Brien\\Savings", True, "Bank", "Savings")
    item = company.system.find_list_entry(ListKind.ITEM, ListRef(goods))
    assert item == ListEntry(ListKind.ITEM, goods, "Boxes", True, "NonInventory", "", "4")
    venmo = company.system.find_list_entry(ListKind.PAYMENT_METHOD, ListRef(name="Venmo"))
    assert venmo is not None and (venmo.id, venmo.name, venmo.type) == (method, "Venmo", "NON_CREDIT_CARD")
    # An item's name is not an account's: each list is its own.
    assert company.system.find_list_entry(ListKind.ACCOUNT, ListRef(name="Boxes")) is None


@pytest.mark.parametrize(
    ("setting", "ref", "usable"),
    [
        ("deposit_account", ListRef("2"), True),  # Undeposited Funds
        ("deposit_account", ListRef("1"), True),  # straight to the bank
        ("deposit_account", ListRef(name="Services"), False),  # an Income account (issue 7)
        ("refund_bank_account", ListRef("1"), True),
        ("refund_bank_account", ListRef("5"), False),  # a Credit Card account: not for Cash/Check purchases
        ("accounts_receivable_account", ListRef("3"), True),
        ("accounts_receivable_account", ListRef("2"), False),
        ("income_item", ListRef("1"), True),
    ],
)
def test_the_setting_rules_judge_both_companies_alike(
    company: Company, setting: str, ref: ListRef, usable: bool
) -> None:
    rule = LIST_SETTINGS[setting]
    entry = company.system.find_list_entry(rule.kind, ref)
    assert (rule.problem(ref, entry) is None) is usable


def test_a_new_company_is_in_us_dollars_without_multicurrency(company: Company) -> None:
    assert company.system.company_preferences().currency == CompanyCurrency("USD", multicurrency=False)


def test_the_company_currency_is_read_as_quickbooks_has_it_now(company: Company) -> None:
    assert company.set_currency("CAD")
    assert company.system.company_preferences().currency == CompanyCurrency("CAD", multicurrency=False)
    assert company.set_currency(multicurrency=True)
    assert company.system.company_preferences().currency == CompanyCurrency("CAD", multicurrency=True)


def test_multicurrency_cannot_be_turned_off_nor_the_home_currency_changed_once_on(company: Company) -> None:
    assert company.set_currency("GBP", multicurrency=True)
    assert not company.set_currency(multicurrency=False)
    assert not company.set_currency("USD")
    assert company.system.company_preferences().currency == CompanyCurrency("GBP", multicurrency=True)


def test_void_keeps_a_payment_or_invoice_at_zero_and_deletes_a_refund_expense(company: Company) -> None:
    """SPEC §11 through the port: QBO voids Payments and Invoices; its API cannot void a Purchase, which is
    deleted. Voiding again is answered as voided (QBO's void takes no requestid: idempotency is what makes a
    resend safe), and a stale SyncToken does not stop it."""
    customer = company.system.create_customer(new_customer("Void Test"), request_id="c-1").id
    expense = company.system.create(refund(customer, marker="[m-r1]"), request_id="r-1")
    paid = company.system.create(payment(customer, marker="[m-p1]"), request_id="p-1")
    billed = company.system.create(invoice(customer, marker="[m-i1]"), request_id="i-1")
    edited = company.system.update(paid, payment(customer, amount="310.00", marker="[m-p1]"), request_id="p-2")

    voided = company.system.void(paid)  # paid's SyncToken is stale: edited since
    assert (voided.id, voided.total) == (paid.id, Decimal("0"))
    assert voided.sync_token != edited.sync_token
    again = company.system.void(voided)  # the emulator voids again, as QBO does; the fake sends nothing
    assert (again.kind, again.id, again.total) == (TxnKind.PAYMENT, paid.id, Decimal("0"))
    assert company.system.void(edited).id == paid.id  # an older token again: still answered as voided
    invoice_voided = company.system.void(billed)
    assert invoice_voided.total == Decimal("0")
    assert company.system.void(expense).id == expense.id
    assert company.system.void(expense).id == expense.id  # deleted already: done

    assert company.system.read_live(TxnKind.PAYMENT, [paid.id]) == {}
    assert company.system.read_live(TxnKind.INVOICE, [billed.id]) == {}
    assert company.system.read_live(TxnKind.EXPENSE, [expense.id]) == {}


def test_void_of_a_payment_deleted_in_quickbooks_says_it_is_gone(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Void Gone"), request_id="c-1").id
    paid = company.system.create(payment(customer, marker="[m-p1]"), request_id="p-1")
    company.delete(TxnKind.PAYMENT, paid.id)
    with pytest.raises(RecordGoneError):
        company.system.void(paid)
