"""SPEC.md section 2 (R1–R10) as a hypothesis state machine.

The machine plays the CRM: it makes customers (shared names, apostrophes, unicode, odd spacing,
company-only), opportunities, payments with refunds (some with a tip and a processor's fee in them), edits and
close-outs (lines taxable or not; half of the jobs with SPEC.md section 8's tax, discounts, tip and surcharge; a
closed job's tax changed and resynced) in a company whose sales tax is automated, manual or none, payouts of the
payments (SPEC.md section 9: refunds netted, fees, adjustments; resynced with payments dropped or added; refused when
a cent off, listing another payout's payment or one never sent), and sends them through SyncService; a SyncWorker
drains the queue while the fake QuickBooks fails in every way it can (before and after a write commits, with and
without requestid replay). Someone else meanwhile adds customers and vendors in QuickBooks, and deletes or voids
what qbsync wrote (a deposit too; never a payment a deposit holds, which QuickBooks refuses).

After every step the QuickBooks company itself (not qbsync's records) is checked against `Crm`, a plain
model of what the CRM has said, which knows nothing of the code under test: one invariant per rule, each
in tests/rules_model.py, so a failure names the rule that broke.

The machine reaches QuickBooks only through `QuickBooksSide` (and reads it through `Books`), so the same
rules and invariants also run against the emulator through the real python-quickbooks adapter over HTTP
(tests/integration/quickbooks/test_sync_rules_machine_emulator.py): the fakeredis pattern.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Protocol

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.quickbooks.fake import FakeCustomer, FakeQuickBooks, FakeTxn, Fault
from core.accounting import InvoiceSpec, TxnKind
from core.company_tax import SalesTax
from core.domain import (
    Customer,
    Discount,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    PayoutAdjustment,
    Principal,
    Refund,
    SyncJobState,
)
from core.errors import FailedPreconditionError, NotFoundError, RequestIdReusedError, ValidationError
from core.outbox import PAYMENT_DEPOSITED
from core.payout_intake import PAYMENT_IN_ANOTHER_PAYOUT, PAYMENT_UNKNOWN
from core.record_writer import marker_for
from core.service import SyncService
from core.worker import SyncWorker
from tests.rules_model import (
    INVARIANTS,
    MARKER,
    NO_CHARGES,
    TENANT,
    ZERO,
    Before,
    Books,
    Charges,
    Crm,
    CrmJob,
    CrmPayment,
    Seen,
    amount_off,
    crm_name,
    invoices_filled,
    link_made,
    one_live,
    r1_customer_matched_on_name_and_email,
    r2_display_names_are_unique,
    r3_deposit_is_a_payment_only,
    r4_refunds_ride_with_their_payment,
    r5_invoice_at_close_out,
    r6_resync_updates_never_duplicates,
    r7_exactly_once,
    r8_state_you_can_show,
    r9_view_in_quickbooks,
    r10_the_books_balance,
    tidy,
)
from tests.unit.support import Harness

EXAMPLES = int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "200"))
STEPS = int(os.environ.get("QBSYNC_HYPOTHESIS_STEPS", "50"))
CENT = Decimal("0.01")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# --- strategies ----------------------------------------------------------------------------------

PEOPLE = [
    ("Mary", "O'Brien"),
    ("  mary", "  o'brien  "),
    ("MARY", "O'BRIEN"),
    ("Zoë", "Saldaña"),
    ("Łukasz", "Żółkiewski"),
    ("李", "小龙"),
    ("Seán", "Ó Súilleabháin"),
    ("Ann", "Lee"),
]
COMPANIES = ["Acme Movers", "  acme   MOVERS ", "Müller & Söhne", "O'Brien Bros."]
EMAILS = ["", "mary@example.com", "MARY@Example.com ", "zoe@example.org", "li@例え.jp"]

people = st.sampled_from(PEOPLE).map(lambda p: {"first_name": p[0], "last_name": p[1]})
odd_people = st.tuples(
    st.text(st.characters(categories=["Lu", "Ll", "Lo"]), min_size=1, max_size=6),
    st.sampled_from(["", " ", "  "]),
    st.text(st.characters(categories=["Lu", "Ll", "Lo"]), min_size=1, max_size=6),
).map(lambda t: {"first_name": t[1] + t[0] + t[1], "last_name": t[2]})
companies = st.sampled_from(COMPANIES).map(lambda c: {"company_name": c})
customer_names = st.one_of(people, people, companies, odd_people)
cents = st.one_of(st.integers(1, 60_000), st.sampled_from([100, 5_000, 10_000, 25_000]))
methods = st.sampled_from(list(PaymentMethod))
faults = st.lists(st.sampled_from(list(Fault)), min_size=1, max_size=3)


def _note(text: str) -> None:
    with contextlib.suppress(InvalidArgument):  # a rule called by hand, outside hypothesis
        note(text)


def money(n: int) -> Decimal:
    return Decimal(n).scaleb(-2)


@st.composite
def invoice_lines(draw: st.DrawFn) -> tuple[InvoiceLine, ...]:
    lines = []
    for number in range(draw(st.integers(1, 3))):
        quantity = draw(st.sampled_from([Decimal("1"), Decimal("2"), Decimal("3.5"), Decimal("0.5")]))
        # The first line is never free, so a job always totals more than zero (its discounts leave a cent).
        cheapest = 1 if number == 0 else 0
        unit_price = money(draw(st.one_of(st.integers(cheapest, 40_000), st.sampled_from([5_000, 10_000]))))
        amount = (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
        description = draw(st.sampled_from(["Move", "Packing", "Truck 26'", "Déménagement", "搬运"]))
        lines.append(InvoiceLine(description, quantity, unit_price, amount, taxable=draw(st.booleans())))
    return tuple(lines)


optional_cents = st.one_of(st.just(0), st.integers(1, 20_000)).map(money)
percents = st.one_of(
    st.sampled_from([Decimal("10"), Decimal("12.5"), Decimal("33.33"), Decimal("100")]),
    st.integers(1, 10_000).map(money),  # 0.01% to 100.00%: at most two decimals, as QuickBooks holds them
)


@st.composite
def charges_for(draw: st.DrawFn, lines: tuple[InvoiceLine, ...]) -> Charges:
    """SPEC section 8's charges for these lines, valid as the CRM sends them: tax only with a taxable line, up
    to two discounts (amount or percent) sharing one after_tax and leaving at least a cent of the lines."""
    lines_total = sum((line.amount for line in lines), ZERO)
    taxable = any(line.taxable for line in lines)
    # Mostly taxed where a line is taxable; untaxed still, the case automated sales tax would add its own to.
    tax = draw(st.one_of(st.integers(1, 20_000).map(money), optional_cents)) if taxable else ZERO
    rate_name = draw(st.sampled_from(["", "", "Sales tax", "County 8.25%"])) if tax else ""
    after_tax = draw(st.booleans())
    discounts: list[Discount] = []
    room = lines_total - CENT
    for _ in range(draw(st.integers(0, 2))):
        description = draw(st.sampled_from(["", "Spring special", "Repeat customer", "Militär"]))
        if draw(st.booleans()) and room >= CENT:
            discount = Discount(description, amount=money(draw(st.integers(1, int(room * 100)))), after_tax=after_tax)
        else:
            discount = Discount(description, percent=draw(percents), after_tax=after_tax)
        off = amount_off(discount, lines_total)
        if off <= room:  # else the CRM would not have let it through: left out
            discounts.append(discount)
            room -= off
    return Charges(tax, rate_name, tuple(discounts), draw(optional_cents), draw(optional_cents))


@st.composite
def job_bodies(draw: st.DrawFn) -> tuple[tuple[InvoiceLine, ...], Charges]:
    """A job's lines and charges; half of them plain lines with no charges, as before SPEC section 8."""
    lines = draw(invoice_lines())
    return lines, draw(st.one_of(st.just(NO_CHARGES), charges_for(lines)))


def _some(
    data: st.DataObject, payments: list[CrmPayment], *, min_size: int = 0, max_size: int | None = None
) -> list[CrmPayment]:
    """Some of these payments, each once, in the order drawn (none when there are none)."""
    if not payments:
        return []
    return data.draw(
        st.lists(st.sampled_from(payments), unique_by=lambda p: p.payment_id, min_size=min_size, max_size=max_size)
    )


def _one_of_or_none(data: st.DataObject, ids: list[str]) -> str | None:
    """One of these ids, or None (a new one is wanted)."""
    return data.draw(st.one_of(st.none(), st.sampled_from(ids))) if ids else None


def _share(amount: Decimal, percent: int) -> Decimal:
    """`percent` of a payment, in whole cents and never more than it: its tip, or the processor's fee."""
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_DOWN)


# --- the QuickBooks side: one interface, two backends ------------------------------------------------


class QuickBooksSide(Protocol):
    """The core (SyncService, SyncWorker) wired to one QuickBooks backend, and what someone else does in
    that QuickBooks company meanwhile. Implemented by `FakeSide` (below) and by `EmulatedSide`
    (tests/integration/quickbooks/test_sync_rules_machine_emulator.py: python-quickbooks and the emulator)."""

    service: SyncService
    worker: SyncWorker
    principal: Principal
    realm_id: str  # the QuickBooks company (R9: links open it)

    def books(self) -> Books:
        """The company as it is now (a snapshot or a live view: re-read after anything may have changed)."""
        ...

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str: ...

    def add_vendor(self, name: str) -> None: ...

    def deactivate_customer(self, customer_id: str, *, after_calls: int | None = None) -> None:
        """Now, or (after_calls=N) just before the (N+1)th call from now: in the middle of a sync.
        Deactivating now cancels a pending one."""
        ...

    def delete(self, kind: TxnKind, record_id: str) -> None: ...

    def void(self, kind: TxnKind, record_id: str) -> None: ...

    def inject(self, *faults: Fault) -> None:
        """The next calls fail, one fault each, in order."""
        ...

    def forget_request_ids(self) -> None:
        """QuickBooks forgets the answers it kept for requestid replay."""
        ...

    def write_count(self) -> int:
        """Writes QuickBooks received so far (replayed ones may count: the machine compares two counts)."""
        ...

    def set_sales_tax_mode(self, mode: SalesTax) -> None:
        """How the company treats sales tax, and the tenant's settings that mode needs (a tax code for MANUAL).
        Tips and surcharge items are set up from the start."""
        ...


class FakeBooks:
    """The fake company as the invariants read it: its own records (a live view). The fake keeps no
    TxnTaxDetail, so an invoice's tax is what its TotalAmt holds beyond the lines, tip and surcharge less the
    discount, as the fake forms TotalAmt (adapters/quickbooks/fake.py, `_invoice_total`)."""

    def __init__(self, fake: FakeQuickBooks) -> None:
        self.fake = fake

    @property
    def customers(self) -> Mapping[str, FakeCustomer]:
        return self.fake.customers

    @property
    def other_names(self) -> Collection[str]:
        return self.fake.other_names

    def live(self, entity: str) -> list[FakeTxn]:
        return self.fake.live(entity)

    def invoice_balance(self, invoice_id: str) -> Decimal:
        return self.fake.invoice_balance(invoice_id)

    def unapplied_amount(self, payment_id: str) -> Decimal:
        return self.fake.unapplied_amount(payment_id)

    def deposited_payments(self) -> Mapping[str, str]:
        held = {t.id: self.fake.deposit_holding(t.id) for t in self.fake.live("Payment")}
        return {payment: deposit for payment, deposit in held.items() if deposit is not None}

    def undeposited_funds(self) -> Decimal:
        return self.fake.undeposited_funds()

    def invoice_tax(self, invoice_id: str) -> Decimal:
        txn = self.fake.txn(invoice_id)
        spec = txn.spec
        assert isinstance(spec, InvoiceSpec)
        discount = spec.discount.amount if spec.discount is not None else ZERO
        charged = spec.lines_total + spec.tip + spec.surcharge - discount
        return txn.total - charged - self.fake.invoice_total_drift


class FakeSide:
    """The core on in-memory persistence and the in-memory fake QuickBooks."""

    def __init__(self) -> None:
        harness = Harness()
        self.service = harness.service
        self.worker = harness.worker
        self.principal = harness.principal(TENANT)
        self.fake: FakeQuickBooks = harness.qbo(TENANT)
        self.realm_id = self.fake.realm_id

    def books(self) -> Books:
        return FakeBooks(self.fake)

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str:
        return self.fake.add_customer(name, email, active=active)

    def add_vendor(self, name: str) -> None:
        self.fake.add_vendor(name)

    def deactivate_customer(self, customer_id: str, *, after_calls: int | None = None) -> None:
        self.fake.deactivate_customer(customer_id, after_calls=after_calls)

    def delete(self, kind: TxnKind, record_id: str) -> None:
        self.fake.delete(record_id)

    def void(self, kind: TxnKind, record_id: str) -> None:
        self.fake.void_in_quickbooks(record_id)

    def inject(self, *faults: Fault) -> None:
        self.fake.inject(*faults)

    def forget_request_ids(self) -> None:
        self.fake.forget_request_ids()

    def write_count(self) -> int:
        return self.fake.write_count

    def set_sales_tax_mode(self, mode: SalesTax) -> None:
        # The fake is the adapter too: it needs no settings for the tax code, tips or surcharge.
        self.fake.set_sales_tax(mode)


# --- the machine ----------------------------------------------------------------------------------


class SyncRulesMachine(RuleBasedStateMachine):
    """The rules against the fake; subclasses override `make_side` to run them against another backend."""

    def __init__(self) -> None:
        super().__init__()
        self.side = self.make_side()
        self.h = self.side  # the core: .service and .worker
        self.p = self.side.principal
        self._books: Books | None = None
        self._seen: Seen | None = None
        self.crm = Crm()
        self.requests: list[tuple[str, object, str]] = []  # (request_id, resend, job name)
        self.forget_between_attempts = False
        self.clock = T0

    @staticmethod
    def make_side() -> QuickBooksSide:
        return FakeSide()

    @property
    def qbo(self) -> Books:
        """QuickBooks as it was last read; `changed()` makes the next use read it again."""
        if self._books is None:
            self._books = self.side.books()
        return self._books

    def changed(self) -> None:
        self._books = None
        self._seen = None

    def seen(self) -> Seen:
        """What the rules are checked against: QuickBooks as last read, and qbsync's answers."""
        if self._seen is None:
            self._seen = Seen(self.qbo, self.h.service, self.p, self.side.realm_id)
        return self._seen

    def check_invariants(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        """After every step, QuickBooks is read afresh once, for all the invariants (over HTTP, a read per
        invariant would be most of the emulator run)."""
        self.changed()
        super().check_invariants(*args, **kwargs)

    # --- helpers --------------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=7)
        return self.clock

    def settle(self) -> None:
        """Drain the worker; jobs that used up their attempts are retried (R7: nothing is lost)."""
        self.changed()
        for _ in range(40):
            while self.h.worker.run_next("w") is not None:
                if self.forget_between_attempts:
                    self.side.forget_request_ids()
            failed, _ = self.h.service.list_errors(self.p, 100, "")
            if not failed:
                self.forget_between_attempts = False
                return
            for job in failed:
                assert job.error is not None
                assert job.error.retryable, f"{job.name} failed for good: {job.error}"
                self.h.service.retry(self.p, job.name)
        raise AssertionError("jobs keep failing")

    def send(self, call, *, customer_id: str | None, request: bool = False) -> str:  # type: ignore[no-untyped-def]
        """Send a request, drain, and check the customer link made on the way (R1/R2; a payout's request names
        no customer: None)."""
        before = Before.read(self.qbo)
        request_id = f"req-{len(self.requests) + 1}" if request else ""
        job = call(request_id)
        assert job.state is SyncJobState.PENDING
        self.crm.accepted.append(job.name)
        if request_id:
            self.requests.append((request_id, call, job.name))
        self.settle()
        self.changed()
        if customer_id is not None:
            link_made(self.crm, self.seen(), customer_id, before)
        return job.name

    def opportunity_payments(self, opportunity_id: str) -> list[Payment]:
        return [p.as_sent() for p in self.crm.payments_of(opportunity_id)]

    def one_live(self, kind: str, crm_id: str) -> FakeTxn:
        return one_live(self.qbo, kind, crm_id)

    # --- the CRM's rules ------------------------------------------------------------------------

    @initialize(
        customers=st.lists(st.tuples(customer_names, st.sampled_from(EMAILS)), min_size=1, max_size=4),
        someone_elses=st.lists(
            st.tuples(
                customer_names, st.sampled_from(EMAILS), st.sampled_from(["", "", " - 2", " - 3"]), st.booleans()
            ),
            max_size=3,
        ),
        vendors=st.lists(customer_names, max_size=2),
        deposits=st.lists(cents, min_size=1, max_size=4),
        look_alikes=st.lists(
            st.tuples(st.integers(0, 3), st.sampled_from(["", " - 2", " - 3", " - 7"]), st.booleans(), st.booleans()),
            max_size=4,
        ),
        sales_tax=st.sampled_from([SalesTax.AUTOMATED, SalesTax.AUTOMATED, SalesTax.MANUAL, SalesTax.NONE]),
    )
    def a_crm_and_a_quickbooks_company(
        self,
        customers: list[tuple[dict[str, str], str]],
        someone_elses: list[tuple[dict[str, str], str, str, bool]],
        vendors: list[dict[str, str]],
        deposits: list[int],
        look_alikes: list[tuple[int, str, bool, bool]],
        sales_tax: SalesTax,
    ) -> None:
        """CRM customers (shared names likely) with deposits taken but not yet synced, QuickBooks names
        already taken by someone else, and the company's sales tax: automated (QuickBooks computes tax unless
        told), manual (a tax code in the settings) or none (the CRM then charges no tax)."""
        self.side.set_sales_tax_mode(sales_tax)
        self.crm.sales_tax = sales_tax
        for names, email in customers:
            self.new_customer(names, email, "")
        crm_customers = list(self.crm.customers.values())
        for index, suffix, same_email, active in look_alikes:
            # Someone already made this customer in QuickBooks, perhaps twice ("Name" and "Name - 3").
            customer = crm_customers[index % len(crm_customers)]
            email = customer.email if same_email else "someone.else@example.com"
            name = crm_name(customer).upper() + suffix
            if not self._name_taken(name):
                self.side.add_customer(name, email.strip(), active=active)
                self.changed()
        for names, email, suffix, active in someone_elses:
            self.someone_adds_a_customer_in_quickbooks(names, email, suffix, active)
        for names in vendors:
            self.someone_adds_a_vendor_in_quickbooks(names)
        opportunities = sorted(self.crm.opportunities)
        for i, amount in enumerate(deposits):
            opportunity_id = opportunities[i % len(opportunities)]
            payment = CrmPayment(
                self.crm.new_id("p"), opportunity_id, money(amount), PaymentMethod.CREDIT_CARD, self.tick()
            )
            self.crm.payments[payment.payment_id] = payment

    @rule(names=customer_names, email=st.sampled_from(EMAILS), phone=st.sampled_from(["", "+1 555 0100"]))
    def new_customer(self, names: dict[str, str], email: str, phone: str) -> None:
        customer = Customer(self.crm.new_id("c"), email=email, phone=phone, **names)
        self.crm.customers[customer.customer_id] = customer
        opportunity_id = self.crm.new_id("o")
        self.crm.opportunities[opportunity_id] = Opportunity(opportunity_id, f"#{opportunity_id}", customer)

    @precondition(lambda self: self.crm.customers)
    @rule(data=st.data())
    def new_opportunity(self, data: st.DataObject) -> None:
        customer = self.crm.customers[data.draw(st.sampled_from(sorted(self.crm.customers)))]
        opportunity_id = self.crm.new_id("o")
        self.crm.opportunities[opportunity_id] = Opportunity(opportunity_id, f"#{opportunity_id}", customer)

    @rule(
        names=customer_names,
        email=st.sampled_from(EMAILS),
        suffix=st.sampled_from(["", "", " - 2", " - 3"]),
        active=st.booleans(),
    )
    def someone_adds_a_customer_in_quickbooks(
        self, names: dict[str, str], email: str, suffix: str, active: bool
    ) -> None:
        name = crm_name(Customer("x", **names)) + suffix
        if not self._name_taken(name):
            self.side.add_customer(name, email.strip(), active=active)
            self.changed()

    def someone_adds_a_vendor_in_quickbooks(self, names: dict[str, str]) -> None:
        name = crm_name(Customer("x", **names))
        if not self._name_taken(name):
            self.side.add_vendor(name)
            self.changed()

    def _name_taken(self, name: str) -> bool:
        names = [c.display_name for c in self.qbo.customers.values()] + list(self.qbo.other_names)
        return tidy(name) in {tidy(n) for n in names}

    @precondition(lambda self: self.crm.opportunities)
    @rule(
        data=st.data(),
        amount=cents,
        method=methods,
        sync=st.booleans(),
        request=st.booleans(),
        parts=st.tuples(st.integers(0, 100), st.integers(0, 6)),
    )
    def take_payment(
        self,
        data: st.DataObject,
        amount: int,
        method: PaymentMethod,
        sync: bool,
        request: bool,
        parts: tuple[int, int] = (0, 0),
    ) -> None:
        """A payment, perhaps with a tip in it and a processing fee the card processor kept (percents of it)."""
        opportunity_id = data.draw(st.sampled_from(sorted(self.crm.opportunities)))
        payment = CrmPayment(self.crm.new_id("p"), opportunity_id, money(amount), method, self.tick())
        payment.tip, payment.processing_fee = (_share(payment.amount, p) for p in parts)
        self.crm.payments[payment.payment_id] = payment
        if sync:
            self._sync_payment(payment, request=request)

    def _sync_payment(
        self, payment: CrmPayment, *, request: bool = False, refunds: list[Refund] | None = None, check: bool = True
    ) -> None:
        opportunity = self.crm.opportunities[payment.opportunity_id]
        body = payment.as_sent(refunds)
        _note(f"sync_payment {body}")
        self.send(
            lambda rid: self.h.service.sync_payment(self.p, opportunity, body, rid),
            customer_id=opportunity.customer.customer_id,
            request=request,
        )
        payment.sent = True
        if check:
            invoices_filled(self.crm, self.qbo, payment.opportunity_id, [payment.payment_id])

    @precondition(lambda self: any(p.amount > p.refunded for p in self.crm.payments.values()))
    @rule(data=st.data(), whole=st.booleans(), send_all=st.booleans())
    def refund(self, data: st.DataObject, whole: bool, send_all: bool) -> None:
        """R4: a refund, partial or of all that is left; the CRM may send only the new refund."""
        payment = data.draw(st.sampled_from([p for p in self.crm.payments.values() if p.amount > p.refunded]))
        room = int((payment.amount - payment.refunded) * 100)
        amount = money(room if whole else data.draw(st.integers(1, room)))
        refund = Refund(self.crm.new_id("r"), amount, self.tick(), data.draw(st.sampled_from(["", "damaged sofa"])))
        payment.refunds.append(refund)
        self._sync_payment(payment, refunds=None if send_all or not payment.sent else [refund])

    @precondition(lambda self: any(p.refunds for p in self.crm.payments.values()))
    @rule(data=st.data())
    def edit_refund_and_resync(self, data: st.DataObject) -> None:
        """R4/R6: a refund's amount corrected in the CRM (lower or higher, within the payment), then resynced:
        QuickBooks refuses an expense below what its payment links, so the order of writes matters. A refund
        a payout nets keeps its amount (SPEC section 9, like a deposited payment): refused, nothing stored."""
        payment = data.draw(st.sampled_from([p for p in self.crm.payments.values() if p.refunds]))
        index = data.draw(st.integers(0, len(payment.refunds) - 1))
        old = payment.refunds[index]
        room = int((payment.amount - payment.refunded + old.amount) * 100)
        amount = money(data.draw(st.integers(1, room)))
        netted_by = [p.payout_id for p in self.crm.payouts.values() if old.refund_id in p.refund_ids]
        if netted_by and payment.sent and amount != old.amount:
            refunds = list(payment.refunds)
            refunds[index] = Refund(old.refund_id, amount, old.refunded_time, old.memo)
            opportunity = self.crm.opportunities[payment.opportunity_id]
            with pytest.raises(FailedPreconditionError) as caught:
                self.h.service.sync_payment(self.p, opportunity, payment.as_sent(refunds))
            assert caught.value.reason == PAYMENT_DEPOSITED, caught.value
            assert caught.value.metadata["payout_id"] == netted_by[0], caught.value
            assert self.h.worker.drain() == 0, "a refused request queued a job"
            return
        payment.refunds[index] = Refund(old.refund_id, amount, old.refunded_time, old.memo)
        self._sync_payment(payment)

    @precondition(lambda self: self.crm.payments)
    @rule(data=st.data(), extra=st.integers(1, 10_000), send_all=st.booleans())
    def refund_more_than_the_payment(self, data: st.DataObject, extra: int, send_all: bool) -> None:
        """R4: refunds never exceed their payment: refused, naming payment.refunds, and nothing stored."""
        payment = data.draw(st.sampled_from(sorted(self.crm.payments.values(), key=lambda p: p.payment_id)))
        too_much = Refund(self.crm.new_id("r"), payment.amount - payment.refunded + money(extra), self.tick())
        refunds = [*payment.refunds, too_much] if send_all or not payment.sent else [too_much]
        opportunity = self.crm.opportunities[payment.opportunity_id]
        with pytest.raises(ValidationError) as caught:
            self.h.service.sync_payment(self.p, opportunity, payment.as_sent(refunds))
        assert "payment.refunds" in [v.field for v in caught.value.violations]
        self._nothing_stored(EntityRef(EntityType.REFUND, too_much.refund_id))

    def _nothing_stored(self, entity: EntityRef) -> None:
        with pytest.raises(NotFoundError):
            self.h.service.get_status(self.p, entity)
        assert self.h.worker.drain() == 0, "a refused request queued a job"

    @precondition(lambda self: self.crm.payments)
    @rule(data=st.data(), amount=cents, change_method=st.booleans())
    def edit_payment_and_resync(self, data: st.DataObject, amount: int, change_method: bool) -> None:
        """R6: a resync after the amount (or method) changed in the CRM; refunds stay within it. A payment in a
        payout keeps its amount (SPEC section 9: its deposit must keep matching the bank): refused, nothing
        stored."""
        payment = data.draw(st.sampled_from(sorted(self.crm.payments.values(), key=lambda p: p.payment_id)))
        new_amount = max(money(amount), payment.refunded, CENT)
        payout_id = self.crm.payout_of(payment.payment_id)
        if payout_id is not None and new_amount != payment.amount:
            body = payment.as_sent()
            # Its tip and fee fitted as below: the refusal is for the amount alone.
            tip, fee = min(body.tip, new_amount), min(body.processing_fee, new_amount)
            changed = replace(body, amount=new_amount, tip=tip, processing_fee=fee)
            opportunity = self.crm.opportunities[payment.opportunity_id]
            with pytest.raises(FailedPreconditionError) as caught:
                self.h.service.sync_payment(self.p, opportunity, changed)
            assert caught.value.reason == PAYMENT_DEPOSITED, caught.value
            assert self.h.worker.drain() == 0, "a refused request queued a job"
            return
        payment.amount = new_amount
        # The tip and the processor's fee are parts of the payment: never more than it.
        payment.tip, payment.processing_fee = (
            min(payment.tip, payment.amount),
            min(payment.processing_fee, payment.amount),
        )
        if change_method:
            payment.method = data.draw(methods)
        self._sync_payment(payment)

    # --- payouts (SPEC section 9) ------------------------------------------------------------------

    def _free_payments(self) -> list[CrmPayment]:
        """The payments qbsync has that no payout lists."""
        return [p for p in self.crm.sent if self.crm.payout_of(p.payment_id) is None]

    def _payout_of(self, data: st.DataObject, payout_id: str, payments: list[CrmPayment]) -> Payout:
        """A payout of these payments whose parts add up, as the processor sends it: some of their refunds
        netted, a small fee, perhaps a signed adjustment, and at least a cent left to reach the bank."""
        refunds = [r for p in payments for r in p.refunds]
        netted = data.draw(st.lists(st.sampled_from(refunds), unique_by=lambda r: r.refund_id)) if refunds else []
        paid = sum((p.amount for p in payments), ZERO)
        if paid - sum((r.amount for r in netted), ZERO) < CENT:
            netted = []  # fully refunded: nothing would reach the bank
        gross = paid - sum((r.amount for r in netted), ZERO)
        fees = money(data.draw(st.integers(0, min(500, int(gross * 100) - 1))))
        adjustments: tuple[PayoutAdjustment, ...] = ()
        if data.draw(st.booleans()):
            room = int((gross - fees) * 100) - 1  # an adjustment may take all but the last cent
            cents_off = data.draw(st.integers(-room, 2_000)) or 1
            adjustments = (PayoutAdjustment(money(cents_off), data.draw(st.sampled_from(["", "reserve released"]))),)
        amount = gross - fees + sum((a.amount for a in adjustments), ZERO)
        return Payout(
            payout_id,
            date(2026, 3, 2) + timedelta(days=len(self.crm.payouts)),
            amount,
            tuple(p.payment_id for p in payments),
            tuple(r.refund_id for r in netted),
            fees=fees,
            adjustments=adjustments,
        )

    def _sync_payout(self, payout: Payout, *, request: bool = False) -> None:
        _note(f"sync_payout {payout}")
        self.send(lambda rid: self.h.service.sync_payout(self.p, payout, rid), customer_id=None, request=request)
        self.crm.payouts[payout.payout_id] = payout

    @rule(data=st.data(), fresh=st.booleans(), amount=cents, request=st.booleans())
    def payout(self, data: st.DataObject, fresh: bool, amount: int, request: bool) -> None:
        """SPEC section 9: a payout of payments in no payout, perhaps one sent just before whose own job has not
        run yet (the payout's waits for it): one deposit of its amount, its payments out of Undeposited Funds."""
        free = self._free_payments()
        listed = _some(data, free, max_size=4)
        before = Before.read(self.qbo)
        fresh_customer = None
        if fresh or not listed:
            opportunity = self.crm.opportunities[data.draw(st.sampled_from(sorted(self.crm.opportunities)))]
            payment = CrmPayment(
                self.crm.new_id("p"), opportunity.opportunity_id, money(amount), data.draw(methods), self.tick()
            )
            self.crm.payments[payment.payment_id] = payment
            _note(f"sync_payment {payment.as_sent()} (not drained)")
            job = self.h.service.sync_payment(self.p, opportunity, payment.as_sent())
            self.crm.accepted.append(job.name)
            payment.sent = True
            listed.append(payment)
            fresh_customer = opportunity.customer.customer_id
        self._sync_payout(self._payout_of(data, self.crm.new_id("po"), listed), request=request)
        if fresh_customer is not None:
            link_made(self.crm, self.seen(), fresh_customer, before)

    @precondition(lambda self: self.crm.payouts)
    @rule(data=st.data(), deleted_first=st.booleans())
    def resync_payout(self, data: st.DataObject, deleted_first: bool) -> None:
        """SPEC section 9: a payout resynced with payments dropped or added (its amount follows): the same
        deposit (R6), the dropped payments back in Undeposited Funds. Or its deposit was deleted in
        QuickBooks first (its payments back in Undeposited Funds): written again, as it was (R6)."""
        payout = self.crm.payouts[data.draw(st.sampled_from(sorted(self.crm.payouts)))]
        current = [self.crm.payments[p] for p in payout.payment_ids]
        if deleted_first:
            deposit = self.one_live("payout", payout.payout_id)
            self.crm.removed.add(("payout", payout.payout_id))
            self.side.delete(TxnKind.DEPOSIT, deposit.id)
            self.changed()
            # Its amount afresh all the same: a refund it nets may have been corrected since.
            self._sync_payout(self._payout_of(data, payout.payout_id, current))
            assert self.one_live("payout", payout.payout_id).id != deposit.id
            return
        kept = _some(data, current)
        added = _some(data, self._free_payments(), max_size=3)
        self._sync_payout(self._payout_of(data, payout.payout_id, kept + added or current[:1]))

    @precondition(lambda self: self.crm.sent)
    @rule(data=st.data(), why=st.sampled_from(["a cent off", "another payout's payment", "a payment never sent"]))
    def payout_refused(self, data: st.DataObject, why: str) -> None:
        """SPEC section 9: a payout (new, or a resync) refused, and nothing of it stored or queued: its amount a
        cent off its parts (INVALID_ARGUMENT naming payout.amount); listing a payment another payout holds (a
        payment is in one payout at most: PAYMENT_IN_ANOTHER_PAYOUT); or one qbsync was never sent
        (PAYMENT_UNKNOWN)."""
        payout_id = _one_of_or_none(data, sorted(self.crm.payouts))
        mine = [self.crm.payments[p] for p in self.crm.payouts[payout_id].payment_ids] if payout_id else []
        listed = _some(data, mine + self._free_payments(), max_size=3)
        others = [p for p in self.crm.sent if self.crm.payout_of(p.payment_id) not in (None, payout_id)]
        unsent = [p for p in self.crm.payments.values() if not p.sent]
        if why == "another payout's payment" and others:
            listed.append(data.draw(st.sampled_from(others)))
            reason = PAYMENT_IN_ANOTHER_PAYOUT
        elif why == "a payment never sent" and unsent:
            listed.append(data.draw(st.sampled_from(unsent)))
            reason = PAYMENT_UNKNOWN
        else:
            reason = ""
        payout = self._payout_of(data, payout_id or self.crm.new_id("po"), listed or self.crm.sent[:1])
        if reason:
            with pytest.raises(FailedPreconditionError) as refused:
                self.h.service.sync_payout(self.p, payout)
            assert refused.value.reason == reason, refused.value
        else:
            off = data.draw(st.sampled_from([CENT, -CENT]))
            with pytest.raises(ValidationError) as invalid:
                self.h.service.sync_payout(self.p, replace(payout, amount=payout.amount + off))
            assert "payout.amount" in [v.field for v in invalid.value.violations], invalid.value
        if payout.payout_id in self.crm.payouts:
            assert self.h.worker.drain() == 0, "a refused request queued a job"  # the invariants: its deposit as was
        else:
            self._nothing_stored(EntityRef(EntityType.PAYOUT, payout.payout_id))

    def _fitted(self, charges: Charges) -> Charges:
        """The charges as this company's CRM would send them: no tax where QuickBooks has no sales tax."""
        if self.crm.sales_tax is SalesTax.NONE:
            return replace(charges, tax=ZERO, tax_rate_name="")
        return charges

    def _new_body(self, job: CrmJob, body: tuple[tuple[InvoiceLine, ...], Charges]) -> None:
        job.lines, charges = body
        job.charges = self._fitted(charges)

    @precondition(lambda self: self.crm.opportunities)
    @rule(data=st.data(), body=job_bodies(), request=st.booleans())
    def close_out_job(self, data: st.DataObject, body: tuple[tuple[InvoiceLine, ...], Charges], request: bool) -> None:
        """R5: a new job closed out with the opportunity's payments (or an old one closed out again); its lines
        taxable or not, perhaps with tax, discounts, a tip and a surcharge (SPEC section 8)."""
        opportunity_id = data.draw(st.sampled_from(sorted(self.crm.opportunities)))
        again = self.crm.jobs_of(opportunity_id)
        if again and data.draw(st.booleans()):
            job = data.draw(st.sampled_from(again))
        else:
            job_id = self.crm.new_id("j")
            lines, charges = body
            job = CrmJob(
                job_id,
                opportunity_id,
                f"M-{job_id}",
                date(2026, 3, 1) + timedelta(days=len(self.crm.closed_jobs)),
                lines,
                self._fitted(charges),
            )
        self._sync_job(job, close_out=True, request=request)

    @precondition(lambda self: self.crm.closed_jobs)
    @rule(data=st.data(), body=st.one_of(st.none(), job_bodies()))
    def edit_job_and_sync_invoice(
        self, data: st.DataObject, body: tuple[tuple[InvoiceLine, ...], Charges] | None
    ) -> None:
        """R5/R6: SyncInvoice after the job's lines and charges changed (or not): totals may fall below what
        was applied."""
        job = self.crm.closed_jobs[data.draw(st.sampled_from(sorted(self.crm.closed_jobs)))]
        if body is not None:
            self._new_body(job, body)
        self._sync_job(job, close_out=False)

    @precondition(
        lambda self: (
            self.crm.sales_tax is not SalesTax.NONE
            and any(line.taxable for j in self.crm.closed_jobs.values() for line in j.lines)
        )
    )
    @rule(data=st.data(), tax=optional_cents, close_out=st.booleans())
    def tax_changes_and_resync(self, data: st.DataObject, tax: Decimal, close_out: bool) -> None:
        """SPEC section 8: a closed job's tax corrected in the CRM (a rate changed; perhaps to none), then the
        job closed out again or its invoice synced: QuickBooks' tax, total and balance follow it, even below
        what was applied, and no automated sales tax of QuickBooks' own creeps in."""
        taxed = sorted(j for j, job in self.crm.closed_jobs.items() if any(line.taxable for line in job.lines))
        job = self.crm.closed_jobs[data.draw(st.sampled_from(taxed))]
        job.charges = replace(job.charges, tax=tax)
        self._sync_job(job, close_out=close_out)

    def _sync_job(self, job: CrmJob, *, close_out: bool, request: bool = False, check: bool = True) -> None:
        opportunity = self.crm.opportunities[job.opportunity_id]
        payments = self.opportunity_payments(job.opportunity_id)
        use = self.h.service.close_out_job if close_out else self.h.service.sync_invoice
        body = job.as_sent()
        _note(f"{use.__name__} {body} with {[p.payment_id for p in payments]}")
        self.send(
            lambda rid: use(self.p, opportunity, body, payments, rid),
            customer_id=opportunity.customer.customer_id,
            request=request,
        )
        self.crm.closed_jobs.setdefault(job.job_id, job)
        for payment in self.crm.payments_of(job.opportunity_id):
            payment.sent = True
        if check:
            invoices_filled(self.crm, self.qbo, job.opportunity_id, [p.payment_id for p in payments])

    @precondition(lambda self: self.crm.opportunities)
    @rule(data=st.data(), lines=invoice_lines())
    def sync_invoice_before_close_out(self, data: st.DataObject, lines: tuple[InvoiceLine, ...]) -> None:
        """R3: no invoice before close-out; the refused request stores nothing."""
        opportunity_id = data.draw(st.sampled_from(sorted(self.crm.opportunities)))
        job = Job(self.crm.new_id("j"), "M-open", date(2026, 3, 1), lines)
        with pytest.raises(FailedPreconditionError):
            self.h.service.sync_invoice(
                self.p, self.crm.opportunities[opportunity_id], job, self.opportunity_payments(opportunity_id)
            )
        self._nothing_stored(EntityRef(EntityType.INVOICE, job.job_id))

    # --- QuickBooks misbehaving, and people editing it -----------------------------------------

    @rule(which=faults, forget=st.booleans())
    def quickbooks_will_fail(self, which: list[Fault], forget: bool) -> None:
        """The next calls fail (before or after committing); maybe requestid replay is lost as well."""
        self.side.inject(*which)
        self.forget_between_attempts = self.forget_between_attempts or forget

    @precondition(lambda self: set(self.crm.links.values()) - self.crm.deactivated)
    @rule(data=st.data(), mid_job=st.booleans(), after_calls=st.integers(0, 12))
    def someone_deactivates_a_customer_in_quickbooks(
        self, data: st.DataObject, mid_job: bool, after_calls: int
    ) -> None:
        """R1: a linked customer made inactive in QuickBooks (QBO's "delete" of a customer), between syncs
        or in the middle of a sync of one of its opportunities (after a random number of calls). The sync
        that next writes for it finds or makes another customer and moves all of the CRM customer's
        payments, refunds and invoices there: the invariants check that nothing stays behind."""
        quickbooks_id = data.draw(st.sampled_from(sorted(set(self.crm.links.values()) - self.crm.deactivated)))
        self.crm.deactivated.add(quickbooks_id)
        if not mid_job:
            self.side.deactivate_customer(quickbooks_id)
            self.changed()
            return
        self.side.deactivate_customer(quickbooks_id, after_calls=after_calls)
        customer_id = data.draw(st.sampled_from(sorted(c for c, q in self.crm.links.items() if q == quickbooks_id)))
        opportunity_ids = sorted(
            o for o, opportunity in self.crm.opportunities.items() if opportunity.customer.customer_id == customer_id
        )
        mine = [p for p in self.crm.payments.values() if p.opportunity_id in opportunity_ids]
        syncs = [("payment", p.payment_id) for p in mine if p.sent]
        syncs += [("invoice", j.job_id) for j in self.crm.closed_jobs.values() if j.opportunity_id in opportunity_ids]
        syncs.append(("new payment", data.draw(st.sampled_from(opportunity_ids))))
        kind, crm_id = data.draw(st.sampled_from(syncs))
        _note(f"QBO customer {quickbooks_id} made inactive after {after_calls} calls of a sync of {kind} {crm_id}")
        if kind == "invoice":
            self._sync_job(self.crm.closed_jobs[crm_id], close_out=False)
        elif kind == "payment":
            self._sync_payment(self.crm.payments[crm_id])
        else:
            payment = CrmPayment(self.crm.new_id("p"), crm_id, money(5_000), PaymentMethod.CASH, self.tick())
            self.crm.payments[payment.payment_id] = payment
            self._sync_payment(payment)
        # If the sync made fewer calls, now; if it was made inactive already, this changes nothing.
        self.side.deactivate_customer(quickbooks_id)
        self.changed()

    @rule()
    def quickbooks_forgets_request_ids(self) -> None:
        self.side.forget_request_ids()

    def _removable(self) -> list[tuple[str, str, str]]:
        """(kind, CRM id, opportunity) of what someone may delete or void in QuickBooks: the payments, refunds
        and invoices sent, but no payment in a payout (QuickBooks deletes none in a deposit)."""
        choices = [
            ("payment", p.payment_id, p.opportunity_id)
            for p in self.crm.payments.values()
            if p.sent and self.crm.payout_of(p.payment_id) is None
        ]
        choices += [
            ("refund", r.refund_id, p.opportunity_id) for p in self.crm.payments.values() if p.sent for r in p.refunds
        ]
        return choices + [("invoice", j.job_id, j.opportunity_id) for j in self.crm.closed_jobs.values()]

    @precondition(lambda self: self._removable())
    @rule(data=st.data(), void=st.booleans())
    def someone_deletes_in_quickbooks_then_resync(self, data: st.DataObject, void: bool) -> None:
        """R6: a payment, refund or invoice deleted (or voided) in QuickBooks is recreated on resync,
        even when other syncs of the same opportunity ran in between."""
        kind, crm_id, opportunity_id = data.draw(st.sampled_from(sorted(self._removable())))
        txn = self.one_live(kind, crm_id)
        self.crm.removed.add((kind, crm_id))
        (self.side.void if void else self.side.delete)(txn.kind, txn.id)
        self.changed()
        between = [("payment", p.payment_id) for p in self.crm.payments_of(opportunity_id)]
        between += [("invoice", j.job_id) for j in self.crm.jobs_of(opportunity_id)]
        for other_kind, other_id in data.draw(st.lists(st.sampled_from(between), max_size=2)):
            if other_kind == "invoice":
                job = self.crm.closed_jobs[other_id]
                if data.draw(st.booleans()):
                    self._new_body(job, data.draw(job_bodies()))
                self._sync_job(job, close_out=False, check=False)
            else:
                self._sync_payment(self.crm.payments[other_id], check=False)
        if kind == "invoice":
            self._sync_job(self.crm.closed_jobs[crm_id], close_out=False)
        else:
            payment = next(
                p
                for p in self.crm.payments.values()
                if p.payment_id == crm_id or any(r.refund_id == crm_id for r in p.refunds)
            )
            self._sync_payment(payment)
        assert self.one_live(kind, crm_id).id != txn.id

    # --- request ids ---------------------------------------------------------------------------

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def same_request_again(self, data: st.DataObject) -> None:
        """The same request_id and body: the same SyncJob, and nothing new happens."""
        request_id, call, name = data.draw(st.sampled_from(self.requests))
        writes = self.side.write_count()
        assert call(request_id).name == name  # type: ignore[operator]
        assert self.h.worker.drain() == 0
        assert self.side.write_count() == writes

    @precondition(lambda self: self.requests and self.crm.opportunities)
    @rule(data=st.data(), amount=cents)
    def request_id_reused_for_another_body(self, data: st.DataObject, amount: int) -> None:
        request_id, _, _ = data.draw(st.sampled_from(self.requests))
        opportunity = self.crm.opportunities[data.draw(st.sampled_from(sorted(self.crm.opportunities)))]
        ghost = Payment(self.crm.new_id("p"), money(amount), PaymentMethod.CASH, self.tick())
        with pytest.raises(RequestIdReusedError):
            self.h.service.sync_payment(self.p, opportunity, ghost, request_id)
        self._nothing_stored(EntityRef(EntityType.PAYMENT, ghost.payment_id))

    def teardown(self) -> None:
        # Shown by --hypothesis-show-statistics: proof that the runs reach the interesting states.
        sent = [p for p in self.crm.payments.values() if p.sent]
        event(f"payments synced: {min(len(sent), 6)}+")
        event(f"refunds synced: {min(sum(len(p.refunds) for p in sent), 4)}+")
        event(f"jobs closed: {min(len(self.crm.closed_jobs), 3)}+")
        event(f"jobs run: {min(len(self.crm.accepted), 10)}+")
        event(f"QBO customers made inactive: {min(len(self.crm.deactivated), 2)}+")
        event(f"CRM customers moved to a successor: {min(self.crm.replaced, 2)}+")
        event(f"QBO customers with a suffix: {any(' - ' in c.display_name for c in self.qbo.customers.values())}")
        applied = any(line.txn_kind is TxnKind.INVOICE for t in self.qbo.live("Payment") for line in t.spec.lines)
        event(f"payments applied to an invoice: {applied}")
        event(f"sales tax: {self.crm.sales_tax.value}")
        charges = [job.charges for job in self.crm.closed_jobs.values()]
        event(f"invoices taxed: {any(c.tax for c in charges)}")
        event(f"invoices discounted: {any(c.discounts for c in charges)}")
        event(f"invoices with a tip or surcharge: {any(c.tip or c.surcharge for c in charges)}")
        event(f"invoices without charges: {any(c == NO_CHARGES for c in charges)}")
        event(f"payouts: {min(len(self.crm.payouts), 3)}+")
        deposited = sum(len(p.payment_ids) for p in self.crm.payouts.values())
        event(f"payments in a payout: {min(deposited, 4)}+")
        event(f"payouts netting a refund: {any(p.refund_ids for p in self.crm.payouts.values())}")

    # --- the rules of SPEC.md section 2, checked against the model (tests/rules_model.py) -----------
    # One invariant per rule: a failure names the rule that broke.

    @invariant()
    def r1_customer_matched_on_name_and_email(self) -> None:
        r1_customer_matched_on_name_and_email(self.crm, self.seen())

    @invariant()
    def r2_display_names_are_unique(self) -> None:
        r2_display_names_are_unique(self.crm, self.seen())

    @invariant()
    def r3_deposit_is_a_payment_only(self) -> None:
        r3_deposit_is_a_payment_only(self.crm, self.seen())

    @invariant()
    def r4_refunds_ride_with_their_payment(self) -> None:
        r4_refunds_ride_with_their_payment(self.crm, self.seen())

    @invariant()
    def r5_invoice_at_close_out(self) -> None:
        r5_invoice_at_close_out(self.crm, self.seen())

    @invariant()
    def r6_resync_updates_never_duplicates(self) -> None:
        r6_resync_updates_never_duplicates(self.crm, self.seen())

    @invariant()
    def r7_exactly_once(self) -> None:
        r7_exactly_once(self.crm, self.seen())

    @invariant()
    def r8_state_you_can_show(self) -> None:
        r8_state_you_can_show(self.crm, self.seen())

    @invariant()
    def r9_view_in_quickbooks(self) -> None:
        r9_view_in_quickbooks(self.crm, self.seen())

    @invariant()
    def r10_the_books_balance(self) -> None:
        r10_the_books_balance(self.crm, self.seen())


SyncRulesMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSyncRules = SyncRulesMachine.TestCase


def test_markers_are_parsed_as_the_engine_writes_them() -> None:
    """The machine finds records by the marker in their private note; keep its parser honest."""
    for generation in (0, 1, 12):
        text = f"CRM refund r7 of payment p3 {marker_for(TENANT, EntityRef(EntityType.REFUND, 'r7'), generation)}"
        match = MARKER.search(text)
        assert match is not None and (match["type"], match["id"]) == ("refund", "r7")


def test_the_model_is_not_empty() -> None:
    """A guard against an invariant that passes because both sides are empty."""
    machine = SyncRulesMachine()
    machine.new_customer({"first_name": "Mary", "last_name": "O'Brien"}, "mary@example.com", "")
    machine.take_payment(Drawn([next(iter(machine.crm.opportunities))]), 10_000, PaymentMethod.CASH, True, False)
    assert len(machine.qbo.live("Payment")) == 1
    check_every_rule(machine)
    # A payment that vanishes from QuickBooks must be noticed.
    machine.side.delete(TxnKind.PAYMENT, machine.qbo.live("Payment")[0].id)
    machine.changed()
    with pytest.raises(AssertionError, match="^R7: "):
        machine.r7_exactly_once()


def check_every_rule(machine: SyncRulesMachine) -> None:
    for check in INVARIANTS:
        getattr(machine, check.__name__)()


# Mary's move: $80.00 taxable and $10.00 not, 10% off before tax ($9.00), $5.94 tax (8.25% of the $72.00 taxed
# after the discount), a $5.00 tip and a $2.40 card surcharge: $94.34.
MOVE = (
    InvoiceLine("Move", Decimal("1"), Decimal("80.00"), Decimal("80.00"), taxable=True),
    InvoiceLine("Stairs", Decimal("2"), Decimal("5.00"), Decimal("10.00")),
)
MOVE_CHARGES = Charges(
    tax=Decimal("5.94"),
    tax_rate_name="Sales tax",
    discounts=(Discount("Spring special", percent=Decimal("10")),),
    tip=Decimal("5.00"),
    surcharge=Decimal("2.40"),
)


def a_deposit_refunded_then_closed_out(machine: SyncRulesMachine | None = None) -> SyncRulesMachine:
    """Mary's $100.00 cash deposit (a $3.00 tip in it, a $2.00 fee kept), $10.00 of it refunded, then her
    $94.34 move closed out with it (on a new machine, or on `machine`, whose company is set up already)."""
    machine = machine or SyncRulesMachine()
    machine.new_customer({"first_name": "Mary", "last_name": "O'Brien"}, "mary@example.com", "")
    [opportunity_id] = machine.crm.opportunities
    machine.take_payment(Drawn([opportunity_id]), 10_000, PaymentMethod.CASH, True, False, (3, 2))
    [payment] = machine.crm.payments.values()
    machine.refund(Drawn([payment, 1_000, ""]), False, True)
    machine.close_out_job(Drawn([opportunity_id]), (MOVE, MOVE_CHARGES), False)
    [job] = machine.crm.closed_jobs.values()
    assert job.total == Decimal("94.34")
    check_every_rule(machine)  # and R6 remembers the QBO Ids
    return machine


def _only_payment(machine: SyncRulesMachine) -> CrmPayment:
    [payment] = machine.crm.payments.values()
    return payment


def _move_the_payment_to_a_new_opportunity(machine: SyncRulesMachine) -> None:
    payment = _only_payment(machine)
    machine.new_opportunity(Drawn([machine.crm.customer_of(payment.opportunity_id).customer_id]))
    payment.opportunity_id = list(machine.crm.opportunities)[-1]


def _the_job(machine: SyncRulesMachine) -> CrmJob:
    [job] = machine.crm.closed_jobs.values()
    return job


def _reprice_the_job(machine: SyncRulesMachine) -> None:
    _the_job(machine).lines = (InvoiceLine("Move", Decimal("1"), Decimal("95.00"), Decimal("95.00"), taxable=True),)


def _recharge_the_job(**changes: object) -> Callable[[SyncRulesMachine], None]:
    """The CRM's charges changed behind the machine's back (the invoice in QuickBooks kept the old ones)."""

    def change(machine: SyncRulesMachine) -> None:
        job = _the_job(machine)
        job.charges = replace(job.charges, **changes)  # type: ignore[arg-type]

    return change


def _raise_the_payment(machine: SyncRulesMachine) -> None:
    _only_payment(machine).amount += Decimal("1.00")


def _untax_the_move(machine: SyncRulesMachine) -> None:
    job = _the_job(machine)
    job.lines = (replace(job.lines[0], taxable=False), *job.lines[1:])


# Each rule broken in turn (SPEC section 8's parts of R5 one by one), by changing QuickBooks or what the model
# expects of it behind the machine's back: (rule, what breaks it, what its failure must say besides the rule).
BREAKS: list[tuple[Callable[[Crm, Seen], None], Callable[[SyncRulesMachine], object], str]] = [
    (r1_customer_matched_on_name_and_email, lambda m: m.crm.links.update(c1=m.side.add_customer("Someone Else")), ""),
    (r2_display_names_are_unique, lambda m: m.side.add_vendor("MARY O'BRIEN"), ""),
    (r3_deposit_is_a_payment_only, _move_the_payment_to_a_new_opportunity, ""),
    (r4_refunds_ride_with_their_payment, lambda m: setattr(_only_payment(m), "method", PaymentMethod.CHECK), ""),
    (r5_invoice_at_close_out, _reprice_the_job, "TotalAmt 94.34 in QuickBooks, 98.84 in the CRM"),
    (r5_invoice_at_close_out, _recharge_the_job(tax=Decimal("6.94")), "TotalTax 5.94 in QuickBooks, 6.94 in the CRM"),
    (r5_invoice_at_close_out, _recharge_the_job(tip=Decimal("6.00")), "tip line 5.00 in QuickBooks, 6.00 in the CRM"),
    (r5_invoice_at_close_out, _recharge_the_job(surcharge=ZERO), "surcharge line 2.40 in QuickBooks, 0.00 in the"),
    (
        r5_invoice_at_close_out,
        _recharge_the_job(discounts=(Discount(percent=Decimal("15")),)),
        "discount line 9.00 in QuickBooks, 13.50 in the CRM",
    ),
    (
        r5_invoice_at_close_out,
        _recharge_the_job(discounts=(Discount("Spring special", percent=Decimal("10"), after_tax=True),)),
        "ApplyTaxAfterDiscount True in QuickBooks, False in the CRM",
    ),
    (r6_resync_updates_never_duplicates, lambda m: m.crm.quickbooks_ids.update({("payment", "p3"): "999"}), ""),
    (r6_resync_updates_never_duplicates, _untax_the_move, "invoice j5 has lines"),
    (r7_exactly_once, lambda m: m.side.delete(TxnKind.PAYMENT, m.qbo.live("Payment")[0].id), ""),
    (r8_state_you_can_show, lambda m: m.crm.links.pop("c1"), ""),
    (r9_view_in_quickbooks, lambda m: setattr(m.side, "realm_id", "another-company"), ""),
    (r10_the_books_balance, _raise_the_payment, "payments per customer"),
    (r10_the_books_balance, _recharge_the_job(surcharge=Decimal("3.40")), "has balance 4.34, not 95.34 less 90.00"),
]


def a_deposit_paid_out(machine: SyncRulesMachine | None = None) -> SyncRulesMachine:
    """After `a_deposit_refunded_then_closed_out`: Mary's $100.00 paid out, its $10.00 refund netted and a $2.00
    fee kept: $88.00 reaches the bank (SPEC section 9)."""
    machine = a_deposit_refunded_then_closed_out(machine)
    payment = _only_payment(machine)
    payout_id = machine.crm.new_id("po")
    refunds = (payment.refunds[0].refund_id,)
    machine._sync_payout(
        Payout(payout_id, date(2026, 3, 2), Decimal("88.00"), (payment.payment_id,), refunds, fees=Decimal("2.00"))
    )
    check_every_rule(machine)
    return machine


def its_deposit_deleted_and_resynced(machine: SyncRulesMachine) -> None:
    """After `a_deposit_paid_out`: someone deletes the deposit in QuickBooks, the payout is resynced as it was
    (the refund netted, the fee kept, no adjustment): a new deposit of $88.00, every rule holds."""
    [payout_id] = machine.crm.payouts
    [refund] = _only_payment(machine).refunds
    machine.resync_payout(Drawn([payout_id, [refund], 200, False]), True)
    check_every_rule(machine)
    assert machine.one_live("payout", payout_id).total == Decimal("88.00")


def test_a_deleted_deposit_is_written_again_on_the_fake() -> None:
    """SPEC section 9 (tests/integration/quickbooks/test_sync_rules_machine_emulator.py runs the same on the
    emulator, where R10 reads QuickBooks' own ledger)."""
    its_deposit_deleted_and_resynced(a_deposit_paid_out())


def _the_payout(machine: SyncRulesMachine, **changes: object) -> None:
    """The model's payout changed behind the machine's back (QuickBooks kept the deposit as written)."""
    [(payout_id, payout)] = machine.crm.payouts.items()
    machine.crm.payouts[payout_id] = replace(payout, **changes)  # type: ignore[arg-type]


def _delete_the_deposit(machine: SyncRulesMachine) -> None:
    machine.side.delete(TxnKind.DEPOSIT, machine.qbo.live("Deposit")[0].id)


# SPEC section 9's parts of R7 and R10 broken in turn, after `a_deposit_paid_out`.
PAYOUT_BREAKS: list[tuple[Callable[[Crm, Seen], None], Callable[[SyncRulesMachine], object], str]] = [
    (r7_exactly_once, _delete_the_deposit, ""),
    (r10_the_books_balance, _delete_the_deposit, "payout po6 names QBO deposit"),
    (r10_the_books_balance, lambda m: _the_payout(m, amount=Decimal("89.00")), "deposited as 88.00, not 89.00"),
    (r10_the_books_balance, lambda m: _the_payout(m, payment_ids=("p3", "p3")), "links payments"),
    (r10_the_books_balance, lambda m: m.crm.payouts.clear(), "Undeposited Funds holds payments [], not"),
]


@pytest.mark.parametrize(
    ("check", "breaking", "says"),
    PAYOUT_BREAKS,
    ids=[f"{check.__name__}-{i}" for i, (check, _, _) in enumerate(PAYOUT_BREAKS)],
)
def test_a_broken_payout_rule_is_caught_and_named(
    check: Callable[[Crm, Seen], None], breaking: Callable[[SyncRulesMachine], object], says: str
) -> None:
    machine = a_deposit_paid_out()
    assert set(machine.crm.payouts) == {"po6"}
    breaking(machine)
    machine.changed()
    rule = check.__name__.split("_")[0].upper()
    with pytest.raises(AssertionError, match=f"^{rule}: .*{re.escape(says)}"):
        getattr(machine, check.__name__)()


def test_a_tax_change_is_resynced_on_the_fake() -> None:
    """SPEC section 8: Mary's taxed move, its tax corrected to none and then to more: QuickBooks follows each
    time (tests/integration/quickbooks/test_sync_rules_machine_emulator.py runs the same on the emulator)."""
    resync_the_tax_changes(a_deposit_refunded_then_closed_out())


def resync_the_tax_changes(machine: SyncRulesMachine) -> None:
    """After `a_deposit_refunded_then_closed_out`: the tax dropped (the move's line then goes NON, and
    automated sales tax adds none of its own), then raised past what the deposit covers."""
    [job] = machine.crm.closed_jobs.values()
    for tax, close_out in ((ZERO, False), (Decimal("12.00"), True)):
        machine.tax_changes_and_resync(Drawn([job.job_id]), tax, close_out)
        check_every_rule(machine)
        invoice = machine.one_live("invoice", job.job_id)
        assert (invoice.total, machine.qbo.invoice_tax(invoice.id)) == (job.total, tax)
        assert [line.taxable for line in invoice.spec.lines] == [bool(tax), False]  # type: ignore[union-attr]


def test_every_rule_can_be_broken() -> None:
    assert {check for check, _, _ in BREAKS} == set(INVARIANTS)


@pytest.mark.parametrize(
    ("check", "breaking", "says"),
    BREAKS,
    ids=[f"{check.__name__}-{i}" for i, (check, _, _) in enumerate(BREAKS)],
)
def test_a_broken_rule_is_caught_and_named(
    check: Callable[[Crm, Seen], None], breaking: Callable[[SyncRulesMachine], object], says: str
) -> None:
    """Every invariant can fail, and its failure names its rule (and the part of it that broke)."""
    machine = a_deposit_refunded_then_closed_out()
    assert set(machine.crm.customers) == {"c1"} and set(machine.crm.payments) == {"p3"}
    breaking(machine)
    machine.changed()
    rule = check.__name__.split("_")[0].upper()
    with pytest.raises(AssertionError, match=f"^{rule}: .*{re.escape(says)}"):
        getattr(machine, check.__name__)()


class Drawn:
    """Stands in for `st.data()` when a rule is called by hand: the values it gives, in order."""

    def __init__(self, values: list[object]) -> None:
        self._values = list(values)

    def draw(self, strategy: object) -> object:
        return self._values.pop(0)


@pytest.mark.parametrize("after_calls", [1, 2, 3, 4, 5])
def test_a_payment_whose_create_answer_was_lost_moves_with_its_replaced_customer(after_calls: int) -> None:
    """Found by this machine (1,000 examples): a new payment's create committed in QuickBooks but its answer
    was lost, then the linked customer was deactivated. Its record knows no Id, only that the create was
    sent; the move to the successor must still take it along (found by its marker on the old customer)
    before the invoice it links can move — it used to fail for good with 'Invoice 2 is linked from a
    payment: its customer cannot change'."""
    machine = SyncRulesMachine()
    machine.new_customer({"first_name": "Mary", "last_name": "O'Brien"}, "", "")
    [opportunity] = machine.crm.opportunities
    lines = (InvoiceLine("Move", Decimal("1"), Decimal("50.00"), Decimal("50.00")),)
    machine.close_out_job(Drawn([opportunity]), (lines, Charges()), False)
    check_every_rule(machine)
    machine.quickbooks_will_fail([Fault.COMMIT_THEN_LOSE], True)
    machine.quickbooks_will_fail([Fault.THROTTLED, Fault.UNAVAILABLE, Fault.COMMIT_THEN_LOSE], False)
    crm_customer, link = next(iter(machine.crm.links.items()))
    machine.someone_deactivates_a_customer_in_quickbooks(
        Drawn([link, crm_customer, opportunity, ("new payment", opportunity)]), True, after_calls
    )
    check_every_rule(machine)
