"""The whole product as deployed: generated stubs → gRPC → core → python-quickbooks over HTTP → QBO emulator."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import EmulatedServer
from tests.e2e.test_sync_service import job, opportunity, payment, refund


def finished(server: EmulatedServer, name: str, md: list[tuple[str, str]]) -> r.SyncJob:
    last = None
    for update in server.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=60):
        last = update
    assert last is not None
    return last


def test_deposit_refunds_close_out_and_resync_land_in_quickbooks(emulated: EmulatedServer) -> None:
    md = emulated.key("acme")
    deposit = payment(refunds=[refund("ref-1", "50.00"), refund("ref-2", "25.50")])
    accepted = emulated.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=deposit, request_id="crm-1"), metadata=md
    )
    assert finished(emulated, accepted.name, md).state == r.SyncJob.STATE_SUCCEEDED

    [customer] = emulated.records("Customer")
    assert customer["DisplayName"] == "Mary O'Brien"
    assert customer["PrimaryEmailAddr"]["Address"] == "mary@example.com"
    [qbo_payment] = emulated.records("Payment")
    assert qbo_payment["TotalAmt"] == Decimal("500.00") and qbo_payment["UnappliedAmt"] == Decimal("424.50")
    refunds = emulated.records("Purchase")
    assert sorted(p["TotalAmt"] for p in refunds) == [Decimal("25.50"), Decimal("50.00")]
    assert {p["EntityRef"]["value"] for p in refunds} == {customer["Id"]}  # paid to the customer (R4)
    linked = {link["TxnId"] for line in qbo_payment["Line"] for link in line["LinkedTxn"]}
    assert linked == {p["Id"] for p in refunds}
    assert emulated.records("Invoice") == []  # R3

    # The same request again changes nothing (request_id), then the close-out applies what is left.
    again = emulated.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=deposit, request_id="crm-1"), metadata=md
    )
    assert again.name == accepted.name
    closing = emulated.stub.CloseOutJob(
        s.CloseOutJobRequest(opportunity=opportunity(), job=job(), payments=[deposit]), metadata=md
    )
    assert finished(emulated, closing.name, md).state == r.SyncJob.STATE_SUCCEEDED
    [invoice] = emulated.records("Invoice")
    assert invoice["TotalAmt"] == Decimal("600.00") and invoice["Balance"] == Decimal("175.50")
    assert invoice["DocNumber"].endswith("J-1001")

    # A resync after the CRM changed the price updates the same invoice (R6).
    resync = emulated.stub.SyncInvoice(
        s.SyncInvoiceRequest(opportunity=opportunity(), job=job(unit_price="100.00"), payments=[deposit]),
        metadata=md,
    )
    assert resync.resync
    assert finished(emulated, resync.name, md).state == r.SyncJob.STATE_SUCCEEDED
    [updated] = emulated.records("Invoice")
    assert updated["Id"] == invoice["Id"]
    assert updated["TotalAmt"] == Decimal("500.00") and updated["Balance"] == Decimal("75.50")
    assert len(emulated.records("Payment")) == 1 and len(emulated.records("Purchase")) == 2

    link = emulated.stub.GetQuickBooksLink(
        s.GetQuickBooksLinkRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_INVOICE, id="job-1")), metadata=md
    )
    assert link.url.endswith(f"/app/invoice?txnId={invoice['Id']}&deeplinkcompanyid={emulated.realm_id}")


@pytest.mark.parametrize("entity", ["Customer", "Purchase", "Payment"])
def test_a_lost_answer_after_quickbooks_committed_writes_nothing_twice(emulated: EmulatedServer, entity: str) -> None:
    md = emulated.key("acme")
    emulated.admin(
        "POST",
        "faults",
        {"kind": "commit_then_reset", "realm_id": emulated.realm_id, "entity": entity, "operation": "create"},
    )
    deposit = payment(refunds=[refund("ref-1", "50.00")])
    accepted = emulated.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=deposit), metadata=md)
    done = finished(emulated, accepted.name, md)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error
    assert [len(emulated.records(e)) for e in ("Customer", "Purchase", "Payment")] == [1, 1, 1]


def test_a_company_that_is_not_connected_fails_the_job_clearly(emulated: EmulatedServer) -> None:
    md = emulated.key("globex")  # a tenant with no QuickBooks connection
    request = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment())
    accepted = emulated.stub.SyncPayment(request, metadata=md)
    done = finished(emulated, accepted.name, md)
    assert done.state == r.SyncJob.STATE_FAILED
    assert "connect" in done.error.message.lower()
    errors = emulated.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=md)
    assert [j.name for j in errors.sync_jobs] == [accepted.name]
    with pytest.raises(grpc.RpcError) as err:
        emulated.stub.GetQuickBooksLink(
            s.GetQuickBooksLinkRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")), metadata=md
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
