"""The accounting shapes qbsync writes (SPEC.md section 5), as the core decides them.

These are what the core asks the accounting system to hold; the QuickBooks adapter maps them to QBO
entities (Customer, Payment, Purchase, Invoice) and the tenant's account settings.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from core.domain import InvoiceLine, Job, PaymentMethod
from core.money import ZERO, money_sum


class TxnKind(enum.Enum):
    """QuickBooks transaction kinds qbsync writes. EXPENSE and CHECK are both QBO Purchases."""

    PAYMENT = "Payment"
    EXPENSE = "Expense"
    CHECK = "Check"
    INVOICE = "Invoice"
    DEPOSIT = "Deposit"  # a payout: payments out of Undeposited Funds into the bank (SPEC §9)


@dataclass(frozen=True)
class Tracking:
    """The class and location (QBO Department) a transaction carries (SPEC §10), by QuickBooks Id ("" for
    none). `class_per_line`: the company tracks classes per line (ClassTrackingPerTxnLine), so the class goes
    on each line rather than on the transaction. QuickBooks' Payment holds neither: payments carry none."""

    class_id: str = ""
    department_id: str = ""
    class_per_line: bool = False

    @property
    def is_set(self) -> bool:
        return bool(self.class_id or self.department_id)


NO_TRACKING = Tracking()


@dataclass(frozen=True)
class NumberedInvoice:
    """An invoice QuickBooks holds under a DocNumber (`AccountingSystem.invoices_numbered`): its Id and its
    private note, where qbsync's marker says whether it is ours."""

    id: str
    private_note: str


@dataclass(frozen=True)
class QuickBooksRef:
    """A record in the accounting system: its kind, Id and the SyncToken an update must quote."""

    kind: TxnKind
    id: str
    sync_token: str = "0"
    # The record's TotalAmt as QuickBooks holds it after a write (None where not known, as in a query's
    # answer): what the core compares with the total it sent (SPEC §8, INVOICE_TOTAL_MISMATCH).
    total: Decimal | None = None


class ChangedEntity(enum.Enum):
    """The QuickBooks entities a Change Data Capture read covers (`AccountingSystem.changed_since`): those
    qbsync writes. A refund's expense or check is a Purchase either way."""

    PAYMENT = "Payment"
    PURCHASE = "Purchase"
    INVOICE = "Invoice"
    DEPOSIT = "Deposit"
    CUSTOMER = "Customer"

    @classmethod
    def of(cls, kind: TxnKind | None) -> ChangedEntity:
        """The entity a record of `kind` is in QuickBooks (None: a customer)."""
        if kind is None:
            return cls.CUSTOMER
        return cls.PURCHASE if kind in (TxnKind.EXPENSE, TxnKind.CHECK) else cls(kind.value)


class RecordStatus(enum.Enum):
    """How a changed record stands in QuickBooks now. QuickBooks keeps a voided Payment or Invoice (amounts at
    zero); a deleted one, and the losing customer of a merge, are answered as deleted."""

    LIVE = "live"
    DELETED = "deleted"
    VOIDED = "voided"


@dataclass(frozen=True)
class ChangedRecord:
    """One record QuickBooks reports changed (its Change Data Capture): as it stands after its latest change.
    `total` and `customer_id` are what QuickBooks holds now (None / "" for a deleted record, whose fields
    QuickBooks no longer gives, and `total` None for a customer); `last_updated` is its
    MetaData.LastUpdatedTime, in UTC."""

    entity: ChangedEntity
    id: str
    sync_token: str
    status: RecordStatus
    last_updated: datetime
    total: Decimal | None = None
    customer_id: str = ""


@dataclass(frozen=True)
class QuickBooksAmounts:
    """What QuickBooks' books hold for one of qbsync's records now (`AccountingSystem.read_amounts`), for the
    reconciliation of SPEC §11: `total` its TotalAmt (zero once voided); `open` an invoice's Balance or a
    payment's UnappliedAmt (zero for the others); `linked` the sum of a payment's lines (what it applies to
    invoices and links of refund expenses); `linked_ids` the Ids its lines link (a deposit's: the payments it
    takes out of Undeposited Funds); `voided` whether QuickBooks holds it voided."""

    total: Decimal
    open: Decimal = ZERO
    linked: Decimal = ZERO
    linked_ids: frozenset[str] = frozenset()
    voided: bool = False
    customer_id: str = ""


@dataclass(frozen=True)
class AccountingCustomer:
    id: str
    display_name: str
    email: str
    active: bool = True


@dataclass(frozen=True)
class NewCustomer:
    display_name: str
    given_name: str
    family_name: str
    company_name: str
    email: str
    phone: str
    note: str


@dataclass(frozen=True)
class LinkLine:
    """A payment line: part of the payment linked to a refund expense/check or applied to an invoice."""

    txn_kind: TxnKind
    txn_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentSpec:
    customer_id: str
    amount: Decimal
    txn_date: date
    method: PaymentMethod
    reference: str
    lines: tuple[LinkLine, ...]
    private_note: str
    marker: str

    @property
    def kind(self) -> TxnKind:
        return TxnKind.PAYMENT

    @property
    def linked_total(self) -> Decimal:
        return money_sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class RefundSpec:
    """A refund: an expense (or check) paid to the customer, its one line on Accounts Receivable."""

    customer_id: str
    amount: Decimal
    txn_date: date
    refund_kind: TxnKind
    memo: str
    private_note: str
    marker: str
    tracking: Tracking = NO_TRACKING  # DepartmentRef on the purchase, ClassRef on its line (it has no other)

    @property
    def kind(self) -> TxnKind:
        return self.refund_kind


@dataclass(frozen=True)
class DiscountSpec:
    """The invoice's one discount line (QuickBooks allows one per transaction): every CRM discount's
    amount together, as an amount-based DiscountLineDetail, so QuickBooks recomputes nothing."""

    amount: Decimal
    description: str
    apply_tax_after_discount: bool  # QBO's ApplyTaxAfterDiscount: the discount comes off before tax

    @staticmethod
    def of(job: Job) -> DiscountSpec | None:
        """The job's discounts as QuickBooks' one discount line: their amounts together, each named with its
        percent where it has one. Validation has made sure they agree on before or after tax."""
        if not job.discounts:
            return None
        lines_total = job.lines_total
        names = [
            " ".join(filter(None, [d.description, f"({d.percent}%)" if d.percent is not None else ""]))
            for d in job.discounts
        ]
        return DiscountSpec(
            amount=money_sum(d.amount_off(lines_total) for d in job.discounts),
            description="; ".join(n for n in names if n) or "Discount",
            apply_tax_after_discount=not job.discounts[0].after_tax,
        )


@dataclass(frozen=True)
class InvoiceSpec:
    """An invoice: its sales lines (each TAX or NON), then the discount, the tip and surcharge lines on
    their items, and the CRM's tax total as TxnTaxDetail.TotalTax (SPEC §8). An empty `doc_number` sends no
    DocNumber: QuickBooks numbers the invoice (InvoiceNumbering.QUICKBOOKS, SPEC §10)."""

    customer_id: str
    doc_number: str
    txn_date: date
    lines: tuple[InvoiceLine, ...]
    private_note: str
    marker: str
    tax: Decimal = ZERO
    tax_rate_name: str = ""
    discount: DiscountSpec | None = None
    tip: Decimal = ZERO
    surcharge: Decimal = ZERO
    memo: str = ""  # the customer-visible CustomerMemo: the job number when QuickBooks numbers the invoice
    tracking: Tracking = NO_TRACKING  # DepartmentRef; ClassRef on the invoice, or on every line when per line

    @property
    def kind(self) -> TxnKind:
        return TxnKind.INVOICE

    @property
    def lines_total(self) -> Decimal:
        return money_sum(line.amount for line in self.lines)

    @property
    def total(self) -> Decimal:
        """The TotalAmt QuickBooks must arrive at: lines − discount + tax + tip + surcharge."""
        discount = self.discount.amount if self.discount is not None else ZERO
        return self.lines_total - discount + self.tax + self.tip + self.surcharge

    @property
    def taxable(self) -> bool:
        """Whether QuickBooks is told about tax at all: a taxable line, or tax charged."""
        return self.tax != 0 or any(line.taxable for line in self.lines)


class DepositLineKind(enum.Enum):
    """What a line of a bank deposit is (SPEC §9); each kind but PAYMENT books to the account its setting
    names: FEE processing_fee_account, REFUND refund_bank_account (where the refund's expense was paid from,
    so that the refund counts once), CHARGEBACK chargeback_account, ADJUSTMENT adjustment_account."""

    PAYMENT = "PAYMENT"  # a synced payment, linked out of Undeposited Funds
    FEE = "FEE"
    REFUND = "REFUND"
    CHARGEBACK = "CHARGEBACK"
    ADJUSTMENT = "ADJUSTMENT"


@dataclass(frozen=True)
class DepositLine:
    """One line of a deposit. `amount` is signed: positive for a payment, negative for what the processor
    kept back (fees, refunds, chargebacks); an adjustment either way. `txn_id` is the linked Payment's
    QuickBooks Id (PAYMENT lines only)."""

    kind: DepositLineKind
    amount: Decimal
    txn_id: str = ""
    memo: str = ""


@dataclass(frozen=True)
class DepositSpec:
    """A payout as one QBO Deposit into the payout bank account (setting payout_bank_account): its
    TotalAmt is what reached the bank, the sum of its lines."""

    txn_date: date
    lines: tuple[DepositLine, ...]
    private_note: str
    marker: str
    customer_id: str = ""  # a deposit names no customer; kept so every spec answers the writer alike
    tracking: Tracking = NO_TRACKING  # DepartmentRef on the deposit, ClassRef on its account lines

    @property
    def kind(self) -> TxnKind:
        return TxnKind.DEPOSIT

    @property
    def total(self) -> Decimal:
        return money_sum(line.amount for line in self.lines)


TxnSpec = PaymentSpec | RefundSpec | InvoiceSpec | DepositSpec


@dataclass(frozen=True)
class BatchWrite:
    """One write of a batch (`AccountingSystem.write_many`): a create of `spec` when `ref` is None, else the
    update of `ref` to `spec`, idempotent per `request_id` as the single write with that id is."""

    spec: TxnSpec
    request_id: str
    ref: QuickBooksRef | None = None


@dataclass(frozen=True)
class CustomerLookup:
    """One customer look-up of a batch (`AccountingSystem.find_customers_many`), as `find_customers` takes it."""

    display_name: str
    email: str


def spec_fingerprint(spec: object) -> str:
    """A stable digest of what would be written: equal digests mean there is nothing to update."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()


def request_id_for(*parts: object) -> str:
    """QBO's requestid: at most 50 characters, the same for every retry of one logical write."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:40]
