"""The unit of work over SQLAlchemy: one `Session`, hence one database transaction."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy.connections import SqlAlchemyConnectionRepository
from adapters.persistence.sqlalchemy.jobs import SqlAlchemySyncJobRepository
from adapters.persistence.sqlalchemy.repositories import (
    SqlAlchemyApiKeyRepository,
    SqlAlchemyAuditLog,
    SqlAlchemySnapshotRepository,
    SqlAlchemySyncRecordRepository,
    SqlAlchemyTenantRepository,
)
from core.ports import UnitOfWork, UnitOfWorkFactory


class SqlAlchemyUnitOfWork(UnitOfWork):
    """Opens a session on `with`, rolls back whatever was not committed on leaving it.

    The repositories exist only inside the `with` block, bound to its session, so nothing can be
    written outside a transaction by mistake.
    """

    def __init__(self, session_factory: sessionmaker[Session], secrets: SecretBox | None = None) -> None:
        self._session_factory = session_factory
        self._secrets = secrets
        self._session: Session | None = None

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
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.rollback()
            finally:
                session.close()

    def commit(self) -> None:
        self._require_session().commit()

    def rollback(self) -> None:
        self._require_session().rollback()

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("use the unit of work in a `with` block")
        return self._session


class SqlAlchemyUnitOfWorkFactory(UnitOfWorkFactory):
    """Makes units of work over one engine; each thread (worker, RPC) takes its own.

    `secrets` encrypts the QuickBooks connections' tokens; without it, connections cannot be stored or
    read (everything else works), so tools that never touch connections need no key.
    """

    def __init__(self, engine: Engine, secrets: SecretBox | None = None) -> None:
        self.engine = engine
        self.secrets = secrets
        # expire_on_commit=False: repositories return domain objects, never rows, so nothing to expire;
        # autoflush is harmless but pointless since writes go straight to SQL.
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self._sessions, self.secrets)
