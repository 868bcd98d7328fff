"""`qbsync.v1.SyncService` over the core's SyncService use cases.

Each method converts the request, calls one use case as the authenticated caller, and converts the
answer. It raises domain errors and lets ErrorMappingInterceptor turn them into statuses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import NoReturn

import grpc

from adapters.grpc import convert
from adapters.grpc.auth import current_principal
from core.domain import Permission, Principal
from core.errors import FieldViolation, ValidationError
from core.service import SyncService, require
from core.validation import validate_job_request, validate_payment_request
from qbsync.v1 import resources_pb2, sync_service_pb2, sync_service_pb2_grpc

DEFAULT_POLL_SECONDS = 0.1


def merge_violations(
    conversion: Iterable[FieldViolation], validation: Iterable[FieldViolation]
) -> list[FieldViolation]:
    """All violations, each field judged once: a field conversion rejected holds a stand-in value, so
    what the core's validation says about that field would describe the stand-in, not the input."""
    conversion = list(conversion)
    rejected = {v.field for v in conversion}
    return conversion + [v for v in validation if v.field not in rejected]


def _reject(principal: Principal, permission: Permission, violations: list[FieldViolation]) -> NoReturn:
    # The core checks the permission before the input; do the same here, so that a caller without
    # the permission learns nothing from bad input that good input would not tell it.
    require(principal, permission)
    raise ValidationError(violations)


class SyncServicer(sync_service_pb2_grpc.SyncServiceServicer):
    def __init__(self, service: SyncService, *, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """`poll_seconds`: how often WatchSyncJob looks for changes of the job it streams."""
        self._service = service
        self._poll_seconds = poll_seconds

    # --- mutating -------------------------------------------------------------------------------

    def SyncPayment(
        self, request: sync_service_pb2.SyncPaymentRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        principal = current_principal()
        req = convert.payment_request_from_proto(request)
        if req.violations:
            core_violations = validate_payment_request(req.opportunity, req.payment, req.request_id)
            core_violations += self._service.check_currencies(principal, req.currencies)
            _reject(principal, Permission.SYNC, merge_violations(req.violations, core_violations))
        job = self._service.sync_payment(
            principal, req.opportunity, req.payment, req.request_id, currencies=req.currencies
        )
        return convert.sync_job_to_proto(job)

    def CloseOutJob(
        self, request: sync_service_pb2.CloseOutJobRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        principal = current_principal()
        req = self._job_request(principal, request)
        job = self._service.close_out_job(
            principal, req.opportunity, req.job, req.payments, req.request_id, currencies=req.currencies
        )
        return convert.sync_job_to_proto(job)

    def SyncInvoice(
        self, request: sync_service_pb2.SyncInvoiceRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        principal = current_principal()
        req = self._job_request(principal, request)
        job = self._service.sync_invoice(
            principal, req.opportunity, req.job, req.payments, req.request_id, currencies=req.currencies
        )
        return convert.sync_job_to_proto(job)

    def RetrySync(
        self, request: sync_service_pb2.RetrySyncRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return convert.sync_job_to_proto(self._service.retry(current_principal(), request.name))

    def _job_request(
        self,
        principal: Principal,
        request: sync_service_pb2.CloseOutJobRequest | sync_service_pb2.SyncInvoiceRequest,
    ) -> convert.JobRequest:
        req = convert.job_request_from_proto(request)
        if req.violations:
            core_violations = validate_job_request(req.opportunity, req.job, req.payments, req.request_id)
            core_violations += self._service.check_currencies(principal, req.currencies)
            _reject(principal, Permission.SYNC, merge_violations(req.violations, core_violations))
        return req

    # --- reading --------------------------------------------------------------------------------

    def GetSyncJob(
        self, request: sync_service_pb2.GetSyncJobRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncJob:
        return convert.sync_job_to_proto(self._service.get_job(current_principal(), request.name))

    def WatchSyncJob(
        self, request: sync_service_pb2.GetSyncJobRequest, context: grpc.ServicerContext
    ) -> Iterator[resources_pb2.SyncJob]:
        principal = current_principal()
        job = self._service.get_job(principal, request.name)
        last = convert.sync_job_to_proto(job)
        yield last
        call_ended = threading.Event()
        # Wakes the wait below at once when the caller cancels or its deadline passes.
        context.add_callback(call_ended.set)
        while not job.state.done and context.is_active():
            if call_ended.wait(self._poll_seconds):
                return
            job = self._service.get_job(principal, request.name)
            current = convert.sync_job_to_proto(job)
            if current != last:  # any visible change: state, attempts, results, error, update_time
                yield current
                last = current

    def GetSyncStatus(
        self, request: sync_service_pb2.GetSyncStatusRequest, context: grpc.ServicerContext
    ) -> resources_pb2.SyncStatus:
        principal = current_principal()
        violations: list[FieldViolation] = []
        entity = convert.entity_ref_from_proto(request.entity, "entity", violations)
        if violations:
            _reject(principal, Permission.READ, violations)
        return convert.sync_status_to_proto(self._service.get_status(principal, entity))

    def GetQuickBooksLink(
        self, request: sync_service_pb2.GetQuickBooksLinkRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.QuickBooksLink:
        principal = current_principal()
        violations: list[FieldViolation] = []
        entity = convert.entity_ref_from_proto(request.entity, "entity", violations)
        if violations:
            _reject(principal, Permission.QUICKBOOKS_VIEW, violations)
        return sync_service_pb2.QuickBooksLink(url=self._service.get_link(principal, entity))

    def ListSyncErrors(
        self, request: sync_service_pb2.ListSyncErrorsRequest, context: grpc.ServicerContext
    ) -> sync_service_pb2.ListSyncErrorsResponse:
        jobs, next_page_token = self._service.list_errors(
            current_principal(), request.page_size, request.page_token
        )
        return sync_service_pb2.ListSyncErrorsResponse(
            sync_jobs=[convert.sync_job_to_proto(job) for job in jobs], next_page_token=next_page_token
        )
