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
from core.domain import InvoiceLine, PaymentMethod
from core.errors import (
    BookkeepingError,
    CustomerUnusableError,
    DuplicateNameError,
    LinkedRecordGoneError,
    RecordGoneError,
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


def test_a_stale_sync_token_is_reread_and_the_update_reapplied(company: Company) -> None:
    customer = company.system.create_customer(new_customer("Stale Token"), request_id="c-1").id
    paid = company.system.create(payment(customer), request_id="p-1")
    company.touch(TxnKind.PAYMENT, paid.id)
    updated = company.system.update(paid, payment(customer, "310.00"), request_id="p-2")
    assert updated.id == paid.id and int(updated.sync_token) >= 2


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


def test_links_open_the_record_in_the_right_company(company: Company) -> None:
    link = company.system.link_for(TxnKind.CHECK, "42")
    assert link.startswith("https://app.sandbox.qbo.intuit.com/app/check?txnId=42&deeplinkcompanyid=")
    assert "/app/customerdetail?nameId=7&" in company.system.link_for(None, "7")
