"""Helpers for the QuickBooks adapter's integration tests: a tenant connected to an emulator realm, the
emulator's admin API, and the "QuickBooks side" of the contract suite for both the fake and the emulator."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import requests

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.emulator import EmulatorServer
from adapters.quickbooks.fake import FakeCustomer, FakeQuickBooks, FakeTxn, Fault
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits, RetryPolicy
from adapters.quickbooks.qbo.settings import METHOD_NAMES
from adapters.system import SystemClock
from core.accounting import (
    DepositLine,
    DepositLineKind,
    DepositSpec,
    DiscountSpec,
    InvoiceSpec,
    LinkLine,
    PaymentSpec,
    RefundSpec,
    TxnKind,
    TxnSpec,
)
from core.company_lists import ListKind
from core.company_tax import SalesTax
from core.connection import ListRef, QuickBooksConnection
from core.domain import InvoiceLine, PaymentMethod
from core.ports import AccountingSystem, CompanyLock, UnitOfWorkFactory

TENANT = "acme"
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05, throttle_default_wait=0.2, throttle_max_wait=2.0)


@dataclass
class QboRig:
    """A tenant connected to an emulator realm, and the real adapter for it."""

    server: EmulatorServer
    realm_id: str
    uow_factory: UnitOfWorkFactory
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
        uow_factory: UnitOfWorkFactory | None = None,
        company_lock: CompanyLock | None = None,
        numbered_by_the_crm: bool = False,
    ) -> QboRig:
        """`uow_factory`: the tenant's storage (in memory unless given); `company_lock`: the deployment's
        (in-process unless given); `numbered_by_the_crm`: the company's custom transaction numbers on (a new QBO
        company has them off), so that invoices synced through the core carry the CRM's job numbers."""
        credentials = requests.post(
            f"{server.admin_url}/realms", json={"company_name": "Mover & Sons"}, timeout=10
        ).json()
        if numbered_by_the_crm:
            requests.post(
                f"{server.admin_url}/realms/{credentials['realm_id']}/preferences",
                json={"custom_txn_numbers": True},
                timeout=10,
            )
        requests.post(
            f"{server.admin_url}/settings",
            json={"limits": emulator_limits or {"per_second": 0, "per_minute": 0, "concurrent": 0}},
            timeout=10,
        )
        uow_factory = uow_factory if uow_factory is not None else InMemoryUnitOfWorkFactory()
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
            uow_factory,
            SystemClock(),
            limiter=InProcessRequestLimiter(limits or RateLimits()),
            company_lock=company_lock or InProcessCompanyLock(),
            http_timeout=http_timeout,
            retry=retry,
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

    def exact_state(self) -> dict[str, Any]:
        """The state with every JSON number read as a Decimal (money stays exact in the checks too)."""
        response = requests.get(f"{self.server.admin_url}/realms/{self.realm_id}/state", timeout=10)
        assert response.status_code == 200, response.text
        return json.loads(response.text, parse_float=Decimal, parse_int=Decimal)  # type: ignore[no-any-return]

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

    def set_sales_tax(self, mode: SalesTax | None = None, **controls: Any) -> dict[str, Any]:
        """The company's sales tax (and the emulator's disagree controls, admin.py); the mode is also stored
        on the connection, as reading the company's preferences at connect would."""
        body = {k: str(v) if isinstance(v, Decimal) else v for k, v in controls.items() if v is not None}
        if mode is not None:
            body["sales_tax"] = mode.value
            self.update_connection(sales_tax=mode)
        return self.admin("POST", f"/realms/{self.realm_id}/sales_tax", body)  # type: ignore[no-any-return]

    def update_connection(self, **changes: Any) -> None:
        with self.uow_factory() as uow:
            current = uow.connections.get(TENANT)
            assert current is not None
            uow.connections.save(dataclasses.replace(current, **changes))
            uow.commit()

    def use_settings(self, **refs: ListRef) -> None:
        """Settings as UpdateSettings stores them (ids checked by the caller)."""
        settings = dataclasses.replace(self.connection().settings, **refs)
        with self.uow_factory() as uow:
            uow.connections.save_settings(TENANT, settings)
            uow.commit()

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

    def set_sales_tax(
        self,
        mode: SalesTax | None = None,
        *,
        ast_rate: Decimal | None = None,
        invoice_total_drift: Decimal | None = None,
        ignore_total_tax: bool | None = None,
    ) -> None:
        """How the company treats sales tax, and the controls that make QuickBooks disagree (admin.py)."""
        ...

    def use_settings(self, **refs: ListRef) -> None:
        """The tenant's settings point there (the fake, which is the adapter too, needs none)."""
        ...

    def invoice_figures(self, invoice_id: str) -> tuple[Decimal, Decimal]:
        """(TotalAmt, Balance) of an invoice as QuickBooks holds it."""
        ...

    def deposit_figures(self, deposit_id: str) -> tuple[Decimal, list[str]]:
        """(TotalAmt, the Ids of the payments it links, in line order) of a deposit as QuickBooks holds it."""
        ...

    def undeposited_funds(self) -> Decimal:
        """What Undeposited Funds holds: the live payments no deposit took out of it."""
        ...

    def inject(self, *faults: Fault) -> None:
        """The next calls fail, one fault each, in order (the fake's faults; the emulator's equivalents)."""
        ...

    def forget_request_ids(self) -> None:
        """QuickBooks forgets the answers it keeps for requestid replay."""
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
        self.fake.void_in_quickbooks(record_id)

    def touch(self, kind: TxnKind, record_id: str) -> None:
        self.fake.edit_in_quickbooks(record_id)

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

    def set_sales_tax(
        self,
        mode: SalesTax | None = None,
        *,
        ast_rate: Decimal | None = None,
        invoice_total_drift: Decimal | None = None,
        ignore_total_tax: bool | None = None,
    ) -> None:
        self.fake.set_sales_tax(
            mode, ast_rate=ast_rate, invoice_total_drift=invoice_total_drift, ignore_total_tax=ignore_total_tax
        )

    def use_settings(self, **refs: ListRef) -> None:
        pass

    def invoice_figures(self, invoice_id: str) -> tuple[Decimal, Decimal]:
        return self.fake.txn(invoice_id).total, self.fake.invoice_balance(invoice_id)

    def deposit_figures(self, deposit_id: str) -> tuple[Decimal, list[str]]:
        txn = self.fake.txn(deposit_id)
        return txn.total, [line.txn_id for line in getattr(txn.spec, "lines", ()) if line.txn_id]

    def undeposited_funds(self) -> Decimal:
        return self.fake.undeposited_funds()

    def inject(self, *faults: Fault) -> None:
        self.fake.inject(*faults)

    def forget_request_ids(self) -> None:
        self.fake.forget_request_ids()


_ENTITY = {
    TxnKind.PAYMENT: "Payment",
    TxnKind.INVOICE: "Invoice",
    TxnKind.EXPENSE: "Purchase",
    TxnKind.CHECK: "Purchase",
    TxnKind.DEPOSIT: "Deposit",
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

    def deactivate_customer(self, customer_id: str, *, after_calls: int | None = None) -> None:
        """Now, or just before the (after_calls+1)th API call to the realm from now (admin.py)."""
        changes = {} if after_calls is None else {"after_calls": after_calls}
        self.rig.act("Customer", customer_id, "deactivate", changes)

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

    def set_sales_tax(
        self,
        mode: SalesTax | None = None,
        *,
        ast_rate: Decimal | None = None,
        invoice_total_drift: Decimal | None = None,
        ignore_total_tax: bool | None = None,
    ) -> None:
        self.rig.set_sales_tax(
            mode, ast_rate=ast_rate, invoice_total_drift=invoice_total_drift, ignore_total_tax=ignore_total_tax
        )

    def use_settings(self, **refs: ListRef) -> None:
        self.rig.use_settings(**refs)

    def invoice_figures(self, invoice_id: str) -> tuple[Decimal, Decimal]:
        state = self.rig.exact_state()
        invoice = next(r for r in state["entities"]["Invoice"] if r["Id"] == invoice_id)
        return invoice["TotalAmt"], state["balances"]["invoices"][invoice_id]

    def deposit_figures(self, deposit_id: str) -> tuple[Decimal, list[str]]:
        deposit = next(r for r in self.rig.exact_state()["entities"]["Deposit"] if r["Id"] == deposit_id)
        links = [link["TxnId"] for line in deposit["Line"] for link in line.get("LinkedTxn", [])]
        return deposit["TotalAmt"], links

    def undeposited_funds(self) -> Decimal:
        state = self.rig.exact_state()
        funds = next(a["Id"] for a in state["entities"]["Account"] if a.get("AccountSubType") == "UndepositedFunds")
        return state["balances"]["accounts"][funds]  # type: ignore[no-any-return]

    # --- what the rules state machine needs besides (tests/unit/test_sync_rules_machine.py) -------------

    def books(self) -> EmulatedBooks:
        settings = self.rig.connection().settings
        return EmulatedBooks.read(
            self.rig.exact_state(), tips_item=settings.tips_item.id, surcharge_item=settings.surcharge_item.id
        )

    def set_up_charges(self) -> None:
        """What a bookkeeper sets up for SPEC section 8, the way the machine's company has it: a Tips item on a
        liability (the tips are the crew's), a Card surcharge item on the Services income account, and the
        discount account, all in the tenant's settings."""
        tips_payable = self.add_list_entry(
            ListKind.ACCOUNT, "Tips payable", "Other Current Liability", "OtherCurrentLiabilities"
        )
        tips = self.add_list_entry(ListKind.ITEM, "Tips", "Service", income_account_id=tips_payable)
        state = self.rig.state()["entities"]
        services = next(a["Id"] for a in state["Account"] if a["Name"] == "Services")
        discounts = next(a for a in state["Account"] if a["Name"] == "Discounts given")
        surcharge = self.add_list_entry(ListKind.ITEM, "Card surcharge", "Service", income_account_id=services)
        self.use_settings(
            tips_item=ListRef(tips, "Tips"),
            surcharge_item=ListRef(surcharge, "Card surcharge"),
            discount_account=ListRef(discounts["Id"], discounts["Name"]),
        )

    def set_up_payouts(self) -> None:
        """What a bookkeeper sets up for SPEC section 9, the way the machine's company has it: the processor's fees
        expense account (found by its name, as a default) and the account payout adjustments book to (which has
        no default), in the tenant's settings."""
        self.add_list_entry(ListKind.ACCOUNT, "Merchant account fees", "Expense", "BankCharges")
        reserve = self.add_list_entry(ListKind.ACCOUNT, "Processor reserve", "Other Current Asset")
        self.use_settings(adjustment_account=ListRef(reserve, "Processor reserve"))

    def manual_tax_code(self) -> ListRef:
        """The company's first sales tax rate (the one switching to MANUAL makes), as the tax code setting."""
        code = self.rig.state()["entities"]["TaxCode"][0]
        return ListRef(str(code["Id"]), str(code["Name"]))

    def inject(self, *faults: Fault) -> None:
        """The fake's faults as the emulator's: armed in order, each taken by the next API call to the realm."""
        for fault in faults:
            self.rig.fault(_EMULATED_FAULT[fault])

    def forget_request_ids(self) -> None:
        self.rig.admin("POST", f"/realms/{self.rig.realm_id}/requestids/forget")

    def write_count(self) -> int:
        """Write requests the realm received (answered, failed or replayed: every one the client sent)."""
        return sum(1 for entry in self.rig.log() if entry["operation"] in ("create", "update", "delete", "void"))


# The fake's faults, the emulator's way: refused before anything is written, throttled, or committed with the
# answer lost. A 503 is retried inside the adapter (RetryPolicy) where the fake's UNAVAILABLE reaches the engine:
# both must end with the same books.
_EMULATED_FAULT = {
    Fault.UNAVAILABLE: "http503",
    Fault.THROTTLED: "throttle",
    Fault.COMMIT_THEN_LOSE: "commit_then_reset",
    Fault.NONE: "none",
}
_METHOD_BY_NAME = {names[0]: method for method, names in METHOD_NAMES.items()}


@dataclass
class EmulatedTxn(FakeTxn):
    """A transaction read from the emulator, carrying QBO's own TotalAmt (not one computed from the spec)."""

    total_amt: Decimal = Decimal("0.00")

    @property
    def total(self) -> Decimal:
        return self.total_amt


@dataclass
class EmulatedBooks:
    """An emulator realm's records read back as core specs, with QBO's own balances: what the rules state
    machine checks, in the same shapes as the fake's records (`Books` in tests/rules_model.py)."""

    customers: dict[str, FakeCustomer]
    other_names: set[str]
    txns: list[EmulatedTxn]
    invoice_balances: dict[str, Decimal]
    unapplied: dict[str, Decimal]
    invoice_taxes: dict[str, Decimal] = field(default_factory=dict)  # TxnTaxDetail.TotalTax by invoice Id
    payments_deposited: dict[str, str] = field(default_factory=dict)  # the ledger: payment Id -> its Deposit
    undeposited: Decimal = Decimal("0.00")  # the Undeposited Funds account's balance

    @classmethod
    def read(cls, state: dict[str, Any], *, tips_item: str = "", surcharge_item: str = "") -> EmulatedBooks:
        """`tips_item` and `surcharge_item` (the settings' Ids): the lines on them are read as the tip and the
        surcharge; without them, as plain lines."""
        entities = state["entities"]
        voided = set(state["voided"])
        methods = {m["Id"]: _METHOD_BY_NAME.get(m["Name"]) for m in entities["PaymentMethod"]}
        customers = {
            c["Id"]: FakeCustomer(
                c["Id"], c["DisplayName"], (c.get("PrimaryEmailAddr") or {}).get("Address", ""), active=c["Active"]
            )
            for c in entities["Customer"]
        }
        txns = [
            EmulatedTxn(
                record["Id"],
                entity,
                _spec(entity, record, methods, tips_item, surcharge_item),
                voided=f"{entity}/{record['Id']}" in voided,
                total_amt=record["TotalAmt"],
            )
            for entity in ("Payment", "Purchase", "Invoice", "Deposit")
            for record in entities[entity]
        ]
        balances = state["balances"]
        funds = next(a["Id"] for a in entities["Account"] if a.get("AccountSubType") == "UndepositedFunds")
        return cls(
            customers,
            {r["DisplayName"] for entity in ("Vendor", "Employee") for r in entities[entity]},
            txns,
            {k: v for k, v in balances["invoices"].items()},
            {k: v for k, v in balances["payments_unapplied"].items() if v is not None},
            {r["Id"]: (r.get("TxnTaxDetail") or {}).get("TotalTax", Decimal("0.00")) for r in entities["Invoice"]},
            dict(balances["payments_deposited"]),
            balances["accounts"][funds],
        )

    def live(self, entity: str) -> list[FakeTxn]:
        return [t for t in self.txns if t.entity == entity and t.live]

    def invoice_balance(self, invoice_id: str) -> Decimal:
        return self.invoice_balances[invoice_id]

    def unapplied_amount(self, payment_id: str) -> Decimal:
        return self.unapplied[payment_id]

    def invoice_tax(self, invoice_id: str) -> Decimal:
        return self.invoice_taxes[invoice_id]

    def deposited_payments(self) -> dict[str, str]:
        return self.payments_deposited

    def undeposited_funds(self) -> Decimal:
        return self.undeposited


def _spec(
    entity: str,
    record: dict[str, Any],
    methods: dict[str, PaymentMethod | None],
    tips_item: str = "",
    surcharge_item: str = "",
) -> TxnSpec:
    """The core spec a QBO record holds (the marker is left out: the machine reads it from PrivateNote)."""
    txn_date = date.fromisoformat(record["TxnDate"])
    note = record.get("PrivateNote") or ""
    if entity == "Deposit":
        # Its payment lines only (the Id each links, for its amount): the accounts the other lines book to are
        # the adapter's contract tests'. QBO's own TotalAmt is the EmulatedTxn's.
        payments = tuple(
            DepositLine(DepositLineKind.PAYMENT, line["Amount"], links[0]["TxnId"])
            for line in record.get("Line", [])
            if (links := line.get("LinkedTxn"))
        )
        return DepositSpec(txn_date, payments, note, "")
    if entity == "Payment":
        method = methods.get((record.get("PaymentMethodRef") or {}).get("value", ""))
        lines = tuple(
            LinkLine(TxnKind(link["TxnType"]), link["TxnId"], line["Amount"])
            for line in record.get("Line", [])
            for link in line["LinkedTxn"]
        )
        return PaymentSpec(
            record["CustomerRef"]["value"],
            record["TotalAmt"],
            txn_date,
            method,  # type: ignore[arg-type]  # None (no method) fails the machine's check, as it should
            record.get("PaymentRefNum") or "",
            lines,
            note,
            "",
        )
    if entity == "Purchase":
        kind = TxnKind.CHECK if record.get("PaymentType") == "Check" else TxnKind.EXPENSE
        memo = next((line.get("Description") or "" for line in record.get("Line", [])), "")
        return RefundSpec(record["EntityRef"]["value"], record["TotalAmt"], txn_date, kind, memo, note, "")
    # The sales lines, the tip's and the surcharge's apart: the first untaxed line on each of their items. A second
    # one, or one marked TAX, stays among the lines, where R6 finds it (the CRM has no such line).
    invoice_lines: list[InvoiceLine] = []
    charges: dict[str, Decimal] = {}
    for line in record.get("Line", []):
        if line.get("DetailType") != "SalesItemLineDetail":
            continue
        detail = line["SalesItemLineDetail"]
        taxable = (detail.get("TaxCodeRef") or {}).get("value") == "TAX"
        item = (detail.get("ItemRef") or {}).get("value", "")
        charge = {tips_item: "tip", surcharge_item: "surcharge"}.get(item) if item else None
        if charge is not None and charge not in charges and not taxable:
            charges[charge] = line["Amount"]
            continue
        invoice_lines.append(
            InvoiceLine(
                line.get("Description") or "",
                detail.get("Qty", Decimal("1")),  # a tip or surcharge line is written without Qty and UnitPrice
                detail.get("UnitPrice", line["Amount"]),
                line["Amount"],
                taxable,
            )
        )
    discounts = [line for line in record.get("Line", []) if line.get("DetailType") == "DiscountLineDetail"]
    discount = None
    if discounts:
        # The emulator refuses a second discount line; one read back is the invoice's.
        discount = DiscountSpec(
            discounts[0]["Amount"], discounts[0].get("Description") or "", bool(record.get("ApplyTaxAfterDiscount"))
        )
    return InvoiceSpec(
        record["CustomerRef"]["value"],
        record.get("DocNumber") or "",
        txn_date,
        tuple(invoice_lines),
        note,
        "",
        tax=(record.get("TxnTaxDetail") or {}).get("TotalTax", Decimal("0.00")),
        discount=discount,
        tip=charges.get("tip", Decimal("0.00")),
        surcharge=charges.get("surcharge", Decimal("0.00")),
    )


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
        from core.domain import SyncJobState

        for _ in range(rounds):
            self.worker.drain()
            current = self.service.get_job(self.principal, job.name)
            if current.state in (SyncJobState.SUCCEEDED, SyncJobState.FAILED):
                return current
        raise AssertionError(f"job {job.name} did not finish: {current}")

    def succeed(self, job: Any) -> Any:
        from core.domain import SyncJobState

        done = self.finish(job)
        assert done.state is SyncJobState.SUCCEEDED, done.error
        return done
