"""Helpers for the QuickBooks adapter's integration tests: a tenant connected to an emulator realm, the
emulator's admin API, and the "QuickBooks side" of the contract suite for both the fake and the emulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import requests

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.emulator import EmulatorServer
from adapters.quickbooks.fake import FakeQuickBooks
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits, RetryPolicy
from adapters.system import SystemClock
from core.accounting import PaymentSpec, TxnKind
from core.company_lists import ListKind
from core.connection import QuickBooksConnection
from core.ports import AccountingSystem

TENANT = "acme"
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05, throttle_default_wait=0.2, throttle_max_wait=2.0)


@dataclass
class QboRig:
    """A tenant connected to an emulator realm, and the real adapter for it."""

    server: EmulatorServer
    realm_id: str
    uow_factory: InMemoryUnitOfWorkFactory
    systems: QuickBooksAccountingSystems
    credentials: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def connect(
        cls,
        server: EmulatorServer,
        *,
        limits: RateLimits | None = None,
        retry: RetryPolicy = FAST_RETRY,
        http_timeout: float = 2.0,
        emulator_limits: dict[str, int] | None = None,
    ) -> QboRig:
        credentials = requests.post(
            f"{server.admin_url}/realms", json={"company_name": "Mover & Sons"}, timeout=10
        ).json()
        requests.post(
            f"{server.admin_url}/settings",
            json={"limits": emulator_limits or {"per_second": 0, "per_minute": 0, "concurrent": 0}},
            timeout=10,
        )
        uow_factory = InMemoryUnitOfWorkFactory()
        now = datetime.now(UTC)
        connection = QuickBooksConnection(
            tenant_id=TENANT,
            realm_id=str(credentials["realm_id"]),
            environment=server.discovery_url,
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
            refresh_token=credentials["refresh_token"],
            access_token=credentials["access_token"],
            access_token_expires=now + timedelta(seconds=int(credentials.get("expires_in", 3600))),
            api_base_url=server.base_api_url,
            redirect_uri="http://localhost/callback",
            connect_time=now,
        )
        with uow_factory() as uow:
            uow.tenants.ensure(TENANT)
            uow.connections.save(connection)
            uow.commit()
        systems = QuickBooksAccountingSystems(
            uow_factory, SystemClock(), http_timeout=http_timeout, limits=limits, retry=retry
        )
        return cls(server, str(credentials["realm_id"]), uow_factory, systems, credentials)

    @property
    def system(self) -> AccountingSystem:
        return self.systems.for_tenant(TENANT)

    def connection(self) -> QuickBooksConnection:
        with self.uow_factory() as uow:
            found = uow.connections.get(TENANT)
        assert found is not None
        return found

    # --- the admin API ---------------------------------------------------------------------------

    def admin(self, method: str, route: str, payload: Any = None, **params: Any) -> Any:
        response = requests.request(
            method, f"{self.server.admin_url}{route}", json=payload, params=params or None, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    def state(self) -> dict[str, Any]:
        return self.admin("GET", f"/realms/{self.realm_id}/state")  # type: ignore[no-any-return]

    def records(self, entity: str) -> list[dict[str, Any]]:
        return list(self.state()["entities"][entity])

    def seed(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.admin("POST", f"/realms/{self.realm_id}/records/{entity}", record)[entity]  # type: ignore[no-any-return]

    def act(self, entity: str, record_id: str, action: str, changes: dict[str, Any] | None = None) -> Any:
        return self.admin("POST", f"/realms/{self.realm_id}/records/{entity}/{record_id}/{action}", changes or {})

    def fault(self, kind: str, **rule: Any) -> None:
        self.admin("POST", "/faults", {"kind": kind, "realm_id": self.realm_id, **rule})

    def settings(self, **values: Any) -> None:
        self.admin("POST", "/settings", values)

    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> bool:
        """CurrencyPrefs changed in QBO's settings; False when the emulator refuses, as QBO would."""
        body = {k: v for k, v in (("home_currency", home_currency), ("multicurrency", multicurrency)) if v is not None}
        response = requests.post(f"{self.server.admin_url}/realms/{self.realm_id}/preferences", json=body, timeout=10)
        assert response.status_code in (200, 400), response.text
        return response.status_code == 200

    def log(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/requests", realm_id=self.realm_id)["requests"])

    def clear_log(self) -> None:
        self.admin("POST", "/requests/clear")


# --- the QuickBooks side of the contract suite -------------------------------------------------


class Company(Protocol):
    """What a contract test does to the company behind the port, "in the QuickBooks UI"."""

    system: AccountingSystem

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str: ...

    def add_vendor(self, name: str) -> None: ...

    def deactivate_customer(self, customer_id: str) -> None: ...

    def add_list_entry(
        self, kind: ListKind, name: str, type: str = "", sub_type: str = "", *, income_account_id: str = ""
    ) -> str:
        """An account, item or payment method someone created in QuickBooks; its Id."""
        ...

    def deactivate_list_entry(self, kind: ListKind, entry_id: str) -> None: ...

    def delete(self, kind: TxnKind, record_id: str) -> None: ...

    def void(self, kind: TxnKind, record_id: str) -> None: ...

    def touch(self, kind: TxnKind, record_id: str) -> None:
        """Someone edits the record: its SyncToken moves on."""
        ...

    def live_count(self, entity: str) -> int: ...

    def payment_links(self, payment_id: str) -> list[tuple[str, str]]:
        """(TxnType, TxnId) of each line of the payment."""
        ...

    def payment_amount(self, payment_id: str) -> Decimal:
        """The payment's TotalAmt as QuickBooks holds it."""
    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> bool:
        """The company's admin changes CurrencyPrefs; False when QuickBooks refuses the change."""
        ...


@dataclass
class FakeCompany:
    fake: FakeQuickBooks

    @property
    def system(self) -> AccountingSystem:
        return self.fake

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str:
        return self.fake.add_customer(name, email, active=active)

    def add_vendor(self, name: str) -> None:
        self.fake.add_vendor(name)

    def deactivate_customer(self, customer_id: str) -> None:
        self.fake.deactivate_customer(customer_id)

    def add_list_entry(
        self, kind: ListKind, name: str, type: str = "", sub_type: str = "", *, income_account_id: str = ""
    ) -> str:
        return self.fake.add_list_entry(kind, name, type, sub_type, income_account_id=income_account_id)

    def deactivate_list_entry(self, kind: ListKind, entry_id: str) -> None:
        self.fake.deactivate_list_entry(kind, entry_id)

    def delete(self, kind: TxnKind, record_id: str) -> None:
        self.fake.delete(record_id)

    def void(self, kind: TxnKind, record_id: str) -> None:
        self.fake.void(record_id)

    def touch(self, kind: TxnKind, record_id: str) -> None:
        self.fake.txns[record_id].sync_token += 1

    def live_count(self, entity: str) -> int:
        return len(self.fake.live(entity))

    def payment_links(self, payment_id: str) -> list[tuple[str, str]]:
        spec = self.fake.txn(payment_id).spec
        return [(line.txn_kind.value, line.txn_id) for line in getattr(spec, "lines", ())]

    def payment_amount(self, payment_id: str) -> Decimal:
        spec = self.fake.txn(payment_id).spec
        assert isinstance(spec, PaymentSpec)
        return spec.amount
    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> bool:
        try:
            self.fake.set_currency(home_currency, multicurrency)
        except ValueError:
            return False
        return True


_ENTITY = {
    TxnKind.PAYMENT: "Payment",
    TxnKind.INVOICE: "Invoice",
    TxnKind.EXPENSE: "Purchase",
    TxnKind.CHECK: "Purchase",
}


@dataclass
class EmulatedCompany:
    rig: QboRig

    @property
    def system(self) -> AccountingSystem:
        return self.rig.system

    def add_customer(self, name: str, email: str = "", *, active: bool = True) -> str:
        record: dict[str, Any] = {"DisplayName": name, "Active": active}
        if email:
            record["PrimaryEmailAddr"] = {"Address": email}
        return str(self.rig.seed("Customer", record)["Id"])

    def add_vendor(self, name: str) -> None:
        self.rig.seed("Vendor", {"DisplayName": name})

    def deactivate_customer(self, customer_id: str) -> None:
        self.rig.act("Customer", customer_id, "deactivate")

    def add_list_entry(
        self, kind: ListKind, name: str, type: str = "", sub_type: str = "", *, income_account_id: str = ""
    ) -> str:
        record: dict[str, Any] = {"Name": name}
        if kind is ListKind.ACCOUNT:
            record.update({"AccountType": type, "AccountSubType": sub_type})
        elif kind is ListKind.ITEM:
            record["Type"] = type
            if income_account_id:
                record["IncomeAccountRef"] = {"value": income_account_id}
        return str(self.rig.seed(kind.value, record)["Id"])

    def deactivate_list_entry(self, kind: ListKind, entry_id: str) -> None:
        self.rig.act(kind.value, entry_id, "deactivate")

    def delete(self, kind: TxnKind, record_id: str) -> None:
        self.rig.act(_ENTITY[kind], record_id, "delete")

    def void(self, kind: TxnKind, record_id: str) -> None:
        self.rig.act(_ENTITY[kind], record_id, "void")

    def touch(self, kind: TxnKind, record_id: str) -> None:
        self.rig.act(_ENTITY[kind], record_id, "update", {})

    def live_count(self, entity: str) -> int:
        state = self.rig.state()
        voided = set(state["voided"])
        return sum(1 for r in state["entities"][entity] if f"{entity}/{r['Id']}" not in voided)

    def payment_links(self, payment_id: str) -> list[tuple[str, str]]:
        payment = next(p for p in self.rig.records("Payment") if p["Id"] == payment_id)
        return [(link["TxnType"], link["TxnId"]) for line in payment.get("Line", []) for link in line["LinkedTxn"]]

    def payment_amount(self, payment_id: str) -> Decimal:
        payment = next(p for p in self.rig.records("Payment") if p["Id"] == payment_id)
        return Decimal(str(payment["TotalAmt"]))
    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> bool:
        return self.rig.set_currency(home_currency, multicurrency)


CompanyFactory = Callable[[], Company]


# --- the core wired to the real adapter ----------------------------------------------------------


class CoreRig:
    """SyncService + SyncWorker (zero back-off) on the rig's unit of work and the real adapter."""

    def __init__(self, rig: QboRig, systems: Any = None) -> None:
        """`systems` replaces the rig's adapter in the engine (a test wrapping it, e.g. to act mid-job)."""
        from core.auth import ApiKeys  # noqa: F401 - imported lazily: only scenario tests need the core
        from core.domain import Permission, Principal
        from core.service import SyncService
        from core.sync_engine import SyncEngine
        from core.worker import SyncWorker
        from tests.unit.support import STEP_CLOCK_LEASE, CountingIds, StepClock

        self.rig = rig
        clock = StepClock()
        self.service = SyncService(rig.uow_factory, rig.systems, clock, CountingIds())
        self.engine = SyncEngine(rig.uow_factory, systems or rig.systems, clock)
        self.worker = SyncWorker(
            rig.uow_factory,
            self.engine,
            clock,
            lease=STEP_CLOCK_LEASE,
            backoff_base=timedelta(0),
            backoff_cap=timedelta(0),
        )
        self.principal = Principal(TENANT, frozenset(Permission))

    def finish(self, job: Any, *, rounds: int = 50) -> Any:
        """Runs jobs until `job` is SUCCEEDED or FAILED; returns it as it ended."""
        from core.domain import JobState

        for _ in range(rounds):
            self.worker.drain()
            current = self.service.get_job(self.principal, job.name)
            if current.state in (JobState.SUCCEEDED, JobState.FAILED):
                return current
        raise AssertionError(f"job {job.name} did not finish: {current}")

    def succeed(self, job: Any) -> Any:
        from core.domain import JobState

        done = self.finish(job)
        assert done.state is JobState.SUCCEEDED, done.error
        return done
