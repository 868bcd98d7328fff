"""SPEC §10, branches, on examples a bookkeeper can check by hand: the core through the in-memory store and the
fake QuickBooks with a company per connection.

Acme has a default connection (company A) and a branch "north" with its own company (N); branch "south" has
none, so it books into A, with a class and a location from A's branch mappings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from core.accounting import InvoiceSpec, PaymentSpec, RefundSpec
from core.branch_tracking import BRANCH_MAPPING_INVALID
from core.company_checks import BRANCH_NOT_CONNECTED
from core.company_lists import ListKind
from core.connection import BranchMapping, ClassTracking, InvoiceNumbering, ListRef, QuickBooksSettings
from core.connections_service import COMPANY_ALREADY_CONNECTED, ConnectionService
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    Refund,
    SyncJob,
    SyncJobState,
)
from core.errors import FailedPreconditionError, ValidationError
from core.payout_intake import PAYOUT_SPANS_COMPANIES
from core.record_writer import DOC_NUMBER_TAKEN
from tests.unit.support import CountingIds, Harness, StepClock

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
TENANT = "acme"
MARY = Customer("c1", "Mary", "Smith", email="mary@example.com")
MOVE = Job("j1", "1001", date(2026, 4, 3), (InvoiceLine("Move, 3 h", D("3"), D("100.00"), D("300.00")),))


def opportunity(branch: str = "", opportunity_id: str = "o1", service_type: str = "") -> Opportunity:
    return Opportunity(opportunity_id, f"N-{opportunity_id}", MARY, branch_id=branch, service_type=service_type)


def payment(payment_id: str = "p1", amount: str = "300.00", *refunds: Refund) -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CREDIT_CARD, T, f"ref-{payment_id}", tuple(refunds))


@dataclass
class Branches:
    """The core, the store and a fake company per connection, with Acme connected as said above."""

    store: InMemoryUnitOfWorkFactory = field(default_factory=InMemoryUnitOfWorkFactory)
    companies: FakeQuickBooksCompanies = field(default_factory=lambda: FakeQuickBooksCompanies(company_per_branch=True))

    def __post_init__(self) -> None:
        self.core = Harness(uow_factory=self.store, companies=self.companies)
        clock = StepClock()
        intuit = FakeQuickBooksAuthorization(clock, "app-id", "app-secret")
        self.connections = ConnectionService(self.store, intuit, clock, CountingIds(), accounting=self.companies)
        self.principal = self.core.principal(TENANT)

    def connect(self, branch: str, realm: str) -> None:
        self.connections.connect_with_tokens(TENANT, realm, "app-id", "secret", "refresh", branch_id=branch)

    def company(self, branch: str = "") -> FakeQuickBooks:
        return self.companies.company(TENANT, branch)

    def sync(self, opp: Opportunity, pay: Payment) -> SyncJob:
        job = self.core.service.sync_payment(self.principal, opp, pay)
        self.core.worker.drain()
        return self.core.service.get_job(self.principal, job.name)

    def close_out(self, opp: Opportunity, job: Job, *payments: Payment) -> SyncJob:
        accepted = self.core.service.close_out_job(self.principal, opp, job, list(payments))
        self.core.worker.drain()
        return self.core.service.get_job(self.principal, accepted.name)

    def settings(self, branch: str = "", **changes: object) -> QuickBooksSettings:
        settings = replace(QuickBooksSettings(), **changes)  # type: ignore[arg-type]
        return self.connections.update_settings(self.principal, settings, list(changes), branch_id=branch)


@pytest.fixture
def acme() -> Branches:
    world = Branches()
    for branch in ("", "north"):  # invoices numbered by the CRM, unless a test says otherwise
        world.company(branch).set_preferences(custom_txn_numbers=True)
    world.connect("", "100")
    world.connect("north", "200")
    return world


def succeeded(job: SyncJob) -> SyncJob:
    assert job.state is SyncJobState.SUCCEEDED, job.error
    return job


# --- routing ------------------------------------------------------------------------------------------


def test_a_branch_with_its_own_company_books_there_and_the_others_in_the_default_one(acme: Branches) -> None:
    succeeded(acme.sync(opportunity("north", "o1"), payment("p1", "300.00")))
    succeeded(acme.sync(opportunity("south", "o2"), payment("p2", "120.00")))
    succeeded(acme.sync(opportunity("", "o3"), payment("p3", "80.00")))

    assert [t.spec.amount for t in acme.company("north").live("Payment")] == [D("300.00")]
    assert sorted(t.spec.amount for t in acme.company().live("Payment")) == [D("80.00"), D("120.00")]


def test_one_crm_customer_gets_a_quickbooks_customer_in_each_company_and_a_status_for_each(acme: Branches) -> None:
    first = succeeded(acme.sync(opportunity("north", "o1"), payment("p1")))
    succeeded(acme.sync(opportunity("", "o2"), payment("p2")))

    north, default = acme.company("north"), acme.company()
    assert [c.display_name for c in north.customers.values()] == ["Mary Smith"]
    assert [c.display_name for c in default.customers.values()] == ["Mary Smith"]
    [north_id], [default_id] = list(north.customers), list(default.customers)
    # Each payment names its own company's customer.
    assert north.live("Payment")[0].spec.customer_id == north_id
    assert default.live("Payment")[0].spec.customer_id == default_id

    customer = EntityRef(EntityType.CUSTOMER, "c1")
    assert acme.core.service.get_status(acme.principal, customer).quickbooks_id == default_id
    in_north = acme.core.service.get_status(acme.principal, customer, branch_id="north")
    assert (in_north.quickbooks_id, in_north.entity) == (north_id, customer)
    # A branch without a company of its own sees the default company's link.
    assert acme.core.service.get_status(acme.principal, customer, branch_id="south").quickbooks_id == default_id
    # The job's results name the CRM customer, not the stored key of its link in the branch's company.
    assert customer in [r.entity for r in first.results]


def test_the_link_of_a_branchs_record_opens_the_branchs_company(acme: Branches) -> None:
    succeeded(acme.sync(opportunity("north", "o1"), payment("p1")))
    link = acme.core.service.get_link(acme.principal, EntityRef(EntityType.PAYMENT, "p1"))
    assert acme.company("north").realm_id in link and acme.company().realm_id not in link


def test_a_branch_with_no_company_to_go_to_is_refused_naming_it_and_nothing_is_stored() -> None:
    world = Branches()
    world.connect("north", "200")  # no default connection

    with pytest.raises(FailedPreconditionError) as refused:
        world.core.service.sync_payment(world.principal, opportunity("south"), payment())
    assert refused.value.reason == BRANCH_NOT_CONNECTED and "'south'" in str(refused.value)
    with world.store() as uow:
        assert uow.snapshots.get_opportunity(TENANT, "o1") is None
        assert uow.jobs.list_recent(TENANT, limit=5) == []
    succeeded(world.sync(opportunity("north"), payment()))


def test_a_company_belongs_to_one_connection_of_the_tenant(acme: Branches) -> None:
    with pytest.raises(FailedPreconditionError) as refused:
        acme.connect("south", "100")  # the default connection's company
    assert refused.value.reason == COMPANY_ALREADY_CONNECTED


def test_a_payout_of_payments_in_two_companies_is_refused(acme: Branches) -> None:
    succeeded(acme.sync(opportunity("north", "o1"), payment("p1", "300.00")))
    succeeded(acme.sync(opportunity("", "o2"), payment("p2", "100.00")))
    payout = Payout("po1", date(2026, 4, 5), D("400.00"), ("p1", "p2"))

    with pytest.raises(FailedPreconditionError) as refused:
        acme.core.service.sync_payout(acme.principal, payout)
    assert refused.value.reason == PAYOUT_SPANS_COMPANIES

    job = acme.core.service.sync_payout(acme.principal, replace(payout, amount=D("300.00"), payment_ids=("p1",)))
    acme.core.worker.drain()
    succeeded(acme.core.service.get_job(acme.principal, job.name))
    assert [t.spec.total for t in acme.company("north").live("Deposit")] == [D("300.00")]
    assert acme.company().live("Deposit") == []


# --- classes and locations ------------------------------------------------------------------------------


def tracked(acme: Branches, class_tracking: ClassTracking = ClassTracking.PER_TRANSACTION) -> tuple[str, str]:
    """South's class and location in the default company, mapped; returns their Ids."""
    company = acme.company()
    company.set_preferences(class_tracking=class_tracking, track_departments=True)
    class_id = company.add_list_entry(ListKind.CLASS, "South")
    department_id = company.add_list_entry(ListKind.DEPARTMENT, "Springfield")
    mapping = BranchMapping("south", class_ref=ListRef(name="south"), department_ref=ListRef(name="Springfield"))
    stored = acme.settings(branch_mappings=(mapping,))
    assert stored.branch_mappings == (
        BranchMapping(
            "south", class_ref=ListRef(class_id, "South"), department_ref=ListRef(department_id, "Springfield")
        ),
    )
    return class_id, department_id


def test_a_branchs_invoice_and_refund_carry_its_class_and_location_and_its_payment_none(acme: Branches) -> None:
    class_id, department_id = tracked(acme)
    paid = payment("p1", "300.00", Refund("r1", D("20.00"), T, "scratch"))
    succeeded(acme.close_out(opportunity("south"), MOVE, paid))

    company = acme.company()
    [invoice] = [t.spec for t in company.live("Invoice")]
    [refund] = [t.spec for t in company.live("Purchase")]
    [pay] = [t.spec for t in company.live("Payment")]
    assert isinstance(invoice, InvoiceSpec) and isinstance(refund, RefundSpec) and isinstance(pay, PaymentSpec)
    assert (invoice.tracking.class_id, invoice.tracking.department_id) == (class_id, department_id)
    assert not invoice.tracking.class_per_line
    assert (refund.tracking.class_id, refund.tracking.department_id) == (class_id, department_id)
    assert not hasattr(pay, "tracking")
    # A branch with no mapping writes none.
    succeeded(acme.close_out(opportunity("", "o2"), replace(MOVE, job_id="j2", number="1002"), payment("p2")))
    plain = next(
        t.spec for t in company.live("Invoice") if isinstance(t.spec, InvoiceSpec) and t.spec.doc_number == "1002"
    )
    assert isinstance(plain, InvoiceSpec) and not plain.tracking.is_set


def test_a_company_tracking_classes_per_line_gets_the_class_on_each_line(acme: Branches) -> None:
    class_id, _ = tracked(acme, ClassTracking.PER_LINE)
    acme.connections.refresh_company_preferences(TENANT)
    succeeded(acme.close_out(opportunity("south"), MOVE, payment()))
    [invoice] = [t.spec for t in acme.company().live("Invoice")]
    assert (
        isinstance(invoice, InvoiceSpec) and invoice.tracking.class_per_line and invoice.tracking.class_id == class_id
    )


def test_a_service_type_of_its_own_wins_over_the_branchs_mapping(acme: Branches) -> None:
    class_id, _ = tracked(acme)
    storage = acme.company().add_list_entry(ListKind.CLASS, "South storage")
    mappings = (
        BranchMapping("south", class_ref=ListRef(class_id)),
        BranchMapping("south", "storage", class_ref=ListRef(storage)),
    )
    acme.settings(branch_mappings=mappings)
    succeeded(acme.close_out(opportunity("south", "o1", "storage"), MOVE, payment("p1")))
    succeeded(
        acme.close_out(opportunity("south", "o2", "moving"), replace(MOVE, job_id="j2", number="1002"), payment("p2"))
    )
    classes = {t.spec.doc_number: t.spec.tracking.class_id for t in acme.company().live("Invoice")}  # type: ignore[union-attr]
    assert classes == {"1001": storage, "1002": class_id}


def test_a_missing_or_inactive_class_fails_the_sync_naming_the_mapping(acme: Branches) -> None:
    class_id, _ = tracked(acme)
    acme.company().deactivate_list_entry(ListKind.CLASS, class_id)
    with acme.store() as uow:  # the look-ups UpdateSettings made last a day: as if one had passed
        for lookup in uow.company_lookups.of_tenant(TENANT):
            uow.company_lookups.forget(TENANT, lookup.kind, lookup.name)
        uow.commit()

    job = acme.close_out(opportunity("south"), MOVE, payment())
    assert job.state is SyncJobState.FAILED and job.error is not None
    assert job.error.reason == BRANCH_MAPPING_INVALID
    assert "branch 'south'" in job.error.message and "inactive" in job.error.message
    assert acme.company().live("Invoice") == []


def test_class_tracking_off_fails_the_sync_until_it_is_turned_on_in_quickbooks(acme: Branches) -> None:
    tracked(acme)
    acme.company().set_preferences(class_tracking=ClassTracking.OFF)
    acme.connections.refresh_company_preferences(TENANT)

    job = acme.close_out(opportunity("south"), MOVE, payment())
    assert job.error is not None and job.error.reason == BRANCH_MAPPING_INVALID
    assert "class tracking is off" in job.error.message

    acme.company().set_preferences(class_tracking=ClassTracking.PER_TRANSACTION)  # the bookkeeper turns it on
    acme.core.service.retry(acme.principal, job.name)
    acme.core.worker.drain()
    succeeded(acme.core.service.get_job(acme.principal, job.name))


def test_a_mapping_the_company_cannot_take_is_refused_when_set_naming_it(acme: Branches) -> None:
    acme.company().add_list_entry(ListKind.CLASS, "South")  # class tracking is off
    mapping = BranchMapping("south", class_ref=ListRef(name="South"), department_ref=ListRef(name="Nowhere"))
    with pytest.raises(ValidationError) as refused:
        acme.settings(branch_mappings=(mapping,))
    fields = {v.field: v.description for v in refused.value.violations}
    assert "class tracking is off" in fields["settings.branch_mappings[0].class_name"]
    assert "settings.branch_mappings[0].department_name" in fields

    twice = (BranchMapping("south", class_ref=ListRef(name="South")),) * 2
    with pytest.raises(ValidationError) as repeated:
        acme.settings(branch_mappings=twice)
    assert [v.field for v in repeated.value.violations] == ["settings.branch_mappings[1].service_type"]


# --- invoice numbers ----------------------------------------------------------------------------------


def test_crm_numbering_refuses_a_number_another_invoice_has(acme: Branches) -> None:
    acme.settings(invoice_numbering=InvoiceNumbering.CRM, doc_number_prefix="AC-")
    typed = acme.company().add_customer("Someone Else")
    acme.company().create(
        InvoiceSpec(typed, "AC-1001", date(2026, 4, 1), MOVE.lines, "typed in QuickBooks", ""), request_id="typed"
    )

    job = acme.close_out(opportunity(), MOVE, payment())
    assert job.state is SyncJobState.FAILED and job.error is not None
    assert job.error.reason == DOC_NUMBER_TAKEN and "AC-1001" in job.error.message
    assert len(acme.company().live("Invoice")) == 1  # only the one typed in QuickBooks

    renumbered = replace(MOVE, number="1001b")
    succeeded(acme.close_out(opportunity(), renumbered, payment()))
    assert sorted(t.spec.doc_number for t in acme.company().live("Invoice")) == ["AC-1001", "AC-1001b"]  # type: ignore[union-attr]
    # Its own number again (a resync) is no collision.
    succeeded(acme.close_out(opportunity(), renumbered, payment()))


def test_quickbooks_numbering_sends_no_number_and_puts_the_job_number_in_the_memo(acme: Branches) -> None:
    with pytest.raises(ValidationError) as refused:  # with custom numbers on, QuickBooks would number nothing
        acme.settings(invoice_numbering=InvoiceNumbering.QUICKBOOKS)
    assert [v.field for v in refused.value.violations] == ["settings.invoice_numbering"]
    acme.company().set_preferences(custom_txn_numbers=False)  # the bookkeeper turns them off: read again
    acme.settings(invoice_numbering=InvoiceNumbering.QUICKBOOKS, doc_number_prefix="AC-")
    succeeded(acme.close_out(opportunity(), MOVE, payment()))
    [invoice] = acme.company().live("Invoice")
    assert isinstance(invoice.spec, InvoiceSpec)
    assert invoice.spec.doc_number == "" and invoice.spec.memo == "Job 1001"
    assert invoice.doc_number  # QuickBooks numbered it


def test_unset_numbering_follows_the_companys_custom_transaction_numbers(acme: Branches) -> None:
    acme.company().set_preferences(custom_txn_numbers=False)
    acme.connections.refresh_company_preferences(TENANT)
    assert acme.connections.get_connection(acme.principal).invoice_numbering is InvoiceNumbering.QUICKBOOKS
    acme.company().set_preferences(custom_txn_numbers=True)
    acme.connections.refresh_company_preferences(TENANT)
    assert acme.connections.get_connection(acme.principal).invoice_numbering is InvoiceNumbering.CRM


def test_a_record_is_never_updated_in_another_company_than_the_one_it_is_in(acme: Branches) -> None:
    succeeded(acme.sync(opportunity("south"), payment("p1", "300.00")))  # south books into the default company
    acme.connect("south", "300")  # then south gets a company of its own
    acme.company("south").add_customer("Someone Else")  # whose Ids mean other records there

    job = acme.sync(opportunity("south"), payment("p1", "310.00"))
    assert job.state is SyncJobState.FAILED and job.error is not None
    assert job.error.reason == "COMPANY_CHANGED" and "company 100" in job.error.message
    assert [t.spec.amount for t in acme.company().live("Payment")] == [D("300.00")]  # left as it was
    assert acme.company("south").live("Payment") == []  # and no second copy
