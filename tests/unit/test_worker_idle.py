"""An idle worker with a WorkSignal: it claims again as soon as the signal comes, and without one it still
looks for work once SIGNALLED_POLL_SECONDS have passed, checking its stop event in between."""

from __future__ import annotations

import threading
import time

import pytest

from core import worker as worker_module
from core.worker import SyncWorker
from tests.unit.support import Harness


class ScriptedSignal:
    """Answers each wait with `woken`, after sleeping through it when not woken (as a real signal would)."""

    def __init__(self, woken: bool) -> None:
        self.woken = woken
        self.timeouts: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.timeouts.append(timeout)
        if not self.woken:
            time.sleep(timeout)
        return self.woken


def _worker(signal: ScriptedSignal) -> SyncWorker:
    harness = Harness()
    return SyncWorker(harness.uow_factory, harness.engine, harness.clock, work_signal=signal)


def _run_rounds(worker: SyncWorker, monkeypatch: pytest.MonkeyPatch, rounds: int) -> int:
    """Runs the claim loop (finding no job) for `rounds` claims; returns how many it made."""
    stop = threading.Event()
    claims = 0
    run_next = worker.run_next

    def counted(worker_id: str) -> None:
        nonlocal claims
        claims += 1
        if claims == rounds:
            stop.set()
        assert run_next(worker_id) is None  # the queue is empty

    monkeypatch.setattr(worker, "run_next", counted)
    worker.run_until(stop, "w1", idle_seconds=0.01)
    return claims


def test_a_signal_ends_the_idle_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    signal = ScriptedSignal(woken=True)
    claims = _run_rounds(_worker(signal), monkeypatch, rounds=4)
    assert claims == 4
    assert len(signal.timeouts) == 3  # one wait between claims: each signal led straight to a claim


def test_without_a_signal_the_worker_polls_after_the_longer_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "SIGNALLED_POLL_SECONDS", 0.05)
    signal = ScriptedSignal(woken=False)
    claims = _run_rounds(_worker(signal), monkeypatch, rounds=3)
    assert claims == 3
    # Between two claims, several waits of at most idle_seconds (so a stop is seen), adding up to the interval.
    assert len(signal.timeouts) >= 2 * 2  # two idle spells (none after the last claim), several waits each
    assert max(signal.timeouts) <= 0.01
