"""Which of qbsync's records are still live in QuickBooks: one query by Id (AccountingSystem.read_live,
active_customers).

QBO's query language takes `Id IN ('1', '2')`; a deleted record is absent from the answer, a voided one is
there with the signs `is_voided` reads. Refunds are Purchases (an expense or a check, by PaymentType):
a row of the other kind is not the record asked for.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession
from adapters.quickbooks.qbo.mapping import entity_name, is_voided, kind_of
from adapters.quickbooks.qbo.queries import PAGE_SIZE, escape, query_page
from core.accounting import QuickBooksAmounts, QuickBooksRef, TxnKind
from core.money import ZERO


def read_live(session: CompanySession, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksRef]:
    entity = entity_name(kind)
    live: dict[str, QuickBooksRef] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), PAGE_SIZE):  # one query per page of Ids: one for any resync
        listed = ", ".join(f"'{escape(i)}'" for i in wanted[start : start + PAGE_SIZE])
        rows = query_page(session, entity, f"Id IN ({listed})", what=f"checking that a {entity} is still live")
        for row in rows:
            if kind_of(entity, row) is kind and not is_voided(row):
                live[str(row["Id"])] = QuickBooksRef(kind, str(row["Id"]), str(row.get("SyncToken", "0")))
    return live


def active_customers(session: CompanySession, ids: list[str]) -> set[str]:
    """Customers are never deleted in QBO, only made inactive; a query names Active to see those too, so
    asking for `Active = true` is explicit about what counts."""
    active: set[str] = set()
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), PAGE_SIZE):
        listed = ", ".join(f"'{escape(i)}'" for i in wanted[start : start + PAGE_SIZE])
        rows = query_page(
            session, "Customer", f"Id IN ({listed}) AND Active = true", what="checking that a customer is active"
        )
        active.update(str(row["Id"]) for row in rows)
    return active


def read_amounts(session: CompanySession, kind: TxnKind, ids: list[str]) -> dict[str, QuickBooksAmounts]:
    """The books' amounts of qbsync's records (ReconcileCompany): TotalAmt, an invoice's Balance or a payment's
    UnappliedAmt, and what their lines link (a payment's invoices and refund expenses, a deposit's payments),
    from the same one query per page of Ids as `read_live`; voided rows are kept and said so."""
    entity = entity_name(kind)
    amounts: dict[str, QuickBooksAmounts] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), PAGE_SIZE):
        listed = ", ".join(f"'{escape(i)}'" for i in wanted[start : start + PAGE_SIZE])
        rows = query_page(session, entity, f"Id IN ({listed})", what=f"reading the amounts of a {entity}")
        for row in rows:
            if kind_of(entity, row) is kind:
                amounts[str(row["Id"])] = _amounts_of(kind, row)
    return amounts


def _amounts_of(kind: TxnKind, row: dict[str, Any]) -> QuickBooksAmounts:
    linked = ZERO
    linked_ids: set[str] = set()
    for line in row.get("Line") or ():
        links = [link for link in line.get("LinkedTxn") or () if link.get("TxnId")]
        if links:
            linked += _decimal(line.get("Amount"))
            linked_ids.update(str(link["TxnId"]) for link in links)
    open_amount = ZERO
    if kind is TxnKind.INVOICE:
        open_amount = _decimal(row.get("Balance"))
    elif kind is TxnKind.PAYMENT:
        open_amount = _decimal(row.get("UnappliedAmt"))
    customer = row.get("CustomerRef") or row.get("EntityRef") or {}
    return QuickBooksAmounts(
        _decimal(row.get("TotalAmt")),
        open=open_amount,
        linked=linked if kind is TxnKind.PAYMENT else ZERO,
        linked_ids=frozenset(linked_ids),
        voided=is_voided(row),
        customer_id=str(customer.get("value") or ""),
    )


def _decimal(value: object) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO
