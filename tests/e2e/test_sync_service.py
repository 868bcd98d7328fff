"""SyncService end to end: generated stubs → gRPC over loopback → core → SQLite + fake QuickBooks."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from core.domain import Permission
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import Server


def money(amount: str) -> Money:
    value = Decimal(amount)
    units = int(value)
    return Money(currency_code="USD", units=units, nanos=int((value - units) * 10**9))


def ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=1767312000 + seconds)


def opportunity(customer_id: str = "cust-1", opportunity_id: str = "opp-1") -> r.Opportunity:
    return r.Opportunity(
        opportunity_id=opportunity_id,
        number="1001",
        customer=r.Customer(customer_id=customer_id, first_name="Mary", last_name="O'Brien", email="mary@example.com"),
    )


def payment(payment_id: str = "pay-1", amount: str = "500.00", refunds: list[r.Refund] | None = None) -> r.Payment:
    return r.Payment(
        payment_id=payment_id,
        amount=money(amount),
        method=r.PAYMENT_METHOD_CREDIT_CARD,
        received_time=ts(0),
        reference="deposit",
        refunds=refunds or [],
    )


def refund(refund_id: str, amount: str) -> r.Refund:
    return r.Refund(refund_id=refund_id, amount=money(amount), refunded_time=ts(60), memo="changed the date")


def job(job_id: str = "job-1", unit_price: str = "120.00", quantity: str = "5") -> r.Job:
    amount = str(Decimal(quantity) * Decimal(unit_price))
    return r.Job(
        job_id=job_id,
        number="J-1001",
        service_date=Date(year=2026, month=1, day=10),
        lines=[
            r.InvoiceLine(
                description="Movers (hours)", quantity=quantity, unit_price=money(unit_price), amount=money(amount)
            )
        ],
    )


def finished(server: Server, name: str, md: list[tuple[str, str]]) -> r.SyncJob:
    """Watches the job until it is done, as a CRM's UI would."""
    last = None
    for update in server.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=30):
        last = update
    assert last is not None
    return last


def entity(kind: int, crm_id: str) -> r.EntityRef:
    return r.EntityRef(type=kind, id=crm_id)


def test_deposit_with_two_refunds_then_close_out(server: Server) -> None:
    md = server.key("acme")
    deposit = payment(refunds=[refund("ref-1", "50.00"), refund("ref-2", "25.50")])
    accepted = server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=deposit), metadata=md)
    assert accepted.state == r.SyncJob.STATE_PENDING and accepted.name.startswith("syncJobs/")

    done = finished(server, accepted.name, md)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error
    actions = {(res.entity.type, res.entity.id): res.action for res in done.results}
    assert actions[(r.ENTITY_TYPE_CUSTOMER, "cust-1")] == r.SYNC_ACTION_CREATED
    assert actions[(r.ENTITY_TYPE_REFUND, "ref-1")] == r.SYNC_ACTION_CREATED
    assert actions[(r.ENTITY_TYPE_PAYMENT, "pay-1")] == r.SYNC_ACTION_CREATED

    qbo = server.companies.for_tenant("acme")
    assert qbo.live("Invoice") == []  # R3: a deposit is a payment only
    [qbo_payment] = qbo.live("Payment")
    assert qbo.unapplied_amount(qbo_payment.id) == Decimal("424.50")  # linked to both refund expenses
    assert sorted(t.total for t in qbo.live("Purchase")) == [Decimal("25.50"), Decimal("50.00")]

    closing = server.stub.CloseOutJob(
        s.CloseOutJobRequest(opportunity=opportunity(), job=job(), payments=[deposit]), metadata=md
    )
    done = finished(server, closing.name, md)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error
    [invoice] = qbo.live("Invoice")
    assert invoice.total == Decimal("600.00")
    assert qbo.invoice_balance(invoice.id) == Decimal("175.50")  # 600 − (500 − 75.50)
    assert qbo.unapplied_amount(qbo_payment.id) == Decimal("0.00")

    status = server.stub.GetSyncStatus(
        s.GetSyncStatusRequest(entity=entity(r.ENTITY_TYPE_INVOICE, "job-1")), metadata=md
    )
    assert status.state == r.SYNC_STATE_SYNCED and status.quickbooks_id == invoice.id and status.resync_available
    link = server.stub.GetQuickBooksLink(
        s.GetQuickBooksLinkRequest(entity=entity(r.ENTITY_TYPE_INVOICE, "job-1")), metadata=md
    )
    assert f"invoice?txnId={invoice.id}" in link.url and "deeplinkcompanyid=" in link.url


def test_resync_after_an_amount_change_updates_in_place(server: Server) -> None:
    md = server.key("acme")
    first = server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md)
    assert finished(server, first.name, md).state == r.SyncJob.STATE_SUCCEEDED
    again = server.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=payment(amount="650.25")), metadata=md
    )
    assert again.resync
    done = finished(server, again.name, md)
    assert done.state == r.SyncJob.STATE_SUCCEEDED
    assert [res.action for res in done.results if res.entity.type == r.ENTITY_TYPE_PAYMENT] == [r.SYNC_ACTION_UPDATED]
    [qbo_payment] = server.companies.for_tenant("acme").live("Payment")
    assert qbo_payment.total == Decimal("650.25")


def test_request_id_makes_a_call_idempotent(server: Server) -> None:
    md = server.key("acme")
    request = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment(), request_id="crm-42")
    first = server.stub.SyncPayment(request, metadata=md)
    second = server.stub.SyncPayment(request, metadata=md)
    assert first.name == second.name
    finished(server, first.name, md)
    assert len(server.companies.for_tenant("acme").live("Payment")) == 1

    changed = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment(amount="1.00"), request_id="crm-42")
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(changed, metadata=md)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def _error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status")


def test_authentication_permissions_and_tenants(server: Server) -> None:
    request = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment())
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _error_info(err.value).domain == "qbsync"
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(request, metadata=[("authorization", "Bearer qbs_nope_nope")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    reader = server.key("acme", Permission.READ)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(request, metadata=reader)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    acme = server.key("acme")
    accepted = server.stub.SyncPayment(request, metadata=acme)
    finished(server, accepted.name, acme)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetQuickBooksLink(
            s.GetQuickBooksLinkRequest(entity=entity(r.ENTITY_TYPE_PAYMENT, "pay-1")), metadata=reader
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    other = server.key("globex")
    for call in (
        lambda: server.stub.GetSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=other),
        lambda: server.stub.GetSyncStatus(
            s.GetSyncStatusRequest(entity=entity(r.ENTITY_TYPE_PAYMENT, "pay-1")), metadata=other
        ),
        lambda: server.stub.RetrySync(s.RetrySyncRequest(name=accepted.name), metadata=other),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_input_names_every_field_and_stores_nothing(server: Server) -> None:
    md = server.key("acme")
    bad_opportunity = r.Opportunity(
        opportunity_id="opp-9", customer=r.Customer(customer_id="cust-9", email="not-an-email")
    )
    bad_payment = payment("pay-9", amount="-5.00", refunds=[refund("ref-9", "10.00")])
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=bad_opportunity, payment=bad_payment), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields |= {v.field for v in bad.field_violations}
    assert {"payment.amount", "opportunity.customer.email", "opportunity.customer.last_name"} <= fields

    over = payment("pay-9", amount="100.00", refunds=[refund("ref-9", "60.00"), refund("ref-10", "50.00")])
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=over), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payment.refunds" in str(err.value.details())

    with pytest.raises(grpc.RpcError) as err:
        server.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=entity(r.ENTITY_TYPE_PAYMENT, "pay-9")), metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was stored
    assert server.companies.for_tenant("acme").request_count == 0


def _refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, set[str]]:
    """The code, the ErrorInfo reason and the BadRequest fields of a refused call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields |= {v.field for v in bad.field_violations}
    return err.code(), _error_info(err).reason, fields


def _unconvertible_payment() -> r.Payment:
    """A payment protobuf holds but the core cannot: mixed-sign money, no received_time."""
    bad = payment("pay-9")
    bad.amount.CopyFrom(Money(currency_code="USD", units=5, nanos=-10_000_000))
    bad.ClearField("received_time")
    return bad


def _unconvertible_job() -> r.Job:
    line = r.InvoiceLine(description="Movers", quantity="three", unit_price=money("120.00"), amount=money("360.00"))
    return r.Job(job_id="job-9", number="J-9", service_date=Date(year=2026, month=1, day=10), lines=[line])


def test_bad_input_with_the_permission_is_one_invalid_argument_naming_conversion_and_validation(
    server: Server,
) -> None:
    """What the adapter could not convert and what the core's rules refuse (the customer's email, a foreign
    currency) come back together, in one INVALID_ARGUMENT."""
    md = server.key("acme")
    bad_customer = r.Opportunity(
        opportunity_id="opp-9", customer=r.Customer(customer_id="cust-9", last_name="Doe", email="not-an-email")
    )
    bad = _unconvertible_payment()
    bad.refunds.append(refund("ref-9", "1.00"))
    bad.refunds[0].amount.currency_code = "EUR"
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=bad_customer, payment=bad), metadata=md)
    assert _refusal(err.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {
            "payment.amount",  # conversion: mixed signs
            "payment.received_time",  # conversion: missing
            "opportunity.customer.email",  # validation
            "payment.refunds[0].amount.currency_code",  # the currency rule
        },
    )

    request = s.CloseOutJobRequest(opportunity=bad_customer, job=_unconvertible_job(), payments=[payment("pay-9")])
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CloseOutJob(request, metadata=md)
    assert _refusal(err.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"job.lines[0].quantity", "opportunity.customer.email"},
    )
    assert server.companies.for_tenant("acme").request_count == 0


def test_without_the_permission_bad_input_is_permission_denied_not_invalid_argument(server: Server) -> None:
    """The permission is checked before the input, conversion's findings included: a caller without it
    learns nothing from bad input that good input would not tell it."""
    everything = server.key("acme")
    reader = server.key("acme", Permission.READ)
    syncer = server.key("acme", Permission.SYNC)
    bad_payment = s.SyncPaymentRequest(opportunity=opportunity(), payment=_unconvertible_payment())
    bad_close_out = s.CloseOutJobRequest(
        opportunity=opportunity(), job=_unconvertible_job(), payments=[_unconvertible_payment()]
    )
    bad_invoice = s.SyncInvoiceRequest(
        opportunity=opportunity(), job=_unconvertible_job(), payments=[_unconvertible_payment()]
    )
    # A day that does not exist (conversion refuses it) and fees that are not cents (validation does).
    bad_payout = s.SyncPayoutRequest(
        payout=r.Payout(
            payout_id="po-1",
            arrival_date=Date(year=2026, month=2, day=30),
            amount=money("100.00"),
            payment_ids=["pay-1"],
            fees=money("0.001"),
        )
    )
    no_entity = r.EntityRef()  # no type, no id: conversion refuses both
    calls: dict[str, tuple[Callable[[list[tuple[str, str]]], object], list[tuple[str, str]]]] = {
        "SyncPayment": (lambda md: server.stub.SyncPayment(bad_payment, metadata=md), reader),
        "CloseOutJob": (lambda md: server.stub.CloseOutJob(bad_close_out, metadata=md), reader),
        "SyncInvoice": (lambda md: server.stub.SyncInvoice(bad_invoice, metadata=md), reader),
        "SyncPayout": (lambda md: server.stub.SyncPayout(bad_payout, metadata=md), reader),
        "GetSyncStatus": (
            lambda md: server.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=no_entity), metadata=md),
            syncer,
        ),
        "GetQuickBooksLink": (
            lambda md: server.stub.GetQuickBooksLink(s.GetQuickBooksLinkRequest(entity=no_entity), metadata=md),
            reader,
        ),
    }
    for method, (call, lacking_the_permission) in calls.items():
        with pytest.raises(grpc.RpcError) as denied:
            call(lacking_the_permission)
        code, reason, fields = _refusal(denied.value)
        assert (code, reason, fields) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", set()), method
        with pytest.raises(grpc.RpcError) as invalid:
            call(everything)  # the same request is bad: only the permission hid it
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
    assert server.companies.for_tenant("acme").request_count == 0


def test_health_and_reflection_answer_without_a_key(server: Server) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "qbsync.v1.SyncService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {svc.name for response in responses for svc in response.list_services_response.service}
    assert {"qbsync.v1.SyncService", "grpc.health.v1.Health"} <= names
