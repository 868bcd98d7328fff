"""One emulated QBO company (a realm): its records and the business rules QBO enforces on them.

Everything here is plain data under one re-entrant lock per realm, so the HTTP layer can run requests on many
threads. Derived figures (Invoice.Balance, Payment.UnappliedAmt, Customer.Balance, Invoice.LinkedTxn) are
recomputed from the transactions whenever a record is rendered, so they can never drift from them.

Rules worth knowing (each one a QBO behaviour a sync client must cope with):
- DisplayName is unique across Customer, Vendor and Employee, inactive ones included, compared ignoring case
  (case-insensitivity is a *guess*: the strict choice, so a client that normalises passes either way).
- Updates need the current SyncToken (5010 otherwise); ``"sparse": true`` merges, anything else replaces.
- Payment lines link exactly one Invoice, Expense or Check each; a payment cannot apply more than its total
  nor more than a linked transaction's open amount.
- Deleting or voiding an invoice or purchase unlinks the payment lines that pointed at it (the payments keep
  their money as unapplied credit) — what QBO's UI does after its "this transaction is linked" warning.
- Moving records to another customer (*guess*, the strict reading; no Intuit page says either way): a
  payment's lines may only link its own customer's invoices and expenses, so its CustomerRef can change
  only together with lines that fit the new customer (or none); an invoice's CustomerRef or a purchase's
  EntityRef cannot change while a payment links it (6000). A write naming an inactive customer is refused
  (2500, "made inactive"); QBO cannot delete a customer, only make it inactive. So a client moves a
  payment with its links to a new customer in three writes: payment on the new customer linking nothing,
  then the invoices and expenses, then the payment's lines again.
- With a closing date set ("Close the books"), creating, updating, deleting or voiding a Payment, Purchase,
  Deposit or Invoice whose TxnDate — the one sent or the one it had — is on or before it is Fault 6210. Only API writes
  are refused: the admin API's "bookkeeper" writes pass (in QBO's UI the closing date is a warning, or a
  password, a person can get past). Payments re-written because a transaction they link was deleted or
  voided are not checked.
- Invoices follow the company's sales tax mode (``sales_tax.py``): lines marked TAX/NON, one discount line
  (amount or percent of the sales lines' subtotal, on an existing account), ``ApplyTaxAfterDiscount``, and
  ``TxnTaxDetail`` (automated sales tax computes its own tax unless TotalTax is sent). TotalAmt = sales lines −
  discount + tax; Balance = TotalAmt − what payments apply.
- Deposits (bank deposits, SPEC §9) move payments out of Undeposited Funds into a bank account
  (``DepositToAccountRef``: a Bank or Other Current Asset account, not Undeposited Funds itself — *guess*, the
  strict choice). A line either links one Payment (``LinkedTxn [{TxnId, TxnType: "Payment", TxnLineId: "0"}]``;
  TxnLineId is required for a Deposit, Intuit's LinkedTxn reference) or books to an account
  (``DetailType: "DepositLineDetail"``, ``DepositLineDetail.AccountRef``; negative for fees, refunds and
  chargebacks the processor kept). TotalAmt is QBO's, the sum of the lines; a negative total is refused
  (*guess*: QBO's UI will not save a negative deposit). A linked payment must exist and not be voided (2500
  otherwise, *guess* at the code), be deposited to Undeposited Funds, be linked for its whole TotalAmt
  (*guess*: QBO's deposit screen takes a payment whole), and be in one deposit only: a second deposit
  linking it is Fault 6000 (*guess* at the code; Intuit: "a payment can be in one deposit only"). Deleting a
  deposit, or updating it without a payment, releases that payment. While a payment is in a deposit it cannot
  be deleted or voided, and its TotalAmt and DepositToAccountRef cannot change (6000, *guess*: QBO's UI
  warns and edits the deposit; the API has no such dialogue, and the strict answer keeps the deposit's total
  true). The ledger: the deposit account's balance rises by TotalAmt, Undeposited Funds falls by the linked
  payments, and an asset account a line books to falls by that line (``Account.CurrentBalance`` of Bank and
  Other Current Asset accounts, and the admin state's ``balances.accounts``). A line booked to Accounts
  Receivable needs no customer here (*verify*: QBO requires a customer on an A/R line of a journal entry, and
  may on a deposit line too — DepositLineDetail.Entity).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from . import errors, sales_tax
from .errors import QboFault
from .query import parse_query, run_query
from .shapes import JsonDict, money, now, qbo_time, to_decimal

NAME_ENTITIES = ("Customer", "Vendor", "Employee")
TXN_ENTITIES = ("Payment", "Invoice", "Purchase", "Deposit")
LIST_ENTITIES = ("Account", "Item", "PaymentMethod")
# Classes and locations (QBO's Department): what a transaction or a line is tracked by (SPEC §10).
TRACKING_ENTITIES = ("Class", "Department")
# Sales tax lists: read-only through the API (QBO creates them through its TaxService), made by the admin API.
TAX_ENTITIES = ("TaxCode", "TaxRate")
CDC_PAGE = 1000  # QBO's most objects per entity in one CDC answer
ENTITIES = (*NAME_ENTITIES, *TXN_ENTITIES, *LIST_ENTITIES, *TAX_ENTITIES, *TRACKING_ENTITIES, "CompanyInfo")

# Customers, vendors and employees share QBO's "names" Id sequence (a 6240 Detail "Id=58" may be a vendor);
# transactions share another. Separate sequences make an Id used with the wrong entity fail loudly.
_SEQUENCE = {
    **dict.fromkeys(NAME_ENTITIES, "names"),
    **dict.fromkeys(TXN_ENTITIES, "txns"),
    "Account": "Account",
    "Item": "Item",
    "PaymentMethod": "PaymentMethod",
    "TaxCode": "TaxCode",
    "TaxRate": "TaxRate",
    "Class": "Class",
    "Department": "Department",
}

# Fields QBO computes; whatever a client sends for them is ignored (python-quickbooks sends them all back).
_READ_ONLY = {"Id", "SyncToken", "MetaData", "domain", "sparse", "status", "time"}
_DERIVED = {
    "Customer": {"Balance", "BalanceWithJobs", "FullyQualifiedName", "Level"},
    "Vendor": {"Balance"},
    "Employee": set(),
    "Invoice": {"TotalAmt", "Balance", "HomeBalance", "HomeTotalAmt", "LinkedTxn"},
    "Payment": {"UnappliedAmt"},
    "Purchase": {"TotalAmt"},
    "Deposit": {"TotalAmt", "HomeTotalAmt"},
    "Account": {"CurrentBalance", "CurrentBalanceWithSubAccounts", "Classification", "FullyQualifiedName"},
    "Item": {"FullyQualifiedName"},
    "PaymentMethod": set(),
    "TaxCode": set(),
    "TaxRate": set(),
    "Class": {"FullyQualifiedName"},
    "Department": {"FullyQualifiedName"},
}

ACCOUNT_CLASSIFICATION = {
    "Bank": "Asset",
    "Other Current Asset": "Asset",
    "Fixed Asset": "Asset",
    "Other Asset": "Asset",
    "Accounts Receivable": "Asset",
    "Equity": "Equity",
    "Expense": "Expense",
    "Other Expense": "Expense",
    "Cost of Goods Sold": "Expense",
    "Accounts Payable": "Liability",
    "Credit Card": "Liability",
    "Long Term Liability": "Liability",
    "Other Current Liability": "Liability",
    "Income": "Revenue",
    "Other Income": "Revenue",
}

DOC_NUMBER_MAX = 21  # QBO's limit on DocNumber length

# What QBO says about text and amounts. Deliberately the emulator's own copy, not imported from the adapter's
# table (adapters/quickbooks/qbo/limits.py): the emulator stands for QuickBooks, so a mistake in qbsync's table
# shows up as a Fault here (tests/integration/quickbooks/test_field_limits.py also compares the two).
# Lengths are Intuit's API reference ("max N chars"); a longer value is Fault 2050, as QBO answers it.
_NAME_LIMITS = {
    "DisplayName": 500,
    "Title": 16,
    "GivenName": 100,
    "MiddleName": 100,
    "FamilyName": 100,
    "Suffix": 16,
    "CompanyName": 100,
    "PrintOnCheckName": 110,
    "Notes": 2000,
    "PrimaryEmailAddr.Address": 100,
    "PrimaryPhone.FreeFormNumber": 30,
}
MAX_LENGTH: dict[str, dict[str, int]] = {
    **dict.fromkeys(NAME_ENTITIES, _NAME_LIMITS),
    "Payment": {"PaymentRefNum": 21, "PrivateNote": 4000},
    "Purchase": {"DocNumber": DOC_NUMBER_MAX, "PrivateNote": 4000, "Line.Description": 4000},
    "Invoice": {"DocNumber": DOC_NUMBER_MAX, "PrivateNote": 4000, "Line.Description": 4000, "CustomerMemo.value": 1000},
    "Deposit": {"DocNumber": DOC_NUMBER_MAX, "PrivateNote": 4000, "Line.Description": 4000},
}
# The account types a deposit may go into (Intuit: "the asset account"; a bank deposit screen lists these).
_DEPOSIT_TO_TYPES = ("Bank", "Other Current Asset")
# Accounts whose CurrentBalance the emulator keeps (where money sits: what payments and deposits move).
_BALANCED_TYPES = ("Bank", "Other Current Asset")
# Name fields QBO refuses ':' (its sub-customer separator), tab and newline in (Intuit's business rules).
_PLAIN_NAME_FIELDS = ("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix", "PrintOnCheckName")
# *guess*: Intuit documents no maximum amount; 15 significant digits is what a double holds to the cent.
MAX_AMOUNT = Decimal("9999999999999.99")
_LINKABLE = {"Invoice": "Invoice", "Expense": "Purchase", "Check": "Purchase"}


def _clean(value: Any) -> Any:
    """Drop the empty strings and empty lists python-quickbooks sends for every unset attribute: QBO treats
    them as absent and leaves them out of its answers."""
    if isinstance(value, dict):
        cleaned = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v != "" and v != [] and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _has_id(body: JsonDict) -> bool:
    return body.get("Id") not in (None, "", 0, "0")


def _money_field(record: JsonDict, key: str, element: str, *, required: bool = False) -> Decimal | None:
    try:
        exact = to_decimal(record.get(key))
        if exact is not None and abs(exact) > MAX_AMOUNT:
            raise ValueError("too large")
        amount = money(exact)
    except ValueError as exc:
        raise errors.invalid_property(f"Property {element} has an invalid value: {record.get(key)!r}", element) from exc
    if amount is None and required:
        raise errors.required_missing(element)
    if amount is not None:
        record[key] = amount
    return amount


def _txn_date(record: JsonDict) -> None:
    value = record.get("TxnDate")
    if value is None:
        record["TxnDate"] = now().date().isoformat()
        return
    try:
        date.fromisoformat(str(value))
    except ValueError as exc:
        raise errors.invalid_property(f"TxnDate {value!r} is not a date (yyyy-MM-dd)", "TxnDate") from exc


def _check_length(element: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise QboFault(
            "2050",
            "String length is either shorter or longer than supported by specification",
            f"String length specified does not match the supported length. Min:0 Max:{limit} supported. "
            f"Supplied length:{len(value)}",
            element,
        )


def _values_at(record: JsonDict, path: str) -> Iterable[Any]:
    """The values at a dotted path ("PrimaryPhone.FreeFormNumber"; "Line.Description" reads every line)."""
    head, _, rest = path.partition(".")
    value = record.get(head)
    for item in value if isinstance(value, list) else [value]:
        if not rest:
            yield item
        elif isinstance(item, dict):
            yield from _values_at(item, rest)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _xml_illegal(char: str) -> bool:
    code = ord(char)
    return (code < 0x20 and char not in "\t\n\r") or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF)


def _check_text(entity: str, record: JsonDict) -> None:
    """Fault 2050 for a value longer than QBO holds; 2040 for a character QBO cannot store anywhere (*guess*:
    QBO keeps its data as XML 1.0, which has no NUL or other C0 control but tab and line breaks)."""
    for text in _strings(record):
        if any(_xml_illegal(char) for char in text):
            raise QboFault(
                "2040",
                "Invalid String",
                "The String may contain unsupported or illegal chars: Element contains invalid characters",
            )
    for path, limit in MAX_LENGTH.get(entity, {}).items():
        for value in _values_at(record, path):
            if isinstance(value, str):
                _check_length(path, value, limit)


@dataclass
class Ledger:
    """Figures derived from all transactions of a realm, computed once per render pass."""

    applied: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (entity, id) → sum of payment lines
    linked_payments: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    customer_balance: dict[str, Decimal] = field(default_factory=dict)
    deposited_in: dict[str, str] = field(default_factory=dict)  # payment id → the Deposit linking it
    account_balance: dict[str, Decimal] = field(default_factory=dict)  # Bank and Other Current Asset accounts


class Realm:
    """One QBO company. All public methods take the lock; they raise ``QboFault`` on a rule violation."""

    def __init__(self, realm_id: str, company_name: str | None = None) -> None:
        self.realm_id = realm_id
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, JsonDict]] = {name: {} for name in ENTITIES}
        self.deleted: dict[str, dict[str, JsonDict]] = {name: {} for name in ENTITIES}
        self.voided: set[tuple[str, str]] = set()
        self.sequences: dict[str, int] = {}
        self.notes: list[str] = []  # observations a tester may want (duplicate DocNumbers)
        self.closing_date: date | None = None  # QBO's "Close the books" date; None when the books are open
        # CurrencyPrefs: a new US company is in USD with multicurrency off (see set_currency for the rules).
        self.home_currency = "USD"
        self.multicurrency = False
        # AccountingInfoPrefs and SalesFormsPrefs (SPEC §10), as a new QBO company has them: no class or location
        # tracking, and QuickBooks numbering invoices itself (custom transaction numbers off).
        self.class_tracking_per_txn = False
        self.class_tracking_per_txn_line = False
        self.track_departments = False
        self.custom_txn_numbers = False
        # QBO's "warn if duplicate" setting (off in a new company): on, a second invoice with the DocNumber of
        # another is Fault 6140 rather than accepted.
        self.refuse_duplicate_doc_numbers = False
        self.preferences_stamp = qbo_time()
        # How the company treats sales tax (see sales_tax.py), and the testers' controls to make it disagree.
        self.tax = sales_tax.TaxKnobs()
        # requestid → (HTTP status, body): a repeated requestid replays the first answer.
        self.replay: dict[str, tuple[int, bytes]] = {}
        # (requestid, bId) → a batch item's answer: a batch is replayed per item (see batch.py).
        self.batch_replay: dict[tuple[str, str], JsonDict] = {}
        stamp = qbo_time()
        self.records["CompanyInfo"]["1"] = {
            "CompanyName": company_name or f"Emulated Company {realm_id}",
            "LegalName": company_name or f"Emulated Company {realm_id}",
            "Country": "US",
            "FiscalYearStartMonth": "January",
            "SupportedLanguages": "en",
            "Id": "1",
            "SyncToken": "0",
            "domain": "QBO",
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
        }
        self._seed()

    # ----------------------------------------------------------------- seeding
    def _seed(self) -> None:
        """The chart of accounts and lists a new QBO company starts with (the part qbsync looks up)."""
        accounts = [
            ("Checking", "Bank", "Checking"),
            ("Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
            ("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
            ("Services", "Income", "ServiceFeeIncome"),
            ("Credit Card", "Credit Card", "CreditCard"),
            # In a new QBO company's chart of accounts; the default account of a discount line.
            ("Discounts given", "Income", "DiscountsRefundsGiven"),
        ]
        # Deliberately no "Tips" or surcharge item: a new company has none (tests create them as a bookkeeper).
        for name, account_type, sub_type in accounts:
            self._insert("Account", {"Name": name, "AccountType": account_type, "AccountSubType": sub_type})
        income = self.find_by_name("Account", "Services")
        assert income is not None
        self._insert("Item", {"Name": "Services", "Type": "Service", "IncomeAccountRef": {"value": income["Id"]}})
        for method, kind in [
            ("Cash", "NON_CREDIT_CARD"),
            ("Check", "NON_CREDIT_CARD"),
            ("Credit Card", "CREDIT_CARD"),
            ("ACH", "NON_CREDIT_CARD"),
            ("Other", "NON_CREDIT_CARD"),
        ]:
            self._insert("PaymentMethod", {"Name": method, "Type": kind})

    def find_by_name(self, entity: str, name: str) -> JsonDict | None:
        """A record of a list entity by Name (or DisplayName), ignoring case."""
        key = "DisplayName" if entity in NAME_ENTITIES else "Name"
        for record in self.records[entity].values():
            if str(record.get(key, "")).casefold() == name.casefold():
                return record
        return None

    @property
    def sales_tax(self) -> str:
        """ "AUTOMATED", "MANUAL" or "NONE" (Preferences.TaxPrefs is read from this)."""
        return self.tax.sales_tax

    def set_sales_tax(self, changes: JsonDict) -> JsonDict:
        """Change how the company treats sales tax (the admin API's ``sales_tax`` route): ``sales_tax`` (the
        mode), ``ast_rate`` (percent), and the testers' ``invoice_total_drift`` and ``ignore_total_tax``.
        Switching to MANUAL gives a company without tax codes one, "Sales tax" at the AST rate, as setting up
        sales tax by hand would. Existing invoices keep their figures (QBO does not recompute them)."""
        with self.lock:
            knobs = self.tax
            mode = changes.get("sales_tax", knobs.sales_tax)
            if mode not in sales_tax.MODES:
                raise errors.invalid_property(f"sales_tax must be one of {list(sales_tax.MODES)}", "sales_tax")
            try:
                rate = to_decimal(changes.get("ast_rate", knobs.ast_rate))
                drift = money(changes.get("invoice_total_drift", knobs.invoice_total_drift))
            except ValueError as exc:
                raise errors.invalid_property(str(exc)) from exc
            if rate is None or not 0 <= rate <= 100:
                raise errors.invalid_property("ast_rate must be a percent between 0 and 100", "ast_rate")
            ignore = changes.get("ignore_total_tax", knobs.ignore_total_tax)
            if not isinstance(ignore, bool):
                raise errors.invalid_property("ignore_total_tax must be true or false", "ignore_total_tax")
            knobs.sales_tax, knobs.ast_rate, knobs.ignore_total_tax = mode, rate, ignore
            knobs.invoice_total_drift = drift if drift is not None else Decimal("0.00")
            if mode == sales_tax.MANUAL and not self.records["TaxCode"]:
                self.add_tax_code("Sales tax", rate)
            self.preferences_stamp = qbo_time()
            return knobs.describe()

    def add_tax_code(self, name: str, rate: Decimal) -> JsonDict:
        """A TaxRate and a TaxCode charging it, as QBO's TaxService makes them. Returns the TaxCode."""
        with self.lock:
            tax_rate = self._insert("TaxRate", {"Name": name, "RateValue": rate})
            return self._insert(
                "TaxCode",
                {
                    "Name": name,
                    "Taxable": True,
                    "TaxGroup": True,
                    "SalesTaxRateList": {
                        "TaxRateDetail": [
                            {
                                "TaxRateRef": {"value": tax_rate["Id"], "name": name},
                                "TaxTypeApplicable": "TaxOnAmount",
                                "TaxOrder": 0,
                            },
                        ]
                    },
                    "PurchaseTaxRateList": {"TaxRateDetail": []},
                },
            )

    # ----------------------------------------------------------------- public operations
    def create(self, entity: str, body: JsonDict, *, enforce_closing: bool = True) -> JsonDict:
        """POST /{entity} without an Id. Returns the rendered record."""
        with self.lock:
            self._writable(entity)
            record = self._strip(entity, body)
            self._normalize(entity, record, None)
            if enforce_closing:
                self._check_open(entity, record)
            return self.render(entity, self._insert(entity, record, normalized=True))

    def update(
        self, entity: str, body: JsonDict, *, check_token: bool = True, enforce_closing: bool = True
    ) -> JsonDict:
        """POST /{entity} with Id + SyncToken: sparse (merge) when ``"sparse": true``, else full replacement."""
        with self.lock:
            self._writable(entity)
            entity_id = str(body.get("Id"))
            current = self._current(entity, entity_id, body, check_token)
            if enforce_closing:
                self._check_open(entity, current)
            if (entity, entity_id) in self.voided:
                raise errors.business_rule(f"{entity} {entity_id} is voided and cannot be modified")
            changes = self._strip(entity, body)
            if _is_true(body.get("sparse")):
                record = {k: v for k, v in copy.deepcopy(current).items() if k not in _READ_ONLY}
                record.update(changes)
            else:
                record = changes
            self._normalize(entity, record, entity_id)
            if enforce_closing:
                self._check_open(entity, record)
            return self.render(entity, self._replace(entity, current, record))

    def save(self, entity: str, body: JsonDict) -> JsonDict:
        """Create or update, as QBO decides from the presence of an Id."""
        return self.update(entity, body) if _has_id(body) else self.create(entity, body)

    def read(self, entity: str, entity_id: str) -> JsonDict:
        """GET /{entity}/{id}."""
        with self.lock:
            record = self.records.get(entity, {}).get(str(entity_id))
            if record is None:
                raise errors.object_not_found(entity, str(entity_id))
            return self.render(entity, record)

    def delete(
        self, entity: str, body: JsonDict, *, check_token: bool = True, enforce_closing: bool = True
    ) -> JsonDict:
        """POST /{entity}?operation=delete: transactions only; names are made inactive instead."""
        with self.lock:
            if entity not in TXN_ENTITIES:
                raise errors.unsupported(f"Operation Delete is not supported for {entity}; make it inactive.")
            entity_id = str(body.get("Id"))
            current = self._current(entity, entity_id, body, check_token)
            if enforce_closing:
                self._check_open(entity, current)
            self._not_deposited(entity, entity_id, "deleted")
            self._unlink_payments(entity, entity_id)
            del self.records[entity][entity_id]
            # The moment of the delete, which Change Data Capture reports it at.
            self.deleted[entity][entity_id] = {
                **current,
                "MetaData": {**current["MetaData"], "LastUpdatedTime": qbo_time()},
            }
            self.voided.discard((entity, entity_id))
            return {"Id": entity_id, "status": "Deleted", "domain": "QBO"}

    def void(self, entity: str, body: JsonDict, *, check_token: bool = True, enforce_closing: bool = True) -> JsonDict:
        """Void a Payment or Invoice: amounts become zero, PrivateNote is prefixed "Voided", the record stays."""
        with self.lock:
            if entity not in ("Payment", "Invoice"):
                raise errors.unsupported(f"Operation Void is not supported for {entity}.")
            entity_id = str(body.get("Id"))
            current = self._current(entity, entity_id, body, check_token)
            if enforce_closing:
                self._check_open(entity, current)
            self._not_deposited(entity, entity_id, "voided")
            record = {k: v for k, v in copy.deepcopy(current).items() if k not in _READ_ONLY}
            for line in record.get("Line", []):
                if "Amount" in line:
                    line["Amount"] = Decimal("0.00")
            record["TotalAmt"] = Decimal("0.00")
            if "TxnTaxDetail" in record:
                record["TxnTaxDetail"] = {"TotalTax": Decimal("0.00")}
            if entity == "Payment":
                record["UnappliedAmt"] = Decimal("0.00")
            note = record.get("PrivateNote")
            if (entity, entity_id) not in self.voided:
                record["PrivateNote"] = f"Voided - {note}" if note else "Voided"
            if entity == "Invoice":
                self._unlink_payments(entity, entity_id)
            self.voided.add((entity, entity_id))
            return self.render(entity, self._replace(entity, current, record))

    def changed_since(self, entities: list[str], since: str) -> list[JsonDict]:
        """GET /cdc: per entity asked for, the records changed at or after ``since`` (at most 30 days back),
        oldest change first, at most 1,000 (``CDC_PAGE``) of each; a deleted one as QBO answers it (Id,
        ``status: "Deleted"``, MetaData), a voided one as it stands (amounts zero, "Voided" note)."""
        with self.lock:
            try:
                moment = datetime.fromisoformat(since.replace(" ", "+"))
            except ValueError as exc:
                raise errors.invalid_property(f"changedSince is not a date-time: {since!r}") from exc
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            moment = max(moment, now() - timedelta(days=30))
            answer: list[JsonDict] = []
            for entity in entities:
                if entity not in ENTITIES:
                    raise errors.invalid_property(f"CDC does not support the entity {entity!r}")
                rows: list[tuple[datetime, int, JsonDict]] = []
                for record in self.records[entity].values():
                    stamp = datetime.fromisoformat(record["MetaData"]["LastUpdatedTime"])
                    if stamp >= moment:
                        rows.append((stamp, int(record["Id"]), self.render(entity, record)))
                for entity_id, record in self.deleted[entity].items():
                    stamp = datetime.fromisoformat(record["MetaData"]["LastUpdatedTime"])
                    if stamp >= moment and entity_id not in self.records[entity]:
                        gone = {"Id": entity_id, "status": "Deleted", "domain": "QBO", "MetaData": record["MetaData"]}
                        rows.append((stamp, int(entity_id), gone))
                rows.sort(key=lambda row: (row[0], row[1]))
                page = [row[2] for row in rows[:CDC_PAGE]]
                answer.append({entity: page, "startPosition": 1, "maxResults": len(page)})
            return answer

    def set_closing_date(self, value: str | None) -> date | None:
        """Close the books on ``value`` (yyyy-MM-dd), or open them with None."""
        with self.lock:
            self.closing_date = None if value in (None, "") else date.fromisoformat(str(value))
            return self.closing_date

    def set_currency(self, home_currency: str | None = None, multicurrency: bool | None = None) -> JsonDict:
        """Change CurrencyPrefs as the company's admin would in QBO's settings. QBO's rules: multicurrency
        can never be turned off once on, and the home currency is fixed from then on. Returns the prefs."""
        with self.lock:
            if self.multicurrency and multicurrency is False:
                raise errors.business_rule("Multicurrency cannot be turned off once it is on")
            if self.multicurrency and home_currency not in (None, self.home_currency):
                raise errors.business_rule("The home currency cannot be changed once multicurrency is on")
            if home_currency is not None:
                code = str(home_currency).upper()
                if len(code) != 3 or not code.isalpha():
                    raise errors.invalid_property(f"HomeCurrency {home_currency!r} is not an ISO 4217 code")
                self.home_currency = code
            if multicurrency is not None:
                self.multicurrency = bool(multicurrency)
            self.preferences_stamp = qbo_time()
            return self._currency_prefs()

    def set_tracking_preferences(self, changes: JsonDict) -> JsonDict:
        """Change the class, location and numbering preferences as the company's admin would in QBO's settings
        (the admin API's ``preferences`` route): ``class_tracking_per_txn``, ``class_tracking_per_txn_line``,
        ``track_departments``, ``custom_txn_numbers`` and ``refuse_duplicate_doc_numbers`` (QBO's "warn if
        duplicate"), each true or false. QBO's settings screen offers one class per transaction or one per
        line, never both: turning one on turns the other off. Returns the prefs now in force."""
        with self.lock:
            known = (
                "class_tracking_per_txn",
                "class_tracking_per_txn_line",
                "track_departments",
                "custom_txn_numbers",
                "refuse_duplicate_doc_numbers",
            )
            for name in known:
                if name in changes and not isinstance(changes[name], bool):
                    raise errors.invalid_property(f"{name} must be true or false", name)
            if changes.get("class_tracking_per_txn") is True:
                self.class_tracking_per_txn_line = False
            if changes.get("class_tracking_per_txn_line") is True:
                self.class_tracking_per_txn = False
            for name in known:
                if name in changes:
                    setattr(self, name, changes[name])
            self.preferences_stamp = qbo_time()
            return self.tracking_preferences()

    def tracking_preferences(self) -> JsonDict:
        """The parts of ``Preferences`` set_tracking_preferences changes, as GET /preferences has them, and the
        duplicate switch (which QBO does not expose through the API)."""
        with self.lock:
            prefs = self.preferences()
            return {
                "AccountingInfoPrefs": prefs["AccountingInfoPrefs"],
                "SalesFormsPrefs": prefs["SalesFormsPrefs"],
                "refuse_duplicate_doc_numbers": self.refuse_duplicate_doc_numbers,
            }

    def preferences(self) -> JsonDict:
        """GET /preferences: the ``Preferences`` object (the parts the emulator models). QBO answers the
        whole company's preferences in one object, Id "1"; MultiCurrencyEnabled is sent even when false."""
        with self.lock:
            created = self.records["CompanyInfo"]["1"]["MetaData"]["CreateTime"]
            return {
                "AccountingInfoPrefs": {
                    "BookCloseDate": self.closing_date.isoformat() if self.closing_date else None,
                    "TrackDepartments": self.track_departments,
                    "ClassTrackingPerTxn": self.class_tracking_per_txn,
                    "ClassTrackingPerTxnLine": self.class_tracking_per_txn_line,
                },
                "SalesFormsPrefs": {"CustomTxnNumbers": self.custom_txn_numbers},
                "CurrencyPrefs": self._currency_prefs(),
                "TaxPrefs": self._tax_prefs(),
                "Id": "1",
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "MetaData": {"CreateTime": created, "LastUpdatedTime": self.preferences_stamp},
            }

    def _currency_prefs(self) -> JsonDict:
        return {"HomeCurrency": {"value": self.home_currency}, "MultiCurrencyEnabled": self.multicurrency}

    def _tax_prefs(self) -> JsonDict:
        """TaxPrefs from the company's sales tax mode ("AUTOMATED", "MANUAL" or "NONE"; a new US company has
        automated sales tax). An AST company has sales tax on too, so it sends both flags true; both are
        sent even when false, like MultiCurrencyEnabled (*verify*: QBO may leave a false one out, which
        qbsync reads as false either way)."""
        state = getattr(self, "sales_tax", None) or "AUTOMATED"
        mode = str(getattr(state, "value", state)).upper()  # a string, or an enum holding one
        return {"UsingSalesTax": mode in ("AUTOMATED", "MANUAL"), "PartnerTaxEnabled": mode == "AUTOMATED"}

    def query(self, text: str) -> JsonDict:
        """POST /query: the ``QueryResponse`` object."""
        with self.lock:
            parsed = parse_query(text, ENTITIES)
            ledger = self._ledger()
            rows = [self.render(parsed.entity, record, ledger) for record in self._ordered(parsed.entity)]
            return run_query(parsed, rows)

    def state(self) -> JsonDict:
        """Everything, for the admin API: records, deleted ones, voided ones and balances."""
        with self.lock:
            ledger = self._ledger()
            return {
                "realm_id": self.realm_id,
                "closing_date": self.closing_date.isoformat() if self.closing_date else None,
                "sales_tax": self.tax.describe(),
                "entities": {
                    name: [self.render(name, record, ledger) for record in self._ordered(name)] for name in ENTITIES
                },
                "deleted": {name: sorted(ids, key=int) for name, ids in self.deleted.items() if ids},
                "voided": sorted(f"{entity}/{entity_id}" for entity, entity_id in self.voided),
                "balances": {
                    "invoices": {
                        invoice_id: self.render("Invoice", invoice, ledger)["Balance"]
                        for invoice_id, invoice in self.records["Invoice"].items()
                    },
                    "customers": {
                        customer_id: ledger.customer_balance.get(customer_id, Decimal("0.00"))
                        for customer_id in self.records["Customer"]
                    },
                    "payments_unapplied": {
                        payment_id: payment.get("UnappliedAmt")
                        for payment_id, payment in self.records["Payment"].items()
                    },
                    # Bank and Other Current Asset accounts (Undeposited Funds among them), by Id.
                    "accounts": dict(ledger.account_balance),
                    # payment Id → the Deposit that took it out of Undeposited Funds.
                    "payments_deposited": dict(ledger.deposited_in),
                },
                "notes": list(self.notes),
            }

    # ----------------------------------------------------------------- rendering
    def _ordered(self, entity: str) -> list[JsonDict]:
        return [self.records[entity][key] for key in sorted(self.records[entity], key=int)]

    def _ledger(self) -> Ledger:
        ledger = Ledger()
        for payment_id, payment in self.records["Payment"].items():
            for line in payment.get("Line", []):
                for linked in line.get("LinkedTxn", []):
                    key = (_LINKABLE.get(linked["TxnType"], linked["TxnType"]), linked["TxnId"])
                    ledger.applied[key] = ledger.applied.get(key, Decimal("0.00")) + line["Amount"]
                    ledger.linked_payments.setdefault(key, []).append(payment_id)
        # A/R per customer: invoices owed, less payments received, plus refunds paid out to the customer.
        balance = ledger.customer_balance
        for invoice in self.records["Invoice"].values():
            customer = invoice["CustomerRef"]["value"]
            balance[customer] = balance.get(customer, Decimal("0.00")) + invoice["TotalAmt"]
        for payment in self.records["Payment"].values():
            customer = payment["CustomerRef"]["value"]
            balance[customer] = balance.get(customer, Decimal("0.00")) - payment["TotalAmt"]
        receivable = {k for k, a in self.records["Account"].items() if a.get("AccountType") == "Accounts Receivable"}
        for purchase in self.records["Purchase"].values():
            entity_ref = purchase.get("EntityRef") or {}
            if entity_ref.get("type") != "Customer":
                continue
            for line in purchase.get("Line", []):
                detail = line.get("AccountBasedExpenseLineDetail") or {}
                if (detail.get("AccountRef") or {}).get("value") in receivable:
                    customer = entity_ref["value"]
                    balance[customer] = balance.get(customer, Decimal("0.00")) + line["Amount"]
        self._money_ledger(ledger)
        return ledger

    def _money_ledger(self, ledger: Ledger) -> None:
        """Where the money sits: each Bank and Other Current Asset account's balance, and which deposit holds
        each payment. A payment adds its TotalAmt to its DepositToAccountRef (Undeposited Funds, usually); a
        Cash or Check purchase takes its TotalAmt from its bank account; a deposit adds its TotalAmt to its
        account, takes each linked payment from the account that payment went to, and each line booked to
        one of these accounts from that account (money moved from savings, say)."""
        balances = ledger.account_balance
        for account_id, account in self.records["Account"].items():
            if account.get("AccountType") in _BALANCED_TYPES:
                balances[account_id] = Decimal("0.00")

        def move(account_id: Any, amount: Decimal) -> None:
            if account_id in balances:
                balances[account_id] += amount

        for payment in self.records["Payment"].values():
            move((payment.get("DepositToAccountRef") or {}).get("value"), payment["TotalAmt"])
        for purchase in self.records["Purchase"].values():
            if purchase.get("PaymentType") in ("Cash", "Check"):
                move((purchase.get("AccountRef") or {}).get("value"), -purchase["TotalAmt"])
        for deposit_id, deposit in self.records["Deposit"].items():
            move(deposit["DepositToAccountRef"]["value"], deposit["TotalAmt"])
            for line in deposit.get("Line", []):
                links = line.get("LinkedTxn") or []
                if links:
                    payment_id = links[0]["TxnId"]
                    ledger.deposited_in[payment_id] = deposit_id
                    paid = self.records["Payment"].get(payment_id) or {}
                    move((paid.get("DepositToAccountRef") or {}).get("value"), -line["Amount"])
                else:
                    move((line.get("DepositLineDetail") or {}).get("AccountRef", {}).get("value"), -line["Amount"])

    def render(self, entity: str, record: JsonDict, ledger: Ledger | None = None) -> JsonDict:
        """A deep copy of ``record`` with its derived fields filled in, as QBO would answer it."""
        ledger = ledger or self._ledger()
        out = copy.deepcopy(record)
        if entity == "Invoice":
            key = ("Invoice", record["Id"])
            out["Balance"] = record["TotalAmt"] - ledger.applied.get(key, Decimal("0.00"))
            payments = ledger.linked_payments.get(key, [])
            if payments:
                out["LinkedTxn"] = [{"TxnId": pid, "TxnType": "Payment"} for pid in dict.fromkeys(payments)]
            subtotal = sum(
                (line["Amount"] for line in record.get("Line", []) if line.get("DetailType") == "SalesItemLineDetail"),
                Decimal("0.00"),
            )
            out["Line"] = [
                *out.get("Line", []),
                {
                    "Amount": subtotal,
                    "DetailType": "SubTotalLineDetail",
                    "SubTotalLineDetail": {},
                },
            ]
        elif entity == "Account" and record["Id"] in ledger.account_balance:
            out["CurrentBalance"] = ledger.account_balance[record["Id"]]
        elif entity == "Customer":
            balance = ledger.customer_balance.get(record["Id"], Decimal("0.00"))
            out["Balance"] = balance
            out["BalanceWithJobs"] = balance
        return out

    # ----------------------------------------------------------------- internals
    def _writable(self, entity: str) -> None:
        if entity == "CompanyInfo":
            raise errors.unsupported("The emulator does not update CompanyInfo.")

    def _check_open(self, entity: str, record: JsonDict) -> None:
        """6210 when ``record`` is a transaction dated on or before the closing date."""
        if self.closing_date is None or entity not in TXN_ENTITIES or not record.get("TxnDate"):
            return
        try:
            txn_date = date.fromisoformat(str(record["TxnDate"]))
        except ValueError:
            return  # _txn_date reports a malformed date
        if txn_date <= self.closing_date:
            raise errors.closed_period(self.closing_date.isoformat())

    def _strip(self, entity: str, body: JsonDict) -> JsonDict:
        if not isinstance(body, dict):
            raise errors.invalid_property("Request body must be a JSON object")
        blocked = _READ_ONLY | _DERIVED.get(entity, set())
        return _clean({k: copy.deepcopy(v) for k, v in body.items() if k not in blocked})  # type: ignore[no-any-return]

    def _current(self, entity: str, entity_id: str, body: JsonDict, check_token: bool) -> JsonDict:
        current = self.records[entity].get(entity_id)
        if current is None:
            raise errors.object_not_found(entity, entity_id)
        if check_token:
            supplied = body.get("SyncToken")
            if supplied is None or supplied == "":
                raise errors.required_missing("SyncToken")
            if str(supplied) != current["SyncToken"]:
                raise errors.stale_object(entity, entity_id, current["SyncToken"], str(supplied))
        return current

    def _next_id(self, entity: str) -> str:
        sequence = _SEQUENCE[entity]
        self.sequences[sequence] = self.sequences.get(sequence, 0) + 1
        return str(self.sequences[sequence])

    def _insert(self, entity: str, record: JsonDict, *, normalized: bool = False) -> JsonDict:
        if not normalized:
            self._normalize(entity, record, None)
        stamp = qbo_time()
        record.update(
            {
                "Id": self._next_id(entity),
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
            }
        )
        self.records[entity][record["Id"]] = record
        return record

    def _replace(self, entity: str, current: JsonDict, record: JsonDict) -> JsonDict:
        record.update(
            {
                "Id": current["Id"],
                "SyncToken": str(int(current["SyncToken"]) + 1),
                "domain": "QBO",
                "sparse": False,
                "MetaData": {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": qbo_time()},
            }
        )
        self.records[entity][current["Id"]] = record
        return record

    def _unlink_payments(self, entity: str, entity_id: str) -> None:
        """Remove payment lines that link a transaction about to disappear (or be voided)."""
        txn_types = {t for t, e in _LINKABLE.items() if e == entity}
        for payment in list(self.records["Payment"].values()):
            lines = payment.get("Line", [])
            kept = [
                line
                for line in lines
                if not any(
                    link["TxnId"] == entity_id and link["TxnType"] in txn_types for link in line.get("LinkedTxn", [])
                )
            ]
            if len(kept) != len(lines):
                record = {k: v for k, v in copy.deepcopy(payment).items() if k not in _READ_ONLY}
                record["Line"] = copy.deepcopy(kept)
                record["UnappliedAmt"] = record["TotalAmt"] - sum((line["Amount"] for line in kept), Decimal("0.00"))
                self._replace("Payment", payment, record)

    # ----------------------------------------------------------------- references
    def _ref(
        self,
        record: JsonDict,
        key: str,
        entities: Iterable[str],
        element: str,
        *,
        required: bool = False,
        allow_inactive: bool = False,
    ) -> tuple[str, JsonDict] | None:
        """Resolve ``record[key]`` (a ``{"value": id}`` ref) among ``entities``; fill in its ``name``."""
        ref = record.get(key)
        if ref is None:
            if required:
                raise errors.required_missing(element)
            return None
        if not isinstance(ref, dict) or ref.get("value") in (None, ""):
            if required:
                raise errors.required_missing(element)
            raise errors.invalid_reference(element)
        value = str(ref["value"])
        for entity in entities:
            target = self.records[entity].get(value)
            if target is None:
                continue
            if not allow_inactive and target.get("Active") is False:
                raise errors.inactive_reference(element)
            cleaned: JsonDict = {"value": value, "name": target.get("DisplayName") or target.get("Name", "")}
            if "type" in ref:
                cleaned["type"] = ref["type"]
            record[key] = cleaned
            return entity, target
        raise errors.invalid_reference(element)

    # ----------------------------------------------------------------- per-entity rules
    def _normalize(self, entity: str, record: JsonDict, own_id: str | None) -> None:
        rules: dict[str, Callable[[JsonDict, str | None], None]] = {
            "Customer": self._name_entity,
            "Vendor": self._name_entity,
            "Employee": self._name_entity,
            "Account": self._account,
            "Item": self._item,
            "PaymentMethod": self._payment_method,
            "Invoice": self._invoice,
            "Payment": self._payment,
            "Purchase": self._purchase,
            "Deposit": self._deposit,
            "TaxCode": self._tax_code,
            "TaxRate": self._tax_rate,
        }
        if "Active" in record and not isinstance(record["Active"], bool):
            record["Active"] = _is_true(record["Active"])
        _check_text(entity, record)
        if entity in TRACKING_ENTITIES:
            self._tracking_entry(entity, record, own_id)
            return
        rules[entity](record, own_id)

    def _name_entity(self, record: JsonDict, own_id: str | None) -> None:
        name = record.get("DisplayName")
        if not name:
            parts = [record.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            name = " ".join(str(p) for p in parts if p) or record.get("CompanyName")
        if not name:
            raise errors.required_missing("DisplayName")
        name = str(name)
        for element in _PLAIN_NAME_FIELDS:
            value = name if element == "DisplayName" else record.get(element)
            if isinstance(value, str) and any(char in value for char in ":\t\n\r"):
                # *guess* at the code: QBO rejects these characters; 6000 keeps it a business-rule error.
                raise errors.business_rule(f"{element} cannot contain a colon (:), tab or newline.", element)
        _check_length("DisplayName", name, _NAME_LIMITS["DisplayName"])  # also a DisplayName QBO made up
        for other_entity in NAME_ENTITIES:
            for other in self.records[other_entity].values():
                if other["Id"] != own_id and str(other["DisplayName"]).casefold() == name.casefold():
                    raise errors.duplicate_name(other["Id"])
        record["DisplayName"] = name
        record.setdefault("PrintOnCheckName", name)
        record.setdefault("Active", True)
        record["FullyQualifiedName"] = name
        email = record.get("PrimaryEmailAddr")
        if email is not None and not (isinstance(email, dict) and isinstance(email.get("Address", ""), str)):
            raise errors.invalid_property('PrimaryEmailAddr must be {"Address": ...}', "PrimaryEmailAddr")

    def _list_name(self, entity: str, record: JsonDict, own_id: str | None) -> str:
        name = record.get("Name")
        if not name:
            raise errors.required_missing("Name")
        name = str(name)
        for other in self.records[entity].values():
            if other["Id"] != own_id and str(other["Name"]).casefold() == name.casefold():
                raise errors.duplicate_name(other["Id"])
        record.setdefault("Active", True)
        return name

    def _account(self, record: JsonDict, own_id: str | None) -> None:
        name = self._list_name("Account", record, own_id)
        account_type = record.get("AccountType")
        if not account_type:
            raise errors.required_missing("AccountType")
        if account_type not in ACCOUNT_CLASSIFICATION:
            raise errors.invalid_property(f"Invalid Enumeration : {account_type}", "AccountType")
        record["Classification"] = ACCOUNT_CLASSIFICATION[account_type]
        record["FullyQualifiedName"] = name
        record.setdefault("SubAccount", False)
        record.setdefault("CurrencyRef", {"value": self.home_currency})

    def _item(self, record: JsonDict, own_id: str | None) -> None:
        record["FullyQualifiedName"] = self._list_name("Item", record, own_id)
        record.setdefault("Type", "Service")
        if record["Type"] in ("Service", "NonInventory"):
            found = self._ref(record, "IncomeAccountRef", ["Account"], "IncomeAccountRef", required=True)
            assert found is not None
            # A liability too (*guess* from bookkeepers' practice: a "Tips" item booking to Tips payable, money
            # held for the crew rather than earned).
            if found[1].get("AccountType") not in ("Income", "Other Income", "Other Current Liability"):
                raise errors.business_rule(
                    "IncomeAccountRef must be an income or other current liability account", "IncomeAccountRef"
                )
        if "UnitPrice" in record:
            record["UnitPrice"] = to_decimal(record["UnitPrice"])

    def _tax_rate(self, record: JsonDict, own_id: str | None) -> None:
        self._list_name("TaxRate", record, own_id)
        try:
            rate = to_decimal(record.get("RateValue"))
        except ValueError as exc:
            raise errors.invalid_property(str(exc), "RateValue") from exc
        if rate is None:
            raise errors.required_missing("RateValue")
        record["RateValue"] = rate
        record.setdefault("SpecialTaxType", "NONE")
        record.setdefault("DisplayType", "ReadOnly")

    def _tax_code(self, record: JsonDict, own_id: str | None) -> None:
        self._list_name("TaxCode", record, own_id)
        record.setdefault("Taxable", True)
        record.setdefault("TaxGroup", True)
        rates = (record.get("SalesTaxRateList") or {}).get("TaxRateDetail", [])
        for number, item in enumerate(rates):
            self._ref(
                item, "TaxRateRef", ["TaxRate"], f"SalesTaxRateList.TaxRateDetail[{number}].TaxRateRef", required=True
            )

    def _tracking_entry(self, entity: str, record: JsonDict, own_id: str | None) -> None:
        """A Class or a Department (location): a Name, and for a sub-class (SubClass true) or sub-location
        (SubDepartment true) a ParentRef naming an active one of the same list. FullyQualifiedName joins the
        parents' names with ':' as QBO's does, and is unique within the list, inactive entries included (QBO:
        "Duplicate Name Exists Error"; siblings may not share a name, cousins may)."""
        name = record.get("Name")
        if not name:
            raise errors.required_missing("Name")
        name = str(name)
        if ":" in name:
            raise errors.business_rule("Name cannot contain a colon (:).", "Name")
        sub_flag = "SubClass" if entity == "Class" else "SubDepartment"
        parent_name = ""
        if record.get("ParentRef") is not None:
            found = self._ref(record, "ParentRef", [entity], "ParentRef")
            assert found is not None
            if found[0] == entity and own_id is not None and found[1]["Id"] == own_id:
                raise errors.business_rule(f"A {entity} cannot be its own parent", "ParentRef")
            parent_name = str(found[1]["FullyQualifiedName"])
            record[sub_flag] = True
        else:
            record[sub_flag] = False
        full_name = f"{parent_name}:{name}" if parent_name else name
        for other in self.records[entity].values():
            if other["Id"] != own_id and str(other["FullyQualifiedName"]).casefold() == full_name.casefold():
                raise errors.duplicate_name(other["Id"])
        record["Name"] = name
        record["FullyQualifiedName"] = full_name
        record.setdefault("Active", True)

    def _tracking_refs(self, entity: str, record: JsonDict) -> None:
        """The class and location a transaction carries (SPEC §10): DepartmentRef on the header of an Invoice,
        Purchase or Deposit; ClassRef on an invoice's header, or on a line's detail (SalesItemLineDetail,
        DiscountLineDetail, AccountBasedExpenseLineDetail, DepositLineDetail). Each must name an active entry
        (2500 "Invalid Reference Id" otherwise, as for any reference). A DepartmentRef in a company that does
        not track locations is refused (6000, *guess* at the code: QBO hides the field then, and the API has no
        documented answer); a ClassRef in one that does not track classes is kept, as QBO keeps it (*verify*)."""
        if record.get("DepartmentRef") is not None:
            if not self.track_departments:
                raise errors.business_rule(
                    "Location tracking (TrackDepartments) is off for this company: DepartmentRef cannot be used",
                    "DepartmentRef",
                )
            self._ref(record, "DepartmentRef", ["Department"], "DepartmentRef")
        if entity == "Invoice" and record.get("ClassRef") is not None:
            self._ref(record, "ClassRef", ["Class"], "ClassRef")
        for line in record.get("Line", []):
            kind = line.get("DetailType")
            detail = line.get(kind) if isinstance(kind, str) else None
            if isinstance(detail, dict) and detail.get("ClassRef") is not None:
                self._ref(detail, "ClassRef", ["Class"], f"Line.{kind}.ClassRef")

    def _payment_method(self, record: JsonDict, own_id: str | None) -> None:
        self._list_name("PaymentMethod", record, own_id)
        record.setdefault("Type", "NON_CREDIT_CARD")

    def _doc_number(self, entity: str, record: JsonDict, own_id: str | None) -> None:
        doc_number = record.get("DocNumber")
        if doc_number is None and entity == "Invoice" and not self.custom_txn_numbers:
            if own_id is not None:
                # *guess*: an update that sends no DocNumber keeps the number QuickBooks gave (its users cannot
                # type one in either while custom transaction numbers are off).
                doc_number = self.records[entity][own_id].get("DocNumber")
            else:
                doc_number = self._next_invoice_number()
        if doc_number is None:
            return
        doc_number = str(doc_number)
        _check_length("DocNumber", doc_number, DOC_NUMBER_MAX)
        for other in self.records[entity].values():
            if other["Id"] != own_id and other.get("DocNumber") == doc_number:
                if entity == "Invoice" and self.refuse_duplicate_doc_numbers:
                    raise errors.duplicate_doc_number(doc_number, entity, other["Id"])
                # QBO only rejects duplicates (6140) when the company turns on "warn if duplicate"; new
                # companies do not, so the write goes through and the emulator just remembers it.
                self.notes.append(f"duplicate DocNumber {doc_number!r} on {entity} (also Id={other['Id']})")
                break
        record["DocNumber"] = doc_number

    def _next_invoice_number(self) -> str:
        """What QuickBooks numbers a new invoice when its users do not (custom transaction numbers off): one
        more than the highest numeric invoice number, 1001 in a company without one (QBO's first)."""
        numbers = [
            int(str(r.get("DocNumber")))
            for r in self.records["Invoice"].values()
            if str(r.get("DocNumber", "")).isdigit()
        ]
        return str(max(numbers, default=1000) + 1)

    def _invoice(self, record: JsonDict, own_id: str | None) -> None:
        self._ref(record, "CustomerRef", ["Customer"], "CustomerRef", required=True)
        self._doc_number("Invoice", record, own_id)
        self._tracking_refs("Invoice", record)
        _txn_date(record)
        lines = [line for line in record.get("Line", []) if line.get("DetailType") != "SubTotalLineDetail"]
        if not any(line.get("DetailType") == "SalesItemLineDetail" for line in lines):
            raise errors.required_missing("Line")
        subtotal = taxable = Decimal("0.00")
        discounts: list[JsonDict] = []
        for number, line in enumerate(lines, start=1):
            kind = line.get("DetailType")
            if kind == "DescriptionOnly":
                line.pop("Amount", None)
            elif kind == "SalesItemLineDetail":
                amount = _money_field(line, "Amount", "Line.Amount", required=True)
                assert amount is not None
                detail = line.setdefault("SalesItemLineDetail", {})
                if "ItemRef" not in detail:
                    # QBO books a line without an item on the default "Services" item.
                    default = self.find_by_name("Item", "Services")
                    if default is not None:
                        detail["ItemRef"] = {"value": default["Id"]}
                self._ref(detail, "ItemRef", ["Item"], "Line.SalesItemLineDetail.ItemRef", required=True)
                try:
                    qty, price = to_decimal(detail.get("Qty")), to_decimal(detail.get("UnitPrice"))
                except ValueError as exc:
                    raise errors.invalid_property(str(exc), "Line.SalesItemLineDetail") from exc
                for key, value in (("Qty", qty), ("UnitPrice", price)):
                    if value is not None:
                        detail[key] = value
                # python-quickbooks sends Qty 0 and UnitPrice 0 when unset, so only a pair of real figures is
                # held to QBO's Amount = UnitPrice × Qty rule (6070).
                if qty and price and money(qty * price) != amount:
                    raise errors.amount_mismatch(str(amount), str(money(qty * price)))
                subtotal += amount
                if sales_tax.line_tax_code(detail, self.tax.sales_tax):
                    taxable += amount
            elif kind == "DiscountLineDetail":
                discounts.append(line)
            else:
                raise errors.invalid_property(f"Unsupported line DetailType {kind!r} on Invoice", "Line.DetailType")
            line["Id"] = str(number)
            line["LineNum"] = number
        if len(discounts) > 1:
            # *guess* at the answer: QBO takes one discount per transaction (its form has one discount field).
            raise errors.business_rule("Only one discount line is allowed on a transaction", "Line.DiscountLineDetail")
        discount = Decimal("0.00")
        for line in discounts:
            # The discount comes off the subtotal of every sales line, wherever the line sits.
            discount = sales_tax.discount_amount(line, subtotal)
            detail = line["DiscountLineDetail"]
            if "DiscountAccountRef" not in detail:
                default = self.find_by_name("Account", "Discounts given")  # *guess*: QBO's default account
                if default is not None:
                    detail["DiscountAccountRef"] = {"value": default["Id"]}
            self._ref(
                detail, "DiscountAccountRef", ["Account"], "Line.DiscountLineDetail.DiscountAccountRef", required=True
            )
        before_tax = _is_true(record.get("ApplyTaxAfterDiscount"))
        record["ApplyTaxAfterDiscount"] = before_tax
        base = sales_tax.taxable_base(taxable, subtotal, discount, before_tax)
        tax = sales_tax.invoice_tax(self.tax, record.get("TxnTaxDetail"), base, taxable != 0, self._tax_code_rate)
        record["TxnTaxDetail"] = sales_tax.tax_detail(tax, base)
        record["Line"] = lines
        total = subtotal - discount + tax.total_tax + self.tax.invoice_total_drift
        if own_id is not None:
            applied = self._ledger().applied.get(("Invoice", own_id), Decimal("0.00"))
            if total < applied:
                raise errors.business_rule(
                    f"Invoice {own_id} total {total} is less than the {applied} already paid on it", "Line.Amount"
                )
            self._keeps_customer_while_linked("Invoice", own_id, record["CustomerRef"]["value"])
        record["TotalAmt"] = total

    def _tax_code_rate(self, ref: Any) -> tuple[JsonDict, Decimal, tuple[JsonDict, ...]]:
        """A TxnTaxCodeRef resolved: the cleaned ref, the code's rate (its sales TaxRates added up) and them."""
        holder = {"TxnTaxCodeRef": ref}
        found = self._ref(holder, "TxnTaxCodeRef", ["TaxCode"], "TxnTaxDetail.TxnTaxCodeRef", required=True)
        assert found is not None
        rate = Decimal("0")
        refs: list[JsonDict] = []
        for item in (found[1].get("SalesTaxRateList") or {}).get("TaxRateDetail", []):
            rate_id = str((item.get("TaxRateRef") or {}).get("value", ""))
            tax_rate = self.records["TaxRate"].get(rate_id)
            if tax_rate is not None:
                rate += tax_rate["RateValue"]
                refs.append({"value": rate_id, "name": tax_rate["Name"]})
        return holder["TxnTaxCodeRef"], rate, tuple(refs)

    def _purchase(self, record: JsonDict, own_id: str | None) -> None:
        payment_type = record.get("PaymentType")
        if not payment_type:
            raise errors.required_missing("PaymentType")
        if payment_type not in ("Cash", "Check", "CreditCard"):
            raise errors.invalid_property(f"Invalid Enumeration : {payment_type}", "PaymentType")
        found = self._ref(record, "AccountRef", ["Account"], "AccountRef", required=True)
        assert found is not None
        wanted = "Credit Card" if payment_type == "CreditCard" else "Bank"
        if found[1].get("AccountType") != wanted:
            raise errors.business_rule(
                f"AccountRef of a {payment_type} purchase must be a {wanted} account", "AccountRef"
            )
        entity_ref = record.get("EntityRef")
        if entity_ref is not None:
            kind = entity_ref.get("type") if isinstance(entity_ref, dict) else None
            candidates = [kind] if kind in NAME_ENTITIES else list(NAME_ENTITIES)
            resolved = self._ref(record, "EntityRef", candidates, "EntityRef")
            assert resolved is not None
            record["EntityRef"]["type"] = resolved[0]
        self._doc_number("Purchase", record, own_id)
        self._tracking_refs("Purchase", record)
        _txn_date(record)
        lines = record.get("Line", [])
        if not lines:
            raise errors.required_missing("Line")
        total = Decimal("0.00")
        for number, line in enumerate(lines, start=1):
            if line.get("DetailType") != "AccountBasedExpenseLineDetail":
                raise errors.invalid_property(
                    f"Unsupported line DetailType {line.get('DetailType')!r} on Purchase", "Line.DetailType"
                )
            amount = _money_field(line, "Amount", "Line.Amount", required=True)
            assert amount is not None
            detail = line.setdefault("AccountBasedExpenseLineDetail", {})
            self._ref(detail, "AccountRef", ["Account"], "Line.AccountBasedExpenseLineDetail.AccountRef", required=True)
            total += amount
            line["Id"] = str(number)
            line["LineNum"] = number
        if own_id is not None:
            applied = self._ledger().applied.get(("Purchase", own_id), Decimal("0.00"))
            if total < applied:
                raise errors.business_rule(f"Purchase {own_id} total {total} is less than {applied} linked to it")
            self._keeps_customer_while_linked("Purchase", own_id, (record.get("EntityRef") or {}).get("value"))
        record["TotalAmt"] = total
        record.setdefault("Credit", False)

    def _not_deposited(self, entity: str, entity_id: str, how: str) -> None:
        """A payment in a deposit cannot be deleted or voided (Fault 6000, *guess* at the code: QBO's UI warns
        that the deposit changes; the API does not take the payment out of the deposit for you)."""
        if entity != "Payment":
            return
        deposit_id = self._ledger().deposited_in.get(entity_id)
        if deposit_id is not None:
            raise errors.business_rule(
                f"Payment {entity_id} is in Deposit {deposit_id} and cannot be {how}; remove it from the deposit first",
                "Id",
            )

    def _deposit(self, record: JsonDict, own_id: str | None) -> None:
        found = self._ref(record, "DepositToAccountRef", ["Account"], "DepositToAccountRef", required=True)
        assert found is not None
        account = found[1]
        if account.get("AccountType") not in _DEPOSIT_TO_TYPES or account.get("AccountSubType") == "UndepositedFunds":
            raise errors.business_rule(
                "DepositToAccountRef must be a bank or other current asset account other than Undeposited Funds",
                "DepositToAccountRef",
            )
        self._doc_number("Deposit", record, own_id)
        self._tracking_refs("Deposit", record)
        _txn_date(record)
        lines = record.get("Line", [])
        if not lines:
            raise errors.required_missing("Line")
        ledger = self._ledger()
        linked_here: set[str] = set()
        total = Decimal("0.00")
        for number, line in enumerate(lines, start=1):
            amount = _money_field(line, "Amount", "Line.Amount", required=True)
            assert amount is not None
            links = line.get("LinkedTxn") or []
            if links:
                self._deposit_link(line, links, amount, own_id, ledger, linked_here)
                line.pop("DetailType", None)  # QBO answers a linked line without one
                line.pop("DepositLineDetail", None)
            elif line.get("DetailType") == "DepositLineDetail":
                detail = line.setdefault("DepositLineDetail", {})
                self._ref(detail, "AccountRef", ["Account"], "Line.DepositLineDetail.AccountRef", required=True)
            else:
                raise errors.invalid_property(
                    f"Unsupported line DetailType {line.get('DetailType')!r} on Deposit", "Line.DetailType"
                )
            total += amount
            line["Id"] = str(number)
            line["LineNum"] = number
        if total < 0:
            raise errors.business_rule(f"A deposit's total cannot be negative ({total})", "Line.Amount")
        record["TotalAmt"] = total
        record.setdefault("HomeTotalAmt", total)

    def _deposit_link(
        self,
        line: JsonDict,
        links: list[Any],
        amount: Decimal,
        own_id: str | None,
        ledger: Ledger,
        linked_here: set[str],
    ) -> None:
        """One line taking one Payment out of Undeposited Funds (see the module docstring for the rules)."""
        if len(links) != 1 or not isinstance(links[0], dict):
            raise errors.business_rule("Each deposit line must link exactly one transaction", "Line.LinkedTxn")
        link = links[0]
        txn_type, txn_id = link.get("TxnType"), str(link.get("TxnId", ""))
        if txn_type != "Payment":
            # QBO deposits other kinds too (sales receipts, refund receipts…); the emulator models payments only.
            raise errors.invalid_property(
                f"Unsupported LinkedTxn.TxnType {txn_type!r} on Deposit", "Line.LinkedTxn.TxnType"
            )
        if link.get("TxnLineId") in (None, ""):
            raise errors.required_missing("Line.LinkedTxn.TxnLineId")
        payment = self.records["Payment"].get(txn_id)
        if payment is None or ("Payment", txn_id) in self.voided:
            state = "does not exist" if payment is None else "is voided"
            raise errors.invalid_reference("Line.LinkedTxn.TxnId", f"Invalid Reference Id : Payment {txn_id} {state}")
        where = (payment.get("DepositToAccountRef") or {}).get("value")
        account = self.records["Account"].get(str(where)) or {}
        if account.get("AccountSubType") != "UndepositedFunds":
            raise errors.business_rule(
                f"Payment {txn_id} was deposited to {account.get('Name', where)!r}, not Undeposited Funds: it "
                "cannot be in a deposit",
                "Line.LinkedTxn",
            )
        elsewhere = ledger.deposited_in.get(txn_id)
        if txn_id in linked_here or (elsewhere is not None and elsewhere != own_id):
            where_else = "this deposit" if txn_id in linked_here else f"Deposit {elsewhere}"
            raise errors.business_rule(f"Payment {txn_id} is already deposited in {where_else}", "Line.LinkedTxn")
        if amount != payment["TotalAmt"]:
            raise errors.business_rule(
                f"The deposit line for Payment {txn_id} ({amount}) must be the payment's total ({payment['TotalAmt']})",
                "Line.Amount",
            )
        linked_here.add(txn_id)
        link.clear()
        link.update({"TxnId": txn_id, "TxnType": "Payment", "TxnLineId": "0"})

    def _keeps_customer_while_linked(self, entity: str, own_id: str, customer_id: Any) -> None:
        """An invoice's customer or a purchase's payee cannot change while a payment links it (*guess*, the
        strict choice: QBO's UI unlinks such payments first, and a payment may only link its own customer's
        transactions). A client moving them takes the payment lines off first, then puts them back. A voided
        payment holds nothing: its lines are zero and apply nothing (as the fake, which counts live links only)."""
        for payment_id in dict.fromkeys(self._ledger().linked_payments.get((entity, own_id), [])):
            if ("Payment", payment_id) in self.voided:
                continue
            payment_customer = self.records["Payment"][payment_id]["CustomerRef"]["value"]
            if customer_id != payment_customer:
                role = "payee" if entity == "Purchase" else "customer"
                raise errors.business_rule(
                    f"{entity} {own_id} is linked from Payment {payment_id} of customer {payment_customer}; "
                    f"its {role} cannot change",
                    "CustomerRef" if entity == "Invoice" else "EntityRef",
                )

    def _payment(self, record: JsonDict, own_id: str | None) -> None:
        self._ref(record, "CustomerRef", ["Customer"], "CustomerRef", required=True)
        customer_id = record["CustomerRef"]["value"]
        total = _money_field(record, "TotalAmt", "TotalAmt", required=True)
        assert total is not None
        if total < 0:
            raise errors.business_rule("TotalAmt cannot be negative", "TotalAmt")
        self._ref(record, "PaymentMethodRef", ["PaymentMethod"], "PaymentMethodRef")
        if "DepositToAccountRef" not in record:
            undeposited = self.find_by_name("Account", "Undeposited Funds")
            if undeposited is not None:
                record["DepositToAccountRef"] = {"value": undeposited["Id"]}
        deposit = self._ref(record, "DepositToAccountRef", ["Account"], "DepositToAccountRef")
        if deposit is not None and deposit[1].get("AccountType") not in ("Bank", "Other Current Asset"):
            raise errors.business_rule(
                "DepositToAccountRef must be a bank or other current asset account", "DepositToAccountRef"
            )
        _txn_date(record)
        ledger = self._ledger()
        applied_here: dict[tuple[str, str], Decimal] = {}
        lines = record.get("Line", [])
        for line in lines:
            amount = _money_field(line, "Amount", "Line.Amount", required=True)
            assert amount is not None
            if amount < 0:
                raise errors.business_rule("Line.Amount cannot be negative", "Line.Amount")
            links = line.get("LinkedTxn") or []
            if len(links) != 1:
                raise errors.business_rule("Each payment line must link exactly one transaction", "Line.LinkedTxn")
            link = links[0]
            txn_type, txn_id = link.get("TxnType"), str(link.get("TxnId", ""))
            if txn_type not in _LINKABLE:
                raise errors.invalid_property(f"Unsupported LinkedTxn.TxnType {txn_type!r}", "Line.LinkedTxn.TxnType")
            target_entity = _LINKABLE[txn_type]
            target = self.records[target_entity].get(txn_id)
            if target is None:
                raise errors.invalid_reference(
                    "Line.LinkedTxn.TxnId", f"Invalid Reference Id : {txn_type} {txn_id} does not exist"
                )
            if target_entity == "Purchase":
                is_check = target.get("PaymentType") == "Check"
                if is_check != (txn_type == "Check"):
                    raise errors.invalid_reference(
                        "Line.LinkedTxn.TxnType",
                        f"Invalid Reference Id : Purchase {txn_id} is a {target.get('PaymentType')}, not {txn_type}",
                    )
                owner = (target.get("EntityRef") or {}).get("value")
                owner_type = (target.get("EntityRef") or {}).get("type")
            else:
                owner, owner_type = target["CustomerRef"]["value"], "Customer"
            if owner != customer_id or owner_type != "Customer":
                raise errors.business_rule(
                    f"{txn_type} {txn_id} belongs to another customer than Payment's CustomerRef {customer_id}",
                    "Line.LinkedTxn",
                )
            link.clear()
            link.update({"TxnId": txn_id, "TxnType": txn_type})
            key = (target_entity, txn_id)
            applied_here[key] = applied_here.get(key, Decimal("0.00")) + amount
        for key, amount in applied_here.items():
            elsewhere = ledger.applied.get(key, Decimal("0.00"))
            if own_id is not None:  # the payment's own previous lines are being replaced
                old = self.records["Payment"][own_id]
                elsewhere -= sum(
                    (
                        line["Amount"]
                        for line in old.get("Line", [])
                        for link in line.get("LinkedTxn", [])
                        if (_LINKABLE[link["TxnType"]], link["TxnId"]) == key
                    ),
                    Decimal("0.00"),
                )
            available = self.records[key[0]][key[1]]["TotalAmt"] - elsewhere
            if amount > available:
                raise errors.business_rule(
                    f"The amount applied to {key[0]} {key[1]} ({amount}) exceeds its open balance ({available})",
                    "Line.Amount",
                )
        unapplied = total - sum(applied_here.values(), Decimal("0.00"))
        if unapplied < 0:
            raise errors.business_rule(
                f"The payment amount ({total}) is less than the total applied to transactions ({total - unapplied})",
                "TotalAmt",
            )
        record["UnappliedAmt"] = unapplied
        record.setdefault("ProcessPayment", False)
        if own_id is not None and own_id in ledger.deposited_in:
            deposit_id = ledger.deposited_in[own_id]
            old = self.records["Payment"][own_id]
            for element in ("TotalAmt", "DepositToAccountRef"):
                before, after = old.get(element), record.get(element)
                if element == "DepositToAccountRef":
                    before, after = (before or {}).get("value"), (after or {}).get("value")
                if before != after:
                    # *guess* at the code and wording: QBO's UI warns that the deposit changes too; the API
                    # refuses, so a deposit's total stays what reached the bank.
                    raise errors.business_rule(
                        f"Payment {own_id} is in Deposit {deposit_id}: its {element} cannot change; remove it from "
                        "the deposit first",
                        element,
                    )
