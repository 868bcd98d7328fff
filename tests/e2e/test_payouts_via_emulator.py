"""SPEC §9 as a bookkeeper checks it in QuickBooks: generated stubs → gRPC → core → python-quickbooks → the
emulator over HTTP, each story asserting the emulator's state (its Deposit records and its ledger).

One qbsync stack serves the module (the API alone); each story gets a tenant and a QuickBooks company of its
own, so that balances start at zero. The test runs the workers itself (`settle`): a story can then send a
payment and its payout before any worker ran (story c), and check that a refused call queued nothing."""

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
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from grpc_status import rpc_status

from adapters.quickbooks.emulator import EmulatorServer
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from core.domain import Permission
from core.worker import SyncWorker
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc
from tests.e2e.emulated_company import api_stack, connect_to_emulated
from tests.e2e.test_sync_service import money, opportunity, refund, ts

D = Decimal
DONE = (r.SyncJob.STATE_SUCCEEDED, r.SyncJob.STATE_FAILED)
SETTLE_SECONDS = 30  # a retried job waits its backoff (1-2 s) first


@dataclass
class Stack:
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys
    emulator: EmulatorServer
    connections: ConnectionService
    worker: SyncWorker


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_stack(tmp_path_factory.mktemp("payouts")) as api:
        yield Stack(
            sync_service_pb2_grpc.SyncServiceStub(api.channel),
            api.injector.get(ApiKeys),
            api.emulator,
            api.injector.get(ConnectionService),
            api.injector.get(SyncWorker),
        )


@dataclass
class Company:
    """One tenant connected to its own emulated QuickBooks company."""

    stack: Stack
    realm_id: str
    md: list[tuple[str, str]]

    @property
    def stub(self) -> sync_service_pb2_grpc.SyncServiceStub:
        return self.stack.stub

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.stack.emulator.url}/_emulator/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read(), parse_float=Decimal)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return self.admin("GET", f"realms/{self.realm_id}/state")

    def records(self, entity: str) -> list[dict[str, Any]]:
        state = self.state()
        gone = set(state["deleted"].get(entity, [])) | {v.split("/")[1] for v in state["voided"]}
        return [rec for rec in state["entities"].get(entity, []) if rec["Id"] not in gone]

    def account(self, name: str) -> str:
        [account] = [a for a in self.records("Account") if a["Name"] == name]
        return account["Id"]  # type: ignore[no-any-return]

    def fees_account(self) -> str:
        """What the bookkeeper creates once for card payouts: the account of the processor's fees, found by
        its name (the emulator's chart of accounts has none)."""
        created = self.admin(
            "POST",
            f"realms/{self.realm_id}/records/Account",
            {"Name": "Merchant account fees", "AccountType": "Expense"},
        )
        return created["Account"]["Id"]  # type: ignore[no-any-return]

    def balance(self, account_name: str) -> Decimal:
        return self.state()["balances"]["accounts"][self.account(account_name)]  # type: ignore[no-any-return]

    def deposited(self) -> dict[str, str]:
        """QuickBooks payment Id → the Id of the Deposit holding it."""
        return self.state()["balances"]["payments_deposited"]  # type: ignore[no-any-return]

    def settle(self, name: str) -> r.SyncJob:
        """Runs the workers until job `name` is done (a retry becomes due after its backoff)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            self.stack.worker.drain()
            job = self.stub.GetSyncJob(s.GetSyncJobRequest(name=name), metadata=self.md)
            if job.state in DONE:
                return job
            assert time.monotonic() < deadline, f"{name} still {r.SyncJob.State.Name(job.state)}"
            time.sleep(0.1)

    def send_payment(self, pay: r.Payment) -> r.SyncJob:
        return self.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=pay), metadata=self.md)

    def synced_payment(self, pay: r.Payment) -> str:
        """Syncs `pay` and returns its QuickBooks Id."""
        done = self.settle(self.send_payment(pay).name)
        assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
        return self.quickbooks_id(r.ENTITY_TYPE_PAYMENT, pay.payment_id)

    def send_payout(self, payout: r.Payout, request_id: str = "") -> r.SyncJob:
        return self.stub.SyncPayout(s.SyncPayoutRequest(payout=payout, request_id=request_id), metadata=self.md)

    def status(self, entity_type: int, entity_id: str) -> r.SyncStatus:
        request = s.GetSyncStatusRequest(entity=r.EntityRef(type=entity_type, id=entity_id))  # type: ignore[arg-type]
        return self.stub.GetSyncStatus(request, metadata=self.md)

    def quickbooks_id(self, entity_type: int, entity_id: str) -> str:
        return self.status(entity_type, entity_id).quickbooks_id


@pytest.fixture
def company(stack: Stack) -> Company:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    realm = stack.emulator.create_realm(company_name="Acme Movers")
    connect_to_emulated(stack.connections, tenant, realm, stack.emulator)
    md = [("authorization", f"Bearer {stack.keys.create(tenant, frozenset(Permission))}")]
    return Company(stack, realm["realm_id"], md)


def payment(payment_id: str, amount: str, refunds: list[r.Refund] | None = None, *, cash: bool = False) -> r.Payment:
    return r.Payment(
        payment_id=payment_id,
        amount=money(amount),
        method=r.PAYMENT_METHOD_CASH if cash else r.PAYMENT_METHOD_CREDIT_CARD,
        received_time=ts(0),
        refunds=refunds or [],
    )


def payout(
    payout_id: str,
    amount: str,
    payment_ids: list[str],
    refund_ids: list[str] | None = None,
    *,
    fees: str = "",
    day: int = 5,
) -> r.Payout:
    msg = r.Payout(
        payout_id=payout_id,
        arrival_date=Date(year=2026, month=1, day=day),
        amount=money(amount),
        payment_ids=payment_ids,
        refund_ids=refund_ids or [],
    )
    if fees:
        msg.fees.CopyFrom(money(fees))
    return msg


def refusal(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """The call's code, its ErrorInfo reason and the fields its BadRequest names."""
    status = rpc_status.from_call(call)
    assert status is not None, f"{call.code()} without details: {call.details()}"
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
    return call.code(), info.reason, [v.field for v in bad_request.field_violations]


def refusal_description(call: grpc.RpcError) -> str:
    """The description of the call's (one) field violation."""
    status = rpc_status.from_call(call)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    [detail] = [d for d in status.details if d.Is(bad_request.DESCRIPTOR)]
    detail.Unpack(bad_request)
    [violation] = bad_request.field_violations
    return violation.description


def linked_payments(deposit: dict[str, Any]) -> list[str]:
    return [link["TxnId"] for line in deposit["Line"] for link in line.get("LinkedTxn") or []]


def account_lines(deposit: dict[str, Any]) -> dict[str, Decimal]:
    """Account Id → amount of the lines booked to an account (not linking a payment)."""
    return {
        line["DepositLineDetail"]["AccountRef"]["value"]: line["Amount"]
        for line in deposit["Line"]
        if not line.get("LinkedTxn")
    }


def payout_entity(payout_id: str) -> r.EntityRef:
    return r.EntityRef(type=r.ENTITY_TYPE_PAYOUT, id=payout_id)


# --- a. a card payout with fees and a refund ------------------------------------------------------------


def test_a_card_payout_with_fees_and_a_refund_is_one_deposit_and_moves_the_money(company: Company) -> None:
    fees = company.fees_account()
    p1 = company.synced_payment(payment("p1", "300.00", [refund("r1", "50.00")]))
    p2 = company.synced_payment(payment("p2", "200.00"))
    checking = company.account("Checking")
    # The refund was paid from Checking (the refund bank account) when it was synced; the payments wait
    # in Undeposited Funds.
    assert (company.balance("Checking"), company.balance("Undeposited Funds")) == (D("-50.00"), D("500.00"))

    accepted = company.send_payout(payout("po-1", "436.00", ["p1", "p2"], ["r1"], fees="14.00"))
    assert accepted.state == r.SyncJob.STATE_PENDING
    assert accepted.target == payout_entity("po-1")
    done = company.settle(accepted.name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    [deposit] = company.records("Deposit")
    assert deposit["TotalAmt"] == D("436.00")
    assert deposit["DepositToAccountRef"]["value"] == checking
    assert deposit["TxnDate"] == "2026-01-05"
    assert sorted(linked_payments(deposit)) == sorted([p1, p2])
    # The refund's line books back to Checking, which paid it: the processor refunded it out of the payout.
    assert account_lines(deposit) == {checking: D("-50.00"), fees: D("-14.00")}
    assert "/payout/po-1]" in deposit["PrivateNote"]  # R7's marker: a lost answer is found again

    # Checking: -50 (the refund, as synced) + 436 (the deposit) + 50 (its refund line: the processor paid
    # the refund out of the payout, not the bank) = 436, what reached the bank; the refund counts once.
    assert company.balance("Checking") == D("436.00")
    assert company.balance("Undeposited Funds") == D("0.00")
    assert company.deposited() == {p1: deposit["Id"], p2: deposit["Id"]}

    status = company.status(r.ENTITY_TYPE_PAYOUT, "po-1")
    assert (status.state, status.quickbooks_id) == (r.SYNC_STATE_SYNCED, deposit["Id"])
    link = company.stub.GetQuickBooksLink(s.GetQuickBooksLinkRequest(entity=payout_entity("po-1")), metadata=company.md)
    assert link.url.endswith(f"/app/deposit?txnId={deposit['Id']}&deeplinkcompanyid={company.realm_id}")
    assert [res.quickbooks_id for res in done.results if res.entity == payout_entity("po-1")] == [deposit["Id"]]


# --- b. a cash deposit slip -----------------------------------------------------------------------------


def test_a_cash_deposit_slip_deposits_both_payments_whole(company: Company) -> None:
    c1 = company.synced_payment(payment("c1", "120.00", cash=True))
    c2 = company.synced_payment(payment("c2", "80.50", cash=True))
    done = company.settle(company.send_payout(payout("slip-1", "200.50", ["c1", "c2"])).name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message

    [deposit] = company.records("Deposit")
    assert deposit["TotalAmt"] == D("200.50")
    assert sorted(linked_payments(deposit)) == sorted([c1, c2])
    assert account_lines(deposit) == {}  # no fees, no refunds: nothing but the two payments
    assert [line["Amount"] for line in deposit["Line"]] == [D("120.00"), D("80.50")]
    assert (company.balance("Checking"), company.balance("Undeposited Funds")) == (D("200.50"), D("0.00"))


# --- c. a payout listing a payment not synced yet -------------------------------------------------------


def test_a_payout_of_a_payment_not_synced_yet_syncs_it_first_and_once(company: Company) -> None:
    sent = company.send_payment(payment("p1", "300.00"))
    accepted = company.send_payout(payout("po-1", "300.00", ["p1"]))  # no worker ran in between
    assert company.records("Payment") == []
    assert company.status(r.ENTITY_TYPE_PAYMENT, "p1").state == r.SYNC_STATE_PENDING
    assert company.status(r.ENTITY_TYPE_PAYOUT, "po-1").state == r.SYNC_STATE_PENDING

    done = company.settle(accepted.name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    assert company.settle(sent.name).state == r.SyncJob.STATE_SUCCEEDED
    [qbo_payment] = company.records("Payment")
    assert qbo_payment["TotalAmt"] == D("300.00")
    [deposit] = company.records("Deposit")
    assert linked_payments(deposit) == [qbo_payment["Id"]]
    assert company.deposited() == {qbo_payment["Id"]: deposit["Id"]}


# --- d. one payment, two payouts ------------------------------------------------------------------------


def test_a_payment_in_another_payout_is_refused_and_nothing_is_stored(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00"))
    assert company.settle(company.send_payout(payout("po-1", "300.00", ["p1"])).name).state == r.SyncJob.STATE_SUCCEEDED

    with pytest.raises(grpc.RpcError) as refused:
        company.send_payout(payout("po-2", "300.00", ["p1"], day=6))
    code, reason, _ = refusal(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_IN_ANOTHER_PAYOUT")
    with pytest.raises(grpc.RpcError) as unknown:
        company.status(r.ENTITY_TYPE_PAYOUT, "po-2")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert company.stack.worker.drain() == 0  # no job was queued either
    assert len(company.records("Deposit")) == 1


# --- e. a resync dropping a payment ---------------------------------------------------------------------


def test_a_resync_dropping_a_payment_updates_the_same_deposit_and_frees_the_payment(company: Company) -> None:
    p1 = company.synced_payment(payment("p1", "300.00"))
    p2 = company.synced_payment(payment("p2", "200.00"))
    assert company.settle(company.send_payout(payout("po-1", "500.00", ["p1", "p2"])).name).state == (
        r.SyncJob.STATE_SUCCEEDED
    )
    [first] = company.records("Deposit")

    resync = company.send_payout(payout("po-1", "300.00", ["p1"]))
    assert resync.resync
    done = company.settle(resync.name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    [updated] = company.records("Deposit")
    assert (updated["Id"], updated["TotalAmt"], linked_payments(updated)) == (first["Id"], D("300.00"), [p1])
    assert company.deposited() == {p1: first["Id"]}
    assert company.balance("Undeposited Funds") == D("200.00")  # p2 is back, waiting for a deposit

    # Another payout may take p2 now.
    later = company.settle(company.send_payout(payout("po-2", "200.00", ["p2"], day=6)).name)
    assert later.state == r.SyncJob.STATE_SUCCEEDED, later.error.message
    deposits = {d["Id"]: d for d in company.records("Deposit")}
    [second] = [d for d in deposits if d != first["Id"]]
    assert linked_payments(deposits[second]) == [p2]
    assert company.deposited() == {p1: first["Id"], p2: second}
    assert (company.balance("Checking"), company.balance("Undeposited Funds")) == (D("500.00"), D("0.00"))


# --- f. a crash between QuickBooks' commit and ours -----------------------------------------------------


@pytest.mark.parametrize("kind", ["commit_then_reset", "commit_then_500"])
def test_a_lost_answer_after_quickbooks_created_the_deposit_writes_it_once(company: Company, kind: str) -> None:
    company.synced_payment(payment("p1", "300.00"))
    company.admin(
        "POST", "faults", {"kind": kind, "realm_id": company.realm_id, "entity": "Deposit", "operation": "create"}
    )
    done = company.settle(company.send_payout(payout("po-1", "300.00", ["p1"])).name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    creates = company.admin("GET", f"requests?realm_id={company.realm_id}&entity=Deposit&operation=create")
    assert [q["fault"] for q in creates["requests"]][0] == kind  # QuickBooks committed, its answer was lost
    [deposit] = company.records("Deposit")
    assert deposit["TotalAmt"] == D("300.00")
    assert company.quickbooks_id(r.ENTITY_TYPE_PAYOUT, "po-1") == deposit["Id"]


# --- g. parts that do not add up ------------------------------------------------------------------------


def test_parts_that_do_not_add_up_are_invalid_argument_and_nothing_is_stored(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00", [refund("r1", "50.00")]))
    company.synced_payment(payment("p2", "200.00"))
    with pytest.raises(grpc.RpcError) as refused:
        company.send_payout(payout("po-1", "437.00", ["p1", "p2"], ["r1"], fees="14.00"))  # the parts: 436.00
    code, reason, fields = refusal(refused.value)
    assert (code, reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["payout.amount"])
    assert "436.00" in refusal_description(refused.value)  # what the parts add up to
    with pytest.raises(grpc.RpcError) as unknown:
        company.status(r.ENTITY_TYPE_PAYOUT, "po-1")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert company.stack.worker.drain() == 0
    assert company.records("Deposit") == []


# --- h. a deposited payment's amount ---------------------------------------------------------------------


def test_changing_a_deposited_payments_amount_is_refused(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00"))
    assert company.settle(company.send_payout(payout("po-1", "300.00", ["p1"])).name).state == r.SyncJob.STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as refused:
        company.send_payment(payment("p1", "310.00"))
    code, reason, _ = refusal(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DEPOSITED")
    assert company.stack.worker.drain() == 0
    [qbo_payment] = company.records("Payment")
    assert qbo_payment["TotalAmt"] == D("300.00")


# --- i. request_id ---------------------------------------------------------------------------------------


def test_the_same_request_id_returns_the_same_job_and_another_body_is_refused(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00"))
    first = company.send_payout(payout("po-1", "300.00", ["p1"]), request_id="crm-po-1")
    again = company.send_payout(payout("po-1", "300.00", ["p1"]), request_id="crm-po-1")
    assert again.name == first.name
    with pytest.raises(grpc.RpcError) as reused:
        company.send_payout(payout("po-1", "300.00", ["p1"], day=6), request_id="crm-po-1")
    code, reason, _ = refusal(reused.value)
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert company.settle(first.name).state == r.SyncJob.STATE_SUCCEEDED
    assert company.stack.worker.drain() == 0  # one job, one deposit
    [deposit] = company.records("Deposit")
    assert deposit["TxnDate"] == "2026-01-05"


# --- a failed payout job: ListSyncErrors and RetrySync ----------------------------------------------------


def test_a_payout_failing_for_want_of_a_fee_account_is_listed_and_retried(company: Company) -> None:
    company.synced_payment(payment("p1", "300.00"))
    accepted = company.send_payout(payout("po-1", "290.00", ["p1"], fees="10.00"))
    failed = company.settle(accepted.name)
    assert failed.state == r.SyncJob.STATE_FAILED
    assert "processing-fee account" in failed.error.message
    errors = company.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=company.md)
    assert [(j.name, j.target) for j in errors.sync_jobs] == [(accepted.name, payout_entity("po-1"))]
    assert company.status(r.ENTITY_TYPE_PAYOUT, "po-1").state == r.SYNC_STATE_FAILED
    assert company.records("Deposit") == []

    fees = company.fees_account()  # the bookkeeper creates it, then retries
    retried = company.stub.RetrySync(s.RetrySyncRequest(name=accepted.name), metadata=company.md)
    assert retried.state == r.SyncJob.STATE_PENDING
    done = company.settle(accepted.name)
    assert done.state == r.SyncJob.STATE_SUCCEEDED, done.error.message
    [deposit] = company.records("Deposit")
    assert account_lines(deposit) == {fees: D("-10.00")}
    assert company.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=company.md).sync_jobs == []
