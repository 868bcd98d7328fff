"""SPEC §8 as a bookkeeper checks it in QuickBooks: generated stubs → gRPC → core → python-quickbooks →
the emulator, in a company with automated sales tax and in one with manual sales tax.

The story: a close-out with a taxable and a non-taxable line, a 10% discount before tax, the CRM's tax, a
tip booked to a liability item and a card surcharge; the customer's card payment pays it in full. Then the
CRM's tax changes and the invoice is resynced; then QuickBooks is made to disagree with the CRM's total,
and the job fails with INVOICE_TOTAL_MISMATCH naming both totals instead of leaving a balance due."""

from __future__ import annotations

from decimal import Decimal

from google.rpc import error_details_pb2

from core.connections_service import ConnectionService
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import EmulatedServer
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_invoice_charges import charged_job, paid_in_full
from tests.e2e.test_sync_service import money, opportunity
from tests.e2e.test_sync_via_emulator import finished

D = Decimal


def taxed_job(tax: str = "48.60", total: str = "736.90") -> r.Job:
    """test_invoice_charges' job (600.00 taxable hours + 85.50 untaxed materials, 10% off, a 50.00 tip, a 21.35
    card surcharge) with the CRM's tax as given and a rate QuickBooks may know by name."""
    job = charged_job(total=total)
    job.tax.CopyFrom(money(tax))
    job.tax_rate_name = "Seattle"
    return job


def card_payment(amount: str = "736.90") -> r.Payment:
    payment = paid_in_full()
    payment.amount.CopyFrom(money(amount))
    return payment


def books_for_tips(emulated: EmulatedServer, realm_id: str) -> dict[str, str]:
    """What the bookkeeper sets up once: tips owed to the crew on a liability account, a surcharge item."""

    def seed(entity: str, record: dict) -> dict:  # type: ignore[type-arg]
        return emulated.admin("POST", f"realms/{realm_id}/records/{entity}", record)[entity]  # type: ignore[no-any-return]

    payable = seed("Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"})
    income = seed("Account", {"Name": "Card surcharges", "AccountType": "Income"})
    tips = seed("Item", {"Name": "Tips", "Type": "Service", "IncomeAccountRef": {"value": payable["Id"]}})
    surcharge = seed("Item", {"Name": "Card surcharge", "Type": "Service", "IncomeAccountRef": {"value": income["Id"]}})
    return {"tips": tips["Id"], "surcharge": surcharge["Id"], "payable": payable["Id"]}


def close_out(emulated: EmulatedServer, md: list[tuple[str, str]], job: r.Job, pay: r.Payment) -> r.SyncJob:
    accepted = emulated.stub.CloseOutJob(
        s.CloseOutJobRequest(opportunity=opportunity(), job=job, payments=[pay]), metadata=md
    )
    return finished(emulated, accepted.name, md)


def lines_of(invoice: dict, detail: str) -> list[dict]:  # type: ignore[type-arg]
    return [line for line in invoice["Line"] if line.get("DetailType") == detail]


def test_automated_sales_tax_keeps_the_crm_tax_discount_tip_and_surcharge_to_the_cent(
    emulated: EmulatedServer,
) -> None:
    md = emulated.key("acme")
    ids = books_for_tips(emulated, emulated.realm_id)
    done = close_out(emulated, md, taxed_job(), card_payment())
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    [invoice] = emulated.records("Invoice")
    # Automated sales tax would have charged 8.25% on the hours; the CRM's 48.60 was kept (TotalTax).
    assert invoice["TxnTaxDetail"]["TotalTax"] == D("48.60")
    assert invoice["TotalAmt"] == D("736.90") and invoice["Balance"] == D("0.00")  # paid in full, no balance due
    sales = lines_of(invoice, "SalesItemLineDetail")
    codes = {line["Description"]: line["SalesItemLineDetail"]["TaxCodeRef"]["value"] for line in sales}
    assert codes == {"Movers (hours)": "TAX", "Packing materials": "NON", "Tip": "NON", "Card surcharge": "NON"}
    items = {line["Description"]: line["SalesItemLineDetail"]["ItemRef"]["value"] for line in sales}
    assert items["Tip"] == ids["tips"] and items["Card surcharge"] == ids["surcharge"]  # found by name
    [discount] = lines_of(invoice, "DiscountLineDetail")
    assert discount["Amount"] == D("68.55") and invoice["ApplyTaxAfterDiscount"] is True
    [qbo_payment] = emulated.records("Payment")
    assert qbo_payment["TotalAmt"] == D("736.90") and qbo_payment["UnappliedAmt"] == D("0.00")

    # The CRM corrects the tax: the same invoice is updated, and the payment still pays it in full.
    resync = emulated.stub.SyncInvoice(
        s.SyncInvoiceRequest(
            opportunity=opportunity(), job=taxed_job(tax="48.00", total="736.30"), payments=[card_payment("736.30")]
        ),
        metadata=md,
    )
    assert finished(emulated, resync.name, md).state == r.SyncJob.STATE_SUCCEEDED
    [updated] = emulated.records("Invoice")
    assert updated["Id"] == invoice["Id"]
    assert updated["TxnTaxDetail"]["TotalTax"] == D("48.00")
    assert updated["TotalAmt"] == D("736.30") and updated["Balance"] == D("0.00")

    # QuickBooks made to disagree (a cent of its own): the job fails naming both totals, and the payment
    # is not applied to a wrong total.
    emulated.admin("POST", f"realms/{emulated.realm_id}/sales_tax", {"invoice_total_drift": "0.01"})
    again = emulated.stub.SyncInvoice(
        s.SyncInvoiceRequest(opportunity=opportunity(), job=taxed_job(tax="48.60"), payments=[card_payment()]),
        metadata=md,
    )
    failed = finished(emulated, again.name, md)
    assert failed.state == r.SyncJob.STATE_FAILED
    info = error_details_pb2.ErrorInfo()
    assert failed.error.details[0].Unpack(info)
    assert info.reason == "INVOICE_TOTAL_MISMATCH"
    assert dict(info.metadata) == {"crm_total": "736.90", "quickbooks_total": "736.91", "retryable": "false"}
    [unchanged] = emulated.records("Payment")
    assert unchanged["TotalAmt"] == D("736.30")  # the job stopped at the invoice: no payment was rewritten


def test_manual_sales_tax_names_the_rate_and_keeps_the_crm_tax(emulated: EmulatedServer) -> None:
    company = emulated.emulator.create_realm(company_name="Beta Movers")
    realm = company["realm_id"]
    emulated.admin("POST", f"realms/{realm}/sales_tax", {"sales_tax": "MANUAL"})
    rate = emulated.admin("POST", f"realms/{realm}/records/TaxRate", {"Name": "Seattle", "RateValue": "9"})["TaxRate"]
    detail = {"TaxRateRef": {"value": rate["Id"]}, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}
    code = emulated.admin(
        "POST", f"realms/{realm}/records/TaxCode", {"Name": "Seattle", "SalesTaxRateList": {"TaxRateDetail": [detail]}}
    )["TaxCode"]
    books_for_tips(emulated, realm)
    connect_to_emulated(emulated.injector.get(ConnectionService), "beta", company, emulated.emulator)
    md = emulated.key("beta")
    done = close_out(emulated, md, taxed_job(), card_payment())
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    state = emulated.admin("GET", f"realms/{realm}/state")
    [invoice] = state["entities"]["Invoice"]
    assert invoice["TxnTaxDetail"]["TxnTaxCodeRef"]["value"] == code["Id"]  # the job's rate, by name
    assert D(str(invoice["TxnTaxDetail"]["TotalTax"])) == D("48.60")
    assert D(str(invoice["TotalAmt"])) == D("736.90") and D(str(invoice["Balance"])) == D("0.00")
