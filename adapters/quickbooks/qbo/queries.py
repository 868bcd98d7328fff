"""QBO queries: string literals escaped, and results paged past QBO's 100-row default."""

from __future__ import annotations

from typing import Any

from adapters.quickbooks.qbo.calls import CompanySession

PAGE_SIZE = 1000  # QBO's maximum MAXRESULTS


def escape(value: str) -> str:
    r"""A QBO query string literal's contents: backslash and quote escaped with a backslash (O'Brien →
    O\'Brien). python-quickbooks escapes only the quote, so a name ending in a backslash would swallow the
    closing quote."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def page_select(entity: str, where: str, *, order_by: str = "", start: int = 1) -> str:
    """The SELECT of one page (of PAGE_SIZE rows from `start`), as a query or a batch item sends it."""
    select = f"SELECT * FROM {entity}"
    if where:
        select += f" WHERE {where}"
    if order_by:
        select += f" ORDERBY {order_by}"
    return select + f" STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}"


def query_page(
    session: CompanySession, entity: str, where: str, *, order_by: str = "", start: int = 1, what: str
) -> list[dict[str, Any]]:
    select = page_select(entity, where, order_by=order_by, start=start)
    answer = session.call(lambda qb: qb.query(select), write=False, what=what)
    rows = (answer or {}).get("QueryResponse", {}).get(entity, [])
    return list(rows)


def query_all(
    session: CompanySession, entity: str, where: str, *, order_by: str = "", what: str
) -> list[dict[str, Any]]:
    """Every row, 1000 at a time."""
    rows: list[dict[str, Any]] = []
    start = 1
    while True:
        page = query_page(session, entity, where, order_by=order_by, start=start, what=what)
        rows.extend(page)
        if len(page) < PAGE_SIZE:
            return rows
        start += PAGE_SIZE
