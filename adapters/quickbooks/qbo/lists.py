"""The company's lists (chart of accounts, items, payment methods) read for the settings that point into
them: one read by Id, or one query by name.

Shared by `UpdateSettings` (through `QuickBooksAccountingSystem.find_list_entry`) and the sync-time check
of the settings (`settings.py`), so that both see an entry the same way and judge it by the same rules
(core.company_lists).
"""

from __future__ import annotations

from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.queries import escape, query_all
from adapters.quickbooks.qbo.transport import QboFault
from core.company_lists import ListEntry, ListKind, leaf_name, pick_by_name
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
    return ListEntry(
        kind,
        str(row.get("Id", "")),
        str(row.get("FullyQualifiedName") or row.get("Name") or ""),
        row.get("Active") is not False,
        str(row.get("AccountType") or row.get("Type") or ""),
        str(row.get("AccountSubType") or ""),
        str((row.get("IncomeAccountRef") or {}).get("value") or ""),
    )


def _by_id(session: CompanySession, kind: ListKind, entry_id: str) -> ListEntry | None:
    # QBO Ids are decimal numbers; anything else names nothing, and is not put into a URL path.
    if not (entry_id.isascii() and entry_id.isdigit()):
        return None
    entity = kind.value
    try:
        answer = session.call(
            lambda qb: qb.get_single_object(entity, entry_id), write=False, what=f"reading {entity} {entry_id}"
        )
    except QboFault as fault:
        if "610" in fault.codes:  # Object Not Found
            return None
        raise BookkeepingError(f"QuickBooks refused to read {entity} {entry_id}: {fault}") from None
    row = (answer or {}).get(entity)
    return list_entry(kind, row) if row else None


def _by_name(session: CompanySession, kind: ListKind, name: str) -> ListEntry | None:
    """QBO's Name is an entry's own name (the last level), so that is what the query asks for; inactive
    entries are included so that the caller can be told the entry is inactive rather than missing."""
    leaf = " ".join(leaf_name(name).split())  # spacing is ignored, as the fake and the core's rule do
    if not leaf:
        return None
    where = f"Name = '{escape(leaf)}' AND Active IN (true, false)"
    rows = query_all(session, kind.value, where, what=f"looking up the {kind.value} named {name!r}")
    return pick_by_name((list_entry(kind, row) for row in rows), name)
