"""The settings' look-ups stored per company (core/company_lookups.py) through the real adapter, against the
emulator, on SQLite and PostgreSQL storage: a fresh process's first sync of a company another process
checked makes none; a changed setting is checked again; an entry made inactive in QuickBooks is noticed
when QuickBooks refuses it, then read again; concurrent first syncs of a company look up once."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from qbo_support import FAST_RETRY, TENANT, QboRig
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.encryption import SecretBox, generate_key
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock
from adapters.persistence.sqlalchemy.engine import normalise_url
from adapters.quickbooks.emulator import EmulatorServer
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits
from adapters.quickbooks.qbo.settings import SETTING_INVALID
from adapters.system import SystemClock
from core.accounting import DiscountSpec, InvoiceSpec, NewCustomer, PaymentSpec, RefundSpec, TxnKind
from core.company_lookups import LOOKUP_LIFETIME, CompanyLookup, LookupKind
from core.connection import ListRef
from core.domain import InvoiceLine, PaymentMethod
from core.errors import BookkeepingError
from core.ports import CompanyLock
from tests.postgres_schema import fresh_postgres_schema

D = Decimal
DAY = date(2026, 4, 3)
LINE = InvoiceLine("Move, 3 h", D("3"), D("100.00"), D("300.00"))
WRITES = ("create", "update")


@dataclasses.dataclass
class Deployment:
    """A tenant on an emulator company, its storage SQL, and a way to start a new worker process."""

    rig: QboRig
    lock: CompanyLock
    customer_id: str = ""
    tips_id: str = ""

    def process(self) -> QuickBooksAccountingSystems:
        """A new process: the deployment's storage and lock, nothing in memory."""
        return QuickBooksAccountingSystems(
            self.rig.uow_factory,
            SystemClock(),
            limiter=InProcessRequestLimiter(RateLimits()),
            company_lock=self.lock,
            http_timeout=5.0,
            retry=FAST_RETRY,
        )

    def sync(self, process: QuickBooksAccountingSystems, marker: str) -> None:
        """An invoice with a tip and a discount, a payment and a refund: most of the settings."""
        system = process.for_tenant(TENANT)
        invoice = InvoiceSpec(
            self.customer_id,
            f"INV-{marker}",
            DAY,
            (LINE,),
            "note",
            f"[i-{marker}]",
            discount=DiscountSpec(D("30.00"), "Spring (10%)", True),
            tip=D("20.00"),
        )
        system.create(invoice, request_id=f"i-{marker}")
        payment = PaymentSpec(self.customer_id, D("100.00"), DAY, PaymentMethod.CASH, "", (), "p", f"[p-{marker}]")
        system.create(payment, request_id=f"p-{marker}")
        refund = RefundSpec(self.customer_id, D("20.00"), DAY, TxnKind.EXPENSE, "box", "r", f"[r-{marker}]")
        system.create(refund, request_id=f"r-{marker}")

    def lookups(self) -> list[str]:
        """The requests since the log was cleared other than writes: `entity operation`."""
        return [f"{e['entity']} {e['operation']}" for e in self.rig.log() if e.get("operation") not in WRITES]

    def stored(self) -> list[CompanyLookup]:
        with self.rig.uow_factory() as uow:
            return uow.company_lookups.of_tenant(TENANT)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, emulator: EmulatorServer, tmp_path: Path) -> Iterator[Deployment]:
    with _database(request.param, tmp_path) as (url, lock_of):
        engine = create_engine_for(url)
        try:
            lock = lock_of(engine)
            rig = QboRig.connect(
                emulator,
                uow_factory=SqlAlchemyUnitOfWorkFactory(engine, SecretBox([generate_key()])),
                company_lock=lock,
            )
            yield _configured(Deployment(rig, lock))
        finally:
            engine.dispose()


@contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[tuple[URL, Callable[[Engine], CompanyLock]]]:
    """A migrated database of that kind, and how the deployment's CompanyLock is made over it."""
    if kind == "sqlite":
        url = normalise_url(f"sqlite:///{tmp_path / 'qbsync.db'}")
        migrate(url)
        yield url, lambda engine: InProcessCompanyLock()  # one process serves a SQLite database
        return
    with fresh_postgres_schema("lk") as url:
        yield url, PostgresCompanyLock


def _configured(deployment: Deployment) -> Deployment:
    """Every setting the sync uses set by Id, as UpdateSettings stores them; a tips item and a customer."""
    rig = deployment.rig
    accounts = {a["Name"]: a for a in rig.records("Account")}
    payable = rig.seed("Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"})
    tips = rig.seed("Item", {"Name": "Tips", "Type": "Service", "IncomeAccountRef": {"value": payable["Id"]}})
    [services] = [i for i in rig.records("Item") if i["Name"] == "Services"]
    methods = {m["Name"]: m for m in rig.records("PaymentMethod")}
    rig.use_settings(
        deposit_account=_ref(accounts["Undeposited Funds"]),
        refund_bank_account=_ref(accounts["Checking"]),
        accounts_receivable_account=_ref(accounts["Accounts Receivable (A/R)"]),
        income_item=_ref(services),
        discount_account=_ref(accounts["Discounts given"]),
        tips_item=_ref(tips),
    )
    settings = rig.connection().settings
    with rig.uow_factory() as uow:
        paid = {m: _ref(methods[name]) for m, name in ((PaymentMethod.CASH, "Cash"), (PaymentMethod.CHECK, "Check"))}
        uow.connections.save_settings(TENANT, dataclasses.replace(settings, payment_methods=paid))
        uow.commit()
    customer = NewCustomer("Mary O'Brien", "Mary", "O'Brien", "", "mary@example.com", "", "")
    deployment.customer_id = rig.system.create_customer(customer, request_id="c1").id
    deployment.tips_id = str(tips["Id"])
    return deployment


def _ref(record: dict[str, Any]) -> ListRef:
    return ListRef(str(record["Id"]), str(record["Name"]))


def test_a_fresh_process_first_sync_of_a_checked_company_looks_nothing_up(deployment: Deployment) -> None:
    deployment.rig.clear_log()
    deployment.sync(deployment.process(), "a")
    first = deployment.lookups()
    # The first sync ever checks each setting once, and looks for the unset payment methods once.
    assert sorted(first) == sorted(["Account read"] * 4 + ["Item read"] * 2 + ["query query"])
    kinds = {(lookup.kind, lookup.name) for lookup in deployment.stored()}
    assert (LookupKind.SETTING, "tips_item") in kinds and (LookupKind.PAYMENT_METHODS, "") in kinds

    deployment.rig.clear_log()
    deployment.sync(deployment.process(), "b")
    assert deployment.lookups() == []
    assert [e["entity"] for e in deployment.rig.log()] == ["Invoice", "Payment", "Purchase"]


def test_a_changed_setting_is_checked_again_and_only_it(deployment: Deployment) -> None:
    deployment.sync(deployment.process(), "a")
    savings = deployment.rig.seed("Account", {"Name": "Savings", "AccountType": "Bank", "AccountSubType": "Savings"})
    deployment.rig.use_settings(refund_bank_account=_ref(savings))

    deployment.rig.clear_log()
    deployment.sync(deployment.process(), "b")
    assert deployment.lookups() == ["Account read"]
    [read] = [e for e in deployment.rig.log() if e["operation"] == "read"]
    assert read["path"].endswith(f"/account/{savings['Id']}")
    [stored] = [s for s in deployment.stored() if s.name == "refund_bank_account"]
    assert stored.against == str(savings["Id"])


def test_an_entry_made_inactive_in_quickbooks_fails_the_write_then_is_read_again(deployment: Deployment) -> None:
    deployment.sync(deployment.process(), "a")
    deployment.rig.act("Item", deployment.tips_id, "deactivate")

    # A fresh process trusts the stored check and writes: QuickBooks refuses the inactive item, the
    # error names the setting (as for an entry never checked), and the check is forgotten.
    with pytest.raises(BookkeepingError) as refused:
        deployment.sync(deployment.process(), "b")
    assert refused.value.reason == SETTING_INVALID
    assert "the tips item setting cannot be used" in str(refused.value) and "inactive" in str(refused.value)
    assert "tips_item" not in {s.name for s in deployment.stored()}

    # The next process reads the item before writing anything, and fails the same way.
    deployment.rig.clear_log()
    with pytest.raises(BookkeepingError) as again:
        deployment.sync(deployment.process(), "c")
    assert str(again.value) == str(refused.value)
    assert deployment.lookups() == ["Item read"]
    assert not any(e["operation"] in WRITES for e in deployment.rig.log())


def test_an_expired_check_is_made_again(deployment: Deployment) -> None:
    deployment.sync(deployment.process(), "a")
    old = [dataclasses.replace(s, checked_time=s.checked_time - LOOKUP_LIFETIME) for s in deployment.stored()]
    with deployment.rig.uow_factory() as uow:
        uow.company_lookups.save(TENANT, [s for s in old if s.name == "deposit_account"])
        uow.commit()
    deployment.rig.clear_log()
    deployment.sync(deployment.process(), "b")
    assert deployment.lookups() == ["Account read"]
    [renewed] = [s for s in deployment.stored() if s.name == "deposit_account"]
    assert renewed.checked_time > datetime.now(UTC) - timedelta(minutes=1)


def test_concurrent_first_syncs_of_a_company_look_up_once(deployment: Deployment) -> None:
    processes = [deployment.process() for _ in range(3)]
    deployment.rig.clear_log()
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            deployment.sync(processes[n], f"c{n}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(processes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(deployment.lookups()) == sorted(["Account read"] * 4 + ["Item read"] * 2 + ["query query"])
