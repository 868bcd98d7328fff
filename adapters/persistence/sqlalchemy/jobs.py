"""The sync job queue in SQL: idempotent adds and a claim that never hands one job to two workers.

`claim_next` is the claim rule of `core.claim_rule` (due, blocked by a lease holder, claim order, what a
claim sets) written as one statement in one transaction, so that choosing and taking a job cannot be
split by another claimer. The rule is stated there; this is its translation, kept in step by the
persistence contract suite (`test_claim_rule_contract.py` compares every pick with `next_to_claim`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.expression import Exists

from adapters.persistence.sqlalchemy import codec
from adapters.persistence.sqlalchemy.columns import UtcDateTime
from adapters.persistence.sqlalchemy.models import SyncJobRow
from adapters.persistence.sqlalchemy.prepared import Prepared
from adapters.persistence.sqlalchemy.repositories import SqlRepository
from core.domain import EntityRef, EntityType, SyncJob, SyncJobKind, SyncJobState
from core.ports import DueBacklog, RequestIdTakenError, SyncJobRepository

# One key for every claimer in the database (hashtext is stable across sessions and servers).
_CLAIM_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('qbsync-claim'))")


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
    )


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


_CLAIMS: dict[bool, Select[Any]] = {}


def _claim_statement(postgres: bool) -> Select[Any]:
    """claim_next's SELECT, built once per dialect (its construction, two aliased EXISTS, cost more than
    running it); `now` is its one parameter."""
    cached = _CLAIMS.get(postgres)
    if cached is not None:
        return cached
    # Two EXISTS rather than one with an OR: each can use its own (key, state) index.
    now = bindparam("now", type_=UtcDateTime())
    lock_held = _held_by_another(SyncJobRow.lock_key, now)
    identity_held = and_(SyncJobRow.identity_key != "", _held_by_another(SyncJobRow.identity_key, now))
    # claim_rule.is_due, with the same `<=` (a retry at its instant) and `<` (a lease at its last
    # instant is still held).
    due = or_(
        and_(
            SyncJobRow.state == SyncJobState.PENDING.value,
            or_(SyncJobRow.next_attempt_time.is_(None), SyncJobRow.next_attempt_time <= now),
        ),
        # A RUNNING job without a lease is treated as expired (it can only come from a bug).
        and_(
            SyncJobRow.state == SyncJobState.RUNNING.value,
            or_(SyncJobRow.lease_expires.is_(None), SyncJobRow.lease_expires < now),
        ),
    )
    # claim_rule.claim_order. The ids compare by code point, as Python's str does: SQLite's BINARY
    # collation does so already, PostgreSQL's database collation (en_US.UTF-8, say) need not.
    job_id, tenant_id = (
        (SyncJobRow.job_id.collate("C"), SyncJobRow.tenant_id.collate("C"))
        if postgres
        else (SyncJobRow.job_id, SyncJobRow.tenant_id)
    )
    statement = (
        select(SyncJobRow)
        .where(due, ~lock_held, ~identity_held)
        .order_by(SyncJobRow.create_time, job_id, tenant_id)
        .limit(1)
    )
    if postgres:
        # Skip rows another transaction is writing (a worker saving its result) instead of waiting.
        statement = statement.with_for_update(skip_locked=True, of=SyncJobRow)
    statement = statement.execution_options(populate_existing=True)
    _CLAIMS[postgres] = statement  # a race builds it twice, harmlessly
    return statement


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


class SqlAlchemySyncJobRepository(SqlRepository, SyncJobRepository):
    def add(self, job: SyncJob) -> None:
        # ON CONFLICT DO NOTHING on the request_id constraint instead of catching IntegrityError: on
        # PostgreSQL a failed INSERT aborts the whole transaction, and the caller still needs it to
        # look up the job that holds the request_id. A clash on job_id still raises IntegrityError.
        # RETURNING tells whether the row went in (rowcount is not reliable for this on every driver).
        values = _values(job)
        inserted = _add_statement(self.dialect, tuple(values)).first(self._bound_connection(), values)
        if inserted is None:
            raise RequestIdTakenError(f"request_id {job.request_id!r} is already used")

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
        in its own unit of work and commit at once: the claim lock (SQLite's write lock, PostgreSQL's
        advisory lock) is held until the transaction ends."""
        postgres = self.dialect == "postgresql"
        if postgres:
            # Row locks alone cannot keep two jobs with the same lock_key apart: two workers could
            # each lock a different PENDING job of one customer, both seeing no RUNNING sibling.
            # This transaction-scoped lock makes "check lock_key free, then claim" atomic across
            # processes; it is released at commit. (On SQLite, BEGIN IMMEDIATE already did that.)
            self._session.execute(_CLAIM_LOCK)
        row: SyncJobRow | None = self._session.scalars(_claim_statement(postgres), {"now": now}).first()
        if row is None:
            return None
        taken_over = row.state == SyncJobState.RUNNING.value  # read before the UPDATE below
        self._session.execute(
            update(SyncJobRow)
            .where(SyncJobRow.tenant_id == row.tenant_id, SyncJobRow.job_id == row.job_id)
            .values(
                state=SyncJobState.RUNNING.value,
                claimed_by=worker_id,
                lease_expires=lease_expires,
                attempts=SyncJobRow.attempts + 1,
                update_time=now,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = self.get(row.tenant_id, row.job_id)
        assert claimed is not None  # we hold the row
        claimed.taken_over = taken_over
        return claimed

    def get_for_update(self, tenant_id: str, job_id: str) -> SyncJob | None:
        statement = select(SyncJobRow).where(SyncJobRow.tenant_id == tenant_id, SyncJobRow.job_id == job_id)
        if self.dialect == "postgresql":
            # A claimer's SKIP LOCKED passes over the row until we commit, so it cannot take the job
            # between our "still ours?" and our outcome. (SQLite's BEGIN IMMEDIATE already serialises.)
            statement = statement.with_for_update()
        row = self._one(statement)
        return None if row is None else _to_job(row)

    def extend_lease(self, tenant_id: str, job_id: str, worker_id: str, lease_expires: datetime) -> bool:
        # One conditional UPDATE: the check and the write cannot be split by a claimer.
        extended = self._session.execute(
            update(SyncJobRow)
            .where(
                SyncJobRow.tenant_id == tenant_id,
                SyncJobRow.job_id == job_id,
                SyncJobRow.state == SyncJobState.RUNNING.value,
                SyncJobRow.claimed_by == worker_id,
            )
            .values(lease_expires=lease_expires)
            .returning(SyncJobRow.job_id)
            .execution_options(synchronize_session=False)
        ).first()
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
        # One aggregate over the (state, next_attempt_time) index.
        due_since = func.coalesce(SyncJobRow.next_attempt_time, SyncJobRow.create_time)
        count, oldest = self._session.execute(
            select(func.count(), func.min(due_since, type_=UtcDateTime())).where(
                SyncJobRow.state == SyncJobState.PENDING.value,
                or_(SyncJobRow.next_attempt_time.is_(None), SyncJobRow.next_attempt_time <= now),
            )
        ).one()
        return DueBacklog(int(count), oldest)
