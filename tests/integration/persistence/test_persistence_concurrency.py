"""Many workers, one queue: every job is claimed exactly once, and one lock_key never runs twice."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

from persistence_builders import Backend, at, sync_job
from persistence_claim_worker import claim_until_empty

from core.domain import SyncJob, SyncJobState

THREADS = 8
NOW = at(60)


def _add_jobs(backend: Backend, jobs: list[SyncJob]) -> None:
    with backend.uow() as uow:
        for job in jobs:
            uow.jobs.add(job)
        uow.commit()


def _run_threads(target: object, count: int = THREADS) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)  # type: ignore[operator]
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    if errors:
        raise errors[0]


def test_threads_claim_every_job_exactly_once(backend: Backend) -> None:
    jobs = [sync_job(f"j{i:02}", created=at(i % 7)) for i in range(50)]  # distinct lock_keys
    _add_jobs(backend, jobs)
    start = threading.Barrier(THREADS)
    claims: dict[str, list[str]] = {f"w{i}": [] for i in range(THREADS)}

    def worker(index: int) -> None:
        worker_id = f"w{index}"
        start.wait()
        while True:
            with backend.uow() as uow:
                job = uow.jobs.claim_next(worker_id, NOW, NOW + timedelta(minutes=5))
                uow.commit()
            if job is None:
                return
            claims[worker_id].append(job.job_id)

    _run_threads(worker)

    counts = Counter(job_id for ids in claims.values() for job_id in ids)
    assert sorted(counts) == sorted(j.job_id for j in jobs)
    assert set(counts.values()) == {1}, f"claimed twice: {[j for j, n in counts.items() if n > 1]}"
    with backend.uow() as uow:
        for worker_id, ids in claims.items():
            for job_id in ids:
                stored = uow.jobs.get("t1", job_id)
                assert stored is not None
                assert (stored.state, stored.claimed_by, stored.attempts) == (SyncJobState.RUNNING, worker_id, 1)


def test_threads_never_run_two_jobs_of_one_lock_key_at_once(backend: Backend) -> None:
    # 10 customers with 4 jobs each: workers claim, "write" for a moment, then finish the job.
    jobs = [sync_job(f"j{i:02}", customer_id=f"C{i % 10}", created=at(i)) for i in range(40)]
    _add_jobs(backend, jobs)
    guard = threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []
    finished: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        start.wait()
        idle_rounds = 0
        while idle_rounds < 20:
            with backend.uow() as uow:
                job = uow.jobs.claim_next(f"w{index}", NOW, NOW + timedelta(minutes=5))
                uow.commit()
            if job is None:
                idle_rounds += 1  # others may still hold the lock_keys of the remaining jobs
                time.sleep(0.01)
                continue
            idle_rounds = 0
            with guard:
                if job.lock_key in running:
                    overlaps.append(job.lock_key)
                running.add(job.lock_key)
            time.sleep(0.002)
            with guard:
                running.discard(job.lock_key)  # before the commit below, so no false alarm
            job.state = SyncJobState.SUCCEEDED
            with backend.uow() as uow:
                uow.jobs.save(job)
                uow.commit()
            with guard:
                finished.append(job.job_id)

    _run_threads(worker)

    assert overlaps == []
    assert sorted(finished) == sorted(j.job_id for j in jobs)


def test_threads_claim_only_one_job_of_a_busy_lock_key(backend: Backend) -> None:
    _add_jobs(backend, [sync_job(f"j{i:02}", customer_id="C1", created=at(i)) for i in range(20)])
    claimed: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        start.wait()
        for _ in range(5):
            with backend.uow() as uow:
                job = uow.jobs.claim_next(f"w{index}", NOW, NOW + timedelta(minutes=5))
                uow.commit()
            if job is not None:
                claimed.append(job.job_id)

    _run_threads(worker)

    assert claimed == ["j00"]


def test_processes_claim_every_job_exactly_once(sql_backend: Backend) -> None:
    assert sql_backend.url is not None
    jobs = [sync_job(f"j{i:02}", created=at(i % 5)) for i in range(60)]
    _add_jobs(sql_backend, jobs)
    url = sql_backend.url.render_as_string(hide_password=False)

    # spawn, not fork: a forked child would inherit the parent's pooled connections.
    with ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(claim_until_empty, url, f"p{i}", NOW.isoformat()) for i in range(3)]
        results = [f.result(timeout=120) for f in futures]

    counts = Counter(job_id for ids in results for job_id in ids)
    assert sorted(counts) == sorted(j.job_id for j in jobs)
    assert set(counts.values()) == {1}
