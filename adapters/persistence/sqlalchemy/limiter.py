"""QuickBooks request limits held across every qbsync process sharing one PostgreSQL database.

Intuit meters each company (realm) per app, whichever machine the requests come from: 10 a second, 500 a
minute and 10 at once (QUICKBOOKS.md). So the windows and the in-flight count live in the database:

* `qbo_request_starts` holds when each request was answered, i.e. a time no earlier than its arrival at
  QuickBooks (the sliding 1-second and 1-minute windows); while it is in flight, its row is dated in the
  future (its slot's expiry), so that it counts as inside every window;
* `qbo_request_slots` holds a lease per request in flight. A process that dies mid-request cannot give
  its slot back, so every slot expires (`slot_lease`, e.g. twice the HTTP timeout) and is dropped by the
  next admission to that company.

An admission is one short transaction under `pg_advisory_xact_lock(hashtext('qbsync-limit:' || realm))`:
admissions to one company are serialised, other companies never wait. All times are the database
server's (`clock_timestamp()`, not `now()`, which would be the moment the transaction began, before the
lock wait): the processes' own clocks may disagree. When the company is full the process sleeps outside
any transaction and polls again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from adapters.persistence.sqlalchemy.models import RequestSlotRow, RequestStartRow
from core.ports import RateLimits, RequestLimiter

# Polling bounds while a company is full: short enough to use a freed slot promptly, long enough not to
# turn waiting processes into a load on the database.
POLL_MIN_SECONDS = 0.01
POLL_MAX_SECONDS = 0.25
# When the in-flight cap is what blocks, no time can be computed: a request ends when QuickBooks answers.
# 50 ms adds little to a request that takes hundreds, and keeps ten waiting processes at 200 polls a second.
IN_FLIGHT_POLL_SECONDS = 0.05


def holder_name() -> str:
    """Who holds a slot, for an operator looking at the table: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresRequestLimiter(RequestLimiter):
    """Sliding one-second and one-minute windows plus a cap on concurrent requests, per company, shared by
    every process on the database."""

    def __init__(
        self,
        engine: Engine,
        limits: RateLimits | None = None,
        *,
        slot_lease: timedelta = timedelta(seconds=60),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PostgresRequestLimiter needs PostgreSQL (on SQLite use the in-process limiter)")
        self._engine = engine
        self._limits = limits or RateLimits()
        self._slot_lease = slot_lease
        self._sleep = sleep
        self._holder = holder_name()
        self._start_ids: dict[str, int] = {}  # slot id -> its qbo_request_starts row, until released

    @property
    def limits(self) -> RateLimits:
        return self._limits

    @contextmanager
    def acquire(self, realm_id: str) -> Iterator[None]:
        slot_id = self._admit(realm_id)
        try:
            yield
        finally:
            self.release(slot_id)

    def try_admit(self, realm_id: str) -> tuple[str | None, float]:
        """One admission attempt: (slot id, 0) when admitted (give the slot back with `release`), else
        (None, seconds worth waiting)."""
        with self._engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext("qbsync-limit:" + realm_id))))
            now = connection.execute(select(func.clock_timestamp())).scalar_one()
            wait = self._wait_needed(connection, realm_id, now)
            if wait > 0:
                return None, wait
            slot_id = uuid.uuid4().hex
            connection.execute(
                insert(RequestSlotRow).values(
                    slot_id=slot_id, realm_id=realm_id, holder=self._holder, expires=now + self._slot_lease
                )
            )
            # Why not `started=now`: QuickBooks counts a request when it arrives, and that can be well after
            # `now` (the rest of this transaction, the commit, a thread waiting for the GIL or a CPU, the
            # network): 220 ms was measured with 4 worker processes on 2 cores, more than `margin_seconds`,
            # and QBO then saw 11 requests in one second and answered 429 (without Retry-After: the job
            # waited 60 s). Only the answer bounds the arrival, so the row is re-dated at `release`; until
            # then it is dated at the slot's expiry, i.e. inside every window.
            start_id = connection.execute(
                insert(RequestStartRow)
                .values(realm_id=realm_id, started=now + self._slot_lease)
                .returning(RequestStartRow.id)
            ).scalar_one()
            self._start_ids[slot_id] = start_id
            return slot_id, 0.0

    def _admit(self, realm_id: str) -> str:
        while True:
            slot_id, wait = self.try_admit(realm_id)
            if slot_id is not None:
                return slot_id
            self._sleep(min(max(wait, POLL_MIN_SECONDS), POLL_MAX_SECONDS))

    def _wait_needed(self, connection: Connection, realm_id: str, now: datetime) -> float:
        """How long until the company has room; 0 when it has room now. Drops what has run out first."""
        limits = self._limits
        minute = timedelta(seconds=60 + limits.margin_seconds)
        second = timedelta(seconds=1 + limits.margin_seconds)
        connection.execute(
            delete(RequestSlotRow).where(RequestSlotRow.realm_id == realm_id, RequestSlotRow.expires <= now)
        )
        connection.execute(
            delete(RequestStartRow).where(RequestStartRow.realm_id == realm_id, RequestStartRow.started <= now - minute)
        )
        waits = [0.0]
        in_flight = connection.execute(
            select(func.count()).select_from(RequestSlotRow).where(RequestSlotRow.realm_id == realm_id)
        ).scalar_one()
        if in_flight >= limits.in_flight:
            # We cannot know when a request will finish: poll (a crashed holder's slot expires at worst).
            waits.append(IN_FLIGHT_POLL_SECONDS)
        for window, allowed in ((minute, limits.per_minute), (second, limits.per_second)):
            # The allowed-th newest admission: while it is inside the window, the window is full.
            nth = connection.execute(
                select(RequestStartRow.started)
                .where(RequestStartRow.realm_id == realm_id)
                .order_by(RequestStartRow.started.desc())
                .offset(allowed - 1)
                .limit(1)
            ).scalar_one_or_none()
            if nth is not None and nth > now:
                waits.append(IN_FLIGHT_POLL_SECONDS)  # still in flight: it leaves the window 1 s after its answer
            elif nth is not None and now - nth < window:
                waits.append((window - (now - nth)).total_seconds())
        return max(waits)

    def release(self, slot_id: str) -> None:
        # No advisory lock needed: deleting one's own slot, and dating one's own start back from the future
        # to now (the request has been answered, so it arrived before now), only ever makes room.
        start_id = self._start_ids.pop(slot_id, None)
        with self._engine.begin() as connection:
            connection.execute(delete(RequestSlotRow).where(RequestSlotRow.slot_id == slot_id))
            if start_id is not None:
                connection.execute(
                    update(RequestStartRow).where(RequestStartRow.id == start_id).values(started=func.clock_timestamp())
                )
