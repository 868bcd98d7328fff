"""Classes, locations and invoice numbers (SPEC §10) through the real python-quickbooks client and raw HTTP:
the entities, their queries, the preferences, the refusals, and QuickBooks' own numbering."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_harness import Connection
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException, ValidationException
from quickbooks.objects.invoice import Invoice


def create(connection: Connection, entity: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw API create: (HTTP status, the JSON answer)."""
    response = connection.api("POST", f"/{entity.lower()}", json=body)
    return response.status_code, response.json()


def customer(connection: Connection) -> str:
    return str(connection.seed("Customer", {"DisplayName": "Tia Tracked"})["Id"])


def invoice_body(customer_id: str, **more: Any) -> dict[str, Any]:
    line = {"DetailType": "SalesItemLineDetail", "Amount": "100.00", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
    return {"CustomerRef": {"value": customer_id}, "Line": [line], **more}


def query(connection: Connection, select: str) -> dict[str, Any]:
    response = connection.api("POST", "/query", data=select, headers={"Content-Type": "application/text"})
    assert response.status_code == 200, response.text
    return response.json()["QueryResponse"]  # type: ignore[no-any-return]


def test_classes_are_created_read_and_queried_with_their_full_names(connection: Connection, qb: QuickBooks) -> None:
    status, north = create(connection, "Class", {"Name": "North"})
    assert status == 200
    north_id = north["Class"]["Id"]
    _, movers = create(connection, "Class", {"Name": "Movers", "ParentRef": {"value": north_id}})
    assert (movers["Class"]["FullyQualifiedName"], movers["Class"]["SubClass"]) == ("North:Movers", True)
    read = connection.api("GET", f"/class/{north_id}").json()["Class"]
    assert (read["Name"], read["Active"], read["SubClass"]) == ("North", True, False)

    found = query(connection, f"select * from Class where Id IN ('{north_id}', '{movers['Class']['Id']}')")
    assert [c["Name"] for c in found["Class"]] == ["North", "Movers"]
    connection.admin("POST", f"/realms/{connection.realm_id}/records/Class/{north_id}/deactivate")
    assert "Class" not in query(connection, "select * from Class where Name = 'North'")  # inactive: hidden
    shown = query(connection, "select * from Class where Name = 'North' AND Active IN (true, false)")
    assert [c["Active"] for c in shown["Class"]] == [False]
    # A sibling may not share a name (inactive ones included).
    status, clash = create(connection, "Class", {"Name": "north"})
    assert (status, clash["Fault"]["Error"][0]["code"]) == (400, "6240")


def test_preferences_are_set_through_the_admin_api_and_read_through_the_api(connection: Connection) -> None:
    answer = connection.admin(
        "POST",
        f"/realms/{connection.realm_id}/preferences",
        {"class_tracking_per_txn_line": True, "track_departments": True, "custom_txn_numbers": True},
    )
    assert answer["AccountingInfoPrefs"]["ClassTrackingPerTxnLine"] is True
    prefs = connection.api("GET", "/preferences").json()["Preferences"]
    assert prefs["AccountingInfoPrefs"] | {"BookCloseDate": None} == {
        "BookCloseDate": None,
        "TrackDepartments": True,
        "ClassTrackingPerTxn": False,
        "ClassTrackingPerTxnLine": True,
    }
    assert prefs["SalesFormsPrefs"] == {"CustomTxnNumbers": True}
    # One or the other, as QBO's settings screen offers them.
    connection.admin("POST", f"/realms/{connection.realm_id}/preferences", {"class_tracking_per_txn": True})
    prefs = connection.api("GET", "/preferences").json()["Preferences"]["AccountingInfoPrefs"]
    assert (prefs["ClassTrackingPerTxn"], prefs["ClassTrackingPerTxnLine"]) == (True, False)


@pytest.mark.parametrize("where", ["header", "line"])
def test_an_unknown_or_inactive_class_is_invalid_reference_2500(connection: Connection, where: str) -> None:
    customer_id = customer(connection)
    south = connection.seed("Class", {"Name": "South"})["Id"]
    connection.admin("POST", f"/realms/{connection.realm_id}/records/Class/{south}/deactivate")
    for class_id in ("999", south):
        body = invoice_body(customer_id)
        if where == "header":
            body["ClassRef"] = {"value": class_id}
        else:
            body["Line"][0]["SalesItemLineDetail"]["ClassRef"] = {"value": class_id}
        status, fault = create(connection, "Invoice", body)
        error = fault["Fault"]["Error"][0]
        assert (status, error["code"], error["Message"]) == (400, "2500", "Invalid Reference Id")
        assert error["element"] == ("ClassRef" if where == "header" else "Line.SalesItemLineDetail.ClassRef")
    assert connection.state()["entities"]["Invoice"] == []


def test_a_location_needs_location_tracking(connection: Connection, qb: QuickBooks) -> None:
    customer_id = customer(connection)
    depot = connection.seed("Department", {"Name": "Depot"})["Id"]
    status, fault = create(connection, "Invoice", invoice_body(customer_id, DepartmentRef={"value": depot}))
    assert (status, fault["Fault"]["Error"][0]["code"]) == (400, "6000")
    connection.admin("POST", f"/realms/{connection.realm_id}/preferences", {"track_departments": True})
    status, created = create(connection, "Invoice", invoice_body(customer_id, DepartmentRef={"value": depot}))
    assert status == 200 and created["Invoice"]["DepartmentRef"] == {"value": depot, "name": "Depot"}


def test_quickbooks_numbers_invoices_and_refuses_duplicates_only_when_told(
    connection: Connection, qb: QuickBooks
) -> None:
    customer_id = customer(connection)
    numbers = [create(connection, "Invoice", invoice_body(customer_id))[1]["Invoice"]["DocNumber"] for _ in range(2)]
    assert numbers == ["1001", "1002"]
    status, _ = create(connection, "Invoice", invoice_body(customer_id, DocNumber="1001"))
    assert status == 200  # duplicates are allowed by default
    found = query(connection, "select Id, PrivateNote from Invoice where DocNumber = '1001'")
    assert len(found["Invoice"]) == 2

    connection.admin("POST", f"/realms/{connection.realm_id}/preferences", {"refuse_duplicate_doc_numbers": True})
    status, fault = create(connection, "Invoice", invoice_body(customer_id, DocNumber="1002"))
    error = fault["Fault"]["Error"][0]
    assert (status, error["code"], error["Message"]) == (400, "6140", "Duplicate Document Number Error")
    # python-quickbooks raises the base exception for it, as for every 5000–9999 code.
    invoice = Invoice.from_json(invoice_body(customer_id, DocNumber="1002"))
    with pytest.raises(QuickbooksException) as raised:
        invoice.save(qb=qb)
    assert raised.value.error_code == 6140 and not isinstance(raised.value, ValidationException)

    # With custom transaction numbers on, an invoice sent without one has none.
    connection.admin("POST", f"/realms/{connection.realm_id}/preferences", {"custom_txn_numbers": True})
    _, unnumbered = create(connection, "Invoice", invoice_body(customer_id))
    assert "DocNumber" not in unnumbered["Invoice"]
