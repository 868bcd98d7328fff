"""The rules machines' model of SPEC.md section 2, and one invariant per rule.

`Crm` is what the CRM has said (customers, opportunities, payments with refunds, closed-out jobs) and
what someone else did to the QuickBooks company meanwhile (customers made inactive, records deleted or
voided). It is plain data, written without the code under test's helpers: names are tidied, markers
parsed and sums taken here, independently.

After every step a rules machine calls each `r<N>_...` function below with the model and what it sees
(`Seen`: the QuickBooks company as `Books`, and qbsync's answers through the public SyncService). Each
function checks one rule and every one of its failure messages starts with that rule ("R4: ..."), so a
failure says which rule broke. `link_made` and `invoices_filled` are the same rules checked right after a
sync, where only that moment can tell (which customer was the oldest match; whether a payment was applied
as far as it goes). The machines are tests/unit/test_sync_rules_machine.py (the in-memory fake QuickBooks)
and tests/integration/quickbooks/test_sync_rules_machine_emulator.py (the emulator through the real
python-quickbooks adapter): the same model, the same invariants, two backends.

Checked here: R1 to R10, each as far as the QuickBooks company and qbsync's answers show it, with SPEC.md section
8's invoices (tax, discounts, tips and surcharges) inside R5, R6 and R10: QuickBooks' own TotalAmt and TotalTax
are the CRM's, the tip and the surcharge are lines of their own, and the balance is the CRM total less what was
applied. SPEC.md section 9's payouts are records too (one live Deposit each: R6 to R9) and R10's books: each
deposit is its payout's amount and links exactly its payments, and Undeposited Funds holds exactly the synced
payments in no payout. Not here:
- R1's "no query on the next sync": tests/unit/test_sync_scenarios.py
  (test_a_linked_customer_is_reused_without_a_query);
- R7 across crashes and concurrent workers (a worker killed between QBO's commit and ours, two workers on
  one record, database outages): tests/unit/test_worker_leases.py, tests/unit/test_worker_outages.py,
  tests/scale/test_multi_process.py; requestid replay per call: test_sync_scenarios.py
  (test_a_write_committed_but_unanswered_is_not_written_twice);
- R8's PENDING and FAILED states and their transitions (the machine retries until everything is SYNCED):
  tests/unit/test_sync_record_states.py, tests/unit/test_worker_outages.py;
- R4's A/R account line and refund bank account (what the adapter writes):
  tests/integration/quickbooks/test_qbo_adapter_contract.py, test_qbo_adapter_scenarios.py;
- R9's permission and production host: tests/unit/test_sync_scenarios.py (test_permissions),
  tests/integration/quickbooks/test_qbo_adapter_contract.py, tests/e2e/test_sync_service.py.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Protocol

from adapters.quickbooks.fake import FakeCustomer, FakeTxn
from core.accounting import DepositLineKind, DepositSpec, InvoiceSpec, PaymentSpec, RefundSpec, TxnKind
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
    Principal,
    Refund,
    SyncJobState,
    SyncRecord,
    SyncState,
)
from core.errors import NotFoundError
from core.service import SyncService

TENANT = "acme"
ZERO = Decimal("0.00")
CENT = Decimal("0.01")

# --- the model's own idea of names (R1, R2), written without the code's helpers ---------------------


def tidy(text: str) -> str:
    return " ".join(text.split()).casefold()


def crm_name(customer: Customer) -> str:
    person = " ".join(part for part in (customer.first_name.strip(), customer.last_name.strip()) if part)
    return " ".join((person or customer.company_name).split())


def name_is(quickbooks_name: str, name: str) -> bool:
    """The DisplayName is the CRM name or the CRM name with a ` - N` suffix (R1/R2)."""
    found, wanted = tidy(quickbooks_name), tidy(name)
    if found == wanted:
        return True
    head, sep, tail = found.rpartition(" - ")
    return bool(sep) and head == wanted and tail.isdigit()


def first_free_name(name: str, taken: set[str]) -> str:
    if tidy(name) not in taken:
        return name
    n = 2
    while tidy(f"{name} - {n}") in taken:
        n += 1
    return f"{name} - {n}"


MARKER = re.compile(r"\[qbsync (?P<tenant>[^/\]]+)/(?P<type>[a-z]+)/(?P<id>[^/\]]+)(?:/(?P<gen>\d+))?\]")


def marked(txn: FakeTxn) -> tuple[str, str]:
    """(type, CRM id) of the record a QuickBooks transaction was written for, from its private note."""
    match = MARKER.search(txn.spec.private_note)
    assert match is not None, f"R7: QBO {txn.entity} {txn.id} carries no qbsync marker: {txn.spec.private_note!r}"
    assert match["tenant"] == TENANT, f"R7: QBO {txn.entity} {txn.id} is marked for tenant {match['tenant']!r}"
    return match["type"], match["id"]


# --- what the CRM has said, and what someone did in QuickBooks -----------------------------------------


@dataclass
class CrmPayment:
    payment_id: str
    opportunity_id: str
    amount: Decimal
    method: PaymentMethod
    received_time: datetime
    refunds: list[Refund] = field(default_factory=list)
    sent: bool = False
    # Parts of `amount` (SPEC section 8): what QuickBooks gets is the whole amount all the same, never net of
    # the processor's fee (the fee is for payouts).
    tip: Decimal = ZERO
    processing_fee: Decimal = ZERO

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), ZERO)

    def as_sent(self, refunds: list[Refund] | None = None) -> Payment:
        return Payment(
            self.payment_id,
            self.amount,
            self.method,
            self.received_time,
            f"ref-{self.payment_id}",
            tuple(self.refunds if refunds is None else refunds),
            tip=self.tip,
            processing_fee=self.processing_fee,
        )


@dataclass(frozen=True)
class Charges:
    """What a job's invoice carries besides its lines (SPEC section 8). The discounts all share one `after_tax`."""

    tax: Decimal = ZERO
    tax_rate_name: str = ""
    discounts: tuple[Discount, ...] = ()
    tip: Decimal = ZERO
    surcharge: Decimal = ZERO


NO_CHARGES = Charges()


def amount_off(discount: Discount, lines_total: Decimal) -> Decimal:
    """The model's own reading of SPEC section 8: an amount, or the percent of the lines' total rounded half up
    to the cent."""
    if discount.amount is not None:
        return discount.amount
    assert discount.percent is not None
    return (lines_total * discount.percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class CrmJob:
    job_id: str
    opportunity_id: str
    number: str
    service_date: date
    lines: tuple[InvoiceLine, ...]
    charges: Charges = NO_CHARGES

    @property
    def lines_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def discount_total(self) -> Decimal:
        return sum((amount_off(d, self.lines_total) for d in self.charges.discounts), ZERO)

    @property
    def total(self) -> Decimal:
        """The CRM total: lines − discounts + tax + tip + surcharge (SPEC section 8)."""
        c = self.charges
        return self.lines_total - self.discount_total + c.tax + c.tip + c.surcharge

    @property
    def lines_in_quickbooks(self) -> tuple[InvoiceLine, ...]:
        """The lines as QuickBooks must hold them: marked TAX only when tax was charged (a line nobody paid tax
        on is not taxable on this invoice, and automated sales tax would tax a TAX line the CRM did not)."""
        if self.charges.tax:
            return self.lines
        return tuple(replace(line, taxable=False) for line in self.lines)

    def as_sent(self) -> Job:
        c = self.charges
        return Job(
            self.job_id,
            self.number,
            self.service_date,
            self.lines,
            tax=c.tax,
            tax_rate_name=c.tax_rate_name,
            discounts=c.discounts,
            tip=c.tip,
            surcharge=c.surcharge,
        )


Key = tuple[str, str]  # ("payment" | "refund" | "invoice" | "payout", CRM id): a CRM record, as its marker names it


@dataclass
class Crm:
    customers: dict[str, Customer] = field(default_factory=dict)
    opportunities: dict[str, Opportunity] = field(default_factory=dict)
    payments: dict[str, CrmPayment] = field(default_factory=dict)
    closed_jobs: dict[str, CrmJob] = field(default_factory=dict)  # in close-out order
    payouts: dict[str, Payout] = field(default_factory=dict)  # each as qbsync last accepted it (SPEC section 9)
    links: dict[str, str] = field(default_factory=dict)  # CRM customer -> the QBO customer it is linked to
    accepted: list[str] = field(default_factory=list)  # the SyncJobs qbsync accepted (R7: none is lost)
    succeeded: set[str] = field(default_factory=set)  # those seen SUCCEEDED, a state a job never leaves
    # What someone else did in QuickBooks meanwhile.
    deactivated: set[str] = field(default_factory=set)  # QBO customers made inactive (R1: to be replaced)
    removed: set[Key] = field(default_factory=set)  # records whose QBO record was deleted or voided (R6)
    # The QBO Id each record had when last checked (R6: it changes only when someone removed the record).
    quickbooks_ids: dict[Key, str] = field(default_factory=dict)
    replaced: int = 0  # CRM customers re-linked to a successor
    counter: int = 0
    sales_tax: SalesTax = SalesTax.AUTOMATED  # how the QuickBooks company treats sales tax (NONE: no job is taxed)

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def payments_of(self, opportunity_id: str) -> list[CrmPayment]:
        return [p for p in self.payments.values() if p.opportunity_id == opportunity_id]

    def jobs_of(self, opportunity_id: str) -> list[CrmJob]:
        return [j for j in self.closed_jobs.values() if j.opportunity_id == opportunity_id]

    def customer_of(self, opportunity_id: str) -> Customer:
        return self.opportunities[opportunity_id].customer

    def link_of(self, opportunity_id: str) -> str:
        return self.links[self.customer_of(opportunity_id).customer_id]

    @property
    def sent(self) -> list[CrmPayment]:
        return [p for p in self.payments.values() if p.sent]

    def payout_of(self, payment_id: str) -> str | None:
        """The payout that lists the payment (a payment is in one payout at most), if any."""
        return next((p.payout_id for p in self.payouts.values() if payment_id in p.payment_ids), None)

    def expected(self) -> set[Key]:
        """Every CRM record sent to qbsync: each must have exactly one live QBO record."""
        keys = {("payment", p.payment_id) for p in self.sent}
        keys |= {("refund", r.refund_id) for p in self.sent for r in p.refunds}
        keys |= {("payout", payout_id) for payout_id in self.payouts}
        return keys | {("invoice", job_id) for job_id in self.closed_jobs}


# --- what the invariants see ---------------------------------------------------------------------------


class Books(Protocol):
    """The QuickBooks company as the invariants read it. Customers and transactions are given as the fake's
    records (FakeCustomer, FakeTxn with a core spec), whichever backend they were read from."""

    @property
    def customers(self) -> Mapping[str, FakeCustomer]:
        """Every customer, inactive ones included, by Id."""
        ...

    @property
    def other_names(self) -> Collection[str]:
        """DisplayNames of vendors and employees (R2: a customer's name must differ from them)."""
        ...

    def live(self, entity: str) -> list[FakeTxn]:
        """Payments, Purchases, Invoices or Deposits neither deleted nor voided. A Deposit's spec holds at least
        its PAYMENT lines (each with the linked payment's Id); its `total` is QBO's TotalAmt."""
        ...

    def deposited_payments(self) -> Mapping[str, str]:
        """QuickBooks' own ledger: payment Id -> the Deposit that took it out of Undeposited Funds."""
        ...

    def undeposited_funds(self) -> Decimal:
        """The balance of the Undeposited Funds account."""
        ...

    def invoice_balance(self, invoice_id: str) -> Decimal: ...

    def unapplied_amount(self, payment_id: str) -> Decimal: ...

    def invoice_tax(self, invoice_id: str) -> Decimal:
        """The tax QuickBooks holds on the invoice (TxnTaxDetail.TotalTax), its own figure, not what was sent.
        An invoice's spec gives its tip and surcharge as the amounts of their own lines (on the tips and
        surcharge items) and its discount as its one discount line; its `total` is QBO's TotalAmt."""
        ...


def live_by_record(books: Books) -> dict[Key, list[FakeTxn]]:
    found: dict[Key, list[FakeTxn]] = defaultdict(list)
    for entity in ("Payment", "Purchase", "Invoice", "Deposit"):
        for txn in books.live(entity):
            found[marked(txn)].append(txn)
    return found


def one_live(books: Books, kind: str, crm_id: str) -> FakeTxn:
    txns = live_by_record(books).get((kind, crm_id), [])
    assert len(txns) == 1, f"R7: {kind} {crm_id} has {len(txns)} live QBO records"
    return txns[0]


def applied_to(books: Books, invoice_id: str) -> Decimal:
    return sum(
        (
            line.amount
            for t in books.live("Payment")
            for line in t.spec.lines  # type: ignore[union-attr]
            if line.txn_kind is TxnKind.INVOICE and line.txn_id == invoice_id
        ),
        ZERO,
    )


def leftover(books: Books, payment_id: str) -> Decimal:
    """What a payment still holds in QuickBooks after its refund links and applications."""
    spec = one_live(books, "payment", payment_id).spec
    assert isinstance(spec, PaymentSpec), f"R3: payment {payment_id} is not a QBO Payment"
    return spec.amount - sum((line.amount for line in spec.lines), ZERO)


@dataclass(frozen=True)
class Seen:
    """What a machine sees after a step: the QuickBooks company, and qbsync's answers (public API only)."""

    books: Books
    service: SyncService
    principal: Principal
    realm_id: str

    @cached_property
    def live(self) -> dict[Key, list[FakeTxn]]:
        """The live QBO transactions by the CRM record their marker names (read once: a Seen is one moment)."""
        return live_by_record(self.books)

    def one(self, kind: str, crm_id: str) -> FakeTxn:
        txns = self.live.get((kind, crm_id), [])
        assert len(txns) == 1, f"R7: {kind} {crm_id} has {len(txns)} live QBO records"
        return txns[0]

    def status(self, entity: EntityRef) -> SyncRecord:
        return self.service.get_status(self.principal, entity)

    def never_synced(self, entity: EntityRef, rule: str) -> None:
        """qbsync knows nothing of the record: NOT_FOUND."""
        try:
            record = self.status(entity)
        except NotFoundError:
            return
        raise AssertionError(f"{rule}: {entity} was never synced, yet qbsync shows it {record.state}")

    def payments(self, crm: Crm) -> list[tuple[CrmPayment, PaymentSpec]]:
        """Each payment sent, with the spec of its one live QBO Payment."""
        found = []
        for payment in crm.sent:
            spec = self.one("payment", payment.payment_id).spec
            assert isinstance(spec, PaymentSpec), f"R3: payment {payment.payment_id} is not a QBO Payment"
            found.append((payment, spec))
        return found

    def invoices(self, crm: Crm) -> list[tuple[CrmJob, FakeTxn]]:
        """Each job closed out, with its one live QBO Invoice."""
        return [(job, self.one("invoice", job.job_id)) for job in crm.closed_jobs.values()]


def _refund_kind(payment: CrmPayment) -> TxnKind:
    return TxnKind.CHECK if payment.method is PaymentMethod.CHECK else TxnKind.EXPENSE


def _nonzero(sums: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: v for k, v in sums.items() if v}


# --- the rules, one invariant each ----------------------------------------------------------------------


def r1_customer_matched_on_name_and_email(crm: Crm, seen: Seen) -> None:
    """R1: each linked CRM customer keeps its link to an active QBO customer of its name and email, one QBO
    customer per (name, email), and every transaction of the CRM customer is written for it."""
    for customer_id, link in crm.links.items():
        customer = crm.customers[customer_id]
        status = seen.status(EntityRef(EntityType.CUSTOMER, customer_id))
        assert status.quickbooks_id == link, (
            f"R1: the link of {customer_id} changed: {status.quickbooks_id}, not {link}"
        )
        found = seen.books.customers[link]
        # Made inactive by the machine and not synced since: what is in QuickBooks stays with it (checked
        # below) until a sync replaces it.
        assert found.active or link in crm.deactivated, f"R1: {customer_id} is linked to inactive QBO customer {link}"
        assert name_is(found.display_name, crm_name(customer)), (
            f"R1: {customer_id} is linked to {found.display_name!r}, not {crm_name(customer)!r}"
        )
        assert tidy(found.email) == tidy(customer.email), (
            f"R1: {customer_id} is linked to a customer with email {found.email!r}, not {customer.email!r}"
        )
    # One QBO customer per (name, email), and a different one for every other (name, email).
    keys = {
        cid: (tidy(crm_name(crm.customers[cid])), tidy(crm.customers[cid].email))
        for cid, link in crm.links.items()
        if link not in crm.deactivated
    }
    for a in keys:
        for b in keys:
            assert (keys[a] == keys[b]) == (crm.links[a] == crm.links[b]), (
                f"R1: {a} and {b} share a QBO customer exactly when they share a name and email",
                keys,
                crm.links,
            )
    for payment, spec in seen.payments(crm):
        link = crm.link_of(payment.opportunity_id)
        assert spec.customer_id == link, f"R1: payment {payment.payment_id} is for {spec.customer_id}, not {link}"
        for refund in payment.refunds:
            payee = seen.one("refund", refund.refund_id).spec.customer_id
            assert payee == link, f"R1: refund {refund.refund_id} is paid to {payee}, not {link}"
    for job, txn in seen.invoices(crm):
        link = crm.link_of(job.opportunity_id)
        assert txn.spec.customer_id == link, f"R1: invoice {job.job_id} is for {txn.spec.customer_id}, not {link}"


def r2_display_names_are_unique(crm: Crm, seen: Seen) -> None:
    """R2: DisplayNames are unique across customers (active or not) and vendors."""
    names = [tidy(c.display_name) for c in seen.books.customers.values()]
    names += [tidy(n) for n in seen.books.other_names]
    assert len(names) == len(set(names)), f"R2: DisplayNames taken twice: {sorted(names)}"


def r3_deposit_is_a_payment_only(crm: Crm, seen: Seen) -> None:
    """R3: a payment is a QBO Payment, applied only to invoices of its own opportunity's closed-out jobs
    (none before close-out); no invoice exists for a job not closed out."""
    invoice_of = {job.job_id: txn.id for job, txn in seen.invoices(crm)}
    for payment, spec in seen.payments(crm):
        own_invoices = {invoice_of[j.job_id] for j in crm.jobs_of(payment.opportunity_id)}
        for line in spec.lines:
            if line.txn_kind is TxnKind.INVOICE:
                assert line.txn_id in own_invoices, (
                    f"R3: payment {payment.payment_id} is applied to invoice {line.txn_id}, "
                    f"not one of its opportunity's {sorted(own_invoices)}"
                )
                assert line.amount > 0, f"R3: payment {payment.payment_id} applies {line.amount} to {line.txn_id}"
        if not own_invoices:
            assert all(line.txn_kind is not TxnKind.INVOICE for line in spec.lines), (
                f"R3: deposit {payment.payment_id} is applied although its opportunity has no invoice"
            )
    invoiced = {crm_id for kind, crm_id in seen.live if kind == "invoice"}
    assert invoiced <= set(crm.closed_jobs), f"R3: invoices without a close-out: {invoiced - set(crm.closed_jobs)}"


def r4_refunds_ride_with_their_payment(crm: Crm, seen: Seen) -> None:
    """R4: each refund is a QBO Purchase, an expense (a check for a check payment), linked once from its
    payment for its amount, and nothing else is linked from the payment as a refund. (Its payee is R1's
    check; its A/R line is the adapter's, tests/integration/quickbooks/test_qbo_adapter_contract.py.)"""
    for payment, spec in seen.payments(crm):
        refund_kind = _refund_kind(payment)
        refund_lines = [line for line in spec.lines if line.txn_kind is not TxnKind.INVOICE]
        assert len(refund_lines) == len(payment.refunds), (
            f"R4: every refund linked once from its payment: payment {payment.payment_id} links "
            f"{len(refund_lines)} for {len(payment.refunds)} refunds"
        )
        for refund in payment.refunds:
            expense = seen.one("refund", refund.refund_id)
            assert isinstance(expense.spec, RefundSpec) and expense.entity == "Purchase", (
                f"R4: refund {refund.refund_id} is a QBO {expense.entity}, not a Purchase"
            )
            assert expense.kind is refund_kind, f"R4: refund {refund.refund_id} is {expense.kind}, not {refund_kind}"
            links = [line for line in refund_lines if line.txn_id == expense.id]
            assert [(line.txn_kind, line.amount) for line in links] == [(refund_kind, refund.amount)], (
                f"R4: payment {payment.payment_id} links refund {refund.refund_id} as {links}"
            )


def r5_invoice_at_close_out(crm: Crm, seen: Seen) -> None:
    """R5 (with SPEC section 8): each closed-out job is a QBO Invoice whose own TotalAmt is the CRM total (lines
    − discounts + tax + tip + surcharge) and whose TotalTax is the CRM's tax, with the tip and the surcharge
    each a line of its own and the discounts one discount line taken before or after tax as the CRM took
    them; applied no more than its total, and no payment links more than it holds."""
    for payment, _ in seen.payments(crm):
        txn = seen.one("payment", payment.payment_id)
        unapplied = seen.books.unapplied_amount(txn.id)
        assert unapplied >= 0, f"R5: payment {payment.payment_id} links {-unapplied} more than it holds"
    for job, txn in seen.invoices(crm):
        spec = txn.spec
        assert isinstance(spec, InvoiceSpec), f"R5: job {job.job_id} is a QBO {txn.entity}, not an Invoice"
        wrong = [
            f"{part} {found} in QuickBooks, {wanted} in the CRM"
            for part, found, wanted in _invoice_parts(job, txn, seen.books)
            if found != wanted
        ]
        assert not wrong, f"R5: invoice {job.job_id} is not the CRM's: " + "; ".join(wrong)
        applied = applied_to(seen.books, txn.id)
        assert Decimal("0") <= applied <= job.total, f"R5: invoice {job.job_id} over-applied"


def _invoice_parts(job: CrmJob, txn: FakeTxn, books: Books) -> list[tuple[str, object, object]]:
    """(part, what QuickBooks holds, what the CRM said) for each figure of SPEC section 8's invoice."""
    spec = txn.spec
    assert isinstance(spec, InvoiceSpec)
    charges = job.charges
    discount = spec.discount
    parts: list[tuple[str, object, object]] = [
        ("TotalAmt", txn.total, job.total),
        ("TotalTax", books.invoice_tax(txn.id), charges.tax),
        ("tip line", spec.tip, charges.tip),
        ("surcharge line", spec.surcharge, charges.surcharge),
        (
            "discount line",
            None if discount is None else discount.amount,
            job.discount_total if charges.discounts else None,
        ),
        # What the lines and charges QuickBooks holds add up to, beside QBO's own TotalAmt.
        ("sum of its lines and charges", spec.total, job.total),
    ]
    if discount is not None and charges.discounts:
        # QBO's ApplyTaxAfterDiscount says the discount comes off before tax: the CRM's after_tax, negated.
        parts.append(("ApplyTaxAfterDiscount", discount.apply_tax_after_discount, not charges.discounts[0].after_tax))
    return parts


def r6_resync_updates_never_duplicates(crm: Crm, seen: Seen) -> None:
    """R6: each QBO record says what the CRM said last (amounts, method, lines) and stays the record first
    written: its Id changes only when someone deleted or voided it in QuickBooks. (Remembers the Ids it
    saw, for the next step.)"""
    for payment, spec in seen.payments(crm):
        assert spec.amount == payment.amount, (
            f"R6: payment {payment.payment_id} is {spec.amount} in QuickBooks, {payment.amount} in the CRM"
        )
        assert spec.method is payment.method, (
            f"R6: payment {payment.payment_id} is {spec.method} in QuickBooks, {payment.method} in the CRM"
        )
        for refund in payment.refunds:
            expense = seen.one("refund", refund.refund_id).spec
            assert expense.amount == refund.amount, (  # type: ignore[union-attr]
                f"R6: refund {refund.refund_id} is {expense.amount} in QuickBooks, "  # type: ignore[union-attr]
                f"{refund.amount} in the CRM"
            )
    for job, txn in seen.invoices(crm):
        spec = txn.spec
        assert isinstance(spec, InvoiceSpec), f"R5: job {job.job_id} is a QBO {txn.entity}, not an Invoice"
        wanted = job.lines_in_quickbooks
        assert spec.lines == wanted, f"R6: invoice {job.job_id} has lines {spec.lines}, the CRM {wanted}"
        assert spec.doc_number == job.number, f"R6: invoice {job.job_id} is number {spec.doc_number}, not {job.number}"
    now = {key: txns[0].id for key, txns in seen.live.items()}
    for key, quickbooks_id in now.items():
        before = crm.quickbooks_ids.get(key)
        assert before in (None, quickbooks_id) or key in crm.removed, (
            f"R6: {key[0]} {key[1]} was rewritten as QBO {quickbooks_id} although its QBO {before} was not removed"
        )
        if before != quickbooks_id:
            crm.removed.discard(key)
    crm.quickbooks_ids.update(now)


def r7_exactly_once(crm: Crm, seen: Seen) -> None:
    """R7: every accepted sync succeeded, and each CRM record sent has exactly one live QBO record (and
    nothing else has one)."""
    # Each job is read until it is seen SUCCEEDED, not after: read every step, the jobs of a long run were
    # most of the machine's time.
    for name in crm.accepted:
        if name in crm.succeeded:
            continue
        job = seen.service.get_job(seen.principal, name)
        assert job.state is SyncJobState.SUCCEEDED, f"R7: {name} is {job.state}: {job.error}"
        crm.succeeded.add(name)
    live = seen.live
    expected = crm.expected()
    assert set(live) == expected, (
        f"R7: live QBO records for what was not sent, or none for what was: {set(live) ^ expected}"
    )
    for key, txns in live.items():
        assert len(txns) == 1, f"R7: {key} has {len(txns)} live QBO records"
    sent = crm.sent
    assert len(seen.books.live("Payment")) == len(sent), "R7: one live QBO Payment per payment sent"
    refunds = sum(len(p.refunds) for p in sent)
    assert len(seen.books.live("Purchase")) == refunds, "R7: one live QBO Purchase per refund sent"
    assert len(seen.books.live("Invoice")) == len(crm.closed_jobs), "R7: one live QBO Invoice per job closed out"
    assert len(seen.books.live("Deposit")) == len(crm.payouts), "R7: one live QBO Deposit per payout accepted"


def r8_state_you_can_show(crm: Crm, seen: Seen) -> None:
    """R8: every record sent (and every customer link made) is SYNCED with its QBO Id, no error and resync
    offered; what was never sent is NOT_FOUND."""
    for customer_id in crm.customers:
        entity = EntityRef(EntityType.CUSTOMER, customer_id)
        if customer_id not in crm.links:
            seen.never_synced(entity, "R8")
            continue
        status = seen.status(entity)
        assert status.state is SyncState.SYNCED, f"R8: customer {customer_id} is {status.state}"
    types = {
        "payment": EntityType.PAYMENT,
        "refund": EntityType.REFUND,
        "invoice": EntityType.INVOICE,
        "payout": EntityType.PAYOUT,
    }
    for kind, crm_id in sorted(crm.expected()):
        status = seen.status(EntityRef(types[kind], crm_id))
        assert status.state is SyncState.SYNCED, f"R8: {kind} {crm_id} is {status.state}: {status.last_error}"
        assert status.resync_available, f"R8: {kind} {crm_id} was synced but offers no resync"
        live = seen.one(kind, crm_id).id
        assert status.quickbooks_id == live, f"R8: {kind} {crm_id} shows QBO {status.quickbooks_id}, not {live}"
        assert status.last_error == "", f"R8: {kind} {crm_id} is synced but shows {status.last_error!r}"
    for payment in crm.payments.values():
        if not payment.sent:
            seen.never_synced(EntityRef(EntityType.PAYMENT, payment.payment_id), "R8")


APP_HOSTS = ("https://app.sandbox.qbo.intuit.com", "https://app.qbo.intuit.com")


def r9_view_in_quickbooks(crm: Crm, seen: Seen) -> None:
    """R9: every synced record links to its page in the QBO web app, in the right company."""
    pages: list[tuple[EntityRef, str]] = [
        (EntityRef(EntityType.CUSTOMER, cid), f"customerdetail?nameId={link}") for cid, link in crm.links.items()
    ]
    for payment in crm.sent:
        txn = seen.one("payment", payment.payment_id)
        pages.append((EntityRef(EntityType.PAYMENT, payment.payment_id), f"recvpayment?txnId={txn.id}"))
        page = "check" if _refund_kind(payment) is TxnKind.CHECK else "expense"
        for refund in payment.refunds:
            expense = seen.one("refund", refund.refund_id)
            pages.append((EntityRef(EntityType.REFUND, refund.refund_id), f"{page}?txnId={expense.id}"))
    for job, txn in seen.invoices(crm):
        pages.append((EntityRef(EntityType.INVOICE, job.job_id), f"invoice?txnId={txn.id}"))
    for payout_id in crm.payouts:
        deposit = seen.one("payout", payout_id)
        pages.append((EntityRef(EntityType.PAYOUT, payout_id), f"deposit?txnId={deposit.id}"))
    for entity, page in pages:
        link = seen.service.get_link(seen.principal, entity)
        wanted = [f"{host}/app/{page}&deeplinkcompanyid={seen.realm_id}" for host in APP_HOSTS]
        assert link in wanted, f"R9: {entity} links to {link}, not {wanted[0]}"


def r10_the_books_balance(crm: Crm, seen: Seen) -> None:
    """R10: per QBO customer, payments (whole: tips in, processing fees not netted) and refund expenses sum
    to the CRM's, to the cent, in exact decimals; each invoice's balance is the CRM total (SPEC section 8)
    minus what was applied to it; for every payout, its QBO deposit is the payout's amount and links exactly
    its payments, and Undeposited Funds holds exactly the synced payments in no payout (SPEC section 9)."""
    for payment, spec in seen.payments(crm):
        assert type(spec.amount) is Decimal, f"R10: payment {payment.payment_id} is {spec.amount!r}"
        for refund in payment.refunds:
            expense = seen.one("refund", refund.refund_id).spec
            assert type(expense.amount) is Decimal, f"R10: refund {refund.refund_id} is {expense.amount!r}"  # type: ignore[union-attr]
    for job, txn in seen.invoices(crm):
        total = txn.total  # QBO's TotalAmt
        assert type(total) is Decimal, f"R10: invoice {job.job_id} totals {total!r}"
        balance = seen.books.invoice_balance(txn.id)
        applied = applied_to(seen.books, txn.id)
        assert balance == job.total - applied, (
            f"R10: invoice {job.job_id} has balance {balance}, not {job.total} less {applied} applied"
        )
    crm_paid: dict[str, Decimal] = defaultdict(Decimal)
    crm_refunded: dict[str, Decimal] = defaultdict(Decimal)
    for payment in crm.sent:
        link = crm.link_of(payment.opportunity_id)
        crm_paid[link] += payment.amount
        crm_refunded[link] += payment.refunded
    qbo_paid: dict[str, Decimal] = defaultdict(Decimal)
    qbo_refunded: dict[str, Decimal] = defaultdict(Decimal)
    for txn in seen.books.live("Payment"):
        qbo_paid[txn.spec.customer_id] += txn.total
    for txn in seen.books.live("Purchase"):
        qbo_refunded[txn.spec.customer_id] += txn.total
    assert _nonzero(qbo_paid) == _nonzero(crm_paid), (
        f"R10: payments per customer {dict(qbo_paid)}, CRM {dict(crm_paid)}"
    )
    assert _nonzero(qbo_refunded) == _nonzero(crm_refunded), (
        f"R10: refunds per customer {dict(qbo_refunded)}, CRM {dict(crm_refunded)}"
    )
    _payouts_in_the_bank(crm, seen)


def _payouts_in_the_bank(crm: Crm, seen: Seen) -> None:
    """R10's part for SPEC section 9: each payout's deposit (the one its sync record names) totals the payout's
    amount and links exactly its payments; no payment is in two deposits, QuickBooks' ledger says the same,
    and Undeposited Funds holds the synced payments in no payout, to the cent (the machine's company has
    nothing else there)."""
    deposits = {txn.id: txn for txn in seen.books.live("Deposit")}
    holders: dict[str, list[str]] = defaultdict(list)  # QBO payment Id -> the live deposits linking it
    for txn in deposits.values():
        for payment_id in _payment_lines(txn):
            holders[payment_id].append(txn.id)
    twice = {payment: held for payment, held in holders.items() if len(held) > 1}
    assert not twice, f"R10: payments in more than one deposit: {twice}"
    for payout in crm.payouts.values():
        quickbooks_id = seen.status(EntityRef(EntityType.PAYOUT, payout.payout_id)).quickbooks_id
        deposit = deposits.get(quickbooks_id or "")
        assert deposit is not None, f"R10: payout {payout.payout_id} names QBO deposit {quickbooks_id}, not live"
        assert type(deposit.total) is Decimal, f"R10: payout {payout.payout_id} is deposited as {deposit.total!r}"
        assert deposit.total == payout.amount, (
            f"R10: payout {payout.payout_id} is deposited as {deposit.total}, not {payout.amount}"
        )
        wanted = sorted(seen.one("payment", p).id for p in payout.payment_ids)
        assert sorted(_payment_lines(deposit)) == wanted, (
            f"R10: payout {payout.payout_id}'s deposit links payments {sorted(_payment_lines(deposit))}, "
            f"not its payments' {wanted}"
        )
    ledger = dict(seen.books.deposited_payments())
    assert ledger == {payment: held[0] for payment, held in holders.items()}, (
        f"R10: QuickBooks' ledger deposits payments {ledger}, the deposits' lines {dict(holders)}"
    )
    in_payouts = {p for payout in crm.payouts.values() for p in payout.payment_ids}
    undeposited = {seen.one("payment", p.payment_id).id: p.amount for p in crm.sent if p.payment_id not in in_payouts}
    left = {t.id for t in seen.books.live("Payment") if t.id not in ledger}
    assert left == set(undeposited), (
        f"R10: Undeposited Funds holds payments {sorted(left)}, not the ones in no payout {sorted(undeposited)}"
    )
    funds = seen.books.undeposited_funds()
    assert funds == sum(undeposited.values(), ZERO), (
        f"R10: Undeposited Funds holds {funds}, not the {sum(undeposited.values(), ZERO)} of the payments in no payout"
    )


def _payment_lines(deposit: FakeTxn) -> list[str]:
    """The QBO Ids of the payments a deposit links."""
    spec = deposit.spec
    assert isinstance(spec, DepositSpec), f"R10: QBO Deposit {deposit.id} is read as {type(spec).__name__}"
    return [line.txn_id for line in spec.lines if line.kind is DepositLineKind.PAYMENT]


INVARIANTS = (
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
)


# --- the same rules, checked right after a sync ---------------------------------------------------------


@dataclass(frozen=True)
class Before:
    """The QuickBooks customers and taken names just before a sync (R1: which matched; R2: which was free)."""

    customers: dict[str, tuple[str, str, bool]]  # Id -> (DisplayName, email, active)
    taken: set[str]  # tidied DisplayNames of customers, vendors and employees

    @classmethod
    def read(cls, books: Books) -> Before:
        customers = {c.id: (c.display_name, c.email, c.active) for c in books.customers.values()}
        taken = {tidy(c.display_name) for c in books.customers.values()} | {tidy(n) for n in books.other_names}
        return cls(customers, taken)


def link_made(crm: Crm, seen: Seen, customer_id: str, before: Before) -> None:
    """R1/R2 for the link a sync made (or kept), which the model then remembers: the old link while it is
    active, else the oldest active match, else a new customer under the first free name."""
    customer = crm.customers[customer_id]
    link = seen.status(EntityRef(EntityType.CUSTOMER, customer_id)).quickbooks_id
    assert link is not None, f"R1: {customer_id} has no QBO customer after a sync"
    old = crm.links.get(customer_id)
    if old is not None and old not in crm.deactivated:
        assert link == old, "R1: the customer link changed"
        return
    if old is not None and link == old:
        # Made inactive mid-job after the job's last write to it: the next sync replaces it.
        assert before.customers[old][2], "R1: a customer inactive before the sync is still linked after it"
        return
    if old is not None:
        crm.replaced += 1
    name, email = crm_name(customer), tidy(customer.email)
    candidates = [
        qid
        for qid, (n, e, active) in before.customers.items()
        if active and qid not in crm.deactivated and name_is(n, name) and tidy(e) == email
    ]
    if candidates:
        assert link == min(candidates, key=int), f"R1: {name!r} must link the oldest of {candidates}"
    else:
        assert link not in before.customers, f"R1: {name!r} linked {link} although nothing matched"
        created = seen.books.customers[link]
        assert tidy(created.display_name) == tidy(first_free_name(name, before.taken)), (
            f"R2: created as {created.display_name!r}"
        )
        assert created.email.strip() == customer.email.strip(), f"R2: created with email {created.email!r}"
    crm.links[customer_id] = link


def invoices_filled(crm: Crm, books: Books, opportunity_id: str, payment_ids: Sequence[str]) -> None:
    """R3/R5: right after a payment (or all payments) of an opportunity was written, no invoice of it is
    left open while one of those payments still has money to apply."""
    open_invoices = [
        j.job_id
        for j in crm.jobs_of(opportunity_id)
        if books.invoice_balance(one_live(books, "invoice", j.job_id).id) > 0
    ]
    if open_invoices:
        for payment_id in payment_ids:
            assert leftover(books, payment_id) == 0, (
                f"R5: payment {payment_id} keeps {leftover(books, payment_id)} unapplied while "
                f"invoices {open_invoices} are open"
            )
