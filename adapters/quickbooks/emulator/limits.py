"""QBO's per-company throttles, and the concurrency gauge tests use to prove a client stays under them.

Intuit documents, per realm and app: 500 requests a minute, 10 a second, 10 in flight, 40 batch requests a
minute. Only admitted requests count toward the windows (*guess*: whether QBO counts rejected ones is not
documented; not counting them lets a well-behaved client recover after its back-off).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from .shapes import JsonDict


@dataclass
class Limits:
    """Configurable limits (0 disables one)."""

    per_minute: int = 500
    per_second: int = 10
    concurrent: int = 10
    batch_per_minute: int = 40

    def update(self, spec: JsonDict) -> None:
        """Apply the admin payload's keys that name a limit."""
        for key in asdict(self):
            if key in spec:
                setattr(self, key, int(spec[key]))


@dataclass
class _Gauge:
    in_flight: int = 0
    max_in_flight: int = 0
    admitted: deque[float] = field(default_factory=deque)
    batches: deque[float] = field(default_factory=deque)
    throttled: int = 0
    total: int = 0


class RateLimiter:
    """Sliding-window counters and the in-flight gauge, per realm."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._gauges: dict[str, _Gauge] = {}

    def _gauge(self, realm_id: str) -> _Gauge:
        return self._gauges.setdefault(realm_id, _Gauge())

    def enter(self, realm_id: str) -> int:
        """A request to ``realm_id`` has arrived; returns how many are in flight including it."""
        with self._lock:
            gauge = self._gauge(realm_id)
            gauge.in_flight += 1
            gauge.total += 1
            gauge.max_in_flight = max(gauge.max_in_flight, gauge.in_flight)
            return gauge.in_flight

    def leave(self, realm_id: str) -> None:
        """The request's answer has been sent (or the connection dropped)."""
        with self._lock:
            self._gauge(realm_id).in_flight -= 1

    def admit(self, realm_id: str, in_flight_at_start: int, is_batch: bool) -> str | None:
        """None when the request may proceed, else which limit it broke."""
        limits = self.limits
        with self._lock:
            gauge = self._gauge(realm_id)
            now = time.monotonic()
            while gauge.admitted and gauge.admitted[0] <= now - 60:
                gauge.admitted.popleft()
            while gauge.batches and gauge.batches[0] <= now - 60:
                gauge.batches.popleft()
            last_second = sum(1 for t in reversed(gauge.admitted) if t > now - 1) if limits.per_second else 0
            reason = None
            if limits.concurrent and in_flight_at_start > limits.concurrent:
                reason = "concurrent"
            elif limits.per_second and last_second >= limits.per_second:
                reason = "per_second"
            elif limits.per_minute and len(gauge.admitted) >= limits.per_minute:
                reason = "per_minute"
            elif is_batch and limits.batch_per_minute and len(gauge.batches) >= limits.batch_per_minute:
                reason = "batch_per_minute"
            if reason:
                gauge.throttled += 1
                return reason
            gauge.admitted.append(now)
            if is_batch:
                gauge.batches.append(now)
            return None

    def snapshot(self, realm_id: str) -> JsonDict:
        """The gauge of one realm."""
        with self._lock:
            gauge = self._gauge(realm_id)
            now = time.monotonic()
            return {
                "in_flight": gauge.in_flight,
                "max_in_flight": gauge.max_in_flight,
                "requests_total": gauge.total,
                "admitted_last_minute": sum(1 for t in gauge.admitted if t > now - 60),
                "throttled": gauge.throttled,
            }

    def reset_counters(self, realm_id: str | None = None) -> None:
        """Forget windows and the max-in-flight mark (the in-flight count itself stays true)."""
        with self._lock:
            for key, gauge in self._gauges.items():
                if realm_id is None or key == realm_id:
                    in_flight = gauge.in_flight
                    self._gauges[key] = _Gauge(in_flight=in_flight, max_in_flight=in_flight)
