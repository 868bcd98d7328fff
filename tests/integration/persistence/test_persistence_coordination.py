"""QuickBooks request limits and the company lock hold across OS processes sharing PostgreSQL, and a
process killed while holding either does not block the others beyond its lease (or its session)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from persistence_coordination_worker import Interval, hammer_realm, hold_lock_forever, hold_slot_forever, take_turns
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import URL

from adapters.inprocess import batch_limits, batch_window_key
from adapters.persistence.sqlalchemy import create_engine_for
from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock
from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter
from adapters.persistence.sqlalchemy.models import RequestSlotRow
from core.ports import RateLimits

# spawn, not fork: a forked child would inherit the parent's pooled connections.
SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 3


@pytest.fixture
def engine(postgres_url: URL) -> Iterator[Engine]:
    engine = create_engine_for(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _max_overlap(intervals: list[Interval]) -> int:
    """The most intervals open at one instant (an end and a start at the same instant do not overlap)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def _ran_together(per_process: list[list[Interval]]) -> bool:
    """Every process was still working when the last one began: the limits were shared, not taken in turn."""
    return max(run[0][0] for run in per_process) < min(run[-1][1] for run in per_process)


def _in_processes(target: object, *args: object) -> list[list[Interval]]:
    """Runs `target(*args, start)` in PROCESSES processes that begin together at the `start` barrier."""
    with SPAWN.Manager() as manager, ProcessPoolExecutor(max_workers=PROCESSES, mp_context=SPAWN) as pool:
        start = manager.Barrier(PROCESSES)
        futures = [pool.submit(target, *args, start) for _ in range(PROCESSES)]  # type: ignore[arg-type]
        return [f.result(timeout=120) for f in futures]


# --- the request limiter --------------------------------------------------------------------------


def test_processes_sharing_a_realm_keep_to_its_in_flight_cap_and_per_second_window(postgres_url: URL) -> None:
    limits = RateLimits(per_minute=500, per_second=5, in_flight=3)
    realm = f"realm-{uuid.uuid4().hex[:8]}"
    # Each process alone would send 4 a second; together 12, at most 3 at once: both limits bind.
    per_process = _in_processes(hammer_realm, _render(postgres_url), realm, limits, 8, 0.25)

    intervals = [interval for run in per_process for interval in run]
    assert len(intervals) == PROCESSES * 8
    assert _ran_together(per_process)
    assert _max_overlap(intervals) <= limits.in_flight
    starts = sorted(start for start, _ in intervals)
    crowded = [
        (round(a, 3), round(b, 3))
        for a, b in zip(starts, starts[limits.per_second :], strict=False)
        if b - a < 1.0  # per_second + 1 requests within one second
    ]
    assert crowded == []
    engine = create_engine_for(postgres_url)
    try:
        with engine.connect() as connection:
            left = connection.execute(
                select(func.count()).select_from(RequestSlotRow).where(RequestSlotRow.realm_id == realm)
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0  # every slot was given back


def test_the_minute_window_and_the_in_flight_cap_make_a_company_wait(engine: Engine) -> None:
    limiter = PostgresRequestLimiter(engine, RateLimits(per_minute=4, per_second=100, in_flight=2))
    for _ in range(4):
        with limiter.acquire("busy"):
            pass
    slot, wait = limiter.try_admit("busy")
    assert slot is None and 59.0 < wait <= 60.1  # until the oldest of the four leaves the minute

    first, _ = limiter.try_admit("other")  # another company is not held back
    second, _ = limiter.try_admit("other")
    assert first is not None and second is not None
    third, wait = limiter.try_admit("other")
    assert third is None and wait > 0  # two in flight: full
    limiter.release(first)
    fourth, _ = limiter.try_admit("other")
    assert fourth is not None
    limiter.release(second)
    limiter.release(fourth)


def test_a_window_full_until_a_known_moment_is_reserved_in_one_round_trip(engine: Engine) -> None:
    """At the ceiling a waiting request costs no second round trip: the admission reserves the moment the
    window frees up, and counts the reservation in every window (migration 0018)."""
    limiter = PostgresRequestLimiter(
        engine, RateLimits(per_minute=500, per_second=2, in_flight=3), release_delay=30
    )  # no release sent on its own: every round trip below is an admission
    realm = f"realm-{uuid.uuid4().hex[:8]}"
    with limiter.acquire(realm):
        pass
    first_answered = time.monotonic()
    with limiter.acquire(realm):
        pass
    trips: list[str] = []

    def count(_connection: object, _cursor: object, statement: str, *_args: object) -> None:
        trips.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with limiter.acquire(realm):  # the second window holds two answered requests: it waits for the first's
            sent = time.monotonic()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(trips) == 1
    assert sent - first_answered >= 0.98  # a second after the first answer (the database dates it no earlier)

    other = f"realm-{uuid.uuid4().hex[:8]}"
    with limiter.acquire(other):
        pass
    time.sleep(0.2)
    with limiter.acquire(other):
        pass
    asked = time.monotonic()
    early, wait = limiter.try_admit(other, reserve=True)  # two answered within the last second
    assert early is not None and 0.5 < wait <= 1.0
    assert limiter.try_admit(other)[0] is None  # without reserving: full, the reservation counted in it
    asked_later = time.monotonic()
    later, later_wait = limiter.try_admit(other, reserve=True)
    # The next free moment: a second after the second answer, 0.2 s after the first reservation's.
    assert later is not None and (asked_later + later_wait) - (asked + wait) > 0.15
    # Both newest starts are reservations, in flight: when they leave the window is not known yet.
    blocked, poll = limiter.try_admit(other, reserve=True)
    assert blocked is None and 0 < poll < 0.1
    limiter.release(early)
    limiter.release(later)


def test_a_request_counts_in_the_second_window_until_it_has_surely_arrived(engine: Engine) -> None:
    """QuickBooks counts a request when it arrives, which may be long after it was admitted (a busy
    machine, a slow connection): until it has been answered, it must count in the current second."""
    limiter = PostgresRequestLimiter(engine, RateLimits(per_minute=500, per_second=2, in_flight=10))
    realm = f"realm-{uuid.uuid4().hex[:8]}"
    held = [limiter.try_admit(realm)[0], limiter.try_admit(realm)[0]]
    assert None not in held
    time.sleep(1.3)  # admitted over a second ago, but still in flight: they may not have arrived yet
    assert limiter.try_admit(realm)[0] is None
    for slot in held:
        assert slot is not None
        limiter.release(slot)
    assert limiter.try_admit(realm)[0] is None  # just answered: they may have arrived a moment ago
    time.sleep(1.2)
    late, _ = limiter.try_admit(realm)
    assert late is not None
    limiter.release(late)


def test_a_killed_holders_slot_is_free_again_after_its_lease(engine: Engine, postgres_url: URL) -> None:
    limits = RateLimits(per_minute=500, per_second=100, in_flight=1)
    realm = f"realm-{uuid.uuid4().hex[:8]}"
    lease = 2.0
    ready = SPAWN.Event()
    holder = SPAWN.Process(target=hold_slot_forever, args=(_render(postgres_url), realm, limits, lease, ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder never got its slot"
        limiter = PostgresRequestLimiter(engine, limits)
        assert limiter.try_admit(realm)[0] is None  # the only slot is taken
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    killed = time.monotonic()
    with limiter.acquire(realm):
        waited = time.monotonic() - killed
    assert waited < lease + 0.5  # no longer than what was left of the dead holder's lease


# --- the company lock ----------------------------------------------------------------------------------


def test_the_company_lock_excludes_across_processes(postgres_url: URL) -> None:
    key = f"company-{uuid.uuid4().hex[:8]}"
    per_process = _in_processes(take_turns, _render(postgres_url), key, 4, 0.1)

    intervals = sorted(interval for run in per_process for interval in run)
    assert len(intervals) == PROCESSES * 4
    assert _ran_together(per_process)
    overlapping = [(a, b) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1]]
    assert overlapping == []


def test_a_killed_holder_releases_the_company_lock(engine: Engine, postgres_url: URL) -> None:
    key = f"company-{uuid.uuid4().hex[:8]}"
    ready = SPAWN.Event()
    holder = SPAWN.Process(target=hold_lock_forever, args=(_render(postgres_url), key, ready))
    holder.start()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: _hold_then_set(PostgresCompanyLock(engine), key, got))
    try:
        assert ready.wait(60), "the holder never got the lock"
        waiter.start()
        assert not got.wait(0.5)  # held by the other process
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    assert got.wait(10)  # its session died with it, and the lock with the session
    waiter.join(10)


def test_the_company_lock_excludes_threads_and_keeps_keys_apart(engine: Engine) -> None:
    lock = PostgresCompanyLock(engine)
    key = f"company-{uuid.uuid4().hex[:8]}"
    same, other = threading.Event(), threading.Event()
    with lock.hold(key):
        threading.Thread(target=_hold_then_set, args=(lock, key, same), daemon=True).start()
        threading.Thread(target=_hold_then_set, args=(lock, key + "-b", other), daemon=True).start()
        assert other.wait(10)
        assert not same.wait(0.3)
    assert same.wait(10)


def _hold_then_set(lock: PostgresCompanyLock, key: str, done: threading.Event) -> None:
    with lock.hold(key):
        done.set()


def test_batch_requests_fill_a_shared_batch_window_of_their_own(engine: Engine) -> None:
    limits = RateLimits(per_minute=100, per_second=100, in_flight=10, batch_per_minute=2)
    limiter = PostgresRequestLimiter(engine, limits)
    other_process = PostgresRequestLimiter(engine, limits)
    for _ in range(2):
        assert other_process.batch_room("busy")
        with limiter.acquire("busy", batch=True):
            pass
    assert not other_process.batch_room("busy")  # the window is the database's, shared by every process
    assert other_process.batch_room("other")
    slot, wait = other_process.try_admit(batch_window_key("busy"), batch_limits(limits))
    assert slot is None and 59.0 < wait <= 60.1
    with other_process.acquire("busy"):  # a single request does not wait for the batch window
        pass


def test_a_batch_request_is_admitted_into_both_windows_in_one_round_trip(engine: Engine) -> None:
    limits = RateLimits(per_minute=100, per_second=100, in_flight=1, batch_per_minute=5)
    limiter = PostgresRequestLimiter(engine, limits, release_delay=30)  # releases ride with admissions
    realm = f"realm-{uuid.uuid4().hex[:8]}"
    trips: list[str] = []

    def count(_connection: object, _cursor: object, statement: str, *_args: object) -> None:
        trips.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with limiter.acquire(realm, batch=True):
            assert len(trips) == 1
            # Both windows hold it: the company's in-flight cap of one is taken, and so is a batch slot.
            assert limiter.try_admit(realm)[0] is None
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with limiter.acquire(realm):  # given back (carried by this very admission)
        pass
    held, _ = limiter.try_admit(realm)  # the company full, with no known moment: the batch window still admits
    assert held is not None
    admitted = threading.Event()

    def batch() -> None:
        with limiter.acquire(realm, batch=True):
            admitted.set()

    waiter = threading.Thread(target=batch, daemon=True)
    waiter.start()
    assert not admitted.wait(0.3)  # holding its batch slot, waiting for the company's
    limiter.release(held)
    assert admitted.wait(10)
    waiter.join(10)
    limiter.flush()
    with engine.connect() as connection:
        kept = connection.execute(
            select(func.count())
            .select_from(RequestSlotRow)
            .where(RequestSlotRow.realm_id.in_([realm, batch_window_key(realm)]))
        ).scalar_one()
    assert kept == 0  # every slot of both windows given back
