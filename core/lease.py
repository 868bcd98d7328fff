"""A running job's lease: extended while its worker is alive, and checked before every write.

The lease is what lets another worker take over a job whose worker died (R7: nothing accepted is lost).
It must therefore be short, yet a job may legitimately run longer than any short lease (QuickBooks slow
or throttled, many records). So a live worker keeps pushing its lease forward, every third of its length,
from a thread apart from the run's (one for every running job of the process: `Beats`): two beats can be
missed before anyone may reclaim the job. A dead worker stops
beating, and its job is claimed again once the lease runs out.

A worker that merely stalled (a long pause, a slow network) must not come back and write over what the
job's new owner wrote: the run checks its `JobLease` before every QuickBooks write and every record it
saves (fencing). The QuickBooks writes are checked by the accounting system itself, as the `WriteFence`
of each write (`FencedAccountingSystem` hands it down): right before each request actually leaves, so a
worker that stalled inside the adapter (waiting for the rate limiter, a token refresh, a retry's
back-off) sends nothing once its lease is gone. The check is a comparison with the injected clock, not a
database read: the lease is held until the expiry of its last successful extension, and lost from then on,
whether or not another worker has claimed the job yet (none can claim it before that instant).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Self, TypeVar

from core.domain import SyncJob
from core.errors import LeaseLostError
from core.ports import UNFENCED, AccountingSystem, Clock, ForwardingAccountingSystem, UnitOfWorkFactory, WriteFence

log = logging.getLogger(__name__)

T = TypeVar("T")


class JobLease(WriteFence):
    """What one job run knows of its lease: held until `expires` (by `clock`), unless found lost earlier.
    As a `WriteFence`, it lets a QuickBooks write be sent only while held.

    Lost is final: once `held()` has said no, it never says yes again, even if no one claimed the job
    meanwhile. Thread-safe: the heartbeat thread extends it while the run checks it.
    """

    def __init__(self, job: SyncJob, worker_id: str, clock: Clock, expires: datetime) -> None:
        self.job = job
        self.worker_id = worker_id
        self._clock = clock
        self._expires = expires
        self._lost = threading.Event()
        self._guard = threading.Lock()

    @property
    def expires(self) -> datetime:
        return self._expires

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def held(self) -> bool:
        with self._guard:
            if not self._lost.is_set() and self._clock.now() >= self._expires:
                log.warning(
                    "the lease of sync job %s held by %s ran out",
                    self.job.name,
                    self.worker_id,
                    extra={"job": self.job.name, "tenant": self.job.tenant_id, "worker": self.worker_id},
                )
                self._lost.set()
            return not self._lost.is_set()

    def check(self) -> None:
        """Raises `LeaseLostError` unless the lease is still held: call it before every write."""
        if not self.held():
            raise LeaseLostError(
                f"sync job {self.job.name} is no longer held by {self.worker_id}; leaving it to its new owner",
                metadata={"sync_job": self.job.name, "worker_id": self.worker_id},
            )

    def extended(self, expires: datetime) -> None:
        """The repository moved the lease to `expires` (a successful heartbeat)."""
        with self._guard:
            if not self._lost.is_set():
                self._expires = max(self._expires, expires)

    def lose(self) -> None:
        """The repository says the job is no longer ours."""
        self._lost.set()


class Beats:
    """One thread that beats the leases of every job running in the process, each when its interval has
    passed. A thread of its own per job cost about 160 µs of CPU to start and join, 3% of a whole sync's
    (issue 12). A beat is one short write; while one is slow (the database unreachable), the others wait
    behind it, as they would wait for the same database on threads of their own. Started on first use,
    ended when no lease has been held for `idle_seconds`."""

    def __init__(self, idle_seconds: float = 30.0) -> None:
        self._idle_seconds = idle_seconds
        self._changed = threading.Condition()
        self._due: dict[LeaseHeartbeat, float] = {}  # -> when its next beat is due (time.monotonic)
        self._beating: LeaseHeartbeat | None = None
        self._thread: threading.Thread | None = None

    def add(self, heartbeat: LeaseHeartbeat) -> None:
        with self._changed:
            self._due[heartbeat] = time.monotonic() + heartbeat.interval
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-beats", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, heartbeat: LeaseHeartbeat) -> None:
        """No beat of `heartbeat` runs once this returns (one under way is waited for)."""
        with self._changed:
            self._due.pop(heartbeat, None)
            while self._beating is heartbeat:
                self._changed.wait()

    def _run(self) -> None:
        with self._changed:
            while True:
                if not self._due:
                    self._changed.wait(self._idle_seconds)
                    if not self._due:
                        self._thread = None
                        return
                    continue
                heartbeat, due = min(self._due.items(), key=lambda item: item[1])
                delay = due - time.monotonic()
                if delay > 0:
                    self._changed.wait(delay)
                    continue
                self._beating = heartbeat
                self._changed.release()
                try:
                    alive = heartbeat.beat()
                except Exception:  # noqa: BLE001 - this thread beats every other lease too: it must go on
                    log.exception("the lease heartbeat of sync job %s failed", heartbeat.job_name)
                    alive = True
                finally:
                    self._changed.acquire()
                    self._beating = None
                    self._changed.notify_all()
                if heartbeat in self._due:
                    if alive:
                        self._due[heartbeat] = time.monotonic() + heartbeat.interval
                    else:
                        del self._due[heartbeat]


# The process' beats: every worker thread's heartbeats share its one thread.
BEATS = Beats()


class LeaseHeartbeat:
    """Extends `job`'s lease for `worker_id` every `interval` while the `with` block runs; `lease` is what
    the run checks before each write.

    The lease is lost when the repository says the job is no longer ours (our lease ran out and another
    worker claimed it), or when the clock passes the expiry of the last extension that got through (the
    database unreachable for too long): the beats stop, and the run stops before its next write. A failed
    beat is logged and tried again at the next interval.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        job: SyncJob,
        worker_id: str,
        *,
        lease: timedelta,
        interval: timedelta | None = None,
        beats: Beats = BEATS,
    ) -> None:
        if job.lease_expires is None:
            raise ValueError(f"sync job {job.name} was not claimed: it has no lease")
        self._uow_factory = uow_factory
        self._clock = clock
        self._job = job
        self._worker_id = worker_id
        self._length = lease
        self.interval = (interval or lease / 3).total_seconds()
        self._beats = beats
        self.lease = JobLease(job, worker_id, clock, job.lease_expires)
        self.beats = 0

    @property
    def job_name(self) -> str:
        return self._job.name

    def __enter__(self) -> Self:
        self._beats.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        self._beats.remove(self)

    def _fields(self) -> dict[str, str]:
        return {"job": self._job.name, "tenant": self._job.tenant_id, "worker": self._worker_id}

    def beat(self) -> bool:
        """Extends the lease once; whether it is still held. What the thread does every interval."""
        if not self.lease.held():
            return False
        expires = self._clock.now() + self._length
        try:
            extended = self._extend(expires)
        except Exception:  # noqa: BLE001 - a missed beat is survivable; the next one may get through.
            log.exception("could not extend the lease of sync job %s", self._job.name, extra=self._fields())
            return self.lease.held()
        if not extended:
            log.warning(
                "sync job %s is no longer held by %s; its lease ran out",
                self._job.name,
                self._worker_id,
                extra=self._fields(),
            )
            self.lease.lose()
            return False
        self.lease.extended(expires)
        self.beats += 1
        return True

    def _extend(self, expires: datetime) -> bool:
        with self._uow_factory() as uow:
            job = self._job
            extended = uow.jobs.extend_lease(job.tenant_id, job.job_id, self._worker_id, expires)
            uow.commit()
        return extended


class FencedAccountingSystem(ForwardingAccountingSystem):
    """The job run's view of the accounting system: the one place the run's lease is attached to its
    writes. Each write is handed the lease as its `WriteFence`, which the accounting system checks right
    before every request of the write is sent (after its own waits, before each resend), so that a write
    is refused with `LeaseLostError`, unsent, once the lease is lost. Reads go through: they change
    nothing. Every write of the port goes through `_send` (`ForwardingAccountingSystem`), so a write added
    to the port is fenced without an edit here."""

    def __init__(self, system: AccountingSystem, lease: JobLease) -> None:
        super().__init__(system)
        self._lease = lease

    def _send(self, write: str, fence: WriteFence, send: Callable[[WriteFence], T]) -> T:
        """The run's lease; a caller that brings a fence of its own gets both checked."""
        return send(self._lease if fence is UNFENCED else BothFences(self._lease, fence))


class BothFences(WriteFence):
    """Two fences, both checked: the first's refusal wins."""

    def __init__(self, first: WriteFence, second: WriteFence) -> None:
        self._first = first
        self._second = second

    def check(self) -> None:
        self._first.check()
        self._second.check()
