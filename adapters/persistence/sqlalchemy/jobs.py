"""The sync job queue in SQL: idempotent adds and a claim that never hands one job to two workers.

`claim_next` is the claim rule of `core.claim_rule` (due, blocked by a lease holder, claim order, what a
claim sets) written as one statement in one transaction, so that choosing and taking a job cannot be
split by another claimer. The rule is stated there; this is its translation, kept in step by the
persistence contract suite (`test_claim_rule_contract.py` compares every pick with `next_to_claim`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Integer,
    String,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.expression import Exists

from adapters.persistence.sqlalchemy import codec
from adapters.persistence.sqlalchemy.columns import UtcDateTime
from adapters.persistence.sqlalchemy.models import AuditEventRow, SyncJobRow
from adapters.persistence.sqlalchemy.prepared import Prepared
from adapters.persistence.sqlalchemy.repositories import SqlRepository, append_event, event_values
from core.domain import AuditEvent, EntityRef, EntityType, SyncJob, SyncJobKind, SyncJobState
from core.ports import DueBacklog, RequestIdTakenError, SyncJobRepository

# How many claimable jobs a PostgreSQL claim reads at once: it takes the first whose keys no other claimer
# is taking; more are read only when another claimer is taking every one of these.
_CANDIDATES = 16

# The claim rule's exclusivity on PostgreSQL, per key rather than one lock for every claimer: a claim tries
# the transaction-scoped advisory lock of its job's lock_key (class 1) and identity_key (class 2), so two
# claimers never take two jobs with one key at once, and one that finds a key taken moves on instead of
# waiting. Two-int keys are a key space apart from the single-bigint locks of limiter.py and company_lock.py;
# hashtext is stable across sessions and servers; two keys sharing a hash only make a claimer skip a job for
# the other's transaction. The schema is part of the key: advisory locks are database-wide, and deployments
# (or test runs) in other schemas of the database have jobs of the same keys that are not ours. Answers 0
# (both held), 1 (the lock_key is taken) or 2 (the identity_key is taken); nested CASEs because only CASE
# fixes the order in which PostgreSQL evaluates the tries.
_TRY_KEY_LOCKS = text(
    "SELECT CASE WHEN NOT pg_try_advisory_xact_lock(1, hashtext(current_schema() || '/' || :lock_key)) THEN 1 "
    "ELSE CASE WHEN :identity_key = '' THEN 0 "
    "WHEN NOT pg_try_advisory_xact_lock(2, hashtext(current_schema() || '/' || :identity_key)) THEN 2 ELSE 0 END END"
)


def _values(job: SyncJob) -> dict[str, Any]:
    return {
        "tenant_id": job.tenant_id,
        "job_id": job.job_id,
        "kind": job.kind.value,
        "target_type": job.target.type.value,
        "target_id": job.target.id,
        "opportunity_id": job.opportunity_id,
        "customer_id": job.customer_id,
        "lock_key": job.lock_key,
        "identity_key": job.identity_key,
        "state": job.state.value,
        "resync": job.resync,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "results": codec.results_to_json(job.results),
        "error": codec.error_to_json(job.error),
        # NULL, not "", when the caller sent no request_id: the unique constraint ignores NULLs.
        "request_id": job.request_id or None,
        "request_fingerprint": job.request_fingerprint,
        "next_attempt_time": job.next_attempt_time,
        "claimed_by": job.claimed_by,
        "lease_expires": job.lease_expires,
        "create_time": job.create_time,
        "update_time": job.update_time,
        "dismiss_time": job.dismiss_time,
        "branch_id": job.branch_id,
    }


def _to_job(row: Any) -> SyncJob:  # a SyncJobRow, or a named tuple of its columns
    return SyncJob(
        job_id=row.job_id,
        tenant_id=row.tenant_id,
        kind=SyncJobKind(row.kind),
        target=EntityRef(EntityType(row.target_type), row.target_id),
        opportunity_id=row.opportunity_id,
        customer_id=row.customer_id,
        create_time=row.create_time,
        update_time=row.update_time,
        state=SyncJobState(row.state),
        resync=row.resync,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        results=codec.results_from_json(row.results),
        error=codec.error_from_json(row.error),
        request_id=row.request_id or "",
        request_fingerprint=row.request_fingerprint,
        next_attempt_time=row.next_attempt_time,
        claimed_by=row.claimed_by,
        lease_expires=row.lease_expires,
        identity_key=row.identity_key,
        dismiss_time=row.dismiss_time,
        branch_id=row.branch_id,
    )


_JOBS: Any = SyncJobRow.__table__  # Core statements: no ORM entity to build per row


def _held_by_another(key: InstrumentedAttribute[str], now: BindParameter[datetime]) -> Exists:
    """Some other job with the same value in `key`'s column is RUNNING under an unexpired lease
    (`claim_rule.holds_lease` and `claim_rule.blocks`)."""
    other = aliased(SyncJobRow)
    return exists().where(
        getattr(other, key.key) == key,
        other.state == SyncJobState.RUNNING.value,
        other.lease_expires >= now,
        or_(other.tenant_id != SyncJobRow.tenant_id, other.job_id != SyncJobRow.job_id),
    )


_CLAIMS: dict[tuple[bool, str], Prepared] = {}


def _claim_statement(postgres: bool, form: str) -> Prepared:
    """A statement of claim_next, built and compiled once per dialect and form (its construction, two
    aliased EXISTS, costs more than running it; prepared.py runs it as SQL text on the driver).

    Forms: "first" (SQLite) the key and state of the one job to claim; "candidates" (PostgreSQL) the keys
    of the first claimable jobs, in claim order, from `offset` on; "take" (PostgreSQL) the claim of the one
    job `tenant_id`, `job_id` if it is still claimable, row-locked (a recheck and the UPDATE in one
    statement); "update" (SQLite) the claim of that job. Both claims return the claimed row and the state
    it had (`previous_state`)."""
    cached = _CLAIMS.get((postgres, form))
    if cached is not None:
        return cached
    # Two EXISTS rather than one with an OR: each can use its own (key, state) index.
    now = bindparam("now", type_=UtcDateTime())
    lock_held = _held_by_another(SyncJobRow.lock_key, now)
    identity_held = and_(SyncJobRow.identity_key != "", _held_by_another(SyncJobRow.identity_key, now))
    # The job's own state, as the claim tests it. On SQLite as `+state`, which is the same value but no
    # term an index on state can serve (SQLite's documented way to steer its planner): without statistics
    # the planner takes `state = 'PENDING'` for selective, reads every open job through the (state,
    # next_attempt_time) index and sorts them all, where 0013's partial index, whose predicate is
    # `+state IN (...)` there, gives the first claimable job in order at once.
    state: Any = SyncJobRow.state if postgres else literal_column("+sync_jobs.state", String())
    # claim_rule.is_due, with the same `<=` (a retry at its instant) and `<` (a lease at its last
    # instant is still held).
    due = or_(
        and_(
            state == SyncJobState.PENDING.value,
            or_(SyncJobRow.next_attempt_time.is_(None), SyncJobRow.next_attempt_time <= now),
        ),
        # A RUNNING job without a lease is treated as expired (it can only come from a bug).
        and_(
            state == SyncJobState.RUNNING.value,
            or_(SyncJobRow.lease_expires.is_(None), SyncJobRow.lease_expires < now),
        ),
    )
    # claim_rule.claim_order. The ids compare by code point, as Python's str does: SQLite's BINARY
    # collation does so already, PostgreSQL's database collation (en_US.UTF-8, say) need not. Migration
    # 0013's partial index has this very order, so the claim reads it from the index instead of sorting.
    job_id, tenant_id = (
        (SyncJobRow.job_id.collate("C"), SyncJobRow.tenant_id.collate("C"))
        if postgres
        else (SyncJobRow.job_id, SyncJobRow.tenant_id)
    )
    # Written out (not only implied by `due`), and as literals, so that both planners match the partial
    # index's predicate: SQLite uses a partial index only for a query term the same as its WHERE's.
    open_state = state.in_(
        [literal_column(f"'{SyncJobState.PENDING.value}'"), literal_column(f"'{SyncJobState.RUNNING.value}'")]
    )
    claimable = (open_state, due, ~lock_held, ~identity_held)
    keys: list[Any] = [SyncJobRow.tenant_id, SyncJobRow.job_id]
    statement: Any
    if form == "candidates":
        statement = (
            select(*keys, SyncJobRow.lock_key, SyncJobRow.identity_key)
            .where(*claimable)
            .order_by(SyncJobRow.create_time, job_id, tenant_id)
            .offset(bindparam("offset"))
            .limit(_CANDIDATES)
        )
    elif form == "first":
        statement = (
            select(*keys, SyncJobRow.state)
            .where(*claimable)
            .order_by(SyncJobRow.create_time, job_id, tenant_id)
            .limit(1)
        )
    else:
        table = _JOBS
        if form == "take":
            picked = (
                select(*keys, SyncJobRow.state)
                .where(SyncJobRow.tenant_id == bindparam("tenant_id"), SyncJobRow.job_id == bindparam("job_id"))
                .where(*claimable)
                # Skip the row if another transaction is writing it (a worker saving its result).
                .with_for_update(skip_locked=True, of=SyncJobRow)
                .cte("picked")
            )
            where: tuple[Any, ...] = (table.c.tenant_id == picked.c.tenant_id, table.c.job_id == picked.c.job_id)
            previous: Any = picked.c.state
        else:  # "update": SQLite's claim of the job "first" chose, under BEGIN IMMEDIATE's write lock
            where = (table.c.tenant_id == bindparam("tenant_id"), table.c.job_id == bindparam("job_id"))
            previous = bindparam("previous_state", type_=String())
        statement = (
            update(table)
            .where(*where)
            .values(
                state=SyncJobState.RUNNING.value,
                claimed_by=bindparam("worker_id"),
                lease_expires=bindparam("lease_expires", type_=UtcDateTime()),
                attempts=table.c.attempts + 1,
                update_time=bindparam("update_time", type_=UtcDateTime()),
            )
            .returning(*table.c, previous.label("previous_state"))
        )
    prepared = _CLAIMS[(postgres, form)] = Prepared(statement)  # a race builds it twice, harmlessly
    return prepared


# The locks of a PostgreSQL claim's candidate (see _TRY_KEY_LOCKS), as a prepared statement.
_TRY_KEY_LOCKS_PREPARED = Prepared(_TRY_KEY_LOCKS.columns(column("taken", Integer())))


_ADDS: dict[tuple[str, tuple[str, ...]], Prepared] = {}


def _add_statement(dialect: str, columns: tuple[str, ...]) -> Prepared:
    """add's INSERT of `columns` (`_values`'s keys), compiled once per dialect (prepared.py)."""
    cached = _ADDS.get((dialect, columns))
    if cached is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(SyncJobRow.__table__)  # type: ignore[arg-type]
            .on_conflict_do_nothing(index_elements=["tenant_id", "request_id"])
            .returning(SyncJobRow.__table__.c.job_id)
        )
        cached = _ADDS[(dialect, columns)] = Prepared(statement, columns)
    return cached


_ADDS_WITH_EVENT: dict[tuple[str, ...], Prepared] = {}
_EVENT_FIELDS = ("time", "kind", "entity_type", "entity_id", "message")  # the rest are the job's


def _add_with_event_statement(columns: tuple[str, ...]) -> Prepared:
    """PostgreSQL: add's INSERT and the accepted event's in one statement, the event inserted from the job's
    RETURNING (so only when the job went in): one round trip fewer per accepted request (issue 12)."""
    cached = _ADDS_WITH_EVENT.get(columns)
    if cached is None:
        jobs, events = SyncJobRow.__table__, AuditEventRow.__table__
        added = (
            postgresql.insert(jobs)  # type: ignore[arg-type]
            .values({c: bindparam(c, type_=jobs.c[c].type) for c in columns})  # type: ignore[attr-defined]
            .on_conflict_do_nothing(index_elements=["tenant_id", "request_id"])
            .returning(jobs.c.tenant_id, jobs.c.job_id)  # type: ignore[attr-defined]
            .cte("added")
        )
        event = {f: bindparam(f"event_{f}", type_=events.c[f].type) for f in _EVENT_FIELDS}  # type: ignore[attr-defined]
        row = select(
            added.c.tenant_id,
            event["time"],
            event["kind"],
            event["entity_type"],
            event["entity_id"],
            added.c.job_id,
            event["message"],
        )
        statement = (
            postgresql.insert(events)  # type: ignore[arg-type]
            .from_select(["tenant_id", "time", "kind", "entity_type", "entity_id", "job_id", "message"], row)
            .returning(events.c.job_id)  # type: ignore[attr-defined]
        )
        cached = _ADDS_WITH_EVENT[columns] = Prepared(statement)
    return cached


_BY_KEY = select(_JOBS).where(_JOBS.c.tenant_id == bindparam("tenant_id"), _JOBS.c.job_id == bindparam("job_id"))
_JOB = Prepared(_BY_KEY)
_JOB_FOR_UPDATE = Prepared(_BY_KEY.with_for_update())

_EXTEND_LEASE = Prepared(
    update(_JOBS)
    .where(
        _JOBS.c.tenant_id == bindparam("tenant_id"),
        _JOBS.c.job_id == bindparam("job_id"),
        _JOBS.c.state == SyncJobState.RUNNING.value,
        _JOBS.c.claimed_by == bindparam("worker_id"),
    )
    .values(lease_expires=bindparam("lease_expires", type_=UtcDateTime()))
    .returning(_JOBS.c.job_id)
)


class SqlAlchemySyncJobRepository(SqlRepository, SyncJobRepository):
    def add(self, job: SyncJob, *, accepted: AuditEvent | None = None) -> None:
        # ON CONFLICT DO NOTHING on the request_id constraint instead of catching IntegrityError: on
        # PostgreSQL a failed INSERT aborts the whole transaction, and the caller still needs it to
        # look up the job that holds the request_id. A clash on job_id still raises IntegrityError.
        # RETURNING tells whether the row went in (rowcount is not reliable for this on every driver).
        values = _values(job)
        columns = tuple(values)
        connection = self._bound_connection()
        if accepted is not None and self.dialect == "postgresql":
            event = event_values(accepted)
            values.update({f"event_{f}": event[f] for f in _EVENT_FIELDS})
            inserted = _add_with_event_statement(columns).first(connection, values)
            accepted = None  # written with it, or not at all
        else:
            inserted = _add_statement(self.dialect, columns).first(connection, values)
        if inserted is None:
            raise RequestIdTakenError(f"request_id {job.request_id!r} is already used")
        if accepted is not None:
            append_event(connection, accepted)

    def get(self, tenant_id: str, job_id: str) -> SyncJob | None:
        row = self._first(SyncJobRow, tenant_id=tenant_id, job_id=job_id)
        return None if row is None else _to_job(row)

    def find_by_request_id(self, tenant_id: str, request_id: str) -> SyncJob | None:
        if not request_id:
            return None  # an empty request_id means "not idempotent", never a match
        row = self._first(SyncJobRow, tenant_id=tenant_id, request_id=request_id)
        return None if row is None else _to_job(row)

    def claim_next(self, worker_id: str, now: datetime, lease_expires: datetime) -> SyncJob | None:
        """See the port; the rule is `core.claim_rule` (`next_to_claim`, then `claimed`), in SQL. Call it
        in its own unit of work and commit at once: what makes the claim exclusive (SQLite's write lock,
        PostgreSQL's row and key locks) is held until the transaction ends."""
        claim = {"worker_id": worker_id, "lease_expires": lease_expires, "update_time": now, "now": now}
        connection = self._bound_connection()
        if self.dialect == "postgresql":
            row = self._claim_postgres(connection, claim)
        else:
            # BEGIN IMMEDIATE already serialises claimers: the first claimable job is ours.
            first = _claim_statement(False, "first").first(connection, {"now": now})
            if first is None:
                return None
            keys = {"tenant_id": first.tenant_id, "job_id": first.job_id, "previous_state": first.state}
            row = _claim_statement(False, "update").first(connection, {**claim, **keys})
        if row is None:
            return None
        claimed = _to_job(row)
        claimed.taken_over = row.previous_state == SyncJobState.RUNNING.value
        return claimed

    def _claim_postgres(self, connection: Any, claim: dict[str, Any]) -> Any | None:
        """Claims the first claimable job no other claimer is taking: its row as claimed, or None.

        Claimers run in parallel: each reads candidates in claim order, tries the advisory locks of a
        candidate's keys (`_TRY_KEY_LOCKS`, never waiting) and, holding them, claims the job in a new
        statement that reads it again (the "take" form: a row-locked recheck and the UPDATE). That
        statement sees every claim committed before the locks were granted (READ COMMITTED: a snapshot per
        statement), so a sibling another claimer has just taken blocks it; and its row lock (SKIP LOCKED)
        keeps the row from a worker writing it. With one claimer this is the first candidate: the same
        pick as `next_to_claim`. Three round trips for an uncontended claim."""
        busy: set[tuple[int, str]] = set()  # keys another claimer is taking
        offset = 0
        while True:
            candidates = _claim_statement(True, "candidates").rows(connection, {"now": claim["now"], "offset": offset})
            for tenant_id, job_id, lock_key, identity_key in candidates:
                if (1, lock_key) in busy or (identity_key and (2, identity_key) in busy):
                    continue
                (tried,) = _TRY_KEY_LOCKS_PREPARED.rows(
                    connection, {"lock_key": lock_key, "identity_key": identity_key}
                )
                taken = tried.taken
                if taken:
                    busy.add((taken, lock_key if taken == 1 else identity_key))
                    continue
                row = _claim_statement(True, "take").first(
                    connection, {**claim, "tenant_id": tenant_id, "job_id": job_id}
                )
                if row is not None:
                    return row
            if len(candidates) < _CANDIDATES:
                return None
            offset += _CANDIDATES

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        # On PostgreSQL row-locked: a claimer's SKIP LOCKED passes over the row until we commit, so it
        # cannot take the job between our "still ours?" and our outcome. (SQLite's BEGIN IMMEDIATE already
        # serialises.)
        statement = _JOB_FOR_UPDATE if self.dialect == "postgresql" else _JOB
        row = statement.first(self._bound_connection(), {"tenant_id": tenant_id, "job_id": job_id})
        return None if row is None else _to_job(row)

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        # One conditional UPDATE: the check and the write cannot be split by a claimer.
        extended = _EXTEND_LEASE.first(
            self._bound_connection(),
            {"tenant_id": tenant_id, "job_id": job_id, "worker_id": worker_id, "lease_expires": lease_expires},
        )
        return extended is not None

    def save(self, job: SyncJob) -> None:
        self._upsert(SyncJobRow, _values(job), ["tenant_id", "job_id"])

    def list_failed(self, tenant_id: str, *, offset: int, limit: int) -> list[SyncJob]:
        rows = self._fresh(
            select(SyncJobRow)
            .where(
                SyncJobRow.tenant_id == tenant_id,
                SyncJobRow.state == SyncJobState.FAILED.value,
                SyncJobRow.dismiss_time.is_(None),
            )
            .order_by(SyncJobRow.update_time.desc(), SyncJobRow.job_id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_to_job(row) for row in rows]

    def list_recent(self, tenant_id: str, *, limit: int) -> list[SyncJob]:
        rows = self._fresh(
            select(SyncJobRow)
            .where(SyncJobRow.tenant_id == tenant_id)
            .order_by(SyncJobRow.update_time.desc(), SyncJobRow.job_id.desc())
            .limit(limit)
        )
        return [_to_job(row) for row in rows]

    def due_backlog(self, now: datetime) -> DueBacklog:
        # Three reads of the due-backlog index (revision 0013) in one statement: the count scans the index
        # alone; each oldest is its first entry (a new job's next_attempt_time is NULL, a retry's its due
        # time). The state is a literal, not a parameter: a partial index serves only a plan that knows the
        # WHERE says what the index's says, and PostgreSQL's generic plans of prepared statements do not.
        pending = SyncJobRow.state == literal_column(f"'{SyncJobState.PENDING.value}'")
        never_tried = SyncJobRow.next_attempt_time.is_(None)
        retry_due = SyncJobRow.next_attempt_time <= now
        count, oldest_new, oldest_retry = self._session.execute(
            select(
                select(func.count()).where(pending, or_(never_tried, retry_due)).scalar_subquery(),
                select(func.min(SyncJobRow.create_time)).where(pending, never_tried).scalar_subquery(),
                select(func.min(SyncJobRow.next_attempt_time)).where(pending, retry_due).scalar_subquery(),
            )
        ).one()
        due = [since for since in (oldest_new, oldest_retry) if since is not None]
        oldest = min(due) if due else None
        return DueBacklog(int(count), oldest)
