"""In-process implementations of the coordination ports: `RequestLimiter` and `CompanyLock`.

They coordinate the threads of one process, which is all a deployment on SQLite (or on the in-memory fake)
has: `adapters.coordination.InProcessCoordinationModule` binds them there. Several processes sharing
PostgreSQL need the shared ones (`adapters.persistence.sqlalchemy.limiter`, `.company_lock`). Like
`adapters.system`, this module belongs to no technology, so any adapter may build on it.

Intuit meters each company (realm) per app: 500 requests a minute, 10 a second and 10 at once
(QUICKBOOKS.md); `RateLimits` holds those numbers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.ports import CompanyLock, RateLimits, RequestLimiter


@dataclass
class _Window:
    """The requests of one company: start times in the last minute and how many are in flight."""

    started: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class InProcessRequestLimiter(RequestLimiter):
    """Sliding one-second and one-minute windows plus a cap on concurrent requests, per company, shared by
    every thread of this process."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits or RateLimits()
        self._monotonic = monotonic
        self._windows: dict[str, _Window] = {}
        self._changed = threading.Condition()

    @property
    def limits(self) -> RateLimits:
        return self._limits

    @contextmanager
    def acquire(self, realm_id: str) -> Iterator[None]:
        self._admit(realm_id)
        try:
            yield
        finally:
            with self._changed:
                self._windows[realm_id].in_flight -= 1
                self._changed.notify_all()

    def _admit(self, realm_id: str) -> None:
        with self._changed:
            window = self._windows.setdefault(realm_id, _Window())
            while True:
                now = self._monotonic()
                while window.started and now - window.started[0] >= 60.0 + self._limits.margin_seconds:
                    window.started.popleft()
                wait = self._wait_needed(window, now)
                if wait <= 0:
                    window.started.append(now)
                    window.in_flight += 1
                    return
                # Woken early when a request finishes (in-flight cap); otherwise when the window slides.
                self._changed.wait(timeout=wait)

    def _wait_needed(self, window: _Window, now: float) -> float:
        limits = self._limits
        waits = [0.0]
        if window.in_flight >= limits.in_flight:
            waits.append(1.0)  # a finishing request notifies sooner
        minute, second = 60.0 + limits.margin_seconds, 1.0 + limits.margin_seconds
        if len(window.started) >= limits.per_minute:
            waits.append(minute - (now - window.started[-limits.per_minute]))
        last_second = [t for t in window.started if now - t < second]
        if len(last_second) >= limits.per_second:
            waits.append(second - (now - last_second[-limits.per_second]))
        return max(waits)


class UnlimitedRequestLimiter(RequestLimiter):
    """Admits everything at once: for a test double that does not meter requests."""

    @contextmanager
    def acquire(self, realm_id: str) -> Iterator[None]:
        yield


class InProcessCompanyLock(CompanyLock):
    """One `threading.Lock` per key, made on first use (keys are few: one per company)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield
