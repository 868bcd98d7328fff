"""Injected faults, throttling and the request log, as a python-quickbooks client experiences them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
import requests
from emulator_harness import Connection
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException, SevereException
from quickbooks.objects.customer import Customer


def arm(connection: Connection, kind: str, **filters: object) -> None:
    connection.admin("POST", "/faults", {"kind": kind, "realm_id": connection.realm_id, **filters})


def create_customer(qb: QuickBooks, name: str, request_id: str | None = None) -> dict[str, object]:
    return qb.create_object("Customer", json.dumps({"DisplayName": name}), request_id=request_id)["Customer"]  # type: ignore[no-any-return]


def test_injected_5xx_reach_the_client(connection: Connection, qb: QuickBooks) -> None:
    arm(connection, "http500", entity="Customer")
    with pytest.raises(SevereException) as raised:  # JSON SystemFault, code 10000
        create_customer(qb, "Five Hundred")
    assert raised.value.error_code == 10000

    arm(connection, "http503")
    with pytest.raises(QuickbooksException) as raised:  # an HTML page: the library cannot parse it
        Customer.all(qb=qb)
    assert "Error reading json response" in raised.value.message

    assert connection.state()["entities"]["Customer"] == []
    create_customer(qb, "Five Hundred")  # the faults were one-shot


def test_reset_and_timeout_surface_as_requests_exceptions(
    connection: Connection, make_qb: Callable[..., QuickBooks]
) -> None:
    qb = make_qb(timeout=0.5)
    arm(connection, "reset", operation="create")
    with pytest.raises(requests.exceptions.ConnectionError):
        create_customer(qb, "Reset Once")

    arm(connection, "timeout", seconds=2, operation="query")
    with pytest.raises(requests.exceptions.ReadTimeout):
        Customer.all(qb=qb)

    assert connection.state()["entities"]["Customer"] == []  # neither fault wrote anything
    outcomes = [e["outcome"] for e in connection.admin("GET", "/requests")["requests"]]
    assert outcomes[:2] == ["reset", "timeout"]


def test_commit_then_reset_writes_exactly_once(connection: Connection, make_qb: Callable[..., QuickBooks]) -> None:
    qb = make_qb(timeout=5)
    arm(connection, "commit_then_reset", operation="create")
    with pytest.raises(requests.exceptions.ConnectionError):
        create_customer(qb, "Lost Answer", request_id="crm-customer-7")

    customers = connection.state()["entities"]["Customer"]
    assert [c["DisplayName"] for c in customers] == ["Lost Answer"]

    # A retry with the same requestid gets the committed answer instead of a duplicate (or a 6240).
    retried = create_customer(qb, "Lost Answer", request_id="crm-customer-7")
    assert retried["Id"] == customers[0]["Id"]
    assert len(connection.state()["entities"]["Customer"]) == 1


def test_commit_then_500_and_retry_without_requestid_hits_6240(connection: Connection, qb: QuickBooks) -> None:
    arm(connection, "commit_then_500", entity="Customer")
    with pytest.raises(SevereException):
        create_customer(qb, "Committed Anyway")
    with pytest.raises(QuickbooksException) as raised:
        create_customer(qb, "Committed Anyway")
    assert raised.value.error_code == 6240
    assert len(connection.state()["entities"]["Customer"]) == 1


@pytest.mark.parametrize("kind", ["throttle", "throttle_xml"])
def test_injected_throttle_is_429(connection: Connection, kind: str) -> None:
    arm(connection, kind)
    response = connection.api("GET", "/customer/1?minorversion=75")
    assert response.status_code == 429
    if kind == "throttle":
        assert response.json()["Fault"]["Error"][0]["code"] == "3001"
    else:
        assert response.headers["Content-Type"].startswith("application/xml")
        assert '<Error code="3001">' in response.text


def test_requests_per_second_limit_throttles(connection: Connection, qb: QuickBooks) -> None:
    connection.admin("POST", "/settings", {"limits": {"per_second": 3}, "retry_after": 60})
    statuses = [
        connection.api(
            "POST", "/query", data="SELECT COUNT(*) FROM Customer", headers={"Content-Type": "application/text"}
        )
        for _ in range(5)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert statuses[-1].headers["Retry-After"] == "60"

    # The library turns a JSON 429 into a Fault exception with code 3001 (status lost, as documented).
    with pytest.raises(QuickbooksException) as raised:
        Customer.all(qb=qb)
    assert raised.value.error_code == 3001

    connection.admin("POST", "/settings", {"throttle_format": "xml"})
    with pytest.raises(QuickbooksException) as raised:
        Customer.all(qb=qb)
    assert raised.value.error_code == 10000  # XML: "Error reading json response"
    assert connection.admin("GET", f"/realms/{connection.realm_id}/limits")["throttled"] == 4


def test_max_in_flight_is_tracked_and_concurrency_limit_enforced(connection: Connection) -> None:
    connection.admin("POST", "/settings", {"latency_ms": 300, "limits": {"concurrent": 3}})
    results: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        status = connection.api("GET", "/companyinfo/" + connection.realm_id).status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [200, 200, 200, 429, 429]
    gauge = connection.admin("GET", f"/realms/{connection.realm_id}/limits")
    assert gauge["max_in_flight"] == 5
    assert gauge["in_flight"] == 0
    log = connection.admin("GET", "/requests")["requests"]
    assert max(e["in_flight_at_start"] for e in log) == 5
    assert {e["throttled"] for e in log if e["status"] == 429} == {"concurrent"}

    connection.admin("POST", "/requests/clear")
    connection.admin("POST", "/settings", {"latency_ms": 0})
    call()
    assert connection.admin("GET", f"/realms/{connection.realm_id}/limits")["max_in_flight"] == 1


def test_request_log_records_each_call(connection: Connection, qb: QuickBooks) -> None:
    saved = create_customer(qb, "Logged", request_id="log-1")
    Customer.get(saved["Id"], qb=qb)
    Customer.filter(DisplayName="Logged", qb=qb)

    log = connection.admin("GET", f"/requests?realm_id={connection.realm_id}")["requests"]
    assert [(e["method"], e["entity"], e["operation"]) for e in log] == [
        ("POST", "Customer", "create"),
        ("GET", "Customer", "read"),
        ("POST", "query", "query"),
    ]
    first = log[0]
    assert first["requestid"] == "log-1"
    assert first["minorversion"] == "75"
    assert first["status"] == 200
    assert first["ended_at"] >= first["started_at"]
    assert first["in_flight_at_start"] == 1
    assert connection.admin("GET", "/errors")["errors"] == []


def test_fault_filters_only_hit_matching_requests(connection: Connection, qb: QuickBooks) -> None:
    connection.admin("POST", "/faults", {"kind": "http500", "entity": "Payment", "count": 2})
    create_customer(qb, "Not A Payment")  # unaffected
    armed = connection.admin("GET", "/faults")["faults"]
    assert armed[0]["remaining"] == 2
    connection.admin("DELETE", "/faults")
    assert connection.admin("GET", "/faults")["faults"] == []


def test_reset_forgets_realms_tokens_and_log(connection: Connection, qb: QuickBooks) -> None:
    create_customer(qb, "Before Reset")
    connection.admin("POST", "/reset")

    assert connection.admin("GET", "/realms")["realms"] == []
    assert connection.admin("GET", "/requests")["requests"] == []
    assert connection.api("GET", "/customer/1").status_code == 401  # the old token died with its realm
