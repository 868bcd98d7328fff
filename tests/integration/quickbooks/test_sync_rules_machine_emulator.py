"""The rules state machine of tests/unit/test_sync_rules_machine.py, run again against the emulator through the
real python-quickbooks adapter over HTTP: the same rules, the same model and invariants (tests/rules_model.py,
one per rule of SPEC.md section 2), another QuickBooks (the fakeredis pattern: one state machine, both
implementations).

The realm is set up as the machine's company is (qbo_support.EmulatedCompany.set_up_charges and set_up_payouts): a
Tips item on a liability account and a Card surcharge item in the settings, a processing fees account and a payout
adjustments account (SPEC section 9), its sales tax mode drawn per example (automated,
manual with the rate the emulator makes as the tax code setting, or none), so the invoices' tax, discounts, tips
and surcharges go through the real adapter and the emulator's sales tax (SPEC section 8).

What the machine does to QuickBooks besides syncing goes through the emulator's admin API: customers and
vendors added, customers made inactive (now, or after N API calls: mid-job), payments, expenses and invoices
deleted or voided (an expense or check is deleted instead: QBO cannot void a Purchase), faults armed,
requestid replay forgotten. No rule is skipped. The fake's faults become the
emulator's (qbo_support._EMULATED_FAULT); the adapter retries a 503 or a 429 itself, so the engine sees fewer
failures than with the fake, but the books must end the same.

One emulator thread serves the whole run; every example gets a fresh realm (a new company and connection), so
nothing carries over between examples. Fewer, shorter examples than the unit run: every call is real HTTP.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, Phase, settings
from qbo_support import CoreRig, EmulatedCompany, QboRig

from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from adapters.quickbooks.qbo import RateLimits
from core.accounting import TxnKind
from core.company_tax import SalesTax
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncJobState,
)

# pytest imports this directory's modules with only this directory on sys.path (it is no package), before the
# repository root is there; the machine itself lives in tests/unit, so the root is made importable first.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.unit.test_sync_rules_machine import (  # noqa: E402
    EXAMPLES,
    STEPS,
    FakeSide,
    QuickBooksSide,
    SyncRulesMachine,
    a_deposit_paid_out,
    a_deposit_refunded_then_closed_out,
    its_deposit_deleted_and_resynced,
    resync_the_tax_changes,
)

pytestmark = pytest.mark.emulator

_server: EmulatorServer | None = None


def shared_emulator() -> EmulatorServer:
    """The run's one emulator, started on first use (hypothesis builds machines outside pytest's fixtures)."""
    global _server
    if _server is None:
        _server = run_emulator("127.0.0.1", 0)
    return _server


@pytest.fixture(scope="module", autouse=True)
def _stop_the_emulator() -> Iterator[None]:
    yield
    global _server
    if _server is not None:
        _server.stop()
        _server = None


UNPACED = RateLimits(per_minute=1_000_000, per_second=100_000, in_flight=10)


class EmulatedSide(EmulatedCompany):
    """The core (in-memory persistence, zero back-off) on the real adapter, connected to a fresh realm."""

    def __init__(self, server: EmulatorServer) -> None:
        # Intuit's 10 requests a second would pace the machine's thousands of calls; the limiter has its own tests.
        # The machine's invoices carry the CRM's job numbers (R6 checks them): custom transaction numbers on.
        super().__init__(QboRig.connect(server, limits=UNPACED, numbered_by_the_crm=True))
        core = CoreRig(self.rig)
        self.service = core.service
        self.worker = core.worker
        self.principal = core.principal
        self.realm_id = self.rig.realm_id
        self.set_up_charges()
        self.set_up_payouts()

    def set_sales_tax_mode(self, mode: SalesTax) -> None:
        """The realm's sales tax (the connection's too, as reading the company at connect would), and for
        MANUAL the tax code setting a taxed invoice needs: the rate the emulator made on switching."""
        self.set_sales_tax(mode)
        if mode is SalesTax.MANUAL:
            self.use_settings(tax_code=self.manual_tax_code())

    def void(self, kind: TxnKind, record_id: str) -> None:
        """QBO's API has no void for a Purchase (the emulator answers "Operation Void is not supported for
        Purchase", as QBO does) where the fake voids anything: someone removing a refund's expense or check
        deletes it instead. Payments and invoices are voided."""
        if kind in (TxnKind.EXPENSE, TxnKind.CHECK):
            self.delete(kind, record_id)
        else:
            super().void(kind, record_id)


class EmulatedSyncRulesMachine(SyncRulesMachine):
    @staticmethod
    def make_side() -> QuickBooksSide:
        return EmulatedSide(shared_emulator())

    def teardown(self) -> None:
        super().teardown()
        # Faults not taken by the end of an example are disarmed, and the request log (which `write_count`
        # reads) is emptied: both are per realm, but need not pile up over a long run.
        admin_url = shared_emulator().admin_url
        requests.post(f"{admin_url}/faults/clear", timeout=10)
        requests.post(f"{admin_url}/requests/clear", timeout=10)


EmulatedSyncRulesMachine.TestCase.settings = settings(
    max_examples=max(10, EXAMPLES // 8),
    stateful_step_count=max(10, STEPS // 2),
    deadline=None,
    # No shrinking: over HTTP it takes minutes. A failure is reported as found (at most the steps above); the
    # same steps replay against the fake by hand, or the unit run finds and shrinks the same bug in seconds.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSyncRulesAgainstTheEmulator = EmulatedSyncRulesMachine.TestCase


# --- what the emulator run found, pinned on both backends ------------------------------------------------


@pytest.mark.parametrize("backend", ["fake", "emulator"])
def test_a_voided_payment_does_not_hold_its_refund_to_an_inactive_customer(backend: str) -> None:
    """Found by the emulator run: a fully refunded deposit, its payment voided in QuickBooks, then its customer
    made inactive. The resync writes a new payment for a new customer and moves the refund's expense there; the
    voided payment (amounts zero, it applies nothing) must not hold the expense to the old customer."""
    side: QuickBooksSide = FakeSide() if backend == "fake" else EmulatedSide(shared_emulator())
    paid = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    mary = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
    opportunity = Opportunity("o1", "1001", mary)
    deposit = Payment(
        "p1", Decimal("329.00"), PaymentMethod.CREDIT_CARD, paid, "ref-p1", (Refund("r1", Decimal("329.00"), paid, ""),)
    )

    def sync() -> None:
        job = side.service.sync_payment(side.principal, opportunity, deposit)
        side.worker.drain()
        done = side.service.get_job(side.principal, job.name)
        assert done.state is SyncJobState.SUCCEEDED, done.error

    sync()
    status = side.service.get_status(side.principal, EntityRef(EntityType.PAYMENT, "p1"))
    customer = side.service.get_status(side.principal, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert status.quickbooks_id is not None and customer is not None
    side.void(TxnKind.PAYMENT, status.quickbooks_id)
    side.deactivate_customer(customer)
    sync()
    books = side.books()
    successor = side.service.get_status(side.principal, EntityRef(EntityType.CUSTOMER, "c1")).quickbooks_id
    assert successor != customer
    assert [t.spec.customer_id for t in books.live("Payment")] == [successor]
    assert [t.spec.customer_id for t in books.live("Purchase")] == [successor]


@pytest.mark.parametrize("backend", ["fake", "emulator"])
def test_a_payment_applied_to_an_invoice_voided_in_quickbooks_resyncs(backend: str) -> None:
    """Found by the emulator run: an invoice voided in QuickBooks while a payment is applied to it. The emulator
    (QBO) answers the payment's resync with "exceeds its open balance" (6000 on Line.Amount), not with a gone
    reference; the adapter must still report the link as gone, so the engine recreates the invoice (R6) and
    re-applies the payment to it instead of failing the job for good."""
    side: QuickBooksSide = FakeSide() if backend == "fake" else EmulatedSide(shared_emulator())
    opportunity = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
    deposit = Payment("p1", Decimal("50.00"), PaymentMethod.CASH, datetime(2026, 3, 1, 9, 0, tzinfo=UTC), "ref-p1")
    move = Job("j1", "M-j1", date(2026, 3, 2), (InvoiceLine("Move", Decimal("1"), Decimal("80.00"), Decimal("80.00")),))

    def done(job_name: str) -> None:
        side.worker.drain()
        job = side.service.get_job(side.principal, job_name)
        assert job.state is SyncJobState.SUCCEEDED, job.error

    done(side.service.close_out_job(side.principal, opportunity, move, [deposit]).name)
    invoice = side.service.get_status(side.principal, EntityRef(EntityType.INVOICE, "j1")).quickbooks_id
    assert invoice is not None
    side.void(TxnKind.INVOICE, invoice)
    done(side.service.sync_payment(side.principal, opportunity, deposit).name)
    books = side.books()
    [payment], [recreated] = books.live("Payment"), books.live("Invoice")
    assert recreated.id != invoice
    assert [(line.txn_id, line.amount) for line in payment.spec.lines] == [(recreated.id, Decimal("50.00"))]


@pytest.mark.parametrize("mode", [SalesTax.AUTOMATED, SalesTax.MANUAL])
def test_a_taxed_discounted_invoice_with_a_tip_and_its_tax_changes(mode: SalesTax) -> None:
    """SPEC section 8 through python-quickbooks and the emulator's sales tax, pinned (the generated runs reach a
    taxed invoice in a few examples only): Mary's move, taxable and not, 10% off before tax, a tip to the Tips
    liability item and a card surcharge, in a company with automated sales tax and in one with manual; every
    rule holds, then again after its tax is dropped and after it is raised."""
    machine = EmulatedSyncRulesMachine()
    machine.side.set_sales_tax_mode(mode)
    machine.crm.sales_tax = mode
    a_deposit_refunded_then_closed_out(machine)
    resync_the_tax_changes(machine)


def test_a_payout_and_its_deleted_deposit_on_the_emulator() -> None:
    """SPEC section 9 through python-quickbooks and the emulator's ledger, pinned: Mary's deposit paid out with its
    refund netted and a fee kept, every rule holding (R10 reads the emulator's own Undeposited Funds balance and
    which deposit holds which payment); then its deposit deleted in QuickBooks and the payout resynced."""
    its_deposit_deleted_and_resynced(a_deposit_paid_out(EmulatedSyncRulesMachine()))
