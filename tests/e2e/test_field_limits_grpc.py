"""QuickBooks' limits over the wire: generated stubs → gRPC → core → SQLite + fake QuickBooks.

What the issue saw from outside — a 150-character company name accepted, amounts of 10^15 and dates in year
9999 accepted, `quantity: "9E+999999"` answered INTERNAL, NUL in an id reaching the database — is now
INVALID_ARGUMENT with a BadRequest naming each field, and nothing stored.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_status import rpc_status

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import Server

YEAR_9999 = Timestamp(seconds=253402214400)  # 9999-12-31


def customer(**fields: str) -> r.Customer:
    return r.Customer(
        **(
            {"customer_id": "cust-1", "first_name": "Mary", "last_name": "O'Brien", "email": "mary@example.com"}
            | fields
        )
    )


def payment(**fields: object) -> r.Payment:
    values: dict[str, object] = {
        "payment_id": "pay-1",
        "amount": Money(currency_code="USD", units=500),
        "method": r.PAYMENT_METHOD_CASH,
        "received_time": Timestamp(seconds=1767312000),
    }
    return r.Payment(**(values | fields))


def violated_fields(error: grpc.RpcError) -> list[str]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return sorted(fields)


def test_what_quickbooks_cannot_hold_is_invalid_argument_naming_each_field(server: Server) -> None:
    md = server.key("acme")
    request = s.SyncPaymentRequest(
        opportunity=r.Opportunity(opportunity_id="opp-1", number="1001", customer=customer(company_name="A" * 150)),
        payment=payment(
            payment_id="pay\x00-1", amount=Money(currency_code="USD", units=10**15), received_time=YEAR_9999
        ),
    )
    with pytest.raises(grpc.RpcError) as refused:
        server.stub.SyncPayment(request, metadata=md)
    assert violated_fields(refused.value) == [
        "opportunity.customer.company_name",
        "payment.amount",
        "payment.payment_id",
        "payment.received_time",
    ]
    assert server.companies.for_tenant("acme").request_count == 0


def test_an_absurd_quantity_is_invalid_argument_not_internal(server: Server) -> None:
    md = server.key("acme")
    line = r.InvoiceLine(
        description="Movers",
        quantity="9E+999999",
        unit_price=Money(currency_code="USD", units=5),
        amount=Money(currency_code="USD", units=5),
    )
    job = r.Job(job_id="job-1", number="J-1", service_date=Date(year=2026, month=1, day=10), lines=[line])
    request = s.CloseOutJobRequest(
        opportunity=r.Opportunity(opportunity_id="opp-1", number="1001", customer=customer()), job=job
    )
    with pytest.raises(grpc.RpcError) as refused:
        server.stub.CloseOutJob(request, metadata=md)
    assert "job.lines[0].quantity" in violated_fields(refused.value)


def test_tabs_and_colons_in_names_are_cleaned_not_refused(server: Server) -> None:
    md = server.key("acme")
    request = s.SyncPaymentRequest(
        opportunity=r.Opportunity(
            opportunity_id="opp-1",
            number="1001",
            customer=customer(first_name="Mary\tAnn", last_name="O'Brien:\nSmith"),
        ),
        payment=payment(),
    )
    accepted = server.stub.SyncPayment(request, metadata=md)
    updates = list(server.stub.WatchSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md, timeout=30))
    assert updates[-1].state == r.SyncJob.STATE_SUCCEEDED, updates[-1].error
    (made,) = server.companies.for_tenant("acme").customers.values()
    assert (made.display_name, made.given_name, made.family_name) == (
        "Mary Ann O'Brien Smith",
        "Mary Ann",
        "O'Brien Smith",
    )
