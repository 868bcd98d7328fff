"""SPEC §10's routing as a hypothesis state machine: branches connect companies of their own (or not), the
default connection comes and goes, and the CRM's customers pay through opportunities of every branch, each
payment sent again with changed amounts.

`Routing` is the model: which company each branch's syncs go to (its own connection, whatever its state, else the
default one, else none), and what each company must then hold. After every step the fake companies themselves are
checked against it: every payment in exactly the company the rule says, at its newest amount; one QuickBooks
customer per CRM customer in each company it was synced to, and none elsewhere; each customer's status per
branch naming that company's customer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from core.company_checks import BRANCH_NOT_CONNECTED
from core.connections_service import ConnectionService
from core.domain import Customer, EntityRef, EntityType, Opportunity, Payment, PaymentMethod, SyncJobState
from core.errors import FailedPreconditionError
from tests.unit.support import CountingIds, Harness, StepClock

TENANT = "acme"
BRANCHES = ("", "north", "south", "east")  # "" is the default connection (and the branch-less opportunity)
CUSTOMERS = {
    "c1": Customer("c1", "Mary", "Smith", email="mary@example.com"),
    "c2": Customer("c2", "Raj", "Patel", email="raj@example.com"),
}
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)


@dataclass
class Routing:
    """What the CRM and the operator have done, and what SPEC §10 says follows from it."""

    connected: set[str] = field(default_factory=set)  # connections (branch ids; "" the default), ever made
    # payment id → (branch, customer id, newest amount, the connection it was written through)
    payments: dict[str, tuple[str, str, Decimal, str]] = field(default_factory=dict)

    def company_of(self, branch: str) -> str | None:
        """The connection a branch's syncs go to now."""
        if branch in self.connected:
            return branch
        return "" if "" in self.connected else None


class BranchRouting(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = InMemoryUnitOfWorkFactory()
        self.companies = FakeQuickBooksCompanies(company_per_branch=True)
        self.core = Harness(uow_factory=self.store, companies=self.companies)
        clock = StepClock()
        intuit = FakeQuickBooksAuthorization(clock, "app-id", "app-secret")
        self.connections = ConnectionService(self.store, intuit, clock, CountingIds(), accounting=self.companies)
        self.principal = self.core.principal(TENANT)
        self.model = Routing()
        self.realms = iter(range(100, 10_000))

    @rule(branch=st.sampled_from(BRANCHES))
    def connect(self, branch: str) -> None:
        """An admin connects the branch's own company (or the default one). Once a branch has payments through
        another company, its own company would make them COMPANY_CHANGED: the machine connects such a branch
        only before its first payment, as the README asks."""
        if branch in self.model.connected:
            return
        if any(b == branch and via != branch for b, _, _, via in self.model.payments.values()):
            return
        self.connections.connect_with_tokens(TENANT, str(next(self.realms)), "app", "secret", "rt", branch_id=branch)
        self.model.connected.add(branch)

    @rule(
        branch=st.sampled_from(BRANCHES),
        customer=st.sampled_from(sorted(CUSTOMERS)),
        number=st.integers(1, 4),
        cents=st.integers(100, 99_999),
    )
    def pay(self, branch: str, customer: str, number: int, cents: int) -> None:
        """A payment of an opportunity of `branch` (one opportunity per branch and customer), new or sent again."""
        payment_id = f"p-{branch or 'none'}-{customer}-{number}"
        known = self.model.payments.get(payment_id)
        opportunity = Opportunity(f"o-{branch or 'none'}-{customer}", "1", CUSTOMERS[customer], branch_id=branch)
        amount = Decimal(cents) / 100
        payment = Payment(payment_id, amount, PaymentMethod.CASH, T, "ref")
        route = self.model.company_of(branch)
        if route is None and not branch:
            return  # a branch-less job before any connection waits for one (the fake needs none: not modelled)
        try:
            job = self.core.service.sync_payment(self.principal, opportunity, payment)
        except FailedPreconditionError as refused:
            assert route is None and branch, f"refused though {branch!r} routes to {route!r}"
            assert refused.reason == BRANCH_NOT_CONNECTED
            return
        self.core.worker.drain()
        done = self.core.service.get_job(self.principal, job.name)
        assert done.state is SyncJobState.SUCCEEDED, done.error
        via = known[3] if known is not None else route
        self.model.payments[payment_id] = (branch, customer, amount, via)

    @invariant()
    def every_payment_is_in_the_company_the_rule_says_and_nowhere_else(self) -> None:
        for connection in self.model.connected:
            company = self.companies.company(TENANT, connection)
            held = {t.spec.private_note.split()[2].rstrip(","): t.spec.amount for t in company.live("Payment")}  # type: ignore[union-attr]
            expected = {pid: amount for pid, (_, _, amount, via) in self.model.payments.items() if via == connection}
            assert held == expected, f"company of {connection!r}"

    @invariant()
    def each_company_has_one_customer_per_crm_customer_synced_to_it(self) -> None:
        for connection in self.model.connected:
            company = self.companies.company(TENANT, connection)
            wanted = sorted({c for _, c, _, via in self.model.payments.values() if via == connection})
            names = sorted(c.display_name for c in company.customers.values())
            assert names == sorted(f"{CUSTOMERS[c].first_name} {CUSTOMERS[c].last_name}" for c in wanted)
            for customer in wanted:
                status = self.core.service.get_status(
                    self.principal, EntityRef(EntityType.CUSTOMER, customer), branch_id=connection
                )
                assert company.customers[status.quickbooks_id or ""].display_name.startswith(
                    CUSTOMERS[customer].first_name
                )


TestBranchRouting = BranchRouting.TestCase
EXAMPLES = int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "200"))
TestBranchRouting.settings = settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None)
