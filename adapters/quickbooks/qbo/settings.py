"""The tenant's account mapping, resolved against the company on first use and validated once per process.

An unset setting gets its default, found by name or type in the company's lists (SPEC.md section 5), and
the result is saved on the connection so that later syncs need no look-ups. A configured setting is read
once per process (per value) to check it exists, is active and has the right type — by the same rules
and the same read as UpdateSettings (core.company_lists, lists.py), since it may have changed in
QuickBooks since it was set: a wrong one fails the sync with a message naming the setting, which is what
a bookkeeper can fix. A setting stored with a name and no Id is resolved by that name, never ignored.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.lists import read_list_entry
from adapters.quickbooks.qbo.queries import escape, query_all
from core.accounting import TxnKind
from core.company_lists import LIST_SETTINGS, ListKind
from core.connection import ListRef, QuickBooksSettings
from core.domain import PaymentMethod
from core.errors import BookkeepingError
from core.ports import UnitOfWorkFactory

SETTING_INVALID = "QUICKBOOKS_SETTING_INVALID"

# The settings that point to an account; what each may point to is core.company_lists' rule, the same one
# UpdateSettings applies.
ACCOUNT_SETTINGS = tuple(name for name, rule in LIST_SETTINGS.items() if rule.kind is ListKind.ACCOUNT)
INCOME_ITEM = "income_item"
LABELS = {name: rule.label for name, rule in LIST_SETTINGS.items()}

NEEDED: dict[TxnKind, tuple[str, ...]] = {
    TxnKind.PAYMENT: ("deposit_account",),
    TxnKind.EXPENSE: ("refund_bank_account", "accounts_receivable_account"),
    TxnKind.CHECK: ("refund_bank_account", "accounts_receivable_account"),
    TxnKind.INVOICE: (INCOME_ITEM,),
}

# QBO payment method names tried, in order, for each CRM method.
METHOD_NAMES: dict[PaymentMethod, tuple[str, ...]] = {
    PaymentMethod.CASH: ("Cash",),
    PaymentMethod.CHECK: ("Check",),
    PaymentMethod.CREDIT_CARD: ("Credit Card",),
    PaymentMethod.ACH: ("ACH", "Other"),
    PaymentMethod.OTHER: ("Other",),
}


def setting_error(setting: str, problem: str) -> BookkeepingError:
    return BookkeepingError(f"the {LABELS.get(setting, setting)} setting {problem}", reason=SETTING_INVALID)


class SettingsResolver:
    """Resolves and validates one tenant's settings; `validated` is shared by the process."""

    def __init__(
        self,
        session: CompanySession,
        uow_factory: UnitOfWorkFactory,
        validated: set[tuple[str, str, str]],
        validated_guard: threading.Lock,
    ) -> None:
        self._session = session
        self._uow_factory = uow_factory
        self._validated = validated
        self._validated_guard = validated_guard
        self._methods_looked_up = False

    def for_kind(self, kind: TxnKind) -> QuickBooksSettings:
        """The settings, with everything a `kind` record needs set and checked (raises BookkeepingError)."""
        settings = self._session.connection.settings
        resolved: dict[str, ListRef] = {}
        accounts: list[dict[str, Any]] | None = None
        for name in NEEDED[kind]:
            current: ListRef = getattr(settings, name)
            if current.is_set:
                self._validate(name, current)
                continue
            if current.name:
                # Given by name only (stored before UpdateSettings resolved names): resolved, never ignored.
                resolved[name] = self._checked(name, current)
                continue
            if name == INCOME_ITEM:
                resolved[name] = self._default_item()
                continue
            if accounts is None:
                accounts = query_all(self._session, "Account", "", what="looking up the chart of accounts")
            # One look-up of the chart of accounts resolves every unset account setting at once.
            for other in ACCOUNT_SETTINGS:
                given: ListRef = getattr(settings, other)
                if not (given.id or given.name) and other not in resolved:
                    found = _default_account(other, accounts)
                    if found is not None:
                        resolved[other] = found
            if name not in resolved:
                raise setting_error(name, "is not set and QuickBooks has no account to use by default: set it")
        methods: dict[PaymentMethod, ListRef] = {}
        if kind is TxnKind.PAYMENT and not self._methods_looked_up:
            missing = [m for m in PaymentMethod if not settings.payment_methods.get(m, ListRef()).is_set]
            if missing:
                methods = self._default_methods(missing)
            self._methods_looked_up = True  # a method QBO lacks is left unset, without asking again
        if resolved or methods:
            settings = self._save(resolved, methods)
        return settings

    def forget(self, setting: str) -> None:
        """QuickBooks refused a reference this setting supplied: check it again next time."""
        with self._validated_guard:
            for key in [k for k in self._validated if k[1] == setting]:
                self._validated.discard(key)

    def _validate(self, name: str, current: ListRef) -> None:
        key = (self._session.connection.realm_id, name, current.id)
        with self._validated_guard:
            if key in self._validated:
                return
        self._checked(name, current)
        with self._validated_guard:
            self._validated.add(key)

    def _checked(self, name: str, current: ListRef) -> ListRef:
        """What the setting points to in the company (its Id and name), if it may be used; else raises
        BookkeepingError naming the setting."""
        rule = LIST_SETTINGS[name]
        entry = read_list_entry(self._session, rule.kind, current)
        problem = rule.problem(current, entry)
        if problem is not None or entry is None:
            raise setting_error(name, f"cannot be used: {problem}")
        return entry.ref

    def _default_item(self) -> ListRef:
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

    def _save(self, resolved: dict[str, ListRef], methods: dict[PaymentMethod, ListRef]) -> QuickBooksSettings:
        """Records the defaults on the stored connection, without overwriting a setting someone set since.

        Only the settings are written (`save_settings`): the tokens read here may have been rotated by a
        refresh committed since, and must not be put back. They are read locked, so that a setting an admin
        saves meanwhile is merged rather than overwritten."""
        tenant_id = self._session.connection.tenant_id
        with self._uow_factory() as uow:
            stored = uow.connections.get_for_update(tenant_id) or self._session.connection
            settings = stored.settings
            changes: dict[str, Any] = {n: ref for n, ref in resolved.items() if not getattr(settings, n).is_set}
            merged_methods = dict(settings.payment_methods)
            for method, ref in methods.items():
                merged_methods.setdefault(method, ref)
                if not merged_methods[method].is_set:
                    merged_methods[method] = ref
            merged = dataclasses.replace(settings, payment_methods=merged_methods, **changes)
            uow.connections.save_settings(tenant_id, merged)
            uow.commit()
        with self._validated_guard:
            for name, ref in resolved.items():
                self._validated.add((stored.realm_id, name, ref.id))
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
    elif setting == "refund_bank_account":
        chosen = pick(lambda a: a.get("AccountType") == "Bank" and str(a.get("Name", "")).casefold() == "checking")
        chosen = chosen or pick(lambda a: a.get("AccountType") == "Bank")
    else:
        chosen = pick(lambda a: a.get("AccountType") == "Accounts Receivable")
    return ListRef(str(chosen["Id"]), str(chosen.get("Name", ""))) if chosen else None


__all__ = ["SettingsResolver", "setting_error", "escape"]
