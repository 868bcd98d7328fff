"""The use cases the API offers (SPEC.md section 3): accept syncs, show their state, retry them.

Accepting a sync stores the CRM snapshot, marks the records PENDING and queues a SyncJob, all in one
transaction (a transactional outbox): the job is never queued without its data, nor the data without
its job. The work itself happens in the background (core/worker.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Concatenate, ParamSpec, TypeVar

from core.accounting import TxnKind
from core.branches import branch_of_record
from core.company_checks import CompanyChecks
from core.connection import QuickBooksConnection
from core.currency import AmountCurrency
from core.domain import (
    AuditEvent,
    AuditKind,
    EntityRef,
    EntityType,
    Job,
    Opportunity,
    Payment,
    Payout,
    Permission,
    Principal,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
    customer_link,
)
from core.errors import (
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    merge_violations,
)
from core.fingerprint import request_fingerprint
from core.outbox import Outbox, mark_pending, refuse_voided
from core.payout_intake import stage_payout
from core.payout_listing import PayoutStatus, payouts_page
from core.ports import AccountingSystems, Clock, IdSource, UnitOfWork, UnitOfWorkFactory
from core.text import clean_job, clean_opportunity, clean_payment, usable_as_id
from core.validation import (
    job_request_limits,
    payment_request_limits,
    payout_request_limits,
    request_id_violations,
    text_id_violations,
    validate_job_request,
    validate_payment_request,
    validate_payout_request,
)
from core.void_sync import invoice_to_void, payment_to_void, stage_invoice_void, stage_payment_void

DEFAULT_MAX_ATTEMPTS = 8
MAX_PAGE_SIZE = 100
# A page token is the offset this service issued, in ASCII digits. Nine of them reach a billion failed
# jobs, far past any tenant's, while keeping the offset within what every database's OFFSET takes.
MAX_PAGE_TOKEN_DIGITS = 9
JOB_NAME_PREFIX = "syncJobs/"

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")


def require(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise PermissionDeniedError(f"this API key lacks the {permission.value!r} permission")


def _use_case_of_kind(
    accept: Callable[Concatenate[S, SyncJobKind, P], SyncJob], kind: SyncJobKind, doc: str
) -> Callable[Concatenate[S, P], SyncJob]:
    """`accept` for jobs of `kind` only: a use case with the same parameters but the kind, typed as such."""

    def use_case(self: S, /, *args: P.args, **kwargs: P.kwargs) -> SyncJob:
        return accept(self, kind, *args, **kwargs)

    use_case.__doc__ = doc
    use_case.__name__ = use_case.__qualname__ = kind.value.lower()
    return use_case


class SyncService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        accounting: AccountingSystems,
        clock: Clock,
        ids: IdSource,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._clock = clock
        self._ids = ids
        self._max_attempts = max_attempts
        self._outbox = Outbox(uow_factory, clock, ids, max_attempts)
        self._company = CompanyChecks(uow_factory, accounting, clock)

    # --- mutating ---------------------------------------------------------------------------------

    def sync_payment(
        self,
        principal: Principal,
        opportunity: Opportunity,
        payment: Payment,
        request_id: str = "",
        *,
        currencies: Sequence[AmountCurrency] = (),
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncJob:
        """R3/R4: sync (or resync) one payment with its refunds.

        `currencies`: the currency the CRM gave each amount (none given: all in the home currency); every
        use case that accepts amounts takes it and refuses amounts QuickBooks would book wrongly (SPEC §7).

        `conversion_violations`: what the calling adapter could not even convert (a mixed-sign amount, a
        missing time); the fields named hold stand-ins. Every use case that takes input takes them, and
        reports them with its own findings in one ValidationError, after the permission check: a caller
        without the permission learns nothing from bad input that good input would not tell it."""
        require(principal, Permission.SYNC)
        opportunity, payment = clean_opportunity(opportunity), clean_payment(payment)
        _raise_if_any(
            merge_violations(
                conversion_violations,
                [
                    *validate_payment_request(opportunity, payment, request_id),
                    *payment_request_limits(opportunity, payment, self._accounting.field_limits),
                    *self._company.currency_violations(principal.tenant_id, currencies, opportunity.branch_id),
                ],
            )
        )
        self._company.require_company(principal.tenant_id, opportunity.branch_id)
        fingerprint = request_fingerprint(SyncJobKind.SYNC_PAYMENT, opportunity, payment)
        target = EntityRef(EntityType.PAYMENT, payment.payment_id)

        def stage(uow: UnitOfWork) -> list[SyncRecord]:
            self._outbox.stage_opportunity(uow, principal.tenant_id, opportunity, "opportunity")
            return self._outbox.stage_payment(uow, principal.tenant_id, opportunity, payment, "payment")

        return self._outbox.accept(
            principal.tenant_id, SyncJobKind.SYNC_PAYMENT, target, opportunity, request_id, fingerprint, stage
        )

    def _accept_job(
        self,
        kind: SyncJobKind,
        principal: Principal,
        opportunity: Opportunity,
        job: Job,
        payments: list[Payment],
        request_id: str = "",
        *,
        currencies: Sequence[AmountCurrency] = (),
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncJob:
        """CloseOutJob and SyncInvoice (the two use cases below), which take the same request and differ only
        in `kind`: a SYNC_INVOICE job's invoice must have been closed out before."""
        require(principal, Permission.SYNC)
        opportunity, job = clean_opportunity(opportunity), clean_job(job)
        payments = [clean_payment(p) for p in payments]
        _raise_if_any(
            merge_violations(
                conversion_violations,
                [
                    *validate_job_request(opportunity, job, payments, request_id),
                    *job_request_limits(opportunity, job, payments, self._accounting.field_limits),
                    *self._company.currency_violations(principal.tenant_id, currencies, opportunity.branch_id),
                    *self._company.sales_tax_violations(principal.tenant_id, job, opportunity.branch_id),
                ],
            )
        )
        self._company.require_company(principal.tenant_id, opportunity.branch_id)
        fingerprint = request_fingerprint(kind, opportunity, job, tuple(payments))
        target = EntityRef(EntityType.INVOICE, job.job_id)
        tenant = principal.tenant_id

        def stage(uow: UnitOfWork) -> None:
            _raise_if_any(self._company.doc_number_fits(uow, tenant, job, opportunity.branch_id))
            self._outbox.stage_opportunity(uow, tenant, opportunity, "opportunity")
            for i, payment in enumerate(payments):
                self._outbox.stage_payment(uow, tenant, opportunity, payment, f"payments[{i}]")
            known = uow.snapshots.get_job(tenant, job.job_id)
            if known is not None and known.opportunity_id != opportunity.opportunity_id:
                raise ValidationError(
                    [FieldViolation("job.job_id", f"job {job.job_id} belongs to another opportunity")]
                )
            refuse_voided(uow, tenant, target, "job.job_id")
            already_closed = known is not None and known.closed_out
            if kind is SyncJobKind.SYNC_INVOICE and not already_closed:
                raise FailedPreconditionError(
                    f"job {job.job_id} has not been closed out: call CloseOutJob first (no invoice before close-out)"
                )
            uow.snapshots.save_job(tenant, opportunity.opportunity_id, job, self._clock.now())

        return self._outbox.accept(principal.tenant_id, kind, target, opportunity, request_id, fingerprint, stage)

    close_out_job = _use_case_of_kind(
        _accept_job,
        SyncJobKind.CLOSE_OUT_JOB,
        "R5: record the job as closed out and sync its invoice with the payments applied.",
    )
    sync_invoice = _use_case_of_kind(
        _accept_job,
        SyncJobKind.SYNC_INVOICE,
        "R5/R6: sync or resync the invoice of a job that was closed out.",
    )

    def sync_payout(
        self,
        principal: Principal,
        payout: Payout,
        request_id: str = "",
        *,
        currencies: Sequence[AmountCurrency] = (),
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncJob:
        """SPEC §9: the payout as one bank deposit, its payments synced first (core/payout_intake.py)."""
        require(principal, Permission.SYNC)
        _raise_if_any(
            merge_violations(
                conversion_violations,
                [
                    *validate_payout_request(payout, request_id),
                    *payout_request_limits(payout, self._accounting.field_limits),
                    *self._company.currency_violations(principal.tenant_id, currencies),
                ],
            )
        )
        fingerprint = request_fingerprint(SyncJobKind.SYNC_PAYOUT, payout)
        target = EntityRef(EntityType.PAYOUT, payout.payout_id)

        def stage(uow: UnitOfWork) -> str:
            return stage_payout(uow, principal.tenant_id, payout, self._outbox)

        return self._outbox.accept(
            principal.tenant_id, SyncJobKind.SYNC_PAYOUT, target, None, request_id, fingerprint, stage
        )

    def void_payment(self, principal: Principal, payment_id: str, request_id: str = "") -> SyncJob:
        """SPEC §11: voids the payment in QuickBooks with its refund expenses, its applications undone first
        (core/void_sync.py). NOT_FOUND when qbsync never received the payment; FAILED_PRECONDITION when it is
        not in QuickBooks, or inside a payout (PAYMENT_DEPOSITED: the payout is resynced without it first).
        A payment voided already may be voided again (nothing more happens in QuickBooks)."""
        require(principal, Permission.SYNC)
        _raise_if_any([*text_id_violations(payment_id, "payment_id"), *request_id_violations(request_id)])
        tenant = principal.tenant_id
        with self._uow_factory.read_only() as uow:
            opportunity, payment = payment_to_void(uow, tenant, payment_id)
        fingerprint = request_fingerprint(SyncJobKind.VOID_PAYMENT, payment_id)
        target = EntityRef(EntityType.PAYMENT, payment_id)

        def stage(uow: UnitOfWork) -> list[SyncRecord]:
            return stage_payment_void(uow, tenant, payment)

        return self._outbox.accept(
            tenant, SyncJobKind.VOID_PAYMENT, target, opportunity, request_id, fingerprint, stage
        )

    def void_invoice(self, principal: Principal, job_id: str, request_id: str = "") -> SyncJob:
        """SPEC §11: voids the invoice of a closed-out job in QuickBooks, each payment applied to it letting go
        of it first (core/void_sync.py). NOT_FOUND when qbsync never received the job; FAILED_PRECONDITION
        when it was not closed out or its invoice is not in QuickBooks."""
        require(principal, Permission.SYNC)
        _raise_if_any([*text_id_violations(job_id, "job_id"), *request_id_violations(request_id)])
        tenant = principal.tenant_id
        with self._uow_factory.read_only() as uow:
            opportunity = invoice_to_void(uow, tenant, job_id)
        fingerprint = request_fingerprint(SyncJobKind.VOID_INVOICE, job_id)
        target = EntityRef(EntityType.INVOICE, job_id)

        def stage(uow: UnitOfWork) -> list[SyncRecord]:
            return stage_invoice_void(uow, tenant, job_id)

        return self._outbox.accept(
            tenant, SyncJobKind.VOID_INVOICE, target, opportunity, request_id, fingerprint, stage
        )

    def retry(self, principal: Principal, name: str) -> SyncJob:
        """Runs a FAILED job again, with a fresh allowance of attempts."""
        require(principal, Permission.SYNC)
        job_id = _job_id(name)
        with self._uow_factory() as uow:
            job = _failed_job(uow.jobs.get(principal.tenant_id, job_id), name, "retried")
            now = self._clock.now()
            job.state = SyncJobState.PENDING
            job.max_attempts = job.attempts + self._max_attempts
            job.next_attempt_time = None
            job.update_time = now
            job.dismiss_time = None  # should it fail again, it is a sync error again
            uow.jobs.save(job)
            mark_pending(uow, principal.tenant_id, [job.target], keep_error=True)
            uow.audit.append(AuditEvent(principal.tenant_id, now, AuditKind.RETRY_REQUESTED, job.target, job_id, ""))
            uow.commit()
            return job

    def dismiss(self, principal: Principal, name: str) -> SyncJob:
        """Takes a FAILED job off the sync errors list, keeping the job and its history (GetSyncJob, the
        audit log still show it); it can still be retried. Dismissing a job dismissed already returns it
        unchanged (the first dismissal counts)."""
        require(principal, Permission.SYNC)
        job_id = _job_id(name)
        with self._uow_factory() as uow:
            job = _failed_job(uow.jobs.get_for_update(principal.tenant_id, job_id), name, "dismissed")
            if job.dismiss_time is not None:
                return job
            now = self._clock.now()
            job.dismiss_time = job.update_time = now
            uow.jobs.save(job)
            event = AuditEvent(principal.tenant_id, now, AuditKind.SYNC_ERROR_DISMISSED, job.target, job_id, "")
            uow.audit.append(event)
            uow.commit()
            return job

    # --- reading ------------------------------------------------------------------------------------

    def get_job(self, principal: Principal, name: str) -> SyncJob:
        require(principal, Permission.READ)
        with self._uow_factory.read_only() as uow:
            job = uow.jobs.get(principal.tenant_id, _job_id(name))
        if job is None:
            raise NotFoundError(f"{name} not found")
        return job

    def get_status(
        self,
        principal: Principal,
        entity: EntityRef,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncRecord:
        """R8: a record's sync state. A record qbsync was never sent is NOT_FOUND. `branch_id`: for a customer,
        the branch whose company's link is meant (SPEC §10)."""
        record, _ = self._sync_record(principal, Permission.READ, entity, branch_id, conversion_violations, False)
        return record

    def get_link(
        self,
        principal: Principal,
        entity: EntityRef,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> str:
        """R9: the "View in QuickBooks" URL of a synced record, in the company it is in (SPEC §10)."""
        record, connection = self._sync_record(
            principal, Permission.QUICKBOOKS_VIEW, entity, branch_id, conversion_violations, True
        )
        if not record.quickbooks_id:
            raise FailedPreconditionError(f"{entity} is not in QuickBooks yet", metadata={"state": record.state.value})
        kind = None if entity.type is EntityType.CUSTOMER else TxnKind(record.quickbooks_type)
        company = connection.branch_id if connection is not None else ""
        accounting = self._accounting.for_tenant(principal.tenant_id, connection, branch_id=company)
        return accounting.link_for(kind, record.quickbooks_id)

    def _sync_record(
        self,
        principal: Principal,
        permission: Permission,
        entity: EntityRef,
        branch_id: str,
        conversion_violations: Sequence[FieldViolation],
        with_connection: bool,
    ) -> tuple[SyncRecord, QuickBooksConnection | None]:
        """The record of `entity`, for a caller with `permission`, and (`with_connection`) the connection of the
        company it is in; NOT_FOUND when qbsync was never sent it. A status read of anything but a branch's
        customer link reads the record alone (GetSyncStatus is the API's most frequent call)."""
        require(principal, permission)
        violations = _entity_violations(entity) + text_id_violations(branch_id, "branch_id", required=False)
        _raise_if_any(merge_violations(conversion_violations, violations))
        tenant = principal.tenant_id
        with self._uow_factory.read_only() as uow:
            connection = None
            if with_connection or (entity.type is EntityType.CUSTOMER and branch_id):
                connection = uow.connections.for_branch(tenant, branch_of_record(uow, tenant, entity, branch_id))
            stored = entity
            if entity.type is EntityType.CUSTOMER:
                stored = customer_link(entity.id, connection.branch_id if connection is not None else "")
            record = uow.sync_records.get(tenant, stored)
        if record is None:
            raise NotFoundError(f"{entity} not found")
        return replace(record, entity=entity), connection

    def list_errors(self, principal: Principal, page_size: int, page_token: str) -> tuple[list[SyncJob], str]:
        """The tenant's failed syncs, newest first; the token is an opaque offset."""
        require(principal, Permission.READ)
        offset, limit = _page(page_size, page_token)
        with self._uow_factory.read_only() as uow:
            jobs = uow.jobs.list_failed(principal.tenant_id, offset=offset, limit=limit + 1)
        return _page_of(jobs, offset, limit)

    def recent_jobs(self, principal: Principal, limit: int = 20) -> list[SyncJob]:
        """The tenant's most recently changed jobs, in any state, newest first: at most `limit` (1 to
        MAX_PAGE_SIZE)."""
        require(principal, Permission.READ)
        if not 0 < limit <= MAX_PAGE_SIZE:
            raise ValidationError([FieldViolation("limit", f"must be between 1 and {MAX_PAGE_SIZE}")])
        with self._uow_factory.read_only() as uow:
            return uow.jobs.list_recent(principal.tenant_id, limit=limit)

    def list_payouts(self, principal: Principal, page_size: int, page_token: str) -> tuple[list[PayoutStatus], str]:
        """SPEC §9: the tenant's payouts, newest arrival date first, each with its sync record (state, the
        Deposit's QuickBooks Id, last error); paged as list_errors is."""
        require(principal, Permission.READ)
        offset, limit = _page(page_size, page_token)
        with self._uow_factory.read_only() as uow:
            statuses = payouts_page(uow, principal.tenant_id, offset=offset, limit=limit + 1)
        return _page_of(statuses, offset, limit)


def _failed_job(job: SyncJob | None, name: str, done: str) -> SyncJob:
    """The job `name` names, which only a FAILED job may be (to be retried, or dismissed)."""
    if job is None:
        raise NotFoundError(f"{name} not found")
    if job.state is not SyncJobState.FAILED:
        raise FailedPreconditionError(
            f"{name} is {job.state.value}: only a FAILED job can be {done}", metadata={"state": job.state.value}
        )
    return job


def _job_id(name: str) -> str:
    if not name.startswith(JOB_NAME_PREFIX) or len(name) == len(JOB_NAME_PREFIX) or not usable_as_id(name):
        raise ValidationError([FieldViolation("name", "must look like syncJobs/{id}")])
    return name[len(JOB_NAME_PREFIX) :]


def _page(page_size: int, page_token: str) -> tuple[int, int]:
    """The offset and limit a list request asks for (page_size 0: the default), or a ValidationError."""
    violations = []
    if page_size < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    if page_token and not _issued_page_token(page_token):
        violations.append(FieldViolation("page_token", "is not a token this service issued"))
    _raise_if_any(violations)
    return int(page_token or 0), min(page_size or 50, MAX_PAGE_SIZE)


def _page_of(found: list[T], offset: int, limit: int) -> tuple[list[T], str]:
    """A page from `limit + 1` rows read at `offset`: the extra row only tells that there is a next page."""
    more = len(found) > limit
    return found[:limit], str(offset + limit) if more else ""


def _issued_page_token(token: str) -> bool:
    """Whether `token` could be one a list use case issued. Explicitly ASCII: str.isdigit() also accepts "²"
    (which int() refuses) and other scripts' digits."""
    return 0 < len(token) <= MAX_PAGE_TOKEN_DIGITS and token.isascii() and token.isdigit()


def _entity_violations(entity: EntityRef) -> list[FieldViolation]:
    if not entity.id.strip():
        return [FieldViolation("entity.id", "is required")]
    if not usable_as_id(entity.id):
        # No stored id holds one (they are refused at accept); PostgreSQL could not even compare with a NUL.
        return [FieldViolation("entity.id", "must not contain control or formatting characters")]
    return []


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise ValidationError(violations)
