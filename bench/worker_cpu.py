"""Worker CPU per completed sync, against raw python-quickbooks making the same HTTP calls (issue 12).

    .venv/bin/python bench/worker_cpu.py [--syncs 40] [--database sqlite,postgresql] [--profile FILE]

One sync here is a new customer's payment with one refund (SyncPayment), run by the real SyncWorker on the
real adapter (adapters/quickbooks/qbo, i.e. python-quickbooks over HTTP) against the bundled QBO emulator,
which runs in a process of its own so that its CPU is not counted. The jobs are accepted first (not
counted), then one worker thread drains them all; this process's CPU time over the drain, divided by the
syncs, is the worker's CPU per sync. Every engine in this process is watched (SQLAlchemy event listeners):
database transactions and statements per sync, and the shared request limiter's transactions (its round
trips) per QuickBooks request, on PostgreSQL.

The baseline, in the same run against the same emulator: for each sync, python-quickbooks' own objects
(`QuickBooks` with a bearer token, `Customer`, `Purchase`, `Payment`) sending the requests the worker sends
for one sync (a customer query by name, then Customer, Purchase and Payment creates), and nothing else: no
database, no limiter, no retries; measured just before and just after the worker, their mean. It prints the
ratios and PASS/FAIL against the targets. (The adapter sends python-quickbooks' requests through urllib3,
adapters/quickbooks/qbo/http.py; the baseline keeps the library's own `requests.Session`, as an application
using the library would.)

Targets:

* worker CPU per sync <= 1.5x raw python-quickbooks,
* <= 4 database transactions per sync (the units of work's; the limiter's are the next target's),
* <= 1 limiter round trip per QuickBooks request (PostgreSQL; SQLite's limiter is in-process: 0).

PostgreSQL runs need QBSYNC_TEST_DATABASE_URL (a fresh schema per run); without one only SQLite runs. Not a
test: it asserts only that every job succeeded. Runs in well under three minutes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The deployment helpers are shared with the scale tests, which must not depend on bench/.
sys.path.insert(0, str(ROOT / "tests" / "scale"))

import requests  # noqa: E402
from quickbooks import QuickBooks  # noqa: E402
from quickbooks.objects.account import Account  # noqa: E402
from quickbooks.objects.base import EmailAddress, LinkedTxn, Ref  # noqa: E402
from quickbooks.objects.customer import Customer as QboCustomer  # noqa: E402
from quickbooks.objects.detailline import AccountBasedExpenseLine, AccountBasedExpenseLineDetail  # noqa: E402
from quickbooks.objects.payment import Payment as QboPayment  # noqa: E402
from quickbooks.objects.payment import PaymentLine  # noqa: E402
from quickbooks.objects.paymentmethod import PaymentMethod as PaymentMethod_  # noqa: E402
from quickbooks.objects.purchase import Purchase  # noqa: E402
from scale_support import POSTGRES_ENV, Cluster, Emulator, fresh_postgres_schema  # noqa: E402
from sqlalchemy import Engine, event  # noqa: E402

from adapters.persistence.sqlalchemy import migrate  # noqa: E402
from adapters.quickbooks.qbo.transport import MINOR_VERSION  # noqa: E402
from core.auth import ApiKeys  # noqa: E402, F401 - wiring: the injector resolves it
from core.connections_service import ConnectionService  # noqa: E402
from core.domain import Customer, Opportunity, Payment, PaymentMethod, Permission, Principal, Refund  # noqa: E402
from core.ports import UnitOfWorkFactory  # noqa: E402
from core.service import SyncService  # noqa: E402
from core.worker import SyncWorker  # noqa: E402
from qbsync.bootstrap import bootstrap  # noqa: E402

TENANTS = 20  # one worker thread spread over companies: QBO's 10 requests/s per company is not what is timed
WARM_UP_SYNCS = 1  # per tenant, not counted: imports, the company's settings and look-ups of a first sync
RECEIVED = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
TARGET_CPU_RATIO = 1.5
TARGET_TRANSACTIONS = 4
TARGET_LIMITER_TRIPS = 1.0


class SqlWatch:
    """Transactions and statements of every SQLAlchemy engine in this process: the units of work's
    engine, and the others (on PostgreSQL, the coordination engine of the request limiter and the
    token-refresh lock: adapters/coordination.py)."""

    def __init__(self) -> None:
        self.units_engine: Engine | None = None
        self.on = False
        self.reset()

    def install(self) -> None:
        event.listen(Engine, "begin", self._begin)
        event.listen(Engine, "before_cursor_execute", self._execute)

    def reset(self) -> None:
        self.transactions = self.statements = self.limiter_transactions = self.limiter_statements = 0

    def _begin(self, connection: Any) -> None:
        if self.on:
            self.transactions += 1
            if connection.engine is not self.units_engine:
                self.limiter_transactions += 1

    def _execute(self, connection: Any, *args: Any) -> None:
        if self.on:
            self.statements += 1
            if connection.engine is not self.units_engine:
                self.limiter_statements += 1


WATCH = SqlWatch()


@dataclass
class Figures:
    database: str
    syncs: int
    cpu_seconds: float
    raw_cpu_seconds: float
    qbo_requests: int
    transactions: int
    statements: int
    limiter_transactions: int
    limiter_statements: int
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        return self.cpu_seconds / self.raw_cpu_seconds

    def per_sync(self, n: float) -> float:
        return n / self.syncs


def opportunity_of(n: int) -> Opportunity:
    return Opportunity(f"opp-{n}", f"{1000 + n}", Customer(f"c{n}", "Bench", f"Customer{n}", email=f"c{n}@example.com"))


def payment_of(n: int) -> Payment:
    refund = Refund(f"ref-{n}", Decimal("25.50"), RECEIVED, "partial refund")
    return Payment(f"pay-{n}", Decimal(200 + n % 50), PaymentMethod.CREDIT_CARD, RECEIVED, f"ch_{n}", (refund,))


@contextmanager
def database(kind: str, postgres: str, workdir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with fresh_postgres_schema(postgres) as url:
            yield url
        return
    url = f"sqlite:///{workdir / 'worker_cpu.db'}"
    migrate(url)
    yield url


class Deployment:
    """The production wiring on `url` in this process, with `tenants` connected to emulator companies."""

    def __init__(self, url: str, workdir: Path, emulator: Emulator, tenants: int) -> None:
        self.cluster = Cluster(url, workdir)
        self.injector = bootstrap(settings=self.cluster.settings())
        self.service = self.injector.get(SyncService)
        self.worker = self.injector.get(SyncWorker)
        self.emulator = emulator
        self.realms: list[str] = []
        for t in range(tenants):
            company = emulator.create_realm(f"bench{t} Movers")
            self.injector.get(ConnectionService).connect_with_tokens(
                f"tenant{t}",
                str(company["realm_id"]),
                str(company["client_id"]),
                str(company["client_secret"]),
                str(company["refresh_token"]),
                str(company["access_token"]),
                environment=emulator.discovery_url,
                api_base_url=emulator.base_api_url,
            )
            self.realms.append(str(company["realm_id"]))
        self._next = 0

    def enqueue(self, count: int) -> list[tuple[Principal, str]]:
        """`count` new customers' payments with one refund each, round-robin over the tenants."""
        jobs = []
        for _ in range(count):
            n, self._next = self._next, self._next + 1
            principal = Principal(f"tenant{n % len(self.realms)}", frozenset(Permission))
            job = self.service.sync_payment(principal, opportunity_of(n), payment_of(n))
            jobs.append((principal, job.name))
        return jobs

    def check_succeeded(self, jobs: list[tuple[Principal, str]]) -> None:
        for principal, name in jobs:
            job = self.service.get_job(principal, name)
            if job.state.name != "SUCCEEDED":
                raise SystemExit(f"{name} ended {job.state.name}: {job.error}")


class RawQuickBooks(QuickBooks):
    """python-quickbooks' own client, as an application using the library directly would: a bearer token
    on a `requests.Session`, nothing else (no limiter, no metrics, no classification of answers)."""

    def __init__(self, *, realm_id: str, base_url: str, access_token: str) -> None:
        self.company_id = realm_id
        self.minorversion = MINOR_VERSION
        self.use_decimal = True
        self.sandbox = False
        self.api_url_v3 = base_url
        self.sandbox_api_url_v3 = base_url
        self.session = requests.Session()  # type: ignore[assignment]
        self._token = access_token

    def __new__(cls, **kwargs: Any) -> RawQuickBooks:
        return object.__new__(cls)

    def process_request(
        self, request_type: str, url: str, headers: Any = "", params: Any = "", data: Any = ""
    ) -> requests.Response:
        headers = dict(headers or {})
        headers["Authorization"] = "Bearer " + self._token
        return self.session.request(request_type, url, headers=headers, params=params, data=data, timeout=30)  # type: ignore[union-attr, no-any-return]


def _ref(value: str, kind: str = "") -> Ref:
    ref = Ref()
    ref.value = value
    if kind:
        ref.type = kind
    return ref


class RawSyncs:
    """What one sync sends, made by hand with python-quickbooks: look the customer up by name, create it,
    the refund (an expense paid to the customer) and the payment linked to it."""

    def __init__(self, emulator: Emulator, index: int) -> None:
        company = emulator.create_realm(f"raw{index} Movers")
        self.client = RawQuickBooks(
            realm_id=str(company["realm_id"]),
            base_url=emulator.base_api_url,
            access_token=str(company["access_token"]),
        )
        accounts = {a.AccountType: a.Id for a in Account.all(qb=self.client, max_results=100)}
        self.bank = accounts.get("Bank", "1")
        self.expense = accounts.get("Expense", next(iter(accounts.values())))
        self.method = PaymentMethod_.all(qb=self.client)[0].Id

    def sync(self, n: int) -> None:
        name = f"Raw Customer{n}"
        found = QboCustomer.filter(DisplayName=name, qb=self.client)
        assert not found
        customer = QboCustomer()
        customer.DisplayName, customer.GivenName, customer.FamilyName = name, "Raw", f"Customer{n}"
        customer.Notes = f"CRM customer c{n}"
        customer.PrimaryEmailAddr = EmailAddress()
        customer.PrimaryEmailAddr.Address = f"c{n}@example.com"
        customer.save(qb=self.client)

        purchase = Purchase()
        purchase.AccountRef = _ref(self.bank)
        purchase.EntityRef = _ref(customer.Id, "Customer")
        purchase.PaymentType = "Cash"
        purchase.TxnDate = RECEIVED.date().isoformat()
        purchase.TotalAmt = Decimal("25.50")
        purchase.PrivateNote = f"CRM refund ref-{n}"
        line = AccountBasedExpenseLine()
        line.Amount = Decimal("25.50")
        line.Description = "partial refund"
        line.AccountBasedExpenseLineDetail = AccountBasedExpenseLineDetail()
        line.AccountBasedExpenseLineDetail.AccountRef = _ref(self.expense)
        purchase.Line = [line]
        purchase.save(qb=self.client)

        payment = QboPayment()
        payment.CustomerRef = _ref(customer.Id)
        payment.DepositToAccountRef = _ref(self.bank)
        payment.PaymentMethodRef = _ref(self.method)
        payment.PaymentRefNum = f"ch_{n}"
        payment.TxnDate = RECEIVED.date().isoformat()
        payment.TotalAmt = Decimal(200 + n % 50)
        payment.PrivateNote = f"CRM payment pay-{n}"
        paid = PaymentLine()
        paid.Amount = Decimal("25.50")
        linked = LinkedTxn()
        linked.TxnId, linked.TxnType = purchase.Id, "Expense"
        paid.LinkedTxn = [linked]
        payment.Line = [paid]
        payment.save(qb=self.client)


def raw_cpu(emulator: Emulator, syncs: int, tenants: int) -> tuple[float, int]:
    """CPU seconds of `syncs` syncs by hand, and the QuickBooks requests they sent."""
    # No limiter here, so QBO's limits are lifted for the baseline (and put back after): it measures the
    # library's CPU, not a throttled retry.
    limits = emulator.admin("GET", "settings")["limits"]
    emulator.admin("POST", "settings", {"limits": {key: 0 for key in limits}})
    try:
        return _raw_cpu(emulator, syncs, tenants)
    finally:
        emulator.admin("POST", "settings", {"limits": limits})


def _raw_cpu(emulator: Emulator, syncs: int, tenants: int) -> tuple[float, int]:
    companies = [RawSyncs(emulator, t) for t in range(tenants)]
    for t, company in enumerate(companies):
        company.sync(100_000 + t)  # warm-up, as for the worker
    before = len(emulator.requests())
    started = time.process_time()
    for n in range(syncs):
        companies[n % tenants].sync(n)
    seconds = time.process_time() - started
    return seconds, len(emulator.requests()) - before


def worker_cpu(
    kind: str, url: str, workdir: Path, emulator: Emulator, syncs: int, tenants: int, profile: str | None
) -> tuple[float, int, SqlWatch]:
    deployment = Deployment(url, workdir, emulator, tenants)
    WATCH.units_engine = deployment.injector.get(UnitOfWorkFactory).engine  # type: ignore[type-abstract, attr-defined]
    warm = deployment.enqueue(tenants * WARM_UP_SYNCS)
    deployment.worker.drain()
    deployment.check_succeeded(warm)
    jobs = deployment.enqueue(syncs)
    before = len(emulator.requests())
    # CPU time, not wall time: the emulator's answers are waited for, and the waits are not what is measured.
    profiler = cProfile.Profile(time.process_time) if profile else None
    WATCH.reset()
    WATCH.on = True
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    deployment.worker.drain()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{kind}")
    seconds = time.process_time() - started
    WATCH.on = False
    deployment.check_succeeded(jobs)
    return seconds, len(emulator.requests()) - before, WATCH


def _target(label: str, ok: bool, figure: str) -> None:
    """One issue-12 target as `make bench` collects it (as bench/api.py prints them)."""
    print(f"  {'PASS' if ok else 'FAIL'}  {label}: {figure}")


def report(rows: list[Figures]) -> None:
    print(
        f"{'database':<11} {'syncs':>5} {'cpu ms/sync':>11} {'raw ms/sync':>11} {'ratio':>6} "
        f"{'qbo req/sync':>12} {'tx/sync':>7} {'uow tx/sync':>11} {'stmts/sync':>10} {'limiter tx/req':>14} "
        f"{'limiter stmts/req':>17}"
    )
    for f in rows:
        requests_ = max(f.qbo_requests, 1)
        print(
            f"{f.database:<11} {f.syncs:>5} {1000 * f.per_sync(f.cpu_seconds):>11.2f} "
            f"{1000 * f.per_sync(f.raw_cpu_seconds):>11.2f} {f.ratio:>5.2f}x {f.per_sync(f.qbo_requests):>12.2f} "
            f"{f.per_sync(f.transactions):>7.2f} {f.per_sync(f.transactions - f.limiter_transactions):>11.2f} "
            f"{f.per_sync(f.statements):>10.2f} "
            f"{f.limiter_transactions / requests_:>14.2f} {f.limiter_statements / requests_:>17.2f}"
        )
    print()
    for f in rows:
        requests_ = max(f.qbo_requests, 1)
        _target(
            f"{f.database}: worker CPU per sync <= {TARGET_CPU_RATIO}x raw python-quickbooks",
            f.ratio <= TARGET_CPU_RATIO,
            f"{f.ratio:.2f}x",
        )
        # The units of work's transactions: the limiter's (PostgreSQL) are counted by the next target.
        tx = f.per_sync(f.transactions - f.limiter_transactions)
        _target(
            f"{f.database}: <= {TARGET_TRANSACTIONS} transactions per sync",
            tx <= TARGET_TRANSACTIONS,
            f"{tx:.2f} (all engines: {f.per_sync(f.transactions):.2f}; statements {f.per_sync(f.statements):.2f})",
        )
        if f.database == "postgresql":
            trips = f.limiter_transactions / requests_
            _target(
                f"{f.database}: <= {TARGET_LIMITER_TRIPS:g} limiter round trip per QBO request",
                trips <= TARGET_LIMITER_TRIPS,
                f"{trips:.2f}",
            )
    print(
        "\nratio: this process' CPU over the worker's drain / CPU of python-quickbooks sending the same requests "
        "by hand, measured in the same run; tx = every database transaction of the process (uow: the units of "
        "work's; the rest are the coordination engine's: limiter and token lock); limiter round trips = the "
        "coordination engine's transactions (admissions, polls, releases) per QuickBooks request"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syncs", type=int, default=40, help="counted syncs per database")
    parser.add_argument("--tenants", type=int, default=TENANTS, help="companies the syncs spread over")
    parser.add_argument("--database", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--database-url", default=os.environ.get(POSTGRES_ENV, ""), help="PostgreSQL base URL")
    parser.add_argument("--profile", help="write cProfile stats of the worker's drain to PROFILE.<database>")
    args = parser.parse_args(argv)
    kinds = [k for k in args.database.split(",") if k and (k != "postgresql" or args.database_url)]
    if "postgresql" in args.database and not args.database_url:
        print(f"(no {POSTGRES_ENV}: PostgreSQL skipped)", file=sys.stderr)
    WATCH.install()
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        emulator = Emulator(workdir)
        try:
            for kind in kinds:
                # The baseline right before and right after each run (their mean): all see the same load.
                raw_before, _ = raw_cpu(emulator, args.syncs, args.tenants)
                with database(kind, args.database_url, workdir) as url:
                    seconds, qbo_requests, watch = worker_cpu(
                        kind, url, workdir, emulator, args.syncs, args.tenants, args.profile
                    )
                    raw_after, _ = raw_cpu(emulator, args.syncs, args.tenants)
                    raw_seconds = (raw_before + raw_after) / 2
                    rows.append(
                        Figures(
                            database=kind,
                            syncs=args.syncs,
                            cpu_seconds=seconds,
                            raw_cpu_seconds=raw_seconds,
                            qbo_requests=qbo_requests,
                            transactions=watch.transactions,
                            statements=watch.statements,
                            limiter_transactions=watch.limiter_transactions,
                            limiter_statements=watch.limiter_statements,
                        )
                    )
                print(f"  done: {kind}", file=sys.stderr, flush=True)
        finally:
            emulator.stop()
    report(rows)
    print(f"total {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
