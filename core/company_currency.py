"""Reading a company's currency preferences from QuickBooks and recording them with its connection (SPEC.md
section 7). Used when a tenant connects (ConnectionService) and, by the accept path, when a connected company's
preferences could not be read then (SyncService): one way to read and record them, whoever asks."""

from __future__ import annotations

import logging

from core.currency import CompanyCurrency
from core.domain import AuditEvent, AuditKind
from core.errors import AccountingError
from core.ports import AccountingSystems, Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)


def read_company_currency(
    tenant_id: str, accounting: AccountingSystems, uow_factory: UnitOfWorkFactory, clock: Clock
) -> CompanyCurrency | None:
    """Reads the company's CurrencyPrefs from QuickBooks and stores them with the tenant's connection (only
    those two facts are written: a token refreshed meanwhile is kept), with an audit event when they changed.
    None, nothing stored and a warning logged, when QuickBooks could not be read or the tenant has no
    connection. QuickBooks is called outside any transaction."""
    try:
        currency = accounting.for_tenant(tenant_id).company_currency()
    except AccountingError as error:
        log.warning("could not read the QuickBooks preferences of tenant %s (%s): %s", tenant_id, error.reason, error)
        return None
    with uow_factory() as uow:
        known = uow.connections.get(tenant_id)
        if known is None:
            return None
        if known.company_currency != currency:
            uow.connections.save_company_currency(tenant_id, currency)
            mode = "on" if currency.multicurrency else "off"
            message = f"home currency {currency.home}, multicurrency {mode}"
            uow.audit.append(AuditEvent(tenant_id, clock.now(), AuditKind.QUICKBOOKS_CURRENCY_READ, None, "", message))
            uow.commit()
    return currency
