"""The background side: claim a queued sync job, run it, record how it ended.

Failures that may pass (QuickBooks down or throttled, a crash) are retried with capped exponential
backoff and jitter, up to the job's max_attempts; failures a person must fix end the job FAILED at once
with a message a bookkeeper understands. Either way nothing accepted is lost (R7): a FAILED job can be
retried with RetrySync.

Each run of a job ends with one log line saying how: succeeded and retry scheduled at INFO, failed at
WARNING (a person must act, or the retries ran out), with the job's fields as `extra` (job, tenant, kind,
target, attempts, duration_ms; reason, error and QuickBooks' intuit_tid for a failure). A run that lost its
lease writes no outcome (the job's new owner will) and says so in a warning.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta

from core.connection import QuickBooksConnection
from core.domain import (
    AuditEvent,
    AuditKind,
    EntityRef,
    EntityType,
    JobError,
    SyncJob,
    SyncJobState,
    SyncRecord,
    SyncState,
    in_lock_order,
)
from core.errors import AccountingError, LeaseLostError, QbsyncError, StorageUnavailableError, ThrottledError
from core.lease import LeaseHeartbeat
from core.ports import NO_METRICS, Clock, Metrics, UnitOfWork, UnitOfWorkFactory, WorkSignal
from core.sync_engine import FinishedRun, SyncEngine

log = logging.getLogger(__name__)

# How many attempts a job may spend waiting for other jobs (a payout for its payments) before it fails
# anyway: with the backoff's 10-minute cap, many hours — the other job ends long before, SUCCEEDED or FAILED.
MAX_WAITING_ATTEMPTS = 100

# How often an idle worker with a WorkSignal still looks for work no signal announces (a lease that ran
# out, a retry falling due): the signal covers new and retried jobs, so this can be far longer than the
# plain polling interval.
SIGNALLED_POLL_SECONDS = 2.0


class SyncWorker:
    """Runs queued sync jobs. While a job runs, its lease is extended every `lease / 3` (`LeaseHeartbeat`),
    so a job may run longer than its lease, and a worker that dies loses its jobs one lease later. A worker
    that finds its lease lost mid-job stops there and leaves the job to its new owner (`JobLease`)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        engine: SyncEngine,
        clock: Clock,
        *,
        lease: timedelta = timedelta(seconds=120),
        backoff_base: timedelta = timedelta(seconds=2),
        backoff_cap: timedelta = timedelta(minutes=10),
        metrics: Metrics = NO_METRICS,
        work_signal: WorkSignal | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._work_signal = work_signal
        self._engine = engine
        self._clock = clock
        self._lease = lease
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._metrics = metrics

    def run_next(self, worker_id: str) -> SyncJob | None:
        """Runs the next due job, if any, and returns it as it ended."""
        now = self._clock.now()
        with self._uow_factory() as uow:
            job = uow.jobs.claim_next(worker_id, now, now + self._lease)
            connection = None if job is None else _connection_of(uow, job)
            uow.commit()
        if job is None:
            return None
        if job.taken_over:
            self._metrics.lease_taken_over(job.kind.value)
        started = time.monotonic()
        try:
            # The heartbeat stops before the outcome is recorded: a beat must not race the final write.
            with LeaseHeartbeat(self._uow_factory, self._clock, job, worker_id, lease=self._lease) as heartbeat:
                finished = self._engine.run_unsaved(job, heartbeat.lease, connection)
        except LeaseLostError as exc:
            # Another worker owns the job now (or may at any moment): its outcome, its records' states and
            # its audit trail are the new owner's to write.
            log.warning("%s", exc.message, extra={**_job_fields(job, worker_id), "reason": exc.reason})
            return job
        except (AccountingError, StorageUnavailableError) as exc:  # both say whether a retry may succeed
            error = JobError(exc.reason, exc.message, exc.retryable, exc.metadata)
            return self._failed(job, worker_id, error, exc, started)
        except QbsyncError as exc:
            return self._failed(job, worker_id, JobError(exc.reason, exc.message, False, exc.metadata), exc, started)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the job: record it, retry later.
            log.exception("sync job %s crashed", job.name, extra=_job_fields(job, worker_id))
            error = JobError("INTERNAL", "qbsync hit an unexpected error while syncing; it will try again", True)
            return self._failed(job, worker_id, error, exc, started)
        return self._succeeded(job, worker_id, finished, started)

    def run_until(self, stop: threading.Event, worker_id: str, idle_seconds: float = 0.2) -> None:
        """The loop of one background worker thread; returns soon after `stop` is set."""
        while not stop.is_set():
            try:
                ran = self.run_next(worker_id)
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable: keep going.
                log.exception("worker %s could not claim a job", worker_id, extra={"worker": worker_id})
                ran = None
            else:
                self._metrics.claim_loop_ran()
            if ran is None:
                self._idle(stop, idle_seconds)

    def _idle(self, stop: threading.Event, idle_seconds: float) -> None:
        """Waits for work: `idle_seconds` without a WorkSignal; with one, until it signals or
        SIGNALLED_POLL_SECONDS pass, looking at `stop` every `idle_seconds`."""
        if self._work_signal is None:
            stop.wait(idle_seconds)
            return
        deadline = time.monotonic() + SIGNALLED_POLL_SECONDS
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._work_signal.wait(min(left, idle_seconds)):
                return

    def drain(self, worker_id: str = "drain", limit: int = 10_000) -> int:
        """Runs due jobs until none is left (tests, the demo). Returns how many ran."""
        count = 0
        while count < limit and self.run_next(worker_id) is not None:
            count += 1
        return count

    # --- endings ------------------------------------------------------------------------------------

    def _succeeded(self, job: SyncJob, worker_id: str, finished: FinishedRun, started: float) -> SyncJob:
        # One transaction: the run's last confirmed records, and the job's completion.
        with self._uow_factory() as uow:
            current = self._still_ours(uow, job, worker_id)
            if current is None:
                return job
            try:
                finished.save_records(uow)
            except LeaseLostError as exc:  # its committed intents let the new owner find what was written
                log.warning("%s", exc.message, extra={**_job_fields(job, worker_id), "reason": exc.reason})
                return job
            now = self._clock.now()
            current.state = SyncJobState.SUCCEEDED
            current.results = finished.results
            current.error = None
            current.update_time = now
            current.claimed_by = ""
            current.lease_expires = None
            uow.jobs.save(current)
            uow.audit.append(AuditEvent(job.tenant_id, now, AuditKind.SYNC_SUCCEEDED, job.target, job.job_id, ""))
            uow.commit()
        self._metrics.job_ended(job.kind.value, "succeeded", "")
        _log_outcome(logging.INFO, "succeeded", current, worker_id, started)
        return current

    def _failed(self, job: SyncJob, worker_id: str, error: JobError, exc: BaseException, started: float) -> SyncJob:
        with self._uow_factory() as uow:
            current = self._still_ours(uow, job, worker_id)
            if current is None:
                return job
            now = self._clock.now()
            if isinstance(exc, AccountingError) and not exc.uses_attempt and current.attempts < MAX_WAITING_ATTEMPTS:
                current.max_attempts += 1  # it waited for another job: that was no attempt of its own
            final = not error.retryable or current.attempts >= current.max_attempts
            current.error = error
            current.update_time = now
            current.claimed_by = ""
            current.lease_expires = None
            if final:
                current.state = SyncJobState.FAILED
                current.next_attempt_time = None
            else:
                current.state = SyncJobState.PENDING
                current.next_attempt_time = now + self._backoff(current.attempts, exc)
            uow.jobs.save(current)
            self._mark_records(uow, current, error.message, final=final)
            kind = AuditKind.SYNC_FAILED if final else AuditKind.SYNC_RETRY_SCHEDULED
            uow.audit.append(AuditEvent(job.tenant_id, now, kind, job.target, job.job_id, error.message))
            uow.commit()
        self._metrics.job_ended(job.kind.value, "failed" if final else "retry", error.reason)
        if final:
            # A person must act (closed books, a bad setting) or the retries ran out: an operator should hear.
            _log_outcome(logging.WARNING, "failed", current, worker_id, started)
        else:
            _log_outcome(logging.INFO, "retry scheduled", current, worker_id, started)
        return current

    def _backoff(self, attempts: int, exc: BaseException) -> timedelta:
        base = self._backoff_base.total_seconds()
        seconds = min(self._backoff_cap.total_seconds(), base * 2 ** max(attempts - 1, 0))
        seconds *= 0.5 + random.random() / 2  # jitter, so that retries of many jobs spread out
        if isinstance(exc, ThrottledError):
            seconds = max(seconds, exc.retry_after_seconds)
        return timedelta(seconds=seconds)

    @staticmethod
    def _still_ours(uow: UnitOfWork, job: SyncJob, worker_id: str) -> SyncJob | None:
        """A worker whose lease ran out must not overwrite what the job's new owner records. The job is
        read for update: no claimer can take it between this check and the commit of our outcome."""
        current = uow.jobs.get_for_update(job.tenant_id, job.job_id)
        if current is None or current.state is not SyncJobState.RUNNING or current.claimed_by != worker_id:
            fields = _job_fields(job, worker_id)
            log.warning("sync job %s is no longer held by %s; leaving it", job.name, worker_id, extra=fields)
            return None
        return current

    @staticmethod
    def _mark_records(uow: UnitOfWork, job: SyncJob, message: str, *, final: bool) -> None:
        """The target and whatever of its records is still waiting show the failure (R8): FAILED when
        no attempt is left (`final`), otherwise still PENDING with the error, as a retry is scheduled."""
        refs = [job.target]
        if job.target.type is EntityType.PAYMENT:
            found = uow.snapshots.get_payment(job.tenant_id, job.target.id)
            payments = [found.payment] if found else []
        else:
            payments = uow.snapshots.payments_of(job.tenant_id, job.opportunity_id)
            refs += [EntityRef(EntityType.PAYMENT, p.payment_id) for p in payments]
        refs += [EntityRef(EntityType.REFUND, r.refund_id) for p in payments for r in p.refunds]
        for ref in in_lock_order(refs):
            record = uow.sync_records.get(job.tenant_id, ref) or SyncRecord(tenant_id=job.tenant_id, entity=ref)
            if ref != job.target and record.state is not SyncState.PENDING:
                continue
            if record.state is SyncState.VOIDED:
                continue  # SPEC §11: final; a sync accepted before the void fails without bringing it back
            if final:
                record.mark_failed(message)
            else:
                record.mark_retrying(message)
            uow.sync_records.save(record)


def _connection_of(uow: UnitOfWork, job: SyncJob) -> QuickBooksConnection | None:
    """The job's tenant's stored connection, read in the claim's transaction: the run needs it first, and
    a transaction of its own would be one more per sync. It is as fresh as a read at the run's start
    (tokens another process rotated later are re-read by the token keeper before it refreshes). One
    that cannot be opened (a stored secret no configured key decrypts) is left for the run to read again:
    its error then ends the job as before, instead of failing every claim of the queue."""
    try:
        return uow.connections.for_branch(job.tenant_id, job.branch_id)
    except StorageUnavailableError:
        raise  # the claim's transaction is lost with it: the claim is tried again
    except Exception:  # noqa: BLE001 - see above: the run reads it again and reports why it cannot
        return None


# --- the log ----------------------------------------------------------------------------------------


def _job_fields(job: SyncJob, worker_id: str) -> dict[str, object]:
    return {
        "job": job.name,
        "tenant": job.tenant_id,
        "kind": job.kind.value,
        "target": str(job.target),
        "attempts": job.attempts,
        "worker": worker_id,
    }


def _log_outcome(level: int, outcome: str, job: SyncJob, worker_id: str, started: float) -> None:
    """The one line a job run ends with: how it ended, the job, and for a failure its reason and
    QuickBooks' transaction id (`intuit_tid`, when an answer of QuickBooks is behind it)."""
    fields = {
        **_job_fields(job, worker_id),
        "outcome": outcome.replace(" ", "_"),
        "max_attempts": job.max_attempts,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if job.error is not None:
        fields["reason"] = job.error.reason
        fields["error"] = job.error.message
        if job.error.metadata.get("intuit_tid"):
            fields["intuit_tid"] = job.error.metadata["intuit_tid"]
    if job.next_attempt_time is not None and job.state is SyncJobState.PENDING:
        fields["next_attempt_time"] = job.next_attempt_time.isoformat()
    log.log(level, "sync job %s", outcome, extra=fields)
