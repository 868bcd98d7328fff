"""Idle workers woken by PostgreSQL (issue 12): `PostgresWorkSignal`, the `WorkSignal` of a PostgreSQL database.

Migration 0013's trigger sends NOTIFY on the schema's channel (`channel_for`) whenever a sync_jobs row becomes
PENDING with no next attempt time (a job added, or retried with RetrySync), in the writer's transaction, so the signal
comes at its commit, from whichever process enqueued. One thread per process LISTENs on a connection of its
own and wakes every worker thread waiting in `wait`. When the connection is lost it reconnects; meanwhile
the workers only wait out their timeouts, so they poll as they would without the signal.

Nothing on SQLite: one process serves a SQLite database, and its workers poll.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from core.ports import WorkSignal

log = logging.getLogger(__name__)


def channel_for(schema: str, base: str = "qbsync_jobs") -> str:
    """The schema's NOTIFY channel named `base`, as the migrations' triggers name it from their table's schema
    (0013's `qbsync_jobs`, 0017's `qbsync_job_changes`): NOTIFY is database-wide, so each schema's deployment
    has channels of its own (hashed: a channel name is an identifier of at most 63 bytes, and a schema name
    may be as long)."""
    return f"{base}_" + hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()[:16]


_LISTEN_SLICE_SECONDS = 1.0  # how long one wait for a notification lasts: the listener's reaction to close()
_RECONNECT_SECONDS = 1.0


class PostgresWorkSignal(WorkSignal):
    """The listener thread starts with the first `wait`. Each notification (or a new LISTEN, as what was
    enqueued before it took effect is unknown) counts one more signal; each waiting thread compares the
    count with the one it last saw, so a signal wakes every idle worker and none is missed between waits."""

    def __init__(self, engine: Engine) -> None:
        # psycopg's own connection (autocommit: LISTEN takes effect at once, notifications arrive between
        # transactions), at the engine's address.
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._changed = threading.Condition()
        self._signals = 0
        self._seen = threading.local()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        self._start()
        with self._changed:
            seen = getattr(self._seen, "signals", 0)
            woken = self._changed.wait_for(lambda: self._signals != seen, timeout)
            self._seen.signals = self._signals
        return woken

    def close(self) -> None:
        """Stops the listener thread within a second."""
        self._closed.set()

    def _start(self) -> None:
        with self._changed:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="qbsync-work-signal", daemon=True)
                self._listener.start()

    def _signal(self) -> None:
        with self._changed:
            self._signals += 1
            self._changed.notify_all()

    def _listen(self) -> None:
        import psycopg

        while not self._closed.is_set():
            connection: Any = None
            try:
                connection = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                schema = connection.execute("SELECT current_schema()").fetchone()[0]
                connection.execute(f"LISTEN {channel_for(schema)}")
                self._signal()
                while not self._closed.is_set():
                    for _notify in connection.notifies(timeout=_LISTEN_SLICE_SECONDS):
                        self._signal()
            except psycopg.Error:
                log.warning("lost the work signal's LISTEN connection; workers poll until it is back", exc_info=True)
                self._closed.wait(_RECONNECT_SECONDS)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
                        connection.close()


def work_signal_for(engine: Engine) -> WorkSignal | None:
    """The signal for the engine's database: PostgreSQL's notifications, none on SQLite (workers poll)."""
    if engine.dialect.name == "postgresql":
        return PostgresWorkSignal(engine)
    return None
