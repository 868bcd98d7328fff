"""Injector modules that bind the coordination ports, `RequestLimiter` and `CompanyLock`, for one deployment.

How far they must reach depends on how many processes share the work: on PostgreSQL many processes share
the queue, so the QuickBooks request limits and the token-refresh lock must hold across all of them (they
are kept in the database, `PostgresCoordinationModule`); on SQLite and in memory one process does the work,
and in-process ones are enough (`InProcessCoordinationModule`). The composition root chooses one, once,
from the database URL; the QuickBooks adapter uses what is bound.

Neither module does I/O when it is built or imported: the PostgreSQL engine is created the first time the
injector is asked for the limiter or the lock, and connects on first use.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from injector import Module, provider, singleton

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from core.ports import CompanyLock, RateLimits, RequestLimiter

if TYPE_CHECKING:
    from sqlalchemy import Engine

# A request slot outlives its request by this much at most when its process dies: twice the QuickBooks
# adapter's default HTTP timeout (30 s), so a slow but live request never loses its slot.
DEFAULT_SLOT_LEASE = timedelta(seconds=60)
# Intuit's own limits per company, the deployment's unless it is given lower ones.
INTUIT_RATE_LIMITS = RateLimits()


class InProcessCoordinationModule(Module):
    """Limits and locks shared by the threads of this process: for SQLite and the in-memory fake."""

    def __init__(self, rate_limits: RateLimits = INTUIT_RATE_LIMITS) -> None:
        self._rate_limits = rate_limits

    @singleton
    @provider
    def request_limiter(self) -> RequestLimiter:
        return InProcessRequestLimiter(self._rate_limits)

    @singleton
    @provider
    def company_lock(self) -> CompanyLock:
        return InProcessCompanyLock()


class PostgresCoordinationModule(Module):
    """Limits and locks kept in the PostgreSQL database at `database_url`, so that they hold for every
    process of the deployment. `rate_limits` are per QuickBooks company; `slot_lease` is how long a dead
    process' request slot is kept."""

    def __init__(
        self,
        database_url: str,
        rate_limits: RateLimits = INTUIT_RATE_LIMITS,
        *,
        slot_lease: timedelta = DEFAULT_SLOT_LEASE,
    ) -> None:
        self.database_url = database_url
        self._rate_limits = rate_limits
        self._slot_lease = slot_lease
        self._engine_or_none: Engine | None = None
        self._limiter_engine_or_none: Engine | None = None
        self._engine_guard = threading.Lock()

    @singleton
    @provider
    def request_limiter(self) -> RequestLimiter:
        # Imported here so that choosing the in-process module never imports SQLAlchemy.
        from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter

        return PostgresRequestLimiter(self._limiter_engine(), self._rate_limits, slot_lease=self._slot_lease)

    @singleton
    @provider
    def company_lock(self) -> CompanyLock:
        from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock

        return PostgresCompanyLock(self._engine())

    def _engine(self) -> Engine:
        """The limiter's and lock's own engine (no connection until first used), apart from the units of
        work's: a thread waiting for room at QuickBooks, or holding a company's lock through a token
        refresh, never takes a connection the units of work need, so the two pools cannot starve each other
        into a deadlock."""
        from adapters.persistence.sqlalchemy import create_engine_for

        with self._engine_guard:
            if self._engine_or_none is None:
                self._engine_or_none = create_engine_for(self.database_url)
            return self._engine_or_none

    def _limiter_engine(self) -> Engine:
        """The limiter's pool, apart from the lock's for the same reason, and without a ping before each use:
        that would be a second round trip per QuickBooks request (the limiter retries once on a connection
        the database dropped instead)."""
        from adapters.persistence.sqlalchemy import create_engine_for

        with self._engine_guard:
            if self._limiter_engine_or_none is None:
                self._limiter_engine_or_none = create_engine_for(self.database_url, pool_pre_ping=False)
            return self._limiter_engine_or_none
