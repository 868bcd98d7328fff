"""Domain errors become precise gRPC statuses with ErrorInfo (domain qbsync) and helpful details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from adapters.grpc.auth import presented_key
from adapters.grpc.status import (
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    MAX_TEXT_LENGTH,
    internal_status,
    status_for_error,
    status_for_job_error,
)
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
    StorageUnavailableError,
    ThrottledError,
    UnauthenticatedError,
    UndecodableRequestError,
    ValidationError,
    quoted,
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
        (StorageUnavailableError(), grpc.StatusCode.UNAVAILABLE),
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
    violations = [
        FieldViolation("payment.amount", "must be greater than zero"),
        FieldViolation("opportunity.customer.email", "not an email"),
    ]
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
    assert status.ByteSize() <= MAX_STATUS_BYTES
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    shown = [v.field for v in bad_request.field_violations]
    assert shown == [f"job.lines[{i}].quantity" for i in range(len(shown))]  # the first ones, in order
    assert 50 <= len(shown) < 500
    assert status.message == f"invalid request: 500 invalid fields; the first {len(shown)} are listed"


def test_a_few_violations_are_named_in_the_message_and_the_rest_counted() -> None:
    violations = [FieldViolation(f"payments[{i}].amount", "x" * 2000) for i in range(20)]
    status = status_for_error(ValidationError(violations))
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    shown = len(bad_request.field_violations)
    assert 0 < shown < 20
    descriptions = [v.description for v in bad_request.field_violations]
    assert all(len(d) == MAX_TEXT_LENGTH and d.endswith("…") for d in descriptions)
    assert status.message.endswith(f"payments[{shown - 1}].amount and {20 - shown} more")
    assert status.ByteSize() <= MAX_STATUS_BYTES


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_any_validation_error_fits_the_budget_whatever_its_text(char: str) -> None:
    huge = char * 20_000
    violations = [FieldViolation(huge, huge), *(FieldViolation(f"f{i}{huge}", huge) for i in range(100))]
    error = ValidationError(violations)
    error.metadata["value"] = huge
    status = status_for_error(error)
    assert status.ByteSize() <= MAX_STATUS_BYTES
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field.startswith(char * 10)  # the first field is still named


def test_any_other_error_message_is_cut_to_the_budget_without_splitting_a_character() -> None:
    status = status_for_error(FailedPreconditionError("€" * 10_000))
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    assert status.message.endswith("€…")


def test_a_database_outage_is_unavailable_with_a_reason_and_when_to_retry() -> None:
    status = status_for_error(StorageUnavailableError())
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    info = detail(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("DATABASE_UNAVAILABLE", "qbsync")
    retry = detail(status, error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() > 0


def test_undecodable_bytes_are_invalid_argument_with_their_own_reason() -> None:
    status = status_for_error(UndecodableRequestError("qbsync.v1.SyncPaymentRequest"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info = detail(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "UNDECODABLE_REQUEST"
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == ["request"]
    assert "qbsync.v1.SyncPaymentRequest" in bad_request.field_violations[0].description


@pytest.mark.parametrize(
    ("value", "shown"), [("abc", "'abc'"), ("x" * 64, repr("x" * 64)), ("y" * 65, repr("y" * 64) + "…")]
)
def test_a_quoted_value_is_cut_to_its_first_64_characters(value: str, shown: str) -> None:
    assert quoted(value) == shown


def test_a_currency_refusal_is_invalid_argument_with_its_own_reason() -> None:
    violation = FieldViolation("payment.amount.currency_code", "EUR is not USD", reason="CURRENCY_NOT_SUPPORTED")
    status = status_for_error(ValidationError([violation]))
    info = detail(status, error_details_pb2.ErrorInfo)
    bad_request = detail(status, error_details_pb2.BadRequest)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert info is not None and info.reason == "CURRENCY_NOT_SUPPORTED" and info.domain == "qbsync"
    assert bad_request is not None and [v.field for v in bad_request.field_violations] == [violation.field]
