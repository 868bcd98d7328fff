"""In-process implementations of the coordination ports: `RequestLimiter` and `CompanyLock`.

They coordinate the threads of one process, which is all a deployment on SQLite (or on the in-memory fake)
has: `adapters.coordination.InProcessCoordinationModule` binds them there. Several processes sharing
PostgreSQL need the shared ones (`adapters.persistence.sqlalchemy.limiter`, `.company_lock`). Like
`adapters.system`, this module belongs to no technology, so any adapter may build on it.

Intuit meters each company (realm) per app: 500 requests a minute, 10 a second and 10 at once, and 40 batch
requests a minute (QUICKBOOKS.md); `RateLimits` holds those numbers. A batch request counts in the company's
windows like any request, and in the company's batch window too: a window of its own, keyed
`batch_window_key(realm)`, with `batch_limits` (the shared limiter keeps it the same way).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.ports import CompanyLock, RateLimits, RequestLimiter

# The windows QuickBooks meters a company by, in seconds.
SECOND, MINUTE = 1.0, 60.0


def batch_window_key(realm_id: str) -> str:
    """The key a company's batch requests are counted under, apart from all its requests (`realm_id`)."""
    return realm_id + "/batch"


def batch_limits(limits: RateLimits) -> RateLimits:
    """The batch window's limits: `batch_per_minute` a minute (and so at most that many in any second); the
    in-flight cap is the company's own, which every batch request also holds."""
    return RateLimits(
        per_minute=limits.batch_per_minute, per_second=limits.batch_per_minute, in_flight=limits.in_flight
    )


@dataclass
class _Window:
    """The requests of one company: when those of the last minute were answered, and how many are in flight."""

    answered: deque[float] = field(default_factory=deque)  # oldest first
    in_flight: int = 0


class InProcessRequestLimiter(RequestLimiter):
    """Sliding one-second and one-minute windows plus a cap on concurrent requests, per company, shared by
    every thread of this process.

    QuickBooks counts a request when it arrives, some time between our sending it and its answer (a busy
    machine can hold a request between its admission and its arrival longer than any margin). So a request
    counts in every window from its admission until it is answered, and then as if it had arrived at its
    answer: the next one may go exactly a window after that, never sooner, and no margin is needed.
    A request that would overfill a window waits exactly until the window's oldest answer leaves it (or, when
    requests in flight fill it, until one is answered)."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits or RateLimits()
        self._batch_limits = batch_limits(self._limits)
        self._monotonic = monotonic
        self._windows: dict[str, _Window] = {}
        self._changed = threading.Condition()

    @property
    def limits(self) -> RateLimits:
        return self._limits

    @contextmanager
    def acquire(self, realm_id: str, *, batch: bool = False) -> Iterator[None]:
        self._admit(realm_id, batch)
        try:
            yield
        finally:
            self._answered(realm_id, batch)

    def batch_room(self, realm_id: str) -> bool:
        with self._changed:
            now = self._monotonic()
            return self._wait_needed(self._window(batch_window_key(realm_id), now), now, self._batch_limits) <= 0

    def try_admit(self, realm_id: str, *, batch: bool = False) -> float:
        """One admission attempt: 0 when admitted (then `_answered` gives the request back), else how many
        seconds are worth waiting (infinite: until a request in flight is answered). A batch is admitted
        into the company's windows and its batch window at once, or into neither."""
        with self._changed:
            now = self._monotonic()
            windows = [(self._window(realm_id, now), self._limits)]
            if batch:
                windows.append((self._window(batch_window_key(realm_id), now), self._batch_limits))
            wait = max(self._wait_needed(window, now, limits) for window, limits in windows)
            if wait <= 0:
                for window, _ in windows:
                    window.in_flight += 1
            return wait

    def _window(self, key: str, now: float) -> _Window:
        window = self._windows.setdefault(key, _Window())
        while window.answered and now - window.answered[0] >= MINUTE:
            window.answered.popleft()
        return window

    def _admit(self, realm_id: str, batch: bool = False) -> None:
        with self._changed:
            while (wait := self.try_admit(realm_id, batch=batch)) > 0:
                # Woken early when a request is answered (it may free the in-flight cap or a window).
                self._changed.wait(timeout=None if wait == math.inf else wait)

    def _answered(self, realm_id: str, batch: bool = False) -> None:
        with self._changed:
            answered = self._monotonic()  # read under the lock: the deques stay in order
            for key in (realm_id, batch_window_key(realm_id)) if batch else (realm_id,):
                window = self._windows[key]
                window.in_flight -= 1
                window.answered.append(answered)
            self._changed.notify_all()

    @staticmethod
    def _wait_needed(window: _Window, now: float, limits: RateLimits) -> float:
        if window.in_flight >= limits.in_flight:
            return math.inf
        waits = [0.0]
        for length, allowed in ((MINUTE, limits.per_minute), (SECOND, limits.per_second)):
            # Requests in flight count as arriving now; the rest of the room is the window's answered ones.
            room = allowed - window.in_flight
            if room <= 0:
                return math.inf
            if len(window.answered) >= room:
                nth = window.answered[-room]  # while it is inside the window, the window is full
                if now - nth < length:
                    waits.append(length - (now - nth))
        return max(waits)


class UnlimitedRequestLimiter(RequestLimiter):
    """Admits everything at once: for a test double that does not meter requests."""

    @contextmanager
    def acquire(self, realm_id: str, *, batch: bool = False) -> Iterator[None]:
        yield

    def batch_room(self, realm_id: str) -> bool:
        return True


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
