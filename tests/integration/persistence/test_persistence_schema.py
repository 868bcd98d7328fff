"""The Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from persistence_builders import T0, Backend
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import create_engine_for, migrate
from adapters.persistence.sqlalchemy.migrate import alembic_config
from adapters.persistence.sqlalchemy.models import Base, in_schema_of
from core.domain import AuditEvent, AuditKind


def test_migrated_schema_matches_the_models(sql_backend: Backend) -> None:
    assert sql_backend.url is not None
    engine = create_engine_for(sql_backend.url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": in_schema_of(connection.dialect.name)}
            )
            diffs = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
            revision = context.get_current_revision()
    finally:
        engine.dispose()
    assert diffs == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert revision == ScriptDirectory.from_config(alembic_config(sql_backend.url)).get_current_head()


def test_migrate_is_idempotent(sql_backend: Backend) -> None:
    assert sql_backend.url is not None
    with sql_backend.uow() as uow:
        uow.tenants.ensure("t1")
        uow.commit()
    migrate(sql_backend.url)  # already at head: nothing to do, nothing lost
    with sql_backend.uow() as uow:
        assert uow.tenants.exists("t1")


def test_sqlite_connections_use_wal_and_foreign_keys(sqlite_url: URL) -> None:
    engine = create_engine_for(sqlite_url)
    try:
        with engine.connect() as connection:
            pragmas = [
                connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            ]
    finally:
        engine.dispose()
    assert pragmas == ["wal", 1, 30000]


def test_audit_kinds_are_stored_as_their_names(sql_backend: Backend) -> None:
    """The audit log's `kind` column holds the strings qbsync always wrote: the enum changed no stored value."""
    assert sql_backend.url is not None
    with sql_backend.uow() as uow:
        uow.audit.append(AuditEvent("t1", T0, AuditKind.SYNC_PAYMENT_ACCEPTED, None, "j1", ""))
        uow.audit.append(AuditEvent("t1", T0, AuditKind.QUICKBOOKS_CURRENCY_READ, None, "", ""))
        uow.commit()
    engine = create_engine_for(sql_backend.url)
    try:
        with engine.connect() as connection:
            kinds = connection.execute(text("SELECT kind FROM audit_events ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert kinds == ["SYNC_PAYMENT_ACCEPTED", "QUICKBOOKS_CURRENCY_READ"]
