"""The ports: what the core needs from the outside world, as `typing.Protocol`s.

Adapters subclass these explicitly so mypy checks them. Every method states its contract: what it
returns, which domain error it raises (its `Raises:` sentence), and what is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar

from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    ChangedEntity,
    ChangedRecord,
    CustomerLookup,
    NewCustomer,
    NumberedInvoice,
    QuickBooksAmounts,
    QuickBooksRef,
    TxnKind,
    TxnSpec,
)
from core.company_lists import ListEntry, ListKind
from core.company_lookups import CompanyLookup, LookupKind
from core.company_preferences import CompanyPreferences
from core.connection import CompanyFacts, ListRef, QuickBooksConnection, QuickBooksSettings, TokenGrant
from core.domain import (
    ApiKey,
    AuditEvent,
    ClosedJob,
    Drift,
    EntityRef,
    Job,
    Opportunity,
    Payment,
    Payout,
    StoredJob,
    StoredPayment,
    SyncJob,
    SyncRecord,
)
from core.errors import AccountingError
from core.limits import FieldLimits

T = TypeVar("T")

# --- the accounting system (QuickBooks Online, its emulator, or the in-memory fake) -------------


class WriteFence(Protocol):
    """What a write must still satisfy at the moment it leaves: for a job run, that it holds its lease.

    The accounting system calls `check` right before it sends each write request, every time it sends
    one: after any wait (for its request limiter, a token refresh, a back-off) and before each resend
    of the same write (a retry after a 5xx or timeout, a send under a fresh requestid). A write the fence
    refuses is not sent, and the refusal is raised as is. What the fence guards is the core's business;
    the accounting system only calls it.
    """

    def check(self) -> None:
        """Returns when the write may be sent now.
        Raises: `LeaseLostError` when it may not (the lease ran out or another worker holds the job)."""
        ...


class Unfenced(WriteFence):
    """The fence of a write that no lease guards (a tool, a test, a call outside a job run): it always
    lets the write go."""

    def check(self) -> None:
        return None


UNFENCED: WriteFence = Unfenced()


@dataclass(frozen=True)
class CustomerCreate:
    """One customer create of a batch (`AccountingSystem.create_customers_many`), as `create_customer` takes
    it: each with its own request id and its own fence (the creates of one batch may be different jobs')."""

    customer: NewCustomer
    request_id: str
    fence: WriteFence = UNFENCED


class AccountingSystem(Protocol):
    """One tenant's QuickBooks company.

    Errors: every method may raise `AccountingUnavailableError` (QuickBooks unreachable or failing),
    `ThrottledError` and `ReconnectRequiredError`; writes may also raise `BookkeepingError` for what a
    person must fix. After `AccountingUnavailableError` a write may have happened anyway: the core does
    not ask the error (R7's `SyncRecord.create_started` already makes the next attempt look first).
    Writes are idempotent per `request_id`: the same id returns the first write's result.
    Every write takes a `fence` (`WriteFence`), checked right before each request of the write is sent,
    whatever waits and resends happen inside the adapter: when it raises `LeaseLostError`, that request is
    not sent and the error is raised (any earlier request of the same write may have been sent and
    committed; its `request_id` and marker find it again).
    """

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        """Active customers that may match (R1): at least every active customer whose DisplayName is
        `display_name` or `display_name - N` (case and spacing ignored) and whose primary email is
        `email`. It may return more; the core applies the exact rule.
        Raises: only the errors every method may raise (see the class)."""
        ...

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        """Raises: `DuplicateNameError` when the DisplayName is taken by any customer, vendor or
        employee, active or not (R2); `BookkeepingError` for another refusal; whatever `fence.check()`
        raises, nothing more sent."""
        ...

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        """Creates the payment, refund or invoice.
        Raises: `CustomerUnusableError` when the customer no longer exists or is inactive;
        `LinkedRecordGoneError` when a payment links a refund expense or invoice that was deleted or
        voided; `BookkeepingError` for another refusal; whatever `fence.check()` raises, nothing more
        sent."""
        ...

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        """Replaces the record with `spec` (all payment lines are sent) if `ref.sync_token` is still the
        record's SyncToken. A stale one is never re-applied here, since the record may hold a newer
        version than `spec`: it raises `StaleRecordError` carrying the current SyncToken (at most one read
        to learn it), and nothing is written.
        Raises: `StaleRecordError` as said; `RecordGoneError` if the record was deleted or voided;
        `CustomerUnusableError`, `LinkedRecordGoneError` and `BookkeepingError` as `create` does;
        whatever `fence.check()` raises, nothing more sent (the read for the current SyncToken is not a
        write and is not fenced)."""
        ...

    def void(self, ref: QuickBooksRef, *, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        """Voids the payment or invoice `ref` names (SPEC §11): QuickBooks keeps it, its amounts at zero. A refund
        expense or check (a QBO Purchase) is deleted instead: QuickBooks' API voids Payments and Invoices
        (`?operation=void`) but offers no void of a Purchase, and a deleted expense counts zero as a voided
        one would. Returns the record as it is now (total zero).
        Exactly once without a request id (QuickBooks' void takes none): voiding is idempotent — a record
        voided (or a Purchase deleted) already is answered as voided, with nothing sent again — and
        `ref.sync_token` may be stale: the void changes no field the CRM wrote, so the adapter re-sends it
        with the current SyncToken rather than raise `StaleRecordError`.
        Raises: `RecordGoneError` when a payment or invoice was deleted in QuickBooks; `BookkeepingError`
        when QuickBooks refuses (a payment inside a deposit, an invoice a payment still applies to, a
        closed period); whatever `fence.check()` raises, nothing more sent."""
        ...

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        """Every write of `writes` (creates and updates, of any kinds), in as few requests as QuickBooks allows
        (its batch endpoint: at most 30 writes a request, each written or refused alone), answered in the
        order given: each write's `QuickBooksRef` as `create` or `update` returns it, or the error the single
        write would raise (`StaleRecordError`, `RecordGoneError`, `CustomerUnusableError`,
        `LinkedRecordGoneError`, `BookkeepingError`...) for a write refused alone; the others still land.
        Idempotent per write: a write's `request_id` replays as the single write's would, so a batch sent
        again after its answer was lost writes nothing twice. `fence` is checked before each request.
        Raises: what concerns a whole request rather than one write — the errors every method may raise (see
        the class) and whatever `fence.check()` raises — with nothing more sent; the writes of earlier
        requests (above 30 writes) may have been sent and committed, and their `request_id`s replay them."""
        ...

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        """`create_customer` for each of `creates`, in as few requests as QuickBooks allows (its batch endpoint),
        answered in the order given: each create's customer, or the error its own `create_customer` would raise
        (`DuplicateNameError`, `BookkeepingError`, whatever its fence raises: a create whose fence refuses is
        not sent, the others are). Idempotent per create as `create_customer` is.
        Raises: what concerns a whole request (the errors every method may raise, see the class, and whatever
        `fence.check()` raises), with nothing more sent; the creates of an earlier request may have landed."""
        ...

    def find_customers_many(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        """`find_customers` for each of `lookups`, in as few requests as QuickBooks allows (its batch endpoint),
        answered in the order given.
        Raises: only the errors every method may raise (see the class)."""
        ...

    def batch_room(self) -> bool:
        """Whether a batch request sent now would leave without waiting for QuickBooks' limit on batch
        requests (40 a minute per company): a hint, nothing reserved. A caller holding requests of several
        jobs sends them as their own requests, each on its own thread, when it says no.
        Raises: only the errors every method may raise (see the class)."""
        ...

    def find_by_marker(self, kind: TxnKind, marker: str, customer_id: str) -> QuickBooksRef | None:
        """The live record of `kind` whose private note carries `marker`, if any: how a create whose
        outcome was uncertain is found before it is attempted again (R7). `customer_id` is the customer
        the record was written for: QuickBooks cannot search private notes, so an adapter narrows the
        search by customer (it may ignore it; a record of another customer need not be found).
        Raises: only the errors every method may raise (see the class)."""
        ...

    def read_live(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
        """Of the records of `kind` with these Ids, those live now (neither deleted nor voided), by Id, with
        their current SyncToken: one read for all of them (a query by Id), however many. An Id missing
        from the answer is gone. How an explicit resync tells an unchanged record live without rewriting
        it (R6).
        Raises: only the errors every method may raise (see the class)."""
        ...

    def read_amounts(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksAmounts]:
        """The amounts QuickBooks holds for the records of `kind` with these Ids, by Id, voided ones included
        (`QuickBooksAmounts.voided`): one query by Id per page of Ids, however many. An Id missing from the
        answer was deleted. How ReconcileCompany compares the books with the CRM (SPEC §11).
        Raises: only the errors every method may raise (see the class)."""
        ...

    def active_customers(self, ids: list[str]) -> set[str]:
        """Which of these customer Ids are active now, in one read: how an explicit resync that writes
        nothing still learns that the linked customer was made inactive (R1).
        Raises: only the errors every method may raise (see the class)."""
        ...

    def changed_since(self, entities: Sequence[ChangedEntity], since: datetime) -> list[ChangedRecord]:
        """Every record of `entities` QuickBooks changed (created, edited, voided, deleted, merged away) at or
        after `since`, each once, as it stands now (its Change Data Capture), oldest change first (ties by
        entity, then Id). QuickBooks looks back at most 30 days: `since` earlier than that is read from 30 days
        back. However many changed: the adapter pages through QuickBooks' answers (at most 1,000 objects per
        entity each).
        Raises: only the errors every method may raise (see the class)."""
        ...

    def link_for(self, kind: TxnKind | None, quickbooks_id: str) -> str:
        """The URL that opens the record in the QuickBooks web app (R9); kind None is a customer.
        Raises: nothing: the URL is built from the connection, QuickBooks is not asked."""
        ...

    def find_list_entry(self, kind: ListKind, ref: ListRef) -> ListEntry | None:
        """The entry of the company's `kind` list that `ref` names, active or not, or None when there is
        none: by Id when `ref` has one (an Id QuickBooks could not have, such as "abc", is none), else by
        name, ignoring case (the fully qualified name, Parent:Child, of a sub-account or sub-item; a bare
        name matching several entries gives the lowest Id). A read only: how settings are checked against
        the company (core.company_lists).
        Raises: `AccountingUnavailableError`, `ThrottledError` or `ReconnectRequiredError` when the
        company cannot be asked; `BookkeepingError` when QuickBooks refuses the read."""
        ...

    def company_preferences(self) -> CompanyPreferences:
        """What the company's Preferences say now, in one read (never cached by the adapter): its home
        currency and whether multicurrency is on (`CurrencyPrefs`), and how it treats sales tax (`TaxPrefs`:
        `PartnerTaxEnabled` is automated sales tax, else `UsingSalesTax` is manual sales tax, else none);
        where it tracks classes (`AccountingInfoPrefs.ClassTrackingPerTxnLine` wins over `ClassTrackingPerTxn`;
        neither: OFF), whether it tracks locations (`TrackDepartments`) and whether invoice numbers are its
        users' own (`SalesFormsPrefs.CustomTxnNumbers`).
        Raises: as the other reads do (`AccountingUnavailableError`, `ThrottledError`,
        `ReconnectRequiredError`)."""
        ...

    def invoices_numbered(self, doc_number: str) -> list[NumberedInvoice]:
        """Every invoice of the company whose DocNumber is `doc_number` (exactly; QuickBooks compares it so),
        lowest Id first, in one query: how an invoice number is checked free before the invoice is created
        (InvoiceNumbering.CRM, DOC_NUMBER_TAKEN). Voided invoices keep their number and are included.
        Raises: only the errors every method may raise (see the class)."""
        ...


class ForwardingAccountingSystem(AccountingSystem):
    """An accounting system in front of another: every call is handed on to `system` as is, and every write
    goes through `_send`, which a subclass overrides to change how writes leave (the job run's fence, a test's
    stall). The one list of the port's methods besides the port itself: a method added to the port is added
    here, and every accounting system in front of another has it."""

    def __init__(self, system: AccountingSystem) -> None:
        self._system = system

    def _send(self, write: str, fence: WriteFence, send: Callable[[WriteFence], T]) -> T:
        """Sends the write named `write` (the port method's name) under `fence`: `send(fence)`."""
        return send(fence)

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        return self._system.find_customers(display_name, email)

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        return self._send(
            "create_customer", fence, lambda f: self._system.create_customer(customer, request_id=request_id, fence=f)
        )

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        return self._send("create", fence, lambda f: self._system.create(spec, request_id=request_id, fence=f))

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        return self._send("update", fence, lambda f: self._system.update(ref, spec, request_id=request_id, fence=f))

    def void(self, ref: QuickBooksRef, *, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        return self._send("void", fence, lambda f: self._system.void(ref, fence=f))

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        return self._send("write_many", fence, lambda f: self._system.write_many(writes, fence=f))

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        return self._send(
            "create_customers_many", fence, lambda f: self._system.create_customers_many(creates, fence=f)
        )

    def find_customers_many(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        return self._system.find_customers_many(lookups)

    def batch_room(self) -> bool:
        return self._system.batch_room()

    def find_by_marker(self, kind: TxnKind, marker: str, customer_id: str) -> QuickBooksRef | None:
        return self._system.find_by_marker(kind, marker, customer_id)

    def read_live(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
        return self._system.read_live(kind, ids)

    def read_amounts(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksAmounts]:
        return self._system.read_amounts(kind, ids)

    def active_customers(self, ids: list[str]) -> set[str]:
        return self._system.active_customers(ids)

    def changed_since(self, entities: Sequence[ChangedEntity], since: datetime) -> list[ChangedRecord]:
        return self._system.changed_since(entities, since)

    def link_for(self, kind: TxnKind | None, quickbooks_id: str) -> str:
        return self._system.link_for(kind, quickbooks_id)

    def find_list_entry(self, kind: ListKind, ref: ListRef) -> ListEntry | None:
        return self._system.find_list_entry(kind, ref)

    def company_preferences(self) -> CompanyPreferences:
        return self._system.company_preferences()

    def invoices_numbered(self, doc_number: str) -> list[NumberedInvoice]:
        return self._system.invoices_numbered(doc_number)


class AccountingSystems(Protocol):
    """Hands out each tenant's accounting system, and says what any of them can hold."""

    # The longest text and largest numbers a written field may carry: SyncService refuses a request that
    # exceeds them (INVALID_ARGUMENT) before accepting a job, so that no accepted job fails on them.
    field_limits: FieldLimits

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        """The company of the tenant's connection `branch_id` ("" the default connection; exactly that one:
        routing a branch to the default is the caller's, `ConnectionRepository.for_branch`), ready to use.
        `connection`: that stored connection as the caller has just read it (the worker reads it in its claim's
        transaction, saving one of its own; its `branch_id` then wins over the argument); None makes it read
        from storage. Implementations without a stored connection ignore both.
        Raises: `ReconnectRequiredError` when the tenant has no usable connection (never connected,
        disconnected, or waiting for a reconnection); storage failures as `UnitOfWork` says (the
        connection is read from storage)."""
        ...


class QuickBooksAuthorization(Protocol):
    """Intuit's OAuth2 code flow for qbsync's own Intuit app (its client id and secret are configured).

    `environment` is "sandbox", "production" or the URL of an OpenID discovery document.
    """

    # The app's credentials: each connection made through the flow keeps them, to refresh its tokens.
    client_id: str
    client_secret: str

    def authorization_url(self, environment: str, redirect_uri: str, state: str) -> str:
        """Where to send the admin to grant qbsync access.
        Raises: `FailedPreconditionError` when no Intuit app is configured; for a discovery-document
        `environment`, `AccountingUnavailableError` when it cannot be fetched and `BookkeepingError`
        (reason QUICKBOOKS_AUTHORIZATION_FAILED) when it cannot be read."""
        ...

    def exchange_code(self, environment: str, redirect_uri: str, code: str) -> TokenGrant:
        """Raises: `BookkeepingError` (reason QUICKBOOKS_AUTHORIZATION_FAILED) when Intuit refuses the code
        or answers without tokens; `AccountingUnavailableError` when Intuit cannot be reached;
        `FailedPreconditionError` when no Intuit app is configured."""
        ...

    def revoke(self, connection: QuickBooksConnection) -> None:
        """Best effort: the tokens stop working at Intuit. Raises: nothing; failures are logged only."""
        ...


# --- persistence ------------------------------------------------------------------------------------


class TenantRepository(Protocol):
    def ensure(self, tenant_id: str) -> None:
        """Creates the tenant if it is new; idempotent.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def exists(self, tenant_id: str) -> bool:
        """Whether the tenant was ever ensured. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class ApiKeyRepository(Protocol):
    def add(self, key: ApiKey) -> None:
        """Stores a new API key. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `secret_hash`, if any, revoked and expired ones included.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, if any. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key (of `tenant_id` only, when given), oldest first, then by id; revoked and expired ones
        included. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def revoke(self, key_id: str, when: datetime) -> None:
        """Marks the key revoked at `when`; a key revoked already keeps its first revocation time, and an
        unknown id changes nothing. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def record_use(self, key_id: str, when: datetime) -> None:
        """Sets the key's last use to `when` unless it is later already (two processes may record the same
        minute in either order); an unknown id changes nothing.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class SnapshotRepository(Protocol):
    """The newest CRM records received, per tenant. Ids are unique within a tenant only."""

    def save_opportunity(self, tenant_id: str, opportunity: Opportunity) -> None:
        """Stores the opportunity, replacing an older version.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_opportunity_of_its_customer(self, tenant_id: str, opportunity: Opportunity) -> str | None:
        """`save_opportunity`, unless the opportunity is stored under another customer: then nothing is
        saved and that customer's id is returned (an adapter may check and save in one statement).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        known = self.get_opportunity(tenant_id, opportunity.opportunity_id)
        if known is not None and known.customer.customer_id != opportunity.customer.customer_id:
            return known.customer.customer_id
        self.save_opportunity(tenant_id, opportunity)
        return None

    def get_opportunity(self, tenant_id: str, opportunity_id: str) -> Opportunity | None:
        """The opportunity as last received, if any.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def opportunities_of_customer(self, tenant_id: str, customer_id: str) -> list[Opportunity]:
        """The CRM customer's opportunities (as last received), by opportunity_id: what moves with the
        customer when its QuickBooks customer is replaced (R1).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_payment(self, tenant_id: str, opportunity_id: str, payment: Payment) -> None:
        """Stores the payment for its opportunity, replacing an older version and its refund map.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_payment(self, tenant_id: str, payment_id: str) -> StoredPayment | None:
        """The payment and the id of its opportunity.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def payments_of(self, tenant_id: str, opportunity_id: str) -> list[Payment]:
        """The opportunity's payments, oldest (received_time, then payment_id) first.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def payment_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        """The id of the payment a refund belongs to, if qbsync has seen the refund.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_job(self, tenant_id: str, opportunity_id: str, job: Job, closed_time: datetime | None) -> None:
        """Stores the job; a closed_time already recorded is kept (the first close-out counts).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_job(self, tenant_id: str, job_id: str) -> StoredJob | None:
        """The job, its opportunity id and when it was closed out (None if it was not).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def closed_jobs_of(self, tenant_id: str, opportunity_id: str) -> list[ClosedJob]:
        """The opportunity's closed-out jobs, oldest close-out (then job_id) first.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_payout(self, tenant_id: str, payout: Payout) -> None:
        """Stores the payout's newest snapshot and makes its `payment_ids` exactly the payments assigned to
        it, and its `refund_ids` exactly the refunds it nets: a payment or refund a resync no longer lists is
        no longer in any payout. The caller checks first that no listed payment or refund is in another
        payout (`payout_of_payment`, `payout_of_refund`, in the same unit of work).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_payout(self, tenant_id: str, payout_id: str) -> Payout | None:
        """The payout as last saved, or None.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def payout_of_payment(self, tenant_id: str, payment_id: str) -> str | None:
        """The id of the payout the payment is assigned to, or None.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def payout_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        """The id of the payout that nets the refund, or None.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list_opportunities(self, tenant_id: str) -> list[Opportunity]:
        """Every opportunity of the tenant as last received, by opportunity_id: where a reconciliation
        (SPEC §11) starts from to find the payments, refunds and invoices of a period.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list_payouts(self, tenant_id: str, *, offset: int, limit: int) -> list[Payout]:
        """The tenant's payouts as last saved, newest arrival date first; payouts of one day by payout_id
        descending, compared by code point (as Python's str), so that pages never overlap or skip one.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class SyncRecordRepository(Protocol):
    def get(self, tenant_id: str, entity: EntityRef) -> SyncRecord | None:
        """The record, or None when qbsync never tracked it.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save(self, record: SyncRecord) -> None:
        """Inserts or replaces the record for (tenant_id, entity).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_many(self, tenant_id: str, entities: Sequence[EntityRef]) -> dict[EntityRef, SyncRecord]:
        """`get` of each of `entities`: the tracked ones, by entity (an adapter may read them at once).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        found = {entity: self.get(tenant_id, entity) for entity in entities}
        return {entity: record for entity, record in found.items() if record is not None}

    def with_quickbooks_ids(self, tenant_id: str, quickbooks_ids: Sequence[str]) -> list[SyncRecord]:
        """The tenant's records whose QuickBooks Id is one of `quickbooks_ids`, in any company and of any
        QuickBooks type (Ids are unique only per type and company: the caller narrows), in no set order.
        How a drift sweep finds which of QuickBooks' changed records qbsync wrote.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_many(self, records: Sequence[SyncRecord]) -> None:
        """`save` of each of `records`, written in the order given (callers give `in_lock_order`'s), at most
        one per entity (an adapter may send them together).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        for record in records:
            self.save(record)


class RequestIdTakenError(Exception):
    """Raised by `SyncJobRepository.add` when another job already holds (tenant, request_id)."""


@dataclass(frozen=True)
class DueBacklog:
    """The queue as an operator watches it: due PENDING jobs, and when the oldest of them became due."""

    jobs: int
    oldest_due_since: datetime | None


class SyncJobRepository(Protocol):
    def add(self, job: SyncJob, *, accepted: AuditEvent | None = None) -> None:
        """Queues the job, and appends `accepted` (the audit event of its acceptance) with it: an adapter may
        write both in one statement. Raises: `RequestIdTakenError` if the tenant already has a job with the
        same request_id (nothing stored, the event neither); storage failures as `UnitOfWork` says."""
        ...

    def get(self, tenant_id: str, job_id: str) -> SyncJob | None:
        """Only the tenant's own jobs are found.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None:
        """The tenant's job accepted under `request_id`, if any.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        """As `get`, and the job stays locked against other writers until this unit of work ends: how a
        worker checks that it still holds a job and records the outcome without a claimer slipping in
        between (on PostgreSQL a row lock; SQLite and the fake serialise writers already).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def claim_next(self, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob | None:
        """Atomically takes the oldest due job and marks it RUNNING for `worker_id` until
        `lease_expires`, incrementing its attempts. Due: PENDING with no next_attempt_time or one
        that has passed, or RUNNING with an expired lease. A job is never claimed while another job
        with the same `lock_key`, or the same non-empty `identity_key`, is RUNNING under an unexpired
        lease (one writer per record, and per customer identity in QuickBooks).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        """Moves the lease of a job `worker_id` is running to `lease_expires` (the worker's heartbeat).
        False, and nothing changed, when the job is no longer RUNNING for `worker_id` (its lease ran out
        and another worker claimed it, or it ended).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save(self, job: SyncJob) -> None:
        """Replaces the stored job. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list_failed(self, tenant_id: str, *, offset: int, limit: int) -> list[SyncJob]:
        """The tenant's FAILED jobs that were not dismissed (`dismiss_time` None), most recently updated
        first, then by job_id descending.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list_recent(self, tenant_id: str, *, limit: int) -> list[SyncJob]:
        """The tenant's jobs in any state (dismissed ones included), most recently updated first, then by
        job_id descending; at most `limit`.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def due_backlog(self, now: datetime) -> DueBacklog:
        """Over every tenant: how many PENDING jobs are due at `now` (no next_attempt_time, or one not
        after `now`), and since when the longest-waiting of them has been due (its next_attempt_time, or
        its create_time when it never had one). One cheap query: what a metrics scrape asks.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class ConnectionRepository(Protocol):
    """Each tenant's QuickBooks connections: the default one (`branch_id` "") and one per branch that has its
    own company (SPEC §10), keyed by (tenant_id, branch_id); every method but `for_branch` and `of_tenant`
    works on exactly the connection `branch_id` names. Adapters encrypt the tokens and client secret at rest.

    A connection has writers that run at the same time, in several processes: workers refreshing its
    tokens, workers recording the settings they looked up, an admin changing settings or starting an
    authorization. Intuit rotates the refresh token on every refresh and the old one may die at once, so a
    writer that put back the row it read would roll a rotated token back and force a reconnection. Hence
    each of these writers changes only its own fields of the stored connection, whatever another unit of
    work committed since this one read it: `save_tokens`, `mark_reconnect_required`, `save_settings`,
    `save_authorization_request`. `save` replaces everything and is only for connecting and
    disconnecting, which set the tokens themselves.
    """

    def get(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        """The tenant's connection for `branch_id` ("" the default one), if it has one (exactly that one).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def for_branch(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        """The connection a branch's syncs go to (SPEC §10), in one read: the branch's own connection, whatever
        its state (a disconnected branch fails its syncs rather than write to another company), else the
        tenant's default connection (branch ""), else None.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def of_tenant(self, tenant_id: str) -> list[QuickBooksConnection]:
        """Every connection of the tenant, the default one first, then by branch.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def get_for_update(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        """`get`, holding the connection's row lock until the unit of work ends: for a read-modify-write
        (merging settings) that no other writer may get into. Do not call QuickBooks while holding it: a
        token refresh would wait for the lock.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save(self, connection: QuickBooksConnection) -> None:
        """Inserts or replaces the whole connection, tokens included: only for the flows that replace the
        tokens (connecting, disconnecting). Anywhere else use the writers below.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_tokens(self, tenant_id: str, grant: TokenGrant, *, replacing: str, branch_id: str = "") -> bool:
        """Stores a refreshed grant (both tokens, their expiries, the access token's lifetime) and clears
        `last_error`, changing nothing else, provided the connection is still CONNECTED and still holds
        `replacing`, the refresh token that was used; returns whether it did. False means the company was
        disconnected or connected again meanwhile (or has no connection): the tokens stored then are newer
        and are kept.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def mark_reconnect_required(
        self, tenant_id: str, last_error: str, *, refused_token: str, branch_id: str = ""
    ) -> bool:
        """Intuit refused `refused_token`: the connection becomes RECONNECT_REQUIRED with `last_error`, its
        access token forgotten and nothing else changed, provided it still holds that refresh token (a
        refresh or reconnection committed meanwhile stands); returns whether it did.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_settings(self, tenant_id: str, settings: QuickBooksSettings, *, branch_id: str = "") -> None:
        """Replaces the connection's settings, and nothing else.
        Raises: `NotFoundError` when the tenant has no connection (store a new one with `save`)."""
        ...

    def save_authorization_request(
        self, tenant_id: str, *, environment: str, redirect_uri: str, oauth_state: str, branch_id: str = ""
    ) -> None:
        """Records a pending authorization (its anti-forgery state, where Intuit sends the admin back, the
        environment), and nothing else: a live connection keeps working with its tokens until the new
        authorization completes.
        Raises: `NotFoundError` when the tenant has no connection."""
        ...

    def save_company_preferences(self, tenant_id: str, preferences: CompanyPreferences, *, branch_id: str = "") -> bool:
        """Records the company's preferences (`home_currency`, `multicurrency`, `sales_tax`, `class_tracking`,
        `track_departments`, `custom_txn_numbers`) on the tenant's
        connection and changes nothing else, so a token another worker refreshed meanwhile is never written back over.
        False, and nothing stored, when the tenant has no connection.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class CompanyLookupRepository(Protocol):
    """What the sync-time checks found in each tenant's company lists (core/company_lookups.py), kept for
    every process of the deployment. At most one look-up per tenant, connection (`branch_id`, "" the default
    one: each connection is its own company), kind and name: a newer one replaces it."""

    def of_tenant(self, tenant_id: str, *, branch_id: str = "") -> list[CompanyLookup]:
        """Every look-up stored for the tenant, whatever company or age (the caller judges them).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save(self, tenant_id: str, lookups: list[CompanyLookup], *, branch_id: str = "") -> None:
        """Stores each look-up, replacing the tenant's one of the same kind and name.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def forget(self, tenant_id: str, kind: LookupKind, name: str | None = None, *, branch_id: str = "") -> None:
        """Removes the tenant's look-up of that kind and name; every one of that kind when `name` is None.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class DriftRepository(Protocol):
    """What drift sweeps found (SPEC §11): at most one drift per CRM record, and per connection the moment
    its next sweep reads QuickBooks' changes from."""

    def get(self, tenant_id: str, entity: EntityRef) -> Drift | None:
        """The record's drift, or None. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save(self, drift: Drift) -> None:
        """Inserts or replaces the drift of (tenant_id, entity).
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def clear(self, tenant_id: str, entity: EntityRef) -> None:
        """Forgets the record's drift (an overwrite wrote over it); nothing when it has none.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list(self, tenant_id: str, *, offset: int, limit: int) -> list[Drift]:
        """The tenant's drifts, newest detected first, then by entity, so that pages never overlap or skip one.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def watermark(self, tenant_id: str, branch_id: str = "") -> datetime | None:
        """Where the connection's next sweep reads changes from; None before its first sweep.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def save_watermark(self, tenant_id: str, moment: datetime, branch_id: str = "") -> None:
        """Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None:
        """Records the event. Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...

    def list(self, tenant_id: str, *, limit: int) -> list[AuditEvent]:
        """Newest first.
        Raises: nothing of its own (a storage failure: see `UnitOfWork`)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over all repositories: rolled back on leaving the `with` block unless committed.

    Raises: StorageUnavailableError (on leaving the block) when the storage itself failed - unreachable,
    restarted, connection lost - rather than the statement: nothing of the block was committed.
    """

    tenants: TenantRepository
    api_keys: ApiKeyRepository
    snapshots: SnapshotRepository
    sync_records: SyncRecordRepository
    jobs: SyncJobRepository
    audit: AuditLog
    connections: ConnectionRepository
    company_lookups: CompanyLookupRepository
    drift: DriftRepository

    # `__enter__` and `__exit__` have default bodies (cosmicpython's unit of work): an adapter writes only
    # `commit` and `rollback`, unless it opens or closes something of its own on entering or leaving.

    def __enter__(self) -> Self:
        """Begins the transaction. Raises: nothing (the connection is taken on first use)."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Rolls back what was not committed. Raises: `StorageUnavailableError` as the class says;
        otherwise lets the block's own error through."""
        self.rollback()

    def commit(self) -> None:
        """Makes the block's writes durable. Raises: a storage failure surfaces as `StorageUnavailableError`
        on leaving the block; nothing is committed then."""
        ...

    def rollback(self) -> None:
        """Forgets the block's uncommitted writes. Raises: nothing of its own."""
        ...


class UnitOfWorkFactory(Protocol):
    """Makes a fresh unit of work; each thread (worker, RPC) uses its own."""

    def __call__(self) -> UnitOfWork:
        """Raises: nothing (the unit of work connects when first used)."""
        ...

    def read_only(self) -> UnitOfWork:
        """A unit of work that only reads, for a use case that writes nothing: it may then skip taking the
        storage's write lock up front (SQLite's BEGIN IMMEDIATE), so reads need not queue behind writers.
        Its `commit` raises RuntimeError, so nothing written in it can last. Reading-then-writing belongs
        in an ordinary unit of work, which keeps its lost-update protection. By default an ordinary one.
        Raises: nothing (as `__call__`)."""
        return self()

    def company_facts(self, tenant_id: str, branch_id: str = "") -> CompanyFacts | None:
        """What the accept checks need of the connection `branch_id`'s syncs go to (`for_branch`); None when
        there is none. An adapter may
        answer from memory: for a few seconds, and never after its own process changed the connection
        (whatever wrote it). By default it reads the connection each time.
        Raises: StorageUnavailableError (as a unit of work)."""
        with self.read_only() as uow:
            connection = uow.connections.for_branch(tenant_id, branch_id)
        return None if connection is None else CompanyFacts.of(connection)


# --- coordination between the threads and processes of one deployment -----------------------------


@dataclass(frozen=True)
class RateLimits:
    """Requests allowed per QuickBooks company (realm). Intuit's limits are the defaults (QUICKBOOKS.md); set
    them lower to leave room for other apps of the same Intuit developer account, or in tests."""

    per_minute: int = 500
    per_second: int = 10
    in_flight: int = 10
    # QBO's batch endpoint: at most this many batch requests a minute per company, on top of the windows above
    # (a batch counts once there, whatever it carries).
    batch_per_minute: int = 40
    # No margin on the windows: QBO counts a request when it arrives, some time between its sending and its
    # answer, so the limiters count it from its admission until its answer and then as if it arrived then
    # (a request held up by a busy machine cannot arrive closer to the next than a window).


class RequestLimiter(Protocol):
    """Admits one HTTP request to a company's API, within `RateLimits` for every process that shares it."""

    def acquire(self, realm_id: str, *, batch: bool = False) -> AbstractContextManager[None]:
        """Blocks until the request may be sent; the request is in flight until the context exits. A `batch`
        request (QBO's batch endpoint) also needs room in the company's batch window (`batch_per_minute`).
        Raises: nothing of its own; one shared through PostgreSQL lets the database driver's error
        through when it cannot reach the database."""
        ...

    def batch_room(self, realm_id: str) -> bool:
        """Whether a batch request admitted now would find room in the company's batch window. A hint, nothing
        reserved: a caller that is told no sends its items as single requests rather than wait for a minute
        window to pass (single requests are cheaper to wait for: ten a second against forty a minute).
        Raises: as `acquire`."""
        ...


class CompanyLock(Protocol):
    """Mutual exclusion per key (e.g. a tenant's token refresh) across everything that shares the lock:
    the threads of one process, or every process of a deployment. A holder that dies releases it."""

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Blocks until the lock for `key` is ours; released when the context exits.
        Raises: nothing of its own; one shared through PostgreSQL lets the database driver's error
        through when it cannot reach the database."""
        ...


class WorkSignal(Protocol):
    """Wakes idle workers when a job may have become claimable, whichever process enqueued it (e.g. the
    database's notifications of a job added or retried). Signals may be spurious or several in one, and
    none comes for work that falls due by time alone (a lease running out, a retry's next attempt): a
    worker still polls for that, less often."""

    def wait(self, timeout: float) -> bool:
        """Blocks until a signal (True) or until `timeout` seconds have passed (False); a signal that came
        since this thread's last `wait` returned counts at once. Raises: nothing (a signal whose source is
        unreachable only waits out the timeout)."""
        ...


# --- time and identity ---------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC. Raises: nothing."""
        ...


class IdSource(Protocol):
    def new_id(self) -> str:
        """A new unique id (for sync jobs and API keys). Raises: nothing."""
        ...


class Metrics(Protocol):
    """What the core tells an operator's metrics (the adapter: `adapters.metrics`); the core names no
    metrics technology. Labels are bounded sets: a job kind, an outcome, a reason code. `NO_METRICS`
    records nothing (tests, tools)."""

    def job_ended(self, kind: str, outcome: str, reason: str) -> None:
        """A run of a job ended: outcome "succeeded", "retry" (rescheduled) or "failed"; reason "" on
        success, else the error's reason code (`QbsyncError.reason`)."""
        ...

    def lease_taken_over(self, kind: str) -> None:
        """A worker claimed a job whose previous worker's lease had run out."""
        ...

    def claim_loop_ran(self) -> None:
        """A worker's claim loop went round once (claimed a job, or found none): its liveness."""
        ...


class NoMetrics(Metrics):
    def job_ended(self, kind: str, outcome: str, reason: str) -> None:
        pass

    def lease_taken_over(self, kind: str) -> None:
        pass

    def claim_loop_ran(self) -> None:
        pass


NO_METRICS: Metrics = NoMetrics()
