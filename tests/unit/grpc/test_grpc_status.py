"""Domain errors become precise gRPC statuses with ErrorInfo (domain qbsync) and helpful details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from adapters.grpc.auth import presented_key
from adapters.grpc.status import internal_status, status_for_error, status_for_job_error
from core.domain import JobError
from core.errors import (
    AccountingUnavailableError,
    BookkeepingError,
    CustomerNameConflictError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    QbsyncError,
    ReconnectRequiredError,
    RequestIdReusedError,
    ThrottledError,
    UnauthenticatedError,
    ValidationError,
)


def detail(status: status_pb2.Status, kind: type) -> object | None:
    found = [d for d in status.details if d.Is(kind.DESCRIPTOR)]
    if not found:
        return None
    message = kind()
    found[0].Unpack(message)
    return message




@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationError([FieldViolation("payment.amount", "bad")]), grpc.StatusCode.INVALID_ARGUMENT),
        (UnauthenticatedError("no key"), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
        (NotFoundError("gone"), grpc.StatusCode.NOT_FOUND),
        (RequestIdReusedError("reused"), grpc.StatusCode.ALREADY_EXISTS),
        (FailedPreconditionError("not yet"), grpc.StatusCode.FAILED_PRECONDITION),
        (ThrottledError("slow down"), grpc.StatusCode.UNAVAILABLE),
        (AccountingUnavailableError("down"), grpc.StatusCode.UNAVAILABLE),
        (ReconnectRequiredError("reconnect"), grpc.StatusCode.FAILED_PRECONDITION),
        (CustomerNameConflictError("taken"), grpc.StatusCode.FAILED_PRECONDITION),
        (BookkeepingError("closed period", reason="CLOSED_PERIOD"), grpc.StatusCode.FAILED_PRECONDITION),
        (QbsyncError("something domain-ish"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_each_domain_error_has_its_code_and_error_info(error: QbsyncError, code: grpc.StatusCode) -> None:
    error.metadata["hint"] = "x"
    status = status_for_error(error)
    assert status.code == code.value[0]
    assert status.message == error.message
    info = detail(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain, dict(info.metadata)) == (error.reason, "qbsync", {"hint": "x"})


def test_a_validation_error_lists_every_field_violation() -> None:
    violations = [FieldViolation("payment.amount", "must be greater than zero"),
                  FieldViolation("opportunity.customer.email", "not an email")]
    status = status_for_error(ValidationError(violations))
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("payment.amount", "must be greater than zero"),
        ("opportunity.customer.email", "not an email"),
    ]


def test_throttling_says_when_to_retry() -> None:
    retry = detail(status_for_error(ThrottledError("slow down", retry_after_seconds=1.5)), error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_internal_status_says_nothing_about_the_bug() -> None:
    status = internal_status()
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert "Traceback" not in status.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (JobError("QUICKBOOKS_THROTTLED", "busy", True), grpc.StatusCode.UNAVAILABLE),
        (JobError("INTERNAL", "bug", True), grpc.StatusCode.INTERNAL),
        (JobError("SOMETHING_TRANSIENT", "again", True), grpc.StatusCode.UNAVAILABLE),
        (JobError("DUPLICATE_NAME", "taken", False), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_a_job_error_code_follows_its_reason_and_retryability(error: JobError, code: grpc.StatusCode) -> None:
    assert status_for_job_error(error).code == code.value[0]


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ((("authorization", "Bearer qbs_1_abc"),), "qbs_1_abc"),
        ((("authorization", "bearer  qbs_1_abc "),), "qbs_1_abc"),
        ((("user-agent", "x"), ("authorization", "Bearer k")), "k"),
    ],
)
def test_the_bearer_key_is_read_from_metadata(metadata: tuple[tuple[str, str], ...], key: str) -> None:
    assert presented_key(metadata) == key


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (),
        (("authorization", "Basic dXNlcjpwdw=="),),
        (("authorization", "Bearer "),),
        (("authorization", "Bearer a"), ("authorization", "Bearer b")),
    ],
)
def test_a_missing_or_malformed_authorization_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...] | None,
) -> None:
    with pytest.raises(UnauthenticatedError):
        presented_key(metadata)


def test_hundreds_of_violations_still_fit_in_the_trailers() -> None:
    violations = [FieldViolation(f"job.lines[{i}].quantity", "must be a decimal number") for i in range(500)]
    status = status_for_error(ValidationError(violations))
    assert status.ByteSize() + len(status.message) < 8 * 1024 // 2
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations][-1] == "job.lines[49].quantity"
    assert status.message == "500 invalid fields; the first 50 are listed"


def test_a_currency_refusal_is_invalid_argument_with_its_own_reason() -> None:
    violation = FieldViolation("payment.amount.currency_code", "EUR is not USD", reason="CURRENCY_NOT_SUPPORTED")
    status = status_for_error(ValidationError([violation]))
    info = detail(status, error_details_pb2.ErrorInfo)
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert info is not None and info.reason == "CURRENCY_NOT_SUPPORTED" and info.domain == "qbsync"
    assert bad_request is not None and [v.field for v in bad_request.field_violations] == [violation.field]
