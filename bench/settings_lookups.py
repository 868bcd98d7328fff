"""QuickBooks look-ups a fresh worker process makes for its first sync of a company (issue 12: "settings and
look-ups cached per company across processes").

    .venv/bin/python bench/settings_lookups.py [--processes 4] [--database sqlite,postgresql]

A tenant is connected to a fresh company of the bundled emulator (over HTTP), with every setting a sync uses
configured by Id (as UpdateSettings stores them) and a manual sales tax mode. One "sync" is what the real
adapter (adapters/quickbooks/qbo, python-quickbooks) writes for a moving job: an invoice with a tip, a
discount and the job's tax rate name, the customer's card payment, and a refund expense. A "process" is a
`QuickBooksAccountingSystems` of its own over the tenant's shared storage: what a new worker process has
(nothing in memory, the same database: a SQLite file, or a fresh PostgreSQL schema when
QBSYNC_TEST_DATABASE_URL is set, with the deployment's PostgreSQL CompanyLock).

Counted, from the emulator's request log: the requests other than the writes (reads and queries of the
accounts, items, tax codes and payment methods the settings name), for

* the company's first sync, in a first process (everything is checked: what any first sync must pay);
* the first sync in a second, fresh process after that: the target is 0 look-ups;
* the first syncs of `--processes` fresh processes at once, on another company nobody synced yet: the
  target is the look-ups of one first sync, not one per process.

The baseline is the first of these, in the same run. Not a test: it asserts only that every write succeeded.
Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "quickbooks"))
sys.path.insert(0, str(ROOT / "tests" / "scale"))

from qbo_support import FAST_RETRY, TENANT, QboRig  # noqa: E402
from scale_support import POSTGRES_ENV, fresh_postgres_schema  # noqa: E402
from sqlalchemy import Engine  # noqa: E402

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter  # noqa: E402
from adapters.persistence.encryption import SecretBox, generate_key  # noqa: E402
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate  # noqa: E402
from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock  # noqa: E402
from adapters.quickbooks.emulator import run_emulator  # noqa: E402
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits  # noqa: E402
from adapters.system import SystemClock  # noqa: E402
from core.accounting import DiscountSpec, InvoiceSpec, NewCustomer, PaymentSpec, RefundSpec, TxnKind  # noqa: E402
from core.company_tax import SalesTax  # noqa: E402
from core.connection import ListRef  # noqa: E402
from core.domain import InvoiceLine, PaymentMethod  # noqa: E402
from core.ports import CompanyLock, RequestLimiter  # noqa: E402

D = Decimal
WRITES = ("create", "update", "delete", "void")
DAY = date(2026, 4, 3)
LINE = InvoiceLine("Move, 3 h", D("3"), D("100.00"), D("300.00"), taxable=True)
RATE_NAME = "Sales tax"  # the TaxCode the emulator gives a company switched to manual sales tax


class Company:
    """A tenant on a fresh emulator company, every setting a sync uses configured by Id."""

    def __init__(self, server: Any, engine: Engine, lock: CompanyLock) -> None:
        storage = SqlAlchemyUnitOfWorkFactory(engine, SecretBox([generate_key()]))
        self.rig = QboRig.connect(server, uow_factory=storage, company_lock=lock)
        self.lock = lock  # the deployment's: shared by its processes
        rig = self.rig
        rig.set_sales_tax(SalesTax.MANUAL)
        accounts = {a["Name"]: a for a in rig.records("Account")}
        discounts = accounts.get("Discounts given") or rig.seed(
            "Account", {"Name": "Discounts given", "AccountType": "Income", "AccountSubType": "DiscountsRefundsGiven"}
        )
        payable = rig.seed("Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"})
        tips = rig.seed("Item", {"Name": "Tips", "Type": "Service", "IncomeAccountRef": {"value": payable["Id"]}})
        [services] = [i for i in rig.records("Item") if i["Name"] == "Services"]
        codes = [c for c in rig.records("TaxCode") if c.get("TaxGroup") is not False and c["Id"] not in ("TAX", "NON")]
        methods = {m["Name"]: m for m in rig.records("PaymentMethod")}
        refs = {
            "deposit_account": _ref(accounts["Undeposited Funds"]),
            "refund_bank_account": _ref(accounts["Checking"]),
            "accounts_receivable_account": _ref(accounts["Accounts Receivable (A/R)"]),
            "income_item": _ref(services),
            "tax_code": _ref(codes[0]),
            "discount_account": _ref(discounts),
            "tips_item": _ref(tips),
        }
        settings = rig.connection().settings
        with rig.uow_factory() as uow:
            uow.connections.save_settings(
                TENANT,
                dataclasses.replace(
                    settings,
                    payment_methods={PaymentMethod.CREDIT_CARD: _ref(methods["Credit Card"])},
                    **refs,
                ),
            )
            uow.commit()
        customer = NewCustomer("Mary O'Brien", "Mary", "O'Brien", "", "mary@example.com", "", "")
        self.customer_id = rig.system.create_customer(customer, request_id="c1").id
        self.limiter: RequestLimiter = InProcessRequestLimiter(RateLimits())

    def process(self) -> QuickBooksAccountingSystems:
        """What a new worker process has: the deployment's storage, limiter and lock, nothing in memory."""
        return QuickBooksAccountingSystems(
            self.rig.uow_factory,
            SystemClock(),
            limiter=self.limiter,
            company_lock=self.lock,
            http_timeout=5.0,
            retry=FAST_RETRY,
        )

    def sync(self, process: QuickBooksAccountingSystems, marker: str) -> None:
        system = process.for_tenant(TENANT)
        invoice = InvoiceSpec(
            self.customer_id,
            f"INV-{marker}",
            DAY,
            (LINE,),
            f"note [{marker}]",
            f"[i-{marker}]",
            tax=D("21.00"),
            tax_rate_name=RATE_NAME,
            discount=DiscountSpec(D("30.00"), "Spring (10%)", True),
            tip=D("20.00"),
        )
        system.create(invoice, request_id=f"i-{marker}")
        payment = PaymentSpec(
            self.customer_id, D("100.00"), DAY, PaymentMethod.CREDIT_CARD, "ch_1", (), "p [m]", f"[p-{marker}]"
        )
        system.create(payment, request_id=f"p-{marker}")
        refund = RefundSpec(self.customer_id, D("20.00"), DAY, TxnKind.EXPENSE, "box", "r [m]", f"[r-{marker}]")
        system.create(refund, request_id=f"r-{marker}")

    def lookups(self) -> Counter[str]:
        """The requests since the log was cleared that are not writes, by entity and operation."""
        return Counter(
            "query" if e["operation"] == "query" else f"{e['entity']} {e['operation']}"
            for e in self.rig.log()
            if e.get("operation") and e["operation"] not in WRITES
        )


def _ref(record: dict[str, Any]) -> ListRef:
    return ListRef(str(record["Id"]), str(record.get("FullyQualifiedName") or record["Name"]))


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{n}× {what}" for what, n in sorted(counts.items())) or "-"


@contextmanager
def database(kind: str) -> Iterator[tuple[Engine, Callable[[Engine], CompanyLock]]]:
    """A migrated database, and the deployment's CompanyLock over it."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/qbsync.db"
            migrate(url)
            engine = create_engine_for(url)
            try:
                yield engine, lambda _: InProcessCompanyLock()  # one process serves a SQLite database
            finally:
                engine.dispose()
        return
    with fresh_postgres_schema(os.environ[POSTGRES_ENV]) as url:
        engine = create_engine_for(url)
        try:
            yield engine, PostgresCompanyLock
        finally:
            engine.dispose()


def measure(server: Any, kind: str, processes: int) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(first sync ever, first sync of a fresh second process, `processes` fresh processes at once)."""
    with database(kind) as (engine, lock_of):
        company = Company(server, engine, lock_of(engine))
        company.rig.clear_log()
        company.sync(company.process(), "a")
        cold = company.lookups()
        company.rig.clear_log()
        company.sync(company.process(), "b")
        warm = company.lookups()

        other = Company(server, engine, lock_of(engine))
        fresh = [other.process() for _ in range(processes)]
        other.rig.clear_log()
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                other.sync(fresh[n], f"c{n}")
            except BaseException as error:  # re-raised below: a failed write makes the figures meaningless
                errors.append(error)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(processes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return cold, warm, other.lookups()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4, help="fresh processes syncing one company at once")
    parser.add_argument("--database", default="sqlite,postgresql", help=f"sqlite, postgresql (needs {POSTGRES_ENV})")
    args = parser.parse_args(argv)
    kinds = [k for k in args.database.split(",") if k == "sqlite" or os.environ.get(POSTGRES_ENV)]
    server = run_emulator("127.0.0.1", 0)
    try:
        results = {kind: measure(server, kind, args.processes) for kind in kinds}
    finally:
        server.stop()
    print("QuickBooks look-ups (requests other than writes) for a first sync: invoice + payment + refund")
    label = "settings and look-ups cached per company across processes"
    for kind, (cold, warm, concurrent) in results.items():
        one, fresh, together = sum(cold.values()), sum(warm.values()), sum(concurrent.values())
        print(f"{kind}:")
        print(f"  company's first sync, first process:        {one:>3}  {_describe(cold)}")
        print(f"  first sync in a fresh second process:       {fresh:>3}  {_describe(warm)}")
        print(f"  {args.processes} fresh processes' first syncs at once:  {together:>3}  {_describe(concurrent)}")
        verdict = "PASS" if fresh == 0 and together <= one else "FAIL"
        print(
            f"  {verdict}  {kind} {label}: a fresh process's first sync {fresh} look-ups (first ever: {one}); "
            f"{args.processes} at once {together} ({together / one if one else 0:.1f}x one first sync)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
