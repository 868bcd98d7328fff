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


@dataclass(frozen=True)
class ListEntry:
    """An entry of a company list as the accounting system holds it.

    `type` is an account's AccountType ("Bank", "Other Current Asset", ...) or an item's Type ("Service",
    "NonInventory", ...); `sub_type` an account's AccountSubType ("UndepositedFunds", ...); an item's
    `income_account_id` is its IncomeAccountRef ("" when it has none). `name` is the fully qualified name
    (Parent:Child for a sub-account)."""

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
                f"{_a(' or '.join(self.types))} {self._noun()}"
            )
        if self.needs_income_account and not entry.income_account_id:
            return f"{shown} has no income account: give the item one in QuickBooks, or choose another"
        return None

    def _noun(self) -> str:
        return {ListKind.ACCOUNT: "account", ListKind.ITEM: "item", ListKind.PAYMENT_METHOD: "payment method"}[
            self.kind
        ]


# The settings that point into a company list (QuickBooksSettings' field names), and what each may point to.
LIST_SETTINGS: dict[str, SettingRule] = {
    "deposit_account": SettingRule("deposit account", ListKind.ACCOUNT, ("Bank", "Other Current Asset")),
    "refund_bank_account": SettingRule("refund bank account", ListKind.ACCOUNT, ("Bank",)),
    "accounts_receivable_account": SettingRule("A/R account", ListKind.ACCOUNT, ("Accounts Receivable",)),
    "income_item": SettingRule("income item", ListKind.ITEM, ("Service", "NonInventory"), needs_income_account=True),
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
