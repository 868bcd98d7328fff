"""SPEC §8 end to end: a CloseOutJob with tax, a percent discount, a tip and a surcharge over gRPC, and a
CRM total that does not add up refused as INVALID_ARGUMENT naming `job.total`, with nothing stored."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from grpc_status import rpc_status

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import Server
from tests.e2e.test_sync_service import finished, money, opportunity, ts


def charged_job(job_id: str = "job-1", total: str = "736.90") -> r.Job:
    """600.00 of taxable movers' hours and 85.50 of untaxed materials; 10% off before tax (68.55); the
    CRM's 9% tax on the discounted taxable hours (540.00 × 9% = 48.60); a 50.00 tip; a 21.35 card fee.
    685.50 − 68.55 + 48.60 + 50.00 + 21.35 = 736.90."""
    return r.Job(
        job_id=job_id,
        number="J-2001",
        service_date=Date(year=2026, month=1, day=10),
        lines=[
            r.InvoiceLine(
                description="Movers (hours)",
                quantity="5",
                unit_price=money("120.00"),
                amount=money("600.00"),
                taxable=True,
            ),
            r.InvoiceLine(
                description="Packing materials", quantity="1", unit_price=money("85.50"), amount=money("85.50")
            ),
        ],
        tax=money("48.60"),
        tax_rate_name="WA Seattle 9%",
        discounts=[r.Discount(description="Spring move", percent="10")],
        tip=money("50.00"),
        surcharge=money("21.35"),
        total=money(total),
    )


def paid_in_full(payment_id: str = "pay-1") -> r.Payment:
    return r.Payment(
        payment_id=payment_id,
        amount=money("736.90"),
        method=r.PAYMENT_METHOD_CREDIT_CARD,
        received_time=ts(0),
        reference="card",
        tip=money("50.00"),
        processing_fee=money("22.11"),
    )


def bad_request(err: grpc.RpcError) -> dict[str, str]:
    """The BadRequest of a refused call: each field named, with its description."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def test_a_close_out_with_tax_a_percent_discount_a_tip_and_a_surcharge_is_accepted_and_synced(
    server: Server,
) -> None:
    md = server.key("acme")
    accepted = server.stub.CloseOutJob(
        s.CloseOutJobRequest(opportunity=opportunity(), job=charged_job(), payments=[paid_in_full()]), metadata=md
    )
    assert accepted.state == r.SyncJob.STATE_PENDING

    done = finished(server, accepted.name, md)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error
    qbo = server.companies.for_tenant("acme")
    [invoice] = qbo.live("Invoice")
    assert invoice.total == Decimal("736.90")  # the CRM total, to the cent
    assert qbo.invoice_balance(invoice.id) == Decimal("0.00")  # paid in full: nothing left due
    [payment] = qbo.live("Payment")
    assert payment.total == Decimal("736.90")  # the fee is not netted from the payment


def test_a_total_that_does_not_add_up_is_invalid_argument_naming_job_total_and_nothing_is_stored(
    server: Server,
) -> None:
    md = server.key("acme")
    request = s.CloseOutJobRequest(
        opportunity=opportunity(), job=charged_job(total="736.91"), payments=[paid_in_full()], request_id="r-1"
    )
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CloseOutJob(request, metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(err.value)
    assert list(violations) == ["job.total"]
    for part in ("736.91", "736.90", "685.50", "68.55", "48.60", "50.00", "21.35"):
        assert part in violations["job.total"], part

    # Nothing stored: no invoice, no payment, no job for the request id, and QuickBooks never called.
    for entity in (r.ENTITY_TYPE_INVOICE, r.ENTITY_TYPE_PAYMENT):
        crm_id = "job-1" if entity == r.ENTITY_TYPE_INVOICE else "pay-1"
        with pytest.raises(grpc.RpcError) as missing:
            server.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=r.EntityRef(type=entity, id=crm_id)), metadata=md)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert server.companies.for_tenant("acme").request_count == 0

    # The same request id with the right total is a new request, accepted: the refused one left no trace.
    request.job.total.CopyFrom(money("736.90"))
    accepted = server.stub.CloseOutJob(request, metadata=md)
    assert finished(server, accepted.name, md).state == r.SyncJob.STATE_SUCCEEDED


def test_every_bad_charge_is_named_in_one_refusal(server: Server) -> None:
    md = server.key("acme")
    job = charged_job()
    job.discounts.append(r.Discount(description="Coupon", percent="five", after_tax=True))
    job.tip.CopyFrom(money("-1.00"))
    job.lines[0].taxable = False  # tax with no taxable line
    payment = paid_in_full()
    payment.processing_fee.CopyFrom(money("800.00"))  # more than the payment
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CloseOutJob(
            s.CloseOutJobRequest(opportunity=opportunity(), job=job, payments=[payment]), metadata=md
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(err.value)
    assert set(violations) == {
        "job.discounts[1].percent",  # conversion: not a number
        "job.discounts[1].after_tax",  # disagrees with discounts[0]
        "job.tip",
        "job.tax",
        "payments[0].processing_fee",
    }
    assert violations["job.discounts[1].percent"].startswith('must be a decimal number such as "12.5"')
    assert server.companies.for_tenant("acme").request_count == 0
