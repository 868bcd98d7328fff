"""QuickBooks calls per payout (SPEC §9): what one SyncPayout of N payments costs in QBO requests, against
raw python-quickbooks creating the same Deposit directly.

    .venv/bin/python bench/payout_calls.py [--sizes 1,10,50] [--refunds 1] [--customers 5]

For each N, a fresh emulator company (the bundled emulator, over HTTP) is connected to a tenant running the
real core (SyncService, SyncWorker, in-memory storage) on the real adapter (adapters/quickbooks/qbo, i.e.
python-quickbooks). N payments (the first `--refunds` of them with a refund each) are synced first, not
counted; then a SyncPayout of them all (their refunds netted, a fee) is accepted and the worker runs it,
and the emulator's request log for that job is counted: reads and writes, by entity. A second payout of N
new payments follows on the same company, to show what is looked up once per company (the settings'
defaults, stored on the connection) and what every payout pays.

The baseline, in the same process and company: N more payments, then the same Deposit (same lines, same
accounts, already known) created with python-quickbooks' own objects and `save()`, on the adapter's
bearer-token client (python-quickbooks' OAuth2 session refuses the emulator's plain http): 1 write.

The target is 1 write and only the reads needed. Not a test: it asserts only that every job succeeded and
that the adapter's own count of its requests agrees with the emulator's log. Runs in well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quickbooks.objects.base import LinkedTxn, Ref  # noqa: E402
from quickbooks.objects.deposit import Deposit, DepositLine, DepositLineDetail  # noqa: E402

from adapters.inprocess import InProcessRequestLimiter  # noqa: E402
from adapters.quickbooks.emulator import run_emulator  # noqa: E402
from adapters.quickbooks.qbo import RateLimits  # noqa: E402
from adapters.quickbooks.qbo.transport import QuickBooksClient  # noqa: E402
from core.domain import (  # noqa: E402
    Customer,
    EntityRef,
    EntityType,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    Refund,
)
from tests.integration.quickbooks.qbo_support import CoreRig, QboRig  # noqa: E402

WRITES = ("create", "update", "delete", "void")
ARRIVAL = date(2026, 1, 5)
RECEIVED = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
AMOUNT = Decimal("100.00")
REFUND = Decimal("20.00")
FEE_PER_PAYMENT = Decimal("3.20")


@dataclass
class Calls:
    """A stretch of the emulator's request log, counted."""

    reads: Counter[str]
    writes: Counter[str]

    @classmethod
    def of(cls, log: list[dict[str, Any]], queried: list[str]) -> Calls:
        """`queried`: the entity each query read (the log names a query "query"; the client saw its text)."""
        reads: Counter[str] = Counter()
        writes: Counter[str] = Counter()
        queries = iter(queried)
        for entry in log:
            if entry["operation"] in WRITES:
                writes[f"{entry['entity']} {entry['operation']}"] += 1
            elif entry["entity"] == "query":
                reads[f"query {next(queries, '?')}"] += 1
            else:
                reads[f"{entry['entity']} {entry['operation']}"] += 1
        return cls(reads, writes)

    @property
    def total(self) -> int:
        return sum(self.reads.values()) + sum(self.writes.values())

    @staticmethod
    def describe(counts: Counter[str]) -> str:
        return ", ".join(f"{n}× {what}" for what, n in sorted(counts.items())) or "-"


@dataclass
class Row:
    label: str
    payments: int
    calls: Calls
    seconds: float


class QueryWatch:
    """Which entity each query the process sends reads (the emulator logs them only as "query")."""

    def __init__(self) -> None:
        self.entities: list[str] = []
        self._original = QuickBooksClient.process_request

    def __enter__(self) -> QueryWatch:
        watch = self

        def process_request(client: QuickBooksClient, request_type: str, url: str, *args: Any, **kw: Any) -> Any:
            data = kw.get("data", args[2] if len(args) > 2 else "")
            if url.rstrip("/").endswith("/query") and isinstance(data, str):
                words = data.split()
                upper = [w.upper() for w in words]
                watch.entities.append(words[upper.index("FROM") + 1] if "FROM" in upper else "?")
            return watch._original(client, request_type, url, *args, **kw)

        QuickBooksClient.process_request = process_request  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        QuickBooksClient.process_request = self._original  # type: ignore[method-assign]

    def take(self) -> list[str]:
        taken, self.entities = self.entities, []
        return taken


class Company:
    """A tenant connected to a fresh emulator company, the core on the real adapter in front of it."""

    def __init__(self, server: Any, customers: int) -> None:
        self.rig = QboRig.connect(server)
        self.core = CoreRig(self.rig)
        # A company that takes card payments has a fees account; the processing-fee setting defaults to it.
        self.rig.seed(
            "Account", {"Name": "Merchant account fees", "AccountType": "Expense", "AccountSubType": "BankCharges"}
        )
        self.opportunities = [
            Opportunity(f"o{n}", f"{1000 + n}", Customer(f"c{n}", "Bench", f"Customer{n}", email=f"c{n}@example.com"))
            for n in range(customers)
        ]
        self._next = 0

    def synced_payments(self, count: int, refunds: int) -> tuple[list[str], list[str]]:
        """`count` new payments synced (the first `refunds` with a refund each): their ids and the refunds'."""
        payment_ids, refund_ids = [], []
        for n in range(count):
            self._next += 1
            pid = f"pay{self._next}"
            with_refund = (Refund(f"re{self._next}", REFUND, RECEIVED, "returned box"),) if n < refunds else ()
            payment = Payment(pid, AMOUNT, PaymentMethod.CREDIT_CARD, RECEIVED, f"ch_{self._next}", with_refund)
            opportunity = self.opportunities[n % len(self.opportunities)]
            self.core.succeed(self.core.service.sync_payment(self.core.principal, opportunity, payment))
            payment_ids.append(pid)
            refund_ids += [r.refund_id for r in with_refund]
        return payment_ids, refund_ids

    def payout_calls(self, label: str, payout_id: str, count: int, refunds: int, watch: QueryWatch) -> Row:
        payment_ids, refund_ids = self.synced_payments(count, refunds)
        fees = FEE_PER_PAYMENT * count
        amount = AMOUNT * count - REFUND * len(refund_ids) - fees
        payout = Payout(payout_id, ARRIVAL, amount, tuple(payment_ids), tuple(refund_ids), fees=fees)
        self._settle()
        self.rig.clear_log()
        watch.take()
        started = time.monotonic()
        self.core.succeed(self.core.service.sync_payout(self.core.principal, payout))
        seconds = time.monotonic() - started
        return Row(label, count, self._counted(watch), seconds)

    def baseline_calls(self, count: int, refunds: int, watch: QueryWatch) -> Row:
        """The same Deposit, written by hand with python-quickbooks: what the library costs at the least."""
        payment_ids, refund_ids = self.synced_payments(count, refunds)
        settings = self.rig.connection().settings
        with self.rig.uow_factory() as uow:
            records = [uow.sync_records.get("acme", EntityRef(EntityType.PAYMENT, pid)) for pid in payment_ids]
        client = QuickBooksClient(
            realm_id=self.rig.realm_id,
            base_url=self.rig.server.base_api_url,
            access_token=lambda: self.rig.connection().access_token,
            limiter=InProcessRequestLimiter(RateLimits()),
            timeout=5.0,
        )
        deposit = Deposit()
        deposit.DepositToAccountRef = _ref(settings.payout_bank_account.id)
        deposit.TxnDate = ARRIVAL.isoformat()
        deposit.PrivateNote = "baseline payout"
        for record in records:
            assert record is not None and record.quickbooks_id
            line = DepositLine()
            line.Amount = str(AMOUNT)
            linked = LinkedTxn()
            linked.TxnId, linked.TxnType, linked.TxnLineId = record.quickbooks_id, "Payment", "0"
            line.LinkedTxn = [linked]
            deposit.Line.append(line)
        others = [(-REFUND, settings.refund_bank_account.id)] * len(refund_ids)
        others.append((-FEE_PER_PAYMENT * count, settings.processing_fee_account.id))
        for amount, account in others:
            line = DepositLine()
            line.Amount = str(amount)
            line.DetailType = "DepositLineDetail"
            line.DepositLineDetail = DepositLineDetail()
            line.DepositLineDetail.AccountRef = _ref(account)
            deposit.Line.append(line)
        self._settle()
        self.rig.clear_log()
        watch.take()
        started = time.monotonic()
        deposit.save(qb=client)
        seconds = time.monotonic() - started
        return Row("raw python-quickbooks", count, self._counted(watch), seconds)

    @staticmethod
    def _settle() -> None:
        """Lets the adapter's per-company window (RateLimits: 10 requests a second, plus a margin) empty of the
        uncounted payment syncs, so that `secs` is the payout's own time, not a wait for the limiter."""
        time.sleep(1.2)

    def _counted(self, watch: QueryWatch) -> Calls:
        log = [entry for entry in self.rig.log() if entry.get("operation")]
        calls = Calls.of(log, watch.take())
        # The client's own count of its queries must agree with the emulator's log, or the labels lie.
        assert sum(calls.reads[k] for k in calls.reads if k.startswith("query ")) == sum(
            1 for e in log if e["entity"] == "query"
        )
        return calls


def _ref(value: str) -> Ref:
    ref = Ref()
    ref.value = value
    return ref


def print_table(rows: list[Row]) -> None:
    header = f"{'N':>3}  {'run':<26} {'calls':>5} {'writes':>6} {'reads':>5} {'ratio':>5} {'secs':>5}  what"
    print(header)
    print("-" * (len(header) + 40))
    baselines = {row.payments: row.calls.total for row in rows if row.label.startswith("raw")}
    for row in rows:
        c = row.calls
        ratio = c.total / baselines[row.payments] if baselines.get(row.payments) else float("nan")
        what = "; ".join(x for x in (Calls.describe(c.writes), Calls.describe(c.reads)) if x != "-")
        print(
            f"{row.payments:>3}  {row.label:<26} {c.total:>5} {sum(c.writes.values()):>6} "
            f"{sum(c.reads.values()):>5} {ratio:>5.1f} {row.seconds:>5.2f}  {what}"
        )
    print("\nratio: calls of the run / calls of raw python-quickbooks writing the same Deposit (same N)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50", help="comma-separated payments per payout")
    parser.add_argument("--refunds", type=int, default=1, help="payments of a payout with a refund it nets")
    parser.add_argument("--customers", type=int, default=5, help="CRM customers the payments spread over")
    args = parser.parse_args(argv)
    server = run_emulator("127.0.0.1", 0)
    rows = []
    started = time.monotonic()
    try:
        with QueryWatch() as watch:
            for size in map(int, args.sizes.split(",")):
                company = Company(server, args.customers)
                refunds = min(args.refunds, size)
                rows.append(company.payout_calls("SyncPayout, 1st of company", f"po{size}a", size, refunds, watch))
                rows.append(company.payout_calls("SyncPayout, 2nd", f"po{size}b", size, refunds, watch))
                rows.append(company.baseline_calls(size, refunds, watch))
                print(f"  done: N={size}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    print_table(rows)
    print(f"total {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
