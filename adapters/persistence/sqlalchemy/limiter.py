"""QuickBooks request limits held across every qbsync process sharing one PostgreSQL database.

Intuit meters each company (realm) per app, whichever machine the requests come from: 10 a second, 500 a
minute and 10 at once (QUICKBOOKS.md). So the windows and the in-flight count live in the database:

* `qbo_request_starts` holds when each request was answered, i.e. a time no earlier than its arrival at
  QuickBooks (the sliding 1-second and 1-minute windows); while it is in flight, its row is dated in the
  future (its slot's expiry), so that it counts as inside every window;
* `qbo_request_slots` holds a lease per request in flight. A process that dies mid-request cannot give
  its slot back, so every slot expires (`slot_lease`, e.g. twice the HTTP timeout) and is dropped by the
  next admission to that company; its start, dated at the expiry, then counts as a request that arrived
  then, and leaves the minute window a minute later.

One round trip per request. An admission is one statement, `SELECT ... FROM qbsync_admit(...)` (a PL/pgSQL
function, migrations 0012 and 0018), in a transaction of its own (autocommit), under
`pg_advisory_xact_lock(hashtext('qbsync-limit:' || realm))`: admissions to one company are serialised,
other companies never wait. All times are the database server's (`clock_timestamp()`, not `now()`, which
would be the moment the statement began, before the lock wait): the processes' own clocks may disagree.

A release costs no round trip of its own: the answered request is queued in this process and carried by
the next admission this process sends (to any company), which gives the slots back and re-dates the starts
before it looks for room. Only when no admission comes within `release_delay` (200 ms) does a background
thread send the queue alone (`qbsync_release`), so that a quiet process does not hold a company's capacity.

Why the accounting stays exact with a release sent late:

* the start is re-dated to the answer, not to when the release reaches the database: the process notes
  the answer on its own monotonic clock and sends how long ago it was; the database dates the start
  `clock_timestamp() - ago`. The statement runs after `ago` was measured, so that date is no earlier than
  the answer in the database's clock (the two clocks need only tick at one rate over those milliseconds),
  and so no earlier than the request's arrival at QuickBooks;
* until the release arrives, the start is dated in the future and counts in every window: for the one-second
  window that is what its true date would do anyway as long as the release arrives within a second of the
  answer; only the in-flight count is held back, by at most `release_delay` (plus a transaction);
* a process that dies with releases queued loses them like a process dying mid-request: its slots expire.

So the windows are QuickBooks' own, 1 and 60 seconds, with no margin: the next request is admitted (in the
database's clock) no sooner than a window after an answer that is no earlier than its request's arrival, and
it arrives after its admission. A margin would only cost throughput: at 100 ms per request a start holds the
one-second window for 1.1 s, ten requests in 1.1 s are 545 a minute, above the minute's 500; with another
0.1 s they are 500 at most, and one company could not reach QBO's ceiling (bench/company_ceiling.py).

A batch request (QBO's 40 batch requests a minute) is admitted first into the company's batch window, kept
by the same function in the same tables under the key `batch_window_key(realm)` with `batch_limits`, then
into the company's own, both in one statement (`qbsync_admit_batch`, migration 0018): one round trip for a
batch too, unless the company's windows are full with no known moment. `batch_room` reads the batch
window's count (one statement, nothing reserved) so that a caller can send single requests instead.

When the company's windows are full until a known moment (the oldest answered request in the way leaves
the window then), the admission reserves that moment (migration 0018): the request is admitted at once,
counted in every window like one in flight, and the caller sleeps until the moment before sending - one
round trip even at QBO's ceiling. When no moment can be known (the in-flight cap, or a window full of
requests still in flight) the caller sleeps outside any transaction for `IN_FLIGHT_POLL_SECONDS` and tries
again; within one process, threads waiting for one company take turns (one polls the database, the others
wait for it in memory).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, TextClause, event, text
from sqlalchemy.exc import DBAPIError

from adapters.inprocess import MINUTE, SECOND, batch_limits, batch_window_key
from adapters.persistence.sqlalchemy.prepared import on_driver
from core.ports import RateLimits, RequestLimiter

log = logging.getLogger(__name__)

# Polling bounds while a company is full: short enough to use a freed slot promptly, long enough not to
# turn waiting processes into a load on the database.
POLL_MIN_SECONDS = 0.01
POLL_MAX_SECONDS = 0.25
# When the in-flight cap is what blocks, no time can be computed: a request ends when QuickBooks answers.
# 50 ms adds little to a request that takes hundreds, and keeps ten waiting processes at 200 polls a second.
IN_FLIGHT_POLL_SECONDS = 0.05
# How long an answered request may wait for an admission to carry its release. Well under a second, so that
# the windows are not affected (see the module docstring); only the in-flight count is held, and a company
# doing QBO's 500 a minute with answers within a second keeps under 10 in flight even so (8.3/s x 1.2 s).
# Long enough that a worker thread's next request, after its unit of work and the next claim on 2 loaded
# cores, usually carries it: at 50 ms a third of the syncs of bench/worker_cpu.py needed a release of its own.
RELEASE_DELAY_SECONDS = 0.2
# The release thread ends after this long with nothing to send, and starts again with the next release.
RELEASER_IDLE_SECONDS = 5.0
# After a failed release (database unreachable), the queue is kept and sent again this much later.
RELEASE_RETRY_SECONDS = 1.0

_ADMIT = text(
    "SELECT admitted_start, wait_seconds FROM qbsync_admit(:realm, :slot, :holder, :per_second, :per_minute, "
    ":in_flight, :second, :minute, :lease, :poll, "
    "CAST(:slots AS text[]), CAST(:starts AS bigint[]), CAST(:answered_ago AS double precision[]), :reserve)"
)
_ADMIT_BATCH = text(
    "SELECT batch_start, batch_wait, admitted_start, wait_seconds FROM qbsync_admit_batch(:batch_key, :batch_slot, "
    ":realm, :slot, :holder, :batch_per_second, :batch_per_minute, :per_second, :per_minute, :in_flight, :second, "
    ":minute, :lease, :poll, CAST(:slots AS text[]), CAST(:starts AS bigint[]), "
    "CAST(:answered_ago AS double precision[]))"
)
# Batch requests in the batch window now: those in flight are dated in the future (their slot's expiry).
_BATCHES = text(
    "SELECT count(*) FROM qbo_request_starts "
    "WHERE realm_id = :key AND started > clock_timestamp() - make_interval(secs => :minute)"
)
_RELEASE = text(
    "SELECT qbsync_release(CAST(:slots AS text[]), CAST(:starts AS bigint[]), "
    "CAST(:answered_ago AS double precision[]))"
)


def holder_name() -> str:
    """Who holds a slot, for an operator looking at the table: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class _Answered:
    """A request QuickBooks has answered, whose slot this process has not given back yet."""

    slot_id: str
    start_id: int | None  # None: a slot this limiter did not admit (nothing to re-date)
    answered: float  # this process' monotonic clock


class PostgresRequestLimiter(RequestLimiter):
    """Sliding one-second and one-minute windows plus a cap on concurrent requests, per company, shared by
    every process on the database."""

    def __init__(
        self,
        engine: Engine,
        limits: RateLimits | None = None,
        *,
        slot_lease: timedelta = timedelta(seconds=60),
        release_delay: float = RELEASE_DELAY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PostgresRequestLimiter needs PostgreSQL (on SQLite use the in-process limiter)")
        # Autocommit: the function's one statement is its own transaction, so no BEGIN and COMMIT trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._limits = limits or RateLimits()
        self._batch_limits = batch_limits(self._limits)
        self._slot_lease = slot_lease
        self._release_delay = release_delay
        self._sleep = sleep
        self._monotonic = monotonic
        self._holder = holder_name()
        self._start_ids: dict[str, int] = {}  # slot id -> its qbo_request_starts row, until released
        self._answered: list[_Answered] = []  # oldest first
        self._answered_changed = threading.Condition()
        self._releaser: threading.Thread | None = None
        self._turns: dict[str, threading.Lock] = {}
        self._turns_guard = threading.Lock()
        self._compiled: dict[TextClause, str] = {}  # a race compiles one twice, harmlessly
        # Queued releases go out when the engine is disposed or the interpreter exits, not with the process.
        flush = _weak_flush(self)
        event.listen(engine, "engine_disposed", lambda _engine: flush())
        atexit.register(flush)

    @property
    def limits(self) -> RateLimits:
        return self._limits

    @contextmanager
    def acquire(self, realm_id: str, *, batch: bool = False) -> Iterator[None]:
        slots = self._admit_batch(realm_id) if batch else [self._admit(realm_id)]
        try:
            yield
        finally:
            for slot_id in slots:
                self.release(slot_id)

    def batch_room(self, realm_id: str) -> bool:
        (taken,) = self._call(_BATCHES, {"key": batch_window_key(realm_id), "minute": MINUTE})
        return int(taken) < self._limits.batch_per_minute

    def try_admit(
        self, realm_id: str, limits: RateLimits | None = None, *, reserve: bool = False
    ) -> tuple[str | None, float]:
        """One admission attempt (one round trip, carrying this process' queued releases): (slot id, 0) when
        admitted (give the slot back with `release`), else (None, seconds worth waiting). With `reserve`, a
        company whose windows free up at a known moment admits the request for that moment at once: (slot id,
        seconds to wait before sending). `limits`: the window's, when not the company's (its batch window)."""
        limits = limits or self._limits
        slot_id = uuid.uuid4().hex
        carried = self._take_answered()
        params: dict[str, Any] = {
            "realm": realm_id,
            "slot": slot_id,
            "per_second": limits.per_second,
            "per_minute": limits.per_minute,
            "in_flight": limits.in_flight,
            "reserve": reserve,
            **self._admission_params(carried),
        }
        try:
            start_id, wait = self._call(_ADMIT, params)
        except BaseException:
            self._put_back(carried)  # sent again with the next round trip: giving back twice is harmless
            raise
        if start_id is None:
            return None, float(wait)
        self._start_ids[slot_id] = int(start_id)
        return slot_id, float(wait)

    def release(self, slot_id: str) -> None:
        """The request has been answered: its slot goes back with this process' next round trip, within
        `release_delay` at the latest."""
        answered = _Answered(slot_id, self._start_ids.pop(slot_id, None), self._monotonic())
        with self._answered_changed:
            self._answered.append(answered)
            if self._releaser is None:
                self._releaser = threading.Thread(target=self._release_when_idle, name="qbo-releases", daemon=True)
                self._releaser.start()
            self._answered_changed.notify()

    def flush(self) -> None:
        """Sends the queued releases now (at exit, or when the engine is disposed)."""
        carried = self._take_answered()
        if carried:
            self._send_releases(carried)

    def _admit_batch(self, realm_id: str) -> list[str]:
        """A batch request's slots, in its batch window and in the company's: one round trip when both have
        room (or a known moment), which is then waited for."""
        batch_key = batch_window_key(realm_id)
        with self._turn(batch_key):
            while True:
                batch_slot, batch_wait, slot_id, wait = self._try_admit_batch(realm_id)
                if batch_slot is not None:
                    break
                self._sleep(min(max(batch_wait, POLL_MIN_SECONDS), POLL_MAX_SECONDS))
        send_at = self._monotonic() + max(batch_wait, wait if slot_id is not None else 0.0)
        try:
            if slot_id is None:  # the company's windows are full with no known moment: as for any request
                slot_id = self._admit(realm_id)
            if (left := send_at - self._monotonic()) > 0:
                self._sleep(left)
        except BaseException:
            self.release(batch_slot)
            if slot_id is not None:
                self.release(slot_id)
            raise
        return [slot_id, batch_slot]

    def _try_admit_batch(self, realm_id: str) -> tuple[str | None, float, str | None, float]:
        """One round trip of `qbsync_admit_batch`: (batch slot, its wait, company slot, its wait); a slot
        None when its window had no room at a known moment (then its wait is a poll interval)."""
        batch_slot, slot_id = uuid.uuid4().hex, uuid.uuid4().hex
        carried = self._take_answered()
        params: dict[str, Any] = {
            "batch_key": batch_window_key(realm_id),
            "batch_slot": batch_slot,
            "realm": realm_id,
            "slot": slot_id,
            "batch_per_second": self._batch_limits.per_second,
            "batch_per_minute": self._batch_limits.per_minute,
            "per_second": self._limits.per_second,
            "per_minute": self._limits.per_minute,
            "in_flight": self._limits.in_flight,
            **self._admission_params(carried),
        }
        try:
            batch_start, batch_wait, start_id, wait = self._call(_ADMIT_BATCH, params)
        except BaseException:
            self._put_back(carried)
            raise
        if batch_start is None:
            return None, float(batch_wait), None, 0.0
        self._start_ids[batch_slot] = int(batch_start)
        if start_id is None:
            return batch_slot, float(batch_wait), None, float(wait)
        self._start_ids[slot_id] = int(start_id)
        return batch_slot, float(batch_wait), slot_id, float(wait)

    def _admit(self, realm_id: str, limits: RateLimits | None = None) -> str:
        # One thread of this process at a time polls for a company: the others would only ask the database
        # the same question at the same moment and be told the same wait. A reservation is slept on outside
        # the turn: the next thread's admission counts it, and may reserve the moment after it.
        with self._turn(realm_id):
            while True:
                slot_id, wait = self.try_admit(realm_id, limits, reserve=True)
                if slot_id is not None:
                    break
                self._sleep(min(max(wait, POLL_MIN_SECONDS), POLL_MAX_SECONDS))
        if wait > 0:
            try:
                self._sleep(wait)
            except BaseException:
                self.release(slot_id)
                raise
        return slot_id

    def _turn(self, realm_id: str) -> threading.Lock:
        with self._turns_guard:
            return self._turns.setdefault(realm_id, threading.Lock())

    def _call(self, statement: TextClause, params: Mapping[str, Any]) -> tuple[Any, ...]:
        # The engine may not ping connections before use (one round trip saved per request): a connection
        # the database dropped fails once, invalidating the pool, and the call is made again on a new one.
        # Again is safe: an admission that did go through only holds a slot until its lease runs out, and
        # giving a slot back twice gives it back once.
        sql = self._sql(statement)
        try:
            return self._send(sql, params)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        return self._send(sql, params)

    def _send(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        # The SQL on the driver's cursor (prepared.on_driver: listeners still see it, errors wrapped as
        # SQLAlchemy's), in a transaction that sends no BEGIN or COMMIT (autocommit): a third of an
        # admission's CPU went to SQLAlchemy's execution layers around a one-row call (issue 12).
        with self._engine.connect() as connection, connection.begin():
            (row,) = on_driver(connection, sql, dict(params), rows=True)
            return tuple(row)

    def _sql(self, statement: TextClause) -> str:
        """`statement` compiled once for this engine's driver (its parameter style)."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = str(statement.compile(dialect=self._engine.dialect))
        return compiled

    def _admission_params(self, carried: list[_Answered]) -> dict[str, Any]:
        """What every admission statement sends besides its windows' limits: the holder, the windows, the
        lease, the poll interval and the releases it carries (measured last)."""
        return {
            "holder": self._holder,
            # Exactly QuickBooks' windows: a start dated at its answer is no earlier than the request's
            # arrival there, which is all the windows need (no margin for network jitter: see above).
            "second": SECOND,
            "minute": MINUTE,
            "lease": self._slot_lease.total_seconds(),
            "poll": IN_FLIGHT_POLL_SECONDS,
            **self._release_params(carried),
        }

    def _release_params(self, carried: list[_Answered]) -> dict[str, list[Any]]:
        # Measured last, just before the statement goes out: `ago` may only be too short, never too long.
        now = self._monotonic()
        dated = [a for a in carried if a.start_id is not None]
        return {
            "slots": [a.slot_id for a in carried],
            "starts": [a.start_id for a in dated],
            "answered_ago": [max(0.0, now - a.answered) for a in dated],
        }

    def _send_releases(self, carried: list[_Answered]) -> None:
        try:
            self._call(_RELEASE, self._release_params(carried))
        except BaseException:
            self._put_back(carried)
            raise

    def _take_answered(self) -> list[_Answered]:
        with self._answered_changed:
            carried, self._answered = self._answered, []
            return carried

    def _put_back(self, carried: list[_Answered]) -> None:
        with self._answered_changed:
            self._answered[:0] = carried
            self._answered_changed.notify()

    def _release_when_idle(self) -> None:
        """The release thread: sends the queue once its oldest entry has waited `release_delay` without an
        admission to carry it; ends when nothing has been queued for `RELEASER_IDLE_SECONDS`."""
        while True:
            with self._answered_changed:
                idle = not self._answered and not self._answered_changed.wait(RELEASER_IDLE_SECONDS)
                if idle and not self._answered:
                    self._releaser = None
                    return
                if not self._answered:
                    continue
                due = self._answered[0].answered + self._release_delay - self._monotonic()
                if due > 0:
                    self._answered_changed.wait(due)
                    continue
                carried, self._answered = self._answered, []
            try:
                self._send_releases(carried)
            except Exception as error:  # the database is unreachable: the releases wait, the requests go on
                log.warning("could not give back %d QuickBooks request slots (%s); trying again", len(carried), error)
                time.sleep(RELEASE_RETRY_SECONDS)


def _weak_flush(limiter: PostgresRequestLimiter) -> Callable[[], None]:
    """A flush that does not keep the limiter alive (atexit and the engine's listeners hold it)."""
    ref = weakref.ref(limiter)

    def flush() -> None:
        live = ref()
        if live is None:
            return
        try:
            live.flush()
        except Exception as error:
            log.warning("could not give back QuickBooks request slots at shutdown (%s): they expire", error)

    return flush
