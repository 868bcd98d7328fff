"""The company facts of each tenant's branch (core.connection.CompanyFacts: of the connection the branch's syncs
go to, SPEC §10) kept in this process for a few seconds, so that every SyncPayment does not read its
connection's row again (issue 12).

What a change costs: one made by this process (a connect, a preferences read, a token refused) is seen at
once - the unit of work that commits it drops that connection's branch here, and every branch of the tenant
when it is the default connection (the branches without one of their own were answered from it). One made
by another process (the CLI's `qbsync connect`, a worker reading the preferences) is seen within
TTL_SECONDS: until then an accept is judged by the facts it replaced. The checks they feed are guards
before a job is queued (SPEC §7, §8); the worker judges the job again against QuickBooks itself.

Hand-written rather than a library's TTL cache: it needs the generation check below (a read that began
before a drop must not store what it read), which a plain TTL map does not give.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, select

from adapters.persistence.sqlalchemy.connections import routed_to_branch
from adapters.persistence.sqlalchemy.engine import READ_ONLY
from adapters.persistence.sqlalchemy.models import QuickBooksConnectionRow
from core.company_tax import SalesTax
from core.connection import CompanyFacts, ConnectionState
from core.currency import CompanyCurrency

TTL_SECONDS = 5.0

# The five columns, not the row: the facts need no secret, hence no decryption.
_FACTS = routed_to_branch(
    select(
        QuickBooksConnectionRow.state,
        QuickBooksConnectionRow.home_currency,
        QuickBooksConnectionRow.multicurrency,
        QuickBooksConnectionRow.sales_tax,
        QuickBooksConnectionRow.branch_id,  # the connection's: the branch's own, or the default's ""
    )
)

Branch = tuple[str, str]  # (tenant_id, branch_id)


def read_company_facts(engine: Engine, branch: Branch) -> CompanyFacts | None:
    """The branch's facts as stored now, in a read-only transaction (no write lock on SQLite)."""
    tenant_id, branch_id = branch
    with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        row = connection.execute(_FACTS, {"tenant_id": tenant_id, "branch_id": branch_id}).first()
    if row is None:
        return None
    state, home, multicurrency, sales_tax, connection_branch = row
    return CompanyFacts(
        ConnectionState(state),
        CompanyCurrency(home, multicurrency),
        None if sales_tax is None else SalesTax(sales_tax),
        connection_branch,
    )


class CompanyFactsCache:
    """Per (tenant, branch): the facts and when they stop being trusted. Thread-safe (the gRPC threads share
    it)."""

    def __init__(self, ttl_seconds: float = TTL_SECONDS) -> None:
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._entries: dict[Branch, tuple[float, CompanyFacts | None]] = {}
        # Bumped by every drop: a read that started before one does not store its (maybe older) answer.
        self._generation = 0

    def get(self, branch: Branch, read: Callable[[Branch], CompanyFacts | None]) -> CompanyFacts | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(branch)
            if entry is not None and entry[0] > now:
                return entry[1]
            generation = self._generation
        facts = read(branch)  # outside the lock: a slow read must not hold up other tenants
        with self._lock:
            if generation == self._generation:
                self._entries[branch] = (now + self._ttl, facts)
        return facts

    def drop(self, connections: set[Branch]) -> None:
        """Forgets what the process just changed, `connections` by (tenant_id, branch_id) (called after the
        commit that changed them): a branch's own connection answers for that branch alone, the default one
        for every branch of its tenant without one."""
        defaults = {tenant_id for tenant_id, branch_id in connections if not branch_id}
        with self._lock:
            self._generation += 1
            for key in connections:
                self._entries.pop(key, None)
            if defaults:  # a scan, but only for a write of a default connection (a connect, a refresh)
                for key in [k for k in self._entries if k[0] in defaults]:
                    del self._entries[key]


_CACHES: dict[str, CompanyFactsCache] = {}
_CACHES_GUARD = threading.Lock()


def cache_for(engine: Engine) -> CompanyFactsCache:
    """The process's cache for `engine`'s database: one per URL (a PostgreSQL schema is in it, as the
    search_path option), so units of work of every factory and engine on one database drop from one cache."""
    key = engine.url.render_as_string(hide_password=False)
    with _CACHES_GUARD:
        return _CACHES.setdefault(key, CompanyFactsCache())
