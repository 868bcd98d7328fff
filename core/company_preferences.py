"""Reading a company's preferences from QuickBooks and recording them with its connection: its currency
(SPEC.md section 7) and how it treats sales tax (section 8), both from the one `Preferences` object QuickBooks
answers. Used when a tenant connects (ConnectionService) and, by the accept path, when a connected company's
preferences could not be read then (SyncService): one way to read and record them, whoever asks.

The sales tax rule at accept time lives here too: a job charging tax for a company that has not set sales
tax up in QuickBooks is refused, since QuickBooks would book no tax (or refuse the invoice) and the
customer's payment would no longer match the invoice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from core.company_tax import SalesTax
from core.connection import ClassTracking, QuickBooksConnection
from core.currency import CompanyCurrency
from core.domain import AuditEvent, AuditKind
from core.errors import AccountingError, FieldViolation

if TYPE_CHECKING:  # the ports name CompanyPreferences: imported for annotations only, to avoid the cycle
    from core.ports import AccountingSystems, Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)

SALES_TAX_NOT_SET_UP = "SALES_TAX_NOT_SET_UP"


@dataclass(frozen=True)
class CompanyPreferences:
    """What a QuickBooks company's `Preferences` say that qbsync needs: `CurrencyPrefs`, `TaxPrefs`, and
    (SPEC §10) `AccountingInfoPrefs` (ClassTrackingPerTxn, ClassTrackingPerTxnLine, TrackDepartments) and
    `SalesFormsPrefs.CustomTxnNumbers`."""

    currency: CompanyCurrency
    sales_tax: SalesTax
    class_tracking: ClassTracking = ClassTracking.OFF
    track_departments: bool = False
    custom_txn_numbers: bool = True


def read_company_preferences(
    tenant_id: str, accounting: AccountingSystems, uow_factory: UnitOfWorkFactory, clock: Clock, *, branch_id: str = ""
) -> CompanyPreferences | None:
    """Reads the company's Preferences from QuickBooks and stores what qbsync keeps of them with the tenant's
    connection (only those facts are written: a token refreshed meanwhile is kept), with an audit event for
    each fact that changed (QUICKBOOKS_CURRENCY_READ, QUICKBOOKS_SALES_TAX_READ). None, nothing stored and a
    warning logged, when QuickBooks could not be read or the tenant has no connection. QuickBooks is called
    outside any transaction. `branch_id`: the connection's ("" the default one), read and written exactly."""
    try:
        preferences = accounting.for_tenant(tenant_id, branch_id=branch_id).company_preferences()
    except AccountingError as error:
        log.warning("could not read the QuickBooks preferences of tenant %s (%s): %s", tenant_id, error.reason, error)
        return None
    with uow_factory() as uow:
        known = uow.connections.get(tenant_id, branch_id=branch_id)
        if known is None:
            return None
        currency, sales_tax = preferences.currency, preferences.sales_tax
        if (
            known.company_currency == currency
            and known.sales_tax is sales_tax
            and _tracking(known) == _tracking(preferences)
        ):
            return preferences
        uow.connections.save_company_preferences(tenant_id, preferences, branch_id=branch_id)
        now = clock.now()
        if known.company_currency != currency:
            mode = "on" if currency.multicurrency else "off"
            message = f"home currency {currency.home}, multicurrency {mode}"
            uow.audit.append(AuditEvent(tenant_id, now, AuditKind.QUICKBOOKS_CURRENCY_READ, None, "", message))
        if known.sales_tax is not sales_tax:
            was = "not read" if known.sales_tax is None else known.sales_tax.value
            message = f"sales tax {sales_tax.value} (was {was})"
            uow.audit.append(AuditEvent(tenant_id, now, AuditKind.QUICKBOOKS_SALES_TAX_READ, None, "", message))
        if _tracking(known) != _tracking(preferences):
            classes, departments, numbers = _tracking(preferences)
            message = (
                f"{_company(branch_id)}class tracking {classes.value}, location tracking "
                f"{'on' if departments else 'off'}, custom transaction numbers {'on' if numbers else 'off'}"
            )
            uow.audit.append(AuditEvent(tenant_id, now, AuditKind.QUICKBOOKS_PREFERENCES_READ, None, "", message))
        uow.commit()
    return preferences


def _tracking(source: QuickBooksConnection | CompanyPreferences) -> tuple[ClassTracking, bool, bool]:
    """What SPEC §10 reads of the company's preferences."""
    return source.class_tracking, source.track_departments, source.custom_txn_numbers


def _company(branch_id: str) -> str:
    return f"branch {branch_id}: " if branch_id else ""


def sales_tax_violations(tax: Decimal, sales_tax: SalesTax | None) -> list[FieldViolation]:
    """`job.tax` refused (reason SALES_TAX_NOT_SET_UP) when the job charges tax and the company has not set
    sales tax up in QuickBooks. An unknown mode (None: never read) refuses nothing: qbsync cannot tell, and
    the check after the invoice write (INVOICE_TOTAL_MISMATCH) still keeps a wrong total from passing."""
    if tax <= 0 or sales_tax is not SalesTax.NONE:
        return []
    return [
        FieldViolation(
            "job.tax",
            f"the job charges {tax} of sales tax, but sales tax is not set up in the QuickBooks company: "
            "ask the bookkeeper to set up sales tax in QuickBooks (Taxes, then Set up sales tax) and send the "
            "job again, or send it without tax",
            reason=SALES_TAX_NOT_SET_UP,
        )
    ]
