"""The use cases of a tenant's QuickBooks connection (SPEC.md section 3, ConnectionService; section 4).

An admin connects the tenant's QuickBooks company through Intuit's OAuth2 code flow
(`get_authorization_url`, then `complete_authorization` with what Intuit sent back), reads it, maps
accounts (`update_settings`) and disconnects. Operators can also connect with tokens they already hold
(`connect_with_tokens`, the CLI's `qbsync connect`).

Calls to Intuit happen outside any database transaction: a slow token endpoint must not hold the
database's write lock. So the anti-forgery state is checked again when the tokens are saved, and used
once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import replace

from core.connection import ConnectionState, QuickBooksConnection, QuickBooksSettings
from core.connection_rules import (
    check_environment,
    check_required,
    check_settings_update,
    check_url,
    settings_to_change,
)
from core.domain import AuditEvent, Permission, Principal
from core.errors import FailedPreconditionError, FieldViolation, NotFoundError, ValidationError
from core.ports import Clock, IdSource, QuickBooksAuthorization, UnitOfWork, UnitOfWorkFactory
from core.service import require


class ConnectionService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        authorization: QuickBooksAuthorization,
        clock: Clock,
        ids: IdSource,
        *,
        default_environment: str = "sandbox",
        default_redirect_uri: str = "",
    ) -> None:
        """`default_environment` and `default_redirect_uri` apply when a caller leaves them empty."""
        self._uow_factory = uow_factory
        self._authorization = authorization
        self._clock = clock
        self._ids = ids
        self._default_environment = default_environment
        self._default_redirect_uri = default_redirect_uri

    # --- the OAuth2 code flow -------------------------------------------------------------------

    def get_authorization_url(self, principal: Principal, redirect_uri: str, environment: str) -> tuple[str, str]:
        """The Intuit URL the admin opens, and the anti-forgery state it carries (remembered here, so that
        only the flow this tenant started can complete)."""
        require(principal, Permission.ADMIN)
        redirect_uri = redirect_uri or self._default_redirect_uri
        environment = environment or self._default_environment
        violations = check_required(redirect_uri=redirect_uri)
        violations += check_url(redirect_uri, "redirect_uri") if redirect_uri else []
        violations += check_environment(environment)
        _raise_if_any(violations)
        state = secrets.token_urlsafe(32)
        url = self._authorization.authorization_url(environment, redirect_uri, state)
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant)
            if connection is None:
                uow.connections.save(self._blank(tenant, environment))
            elif connection.state is ConnectionState.CONNECTED and connection.environment != environment:
                # The live connection keeps working until the new flow completes, so it cannot change
                # environment under the workers' feet.
                raise FailedPreconditionError(
                    f"the tenant is connected to {connection.environment!r}: disconnect before connecting "
                    f"to {environment!r}",
                    metadata={"environment": connection.environment},
                )
            # Only the pending authorization is written: the workers may be rotating the live tokens.
            uow.connections.save_authorization_request(
                tenant, environment=environment, redirect_uri=redirect_uri, oauth_state=state
            )
            self._audit(uow, tenant, "QUICKBOOKS_AUTHORIZATION_STARTED", environment)
            uow.commit()
        return url, state

    def complete_authorization(
        self, principal: Principal, code: str, state: str, realm_id: str, redirect_uri: str
    ) -> QuickBooksConnection:
        """Exchanges Intuit's code for tokens and saves the connection CONNECTED."""
        require(principal, Permission.ADMIN)
        _raise_if_any(check_required(code=code, state=state, realm_id=realm_id))
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            pending = self._pending(uow.connections.get(tenant), state, redirect_uri)
        grant = self._authorization.exchange_code(pending.environment, pending.redirect_uri, code)
        with self._uow_factory() as uow:
            # Checked again: another completion may have used the state while we were at Intuit.
            connection = self._pending(uow.connections.get(tenant), state, redirect_uri)
            if connection.realm_id and connection.realm_id != realm_id:
                # Account ids belong to one company: another company's would point at the wrong accounts.
                connection.settings = QuickBooksSettings()
                connection.company_name = ""
            connection.realm_id = realm_id
            connection.client_id = self._authorization.client_id
            connection.client_secret = self._authorization.client_secret
            connection.access_token = grant.access_token
            connection.refresh_token = grant.refresh_token
            connection.access_token_expires = grant.access_token_expires
            connection.refresh_token_expires = grant.refresh_token_expires
            connection.access_token_lifetime = grant.access_token_lifetime
            connection.state = ConnectionState.CONNECTED
            connection.connect_time = self._clock.now()
            connection.last_error = ""
            connection.oauth_state = ""  # one use only
            uow.connections.save(connection)
            self._audit(uow, tenant, "QUICKBOOKS_CONNECTED", f"realm {realm_id}")
            uow.commit()
        return connection

    # --- reading and changing -------------------------------------------------------------------

    def get_connection(self, principal: Principal) -> QuickBooksConnection:
        require(principal, Permission.ADMIN)
        with self._uow_factory() as uow:
            connection = uow.connections.get(principal.tenant_id)
        if connection is None:
            raise NotFoundError("this tenant has no QuickBooks connection")
        return connection

    def update_settings(
        self, principal: Principal, settings: QuickBooksSettings, mask: list[str]
    ) -> QuickBooksSettings:
        """Changes the settings named in `mask` (all that are set in `settings` when it is empty).

        Settings may be made before the company is connected: they are kept on a DISCONNECTED record.
        """
        require(principal, Permission.ADMIN)
        fields = settings_to_change(settings, mask)
        violations = check_settings_update(settings, mask)
        _raise_if_any(violations)
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant)
            if connection is None:
                connection = self._blank(tenant, self._default_environment)
                uow.connections.save(connection)
            changes = {name: getattr(settings, name) for name in fields}
            connection.settings = replace(connection.settings, **changes)
            uow.connections.save_settings(tenant, connection.settings)  # never the tokens read with them
            self._audit(uow, tenant, "QUICKBOOKS_SETTINGS_UPDATED", ", ".join(sorted(set(fields))))
            uow.commit()
        return connection.settings

    def disconnect(self, principal: Principal) -> QuickBooksConnection:
        """Revokes the tokens at Intuit (best effort) and forgets every secret; settings are kept."""
        require(principal, Permission.ADMIN)
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant)
        if connection is None:
            raise NotFoundError("this tenant has no QuickBooks connection")
        if connection.refresh_token or connection.access_token:
            self._authorization.revoke(connection)
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant) or connection
            connection.state = ConnectionState.DISCONNECTED
            connection.client_secret = ""
            connection.refresh_token = ""
            connection.access_token = ""
            connection.access_token_expires = None
            connection.refresh_token_expires = None
            connection.oauth_state = ""
            uow.connections.save(connection)
            self._audit(uow, tenant, "QUICKBOOKS_DISCONNECTED", "")
            uow.commit()
        return connection

    # --- operators --------------------------------------------------------------------------------

    def connect_with_tokens(
        self,
        tenant_id: str,
        realm_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: str = "",
        environment: str = "sandbox",
        api_base_url: str = "",
    ) -> QuickBooksConnection:
        """Stores a connection from tokens obtained elsewhere (Intuit's OAuth Playground, the emulator);
        creates the tenant if it is new. Without an access token, the first sync refreshes one."""
        violations = check_required(
            tenant=tenant_id,
            realm_id=realm_id,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
        )
        violations += check_environment(environment)
        violations += check_url(api_base_url, "api_base_url") if api_base_url else []
        _raise_if_any(violations)
        with self._uow_factory() as uow:
            uow.tenants.ensure(tenant_id)
            known = uow.connections.get(tenant_id)
            same_company = known is not None and known.realm_id == realm_id
            connection = QuickBooksConnection(
                tenant_id=tenant_id,
                realm_id=realm_id,
                environment=environment,
                client_id=client_id,
                client_secret=client_secret,
                refresh_token=refresh_token,
                access_token=access_token,
                api_base_url=api_base_url,
                state=ConnectionState.CONNECTED,
                connect_time=self._clock.now(),
                company_name=known.company_name if known is not None and same_company else "",
                settings=known.settings if known is not None and same_company else QuickBooksSettings(),
            )
            uow.connections.save(connection)
            self._audit(uow, tenant_id, "QUICKBOOKS_CONNECTED", f"realm {realm_id} (tokens given by an operator)")
            uow.commit()
        return connection

    # --- helpers ------------------------------------------------------------------------------------

    def _blank(self, tenant_id: str, environment: str) -> QuickBooksConnection:
        return QuickBooksConnection(
            tenant_id=tenant_id,
            realm_id="",
            environment=environment,
            client_id="",
            client_secret="",
            refresh_token="",
            state=ConnectionState.DISCONNECTED,
        )

    def _pending(self, connection: QuickBooksConnection | None, state: str, redirect_uri: str) -> QuickBooksConnection:
        if connection is None or not connection.oauth_state:
            raise FailedPreconditionError("no authorization is pending: call GetAuthorizationUrl first")
        # Constant time: the state is a secret an attacker might otherwise guess a character at a time.
        if not hmac.compare_digest(connection.oauth_state.encode(), state.encode()):
            raise ValidationError(
                [FieldViolation("state", "does not match the authorization this tenant started (forged or stale)")]
            )
        if redirect_uri and redirect_uri != connection.redirect_uri:
            raise ValidationError(
                [FieldViolation("redirect_uri", "differs from the one the authorization was started with")]
            )
        return connection

    def _audit(self, uow: UnitOfWork, tenant_id: str, kind: str, message: str) -> None:
        uow.audit.append(AuditEvent(tenant_id, self._clock.now(), kind, None, "", message))


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise ValidationError(violations)
