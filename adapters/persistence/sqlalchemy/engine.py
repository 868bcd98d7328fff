"""Engines configured for many workers sharing one database without double-claiming jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as _create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

# How long a SQLite connection waits for another's write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

# The execution option that marks a read-only unit of work's connection (SqlAlchemyUnitOfWorkFactory's
# read_only): on SQLite its transaction begins DEFERRED, without the write lock.
READ_ONLY = "qbsync_read_only"


def normalise_url(url: str | URL) -> URL:
    """`postgresql://` means psycopg 3 here: it is the driver qbsync ships (SPEC §6 uses the bare form)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for a SQLite file or PostgreSQL, with the transaction behaviour the queue needs."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty database: workers would not share a queue.
            raise ValueError("qbsync needs a SQLite file (sqlite:///path.db), not an in-memory database")
        engine = _create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return _create_engine(parsed, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 driver: in its legacy mode it only emits BEGIN
        # before DML, so SELECTs would run outside the transaction. We emit BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers do not block the writer nor the writer readers; one file, many processes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # NORMAL is durable across application crashes in WAL mode (only an OS crash can lose the
            # last commits), and it avoids an fsync per commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock when the transaction starts, waiting up to busy_timeout
        # for it. With a plain (deferred) BEGIN, a transaction that reads and then writes - claim_next,
        # or any read-modify-write of a sync record - must upgrade its read lock, and when another
        # connection committed in between SQLite fails at once with SQLITE_BUSY (busy_timeout does not
        # apply to a stale snapshot). Taking the lock up front serialises writers, so two workers in
        # threads or processes can never both see a job as free and claim it. SQLite allows a single
        # writer anyway, so this costs little - for writers. A read-only unit of work (one that cannot
        # commit) needs no write lock: its plain BEGIN reads one WAL snapshot without queueing behind the
        # writers (and the workers' claims) for up to busy_timeout.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
