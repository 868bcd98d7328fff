"""The use cases of a tenant's QuickBooks connection (SPEC.md section 3, ConnectionService; section 4).

An admin connects the tenant's QuickBooks company through Intuit's OAuth2 code flow
(`get_authorization_url`, then `complete_authorization` with what Intuit sent back), reads it, maps
accounts (`update_settings`, each mapping checked against the company) and disconnects. Operators can
also connect with tokens they already hold (`connect_with_tokens`, the CLI's `qbsync connect`).

Calls to Intuit and to the company happen outside any database transaction: a slow token endpoint or
QuickBooks API must not hold the database's write lock. So the anti-forgery state is checked again when
the tokens are saved, and used once; and settings checked against a company are stored only if the
same company is still connected.

Every connect reads the company's preferences (home currency and multicurrency, SPEC.md section 7; the
sales tax mode, section 8) right after the tokens are saved, and stores them with the connection: the
currency and sales tax rules at accept time (core/currency.py, core/company_preferences.py) need them.
QuickBooks being unreachable then does not undo the connect: the tokens are kept and the preferences stay
unread, to be read by the first request that needs them (SyncService) or by `refresh_company_preferences`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from core.branch_tracking import CompanyTracking
from core.company_lists import ListEntry, ListKind
from core.company_lookups import setting_checked
from core.company_preferences import CompanyPreferences, read_company_preferences
from core.connection import (
    BranchMapping,
    ClassTracking,
    ConnectionState,
    InvoiceNumbering,
    QuickBooksConnection,
    QuickBooksSettings,
)
from core.connection_rules import (
    ListSettingToCheck,
    check_environment,
    check_realm_id,
    check_required,
    check_settings_update,
    check_url,
    list_settings_to_check,
    settings_to_change,
)
from core.domain import AuditEvent, AuditKind, Permission, Principal
from core.errors import FailedPreconditionError, FieldViolation, NotFoundError, ValidationError, merge_violations
from core.ports import (
    AccountingSystems,
    Clock,
    IdSource,
    QuickBooksAuthorization,
    UnitOfWork,
    UnitOfWorkFactory,
)
from core.service import require
from core.validation import text_id_violations

COMPANY_ALREADY_CONNECTED = "COMPANY_ALREADY_CONNECTED"


class ConnectionService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        authorization: QuickBooksAuthorization,
        clock: Clock,
        ids: IdSource,
        *,
        accounting: AccountingSystems,
        default_environment: str = "sandbox",
        default_redirect_uri: str = "",
    ) -> None:
        """`accounting` is each tenant's company: where settings are checked and its preferences
        read; `default_environment` and
        `default_redirect_uri` apply when a caller leaves them empty."""
        self._uow_factory = uow_factory
        self._accounting = accounting
        self._authorization = authorization
        self._clock = clock
        self._ids = ids
        self._default_environment = default_environment
        self._default_redirect_uri = default_redirect_uri

    # --- the OAuth2 code flow -------------------------------------------------------------------

    def get_authorization_url(
        self,
        principal: Principal,
        redirect_uri: str,
        environment: str,
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> tuple[str, str]:
        """The Intuit URL the admin opens, and the anti-forgery state it carries (remembered here, so that
        only the flow this tenant started can complete).

        `conversion_violations` (here and in update_settings): what the calling adapter could not convert,
        reported with this use case's own findings in one ValidationError after the permission check, as
        SyncService does. `branch_id` (every use case here): the connection meant, "" the tenant's default one
        (SPEC §10)."""
        require(principal, Permission.ADMIN)
        redirect_uri = redirect_uri or self._default_redirect_uri
        environment = environment or self._default_environment
        violations = text_id_violations(branch_id, "branch_id", required=False)
        violations += check_required(redirect_uri=redirect_uri)
        violations += check_url(redirect_uri, "redirect_uri") if redirect_uri else []
        violations += check_environment(environment)
        _raise_if_any(merge_violations(conversion_violations, violations))
        state = secrets.token_urlsafe(32)
        url = self._authorization.authorization_url(environment, redirect_uri, state)
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant, branch_id=branch_id)
            if connection is None:
                uow.connections.save(self._blank(tenant, environment, branch_id))
            elif connection.state is ConnectionState.CONNECTED and connection.environment != environment:
                # The live connection keeps working until the new flow completes, so it cannot change
                # environment under the workers' feet.
                raise FailedPreconditionError(
                    f"{_whose(branch_id)} is connected to {connection.environment!r}: disconnect before connecting "
                    f"to {environment!r}",
                    metadata={"environment": connection.environment},
                )
            # Only the pending authorization is written: the workers may be rotating the live tokens.
            uow.connections.save_authorization_request(
                tenant, environment=environment, redirect_uri=redirect_uri, oauth_state=state, branch_id=branch_id
            )
            self._audit(uow, tenant, AuditKind.QUICKBOOKS_AUTHORIZATION_STARTED, _for(branch_id) + environment)
            uow.commit()
        return url, state

    def complete_authorization(
        self, principal: Principal, code: str, state: str, realm_id: str, redirect_uri: str, *, branch_id: str = ""
    ) -> QuickBooksConnection:
        """Exchanges Intuit's code for tokens and saves the connection CONNECTED."""
        require(principal, Permission.ADMIN)
        violations = check_required(code=code, state=state, realm_id=realm_id) + check_realm_id(realm_id)
        _raise_if_any(violations + text_id_violations(branch_id, "branch_id", required=False))
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            pending = self._pending(uow.connections.get(tenant, branch_id=branch_id), state, redirect_uri)
            _refuse_a_company_taken(uow, tenant, branch_id, realm_id)
        grant = self._authorization.exchange_code(pending.environment, pending.redirect_uri, code)
        with self._uow_factory() as uow:
            # Checked again: another completion may have used the state while we were at Intuit.
            connection = self._pending(uow.connections.get(tenant, branch_id=branch_id), state, redirect_uri)
            _refuse_a_company_taken(uow, tenant, branch_id, realm_id)
            if connection.realm_id and connection.realm_id != realm_id:
                # Account ids belong to one company: another company's would point at the wrong accounts.
                connection.settings = QuickBooksSettings()
                connection.company_name = ""
                connection.home_currency, connection.multicurrency = "", False
                connection.sales_tax = None
                connection.class_tracking, connection.track_departments = ClassTracking.OFF, False
                connection.custom_txn_numbers = True
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
            self._audit(uow, tenant, AuditKind.QUICKBOOKS_CONNECTED, f"{_for(branch_id)}realm {realm_id}")
            uow.commit()
        return self._with_company_preferences(connection)

    # --- reading and changing -------------------------------------------------------------------

    def get_connection(self, principal: Principal, *, branch_id: str = "") -> QuickBooksConnection:
        require(principal, Permission.ADMIN)
        _raise_if_any(text_id_violations(branch_id, "branch_id", required=False))
        with self._uow_factory() as uow:
            connection = uow.connections.get(principal.tenant_id, branch_id=branch_id)
        if connection is None:
            raise NotFoundError(f"{_whose(branch_id)} has no QuickBooks connection")
        return connection

    def list_connections(self, principal: Principal) -> list[QuickBooksConnection]:
        """Every connection of the tenant: the default one first, then one per branch with its own company."""
        require(principal, Permission.ADMIN)
        with self._uow_factory.read_only() as uow:
            return uow.connections.of_tenant(principal.tenant_id)

    def update_settings(
        self,
        principal: Principal,
        settings: QuickBooksSettings,
        mask: list[str],
        *,
        branch_id: str = "",
        conversion_violations: Sequence[FieldViolation] = (),
    ) -> QuickBooksSettings:
        """Changes the settings named in `mask` (all that are set in `settings` when it is empty).

        Each mapping to an account, item, payment method or tax code, by id or by name, is first looked up in the
        company and must exist, be active and be of the type its use needs (core.company_lists); it is
        stored with QuickBooks' id and name, so a name alone is resolved, never ignored. Any bad one is a
        ValidationError naming each, and nothing is stored. Such a mapping needs the company connected
        (FailedPreconditionError otherwise): an id that cannot be checked is not taken on trust, and would
        only fail the first sync. The DocNumber prefix, and a mapping cleared back to its default, need no
        company, so they may be set before connecting: they are kept on a DISCONNECTED record.
        """
        require(principal, Permission.ADMIN)
        fields = settings_to_change(settings, mask)
        violations = text_id_violations(branch_id, "branch_id", required=False) + check_settings_update(settings, mask)
        _raise_if_any(merge_violations(conversion_violations, violations))
        tenant = principal.tenant_id
        if "invoice_numbering" in fields and settings.invoice_numbering is InvoiceNumbering.QUICKBOOKS:
            _raise_if_any(self._quickbooks_numbering_violations(tenant, branch_id))
        realm_id, found = self._look_up(tenant, list_settings_to_check(settings, fields), branch_id)
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant, branch_id=branch_id)
            if connection is None:
                connection = self._blank(tenant, self._default_environment, branch_id)
                uow.connections.save(connection)
            if found and (connection.state is not ConnectionState.CONNECTED or connection.realm_id != realm_id):
                # Ids belong to one company: those just checked may not exist in the one connected now.
                raise FailedPreconditionError(
                    "the QuickBooks connection changed while the settings were being checked: try again"
                )
            changes = {name: getattr(settings, name) for name in fields}
            connection.settings = replace(connection.settings, **_resolved(changes, found))
            uow.connections.save_settings(tenant, connection.settings, branch_id=branch_id)  # never the tokens
            # Just checked in the company: the first sync need not read them again (core/company_lookups.py).
            now = self._clock.now()
            checked = [
                setting_checked(realm_id, item.setting, entry.ref, now)
                for item, entry in found
                if not item.method and item.mapping is None
            ]
            uow.company_lookups.save(tenant, checked, branch_id=branch_id)
            self._audit(uow, tenant, AuditKind.QUICKBOOKS_SETTINGS_UPDATED, ", ".join(sorted(set(fields))))
            uow.commit()
        return connection.settings

    def _look_up(
        self, tenant_id: str, wanted: list[ListSettingToCheck], branch_id: str
    ) -> tuple[str, list[tuple[ListSettingToCheck, ListEntry]]]:
        """What each mapping points to in the tenant's company, and that company's realm. Called outside
        any transaction: these are reads of QuickBooks. Raises ValidationError naming every mapping that
        cannot be used."""
        if not wanted:
            return "", []
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant_id, branch_id=branch_id)
        if connection is None or connection.state is not ConnectionState.CONNECTED:
            raise FailedPreconditionError(
                "connect the QuickBooks company first: "
                f"{', '.join(item.field for item in wanted)} must be checked against it. "
                "(Clearing a setting, or the DocNumber prefix, needs no connection.)",
                metadata={"connection_state": connection.state.value if connection else "NONE"},
            )
        company = self._accounting.for_tenant(tenant_id, connection, branch_id=branch_id)
        found: list[tuple[ListSettingToCheck, ListEntry]] = []
        violations = self._tracking_violations(connection, wanted)
        for item in wanted:
            entry = company.find_list_entry(item.rule.kind, item.ref)
            problem = item.rule.problem(item.ref, entry)
            if problem is not None or entry is None:
                violations.append(FieldViolation(item.field, problem or ""))
            else:
                found.append((item, entry))
        _raise_if_any(violations)
        return connection.realm_id, found

    def disconnect(self, principal: Principal, *, branch_id: str = "") -> QuickBooksConnection:
        """Revokes the tokens at Intuit (best effort) and forgets every secret; settings are kept. A branch's
        connection stays, DISCONNECTED: its syncs fail until it is connected again, never going to another
        company meanwhile."""
        require(principal, Permission.ADMIN)
        _raise_if_any(text_id_violations(branch_id, "branch_id", required=False))
        tenant = principal.tenant_id
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant, branch_id=branch_id)
        if connection is None:
            raise NotFoundError(f"{_whose(branch_id)} has no QuickBooks connection")
        if connection.refresh_token or connection.access_token:
            self._authorization.revoke(connection)
        with self._uow_factory() as uow:
            connection = uow.connections.get(tenant, branch_id=branch_id) or connection
            connection.state = ConnectionState.DISCONNECTED
            connection.client_secret = ""
            connection.refresh_token = ""
            connection.access_token = ""
            connection.access_token_expires = None
            connection.refresh_token_expires = None
            connection.oauth_state = ""
            uow.connections.save(connection)
            self._audit(uow, tenant, AuditKind.QUICKBOOKS_DISCONNECTED, _for(branch_id).rstrip(": "))
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
        branch_id: str = "",
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
        violations += check_realm_id(realm_id)
        violations += check_environment(environment)
        violations += check_url(api_base_url, "api_base_url") if api_base_url else []
        violations += text_id_violations(branch_id, "branch", required=False)
        _raise_if_any(violations)
        with self._uow_factory() as uow:
            uow.tenants.ensure(tenant_id)
            _refuse_a_company_taken(uow, tenant_id, branch_id, realm_id)
            known = uow.connections.get(tenant_id, branch_id=branch_id)
            same_company = known is not None and known.realm_id == realm_id
            connection = QuickBooksConnection(
                tenant_id=tenant_id,
                branch_id=branch_id,
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
                home_currency=known.home_currency if known is not None and same_company else "",
                multicurrency=known.multicurrency if known is not None and same_company else False,
                sales_tax=known.sales_tax if known is not None and same_company else None,
                class_tracking=known.class_tracking if known is not None and same_company else ClassTracking.OFF,
                track_departments=known.track_departments if known is not None and same_company else False,
                custom_txn_numbers=known.custom_txn_numbers if known is not None and same_company else True,
                settings=known.settings if known is not None and same_company else QuickBooksSettings(),
            )
            uow.connections.save(connection)
            self._audit(
                uow,
                tenant_id,
                AuditKind.QUICKBOOKS_CONNECTED,
                f"{_for(branch_id)}realm {realm_id} (tokens given by an operator)",
            )
            uow.commit()
        return self._with_company_preferences(connection)

    def refresh_company_preferences(self, tenant_id: str, branch_id: str = "") -> CompanyPreferences | None:
        """Reads the company's Preferences again and stores them (see `read_company_preferences`); None when
        QuickBooks could not be read. For after the currency or sales tax settings were changed in QuickBooks."""
        return read_company_preferences(
            tenant_id, self._accounting, self._uow_factory, self._clock, branch_id=branch_id
        )

    # --- helpers ------------------------------------------------------------------------------------

    def _with_company_preferences(self, connection: QuickBooksConnection) -> QuickBooksConnection:
        preferences = self.refresh_company_preferences(connection.tenant_id, connection.branch_id)
        if preferences is None:
            return connection
        currency = preferences.currency
        return replace(
            connection,
            home_currency=currency.home,
            multicurrency=currency.multicurrency,
            sales_tax=preferences.sales_tax,
            class_tracking=preferences.class_tracking,
            track_departments=preferences.track_departments,
            custom_txn_numbers=preferences.custom_txn_numbers,
        )

    def _quickbooks_numbering_violations(self, tenant_id: str, branch_id: str) -> list[FieldViolation]:
        """QuickBooks numbers an invoice sent without a DocNumber only while the company's custom transaction
        numbers are off; with them on it leaves the invoice unnumbered, which no bookkeeper wants. Judged by the
        preferences read again when the stored ones say on (turned off since?); an unconnected company is not
        judged (it is checked when it connects: the setting then follows what it says)."""
        with self._uow_factory.read_only() as uow:
            connection = uow.connections.get(tenant_id, branch_id=branch_id)
        if connection is None or connection.state is not ConnectionState.CONNECTED or not connection.custom_txn_numbers:
            return []
        preferences = self.refresh_company_preferences(tenant_id, branch_id)
        if preferences is not None and not preferences.custom_txn_numbers:
            return []
        return [
            FieldViolation(
                "settings.invoice_numbering",
                "QuickBooks numbers invoices only when the company's custom transaction numbers are off (Settings, "
                "Account and settings, Sales, Custom transaction numbers): turn them off there first, or keep CRM",
            )
        ]

    def _tracking_violations(
        self, connection: QuickBooksConnection, wanted: list[ListSettingToCheck]
    ) -> list[FieldViolation]:
        """A branch mapping's class needs class tracking on in the company, its location location tracking
        (SPEC §10): judged by the preferences read again when the stored ones say no (just turned on?)."""
        mappings = [item for item in wanted if item.mapping is not None]
        if not mappings:
            return []
        company = CompanyTracking.of(connection)
        if any(company.problems(_only(item)) for item in mappings):
            preferences = self.refresh_company_preferences(connection.tenant_id, connection.branch_id)
            company = CompanyTracking.of(preferences) if preferences is not None else company
        found = [(item, company.problems(_only(item))) for item in mappings]
        return [FieldViolation(item.field, "; ".join(problems)) for item, problems in found if problems]

    def _blank(self, tenant_id: str, environment: str, branch_id: str = "") -> QuickBooksConnection:
        return QuickBooksConnection(
            tenant_id=tenant_id,
            branch_id=branch_id,
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

    def _audit(self, uow: UnitOfWork, tenant_id: str, kind: AuditKind, message: str) -> None:
        uow.audit.append(AuditEvent(tenant_id, self._clock.now(), kind, None, "", message))


def _resolved(changes: dict[str, Any], found: list[tuple[ListSettingToCheck, ListEntry]]) -> dict[str, Any]:
    """`changes` with each mapping replaced by what QuickBooks holds: its Id and its current name."""
    resolved = dict(changes)
    if "payment_methods" in resolved:
        resolved["payment_methods"] = dict(resolved["payment_methods"])
    mappings = list(resolved.get("branch_mappings", ()))
    for item, entry in found:
        if item.mapping is not None:
            part = "class_ref" if item.rule.kind is ListKind.CLASS else "department_ref"
            mappings[item.mapping] = replace(mappings[item.mapping], **{part: entry.ref})
        elif item.method is None:
            resolved[item.setting] = entry.ref
        else:
            resolved["payment_methods"][item.method] = entry.ref
    if "branch_mappings" in resolved:
        resolved["branch_mappings"] = tuple(mappings)
    return resolved


def _only(item: ListSettingToCheck) -> BranchMapping:
    """A mapping naming just `item`'s class or location: what tracking it needs."""
    if item.rule.kind is ListKind.CLASS:
        return BranchMapping("", class_ref=item.ref)
    return BranchMapping("", department_ref=item.ref)


def _refuse_a_company_taken(uow: UnitOfWork, tenant_id: str, branch_id: str, realm_id: str) -> None:
    """One connection per company: a branch that syncs to a company another connection of the tenant has
    should have no connection of its own (it would split the company's customer links and limits' owner).
    Raises: `FailedPreconditionError` (reason COMPANY_ALREADY_CONNECTED) naming the other connection."""
    for other in uow.connections.of_tenant(tenant_id):
        if (
            other.branch_id != branch_id
            and other.realm_id == realm_id
            and other.state is not ConnectionState.DISCONNECTED
        ):
            raise FailedPreconditionError(
                f"QuickBooks company {realm_id} is already {_whose(other.branch_id)}'s: a branch that books into "
                "the default company needs no connection of its own (branch mappings give it a class and a "
                "location there)",
                metadata={"branch_id": other.branch_id},
                reason=COMPANY_ALREADY_CONNECTED,
            )


def _whose(branch_id: str) -> str:
    return f"branch {branch_id!r}" if branch_id else "the tenant's default connection"


def _for(branch_id: str) -> str:
    """An audit message's prefix naming the branch (none for the default connection)."""
    return f"branch {branch_id}: " if branch_id else ""


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise ValidationError(violations)
