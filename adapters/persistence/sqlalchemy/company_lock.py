"""A `CompanyLock` held across every process sharing one PostgreSQL database: a session advisory lock.

`pg_advisory_lock` is taken on a connection of its own, in autocommit mode (no transaction stays open
while the lock is held, e.g. during a token refresh), and released on exit. Because the lock belongs to
the database session, a holder that dies (SIGKILL, lost machine) releases it when the server notices the
session is gone: nobody waits forever for a dead process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.sql.functions import Function

from core.ports import CompanyLock


def _lock_id(key: str) -> Function[Any]:
    return func.hashtext("qbsync-company:" + key)


class PostgresCompanyLock(CompanyLock):
    """Mutual exclusion per key across processes, and across this process' threads too: each holder
    takes its own connection, hence its own session (a session may re-take a lock it holds, another may not).

    hashtext gives 32-bit ids, so two keys may share a lock: that only serialises them needlessly.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PostgresCompanyLock needs PostgreSQL (on SQLite use the in-process lock)")
        self._engine = engine

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            connection.execute(select(func.pg_advisory_lock(_lock_id(key))))
            try:
                yield
            finally:
                try:
                    connection.execute(select(func.pg_advisory_unlock(_lock_id(key))))
                except Exception:
                    # The session may still hold the lock: never hand it back to the pool.
                    connection.invalidate()
                    raise
        finally:
            connection.close()
