"""The emulator's ``/batch`` (emulator/batch.py), over raw HTTP: items judged as the single writes they stand
for, refused alone, replayed per item under the batch's requestid, and the ``item_fault`` knob."""

from __future__ import annotations

from typing import Any

import requests
from emulator_harness import Connection


def batch(connection: Connection, items: list[dict[str, Any]], request_id: str = "") -> requests.Response:
    params = {"minorversion": "75", **({"requestid": request_id} if request_id else {})}
    return connection.api("POST", "/batch", json={"BatchItemRequest": items}, params=params)


def answers(response: requests.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {item["bId"]: item for item in response.json()["BatchItemResponse"]}


def customer_item(bid: str, name: str) -> dict[str, Any]:
    return {"bId": bid, "operation": "create", "Customer": {"DisplayName": name}}


def customers(connection: Connection) -> list[str]:
    return sorted(c["DisplayName"] for c in connection.state()["entities"].get("Customer", []))


def test_a_resent_batch_replays_each_item_and_runs_only_what_is_new(connection: Connection) -> None:
    first = answers(batch(connection, [customer_item("0", "Ann"), customer_item("1", "Bo")], "b-1"))
    again = answers(batch(connection, [customer_item("0", "Ann"), customer_item("1", "Bo")], "b-1"))
    assert [again[b]["Customer"]["Id"] for b in "01"] == [first[b]["Customer"]["Id"] for b in "01"]
    assert customers(connection) == ["Ann", "Bo"]
    grown = answers(batch(connection, [customer_item("0", "Ann"), customer_item("2", "Cy")], "b-1"))
    assert grown["0"]["Customer"]["Id"] == first["0"]["Customer"]["Id"] and "Customer" in grown["2"]
    assert customers(connection) == ["Ann", "Bo", "Cy"]
    log = connection.admin("GET", "/requests?entity=batch")["requests"]
    assert [e["replayed"] for e in log] == [False, True, True]
    # Without a requestid nothing is kept: the same items are written again (and clash on the name).
    unkept = answers(batch(connection, [customer_item("0", "Ann")]))
    assert unkept["0"]["Fault"]["Error"][0]["code"] == "6240"


def test_a_refused_item_is_replayed_as_refused_and_forgetting_lets_it_run(connection: Connection) -> None:
    connection.seed("Customer", {"DisplayName": "Taken"})
    refused = answers(batch(connection, [customer_item("0", "Taken")], "b-2"))
    assert refused["0"]["Fault"]["Error"][0]["code"] == "6240"
    connection.admin("POST", f"/realms/{connection.realm_id}/records/Customer/1/update", {"DisplayName": "Renamed"})
    assert "Fault" in answers(batch(connection, [customer_item("0", "Taken")], "b-2"))["0"]  # the first answer
    connection.admin("POST", f"/realms/{connection.realm_id}/requestids/forget")
    assert "Customer" in answers(batch(connection, [customer_item("0", "Taken")], "b-2"))["0"]


def test_items_are_judged_as_the_single_writes_they_stand_for(connection: Connection) -> None:
    payment = {"CustomerRef": {"value": "999"}, "TotalAmt": "10.00"}
    single = connection.api("POST", "/payment", json=payment, params={"minorversion": "75"})
    in_batch = answers(batch(connection, [{"bId": "0", "operation": "create", "Payment": payment}]))
    assert single.status_code == 400
    assert in_batch["0"]["Fault"]["Error"][0]["code"] == single.json()["Fault"]["Error"][0]["code"]


def test_an_item_fault_refuses_one_item_alone_and_never_a_whole_call(connection: Connection) -> None:
    connection.admin("POST", "/faults", {"kind": "item_fault", "entity": "Customer", "operation": "create"})
    single = connection.api("POST", "/customer", json={"DisplayName": "Single"}, params={"minorversion": "75"})
    assert single.status_code == 200  # the knob waits for a batch item
    result = answers(batch(connection, [customer_item("0", "Ann"), customer_item("1", "Bo")], "b-3"))
    assert result["0"]["Fault"]["Error"][0]["code"] == "6000" and "Customer" in result["1"]
    assert customers(connection) == ["Bo", "Single"]
    assert connection.admin("GET", "/faults")["faults"] == []  # consumed by one item

    connection.admin("POST", "/faults", {"kind": "item_fault", "entity": "Customer", "body": "6210"})
    coded = answers(batch(connection, [customer_item("0", "Cy")]))
    assert coded["0"]["Fault"]["Error"][0]["code"] == "6210"


def test_a_batch_committed_then_reset_is_replayed_when_resent(connection: Connection) -> None:
    connection.admin("POST", "/faults", {"kind": "commit_then_reset", "entity": "batch"})
    try:
        batch(connection, [customer_item("0", "Ann")], "b-4")
        raise AssertionError("the answer should have been lost")
    except requests.ConnectionError:
        pass
    resent = answers(batch(connection, [customer_item("0", "Ann")], "b-4"))
    assert "Customer" in resent["0"] and customers(connection) == ["Ann"]


def test_more_than_thirty_items_are_refused_whole(connection: Connection) -> None:
    response = batch(connection, [customer_item(str(n), f"N{n}") for n in range(31)], "b-5")
    assert response.status_code == 400 and customers(connection) == []
