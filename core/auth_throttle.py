"""Slowing down whoever keeps presenting wrong API keys (SPEC.md section 12).

Failures are counted per (key id, caller address): a caller guessing the secret of one key id is slowed,
while the same key used from another address, and every other key used from the same address, is not.
After `free_failures` failures in a row, each further failure refuses that pair for a delay that doubles
(`first_delay`, 2x, 4x, ... up to `max_delay`); a refused call is answered before its key is looked at,
so a right secret does not get through either until the delay has passed. A quiet spell of
`forget_after` forgets the failures, and so does a success.

Written here rather than taken from a rate-limiting library (pyrate-limiter, limits): those count calls
let through and refuse beyond a rate, but this needs to count only *failures*, to refuse calls before
knowing whether they fail, and to grow the delay with each failure — a leaky bucket would keep answering a
persistent guesser at its leak rate forever. It also reads the core's `Clock`, so tests drive it without
sleeping, and it stays free of technology imports.

The counts live in this process: N API processes behind a balancer let N times as many guesses through.
That is enough: a secret is 256 random bits, so the throttle is there to keep a flood of wrong keys from
costing a database lookup and a log line each, not to make guessing hard; the log lines are the alarm.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import TooManyFailedAuthenticationsError
from core.ports import Clock


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)
    forget_after: timedelta = timedelta(minutes=15)
    # Bounds the memory a caller inventing key ids (or addresses) can make this take; the pairs that
    # failed longest ago are forgotten first.
    max_tracked: int = 10_000

    def __post_init__(self) -> None:
        if self.free_failures < 1:
            raise ValueError("free_failures must be at least 1")
        if self.forget_after < self.max_delay:
            raise ValueError("forget_after must be at least max_delay, or a refusal would outlast the count")


@dataclass
class _Failures:
    in_a_row: int
    last: datetime
    refused_until: datetime


class FailedAuthentications:
    """The recent failures per (key id, address). Thread-safe: every gRPC worker thread shares it."""

    def __init__(self, clock: Clock, policy: ThrottlePolicy | None = None) -> None:
        self._clock = clock
        self._policy = policy or ThrottlePolicy()
        self._lock = threading.Lock()
        # Least recently failed first, so that forgetting old pairs is a pop from the front.
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def check(self, key_id: str, address: str) -> None:
        """Raises TooManyFailedAuthenticationsError while the pair is refused."""
        now = self._clock.now()
        with self._lock:
            failures = self._failures.get((key_id, address))
            if failures is not None and now < failures.refused_until:
                raise TooManyFailedAuthenticationsError((failures.refused_until - now).total_seconds())

    def failed(self, key_id: str, address: str) -> tuple[int, timedelta]:
        """Counts a failure; returns the failures in a row and for how long the pair is now refused
        (zero while it has failures to spare)."""
        policy = self._policy
        now = self._clock.now()
        with self._lock:
            self._forget_old(now)
            pair = (key_id, address)
            failures = self._failures.pop(pair, None)
            in_a_row = 1 if failures is None else failures.in_a_row + 1
            delay = timedelta(0)
            if in_a_row >= policy.free_failures:
                delay = min(policy.max_delay, policy.first_delay * 2 ** min(in_a_row - policy.free_failures, 32))
            self._failures[pair] = _Failures(in_a_row, now, now + delay)
            while len(self._failures) > policy.max_tracked:
                self._failures.popitem(last=False)
            return in_a_row, delay

    def succeeded(self, key_id: str, address: str) -> None:
        """Forgets the pair's failures: a caller who mistyped a key and then got it right starts afresh."""
        with self._lock:
            self._failures.pop((key_id, address), None)

    def tracked(self) -> int:
        """How many pairs have failures remembered (for tests and metrics)."""
        with self._lock:
            return len(self._failures)

    def _forget_old(self, now: datetime) -> None:
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if now - oldest.last < self._policy.forget_after:
                return
            self._failures.popitem(last=False)
