"""SPEC §11 ReconcileCompany as a bookkeeper runs it: generated stubs → gRPC → core → python-quickbooks → the
emulator over HTTP. A company whose books agree reports nothing; records deleted, voided or edited in
QuickBooks (through the emulator's admin API, as a bookkeeper would in QBO) are each named with both amounts."""

from __future__ import annotations

import json
from decimal import Decimal

import grpc
import pytest
from google.type import date_pb2

from adapters.grpc.convert import money_from_proto
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.test_payouts_via_emulator import Company, company, payment, payout, stack
from tests.e2e.test_sync_service import refund
from tests.e2e.test_voids_via_emulator import close_out

D = Decimal
__all__ = ["company", "stack"]  # the payout stories' fixtures, used here by name
# The stories' payments, refunds, jobs and payouts are all dated in January 2026.
JANUARY = (date_pb2.Date(year=2026, month=1, day=1), date_pb2.Date(year=2026, month=1, day=31))


def reconcile(
    company: Company, start: date_pb2.Date, end: date_pb2.Date
) -> list[tuple[str, str, str, Decimal | None, Decimal | None]]:
    request = s.ReconcileCompanyRequest(start_date=start, end_date=end)
    answer = company.stub.ReconcileCompany(request, metadata=company.md)
    return [
        (
            f"{r.EntityType.Name(d.entity.type)}/{d.entity.id}",
            d.quickbooks_id,
            d.what,
            money_from_proto(d.crm_amount, "", []) if d.HasField("crm_amount") else None,
            money_from_proto(d.quickbooks_amount, "", []) if d.HasField("quickbooks_amount") else None,
        )
        for d in answer.differences
    ]


def test_a_clean_company_reports_nothing_then_each_change_made_in_quickbooks(company: Company) -> None:
    pay = payment("p1", "500.00", [refund("r1", "50.00")])
    company.synced_payment(pay)
    expense = company.quickbooks_id(r.ENTITY_TYPE_REFUND, "r1")
    invoice = close_out(company, "job-1", "70.00", [pay])
    other = company.synced_payment(payment("p2", "120.00"))
    assert company.settle(company.send_payout(payout("po-1", "120.00", ["p2"])).name).state == r.SyncJob.STATE_SUCCEEDED
    assert reconcile(company, *JANUARY) == []

    company.admin("POST", f"realms/{company.realm_id}/records/Purchase/{expense}/delete")
    company.admin("POST", f"realms/{company.realm_id}/records/Invoice/{invoice}/void")

    found = {(entity, what): (qbo_id, crm, qbo) for entity, qbo_id, what, crm, qbo in reconcile(company, *JANUARY)}
    assert found[("ENTITY_TYPE_REFUND/r1", "refund expense deleted in QuickBooks")] == (expense, D("50.00"), None)
    voided = found[("ENTITY_TYPE_INVOICE/job-1", "invoice voided in QuickBooks but not in the CRM")]
    assert voided[0] == invoice and voided[2] == D("0")
    assert not [key for key in found if key[0] in ("ENTITY_TYPE_PAYMENT/p2", "ENTITY_TYPE_PAYOUT/po-1")]

    # A deposit edited in QuickBooks: a fee line of 20.00 added, its total no longer the payout's amount.
    deposit = company.quickbooks_id(r.ENTITY_TYPE_PAYOUT, "po-1")
    [held] = [rec for rec in company.records("Deposit") if rec["Id"] == deposit]
    fee = {
        "Amount": "-20.00",
        "DetailType": "DepositLineDetail",
        "DepositLineDetail": {"AccountRef": {"value": company.fees_account()}},
    }
    lines = [*json.loads(json.dumps(held["Line"], default=str)), fee]
    company.admin("POST", f"realms/{company.realm_id}/records/Deposit/{deposit}/update", {"Line": lines})

    found = {(entity, what): (qbo_id, crm, qbo) for entity, qbo_id, what, crm, qbo in reconcile(company, *JANUARY)}
    edited = found[("ENTITY_TYPE_PAYOUT/po-1", "deposit total differs from the payout's amount")]
    assert edited == (deposit, D("120.00"), D("100.00"))
    assert other


def test_a_reversed_period_is_invalid_argument_naming_the_field(company: Company) -> None:
    request = s.ReconcileCompanyRequest(
        start_date=date_pb2.Date(year=2026, month=5, day=1), end_date=date_pb2.Date(year=2026, month=4, day=1)
    )
    with pytest.raises(grpc.RpcError) as refused:
        company.stub.ReconcileCompany(request, metadata=company.md)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "end_date" in str(refused.value.details())
