"""Bank deposits (SPEC §9) over raw HTTP: payments out of Undeposited Funds into the bank, one deposit per
payment, the ledger, and what a deposited payment can no longer do."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests
from emulator_harness import Connection

D = Decimal
CHECKING, UNDEPOSITED, RECEIVABLE = "1", "2", "3"  # the seeded chart of accounts' Ids


def call(conn: Connection, method: str, route: str, body: Any = None, **params: str) -> requests.Response:
    return conn.api(
        method,
        route,
        params={"minorversion": "75", **params},
        data=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json"},
    )


def ok(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def fault(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return response.json()["Fault"]["Error"][0]  # type: ignore[no-any-return]


def exact_state(conn: Connection) -> Any:
    response = requests.get(f"{conn.server.admin_url}/realms/{conn.realm_id}/state", timeout=10)
    return json.loads(response.text, parse_float=Decimal, parse_int=Decimal)


def customer(conn: Connection, name: str = "Pat Mover") -> str:
    return str(conn.seed("Customer", {"DisplayName": name})["Id"])


def payment(conn: Connection, customer_id: str, amount: str, *, deposit_to: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"CustomerRef": {"value": customer_id}, "TotalAmt": amount, "TxnDate": "2026-01-02"}
    if deposit_to is not None:
        body["DepositToAccountRef"] = {"value": deposit_to}
    return ok(call(conn, "POST", "/payment", body))["Payment"]  # type: ignore[no-any-return]


def linked(payment_id: str, amount: str) -> dict[str, Any]:
    return {"Amount": amount, "LinkedTxn": [{"TxnId": payment_id, "TxnType": "Payment", "TxnLineId": "0"}]}


def account_line(account_id: str, amount: str, memo: str = "") -> dict[str, Any]:
    line: dict[str, Any] = {
        "Amount": amount,
        "DetailType": "DepositLineDetail",
        "DepositLineDetail": {"AccountRef": {"value": account_id}},
    }
    if memo:
        line["Description"] = memo
    return line


def deposit_body(*lines: dict[str, Any], note: str = "payout po_1") -> dict[str, Any]:
    return {
        "DepositToAccountRef": {"value": CHECKING},
        "TxnDate": "2026-01-05",
        "PrivateNote": note,
        "Line": list(lines),
    }


@pytest.fixture
def fees(connection: Connection) -> str:
    return str(
        connection.seed(
            "Account", {"Name": "Merchant account fees", "AccountType": "Expense", "AccountSubType": "BankCharges"}
        )["Id"]
    )


def test_a_deposit_is_created_read_updated_queried_and_deleted(connection: Connection, fees: str) -> None:
    who = customer(connection)
    p1, p2 = payment(connection, who, "300.10"), payment(connection, who, "200.00")
    created = ok(
        call(
            connection,
            "POST",
            "/deposit",
            deposit_body(
                linked(p1["Id"], "300.10"),
                linked(p2["Id"], "200.00"),
                account_line(fees, "-14.50", "card fees"),
                account_line(RECEIVABLE, "-50.00", "refund r1"),
            ),
        )
    )["Deposit"]
    assert created["TotalAmt"] == D("435.60")  # QBO's sum of the lines, whatever the client sends
    assert created["SyncToken"] == "0" and created["DepositToAccountRef"]["value"] == CHECKING
    assert [line["LinkedTxn"] for line in created["Line"][:2]] == [
        [{"TxnId": p1["Id"], "TxnType": "Payment", "TxnLineId": "0"}],
        [{"TxnId": p2["Id"], "TxnType": "Payment", "TxnLineId": "0"}],
    ]
    assert "DetailType" not in created["Line"][0]
    assert created["Line"][2]["DepositLineDetail"]["AccountRef"]["name"] == "Merchant account fees"

    read = ok(call(connection, "GET", f"/deposit/{created['Id']}"))["Deposit"]
    assert read["TotalAmt"] == D("435.60") and read["PrivateNote"] == "payout po_1"

    # A full update replaces the lines; a stale SyncToken is refused.
    stale = {**deposit_body(linked(p1["Id"], "300.10")), "Id": created["Id"], "SyncToken": "7"}
    assert fault(call(connection, "POST", "/deposit", stale))["code"] == "5010"
    updated = ok(call(connection, "POST", "/deposit", {**stale, "SyncToken": "0"}))["Deposit"]
    assert updated["SyncToken"] == "1" and updated["TotalAmt"] == D("300.10") and len(updated["Line"]) == 1

    rows = ok(call(connection, "GET", "/query", query="select * from Deposit"))["QueryResponse"]["Deposit"]
    assert [row["Id"] for row in rows] == [created["Id"]] and rows[0]["TotalAmt"] == D("300.10")
    dated = "select * from Deposit where TxnDate = '2026-01-05' order by MetaData.CreateTime desc"
    assert len(ok(call(connection, "GET", "/query", query=dated))["QueryResponse"]["Deposit"]) == 1
    later = "select * from Deposit where TxnDate > '2026-01-05'"
    assert "Deposit" not in ok(call(connection, "GET", "/query", query=later))["QueryResponse"]

    gone = ok(call(connection, "POST", "/deposit", {"Id": created["Id"], "SyncToken": "1"}, operation="delete"))
    assert gone["Deposit"]["status"] == "Deleted"
    assert fault(call(connection, "GET", f"/deposit/{created['Id']}"))["code"] == "610"
    assert "Deposit" not in ok(call(connection, "GET", "/query", query="select * from Deposit"))["QueryResponse"]


def test_the_ledger_moves_payments_from_undeposited_funds_to_the_bank(connection: Connection, fees: str) -> None:
    who = customer(connection)
    p1, p2 = payment(connection, who, "300.10"), payment(connection, who, "200.00")
    balances = exact_state(connection)["balances"]
    assert balances["accounts"][UNDEPOSITED] == D("500.10") and balances["accounts"][CHECKING] == 0

    made = ok(
        call(
            connection,
            "POST",
            "/deposit",
            deposit_body(
                linked(p1["Id"], "300.10"),
                linked(p2["Id"], "200.00"),
                account_line(fees, "-14.50"),
            ),
        )
    )["Deposit"]
    state = exact_state(connection)
    assert state["balances"]["accounts"][UNDEPOSITED] == 0  # Undeposited Funds holds nothing now
    assert state["balances"]["accounts"][CHECKING] == D("485.60")  # what reached the bank
    assert state["balances"]["payments_deposited"] == {p1["Id"]: made["Id"], p2["Id"]: made["Id"]}
    checking = next(a for a in state["entities"]["Account"] if a["Id"] == CHECKING)
    assert checking["CurrentBalance"] == D("485.60")

    # Dropping a payment in an update releases it back to Undeposited Funds.
    ok(
        call(
            connection,
            "POST",
            "/deposit",
            {**deposit_body(linked(p1["Id"], "300.10")), "Id": made["Id"], "SyncToken": "0"},
        )
    )
    balances = exact_state(connection)["balances"]
    assert balances["accounts"][UNDEPOSITED] == D("200.00") and balances["accounts"][CHECKING] == D("300.10")
    assert balances["payments_deposited"] == {p1["Id"]: made["Id"]}


def test_a_payment_is_in_one_deposit_only(connection: Connection) -> None:
    who = customer(connection)
    paid = payment(connection, who, "300.10")
    first = ok(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"))))["Deposit"]
    refused = fault(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"), note="po_2")))
    assert refused["code"] == "6000" and f"Deposit {first['Id']}" in refused["Detail"]
    twice = deposit_body(linked(paid["Id"], "300.10"), linked(paid["Id"], "300.10"))
    assert fault(call(connection, "POST", "/deposit", {**twice, "Id": first["Id"], "SyncToken": "0"}))["code"] == "6000"
    # Once released by deleting the first deposit, it can go in another.
    ok(call(connection, "POST", "/deposit", {"Id": first["Id"], "SyncToken": "0"}, operation="delete"))
    again = ok(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"), note="po_2")))
    assert exact_state(connection)["balances"]["payments_deposited"] == {paid["Id"]: again["Deposit"]["Id"]}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (linked("999", "10.00"), "2500"),  # no such payment
        (linked("PAYMENT", "999.00"), "6000"),  # not the payment's whole total
        ({"Amount": "300.10", "LinkedTxn": [{"TxnId": "PAYMENT", "TxnType": "Invoice", "TxnLineId": "0"}]}, "2010"),
        ({"Amount": "300.10", "LinkedTxn": [{"TxnId": "PAYMENT", "TxnType": "Payment"}]}, "2020"),  # no TxnLineId
        ({"Amount": "10.00", "DetailType": "DepositLineDetail", "DepositLineDetail": {}}, "2020"),  # no AccountRef
        (account_line(RECEIVABLE, "-400.00"), "6000"),  # a negative deposit
    ],
)
def test_deposit_lines_qbo_refuses(connection: Connection, line: dict[str, Any], code: str) -> None:
    paid = payment(connection, customer(connection), "300.10")
    body = json.loads(json.dumps(line).replace("PAYMENT", paid["Id"]))
    assert fault(call(connection, "POST", "/deposit", deposit_body(body)))["code"] == code
    assert exact_state(connection)["entities"]["Deposit"] == []


def test_only_undeposited_funds_payments_and_an_asset_account_deposit(connection: Connection) -> None:
    who = customer(connection)
    straight = payment(connection, who, "80.00", deposit_to=CHECKING)  # never in Undeposited Funds
    assert fault(call(connection, "POST", "/deposit", deposit_body(linked(straight["Id"], "80.00"))))["code"] == "6000"
    paid = payment(connection, who, "300.10")
    into_funds = {**deposit_body(linked(paid["Id"], "300.10")), "DepositToAccountRef": {"value": UNDEPOSITED}}
    assert fault(call(connection, "POST", "/deposit", into_funds))["code"] == "6000"
    into_income = {**deposit_body(linked(paid["Id"], "300.10")), "DepositToAccountRef": {"value": "4"}}
    assert fault(call(connection, "POST", "/deposit", into_income))["code"] == "6000"
    cash_slip = ok(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"))))["Deposit"]
    assert cash_slip["TotalAmt"] == D("300.10")


def test_a_deposited_payment_cannot_be_deleted_voided_or_changed(connection: Connection) -> None:
    who = customer(connection)
    paid = payment(connection, who, "300.10")
    made = ok(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"))))["Deposit"]
    token = {"Id": paid["Id"], "SyncToken": paid["SyncToken"]}
    for operation in ("delete", "void"):
        refused = fault(call(connection, "POST", "/payment", token, operation=operation))
        assert refused["code"] == "6000" and f"Deposit {made['Id']}" in refused["Detail"]
    changed = {"CustomerRef": {"value": who}, "TotalAmt": "310.00", **token}
    assert fault(call(connection, "POST", "/payment", changed))["code"] == "6000"
    elsewhere = {
        "CustomerRef": {"value": who},
        "TotalAmt": "300.10",
        "DepositToAccountRef": {"value": CHECKING},
        **token,
    }
    assert fault(call(connection, "POST", "/payment", elsewhere))["code"] == "6000"
    # Other changes go through (a memo), and once out of the deposit the payment may go.
    memo = {"CustomerRef": {"value": who}, "TotalAmt": "300.10", "PrivateNote": "checked", **token}
    assert ok(call(connection, "POST", "/payment", memo))["Payment"]["SyncToken"] == "1"
    ok(call(connection, "POST", "/deposit", {"Id": made["Id"], "SyncToken": "0"}, operation="delete"))
    ok(call(connection, "POST", "/payment", {"Id": paid["Id"], "SyncToken": "1"}, operation="void"))
    assert f"Payment/{paid['Id']}" in exact_state(connection)["voided"]


def test_a_voided_payment_cannot_be_deposited(connection: Connection) -> None:
    paid = payment(connection, customer(connection), "300.10")
    ok(call(connection, "POST", "/payment", {"Id": paid["Id"], "SyncToken": "0"}, operation="void"))
    assert fault(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "0.00"))))["code"] == "2500"


def test_a_repeated_requestid_gives_exactly_one_deposit(connection: Connection) -> None:
    paid = payment(connection, customer(connection), "300.10")
    body = deposit_body(linked(paid["Id"], "300.10"))
    first = ok(call(connection, "POST", "/deposit", body, requestid="dep-1"))["Deposit"]
    again = ok(call(connection, "POST", "/deposit", body, requestid="dep-1"))["Deposit"]
    assert again["Id"] == first["Id"]
    assert len(exact_state(connection)["entities"]["Deposit"]) == 1
    # Without the requestid the same body is a second deposit of the same payment: refused.
    assert fault(call(connection, "POST", "/deposit", body, requestid="dep-2"))["code"] == "6000"


def test_a_deposit_in_a_closed_period_is_refused(connection: Connection) -> None:
    paid = payment(connection, customer(connection), "300.10")
    connection.admin("POST", f"/realms/{connection.realm_id}/closing_date", {"date": "2026-01-31"})
    assert fault(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10"))))["code"] == "6210"


def test_the_commit_then_reset_fault_writes_the_deposit_once(connection: Connection) -> None:
    paid = payment(connection, customer(connection), "300.10")
    connection.admin(
        "POST",
        "/faults",
        {"kind": "commit_then_reset", "realm_id": connection.realm_id, "entity": "Deposit", "operation": "create"},
    )
    with pytest.raises(requests.ConnectionError):
        call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10")), requestid="dep-1")
    replayed = ok(call(connection, "POST", "/deposit", deposit_body(linked(paid["Id"], "300.10")), requestid="dep-1"))
    assert [d["Id"] for d in exact_state(connection)["entities"]["Deposit"]] == [replayed["Deposit"]["Id"]]
