"""PreviewSync (SPEC §11): the QuickBooks writes a sync would make, made by nobody.

A preview is a dry run of the real thing, not a second model of it: the sync use case accepts the request
(same checks, same errors) and the engine runs the jobs it queued (R1–R6 as they are), over storage that
keeps the preview's writes in memory (core/preview_store.py) and a QuickBooks company in front of the real
one (`PlannedWrites`) that reads what the engine reads — the customer match (R1), the company's settings
and lists, a resynced record's live state (R6) — and answers every write itself, recording it as a
`PlannedOperation`. Its answers carry made-up Ids ("preview-1", ...), so that a later write of the same
preview links what an earlier one would have created (a payment its refund expenses, a deposit its
payments). No lease is taken (the preview's jobs are nobody else's), no job, snapshot, sync record or
audit event is stored, and QuickBooks is never written.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    DepositSpec,
    InvoiceSpec,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
    TxnSpec,
)
from core.connection import QuickBooksConnection
from core.domain import EntityRef, EntityType
from core.errors import AccountingError
from core.lease import JobLease
from core.limits import FieldLimits
from core.ports import (
    UNFENCED,
    AccountingSystem,
    AccountingSystems,
    Clock,
    CustomerCreate,
    ForwardingAccountingSystem,
    IdSource,
    UnitOfWorkFactory,
    WriteFence,
)
from core.preview_store import PreviewUnitOfWorkFactory
from core.service import SyncService
from core.sync_engine import SyncEngine

T = TypeVar("T")

PREVIEW_ID_PREFIX = "preview-"
# A lease that never runs out: the preview's jobs exist only in its own memory, no other worker can take them.
_NEVER = datetime.max.replace(tzinfo=UTC)


class PlannedAction(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    VOID = "VOID"  # for the voids of the CRM (SPEC §11); no sync plans one


@dataclass(frozen=True)
class PlannedOperation:
    """One QuickBooks write a sync would make: for `entity` (the CRM record), a `quickbooks_entity` ("Customer",
    "Payment", "Purchase", "Invoice", "Deposit") created or updated; `quickbooks_id` the record updated ("" for
    a create, whose made-up Id is `fields["Id"]`, as later operations of the same preview name it); `amount`
    what it is for (the payment's, the refund's, the invoice's or the deposit's total; None for a customer);
    `fields` the main fields written, by their QuickBooks names (JSON-able: amounts as decimal strings)."""

    entity: EntityRef
    quickbooks_entity: str
    action: PlannedAction
    quickbooks_id: str
    amount: Decimal | None
    fields: dict[str, object] = field(default_factory=dict)


class PlannedWrites(AccountingSystems):
    """Each company `accounting` gives, with a `_PlanningCompany` in front of it: reads go on, writes are
    recorded in `operations` (all companies', in the order made) and answered with made-up Ids."""

    def __init__(self, accounting: AccountingSystems) -> None:
        self._accounting = accounting
        self._companies: dict[tuple[str, str], _PlanningCompany] = {}
        self._ids = itertools.count(1)
        self.operations: list[PlannedOperation] = []

    @property
    def field_limits(self) -> FieldLimits:  # type: ignore[override]
        return self._accounting.field_limits

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        key = (tenant_id, branch_id)
        if key not in self._companies:
            company = self._accounting.for_tenant(tenant_id, connection, branch_id=branch_id)
            self._companies[key] = _PlanningCompany(company, self, tenant_id)
        return self._companies[key]

    def next_id(self) -> str:
        return f"{PREVIEW_ID_PREFIX}{next(self._ids)}"


class _PlanningCompany(ForwardingAccountingSystem):
    def __init__(self, system: AccountingSystem, plans: PlannedWrites, tenant_id: str) -> None:
        super().__init__(system)
        self._plans = plans
        self._tenant = tenant_id
        self._made: dict[str, QuickBooksRef] = {}  # the made-up transactions, by Id
        self._made_customers: set[str] = set()

    def _send(self, write: str, fence: WriteFence, send: Callable[[WriteFence], T]) -> T:
        raise AssertionError(f"a preview never sends a write ({write})")  # every write is overridden below

    # --- writes: recorded, answered here ---------------------------------------------------------------

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        made = AccountingCustomer(self._plans.next_id(), customer.display_name, customer.email)
        self._made_customers.add(made.id)
        fields: dict[str, object] = {
            "Id": made.id,
            "DisplayName": customer.display_name,
            "GivenName": customer.given_name,
            "FamilyName": customer.family_name,
            "CompanyName": customer.company_name,
            "PrimaryEmailAddr": customer.email,
            "PrimaryPhone": customer.phone,
        }
        entity = EntityRef(EntityType.CUSTOMER, _crm_customer_id(customer.note))
        self._plans.operations.append(PlannedOperation(entity, "Customer", PlannedAction.CREATE, "", None, fields))
        return made

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        return [self.create_customer(c.customer, request_id=c.request_id) for c in creates]

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        made = QuickBooksRef(spec.kind, self._plans.next_id())
        self._made[made.id] = made
        self._plan(spec, PlannedAction.CREATE, "", {"Id": made.id})
        return made

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        written = replace(ref, sync_token=str(int(ref.sync_token) + 1) if ref.sync_token.isdigit() else ref.sync_token)
        if ref.id in self._made:
            self._made[ref.id] = written
        self._plan(spec, PlannedAction.UPDATE, ref.id, {"Id": ref.id, "SyncToken": ref.sync_token})
        return replace(written, total=None)

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        return [
            self.create(w.spec, request_id=w.request_id)
            if w.ref is None
            else self.update(w.ref, w.spec, request_id=w.request_id)
            for w in writes
        ]

    def _plan(self, spec: TxnSpec, action: PlannedAction, quickbooks_id: str, ids: dict[str, object]) -> None:
        entity = _entity_of_marker(self._tenant, spec.marker)
        amount, fields = _fields_of(spec)
        self._plans.operations.append(
            PlannedOperation(entity, _entity_name(spec.kind), action, quickbooks_id, amount, {**ids, **fields})
        )

    # --- reads of what only this preview made ----------------------------------------------------------

    def read_live(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
        real = [i for i in ids if i not in self._made]
        live = self._system.read_live(kind, real) if real else {}
        return live | {i: self._made[i] for i in ids if i in self._made}

    def active_customers(self, ids: list[str]) -> set[str]:
        real = [i for i in ids if i not in self._made_customers]
        return (self._system.active_customers(real) if real else set()) | (set(ids) & self._made_customers)


class SyncPreview:
    """The use case of PreviewSync: one method per sync it previews, with that sync's parameters (and its
    permission, `sync`: a preview runs everything the sync would up to the writes, reads the company's
    customers and books, and spends the company's QuickBooks request allowance as the sync would)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, accounting: AccountingSystems, clock: Clock, ids: IdSource):
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._clock = clock
        self._ids = ids

    def preview(self, accept: Callable[[SyncService], object]) -> list[PlannedOperation]:
        """The writes of the sync that `accept` asks of a `SyncService` (e.g. `lambda s: s.sync_payment(...)`),
        every job the sync queues (a payout's payments first) run in turn.
        Raises: what the sync's use case raises on accept (ValidationError...), then what its run would fail
        with (a bookkeeping refusal QuickBooks' reads already tell, a payout that waits for a failed payment)."""
        store = PreviewUnitOfWorkFactory(self._uow_factory)
        plans = PlannedWrites(self._accounting)
        accept(SyncService(store, plans, self._clock, self._ids))
        engine = SyncEngine(store, plans, self._clock)
        for job in store.queued():
            engine.run(job, JobLease(job, "preview", self._clock, _NEVER))
        return plans.operations


def _entity_name(kind: TxnKind) -> str:
    """QuickBooks' entity: a refund's expense or check is a Purchase (SPEC §5)."""
    return "Purchase" if kind in (TxnKind.EXPENSE, TxnKind.CHECK) else kind.value


def _entity_of_marker(tenant_id: str, marker: str) -> EntityRef:
    """The CRM record whose marker (core.record_writer.marker_for) `marker` is: `[qbsync T/type/id(/gen)]`."""
    body = marker.removeprefix(f"[qbsync {tenant_id}/").removesuffix("]")
    kind, _, rest = body.partition("/")
    head, _, generation = rest.rpartition("/")
    crm_id = head if head and generation.isdigit() else rest
    return EntityRef(EntityType(kind.upper()), crm_id)


def _crm_customer_id(note: str) -> str:
    """The CRM customer's id, from the note R1 writes on a customer it creates ("CRM customer {id} [qbsync ...]")."""
    return note.removeprefix("CRM customer ").split(" [qbsync ", 1)[0]


def _money(amount: Decimal) -> str:
    return str(amount)


def _fields_of(spec: TxnSpec) -> tuple[Decimal, dict[str, object]]:
    """The amount and the main fields of what `spec` writes, by QuickBooks' names."""
    if isinstance(spec, PaymentSpec):
        return spec.amount, {
            "CustomerRef": spec.customer_id,
            "TotalAmt": _money(spec.amount),
            "TxnDate": spec.txn_date.isoformat(),
            "PaymentMethod": spec.method.value,
            "PaymentRefNum": spec.reference,
            "Line": [
                {"Amount": _money(line.amount), "LinkedTxn": {"TxnId": line.txn_id, "TxnType": line.txn_kind.value}}
                for line in spec.lines
            ],
        }
    if isinstance(spec, RefundSpec):
        return spec.amount, {
            "PaymentType": spec.refund_kind.value,
            "EntityRef": spec.customer_id,
            "TotalAmt": _money(spec.amount),
            "TxnDate": spec.txn_date.isoformat(),
            "Memo": spec.memo,
        }
    if isinstance(spec, InvoiceSpec):
        fields: dict[str, object] = {
            "CustomerRef": spec.customer_id,
            "DocNumber": spec.doc_number,
            "TxnDate": spec.txn_date.isoformat(),
            "Line": [
                {
                    "Description": line.description,
                    "Qty": str(line.quantity),
                    "UnitPrice": _money(line.unit_price),
                    "Amount": _money(line.amount),
                    "Taxable": line.taxable,
                }
                for line in spec.lines
            ],
            "TotalAmt": _money(spec.total),
        }
        if spec.tax:
            fields["TotalTax"] = _money(spec.tax)
        if spec.discount is not None:
            fields["Discount"] = _money(spec.discount.amount)
        if spec.tip:
            fields["Tip"] = _money(spec.tip)
        if spec.surcharge:
            fields["Surcharge"] = _money(spec.surcharge)
        if spec.memo:
            fields["CustomerMemo"] = spec.memo
        return spec.total, fields
    assert isinstance(spec, DepositSpec)
    return spec.total, {
        "TxnDate": spec.txn_date.isoformat(),
        "Line": [
            {"Kind": line.kind.value, "Amount": _money(line.amount), "LinkedTxnId": line.txn_id, "Memo": line.memo}
            for line in spec.lines
        ],
        "TotalAmt": _money(spec.total),
    }
