"""Which sync jobs changed, for WatchSyncJob's streams (adapters.grpc.watch.JobChanges): one feed per process.

On PostgreSQL, migration 0017's triggers send a NOTIFY on the schema's channel (`qbsync_job_changes_<md5 of
the schema>`) with every insert of a sync_jobs row and every update of what a stream shows, in the writer's
transaction (so a change is announced when, and only if, it is committed, by whichever process made it);
`PostgresJobChanges` LISTENs on one connection of its own. On
SQLite, `PolledJobChanges` reads what the streams can see of every watched job in one query per tick and
reports those that differ from the last read: its cost follows the number of watched jobs, never the
number of streams, and it runs on one thread. Its reads are read-only transactions (engine.READ_ONLY): a
poll every tick must not take the write lock that every enqueue and claim of the process waits for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from adapters.persistence.sqlalchemy.engine import READ_ONLY
from adapters.persistence.sqlalchemy.models import SyncJobRow
from adapters.persistence.sqlalchemy.work_signal import channel_for

log = logging.getLogger(__name__)

CHANNEL_BASE = "qbsync_job_changes"
JobKey = tuple[str, str]  # (tenant_id, job_id)

# What a stream shows of a job (adapters.grpc.convert.sync_job_to_proto); a lease extension changes none.
_VISIBLE = (
    SyncJobRow.state,
    SyncJobRow.attempts,
    SyncJobRow.results,
    SyncJobRow.error,
    SyncJobRow.next_attempt_time,
    SyncJobRow.update_time,
)
_IDS_PER_QUERY = 500


class PolledJobChanges:
    """One poller for every stream: each `wait` sleeps its timeout, then reads the watched jobs at once."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._seen: dict[JobKey, tuple[Any, ...] | None] = {}

    def wait(self, watched: frozenset[JobKey], timeout: float) -> Collection[JobKey] | None:
        threading.Event().wait(timeout)
        by_tenant: defaultdict[str, list[str]] = defaultdict(list)
        for tenant_id, job_id in watched:
            by_tenant[tenant_id].append(job_id)
        now: dict[JobKey, tuple[Any, ...] | None] = dict.fromkeys(watched)  # None: gone (the re-read says so)
        try:
            with self._engine.connect().execution_options(**{READ_ONLY: True}) as connection:
                for tenant_id, job_ids in by_tenant.items():
                    for start in range(0, len(job_ids), _IDS_PER_QUERY):
                        rows = connection.execute(
                            select(SyncJobRow.job_id, *_VISIBLE).where(
                                SyncJobRow.tenant_id == tenant_id,
                                SyncJobRow.job_id.in_(job_ids[start : start + _IDS_PER_QUERY]),
                            )
                        )
                        for job_id, *visible in rows:
                            now[(tenant_id, job_id)] = tuple(visible)
        except SQLAlchemyError:
            # The database is away: every stream re-reads, and ends UNAVAILABLE as a GetSyncJob would.
            log.warning("could not read the watched jobs' changes", exc_info=True)
            self._seen = {}
            return None
        changed = [key for key, visible in now.items() if key not in self._seen or self._seen[key] != visible]
        self._seen = now
        return changed

    def close(self) -> None:
        self._seen = {}


class PostgresJobChanges:
    """LISTEN on one connection of its own, opened on the first `wait` and again after it was lost."""

    def __init__(self, engine: Engine) -> None:
        # psycopg's own connection (autocommit: LISTEN takes effect at once, notifications arrive between
        # transactions), at the engine's address.
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: Any = None

    def wait(self, watched: frozenset[JobKey], timeout: float) -> Collection[JobKey] | None:
        import psycopg

        if self._connection is None:
            try:
                self._connection = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                schema = self._connection.execute("SELECT current_schema()").fetchone()[0]
                self._connection.execute(f"LISTEN {channel_for(schema, CHANNEL_BASE)}")
            except psycopg.Error:
                log.warning("could not LISTEN for job changes; re-reading every watched job", exc_info=True)
                self.close()
                threading.Event().wait(timeout)
            return None  # what changed before LISTEN took effect is not known: every stream re-reads once
        changed: set[JobKey] = set()
        try:
            # Up to `timeout` for the first notification, then whatever else is already there.
            for notify in self._connection.notifies(timeout=timeout, stop_after=1):
                changed.add(_key(notify.payload))
            for notify in self._connection.notifies(timeout=0.005):
                changed.add(_key(notify.payload))
        except psycopg.Error:
            log.warning("lost the job changes' LISTEN connection; re-reading every watched job", exc_info=True)
            self.close()
            return None
        return changed & watched

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
                connection.close()


def _key(payload: str) -> JobKey:
    tenant_id, job_id = json.loads(payload)
    return (str(tenant_id), str(job_id))


def job_changes_for(engine: Engine) -> PolledJobChanges | PostgresJobChanges:
    """The feed for the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresJobChanges(engine)
    return PolledJobChanges(engine)
