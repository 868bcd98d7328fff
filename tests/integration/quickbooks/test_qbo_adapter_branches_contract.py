"""SPEC §10's QuickBooks side, run against the in-memory fake and against the real adapter talking HTTP to the
emulator: classes and locations found as list entries, the company's tracking and numbering preferences, the
ClassRef and DepartmentRef each transaction carries (read back from the emulator as QuickBooks holds them),
refusals of a class or location QuickBooks cannot take, and invoice numbers — QuickBooks' own when none is
sent, duplicates refused only when the company says so, and `invoices_numbered` finding them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from core.accounting import (
    NO_TRACKING,
    DepositLine,
    DepositLineKind,
    DepositSpec,
    DiscountSpec,
    InvoiceSpec,
    NewCustomer,
    PaymentSpec,
    RefundSpec,
    Tracking,
    TxnKind,
)
from core.company_lists import ListKind
from core.connection import ClassTracking, ListRef
from core.domain import InvoiceLine, PaymentMethod
from core.errors import BookkeepingError

SETTING_INVALID = "QUICKBOOKS_SETTING_INVALID"


@dataclass
class Held:
    """What QuickBooks holds of a transaction's tracking: the header's ClassRef and DepartmentRef, and each
    line's ClassRef ("" for none)."""

    class_id: str
    department_id: str
    line_classes: list[str]


class Branches:
    """The company behind the port, as a QuickBooks admin shapes it for branches."""

    def __init__(self, company: Company) -> None:
        self.company = company
        self.system = company.system

    def add(self, kind: ListKind, name: str, parent_id: str = "") -> str:
        if isinstance(self.company, FakeCompany):
            return self.company.fake.add_list_entry(kind, name, parent_id=parent_id)
        assert isinstance(self.company, EmulatedCompany)
        record: dict[str, Any] = {"Name": name}
        if parent_id:
            record["ParentRef"] = {"value": parent_id}
        return str(self.company.rig.seed(kind.value, record)["Id"])

    def deactivate(self, kind: ListKind, entry_id: str) -> None:
        self.company.deactivate_list_entry(kind, entry_id)

    def prefs(self, **prefs: Any) -> None:
        """class_tracking (ClassTracking), track_departments, custom_txn_numbers, refuse_duplicate_doc_numbers."""
        if isinstance(self.company, FakeCompany):
            self.company.fake.set_preferences(**prefs)
            return
        assert isinstance(self.company, EmulatedCompany)
        body = {k: v for k, v in prefs.items() if k != "class_tracking"}
        tracking = prefs.get("class_tracking")
        if tracking is not None:
            body["class_tracking_per_txn"] = tracking is ClassTracking.PER_TRANSACTION
            body["class_tracking_per_txn_line"] = tracking is ClassTracking.PER_LINE
        rig = self.company.rig
        rig.admin("POST", f"/realms/{rig.realm_id}/preferences", body)

    def held(self, kind: TxnKind, record_id: str) -> Held:
        if isinstance(self.company, FakeCompany):
            # The fake holds the spec: what it carries is what the adapter sends for it (mapping.py).
            spec = self.company.fake.txn(record_id).spec
            tracking: Tracking = getattr(spec, "tracking", NO_TRACKING)
            per_line = isinstance(spec, InvoiceSpec) and tracking.class_per_line
            header_class = tracking.class_id if isinstance(spec, InvoiceSpec) and not per_line else ""
            if isinstance(spec, InvoiceSpec):
                count = len(spec.lines) + bool(spec.tip) + bool(spec.surcharge) + (spec.discount is not None)
                lines = [tracking.class_id if per_line else ""] * count
            elif isinstance(spec, DepositSpec):
                lines = [tracking.class_id if line.kind is not DepositLineKind.PAYMENT else "" for line in spec.lines]
            else:
                lines = [tracking.class_id]
            return Held(header_class, tracking.department_id, lines)
        assert isinstance(self.company, EmulatedCompany)
        entity = {TxnKind.INVOICE: "Invoice", TxnKind.DEPOSIT: "Deposit"}.get(kind, "Purchase")
        record = next(r for r in self.company.rig.records(entity) if r["Id"] == record_id)
        lines = []
        for line in record.get("Line", []):
            detail_type = line.get("DetailType")
            if detail_type == "SubTotalLineDetail":
                continue
            detail = line.get(detail_type) or {} if detail_type else {}
            lines.append(str((detail.get("ClassRef") or {}).get("value", "")))
        return Held(
            str((record.get("ClassRef") or {}).get("value", "")),
            str((record.get("DepartmentRef") or {}).get("value", "")),
            lines,
        )

    def doc_number(self, record_id: str) -> str:
        if isinstance(self.company, FakeCompany):
            return self.company.fake.txn(record_id).doc_number
        assert isinstance(self.company, EmulatedCompany)
        record = next(r for r in self.company.rig.records("Invoice") if r["Id"] == record_id)
        return str(record.get("DocNumber", ""))


@pytest.fixture(params=["fake", "emulator"])
def branches(request: pytest.FixtureRequest) -> Iterator[Branches]:
    if request.param == "fake":
        yield Branches(FakeCompany(FakeQuickBooks()))
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield Branches(EmulatedCompany(QboRig.connect(server)))
    finally:
        server.stop()


def customer(branches: Branches) -> str:
    new = NewCustomer("Bea Branch", "", "", "", "bea@example.com", "", "CRM customer c1")
    return branches.system.create_customer(new, request_id="c-1").id


LINES = (
    InvoiceLine("Moving, 3 movers", Decimal("3"), Decimal("100.00"), Decimal("300.00")),
    InvoiceLine("Boxes", Decimal("2"), Decimal("5.05"), Decimal("10.10")),
)


def invoice(
    customer_id: str, tracking: Tracking = NO_TRACKING, *, doc_number: str = "J-1", marker: str = "[m-i1]", **more: Any
) -> InvoiceSpec:
    return InvoiceSpec(
        customer_id, doc_number, date(2026, 1, 4), LINES, f"CRM job {marker}", marker, tracking=tracking, **more
    )


def refund(customer_id: str, tracking: Tracking) -> RefundSpec:
    return RefundSpec(
        customer_id,
        Decimal("50.00"),
        date(2026, 1, 6),
        TxnKind.EXPENSE,
        "refund",
        "CRM refund [m-r1]",
        "[m-r1]",
        tracking,
    )


# --- the lists and the preferences -----------------------------------------------------------------------


def test_classes_and_locations_are_found_by_id_or_name_active_or_not(branches: Branches) -> None:
    north = branches.add(ListKind.CLASS, "North")
    movers = branches.add(ListKind.CLASS, "Movers", parent_id=north)
    depot = branches.add(ListKind.DEPARTMENT, "Depot")
    branches.deactivate(ListKind.DEPARTMENT, depot)

    found = branches.system.find_list_entry(ListKind.CLASS, ListRef(movers))
    assert found is not None and (found.id, found.name, found.active) == (movers, "North:Movers", True)
    by_name = branches.system.find_list_entry(ListKind.CLASS, ListRef(name="North:Movers"))
    assert by_name is not None and by_name.id == movers
    location = branches.system.find_list_entry(ListKind.DEPARTMENT, ListRef(name="Depot"))
    assert location is not None and (location.id, location.active) == (depot, False)
    assert branches.system.find_list_entry(ListKind.CLASS, ListRef("999")) is None
    assert branches.system.find_list_entry(ListKind.DEPARTMENT, ListRef(name="Nowhere")) is None


def test_preferences_say_where_classes_are_tracked_and_who_numbers_invoices(branches: Branches) -> None:
    new = branches.system.company_preferences()
    # A new company: no classes, no locations, QuickBooks numbers the invoices.
    assert (new.class_tracking, new.track_departments, new.custom_txn_numbers) == (ClassTracking.OFF, False, False)

    branches.prefs(class_tracking=ClassTracking.PER_LINE, track_departments=True, custom_txn_numbers=True)
    prefs = branches.system.company_preferences()
    assert (prefs.class_tracking, prefs.track_departments, prefs.custom_txn_numbers) == (
        ClassTracking.PER_LINE,
        True,
        True,
    )
    branches.prefs(class_tracking=ClassTracking.PER_TRANSACTION)
    assert branches.system.company_preferences().class_tracking is ClassTracking.PER_TRANSACTION


# --- what each transaction carries ---------------------------------------------------------------------------


def test_an_invoice_carries_its_class_and_location_on_the_header(branches: Branches) -> None:
    branches.prefs(class_tracking=ClassTracking.PER_TRANSACTION, track_departments=True)
    north, depot = branches.add(ListKind.CLASS, "North"), branches.add(ListKind.DEPARTMENT, "Depot")
    created = branches.system.create(invoice(customer(branches), Tracking(north, depot)), request_id="i-1")
    assert branches.held(TxnKind.INVOICE, created.id) == Held(north, depot, ["", ""])


def test_a_class_per_line_lands_on_every_sales_and_discount_line(branches: Branches) -> None:
    branches.prefs(class_tracking=ClassTracking.PER_LINE)
    north = branches.add(ListKind.CLASS, "North")
    spec = invoice(
        customer(branches),
        Tracking(north, class_per_line=True),
        discount=DiscountSpec(Decimal("10.00"), "Loyal", apply_tax_after_discount=False),
    )
    created = branches.system.create(spec, request_id="i-1")
    assert branches.held(TxnKind.INVOICE, created.id) == Held("", "", [north, north, north])


def test_a_refund_and_a_payout_carry_the_class_on_their_account_lines(branches: Branches) -> None:
    branches.prefs(class_tracking=ClassTracking.PER_TRANSACTION, track_departments=True)
    north, depot = branches.add(ListKind.CLASS, "North"), branches.add(ListKind.DEPARTMENT, "Depot")
    if isinstance(branches.company, EmulatedCompany):
        branches.company.add_list_entry(ListKind.ACCOUNT, "Merchant account fees", "Expense", "BankCharges")
    customer_id = customer(branches)
    tracking = Tracking(north, depot)
    paid = PaymentSpec(
        customer_id, Decimal("100.00"), date(2026, 1, 5), PaymentMethod.CASH, "", (), "CRM payment [m-p1]", "[m-p1]"
    )
    payment = branches.system.create(paid, request_id="p-1")  # a payment carries neither: QBO's has no such refs
    expense = branches.system.create(refund(customer_id, tracking), request_id="r-1")
    assert branches.held(TxnKind.EXPENSE, expense.id) == Held("", depot, [north])

    payout = DepositSpec(
        date(2026, 1, 7),
        (
            DepositLine(DepositLineKind.PAYMENT, Decimal("100.00"), txn_id=payment.id),
            DepositLine(DepositLineKind.FEE, Decimal("-3.20"), memo="fees"),
        ),
        "CRM payout [m-d1]",
        "[m-d1]",
        tracking=tracking,
    )
    deposit = branches.system.create(payout, request_id="d-1")
    assert branches.held(TxnKind.DEPOSIT, deposit.id) == Held("", depot, ["", north])


# --- what QuickBooks refuses ----------------------------------------------------------------------------------


def test_a_missing_or_inactive_class_is_refused_naming_it(branches: Branches) -> None:
    customer_id = customer(branches)
    with pytest.raises(BookkeepingError, match="class 999") as missing:
        branches.system.create(invoice(customer_id, Tracking("999")), request_id="i-1")
    assert missing.value.reason == SETTING_INVALID
    south = branches.add(ListKind.CLASS, "South")
    branches.deactivate(ListKind.CLASS, south)
    with pytest.raises(BookkeepingError, match=f"class {south}") as inactive:
        branches.system.create(refund(customer_id, Tracking(south)), request_id="r-1")
    assert inactive.value.reason == SETTING_INVALID
    assert branches.company.live_count("Invoice") == 0 and branches.company.live_count("Purchase") == 0


def test_a_location_is_refused_while_the_company_tracks_none(branches: Branches) -> None:
    depot = branches.add(ListKind.DEPARTMENT, "Depot")
    customer_id = customer(branches)
    with pytest.raises(BookkeepingError, match="location") as refused:
        branches.system.create(invoice(customer_id, Tracking(department_id=depot)), request_id="i-1")
    assert refused.value.reason == SETTING_INVALID
    branches.prefs(track_departments=True)
    created = branches.system.create(invoice(customer_id, Tracking(department_id=depot)), request_id="i-2")
    assert branches.held(TxnKind.INVOICE, created.id).department_id == depot


# --- invoice numbers -------------------------------------------------------------------------------------------


def test_an_invoice_sent_without_a_number_gets_quickbooks_next_one(branches: Branches) -> None:
    customer_id = customer(branches)
    first = branches.system.create(invoice(customer_id, doc_number="", memo="Job 7001"), request_id="i-1")
    second = branches.system.create(invoice(customer_id, doc_number="", marker="[m-i2]"), request_id="i-2")
    assert (branches.doc_number(first.id), branches.doc_number(second.id)) == ("1001", "1002")
    # A resync sends no number either: the invoice keeps the one QuickBooks gave it.
    branches.system.update(first, invoice(customer_id, doc_number="", memo="Job 7001"), request_id="i-3")
    assert branches.doc_number(first.id) == "1001"
    assert [i.id for i in branches.system.invoices_numbered("1001")] == [first.id]
    if isinstance(branches.company, EmulatedCompany):
        held = next(r for r in branches.company.rig.records("Invoice") if r["Id"] == first.id)
        assert held["CustomerMemo"] == {"value": "Job 7001"}


def test_duplicate_numbers_are_allowed_unless_the_company_refuses_them(branches: Branches) -> None:
    customer_id = customer(branches)
    one = branches.system.create(invoice(customer_id, doc_number="J-1"), request_id="i-1")
    two = branches.system.create(invoice(customer_id, doc_number="J-1", marker="[m-i2]"), request_id="i-2")
    numbered = branches.system.invoices_numbered("J-1")
    assert [(i.id, i.private_note) for i in numbered] == [(one.id, "CRM job [m-i1]"), (two.id, "CRM job [m-i2]")]
    assert branches.system.invoices_numbered("J-2") == []
    assert branches.system.invoices_numbered("O'Brien\\1") == []  # quoted as every query literal is

    branches.prefs(refuse_duplicate_doc_numbers=True)
    with pytest.raises(BookkeepingError, match="J-1") as refused:
        branches.system.create(invoice(customer_id, doc_number="J-1", marker="[m-i3]"), request_id="i-3")
    assert refused.value.reason == "DOC_NUMBER_TAKEN"
    assert len(branches.system.invoices_numbered("J-1")) == 2
    # An invoice's own number is no duplicate of itself.
    three = branches.system.create(invoice(customer_id, doc_number="J-3", marker="[m-i3]"), request_id="i-4")
    branches.system.update(three, invoice(customer_id, doc_number="J-3", marker="[m-i3]"), request_id="i-5")
    assert [i.id for i in branches.system.invoices_numbered("J-3")] == [three.id]
