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
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    QbsyncError,
    ReconnectRequiredError,
    RequestIdReusedError,
    StorageUnavailableError,
    ThrottledError,
    TooManyFailedAuthenticationsError,
    TooManyStreamsError,
    UnauthenticatedError,
    ValidationError,
)

DOMAIN = "qbsync"
INTERNAL_MESSAGE = "qbsync hit an unexpected error; it has been logged"

# The status travels in trailing metadata: serialized into `grpc-status-details-bin` (base64 on the wire,
# 4/3 of its size) next to `grpc-message` (percent-encoded: up to 3 bytes per UTF-8 byte). Clients refuse
# trailers over 8 KiB by default and then report RESOURCE_EXHAUSTED, losing every field name, so every
# status is kept within these bounds whatever the input: ~5.5 KiB + 1.5 KiB, under 8 KiB.
MAX_STATUS_BYTES = 4096  # the serialized google.rpc.Status, message included
MAX_MESSAGE_BYTES = 512  # UTF-8 bytes of the message
# One long description (or a long field path, or a long metadata value) must not crowd out the others.
MAX_TEXT_LENGTH = 256
# Room the packed BadRequest cannot use: its Any wrapper (type URL, tags, lengths) and slack.
_BAD_REQUEST_OVERHEAD = 96
_ELLIPSIS = "…"

# Most specific first: the first class the error is an instance of decides its code.
_CODES: tuple[tuple[type[QbsyncError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    # A caller slowed down after failed authentications: told when to try again (RetryInfo).
    (TooManyFailedAuthenticationsError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # A key holding the most open WatchSyncJob streams a key may (QBSYNC_MAX_STREAMS_PER_KEY).
    (TooManyStreamsError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (RequestIdReusedError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    # QuickBooks being away or rate-limiting us is transient: UNAVAILABLE tells clients to retry.
    (ThrottledError, grpc.StatusCode.UNAVAILABLE),
    (AccountingUnavailableError, grpc.StatusCode.UNAVAILABLE),
    # So is the database being away: nothing was committed, the same call may succeed in a moment.
    (StorageUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ReconnectRequiredError, grpc.StatusCode.FAILED_PRECONDITION),
    # Anything else QuickBooks refused needs a person to change something first.
    (AccountingError, grpc.StatusCode.FAILED_PRECONDITION),
)

# How soon a client may call again after the database was unavailable (a restart or failover takes seconds).
STORAGE_RETRY_SECONDS = 1.0

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
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={key: cut(value) for key, value in metadata.items()}
    )


def cut(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """`text` cut to `limit` characters, the cut marked by "…"."""
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def cut_to_bytes(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character, the cut marked by "…"."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    room = limit - len(_ELLIPSIS.encode())
    return encoded[:room].decode(errors="ignore") + _ELLIPSIS


def _packed(*details: Message) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return packed


def _status(code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> status_pb2.Status:
    # grpc.StatusCode values are (int, name) pairs; google.rpc.Status wants the int.
    return status_pb2.Status(code=code.value[0], message=cut_to_bytes(message), details=details)


def _retry_after(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def status_for_error(error: QbsyncError) -> status_pb2.Status:
    """The status a client receives for a domain error raised while serving its call; at most
    MAX_STATUS_BYTES whatever the error holds."""
    details: list[Message] = [error_info(error.reason, error.metadata)]
    if isinstance(error, ThrottledError | TooManyFailedAuthenticationsError):
        details.append(_retry_after(error.retry_after_seconds))
    elif isinstance(error, StorageUnavailableError):
        details.append(_retry_after(STORAGE_RETRY_SECONDS))
    message = error.message
    if isinstance(error, ValidationError):
        room = MAX_STATUS_BYTES - MAX_MESSAGE_BYTES - sum(_packed_size(d) for d in details) - _BAD_REQUEST_OVERHEAD
        bad_request = bounded_bad_request(error.violations, room)
        details.append(bad_request)
        message = _validation_message(error.violations, len(bad_request.field_violations))
    return _status(code_for(error), message, _packed(*details))


def bounded_bad_request(violations: list[FieldViolation], max_bytes: int) -> error_details_pb2.BadRequest:
    """The violations in order, each cut to MAX_TEXT_LENGTH, as many as fit in `max_bytes` serialized;
    the message says how many more there were."""
    bad_request = error_details_pb2.BadRequest()
    size = 0
    for violation in violations:
        entry = error_details_pb2.BadRequest.FieldViolation(
            field=cut(violation.field), description=cut(violation.description)
        )
        cost = _length_delimited_size(entry.ByteSize())
        if size + cost > max_bytes:
            break
        bad_request.field_violations.append(entry)
        size += cost
    return bad_request


def _validation_message(violations: list[FieldViolation], shown: int) -> str:
    fields = [cut(v.field) for v in violations[:shown]]
    more = len(violations) - shown
    message = "invalid request: " + ", ".join(fields) + (f" and {more} more" if more else "")
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        listed = f"; the first {shown} are listed" if more else ""
        message = f"invalid request: {len(violations)} invalid fields{listed}"
    return message


def _packed_size(detail: Message) -> int:
    return _length_delimited_size(_packed(detail)[0].ByteSize())


def _length_delimited_size(payload: int) -> int:
    """Bytes one embedded message of `payload` bytes takes in its parent: a tag, a varint length, the payload."""
    length_bytes = max(1, (payload.bit_length() + 6) // 7)
    return 1 + length_bytes + payload


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
