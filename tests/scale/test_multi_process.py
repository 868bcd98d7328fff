"""qbsync scaled out: one PostgreSQL database, an API process and four worker processes, the QBO emulator
(with faults) in a fifth; hundreds of syncs through the API while a worker is SIGKILLed. Afterwards the
books must be exactly right (R7, R10) and QuickBooks' per-company concurrency limit must never have been
exceeded.

Needs PostgreSQL (QBSYNC_TEST_DATABASE_URL; .ci/run sets it): SQLite is one machine's database.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from scale_support import (
    POSTGRES_ENV,
    Cluster,
    Emulator,
    Json,
    customer_message,
    job_message,
    job_states,
    payment_message,
    rows,
    running_claims,
    running_emulator,
    wait_until_settled,
)

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get(POSTGRES_ENV),
        reason=f"{POSTGRES_ENV} is not set: several qbsync processes need PostgreSQL (.ci/run sets it)",
    ),
]

Metadata = list[tuple[str, str]]

CUSTOMERS = 50
WORKER_PROCESSES = 4
THREADS_PER_WORKER = 2
LEASE_SECONDS = 5
CONCURRENT_LIMIT = 10  # Intuit's in-flight limit per company
FINISH_WITHIN_SECONDS = 150


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    # The emulator enforces Intuit's real limits per company (10 at once, 10 a second, 500 a minute);
    # qbsync's limiter, shared through PostgreSQL by every worker process, must keep every request
    # under them: the test asserts that the emulator never had to answer 429.
    limits = {"concurrent": CONCURRENT_LIMIT, "per_second": 10, "per_minute": 500}
    with running_emulator(tmp_path, {"limits": limits}) as server:
        yield server


# --- the CRM: what it holds, and the requests it sends ------------------------------------------------


@dataclass
class CrmCustomer:
    """One customer as the CRM holds it (one opportunity each); every request carries its current state."""

    tenant: str
    customer_id: str
    name: str
    payments: dict[str, Decimal] = field(default_factory=dict)
    refunds: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # payment id -> refund id -> amount
    job: tuple[str, int, Decimal] | None = None  # closed out: (job id, hours, hourly rate)

    def opportunity(self) -> r.Opportunity:
        return customer_message(self.customer_id, self.name)

    def payment(self, payment_id: str) -> r.Payment:
        return payment_message(payment_id, self.payments[payment_id], self.refunds.get(payment_id))

    def all_payments(self) -> list[r.Payment]:
        return [self.payment(payment_id) for payment_id in self.payments]

    def job_message(self) -> r.Job:
        assert self.job is not None
        return job_message(*self.job)

    @property
    def invoice_total(self) -> Decimal:
        assert self.job is not None
        return self.job[1] * self.job[2]

    @property
    def net_paid(self) -> Decimal:
        """What the payments leave after their refunds: what is applied to the invoice."""
        return sum(self.payments.values(), Decimal(0)) - self.refunded

    @property
    def refunded(self) -> Decimal:
        return sum((sum(by_id.values(), Decimal(0)) for by_id in self.refunds.values()), Decimal(0))


def run_customer(stub: g.SyncServiceStub, md: Metadata, crm: CrmCustomer, c: int) -> tuple[list[str], int]:
    """The CRM's life of one customer, in order: a deposit (sent twice with one request_id), a second
    deposit (from two client threads at once for every fifth customer), a refund, then either a close-out
    and a repriced resync of the invoice, or a corrected second deposit and a close-out. Returns the job
    names and how many requests were sent."""
    cid = crm.customer_id
    p1, p2 = f"{cid}-p1", f"{cid}-p2"
    names: list[str] = []
    sent = 0

    def pay(payment_id: str, request_id: str = "") -> str:
        nonlocal sent
        sent += 1
        request = s.SyncPaymentRequest(
            opportunity=crm.opportunity(), payment=crm.payment(payment_id), request_id=request_id
        )
        return str(stub.SyncPayment(request, metadata=md, timeout=30).name)

    def close_out(request_id: str) -> str:
        nonlocal sent
        sent += 1
        request = s.CloseOutJobRequest(
            opportunity=crm.opportunity(), job=crm.job_message(), payments=crm.all_payments(), request_id=request_id
        )
        return str(stub.CloseOutJob(request, metadata=md, timeout=30).name)

    def resync_invoice() -> str:
        nonlocal sent
        sent += 1
        request = s.SyncInvoiceRequest(
            opportunity=crm.opportunity(), job=crm.job_message(), payments=crm.all_payments()
        )
        return str(stub.SyncInvoice(request, metadata=md, timeout=30).name)

    crm.payments[p1] = Decimal(100 + c) + Decimal("0.25")
    first = pay(p1, f"{cid}-1")
    assert pay(p1, f"{cid}-1") == first  # a CRM retrying a call gets the same job (request_id)
    names.append(first)

    crm.payments[p2] = Decimal(50 + 2 * c) + Decimal("0.10")
    if c % 5 == 0:
        barrier = threading.Barrier(2)

        def racer(_: int) -> str:
            barrier.wait()
            return pay(p2)

        with ThreadPoolExecutor(2) as pool:
            names += list(pool.map(racer, range(2)))
    else:
        names.append(pay(p2))

    crm.refunds[p1] = {f"{cid}-r1": Decimal("20.05")}
    names.append(pay(p1, f"{cid}-3"))

    if c % 2 == 0:
        crm.job = (f"{cid}-job", 4, Decimal("95.50"))
        names.append(close_out(f"{cid}-4"))
        crm.job = (f"{cid}-job", 4, Decimal("99.75"))  # repriced after the close-out (R6)
        names.append(resync_invoice())
    else:
        crm.payments[p2] += Decimal("15.00")  # the deposit was keyed wrongly (a resync, R3)
        names.append(pay(p2))
        crm.job = (f"{cid}-job", 4, Decimal("95.50"))
        names.append(close_out(f"{cid}-4"))
    return names, sent


# --- checks ---------------------------------------------------------------------------------------------


def marked(records: list[Json], tenant: str, kind: str, crm_id: str) -> list[Json]:
    """The records whose private note carries qbsync's marker for one CRM record (any generation)."""
    pattern = re.compile(rf"\[qbsync {re.escape(tenant)}/{kind}/{re.escape(crm_id)}(/\d+)?\]")
    return [record for record in records if pattern.search(str(record.get("PrivateNote") or ""))]


def check_books(emulator: Emulator, realm_id: str, tenant: str, customers: list[CrmCustomer]) -> None:
    """R7 (one QBO record per CRM record) and R10 (the books balance), per customer."""
    state = emulator.state(realm_id)
    gone = set(state["deleted"]) | set(state["voided"])
    live = {
        entity: [x for x in state["entities"].get(entity, []) if x["Id"] not in gone]
        for entity in ("Customer", "Payment", "Purchase", "Invoice")
    }
    ours = [x for x in live["Customer"] if str(x["DisplayName"]).startswith("Scale")]
    assert len(ours) == len(customers), sorted(x["DisplayName"] for x in ours)
    payments_seen = refunds_seen = invoices_seen = 0
    for crm in customers:
        [customer] = [x for x in ours if x["DisplayName"] == crm.name]
        customer_id = customer["Id"]
        for payment_id, amount in crm.payments.items():
            [payment] = marked(live["Payment"], tenant, "payment", payment_id)
            assert payment["CustomerRef"]["value"] == customer_id
            assert Decimal(payment["TotalAmt"]) == amount, payment_id
            payments_seen += 1
            for refund_id, refunded in crm.refunds.get(payment_id, {}).items():
                [purchase] = marked(live["Purchase"], tenant, "refund", refund_id)
                assert purchase["EntityRef"]["value"] == customer_id
                assert Decimal(purchase["TotalAmt"]) == refunded, refund_id
                refunds_seen += 1
        # R10, summed over whatever QuickBooks holds for the customer, marked or not.
        paid = sum(
            (Decimal(p["TotalAmt"]) for p in live["Payment"] if p["CustomerRef"]["value"] == customer_id), Decimal(0)
        )
        refunded = sum(
            (Decimal(p["TotalAmt"]) for p in live["Purchase"] if p["EntityRef"]["value"] == customer_id), Decimal(0)
        )
        assert paid == sum(crm.payments.values(), Decimal(0)), crm.customer_id
        assert refunded == crm.refunded, crm.customer_id
        assert crm.job is not None
        [invoice] = marked(live["Invoice"], tenant, "invoice", crm.job[0])
        assert invoice["CustomerRef"]["value"] == customer_id
        assert Decimal(invoice["TotalAmt"]) == crm.invoice_total, crm.customer_id
        assert Decimal(invoice["Balance"]) == crm.invoice_total - crm.net_paid, crm.customer_id
        invoices_seen += 1
    # Nothing beyond what the CRM holds: no duplicate left unmarked either.
    assert (len(live["Payment"]), len(live["Purchase"]), len(live["Invoice"])) == (
        payments_seen,
        refunds_seen,
        invoices_seen,
    )


def sync_record_states(database_url: str) -> Counter[str]:
    counted = rows(database_url, "SELECT state, count(*) FROM sync_records GROUP BY state")
    return Counter({str(state): int(count) for state, count in counted})


def kill_a_busy_worker(database_url: str, workers: list[int], seconds: float = 30) -> tuple[int, str]:
    """SIGKILLs a worker process while it holds a job; returns its pid and the job's id."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for job_id, claimed_by in running_claims(database_url):
            for pid in workers:
                if f"-{pid}-" in claimed_by:
                    os.kill(pid, signal.SIGKILL)
                    return pid, job_id
        time.sleep(0.02)
    raise AssertionError("no worker held a job to be killed")


# --- the tests ------------------------------------------------------------------------------------------


def test_many_syncs_through_an_api_process_and_four_worker_processes(
    cluster: Cluster, emulator: Emulator, database_url: str
) -> None:
    started = time.monotonic()
    tenants = {tenant: cluster.connect_tenant(tenant, emulator) for tenant in ("atlas", "bayside")}
    realms = {tenant: realm for tenant, (realm, _) in tenants.items()}
    for fault in (
        {"kind": "http503", "count": 4, "realm_id": realms["atlas"], "entity": "Payment"},
        {"kind": "http503", "count": 4, "realm_id": realms["bayside"], "entity": "query"},
        {
            "kind": "commit_then_reset",
            "count": 3,
            "realm_id": realms["atlas"],
            "entity": "Payment",
            "operation": "create",
        },
        {
            "kind": "commit_then_reset",
            "count": 2,
            "realm_id": realms["bayside"],
            "entity": "Purchase",
            "operation": "create",
        },
        {
            "kind": "commit_then_reset",
            "count": 2,
            "realm_id": realms["bayside"],
            "entity": "Invoice",
            "operation": "create",
        },
    ):
        emulator.admin("POST", "faults", fault)

    api, target = cluster.start_api()
    workers = [
        cluster.start_worker(f"worker-{n}", threads=THREADS_PER_WORKER, lease_seconds=LEASE_SECONDS)
        for n in range(WORKER_PROCESSES)
    ]
    customers = [
        CrmCustomer(("atlas", "bayside")[(c // 2) % 2], f"cust-{c:03d}", f"Scale{c:03d} Customer")
        for c in range(CUSTOMERS)
    ]
    with grpc.insecure_channel(target) as channel:
        stub = g.SyncServiceStub(channel)

        def client(c: int) -> tuple[list[str], int]:
            crm = customers[c]
            return run_customer(stub, tenants[crm.tenant][1], crm, c)

        with ThreadPoolExecutor(10) as pool:
            outcomes = pool.map(client, range(CUSTOMERS))
            # Mid-run: wait for some work to be done, then kill a worker that holds a job.
            while job_states(database_url)["SUCCEEDED"] < 40:
                assert time.monotonic() - started < 60, "the workers are not making progress"
                time.sleep(0.2)
            killed_pid, killed_job = kill_a_busy_worker(database_url, [w.pid for w in workers])
            results = list(outcomes)
        requests_sent = sum(sent for _, sent in results)
        job_names = {name for names, _ in results for name in names}
        assert requests_sent >= 300

        states = wait_until_settled(database_url, FINISH_WITHIN_SECONDS - (time.monotonic() - started), 0.5)
        assert states == Counter({"SUCCEEDED": len(job_names)}), states
        killed = stub.GetSyncJob(
            s.GetSyncJobRequest(name=f"syncJobs/{killed_job}"),
            metadata=_metadata_of(killed_job, tenants, stub),
            timeout=10,
        )
        assert killed.state == r.SyncJob.STATE_SUCCEEDED and killed.attempts >= 2

    for tenant, realm_id in realms.items():
        check_books(emulator, realm_id, tenant, [crm for crm in customers if crm.tenant == tenant])
    assert set(sync_record_states(database_url)) == {"SYNCED"}

    armed = emulator.admin("GET", "faults")["faults"]
    assert sum(int(rule["remaining"]) for rule in armed) == 0, armed  # every fault was met and survived
    log = emulator.requests()
    for realm_id in realms.values():
        peak = max(int(entry.get("in_flight_at_start", 0)) for entry in log if entry.get("realm_id") == realm_id)
        assert peak <= CONCURRENT_LIMIT, (realm_id, peak)
    throttled = [(entry["entity"], entry["throttled"]) for entry in log if entry.get("throttled")]
    assert not throttled  # no limit was ever reached: the shared limiter kept every process under them
    assert emulator.admin("GET", "errors")["errors"] == []

    assert workers[[w.pid for w in workers].index(killed_pid)].wait(timeout=5) == -signal.SIGKILL
    codes = cluster.stop_all()
    assert codes.count(-signal.SIGKILL) == 1 and all(code in (0, -signal.SIGKILL) for code in codes), codes
    assert api.returncode == 0
    assert time.monotonic() - started < 180


def _metadata_of(job_id: str, tenants: dict[str, tuple[str, Metadata]], stub: g.SyncServiceStub) -> Metadata:
    """Job ids are per tenant: find the tenant whose key sees the job."""
    for _, md in tenants.values():
        try:
            stub.GetSyncJob(s.GetSyncJobRequest(name=f"syncJobs/{job_id}"), metadata=md, timeout=10)
            return md
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
    raise AssertionError(f"no tenant sees job {job_id}")


def test_a_job_held_by_a_killed_worker_completes_elsewhere_exactly_once(
    cluster: Cluster, emulator: Emulator, database_url: str
) -> None:
    """The worker is SIGKILLed after QuickBooks took the customer and the refund (R4 writes it first) but
    before the payment answered: once the lease runs out, another worker process finishes the job without
    writing twice."""
    realm_id, md = cluster.connect_tenant("atlas", emulator)
    emulator.admin(
        "POST",
        "faults",
        {"kind": "timeout", "seconds": 8, "realm_id": realm_id, "entity": "Payment", "operation": "create"},
    )
    api, target = cluster.start_api()
    doomed = cluster.start_worker("doomed", threads=1, lease_seconds=3)
    crm = CrmCustomer(
        "atlas",
        "cust-lease",
        "Lease Customer",
        {"cust-lease-p1": Decimal("300.00")},
        {"cust-lease-p1": {"cust-lease-r1": Decimal("40.00")}},
    )
    with grpc.insecure_channel(target) as channel:
        stub = g.SyncServiceStub(channel)
        accepted = stub.SyncPayment(
            s.SyncPaymentRequest(opportunity=crm.opportunity(), payment=crm.payment("cust-lease-p1")),
            metadata=md,
            timeout=30,
        )
        deadline = time.monotonic() + 60
        # The timeout fault fires (its rule is used up) when the payment's create reaches QuickBooks.
        while any(rule["remaining"] for rule in emulator.admin("GET", "faults")["faults"]):
            assert time.monotonic() < deadline, "the worker never reached the payment"
            time.sleep(0.05)
        [(job_id, holder)] = running_claims(database_url)
        assert f"-{doomed.pid}-" in holder
        doomed.kill()
        assert doomed.wait(timeout=10) == -signal.SIGKILL
        assert len(emulator.live_records(realm_id, "Purchase")) == 1  # half done when it died

        cluster.start_worker("heir", threads=1, lease_seconds=3)
        done = None
        for update in stub.WatchSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md, timeout=60):
            done = update
        assert done is not None and done.state == r.SyncJob.STATE_SUCCEEDED, done
        assert done.attempts == 2

    customers = [x for x in emulator.live_records(realm_id, "Customer") if x["DisplayName"] == crm.name]
    [payment] = emulator.live_records(realm_id, "Payment")
    [purchase] = emulator.live_records(realm_id, "Purchase")
    assert len(customers) == 1
    assert marked([payment], "atlas", "payment", "cust-lease-p1") and Decimal(payment["TotalAmt"]) == Decimal("300")
    assert marked([purchase], "atlas", "refund", "cust-lease-r1") and Decimal(purchase["TotalAmt"]) == Decimal("40")
    assert api.poll() is None
