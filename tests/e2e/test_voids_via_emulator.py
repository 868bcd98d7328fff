"""SPEC §11 voids from the CRM as a bookkeeper checks them in QuickBooks: generated stubs → gRPC → core →
python-quickbooks → the emulator over HTTP, each story asserting the emulator's state (voided and deleted
records, invoice balances, payments' unapplied amounts). The stack and companies are the payout stories'."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.test_payouts_via_emulator import Company, company, payment, payout, refusal, stack
from tests.e2e.test_sync_service import job, opportunity, refund

D = Decimal
__all__ = ["company", "stack"]  # the payout stories' fixtures, used here by name


def close_out(company: Company, job_id: str, unit_price: str, payments: list[r.Payment]) -> str:
    """Closes the job out (5 hours at `unit_price`) with `payments` and returns its invoice's QuickBooks Id."""
    request = s.CloseOutJobRequest(opportunity=opportunity(), job=job(job_id, unit_price), payments=payments)
    done = company.settle(company.stub.CloseOutJob(request, metadata=company.md).name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    return company.quickbooks_id(r.ENTITY_TYPE_INVOICE, job_id)


def void_payment(company: Company, payment_id: str, request_id: str = "") -> r.SyncJob:
    request = s.VoidPaymentRequest(payment_id=payment_id, request_id=request_id)
    return company.settle(company.stub.VoidPayment(request, metadata=company.md).name)


def record(company: Company, entity: str, quickbooks_id: str) -> dict[str, object]:
    [found] = [rec for rec in company.state()["entities"][entity] if rec["Id"] == quickbooks_id]
    return found


def test_a_voided_payment_gives_back_the_invoice_balance_and_takes_its_refund_along(company: Company) -> None:
    pay = payment("p1", "500.00", [refund("r1", "50.00")])
    paid = company.synced_payment(pay)
    expense = company.quickbooks_id(r.ENTITY_TYPE_REFUND, "r1")
    invoice = close_out(company, "job-1", "70.00", [pay])  # 350.00 before tax, paid in full by p1
    total = record(company, "Invoice", invoice)["TotalAmt"]
    assert company.state()["balances"]["invoices"][invoice] == D("0.00")

    done = void_payment(company, "p1", "void-p1")
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    state = company.state()
    assert f"Payment/{paid}" in state["voided"] and expense in state["deleted"]["Purchase"]
    voided = record(company, "Payment", paid)
    assert voided["TotalAmt"] == D("0.00") and str(voided["PrivateNote"]).startswith("Voided")
    assert state["balances"]["invoices"][invoice] == total  # owed again
    for entity_type, entity_id, quickbooks_id in [
        (r.ENTITY_TYPE_PAYMENT, "p1", paid),
        (r.ENTITY_TYPE_REFUND, "r1", expense),
    ]:
        status = company.status(entity_type, entity_id)
        assert (status.state, status.quickbooks_id) == (r.SYNC_STATE_VOIDED, quickbooks_id)
    assert {res.action for res in done.results} >= {r.SYNC_ACTION_VOIDED}

    # The same request again answers with the same job; a sync of the voided payment is refused.
    again = company.stub.VoidPayment(s.VoidPaymentRequest(payment_id="p1", request_id="void-p1"), metadata=company.md)
    assert again.name == done.name
    with pytest.raises(grpc.RpcError) as refused:
        company.send_payment(pay)
    assert refusal(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "VOIDED")


def test_a_voided_invoice_leaves_its_payments_unapplied(company: Company) -> None:
    first, second = payment("p1", "200.00"), payment("p2", "900.00")
    first_id, second_id = company.synced_payment(first), company.synced_payment(second)
    invoice = close_out(company, "job-1", "70.00", [first, second])
    total = D(str(record(company, "Invoice", invoice)["TotalAmt"]))
    unapplied = company.state()["balances"]["payments_unapplied"]
    assert unapplied[first_id] + unapplied[second_id] == D("1100.00") - total

    request = s.VoidInvoiceRequest(job_id="job-1")
    done = company.settle(company.stub.VoidInvoice(request, metadata=company.md).name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    state = company.state()
    assert f"Invoice/{invoice}" in state["voided"]
    assert record(company, "Invoice", invoice)["TotalAmt"] == D("0.00")
    assert state["balances"]["payments_unapplied"] == {first_id: D("200.00"), second_id: D("900.00")}
    assert f"Payment/{first_id}" not in state["voided"]  # the payments stay, whole
    status = company.status(r.ENTITY_TYPE_INVOICE, "job-1")
    assert (status.state, status.quickbooks_id) == (r.SYNC_STATE_VOIDED, invoice)


def test_a_deposited_payment_cannot_be_voided_until_its_payout_lets_go(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00"))
    assert company.settle(company.send_payout(payout("po-1", "300.00", ["p1"])).name).state == r.SyncJob.STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as refused:
        company.stub.VoidPayment(s.VoidPaymentRequest(payment_id="p1"), metadata=company.md)
    assert refusal(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DEPOSITED")
    assert company.stack.worker.drain() == 0
    assert company.state()["voided"] == []


def test_voiding_what_qbsync_never_received_is_not_found(company: Company) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        company.stub.VoidInvoice(s.VoidInvoiceRequest(job_id="nope"), metadata=company.md)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
