"""An in-memory QuickBooks Online company that behaves like QBO where the sync rules care.

Shipped product code for testers (SPEC.md section 1): DisplayName is unique across customers, vendors and
employees, inactive ones included; updates check the SyncToken (a stale one is refused with
`StaleRecordError` carrying the current one, as the real adapter does); a repeated requestid replays the
first answer; payments link refunds and invoices through their lines, and the balances follow (an
invoice's balance drops by the payment lines linking it, a payment's unapplied amount by its lines). As the
emulator does, a payment links only its own customer's records and a record a payment links keeps its
customer (moving them takes three writes). Faults can be injected before or after a write commits, and a
customer made inactive in the middle of a sync, to prove that a sync survives them.

Sales tax as the emulator models QBO (adapters/quickbooks/emulator/sales_tax.py), given what the real adapter
sends for a spec (TAX/NON lines, the CRM's tax as TxnTaxDetail.TotalTax when the invoice is taxable, one
amount discount line, tip and surcharge lines): an invoice's TotalAmt is the lines, tip and surcharge, less
the discount, plus the tax QBO keeps — the CRM's, or with `ignore_total_tax` automated sales tax's own at
`ast_rate` — plus `invoice_total_drift`. Every write answers the record's TotalAmt (`QuickBooksRef.total`).

Deposits as the emulator models QBO's (SPEC §9): a deposit's TotalAmt is the sum of its lines and cannot be
negative; a PAYMENT line links a live payment (else `LinkedRecordGoneError`) for its whole amount, and a
payment is in one deposit only (a second is refused with reason PAYMENT_ALREADY_DEPOSITED, as the adapter
reports it); updating a deposit without a payment, or deleting it, releases the payment. Every payment the fake
holds went to Undeposited Funds (the fake has no settings: the adapter's default deposit account). While a
payment is in a deposit, it cannot be deleted or voided and its amount cannot change.

Branches (SPEC §10) as the emulator models QBO: classes and locations are lists (`add_list_entry` with
ListKind.CLASS or DEPARTMENT, `parent_id` for a sub-class); a transaction's tracking that names a missing or
inactive one is refused, a location in a company that does not track locations too (the adapter's
BookkeepingError, reason QUICKBOOKS_SETTING_INVALID). A deposit sends its class on its account lines only, so
a deposit of payments alone carries none. An invoice without a DocNumber is numbered by QuickBooks when custom
transaction numbers are off (one more than the highest number, 1001 first), and a duplicate number is refused
(DOC_NUMBER_TAKEN) only with `refuse_duplicate_doc_numbers` on (QBO's "warn if duplicate").
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from adapters.quickbooks.qbo.batch import batches
from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS
from core import company_lists
from core.accounting import (
    NO_TRACKING,
    AccountingCustomer,
    BatchWrite,
    ChangedEntity,
    ChangedRecord,
    CustomerLookup,
    DepositLineKind,
    DepositSpec,
    InvoiceSpec,
    NewCustomer,
    NumberedInvoice,
    PaymentSpec,
    QuickBooksAmounts,
    QuickBooksRef,
    RecordStatus,
    RefundSpec,
    TxnKind,
    TxnSpec,
)
from core.company_lists import ListEntry, ListKind, pick_by_name
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import ClassTracking, ListRef, QuickBooksConnection
from core.currency import CompanyCurrency
from core.domain import normalise
from core.errors import (
    AccountingError,
    AccountingUnavailableError,
    BookkeepingError,
    CustomerUnusableError,
    DuplicateNameError,
    LinkedRecordGoneError,
    PaymentAlreadyDepositedError,
    RecordGoneError,
    StaleRecordError,
    ThrottledError,
)
from core.money import CENT, ZERO, money_sum
from core.ports import UNFENCED, AccountingSystem, AccountingSystems, CustomerCreate, WriteFence

SANDBOX_APP = "https://app.sandbox.qbo.intuit.com"
PAYMENT_ALREADY_DEPOSITED = "PAYMENT_ALREADY_DEPOSITED"  # the real adapter's reason (qbo/system.py)
DOC_NUMBER_TAKEN = "DOC_NUMBER_TAKEN"  # the real adapter's reason for QBO's 6140 (qbo/system.py)
SETTING_INVALID = "QUICKBOOKS_SETTING_INVALID"  # the real adapter's (qbo/settings.py)


class Fault(enum.Enum):
    """What goes wrong on the next call."""

    UNAVAILABLE = "unavailable"  # refused before anything is written
    THROTTLED = "throttled"  # a 429 before anything is written
    COMMIT_THEN_LOSE = "commit_then_lose"  # the write commits, the answer is lost (timeout, reset, 5xx)
    NONE = "none"  # the call goes through: lets a test aim a fault at a later call


@dataclass
class FakeCustomer:
    id: str
    display_name: str
    email: str
    given_name: str = ""
    family_name: str = ""
    company_name: str = ""
    phone: str = ""
    note: str = ""
    active: bool = True
    last_updated: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class FakeTxn:
    """A Payment, Purchase (expense or check), Invoice or Deposit as QBO holds it."""

    id: str
    entity: str  # "Payment", "Purchase", "Invoice" or "Deposit"
    spec: TxnSpec
    sync_token: int = 0
    deleted: bool = False
    voided: bool = False
    quickbooks_total: Decimal | None = None  # an invoice's TotalAmt as QBO worked it out (None: the spec's)
    doc_number: str = ""  # an invoice's DocNumber as QBO holds it: the spec's, or the one QuickBooks gave
    last_updated: datetime = field(default_factory=lambda: datetime.now(UTC))  # MetaData.LastUpdatedTime

    @property
    def live(self) -> bool:
        return not (self.deleted or self.voided)

    @property
    def kind(self) -> TxnKind:
        return self.spec.kind

    @property
    def total(self) -> Decimal:
        if self.voided:
            return ZERO
        if self.quickbooks_total is not None:
            return self.quickbooks_total
        spec = self.spec
        return spec.total if isinstance(spec, InvoiceSpec | DepositSpec) else spec.amount


def _seeded_lists() -> dict[ListKind, dict[str, ListEntry]]:
    """The chart of accounts and lists a new QBO company starts with, as the emulator seeds them (the same
    names, types and Ids: each list numbers its own entries)."""
    accounts = [
        ("Checking", "Bank", "Checking"),
        ("Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
        ("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
        ("Services", "Income", "ServiceFeeIncome"),
        ("Credit Card", "Credit Card", "CreditCard"),
        ("Discounts given", "Income", "DiscountsRefundsGiven"),
    ]
    # No tips or surcharge item: a new company has none (tests add them, as a bookkeeper would).
    lists: dict[ListKind, dict[str, ListEntry]] = {kind: {} for kind in ListKind}
    for name, account_type, sub_type in accounts:
        entry_id = str(len(lists[ListKind.ACCOUNT]) + 1)
        lists[ListKind.ACCOUNT][entry_id] = ListEntry(ListKind.ACCOUNT, entry_id, name, True, account_type, sub_type)
    lists[ListKind.ITEM]["1"] = ListEntry(ListKind.ITEM, "1", "Services", True, "Service", income_account_id="4")
    methods = ["Cash", "Check", "Credit Card", "ACH", "Other"]
    for number, method in enumerate(methods, start=1):
        method_type = "CREDIT_CARD" if method == "Credit Card" else "NON_CREDIT_CARD"
        entry = ListEntry(ListKind.PAYMENT_METHOD, str(number), method, True, method_type)
        lists[ListKind.PAYMENT_METHOD][entry.id] = entry
    return lists


def _entity_of(kind: TxnKind) -> str:
    return {TxnKind.PAYMENT: "Payment", TxnKind.INVOICE: "Invoice", TxnKind.DEPOSIT: "Deposit"}.get(kind, "Purchase")


@dataclass
class FakeQuickBooks(AccountingSystem):
    """One company (realm)."""

    realm_id: str = "9130000000000001"
    customers: dict[str, FakeCustomer] = field(default_factory=dict)
    txns: dict[str, FakeTxn] = field(default_factory=dict)
    other_names: set[str] = field(default_factory=set)  # vendors and employees
    lists: dict[ListKind, dict[str, ListEntry]] = field(default_factory=_seeded_lists)  # accounts, items, methods
    replays: dict[str, object] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    request_count: int = 0
    write_count: int = 0
    live_reads: int = 0  # read_live calls
    stale_token_refusals: int = 0
    # CurrencyPrefs: a new QuickBooks company in the US is in USD with multicurrency off.
    home_currency: str = "USD"
    multicurrency: bool = False
    # How the company treats sales tax (the emulator's `sales_tax` state and admin controls, the same names):
    sales_tax: SalesTax = SalesTax.AUTOMATED
    ast_rate: Decimal = Decimal("8.25")  # percent, what automated sales tax charges
    invoice_total_drift: Decimal = ZERO  # testers: added to every invoice's TotalAmt (INVOICE_TOTAL_MISMATCH)
    ignore_total_tax: bool = False  # testers: automated sales tax computes its own tax even when TotalTax is sent
    # AccountingInfoPrefs and SalesFormsPrefs (SPEC §10), as the emulator's new company has them.
    class_tracking: ClassTracking = ClassTracking.OFF
    track_departments: bool = False
    custom_txn_numbers: bool = False  # off: QuickBooks numbers an invoice sent without a DocNumber
    refuse_duplicate_doc_numbers: bool = False  # QBO's "warn if duplicate" (off in a new company)
    pending_deactivations: dict[str, int] = field(default_factory=dict)  # customer id -> calls to wait
    # What MetaData.LastUpdatedTime says of a change made now (testers: a controlled clock).
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _next_id: int = 1
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- the port ---------------------------------------------------------------------------------

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        with self._lock:
            self._call(write=False)
            return self._customers_matching(email)

    def find_customers_many(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        found: list[list[AccountingCustomer]] = []
        with self._lock:
            for chunk in batches(lookups):
                self._call(write=False)  # one batch request of queries
                found.extend(self._customers_matching(lookup.email) for lookup in chunk)
        return found

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        with self._lock:
            return self._write(request_id, fence, lambda: self._create_customer(customer))

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        with self._lock:
            return self._write(request_id, fence, lambda: self._create(spec))

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        results: list[AccountingCustomer | Exception] = []
        with self._lock:
            for chunk in batches(creates):
                results.extend(self._create_customer_batch(chunk, fence))
        return results

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        with self._lock:
            return self._write(request_id, fence, lambda: self._update(ref, spec))

    def void(self, ref: QuickBooksRef, *, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        with self._lock:
            txn = self.txns.get(ref.id)
            if txn is not None and txn.entity == _entity_of(ref.kind) and (txn.voided or txn.deleted):
                if txn.deleted and txn.entity != "Purchase":
                    raise RecordGoneError(f"{txn.entity} {ref.id} was deleted in QuickBooks")
                return QuickBooksRef(ref.kind, txn.id, str(txn.sync_token), ZERO)  # idempotent: nothing sent
            fence.check()
            fault = self._call(write=True)
            result = self._void(ref)  # QBO's void takes no request id: nothing to replay it by
            self.write_count += 1
            if fault is Fault.COMMIT_THEN_LOSE:
                raise AccountingUnavailableError(
                    "the connection was reset after QuickBooks committed", maybe_committed=True
                )
            return result

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        results: list[QuickBooksRef | AccountingError] = []
        with self._lock:
            for chunk in batches(writes):
                results.extend(self._write_batch(chunk, fence))
        return results

    def batch_room(self) -> bool:
        return True  # the fake meters no batch requests

    def find_by_marker(self, kind: TxnKind, marker: str, customer_id: str = "") -> QuickBooksRef | None:
        # customer_id narrows QBO's search; the marker alone identifies the record, so the fake ignores it.
        with self._lock:
            self._call(write=False)
            for txn in self.txns.values():
                if txn.live and txn.entity == _entity_of(kind) and marker in txn.spec.private_note:
                    return QuickBooksRef(txn.kind, txn.id, str(txn.sync_token))
            return None

    def changed_since(self, entities: Sequence[ChangedEntity], since: datetime) -> list[ChangedRecord]:
        with self._lock:
            self._call(write=False)
            since = max(since, self.now() - timedelta(days=30))  # QuickBooks looks back 30 days at most
            wanted = set(entities)
            changed: list[ChangedRecord] = []
            for txn in self.txns.values():
                entity = ChangedEntity(txn.entity)
                if entity in wanted and txn.last_updated >= since:
                    changed.append(self._changed(entity, txn))
            if ChangedEntity.CUSTOMER in wanted:
                changed.extend(
                    ChangedRecord(ChangedEntity.CUSTOMER, c.id, "0", RecordStatus.LIVE, c.last_updated)
                    for c in self.customers.values()
                    if c.last_updated >= since
                )
            return sorted(changed, key=lambda r: (r.last_updated, r.entity.value, int(r.id)))

    def _changed(self, entity: ChangedEntity, txn: FakeTxn) -> ChangedRecord:
        if txn.deleted:
            return ChangedRecord(entity, txn.id, str(txn.sync_token), RecordStatus.DELETED, txn.last_updated)
        status = RecordStatus.VOIDED if txn.voided else RecordStatus.LIVE
        return ChangedRecord(
            entity, txn.id, str(txn.sync_token), status, txn.last_updated, txn.total, txn.spec.customer_id
        )

    def link_for(self, kind: TxnKind | None, quickbooks_id: str) -> str:
        page = {
            None: f"customerdetail?nameId={quickbooks_id}",
            TxnKind.PAYMENT: f"recvpayment?txnId={quickbooks_id}",
            TxnKind.INVOICE: f"invoice?txnId={quickbooks_id}",
            TxnKind.EXPENSE: f"expense?txnId={quickbooks_id}",
            TxnKind.CHECK: f"check?txnId={quickbooks_id}",
            TxnKind.DEPOSIT: f"deposit?txnId={quickbooks_id}",
        }[kind]
        return f"{SANDBOX_APP}/app/{page}&deeplinkcompanyid={self.realm_id}"

    def find_list_entry(self, kind: ListKind, ref: ListRef) -> ListEntry | None:
        with self._lock:
            self._call(write=False)
            entries = self.lists[kind]
            return entries.get(ref.id) if ref.id else pick_by_name(entries.values(), ref.name)

    def company_preferences(self) -> CompanyPreferences:
        with self._lock:
            self._call(write=False)
            currency = CompanyCurrency(self.home_currency, self.multicurrency)
            return CompanyPreferences(
                currency,
                self.sales_tax,
                class_tracking=self.class_tracking,
                track_departments=self.track_departments,
                custom_txn_numbers=self.custom_txn_numbers,
            )

    def invoices_numbered(self, doc_number: str) -> list[NumberedInvoice]:
        with self._lock:
            self._call(write=False)
            found = [
                t for t in self.txns.values() if t.entity == "Invoice" and not t.deleted and t.doc_number == doc_number
            ]
            return [NumberedInvoice(t.id, t.spec.private_note) for t in sorted(found, key=lambda t: int(t.id))]

    # --- what testers use ---------------------------------------------------------------------------

    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> None:
        """Change CurrencyPrefs as a QuickBooks admin would, under QBO's rules (the emulator's too):
        multicurrency cannot be turned off once on, and the home currency is fixed from then on."""
        with self._lock:
            if self.multicurrency and multicurrency is False:
                raise ValueError("multicurrency cannot be turned off once it is on")
            if self.multicurrency and home_currency not in (None, self.home_currency):
                raise ValueError("the home currency cannot change once multicurrency is on")
            self.home_currency = home_currency or self.home_currency
            self.multicurrency = self.multicurrency if multicurrency is None else multicurrency

    def set_sales_tax(
        self,
        sales_tax: SalesTax | None = None,
        *,
        ast_rate: Decimal | None = None,
        invoice_total_drift: Decimal | None = None,
        ignore_total_tax: bool | None = None,
    ) -> None:
        """The emulator's ``POST /_emulator/realms/{realm}/sales_tax``: switching to MANUAL gives a company
        without tax codes one, "Sales tax" at the AST rate, as the emulator does."""
        with self._lock:
            self.sales_tax = sales_tax or self.sales_tax
            self.ast_rate = self.ast_rate if ast_rate is None else ast_rate
            self.invoice_total_drift = self.invoice_total_drift if invoice_total_drift is None else invoice_total_drift
            self.ignore_total_tax = self.ignore_total_tax if ignore_total_tax is None else ignore_total_tax
            codes = self.lists[ListKind.TAX_CODE]
            if self.sales_tax is SalesTax.MANUAL and not codes:
                codes["1"] = ListEntry(ListKind.TAX_CODE, "1", "Sales tax", True, type=company_lists.TAX_CODE_RATE)

    def set_preferences(
        self,
        *,
        class_tracking: ClassTracking | None = None,
        track_departments: bool | None = None,
        custom_txn_numbers: bool | None = None,
        refuse_duplicate_doc_numbers: bool | None = None,
    ) -> None:
        """The emulator's ``POST /_emulator/realms/{realm}/preferences`` for SPEC §10's preferences."""
        with self._lock:
            self.class_tracking = self.class_tracking if class_tracking is None else class_tracking
            self.track_departments = self.track_departments if track_departments is None else track_departments
            self.custom_txn_numbers = self.custom_txn_numbers if custom_txn_numbers is None else custom_txn_numbers
            if refuse_duplicate_doc_numbers is not None:
                self.refuse_duplicate_doc_numbers = refuse_duplicate_doc_numbers

    def inject(self, *faults: Fault) -> None:
        """The next calls fail, one fault each, in order."""
        with self._lock:
            self.faults.extend(faults)

    def forget_request_ids(self) -> None:
        """QBO does not always honour requestid replay: make it forget, to prove we don't rely on it."""
        with self._lock:
            self.replays.clear()

    def add_vendor(self, display_name: str) -> None:
        with self._lock:
            self.other_names.add(display_name)

    def add_customer(self, display_name: str, email: str = "", *, active: bool = True) -> str:
        """A customer created in QuickBooks by someone else."""
        with self._lock:
            if self._name_taken(display_name):
                raise DuplicateNameError(display_name)
            new_id = self._new_id()
            self.customers[new_id] = FakeCustomer(new_id, display_name, email, active=active, last_updated=self.now())
            return new_id

    def add_list_entry(
        self,
        kind: ListKind,
        name: str,
        type: str = "",
        sub_type: str = "",
        *,
        income_account_id: str = "",
        parent_id: str = "",
    ) -> str:
        """An account, item, payment method, tax code, class or location created in QuickBooks; returns its Id.
        An item's type defaults to Service, a payment method's to NON_CREDIT_CARD and a tax code's to a rate,
        as in QBO. `parent_id`: the entry it is a sub-entry of (a sub-class), whose name its fully qualified
        name starts with."""
        defaults = {
            ListKind.ITEM: "Service",
            ListKind.PAYMENT_METHOD: "NON_CREDIT_CARD",
            ListKind.TAX_CODE: company_lists.TAX_CODE_RATE,
        }
        type = type or defaults.get(kind, "")
        with self._lock:
            entries = self.lists[kind]
            if parent_id:
                name = f"{entries[parent_id].name}{company_lists.LEVEL_SEPARATOR}{name}"
            new_id = str(max((int(i) for i in entries), default=0) + 1)
            entries[new_id] = ListEntry(kind, new_id, name, True, type, sub_type, income_account_id)
            return new_id

    def deactivate_list_entry(self, kind: ListKind, entry_id: str) -> None:
        """Made inactive in QuickBooks (QBO's "delete" of an account, item or payment method)."""
        with self._lock:
            self.lists[kind][entry_id] = replace(self.lists[kind][entry_id], active=False)

    def deactivate_customer(self, customer_id: str, *, after_calls: int | None = None) -> None:
        """Someone makes the customer inactive in QuickBooks: now, or (`after_calls`=N) just before the
        (N+1)th call from now, which lands in the middle of a sync. QBO cannot delete a customer: making
        it inactive is QBO's "delete"."""
        with self._lock:
            if after_calls is None:
                self.customers[customer_id].active = False
                self.customers[customer_id].last_updated = self.now()
                self.pending_deactivations.pop(customer_id, None)
            else:
                self.pending_deactivations[customer_id] = after_calls

    def delete(self, quickbooks_id: str) -> None:
        """Deletes a transaction in QuickBooks; payments linking it lose those lines, as in QBO. A payment in
        a deposit is refused (BookkeepingError), as the emulator refuses it; a deleted deposit releases its
        payments."""
        with self._lock:
            self._not_deposited(quickbooks_id, "deleted")
            self.txns[quickbooks_id].deleted = True
            self.txns[quickbooks_id].last_updated = self.now()
            self._unlink(quickbooks_id)

    def edit_in_quickbooks(
        self, quickbooks_id: str, *, total: Decimal | None = None, customer_id: str | None = None
    ) -> None:
        """A bookkeeper edits the transaction in QuickBooks' web app: its total (TotalAmt) and/or its customer
        (CustomerRef). Its SyncToken moves on, as any save in QuickBooks moves it."""
        with self._lock:
            txn = self.txns[quickbooks_id]
            if total is not None:
                txn.quickbooks_total = total
                if isinstance(txn.spec, PaymentSpec | RefundSpec):
                    txn.spec = replace(txn.spec, amount=total)
            if customer_id is not None:
                txn.spec = replace(txn.spec, customer_id=customer_id)  # type: ignore[type-var]
            txn.sync_token += 1
            txn.last_updated = self.now()

    def void_in_quickbooks(self, quickbooks_id: str) -> None:
        """A bookkeeper voids the transaction in QuickBooks' web app: payments linking it lose those lines,
        as in QBO (the port's `void`, qbsync's own, refuses a linked record instead, as QBO's API does)."""
        with self._lock:
            self._not_deposited(quickbooks_id, "voided")
            txn = self.txns[quickbooks_id]
            txn.voided = True
            txn.sync_token += 1  # QuickBooks' void is an update of the record
            txn.last_updated = self.now()
            self._unlink(quickbooks_id)

    def deposit_holding(self, payment_id: str, excluding: str | None = None) -> str | None:
        """The live deposit (other than `excluding`) that took the payment out of Undeposited Funds, if any."""
        with self._lock:
            for t in self.txns.values():
                if not (t.live and t.id != excluding and isinstance(t.spec, DepositSpec)):
                    continue
                if any(line.kind is DepositLineKind.PAYMENT and line.txn_id == payment_id for line in t.spec.lines):
                    return t.id
            return None

    def undeposited_funds(self) -> Decimal:
        """What Undeposited Funds holds: every live payment not in a live deposit."""
        with self._lock:
            payments = [t for t in self.txns.values() if t.entity == "Payment" and t.live]
            return money_sum(t.total for t in payments if self.deposit_holding(t.id) is None)

    def live(self, entity: str) -> list[FakeTxn]:
        """Live Payments, Purchases or Invoices."""
        with self._lock:
            return [t for t in self.txns.values() if t.entity == entity and t.live]

    def txn(self, quickbooks_id: str) -> FakeTxn:
        return self.txns[quickbooks_id]

    def invoice_balance(self, invoice_id: str) -> Decimal:
        with self._lock:
            return self.txns[invoice_id].total - self._linked_to(invoice_id)

    def read_live(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
        with self._lock:
            self._call(write=False)
            self.live_reads += 1
            found = (self.txns.get(i) for i in ids)
            return {
                txn.id: QuickBooksRef(txn.kind, txn.id, str(txn.sync_token))
                for txn in found
                if txn is not None and txn.live and txn.kind is kind  # a check is no expense
            }

    def read_amounts(self, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksAmounts]:
        with self._lock:
            self._call(write=False)
            self.live_reads += 1
            found = [t for i in dict.fromkeys(ids) if (t := self.txns.get(i)) is not None]
            return {t.id: self._amounts(t) for t in found if not t.deleted and t.kind is kind}

    def _amounts(self, txn: FakeTxn) -> QuickBooksAmounts:
        spec = txn.spec
        if txn.voided:
            return QuickBooksAmounts(ZERO, voided=True, customer_id=spec.customer_id)
        if isinstance(spec, PaymentSpec):
            return QuickBooksAmounts(
                txn.total,
                open=spec.amount - spec.linked_total,
                linked=spec.linked_total,
                linked_ids=frozenset(line.txn_id for line in spec.lines),
                customer_id=spec.customer_id,
            )
        if isinstance(spec, InvoiceSpec):
            return QuickBooksAmounts(txn.total, open=txn.total - self._linked_to(txn.id), customer_id=spec.customer_id)
        if isinstance(spec, DepositSpec):
            paid_in = frozenset(
                line.txn_id for line in spec.lines if line.kind is DepositLineKind.PAYMENT and line.txn_id
            )
            return QuickBooksAmounts(txn.total, linked_ids=paid_in)
        return QuickBooksAmounts(txn.total, customer_id=spec.customer_id)

    def active_customers(self, ids: list[str]) -> set[str]:
        with self._lock:
            self._call(write=False)
            self.live_reads += 1
            return {i for i in ids if (c := self.customers.get(i)) is not None and c.active}

    def unapplied_amount(self, payment_id: str) -> Decimal:
        with self._lock:
            spec = self.txns[payment_id].spec
            assert isinstance(spec, PaymentSpec)
            return spec.amount - spec.linked_total

    # --- behaviour ------------------------------------------------------------------------------

    def _call(self, *, write: bool) -> Fault | None:
        self.request_count += 1
        for customer_id, calls_left in list(self.pending_deactivations.items()):
            if calls_left == 0:
                self.deactivate_customer(customer_id)
            else:
                self.pending_deactivations[customer_id] = calls_left - 1
        fault = self.faults.popleft() if self.faults else None
        if fault is Fault.UNAVAILABLE:
            raise AccountingUnavailableError("QuickBooks is unavailable (injected)")
        if fault is Fault.THROTTLED:
            raise ThrottledError("QuickBooks throttled the request (injected)", retry_after_seconds=0)
        if fault is Fault.COMMIT_THEN_LOSE and not write:
            raise AccountingUnavailableError("QuickBooks did not answer (injected)")
        return fault

    def _write(self, request_id: str, fence: WriteFence, do):  # type: ignore[no-untyped-def]
        fence.check()  # the moment the write would leave: a refused one is not sent (nor counted)
        fault = self._call(write=True)
        result = self._replayed(request_id, do)
        if fault is Fault.COMMIT_THEN_LOSE:
            raise AccountingUnavailableError(
                "the connection was reset after QuickBooks committed", maybe_committed=True
            )
        return result

    def _write_batch(self, chunk: Sequence[BatchWrite], fence: WriteFence) -> list[QuickBooksRef | AccountingError]:
        """One batch request: a fault strikes the whole request, a refusal only its own write (as in QBO)."""
        fence.check()
        fault = self._call(write=True)
        results: list[QuickBooksRef | AccountingError] = []
        for write in chunk:
            try:
                results.append(self._replayed(write.request_id, lambda w=write: self._batch_item(w)))
            except AccountingError as refused:
                # The real adapter confirms a refused item as a single write (qbo/batch.py): one more request.
                self.request_count += 1
                results.append(refused)
        if fault is Fault.COMMIT_THEN_LOSE:
            raise AccountingUnavailableError(
                "the connection was reset after QuickBooks committed the batch", maybe_committed=True
            )
        return results

    def _create_customer_batch(
        self, chunk: Sequence[CustomerCreate], fence: WriteFence
    ) -> list[AccountingCustomer | Exception]:
        """One batch request of the creates whose fences let them go (as the real adapter: qbo/system.py)."""
        fence.check()
        results: dict[int, AccountingCustomer | Exception] = {}
        for i, create in enumerate(chunk):
            try:
                create.fence.check()
            except Exception as fenced:  # noqa: BLE001 - that create's own refusal, as its single create raises it
                results[i] = fenced
        if len(results) == len(chunk):
            return [results[i] for i in range(len(chunk))]  # nothing left to send: no request
        fault = self._call(write=True)
        for i, create in enumerate(chunk):
            if i in results:
                continue
            try:
                results[i] = self._replayed(create.request_id, lambda c=create: self._create_customer(c.customer))
            except AccountingError as refused:
                self.request_count += 1  # the real adapter confirms a refused item as a single create
                results[i] = refused
        if fault is Fault.COMMIT_THEN_LOSE:
            raise AccountingUnavailableError(
                "the connection was reset after QuickBooks committed the batch", maybe_committed=True
            )
        return [results[i] for i in range(len(chunk))]

    def _batch_item(self, write: BatchWrite) -> QuickBooksRef:
        return self._create(write.spec) if write.ref is None else self._update(write.ref, write.spec)

    def _replayed(self, request_id: str, do):  # type: ignore[no-untyped-def]
        """`do()`'s answer, or the answer kept for `request_id` (a refusal is not kept: nothing was written)."""
        if request_id in self.replays:
            return self.replays[request_id]
        result = do()
        self.write_count += 1
        self.replays[request_id] = result
        return result

    def _create_customer(self, new: NewCustomer) -> AccountingCustomer:
        _refuse_what_qbo_cannot_hold(_customer_fields(new), "create the customer")
        if self._name_taken(new.display_name):
            raise DuplicateNameError(new.display_name)
        new_id = self._new_id()
        self.customers[new_id] = FakeCustomer(
            new_id,
            new.display_name,
            new.email,
            new.given_name,
            new.family_name,
            new.company_name,
            new.phone,
            new.note,
            last_updated=self.now(),
        )
        return AccountingCustomer(new_id, new.display_name, new.email)

    def _create(self, spec: TxnSpec) -> QuickBooksRef:
        total = self._check(spec, replacing=None)
        doc_number = self._doc_number(spec, None)
        new_id = self._new_id()
        self.txns[new_id] = FakeTxn(
            new_id, _entity_of(spec.kind), spec, quickbooks_total=total, doc_number=doc_number, last_updated=self.now()
        )
        return QuickBooksRef(spec.kind, new_id, "0", total)

    def _doc_number(self, spec: TxnSpec, replacing: FakeTxn | None) -> str:
        """An invoice's DocNumber as QuickBooks will hold it (the emulator's rules, see the module docstring);
        refuses one another invoice has when the company refuses duplicates."""
        if not isinstance(spec, InvoiceSpec):
            return ""
        doc_number = spec.doc_number
        if not doc_number and not self.custom_txn_numbers:
            if replacing is not None:
                doc_number = replacing.doc_number
            else:
                numbers = [
                    int(t.doc_number)
                    for t in self.txns.values()
                    if t.entity == "Invoice" and not t.deleted and t.doc_number.isdigit()
                ]
                doc_number = str(max(numbers, default=1000) + 1)
        if doc_number and self.refuse_duplicate_doc_numbers:
            for other in self.txns.values():
                mine = replacing is not None and other.id == replacing.id
                if other.entity == "Invoice" and not other.deleted and not mine and other.doc_number == doc_number:
                    raise BookkeepingError(
                        f"QuickBooks refused to write the invoice: another invoice has the number {doc_number!r} "
                        f"and the company refuses duplicate invoice numbers (Invoice {other.id})",
                        reason=DOC_NUMBER_TAKEN,
                    )
        return doc_number

    def _update(self, ref: QuickBooksRef, spec: TxnSpec) -> QuickBooksRef:
        txn = self.txns.get(ref.id)
        if txn is None or not txn.live or txn.entity != _entity_of(spec.kind):
            raise RecordGoneError(f"{_entity_of(spec.kind)} {ref.id} was deleted or voided in QuickBooks")
        if ref.sync_token != str(txn.sync_token):
            # QBO answers 5010 (stale object), and the adapter reads the record for its current SyncToken.
            self.stale_token_refusals += 1
            self.request_count += 1  # that read
            raise StaleRecordError(
                f"{txn.entity} {txn.id} changed in QuickBooks (SyncToken {txn.sync_token}, not {ref.sync_token})",
                sync_token=str(txn.sync_token),
            )
        total = self._check(spec, replacing=txn)
        txn.doc_number = self._doc_number(spec, txn)
        txn.spec = spec
        txn.quickbooks_total = total
        txn.sync_token += 1
        txn.last_updated = self.now()
        return QuickBooksRef(spec.kind, txn.id, str(txn.sync_token), total)

    def _void(self, ref: QuickBooksRef) -> QuickBooksRef:
        """QBO's void (a Purchase: its delete, see `AccountingSystem.void`); a stale SyncToken is re-sent with
        the current one, as the real adapter does."""
        txn = self.txns.get(ref.id)
        if txn is None or txn.entity != _entity_of(ref.kind) or txn.entity == "Deposit":
            raise RecordGoneError(f"{_entity_of(ref.kind)} {ref.id} is not in QuickBooks")
        self._not_deposited(txn.id, "voided")
        linked = self._linked_to(txn.id)
        if linked:
            raise BookkeepingError(f"{txn.entity} {txn.id} is linked by a payment ({linked}) and cannot be voided")
        if txn.entity == "Purchase":
            txn.deleted = True
        else:
            txn.voided = True
        txn.sync_token += 1
        txn.last_updated = self.now()
        return QuickBooksRef(ref.kind, txn.id, str(txn.sync_token), ZERO)

    def _invoice_total(self, spec: InvoiceSpec) -> Decimal:
        """TotalAmt as QBO works it out from what the adapter sends (see the module docstring): the
        emulator's rules, refusals worded as the adapter reports them."""
        coded = self.sales_tax is not SalesTax.NONE
        if not coded and spec.tax:
            raise BookkeepingError(
                "QuickBooks refused to create the invoice: Business Validation Error: Sales tax is not set up "
                "for this company: the invoice cannot carry sales tax (code 6000, element TxnTaxDetail)"
            )
        subtotal = spec.lines_total + spec.tip + spec.surcharge
        discount = spec.discount.amount if spec.discount is not None else ZERO
        if discount < 0 or discount > subtotal:
            raise BookkeepingError(
                "QuickBooks refused to create the invoice: Business Validation Error: The discount amount can't "
                "be greater than the subtotal. (code 6000, element Line.Amount)"
            )
        taxable = money_sum(line.amount for line in spec.lines if line.taxable) if coded else ZERO
        before_tax = spec.discount is not None and spec.discount.apply_tax_after_discount
        if before_tax and discount and subtotal:
            taxable -= (discount * taxable / subtotal).quantize(CENT, rounding=ROUND_HALF_UP)
        sent = spec.tax if spec.taxable and coded else None
        if sent is not None and not (self.sales_tax is SalesTax.AUTOMATED and self.ignore_total_tax):
            tax = sent
        elif self.sales_tax is SalesTax.AUTOMATED:
            tax = (taxable * self.ast_rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        else:
            tax = ZERO  # MANUAL without TotalTax: the adapter sends TotalTax whenever a line is taxable
        return subtotal - discount + tax + self.invoice_total_drift

    def _check(self, spec: TxnSpec, replacing: FakeTxn | None) -> Decimal:
        """The business rules QBO enforces on a write; the record's TotalAmt as QBO will hold it."""
        _refuse_what_qbo_cannot_hold(_txn_fields(spec), f"write the {_entity_of(spec.kind)}")
        _refuse_amounts_qbo_cannot_hold(spec)
        self._check_tracking(spec)
        if isinstance(spec, DepositSpec):
            return self._check_deposit(spec, replacing)
        if isinstance(spec, PaymentSpec) and replacing is not None and spec.amount != replacing.total:
            holder = self.deposit_holding(replacing.id)
            if holder is not None:
                raise BookkeepingError(
                    f"QuickBooks refused to update the payment: Payment {replacing.id} is in Deposit {holder}: "
                    "its TotalAmt cannot change"
                )
        customer = self.customers.get(spec.customer_id)
        if customer is None or not customer.active:
            raise CustomerUnusableError(f"customer {spec.customer_id} is missing or inactive in QuickBooks")
        if isinstance(spec, PaymentSpec):
            if spec.linked_total > spec.amount:
                raise BookkeepingError("a payment cannot apply more than its amount")
            for line in spec.lines:
                target = self.txns.get(line.txn_id)
                if target is None or not target.live or target.entity != _entity_of(line.txn_kind):
                    raise LinkedRecordGoneError(f"the payment links {line.txn_kind.value} {line.txn_id}, which is gone")
                if target.spec.customer_id != spec.customer_id:
                    raise BookkeepingError("a payment can only link its own customer's transactions")
                if line.txn_kind is TxnKind.INVOICE:
                    others = self._linked_to(line.txn_id, excluding=replacing.id if replacing else None)
                    if others + line.amount > target.total:
                        raise BookkeepingError(f"invoice {line.txn_id} would be over-applied")
        if replacing is not None and spec.customer_id != replacing.spec.customer_id and self._linked_to(replacing.id):
            # As the emulator (and, by our reading, QBO): a record a payment links keeps its customer.
            raise BookkeepingError(
                f"{replacing.entity} {replacing.id} is linked from a payment: its customer cannot change"
            )
        total = self._invoice_total(spec) if isinstance(spec, InvoiceSpec) else spec.amount
        if isinstance(spec, InvoiceSpec) and replacing is not None and total < self._linked_to(replacing.id):
            raise BookkeepingError("the invoice total would fall below the payments applied to it")
        if isinstance(spec, RefundSpec) and spec.amount <= ZERO:
            raise BookkeepingError("an expense needs a positive amount")
        if isinstance(spec, RefundSpec) and replacing is not None and spec.amount < self._linked_to(replacing.id):
            raise BookkeepingError("the expense total would fall below what its payment links to it")
        return total

    def _check_tracking(self, spec: TxnSpec) -> None:
        """The class and location a write carries, as the emulator checks the ClassRef and DepartmentRef the
        adapter sends (a deposit's class rides on its account lines: none without one), refused worded as the
        adapter reports it."""
        tracking = getattr(spec, "tracking", NO_TRACKING)
        what = f"QuickBooks refused to write the {_entity_of(spec.kind)}"
        if tracking.department_id:
            if not self.track_departments:
                raise BookkeepingError(
                    f"{what}: the branch mapping names the location {tracking.department_id}, and QuickBooks does "
                    "not accept it: location tracking is off in QuickBooks",
                    reason=SETTING_INVALID,
                )
            self._check_tracked(ListKind.DEPARTMENT, tracking.department_id, what, "location")
        sends_class = not isinstance(spec, DepositSpec) or any(
            line.kind is not DepositLineKind.PAYMENT for line in spec.lines
        )
        if tracking.class_id and sends_class:
            self._check_tracked(ListKind.CLASS, tracking.class_id, what, "class")

    def _check_tracked(self, kind: ListKind, entry_id: str, what: str, noun: str) -> None:
        entry = self.lists[kind].get(entry_id)
        if entry is None or not entry.active:
            raise BookkeepingError(
                f"{what}: the {noun} {entry_id} of the branch mapping is missing or inactive in QuickBooks",
                reason=SETTING_INVALID,
            )

    def _check_deposit(self, spec: DepositSpec, replacing: FakeTxn | None) -> Decimal:
        """The emulator's deposit rules (see the module docstring); the deposit's TotalAmt."""
        seen: set[str] = set()
        for line in spec.lines:
            if line.kind is not DepositLineKind.PAYMENT:
                continue
            target = self.txns.get(line.txn_id)
            if target is None or not target.live or target.entity != "Payment":
                raise LinkedRecordGoneError(f"the deposit links payment {line.txn_id}, which is gone")
            holder = self.deposit_holding(line.txn_id, excluding=replacing.id if replacing else None)
            if line.txn_id in seen:
                raise BookkeepingError(
                    f"the deposit links the payment {line.txn_id} twice", reason=PAYMENT_ALREADY_DEPOSITED
                )
            if holder is not None:
                raise PaymentAlreadyDepositedError(f"the payment {line.txn_id} is already in the deposit {holder}")
            seen.add(line.txn_id)
            if line.amount != target.total:
                raise BookkeepingError(
                    f"the deposit line for payment {line.txn_id} ({line.amount}) must be its total ({target.total})"
                )
        if spec.total < ZERO:
            raise BookkeepingError(f"a deposit's total cannot be negative ({spec.total})")
        return spec.total

    def _not_deposited(self, txn_id: str, how: str) -> None:
        txn = self.txns[txn_id]
        holder = self.deposit_holding(txn_id) if txn.entity == "Payment" else None
        if holder is not None:
            raise BookkeepingError(f"payment {txn_id} is in deposit {holder} and cannot be {how}")

    def _linked_to(self, txn_id: str, excluding: str | None = None) -> Decimal:
        return money_sum(
            line.amount
            for t in self.txns.values()
            if t.live and t.entity == "Payment" and t.id != excluding and isinstance(t.spec, PaymentSpec)
            for line in t.spec.lines
            if line.txn_id == txn_id
        )

    def _unlink(self, txn_id: str) -> None:
        for t in self.txns.values():
            if isinstance(t.spec, PaymentSpec) and any(line.txn_id == txn_id for line in t.spec.lines):
                t.spec = replace(t.spec, lines=tuple(line for line in t.spec.lines if line.txn_id != txn_id))
                t.sync_token += 1
                t.last_updated = self.now()

    def _customers_matching(self, email: str) -> list[AccountingCustomer]:
        wanted_email = normalise(email)
        return [
            AccountingCustomer(c.id, c.display_name, c.email, c.active)
            for c in self.customers.values()
            if c.active and normalise(c.email) == wanted_email
        ]

    def _name_taken(self, display_name: str) -> bool:
        wanted = normalise(display_name)
        names = [c.display_name for c in self.customers.values()] + list(self.other_names)
        return any(normalise(n) == wanted for n in names)

    def _new_id(self) -> str:
        new_id = str(self._next_id)
        self._next_id += 1
        return new_id


# --- QBO's field limits, as QBO answers them (the same table the adapter and the core use) -----------------

_NAME_FIELDS = ("DisplayName", "GivenName", "FamilyName")


def _customer_fields(new: NewCustomer) -> dict[str, tuple[str, int]]:
    """QBO field -> (value written, QBO's limit)."""
    limits = QBO_FIELD_LIMITS
    return {
        "DisplayName": (new.display_name, limits.display_name),
        "GivenName": (new.given_name, limits.given_name),
        "FamilyName": (new.family_name, limits.family_name),
        "CompanyName": (new.company_name, limits.company_name),
        "PrimaryEmailAddr": (new.email, limits.email),
        "PrimaryPhone": (new.phone, limits.phone),
    }


def _txn_fields(spec: TxnSpec) -> dict[str, tuple[str, int]]:
    limits = QBO_FIELD_LIMITS
    fields = {"PrivateNote": (spec.private_note, limits.private_note)}
    if isinstance(spec, RefundSpec):
        fields["Line.Description"] = (spec.memo, limits.expense_line_description)
    if isinstance(spec, DepositSpec):
        for i, deposit_line in enumerate(spec.lines):
            fields[f"Line[{i}].Description"] = (deposit_line.memo, limits.invoice_line_description)
    if isinstance(spec, InvoiceSpec):
        fields["DocNumber"] = (spec.doc_number, limits.doc_number)
        for i, line in enumerate(spec.lines):
            fields[f"Line[{i}].Description"] = (line.description, limits.invoice_line_description)
    return fields


def _refuse_what_qbo_cannot_hold(fields: dict[str, tuple[str, int]], what: str) -> None:
    """QBO's Fault 2050 (too long) and its refusal of ':', tab and newline in names, as the adapter reports
    them: a BookkeepingError naming the field."""
    for element, (value, limit) in fields.items():
        if len(value) > limit:
            raise BookkeepingError(
                f"QuickBooks refused to {what}: String length is either shorter or longer than supported by "
                f"specification. Min:0 Max:{limit} supported. Supplied length:{len(value)} (code 2050, "
                f"element {element})"
            )
        if element in _NAME_FIELDS and any(c in value for c in ":\t\n\r"):
            raise BookkeepingError(f"QuickBooks refused to {what}: {element} cannot contain ':', tab or newline")


def _refuse_amounts_qbo_cannot_hold(spec: TxnSpec) -> None:
    """The emulator's (QBO's) answer to an amount past the maximum: 2010 naming the property."""
    # QBO computes an invoice's and a purchase's TotalAmt from their lines; a payment's is sent.
    if isinstance(spec, PaymentSpec):
        amounts = {"TotalAmt": spec.amount}
    elif isinstance(spec, RefundSpec):
        amounts = {"Line.Amount": spec.amount}
    elif isinstance(spec, DepositSpec):  # negative lines too: a fee past the maximum is refused alike
        amounts = {"Line.Amount": max((abs(line.amount) for line in spec.lines), default=ZERO)}
    else:
        amounts = {"Line.Amount": max((line.amount for line in spec.lines), default=ZERO)}
    for element, amount in amounts.items():
        if amount > QBO_FIELD_LIMITS.max_amount:
            raise BookkeepingError(
                f"QuickBooks refused to write the {_entity_of(spec.kind)}: Property {element} has an invalid "
                f"value: '{amount}' (code 2010, element {element})"
            )


class FakeQuickBooksCompanies(AccountingSystems):
    """One fake company per tenant, made on first use. With `company_per_branch`, one per connection instead:
    each (tenant, branch) its own company (SPEC §10: a branch may connect a company of its own), the branch
    taken from the connection handed in, else from `branch_id`. Without it (the default) every branch of a
    tenant shares the tenant's one company, as a test that does not care about branches expects."""

    field_limits = QBO_FIELD_LIMITS

    def __init__(self, *, company_per_branch: bool = False) -> None:
        self._companies: dict[tuple[str, str], FakeQuickBooks] = {}
        self._per_branch = company_per_branch
        self._lock = threading.Lock()

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> FakeQuickBooks:
        return self.company(tenant_id, connection.branch_id if connection is not None else branch_id)

    def company(self, tenant_id: str, branch_id: str = "") -> FakeQuickBooks:
        """The company of the tenant's connection `branch_id` (the tenant's only one without
        `company_per_branch`), made on first use: what a test seeds before syncing to it."""
        key = (tenant_id, branch_id if self._per_branch else "")
        with self._lock:
            if key not in self._companies:
                realm = str(9130000000000000 + len(self._companies) + 1)
                self._companies[key] = FakeQuickBooks(realm_id=realm)
            return self._companies[key]
