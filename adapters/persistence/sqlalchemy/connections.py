"""Each tenant's QuickBooks connection, with its secrets encrypted before they reach the database."""

from __future__ import annotations

import json

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adapters.persistence.encryption import SecretBox
from adapters.persistence.sqlalchemy import codec
from adapters.persistence.sqlalchemy.models import QuickBooksConnectionRow
from adapters.persistence.sqlalchemy.repositories import SqlRepository
from core.connection import ConnectionState, QuickBooksConnection
from core.currency import CompanyCurrency
from core.ports import ConnectionRepository

# The fields of QuickBooksConnection that are encrypted together into the `secrets` column.
SECRET_FIELDS = ("client_secret", "refresh_token", "access_token", "oauth_state")


class MissingEncryptionKeyError(RuntimeError):
    """The unit-of-work factory was built without encryption keys, so connections cannot be stored."""


class SqlAlchemyConnectionRepository(SqlRepository, ConnectionRepository):
    def __init__(self, session: Session, secrets: SecretBox | None) -> None:
        super().__init__(session)
        self._secrets = secrets

    def get(self, tenant_id: str) -> QuickBooksConnection | None:
        row = self._one(select(QuickBooksConnectionRow).where(QuickBooksConnectionRow.tenant_id == tenant_id))
        if row is None:
            return None
        opened = json.loads(self._box().decrypt(row.secrets, what=f"the QuickBooks secrets of tenant {tenant_id!r}"))
        return QuickBooksConnection(
            tenant_id=row.tenant_id,
            realm_id=row.realm_id,
            environment=row.environment,
            client_id=row.client_id,
            client_secret=opened["client_secret"],
            refresh_token=opened["refresh_token"],
            access_token=opened["access_token"],
            access_token_expires=row.access_token_expires,
            refresh_token_expires=row.refresh_token_expires,
            api_base_url=row.api_base_url,
            state=ConnectionState(row.state),
            connect_time=row.connect_time,
            company_name=row.company_name,
            home_currency=row.home_currency,
            multicurrency=row.multicurrency,
            last_error=row.last_error,
            settings=codec.settings_from_json(row.settings),
            oauth_state=opened["oauth_state"],
            redirect_uri=row.redirect_uri,
        )

    def save(self, connection: QuickBooksConnection) -> None:
        sealed = self._box().encrypt(json.dumps({name: getattr(connection, name) for name in SECRET_FIELDS}))
        self._upsert(
            QuickBooksConnectionRow,
            {
                "tenant_id": connection.tenant_id,
                "realm_id": connection.realm_id,
                "environment": connection.environment,
                "api_base_url": connection.api_base_url,
                "client_id": connection.client_id,
                "secrets": sealed,
                "access_token_expires": connection.access_token_expires,
                "refresh_token_expires": connection.refresh_token_expires,
                "state": connection.state.value,
                "connect_time": connection.connect_time,
                "company_name": connection.company_name,
                "home_currency": connection.home_currency,
                "multicurrency": connection.multicurrency,
                "last_error": connection.last_error,
                "settings": codec.settings_to_json(connection.settings),
                "redirect_uri": connection.redirect_uri,
            },
            ["tenant_id"],
        )

    def save_company_currency(self, tenant_id: str, currency: CompanyCurrency) -> bool:
        statement = (
            update(QuickBooksConnectionRow)
            .where(QuickBooksConnectionRow.tenant_id == tenant_id)
            .values(home_currency=currency.home, multicurrency=currency.multicurrency)
        )
        result = self._session.execute(statement)
        return bool(getattr(result, "rowcount", 0))

    def _box(self) -> SecretBox:
        if self._secrets is None:
            # Refusing beats storing tokens in the clear, or under a throwaway key lost at exit.
            raise MissingEncryptionKeyError(
                "QuickBooks connections need an encryption key: build SqlAlchemyUnitOfWorkFactory "
                "with a SecretBox (SqlAlchemyPersistenceModule does)"
            )
        return self._secrets
