"""`AccountingSystems` over python-quickbooks: each tenant's company, from its stored connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from adapters.quickbooks.qbo.calls import CompanySession, RetryPolicy
from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS
from adapters.quickbooks.qbo.lookups import CompanyLookups
from adapters.quickbooks.qbo.system import QuickBooksAccountingSystem
from adapters.quickbooks.qbo.tokens import NOT_CONNECTED_MESSAGE, RECONNECT_MESSAGE, AuthClientFactory, TokenKeeper
from adapters.quickbooks.qbo.transport import api_base_url, check_transport_security
from core.connection import ConnectionState, QuickBooksConnection
from core.errors import BookkeepingError, ReconnectRequiredError
from core.ports import AccountingSystems, Clock, CompanyLock, RequestLimiter, UnitOfWorkFactory


def _identity(connection: QuickBooksConnection) -> tuple[str, ...]:
    """What the HTTP client is built from: a change means a new client (tokens and settings are adopted)."""
    return (
        connection.realm_id,
        connection.environment,
        connection.api_base_url,
        connection.client_id,
        connection.client_secret,
    )


class QuickBooksAccountingSystems(AccountingSystems):
    """Hands out each connection's `QuickBooksAccountingSystem` (the tenant's default one, or a branch's),
    cached per (tenant, branch) and rebuilt when the stored connection points somewhere else. Building one
    does no I/O; the first call refreshes the token if needed."""

    field_limits = QBO_FIELD_LIMITS

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        *,
        limiter: RequestLimiter,
        company_lock: CompanyLock,
        http_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        auth_client_factory: AuthClientFactory | None = None,
    ) -> None:
        """`limiter` admits every HTTP request; `company_lock` serialises token refreshes. Both are the
        deployment's (in-process, or shared through PostgreSQL when processes share companies): the adapter
        takes what it is given."""
        self._uow_factory = uow_factory
        self._timeout = http_timeout
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._tokens = TokenKeeper(
            uow_factory,
            clock,
            timeout=http_timeout,
            auth_client_factory=auth_client_factory,
            company_lock=company_lock,
        )
        # By connection, (tenant_id, branch_id): a tenant's branches may each have a company of their own.
        self._systems: dict[tuple[str, str], tuple[tuple[str, ...], QuickBooksAccountingSystem]] = {}
        self._guard = threading.Lock()
        self._lookups = CompanyLookups(uow_factory, clock, company_lock)

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> QuickBooksAccountingSystem:
        if connection is None:
            with self._uow_factory() as uow:
                connection = uow.connections.get(tenant_id, branch_id=branch_id)
        else:
            branch_id = connection.branch_id  # the connection the caller read says which one it is
        if connection is None or connection.state is ConnectionState.DISCONNECTED:
            raise ReconnectRequiredError(NOT_CONNECTED_MESSAGE)
        if connection.state is ConnectionState.RECONNECT_REQUIRED:
            raise ReconnectRequiredError(connection.last_error or RECONNECT_MESSAGE)
        identity = _identity(connection)
        with self._guard:
            cached = self._systems.get((tenant_id, branch_id))
            if cached is not None and cached[0] == identity:
                system = cached[1]
                system.session.adopt(connection)
                return system
            try:
                check_transport_security(api_base_url(connection.api_base_url, connection.environment))
                if connection.environment not in ("sandbox", "production"):
                    check_transport_security(connection.environment)  # the OpenID discovery document
            except ValueError as exc:
                raise BookkeepingError(str(exc), reason="QUICKBOOKS_CONNECTION_INVALID") from None
            session = CompanySession(
                connection,
                tokens=self._tokens,
                limiter=self._limiter,
                policy=self._retry,
                timeout=self._timeout,
                sleep=self._sleep,
            )
            system = QuickBooksAccountingSystem(
                session,
                self._uow_factory,
                lookups=self._lookups,
            )
            self._systems[(tenant_id, branch_id)] = (identity, system)
            return system
