"""Process bodies for the cross-process limiter and lock tests (importable by a spawned interpreter).

Each records wall-clock times (time.time(): one clock for every process on the machine) of what it did
while holding a request slot or a company lock, so the test can check the limits held across processes.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from adapters.persistence.sqlalchemy import create_engine_for
from adapters.persistence.sqlalchemy.company_lock import PostgresCompanyLock
from adapters.persistence.sqlalchemy.limiter import PostgresRequestLimiter
from core.ports import RateLimits

Interval = tuple[float, float]


def _ready_to_go(engine: Engine, start: Any) -> None:
    """Connects first (a spawned interpreter takes a while to start and import), then waits for the other
    processes at `start` (a Manager barrier), so that all of them really compete."""
    with engine.connect():
        pass
    start.wait(60)


def hammer_realm(url: str, realm: str, limits: RateLimits, requests: int, hold: float, start: Any) -> list[Interval]:
    """Sends `requests` pretend requests of `hold` seconds each through the shared limiter."""
    engine = create_engine_for(url)
    limiter = PostgresRequestLimiter(engine, limits)
    intervals: list[Interval] = []
    try:
        _ready_to_go(engine, start)
        for _ in range(requests):
            with limiter.acquire(realm):
                began = time.time()  # after admission, before release: inside the real slot
                time.sleep(hold)
                intervals.append((began, time.time()))
        return intervals
    finally:
        engine.dispose()


def hold_slot_forever(url: str, realm: str, limits: RateLimits, slot_lease: float, ready: Any) -> None:
    """Takes a slot and never gives it back: the test SIGKILLs this process."""
    from datetime import timedelta

    engine = create_engine_for(url)
    limiter = PostgresRequestLimiter(engine, limits, slot_lease=timedelta(seconds=slot_lease))
    with limiter.acquire(realm):
        ready.set()
        time.sleep(3600)


def take_turns(url: str, key: str, rounds: int, hold: float, start: Any) -> list[Interval]:
    """Holds the company lock `rounds` times for `hold` seconds each."""
    engine = create_engine_for(url)
    lock = PostgresCompanyLock(engine)
    intervals: list[Interval] = []
    try:
        _ready_to_go(engine, start)
        for _ in range(rounds):
            with lock.hold(key):
                began = time.time()
                time.sleep(hold)
                intervals.append((began, time.time()))
        return intervals
    finally:
        engine.dispose()


def hold_lock_forever(url: str, key: str, ready: Any) -> None:
    """Takes the company lock and never releases it: the test SIGKILLs this process."""
    engine = create_engine_for(url)
    with PostgresCompanyLock(engine).hold(key):
        ready.set()
        time.sleep(3600)


def answer_then_hang(url: str, realm: str, limits: RateLimits, slot_lease: float, ready: Any) -> None:
    """Completes one request, so that its release waits in the queue (the release delay is an hour), then
    hangs: the test SIGKILLs this process with the release never sent."""
    from datetime import timedelta

    engine = create_engine_for(url)
    limiter = PostgresRequestLimiter(engine, limits, slot_lease=timedelta(seconds=slot_lease), release_delay=3600)
    with limiter.acquire(realm):
        pass
    ready.set()
    time.sleep(3600)
