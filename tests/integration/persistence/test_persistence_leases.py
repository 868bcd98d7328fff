"""The lease contract on every backend: extend_lease, get_for_update, and claims kept apart by identity_key."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

from persistence_builders import Backend, at, sync_job

from core.domain import SyncJob, SyncJobState


def _add(backend: Backend, *jobs: SyncJob) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def _claim(backend: Backend, worker: str, now: datetime, lease_minutes: float = 5) -> str | None:
    with backend.uow() as uow:
        job = uow.jobs.claim_next(worker, now, now + timedelta(minutes=lease_minutes))
        uow.commit()
    return None if job is None else job.job_id


def _get(backend: Backend, job_id: str, tenant_id: str = "t1") -> SyncJob:
    with backend.uow() as uow:
        job = uow.jobs.get(tenant_id, job_id)
    assert job is not None
    return job


def _extend(backend: Backend, job_id: str, worker: str, until: datetime, *, commit: bool = True) -> bool:
    with backend.uow() as uow:
        extended = uow.jobs.extend_lease("t1", job_id, worker, until)
        if commit:
            uow.commit()
    return extended


# --- extend_lease -------------------------------------------------------------------------------------


def test_extend_lease_moves_only_the_holders_lease(backend: Backend) -> None:
    _add(backend, sync_job("j1"))
    assert _claim(backend, "w1", at(0)) == "j1"
    claimed = _get(backend, "j1")

    assert _extend(backend, "j1", "w1", at(30))
    assert _get(backend, "j1") == replace(claimed, lease_expires=at(30))  # nothing else changed
    assert not _extend(backend, "j1", "w2", at(60))  # not w2's job
    assert _extend(backend, "j1", "w1", at(90), commit=False)  # ...and rolled back: not kept
    assert _get(backend, "j1").lease_expires == at(30)
    assert not _extend(backend, "j-unknown", "w1", at(60))


def test_an_extended_lease_keeps_other_workers_out(backend: Backend) -> None:
    _add(backend, sync_job("j1"))
    assert _claim(backend, "w1", at(0), lease_minutes=5) == "j1"
    assert _extend(backend, "j1", "w1", at(12))
    assert _claim(backend, "w2", at(10)) is None  # the first lease would have run out at 5
    assert _claim(backend, "w2", at(13)) == "j1"  # a worker that stops beating loses the job


def test_extend_lease_is_refused_once_the_job_was_reclaimed_or_ended(backend: Backend) -> None:
    _add(backend, sync_job("j1"), sync_job("j2"))
    assert _claim(backend, "w1", at(0), lease_minutes=5) == "j1"
    assert _claim(backend, "w2", at(6)) == "j1"  # w1's lease ran out
    assert not _extend(backend, "j1", "w1", at(30))
    assert _get(backend, "j1").lease_expires == at(11)  # w2's lease is untouched
    assert _extend(backend, "j1", "w2", at(30))

    assert _claim(backend, "w3", at(6)) == "j2"
    with backend.uow() as uow:
        done = uow.jobs.get("t1", "j2")
        assert done is not None
        uow.jobs.save(replace(done, state=SyncJobState.SUCCEEDED, claimed_by="", lease_expires=None))
        uow.commit()
    assert not _extend(backend, "j2", "w3", at(30))
    assert _get(backend, "j2").lease_expires is None


# --- get_for_update -----------------------------------------------------------------------------------


def test_get_for_update_reads_the_tenants_job(backend: Backend) -> None:
    _add(backend, sync_job("j1"))
    with backend.uow() as uow:
        assert uow.jobs.get_for_update("t1", "j1") == sync_job("j1")
        assert uow.jobs.get_for_update("t2", "j1") is None
        assert uow.jobs.get_for_update("t1", "j-unknown") is None


def test_no_claim_slips_between_get_for_update_and_the_commit(backend: Backend) -> None:
    """A worker whose lease ran out checks it still holds the job and records the outcome; a claimer
    that comes in between must not take the job (it skips it, or waits and finds it finished)."""
    _add(backend, sync_job("j1"))
    assert _claim(backend, "w1", at(0), lease_minutes=5) == "j1"
    claimed: list[str | None] = []
    claimer = threading.Thread(target=lambda: claimed.append(_claim(backend, "w2", at(10))))
    with backend.uow() as uow:
        job = uow.jobs.get_for_update("t1", "j1")
        assert job is not None and job.claimed_by == "w1"
        claimer.start()
        claimer.join(timeout=0.5)  # PostgreSQL: skips the locked row now; SQLite/memory: waits for us
        uow.jobs.save(replace(job, state=SyncJobState.SUCCEEDED, claimed_by="", lease_expires=None))
        uow.commit()
    claimer.join(timeout=30)
    assert claimed == [None]
    assert _get(backend, "j1").state is SyncJobState.SUCCEEDED


# --- identity_key -------------------------------------------------------------------------------------


def _with_identity(job: SyncJob, identity: str) -> SyncJob:
    return replace(job, identity_key=identity)


def test_identity_key_round_trips(backend: Backend) -> None:
    _add(backend, _with_identity(sync_job("j1"), "t1/identity/abc"))
    assert _get(backend, "j1").identity_key == "t1/identity/abc"


def test_claim_next_never_runs_two_jobs_with_the_same_identity_key(backend: Backend) -> None:
    _add(
        backend,
        _with_identity(sync_job("j1", customer_id="C1", created=at(0)), "t1/identity/ann"),
        _with_identity(sync_job("j2", customer_id="C2", created=at(1)), "t1/identity/ann"),  # C1's twin
        _with_identity(sync_job("j3", customer_id="C3", created=at(2)), "t1/identity/bob"),
        _with_identity(sync_job("j4", customer_id="C4", created=at(3)), ""),  # accepted before 0003
        _with_identity(sync_job("j5", customer_id="C5", created=at(4)), ""),  # "" never blocks ""
    )
    assert _claim(backend, "w1", at(10)) == "j1"
    assert _claim(backend, "w2", at(10)) == "j3"  # j2 waits: the same person is being written
    assert _claim(backend, "w2", at(10)) == "j4"
    assert _claim(backend, "w2", at(10)) == "j5"
    assert _claim(backend, "w2", at(10)) is None
    assert _claim(backend, "w2", at(16)) == "j1"  # j1's lease ran out: j1 (older) is due again, not j2
    with backend.uow() as uow:
        job = uow.jobs.get("t1", "j1")
        assert job is not None
        uow.jobs.save(replace(job, state=SyncJobState.SUCCEEDED))
        uow.commit()
    assert _claim(backend, "w2", at(16)) == "j2"


def test_threads_never_run_two_jobs_of_one_identity_at_once(backend: Backend) -> None:
    # 5 identities, each shared by 4 CRM customers (distinct lock_keys): only the identity keeps them apart.
    jobs = [
        _with_identity(sync_job(f"j{i:02}", customer_id=f"C{i}", created=at(i)), f"t1/identity/{i % 5}")
        for i in range(20)
    ]
    _add(backend, *jobs)
    now = at(60)
    guard = threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []
    finished: list[str] = []
    start = threading.Barrier(6)

    def worker(index: int) -> None:
        start.wait()
        idle_rounds = 0
        while idle_rounds < 20:
            with backend.uow() as uow:
                job = uow.jobs.claim_next(f"w{index}", now, now + timedelta(minutes=5))
                uow.commit()
            if job is None:
                idle_rounds += 1
                time.sleep(0.01)
                continue
            idle_rounds = 0
            with guard:
                if job.identity_key in running:
                    overlaps.append(job.identity_key)
                running.add(job.identity_key)
            time.sleep(0.002)
            with guard:
                running.discard(job.identity_key)
            with backend.uow() as uow:
                uow.jobs.save(replace(job, state=SyncJobState.SUCCEEDED))
                uow.commit()
            with guard:
                finished.append(job.job_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []
    assert sorted(finished) == sorted(j.job_id for j in jobs)
