"""PreviewSync (SPEC §11) as a CRM uses it: generated stubs → gRPC → core → python-quickbooks → the emulator
over HTTP. A close-out is previewed (the emulator receives reads only, and its books do not change), then
synced: what QuickBooks then holds is what the preview listed."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from core.domain import Permission
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_payouts_via_emulator import Company, Stack, payment, refusal, stack  # noqa: F401 - the module's stack
from tests.e2e.test_sync_service import job, opportunity, refund

D = Decimal


def company_of(stack: Stack) -> Company:  # noqa: F811
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    realm = stack.emulator.create_realm(company_name="Acme Movers")
    connect_to_emulated(stack.connections, tenant, realm, stack.emulator)
    md = [("authorization", f"Bearer {stack.keys.create(tenant, frozenset(Permission))}")]
    return Company(stack, realm["realm_id"], md)


def requests_since(company: Company, seq: int) -> list[dict[str, Any]]:
    return company.admin("GET", f"requests?realm_id={company.realm_id}&since={seq}")["requests"]  # type: ignore[no-any-return]


def last_seq(company: Company) -> int:
    return max((int(e["seq"]) for e in requests_since(company, 0)), default=0)


def amount(money: Any) -> Decimal:
    return D(money.units) + D(money.nanos) / D(10**9)


def test_a_previewed_close_out_writes_nothing_then_its_sync_writes_what_was_listed(stack: Stack) -> None:  # noqa: F811
    company = company_of(stack)
    deposit_id = company.synced_payment(payment("pay-1", "500.00", [refund("ref-1", "50.00")]))
    close_out = s.CloseOutJobRequest(
        opportunity=opportunity(),
        job=job("job-1", "120.00", "5"),
        payments=[payment("pay-1", "500.00", [refund("ref-1", "50.00")]), payment("pay-2", "200.00")],
    )
    books, seq = company.state()["entities"], last_seq(company)

    answer = company.stub.PreviewSync(s.PreviewSyncRequest(close_out_job=close_out), metadata=company.md)

    # QuickBooks was read at most (the writes' own look-ups, e.g. of the settings' items, are never made)
    assert [e for e in requests_since(company, seq) if e["operation"] not in ("query", "read")] == []
    assert company.state()["entities"] == books
    planned = [
        (o.entity.type, o.entity.id, o.quickbooks_entity, o.action, o.quickbooks_id, amount(o.amount))
        for o in answer.operations
    ]
    assert planned == [
        (r.ENTITY_TYPE_INVOICE, "job-1", "Invoice", s.PLANNED_ACTION_CREATE, "", D("600.00")),
        (r.ENTITY_TYPE_PAYMENT, "pay-1", "Payment", s.PLANNED_ACTION_UPDATE, deposit_id, D("500.00")),
        (r.ENTITY_TYPE_PAYMENT, "pay-2", "Payment", s.PLANNED_ACTION_CREATE, "", D("200.00")),
    ]
    invoice = MessageToDict(answer.operations[0].fields)
    assert (invoice["TotalAmt"], invoice["TxnDate"]) == ("600.00", "2026-01-10")
    assert [line["Amount"] for line in invoice["Line"]] == ["600.00"]
    applied = {o.entity.id: MessageToDict(o.fields)["Line"] for o in answer.operations[1:]}
    assert lines_of(applied["pay-1"]) == [("Expense", "50.00"), ("Invoice", "450.00")]  # the refund, still linked
    assert lines_of(applied["pay-2"]) == [("Invoice", "150.00")]
    assert {line["LinkedTxn"]["TxnId"] for line in applied["pay-2"]} == {invoice["Id"]}  # the invoice it creates

    done = company.settle(company.stub.CloseOutJob(close_out, metadata=company.md).name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    [written] = company.records("Invoice")
    assert D(str(written["TotalAmt"])) == D("600.00")
    payments = {p["Id"]: p for p in company.records("Payment")}
    assert deposit_id in payments and len(payments) == 2
    new_id = company.quickbooks_id(r.ENTITY_TYPE_PAYMENT, "pay-2")
    assert D(str(payments[new_id]["TotalAmt"])) == D("200.00")
    for payment_id, quickbooks_id in (("pay-1", deposit_id), ("pay-2", new_id)):
        written_lines = [
            (linked["TxnType"], D(str(line["Amount"])))
            for line in payments[quickbooks_id]["Line"]
            for linked in line["LinkedTxn"]
        ]
        assert sorted(written_lines) == [(kind, D(amount)) for kind, amount in lines_of(applied[payment_id])]


def lines_of(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A payment's lines as (the linked transaction's type, amount), sorted."""
    return sorted((line["LinkedTxn"]["TxnType"], line["Amount"]) for line in lines)


def test_bad_input_is_refused_as_its_sync_refuses_it(stack: Stack) -> None:  # noqa: F811
    company = company_of(stack)
    bad = s.SyncPaymentRequest(opportunity=opportunity(), payment=payment("", "-5.00"))
    with pytest.raises(grpc.RpcError) as previewing:
        company.stub.PreviewSync(s.PreviewSyncRequest(sync_payment=bad), metadata=company.md)
    with pytest.raises(grpc.RpcError) as syncing:
        company.stub.SyncPayment(bad, metadata=company.md)
    assert refusal(previewing.value) == refusal(syncing.value)
    assert refusal(previewing.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as empty:
        company.stub.PreviewSync(s.PreviewSyncRequest(), metadata=company.md)
    assert refusal(empty.value)[::2] == (grpc.StatusCode.INVALID_ARGUMENT, ["sync"])
