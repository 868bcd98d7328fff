"""SPEC.md section 2 (R1–R10) as a hypothesis state machine.

The machine plays the CRM: it makes customers (shared names, apostrophes, unicode, odd spacing,
company-only), opportunities, payments with refunds, edits and close-outs, and sends them through
SyncService; a SyncWorker drains the queue while the fake QuickBooks fails in every way it can (before
and after a write commits, with and without requestid replay). Someone else meanwhile adds customers and
vendors in QuickBooks, and deletes or voids what qbsync wrote.

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
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.quickbooks.fake import FakeQuickBooks, FakeTxn, Fault
from core.accounting import TxnKind
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Principal,
    Refund,
    SyncJobState,
)
from core.errors import FailedPreconditionError, NotFoundError, RequestIdReusedError, ValidationError
from core.record_writer import marker_for
from core.service import SyncService
from core.worker import SyncWorker
from tests.rules_model import (
    INVARIANTS,
    MARKER,
    TENANT,
    Before,
    Books,
    Crm,
    CrmJob,
    CrmPayment,
    Seen,
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
    for _ in range(draw(st.integers(1, 3))):
        quantity = draw(st.sampled_from([Decimal("1"), Decimal("2"), Decimal("3.5"), Decimal("0.5")]))
        unit_price = money(draw(st.one_of(st.integers(0, 40_000), st.sampled_from([5_000, 10_000]))))
        amount = (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
        description = draw(st.sampled_from(["Move", "Packing", "Truck 26'", "Déménagement", "搬运"]))
        lines.append(InvoiceLine(description, quantity, unit_price, amount))
    return tuple(lines)


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
        return self.fake  # a live view: the fake's own records

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str:
        return self.fake.add_customer(name, email, active=active)

    def add_vendor(self, name: str) -> None:
        self.fake.add_vendor(name)

    def deactivate_customer(self, customer_id: str, *, after_calls: int | None = None) -> None:
        self.fake.deactivate_customer(customer_id, after_calls=after_calls)

    def delete(self, kind: TxnKind, record_id: str) -> None:
        self.fake.delete(record_id)

    def void(self, kind: TxnKind, record_id: str) -> None:
        self.fake.void(record_id)

    def inject(self, *faults: Fault) -> None:
        self.fake.inject(*faults)

    def forget_request_ids(self) -> None:
        self.fake.forget_request_ids()

    def write_count(self) -> int:
        return self.fake.write_count


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

    def send(self, call, *, customer_id: str, request: bool = False) -> str:  # type: ignore[no-untyped-def]
        """Send a request, drain, and check the customer link made on the way (R1/R2)."""
        before = Before.read(self.qbo)
        request_id = f"req-{len(self.requests) + 1}" if request else ""
        job = call(request_id)
        assert job.state is SyncJobState.PENDING
        self.crm.accepted.append(job.name)
        if request_id:
            self.requests.append((request_id, call, job.name))
        self.settle()
        self.changed()
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
    )
    def a_crm_and_a_quickbooks_company(
        self,
        customers: list[tuple[dict[str, str], str]],
        someone_elses: list[tuple[dict[str, str], str, str, bool]],
        vendors: list[dict[str, str]],
        deposits: list[int],
        look_alikes: list[tuple[int, str, bool, bool]],
    ) -> None:
        """CRM customers (shared names likely) with deposits taken but not yet synced, and QuickBooks
        names already taken by someone else."""
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
    @rule(data=st.data(), amount=cents, method=methods, sync=st.booleans(), request=st.booleans())
    def take_payment(self, data: st.DataObject, amount: int, method: PaymentMethod, sync: bool, request: bool) -> None:
        opportunity_id = data.draw(st.sampled_from(sorted(self.crm.opportunities)))
        payment = CrmPayment(self.crm.new_id("p"), opportunity_id, money(amount), method, self.tick())
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
        QuickBooks refuses an expense below what its payment links, so the order of writes matters."""
        payment = data.draw(st.sampled_from([p for p in self.crm.payments.values() if p.refunds]))
        index = data.draw(st.integers(0, len(payment.refunds) - 1))
        old = payment.refunds[index]
        room = int((payment.amount - payment.refunded + old.amount) * 100)
        amount = money(data.draw(st.integers(1, room)))
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
        """R6: a resync after the amount (or method) changed in the CRM; refunds stay within it."""
        payment = data.draw(st.sampled_from(sorted(self.crm.payments.values(), key=lambda p: p.payment_id)))
        payment.amount = max(money(amount), payment.refunded, CENT)
        if change_method:
            payment.method = data.draw(methods)
        self._sync_payment(payment)

    @precondition(lambda self: self.crm.opportunities)
    @rule(data=st.data(), lines=invoice_lines(), request=st.booleans())
    def close_out_job(self, data: st.DataObject, lines: tuple[InvoiceLine, ...], request: bool) -> None:
        """R5: a new job closed out with the opportunity's payments (or an old one closed out again)."""
        opportunity_id = data.draw(st.sampled_from(sorted(self.crm.opportunities)))
        again = self.crm.jobs_of(opportunity_id)
        if again and data.draw(st.booleans()):
            job = data.draw(st.sampled_from(again))
        else:
            job_id = self.crm.new_id("j")
            job = CrmJob(
                job_id,
                opportunity_id,
                f"M-{job_id}",
                date(2026, 3, 1) + timedelta(days=len(self.crm.closed_jobs)),
                lines,
            )
        self._sync_job(job, close_out=True, request=request)

    @precondition(lambda self: self.crm.closed_jobs)
    @rule(data=st.data(), lines=st.one_of(st.none(), invoice_lines()))
    def edit_job_and_sync_invoice(self, data: st.DataObject, lines: tuple[InvoiceLine, ...] | None) -> None:
        """R5/R6: SyncInvoice after the job's lines changed (or not): totals may fall below what was applied."""
        job = self.crm.closed_jobs[data.draw(st.sampled_from(sorted(self.crm.closed_jobs)))]
        if lines is not None:
            job.lines = lines
        self._sync_job(job, close_out=False)

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

    @precondition(lambda self: any(p.sent for p in self.crm.payments.values()))
    @rule(data=st.data(), void=st.booleans())
    def someone_deletes_in_quickbooks_then_resync(self, data: st.DataObject, void: bool) -> None:
        """R6: a payment, refund or invoice deleted (or voided) in QuickBooks is recreated on resync,
        even when other syncs of the same opportunity ran in between."""
        choices = [("payment", p.payment_id, p.opportunity_id) for p in self.crm.payments.values() if p.sent]
        choices += [
            ("refund", r.refund_id, p.opportunity_id) for p in self.crm.payments.values() if p.sent for r in p.refunds
        ]
        choices += [("invoice", j.job_id, j.opportunity_id) for j in self.crm.closed_jobs.values()]
        kind, crm_id, opportunity_id = data.draw(st.sampled_from(sorted(choices)))
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
                    job.lines = data.draw(invoice_lines())
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
    machine.take_payment(_Draw([next(iter(machine.crm.opportunities))]), 10_000, PaymentMethod.CASH, True, False)
    assert len(machine.qbo.live("Payment")) == 1
    _check_every_rule(machine)
    # A payment that vanishes from QuickBooks must be noticed.
    machine.side.delete(TxnKind.PAYMENT, machine.qbo.live("Payment")[0].id)
    machine.changed()
    with pytest.raises(AssertionError, match="^R7: "):
        machine.r7_exactly_once()


def _check_every_rule(machine: SyncRulesMachine) -> None:
    for check in INVARIANTS:
        getattr(machine, check.__name__)()


def _a_deposit_refunded_then_closed_out() -> SyncRulesMachine:
    """Mary's $100.00 cash deposit, $10.00 of it refunded, then her $80.00 move closed out with it."""
    machine = SyncRulesMachine()
    machine.new_customer({"first_name": "Mary", "last_name": "O'Brien"}, "mary@example.com", "")
    [opportunity_id] = machine.crm.opportunities
    machine.take_payment(_Draw([opportunity_id]), 10_000, PaymentMethod.CASH, True, False)
    [payment] = machine.crm.payments.values()
    machine.refund(_Draw([payment, 1_000, ""]), False, True)
    move = (InvoiceLine("Move", Decimal("1"), Decimal("80.00"), Decimal("80.00")),)
    machine.close_out_job(_Draw([opportunity_id]), move, False)
    _check_every_rule(machine)  # and R6 remembers the QBO Ids
    return machine


def _only_payment(machine: SyncRulesMachine) -> CrmPayment:
    [payment] = machine.crm.payments.values()
    return payment


def _move_the_payment_to_a_new_opportunity(machine: SyncRulesMachine) -> None:
    payment = _only_payment(machine)
    machine.new_opportunity(_Draw([machine.crm.customer_of(payment.opportunity_id).customer_id]))
    payment.opportunity_id = list(machine.crm.opportunities)[-1]


def _reprice_the_job(machine: SyncRulesMachine) -> None:
    [job] = machine.crm.closed_jobs.values()
    job.lines = (InvoiceLine("Move", Decimal("1"), Decimal("90.00"), Decimal("90.00")),)


def _raise_the_payment(machine: SyncRulesMachine) -> None:
    _only_payment(machine).amount += Decimal("1.00")


# Each rule broken in turn, by changing QuickBooks or what the model expects of it behind the machine's back.
BREAKS = {
    r1_customer_matched_on_name_and_email: lambda m: m.crm.links.update(c1=m.side.add_customer("Someone Else")),
    r2_display_names_are_unique: lambda m: m.side.add_vendor("MARY O'BRIEN"),
    r3_deposit_is_a_payment_only: _move_the_payment_to_a_new_opportunity,
    r4_refunds_ride_with_their_payment: lambda m: setattr(_only_payment(m), "method", PaymentMethod.CHECK),
    r5_invoice_at_close_out: _reprice_the_job,
    r6_resync_updates_never_duplicates: lambda m: m.crm.quickbooks_ids.update({("payment", "p3"): "999"}),
    r7_exactly_once: lambda m: m.side.delete(TxnKind.PAYMENT, m.qbo.live("Payment")[0].id),
    r8_state_you_can_show: lambda m: m.crm.links.pop("c1"),
    r9_view_in_quickbooks: lambda m: setattr(m.side, "realm_id", "another-company"),
    r10_the_books_balance: _raise_the_payment,
}


@pytest.mark.parametrize("check", INVARIANTS, ids=[check.__name__ for check in INVARIANTS])
def test_a_broken_rule_is_caught_and_named(check: object) -> None:
    """Every invariant can fail, and its failure names its rule."""
    machine = _a_deposit_refunded_then_closed_out()
    assert set(machine.crm.customers) == {"c1"} and set(machine.crm.payments) == {"p3"}
    BREAKS[check](machine)  # type: ignore[index]
    machine.changed()
    rule = check.__name__.split("_")[0].upper()  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match=f"^{rule}: "):
        getattr(machine, check.__name__)()  # type: ignore[attr-defined]


class _Draw:
    """Stands in for `st.data()` when a rule is called by hand."""

    def __init__(self, values: list[object]) -> None:
        self._values = list(values)

    def draw(self, strategy: object) -> object:
        return self._values.pop(0)
