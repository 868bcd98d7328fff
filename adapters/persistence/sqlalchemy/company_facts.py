"""The company facts of each tenant (core.connection.CompanyFacts) kept in this process for a few seconds, so
that every SyncPayment does not read its connection's row again (issue 12).

What a change costs: one made by this process (a connect, a preferences read, a token refused) is seen at
once - the unit of work that commits it drops the tenant here. One made by another process (the CLI's
`qbsync connect`, a worker reading the preferences) is seen within TTL_SECONDS: until then an accept is
judged by the facts it replaced. The checks they feed are guards before a job is queued (SPEC §7, §8); the
worker judges the job again against QuickBooks itself.

Hand-written rather than a library's TTL cache: it needs the generation check below (a read that began
before a drop must not store what it read), which a plain TTL map does not give.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, bindparam, select

from adapters.persistence.sqlalchemy.engine import READ_ONLY
from adapters.persistence.sqlalchemy.models import QuickBooksConnectionRow
from core.company_tax import SalesTax
from core.connection import CompanyFacts, ConnectionState
from core.currency import CompanyCurrency

TTL_SECONDS = 5.0

# The four columns, not the row: the facts need no secret, hence no decryption.
_FACTS = select(
    QuickBooksConnectionRow.state,
    QuickBooksConnectionRow.home_currency,
    QuickBooksConnectionRow.multicurrency,
    QuickBooksConnectionRow.sales_tax,
).where(QuickBooksConnectionRow.tenant_id == bindparam("tenant_id"))


def read_company_facts(engine: Engine, tenant_id: str) -> CompanyFacts | None:
    """The tenant's facts as stored now, in a read-only transaction (no write lock on SQLite)."""
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        row = connection.execute(_FACTS, {"tenant_id": tenant_id}).first()
    if row is None:
        return None
    state, home, multicurrency, sales_tax = row
    return CompanyFacts(
        ConnectionState(state),
        CompanyCurrency(home, multicurrency),
        None if sales_tax is None else SalesTax(sales_tax),
    )


class CompanyFactsCache:
    """Per tenant: the facts and when they stop being trusted. Thread-safe (the gRPC threads share it)."""

    def __init__(self, ttl_seconds: float = TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, CompanyFacts | None]] = {}
        # Bumped by every drop: a read that started before one does not store its (maybe older) answer.
        self._generation = 0

    def get(self, tenant_id: str, read: Callable[[str], CompanyFacts | None]) -> CompanyFacts | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and entry[0] > now:
                return entry[1]
            generation = self._generation
        facts = read(tenant_id)  # outside the lock: a slow read must not hold up other tenants
        with self._lock:
            if generation == self._generation:
                self._entries[tenant_id] = (now + self._ttl, facts)
        return facts

    def drop(self, tenant_ids: set[str]) -> None:
        """Forgets what the process just changed (called after the commit that changed it)."""
        with self._lock:
            self._generation += 1
            for tenant_id in tenant_ids:
                self._entries.pop(tenant_id, None)


_CACHES: dict[str, CompanyFactsCache] = {}
_CACHES_GUARD = threading.Lock()


def cache_for(engine: Engine) -> CompanyFactsCache:
    """The process's cache for `engine`'s database: one per URL (a PostgreSQL schema is in it, as the
    search_path option), so units of work of every factory and engine on one database drop from one cache."""
    key = engine.url.render_as_string(hide_password=False)
    with _CACHES_GUARD:
        return _CACHES.setdefault(key, CompanyFactsCache())
