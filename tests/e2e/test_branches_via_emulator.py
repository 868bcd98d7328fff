"""SPEC §10 end to end: generated stubs → gRPC (SyncService and ConnectionService) → core → python-quickbooks →
two companies of the emulator over HTTP, each story reading the emulator's own state.

Acme's default connection is company A; its branch "north" has company N. The stories check that records land
in the right realm (and that each company's requests are counted apart: its own limits), that a branch booking
into A carries its class and location (per transaction and per line), that a missing class fails naming the
mapping, that DocNumbers collide in neither numbering mode, and that ConnectionService answers per branch."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.type.date_pb2 import Date

from adapters.quickbooks.emulator import EmulatorServer
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.domain import Permission
from core.worker import SyncWorker
from qbsync.v1 import connection_service_pb2 as c
from qbsync.v1 import connection_service_pb2_grpc, sync_service_pb2_grpc
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.emulated_company import api_stack, number_invoices_by_the_crm
from tests.e2e.test_sync_service import money, ts

D = Decimal
DONE = (r.SyncJob.STATE_SUCCEEDED, r.SyncJob.STATE_FAILED)
SETTLE_SECONDS = 30


@dataclass
class Stack:
    sync: sync_service_pb2_grpc.SyncServiceStub
    connection: connection_service_pb2_grpc.ConnectionServiceStub
    keys: ApiKeys
    emulator: EmulatorServer
    connections: ConnectionService
    worker: SyncWorker


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_stack(tmp_path_factory.mktemp("branches")) as api:
        yield Stack(
            sync_service_pb2_grpc.SyncServiceStub(api.channel),
            connection_service_pb2_grpc.ConnectionServiceStub(api.channel),
            api.injector.get(ApiKeys),
            api.emulator,
            api.injector.get(ConnectionService),
            api.injector.get(SyncWorker),
        )


@dataclass
class Acme:
    stack: Stack
    tenant: str
    realms: dict[str, str]  # branch ("" the default connection) → realm
    md: list[tuple[str, str]]

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.stack.emulator.url}/_emulator/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read(), parse_float=Decimal)  # type: ignore[no-any-return]

    def records(self, entity: str, branch: str = "") -> list[dict[str, Any]]:
        state = self.admin("GET", f"realms/{self.realms[branch]}/state")
        return list(state["entities"].get(entity, []))

    def seed(self, entity: str, body: dict[str, Any], branch: str = "") -> str:
        created = self.admin("POST", f"realms/{self.realms[branch]}/records/{entity}", body)
        return created[entity]["Id"]  # type: ignore[no-any-return]

    def preferences(self, branch: str = "", **prefs: bool) -> None:
        self.admin("POST", f"realms/{self.realms[branch]}/preferences", prefs)
        self.stack.connections.refresh_company_preferences(self.tenant, branch)

    def requests_to(self, branch: str) -> int:
        log = self.admin("GET", "requests")["requests"]
        return sum(1 for entry in log if f"/company/{self.realms[branch]}/" in entry.get("path", ""))

    def settle(self, name: str) -> r.SyncJob:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            self.stack.worker.drain()
            job = self.stack.sync.GetSyncJob(s.GetSyncJobRequest(name=name), metadata=self.md)
            if job.state in DONE:
                return job
            assert time.monotonic() < deadline, f"{name} still {r.SyncJob.State.Name(job.state)}"
            time.sleep(0.1)

    def pay(self, branch: str, opportunity_id: str, payment_id: str, amount: str, service_type: str = "") -> r.SyncJob:
        request = s.SyncPaymentRequest(
            opportunity=_opportunity(branch, opportunity_id, service_type), payment=_payment(payment_id, amount)
        )
        return self.settle(self.stack.sync.SyncPayment(request, metadata=self.md).name)

    def close_out(self, branch: str, opportunity_id: str, job_id: str, number: str, payment_id: str) -> r.SyncJob:
        request = s.CloseOutJobRequest(
            opportunity=_opportunity(branch, opportunity_id),
            job=r.Job(
                job_id=job_id,
                number=number,
                service_date=Date(year=2026, month=1, day=3),
                lines=[
                    r.InvoiceLine(description="Move", quantity="3", unit_price=money("100.00"), amount=money("300.00"))
                ],
            ),
            payments=[_payment(payment_id, "300.00")],
        )
        return self.settle(self.stack.sync.CloseOutJob(request, metadata=self.md).name)

    def update_settings(self, settings: c.Settings, *paths: str, branch: str = "") -> c.Settings:
        request = c.UpdateSettingsRequest(settings=settings, update_mask=FieldMask(paths=list(paths)), branch_id=branch)
        return self.stack.connection.UpdateSettings(request, metadata=self.md)


def _opportunity(branch: str, opportunity_id: str, service_type: str = "") -> r.Opportunity:
    customer = r.Customer(customer_id="c1", first_name="Mary", last_name="Smith", email="mary@example.com")
    return r.Opportunity(
        opportunity_id=opportunity_id,
        number=f"N-{opportunity_id}",
        customer=customer,
        branch_id=branch,
        service_type=service_type,
    )


def _payment(payment_id: str, amount: str) -> r.Payment:
    return r.Payment(
        payment_id=payment_id, amount=money(amount), method=r.PAYMENT_METHOD_CREDIT_CARD, received_time=ts(0)
    )


@pytest.fixture
def acme(stack: Stack) -> Acme:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    realms = {}
    for branch in ("", "north"):
        company = stack.emulator.create_realm(company_name=f"Acme Movers {branch or 'HQ'}")
        realms[branch] = str(company["realm_id"])
        number_invoices_by_the_crm(stack.emulator, realms[branch])  # unless a story says otherwise
        stack.connections.connect_with_tokens(
            tenant,
            realms[branch],
            company["client_id"],
            company["client_secret"],
            company["refresh_token"],
            company["access_token"],
            environment=stack.emulator.discovery_url,
            api_base_url=stack.emulator.base_api_url,
            branch_id=branch,
        )
    md = [("authorization", f"Bearer {stack.keys.create(tenant, frozenset(Permission))}")]
    return Acme(stack, tenant, realms, md)


def succeeded(job: r.SyncJob) -> r.SyncJob:
    assert job.state == r.SyncJob.STATE_SUCCEEDED, job.error.message
    return job


def test_each_branch_books_into_its_own_company_with_its_own_customer_and_requests(acme: Acme) -> None:
    before = {branch: acme.requests_to(branch) for branch in acme.realms}
    succeeded(acme.pay("north", "o1", "p1", "300.00"))
    north_requests = acme.requests_to("north") - before["north"]
    assert acme.requests_to("") == before[""]  # nothing of north's went to the default company
    succeeded(acme.pay("south", "o2", "p2", "120.00"))  # south has no company: the default one

    north, default = acme.records("Payment", "north"), acme.records("Payment")
    assert [D(p["TotalAmt"]) for p in north] == [D("300.00")]
    assert [D(p["TotalAmt"]) for p in default] == [D("120.00")]
    [north_customer], [default_customer] = acme.records("Customer", "north"), acme.records("Customer")
    assert north[0]["CustomerRef"]["value"] == north_customer["Id"]
    assert default[0]["CustomerRef"]["value"] == default_customer["Id"]
    assert north_requests >= 2  # a look-up (or create) and the payment, counted against north's company only

    status = acme.stack.sync.GetSyncStatus(
        s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_CUSTOMER, id="c1"), branch_id="north"),
        metadata=acme.md,
    )
    assert status.quickbooks_id == north_customer["Id"]
    link = acme.stack.sync.GetQuickBooksLink(
        s.GetQuickBooksLinkRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="p1")), metadata=acme.md
    )
    assert f"deeplinkcompanyid={acme.realms['north']}" in link.url


def test_a_branch_with_no_company_and_no_default_is_refused_naming_it(stack: Stack) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    md = [("authorization", f"Bearer {stack.keys.create(tenant, frozenset(Permission))}")]
    request = s.SyncPaymentRequest(opportunity=_opportunity("west", "o1"), payment=_payment("p1", "10.00"))
    with pytest.raises(grpc.RpcError) as refused:
        stack.sync.SyncPayment(request, metadata=md)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "'west'" in (refused.value.details() or "")


def test_classes_and_locations_per_transaction_and_per_line(acme: Acme) -> None:
    acme.preferences(class_tracking_per_txn=True, track_departments=True)
    class_id = acme.seed("Class", {"Name": "South"})
    department_id = acme.seed("Department", {"Name": "Springfield"})
    mapping = c.BranchMapping(branch_id="south", class_name="South", department_name="Springfield")
    stored = acme.update_settings(c.Settings(branch_mappings=[mapping]), "branch_mappings")
    assert (stored.branch_mappings[0].class_id, stored.branch_mappings[0].department_id) == (class_id, department_id)

    succeeded(acme.close_out("south", "o1", "j1", "1001", "p1"))
    [invoice] = acme.records("Invoice")
    assert invoice["ClassRef"]["value"] == class_id and invoice["DepartmentRef"]["value"] == department_id

    acme.preferences(class_tracking_per_txn_line=True)
    succeeded(acme.close_out("south", "o2", "j2", "1002", "p2"))
    second = next(i for i in acme.records("Invoice") if i["DocNumber"] == "1002")
    assert "ClassRef" not in second
    sales = [line for line in second["Line"] if line.get("DetailType") == "SalesItemLineDetail"]
    assert sales and all(line["SalesItemLineDetail"]["ClassRef"]["value"] == class_id for line in sales)


def test_a_class_made_inactive_after_it_was_mapped_fails_the_sync_naming_the_mapping(acme: Acme) -> None:
    acme.preferences(class_tracking_per_txn=True)
    class_id = acme.seed("Class", {"Name": "South"})
    mapping = c.BranchMapping(branch_id="south", class_id=class_id)
    acme.update_settings(c.Settings(branch_mappings=[mapping]), "branch_mappings")
    acme.admin("POST", f"realms/{acme.realms['']}/records/Class/{class_id}/deactivate")  # in QuickBooks, later

    job = acme.close_out("south", "o1", "j1", "1001", "p1")
    assert job.state == r.SyncJob.STATE_FAILED
    assert "branch 'south'" in job.error.message and "inactive" in job.error.message
    assert acme.records("Invoice") == []
    with pytest.raises(grpc.RpcError) as refused:  # and setting it again is refused, naming the field
        acme.update_settings(c.Settings(branch_mappings=[mapping]), "branch_mappings")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_doc_numbers_never_collide_in_either_numbering_mode(acme: Acme) -> None:
    acme.update_settings(
        c.Settings(invoice_numbering=c.CRM, doc_number_prefix="AC-"), "invoice_numbering", "doc_number_prefix"
    )
    someone = acme.seed("Customer", {"DisplayName": "Typed By Hand"})
    line = {"Amount": "10.00", "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
    acme.seed("Invoice", {"CustomerRef": {"value": someone}, "DocNumber": "AC-1001", "Line": [line]})  # typed in QBO
    job = acme.close_out("", "o1", "j1", "1001", "p1")
    assert job.state == r.SyncJob.STATE_FAILED and "AC-1001" in job.error.message
    assert [i["DocNumber"] for i in acme.records("Invoice")] == ["AC-1001"]

    acme.preferences(custom_txn_numbers=False)
    acme.update_settings(c.Settings(invoice_numbering=c.QUICKBOOKS), "invoice_numbering")
    acme.stack.sync.RetrySync(s.RetrySyncRequest(name=job.name), metadata=acme.md)
    succeeded(acme.settle(job.name))
    ours = [i for i in acme.records("Invoice") if i["DocNumber"] != "AC-1001"]
    assert len(ours) == 1 and ours[0]["DocNumber"]  # numbered by QuickBooks
    assert "1001" in ours[0]["CustomerMemo"]["value"]


def test_connection_service_answers_per_branch(acme: Acme) -> None:
    north = acme.stack.connection.GetConnection(c.GetConnectionRequest(branch_id="north"), metadata=acme.md)
    default = acme.stack.connection.GetConnection(c.GetConnectionRequest(), metadata=acme.md)
    assert (north.branch_id, north.realm_id) == ("north", acme.realms["north"])
    assert (default.branch_id, default.realm_id) == ("", acme.realms[""])
    assert north.effective_invoice_numbering == c.CRM  # custom numbers on in the fixture's companies
    acme.update_settings(c.Settings(doc_number_prefix="N-"), "doc_number_prefix", branch="north")
    north = acme.stack.connection.GetConnection(c.GetConnectionRequest(branch_id="north"), metadata=acme.md)
    default = acme.stack.connection.GetConnection(c.GetConnectionRequest(), metadata=acme.md)
    assert (north.settings.doc_number_prefix, default.settings.doc_number_prefix) == ("N-", "")
    with pytest.raises(grpc.RpcError) as missing:
        acme.stack.connection.GetConnection(c.GetConnectionRequest(branch_id="west"), metadata=acme.md)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_branchs_company_throttled_by_quickbooks_holds_up_no_other_company(acme: Acme) -> None:
    """Limits are per company: north's company answering 429 (its own minute used up) delays north's sync only."""
    acme.admin("POST", "faults", {"kind": "throttle", "count": 50, "realm_id": acme.realms["north"]})
    try:
        north = acme.stack.sync.SyncPayment(
            s.SyncPaymentRequest(opportunity=_opportunity("north", "o1"), payment=_payment("p1", "10.00")),
            metadata=acme.md,
        )
        acme.stack.worker.drain()
        held = acme.stack.sync.GetSyncJob(s.GetSyncJobRequest(name=north.name), metadata=acme.md)
        assert held.state == r.SyncJob.STATE_PENDING  # backing off, retryable
        assert "limiting requests" in held.error.message  # QUICKBOOKS_THROTTLED, retried after the wait
        succeeded(acme.pay("", "o2", "p2", "20.00"))  # the default company syncs meanwhile
    finally:
        acme.admin("POST", "faults/clear", {})
    assert [D(p["TotalAmt"]) for p in acme.records("Payment")] == [D("20.00")]
    assert acme.records("Payment", "north") == []
