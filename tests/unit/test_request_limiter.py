"""The in-process request limiter on a fake clock (issue 12): it never admits a request that could arrive at
QuickBooks inside a full window, and it admits at the first instant a slot frees (not a poll or a window
later), so that one company can be driven at QBO's ceiling."""

from __future__ import annotations

import math
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.inprocess import MINUTE, SECOND, InProcessRequestLimiter
from core.ports import RateLimits

EXAMPLES = int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "200"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(limits: RateLimits) -> tuple[InProcessRequestLimiter, FakeClock]:
    clock = FakeClock()
    return InProcessRequestLimiter(limits, monotonic=clock), clock


# A step: admit one request (it stays in flight), answer the oldest request in flight, or let time pass.
STEPS = st.lists(
    st.one_of(
        st.just(("admit", 0.0)),
        st.just(("answer", 0.0)),
        st.tuples(st.just("advance"), st.floats(min_value=0.001, max_value=3.0)),
    ),
    max_size=120,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    steps=STEPS,
    per_second=st.integers(1, 5),
    per_minute=st.integers(1, 12),
    in_flight=st.integers(1, 4),
)
def test_never_admits_a_request_that_could_arrive_inside_a_full_window(
    steps: list[tuple[str, float]], per_second: int, per_minute: int, in_flight: int
) -> None:
    limits = RateLimits(per_minute=per_minute, per_second=per_second, in_flight=in_flight)
    limiter, clock = _limiter(limits)
    admitted: list[float] = []  # admission times
    answered: dict[int, float] = {}  # request -> its answer
    flying: list[int] = []
    for kind, seconds in steps:
        if kind == "advance":
            clock.now += seconds
        elif kind == "answer" and flying:
            request = flying.pop(0)
            limiter._answered("realm")
            answered[request] = clock.now
        elif kind == "admit" and limiter.try_admit("realm") == 0:
            # It may arrive now; each earlier one may have arrived as late as its answer (or now, if unanswered).
            latest = [answered.get(n, clock.now) for n in range(len(admitted))]
            assert len(flying) < in_flight
            for length, allowed in ((SECOND, per_second), (MINUTE, per_minute)):
                assert sum(1 for t in latest if clock.now - t < length) < allowed
            flying.append(len(admitted))
            admitted.append(clock.now)


@settings(max_examples=EXAMPLES, deadline=None)
@given(per_second=st.integers(1, 10), per_minute=st.integers(1, 40), latency=st.floats(0.0, 0.5))
def test_a_refused_request_is_told_the_exact_instant_it_may_go(
    per_second: int, per_minute: int, latency: float
) -> None:
    """Admit whenever allowed, each request answered `latency` after it went: every wait returned is exactly
    the time to the next admission, and over a full minute the minute's allowance is all used."""
    limiter, clock = _limiter(RateLimits(per_minute=per_minute, per_second=per_second, in_flight=per_second))
    end = clock.now + MINUTE
    admissions = 0
    while True:
        wait = limiter.try_admit("realm")
        if wait > 0:
            assert wait < math.inf  # nothing is in flight: only a window can hold it, and it says until when
            if clock.now + wait >= end:
                break
            clock.now += wait - 1e-6
            assert limiter.try_admit("realm") > 0  # a moment sooner it must still wait: the wait was not longer
            clock.now += 1e-6
            # At that instant, not a poll later (but for the rounding of `now + wait - now`).
            for _ in range(4):
                rounding = limiter.try_admit("realm")
                if rounding == 0:
                    break
                assert rounding < 1e-9
                clock.now = math.nextafter(clock.now, math.inf)
            assert rounding == 0
        admissions += 1
        clock.now += latency
        limiter._answered("realm")
        if clock.now >= end:
            break
    # One request at a time: `per_second` of them back to back, then the next a second after the first's answer.
    cycle = max(per_second * latency, SECOND + latency)
    assert admissions <= per_minute
    assert admissions >= min(per_minute, int(MINUTE / cycle) * per_second)


def test_requests_in_flight_fill_the_windows_until_they_are_answered() -> None:
    limiter, clock = _limiter(RateLimits(per_minute=100, per_second=2, in_flight=10))
    assert limiter.try_admit("realm") == 0
    assert limiter.try_admit("realm") == 0
    clock.now += 5.0  # long ago, but not answered: they may be arriving only now
    assert limiter.try_admit("realm") == math.inf
    limiter._answered("realm")
    clock.now += 0.4
    # One still in flight (it counts as arriving now), one answered 0.4 s ago: room a second after that answer.
    assert limiter.try_admit("realm") == pytest.approx(0.6)
    limiter._answered("realm")
    assert limiter.try_admit("realm") == pytest.approx(0.6)
    clock.now += 0.6 + 1e-9
    assert limiter.try_admit("realm") == 0
    assert limiter.try_admit("other") == 0  # companies never wait for each other


def test_a_waiting_thread_is_admitted_as_soon_as_a_request_is_answered() -> None:
    limiter = InProcessRequestLimiter(RateLimits(per_minute=100, per_second=100, in_flight=1))
    order: list[str] = []
    with limiter.acquire("realm"):
        # The waiter blocks in acquire until this request is answered.
        waiter = threading.Thread(target=lambda: _acquire_and_note(limiter, order))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and order == []
        order.append("answered")
    waiter.join(5)
    assert order == ["answered", "admitted"]


def _acquire_and_note(limiter: InProcessRequestLimiter, order: list[str]) -> None:
    with limiter.acquire("realm"):
        order.append("admitted")


def test_batch_requests_also_fill_a_batch_window_of_their_own_and_other_requests_go_on() -> None:
    limiter, clock = _limiter(RateLimits(per_minute=100, per_second=100, in_flight=10, batch_per_minute=2))
    for _ in range(2):
        assert limiter.batch_room("realm")
        with limiter.acquire("realm", batch=True):
            clock.now += 1.0
    assert not limiter.batch_room("realm")
    assert limiter.try_admit("realm", batch=True) == pytest.approx(59.0)  # until the first batch leaves the minute
    assert limiter.try_admit("realm") == 0  # a single request does not wait for the batch window
    limiter._answered("realm")
    assert limiter.batch_room("other")  # companies never wait for each other
    clock.now += 59.0
    assert limiter.batch_room("realm") and limiter.try_admit("realm", batch=True) == 0
    limiter._answered("realm", batch=True)


def test_a_batch_in_flight_counts_in_the_batch_window_and_in_the_companys() -> None:
    limiter, _ = _limiter(RateLimits(per_minute=100, per_second=2, in_flight=10, batch_per_minute=1))
    assert limiter.try_admit("realm", batch=True) == 0
    assert not limiter.batch_room("realm")  # in flight: counted already
    assert limiter.try_admit("realm") == 0
    assert limiter.try_admit("realm") == math.inf  # the batch holds one of the second's two places
