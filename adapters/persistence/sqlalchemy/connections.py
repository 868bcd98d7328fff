"""Each tenant's QuickBooks connections (its default one, branch "", and one per branch with its own company:
SPEC §10), keyed by (tenant_id, branch_id), with their secrets encrypted before they reach the database.

Writers other than `save` change only their own columns, in an UPDATE of the current row: a worker
recording a looked-up setting must never put back the tokens it read, which a refresh may have rotated
since (see ConnectionRepository). The secrets are one ciphertext, so the writers that change one of them
(`save_tokens`, `mark_reconnect_required`, `save_authorization_request`) read it with the row locked
(FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), change their part and
seal it again, so that none undoes another's secret either. `get_for_update` takes the same lock for
callers that merge what they read (settings lookups).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, case, literal, select, update
from sqlalchemy.orm import Session

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy import codec
from adapters.persistence.sqlalchemy.models import QuickBooksConnectionRow
from adapters.persistence.sqlalchemy.prepared import Prepared
from adapters.persistence.sqlalchemy.repositories import ReadScope, SqlRepository
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import ClassTracking, ConnectionState, QuickBooksConnection, QuickBooksSettings, TokenGrant
from core.errors import NotFoundError
from core.ports import ConnectionRepository

# The fields of QuickBooksConnection that are encrypted together into the `secrets` column.
SECRET_FIELDS = ("client_secret", "refresh_token", "access_token", "oauth_state")
# Kept beside them (not secret, but it describes the grant and changes with it; a column would need a
# migration): the access token's lifetime in seconds, absent from rows written before it was kept.
LIFETIME = "access_token_lifetime"

KEY = ("tenant_id", "branch_id")  # a connection's: the tenant's default one is branch "" (SPEC §10)
_CONNECTIONS: Any = QuickBooksConnectionRow.__table__

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


class MissingEncryptionKeyError(RuntimeError):
    """The unit-of-work factory was built without encryption keys, so connections cannot be stored."""


def routed_to_branch(statement: S) -> S:
    """`statement` (a SELECT from quickbooks_connections) narrowed to the one connection the syncs of branch
    :branch_id of tenant :tenant_id go to (`ConnectionRepository.for_branch`): the branch's own row whatever its
    state, else the default one (branch ""), else none. One statement: the worker reads it in its claim's
    transaction. The CASE, not `ORDER BY branch_id DESC`, puts the default last: a collation's order of ''
    against other ids is not this rule's to rely on."""
    branch = _CONNECTIONS.c.branch_id
    return (
        statement.where(
            _CONNECTIONS.c.tenant_id == bindparam("tenant_id"),
            branch.in_([bindparam("branch_id"), literal("")]),
        )
        .order_by(case((branch == "", 1), else_=0))
        .limit(1)
    )


_FOR_BRANCH = Prepared(routed_to_branch(select(_CONNECTIONS)))


class SqlAlchemyConnectionRepository(SqlRepository, ConnectionRepository):
    def __init__(self, session: Session | ReadScope, secrets: SecretBox | None) -> None:
        super().__init__(session)
        self._secrets = secrets
        # The connections (tenant_id, branch_id) this unit of work wrote: its commit drops their cached
        # company facts.
        self.written: set[tuple[str, str]] = set()

    def get(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        # A compiled Core read (no ORM row).
        return self._connection(self._first(QuickBooksConnectionRow, tenant_id=tenant_id, branch_id=branch_id))

    def for_branch(self, tenant_id: str, branch_id: str) -> QuickBooksConnection | None:
        return self._connection(
            _FOR_BRANCH.first(self._bound_connection(), {"tenant_id": tenant_id, "branch_id": branch_id})
        )

    def of_tenant(self, tenant_id: str) -> list[QuickBooksConnection]:
        # Branch ids compare by code point, as Python's str does: SQLite's BINARY collation does so already,
        # PostgreSQL's database collation (en_US.UTF-8, say) need not. "" sorts first in both.
        branch = _CONNECTIONS.c.branch_id
        statement = (
            select(_CONNECTIONS)
            .where(_CONNECTIONS.c.tenant_id == tenant_id)
            .order_by(branch.collate("C") if self.dialect == "postgresql" else branch)
        )
        rows = self._bound_connection().execute(statement)
        return [connection for row in rows if (connection := self._connection(row)) is not None]

    def get_for_update(self, tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
        return self._connection(self._row(tenant_id, branch_id, locked=True))

    def _connection(self, row: Any) -> QuickBooksConnection | None:  # a QuickBooksConnectionRow or its columns
        if row is None:
            return None
        opened = self._open(row)
        return QuickBooksConnection(
            tenant_id=row.tenant_id,
            branch_id=row.branch_id,
            realm_id=row.realm_id,
            environment=row.environment,
            client_id=row.client_id,
            client_secret=opened["client_secret"],
            refresh_token=opened["refresh_token"],
            access_token=opened["access_token"],
            access_token_expires=row.access_token_expires,
            refresh_token_expires=row.refresh_token_expires,
            access_token_lifetime=_lifetime(opened.get(LIFETIME)),
            api_base_url=row.api_base_url,
            state=ConnectionState(row.state),
            connect_time=row.connect_time,
            company_name=row.company_name,
            home_currency=row.home_currency,
            multicurrency=row.multicurrency,
            sales_tax=None if row.sales_tax is None else SalesTax(row.sales_tax),
            class_tracking=ClassTracking(row.class_tracking),
            track_departments=row.track_departments,
            custom_txn_numbers=row.custom_txn_numbers,
            last_error=row.last_error,
            settings=codec.settings_from_json(row.settings),
            oauth_state=opened["oauth_state"],
            redirect_uri=row.redirect_uri,
        )

    def save(self, connection: QuickBooksConnection) -> None:
        self.written.add((connection.tenant_id, connection.branch_id))
        secrets = {name: getattr(connection, name) for name in SECRET_FIELDS}
        secrets[LIFETIME] = _seconds(connection.access_token_lifetime)
        self._upsert(
            QuickBooksConnectionRow,
            {
                "tenant_id": connection.tenant_id,
                "branch_id": connection.branch_id,
                "realm_id": connection.realm_id,
                "environment": connection.environment,
                "api_base_url": connection.api_base_url,
                "client_id": connection.client_id,
                "secrets": self._seal(secrets),
                "access_token_expires": connection.access_token_expires,
                "refresh_token_expires": connection.refresh_token_expires,
                "state": connection.state.value,
                "connect_time": connection.connect_time,
                "company_name": connection.company_name,
                "home_currency": connection.home_currency,
                "multicurrency": connection.multicurrency,
                "sales_tax": _sales_tax(connection.sales_tax),
                "class_tracking": connection.class_tracking.value,
                "track_departments": connection.track_departments,
                "custom_txn_numbers": connection.custom_txn_numbers,
                "last_error": connection.last_error,
                "settings": codec.settings_to_json(connection.settings),
                "redirect_uri": connection.redirect_uri,
            },
            KEY,
        )

    def save_company_preferences(self, tenant_id: str, preferences: CompanyPreferences, *, branch_id: str = "") -> bool:
        return self._update(
            tenant_id,
            branch_id,
            home_currency=preferences.currency.home,
            multicurrency=preferences.currency.multicurrency,
            sales_tax=_sales_tax(preferences.sales_tax),
            class_tracking=preferences.class_tracking.value,
            track_departments=preferences.track_departments,
            custom_txn_numbers=preferences.custom_txn_numbers,
        )

    def save_tokens(self, tenant_id: str, grant: TokenGrant, *, replacing: str, branch_id: str = "") -> bool:
        row = self._row(tenant_id, branch_id, locked=True)
        if row is None or row.state != ConnectionState.CONNECTED.value:
            return False
        secrets = self._open(row)
        if secrets["refresh_token"] != replacing:
            return False
        secrets.update(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            **{LIFETIME: _seconds(grant.access_token_lifetime)},
        )
        self._update(
            tenant_id,
            branch_id,
            secrets=self._seal(secrets),
            access_token_expires=grant.access_token_expires,
            refresh_token_expires=grant.refresh_token_expires,
            last_error="",
        )
        return True

    def mark_reconnect_required(
        self, tenant_id: str, last_error: str, *, refused_token: str, branch_id: str = ""
    ) -> bool:
        row = self._row(tenant_id, branch_id, locked=True)
        if row is None:
            return False
        secrets = self._open(row)
        if secrets["refresh_token"] != refused_token:
            return False
        secrets["access_token"] = ""
        self._update(
            tenant_id,
            branch_id,
            secrets=self._seal(secrets),
            state=ConnectionState.RECONNECT_REQUIRED.value,
            last_error=last_error,
        )
        return True

    def save_settings(self, tenant_id: str, settings: QuickBooksSettings, *, branch_id: str = "") -> None:
        if not self._update(tenant_id, branch_id, settings=codec.settings_to_json(settings)):
            raise NotFoundError(_no_connection(branch_id))

    def save_authorization_request(
        self, tenant_id: str, *, environment: str, redirect_uri: str, oauth_state: str, branch_id: str = ""
    ) -> None:
        row = self._row(tenant_id, branch_id, locked=True)
        if row is None:
            raise NotFoundError(_no_connection(branch_id))
        secrets = self._open(row)
        secrets["oauth_state"] = oauth_state
        self._update(
            tenant_id, branch_id, secrets=self._seal(secrets), environment=environment, redirect_uri=redirect_uri
        )

    def _row(self, tenant_id: str, branch_id: str, *, locked: bool = False) -> QuickBooksConnectionRow | None:
        statement = select(QuickBooksConnectionRow).where(
            QuickBooksConnectionRow.tenant_id == tenant_id, QuickBooksConnectionRow.branch_id == branch_id
        )
        if locked and self.dialect == "postgresql":
            # Held to the commit: no other writer of the secrets gets between this read and our update.
            statement = statement.with_for_update()
        return self._one(statement)

    def _update(self, tenant_id: str, branch_id: str, **columns: Any) -> bool:
        """Sets `columns` of the connection's row, and no other; whether there was a row."""
        self.written.add((tenant_id, branch_id))
        result = self._session.execute(
            update(QuickBooksConnectionRow)
            .where(QuickBooksConnectionRow.tenant_id == tenant_id, QuickBooksConnectionRow.branch_id == branch_id)
            .values(**columns)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def _open(self, row: Any) -> dict[str, Any]:
        opened: dict[str, Any] = json.loads(
            self._box().decrypt(row.secrets, what=f"the QuickBooks secrets of tenant {row.tenant_id!r}")
        )
        return opened

    def _seal(self, secrets: dict[str, Any]) -> str:
        return self._box().encrypt(json.dumps(secrets))

    def _box(self) -> SecretBox:
        if self._secrets is None:
            # Refusing beats storing tokens in the clear, or under a throwaway key lost at exit.
            raise MissingEncryptionKeyError(
                "QuickBooks connections need an encryption key: build SqlAlchemyUnitOfWorkFactory "
                "with a SecretBox (SqlAlchemyPersistenceModule does)"
            )
        return self._secrets


def _seconds(lifetime: timedelta | None) -> float | None:
    return None if lifetime is None else lifetime.total_seconds()


def _lifetime(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def _no_connection(branch_id: str) -> str:
    if branch_id:
        return f"this tenant has no QuickBooks connection for branch {branch_id!r}"
    return "this tenant has no QuickBooks connection"


def _sales_tax(mode: SalesTax | None) -> str | None:
    # NULL, not "", for "not read yet": rows from before migration 0005 hold NULL too.
    return None if mode is None else mode.value
