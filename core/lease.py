"""A running job's heartbeat: its lease is extended while its worker is alive, and only then.

The lease is what lets another worker take over a job whose worker died (R7: nothing accepted is lost).
It must therefore be short, yet a job may legitimately run longer than any short lease (QuickBooks slow
or throttled, many records). So a live worker keeps pushing its lease forward, every third of its length,
from a thread of its own: two beats can be missed before anyone may reclaim the job. A dead worker stops
beating, and its job is claimed again once the lease runs out.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType
from typing import Self

from core.domain import SyncJob
from core.ports import Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """Extends `job`'s lease for `worker_id` every `interval` while the `with` block runs.

    `lost` is set when the repository says the job is no longer ours (our lease ran out and another worker
    claimed it): the beats stop, and whatever this worker records later is refused by the worker's own
    "still ours?" check. A failed beat (the database briefly unreachable) is logged and tried again.
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
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._job = job
        self._worker_id = worker_id
        self._lease = lease
        self._interval = (interval or lease / 3).total_seconds()
        self._stop = threading.Event()
        self.lost = threading.Event()
        self.beats = 0
        self._thread = threading.Thread(target=self._run, name=f"lease-{job.job_id}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                extended = self._extend()
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the next one may get through.
                log.exception("could not extend the lease of sync job %s", self._job.name)
                continue
            if not extended:
                log.warning("sync job %s is no longer held by %s; its lease ran out", self._job.name, self._worker_id)
                self.lost.set()
                return
            self.beats += 1

    def _extend(self) -> bool:
        with self._uow_factory() as uow:
            job = self._job
            extended = uow.jobs.extend_lease(
                job.tenant_id, job.job_id, self._worker_id, self._clock.now() + self._lease
            )
            uow.commit()
        return extended
