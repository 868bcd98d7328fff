"""The in-memory persistence fake: a `UnitOfWork` with real transaction semantics, no database.

It is product code, not a test helper: testers run qbsync with it (`InMemoryPersistenceModule`), and the
persistence contract suite holds it to exactly what the SQLAlchemy adapter does. So it behaves like a
READ COMMITTED database rather than like a dict:

* writes are staged in the unit of work and applied to the shared `InMemoryDatabase` only on `commit()`
  (under its lock), so uncommitted changes are invisible to others and vanish on rollback;
* objects are deep-copied in and out, so mutating a returned `SyncJob` changes nothing until `save()`;
* `claim_next` takes the job the claim rule picks (`core.claim_rule.next_to_claim`) and holds a claim
  lock until the unit of work ends, as the SQL adapter holds SQLite's write lock (`BEGIN IMMEDIATE`) or
  PostgreSQL's row and per-key advisory locks (there claimers run in parallel; here, one at a time,
  which a fake's callers cannot tell apart): two workers never claim the same job, nor two jobs with the same
  `lock_key` or `identity_key`; `get_for_update` takes the same lock, as a row lock keeps a claimer
  from slipping in before the outcome is committed;
* a request_id added by an uncommitted unit of work is held: another unit of work adding it waits for
  that one to end, then is refused (committed) or gets it (rolled back), as with a unique index;
* a unit of work that writes a connection holds that connection's row lock until it ends, as an UPDATE
  does, so that the partial writers (`save_tokens`, `save_settings`, ...) change their fields of the row
  as it is then, and never put back what another unit of work's committed write replaced.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from core.claim_rule import claimed, next_to_claim
from core.company_lookups import CompanyLookup, LookupKind
from core.company_preferences import CompanyPreferences
from core.connection import ConnectionState, QuickBooksConnection, QuickBooksSettings, TokenGrant
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
    SyncJobState,
    SyncRecord,
    payments_oldest_first,
)
from core.errors import NotFoundError
from core.ports import (
    ApiKeyRepository,
    AuditLog,
    CompanyLookupRepository,
    ConnectionRepository,
    DriftRepository,
    DueBacklog,
    RequestIdTakenError,
    SnapshotRepository,
    SyncJobRepository,
    SyncRecordRepository,
    TenantRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)

K = TypeVar("K")
V = TypeVar("V")

# How long a unit of work waits for another's claim lock or request_id before giving up; the same as
# SQLite's busy_timeout in the SQL adapter, so a forgotten commit fails loudly instead of hanging.
LOCK_TIMEOUT_SECONDS = 30.0


@dataclass
class _Tables:
    """The committed state. Values are private copies owned by the database."""

    tenants: dict[str, bool] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)  # by secret hash
    opportunities: dict[tuple[str, str], Opportunity] = field(default_factory=dict)
    payments: dict[tuple[str, str], tuple[str, Payment]] = field(default_factory=dict)
    refund_owners: dict[tuple[str, str], str] = field(default_factory=dict)
    crm_jobs: dict[tuple[str, str], tuple[str, Job, datetime | None]] = field(default_factory=dict)
    payouts: dict[tuple[str, str], Payout] = field(default_factory=dict)
    payout_of_payment: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, payment) -> payout
    payout_of_refund: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, refund) -> payout
    sync_records: dict[tuple[str, EntityRef], SyncRecord] = field(default_factory=dict)
    jobs: dict[tuple[str, str], SyncJob] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    connections: dict[tuple[str, str], QuickBooksConnection] = field(default_factory=dict)  # (tenant, branch)
    # (tenant, branch, kind, name): each connection's look-ups are its own company's
    company_lookups: dict[tuple[str, str, LookupKind, str], CompanyLookup] = field(default_factory=dict)
    drifts: dict[tuple[str, EntityRef], Drift] = field(default_factory=dict)
    drift_watermarks: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (tenant, branch)


class InMemoryDatabase:
    """The state shared by all units of work (one per process, like one database).

    `lock` guards every read and the apply step of every commit; `claim_lock` is held by the unit of
    work that last claimed a job until it commits or rolls back (see the module docstring);
    `transaction_ended` wakes units of work waiting for a request_id another one has reserved.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.transaction_ended = threading.Condition(self.lock)
        self.claim_lock = threading.Lock()
        self.tables = _Tables()
        # (tenant_id, request_id) -> the unit of work that added a job with it but has not committed.
        self.reserved_request_ids: dict[tuple[str, str], object] = {}
        # (tenant_id, branch_id) -> that connection's row lock
        self.connection_locks: dict[tuple[str, str], threading.Lock] = {}


_DELETED = object()


class _Staged(Generic[K, V]):
    """Copy-on-write view of one committed table: reads fall through to it, writes stay here."""

    def __init__(self, committed: dict[K, V]) -> None:
        self._committed = committed
        self._writes: dict[K, object] = {}

    def get(self, key: K) -> V | None:
        if key in self._writes:
            value = self._writes[key]
            return None if value is _DELETED else value  # type: ignore[return-value]
        return self._committed.get(key)

    def put(self, key: K, value: V) -> None:
        self._writes[key] = value

    def delete(self, key: K) -> None:
        self._writes[key] = _DELETED

    def items(self) -> Iterator[tuple[K, V]]:
        for key in set(self._committed) | set(self._writes):
            value = self.get(key)
            if value is not None:
                yield key, value

    def apply(self) -> None:
        for key, value in self._writes.items():
            if value is _DELETED:
                self._committed.pop(key, None)
            else:
                self._committed[key] = value  # type: ignore[assignment]
        self._writes.clear()

    def discard(self) -> None:
        self._writes.clear()


class _StagedApiKeys(_Staged[str, ApiKey]):
    """API keys change only in their revocation and last use, and SQL updates just those columns: a unit of
    work that recorded a use must not, on committing, put back a revocation another one committed since
    (nor an older last use). So a changed key is merged into the committed one rather than replacing it."""

    def apply(self) -> None:
        for secret_hash, value in self._writes.items():
            committed = self._committed.get(secret_hash)
            if committed is not None and isinstance(value, ApiKey):
                uses = [t for t in (committed.last_use_time, value.last_use_time) if t is not None]
                self._writes[secret_hash] = dataclasses.replace(
                    committed,
                    revoke_time=committed.revoke_time or value.revoke_time,
                    last_use_time=max(uses) if uses else None,
                )
        super().apply()


class _Transaction:
    """What one unit of work has written but not yet committed."""

    def __init__(self, tables: _Tables) -> None:
        self.tenants = _Staged(tables.tenants)
        self.api_keys = _StagedApiKeys(tables.api_keys)
        self.opportunities = _Staged(tables.opportunities)
        self.payments = _Staged(tables.payments)
        self.refund_owners = _Staged(tables.refund_owners)
        self.crm_jobs = _Staged(tables.crm_jobs)
        self.payouts = _Staged(tables.payouts)
        self.payout_of_payment = _Staged(tables.payout_of_payment)
        self.payout_of_refund = _Staged(tables.payout_of_refund)
        self.sync_records = _Staged(tables.sync_records)
        self.jobs = _Staged(tables.jobs)
        self.connections = _Staged(tables.connections)
        self.company_lookups = _Staged(tables.company_lookups)
        self.drifts = _Staged(tables.drifts)
        self.drift_watermarks = _Staged(tables.drift_watermarks)
        self._tables = tables
        self.new_audit: list[AuditEvent] = []

    def _all(self) -> tuple[_Staged[object, object], ...]:
        return (
            self.tenants,
            self.api_keys,
            self.opportunities,
            self.payments,
            self.refund_owners,
            self.crm_jobs,
            self.payouts,
            self.payout_of_payment,
            self.payout_of_refund,
            self.sync_records,
            self.jobs,
            self.connections,
            self.company_lookups,
            self.drifts,
            self.drift_watermarks,
        )  # type: ignore[return-value]

    def apply(self) -> None:
        for staged in self._all():
            staged.apply()
        self._tables.audit.extend(self.new_audit)
        self.new_audit.clear()

    def discard(self) -> None:
        for staged in self._all():
            staged.discard()
        self.new_audit.clear()


def _copy(value: V) -> V:
    return copy.deepcopy(value)


class _Repository:
    def __init__(self, db: InMemoryDatabase, tx: _Transaction) -> None:
        self._db = db
        self._tx = tx


class InMemoryTenantRepository(_Repository, TenantRepository):
    def ensure(self, tenant_id: str) -> None:
        with self._db.lock:
            if self._tx.tenants.get(tenant_id) is None:
                self._tx.tenants.put(tenant_id, True)

    def exists(self, tenant_id: str) -> bool:
        with self._db.lock:
            return self._tx.tenants.get(tenant_id) is not None


class InMemoryApiKeyRepository(_Repository, ApiKeyRepository):
    def add(self, key: ApiKey) -> None:
        with self._db.lock:
            if self._tx.api_keys.get(key.secret_hash) is not None:
                raise ValueError("an API key with this hash already exists")  # a unique index in SQL
            self._tx.api_keys.put(key.secret_hash, _copy(key))

    def get_by_hash(self, secret_hash: str) -> ApiKey | None:
        with self._db.lock:
            return _copy(self._tx.api_keys.get(secret_hash))

    def get(self, key_id: str) -> ApiKey | None:
        with self._db.lock:
            found = self._by_id(key_id)
            return None if found is None else _copy(found[1])

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        with self._db.lock:
            keys = [_copy(k) for _, k in self._tx.api_keys.items() if tenant_id is None or k.tenant_id == tenant_id]
        return sorted(keys, key=lambda k: (k.create_time, k.key_id))

    def revoke(self, key_id: str, when: datetime) -> None:
        with self._db.lock:
            found = self._by_id(key_id)
            if found is not None and found[1].revoke_time is None:
                self._tx.api_keys.put(found[0], dataclasses.replace(found[1], revoke_time=when))

    def record_use(self, key_id: str, when: datetime) -> None:
        with self._db.lock:
            found = self._by_id(key_id)
            if found is not None and (found[1].last_use_time is None or found[1].last_use_time < when):
                self._tx.api_keys.put(found[0], dataclasses.replace(found[1], last_use_time=when))

    def _by_id(self, key_id: str) -> tuple[str, ApiKey] | None:
        """A scan: keys are few, and looked up by id only by operators and by the use record (once a minute)."""
        return next(((h, k) for h, k in self._tx.api_keys.items() if k.key_id == key_id), None)


class InMemorySnapshotRepository(_Repository, SnapshotRepository):
    def save_opportunity(self, tenant_id: str, opportunity: Opportunity) -> None:
        with self._db.lock:
            self._tx.opportunities.put((tenant_id, opportunity.opportunity_id), _copy(opportunity))

    def get_opportunity(self, tenant_id: str, opportunity_id: str) -> Opportunity | None:
        with self._db.lock:
            return _copy(self._tx.opportunities.get((tenant_id, opportunity_id)))

    def opportunities_of_customer(self, tenant_id: str, customer_id: str) -> list[Opportunity]:
        with self._db.lock:
            found = [
                _copy(opportunity)
                for (tenant, _), opportunity in self._tx.opportunities.items()
                if tenant == tenant_id and opportunity.customer.customer_id == customer_id
            ]
        return sorted(found, key=lambda o: o.opportunity_id)

    def list_opportunities(self, tenant_id: str) -> list[Opportunity]:
        with self._db.lock:
            found = [_copy(o) for (tenant, _), o in self._tx.opportunities.items() if tenant == tenant_id]
        return sorted(found, key=lambda o: o.opportunity_id)

    def save_payment(self, tenant_id: str, opportunity_id: str, payment: Payment) -> None:
        with self._db.lock:
            # The refund -> payment map follows the stored payment: refunds it no longer has are
            # forgotten, and a refund id seen last on this payment belongs to it (as in SQL).
            for (tenant, refund_id), owner in list(self._tx.refund_owners.items()):
                if tenant == tenant_id and owner == payment.payment_id:
                    self._tx.refund_owners.delete((tenant, refund_id))
            for refund in payment.refunds:
                self._tx.refund_owners.put((tenant_id, refund.refund_id), payment.payment_id)
            self._tx.payments.put((tenant_id, payment.payment_id), (opportunity_id, _copy(payment)))

    def get_payment(self, tenant_id: str, payment_id: str) -> StoredPayment | None:
        with self._db.lock:
            found = self._tx.payments.get((tenant_id, payment_id))
        if found is None:
            return None
        opportunity_id, payment = found
        return StoredPayment(opportunity_id, _copy(payment))

    def payments_of(self, tenant_id: str, opportunity_id: str) -> list[Payment]:
        with self._db.lock:
            found = [
                _copy(payment)
                for (tenant, _), (opp_id, payment) in self._tx.payments.items()
                if tenant == tenant_id and opp_id == opportunity_id
            ]
        return payments_oldest_first(found)

    def payment_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        with self._db.lock:
            return self._tx.refund_owners.get((tenant_id, refund_id))

    def save_job(self, tenant_id: str, opportunity_id: str, job: Job, closed_time: datetime | None) -> None:
        with self._db.lock:
            earlier = self._tx.crm_jobs.get((tenant_id, job.job_id))
            if earlier is not None and earlier[2] is not None:
                closed_time = earlier[2]  # the first close-out counts
            self._tx.crm_jobs.put((tenant_id, job.job_id), (opportunity_id, _copy(job), closed_time))

    def get_job(self, tenant_id: str, job_id: str) -> StoredJob | None:
        with self._db.lock:
            found = self._tx.crm_jobs.get((tenant_id, job_id))
        if found is None:
            return None
        opportunity_id, job, closed_time = found
        return StoredJob(opportunity_id, _copy(job), closed_time)

    def closed_jobs_of(self, tenant_id: str, opportunity_id: str) -> list[ClosedJob]:
        with self._db.lock:
            closed = [
                ClosedJob(opportunity_id=opp_id, job=_copy(job), closed_time=closed_time)
                for (tenant, _), (opp_id, job, closed_time) in self._tx.crm_jobs.items()
                if tenant == tenant_id and opp_id == opportunity_id and closed_time is not None
            ]
        return sorted(closed, key=lambda c: (c.closed_time, c.job.job_id))

    def save_payout(self, tenant_id: str, payout: Payout) -> None:
        with self._db.lock:
            # The assignments follow the stored payout, as in SQL: payments and refunds it no longer lists
            # leave it.
            for assigned, ids in (
                (self._tx.payout_of_payment, payout.payment_ids),
                (self._tx.payout_of_refund, payout.refund_ids),
            ):
                for (tenant, part_id), owner in list(assigned.items()):
                    if tenant == tenant_id and owner == payout.payout_id:
                        assigned.delete((tenant, part_id))
                for part_id in ids:
                    assigned.put((tenant_id, part_id), payout.payout_id)
            self._tx.payouts.put((tenant_id, payout.payout_id), _copy(payout))

    def get_payout(self, tenant_id: str, payout_id: str) -> Payout | None:
        with self._db.lock:
            return _copy(self._tx.payouts.get((tenant_id, payout_id)))

    def payout_of_payment(self, tenant_id: str, payment_id: str) -> str | None:
        with self._db.lock:
            return self._tx.payout_of_payment.get((tenant_id, payment_id))

    def payout_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        with self._db.lock:
            return self._tx.payout_of_refund.get((tenant_id, refund_id))

    def list_payouts(self, tenant_id: str, *, offset: int, limit: int) -> list[Payout]:
        with self._db.lock:
            payouts = [_copy(p) for (tenant, _), p in self._tx.payouts.items() if tenant == tenant_id]
        payouts.sort(key=lambda p: (p.arrival_date, p.payout_id), reverse=True)
        return payouts[offset : offset + limit]


class InMemorySyncRecordRepository(_Repository, SyncRecordRepository):
    def get(self, tenant_id: str, entity: EntityRef) -> SyncRecord | None:
        with self._db.lock:
            return _copy(self._tx.sync_records.get((tenant_id, entity)))

    def save(self, record: SyncRecord) -> None:
        with self._db.lock:
            self._tx.sync_records.put((record.tenant_id, record.entity), _copy(record))

    def with_quickbooks_ids(self, tenant_id: str, quickbooks_ids: Sequence[str]) -> list[SyncRecord]:
        wanted = set(quickbooks_ids)
        with self._db.lock:
            return [
                _copy(record)
                for (tenant, _), record in self._tx.sync_records.items()
                if tenant == tenant_id and record.quickbooks_id in wanted
            ]


class InMemoryDriftRepository(_Repository, DriftRepository):
    def get(self, tenant_id: str, entity: EntityRef) -> Drift | None:
        with self._db.lock:
            return self._tx.drifts.get((tenant_id, entity))

    def save(self, drift: Drift) -> None:
        with self._db.lock:
            self._tx.drifts.put((drift.tenant_id, drift.entity), drift)

    def clear(self, tenant_id: str, entity: EntityRef) -> None:
        with self._db.lock:
            if self._tx.drifts.get((tenant_id, entity)) is not None:
                self._tx.drifts.delete((tenant_id, entity))

    def list(self, tenant_id: str, *, offset: int, limit: int) -> list[Drift]:
        with self._db.lock:
            drifts = [d for (tenant, _), d in self._tx.drifts.items() if tenant == tenant_id]
        drifts.sort(key=lambda d: (-d.detected_time.timestamp(), d.entity.type.value, d.entity.id))
        return drifts[offset : offset + limit]

    def watermark(self, tenant_id: str, branch_id: str = "") -> datetime | None:
        with self._db.lock:
            return self._tx.drift_watermarks.get((tenant_id, branch_id))

    def save_watermark(self, tenant_id: str, moment: datetime, branch_id: str = "") -> None:
        with self._db.lock:
            self._tx.drift_watermarks.put((tenant_id, branch_id), moment)


class InMemoryCompanyLookupRepository(_Repository, CompanyLookupRepository):
    def of_tenant(self, tenant_id: str, *, branch_id: str = "") -> list[CompanyLookup]:
        with self._db.lock:
            return [lookup for key, lookup in self._tx.company_lookups.items() if key[:2] == (tenant_id, branch_id)]

    def save(self, tenant_id: str, lookups: list[CompanyLookup], *, branch_id: str = "") -> None:
        with self._db.lock:
            for lookup in lookups:  # frozen, of immutable parts: nothing to copy
                self._tx.company_lookups.put((tenant_id, branch_id, lookup.kind, lookup.name), lookup)

    def forget(self, tenant_id: str, kind: LookupKind, name: str | None = None, *, branch_id: str = "") -> None:
        with self._db.lock:
            for key, _ in list(self._tx.company_lookups.items()):
                if key[:3] == (tenant_id, branch_id, kind) and name in (None, key[3]):
                    self._tx.company_lookups.delete(key)


class InMemorySyncJobRepository(_Repository, SyncJobRepository):
    def __init__(self, db: InMemoryDatabase, tx: _Transaction, uow: InMemoryUnitOfWork) -> None:
        super().__init__(db, tx)
        self._uow = uow

    def add(self, job: SyncJob, *, accepted: AuditEvent | None = None) -> None:
        with self._db.lock:
            if job.request_id:
                key = (job.tenant_id, job.request_id)
                self._wait_for_other_holder(key)
                if self._find_by_request_id(*key) is not None:
                    raise RequestIdTakenError(f"request_id {job.request_id!r} is already used")
                self._db.reserved_request_ids[key] = self._uow
                self._uow.reserved.add(key)
            if self._tx.jobs.get((job.tenant_id, job.job_id)) is not None:
                raise ValueError(f"sync job {job.job_id} already exists")  # a primary key in SQL
            self._tx.jobs.put((job.tenant_id, job.job_id), _copy(job))
            if accepted is not None:
                self._tx.new_audit.append(_copy(accepted))

    def _wait_for_other_holder(self, key: tuple[str, str]) -> None:
        """As a unique index does: wait until another transaction that added the same key ends, so
        that the caller then finds its job (committed) or may take the key (rolled back)."""
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while self._db.reserved_request_ids.get(key, self._uow) is not self._uow:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("another unit of work holds this request_id and has not ended")
            self._db.transaction_ended.wait(remaining)

    def get(self, tenant_id: str, job_id: str) -> SyncJob | None:
        with self._db.lock:
            return _copy(self._tx.jobs.get((tenant_id, job_id)))

    def find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None:
        with self._db.lock:
            return _copy(self._find_by_request_id(tenant_id, request_id))

    def _find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None:
        if not request_id:
            return None  # an empty request_id means "not idempotent", never a match
        for (tenant, _), job in self._tx.jobs.items():
            if tenant == tenant_id and job.request_id == request_id:
                return job
        return None

    def claim_next(self, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob | None:
        self._uow.take_claim_lock()
        with self._db.lock:
            chosen = next_to_claim((job for _, job in self._tx.jobs.items()), now)
            if chosen is None:
                return None
            job = claimed(_copy(chosen), worker_id, now, lease_expires)
            self._tx.jobs.put((job.tenant_id, job.job_id), _copy(job))
            return job

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        # The claim lock stands in for a row lock: no claimer gets between this read and the commit.
        self._uow.take_claim_lock()
        return self.get(tenant_id, job_id)

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        with self._db.lock:
            job = self._tx.jobs.get((tenant_id, job_id))
            if job is None or job.state is not SyncJobState.RUNNING or job.claimed_by != worker_id:
                return False
            extended = _copy(job)
            extended.lease_expires = lease_expires
            self._tx.jobs.put((tenant_id, job_id), extended)
            return True

    def save(self, job: SyncJob) -> None:
        with self._db.lock:
            self._tx.jobs.put((job.tenant_id, job.job_id), _copy(job))

    def list_failed(self, tenant_id: str, *, offset: int, limit: int) -> list[SyncJob]:
        with self._db.lock:
            failed = [
                _copy(job)
                for (tenant, _), job in self._tx.jobs.items()
                if tenant == tenant_id and job.state is SyncJobState.FAILED and job.dismiss_time is None
            ]
        failed.sort(key=lambda job: (job.update_time, job.job_id), reverse=True)
        return failed[offset : offset + limit]

    def list_recent(self, tenant_id: str, *, limit: int) -> list[SyncJob]:
        with self._db.lock:
            jobs = [_copy(job) for (tenant, _), job in self._tx.jobs.items() if tenant == tenant_id]
        jobs.sort(key=lambda job: (job.update_time, job.job_id), reverse=True)
        return jobs[:limit]

    def due_backlog(self, now: datetime) -> DueBacklog:
        with self._db.lock:
            since = [
                job.next_attempt_time or job.create_time
                for _, job in self._tx.jobs.items()
                if job.state is SyncJobState.PENDING and (job.next_attempt_time is None or job.next_attempt_time <= now)
            ]
        return DueBacklog(len(since), min(since, default=None))


class InMemoryAuditLog(_Repository, AuditLog):
    def append(self, event: AuditEvent) -> None:
        with self._db.lock:
            self._tx.new_audit.append(_copy(event))

    def list(self, tenant_id: str, *, limit: int) -> list[AuditEvent]:
        with self._db.lock:
            # Position in the log breaks ties between events of the same time: later appended = newer.
            events = [e for e in [*self._db.tables.audit, *self._tx.new_audit] if e.tenant_id == tenant_id]
        ordered = sorted(enumerate(events), key=lambda pair: (pair[1].time, pair[0]), reverse=True)
        return [_copy(event) for _, event in ordered[:limit]]


class InMemoryConnectionRepository(_Repository, ConnectionRepository):
    """Every write first takes the connection's row lock (see the module docstring): while this unit of
    work holds it, nobody else commits a change to the row, so patching the row as read now and staging
    the result writes only the fields patched."""

    def __init__(self, db: InMemoryDatabase, tx: _Transaction, uow: InMemoryUnitOfWork) -> None:
        super().__init__(db, tx)
        self._uow = uow

    def get(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        return self._read(tenant_id, branch_id)

    def for_branch(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        with self._db.lock:
            own = self._tx.connections.get((tenant_id, branch_id))
            return _copy(own if own is not None else self._tx.connections.get((tenant_id, "")))

    def of_tenant(self, tenant_id: str) -> list[QuickBooksConnection]:
        with self._db.lock:
            found = [_copy(c) for (tenant, _), c in self._tx.connections.items() if tenant == tenant_id]
        return sorted(found, key=lambda c: c.branch_id)  # "" (the default) first

    def get_for_update(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        return self._locked(tenant_id, branch_id)

    def save(self, connection: QuickBooksConnection) -> None:
        self._uow.take_connection_lock(connection.tenant_id, connection.branch_id)
        with self._db.lock:
            self._tx.connections.put((connection.tenant_id, connection.branch_id), _copy(connection))

    def save_company_preferences(self, tenant_id: str, preferences: CompanyPreferences, *, branch_id: str = "") -> bool:
        with self._db.lock:
            connection = _copy(self._tx.connections.get((tenant_id, branch_id)))
            if connection is None:
                return False
            connection.home_currency = preferences.currency.home
            connection.multicurrency = preferences.currency.multicurrency
            connection.sales_tax = preferences.sales_tax
            connection.class_tracking = preferences.class_tracking
            connection.track_departments = preferences.track_departments
            connection.custom_txn_numbers = preferences.custom_txn_numbers
            self._put(connection)
            return True

    def save_tokens(self, tenant_id: str, grant: TokenGrant, *, replacing: str, branch_id: str = "") -> bool:
        current = self._locked(tenant_id, branch_id)
        if current is None or current.state is not ConnectionState.CONNECTED or current.refresh_token != replacing:
            return False
        self._put(current.with_grant(grant))
        return True

    def mark_reconnect_required(
        self, tenant_id: str, last_error: str, *, refused_token: str, branch_id: str = ""
    ) -> bool:
        current = self._locked(tenant_id, branch_id)
        if current is None or current.refresh_token != refused_token:
            return False
        self._put(current.refused(last_error))
        return True

    def save_settings(self, tenant_id: str, settings: QuickBooksSettings, *, branch_id: str = "") -> None:
        self._put(dataclasses.replace(self._existing(tenant_id, branch_id), settings=_copy(settings)))

    def save_authorization_request(
        self, tenant_id: str, *, environment: str, redirect_uri: str, oauth_state: str, branch_id: str = ""
    ) -> None:
        current = self._existing(tenant_id, branch_id)
        self._put(
            dataclasses.replace(current, environment=environment, redirect_uri=redirect_uri, oauth_state=oauth_state)
        )

    def _locked(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        """The row as it is now, locked until this unit of work ends."""
        self._uow.take_connection_lock(tenant_id, branch_id)
        return self._read(tenant_id, branch_id)

    def _read(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        with self._db.lock:
            return _copy(self._tx.connections.get((tenant_id, branch_id)))

    def _existing(self, tenant_id: str, branch_id: str) -> QuickBooksConnection:
        current = self._locked(tenant_id, branch_id)
        if current is None:
            if branch_id:
                raise NotFoundError(f"this tenant has no QuickBooks connection for branch {branch_id!r}")
            raise NotFoundError("this tenant has no QuickBooks connection")
        return current

    def _put(self, connection: QuickBooksConnection) -> None:
        with self._db.lock:
            self._tx.connections.put((connection.tenant_id, connection.branch_id), connection)


class InMemoryUnitOfWork(UnitOfWork):
    """One transaction over the in-memory database; rolled back on leaving `with` unless committed."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db
        self._tx = _Transaction(db.tables)
        self._holds_claim_lock = False
        self.reserved: set[tuple[str, str]] = set()
        self.tenants = InMemoryTenantRepository(db, self._tx)
        self.api_keys = InMemoryApiKeyRepository(db, self._tx)
        self.snapshots = InMemorySnapshotRepository(db, self._tx)
        self.sync_records = InMemorySyncRecordRepository(db, self._tx)
        self.jobs = InMemorySyncJobRepository(db, self._tx, self)
        self.audit = InMemoryAuditLog(db, self._tx)
        self.connections = InMemoryConnectionRepository(db, self._tx, self)
        self.company_lookups = InMemoryCompanyLookupRepository(db, self._tx)
        self.drift = InMemoryDriftRepository(db, self._tx)
        self._connection_locks: list[threading.Lock] = []

    def commit(self) -> None:
        with self._db.lock:
            self._tx.apply()
            self._release()

    def rollback(self) -> None:
        with self._db.lock:
            self._tx.discard()
            self._release()

    def take_claim_lock(self) -> None:
        """Serialises claimers until this transaction ends, as SQLite's BEGIN IMMEDIATE does."""
        if self._holds_claim_lock:
            return
        if not self._db.claim_lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            raise TimeoutError("another unit of work claimed a job and has not committed")
        self._holds_claim_lock = True

    def take_connection_lock(self, tenant_id: str, branch_id: str) -> None:
        """Holds the connection's row lock until this transaction ends, as an UPDATE does."""
        with self._db.lock:
            lock = self._db.connection_locks.setdefault((tenant_id, branch_id), threading.Lock())
        if lock in self._connection_locks:
            return
        if not lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            raise TimeoutError("another unit of work wrote this QuickBooks connection and has not committed")
        self._connection_locks.append(lock)

    def _release(self) -> None:
        while self._connection_locks:
            self._connection_locks.pop().release()
        for key in self.reserved:
            if self._db.reserved_request_ids.get(key) is self:
                del self._db.reserved_request_ids[key]
        if self.reserved:
            self.reserved.clear()
            self._db.transaction_ended.notify_all()
        if self._holds_claim_lock:
            self._holds_claim_lock = False
            self._db.claim_lock.release()


class InMemoryUnitOfWorkFactory(UnitOfWorkFactory):
    """Makes units of work over one shared `InMemoryDatabase` (a fresh one unless given)."""

    def __init__(self, db: InMemoryDatabase | None = None) -> None:
        self.db = db if db is not None else InMemoryDatabase()

    def __call__(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.db)
