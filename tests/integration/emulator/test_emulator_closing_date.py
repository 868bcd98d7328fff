"""The books' closing date: API writes of transactions dated on or before it are Fault 6210."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from emulator_harness import Connection
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException
from quickbooks.objects.customer import Customer

CLOSING = "2026-01-31"


def post(qb: QuickBooks, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    return qb.create_object(entity, json.dumps(body))[entity]  # type: ignore[no-any-return]


def close_books(connection: Connection, value: str | None) -> Any:
    return connection.admin("POST", f"/realms/{connection.realm_id}/closing_date", {"date": value})


@pytest.fixture
def customer_id(qb: QuickBooks) -> str:
    c = Customer()
    c.DisplayName = "Closed Books"
    return str(c.save(qb=qb).Id)


@pytest.fixture
def accounts(qb: QuickBooks) -> dict[str, str]:
    rows = qb.query("SELECT * FROM Account")["QueryResponse"]["Account"]
    return {row["Name"]: row["Id"] for row in rows}


@pytest.fixture
def bodies(customer_id: str, accounts: dict[str, str]) -> dict[str, Callable[[str], dict[str, Any]]]:
    """A valid body of each transaction entity, for a TxnDate."""
    receivable = {"AccountRef": {"value": accounts["Accounts Receivable (A/R)"]}}
    return {
        "Payment": lambda day: {"CustomerRef": {"value": customer_id}, "TotalAmt": "100.00", "TxnDate": day},
        "Invoice": lambda day: {
            "CustomerRef": {"value": customer_id},
            "TxnDate": day,
            "Line": [
                {
                    "Amount": "100.00",
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                }
            ],
        },
        "Purchase": lambda day: {
            "PaymentType": "Cash",
            "TxnDate": day,
            "AccountRef": {"value": accounts["Checking"]},
            "EntityRef": {"value": customer_id, "type": "Customer"},
            "Line": [
                {
                    "Amount": "10.00",
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": receivable,
                }
            ],
        },
    }


def assert_6210(raised: pytest.ExceptionInfo[QuickbooksException]) -> None:
    assert raised.value.error_code == 6210
    assert raised.value.message == "Account Period Closed"
    assert CLOSING in raised.value.detail


def test_the_closing_date_is_set_read_and_cleared_through_the_admin_api(connection: Connection) -> None:
    route = f"/realms/{connection.realm_id}/closing_date"
    assert connection.admin("GET", route) == {"closing_date": None}
    assert close_books(connection, CLOSING) == {"closing_date": CLOSING}
    assert connection.admin("GET", route) == {"closing_date": CLOSING}
    assert connection.state()["closing_date"] == CLOSING
    assert close_books(connection, None) == {"closing_date": None}
    assert connection.state()["closing_date"] is None
    bad = requests.post(f"{connection.server.admin_url}{route}", json={"date": "31/01/2026"}, timeout=10)
    assert bad.status_code == 400
    missing = requests.post(f"{connection.server.admin_url}{route}", json={}, timeout=10)
    assert missing.status_code == 400


@pytest.mark.parametrize("entity", ["Payment", "Invoice", "Purchase"])
def test_creating_a_transaction_dated_in_the_closed_period_is_6210(
    qb: QuickBooks, connection: Connection, bodies: dict[str, Callable[[str], dict[str, Any]]], entity: str
) -> None:
    close_books(connection, CLOSING)
    for day in ("2026-01-31", "2025-12-01"):  # on the closing date counts as closed
        with pytest.raises(QuickbooksException) as raised:
            post(qb, entity, bodies[entity](day))
        assert_6210(raised)
    assert connection.state()["entities"][entity] == []
    assert post(qb, entity, bodies[entity]("2026-02-01"))["TxnDate"] == "2026-02-01"
    close_books(connection, None)
    assert post(qb, entity, bodies[entity]("2026-01-15"))["TxnDate"] == "2026-01-15"


def test_the_fault_is_a_400_validation_fault(
    connection: Connection, bodies: dict[str, Callable[[str], dict[str, Any]]]
) -> None:
    close_books(connection, CLOSING)
    response = connection.api(
        "POST",
        "/payment?minorversion=75",
        data=json.dumps(bodies["Payment"]("2026-01-02")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    fault = response.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    (error,) = fault["Error"]
    assert error["code"] == "6210" and error["Message"] == "Account Period Closed"
    assert "account period has closed" in error["Detail"] and CLOSING in error["Detail"]


@pytest.mark.parametrize("entity", ["Payment", "Invoice", "Purchase"])
def test_a_transaction_already_in_the_closed_period_cannot_be_changed_deleted_or_voided(
    qb: QuickBooks, connection: Connection, bodies: dict[str, Callable[[str], dict[str, Any]]], entity: str
) -> None:
    close_books(connection, CLOSING)
    old = connection.seed(entity, bodies[entity]("2026-01-10"))  # the bookkeeper gets past the closing date
    assert old["TxnDate"] == "2026-01-10"
    ref = {"Id": old["Id"], "SyncToken": old["SyncToken"]}
    with pytest.raises(QuickbooksException) as raised:  # even moving it out of the closed period
        qb.update_object(entity, json.dumps({**ref, "sparse": True, "TxnDate": "2026-03-01"}))
    assert_6210(raised)
    with pytest.raises(QuickbooksException) as raised:
        qb.update_object(entity, json.dumps({**ref, "sparse": True, "PrivateNote": "edited"}))
    assert_6210(raised)
    with pytest.raises(QuickbooksException) as raised:
        qb.delete_object(entity, json.dumps(ref))
    assert_6210(raised)
    if entity != "Purchase":  # QBO voids payments and invoices only
        with pytest.raises(QuickbooksException) as raised:
            qb.update_object(entity, json.dumps(ref), params={"operation": "update", "include": "void"})
        assert_6210(raised)
    state = connection.state()
    (record,) = state["entities"][entity]
    assert record["SyncToken"] == old["SyncToken"] and "PrivateNote" not in record
    assert state["voided"] == [] and state["deleted"] == {}

    close_books(connection, None)
    edited = qb.update_object(entity, json.dumps({**ref, "sparse": True, "PrivateNote": "edited"}))[entity]
    assert edited["PrivateNote"] == "edited"


def test_moving_an_open_transaction_into_the_closed_period_is_6210(
    qb: QuickBooks, connection: Connection, bodies: dict[str, Callable[[str], dict[str, Any]]]
) -> None:
    close_books(connection, CLOSING)
    payment = post(qb, "Payment", bodies["Payment"]("2026-02-10"))
    with pytest.raises(QuickbooksException) as raised:
        qb.update_object(
            "Payment",
            json.dumps(
                {"Id": payment["Id"], "SyncToken": payment["SyncToken"], "sparse": True, "TxnDate": "2026-01-31"}
            ),
        )
    assert_6210(raised)
    moved = qb.update_object(
        "Payment",
        json.dumps({"Id": payment["Id"], "SyncToken": payment["SyncToken"], "sparse": True, "TxnDate": "2026-02-01"}),
    )["Payment"]
    assert moved["TxnDate"] == "2026-02-01"


def test_a_batch_refuses_only_the_items_in_the_closed_period(
    qb: QuickBooks, connection: Connection, bodies: dict[str, Callable[[str], dict[str, Any]]]
) -> None:
    close_books(connection, CLOSING)
    answer = qb.batch_operation(
        json.dumps(
            {
                "BatchItemRequest": [
                    {"bId": "closed", "operation": "create", "Payment": bodies["Payment"]("2026-01-20")},
                    {"bId": "open", "operation": "create", "Payment": bodies["Payment"]("2026-02-20")},
                ]
            }
        )
    )
    items = {item["bId"]: item for item in answer["BatchItemResponse"]}
    assert items["closed"]["Fault"]["Error"][0]["code"] == "6210"
    assert items["open"]["Payment"]["TxnDate"] == "2026-02-20"
    assert [p["TxnDate"] for p in connection.state()["entities"]["Payment"]] == ["2026-02-20"]


def test_names_are_not_dated_and_stay_writable(qb: QuickBooks, connection: Connection) -> None:
    close_books(connection, CLOSING)
    c = Customer()
    c.DisplayName = "Opened After Closing"
    assert c.save(qb=qb).Id
