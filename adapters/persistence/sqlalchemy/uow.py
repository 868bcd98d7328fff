"""The unit of work over SQLAlchemy: one connection's transaction (`ConnectionScope`), an ORM `Session` joining it
only for the statements that need one.

It is also where the database's failures become the core's: a lost or refused connection leaves the
unit of work as StorageUnavailableError, so that the API answers UNAVAILABLE (retry) and the workers
retry the job, without either importing SQLAlchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Self

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy.company_facts import CompanyFactsCache, cache_for, read_company_facts
from adapters.persistence.sqlalchemy.company_lookups import SqlAlchemyCompanyLookupRepository
from adapters.persistence.sqlalchemy.connections import SqlAlchemyConnectionRepository
from adapters.persistence.sqlalchemy.drift import SqlAlchemyDriftRepository
from adapters.persistence.sqlalchemy.engine import READ_ONLY
from adapters.persistence.sqlalchemy.jobs import SqlAlchemySyncJobRepository
from adapters.persistence.sqlalchemy.repositories import (
    SqlAlchemyApiKeyRepository,
    SqlAlchemyAuditLog,
    SqlAlchemySnapshotRepository,
    SqlAlchemySyncRecordRepository,
    SqlAlchemyTenantRepository,
)
from core.connection import CompanyFacts
from core.errors import StorageUnavailableError
from core.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

# The database's trouble rather than the statement's: unreachable, restarted, dropped the connection, pool
# exhausted, SQLite file locked or unreadable. IntegrityError, DataError and ProgrammingError are not here:
# they are about what was sent, and trying again would fail the same way.
_OUTAGES: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """True for a failure of the database itself, which a later attempt may not meet."""
    if isinstance(error, _OUTAGES):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def storage_unavailable(error: BaseException) -> StorageUnavailableError:
    """The core's error for an outage. Logged with the driver's own message only: SQLAlchemy's message
    also quotes the statement's parameters (key hashes, encrypted tokens), which never go to a log."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    log.warning("database unavailable: %s: %s", type(cause).__name__, first_line)
    return StorageUnavailableError()


class SqlAlchemyUnitOfWork(UnitOfWork):
    """Opens a transaction scope on `with`, rolls back whatever was not committed on leaving it.

    The repositories exist only inside the `with` block, bound to its scope, so nothing can be
    written outside a transaction by mistake.
    """

    def __init__(
        self,
        session_factory: Callable[[], ConnectionScope],
        secrets: SecretBox | None = None,
        *,
        read_only: bool = False,
        company_facts: CompanyFactsCache | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._secrets = secrets
        self._read_only = read_only
        self._company_facts = company_facts
        self._session: ConnectionScope | None = None

    def __enter__(self) -> Self:
        session = self._session_factory()
        self._session = session
        self.tenants = SqlAlchemyTenantRepository(session)
        self.api_keys = SqlAlchemyApiKeyRepository(session)
        self.snapshots = SqlAlchemySnapshotRepository(session)
        self.sync_records = SqlAlchemySyncRecordRepository(session)
        self.jobs = SqlAlchemySyncJobRepository(session)
        self.audit = SqlAlchemyAuditLog(session)
        self.connections = SqlAlchemyConnectionRepository(session, self._secrets)
        self.company_lookups = SqlAlchemyCompanyLookupRepository(session)
        self.drift = SqlAlchemyDriftRepository(session)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        session, self._session = self._session, None
        try:
            if session is not None:
                _roll_back_and_close(session)
        except Exception as cleanup_error:
            # A connection that died cannot roll back (the server dropped the transaction with it). Let
            # the block's own error, if any, tell what happened; otherwise report the outage.
            if exc is None:
                if is_outage(cleanup_error):
                    raise storage_unavailable(cleanup_error) from cleanup_error
                raise
        if exc is not None and is_outage(exc):
            raise storage_unavailable(exc) from exc

    def commit(self) -> None:
        session = self._require_session()
        if self._read_only:
            # Its transaction began without the write lock (engine.py): a write in it could be lost
            # to another's read-then-write, so it never lasts.
            raise RuntimeError("a read-only unit of work cannot commit: use an ordinary one to write")
        session.commit()
        if self._company_facts is not None and self.connections.written:
            self._company_facts.drop(self.connections.written)
            self.connections.written = set()

    def rollback(self) -> None:
        self._require_session().rollback()

    def _require_session(self) -> ConnectionScope:
        if self._session is None:
            raise RuntimeError("use the unit of work in a `with` block")
        return self._session


def _roll_back_and_close(session: ConnectionScope) -> None:
    try:
        session.rollback()
    finally:
        session.close()


class ConnectionScope:
    """A unit of work's transaction: a pooled connection, and an ORM `Session` only if a statement needs one.
    The lean paths (the accept, GetSyncStatus, GetSyncJob: prepared statements only) never build one: making
    a `Session` and walking its transaction states to a connection, then committing or rolling it back and
    closing it, cost more CPU than a read and a tenth of an accept (issue 12). The transaction is the same
    as a `Session`'s: it begins when the connection is first used (on SQLite BEGIN IMMEDIATE, or a plain
    BEGIN when the engine carries READ_ONLY: engine.py), and every statement of the unit of work - through
    the `Session` too, which joins it - runs in it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine  # the factory's READ_ONLY one
        self.dialect_name = engine.dialect.name
        self._connection: Connection | None = None
        self._session: Session | None = None

    def connection(self) -> Connection:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._engine.connect()
        if not connection.in_transaction():
            connection.begin()
        return connection

    def session(self) -> Session:
        if self._session is None:
            # Bound to the connection, the session joins its transaction rather than taking another
            # connection (another snapshot, or a second writer) from the pool. expire_on_commit=False:
            # repositories return domain objects, never rows; autoflush is pointless: writes go straight to SQL.
            self._session = Session(bind=self.connection(), expire_on_commit=False, autoflush=False)
        return self._session

    def commit(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            # The session joined the connection's transaction, so its commit only flushes (SQLAlchemy's
            # "conservative_savepoint" join): the transaction is the connection's to commit, below. It is
            # closed with its transaction; a later statement of this unit of work makes a new one.
            try:
                session.commit()
            finally:
                session.close()
        connection = self._connection
        if connection is not None and connection.in_transaction():
            connection.commit()  # the next statement begins the next transaction (`connection()`)

    def rollback(self) -> None:
        session, self._session = self._session, None
        try:
            if session is not None:
                session.rollback()  # the joined session's rollback is the transaction's
                session.close()
        finally:
            if self._connection is not None:
                self._connection.rollback()

    def close(self) -> None:
        session, self._session = self._session, None
        connection, self._connection = self._connection, None
        try:
            if session is not None:
                session.close()
        finally:
            if connection is not None:
                connection.close()  # ends the transaction and gives the connection back to the pool


class SqlAlchemyUnitOfWorkFactory(UnitOfWorkFactory):
    """Makes units of work over one engine; each thread (worker, RPC) takes its own.

    `secrets` encrypts the QuickBooks connections' tokens; without it, connections cannot be stored or
    read (everything else works), so tools that never touch connections need no key.
    """

    def __init__(self, engine: Engine, secrets: SecretBox | None = None) -> None:
        self.engine = engine
        self.secrets = secrets
        # The same pool, marked so that a transaction begins without the write lock (engine.py).
        self._reading = engine.execution_options(**{READ_ONLY: True})

        self._company_facts = cache_for(engine)

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(
            lambda: ConnectionScope(self.engine), self.secrets, company_facts=self._company_facts
        )

    def read_only(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(lambda: ConnectionScope(self._reading), self.secrets, read_only=True)

    def company_facts(self, tenant_id: str, branch_id: str = "") -> CompanyFacts | None:
        """From this process's cache (company_facts.py: a few seconds; dropped by a commit that wrote the
        connection in this process)."""
        try:
            return self._company_facts.get(
                (tenant_id, branch_id), lambda branch: read_company_facts(self.engine, branch)
            )
        except Exception as error:
            if is_outage(error):
                raise storage_unavailable(error) from error
            raise
