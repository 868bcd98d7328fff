"""The repositories over one SQLAlchemy `Session` (the unit of work's transaction).

Writes are upserts (`INSERT ... ON CONFLICT DO UPDATE`, on SQLite and PostgreSQL alike) rather than
read-then-insert, so two transactions saving the same record never fail on the primary key; reads ask
for `populate_existing` so a row written by an upsert is never served stale from the identity map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import Connection, Insert, Select, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.persistence.sqlalchemy import codec
from adapters.persistence.sqlalchemy.models import (
    ApiKeyRow,
    AuditEventRow,
    Base,
    CrmJobRow,
    OpportunityRow,
    PaymentRow,
    PayoutPaymentRow,
    PayoutRefundRow,
    PayoutRow,
    RefundRow,
    SyncRecordRow,
    TenantRow,
)
from adapters.persistence.sqlalchemy.prepared import Prepared
from core.domain import (
    ApiKey,
    AuditEvent,
    AuditKind,
    ClosedJob,
    Customer,
    EntityRef,
    EntityType,
    Job,
    Opportunity,
    Payment,
    Payout,
    Permission,
    StoredJob,
    StoredPayment,
    SyncRecord,
    SyncState,
    payments_oldest_first,
)
from core.ports import ApiKeyRepository, AuditLog, SnapshotRepository, SyncRecordRepository, TenantRepository

R = TypeVar("R", bound=Base)


class ReadScope(Protocol):
    """A read-only unit of work's transaction without an ORM `Session` up front (uow.py's ConnectionScope)."""

    dialect_name: str

    def connection(self) -> Connection:
        """Its connection, in its transaction."""

    def session(self) -> Session:
        """A `Session` in that same transaction, for the reads that go through the ORM."""


class SqlRepository:
    """What every SQL repository shares: the unit of work's session, fresh reads, dialect upserts."""

    def __init__(self, source: Session | ReadScope) -> None:
        self._source = source
        self._bound: Connection | None = None

    @property
    def _session(self) -> Session:
        source = self._source
        return source if isinstance(source, Session) else source.session()

    @property
    def dialect(self) -> str:
        source = self._source
        return source.get_bind().dialect.name if isinstance(source, Session) else source.dialect_name

    def _bound_connection(self) -> Connection:
        """The session's (or read scope's) connection in its current transaction. Kept between calls:
        `Session.connection()` walks the session's transaction state machine each time, a tenth of an
        accept's CPU for its dozen statements (issue 12). A commit or rollback closes that connection (the
        session gives it back to the pool), and the next call asks again, which begins the next transaction."""
        bound = self._bound
        if bound is None or bound.closed or not bound.in_transaction():
            bound = self._bound = self._source.connection()
        return bound

    def _fresh(self, statement: Select[R]) -> list[R]:
        return list(self._session.scalars(statement.execution_options(populate_existing=True)))

    def _one(self, statement: Select[R]) -> R | None:
        rows = self._fresh(statement.limit(1))
        return rows[0] if rows else None

    def _first(self, model: type[Base], **keys: Any) -> Any | None:
        """The first row of `model`'s table whose columns equal `keys`, as a named tuple (Core: no identity
        map, so never stale, and no ORM object to build). Its statement is compiled once per dialect, table
        and keys (prepared.py)."""
        return _select_statement(model, tuple(keys)).first(self._bound_connection(), keys)

    def _upsert(
        self,
        model: type[Base],
        values: dict[str, Any],
        keys: Sequence[str],
        *,
        update: OnConflict = "all",
    ) -> None:
        """Insert `values`, or on a `keys` conflict set `update`: "all" (every non-key value), "nothing"
        (insert if missing: DO NOTHING), or a function of the `excluded` row giving the SET clause (a
        module-level one: it is part of the cache key).

        The statement is built once per dialect, table, columns and conflict rule, and then executed with
        `values` as its parameters: building an insert with its on-conflict clause (the `excluded` alias
        copies every column) cost more than executing it.
        """
        _upsert_statement(self.dialect, model, tuple(values), tuple(keys), update).execute(
            self._bound_connection(), values
        )

    def _upsert_many(
        self, model: type[Base], many: Sequence[dict[str, Any]], keys: Sequence[str], *, update: OnConflict = "all"
    ) -> None:
        """`_upsert` of every one of `many` (all with the same columns) in one executemany."""
        if many:
            statement = _upsert_statement(self.dialect, model, tuple(many[0]), tuple(keys), update)
            statement.execute_many(self._bound_connection(), many)


_SELECTS: dict[tuple[Any, ...], Prepared] = {}


def _select_statement(model: type[Base], keys: tuple[str, ...]) -> Prepared:
    statement = _SELECTS.get((model, keys))
    if statement is None:
        table = model.__table__
        statement = Prepared(select(table).where(*(table.c[k] == bindparam(k) for k in keys)).limit(1))  # type: ignore[attr-defined]
        _SELECTS[(model, keys)] = statement  # a race builds it twice, harmlessly
    return statement


OnConflict = Literal["all", "nothing"] | Callable[[Any], dict[str, Any]]

_UPSERTS: dict[tuple[Any, ...], Prepared] = {}


def _upsert_statement(
    dialect: str, model: type[Base], columns: tuple[str, ...], keys: tuple[str, ...], update: OnConflict
) -> Prepared:
    cache_key = (dialect, model, columns, keys, update)
    cached = _UPSERTS.get(cache_key)
    if cached is not None:
        return cached
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # On the table, not the mapped class: a Core statement, its parameters given at execution (the
    # columns it inserts are `columns`, the keys of every `values` passed with it).
    built = insert(model.__table__)  # type: ignore[arg-type]
    set_: dict[str, Any] = {}
    if update == "all":
        set_ = {k: built.excluded[k] for k in columns if k not in keys}
    elif update != "nothing":
        set_ = update(built.excluded)
    if set_:
        upsert: Insert = built.on_conflict_do_update(index_elements=list(keys), set_=set_)
    else:
        upsert = built.on_conflict_do_nothing(index_elements=list(keys))
    statement = Prepared(upsert, columns)
    _UPSERTS[cache_key] = statement  # a race builds it twice, harmlessly
    return statement


# A sync's reads of an opportunity's payments and closed jobs, compiled once (built per call they cost more
# than they take to run; issue 12).
_PAYMENTS_OF = Prepared(
    select(PaymentRow.__table__).where(  # type: ignore[arg-type]
        PaymentRow.__table__.c.tenant_id == bindparam("tenant_id"),  # type: ignore[attr-defined]
        PaymentRow.__table__.c.opportunity_id == bindparam("opportunity_id"),  # type: ignore[attr-defined]
    )
)
_CLOSED_JOBS_OF = Prepared(
    select(CrmJobRow.__table__)  # type: ignore[arg-type]
    .where(
        CrmJobRow.__table__.c.tenant_id == bindparam("tenant_id"),  # type: ignore[attr-defined]
        CrmJobRow.__table__.c.opportunity_id == bindparam("opportunity_id"),  # type: ignore[attr-defined]
        CrmJobRow.__table__.c.closed_time.is_not(None),  # type: ignore[attr-defined]
    )
    .order_by(CrmJobRow.__table__.c.closed_time, CrmJobRow.__table__.c.job_id)  # type: ignore[attr-defined]
)


class SqlAlchemyTenantRepository(SqlRepository, TenantRepository):
    def ensure(self, tenant_id: str) -> None:
        self._upsert(TenantRow, {"tenant_id": tenant_id}, ["tenant_id"], update="nothing")

    def exists(self, tenant_id: str) -> bool:
        return self._one(select(TenantRow).where(TenantRow.tenant_id == tenant_id)) is not None


class SqlAlchemyApiKeyRepository(SqlRepository, ApiKeyRepository):
    def add(self, key: ApiKey) -> None:
        self._session.add(
            ApiKeyRow(
                key_id=key.key_id,
                tenant_id=key.tenant_id,
                secret_hash=key.secret_hash,
                permissions=" ".join(sorted(p.value for p in key.permissions)),
                create_time=key.create_time,
                expires_at=key.expire_time,
                revoked_at=key.revoke_time,
                last_used_at=key.last_use_time,
            )
        )
        self._session.flush()

    def get_by_hash(self, secret_hash: str) -> ApiKey | None:
        row = self._one(select(ApiKeyRow).where(ApiKeyRow.secret_hash == secret_hash))
        return None if row is None else _api_key_from(row)

    def get(self, key_id: str) -> ApiKey | None:
        row = self._one(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
        return None if row is None else _api_key_from(row)

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        statement = select(ApiKeyRow).order_by(ApiKeyRow.create_time, ApiKeyRow.key_id)
        if tenant_id is not None:
            statement = statement.where(ApiKeyRow.tenant_id == tenant_id)
        return [_api_key_from(row) for row in self._fresh(statement)]

    def revoke(self, key_id: str, when: datetime) -> None:
        # One conditional UPDATE of the one column: a concurrent revocation keeps the first time, and a
        # concurrent record_use (another column) is neither lost nor undoes this.
        self._session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=when)
            .execution_options(synchronize_session=False)
        )

    def record_use(self, key_id: str, when: datetime) -> None:
        self._session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < when))
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        )


def _api_key_from(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        tenant_id=row.tenant_id,
        secret_hash=row.secret_hash,
        permissions=frozenset(Permission(p) for p in row.permissions.split()),
        create_time=row.create_time,
        expire_time=row.expires_at,
        revoke_time=row.revoked_at,
        last_use_time=row.last_used_at,
    )


def _opportunity_from(row: Any) -> Opportunity:  # an OpportunityRow or a named tuple of its columns
    customer = Customer(
        customer_id=row.customer_id,
        first_name=row.first_name,
        last_name=row.last_name,
        company_name=row.company_name,
        email=row.email,
        phone=row.phone,
    )
    return Opportunity(
        opportunity_id=row.opportunity_id,
        number=row.number,
        customer=customer,
        branch_id=row.branch_id,
        service_type=row.service_type,
    )


_OPPORTUNITY_KEY = ("tenant_id", "opportunity_id")


def _opportunity_values(tenant_id: str, opportunity: Opportunity) -> dict[str, Any]:
    customer = opportunity.customer
    return {
        "tenant_id": tenant_id,
        "opportunity_id": opportunity.opportunity_id,
        "number": opportunity.number,
        "customer_id": customer.customer_id,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company_name": customer.company_name,
        "email": customer.email,
        "phone": customer.phone,
        "branch_id": opportunity.branch_id,
        "service_type": opportunity.service_type,
    }


def _save_of_its_customer(insert: Callable[..., Any]) -> Prepared:
    table = OpportunityRow.__table__
    built = insert(table)
    columns = tuple(_opportunity_values("", Opportunity("", "", Customer(""))))
    upsert = built.on_conflict_do_update(
        index_elements=list(_OPPORTUNITY_KEY),
        set_={k: built.excluded[k] for k in columns if k not in _OPPORTUNITY_KEY},
        where=table.c.customer_id == built.excluded.customer_id,  # type: ignore[attr-defined]
    ).returning(table.c.opportunity_id)  # type: ignore[attr-defined]
    return Prepared(upsert, columns)


_SAVE_OPPORTUNITY_OF_ITS_CUSTOMER = {
    "sqlite": _save_of_its_customer(sqlite.insert),
    "postgresql": _save_of_its_customer(postgresql.insert),
}

_REFUNDS_OF_PAYMENT = Prepared(
    delete(RefundRow).where(
        RefundRow.tenant_id == bindparam("tenant_id"), RefundRow.payment_id == bindparam("payment_id")
    )
)


def _save_payment_with_its_refunds() -> Prepared:
    """PostgreSQL's save_payment in one statement, where three took three round trips (a twelfth of an
    accept's statements each: issue 12): the payment's upsert, with data-modifying CTEs (each run to
    completion whether or not the INSERT reads it) that forget the refunds it no longer has and map to it
    those it has (moving one mapped to another payment). The two touch different rows (refund ids not in
    the payment, and in it), as they must in one statement: its parts see one snapshot, not each other's
    changes. The foreign key to the payment is checked at the statement's end, after its INSERT."""
    return Prepared(
        text(
            "WITH forgotten AS ("
            " DELETE FROM refunds WHERE tenant_id = :tenant_id AND payment_id = :payment_id"
            " AND refund_id <> ALL (CAST(:refund_ids AS text[]))"
            "), mapped AS ("
            " INSERT INTO refunds (tenant_id, refund_id, payment_id)"
            " SELECT :tenant_id, refund_id, :payment_id"
            " FROM (SELECT DISTINCT unnest(CAST(:refund_ids AS text[])) AS refund_id) AS r"
            " ON CONFLICT (tenant_id, refund_id) DO UPDATE SET payment_id = excluded.payment_id"
            ") INSERT INTO payments (tenant_id, payment_id, opportunity_id, data)"
            " VALUES (:tenant_id, :payment_id, :opportunity_id, :data)"
            " ON CONFLICT (tenant_id, payment_id) DO UPDATE"
            " SET opportunity_id = excluded.opportunity_id, data = excluded.data"
        )
    )


_SAVE_PAYMENT_WITH_ITS_REFUNDS = _save_payment_with_its_refunds()


class SqlAlchemySnapshotRepository(SqlRepository, SnapshotRepository):
    def save_opportunity(self, tenant_id: str, opportunity: Opportunity) -> None:
        self._upsert(OpportunityRow, _opportunity_values(tenant_id, opportunity), _OPPORTUNITY_KEY)

    def save_opportunity_of_its_customer(self, tenant_id: str, opportunity: Opportunity) -> str | None:
        """One statement instead of a read and an upsert (issue 12): the upsert updates only a row of the
        same customer and returns it; none returned means the stored row is another customer's."""
        saved = _SAVE_OPPORTUNITY_OF_ITS_CUSTOMER[self.dialect].first(
            self._bound_connection(), _opportunity_values(tenant_id, opportunity)
        )
        if saved is not None:
            return None
        known = self.get_opportunity(tenant_id, opportunity.opportunity_id)
        return None if known is None else known.customer.customer_id

    def get_opportunity(self, tenant_id: str, opportunity_id: str) -> Opportunity | None:
        row = self._first(OpportunityRow, tenant_id=tenant_id, opportunity_id=opportunity_id)
        return None if row is None else _opportunity_from(row)

    def opportunities_of_customer(self, tenant_id: str, customer_id: str) -> list[Opportunity]:
        rows = self._fresh(
            select(OpportunityRow)
            .where(OpportunityRow.tenant_id == tenant_id, OpportunityRow.customer_id == customer_id)
            .order_by(OpportunityRow.opportunity_id)
        )
        return [_opportunity_from(row) for row in rows]

    def list_opportunities(self, tenant_id: str) -> list[Opportunity]:
        rows = self._fresh(
            select(OpportunityRow).where(OpportunityRow.tenant_id == tenant_id).order_by(OpportunityRow.opportunity_id)
        )
        return [_opportunity_from(row) for row in rows]

    def save_payment(self, tenant_id: str, opportunity_id: str, payment: Payment) -> None:
        values = {
            "tenant_id": tenant_id,
            "payment_id": payment.payment_id,
            "opportunity_id": opportunity_id,
            "data": codec.payment_to_json(payment),
        }
        # The refund -> payment map follows the stored payment: refunds it no longer has are forgotten,
        # and a refund id seen last on this payment belongs to it.
        # The upsert moves a refund stored under another payment (ON CONFLICT ... SET payment_id).
        if self.dialect == "postgresql":
            refund_ids = [r.refund_id for r in payment.refunds]
            _SAVE_PAYMENT_WITH_ITS_REFUNDS.execute(self._bound_connection(), {**values, "refund_ids": refund_ids})
            return
        self._upsert(PaymentRow, values, ["tenant_id", "payment_id"])
        _REFUNDS_OF_PAYMENT.execute(
            self._bound_connection(), {"tenant_id": tenant_id, "payment_id": payment.payment_id}
        )
        self._upsert_many(
            RefundRow,
            [
                {"tenant_id": tenant_id, "refund_id": r.refund_id, "payment_id": payment.payment_id}
                for r in payment.refunds
            ],
            ["tenant_id", "refund_id"],
        )

    def get_payment(self, tenant_id: str, payment_id: str) -> StoredPayment | None:
        row = self._first(PaymentRow, tenant_id=tenant_id, payment_id=payment_id)
        return None if row is None else StoredPayment(row.opportunity_id, codec.payment_from_json(row.data))

    def payments_of(self, tenant_id: str, opportunity_id: str) -> list[Payment]:
        keys = {"tenant_id": tenant_id, "opportunity_id": opportunity_id}
        rows = _PAYMENTS_OF.rows(self._bound_connection(), keys)
        return payments_oldest_first([codec.payment_from_json(row.data) for row in rows])

    def payment_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        row = self._first(RefundRow, tenant_id=tenant_id, refund_id=refund_id)
        return None if row is None else row.payment_id

    def save_job(self, tenant_id: str, opportunity_id: str, job: Job, closed_time: datetime | None) -> None:
        values = {
            "tenant_id": tenant_id,
            "job_id": job.job_id,
            "opportunity_id": opportunity_id,
            "closed_time": closed_time,
            "data": codec.job_to_json(job),
        }
        self._upsert(CrmJobRow, values, ["tenant_id", "job_id"], update=_crm_job_update)

    def get_job(self, tenant_id: str, job_id: str) -> StoredJob | None:
        row = self._first(CrmJobRow, tenant_id=tenant_id, job_id=job_id)
        return None if row is None else StoredJob(row.opportunity_id, codec.job_from_json(row.data), row.closed_time)

    def closed_jobs_of(self, tenant_id: str, opportunity_id: str) -> list[ClosedJob]:
        keys = {"tenant_id": tenant_id, "opportunity_id": opportunity_id}
        rows = _CLOSED_JOBS_OF.rows(self._bound_connection(), keys)
        return [
            ClosedJob(opportunity_id=row.opportunity_id, job=codec.job_from_json(row.data), closed_time=closed)
            for row in rows
            if (closed := row.closed_time) is not None
        ]

    def save_payout(self, tenant_id: str, payout: Payout) -> None:
        self._upsert(
            PayoutRow,
            {
                "tenant_id": tenant_id,
                "payout_id": payout.payout_id,
                "arrival_date": payout.arrival_date,
                "data": codec.payout_to_json(payout),
            },
            ["tenant_id", "payout_id"],
        )
        # The assignments follow the stored payout: payments and refunds it no longer lists leave it. A
        # listed payment or refund still in another payout is the caller's precondition.
        for model, key, ids in (
            (PayoutPaymentRow, "payment_id", payout.payment_ids),
            (PayoutRefundRow, "refund_id", payout.refund_ids),
        ):
            self._session.execute(
                delete(model).where(model.tenant_id == tenant_id, model.payout_id == payout.payout_id)
            )
            for part_id in ids:
                self._upsert(
                    model,
                    {"tenant_id": tenant_id, key: part_id, "payout_id": payout.payout_id},
                    ["tenant_id", key],
                )

    def get_payout(self, tenant_id: str, payout_id: str) -> Payout | None:
        row = self._first(PayoutRow, tenant_id=tenant_id, payout_id=payout_id)
        return None if row is None else codec.payout_from_json(row.data)

    def payout_of_payment(self, tenant_id: str, payment_id: str) -> str | None:
        row = self._first(PayoutPaymentRow, tenant_id=tenant_id, payment_id=payment_id)
        return None if row is None else row.payout_id

    def payout_of_refund(self, tenant_id: str, refund_id: str) -> str | None:
        row = self._first(PayoutRefundRow, tenant_id=tenant_id, refund_id=refund_id)
        return None if row is None else row.payout_id

    def list_payouts(self, tenant_id: str, *, offset: int, limit: int) -> list[Payout]:
        # Ids compare by code point, as Python's str does: SQLite's BINARY collation does so already,
        # PostgreSQL's database collation (en_US.UTF-8, say) need not.
        payout_id = PayoutRow.payout_id.collate("C") if self.dialect == "postgresql" else PayoutRow.payout_id
        rows = self._fresh(
            select(PayoutRow)
            .where(PayoutRow.tenant_id == tenant_id)
            .order_by(PayoutRow.arrival_date.desc(), payout_id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [codec.payout_from_json(row.data) for row in rows]


def _crm_job_update(excluded: Any) -> dict[str, Any]:
    return {
        "opportunity_id": excluded.opportunity_id,
        "data": excluded.data,
        # The first close-out counts: a closed_time once stored is never replaced nor erased.
        "closed_time": func.coalesce(CrmJobRow.__table__.c.closed_time, excluded.closed_time),
    }


class SqlAlchemySyncRecordRepository(SqlRepository, SyncRecordRepository):
    def get(self, tenant_id: str, entity: EntityRef) -> SyncRecord | None:
        row = self._first(SyncRecordRow, tenant_id=tenant_id, entity_type=entity.type.value, entity_id=entity.id)
        return None if row is None else _record_from(row)

    def get_many(self, tenant_id: str, entities: Sequence[EntityRef]) -> dict[EntityRef, SyncRecord]:
        """In one SELECT: an accept reads its payment's and refunds' records at once (issue 12)."""
        if len(entities) <= 1:
            return super().get_many(tenant_id, entities)
        params: dict[str, Any] = {"tenant_id": tenant_id}
        for n, entity in enumerate(entities):
            params[f"type_{n}"] = entity.type.value
            params[f"id_{n}"] = entity.id
        rows = _records_statement(len(entities)).rows(self._bound_connection(), params)
        return {record.entity: record for record in map(_record_from, rows)}

    def save(self, record: SyncRecord) -> None:
        self._upsert(SyncRecordRow, _record_values(record), _RECORD_KEY)

    def save_many(self, records: Sequence[SyncRecord]) -> None:
        """One executemany, in the order given (the rows are locked in it): on psycopg one pipelined round
        trip, on SQLite one driver call."""
        self._upsert_many(SyncRecordRow, [_record_values(record) for record in records], _RECORD_KEY)

    def with_quickbooks_ids(self, tenant_id: str, quickbooks_ids: Sequence[str]) -> list[SyncRecord]:
        wanted = sorted(set(quickbooks_ids))
        found: list[SyncRecord] = []
        for start in range(0, len(wanted), 500):  # bounded IN lists, served by (tenant_id, quickbooks_id)
            rows = self._fresh(
                select(SyncRecordRow).where(
                    SyncRecordRow.tenant_id == tenant_id, SyncRecordRow.quickbooks_id.in_(wanted[start : start + 500])
                )
            )
            found.extend(_record_from(row) for row in rows)
        return found


_RECORD_KEY = ("tenant_id", "entity_type", "entity_id")
_RECORDS_BY_COUNT: dict[int, Prepared] = {}


def _records_statement(count: int) -> Prepared:
    """The records of `count` entities of one tenant: (type, id) pairs ORed, which both planners serve from
    the primary key (one index probe per pair)."""
    statement = _RECORDS_BY_COUNT.get(count)
    if statement is None:
        table = SyncRecordRow.__table__
        pairs = [
            (table.c.entity_type == bindparam(f"type_{n}")) & (table.c.entity_id == bindparam(f"id_{n}"))  # type: ignore[attr-defined]
            for n in range(count)
        ]
        statement = Prepared(select(table).where(table.c.tenant_id == bindparam("tenant_id"), or_(*pairs)))  # type: ignore[attr-defined]
        _RECORDS_BY_COUNT[count] = statement  # a race builds it twice, harmlessly
    return statement


def _record_from(row: Any) -> SyncRecord:  # a named tuple of sync_records' columns
    return SyncRecord(
        tenant_id=row.tenant_id,
        entity=EntityRef(EntityType(row.entity_type), row.entity_id),
        state=SyncState(row.state),
        quickbooks_id=row.quickbooks_id,
        sync_token=row.sync_token,
        quickbooks_type=row.quickbooks_type,
        generation=row.generation,
        create_started=row.create_started,
        content_hash=row.content_hash,
        last_synced_time=row.last_synced_time,
        last_error=row.last_error,
        display_name=row.display_name,
        amount=row.amount,
        applied=codec.applied_from_json(row.applied),
        realm_id=row.realm_id,
    )


def _record_values(record: SyncRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "entity_type": record.entity.type.value,
        "entity_id": record.entity.id,
        "state": record.state.value,
        "quickbooks_id": record.quickbooks_id,
        "sync_token": record.sync_token,
        "quickbooks_type": record.quickbooks_type,
        "generation": record.generation,
        "create_started": record.create_started,
        "content_hash": record.content_hash,
        "last_synced_time": record.last_synced_time,
        "last_error": record.last_error,
        "display_name": record.display_name,
        "amount": record.amount,
        "applied": codec.applied_to_json(record.applied),
        "realm_id": record.realm_id,
    }


_EVENT_COLUMNS = ("tenant_id", "time", "kind", "entity_type", "entity_id", "job_id", "message")
_APPEND_EVENT = Prepared(insert(AuditEventRow.__table__), _EVENT_COLUMNS)  # type: ignore[arg-type]


def event_values(event: AuditEvent) -> dict[str, Any]:
    """An audit event's row (`_EVENT_COLUMNS`)."""
    return {
        "tenant_id": event.tenant_id,
        "time": event.time,
        "kind": event.kind.value,
        "entity_type": None if event.entity is None else event.entity.type.value,
        "entity_id": None if event.entity is None else event.entity.id,
        "job_id": event.job_id,
        "message": event.message,
    }


def append_event(connection: Connection, event: AuditEvent) -> None:
    _APPEND_EVENT.execute(connection, event_values(event))


class SqlAlchemyAuditLog(SqlRepository, AuditLog):
    def append(self, event: AuditEvent) -> None:
        append_event(self._bound_connection(), event)

    def list(self, tenant_id: str, *, limit: int) -> list[AuditEvent]:
        rows = self._fresh(
            select(AuditEventRow)
            .where(AuditEventRow.tenant_id == tenant_id)
            # The id breaks ties between events of the same time: appended later = newer.
            .order_by(AuditEventRow.time.desc(), AuditEventRow.id.desc())
            .limit(limit)
        )
        return [
            AuditEvent(
                tenant_id=row.tenant_id,
                time=row.time,
                kind=AuditKind(row.kind),
                entity=None
                if row.entity_type is None or row.entity_id is None
                else EntityRef(EntityType(row.entity_type), row.entity_id),
                job_id=row.job_id,
                message=row.message,
            )
            for row in rows
        ]
