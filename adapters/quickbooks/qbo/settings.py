"""The tenant's account mapping, resolved against the company on first use and validated once per company.

An unset setting gets its default, found by name or type in the company's lists (SPEC.md section 5), and
the result is saved on the connection so that later syncs need no look-ups. A configured setting is read
to check it exists, is active and has the right type — by the same rules and the same read as
UpdateSettings (core.company_lists, lists.py), since it may have changed in QuickBooks since it was set: a
wrong one fails the sync with a message naming the setting, which is what a bookkeeper can fix. A setting
stored with a name and no Id is resolved by that name, never ignored.

What was checked (and a job's tax rate found by name, and the payment methods looked for) is stored per
company (core/company_lookups.py, lookups.py) with the value it was checked against: every process of the
deployment relies on it until it expires, the setting changes, or QuickBooks refuses what it supplied
(`forget`). A sync that must look something up does so holding the company's look-up lock, so concurrent
first syncs of a company look it up once.

A setting is resolved only when a record needs it (`settings_needed`): a company that never invoices a
tip needs no tips item, and is never failed for lacking one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.lists import list_entry, read_list_entry
from adapters.quickbooks.qbo.lookups import CompanyLookups
from adapters.quickbooks.qbo.mapping import DEPOSIT_LINE_SETTINGS
from adapters.quickbooks.qbo.queries import escape, query_all
from core.accounting import DepositSpec, InvoiceSpec, TxnKind, TxnSpec
from core.company_lists import LIST_SETTINGS, ListEntry, ListKind, leaf_name
from core.company_lookups import CompanyLookup, LookupKind, setting_checked
from core.company_tax import SalesTax
from core.connection import ListRef, QuickBooksSettings
from core.domain import PaymentMethod, normalise
from core.errors import BookkeepingError
from core.ports import UnitOfWorkFactory

SETTING_INVALID = "QUICKBOOKS_SETTING_INVALID"

INCOME_ITEM = "income_item"
TAX_CODE = "tax_code"
LABELS = {name: rule.label for name, rule in LIST_SETTINGS.items()}
# SPEC section 5's account settings: one look-up of the chart of accounts gives all of their defaults at
# once. What rule each follows is core.company_lists', the same one UpdateSettings applies.
ACCOUNT_SETTINGS = ("deposit_account", "refund_bank_account", "accounts_receivable_account")
# The settings that supply an invoice line's ItemRef.
ITEM_SETTINGS = tuple(name for name, rule in LIST_SETTINGS.items() if rule.kind is ListKind.ITEM)

NEEDED: dict[TxnKind, tuple[str, ...]] = {
    TxnKind.PAYMENT: ("deposit_account",),
    TxnKind.EXPENSE: ("refund_bank_account", "accounts_receivable_account"),
    TxnKind.CHECK: ("refund_bank_account", "accounts_receivable_account"),
    TxnKind.INVOICE: (INCOME_ITEM,),
    # The account lines' settings come with the lines that need them (settings_needed).
    TxnKind.DEPOSIT: ("payout_bank_account",),
}
# SPEC section 9's accounts with a default found in the chart of accounts (the adjustment account has none:
# what an adjustment is, only the bookkeeper knows).
PAYOUT_ACCOUNT_SETTINGS = ("payout_bank_account", "chargeback_account")
ADJUSTMENT_ACCOUNT = "adjustment_account"

# QBO payment method names tried, in order, for each CRM method.
METHOD_NAMES: dict[PaymentMethod, tuple[str, ...]] = {
    PaymentMethod.CASH: ("Cash",),
    PaymentMethod.CHECK: ("Check",),
    PaymentMethod.CREDIT_CARD: ("Credit Card",),
    PaymentMethod.ACH: ("ACH", "Other"),
    PaymentMethod.OTHER: ("Other",),
}

# SPEC section 8's defaults: the names tried, in order (an entry its rule refuses is passed over).
# "Discounts given" is the Income account QBO's own examples book discounts to (Intuit's SalesReceipt page);
# tips and surcharge items are the company's own creation (a new QBO company has neither); of the fee
# accounts, "QuickBooks Payments Fees" is the one QBO Payments records its fees in, "Bank charges" (older
# charts) and "Bank Charges & Fees" (newer ones) QBO's default chart's. *verify* the chart names against a
# new sandbox company: missing one only means no default, never a wrong one.
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "discount_account": ("Discounts given",),
    "tips_item": ("Tips", "Tip", "Gratuity"),
    "surcharge_item": ("Surcharge", "Card surcharge", "Credit card surcharge"),
    "processing_fee_account": (
        "Merchant account fees",
        "QuickBooks Payments Fees",
        "Bank charges",
        "Bank Charges & Fees",
    ),
}
# Failing a name, the AccountSubType an account of that use has (Intuit: DiscountsRefundsGiven for
# DiscountAccountRef; BankCharges is the Expense detail type "Bank charges").
DEFAULT_SUB_TYPES: dict[str, str] = {
    "discount_account": "DiscountsRefundsGiven",
    "processing_fee_account": "BankCharges",
}
_ITEM_ADVICE = {
    "tips_item": "create one in QuickBooks (on an income account, or a liability such as Tips payable when "
    "the tips are the crew's) or set the tips item",
    "surcharge_item": "create one in QuickBooks or set the surcharge item",
}


def settings_needed(spec: TxnSpec, sales_tax: SalesTax | None) -> tuple[str, ...]:
    """The settings writing `spec` uses, and nothing else: a job without a tip never needs a tips item.

    The tax code only for a taxed invoice in a company with manual sales tax: with automated sales tax
    QuickBooks picks the rates itself (and keeps the TotalTax sent), and a company whose mode is not read
    yet (None) is taken to have it, as the invoice mapping does."""
    names = list(NEEDED[spec.kind])
    if isinstance(spec, InvoiceSpec):
        if spec.discount is not None:
            names.append("discount_account")
        if spec.tip:
            names.append("tips_item")
        if spec.surcharge:
            names.append("surcharge_item")
        if spec.taxable and sales_tax is SalesTax.MANUAL:
            names.append(TAX_CODE)
    if isinstance(spec, DepositSpec):
        for line in spec.lines:
            setting = DEPOSIT_LINE_SETTINGS.get(line.kind)
            if setting is not None and setting not in names:
                names.append(setting)
    return tuple(names)


def settings_maybe_used(spec: TxnSpec) -> tuple[str, ...]:
    """Every setting writing `spec` may have used: what it needs, and the tax code whatever the company's
    sales tax mode (after a refusal, checking one more setting again is harmless; missing the one at fault
    is not)."""
    return settings_needed(spec, SalesTax.MANUAL)


def setting_error(setting: str, problem: str) -> BookkeepingError:
    return BookkeepingError(f"the {LABELS.get(setting, setting)} setting {problem}", reason=SETTING_INVALID)


class _LookUpNeeded(Exception):
    """A pass that may not look anything up needed to (`SettingsResolver.for_spec`)."""


@dataclass
class _Pass:
    """One resolution of a spec's settings: whether it may ask QuickBooks, and what it found there (stored
    when it ends, for every process)."""

    may_look_up: bool
    found: list[CompanyLookup] = field(default_factory=list)

    def ask(self) -> None:
        """Called before each look-up."""
        if not self.may_look_up:
            raise _LookUpNeeded


class SettingsResolver:
    """Resolves and validates one tenant's settings; `lookups` is shared by the process (and stored for
    the deployment)."""

    def __init__(self, session: CompanySession, uow_factory: UnitOfWorkFactory, lookups: CompanyLookups) -> None:
        self._session = session
        self._uow_factory = uow_factory
        self._lookups = lookups

    def for_spec(self, spec: TxnSpec) -> QuickBooksSettings:
        """The settings `spec` is written with, everything it needs set and checked (raises
        BookkeepingError naming the setting). For a taxed invoice of a manual-tax company, the tax code is
        the TaxCode the job's tax_rate_name names when there is one (for this record only: it is the
        job's, not a setting), else the tax code setting.

        First from what is known, without a lock or a request; when something must be looked up, again
        holding the company's look-up lock, on the settings and look-ups as stored once it is ours (another
        process may have resolved them while this one waited)."""
        try:
            return self._for_spec(spec, _Pass(may_look_up=False))
        except _LookUpNeeded:
            pass
        connection = self._session.connection
        tenant_id, branch_id = connection.tenant_id, connection.branch_id
        with self._lookups.looking_up(tenant_id, branch_id=branch_id):
            self._adopt_stored_settings()
            looked_up = _Pass(may_look_up=True)
            try:
                return self._for_spec(spec, looked_up)
            finally:
                # What was found stands even when another setting of this spec failed.
                self._lookups.record(tenant_id, looked_up.found, branch_id=branch_id)

    def _for_spec(self, spec: TxnSpec, pass_: _Pass) -> QuickBooksSettings:
        needed = settings_needed(spec, self._session.connection.sales_tax)
        rate_name = spec.tax_rate_name.strip() if isinstance(spec, InvoiceSpec) and TAX_CODE in needed else ""
        job_rate = self._tax_rate(rate_name, pass_) if rate_name else None
        if job_rate is not None:
            needed = tuple(name for name in needed if name != TAX_CODE)
        settings = self._resolve(needed, pass_, payment=spec.kind is TxnKind.PAYMENT, unmatched_rate=rate_name)
        return dataclasses.replace(settings, tax_code=job_rate) if job_rate is not None else settings

    def _adopt_stored_settings(self) -> None:
        """The settings as stored now (defaults another process saved since this sync read the connection);
        only the settings: the session keeps the tokens it holds."""
        connection = self._session.connection
        with self._uow_factory.read_only() as uow:
            stored = uow.connections.get(connection.tenant_id, branch_id=connection.branch_id)
        if stored is not None and stored.settings != connection.settings:
            self._session.adopt(dataclasses.replace(connection, settings=stored.settings))

    def _resolve(
        self, needed: tuple[str, ...], pass_: _Pass, *, payment: bool, unmatched_rate: str = ""
    ) -> QuickBooksSettings:
        """`needed` set and checked; `unmatched_rate`: the job's tax rate name QuickBooks has no rate of."""
        settings = self._session.connection.settings
        resolved: dict[str, ListRef] = {}
        kept: dict[str, ListRef] = {}  # set already, and checked: what the write relies on
        lists = _CompanyLists(self._session, pass_)
        for name in needed:
            current: ListRef = getattr(settings, name)
            if current.is_set:
                self._validate(name, current, pass_)
                kept[name] = current
                continue
            if current.name:
                # Given by name only (stored before UpdateSettings resolved names): resolved, never ignored.
                resolved[name] = self._checked(name, current, pass_)
                continue
            if name == INCOME_ITEM:
                resolved[name] = self._default_item(pass_)
            elif name == TAX_CODE:
                raise _no_tax_code(unmatched_rate)
            elif name in PAYOUT_ACCOUNT_SETTINGS:
                found = _default_account(name, lists.accounts())
                if found is None:
                    raise setting_error(name, "is not set and QuickBooks has no account to use by default: set it")
                resolved[name] = found
            elif name == ADJUSTMENT_ACCOUNT:
                # No default, as for the tips item: which account an adjustment books to is the bookkeeper's
                # choice, and a guess would misstate the books.
                raise setting_error(
                    name,
                    "is not set: a payout with an adjustment needs the account adjustments book to. Set the "
                    "adjustment account",
                )
            elif name in ACCOUNT_SETTINGS:
                # One look-up of the chart of accounts resolves every unset SPEC section 5 account at once.
                for other in ACCOUNT_SETTINGS:
                    given: ListRef = getattr(settings, other)
                    if not (given.id or given.name) and other not in resolved:
                        found = _default_account(other, lists.accounts())
                        if found is not None:
                            resolved[other] = found
                if name not in resolved:
                    raise setting_error(name, "is not set and QuickBooks has no account to use by default: set it")
            else:
                resolved[name] = _section8_default(name, lists)
        methods = self._methods(settings, pass_) if payment else {}
        if resolved or methods:
            settings = self._save(resolved, methods, kept, pass_)
        return settings

    def _methods(self, settings: QuickBooksSettings, pass_: _Pass) -> dict[PaymentMethod, ListRef]:
        """Defaults for the payment methods left unset, looked for once: a method QBO lacks is left unset,
        without asking again while the same ones are unset."""
        missing = [m for m in PaymentMethod if not settings.payment_methods.get(m, ListRef()).is_set]
        if not missing or self._known(LookupKind.PAYMENT_METHODS, "", _method_names(missing)):
            return {}
        pass_.ask()
        methods = self._default_methods(missing)
        lacking = _method_names([m for m in missing if m not in methods])
        pass_.found.append(self._lookup(LookupKind.PAYMENT_METHODS, "", lacking, ListRef()))
        return methods

    def _known(self, kind: LookupKind, name: str, against: str) -> CompanyLookup | None:
        connection = self._session.connection
        return self._lookups.known(
            connection.tenant_id, connection.realm_id, kind, name, against, branch_id=connection.branch_id
        )

    def _lookup(self, kind: LookupKind, name: str, against: str, found: ListRef) -> CompanyLookup:
        return CompanyLookup(self._session.connection.realm_id, kind, name, against, found, self._lookups.now())

    def _tax_rate(self, rate_name: str, pass_: _Pass) -> ListRef | None:
        """The active sales tax rate (TaxCode) a job's tax_rate_name names, or None. Remembered once found,
        until a write refuses it (`forget`)."""
        key = normalise(rate_name)
        known = self._known(LookupKind.TAX_RATE, key, key)
        if known is not None:
            return known.found
        pass_.ask()
        rule = LIST_SETTINGS[TAX_CODE]
        wanted = ListRef(name=rate_name.strip())
        entry = read_list_entry(self._session, ListKind.TAX_CODE, wanted)
        if entry is None or rule.problem(wanted, entry) is not None:
            return None  # not remembered: the bookkeeper told to create the rate is heeded on the next sync
        pass_.found.append(self._lookup(LookupKind.TAX_RATE, key, key, entry.ref))
        return entry.ref

    def forget(self, setting: str) -> None:
        """QuickBooks refused a reference this setting supplied: check it again next time."""
        connection = self._session.connection
        tenant_id, branch_id = connection.tenant_id, connection.branch_id
        if setting == TAX_CODE:
            # a job's rate stands in for the setting
            self._lookups.forget(tenant_id, LookupKind.TAX_RATE, branch_id=branch_id)
        self._lookups.forget(tenant_id, LookupKind.SETTING, setting, branch_id=branch_id)

    def _validate(self, name: str, current: ListRef, pass_: _Pass) -> None:
        if self._known(LookupKind.SETTING, name, current.id) is not None:
            return
        entry = self._checked(name, current, pass_)
        pass_.found.append(setting_checked(self._session.connection.realm_id, name, entry, self._lookups.now()))

    def _checked(self, name: str, current: ListRef, pass_: _Pass) -> ListRef:
        """What the setting points to in the company (its Id and name), if it may be used; else raises
        BookkeepingError naming the setting."""
        pass_.ask()
        rule = LIST_SETTINGS[name]
        entry = read_list_entry(self._session, rule.kind, current)
        problem = rule.problem(current, entry)
        if problem is not None or entry is None:
            raise setting_error(name, f"cannot be used: {problem}")
        return entry.ref

    def _default_item(self, pass_: _Pass) -> ListRef:
        pass_.ask()
        items = query_all(self._session, "Item", "Type = 'Service'", what="looking up the income item")
        named = [i for i in items if str(i.get("Name", "")).casefold() == "services"]
        chosen = (named or sorted(items, key=_id_order))[:1]
        if not chosen:
            raise setting_error(INCOME_ITEM, "is not set and QuickBooks has no service item to use: set it")
        return ListRef(str(chosen[0]["Id"]), str(chosen[0].get("Name", "")))

    def _default_methods(self, missing: list[PaymentMethod]) -> dict[PaymentMethod, ListRef]:
        records = query_all(self._session, "PaymentMethod", "", what="looking up payment methods")
        by_name = {str(r.get("Name", "")).casefold(): r for r in records}
        found: dict[PaymentMethod, ListRef] = {}
        for method in missing:
            for name in METHOD_NAMES[method]:
                record = by_name.get(name.casefold())
                if record is not None:
                    found[method] = ListRef(str(record["Id"]), str(record.get("Name", "")))
                    break
        return found

    def _save(
        self,
        resolved: dict[str, ListRef],
        methods: dict[PaymentMethod, ListRef],
        kept: dict[str, ListRef],
        pass_: _Pass,
    ) -> QuickBooksSettings:
        """Records the defaults on the stored connection, without overwriting a setting someone set since.

        Only the settings are written (`save_settings`): the tokens read here may have been rotated by a
        refresh committed since, and must not be put back. They are read locked, so that a setting an admin
        saves meanwhile is merged rather than overwritten.

        `kept`: the settings this write needs that were set already. They are recorded again where the stored
        connection lacks them: an admin's UpdateSettings may have saved settings it read before a worker
        recorded a default (it saves the whole settings), and the settings returned here — what the write is
        made with — must still hold every setting it needs (else, e.g., a payment goes with a blank
        DepositToAccountRef, which QuickBooks refuses for good)."""
        tenant_id, branch_id = self._session.connection.tenant_id, self._session.connection.branch_id
        with self._uow_factory() as uow:
            stored = uow.connections.get_for_update(tenant_id, branch_id=branch_id) or self._session.connection
            settings = stored.settings
            wanted = {**kept, **resolved}
            changes: dict[str, Any] = {n: ref for n, ref in wanted.items() if not getattr(settings, n).is_set}
            merged_methods = dict(settings.payment_methods)
            for method, ref in methods.items():
                merged_methods.setdefault(method, ref)
                if not merged_methods[method].is_set:
                    merged_methods[method] = ref
            merged = dataclasses.replace(settings, payment_methods=merged_methods, **changes)
            uow.connections.save_settings(tenant_id, merged, branch_id=branch_id)
            uow.commit()
        # Just found in the company's lists (or read by name): checked as much as a read by Id would.
        realm_id, now = stored.realm_id, self._lookups.now()
        pass_.found += [setting_checked(realm_id, name, ref, now) for name, ref in resolved.items()]
        # Only the settings changed here: the session keeps the tokens it holds.
        self._session.adopt(dataclasses.replace(self._session.connection, settings=merged))
        return merged


def _id_order(record: dict[str, Any]) -> tuple[int, str]:
    value = str(record.get("Id", ""))
    return (int(value), value) if value.isdigit() else (2**63, value)


def _default_account(setting: str, accounts: list[dict[str, Any]]) -> ListRef | None:
    def pick(matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        found = sorted((a for a in accounts if a.get("Active") is not False and matches(a)), key=_id_order)
        return found[0] if found else None

    chosen: dict[str, Any] | None
    if setting == "deposit_account":
        chosen = pick(lambda a: str(a.get("Name", "")).casefold() == "undeposited funds") or pick(
            lambda a: a.get("AccountSubType") == "UndepositedFunds"
        )
    elif setting in ("refund_bank_account", "payout_bank_account"):
        # Payouts, like refunds, default to the checking account: the one a processor pays into unless told.
        chosen = pick(lambda a: a.get("AccountType") == "Bank" and str(a.get("Name", "")).casefold() == "checking")
        chosen = chosen or pick(lambda a: a.get("AccountType") == "Bank")
    else:
        # accounts_receivable_account, and chargeback_account: refunds and chargebacks a payout nets reverse
        # payments customers made, so by default they go back on Accounts Receivable — where qbsync books a
        # refund's expense too (Intuit's guidance on refunding a deposit) — reopening the customer's balance
        # rather than hiding a loss in an expense the bookkeeper did not choose. *verify*: QBO may want a
        # customer (DepositLineDetail.Entity) on a deposit line booked to A/R, as it does on a journal entry's.
        chosen = pick(lambda a: a.get("AccountType") == "Accounts Receivable")
    return ListRef(str(chosen["Id"]), str(chosen.get("Name", ""))) if chosen else None


class _CompanyLists:
    """The chart of accounts and the sales items, each read at most once while settings are resolved."""

    def __init__(self, session: CompanySession, pass_: _Pass) -> None:
        self._session = session
        self._pass = pass_
        self._accounts: list[dict[str, Any]] | None = None
        self._items: list[ListEntry] | None = None

    def accounts(self) -> list[dict[str, Any]]:
        if self._accounts is None:
            self._pass.ask()
            self._accounts = query_all(self._session, "Account", "", what="looking up the chart of accounts")
        return self._accounts

    def items(self) -> list[ListEntry]:
        if self._items is None:
            self._pass.ask()
            where = "Type IN ('Service', 'NonInventory')"
            rows = query_all(self._session, "Item", where, what="looking up items")
            self._items = [list_entry(ListKind.ITEM, row) for row in rows]
        return self._items


def _method_names(methods: list[PaymentMethod]) -> str:
    return ",".join(sorted(m.value for m in methods))


def _no_tax_code(unmatched_rate: str) -> BookkeepingError:
    # No default: which rate a job is taxed at is the bookkeeper's to say, never a guess.
    if unmatched_rate:
        return setting_error(
            TAX_CODE,
            f"is not set, and the job's tax rate {unmatched_rate!r} is no active sales tax rate in QuickBooks: "
            "create that rate in QuickBooks, or set the tax code",
        )
    return setting_error(
        TAX_CODE,
        "is not set: this company's sales tax is manual, so a taxed invoice must name a sales tax rate. Set the "
        "tax code, or send the job's tax_rate_name",
    )


def _section8_default(setting: str, lists: _CompanyLists) -> ListRef:
    """An unset SPEC section 8 item or account setting's default; raises BookkeepingError naming the
    setting when the company has none."""
    rule = LIST_SETTINGS[setting]
    names = " or ".join(repr(n) for n in DEFAULT_NAMES[setting])
    if rule.kind is ListKind.ITEM:
        found = _default_by_name(setting, lists.items())
        if found is None:
            raise setting_error(
                setting,
                f"is not set and QuickBooks has no item named {names} to use by default: {_ITEM_ADVICE[setting]}",
            )
        return found
    found = _default_by_name(setting, [list_entry(ListKind.ACCOUNT, row) for row in lists.accounts()])
    if found is None:
        raise setting_error(
            setting,
            f"is not set and QuickBooks has no {rule.types[0]} account named {names} to use by default: create one "
            "in QuickBooks or set it",
        )
    return found


def _default_by_name(setting: str, entries: list[ListEntry]) -> ListRef | None:
    """A SPEC section 8 setting's default among the active `entries`: the first of its names (in order)
    held by an entry its rule accepts, else the lowest-Id accepted entry of its AccountSubType, if any."""
    rule = LIST_SETTINGS[setting]
    usable = sorted(
        (e for e in entries if e.active and rule.problem(e.ref, e) is None),
        key=lambda e: (int(e.id), e.id) if e.id.isdigit() else (2**63, e.id),
    )
    for name in DEFAULT_NAMES[setting]:
        wanted = normalise(name)
        for entry in usable:
            if wanted in (normalise(entry.name), normalise(leaf_name(entry.name))):
                return entry.ref
    sub_type = DEFAULT_SUB_TYPES.get(setting)
    by_type = [e for e in usable if sub_type and e.sub_type == sub_type]
    return by_type[0].ref if by_type else None


__all__ = ["SettingsResolver", "setting_error", "settings_maybe_used", "settings_needed", "escape"]
