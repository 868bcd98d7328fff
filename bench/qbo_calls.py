"""QuickBooks requests per scenario, with and without QBO's batch endpoint (issue 12: "QBO calls per scenario
at the minimum *with* the batch endpoint").

    .venv/bin/python bench/qbo_calls.py [--path adapter] [--latency-ms 0]

Scenarios, each on a fresh emulator company (the bundled emulator, over HTTP, through the real adapter:
python-quickbooks, the request limiter, retries):
- refunds: a payment with 3 refunds: the refunds, then the payment linking them. Batched: the 3 refunds in
  one batch (QBO items do not see each other's Ids, so the payment that links them is a second request).
- close-out: a close-out applying 4 payments to the job's invoice: 4 payment updates. Batched: one batch.
- deposits: 10 concurrent new-customer deposits of one company: 10 customer look-ups, 10 customer creates,
  10 payments. Batched: the look-ups in one batch and the payments in one batch (the port batches no
  customer create yet, so those stay 10 single requests: the minimum counts them).

What a scenario costs is counted on the emulator's request log for its company (every request QBO received,
reads included); what the settings cost once per company is paid before counting, in both paths alike. Each
scenario prints the requests without batching, with batching and the minimum, and one target line
`PASS|FAIL <label>: <figure>` (batched == minimum), which `make bench` collects.

Paths. `adapter` drives the port directly: single calls (`create`, `update`, `find_customers`) against
`write_many` / `find_customers_many`. `engine` runs the scenarios as the product does, over the production
wiring (SQLite, the real adapter, the emulator): SyncService accepts the jobs, the real SyncWorker runs
them. refunds: a SyncPayment of a payment with 3 refunds for a customer already in QuickBooks; close-out:
a CloseOutJob whose 4 payments are in QuickBooks, unapplied. Each counts every request QBO received for
the job, PASS at the adapter path's minimum (the close-out's adds the invoice, which the adapter path takes
as prepared: its payments link it, so it cannot ride in their batch). deposits: 10 SyncPayment jobs of
new customers of one company, run by 10 worker threads (as qbsync/runtime.py runs them, started together
on a barrier), once with `QuickBooksModule(coalesce_lookups=False)`, once with look-ups coalesced only
(`coalesce_creates=False`) and once with the default, which coalesces concurrent customer look-ups and
customer creates of one company into batches (adapters/quickbooks/coalescing.py). It counts the customer
look-up requests (single queries and batches of queries) and the customer create requests (single creates
and batches of creates) QBO received against the 10 jobs: PASS when each is fewer than the jobs. It also
checks that no batch mixes kinds (a job's payment never rides with its customer's create). The requests
overlap only while one is in flight, so this path adds 100 ms of emulator latency unless `--latency-ms`
says otherwise (QBO's own is 100-300 ms). Not a test: it asserts only that every write landed and every job succeeded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The deployment helpers are shared with the scale tests, which must not depend on bench/.
sys.path.insert(0, str(ROOT / "tests" / "scale"))

import requests  # noqa: E402
from scale_support import Cluster  # noqa: E402

from adapters.persistence.sqlalchemy import migrate  # noqa: E402
from adapters.quickbooks.emulator import EmulatorServer, run_emulator  # noqa: E402
from adapters.quickbooks.module import QuickBooksModule  # noqa: E402
from core.accounting import (  # noqa: E402
    BatchWrite,
    CustomerLookup,
    InvoiceSpec,
    LinkLine,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
)
from core.connections_service import ConnectionService  # noqa: E402
from core.domain import Customer, InvoiceLine, Job, Opportunity, PaymentMethod, Permission, Principal, SyncJob  # noqa: E402
from core.domain import Payment as CrmPayment  # noqa: E402
from core.domain import Refund as CrmRefund  # noqa: E402
from core.ports import AccountingSystem  # noqa: E402
from core.service import SyncService  # noqa: E402
from core.worker import SyncWorker  # noqa: E402
from qbsync.bootstrap import bootstrap  # noqa: E402
from tests.integration.quickbooks.qbo_support import QboRig  # noqa: E402

DAY = date(2026, 1, 2)
REFUNDS = 3
CLOSE_OUT_PAYMENTS = 4
DEPOSITS = 10


def payment(customer_id: str, amount: str, n: int, lines: tuple[LinkLine, ...] = ()) -> PaymentSpec:
    marker = f"[m-p{n}]"
    return PaymentSpec(customer_id, Decimal(amount), DAY, PaymentMethod.CASH, f"R-{n}", lines, f"CRM {marker}", marker)


def refund(customer_id: str, n: int) -> RefundSpec:
    marker = f"[m-r{n}]"
    return RefundSpec(customer_id, Decimal("10.00"), DAY, TxnKind.EXPENSE, "refund", f"CRM {marker}", marker)


def landed(results: list[QuickBooksRef | Exception]) -> list[QuickBooksRef]:
    refs = [r for r in results if isinstance(r, QuickBooksRef)]
    if len(refs) != len(results):
        raise SystemExit(f"a batched write was refused: {results}")
    return refs


# --- the scenarios: set-up (not counted), then the work done singly or batched -------------------------


@dataclass
class Scenario:
    """`prepare` builds what the scenario starts from (not counted) and returns the state `run` needs; `run`
    does the scenario's work, batched or not."""

    name: str
    label: str
    minimum: int  # requests with the batch endpoint used wherever QBO allows it through the port
    prepare: Callable[[AccountingSystem], object]
    run: Callable[[AccountingSystem, object, bool], None]


def _customer(system: AccountingSystem, name: str = "Bench Movers") -> str:
    return system.create_customer(NewCustomer(name, "", "", "", "", "", "CRM c1"), request_id=f"c-{name}").id


def _prepare_refunds(system: AccountingSystem) -> object:
    who = _customer(system)
    system.create(refund(who, 0), request_id="warm-r")  # the refund's settings, looked up once per company
    system.create(payment(who, "1.00", 0), request_id="warm-p")
    return who


def _run_refunds(system: AccountingSystem, state: object, batched: bool) -> None:
    who = str(state)
    writes = [BatchWrite(refund(who, n), f"r-{n}") for n in range(1, REFUNDS + 1)]
    if batched:
        refunds = landed(system.write_many(writes))
    else:
        refunds = [system.create(w.spec, request_id=w.request_id) for w in writes]
    lines = tuple(LinkLine(r.kind, r.id, Decimal("10.00")) for r in refunds)
    system.create(payment(who, "300.00", 1, lines), request_id="p-1")


def _prepare_close_out(system: AccountingSystem) -> object:
    who = _customer(system)
    line = InvoiceLine("Moving", Decimal("4"), Decimal("100.00"), Decimal("400.00"))
    billed = system.create(InvoiceSpec(who, "1001", DAY, (line,), "CRM job [m-i1]", "[m-i1]"), request_id="i-1")
    paid = [system.create(payment(who, "100.00", n), request_id=f"p-{n}") for n in range(1, CLOSE_OUT_PAYMENTS + 1)]
    return who, billed, paid


def _run_close_out(system: AccountingSystem, state: object, batched: bool) -> None:
    who, billed, paid = state  # type: ignore[misc]
    link = (LinkLine(TxnKind.INVOICE, billed.id, Decimal("100.00")),)
    writes = [BatchWrite(payment(who, "100.00", n, link), f"u-{n}", ref) for n, ref in enumerate(paid, start=1)]
    if batched:
        landed(system.write_many(writes))
    else:
        for w in writes:
            assert w.ref is not None
            system.update(w.ref, w.spec, request_id=w.request_id)


def _prepare_deposits(system: AccountingSystem) -> object:
    who = _customer(system, "Warm Up")
    system.create(payment(who, "1.00", 0), request_id="warm-p")
    return None


def _run_deposits(system: AccountingSystem, state: object, batched: bool) -> None:
    people = [CustomerLookup(f"Customer {n}", f"c{n}@example.com") for n in range(1, DEPOSITS + 1)]
    if batched:
        found = system.find_customers_many(people)
    else:
        found = [system.find_customers(p.display_name, p.email) for p in people]
    assert all(not f for f in found)  # new customers: none exists yet
    made = [
        system.create_customer(NewCustomer(p.display_name, "", "", "", p.email, "", "CRM"), request_id=p.email).id
        for p in people
    ]
    writes = [BatchWrite(payment(who, "50.00", n), f"d-{n}") for n, who in enumerate(made, start=1)]
    if batched:
        landed(system.write_many(writes))
    else:
        for w in writes:
            system.create(w.spec, request_id=w.request_id)


SCENARIOS = [
    Scenario("refunds", f"a payment with {REFUNDS} refunds: the refunds in 1 batch", 2, _prepare_refunds, _run_refunds),
    Scenario(
        "close-out",
        f"a close-out applying {CLOSE_OUT_PAYMENTS} payments: their updates in 1 batch",
        1,
        _prepare_close_out,
        _run_close_out,
    ),
    Scenario(
        "deposits",
        f"{DEPOSITS} new-customer deposits of one company: look-ups in 1 batch",
        1 + DEPOSITS + 1,
        _prepare_deposits,
        _run_deposits,
    ),
]


# --- paths: what drives a scenario ---------------------------------------------------------------------


def adapter_path(server: EmulatorServer, scenario: Scenario, batched: bool) -> tuple[int, float]:
    """The scenario on the port, against a fresh emulator company: (requests QBO received, seconds)."""
    rig = QboRig.connect(server)
    system = rig.system
    state = scenario.prepare(system)
    rig.clear_log()
    started = time.perf_counter()
    scenario.run(system, state, batched)
    elapsed = time.perf_counter() - started
    return len(rig.log()), elapsed


PATHS: dict[str, Callable[[EmulatorServer, Scenario, bool], tuple[int, float]]] = {"adapter": adapter_path}
ENGINE_LATENCY_MS = 100.0
RECEIVED = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


@dataclass
class EngineRun:
    lookups: int  # customer look-up requests QBO received: single queries and batches of queries
    requests: int  # every request QBO received for the company
    seconds: float
    creates: int = 0  # customer create requests QBO received: single creates and batches of creates


def _is_lookup(entry: dict[str, object]) -> bool:
    """A customer look-up request: a query (in a warmed company, the jobs of new customers query nothing
    else), or a batch whose items are queries (the batches of writes carry none)."""
    if entry["entity"] == "query":
        return True
    body = entry.get("body")
    items = body.get("BatchItemRequest", []) if isinstance(body, dict) else []
    return entry["entity"] == "batch" and any("Query" in item for item in items)


def _batch_items(entry: dict[str, object]) -> list[dict[str, object]]:
    body = entry.get("body")
    items = body.get("BatchItemRequest", []) if isinstance(body, dict) else []
    return [item for item in items if isinstance(item, dict)]


def _is_customer_create(entry: dict[str, object]) -> bool:
    """A customer create request: a single one, or a batch whose items create customers."""
    if entry["entity"] == "Customer" and entry["operation"] == "create":
        return True
    return entry["entity"] == "batch" and any("Customer" in item for item in _batch_items(entry))


def _kinds_unmixed(log: list[dict[str, object]]) -> None:
    """Every batch carries one kind of item: a job's payment goes in a request after its customer exists."""
    for entry in log:
        if entry["entity"] == "batch":
            kinds = {next((k for k in item if k not in ("bId", "operation")), "") for item in _batch_items(entry)}
            if len(kinds) != 1:
                raise SystemExit(f"a batch mixed {sorted(kinds)}")


def _deposit(n: int) -> tuple[Opportunity, CrmPayment]:
    who = Customer(f"c{n}", "Deposit", f"Customer{n}", email=f"c{n}@example.com")
    payment = CrmPayment(f"pay-{n}", Decimal("50.00"), PaymentMethod.CASH, RECEIVED, f"ch_{n}")
    return Opportunity(f"opp-{n}", f"{1000 + n}", who), payment


@dataclass
class EngineCompany:
    """A fresh emulator company connected to a fresh database, with the product's service and worker."""

    service: SyncService
    worker: SyncWorker
    principal: Principal
    realm: str

    def clear_log(self, server: EmulatorServer) -> None:
        requests.post(f"{server.admin_url}/requests/clear", timeout=10)

    def log(self, server: EmulatorServer) -> list[dict[str, object]]:
        answer = requests.get(f"{server.admin_url}/requests", params={"realm_id": self.realm}, timeout=10)
        return list(answer.json()["requests"])

    def succeeded(self, jobs: list[SyncJob]) -> None:
        for job in jobs:
            ended = self.service.get_job(self.principal, job.name)
            if ended.state.name != "SUCCEEDED":
                raise SystemExit(f"{job.name} ended {ended.state.name}: {ended.error}")


# How concurrent customer requests of one company leave: alone, look-ups coalesced, look-ups and creates.
COALESCING = {"not coalesced": (False, False), "look-ups": (True, False), "look-ups+creates": (True, True)}


def engine_company(
    server: EmulatorServer, workdir: Path, name: str, *, coalescing: str = "look-ups+creates"
) -> EngineCompany:
    url = f"sqlite:///{workdir / f'engine-{name}.db'}"
    migrate(url)
    lookups, creates = COALESCING[coalescing]
    module = QuickBooksModule(coalesce_lookups=lookups, coalesce_creates=creates)
    injector = bootstrap(module, settings=Cluster(url, workdir).settings())
    company = requests.post(f"{server.admin_url}/realms", json={"company_name": name}, timeout=10).json()
    realm = str(company["realm_id"])
    # A moving company whose invoices carry the CRM's job numbers (custom transaction numbers on): each new
    # invoice's number is checked free in QuickBooks first (SPEC §10, one query), which the minimum counts.
    requests.post(f"{server.admin_url}/realms/{realm}/preferences", json={"custom_txn_numbers": True}, timeout=10)
    injector.get(ConnectionService).connect_with_tokens(
        "movers",
        realm,
        str(company["client_id"]),
        str(company["client_secret"]),
        str(company["refresh_token"]),
        str(company["access_token"]),
        environment=server.discovery_url,
        api_base_url=server.base_api_url,
    )
    principal = Principal("movers", frozenset(Permission))
    return EngineCompany(injector.get(SyncService), injector.get(SyncWorker), principal, realm)


def engine_deposits(server: EmulatorServer, coalescing: str, workdir: Path) -> EngineRun:
    """The deposits scenario as sync jobs run by `DEPOSITS` worker threads, on a fresh company and database."""
    company = engine_company(server, workdir, f"Deposit Movers {coalescing}", coalescing=coalescing)
    service, worker, principal = company.service, company.worker, company.principal
    # Not counted: a first sync reads the company's settings and preferences, once per company.
    warm = service.sync_payment(principal, *_deposit(0))
    worker.drain()
    jobs = [warm] + [service.sync_payment(principal, *_deposit(n)) for n in range(1, DEPOSITS + 1)]
    company.clear_log(server)
    start = threading.Barrier(DEPOSITS + 1)

    def run(n: int) -> None:
        start.wait()
        worker.drain(f"bench-worker-{n}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(DEPOSITS)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    company.succeeded(jobs)
    log = company.log(server)
    _kinds_unmixed(log)
    lookups, creates = sum(1 for e in log if _is_lookup(e)), sum(1 for e in log if _is_customer_create(e))
    return EngineRun(lookups, len(log), elapsed, creates)


MOVER = Customer("c1", "Bench", "Mover", email="mover@example.com")


def _crm_payment(n: int, amount: str = "100.00", refunds: int = 0) -> CrmPayment:
    backs = tuple(CrmRefund(f"ref-{n}-{k}", Decimal("10.00"), RECEIVED) for k in range(1, refunds + 1))
    return CrmPayment(f"pay-{n}", Decimal(amount), PaymentMethod.CASH, RECEIVED, f"ch_{n}", backs)


def _counted(server: EmulatorServer, company: EngineCompany, accept: Callable[[], SyncJob]) -> EngineRun:
    """One job, accepted by `accept` and run by the worker: the requests QBO received for it."""
    job = accept()
    company.clear_log(server)
    started = time.perf_counter()
    company.worker.drain()
    elapsed = time.perf_counter() - started
    company.succeeded([job])
    return EngineRun(0, len(company.log(server)), elapsed)


def engine_refunds(server: EmulatorServer, workdir: Path) -> EngineRun:
    """A payment with `REFUNDS` refunds synced by the engine, for a customer already in QuickBooks."""
    company = engine_company(server, workdir, "Refund Movers")
    service, principal = company.service, company.principal
    opportunity = Opportunity("opp-r", "2001", MOVER)
    # Not counted: the customer, and the settings a refund and a payment look up once per company.
    warm = service.sync_payment(principal, opportunity, _crm_payment(0, refunds=1))
    company.worker.drain()
    company.succeeded([warm])
    return _counted(
        server, company, lambda: service.sync_payment(principal, opportunity, _crm_payment(1, "300.00", REFUNDS))
    )


def engine_close_out(server: EmulatorServer, workdir: Path) -> EngineRun:
    """The close-out of a job paid by `CLOSE_OUT_PAYMENTS` payments already in QuickBooks (unapplied)."""
    company = engine_company(server, workdir, "Close-out Movers")
    service, principal = company.service, company.principal
    line = InvoiceLine("Moving", Decimal("4"), Decimal("100.00"), Decimal("400.00"))
    # Not counted: the customer, and what an invoice and a payment look up once per company (a first job).
    warm_opportunity = Opportunity("opp-w", "3000", MOVER)
    warm = [service.sync_payment(principal, warm_opportunity, _crm_payment(0))]
    warm.append(service.close_out_job(principal, warm_opportunity, Job("job-w", "3000", DAY, (line,)), []))
    opportunity = Opportunity("opp-c", "3001", MOVER)
    paid = [_crm_payment(n) for n in range(1, CLOSE_OUT_PAYMENTS + 1)]
    warm += [service.sync_payment(principal, opportunity, p) for p in paid]
    company.worker.drain()
    company.succeeded(warm)
    job = Job("job-1", "3001", DAY, (line,))
    return _counted(server, company, lambda: service.close_out_job(principal, opportunity, job, paid))


# The engine's minimum: what the adapter path's batched scenario sends, plus what it takes as prepared —
# the close-out's invoice, which its payments link (QBO items cannot see each other's new Ids), and the query
# that checks the invoice's number free before it is created (SPEC §10, InvoiceNumbering.CRM).
ENGINE_SCENARIOS: list[tuple[str, str, int, Callable[[EmulatorServer, Path], EngineRun]]] = [
    ("refunds", f"a payment with {REFUNDS} refunds: the refunds in 1 batch (engine)", 2, engine_refunds),
    (
        "close-out",
        f"a close-out applying {CLOSE_OUT_PAYMENTS} payments: its number checked, the invoice, then their updates "
        "in 1 batch (engine)",
        3,
        engine_close_out,
    ),
]


def engine_main(server: EmulatorServer) -> None:
    label = f"customer look-ups of {DEPOSITS} concurrent new-customer deposits of one company batched (engine)"
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="qbo-calls-") as workdir:
        print(f"{'scenario':<16}{'requests':>10}{'minimum':>9}{'seconds':>9}")
        for name, scenario_label, minimum, drive in ENGINE_SCENARIOS:
            run = drive(server, Path(workdir))
            print(f"{name:<16}{run.requests:>10}{minimum:>9}{run.seconds:>9.2f}")
            verdict = "PASS" if run.requests <= minimum else "FAIL"
            verdicts.append(f"  {verdict}  QBO calls, {scenario_label}: {run.requests} requests (minimum {minimum})")
        print()
        print(f"{'coalesced':<18}{'look-ups':>10}{'creates':>9}{'requests':>10}{'seconds':>9}")
        runs = {}
        for coalescing in COALESCING:
            run = runs[coalescing] = engine_deposits(server, coalescing, Path(workdir))
            print(f"{coalescing:<18}{run.lookups:>10}{run.creates:>9}{run.requests:>10}{run.seconds:>9.2f}")
    single, lookups_only, both = runs["not coalesced"], runs["look-ups"], runs["look-ups+creates"]
    print()
    print("\n".join(verdicts))
    verdict = "PASS" if both.lookups < DEPOSITS else "FAIL"
    print(
        f"  {verdict}  QBO calls, {label}: {both.lookups} look-up requests for {DEPOSITS} jobs "
        f"({single.lookups} without coalescing; {both.requests} requests in all, {single.requests} without)"
    )
    label = f"customer creates of {DEPOSITS} concurrent new-customer deposits of one company batched (engine)"
    verdict = "PASS" if both.creates < DEPOSITS else "FAIL"
    print(
        f"  {verdict}  QBO calls, {label}: {both.creates} create requests for {DEPOSITS} jobs "
        f"({lookups_only.creates} with look-ups coalesced only; {both.requests} requests in all, "
        f"{lookups_only.requests} with look-ups coalesced only, {single.requests} without coalescing)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=sorted([*PATHS, "engine"]), default="adapter")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help=f"added by the emulator to every API call (default 0, {ENGINE_LATENCY_MS:g} on the engine path)",
    )
    args = parser.parse_args()
    engine = args.path == "engine"
    latency = args.latency_ms if args.latency_ms is not None else (ENGINE_LATENCY_MS if engine else 0.0)
    server = run_emulator("127.0.0.1", 0)
    try:
        QboRig.connect(server).settings(latency_ms=latency, log_bodies=engine)
        print(f"QBO requests per scenario, {args.path} path, emulator latency {latency:g} ms")
        if engine:
            engine_main(server)
            return
        drive = PATHS[args.path]
        print(f"{'scenario':<12}{'single':>8}{'batched':>9}{'minimum':>9}{'single ms':>11}{'batched ms':>12}")
        verdicts = []
        for scenario in SCENARIOS:
            single, single_s = drive(server, scenario, False)
            batched, batched_s = drive(server, scenario, True)
            print(
                f"{scenario.name:<12}{single:>8}{batched:>9}{scenario.minimum:>9}"
                f"{single_s * 1000:>11.1f}{batched_s * 1000:>12.1f}"
            )
            verdict = "PASS" if batched <= scenario.minimum else "FAIL"
            verdicts.append(
                f"  {verdict}  QBO calls, {scenario.label} ({args.path}): {batched} requests "
                f"(minimum {scenario.minimum}; {single} without batching)"
            )
        print()
        print("\n".join(verdicts))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
