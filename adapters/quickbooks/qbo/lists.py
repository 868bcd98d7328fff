"""The company's lists (chart of accounts, items, payment methods, tax codes) read for the settings that
point into them: one read by Id, or one query by name.

Shared by `UpdateSettings` (through `QuickBooksAccountingSystem.find_list_entry`) and the sync-time check
of the settings (`settings.py`), so that both see an entry the same way and judge it by the same rules
(core.company_lists).
"""

from __future__ import annotations

from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.queries import escape, query_all
from adapters.quickbooks.qbo.transport import QboFault, tagged
from core.company_lists import TAX_CODE_PSEUDO, TAX_CODE_RATE, ListEntry, ListKind, leaf_name, pick_by_name
from core.connection import ListRef
from core.errors import BookkeepingError


def read_list_entry(session: CompanySession, kind: ListKind, ref: ListRef) -> ListEntry | None:
    """The entry `ref` names, active or not (the port's `find_list_entry`): by Id when it has one, else by
    name. None when QuickBooks has none."""
    if ref.id:
        return _by_id(session, kind, ref.id)
    return _by_name(session, kind, ref.name)


def list_entry(kind: ListKind, row: dict[str, Any]) -> ListEntry:
    """A list record as QBO's JSON has it."""
    kind_of_entry = str(row.get("AccountType") or row.get("Type") or "")
    if kind is ListKind.TAX_CODE:
        kind_of_entry = _tax_code_type(row)
    return ListEntry(
        kind,
        str(row.get("Id", "")),
        str(row.get("FullyQualifiedName") or row.get("Name") or ""),
        row.get("Active") is not False,
        kind_of_entry,
        str(row.get("AccountSubType") or ""),
        str((row.get("IncomeAccountRef") or {}).get("value") or ""),
    )


# Intuit's TaxCode page: TaxGroup "false—this object represents pseudo-tax codes TAX and NON" (default
# true). The pseudo codes' Ids are their names, so they are known by Id too, should TaxGroup be left out.
_PSEUDO_TAX_CODES = frozenset({"TAX", "NON"})


def _tax_code_type(row: dict[str, Any]) -> str:
    if row.get("TaxGroup") is False or str(row.get("Id", "")) in _PSEUDO_TAX_CODES:
        return TAX_CODE_PSEUDO
    return TAX_CODE_RATE


def _usable_id(kind: ListKind, entry_id: str) -> bool:
    """QBO Ids are decimal numbers, except tax codes' (Intuit's TaxCode query answers Ids "TAX", "NON",
    "CustomSalesTax"): letters and digits then. Anything else names nothing, and is not put into a URL."""
    if not entry_id.isascii():
        return False
    return entry_id.isalnum() if kind is ListKind.TAX_CODE else entry_id.isdigit()


def _by_id(session: CompanySession, kind: ListKind, entry_id: str) -> ListEntry | None:
    if not _usable_id(kind, entry_id):
        return None
    entity = kind.value
    try:
        answer = session.call(
            lambda qb: qb.get_single_object(entity, entry_id), write=False, what=f"reading {entity} {entry_id}"
        )
    except QboFault as fault:
        if "610" in fault.codes:  # Object Not Found
            return None
        refused = BookkeepingError(f"QuickBooks refused to read {entity} {entry_id}: {fault}")
        raise tagged(refused, fault.intuit_tid) from None
    row = (answer or {}).get(entity)
    return list_entry(kind, row) if row else None


def _by_name(session: CompanySession, kind: ListKind, name: str) -> ListEntry | None:
    """QBO's Name is an entry's own name (the last level), so that is what the query asks for; inactive
    entries are included so that the caller can be told the entry is inactive rather than missing (TaxCode's
    Active is filterable too, Intuit's page says)."""
    leaf = " ".join(leaf_name(name).split())  # spacing is ignored, as the fake and the core's rule do
    if not leaf:
        return None
    where = f"Name = '{escape(leaf)}' AND Active IN (true, false)"
    rows = query_all(session, kind.value, where, what=f"looking up the {kind.value} named {name!r}")
    return pick_by_name((list_entry(kind, row) for row in rows), name)
