"""Engines configured for many workers sharing one database without double-claiming jobs."""

from __future__ import annotations

import os
import select
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as _create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from adapters.persistence.sqlalchemy.prepared import on_driver

# How long a SQLite connection waits for another's write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

# The execution option that marks a read-only unit of work's connection (SqlAlchemyUnitOfWorkFactory's
# read_only): on SQLite its transaction begins DEFERRED, without the write lock.
READ_ONLY = "qbsync_read_only"

# Connections the pool keeps open: one per thread that may hold one at a time - the gRPC server's threads
# (16 by default) and a process's workers (4 by default) - so that under load no connection is closed on
# return and reopened (a SQLite open runs four PRAGMAs; a PostgreSQL one a TCP and auth handshake) for
# every call beyond SQLAlchemy's default of 5. Opened lazily: an idle process holds only what it used.
POOL_SIZE = 20
POOL_OVERFLOW = 10


def normalise_url(url: str | URL) -> URL:
    """`postgresql://` means psycopg 3 here: it is the driver qbsync ships (SPEC §6 uses the bare form)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for a SQLite file or PostgreSQL, with the transaction behaviour the queue needs."""
    parsed = normalise_url(url)
    kwargs.setdefault("pool_size", POOL_SIZE)
    kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty database: workers would not share a queue.
            raise ValueError("qbsync needs a SQLite file (sqlite:///path.db), not an in-memory database")
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("factory", _WriterConnection)
        engine = _create_engine(parsed, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, _writer_lock(parsed.database))
        return engine
    engine = _create_engine(parsed, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_the_server_spoke(engine)
    return engine


def _ping_when_the_server_spoke(engine: Engine) -> None:
    """Replaces a pooled PostgreSQL connection the server has dropped before it is used, without a round
    trip for one it has not: SQLAlchemy's `pool_pre_ping` sends `SELECT 1` at every checkout, one round trip
    per unit of work (of a SyncPayment's two, and a tenth of its CPU on PostgreSQL: issue 12), which no pool
    option makes conditional. A server that ends a session (a restart, `pg_terminate_backend`, an idle
    timeout) tells the client so and closes the socket: an idle connection whose socket has something to
    read is pinged, and one that fails the ping is replaced (`DisconnectionError`: the pool connects anew).
    A connection cut without a word (a network partition) is found out by its next statement, as the
    ping's would be; the unit of work then fails as the database being unavailable."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
        try:
            readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError) as closed:  # the socket is already gone
            raise sa_exc.DisconnectionError("the connection's socket is closed") from closed
        if not readable:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as ended:  # noqa: BLE001 - whatever the driver says, this connection is done for
            raise sa_exc.DisconnectionError("the server ended the connection") from ended
        if not alive:
            raise sa_exc.DisconnectionError("the server ended the connection")


# One lock per SQLite file in this process, taken before BEGIN IMMEDIATE: SQLite admits one writer at a
# time anyway, and threads that wait for it in SQLite's busy handler sleep and poll (1, 2, 5, 10 ... 100 ms
# between tries), so under contention the file sat idle while its next writer slept. Queued on a lock, the
# next writer starts the moment the last one ends. Other processes still meet busy_timeout.
_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(database: str) -> threading.Lock:
    path = os.path.realpath(database)
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(path, threading.Lock())


class _WriterConnection(sqlite3.Connection):
    """A sqlite3 connection that gives back the file's writer lock when its transaction ends, whichever way:
    commit, rollback (SQLAlchemy's, or the pool's reset on return) or close (the pool closes a connection it
    invalidates). Releasing after the driver's own call, in a `finally`, so that a failed COMMIT or ROLLBACK
    cannot keep it."""

    writer_lock: threading.Lock | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()

    def __del__(self) -> None:
        # A connection dropped without close (a pool gone with it): the lock must not outlive it.
        self.release_writer_lock()

    def take_writer_lock(self, lock: threading.Lock) -> None:
        if self.writer_lock is lock:
            return  # still held from this connection's last transaction (a BEGIN that failed): keep it
        # A thread needing a second write transaction while it holds one would wait forever: SQLite's
        # busy_timeout bounds the wait, as it would if the driver waited; then "database is locked".
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise sa_exc.OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked (by this process)")
            )
        self.writer_lock = lock

    def release_writer_lock(self) -> None:
        lock, self.writer_lock = self.writer_lock, None
        if lock is not None:
            lock.release()


def _configure_sqlite(engine: Engine, writer_lock: threading.Lock) -> None:
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
        # writers (and the workers' claims) for up to busy_timeout. Sent on the driver's cursor (prepared.py):
        # through exec_driver_sql, a BEGIN cost as much CPU as the statement it began.
        if connection.get_execution_options().get(READ_ONLY):
            on_driver(connection, "BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        if not isinstance(dbapi_connection, _WriterConnection):
            on_driver(connection, "BEGIN IMMEDIATE")  # a caller's own connect_args factory: no lock
            return
        dbapi_connection.take_writer_lock(writer_lock)
        try:
            on_driver(connection, "BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.release_writer_lock()
            raise
