"""`qbsync.v1.SyncService` over the core's SyncService use cases.

Each method converts the request, calls one use case as the authenticated caller, and converts the
answer. What conversion found wrong (things protobuf holds that the core cannot represent) is passed
to the use case as `conversion_violations`: the use case checks the permission first and then reports
those with its own findings, so neither rule is written here. Domain errors are raised and
ErrorMappingInterceptor turns them into statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol, TypeVar

import grpc

from adapters.grpc import convert
from adapters.grpc.auth import current_principal, presented_key
from adapters.grpc.watch import DEFAULT_MAX_STREAMS_PER_KEY, JobChanges, SendResponse, WatchHub
from core.auth import hash_key
from core.currency import AmountCurrency
from core.domain import EntityRef, Permission, Principal, SyncJob
from core.errors import FieldViolation, ValidationError
from core.preview import SyncPreview
from core.reconcile import ReconcileService
from core.service import SyncService, require
from qbsync.v1 import resources_pb2, sync_service_pb2, sync_service_pb2_grpc

DEFAULT_POLL_SECONDS = 0.1

_Answer = TypeVar("_Answer", covariant=True)


class _Accept(Protocol):
    """A mutating use case, given the caller and the records of the request."""

    def __call__(
        self,
        request_id: str = "",
        *,
        currencies: Sequence[AmountCurrency] = (),
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncJob: ...


def _accept(req: convert.SyncRequest | convert.PayoutRequest, use_case: _Accept) -> resources_pb2.SyncJob:
    """Calls `use_case` with what every sync request carries besides its records."""
    job = use_case(req.request_id, currencies=req.currencies, conversion_violations=req.violations)
    return convert.sync_job_to_proto(job)


class _EntityUseCase(Protocol[_Answer]):
    """A use case about one record (get_status, get_link)."""

    def __call__(
        self,
        principal: Principal,
        entity: EntityRef,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> _Answer: ...


def _on_entity(use_case: _EntityUseCase[_Answer], entity: resources_pb2.EntityRef, branch_id: str) -> _Answer:
    """Calls `use_case` about the request's `entity` (a customer's link: in `branch_id`'s company)."""
    violations: list[FieldViolation] = []
    ref = convert.entity_ref_from_proto(entity, "entity", violations)
    return use_case(current_principal(), ref, branch_id=branch_id, conversion_violations=violations)


class SyncServicer(sync_service_pb2_grpc.SyncServiceServicer):
    def __init__(
        self,
        service: SyncService,
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        changes: JobChanges | None = None,
        max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY,
        preview: SyncPreview | None = None,
        reconcile: ReconcileService | None = None,
    ) -> None:
        """WatchSyncJob's streams are fed by `changes` (one feed for all of them; without one, each watched
        job is re-read every `poll_seconds`), at most `max_streams_per_key` open per API key. PreviewSync
        runs on `preview`, ReconcileCompany on `reconcile` (none: the RPC is UNIMPLEMENTED, as a servicer built for
        other tests has it)."""
        self._service = service
        self._preview = preview
        self._reconcile = reconcile
        self._poll_seconds = poll_seconds
        self.watch = WatchHub(service, changes, poll_seconds=poll_seconds, max_streams_per_key=max_streams_per_key)

    # --- mutating -------------------------------------------------------------------------------

    def SyncPayment(
        self, request: sync_service_pb2.SyncPaymentRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        req = convert.payment_request_from_proto(request)
        return _accept(req, partial(self._service.sync_payment, current_principal(), req.opportunity, req.payment))

    def CloseOutJob(
        self, request: sync_service_pb2.CloseOutJobRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return self._accept_job(request)

    def SyncInvoice(
        self, request: sync_service_pb2.SyncInvoiceRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return self._accept_job(request)

    def _accept_job(
        self, request: sync_service_pb2.CloseOutJobRequest | sync_service_pb2.SyncInvoiceRequest
    ) -> resources_pb2.SyncJob:
        """The two job requests have the same fields; the request's type tells which use case takes it."""
        use_case = (
            self._service.close_out_job
            if isinstance(request, sync_service_pb2.CloseOutJobRequest)
            else self._service.sync_invoice
        )
        req = convert.job_request_from_proto(request)
        return _accept(req, partial(use_case, current_principal(), req.opportunity, req.job, req.payments))

    def SyncPayout(
        self, request: sync_service_pb2.SyncPayoutRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        req = convert.payout_request_from_proto(request)
        return _accept(req, partial(self._service.sync_payout, current_principal(), req.payout))

    def RetrySync(
        self, request: sync_service_pb2.RetrySyncRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return convert.sync_job_to_proto(self._service.retry(current_principal(), request.name))

    def DismissSyncError(
        self, request: sync_service_pb2.DismissSyncErrorRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return convert.sync_job_to_proto(self._service.dismiss(current_principal(), request.name))

    def PreviewSync(
        self, request: sync_service_pb2.PreviewSyncRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.PreviewSyncResponse:
        """The sync RPC's own conversion and use case, run by the preview (core/preview.py) on its storage."""
        preview = self._preview
        if preview is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "PreviewSync is not served here")
            raise AssertionError("unreachable: abort raises")
        operations = preview.preview(_previewed_sync(request, current_principal()))
        return sync_service_pb2.PreviewSyncResponse(
            operations=[convert.planned_operation_to_proto(o) for o in operations]
        )

    def VoidPayment(
        self, request: sync_service_pb2.VoidPaymentRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        job = self._service.void_payment(current_principal(), request.payment_id, request.request_id)
        return convert.sync_job_to_proto(job)

    def VoidInvoice(
        self, request: sync_service_pb2.VoidInvoiceRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        job = self._service.void_invoice(current_principal(), request.job_id, request.request_id)
        return convert.sync_job_to_proto(job)

    # --- reading --------------------------------------------------------------------------------

    def GetSyncJob(
        self, request: sync_service_pb2.GetSyncJobRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return convert.sync_job_to_proto(self._service.get_job(current_principal(), request.name))

    def WatchSyncJob(  # type: ignore[override]  # grpc's non-blocking form: see adapters.grpc.watch
        self, request: sync_service_pb2.GetSyncJobRequest, context: grpc.ServicerContext, send: SendResponse
    ) -> None:
        owner = hash_key(presented_key(context.invocation_metadata()))  # the key, as the cap counts it
        self.watch.open(current_principal(), request.name, owner, context, send)

    WatchSyncJob.experimental_non_blocking = True  # type: ignore[attr-defined]

    def GetSyncStatus(
        self, request: sync_service_pb2.GetSyncStatusRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncStatus:
        return convert.sync_status_to_proto(_on_entity(self._service.get_status, request.entity, request.branch_id))

    def GetQuickBooksLink(
        self, request: sync_service_pb2.GetQuickBooksLinkRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.QuickBooksLink:
        return sync_service_pb2.QuickBooksLink(
            url=_on_entity(self._service.get_link, request.entity, request.branch_id)
        )

    def ListSyncErrors(
        self, request: sync_service_pb2.ListSyncErrorsRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.ListSyncErrorsResponse:
        jobs, next_page_token = self._service.list_errors(current_principal(), request.page_size, request.page_token)
        return sync_service_pb2.ListSyncErrorsResponse(
            sync_jobs=[convert.sync_job_to_proto(job) for job in jobs], next_page_token=next_page_token
        )

    def ReconcileCompany(
        self, request: sync_service_pb2.ReconcileCompanyRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.ReconcileCompanyResponse:
        reconcile = self._reconcile
        if reconcile is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "ReconcileCompany is not served here")
            raise AssertionError("unreachable: abort raises")
        start, end, violations = convert.reconcile_period_from_proto(request)
        differences = reconcile.reconcile(current_principal(), start, end, violations)
        return sync_service_pb2.ReconcileCompanyResponse(
            differences=[convert.difference_to_proto(d) for d in differences]
        )


def _previewed_sync(
    request: sync_service_pb2.PreviewSyncRequest, principal: Principal
) -> Callable[[SyncService], object]:
    """What the sync RPC of the request's body would do, as a call on the `SyncService` a preview gives it."""
    kind = request.WhichOneof("sync")
    if kind == "sync_payment":
        pay = convert.payment_request_from_proto(request.sync_payment)

        def sync_payment(s: SyncService) -> object:
            return _accept(pay, partial(s.sync_payment, principal, pay.opportunity, pay.payment))

        return sync_payment
    if kind == "close_out_job" or kind == "sync_invoice":
        job = convert.job_request_from_proto(getattr(request, kind))

        def sync_job(s: SyncService) -> object:
            use_case = s.close_out_job if kind == "close_out_job" else s.sync_invoice
            return _accept(job, partial(use_case, principal, job.opportunity, job.job, job.payments))

        return sync_job
    if kind == "sync_payout":
        payout = convert.payout_request_from_proto(request.sync_payout)

        def sync_payout(s: SyncService) -> object:
            return _accept(payout, partial(s.sync_payout, principal, payout.payout))

        return sync_payout
    require(principal, Permission.SYNC)  # as every sync: a caller without it learns nothing from bad input
    raise ValidationError(
        [FieldViolation("sync", "is required: one of sync_payment, close_out_job, sync_invoice, sync_payout")]
    )
