"""PreviewSync's promise as a property (SPEC §11): for any sequence of CRM requests, what the preview of each
lists is what its sync then writes to QuickBooks — record by record, create or update (of the same QuickBooks
Id), and amount — and the preview itself stores and writes nothing.

The writes are recorded where they reach the fake (`Recorder`, in front of it), by reading each spec and its
marker: independently of core/preview.py, which reads the same specs for its own answer."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.quickbooks.fake import FakeQuickBooksCompanies
from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    DepositSpec,
    InvoiceSpec,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnSpec,
)
from core.connection import QuickBooksConnection
from core.domain import (
    Customer,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    Refund,
    SyncJobState,
)
from core.errors import AccountingError, QbsyncError
from core.limits import FieldLimits
from core.ports import (
    UNFENCED,
    AccountingSystem,
    AccountingSystems,
    CustomerCreate,
    ForwardingAccountingSystem,
    WriteFence,
)
from core.service import SyncService
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
CUSTOMERS = [
    Customer("c1", "Ann", "Lee", email="ann@example.com"),
    Customer("c2", "Bob", "Ray", email="bob@example.com"),
]
OPPORTUNITIES = {"o1": Opportunity("o1", "1001", CUSTOMERS[0]), "o2": Opportunity("o2", "1002", CUSTOMERS[1])}
OPPORTUNITY_OF_PAYMENT = {"p1": "o1", "p2": "o1", "p3": "o2"}
OPPORTUNITY_OF_JOB = {"j1": "o1", "j2": "o2"}

Write = tuple[str, str, str, Decimal | None]  # (the CRM record, create/update, the QuickBooks Id updated, amount)


def _crm_record(marker: str) -> str:
    """`[qbsync acme/payment/p1]` (or `.../p1/2]`, a later generation) -> "PAYMENT p1"."""
    kind, crm_id = marker.split(" ", 1)[1].rstrip("]").split("/")[1:3]
    return f"{kind.upper()} {crm_id}"


def _amount(spec: TxnSpec) -> Decimal:
    if isinstance(spec, PaymentSpec | RefundSpec):
        return spec.amount
    assert isinstance(spec, InvoiceSpec | DepositSpec)
    return spec.total


class Recorder(ForwardingAccountingSystem):
    """The fake, with every write it receives noted as a `Write`."""

    def __init__(self, system: AccountingSystem, writes: list[Write]) -> None:
        super().__init__(system)
        self.writes = writes

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        made = super().create_customer(customer, request_id=request_id, fence=fence)
        self.writes.append((f"CUSTOMER {customer.note.split()[2]}", "CREATE", "", None))
        return made

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        made = super().create_customers_many(creates, fence=fence)
        self.writes += [(f"CUSTOMER {c.customer.note.split()[2]}", "CREATE", "", None) for c in creates]
        return made

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        made = super().create(spec, request_id=request_id, fence=fence)
        self.writes.append((_crm_record(spec.marker), "CREATE", "", _amount(spec)))
        return made

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        written = super().update(ref, spec, request_id=request_id, fence=fence)
        self.writes.append((_crm_record(spec.marker), "UPDATE", ref.id, _amount(spec)))
        return written

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        answers = super().write_many(writes, fence=fence)
        for w in writes:
            action, updated = ("CREATE", "") if w.ref is None else ("UPDATE", w.ref.id)
            self.writes.append((_crm_record(w.spec.marker), action, updated, _amount(w.spec)))
        return answers


@dataclass
class Recording(AccountingSystems):
    companies: FakeQuickBooksCompanies
    writes: list[Write] = field(default_factory=list)

    @property
    def field_limits(self) -> FieldLimits:  # type: ignore[override]
        return self.companies.field_limits

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        return Recorder(self.companies.for_tenant(tenant_id, connection, branch_id=branch_id), self.writes)


amounts = st.sampled_from(["100.00", "250.00", "40.00", "333.33"]).map(D)


@st.composite
def payments(draw: st.DrawFn, payment_id: str | None = None) -> Payment:
    pid = payment_id or draw(st.sampled_from(sorted(OPPORTUNITY_OF_PAYMENT)))
    amount = draw(amounts)
    refunds = []
    for i in range(draw(st.integers(0, 2))):
        share = draw(st.sampled_from(["0.10", "0.25", "0.40"]))
        refunds.append(Refund(f"{pid}r{i}", (amount * D(share)).quantize(D("0.01")), T, "refund"))
    return Payment(pid, amount, PaymentMethod.CREDIT_CARD, T, f"ref-{pid}", tuple(refunds))


@st.composite
def jobs(draw: st.DrawFn) -> tuple[str, Job, list[Payment]]:
    job_id = draw(st.sampled_from(sorted(OPPORTUNITY_OF_JOB)))
    opportunity = OPPORTUNITY_OF_JOB[job_id]
    lines = tuple(
        InvoiceLine(f"line {i}", D("1"), a, a) for i, a in enumerate(draw(st.lists(amounts, min_size=1, max_size=2)))
    )
    own = [pid for pid, oid in OPPORTUNITY_OF_PAYMENT.items() if oid == opportunity]
    chosen = draw(st.lists(st.sampled_from(own), unique=True, max_size=len(own)))
    return opportunity, Job(job_id, f"INV-{job_id}", date(2026, 4, 3), lines), [draw(payments(pid)) for pid in chosen]


Request = Callable[[Harness, SyncService], object]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Request]:
    kind = draw(st.sampled_from(["payment", "close_out", "invoice", "payout"]))
    if kind == "payment":
        pay = draw(payments())
        opportunity = OPPORTUNITIES[OPPORTUNITY_OF_PAYMENT[pay.payment_id]]
        return f"sync_payment {pay}", lambda h, s: s.sync_payment(h.principal(), opportunity, pay)
    if kind in ("close_out", "invoice"):
        oid, job, pays = draw(jobs())
        use = "close_out_job" if kind == "close_out" else "sync_invoice"
        return f"{use} {job} {pays}", lambda h, s: getattr(s, use)(h.principal(), OPPORTUNITIES[oid], job, pays)
    listed = tuple(draw(st.lists(st.sampled_from(sorted(OPPORTUNITY_OF_PAYMENT)), unique=True, min_size=1, max_size=2)))

    def sync_payout(h: Harness, s: SyncService) -> object:
        # the payout's amount is what qbsync holds of its payments (else it is refused, as the sync refuses it)
        with h.uow_factory.read_only() as uow:
            stored = [uow.snapshots.get_payment("acme", pid) for pid in listed]
        total = sum((p.payment.amount for p in stored if p is not None), D(0))
        return s.sync_payout(h.principal(), Payout("po1", date(2026, 4, 5), total, listed))

    return f"sync_payout {listed}", sync_payout


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=6))
def test_each_preview_lists_what_its_sync_then_writes(steps: list[tuple[str, Request]]) -> None:
    recording = Recording(FakeQuickBooksCompanies())
    h = Harness(companies=recording.companies, accounting=recording)
    h.principal()
    for _, request in steps:
        stored = copy.deepcopy(h.uow_factory.db.tables)
        recording.writes.clear()
        try:
            operations = h.preview.preview(lambda s, request=request: request(h, s))  # type: ignore[misc]
        except QbsyncError as previewing:
            assert recording.writes == [] and h.uow_factory.db.tables == stored
            try:
                job = request(h, h.service)
            except QbsyncError as syncing:
                assert (type(syncing), str(syncing)) == (type(previewing), str(previewing))
                continue
            h.worker.drain()  # a run's failure: the preview raised what the job's attempt meets
            assert h.service.get_job(h.principal(), job.name).state is not SyncJobState.SUCCEEDED  # type: ignore[attr-defined]
            continue
        assert recording.writes == [] and h.uow_factory.db.tables == stored
        planned = [
            (f"{o.entity.type.value} {o.entity.id}", o.action.value, o.quickbooks_id, o.amount) for o in operations
        ]

        job = request(h, h.service)
        h.worker.drain()
        assert h.service.get_job(h.principal(), job.name).state is SyncJobState.SUCCEEDED  # type: ignore[attr-defined]
        assert planned == recording.writes
