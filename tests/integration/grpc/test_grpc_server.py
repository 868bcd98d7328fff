"""The gRPC adapter for real: build_server on a loopback port, called through the generated stubs.

The core's SyncService is replaced by a small double with the same signatures and contract (it checks
permissions first, then reports the adapter's conversion violations with what core.validation finds, as
the real one does), so that these tests are about
the adapter: authentication, conversion, error statuses, streaming, health, reflection and stopping.

(No __init__.py here on purpose: as a package this folder would be imported as `grpc` by pytest.)
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from adapters.grpc.server import SYNC_SERVICE_NAME, build_server, serve_until_signalled, stop_gracefully
from adapters.grpc.servicer import SyncServicer
from core.currency import AmountCurrency, CompanyCurrency, currency_violations
from core.domain import (
    EntityRef,
    EntityType,
    Job,
    Opportunity,
    Payment,
    Permission,
    Principal,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
)
from core.errors import (
    FieldViolation,
    NotFoundError,
    StorageUnavailableError,
    UnauthenticatedError,
    ValidationError,
    merge_violations,
)
from core.service import require
from core.validation import validate_job_request, validate_payment_request
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEYS = {
    "all-key": Principal("acme", frozenset(Permission)),
    "read-key": Principal("acme", frozenset({Permission.READ})),
}
KEY_WHILE_THE_DATABASE_IS_DOWN = "db-down-key"
SECRET_IN_A_BUG = "postgresql://qbsync:hunter2@db"


def authenticate(key: str, peer: str) -> Principal:
    if key == KEY_WHILE_THE_DATABASE_IS_DOWN:
        raise StorageUnavailableError()  # what core.auth.ApiKeys raises when the key lookup cannot connect
    try:
        return KEYS[key]
    except KeyError:
        raise UnauthenticatedError("unknown API key") from None


class FakeSyncService:
    """core.service.SyncService's signatures and errors, over a dict of jobs."""

    def __init__(self) -> None:
        self.jobs: dict[str, SyncJob] = {}
        self.accepted: list[str] = []
        self._lock = threading.Lock()

    def _accept(self, principal: Principal, target: EntityRef, opportunity: Opportunity) -> SyncJob:
        with self._lock:
            job_id = f"j{len(self.jobs) + 1}"
            job = SyncJob(
                job_id,
                principal.tenant_id,
                SyncJobKind.SYNC_PAYMENT,
                target,
                opportunity.opportunity_id,
                opportunity.customer.customer_id,
                T0,
                T0,
            )
            self.jobs[job_id] = job
            self.accepted.append(job.name)
            return job

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
        require(principal, Permission.SYNC)
        violations = validate_payment_request(opportunity, payment, request_id)
        violations += currency_violations(currencies, CompanyCurrency())  # a tenant not connected yet
        _raise_if_any(merge_violations(conversion_violations, violations))
        return self._accept(principal, EntityRef(EntityType.PAYMENT, payment.payment_id), opportunity)

    def close_out_job(
        self,
        principal: Principal,
        opportunity: Opportunity,
        job: Job,
        payments: list[Payment],
        request_id: str = "",
        *,
        currencies: Sequence[AmountCurrency] = (),
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncJob:
        require(principal, Permission.SYNC)
        violations = validate_job_request(opportunity, job, payments, request_id)
        violations += currency_violations(currencies, CompanyCurrency())
        _raise_if_any(merge_violations(conversion_violations, violations))
        return self._accept(principal, EntityRef(EntityType.INVOICE, job.job_id), opportunity)

    sync_invoice = close_out_job

    def get_job(self, principal: Principal, name: str) -> SyncJob:
        require(principal, Permission.READ)
        with self._lock:
            job = self.jobs.get(name.removeprefix("syncJobs/"))
        if job is None or job.tenant_id != principal.tenant_id:
            raise NotFoundError(f"{name} not found")
        return replace(job)

    def advance(self, name: str, state: SyncJobState, seconds: int) -> None:
        """What a worker would do to the job."""
        with self._lock:
            job = self.jobs[name.removeprefix("syncJobs/")]
            job.state = state
            job.attempts += state is SyncJobState.RUNNING
            job.update_time = T0 + timedelta(seconds=seconds)

    def get_status(
        self,
        principal: Principal,
        entity: EntityRef,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> SyncRecord:
        require(principal, Permission.READ)
        _raise_if_any(merge_violations(conversion_violations, _entity_violations(entity)))
        return SyncRecord(tenant_id=principal.tenant_id, entity=entity)

    def get_link(
        self,
        principal: Principal,
        entity: EntityRef,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> str:
        require(principal, Permission.QUICKBOOKS_VIEW)
        _raise_if_any(merge_violations(conversion_violations, _entity_violations(entity)))
        raise RuntimeError(f"a bug that mentions {SECRET_IN_A_BUG}")

    def list_errors(self, principal: Principal, page_size: int, page_token: str) -> tuple[list[SyncJob], str]:
        require(principal, Permission.READ)
        return list(self.jobs.values())[:1], "1"

    def retry(self, principal: Principal, name: str) -> SyncJob:
        return self.get_job(principal, name)


def _entity_violations(entity: EntityRef) -> list[FieldViolation]:
    """As SyncService judges an entity: the adapter passes a blank id on, the use case reports it."""
    return [] if entity.id.strip() else [FieldViolation("entity.id", "is required")]


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise ValidationError(violations)


@dataclass
class Served:
    server: grpc.Server
    channel: grpc.Channel
    stub: sync_service_pb2_grpc.SyncServiceStub
    service: FakeSyncService


@pytest.fixture
def served() -> Iterator[Served]:
    service = FakeSyncService()
    servicer = SyncServicer(service, poll_seconds=0.02)  # type: ignore[arg-type]
    server, port = build_server(servicer, authenticate, "127.0.0.1:0", max_workers=8)
    assert port > 0
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(server, channel, sync_service_pb2_grpc.SyncServiceStub(channel), service)
    finally:
        channel.close()
        server.stop(0).wait()


def key(name: str = "all-key") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {name}")]


def money(units: int, nanos: int = 0) -> Money:
    return Money(currency_code="USD", units=units, nanos=nanos)


def opportunity(**customer: str) -> r.Opportunity:
    fields = {"customer_id": "c-1", "first_name": "Mary", "last_name": "O'Brien", "email": "mary@example.com"}
    return r.Opportunity(opportunity_id="opp-1", number="1001", customer=r.Customer(**(fields | customer)))


def payment(
    payment_id: str = "pay-1", amount: Money | None = None, refunds: list[r.Refund] | None = None, **fields: object
) -> r.Payment:
    message = r.Payment(
        payment_id=payment_id,
        amount=amount or money(500),
        method=r.PAYMENT_METHOD_CHECK,
        received_time=Timestamp(seconds=1_767_312_000),
        refunds=refunds or [],
    )
    for name, value in fields.items():
        if value is None:
            message.ClearField(name)
    return message


def refund(refund_id: str, amount: Money) -> r.Refund:
    return r.Refund(refund_id=refund_id, amount=amount, refunded_time=Timestamp(seconds=1_767_312_600))


def error_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo, list[str]]:
    """The call's code, its ErrorInfo and the fields its BadRequest names."""
    status = rpc_status.from_call(error)
    assert status is not None, "the status carries no details"
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
    assert info.domain == "qbsync"
    return error.code(), info, [v.field for v in bad_request.field_violations]


# --- authentication -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [[], [("authorization", "Bearer stolen-key")], [("authorization", "all-key")]])
def test_a_call_without_a_valid_key_is_unauthenticated(served: Served, metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.GetSyncJob(s.GetSyncJobRequest(name="syncJobs/j1"), metadata=metadata)
    code, info, _ = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def test_a_stream_without_a_key_is_unauthenticated(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(served.stub.WatchSyncJob(s.GetSyncJobRequest(name="syncJobs/j1")))
    assert error_of(raised.value)[0] == grpc.StatusCode.UNAUTHENTICATED


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_payment_input_names_every_field(served: Served) -> None:
    request = s.SyncPaymentRequest(
        opportunity=opportunity(first_name="", last_name="", email="mary-at-example"),
        payment=payment(amount=money(100), refunds=[refund("ref-1", money(60)), refund("ref-2", money(50))]),
    )
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.SyncPayment(request, metadata=key())
    code, info, fields = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert sorted(fields) == ["opportunity.customer.email", "opportunity.customer.last_name", "payment.refunds"]
    assert served.service.accepted == []


def test_conversion_and_validation_violations_come_together(served: Served) -> None:
    request = s.SyncPaymentRequest(
        opportunity=opportunity(email="not an email"),
        payment=payment(amount=money(-20), received_time=None, refunds=[refund("ref-1", money(1, 5))]),
    )
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.SyncPayment(request, metadata=key())
    code, _, fields = error_of(raised.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == [
        "opportunity.customer.email",
        "payment.amount",
        "payment.received_time",
        "payment.refunds[0].amount",
    ]
    assert served.service.accepted == []


def test_bad_close_out_input_names_every_field(served: Served) -> None:
    line = r.InvoiceLine(description="Movers", quantity="three", unit_price=money(120), amount=money(360))
    request = s.CloseOutJobRequest(
        opportunity=opportunity(first_name="", last_name="", email="x@"),
        job=r.Job(job_id="job-1", number="J-1", service_date=Date(year=2026, month=3, day=1), lines=[line]),
        payments=[
            payment("pay-1", amount=money(-5)),
            payment("pay-2", amount=money(10), refunds=[refund("ref-1", money(10, 10_000_000))]),
        ],
    )
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.CloseOutJob(request, metadata=key())
    code, _, fields = error_of(raised.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == [
        "job.lines[0].quantity",
        "opportunity.customer.email",
        "opportunity.customer.last_name",
        "payments[0].amount",
        "payments[1].refunds",
    ]


def test_without_the_permission_bad_input_is_still_permission_denied(served: Served) -> None:
    request = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment(received_time=None))
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.SyncPayment(request, metadata=key("read-key"))
    code, info, _ = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


# --- errors that are ours (SPEC.md section 7) -------------------------------------------------------------

# Bytes that no protobuf parser accepts: a length-delimited field 1 whose length runs past the end.
UNDECODABLE = b"\x0a\xff\xff\xff\x0f"
SYNC_METHODS = [m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods]
STREAMING_METHODS = {m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods if m.server_streaming}


def call_raw(channel: grpc.Channel, method: str, data: bytes, metadata: list[tuple[str, str]]) -> None:
    """Sends `data` as the request of `method`, bytes as they are; consumes a streamed answer."""
    path = f"/{SYNC_SERVICE_NAME}/{method}"
    if method in STREAMING_METHODS:
        list(channel.unary_stream(path)(data, metadata=metadata, timeout=10))
    else:
        channel.unary_unary(path)(data, metadata=metadata, timeout=10)


@pytest.mark.parametrize("method", SYNC_METHODS)
def test_undecodable_request_bytes_are_invalid_argument_on_every_method(served: Served, method: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call_raw(served.channel, method, UNDECODABLE, key())
    code, info, fields = error_of(raised.value)
    assert (code, info.reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_REQUEST", ["request"])
    assert served.service.accepted == []


def test_undecodable_bytes_from_a_caller_without_a_key_are_unauthenticated(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call_raw(served.channel, "SyncPayment", UNDECODABLE, [])
    assert error_of(raised.value)[0] == grpc.StatusCode.UNAUTHENTICATED


def test_a_decodable_raw_request_is_served_as_usual(served: Served) -> None:
    data = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()).SerializeToString()
    call_raw(served.channel, "SyncPayment", data, key())
    assert served.service.accepted == ["syncJobs/j1"]


@pytest.mark.parametrize("quantity", ["9E+999999", "1e-999999", "NaN", "-Infinity", "1" * 100_000, "²", "٣"])
def test_a_quantity_beyond_any_decimal_is_invalid_argument_naming_it(served: Served, quantity: str) -> None:
    line = r.InvoiceLine(description="Movers", quantity=quantity, unit_price=money(120), amount=money(360))
    request = s.CloseOutJobRequest(
        opportunity=opportunity(),
        job=r.Job(job_id="job-1", number="J-1", service_date=Date(year=2026, month=3, day=1), lines=[line]),
    )
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.CloseOutJob(request, metadata=key())
    code, _, fields = error_of(raised.value)
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["job.lines[0].quantity"])
    assert served.service.accepted == []


def trailer_bytes(error: grpc.RpcError) -> int:
    """What the error's trailers take on the wire: binary values travel base64-encoded."""
    total = 0
    for name, value in error.trailing_metadata() or ():
        encoded = len(base64.b64encode(value)) if isinstance(value, bytes) else len(value.encode())
        total += len(name) + encoded
    return total + len(urllib.parse.quote(error.details() or "", safe=" "))


def test_a_sixteen_thousand_character_email_names_the_field_within_8_kib(served: Served) -> None:
    email = "m" * 16_000 + "@@example.com"
    request = s.SyncPaymentRequest(opportunity=opportunity(email=email), payment=payment())
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.SyncPayment(request, metadata=key())
    code, _, fields = error_of(raised.value)
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["opportunity.customer.email"])
    assert trailer_bytes(raised.value) < 8 * 1024
    status = rpc_status.from_call(raised.value)
    assert status is not None and len(status.SerializeToString()) < 8 * 1024
    assert "m" * 64 in str(status.details[-1].value) and "m" * 65 not in str(status.details[-1].value)


def test_thousands_of_bad_lines_still_get_their_invalid_argument_within_8_kib(served: Served) -> None:
    lines = [r.InvoiceLine(description="é" * 500, quantity="x" * 90, amount=money(1)) for _ in range(3000)]
    request = s.CloseOutJobRequest(
        opportunity=opportunity(),
        job=r.Job(job_id="job-1", number="J-1", service_date=Date(year=2026, month=3, day=1), lines=lines),
    )
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.CloseOutJob(request, metadata=key())
    code, _, fields = error_of(raised.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields[0] == "job.lines[0].quantity"
    assert trailer_bytes(raised.value) < 8 * 1024
    assert "more" in (raised.value.details() or "")


def test_a_database_outage_during_the_key_lookup_is_unavailable(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.GetSyncJob(s.GetSyncJobRequest(name="syncJobs/j1"), metadata=key(KEY_WHILE_THE_DATABASE_IS_DOWN))
    code, info, _ = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")


# --- answers and errors --------------------------------------------------------------------------------


def test_an_accepted_payment_returns_a_pending_job(served: Served) -> None:
    job = served.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=key())
    assert (job.name, job.state) == ("syncJobs/j1", r.SyncJob.STATE_PENDING)
    assert job.target == r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")
    errors = served.stub.ListSyncErrors(s.ListSyncErrorsRequest(page_size=1), metadata=key())
    assert [j.name for j in errors.sync_jobs] == ["syncJobs/j1"] and errors.next_page_token == "1"


def test_an_unknown_job_is_not_found(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.GetSyncJob(s.GetSyncJobRequest(name="syncJobs/nope"), metadata=key())
    code, info, _ = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


def test_an_entity_without_type_or_id_is_invalid(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=r.EntityRef()), metadata=key())
    assert error_of(raised.value)[::2] == (grpc.StatusCode.INVALID_ARGUMENT, ["entity.type", "entity.id"])


def test_a_bug_is_internal_logged_and_tells_the_caller_nothing(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    request = s.GetQuickBooksLinkRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1"))
    with caplog.at_level(logging.ERROR, logger="adapters.grpc.errors"), pytest.raises(grpc.RpcError) as raised:
        served.stub.GetQuickBooksLink(request, metadata=key())
    code, info, _ = error_of(raised.value)
    assert (code, info.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert SECRET_IN_A_BUG not in str(raised.value.details()) + str(raised.value.trailing_metadata())
    assert any("GetQuickBooksLink" in rec.getMessage() and rec.exc_info for rec in caplog.records)


# --- watching ---------------------------------------------------------------------------------------------


def test_watch_streams_each_change_until_the_job_is_done(served: Served) -> None:
    name = served.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=key()
    ).name

    def worker() -> None:
        for seconds, state in enumerate((SyncJobState.RUNNING, SyncJobState.SUCCEEDED), start=1):
            time.sleep(0.15)
            served.service.advance(name, state, seconds)

    threading.Thread(target=worker, daemon=True).start()
    updates = list(served.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key("read-key"), timeout=10))
    assert [(u.state, u.attempts) for u in updates] == [
        (r.SyncJob.STATE_PENDING, 0),
        (r.SyncJob.STATE_RUNNING, 1),
        (r.SyncJob.STATE_SUCCEEDED, 1),
    ]


def test_watching_an_unknown_job_is_not_found(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(served.stub.WatchSyncJob(s.GetSyncJobRequest(name="syncJobs/nope"), metadata=key()))
    assert error_of(raised.value)[0] == grpc.StatusCode.NOT_FOUND


def test_a_watch_ends_when_the_caller_cancels(served: Served) -> None:
    name = served.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=key()
    ).name
    stream = served.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key())
    assert next(stream).state == r.SyncJob.STATE_PENDING
    stream.cancel()
    with pytest.raises(grpc.RpcError) as raised:
        next(stream)
    assert raised.value.code() == grpc.StatusCode.CANCELLED


# --- health, reflection, stopping ------------------------------------------------------------------------


def test_health_answers_serving_without_a_key(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", "qbsync.v1.SyncService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(served: Served) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    [response] = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name for service in response.list_services_response.service}
    assert {"qbsync.v1.SyncService", "grpc.health.v1.Health"} <= names


def test_a_graceful_stop_turns_health_not_serving_first(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="qbsync.v1.SyncService"), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stopper = threading.Thread(target=stop_gracefully, args=(served.server, 2))
    stopper.start()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    stopper.join(timeout=10)
    assert not stopper.is_alive()


def test_sigterm_stops_the_server(served: Served) -> None:
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    serve_until_signalled(served.server, grace_seconds=1)  # returns once stopped
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.GetSyncJob(s.GetSyncJobRequest(name="syncJobs/j1"), metadata=key(), timeout=2)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


# --- streams: no thread each, errors after the start, graceful stop -----------------------------------


class FlakySyncService(FakeSyncService):
    """get_job raises `failure` once it is set: what a stream's later re-read may meet."""

    failure: Exception | None = None

    def get_job(self, principal: Principal, name: str) -> SyncJob:
        if self.failure is not None:
            raise self.failure
        return super().get_job(principal, name)


@pytest.fixture
def small() -> Iterator[Served]:
    """Two server threads only, and three streams per key."""
    service = FlakySyncService()
    servicer = SyncServicer(service, poll_seconds=0.02, max_streams_per_key=3)  # type: ignore[arg-type]
    server, port = build_server(servicer, authenticate, "127.0.0.1:0", max_workers=2)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(server, channel, sync_service_pb2_grpc.SyncServiceStub(channel), service)
    finally:
        channel.close()
        server.stop(0).wait()


def _pending_job(served: Served) -> str:
    return served.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=key()
    ).name


def test_streams_beyond_the_thread_count_leave_unary_calls_answered(small: Served) -> None:
    name = _pending_job(small)
    streams = [small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key(k)) for k in ("all-key",) * 3]
    streams += [small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key("read-key")) for _ in range(3)]
    assert all(next(stream).state == r.SyncJob.STATE_PENDING for stream in streams)  # 6 streams, 2 threads
    health = health_pb2_grpc.HealthStub(small.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING
    assert small.stub.GetSyncJob(s.GetSyncJobRequest(name=name), metadata=key(), timeout=2).name == name
    small.service.advance(name, SyncJobState.RUNNING, 1)
    assert all(next(stream).state == r.SyncJob.STATE_RUNNING for stream in streams)


def test_a_fourth_stream_of_a_key_is_resource_exhausted(small: Served) -> None:
    name = _pending_job(small)
    streams = [small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key()) for _ in range(3)]
    assert all(next(stream).state == r.SyncJob.STATE_PENDING for stream in streams)
    with pytest.raises(grpc.RpcError) as raised:
        list(small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key(), timeout=5))
    code, info, _ = error_of(raised.value)
    assert (code, info.reason, info.metadata["max_streams_per_key"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS",
        "3",
    )


@pytest.mark.parametrize(
    ("failure", "code", "reason"),
    [
        (StorageUnavailableError(), grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE"),
        (RuntimeError(f"a bug that mentions {SECRET_IN_A_BUG}"), grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
)
def test_a_stream_whose_reread_fails_ends_with_the_mapped_status(
    small: Served, failure: Exception, code: grpc.StatusCode, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = _pending_job(small)
    stream = small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key(), timeout=5)
    assert next(stream).state == r.SyncJob.STATE_PENDING
    assert isinstance(small.service, FlakySyncService)
    small.service.failure = failure
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as raised:
        next(stream)
    got, info, _ = error_of(raised.value)
    assert (got, info.reason) == (code, reason)
    assert SECRET_IN_A_BUG not in str(raised.value.details()) + str(raised.value.trailing_metadata())


def test_a_graceful_stop_ends_open_streams_within_the_grace(small: Served) -> None:
    name = _pending_job(small)
    stream = small.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=key(), timeout=30)
    assert next(stream).state == r.SyncJob.STATE_PENDING
    started = time.monotonic()
    stop_gracefully(small.server, 0.5)
    assert time.monotonic() - started < 3
    with pytest.raises(grpc.RpcError):
        next(stream)
