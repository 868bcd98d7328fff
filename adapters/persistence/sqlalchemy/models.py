"""The tables. Every CRM and sync row is keyed by tenant_id first: ids are unique within a tenant only.

CRM snapshots that are only ever read whole (payments with their refunds, jobs with their lines) are
stored as JSON text (see `codec`); what is queried or ordered on has its own column.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from adapters.persistence.sqlalchemy.columns import ExactDecimal, UtcDateTime

# Named constraints, so that migrations and every dialect agree on the names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def only_on(dialect: str, index: Index) -> Index:
    """An index that only `dialect`'s schema has (its migration creates it there alone): where another
    dialect's planner serves the same query from another index, this one would only cost upkeep."""
    index.info["only_on"] = dialect
    return index.ddl_if(dialect=dialect)


def in_schema_of(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's include_object for a database of `dialect`: every model object but those `only_on` another
    dialect (so that comparing a SQLite schema with the models does not miss a PostgreSQL-only index)."""

    def include(obj: Any, _name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
        return type_ != "index" or obj.info.get("only_on", dialect) == dialect

    return include


class TenantRow(Base):
    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String)
    secret_hash: Mapped[str] = mapped_column(String, unique=True)
    permissions: Mapped[str] = mapped_column(Text)  # space-separated Permission values, sorted
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OpportunityRow(Base):
    __tablename__ = "opportunities"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(String, primary_key=True)
    number: Mapped[str] = mapped_column(String)
    customer_id: Mapped[str] = mapped_column(String)
    first_name: Mapped[str] = mapped_column(Text)
    last_name: Mapped[str] = mapped_column(Text)
    company_name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    phone: Mapped[str] = mapped_column(Text)
    # SPEC §10 (revision 0019; "" in rows written before): which connection and class/location it syncs to.
    branch_id: Mapped[str] = mapped_column(String, server_default="")
    service_type: Mapped[str] = mapped_column(String, server_default="")


class PaymentRow(Base):
    __tablename__ = "payments"
    __table_args__ = (Index(None, "tenant_id", "opportunity_id"),)

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    payment_id: Mapped[str] = mapped_column(String, primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(String)
    data: Mapped[str] = mapped_column(Text)  # the Payment with its refunds, as JSON


class RefundRow(Base):
    """Which payment a refund belongs to, kept in step with the payment's JSON on every save."""

    __tablename__ = "refunds"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "payment_id"], ["payments.tenant_id", "payments.payment_id"], ondelete="CASCADE"
        ),
        Index(None, "tenant_id", "payment_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    refund_id: Mapped[str] = mapped_column(String, primary_key=True)
    payment_id: Mapped[str] = mapped_column(String)


class CrmJobRow(Base):
    __tablename__ = "crm_jobs"
    __table_args__ = (Index(None, "tenant_id", "opportunity_id"),)

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    job_id: Mapped[str] = mapped_column(String, primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(String)
    closed_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data: Mapped[str] = mapped_column(Text)  # the Job with its lines, as JSON


class PayoutRow(Base):
    __tablename__ = "payouts"
    __table_args__ = (Index(None, "tenant_id", "arrival_date", "payout_id"),)  # list_payouts' order

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    payout_id: Mapped[str] = mapped_column(String, primary_key=True)
    # The snapshot's arrival date again, to list by. Nullable only because migration 0007 added it to a
    # table that may have had rows (it fills them in); every save writes it.
    arrival_date: Mapped[date | None] = mapped_column(Date)
    data: Mapped[str] = mapped_column(Text)  # the Payout with its payment and refund ids, as JSON


class PayoutPaymentRow(Base):
    """Which payout a payment is in, kept in step with the payout's JSON on every save. The key is the
    payment alone, so that the database itself holds a payment to one payout (SPEC §9)."""

    __tablename__ = "payout_payments"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "payout_id"], ["payouts.tenant_id", "payouts.payout_id"], ondelete="CASCADE"
        ),
        Index(None, "tenant_id", "payout_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    payment_id: Mapped[str] = mapped_column(String, primary_key=True)
    payout_id: Mapped[str] = mapped_column(String)


class PayoutRefundRow(Base):
    """Which payout nets a refund, kept in step with the payout's JSON on every save. The key is the refund
    alone, so that the database itself holds a refund to one payout (SPEC §9): netted twice, it would be
    taken from the bank twice."""

    __tablename__ = "payout_refunds"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "payout_id"], ["payouts.tenant_id", "payouts.payout_id"], ondelete="CASCADE"
        ),
        Index(None, "tenant_id", "payout_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    refund_id: Mapped[str] = mapped_column(String, primary_key=True)
    payout_id: Mapped[str] = mapped_column(String)


class SyncRecordRow(Base):
    __tablename__ = "sync_records"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    entity_type: Mapped[str] = mapped_column(String, primary_key=True)
    entity_id: Mapped[str] = mapped_column(String, primary_key=True)
    state: Mapped[str] = mapped_column(String)
    quickbooks_id: Mapped[str | None] = mapped_column(String)
    sync_token: Mapped[str | None] = mapped_column(String)
    quickbooks_type: Mapped[str] = mapped_column(String)
    generation: Mapped[int] = mapped_column(Integer)
    create_started: Mapped[bool]
    content_hash: Mapped[str] = mapped_column(String)
    last_synced_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    applied: Mapped[str] = mapped_column(Text)  # {job_id: "amount"} as JSON
    realm_id: Mapped[str] = mapped_column(String, server_default="")  # the company it was written in (0019)

    # A drift sweep finds the records QuickBooks reports changed by their QuickBooks Id (revision 0020).
    __table_args__ = (Index(None, "tenant_id", "quickbooks_id"),)


class DriftRow(Base):
    """A record changed in QuickBooks by someone else (core.domain.Drift), one per CRM record (revision 0020)."""

    __tablename__ = "drifts"
    __table_args__ = (Index(None, "tenant_id", "detected_time"),)  # ListDrift's order

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    entity_type: Mapped[str] = mapped_column(String, primary_key=True)
    entity_id: Mapped[str] = mapped_column(String, primary_key=True)
    quickbooks_id: Mapped[str] = mapped_column(String)
    change: Mapped[str] = mapped_column(String)  # a DriftChange value
    detected_time: Mapped[datetime] = mapped_column(UtcDateTime)
    sync_token: Mapped[str] = mapped_column(String)
    fields: Mapped[str] = mapped_column(Text)  # QuickBooks' field names, comma-separated


class DriftWatermarkRow(Base):
    """Where each connection's next drift sweep reads QuickBooks' changes from (revision 0020)."""

    __tablename__ = "drift_watermarks"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String, primary_key=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime)


class SyncJobRow(Base):
    """The job queue. request_id is NULL when the caller sent none, so the unique constraint only
    binds real request ids (NULLs never collide, on SQLite and PostgreSQL alike)."""

    __tablename__ = "sync_jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id"),
        Index(None, "state", "next_attempt_time"),
        Index(None, "lock_key", "state"),
        Index(None, "identity_key", "state"),
        Index(None, "tenant_id", "state", "update_time"),
        Index(None, "tenant_id", "update_time"),  # list_recent's order (revision 0009)
        # The claim's order over the open jobs (revision 0013, where PostgreSQL's ids are in "C" collation).
        Index(
            "ix_sync_jobs_claim_order",
            "create_time",
            "job_id",
            "tenant_id",
            sqlite_where=text("+state IN ('PENDING', 'RUNNING')"),  # as the claim tests it there
            postgresql_where=text("state IN ('PENDING', 'RUNNING')"),
        ),
        # The due backlog of the queue gauges and the database probe (revision 0015; jobs.due_backlog).
        Index(
            "ix_sync_jobs_due_backlog",
            "next_attempt_time",
            "create_time",
            sqlite_where=text("state = 'PENDING'"),
            postgresql_where=text("state = 'PENDING'"),
        ),
        # Its oldest new job on PostgreSQL, whose planner cannot read that from the one above (revision 0016).
        only_on(
            "postgresql",
            Index(
                "ix_sync_jobs_oldest_new",
                "create_time",
                postgresql_where=text("state = 'PENDING' AND next_attempt_time IS NULL"),
            ),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    job_id: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str] = mapped_column(String)
    target_type: Mapped[str] = mapped_column(String)
    target_id: Mapped[str] = mapped_column(String)
    opportunity_id: Mapped[str] = mapped_column(String)
    customer_id: Mapped[str] = mapped_column(String)
    lock_key: Mapped[str] = mapped_column(String)
    # "" for jobs accepted before revision 0003 (the server default fills them in).
    identity_key: Mapped[str] = mapped_column(String, server_default="")
    state: Mapped[str] = mapped_column(String)
    resync: Mapped[bool]
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    results: Mapped[str] = mapped_column(Text)  # list of SyncResult, as JSON
    error: Mapped[str | None] = mapped_column(Text)  # JobError as JSON
    request_id: Mapped[str | None] = mapped_column(String)
    request_fingerprint: Mapped[str] = mapped_column(String)
    next_attempt_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str] = mapped_column(String)
    lease_expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)
    # When an admin dismissed the FAILED job (revision 0009); NULL when it was never dismissed.
    dismiss_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The branch whose connection the job syncs to (revision 0019; "" for the default connection).
    branch_id: Mapped[str] = mapped_column(String, server_default="")


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "tenant_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String)
    entity_type: Mapped[str | None] = mapped_column(String)
    entity_id: Mapped[str | None] = mapped_column(String)
    job_id: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)


class QuickBooksConnectionRow(Base):
    """A tenant's QuickBooks connection: its default one (branch_id "") or a branch's own (SPEC §10,
    revision 0019). `secrets` is one Fernet token over a JSON object holding the
    client secret, both OAuth tokens and the pending anti-forgery state: nothing in it is ever queried,
    and one ciphertext per row means one decryption per read and no column to forget to encrypt."""

    __tablename__ = "quickbooks_connections"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String, primary_key=True, server_default="")
    realm_id: Mapped[str] = mapped_column(String)
    environment: Mapped[str] = mapped_column(Text)  # "sandbox", "production" or a discovery URL
    api_base_url: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(String)
    secrets: Mapped[str] = mapped_column(Text)  # Fernet token (see adapters.persistence.encryption)
    access_token_expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    refresh_token_expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String)
    connect_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    company_name: Mapped[str] = mapped_column(Text)
    # CurrencyPrefs as read from QuickBooks ("" = not read yet): company facts, written with company_name.
    home_currency: Mapped[str] = mapped_column(String, server_default="")
    multicurrency: Mapped[bool] = mapped_column(server_default=false())
    # TaxPrefs as read with them: a SalesTax value (AUTOMATED, MANUAL, NONE); NULL = not read yet.
    sales_tax: Mapped[str | None] = mapped_column(String)
    # AccountingInfoPrefs and SalesFormsPrefs.CustomTxnNumbers as read with them (revision 0019). Rows from
    # before read as a company without class or location tracking that numbers its own invoices: what qbsync
    # assumed then (DocNumber from the job number).
    class_tracking: Mapped[str] = mapped_column(String, server_default="OFF")  # a ClassTracking value
    track_departments: Mapped[bool] = mapped_column(server_default=false())
    custom_txn_numbers: Mapped[bool] = mapped_column(server_default=true())
    last_error: Mapped[str] = mapped_column(Text)
    settings: Mapped[str] = mapped_column(Text)  # QuickBooksSettings as JSON (see codec)
    redirect_uri: Mapped[str] = mapped_column(Text)


class RequestSlotRow(Base):
    """A QuickBooks request in flight, held by one process (PostgresRequestLimiter). A slot whose holder
    died is dropped once `expires` has passed, so a crash never keeps a company's cap taken."""

    __tablename__ = "qbo_request_slots"
    __table_args__ = (Index(None, "realm_id", "expires"),)

    slot_id: Mapped[str] = mapped_column(String, primary_key=True)
    realm_id: Mapped[str] = mapped_column(String)
    holder: Mapped[str] = mapped_column(String)  # host:pid, for an operator wondering who holds a company
    expires: Mapped[datetime] = mapped_column(UtcDateTime)


class RequestStartRow(Base):
    """When a QuickBooks request was admitted, per company: the sliding one-second and one-minute windows.
    Rows older than a minute are deleted by the next admission to the same company."""

    __tablename__ = "qbo_request_starts"
    __table_args__ = (Index(None, "realm_id", "started"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    realm_id: Mapped[str] = mapped_column(String)
    started: Mapped[datetime] = mapped_column(UtcDateTime)


class CompanyLookupRow(Base):
    """What the sync-time checks found in a tenant's company lists (core/company_lookups.py): one row per
    tenant, connection (branch_id, revision 0019), kind and name, replaced by a newer look-up."""

    __tablename__ = "company_lookups"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String, primary_key=True, server_default="")
    kind: Mapped[str] = mapped_column(String, primary_key=True)  # a LookupKind value
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    realm_id: Mapped[str] = mapped_column(String)
    against: Mapped[str] = mapped_column(Text)
    found_id: Mapped[str] = mapped_column(String)
    found_name: Mapped[str] = mapped_column(Text)
    checked_time: Mapped[datetime] = mapped_column(UtcDateTime)
