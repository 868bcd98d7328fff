"""The ports: what the core needs from the outside world, as `typing.Protocol`s.

Adapters subclass these explicitly so mypy checks them. Every method states its contract: what it
returns, which domain error it raises, and what is idempotent.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from core.accounting import AccountingCustomer, NewCustomer, QuickBooksRef, TxnKind, TxnSpec
from core.connection import QuickBooksConnection, TokenGrant
from core.domain import (
    ApiKey,
    AuditEvent,
    ClosedJob,
    EntityRef,
    Job,
    Opportunity,
    Payment,
    SyncJob,
    SyncRecord,
)
from core.limits import FieldLimits

# --- the accounting system (QuickBooks Online, its emulator, or the in-memory fake) -------------


class AccountingSystem(Protocol):
    """One tenant's QuickBooks company.

    Errors: `AccountingUnavailableError` (maybe_committed=True when a write may have happened),
    `ThrottledError`, `ReconnectRequiredError`, `BookkeepingError` for what a person must fix.
    Writes are idempotent per `request_id`: the same id returns the first write's result.
    """

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        """Active customers that may match (R1): at least every active customer whose DisplayName is
        `display_name` or `display_name - N` (case and spacing ignored) and whose primary email is
        `email`. It may return more; the core applies the exact rule."""
        ...

    def create_customer(self, customer: NewCustomer, *, request_id: str) -> AccountingCustomer:
        """Raises `DuplicateNameError` when the DisplayName is taken by any customer, vendor or
        employee, active or not (R2)."""
        ...

    def create(self, spec: TxnSpec, *, request_id: str) -> QuickBooksRef:
        """Creates the payment, refund or invoice. Raises `CustomerUnusableError` when the customer
        no longer exists or is inactive."""
        ...

    def update(self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str) -> QuickBooksRef:
        """Replaces the record with `spec` (all payment lines are sent). A stale SyncToken is
        re-read and the update re-applied. Raises `RecordGoneError` if the record was deleted or
        voided, `CustomerUnusableError` as `create` does."""
        ...

    def find_by_marker(self, kind: TxnKind, marker: str, customer_id: str) -> QuickBooksRef | None:
        """The live record of `kind` whose private note carries `marker`, if any: how a create whose
        outcome was uncertain is found before it is attempted again (R7). `customer_id` is the customer
        the record was written for: QuickBooks cannot search private notes, so an adapter narrows the
        search by customer (it may ignore it; a record of another customer need not be found)."""
        ...

    def link_for(self, kind: TxnKind | None, quickbooks_id: str) -> str:
        """The URL that opens the record in the QuickBooks web app (R9); kind None is a customer."""
        ...


class AccountingSystems(Protocol):
    """Hands out each tenant's accounting system, and says what any of them can hold."""

    # The longest text and largest numbers a written field may carry: SyncService refuses a request that
    # exceeds them (INVALID_ARGUMENT) before accepting a job, so that no accepted job fails on them.
    field_limits: FieldLimits

    def for_tenant(self, tenant_id: str) -> AccountingSystem: ...


class QuickBooksAuthorization(Protocol):
    """Intuit's OAuth2 code flow for qbsync's own Intuit app (its client id and secret are configured).

    `environment` is "sandbox", "production" or the URL of an OpenID discovery document.
    """

    # The app's credentials: each connection made through the flow keeps them, to refresh its tokens.
    client_id: str
    client_secret: str

    def authorization_url(self, environment: str, redirect_uri: str, state: str) -> str: ...

    def exchange_code(self, environment: str, redirect_uri: str, code: str) -> TokenGrant:
        """Raises `BookkeepingError` (reason QUICKBOOKS_AUTHORIZATION_FAILED) when Intuit refuses the code."""
        ...

    def revoke(self, connection: QuickBooksConnection) -> None:
        """Best effort: the tokens stop working at Intuit; failures are not raised."""
        ...


# --- persistence ------------------------------------------------------------------------------------


class TenantRepository(Protocol):
    def ensure(self, tenant_id: str) -> None:
        """Creates the tenant if it is new; idempotent."""
        ...

    def exists(self, tenant_id: str) -> bool: ...


class ApiKeyRepository(Protocol):
    def add(self, key: ApiKey) -> None: ...

    def get_by_hash(self, secret_hash: str) -> ApiKey | None: ...


class SnapshotRepository(Protocol):
    """The newest CRM records received, per tenant. Ids are unique within a tenant only."""

    def save_opportunity(self, tenant_id: str, opportunity: Opportunity) -> None: ...

    def get_opportunity(self, tenant_id: str, opportunity_id: str) -> Opportunity | None: ...

    def save_payment(self, tenant_id: str, opportunity_id: str, payment: Payment) -> None: ...

    def get_payment(self, tenant_id: str, payment_id: str) -> tuple[str, Payment] | None:
        """The payment and the id of its opportunity."""
        ...

    def payments_of(self, tenant_id: str, opportunity_id: str) -> list[Payment]:
        """The opportunity's payments, oldest (received_time, then payment_id) first."""
        ...

    def payment_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        """The id of the payment a refund belongs to, if qbsync has seen the refund."""
        ...

    def save_job(self, tenant_id: str, opportunity_id: str, job: Job, closed_time: datetime | None) -> None:
        """Stores the job; a closed_time already recorded is kept (the first close-out counts)."""
        ...

    def get_job(self, tenant_id: str, job_id: str) -> tuple[str, Job, datetime | None] | None:
        """The job, its opportunity id and when it was closed out (None if it was not)."""
        ...

    def closed_jobs_of(self, tenant_id: str, opportunity_id: str) -> list[ClosedJob]:
        """The opportunity's closed-out jobs, oldest close-out (then job_id) first."""
        ...


class SyncRecordRepository(Protocol):
    def get(self, tenant_id: str, entity: EntityRef) -> SyncRecord | None: ...

    def save(self, record: SyncRecord) -> None:
        """Inserts or replaces the record for (tenant_id, entity)."""
        ...


class RequestIdTakenError(Exception):
    """Raised by `SyncJobRepository.add` when another job already holds (tenant, request_id)."""


class SyncJobRepository(Protocol):
    def add(self, job: SyncJob) -> None:
        """Raises `RequestIdTakenError` if the tenant already has a job with the same request_id."""
        ...

    def get(self, tenant_id: str, job_id: str) -> SyncJob | None:
        """Only the tenant's own jobs are found."""
        ...

    def find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None: ...

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        """As `get`, and the job stays locked against other writers until this unit of work ends: how a
        worker checks that it still holds a job and records the outcome without a claimer slipping in
        between (on PostgreSQL a row lock; SQLite and the fake serialise writers already)."""
        ...

    def claim_next(self, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob | None:
        """Atomically takes the oldest due job and marks it RUNNING for `worker_id` until
        `lease_expires`, incrementing its attempts. Due: PENDING with no next_attempt_time or one
        that has passed, or RUNNING with an expired lease. A job is never claimed while another job
        with the same `lock_key`, or the same non-empty `identity_key`, is RUNNING under an unexpired
        lease (one writer per record, and per customer identity in QuickBooks)."""
        ...

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        """Moves the lease of a job `worker_id` is running to `lease_expires` (the worker's heartbeat).
        False, and nothing changed, when the job is no longer RUNNING for `worker_id` (its lease ran out
        and another worker claimed it, or it ended)."""
        ...

    def save(self, job: SyncJob) -> None: ...

    def list_failed(self, tenant_id: str, *, offset: int, limit: int) -> list[SyncJob]:
        """The tenant's FAILED jobs, most recently updated first."""
        ...


class ConnectionRepository(Protocol):
    """Each tenant's QuickBooks connection. Adapters encrypt the tokens and client secret at rest."""

    def get(self, tenant_id: str) -> QuickBooksConnection | None: ...

    def save(self, connection: QuickBooksConnection) -> None:
        """Inserts or replaces the tenant's connection."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...

    def list(self, tenant_id: str, *, limit: int) -> list[AuditEvent]:
        """Newest first."""
        ...


class UnitOfWork(Protocol):
    """One transaction over all repositories: rolled back on leaving the `with` block unless committed."""

    tenants: TenantRepository
    api_keys: ApiKeyRepository
    snapshots: SnapshotRepository
    sync_records: SyncRecordRepository
    jobs: SyncJobRepository
    audit: AuditLog
    connections: ConnectionRepository

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Makes a fresh unit of work; each thread (worker, RPC) uses its own."""

    def __call__(self) -> UnitOfWork: ...


# --- coordination between the threads and processes of one deployment -----------------------------


@dataclass(frozen=True)
class RateLimits:
    """Requests allowed per QuickBooks company (realm). Intuit's limits are the defaults (QUICKBOOKS.md); set
    them lower to leave room for other apps of the same Intuit developer account, or in tests."""

    per_minute: int = 500
    per_second: int = 10
    in_flight: int = 10
    # QBO counts a request when it arrives, we when we send it: network jitter can bring two requests sent
    # a second apart within a second of each other there. Windows a little longer than a second (and a
    # minute) absorb that.
    margin_seconds: float = 0.1


class RequestLimiter(Protocol):
    """Admits one HTTP request to a company's API, within `RateLimits` for every process that shares it."""

    def acquire(self, realm_id: str) -> AbstractContextManager[None]:
        """Blocks until the request may be sent; the request is in flight until the context exits."""
        ...


class CompanyLock(Protocol):
    """Mutual exclusion per key (e.g. a tenant's token refresh) across everything that shares the lock:
    the threads of one process, or every process of a deployment. A holder that dies releases it."""

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Blocks until the lock for `key` is ours; released when the context exits."""
        ...


# --- time and identity ---------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdSource(Protocol):
    def new_id(self) -> str:
        """A new unique id (for sync jobs and API keys)."""
        ...
