"""Domain errors. Each carries a stable, machine-readable `reason` (the gRPC ErrorInfo reason)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal


class QbsyncError(Exception):
    reason = "QBSYNC_ERROR"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


# --- the caller's mistakes -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldViolation:
    """`reason` names the rule broken when a client may want to branch on it (CURRENCY_NOT_SUPPORTED);
    "" for plain bad input."""

    field: str
    description: str
    reason: str = ""


def merge_violations(
    conversion: Iterable[FieldViolation], validation: Iterable[FieldViolation]
) -> list[FieldViolation]:
    """All violations, each field judged once: a field an adapter could not convert holds a stand-in
    value, so what the core's validation says about that field would describe the stand-in, not the input."""
    conversion = list(conversion)
    rejected = {v.field for v in conversion}
    return conversion + [v for v in validation if v.field not in rejected]


class ValidationError(QbsyncError):
    """Bad input: every offending field is named, and nothing has been stored.

    The error's reason is the violations' own when they all share one (every field refused for its
    currency: CURRENCY_NOT_SUPPORTED), else INVALID_ARGUMENT.
    """

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"invalid request: {fields}")
        reasons = {v.reason for v in self.violations}
        if len(reasons) == 1 and "" not in reasons:
            self.reason = reasons.pop()


class UnauthenticatedError(QbsyncError):
    reason = "UNAUTHENTICATED"


class TooManyFailedAuthenticationsError(QbsyncError):
    """The caller's address failed to authenticate with this key id too often of late: the call is refused
    before its key is even looked at, for `retry_after_seconds`. Said alike for known and unknown key ids."""

    reason = "TOO_MANY_FAILED_AUTHENTICATIONS"

    def __init__(self, retry_after_seconds: float) -> None:
        seconds = max(1, math.ceil(retry_after_seconds))
        super().__init__(
            f"too many failed authentications; try again in {seconds} s",
            metadata={"retry_after_seconds": str(seconds)},
        )
        self.retry_after_seconds = retry_after_seconds


class TooManyStreamsError(QbsyncError):
    """The caller's API key holds as many open WatchSyncJob streams as a key may (QBSYNC_MAX_STREAMS_PER_KEY):
    one must end before another opens."""

    reason = "TOO_MANY_STREAMS"

    def __init__(self, max_streams: int) -> None:
        super().__init__(
            f"this API key has {max_streams} open WatchSyncJob streams, the most it may hold; close one first",
            metadata={"max_streams_per_key": str(max_streams)},
        )
        self.max_streams = max_streams


class PermissionDeniedError(QbsyncError):
    reason = "PERMISSION_DENIED"


class NotFoundError(QbsyncError):
    """Unknown here, or another tenant's: the two are never told apart."""

    reason = "NOT_FOUND"


class RequestIdReusedError(QbsyncError):
    """The same request_id came with a different body."""

    reason = "REQUEST_ID_REUSED"


class FailedPreconditionError(QbsyncError):
    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None, reason: str = "") -> None:
        super().__init__(message, metadata=metadata)
        if reason:
            self.reason = reason


# --- the worker's own state ------------------------------------------------------------------------


class LeaseLostError(QbsyncError):
    """The job run no longer holds its job's lease (it ran out, or another worker claimed the job): it
    stops before its next write, and leaves the job, its records and its outcome to the new owner."""

    reason = "LEASE_LOST"


# --- what the accounting system says ------------------------------------------------------------


class AccountingError(QbsyncError):
    """Something the accounting system refused or could not do.

    `retryable` tells the worker whether trying again later may succeed without a person's help.
    """

    reason = "QUICKBOOKS_ERROR"
    retryable = False
    # False for an attempt that found only that another job must run first: it is tried again later
    # without using up the job's allowance of attempts (see SyncWorker._failed).
    uses_attempt = True


class AccountingUnavailableError(AccountingError):
    """QuickBooks could not be reached or answered with a server error.

    `maybe_committed` is True when the request was sent and the write may have happened anyway
    (timeout, reset, 5xx after sending). The core does not read it and need not: R7's
    `SyncRecord.create_started` already makes any attempt after an uncertain create look first.
    """

    reason = "QUICKBOOKS_UNAVAILABLE"
    retryable = True

    def __init__(self, message: str, *, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed


class ThrottledError(AccountingError):
    reason = "QUICKBOOKS_THROTTLED"
    retryable = True

    def __init__(self, message: str, *, retry_after_seconds: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class DuplicateNameError(AccountingError):
    """The DisplayName is already used by a customer, vendor or employee (QBO 6240)."""

    reason = "DUPLICATE_NAME"

    def __init__(self, name: str) -> None:
        super().__init__(f"the name {name!r} is already used in QuickBooks")
        self.name = name


class CustomerNameConflictError(AccountingError):
    reason = "CUSTOMER_NAME_CONFLICT"


class RecordGoneError(AccountingError):
    """The QuickBooks record was deleted or voided there: it must be recreated (R6)."""

    reason = "QUICKBOOKS_RECORD_GONE"


class StaleRecordError(AccountingError):
    """The record changed in QuickBooks since qbsync last read or wrote it (a stale SyncToken, QBO 5010):
    nothing was written. `sync_token` is the record's current one; the core decides what to write with
    it. Retryable: the next attempt starts from the newest snapshot and the current SyncToken."""

    reason = "QUICKBOOKS_RECORD_CHANGED"
    retryable = True

    def __init__(self, message: str, *, sync_token: str) -> None:
        super().__init__(message)
        self.sync_token = sync_token


class LinkedRecordGoneError(AccountingError):
    """A payment links a refund expense or an invoice that was deleted or voided in QuickBooks (QBO 2500,
    "Invalid Reference Id"): recreate what it links, then write the payment again (R6)."""

    reason = "QUICKBOOKS_LINKED_RECORD_GONE"


class CustomerUnusableError(AccountingError):
    """The linked QuickBooks customer no longer exists or is inactive: re-resolve it (R1). Retryable: the
    next attempt finds or creates another."""

    reason = "QUICKBOOKS_CUSTOMER_UNUSABLE"
    retryable = True


class BookkeepingError(AccountingError):
    """QuickBooks refused the write for a reason a person must fix (closed period, bad account...)."""

    reason = "QUICKBOOKS_REJECTED"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class PaymentAlreadyDepositedError(BookkeepingError):
    """QuickBooks holds the payment in another deposit (a payment can be in one deposit only). Retryable:
    when that deposit is another payout's that no longer lists the payment, its own job releases it; a
    deposit made by hand in QuickBooks must be edited there, and the job fails once its attempts run out."""

    retryable = True

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="PAYMENT_ALREADY_DEPOSITED")


class CompanyChangedError(BookkeepingError):
    """The record was written in another QuickBooks company than the one its job syncs to now (its branch got a
    company of its own, or the connection was moved to another company: SPEC §10). QuickBooks Ids mean nothing
    across companies, so qbsync neither updates it by its old Id nor writes a second copy; a person decides."""

    def __init__(self, entity: object, was: str, now: str) -> None:
        super().__init__(
            f"{entity} was written to QuickBooks company {was}, but it now syncs to company {now}: qbsync does not "
            "move records between companies. Book it in the company it is in (reconnect that company to its branch) "
            "or void it there and have it written anew under a new id",
            reason="COMPANY_CHANGED",
        )


class InvoiceTotalMismatchError(AccountingError):
    """QuickBooks' invoice total differs from the CRM's after the write (its own tax, its rounding): the
    job fails rather than leave a balance due the customer does not owe (SPEC §8). A person looks: the
    tax setting, a rate, a line QuickBooks treats differently; a resync writes the invoice again."""

    reason = "INVOICE_TOTAL_MISMATCH"

    def __init__(self, job_id: str, crm_total: Decimal, quickbooks_total: Decimal) -> None:
        super().__init__(
            f"QuickBooks totals the invoice of job {job_id} at {quickbooks_total}, the CRM at {crm_total}: "
            "check the company's sales tax settings and the job's tax and lines, then resync",
            metadata={"crm_total": str(crm_total), "quickbooks_total": str(quickbooks_total)},
        )


class DepositTotalMismatchError(AccountingError):
    """QuickBooks' deposit total differs from the payout's amount after the write: the deposit would not
    match the bank feed (SPEC §9). The record is kept; a person looks, and a resync writes it again."""

    reason = "DEPOSIT_TOTAL_MISMATCH"

    def __init__(self, payout_id: str, amount: Decimal, quickbooks_total: Decimal) -> None:
        super().__init__(
            f"QuickBooks totals the deposit of payout {payout_id} at {quickbooks_total}, the payout is {amount}",
            metadata={"payout_amount": str(amount), "quickbooks_total": str(quickbooks_total)},
        )


class PayoutWaitingError(AccountingError):
    """A payout's deposit can only link payments (and net refunds) that are in QuickBooks as the payout
    lists them; their own sync jobs are queued. Retryable: the next attempt finds them written."""

    reason = "PAYOUT_WAITING_FOR_PAYMENTS"
    retryable = True
    uses_attempt = False  # the payments' jobs may be in a long backoff of their own (an outage)


class PayoutPaymentFailedError(AccountingError):
    """A payment (or netted refund) a payout needs failed its own sync. Retryable: that failure may be an
    outage that used up its job's attempts, which a retry of both jobs overcomes; the payout's own attempts
    run out meanwhile, and it is then listed with the payment among the sync errors."""

    reason = "PAYOUT_PAYMENT_FAILED"
    retryable = True


class ReconnectRequiredError(AccountingError):
    reason = "QUICKBOOKS_RECONNECT_REQUIRED"


# --- ours: what the caller cannot fix, or cannot even send ------------------------------------------


class UndecodableRequestError(ValidationError):
    """The request's bytes are not a message of the method's request type: a client bug or a wrong stub."""

    reason = "UNDECODABLE_REQUEST"

    def __init__(self, request_type: str) -> None:
        super().__init__([FieldViolation("request", f"the request bytes are not a valid {request_type}")])


class StorageUnavailableError(QbsyncError):
    """The database could not be reached or dropped the connection (restarted, failed over, file unreadable).

    Nothing the caller sent is wrong and nothing of the operation was committed, so trying again later
    may succeed without anyone's help: `retryable` is True, as for AccountingError's transient kinds.
    """

    reason = "DATABASE_UNAVAILABLE"
    retryable = True

    def __init__(self, message: str = "the database is unavailable; try again shortly") -> None:
        super().__init__(message)


# How much of a caller's value an error description repeats: enough to recognise it, and short enough
# that a megabyte of bad input cannot make an error bigger than what clients accept (SPEC.md section 7).
MAX_QUOTED_LENGTH = 64


def quoted(value: str) -> str:
    """`value` as a Python literal, cut to its first MAX_QUOTED_LENGTH characters (marked by "…")."""
    if len(value) <= MAX_QUOTED_LENGTH:
        return repr(value)
    return repr(value[:MAX_QUOTED_LENGTH]) + "…"
