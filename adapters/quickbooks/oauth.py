"""Intuit's OAuth2 code flow through intuit-oauth's `AuthClient` (the `QuickBooksAuthorization` port).

`AuthClient` fetches the OpenID discovery document of its environment ("sandbox", "production", or a
discovery URL such as the bundled emulator's) when it is built, so one is built per call, never at
import or wiring time. It sets no HTTP timeout of its own; `_TimedAuthClient` adds one, so a hung token
endpoint cannot hang an RPC.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from core.connection import QuickBooksConnection, TokenGrant
from core.errors import AccountingUnavailableError, BookkeepingError, FailedPreconditionError, QbsyncError
from core.ports import Clock, QuickBooksAuthorization

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
AUTHORIZATION_FAILED = "QUICKBOOKS_AUTHORIZATION_FAILED"


class _TimedAuthClient(AuthClient):  # type: ignore[misc]  # intuitlib ships no type hints
    """An AuthClient whose every request (discovery, token, revoke) has a timeout."""

    def __init__(self, *args: Any, timeout_seconds: float, **kwargs: Any) -> None:
        # Set before AuthClient.__init__, which already fetches the discovery document.
        self.timeout_seconds = timeout_seconds
        super().__init__(*args, **kwargs)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_seconds)
        return super().request(method, url, *args, **kwargs)


class IntuitAuthorization(QuickBooksAuthorization):
    """qbsync's Intuit app (its client id and secret from configuration) running the code flow."""

    def __init__(
        self, client_id: str, client_secret: str, clock: Clock, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._clock = clock
        self._timeout = timeout_seconds

    def __repr__(self) -> str:  # the client secret stays out of logs
        return f"IntuitAuthorization(client_id={self.client_id!r})"

    def authorization_url(self, environment: str, redirect_uri: str, state: str) -> str:
        client = self._client(environment, redirect_uri, self.client_id, self.client_secret)
        url: str = client.get_authorization_url([Scopes.ACCOUNTING], state_token=state)
        return url

    def exchange_code(self, environment: str, redirect_uri: str, code: str) -> TokenGrant:
        client = self._client(environment, redirect_uri, self.client_id, self.client_secret)
        now = self._clock.now()
        try:
            client.get_bearer_token(code)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise AccountingUnavailableError(f"Intuit's token endpoint could not be reached: {reason}") from exc
        except AuthClientError as exc:
            # Intuit's answer names the problem (invalid_grant, redirect_uri mismatch) but never a secret.
            raise BookkeepingError(
                f"Intuit refused the authorization code (HTTP {exc.status_code}): {_intuit_error(exc)}",
                reason=AUTHORIZATION_FAILED,
            ) from exc
        if not client.access_token or not client.refresh_token:
            raise BookkeepingError("Intuit's token answer holds no tokens", reason=AUTHORIZATION_FAILED)
        expires = _after(now, client.expires_in)
        return TokenGrant(
            access_token=client.access_token,
            refresh_token=client.refresh_token,
            access_token_expires=expires or now,
            refresh_token_expires=_after(now, client.x_refresh_token_expires_in),
            access_token_lifetime=expires - now if expires is not None else None,
        )

    def revoke(self, connection: QuickBooksConnection) -> None:
        token = connection.refresh_token or connection.access_token
        if not token:
            return
        try:
            # The connection's own app: a connection made with `qbsync connect` may belong to another one.
            client = self._client(
                connection.environment,
                connection.redirect_uri,
                connection.client_id or self.client_id,
                connection.client_secret or self.client_secret,
            )
            client.revoke(token=token)
        except (AuthClientError, requests.RequestException, QbsyncError, ValueError) as exc:
            # Best effort (the port's contract): the tokens are forgotten here either way.
            log.warning(
                "could not revoke the QuickBooks tokens of tenant %s: %s", connection.tenant_id, type(exc).__name__
            )

    def _client(self, environment: str, redirect_uri: str, client_id: str, client_secret: str) -> AuthClient:
        if not client_id or not client_secret:
            raise FailedPreconditionError(
                "no Intuit app is configured: set QBSYNC_QBO_CLIENT_ID and QBSYNC_QBO_CLIENT_SECRET",
                metadata={"setting": "QBSYNC_QBO_CLIENT_ID"},
            )
        try:
            return _TimedAuthClient(client_id, client_secret, redirect_uri, environment, timeout_seconds=self._timeout)
        except requests.RequestException as exc:
            raise AccountingUnavailableError(
                f"Intuit's OAuth configuration for environment {environment!r} could not be read: {type(exc).__name__}"
            ) from exc
        except (AuthClientError, ValueError) as exc:  # an error status, or a document that is not JSON
            raise BookkeepingError(
                f"could not read Intuit's OAuth configuration for environment {environment!r}: {type(exc).__name__}",
                reason=AUTHORIZATION_FAILED,
            ) from exc


def _after(now: datetime, seconds: object) -> datetime | None:
    try:
        return now + timedelta(seconds=float(seconds)) if seconds is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _intuit_error(exc: AuthClientError) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return "no details"
    return str(body.get("error_description") or body.get("error") or "no details")
