"""The company's OAuth tokens: refreshed near expiry or after a 401, the rotated refresh token saved at once.

Intuit rotates the refresh token on every refresh; the old one may stop working at once. So the new pair is
committed before anything else happens, and refreshes of one company are serialised (a per-tenant
`CompanyLock`, then a re-read of the stored connection: another thread or process may have refreshed
already), so that two workers never race each other into `invalid_grant`. On PostgreSQL the lock is held
across every process of the deployment, elsewhere across the threads of this one. The pair is stored with
`ConnectionRepository.save_tokens`, which changes the tokens only (a settings write committed meanwhile
stands, and no other writer puts old tokens back), and only over the refresh token that was used (a
disconnection or reconnection made meanwhile stands). Tokens never appear in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from intuitlib.client import AuthClient
from intuitlib.exceptions import AuthClientError

from adapters.quickbooks.qbo import metrics
from core.connection import ConnectionState, QuickBooksConnection, TokenGrant
from core.domain import COMPANY_SEPARATOR
from core.errors import AccountingUnavailableError, ReconnectRequiredError
from core.ports import Clock, CompanyLock, UnitOfWorkFactory

log = logging.getLogger(__name__)

RECONNECT_MESSAGE = "QuickBooks refused qbsync's authorization for this company: reconnect it"
NOT_CONNECTED_MESSAGE = "QuickBooks is not connected for this company: connect it first"


class TimeoutAuthClient(AuthClient):
    """intuit-oauth's client with a timeout on every call (it sends none, so a hung token endpoint would
    block a worker forever)."""

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(*args, **kwargs)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


AuthClientFactory = Callable[[QuickBooksConnection], AuthClient]


def refresh_lock_key(tenant_id: str, branch_id: str = "") -> str:
    """The `CompanyLock` key that serialises the token refreshes of one connection: the tenant's default one
    (`branch_id` "", the key it always had) or a branch's, which has tokens of its own (SPEC §10). The
    separator cannot occur in an id (core/text.py refuses control characters), so no two connections share
    a key."""
    if not branch_id:
        return f"qbo-token-refresh/{tenant_id}"
    return f"qbo-token-refresh/{tenant_id}{COMPANY_SEPARATOR}{branch_id}"


class TokenKeeper:
    """Keeps each tenant's access token fresh; shared by all of a process' clients."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        *,
        company_lock: CompanyLock,
        timeout: float = 30.0,
        auth_client_factory: AuthClientFactory | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._timeout = timeout
        self._auth_client_factory = auth_client_factory or self._auth_client
        self._company_lock = company_lock

    def fresh(self, connection: QuickBooksConnection, *, rejected_token: str | None = None) -> QuickBooksConnection:
        """The connection with a usable access token: `connection` itself when its token is not about to
        expire and was not `rejected_token` (refused with a 401), else refreshed."""
        if rejected_token is None and not connection.needs_refresh(self._clock.now()):
            return connection
        with self._company_lock.hold(refresh_lock_key(connection.tenant_id, connection.branch_id)):
            stored = self._load(connection.tenant_id, connection.branch_id)
            if stored.state is not ConnectionState.CONNECTED:
                raise ReconnectRequiredError(stored.last_error or RECONNECT_MESSAGE)
            refreshed_elsewhere = stored.access_token and stored.access_token != (
                rejected_token if rejected_token is not None else connection.access_token
            )
            if refreshed_elsewhere and not stored.needs_refresh(self._clock.now()):
                return stored
            return self._refresh(stored)

    def _refresh(self, stored: QuickBooksConnection) -> QuickBooksConnection:
        who = {"tenant": stored.tenant_id, "branch": stored.branch_id, "realm_id": stored.realm_id}
        try:
            client = self._auth_client_factory(stored)
            client.refresh(refresh_token=stored.refresh_token)
        except AuthClientError as exc:
            if _is_refused(exc):
                log.warning(
                    "quickbooks refused the token refresh: the company must be reconnected",
                    extra={**who, "status": exc.status_code, "error": _oauth_error(exc)},
                )
                metrics.QBO_TOKEN_REFRESHES.labels("refused").inc()
                self._mark_reconnect_required(stored, _oauth_error(exc))
                raise ReconnectRequiredError(RECONNECT_MESSAGE) from None
            metrics.QBO_TOKEN_REFRESHES.labels("failed").inc()
            log.warning("quickbooks token refresh failed", extra={**who, "status": exc.status_code, "will_retry": True})
            raise AccountingUnavailableError(
                f"QuickBooks' token service answered HTTP {exc.status_code}; will retry"
            ) from None
        except requests.RequestException as exc:
            metrics.QBO_TOKEN_REFRESHES.labels("failed").inc()
            log.warning(
                "quickbooks token refresh failed",
                extra={**who, "status": None, "error": type(exc).__name__, "will_retry": True},
            )
            raise AccountingUnavailableError(
                f"QuickBooks' token service could not be reached ({type(exc).__name__}); will retry"
            ) from None
        metrics.QBO_TOKEN_REFRESHES.labels("refreshed").inc()
        now = self._clock.now()
        lifetime = timedelta(seconds=float(client.expires_in or 3600))
        grant = TokenGrant(
            access_token=client.access_token,
            # Intuit may answer without a new refresh token; the old one then stays valid.
            refresh_token=client.refresh_token or stored.refresh_token,
            access_token_expires=now + lifetime,
            refresh_token_expires=(
                now + timedelta(seconds=int(client.x_refresh_token_expires_in))
                if client.x_refresh_token_expires_in
                else stored.refresh_token_expires
            ),
            access_token_lifetime=lifetime,
        )
        with self._uow_factory() as uow:
            saved = uow.connections.save_tokens(
                stored.tenant_id, grant, replacing=stored.refresh_token, branch_id=stored.branch_id
            )
            uow.commit()
        log.info(
            "quickbooks tokens refreshed",
            extra={**who, "access_token_lifetime_s": lifetime.total_seconds(), "stored": saved},
        )
        if not saved:
            # Disconnected or connected again while we were at Intuit: what is stored now is newer.
            current = self._load(stored.tenant_id, stored.branch_id)
            if current.state is not ConnectionState.CONNECTED:
                raise ReconnectRequiredError(current.last_error or RECONNECT_MESSAGE)
            return current
        return stored.with_grant(grant)

    def _mark_reconnect_required(self, stored: QuickBooksConnection, oauth_error: str) -> None:
        with self._uow_factory() as uow:
            uow.connections.mark_reconnect_required(
                stored.tenant_id,
                f"{RECONNECT_MESSAGE} (Intuit said {oauth_error})",
                refused_token=stored.refresh_token,
                branch_id=stored.branch_id,
            )
            uow.commit()

    def _load(self, tenant_id: str, branch_id: str) -> QuickBooksConnection:
        """The connection as stored now: exactly this one (a branch's never falls back to the default's, whose
        tokens are another company's)."""
        with self._uow_factory() as uow:
            stored = uow.connections.get(tenant_id, branch_id=branch_id)
        if stored is None or stored.state is ConnectionState.DISCONNECTED:
            raise ReconnectRequiredError(NOT_CONNECTED_MESSAGE)
        return stored

    def _auth_client(self, connection: QuickBooksConnection) -> AuthClient:
        # The constructor fetches the discovery document (one GET): refreshes are rare (hourly), so it is
        # not worth caching a client that holds tokens.
        return TimeoutAuthClient(
            connection.client_id,
            connection.client_secret,
            connection.redirect_uri or "http://localhost/callback",
            connection.environment,
            timeout=self._timeout,
        )


def _oauth_error(exc: AuthClientError) -> str:
    try:
        return str(exc.response.json().get("error", f"HTTP {exc.status_code}"))
    except (ValueError, AttributeError):
        return f"HTTP {exc.status_code}"


def _is_refused(exc: AuthClientError) -> bool:
    """invalid_grant (dead or rotated-away refresh token) or invalid_client (the app's keys changed): only a
    person reconnecting helps. Other failures (5xx, a discovery hiccup) are worth retrying."""
    return exc.status_code in (400, 401) and _oauth_error(exc) in ("invalid_grant", "invalid_client")
