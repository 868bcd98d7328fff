"""How a QuickBooks company treats sales tax (SPEC §8; QUICKBOOKS.md "Sales tax"), read from its
Preferences.TaxPrefs when a tenant connects and stored with the connection."""

from __future__ import annotations

import enum


class SalesTax(enum.Enum):
    # PartnerTaxEnabled: automated sales tax (every US company since Nov 2017). QuickBooks computes tax on
    # TAX lines from the addresses unless the invoice carries TxnTaxDetail.TotalTax, which it keeps.
    AUTOMATED = "AUTOMATED"
    # UsingSalesTax without AST: the invoice names its rate (TxnTaxCodeRef, the `tax_code` setting or the
    # job's tax_rate_name); TotalTax, when sent, is kept as the invoice's tax.
    MANUAL = "MANUAL"
    # Sales tax not set up: no tax codes on lines, no tax on invoices; a job charging tax is refused.
    NONE = "NONE"
