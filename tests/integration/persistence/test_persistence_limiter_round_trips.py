"""The shared request limiter's cost and accounting on PostgreSQL (issue 12): one statement per admission,
releases carried by the next admission or sent alone after the release delay, dated at the answer; a holder
killed with releases queued holds nothing beyond its lease; the limits hold for threads of two engines (two
processes' worth of pools and queues) admitting at once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from persistence_coordination_worker import answer_then_hang
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import create_engine_for
from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter
from adapters.persistence.sqlalchemy.models import RequestSlotRow, RequestStartRow
from core.ports import RateLimits

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def engines(postgres_url: URL) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database, as two processes would have (no ping: what production gives the limiter)."""
    pair = (create_engine_for(postgres_url, pool_pre_ping=False), create_engine_for(postgres_url, pool_pre_ping=False))
    try:
        yield pair
    finally:
        for engine in pair:
            engine.dispose()


class Trips:
    """Transactions begun and statements sent by one engine."""

    def __init__(self, engine: Engine) -> None:
        self.transactions = self.statements = 0
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _begin(self, *_: Any) -> None:
        self.transactions += 1

    def _statement(self, *_: Any) -> None:
        self.statements += 1


def _realm() -> str:
    return f"realm-{uuid.uuid4().hex[:8]}"


def _slots(engine: Engine, realm: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(RequestSlotRow).where(RequestSlotRow.realm_id == realm)
            ).scalar_one()
        )


def _db_now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        return connection.execute(select(func.clock_timestamp())).scalar_one()  # type: ignore[no-any-return]


def test_an_admission_is_one_statement_that_carries_the_previous_release(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    limiter = PostgresRequestLimiter(engine, RateLimits(per_minute=500, per_second=100, in_flight=1))
    realm = _realm()
    trips = Trips(engine)
    for _ in range(5):
        # One in flight allowed: each admission succeeds only because it gives back the request before it.
        with limiter.acquire(realm):
            pass
    assert (trips.transactions, trips.statements) == (5, 5)
    assert _slots(engine, realm) == 1  # the last release is still queued ...
    time.sleep(0.5)
    assert _slots(engine, realm) == 0  # ... and went out alone after the release delay
    assert (trips.transactions, trips.statements) == (6 + 2, 6 + 2)  # that one, and the two counts above


def test_a_queued_release_frees_the_slot_for_another_process_within_the_release_delay(
    engines: tuple[Engine, Engine],
) -> None:
    limits = RateLimits(per_minute=500, per_second=100, in_flight=1)
    realm = _realm()
    quiet = PostgresRequestLimiter(engines[0], limits)
    other = PostgresRequestLimiter(engines[1], limits)
    with quiet.acquire(realm):
        pass
    answered = time.monotonic()
    assert other.try_admit(realm)[0] is None  # the quiet process has not said yet
    with other.acquire(realm):
        waited = time.monotonic() - answered
    assert waited < 0.2 + 0.3  # the release delay, and a poll or two


def test_a_release_sent_late_dates_the_start_at_the_answer(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    limiter = PostgresRequestLimiter(engine, RateLimits(), release_delay=1.0)
    realm = _realm()
    with limiter.acquire(realm):
        before = _db_now(engine).timestamp()  # QuickBooks has not answered yet
    answered = _db_now(engine).timestamp()
    time.sleep(0.6)  # then the next admission carries the release
    with limiter.acquire(realm + "-other"):
        pass
    with engine.connect() as connection:
        started = connection.execute(
            select(RequestStartRow.started).where(RequestStartRow.realm_id == realm)
        ).scalar_one()
    # Not before the answer (QuickBooks may count the request until then), nor when the release arrived.
    assert before <= started.timestamp() < answered + 0.1


def test_a_holder_killed_with_its_release_queued_frees_the_slot_after_its_lease(
    engines: tuple[Engine, Engine], postgres_url: URL
) -> None:
    limits = RateLimits(per_minute=500, per_second=100, in_flight=1)
    realm = _realm()
    lease = 2.0
    ready = SPAWN.Event()
    url = postgres_url.render_as_string(hide_password=False)
    holder = SPAWN.Process(target=answer_then_hang, args=(url, realm, limits, lease, ready))
    holder.start()
    limiter = PostgresRequestLimiter(engines[0], limits)
    try:
        assert ready.wait(60), "the holder never answered its request"
        assert limiter.try_admit(realm)[0] is None  # its slot is still taken: the release was never sent
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    killed = time.monotonic()
    with limiter.acquire(realm):
        waited = time.monotonic() - killed
    assert waited < lease + 0.5


def test_threads_of_two_engines_keep_to_the_in_flight_cap_and_the_second_window(
    engines: tuple[Engine, Engine],
) -> None:
    limits = RateLimits(per_minute=500, per_second=5, in_flight=3)
    realm = _realm()
    limiters = [PostgresRequestLimiter(engine, limits) for engine in engines]
    intervals: list[tuple[float, float]] = []
    guard = threading.Lock()

    def requests(limiter: PostgresRequestLimiter) -> None:
        for _ in range(3):
            with limiter.acquire(realm):
                began = time.monotonic()
                time.sleep(0.1)
                ended = time.monotonic()
            with guard:
                intervals.append((began, ended))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(requests, [limiters[n % 2] for n in range(8)]))
    assert len(intervals) == 24
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak <= limits.in_flight
    starts = sorted(start for start, _ in intervals)
    crowded = [(a, b) for a, b in zip(starts, starts[limits.per_second :], strict=False) if b - a < 1.0]
    assert crowded == []


def test_threads_of_two_engines_never_admit_more_than_the_minute_allows(engines: tuple[Engine, Engine]) -> None:
    limits = RateLimits(per_minute=7, per_second=100, in_flight=100)
    realm = _realm()
    limiters = [PostgresRequestLimiter(engine, limits) for engine in engines]
    with ThreadPoolExecutor(8) as pool:
        attempts = list(pool.map(lambda n: limiters[n % 2].try_admit(realm), range(40)))
    admitted = [(n, slot) for n, (slot, _) in enumerate(attempts) if slot is not None]
    assert len(admitted) == limits.per_minute
    assert all(wait > 0 for slot, wait in attempts if slot is None)
    for n, slot in admitted:
        limiters[n % 2].release(slot)
    time.sleep(0.5)  # the other engine's releases go out after the release delay
    slot, wait = limiters[0].try_admit(realm)
    assert slot is None and 59.0 < wait <= 60.1  # answered now: the minute runs from their answers


def test_a_refused_admission_is_told_the_instant_a_slot_frees_in_the_second_window(
    engines: tuple[Engine, Engine],
) -> None:
    """The wait is exact, counted from the answers: after sleeping it the next request goes at once (not a
    poll or a window later), and no sooner than a second after the answers (no margin on top)."""
    engine, other = engines
    limits = RateLimits(per_minute=500, per_second=2, in_flight=10)
    limiter, second_process = PostgresRequestLimiter(engine, limits), PostgresRequestLimiter(other, limits)
    realm = _realm()
    held = [limiter.try_admit(realm)[0] for _ in range(2)]
    for slot in held:
        assert slot is not None
        limiter.release(slot)
    limiter.flush()
    answered = _db_now(engine).timestamp()
    refused, wait = second_process.try_admit(realm)
    assert refused is None and 0.8 < wait <= 1.0
    time.sleep(wait)
    admitted, _ = second_process.try_admit(realm)
    assert admitted is not None
    assert _db_now(other).timestamp() - answered >= 1.0 - 0.05  # the answers were dated a moment before
    second_process.release(admitted)
