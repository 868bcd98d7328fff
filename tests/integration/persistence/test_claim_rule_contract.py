"""The claim rule on every backend: `claim_next` takes exactly the job `core.claim_rule` says, every time.

The rule is stated once, in `core/claim_rule.py`; the in-memory fake applies it and the SQL adapter
restates it as one statement. Hypothesis draws whole job tables that put every comparison of the rule on
its edge: PENDING, RUNNING and finished jobs, next_attempt_times and lease expiries a microsecond before,
at, and after the claim instant, no lease at all, customers (lock_keys) and identity_keys shared by
several jobs (identity_keys even across tenants), several tenants, and create_times that tie so that the
order falls through to job_id and tenant_id. The table is stored through the backend's repository, then
claimed from at a few instants until nothing is claimable; each claim must be the job `next_to_claim`
picks from the model table (or none), left as `claimed` leaves it, and at the end every stored job must
equal the model's. Examples: a fifth of QBSYNC_HYPOTHESIS_EXAMPLES (default 200) per backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from persistence_builders import T0, Backend, sync_job
from sqlalchemy import delete

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.sqlalchemy import create_engine_for
from adapters.persistence.sqlalchemy.models import SyncJobRow
from core.claim_rule import claimed, is_due, next_to_claim
from core.domain import SyncJob, SyncJobKind, SyncJobState
from core.ports import UnitOfWorkFactory

EXAMPLES = max(10, int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "200")) // 5)

# Instants around T0, the first claim's "now": equal to it (most often), a microsecond either side,
# minutes away.
_OFFSETS = [
    timedelta(minutes=-5),
    timedelta(microseconds=-1),
    timedelta(0),
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(minutes=5),
]
_INSTANTS = [T0 + offset for offset in _OFFSETS]
_instants = st.sampled_from(_INSTANTS)
# PENDING and RUNNING, where the rule has something to decide, come up twice as often as finished jobs.
_states = st.sampled_from([*SyncJobState, SyncJobState.PENDING, SyncJobState.RUNNING])
# Ids that sort differently by code point (Python, SQLite, PostgreSQL's "C") than by a language's rules.
_TENANTS = ["t1", "t2", "T3"]
_JOB_IDS = ["j0", "j1", "J2", "j-3", "j4"]


@st.composite
def _tables(draw: st.DrawFn) -> list[SyncJob]:
    keys = draw(st.lists(st.tuples(st.sampled_from(_TENANTS), st.sampled_from(_JOB_IDS)), max_size=9, unique=True))
    maybe_instant = st.sampled_from([None, *_INSTANTS])
    return [
        sync_job(
            job_id,
            tenant_id=tenant_id,
            state=draw(_states),
            customer_id=draw(st.sampled_from(["c1", "c2", "c3"])),
            created=draw(_instants),
            next_attempt=draw(maybe_instant),
            lease_expires=draw(maybe_instant),
            # Shared across tenants too: the rule compares the keys, whatever they contain.
            identity_key=draw(st.sampled_from(["", "", "same/identity/a", "same/identity/b"])),
            attempts=draw(st.integers(0, 3)),
            # A payout's job (SPEC §9): no customer or identity, locked per payout, in another tenant too.
            payout_id=draw(st.sampled_from(["", "", "", "po1", "po2"])),
        )
        for tenant_id, job_id in keys
    ]


# Each round claims at one instant (the first at T0, later ones at instants a table's times may equal),
# with one lease length (a lease may end at the very instant it was taken: still held then). The leases
# never end before their claim, so each round ends.
_rounds = st.lists(
    st.tuples(
        st.sampled_from([timedelta(microseconds=1), timedelta(minutes=5), timedelta(minutes=5, microseconds=1)]),
        st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(minutes=5)]),
    ),
    max_size=2,
).map(lambda later: [(timedelta(0), timedelta(minutes=5)), *sorted(later)])


_US = timedelta(microseconds=1)
P, R, S, F = SyncJobState.PENDING, SyncJobState.RUNNING, SyncJobState.SUCCEEDED, SyncJobState.FAILED

# Every edge of the rule at once, whatever hypothesis draws: claimed at T0, then a microsecond later.
_A = "same/identity/a"
_EDGES = [
    # t1: due at its very instant; due a microsecond later; a lease held up to T0, blocking J2 by lock_key
    sync_job("j0", tenant_id="t1", state=P, customer_id="c1", next_attempt=T0),
    sync_job("j1", tenant_id="t1", state=P, customer_id="c2", next_attempt=T0 + _US),
    sync_job("j4", tenant_id="t1", state=R, customer_id="c3", lease_expires=T0, identity_key=_A),
    sync_job("J2", tenant_id="t1", state=P, customer_id="c3"),
    # t2: blocked by t1/j4's identity_key; a lease that ran out; RUNNING with no lease; a lease blocking no one
    sync_job("j0", tenant_id="t2", state=P, customer_id="c9", identity_key=_A),
    sync_job("j1", tenant_id="t2", state=R, customer_id="c4", lease_expires=T0 - _US),
    sync_job("J2", tenant_id="t2", state=R, customer_id="c5"),
    sync_job("j4", tenant_id="t2", state=R, customer_id="c6", lease_expires=T0 + _US),
    # t3: t2/j4's customer id in another tenant (free); t1/j4's identity and job_id, yet another job
    # (blocked); finished jobs, never claimed
    sync_job("j0", tenant_id="t3", state=P, customer_id="c6", created=T0 - _US),
    sync_job("j4", tenant_id="t3", state=P, customer_id="c8", identity_key=_A),
    sync_job("j1", tenant_id="t3", state=S, customer_id="c7"),
    sync_job("J2", tenant_id="t3", state=F, customer_id="c7", next_attempt=T0),
]
# Payout jobs (SPEC §9; lock key `<tenant>/payout/<id>`, no customer, no identity): one holding its lease
# blocks its payout's next job only, not another payout's, not a payment job with an empty identity, not the
# same payout id in another tenant; a payout job is claimed in create order among payment jobs.
_PAYOUTS = [
    sync_job("j0", tenant_id="t1", state=R, lease_expires=T0, payout_id="po1"),
    sync_job("j1", tenant_id="t1", state=P, created=T0 - _US, payout_id="po1"),
    sync_job("J2", tenant_id="t1", state=P, payout_id="po2"),
    sync_job("j-3", tenant_id="t1", state=P, customer_id="c1", created=T0 - _US),
    sync_job("j4", tenant_id="t1", state=P, customer_id="c2", created=T0 + _US),
    sync_job("j1", tenant_id="t2", state=P, payout_id="po1", created=T0 - _US),
    sync_job("j0", tenant_id="t2", state=R, customer_id="c1", lease_expires=T0 + _US),
    sync_job("J2", tenant_id="t2", state=P, customer_id="c1"),
]
# Ties on create_time fall through to job_id (code point order: "J2" < "j-3" < "j0"), then tenant_id.
_TIES = [
    sync_job(job_id, tenant_id=tenant, state=P, customer_id=f"c-{job_id}")
    for tenant in ("t2", "T3", "t1")
    for job_id in ("j0", "J2", "j-3")
]
_TWO_ROUNDS = [(timedelta(0), timedelta(minutes=5)), (_US, timedelta(0))]


@pytest.fixture
def fresh_table(backend: Backend) -> Iterator[Callable[[], UnitOfWorkFactory]]:
    """Gives each example an empty job table on the backend under test (hypothesis runs many examples
    in one test, so the function-scoped backend is emptied rather than rebuilt)."""
    if backend.url is None:
        yield InMemoryUnitOfWorkFactory
        return
    engine = create_engine_for(backend.url)

    def emptied() -> UnitOfWorkFactory:
        with engine.begin() as connection:
            connection.execute(delete(SyncJobRow))
        return backend.uow

    try:
        yield emptied
    finally:
        engine.dispose()


def test_claim_next_takes_the_job_the_claim_rule_picks(
    backend: Backend, fresh_table: Callable[[], UnitOfWorkFactory]
) -> None:
    seen = {"claims": 0, "blocked": 0, "payouts": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(table=_tables(), rounds=_rounds)
    @example(table=_EDGES, rounds=_TWO_ROUNDS)
    @example(table=_TIES, rounds=_TWO_ROUNDS)
    @example(table=_PAYOUTS, rounds=_TWO_ROUNDS)
    def check(table: list[SyncJob], rounds: list[tuple[timedelta, timedelta]]) -> None:
        uow_factory = fresh_table()
        with uow_factory() as uow:
            for job in table:
                uow.jobs.add(job)
            uow.commit()
        model = {(job.tenant_id, job.job_id): job for job in table}

        claims = 0
        for later, lease in rounds:
            now = T0 + later
            while True:
                expected = next_to_claim(model.values(), now)
                worker = f"w{claims + 1}"
                if expected is None and any(is_due(job, now) for job in model.values()):
                    seen["blocked"] += 1  # a due job held back by a lease holder: the test is not vacuous
                with uow_factory() as uow:
                    got = uow.jobs.claim_next(worker, now, now + lease)
                    uow.commit()
                if expected is None:
                    assert got is None, f"{backend.name} claimed {got} at {now}; the rule claims nothing"
                    break
                want = claimed(expected, worker, now, now + lease)
                assert got == want, f"{backend.name} at {now}: claimed {got}, the rule claims {want}"
                model[(want.tenant_id, want.job_id)] = want
                seen["payouts"] += want.kind is SyncJobKind.SYNC_PAYOUT
                claims += 1
                assert claims <= len(table) * len(rounds), "every claim takes a job out of the round"

        with uow_factory() as uow:
            stored = {key: uow.jobs.get(*key) for key in model}
        assert stored == model
        seen["claims"] += claims

    check()
    # Hypothesis drew tables that exercised the rule: jobs were claimed, and some were held back.
    assert seen["claims"] > 0
    assert seen["blocked"] > 0
    assert seen["payouts"] > 0, "payout jobs were claimed too"
