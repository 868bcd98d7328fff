"""What a setting may point to in the company's lists: the one place for those rules.

Each account-mapping setting (SPEC.md section 5) names an entry of one of the company's lists: an
account of the chart of accounts, an item, or a payment method. QuickBooks accepts a reference only to
an entry that exists, is active and has the right type for where it is used, so these rules are checked
twice from here: when a person sets the mapping (`UpdateSettings`, against the company at once) and
before a sync uses it (a setting may have been made inactive in QuickBooks since).

The types are QuickBooks' own AccountType and Item Type values, the words a bookkeeper sees in the
chart of accounts:
- deposit account: where a Payment's DepositToAccountRef may point, a Bank account or an Other Current
  Asset such as Undeposited Funds (Intuit: "Account.AccountType=Other Current Asset or Bank").
- refund bank account: a refund is a Purchase with PaymentType Cash (an expense) or Check, whose
  AccountRef QuickBooks requires to be a Bank account (a Credit Card account only goes with PaymentType
  CreditCard, which qbsync never writes: a refund is money leaving the bank).
- A/R account: the Accounts Receivable account the refund expense's line is booked on (R4).
- income item: a Service or NonInventory item with an income account, so each invoice line books income.
- payment methods: any active PaymentMethod.
SPEC section 8 adds, each needed only by a job that uses it:
- tax code: the invoice's TxnTaxCodeRef in a company with manual sales tax, an active TaxCode that is a
  rate (Intuit's TaxGroup): TAX and NON are pseudo codes that only mark a line taxable or not.
- discount account: the DiscountLineDetail's DiscountAccountRef, an Income account (Intuit: "Income
  account used to track discounts ... AccountType=Income and AccountSubType=DiscountsRefundsGiven", the
  account QBO names "Discounts given"; any Income account is accepted, the subtype is the bookkeeper's).
- tips item and surcharge item: the invoice lines for the tip and the card surcharge, Service or
  NonInventory items with an income account. For tips that account may be a liability (Other Current
  Liability, e.g. "Tips payable"): tips the crew is owed are not the company's income, and which one is
  the bookkeeper's choice, so the item's account is not judged.
- processing-fee account: where what card processors keep is booked (payouts), an Expense or Other
  Expense account (QBO's "Bank charges", or "QuickBooks Payments Fees").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from core.connection import ListRef
from core.domain import normalise

# A sub-account's (or sub-item's) fully qualified name joins its parents' names with this.
LEVEL_SEPARATOR = ":"


class ListKind(enum.Enum):
    """The company list a setting points into (QBO entity names)."""

    ACCOUNT = "Account"
    ITEM = "Item"
    PAYMENT_METHOD = "PaymentMethod"
    TAX_CODE = "TaxCode"
    CLASS = "Class"  # SPEC §10: what a branch mapping names
    DEPARTMENT = "Department"  # shown as "Location" in QuickBooks


@dataclass(frozen=True)
class ListEntry:
    """An entry of a company list as the accounting system holds it.

    `type` is an account's AccountType ("Bank", "Other Current Asset", ...), an item's Type ("Service",
    "NonInventory", ...) or a tax code's TAX_CODE_RATE / TAX_CODE_PSEUDO; `sub_type` an account's
    AccountSubType ("UndepositedFunds", ...); an item's `income_account_id` is its IncomeAccountRef (""
    when it has none). `name` is the fully qualified name (Parent:Child for a sub-account)."""

    kind: ListKind
    id: str
    name: str
    active: bool = True
    type: str = ""
    sub_type: str = ""
    income_account_id: str = ""

    @property
    def ref(self) -> ListRef:
        return ListRef(self.id, self.name)


@dataclass(frozen=True)
class SettingRule:
    """What one setting may point to."""

    label: str  # for people: "deposit account"
    kind: ListKind
    types: tuple[str, ...] = ()  # the types allowed; empty: any
    needs_income_account: bool = False
    advice: str = ""  # what to choose instead, added to a wrong-type problem when the types say too little

    def problem(self, ref: ListRef, entry: ListEntry | None) -> str | None:
        """Why `entry` (what `ref` was resolved to; None: nothing) cannot be used, in words a bookkeeper
        acts on; None when it can."""
        if entry is None:
            return f"QuickBooks has no {self._noun()} {_described(ref)}"
        shown = f"{entry.name!r} (Id {entry.id})"
        if not entry.active:
            return f"{shown} is inactive in QuickBooks: reactivate it there or choose another"
        if self.types and entry.type not in self.types:
            return (
                f"{shown} is {_a(entry.type or 'untyped')} {self._noun()}; the {self.label} must be "
                f"{_a(' or '.join(self.types))} {self._noun()}" + (f": {self.advice}" if self.advice else "")
            )
        if self.needs_income_account and not entry.income_account_id:
            return f"{shown} has no income account: give the item one in QuickBooks, or choose another"
        return None

    def _noun(self) -> str:
        return _NOUNS[self.kind]


_NOUNS = {
    ListKind.ACCOUNT: "account",
    ListKind.ITEM: "item",
    ListKind.PAYMENT_METHOD: "payment method",
    ListKind.TAX_CODE: "tax code",
    ListKind.CLASS: "class",
    ListKind.DEPARTMENT: "location",
}
# A TaxCode's `type` as ListEntry has it: Intuit's TaxGroup true (one or more rates: what an invoice's
# TxnTaxCodeRef names) or false (the pseudo codes TAX and NON, which only mark lines).
TAX_CODE_RATE = "rate"
TAX_CODE_PSEUDO = "pseudo"


# The settings that point into a company list (QuickBooksSettings' field names), and what each may point to.
LIST_SETTINGS: dict[str, SettingRule] = {
    "deposit_account": SettingRule("deposit account", ListKind.ACCOUNT, ("Bank", "Other Current Asset")),
    "refund_bank_account": SettingRule("refund bank account", ListKind.ACCOUNT, ("Bank",)),
    "accounts_receivable_account": SettingRule("A/R account", ListKind.ACCOUNT, ("Accounts Receivable",)),
    "income_item": SettingRule("income item", ListKind.ITEM, ("Service", "NonInventory"), needs_income_account=True),
    "tax_code": SettingRule(
        "tax code",
        ListKind.TAX_CODE,
        (TAX_CODE_RATE,),
        advice="choose one of the company's sales tax rates (TAX and NON only mark lines taxable or not)",
    ),
    "discount_account": SettingRule("discount account", ListKind.ACCOUNT, ("Income",)),
    "tips_item": SettingRule("tips item", ListKind.ITEM, ("Service", "NonInventory"), needs_income_account=True),
    "surcharge_item": SettingRule(
        "surcharge item", ListKind.ITEM, ("Service", "NonInventory"), needs_income_account=True
    ),
    "processing_fee_account": SettingRule("processing-fee account", ListKind.ACCOUNT, ("Expense", "Other Expense")),
    # SPEC section 9, payouts. The payout bank account is where the processor's money lands: a bank account.
    "payout_bank_account": SettingRule("payout bank account", ListKind.ACCOUNT, ("Bank",)),
    # Chargebacks a payout nets: Accounts Receivable (the default) reopens what the customer owes, as a
    # refund expense does; a bookkeeper who writes chargebacks off as a loss books them to an expense
    # (Expense or Other Expense). Not income: that would net a loss against sales and hide it.
    "chargeback_account": SettingRule(
        "chargeback account", ListKind.ACCOUNT, ("Accounts Receivable", "Expense", "Other Expense")
    ),
    # A payout's other adjustments (reserves released, corrections): only the bookkeeper knows, so any account.
    "adjustment_account": SettingRule("adjustment account", ListKind.ACCOUNT),
}
# Every value of the `payment_methods` setting.
PAYMENT_METHOD_RULE = SettingRule("payment method", ListKind.PAYMENT_METHOD)


def leaf_name(name: str) -> str:
    """An entry's own name: the last level of a fully qualified name (QBO's `Name`)."""
    return name.rsplit(LEVEL_SEPARATOR, 1)[-1].strip()


def pick_by_name(entries: Iterable[ListEntry], name: str) -> ListEntry | None:
    """The entry a setting given by `name` means: the one of that fully qualified name or, failing that,
    of that own name (the lowest Id of several: sub-accounts of different parents may share one). Case
    and spacing are ignored, as QuickBooks' own name checks do."""
    wanted = normalise(name)
    if not wanted:
        return None
    ordered = sorted(entries, key=lambda e: (int(e.id), e.id) if e.id.isdigit() else (2**63, e.id))
    qualified = [e for e in ordered if normalise(e.name) == wanted]
    by_leaf = [e for e in ordered if normalise(leaf_name(e.name)) == wanted]
    found = qualified or by_leaf
    return found[0] if found else None


def _described(ref: ListRef) -> str:
    return f"with Id {ref.id}" if ref.id else f"named {ref.name!r}"


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word
