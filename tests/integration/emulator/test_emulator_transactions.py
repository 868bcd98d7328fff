"""Invoices, purchases (refunds) and payments: linking, balances, void/delete, replay and batch."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from emulator_harness import Connection
from quickbooks import QuickBooks
from quickbooks.batch import batch_create
from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException, ValidationException
from quickbooks.objects.base import LinkedTxn, Ref
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine


def post(qb: QuickBooks, entity: str, body: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Create/update through python-quickbooks' own request path, amounts as strings (as Decimal sends them)."""
    result = qb.create_object(entity, json.dumps(body), request_id=request_id)
    return result[entity]  # type: ignore[no-any-return]


def customer(qb: QuickBooks, name: str) -> str:
    c = Customer()
    c.DisplayName = name
    return str(c.save(qb=qb).Id)


def invoice_body(customer_id: str, *amounts: str) -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer_id},
        "DocNumber": "JOB-1001",
        "Line": [
            {
                "Amount": a,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": "1", "UnitPrice": a},
            }
            for a in amounts
        ],
    }


def refund_body(customer_id: str, amount: str, ar_account: str, bank: str) -> dict[str, Any]:
    return {
        "PaymentType": "Cash",
        "AccountRef": {"value": bank},
        "EntityRef": {"value": customer_id, "type": "Customer"},
        "Line": [
            {
                "Amount": amount,
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": ar_account}},
            }
        ],
    }


@pytest.fixture
def accounts(qb: QuickBooks) -> dict[str, str]:
    rows = qb.query("SELECT * FROM Account")["QueryResponse"]["Account"]
    return {row["Name"]: row["Id"] for row in rows}


def test_payment_linking_invoice_and_refund_keeps_balances(
    qb: QuickBooks, connection: Connection, accounts: dict[str, str]
) -> None:
    cid = customer(qb, "Dana Deposit")
    deposit = post(
        qb, "Payment", {"CustomerRef": {"value": cid}, "TotalAmt": "500.00", "PrivateNote": "crm:payment:77"}
    )
    assert Decimal(str(deposit["UnappliedAmt"])) == Decimal("500.00")
    assert deposit["DepositToAccountRef"]["value"] == accounts["Undeposited Funds"]

    refund = post(
        qb, "Purchase", refund_body(cid, "120.50", accounts["Accounts Receivable (A/R)"], accounts["Checking"])
    )
    assert Decimal(str(refund["TotalAmt"])) == Decimal("120.50")

    invoice = post(qb, "Invoice", invoice_body(cid, "300.00", "50.25"))
    assert Decimal(str(invoice["TotalAmt"])) == Decimal("350.25")
    assert Decimal(str(invoice["Balance"])) == Decimal("350.25")

    # Payment lines are all-or-nothing: resend every line plus the new ones.
    updated = qb.update_object(
        "Payment",
        json.dumps(
            {
                "Id": deposit["Id"],
                "SyncToken": deposit["SyncToken"],
                "sparse": True,
                "Line": [
                    {"Amount": "120.50", "LinkedTxn": [{"TxnId": refund["Id"], "TxnType": "Expense"}]},
                    {"Amount": "300.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]},
                ],
            }
        ),
    )["Payment"]
    assert Decimal(str(updated["UnappliedAmt"])) == Decimal("79.50")
    assert updated["SyncToken"] == "1"

    state = connection.state()
    assert Decimal(str(state["balances"]["invoices"][invoice["Id"]])) == Decimal("50.25")
    # A/R: invoiced 350.25 - received 500.00 + refunded 120.50 = -29.25 (79.50 unapplied less 50.25 still owed).
    assert Decimal(str(state["balances"]["customers"][cid])) == Decimal("-29.25")
    read_back = Payment.get(deposit["Id"], qb=qb)
    assert [line.LinkedTxn[0].TxnType for line in read_back.Line] == ["Expense", "Invoice"]
    inv = qb.get_single_object("Invoice", invoice["Id"])["Invoice"]
    assert inv["LinkedTxn"] == [{"TxnId": deposit["Id"], "TxnType": "Payment"}]


def test_amounts_are_json_numbers_with_two_decimals(connection: Connection, qb: QuickBooks) -> None:
    cid = customer(qb, "Number Format")
    response = connection.api(
        "POST",
        "/payment?minorversion=75",
        data=json.dumps({"CustomerRef": {"value": cid}, "TotalAmt": 100}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert '"TotalAmt": 100.00' in response.text
    assert '"UnappliedAmt": 100.00' in response.text


def test_overpayment_and_overapplication_are_6000(qb: QuickBooks) -> None:
    cid = customer(qb, "Over Applied")
    invoice = post(qb, "Invoice", invoice_body(cid, "100.00"))

    with pytest.raises(QuickbooksException) as raised:  # lines exceed the payment's total
        post(
            qb,
            "Payment",
            {
                "CustomerRef": {"value": cid},
                "TotalAmt": "50.00",
                "Line": [{"Amount": "60.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
            },
        )
    assert raised.value.error_code == 6000

    post(
        qb,
        "Payment",
        {
            "CustomerRef": {"value": cid},
            "TotalAmt": "80.00",
            "Line": [{"Amount": "80.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    with pytest.raises(QuickbooksException) as raised:  # only 20.00 left open on the invoice
        post(
            qb,
            "Payment",
            {
                "CustomerRef": {"value": cid},
                "TotalAmt": "30.00",
                "Line": [{"Amount": "30.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
            },
        )
    assert raised.value.error_code == 6000
    assert "open balance" in raised.value.detail


def test_references_must_exist_belong_and_be_active(qb: QuickBooks, connection: Connection) -> None:
    cid = customer(qb, "Owner One")
    other = customer(qb, "Owner Two")
    invoice = post(qb, "Invoice", invoice_body(other, "10.00"))

    with pytest.raises(ValidationException) as raised:
        post(qb, "Payment", {"CustomerRef": {"value": "424242"}, "TotalAmt": "1.00"})
    assert raised.value.error_code == 2500

    with pytest.raises(ValidationException) as raised:
        post(
            qb,
            "Payment",
            {
                "CustomerRef": {"value": cid},
                "TotalAmt": "5.00",
                "Line": [{"Amount": "5.00", "LinkedTxn": [{"TxnId": "99999", "TxnType": "Invoice"}]}],
            },
        )
    assert raised.value.error_code == 2500

    with pytest.raises(QuickbooksException) as raised:
        post(
            qb,
            "Payment",
            {
                "CustomerRef": {"value": cid},
                "TotalAmt": "5.00",
                "Line": [{"Amount": "5.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
            },
        )
    assert raised.value.error_code == 6000  # another customer's invoice

    connection.admin("POST", f"/realms/{connection.realm_id}/records/Customer/{cid}/deactivate")
    with pytest.raises(ValidationException) as raised:
        post(qb, "Payment", {"CustomerRef": {"value": cid}, "TotalAmt": "1.00"})
    assert raised.value.error_code == 2500
    assert "inactive" in raised.value.detail

    bad_item = invoice_body(other, "10.00")
    bad_item["Line"][0]["SalesItemLineDetail"]["ItemRef"] = {"value": "777"}
    with pytest.raises(ValidationException) as raised:
        post(qb, "Invoice", bad_item)
    assert raised.value.error_code == 2500
    assert "Line.SalesItemLineDetail.ItemRef" in raised.value.detail


def test_purchase_needs_a_bank_account(qb: QuickBooks, accounts: dict[str, str]) -> None:
    cid = customer(qb, "Refund Target")
    with pytest.raises(QuickbooksException) as raised:
        post(
            qb,
            "Purchase",
            refund_body(cid, "1.00", accounts["Accounts Receivable (A/R)"], accounts["Undeposited Funds"]),
        )
    assert raised.value.error_code == 6000


def test_sales_line_amount_must_equal_qty_times_price(qb: QuickBooks) -> None:
    cid = customer(qb, "Qty Check")
    body = invoice_body(cid, "100.00")
    body["Line"][0]["SalesItemLineDetail"]["Qty"] = "2"
    with pytest.raises(QuickbooksException) as raised:
        post(qb, "Invoice", body)
    assert raised.value.error_code == 6070


def test_duplicate_docnumber_is_allowed_and_noted(qb: QuickBooks, connection: Connection) -> None:
    cid = customer(qb, "Doc Number")
    post(qb, "Invoice", invoice_body(cid, "1.00"))
    post(qb, "Invoice", invoice_body(cid, "2.00"))
    assert any("JOB-1001" in note for note in connection.state()["notes"])

    too_long = invoice_body(cid, "1.00")
    too_long["DocNumber"] = "X" * 22
    with pytest.raises(ValidationException):
        post(qb, "Invoice", too_long)


def test_void_and_delete_payment_restore_invoice_balance(qb: QuickBooks, connection: Connection) -> None:
    cid = customer(qb, "Void Delete")
    invoice = post(qb, "Invoice", invoice_body(cid, "200.00"))
    link = [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    first = post(
        qb,
        "Payment",
        {
            "CustomerRef": {"value": cid},
            "TotalAmt": "150.00",
            "PrivateNote": "crm:1",
            "Line": [{"Amount": "150.00", "LinkedTxn": link}],
        },
    )
    second = post(
        qb,
        "Payment",
        {"CustomerRef": {"value": cid}, "TotalAmt": "50.00", "Line": [{"Amount": "50.00", "LinkedTxn": link}]},
    )
    assert Decimal(str(connection.state()["balances"]["invoices"][invoice["Id"]])) == Decimal("0.00")

    Payment.get(first["Id"], qb=qb).void(qb=qb)  # python-quickbooks: operation=update&include=void
    voided = qb.get_single_object("Payment", first["Id"])["Payment"]
    assert Decimal(str(voided["TotalAmt"])) == 0
    assert voided["PrivateNote"].startswith("Voided")
    assert "crm:1" in voided["PrivateNote"]
    assert Decimal(str(connection.state()["balances"]["invoices"][invoice["Id"]])) == Decimal("150.00")

    Payment.get(second["Id"], qb=qb).delete(qb=qb)
    with pytest.raises(ObjectNotFoundException):
        Payment.get(second["Id"], qb=qb)
    assert Decimal(str(connection.state()["balances"]["invoices"][invoice["Id"]])) == Decimal("200.00")

    with pytest.raises(QuickbooksException) as raised:  # stale SyncToken on delete
        qb.delete_object("Invoice", json.dumps({"Id": invoice["Id"], "SyncToken": "7"}))
    assert raised.value.error_code == 5010


def test_void_invoice_unlinks_payment_lines(qb: QuickBooks, connection: Connection) -> None:
    cid = customer(qb, "Invoice Void")
    invoice = post(qb, "Invoice", invoice_body(cid, "80.00"))
    payment = post(
        qb,
        "Payment",
        {
            "CustomerRef": {"value": cid},
            "TotalAmt": "80.00",
            "Line": [{"Amount": "80.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )

    result = qb.post(
        f"{qb.api_url}/company/{qb.company_id}/invoice",
        json.dumps({"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]}),
        params={"operation": "void"},
    )
    assert Decimal(str(result["Invoice"]["TotalAmt"])) == 0
    assert Decimal(str(result["Invoice"]["Balance"])) == 0
    after = qb.get_single_object("Payment", payment["Id"])["Payment"]
    assert after.get("Line", []) == []
    assert Decimal(str(after["UnappliedAmt"])) == Decimal("80.00")
    assert after["SyncToken"] == "1"


def test_a_purchase_cannot_be_voided_through_the_api_only_deleted(qb: QuickBooks, accounts: dict[str, str]) -> None:
    """QBO's API reference offers no void of a Purchase (an expense or check): the emulator refuses it as
    unsupported, which is why qbsync deletes a refund expense when its payment is voided (AccountingSystem.void)."""
    cid = customer(qb, "Purchase Void")
    expense = post(
        qb, "Purchase", refund_body(cid, "25.00", accounts["Accounts Receivable (A/R)"], accounts["Checking"])
    )
    body = json.dumps({"Id": expense["Id"], "SyncToken": expense["SyncToken"]})
    with pytest.raises(QuickbooksException):
        qb.post(f"{qb.api_url}/company/{qb.company_id}/purchase", body, params={"operation": "void"})
    assert qb.get_single_object("Purchase", expense["Id"])["Purchase"]["TotalAmt"] == Decimal("25.00")
    qb.delete_object("Purchase", body)
    with pytest.raises(ObjectNotFoundException):
        qb.get_single_object("Purchase", expense["Id"])


def test_voiding_a_voided_payment_again_keeps_it_voided(qb: QuickBooks) -> None:
    cid = customer(qb, "Void Twice")
    paid = post(qb, "Payment", {"CustomerRef": {"value": cid}, "TotalAmt": "40.00", "PrivateNote": "crm:9"})
    Payment.get(paid["Id"], qb=qb).void(qb=qb)
    Payment.get(paid["Id"], qb=qb).void(qb=qb)  # with the current SyncToken: answered, nothing changes
    again = qb.get_single_object("Payment", paid["Id"])["Payment"]
    assert Decimal(str(again["TotalAmt"])) == 0 and again["PrivateNote"] == "Voided - crm:9"


def test_requestid_replays_instead_of_writing_twice(qb: QuickBooks, connection: Connection) -> None:
    cid = customer(qb, "Replay Me")
    body = {"CustomerRef": {"value": cid}, "TotalAmt": "42.00"}
    first = post(qb, "Payment", body, request_id="req-0001")
    again = post(qb, "Payment", body, request_id="req-0001")
    other = post(qb, "Payment", body, request_id="req-0002")

    assert again["Id"] == first["Id"]
    assert again == first  # byte-for-byte the same answer
    assert other["Id"] != first["Id"]
    assert len(connection.state()["entities"]["Payment"]) == 2
    log = connection.admin("GET", "/requests?entity=Payment")["requests"]
    assert [(e["requestid"], e["replayed"]) for e in log] == [
        ("req-0001", False),
        ("req-0001", True),
        ("req-0002", False),
    ]
    assert {e["minorversion"] for e in log} == {"75"}

    # A replayed fault is replayed too (same requestid, first answer wins).
    with pytest.raises(QuickbooksException):
        post(qb, "Customer", {"DisplayName": "Replay Me"}, request_id="req-dup")
    with pytest.raises(QuickbooksException) as raised:
        post(qb, "Customer", {"DisplayName": "A Fresh Name"}, request_id="req-dup")
    assert raised.value.error_code == 6240  # the first answer, although this body alone would succeed


def test_batch_create_query_and_faults(qb: QuickBooks, connection: Connection) -> None:
    customers = []
    for name in ["Batch One", "Batch Two", "Batch One"]:  # the third clashes with the first
        c = Customer()
        c.DisplayName = name
        customers.append(c)
    result = batch_create(customers, qb=qb)
    assert sorted(s.DisplayName for s in result.successes) == ["Batch One", "Batch Two"]
    assert len(result.faults) == 1
    assert result.faults[0].Error[0].code == "6240"

    raw = qb.batch_operation(
        json.dumps(
            {
                "BatchItemRequest": [
                    {"bId": "q1", "Query": "SELECT COUNT(*) FROM Customer"},
                    {
                        "bId": "u1",
                        "operation": "update",
                        "Customer": {"Id": "999", "SyncToken": "0", "DisplayName": "X"},
                    },
                ]
            }
        )
    )
    by_bid = {item["bId"]: item for item in raw["BatchItemResponse"]}
    assert by_bid["q1"]["QueryResponse"]["totalCount"] == 2
    assert by_bid["u1"]["Fault"]["Error"][0]["code"] == "610"

    too_many = {"BatchItemRequest": [{"bId": str(n), "Query": "SELECT * FROM Item"} for n in range(31)]}
    with pytest.raises(ValidationException):
        qb.batch_operation(json.dumps(too_many))


def test_python_quickbooks_objects_round_trip(qb: QuickBooks, connection: Connection) -> None:
    """The library's own objects (with every default it sends) create, read back and full-update cleanly."""
    cid = customer(qb, "Object Person")
    invoice = Invoice()
    invoice.CustomerRef = Ref()
    invoice.CustomerRef.value = cid
    line = SalesItemLine()
    line.Amount = Decimal("300.10")
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = Ref()
    line.SalesItemLineDetail.ItemRef.value = "1"
    line.SalesItemLineDetail.Qty = Decimal("2")
    line.SalesItemLineDetail.UnitPrice = Decimal("150.05")
    invoice.Line.append(line)
    saved = invoice.save(qb=qb)
    assert Decimal(str(saved.TotalAmt)) == Decimal("300.10")

    # Read, change, full update: the subtotal line and derived fields sent back are ignored.
    again = Invoice.get(saved.Id, qb=qb)
    again.DocNumber = "JOB-2"
    resaved = again.save(qb=qb)
    assert resaved.SyncToken == "1"
    assert Decimal(str(resaved.TotalAmt)) == Decimal("300.10")

    payment = Payment()
    payment.CustomerRef = Ref()
    payment.CustomerRef.value = cid
    payment.TotalAmt = Decimal("400.00")
    pline = PaymentLine()
    pline.Amount = Decimal("300.10")
    link = LinkedTxn()
    link.TxnId = saved.Id
    link.TxnType = "Invoice"
    pline.LinkedTxn.append(link)
    payment.Line.append(pline)
    paid = payment.save(qb=qb, request_id="obj-pay-1")
    assert Decimal(str(paid.UnappliedAmt)) == Decimal("99.90")
    assert Decimal(str(connection.state()["balances"]["invoices"][saved.Id])) == Decimal("0.00")
