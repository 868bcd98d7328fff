"""The storage a preview (SPEC §11, `PreviewSync`) runs on: what is stored, as it is, with the preview's own
writes laid over it in memory and thrown away with it.

Why an overlay of the whole unit of work rather than a `SyncRun` that keeps its records to itself: a preview
runs the real use case (its validation and its staging of the request's snapshots: the same
INVALID_ARGUMENT of a refund that is another payment's, FAILED_PRECONDITION, ALREADY_EXISTS...) and then
the real engine on the jobs it queued, and both read and write through units of work in many places (the
outbox, the run, a payout's load, the branch tracking's look-up cache). Overlaying the ports they share
changes none of them; a `SyncRun` subclass would cover the run's records only, and the snapshots, jobs and
audit events of the accept would still need a second mechanism.

Every read goes to the stored state (through a read-only unit of work of the real storage, which takes no
write lock) unless the preview wrote the same row; every write stays here. Writes apply at once, commit and
rollback are no-ops: a preview that fails is thrown away whole, so a half-staged request cannot outlive it.
Jobs are the preview's alone, `queued()` lists them in the order accepted; only a request id is looked up in
the stored jobs too, so that a preview answers a request id seen before as the sync does: ALREADY_EXISTS for
another body, and for the same one nothing to do (the sync would return the earlier job and write nothing).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

from core.company_lookups import CompanyLookup, LookupKind
from core.company_preferences import CompanyPreferences
from core.connection import CompanyFacts, QuickBooksConnection, QuickBooksSettings, TokenGrant
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
    payments_oldest_first,
)
from core.ports import (
    ApiKeyRepository,
    AuditLog,
    CompanyLookupRepository,
    ConnectionRepository,
    DriftRepository,
    DueBacklog,
    SnapshotRepository,
    SyncJobRepository,
    SyncRecordRepository,
    TenantRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)

T = TypeVar("T")


def _copy(value: T) -> T:
    """Callers change what they read (a run's records are mutated in place): each gets its own copy."""
    return copy.deepcopy(value)


class _Overlay:
    """The preview's writes, shared by all its units of work."""

    def __init__(self) -> None:
        self.opportunities: dict[tuple[str, str], Opportunity] = {}
        self.payments: dict[tuple[str, str], tuple[str, Payment]] = {}
        self.refund_owners: dict[tuple[str, str], str] = {}
        self.jobs_of_crm: dict[tuple[str, str], StoredJob] = {}
        self.payouts: dict[tuple[str, str], Payout] = {}
        self.payout_of_payment: dict[tuple[str, str], str] = {}
        self.payout_of_refund: dict[tuple[str, str], str] = {}
        self.records: dict[tuple[str, EntityRef], SyncRecord] = {}
        self.jobs: dict[tuple[str, str], SyncJob] = {}
        self.audit: list[AuditEvent] = []
        self.lookups: dict[tuple[str, str, LookupKind, str], CompanyLookup | None] = {}


class _OverlaySnapshots(SnapshotRepository):
    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._base = base.snapshots
        self._o = overlay

    def save_opportunity(self, tenant_id: str, opportunity: Opportunity) -> None:
        self._o.opportunities[(tenant_id, opportunity.opportunity_id)] = _copy(opportunity)

    def save_opportunity_of_its_customer(self, tenant_id: str, opportunity: Opportunity) -> str | None:
        # The stored owner check is the storage's; the preview's own opportunities are the request's one.
        known = self.get_opportunity(tenant_id, opportunity.opportunity_id)
        if known is not None and known.customer.customer_id != opportunity.customer.customer_id:
            return known.customer.customer_id
        self.save_opportunity(tenant_id, opportunity)
        return None

    def get_opportunity(self, tenant_id: str, opportunity_id: str) -> Opportunity | None:
        mine = self._o.opportunities.get((tenant_id, opportunity_id))
        return _copy(mine) if mine is not None else self._base.get_opportunity(tenant_id, opportunity_id)

    def opportunities_of_customer(self, tenant_id: str, customer_id: str) -> list[Opportunity]:
        found = {
            o.opportunity_id: o
            for o in self._base.opportunities_of_customer(tenant_id, customer_id)
            if (tenant_id, o.opportunity_id) not in self._o.opportunities
        }
        for (tenant, opportunity_id), o in self._o.opportunities.items():
            if tenant == tenant_id and o.customer.customer_id == customer_id:
                found[opportunity_id] = _copy(o)
        return [found[k] for k in sorted(found)]

    def list_opportunities(self, tenant_id: str) -> list[Opportunity]:
        found = {o.opportunity_id: o for o in self._base.list_opportunities(tenant_id)}
        for (tenant, opportunity_id), o in self._o.opportunities.items():
            if tenant == tenant_id:
                found[opportunity_id] = _copy(o)
        return [found[k] for k in sorted(found)]

    def save_payment(self, tenant_id: str, opportunity_id: str, payment: Payment) -> None:
        earlier = self.get_payment(tenant_id, payment.payment_id)
        if earlier is not None:  # the refunds it no longer has are forgotten (as the storage does)
            for refund in earlier.payment.refunds:
                self._o.refund_owners[(tenant_id, refund.refund_id)] = ""
        for refund in payment.refunds:
            self._o.refund_owners[(tenant_id, refund.refund_id)] = payment.payment_id
        self._o.payments[(tenant_id, payment.payment_id)] = (opportunity_id, _copy(payment))

    def get_payment(self, tenant_id: str, payment_id: str) -> StoredPayment | None:
        mine = self._o.payments.get((tenant_id, payment_id))
        if mine is None:
            return self._base.get_payment(tenant_id, payment_id)
        return StoredPayment(mine[0], _copy(mine[1]))

    def payments_of(self, tenant_id: str, opportunity_id: str) -> list[Payment]:
        found = [
            p
            for p in self._base.payments_of(tenant_id, opportunity_id)
            if (tenant_id, p.payment_id) not in self._o.payments
        ]
        found += [
            _copy(p)
            for (tenant, _), (owner, p) in self._o.payments.items()
            if tenant == tenant_id and owner == opportunity_id
        ]
        return payments_oldest_first(found)

    def payment_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        mine = self._o.refund_owners.get((tenant_id, refund_id))
        if mine is not None:
            return mine or None
        owner = self._base.payment_of_refund(tenant_id, refund_id)
        # A stored owner the preview rewrote no longer has it unless the preview said so (above).
        return None if owner is not None and (tenant_id, owner) in self._o.payments else owner

    def save_job(self, tenant_id: str, opportunity_id: str, job: Job, closed_time: datetime | None) -> None:
        earlier = self.get_job(tenant_id, job.job_id)
        if earlier is not None and earlier.closed_time is not None:
            closed_time = earlier.closed_time  # the first close-out counts
        self._o.jobs_of_crm[(tenant_id, job.job_id)] = StoredJob(opportunity_id, _copy(job), closed_time)

    def get_job(self, tenant_id: str, job_id: str) -> StoredJob | None:
        mine = self._o.jobs_of_crm.get((tenant_id, job_id))
        return _copy(mine) if mine is not None else self._base.get_job(tenant_id, job_id)

    def closed_jobs_of(self, tenant_id: str, opportunity_id: str) -> list[ClosedJob]:
        closed = [
            c
            for c in self._base.closed_jobs_of(tenant_id, opportunity_id)
            if (tenant_id, c.job.job_id) not in self._o.jobs_of_crm
        ]
        closed += [
            ClosedJob(stored.opportunity_id, _copy(stored.job), stored.closed_time)
            for (tenant, _), stored in self._o.jobs_of_crm.items()
            if tenant == tenant_id and stored.opportunity_id == opportunity_id and stored.closed_time is not None
        ]
        return sorted(closed, key=lambda c: (c.closed_time, c.job.job_id))

    def save_payout(self, tenant_id: str, payout: Payout) -> None:
        earlier = self.get_payout(tenant_id, payout.payout_id)
        if earlier is not None:
            for payment_id in earlier.payment_ids:
                self._o.payout_of_payment[(tenant_id, payment_id)] = ""
            for refund_id in earlier.refund_ids:
                self._o.payout_of_refund[(tenant_id, refund_id)] = ""
        for payment_id in payout.payment_ids:
            self._o.payout_of_payment[(tenant_id, payment_id)] = payout.payout_id
        for refund_id in payout.refund_ids:
            self._o.payout_of_refund[(tenant_id, refund_id)] = payout.payout_id
        self._o.payouts[(tenant_id, payout.payout_id)] = _copy(payout)

    def get_payout(self, tenant_id: str, payout_id: str) -> Payout | None:
        mine = self._o.payouts.get((tenant_id, payout_id))
        return _copy(mine) if mine is not None else self._base.get_payout(tenant_id, payout_id)

    def payout_of_payment(self, tenant_id: str, payment_id: str) -> str | None:
        mine = self._o.payout_of_payment.get((tenant_id, payment_id))
        return (mine or None) if mine is not None else self._base.payout_of_payment(tenant_id, payment_id)

    def payout_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        mine = self._o.payout_of_refund.get((tenant_id, refund_id))
        return (mine or None) if mine is not None else self._base.payout_of_refund(tenant_id, refund_id)

    def list_payouts(self, tenant_id: str, *, offset: int, limit: int) -> list[Payout]:
        return self._base.list_payouts(tenant_id, offset=offset, limit=limit)  # no preview lists payouts


class _OverlayRecords(SyncRecordRepository):
    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._base = base.sync_records
        self._o = overlay

    def get(self, tenant_id: str, entity: EntityRef) -> SyncRecord | None:
        mine = self._o.records.get((tenant_id, entity))
        return _copy(mine) if mine is not None else self._base.get(tenant_id, entity)

    def save(self, record: SyncRecord) -> None:
        self._o.records[(record.tenant_id, record.entity)] = _copy(record)

    def get_many(self, tenant_id: str, entities: Sequence[EntityRef]) -> dict[EntityRef, SyncRecord]:
        stored = self._base.get_many(tenant_id, [e for e in entities if (tenant_id, e) not in self._o.records])
        mine = {e: _copy(r) for e in entities if (r := self._o.records.get((tenant_id, e))) is not None}
        return {e: found for e in entities if (found := mine.get(e) or stored.get(e)) is not None}

    def save_many(self, records: Sequence[SyncRecord]) -> None:
        for record in records:
            self.save(record)

    def with_quickbooks_ids(self, tenant_id: str, quickbooks_ids: Sequence[str]) -> list[SyncRecord]:
        stored = {r.entity: r for r in self._base.with_quickbooks_ids(tenant_id, quickbooks_ids)}
        wanted = set(quickbooks_ids)
        for (tenant, entity), record in self._o.records.items():
            if tenant == tenant_id:
                stored.pop(entity, None)
                if record.quickbooks_id in wanted:
                    stored[entity] = _copy(record)
        return list(stored.values())


class _ReadOnlyDrift(DriftRepository):
    """The stored drifts, read as they are: a preview sweeps nothing, and what it would write is dropped."""

    def __init__(self, base: UnitOfWork) -> None:
        self._base = base.drift

    def get(self, tenant_id: str, entity: EntityRef) -> Drift | None:
        return self._base.get(tenant_id, entity)

    def save(self, drift: Drift) -> None:
        """Dropped (see the class)."""

    def clear(self, tenant_id: str, entity: EntityRef) -> None:
        """Dropped (see the class)."""

    def list(self, tenant_id: str, *, offset: int, limit: int) -> list[Drift]:
        return self._base.list(tenant_id, offset=offset, limit=limit)

    def watermark(self, tenant_id: str, branch_id: str = "") -> datetime | None:
        return self._base.watermark(tenant_id, branch_id)

    def save_watermark(self, tenant_id: str, moment: datetime, branch_id: str = "") -> None:
        """Dropped (see the class)."""


class _PreviewJobs(SyncJobRepository):
    """The preview's jobs (none is claimed by a worker: the preview runs them itself), and the stored ones by
    request id (see the module docstring)."""

    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._stored = base.jobs
        self._o = overlay

    def add(self, job: SyncJob, *, accepted: AuditEvent | None = None) -> None:
        self._o.jobs[(job.tenant_id, job.job_id)] = _copy(job)

    def get(self, tenant_id: str, job_id: str) -> SyncJob | None:
        return _copy(self._o.jobs.get((tenant_id, job_id)))

    def find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None:
        mine = next(
            (_copy(j) for (t, _), j in self._o.jobs.items() if t == tenant_id and j.request_id == request_id),
            None,
        )
        return mine if mine is not None else self._stored.find_by_request_id(tenant_id, request_id)

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        return self.get(tenant_id, job_id)

    def claim_next(self, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob | None:
        return None

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        return True

    def save(self, job: SyncJob) -> None:
        self._o.jobs[(job.tenant_id, job.job_id)] = _copy(job)

    def list_failed(self, tenant_id: str, *, offset: int, limit: int) -> list[SyncJob]:
        return []

    def list_recent(self, tenant_id: str, *, limit: int) -> list[SyncJob]:
        return []

    def due_backlog(self, now: datetime) -> DueBacklog:
        return DueBacklog(0, None)


class _PreviewAudit(AuditLog):
    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._base = base.audit
        self._o = overlay

    def append(self, event: AuditEvent) -> None:
        self._o.audit.append(event)

    def list(self, tenant_id: str, *, limit: int) -> list[AuditEvent]:
        return self._base.list(tenant_id, limit=limit)


class _ReadOnlyTenants(TenantRepository):
    def __init__(self, base: UnitOfWork) -> None:
        self._base = base.tenants

    def ensure(self, tenant_id: str) -> None:
        """A preview's caller is a tenant already (its API key is)."""

    def exists(self, tenant_id: str) -> bool:
        return self._base.exists(tenant_id)


class _ReadOnlyApiKeys(ApiKeyRepository):
    def __init__(self, base: UnitOfWork) -> None:
        self._base = base.api_keys

    def add(self, key: ApiKey) -> None:
        """Nothing of a preview adds a key."""

    def get_by_hash(self, secret_hash: str) -> ApiKey | None:
        return self._base.get_by_hash(secret_hash)

    def get(self, key_id: str) -> ApiKey | None:
        return self._base.get(key_id)

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        return self._base.list_keys(tenant_id)

    def revoke(self, key_id: str, when: datetime) -> None:
        """Nothing of a preview revokes a key."""

    def record_use(self, key_id: str, when: datetime) -> None:
        """Nothing of a preview records a key's use."""


class _ReadOnlyConnections(ConnectionRepository):
    """The stored connections. What a run would cache on them (company preferences) is not kept: a preview
    reads them again if it needs them; tokens are the adapter's, which refreshes them in its own storage."""

    def __init__(self, base: UnitOfWork) -> None:
        self._base = base.connections

    def get(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        return self._base.get(tenant_id, branch_id=branch_id)

    def for_branch(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        return self._base.for_branch(tenant_id, branch_id)

    def of_tenant(self, tenant_id: str) -> list[QuickBooksConnection]:
        return self._base.of_tenant(tenant_id)

    def get_for_update(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        return self._base.get(tenant_id, branch_id=branch_id)

    def save(self, connection: QuickBooksConnection) -> None:
        """Not kept (see the class)."""

    def save_tokens(self, tenant_id: str, grant: TokenGrant, *, replacing: str, branch_id: str = "") -> bool:
        return False

    def mark_reconnect_required(
        self, tenant_id: str, last_error: str, *, refused_token: str, branch_id: str = ""
    ) -> bool:
        return False

    def save_settings(self, tenant_id: str, settings: QuickBooksSettings, *, branch_id: str = "") -> None:
        """Not kept (see the class)."""

    def save_authorization_request(
        self, tenant_id: str, *, environment: str, redirect_uri: str, oauth_state: str, branch_id: str = ""
    ) -> None:
        """Not kept (see the class)."""

    def save_company_preferences(self, tenant_id: str, preferences: CompanyPreferences, *, branch_id: str = "") -> bool:
        return False


class _OverlayLookups(CompanyLookupRepository):
    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._base = base.company_lookups
        self._o = overlay

    def of_tenant(self, tenant_id: str, *, branch_id: str = "") -> list[CompanyLookup]:
        found = {(x.kind, x.name): x for x in self._base.of_tenant(tenant_id, branch_id=branch_id)}
        for (tenant, branch, kind, name), lookup in self._o.lookups.items():
            if tenant == tenant_id and branch == branch_id:
                if lookup is None:
                    found.pop((kind, name), None)
                else:
                    found[(kind, name)] = lookup
        return list(found.values())

    def save(self, tenant_id: str, lookups: list[CompanyLookup], *, branch_id: str = "") -> None:
        for lookup in lookups:
            self._o.lookups[(tenant_id, branch_id, lookup.kind, lookup.name)] = lookup

    def forget(self, tenant_id: str, kind: LookupKind, name: str | None = None, *, branch_id: str = "") -> None:
        names = [name] if name is not None else [x.name for x in self.of_tenant(tenant_id, branch_id=branch_id)]
        for each in names:
            self._o.lookups[(tenant_id, branch_id, kind, each)] = None


class PreviewUnitOfWork(UnitOfWork):
    """One unit of work of a preview: a read-only one of the storage below, the preview's writes above."""

    def __init__(self, base: UnitOfWork, overlay: _Overlay) -> None:
        self._base = base
        self._overlay = overlay

    def __enter__(self) -> Self:
        # The repositories are made once the storage's unit of work is entered: an adapter may make its own
        # only then (SqlAlchemyUnitOfWork does).
        base, overlay = self._base.__enter__(), self._overlay
        self.tenants = _ReadOnlyTenants(base)
        self.api_keys = _ReadOnlyApiKeys(base)
        self.snapshots = _OverlaySnapshots(base, overlay)
        self.sync_records = _OverlayRecords(base, overlay)
        self.jobs = _PreviewJobs(base, overlay)
        self.audit = _PreviewAudit(base, overlay)
        self.connections = _ReadOnlyConnections(base)
        self.company_lookups = _OverlayLookups(base, overlay)
        self.drift = _ReadOnlyDrift(base)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The storage's read-only transaction, ended (nothing to commit): given the block's error, so that it
        # reports a storage failure as it does for any unit of work (StorageUnavailableError).
        self._base.__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        """The preview's writes applied when made (see the module docstring)."""

    def rollback(self) -> None:
        """As `commit`."""


class PreviewUnitOfWorkFactory(UnitOfWorkFactory):
    """Units of work over `base`'s stored state, sharing one overlay: one factory per preview."""

    def __init__(self, base: UnitOfWorkFactory) -> None:
        self._base = base
        self._overlay = _Overlay()

    def __call__(self) -> UnitOfWork:
        return PreviewUnitOfWork(self._base.read_only(), self._overlay)

    def read_only(self) -> UnitOfWork:
        return self()

    def company_facts(self, tenant_id: str, branch_id: str = "") -> CompanyFacts | None:
        return self._base.company_facts(tenant_id, branch_id)

    def queued(self) -> list[SyncJob]:
        """The jobs the preview's use case queued, in the order it queued them."""
        return [_copy(job) for job in self._overlay.jobs.values()]
