"""Injector modules that bind the `UnitOfWorkFactory` port to one persistence adapter, and the coordination
ports (`RequestLimiter`, `CompanyLock`) to what that database can offer.

The coordination ports live here because how far they must reach depends on the database: on PostgreSQL
many processes share the queue, so the QuickBooks request limits and the token-refresh lock must hold
across all of them (they are kept in the database); on SQLite and in memory one process does the work, and
in-process ones are enough.

Neither module does I/O when it is built or imported: engines are created the first time the injector is
asked for something that needs them (and once only: each owns a connection pool).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from injector import Module, provider, singleton

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.encryption import SecretBox
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from core.ports import CompanyLock, RateLimits, RequestLimiter, UnitOfWorkFactory

if TYPE_CHECKING:
    from sqlalchemy import Engine

# A request slot outlives its request by this much at most when its process dies: twice the QuickBooks
# adapter's default HTTP timeout (30 s), so a slow but live request never loses its slot.
DEFAULT_SLOT_LEASE = timedelta(seconds=60)


class InMemoryPersistenceModule(Module):
    """Everything in process memory: for tests and demos that need no database."""

    def __init__(self, rate_limits: RateLimits | None = None) -> None:
        self._rate_limits = rate_limits or RateLimits()

    @singleton
    @provider
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        return InMemoryUnitOfWorkFactory()

    @singleton
    @provider
    def request_limiter(self) -> RequestLimiter:
        return InProcessRequestLimiter(self._rate_limits)

    @singleton
    @provider
    def company_lock(self) -> CompanyLock:
        return InProcessCompanyLock()


class SqlAlchemyPersistenceModule(Module):
    """SQLite or PostgreSQL at `database_url`. The schema is not migrated here: that is `qbsync migrate`'s
    (or the composition root's) decision, made once, not on every injector.

    The QuickBooks secrets are encrypted with `encryption_keys` (the first encrypts, all decrypt), or,
    when none are given, with a key generated into `key_file` the first time a secret is stored.
    `rate_limits` are per QuickBooks company; on PostgreSQL they hold for the whole deployment.
    """

    def __init__(
        self,
        database_url: str,
        encryption_keys: Sequence[str] = (),
        key_file: Path = Path("var/secret.key"),
        *,
        rate_limits: RateLimits | None = None,
        request_slot_lease: timedelta = DEFAULT_SLOT_LEASE,
    ) -> None:
        self.database_url = database_url
        self._secrets = SecretBox(encryption_keys, key_file)  # lazy: reads no key until first used
        self._rate_limits = rate_limits or RateLimits()
        self._slot_lease = request_slot_lease
        self._coordination_engine: Engine | None = None
        self._engine_guard = threading.Lock()

    @property
    def shared_coordination(self) -> bool:
        """Whether the limits and locks must hold across processes (PostgreSQL) or only in this one."""
        from adapters.persistence.sqlalchemy.engine import normalise_url

        return normalise_url(self.database_url).get_backend_name() == "postgresql"

    @singleton
    @provider
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        # Imported here so that choosing the in-memory module never imports SQLAlchemy.
        from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for

        return SqlAlchemyUnitOfWorkFactory(create_engine_for(self.database_url), self._secrets)

    @singleton
    @provider
    def request_limiter(self) -> RequestLimiter:
        if not self.shared_coordination:
            return InProcessRequestLimiter(self._rate_limits)
        from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter

        return PostgresRequestLimiter(self._engine(), self._rate_limits, slot_lease=self._slot_lease)

    @singleton
    @provider
    def company_lock(self) -> CompanyLock:
        if not self.shared_coordination:
            return InProcessCompanyLock()
        from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock

        return PostgresCompanyLock(self._engine())

    def _engine(self) -> Engine:
        """The limiter's and lock's own engine (no connection until first used): a thread waiting for room
        at QuickBooks, or holding a company's lock through a token refresh, never takes a connection the
        units of work need, so the two pools cannot starve each other into a deadlock."""
        from adapters.persistence.sqlalchemy import create_engine_for

        with self._engine_guard:
            if self._coordination_engine is None:
                self._coordination_engine = create_engine_for(self.database_url)
            return self._coordination_engine
