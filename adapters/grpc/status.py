"""Domain errors as `google.rpc.Status` (AIP-193): a precise code, an ErrorInfo, and what helps fix it.

gRPC itself never produces INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION or ALREADY_EXISTS, so a
client seeing one knows qbsync chose it deliberately. Every status carries a `google.rpc.ErrorInfo`
with domain `qbsync`, the error's stable reason and its metadata, so that clients branch on the reason,
never on the message.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from core.domain import JobError
from core.errors import (
    AccountingError,
    AccountingUnavailableError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    QbsyncError,
    ReconnectRequiredError,
    RequestIdReusedError,
    ThrottledError,
    UnauthenticatedError,
    ValidationError,
)

DOMAIN = "qbsync"
INTERNAL_MESSAGE = "qbsync hit an unexpected error; it has been logged"
# The status travels in trailing metadata, which clients cap (8 KiB by default): a request with
# hundreds of bad lines must still get its INVALID_ARGUMENT, so only the first violations are sent.
MAX_FIELD_VIOLATIONS = 50
MAX_MESSAGE_LENGTH = 1000

# Most specific first: the first class the error is an instance of decides its code.
_CODES: tuple[tuple[type[QbsyncError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (RequestIdReusedError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    # QuickBooks being away or rate-limiting us is transient: UNAVAILABLE tells clients to retry.
    (ThrottledError, grpc.StatusCode.UNAVAILABLE),
    (AccountingUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ReconnectRequiredError, grpc.StatusCode.FAILED_PRECONDITION),
    # Anything else QuickBooks refused needs a person to change something first.
    (AccountingError, grpc.StatusCode.FAILED_PRECONDITION),
)

# Reasons a failed job may carry that deserve a code other than the retryable/not-retryable default.
_JOB_REASON_CODES = {
    ThrottledError.reason: grpc.StatusCode.UNAVAILABLE,
    AccountingUnavailableError.reason: grpc.StatusCode.UNAVAILABLE,
    ReconnectRequiredError.reason: grpc.StatusCode.FAILED_PRECONDITION,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}


def code_for(error: QbsyncError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    # A domain error nobody mapped yet is still about the request's situation, never a crash.
    return grpc.StatusCode.FAILED_PRECONDITION


def error_info(reason: str, metadata: Mapping[str, str]) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata))


def _packed(*details: Message) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return packed


def _status(code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> status_pb2.Status:
    # grpc.StatusCode values are (int, name) pairs; google.rpc.Status wants the int.
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def status_for_error(error: QbsyncError) -> status_pb2.Status:
    """The status a client receives for a domain error raised while serving its call."""
    details: list[Message] = [error_info(error.reason, error.metadata)]
    message = error.message
    if isinstance(error, ValidationError):
        shown = error.violations[:MAX_FIELD_VIOLATIONS]
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in shown
                ]
            )
        )
        if len(shown) < len(error.violations):
            message = f"{len(error.violations)} invalid fields; the first {len(shown)} are listed"
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    if isinstance(error, ThrottledError):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _status(code_for(error), message, _packed(*details))


def internal_status() -> status_pb2.Status:
    """For a bug: the caller learns only that it is ours; the log has the traceback."""
    return _status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, _packed(error_info("INTERNAL", {})))


def status_for_job_error(error: JobError) -> status_pb2.Status:
    """Why a sync job failed, in the same shape as a call's error (SyncJob.error)."""
    code = _JOB_REASON_CODES.get(error.reason)
    if code is None:
        code = grpc.StatusCode.UNAVAILABLE if error.retryable else grpc.StatusCode.FAILED_PRECONDITION
    # Clients decide whether to offer "Retry" from this, so it is always present.
    metadata = {"retryable": "true" if error.retryable else "false", **error.metadata}
    return _status(code, error.message, _packed(error_info(error.reason, metadata)))
