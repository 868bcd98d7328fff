"""The CRM's records as qbsync receives them, and the sync state qbsync keeps about them.

CRM records (Customer, Opportunity, Payment, Refund, Job) are immutable snapshots: each sync request
brings the latest version and qbsync keeps the newest one it has seen. Sync state (SyncRecord, SyncJob)
is what qbsync knows about the matching QuickBooks records.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from core.money import CENT, ZERO, money_sum

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """How names and emails are compared (R1): case, outer spaces and repeated inner spaces ignored."""
    return _SPACES.sub(" ", text).strip().casefold()


class PaymentMethod(enum.Enum):
    CASH = "CASH"
    CHECK = "CHECK"
    CREDIT_CARD = "CREDIT_CARD"
    ACH = "ACH"
    OTHER = "OTHER"


class EntityType(enum.Enum):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    INVOICE = "INVOICE"
    CUSTOMER = "CUSTOMER"
    PAYOUT = "PAYOUT"


@dataclass(frozen=True, order=True)
class EntityRef:
    """A CRM record: its type and CRM id (the job's id stands for its invoice)."""

    type: EntityType
    id: str

    def __str__(self) -> str:
        return f"{self.type.value.lower()} {self.id}"


def in_lock_order(entities: Iterable[EntityRef]) -> list[EntityRef]:
    """The order in which one transaction writes several sync records: their key's. Two transactions that
    upsert overlapping records (an accept marking a payment and its refunds PENDING, a job saving what it
    wrote) then lock the rows in the same order, so PostgreSQL never has to break a deadlock between them."""
    return sorted(entities, key=lambda entity: (entity.type.value, entity.id))


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str = ""
    last_name: str = ""
    company_name: str = ""
    email: str = ""
    phone: str = ""

    @property
    def display_name(self) -> str:
        """`first last`, or the company name when both are empty (R1), with spaces tidied."""
        person = " ".join(p for p in (self.first_name.strip(), self.last_name.strip()) if p)
        name = person or self.company_name
        return _SPACES.sub(" ", name).strip()

    @property
    def match_key(self) -> tuple[str, str]:
        return normalise(self.display_name), normalise(self.email)

    def identity_key(self, tenant_id: str) -> str:
        """Who this customer is in QuickBooks' eyes (R1's match key), as a fixed-length key: two CRM
        customers with the same name and email resolve to, or create, the same QuickBooks customer, so
        their jobs must not run at once (see `SyncJob.identity_key`)."""
        name, email = self.match_key
        digest = hashlib.sha256(f"{name}|{email}".encode()).hexdigest()
        return f"{tenant_id}/identity/{digest}"


@dataclass(frozen=True)
class Opportunity:
    """`branch_id` picks the QuickBooks company (the branch's own connection, else the tenant's default one)
    and, with `service_type`, the class and location its transactions carry (SPEC §10); both may be empty."""

    opportunity_id: str
    number: str
    customer: Customer
    branch_id: str = ""
    service_type: str = ""


# Joins a CRM customer id and the branch of the QuickBooks company it is linked in (`customer_link`). CRM ids
# never hold control characters (core/text.py refuses them), so the joined id cannot be another customer's.
COMPANY_SEPARATOR = "\x1f"


def customer_link(customer_id: str, company: str = "") -> EntityRef:
    """The sync record of a CRM customer's link to its QuickBooks customer in one company: `company` is the
    branch of the connection the link was made through ("" for the tenant's default connection). Each company
    has its own customers, so the same CRM customer synced in two branches' companies has two links."""
    if not company:
        return EntityRef(EntityType.CUSTOMER, customer_id)
    return EntityRef(EntityType.CUSTOMER, f"{customer_id}{COMPANY_SEPARATOR}{company}")


def crm_customer_id(link: EntityRef) -> str:
    """The CRM customer id of a `customer_link` record (the id as the CRM sent it)."""
    return link.id.split(COMPANY_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Refund:
    refund_id: str
    amount: Decimal
    refunded_time: datetime
    memo: str = ""


@dataclass(frozen=True)
class Payment:
    payment_id: str
    amount: Decimal
    method: PaymentMethod
    received_time: datetime
    reference: str = ""
    refunds: tuple[Refund, ...] = ()
    # The part of `amount` that is a tip (booked on the invoice's tip line, SPEC §8), and what the card
    # processor kept of it (recorded for the payout's fee line, never netted from the payment).
    tip: Decimal = ZERO
    processing_fee: Decimal = ZERO

    @property
    def refunded(self) -> Decimal:
        return money_sum(r.amount for r in self.refunds)

    @property
    def net_amount(self) -> Decimal:
        """What the payment still holds after its refunds: the most it can apply to invoices."""
        return self.amount - self.refunded

    def with_refunds_merged(self, earlier: Payment | None) -> Payment:
        """Refunds are never dropped by omission: one qbsync has seen stays, newest version wins."""
        if earlier is None:
            return self
        merged = {r.refund_id: r for r in earlier.refunds}
        merged.update({r.refund_id: r for r in self.refunds})
        ordered = sorted(merged.values(), key=lambda r: (r.refunded_time, r.refund_id))
        return replace(self, refunds=tuple(ordered))


@dataclass(frozen=True)
class PayoutAdjustment:
    """Another amount in a payout (a reserve held or released, a correction): signed, with its memo."""

    amount: Decimal
    memo: str = ""


@dataclass(frozen=True)
class Payout:
    """What the processor (or a deposit slip) put into the bank on one day, as one amount (SPEC §9).

    It names the payments and refunds it carries by id: they are the CRM's records qbsync already has, and
    the payout only says which of them this one bank deposit holds."""

    payout_id: str
    arrival_date: date
    amount: Decimal
    payment_ids: tuple[str, ...] = ()
    refund_ids: tuple[str, ...] = ()
    fees: Decimal = ZERO
    chargebacks: Decimal = ZERO
    adjustments: tuple[PayoutAdjustment, ...] = ()

    @property
    def adjustments_total(self) -> Decimal:
        return money_sum(a.amount for a in self.adjustments)


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    taxable: bool = False  # written with TaxCodeRef TAX, else NON (SPEC §8)


@dataclass(frozen=True)
class Discount:
    """A discount on the whole invoice (SPEC §8): an `amount`, or a `percent` of the lines' total.

    `after_tax` says whether the discount comes off after tax was charged (tax on the full lines) or
    before (tax on the discounted lines). The CRM's tax total is sent as is either way, so it changes what
    QuickBooks reports as taxable sales, never the invoice's total."""

    description: str = ""
    amount: Decimal | None = None
    percent: Decimal | None = None
    after_tax: bool = False

    def amount_off(self, lines_total: Decimal) -> Decimal:
        """What comes off the invoice: the amount, or the percent of `lines_total` rounded half up to the
        cent (as a bookkeeper rounds, and as QuickBooks shows it)."""
        if self.amount is not None:
            return self.amount
        assert self.percent is not None, "a discount is an amount or a percent (validation)"
        return (lines_total * self.percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Job:
    """A moving job; once closed out, its lines become a QuickBooks invoice (R5)."""

    job_id: str
    number: str
    service_date: date
    lines: tuple[InvoiceLine, ...] = ()
    tax: Decimal = ZERO  # the CRM's sales tax total, sent to QuickBooks as the invoice's tax (SPEC §8)
    tax_rate_name: str = ""
    discounts: tuple[Discount, ...] = ()
    tip: Decimal = ZERO
    surcharge: Decimal = ZERO  # a card fee charged to the customer
    # The grand total as the CRM states it (None when it does not): never written anywhere, only checked
    # against `total` when the job is accepted, so that a CRM whose sums disagree with qbsync's is told
    # before its customer is invoiced a different amount (SPEC §8).
    stated_total: Decimal | None = None

    @property
    def lines_total(self) -> Decimal:
        return money_sum(line.amount for line in self.lines)

    @property
    def discount_total(self) -> Decimal:
        lines_total = self.lines_total
        return money_sum(d.amount_off(lines_total) for d in self.discounts)

    @property
    def total(self) -> Decimal:
        """The CRM total, what the payments are applied against and what QuickBooks' invoice must total to
        the cent: lines − discounts + tax + tip + surcharge (SPEC §8)."""
        return self.lines_total - self.discount_total + self.tax + self.tip + self.surcharge


@dataclass(frozen=True)
class ClosedJob:
    """A job closed out for an opportunity, in the order close-outs happened (oldest invoice first)."""

    opportunity_id: str
    job: Job
    closed_time: datetime


@dataclass(frozen=True)
class StoredPayment:
    """A payment as qbsync last received it, with the opportunity it was received for."""

    opportunity_id: str
    payment: Payment


@dataclass(frozen=True)
class StoredJob:
    """A job as qbsync last received it, with its opportunity and when it was first closed out (None
    while it is not): the first close-out counts (R5)."""

    opportunity_id: str
    job: Job
    closed_time: datetime | None

    @property
    def closed_out(self) -> bool:
        return self.closed_time is not None


class SyncState(enum.Enum):
    NOT_SYNCED = "NOT_SYNCED"
    PENDING = "PENDING"
    SYNCED = "SYNCED"
    FAILED = "FAILED"
    # Voided from the CRM (SPEC §11, VoidPayment/VoidInvoice): QuickBooks keeps the record at zero (a refund
    # expense is deleted there: see `AccountingSystem.void`); its QuickBooks Id stays on the record. Final: a
    # voided record is never written again.
    VOIDED = "VOIDED"
    # Changed in QuickBooks by someone else since qbsync last wrote it (SPEC §11, Drift): edited, voided, deleted
    # or merged there (what changed: `Drift`). A resync is refused until it is asked to overwrite QuickBooks.
    DRIFTED = "DRIFTED"


@dataclass
class SyncRecord:
    """What qbsync knows about the QuickBooks record of one CRM record (R8).

    `generation` counts how often the QuickBooks record had to be recreated (R6); it is part of every
    create's request id so that a recreate is never mistaken for a replay of the first create.
    `create_started` is set (and committed) before a create is sent and cleared when its id is stored:
    finding it set means an earlier attempt may have created the record, so look before creating (R7).
    `amount` is the total last written (payment amount, invoice total).
    `applied` (payments only) is what this payment applies to each invoice, by job id, as written.
    `realm_id` is the QuickBooks company the record was written in (SPEC §10: Ids are only unique within one
    company); "" for records written before qbsync kept it, taken as the company their connection has now.
    """

    tenant_id: str
    entity: EntityRef
    state: SyncState = SyncState.NOT_SYNCED
    quickbooks_id: str | None = None
    sync_token: str | None = None
    quickbooks_type: str = ""
    generation: int = 0
    create_started: bool = False
    content_hash: str = ""
    last_synced_time: datetime | None = None
    last_error: str = ""
    display_name: str = ""
    amount: Decimal | None = None
    applied: dict[str, Decimal] = field(default_factory=dict)
    realm_id: str = ""

    @property
    def resync_available(self) -> bool:
        """Resync is offered exactly when the record was synced before (R8)."""
        return self.last_synced_time is not None

    # R8's state transitions, written once: the service, the worker and the engine all move a record
    # through these, so what each state says about `last_error` and `last_synced_time` holds everywhere.

    def mark_pending(self, *, keep_error: bool = False) -> None:
        """A sync was requested. A fresh request clears the last error; a retry of a FAILED job keeps
        it (`keep_error`), so the bookkeeper still sees why it failed until the retry has run."""
        self.state = SyncState.PENDING
        if not keep_error:
            self.last_error = ""

    def mark_synced(self, now: datetime) -> None:
        """QuickBooks holds what the CRM holds, as of `now`; an earlier error no longer applies."""
        self.state = SyncState.SYNCED
        self.last_synced_time = now
        self.last_error = ""

    def mark_retrying(self, message: str) -> None:
        """An attempt failed and another is scheduled: still PENDING, showing why the last one failed."""
        self.state = SyncState.PENDING
        self.last_error = message

    def mark_failed(self, message: str) -> None:
        """No attempt is left, or retrying cannot help: FAILED until someone fixes the cause."""
        self.state = SyncState.FAILED
        self.last_error = message

    def mark_voided(self, now: datetime) -> None:
        """Voided in QuickBooks at the CRM's request, as of `now`: it counts zero there now, and the record
        keeps its QuickBooks Id (R8). Nothing of it is applied any more."""
        self.state = SyncState.VOIDED
        self.last_synced_time = now
        self.last_error = ""
        self.applied = {}


class SyncJobKind(enum.Enum):
    SYNC_PAYMENT = "SYNC_PAYMENT"
    CLOSE_OUT_JOB = "CLOSE_OUT_JOB"
    SYNC_INVOICE = "SYNC_INVOICE"
    SYNC_PAYOUT = "SYNC_PAYOUT"
    VOID_PAYMENT = "VOID_PAYMENT"  # SPEC §11: the payment and its refund expenses voided in QuickBooks
    VOID_INVOICE = "VOID_INVOICE"  # SPEC §11: the job's invoice voided, the payments applied to it let go


class SyncJobState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def done(self) -> bool:
        return self in (SyncJobState.SUCCEEDED, SyncJobState.FAILED)


class SyncAction(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    LINKED = "LINKED"
    VOIDED = "VOIDED"  # SPEC §11: voided at the CRM's request (a refund expense: deleted, see SyncState.VOIDED)


@dataclass(frozen=True)
class SyncResult:
    entity: EntityRef
    quickbooks_id: str
    action: SyncAction


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a stable reason, words for a bookkeeper, and whether retrying may help."""

    reason: str
    message: str
    retryable: bool
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SyncJob:
    """One accepted sync request, queued in the same transaction as the state it drives."""

    job_id: str
    tenant_id: str
    kind: SyncJobKind
    target: EntityRef
    opportunity_id: str
    customer_id: str
    create_time: datetime
    update_time: datetime
    state: SyncJobState = SyncJobState.PENDING
    resync: bool = False
    attempts: int = 0
    max_attempts: int = 8
    results: list[SyncResult] = field(default_factory=list)
    error: JobError | None = None
    request_id: str = ""
    request_fingerprint: str = ""
    next_attempt_time: datetime | None = None
    claimed_by: str = ""
    lease_expires: datetime | None = None
    # The customer's `Customer.identity_key` when the job was accepted; "" for jobs accepted before qbsync
    # recorded it (they are kept apart by lock_key only).
    identity_key: str = ""
    # When an admin dismissed the FAILED job (DismissSyncError): it leaves ListSyncErrors and keeps its
    # history. None for jobs never dismissed; a retry clears it, so a job that fails again is listed again.
    dismiss_time: datetime | None = None
    # The branch whose connection the job syncs to (SPEC §10: `ConnectionRepository.for_branch`), as the
    # opportunity said when the job was accepted; "" for the default connection and for jobs accepted before.
    branch_id: str = ""
    # Set by `claim_next` on the job it returns: the job was RUNNING under a lease that had run out (its
    # worker died or stalled), so this claim takes it over. Not stored; no part of the job's value.
    taken_over: bool = field(default=False, compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"syncJobs/{self.job_id}"

    @property
    def lock_key(self) -> str:
        """Jobs with the same key never run at once: one writer per customer and its records. Jobs with
        the same non-empty `identity_key` never run at once either: two CRM customers with one name and
        email could otherwise both find no QuickBooks customer and both create one (R1, R7). A payout's
        job writes its deposit only (its payments are their own jobs'), so it is kept apart per payout."""
        if self.kind is SyncJobKind.SYNC_PAYOUT:
            return f"{self.tenant_id}/payout/{self.target.id}"
        return f"{self.tenant_id}/customer/{self.customer_id}"


class Permission(enum.Enum):
    SYNC = "sync"
    READ = "read"
    QUICKBOOKS_VIEW = "quickbooks.view"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: only the hash of the secret is kept.

    A key works until it is revoked or its expiry passes, whichever comes first; `last_use_time` is when
    it last authenticated a call, to within `core.auth.LAST_USE_PRECISION` (None: never used).
    """

    key_id: str
    tenant_id: str
    secret_hash: str
    permissions: frozenset[Permission]
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    last_use_time: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        """Whether the key may authenticate a call at `now`."""
        if self.revoke_time is not None:
            return False
        return self.expire_time is None or now < self.expire_time


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant the key belongs to and what it may do."""

    tenant_id: str
    permissions: frozenset[Permission]

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


class AuditKind(enum.Enum):
    """What an audit event records. The values are what the audit log stores: never change one."""

    # A sync request was accepted and its job queued (SyncService), one kind per SyncJobKind.
    SYNC_PAYMENT_ACCEPTED = "SYNC_PAYMENT_ACCEPTED"
    CLOSE_OUT_JOB_ACCEPTED = "CLOSE_OUT_JOB_ACCEPTED"
    SYNC_INVOICE_ACCEPTED = "SYNC_INVOICE_ACCEPTED"
    SYNC_PAYOUT_ACCEPTED = "SYNC_PAYOUT_ACCEPTED"
    VOID_PAYMENT_ACCEPTED = "VOID_PAYMENT_ACCEPTED"
    VOID_INVOICE_ACCEPTED = "VOID_INVOICE_ACCEPTED"
    # Someone asked to run a FAILED job again (SyncService.retry).
    RETRY_REQUESTED = "RETRY_REQUESTED"
    # An admin dismissed a FAILED job: it leaves the sync errors list (SyncService.dismiss).
    SYNC_ERROR_DISMISSED = "SYNC_ERROR_DISMISSED"
    # A job run ended well: its records are in QuickBooks (SyncWorker).
    SYNC_SUCCEEDED = "SYNC_SUCCEEDED"
    # A job run failed and another attempt is scheduled (SyncWorker).
    SYNC_RETRY_SCHEDULED = "SYNC_RETRY_SCHEDULED"
    # A job run failed with no attempt left, or with a failure retrying cannot fix (SyncWorker).
    SYNC_FAILED = "SYNC_FAILED"
    # An admin started Intuit's OAuth flow (ConnectionService.get_authorization_url).
    QUICKBOOKS_AUTHORIZATION_STARTED = "QUICKBOOKS_AUTHORIZATION_STARTED"
    # The tenant was connected to a company, through the OAuth flow or with an operator's tokens.
    QUICKBOOKS_CONNECTED = "QUICKBOOKS_CONNECTED"
    # An admin changed the account mapping or other settings (ConnectionService.update_settings).
    QUICKBOOKS_SETTINGS_UPDATED = "QUICKBOOKS_SETTINGS_UPDATED"
    # An admin disconnected the tenant from its company (ConnectionService.disconnect).
    QUICKBOOKS_DISCONNECTED = "QUICKBOOKS_DISCONNECTED"
    # The company's home currency or multicurrency setting was read and differed from what was stored.
    QUICKBOOKS_CURRENCY_READ = "QUICKBOOKS_CURRENCY_READ"
    # The company's sales tax mode (TaxPrefs) was read and differed from what was stored (SPEC §8).
    QUICKBOOKS_SALES_TAX_READ = "QUICKBOOKS_SALES_TAX_READ"
    QUICKBOOKS_PREFERENCES_READ = "QUICKBOOKS_PREFERENCES_READ"  # class/location tracking, invoice numbers (§10)

    @staticmethod
    def accepted(kind: SyncJobKind) -> AuditKind:
        """The kind recorded when a job of `kind` is accepted."""
        return _ACCEPTED[kind]


_ACCEPTED = {
    SyncJobKind.SYNC_PAYMENT: AuditKind.SYNC_PAYMENT_ACCEPTED,
    SyncJobKind.CLOSE_OUT_JOB: AuditKind.CLOSE_OUT_JOB_ACCEPTED,
    SyncJobKind.SYNC_INVOICE: AuditKind.SYNC_INVOICE_ACCEPTED,
    SyncJobKind.SYNC_PAYOUT: AuditKind.SYNC_PAYOUT_ACCEPTED,
    SyncJobKind.VOID_PAYMENT: AuditKind.VOID_PAYMENT_ACCEPTED,
    SyncJobKind.VOID_INVOICE: AuditKind.VOID_INVOICE_ACCEPTED,
}


@dataclass(frozen=True)
class AuditEvent:
    tenant_id: str
    time: datetime
    kind: AuditKind
    entity: EntityRef | None
    job_id: str
    message: str


def payments_oldest_first(payments: list[Payment]) -> list[Payment]:
    return sorted(payments, key=lambda p: (p.received_time, p.payment_id))


class DriftChange(enum.Enum):
    """How a record qbsync wrote was changed in QuickBooks by someone else (SPEC §11)."""

    EDITED = "EDITED"  # a field qbsync wrote holds another value (`Drift.fields` names them)
    VOIDED = "VOIDED"  # voided in QuickBooks, not through qbsync
    DELETED = "DELETED"
    MERGED = "MERGED"  # a customer merged into another: QuickBooks reports the one merged away as deleted


@dataclass(frozen=True)
class Drift:
    """What a sweep found changed in QuickBooks on one record qbsync wrote. `sync_token` is the record's
    SyncToken as QuickBooks reported it then: the same change seen again is this drift, not another.
    `fields` names QuickBooks' fields that differ from qbsync's last write ("TotalAmt", "CustomerRef")."""

    tenant_id: str
    entity: EntityRef
    quickbooks_id: str
    change: DriftChange
    detected_time: datetime
    sync_token: str = ""
    fields: tuple[str, ...] = ()
