"""A tenant's connection to its QuickBooks company: where it is, the OAuth tokens, the account settings.

Tokens are secrets: they are kept out of `repr` (so out of logs) and encrypted at rest by the
persistence adapter. Intuit rotates the refresh token on every refresh; losing the new one means the
company must reconnect, so it is saved the moment it arrives.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.company_tax import SalesTax
from core.currency import CompanyCurrency
from core.domain import PaymentMethod

SANDBOX = "sandbox"
PRODUCTION = "production"

# Intuit's access tokens live an hour; one of unknown lifetime (stored before lifetimes were) is taken as that.
USUAL_ACCESS_TOKEN_LIFETIME = timedelta(hours=1)
# An access token is refreshed once it is in the last fifth of its life, and at most five minutes before
# it expires: ahead of expiry, so no request is sent with a token about to die, but not before every
# request when tokens are short-lived (a 60-second token is refreshed after 48 seconds, not each time).
REFRESH_MARGIN_SHARE = 0.2
MAX_REFRESH_MARGIN = timedelta(minutes=5)


class ConnectionState(enum.Enum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTED = "CONNECTED"
    RECONNECT_REQUIRED = "RECONNECT_REQUIRED"  # the refresh token is dead: someone must reconnect


@dataclass(frozen=True)
class ListRef:
    """A QuickBooks list entry (account, item, payment method): its Id and, for people, its name."""

    id: str = ""
    name: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.id)


class InvoiceNumbering(enum.Enum):
    """Who numbers invoices (SPEC §10). CRM: DocNumber is the prefix + the job number, checked free in
    QuickBooks before the invoice is created (DOC_NUMBER_TAKEN when another invoice has it). QUICKBOOKS: no
    DocNumber is sent and QuickBooks numbers the invoice; the job number goes in the memo."""

    CRM = "CRM"
    QUICKBOOKS = "QUICKBOOKS"


class ClassTracking(enum.Enum):
    """Whether and where the company tracks classes (Preferences.AccountingInfoPrefs): OFF, one class per
    transaction (ClassTrackingPerTxn) or one per line (ClassTrackingPerTxnLine)."""

    OFF = "OFF"
    PER_TRANSACTION = "PER_TRANSACTION"
    PER_LINE = "PER_LINE"


@dataclass(frozen=True)
class BranchMapping:
    """What a branch's transactions carry in QuickBooks (SPEC §10): a Class and/or a Department (shown as
    "Location"), each by Id or by name. An empty `service_type` is the branch's mapping for every service
    type without one of its own."""

    branch_id: str
    service_type: str = ""
    class_ref: ListRef = field(default_factory=ListRef)
    department_ref: ListRef = field(default_factory=ListRef)

    @property
    def names_something(self) -> bool:
        return bool(self.class_ref.id or self.class_ref.name or self.department_ref.id or self.department_ref.name)


def branch_mapping(mappings: Sequence[BranchMapping], branch_id: str, service_type: str) -> BranchMapping | None:
    """The mapping for a branch's job of `service_type`: the one for that branch and service type, else the
    branch's own (empty service type), else None (the transactions carry no class or location)."""
    exact = next((m for m in mappings if m.branch_id == branch_id and m.service_type == service_type), None)
    if exact is not None or not service_type:
        return exact
    return next((m for m in mappings if m.branch_id == branch_id and not m.service_type), None)


@dataclass
class QuickBooksSettings:
    """The tenant's account mapping (SPEC.md section 5). Unset entries get a default found by name in the
    company's chart of accounts on first use, which is then recorded here."""

    deposit_account: ListRef = field(default_factory=ListRef)  # default: Undeposited Funds
    refund_bank_account: ListRef = field(default_factory=ListRef)  # default: the first bank account
    accounts_receivable_account: ListRef = field(default_factory=ListRef)  # default: Accounts Receivable
    income_item: ListRef = field(default_factory=ListRef)  # default: a service item named Services
    # SPEC §8, each looked up only when a job needs it (a company without tips needs no tips item):
    tax_code: ListRef = field(default_factory=ListRef)  # manual sales tax: the invoice's TxnTaxCodeRef
    discount_account: ListRef = field(default_factory=ListRef)  # default: an account named Discounts given
    tips_item: ListRef = field(default_factory=ListRef)  # income or liability: the bookkeeper's choice
    surcharge_item: ListRef = field(default_factory=ListRef)  # the card fee charged to the customer
    processing_fee_account: ListRef = field(default_factory=ListRef)  # what processors keep (payouts)
    # SPEC §9, payouts:
    payout_bank_account: ListRef = field(default_factory=ListRef)  # default: the checking account
    chargeback_account: ListRef = field(default_factory=ListRef)  # chargebacks a payout nets
    adjustment_account: ListRef = field(default_factory=ListRef)  # a payout's other adjustments
    payment_methods: dict[PaymentMethod, ListRef] = field(default_factory=dict)
    doc_number_prefix: str = ""
    # SPEC §10. None: not chosen, which follows the company's "custom transaction numbers" preference as read
    # at connect (`QuickBooksConnection.invoice_numbering`).
    invoice_numbering: InvoiceNumbering | None = None
    branch_mappings: tuple[BranchMapping, ...] = ()


@dataclass
class QuickBooksConnection:
    """`environment` is "sandbox", "production" or the URL of an OpenID discovery document (the emulator,
    a test double); `api_base_url` overrides the API host (empty: Intuit's for the environment)."""

    tenant_id: str
    realm_id: str
    environment: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    # The branch this connection is for (SPEC §10); "" is the tenant's default connection, which every branch
    # without one of its own syncs to. (tenant_id, branch_id) is the connection's key.
    branch_id: str = ""
    access_token: str = field(default="", repr=False)
    access_token_expires: datetime | None = None
    refresh_token_expires: datetime | None = None
    access_token_lifetime: timedelta | None = None  # as granted; None: unknown
    api_base_url: str = ""
    state: ConnectionState = ConnectionState.CONNECTED
    connect_time: datetime | None = None
    company_name: str = ""
    # The company's CurrencyPrefs, read from QuickBooks at connect time ("" until read): facts about the
    # company, like its name, stored with them and never with the tokens or the settings.
    home_currency: str = ""
    multicurrency: bool = False
    # The company's TaxPrefs, read with them (None until read): how QuickBooks treats sales tax (SPEC §8).
    sales_tax: SalesTax | None = None
    # The company's AccountingInfoPrefs and SalesFormsPrefs, read with them (SPEC §10): where it tracks classes,
    # whether it tracks locations (departments), and whether invoice numbers are its users' (CustomTxnNumbers).
    class_tracking: ClassTracking = ClassTracking.OFF
    track_departments: bool = False
    custom_txn_numbers: bool = True
    last_error: str = ""
    settings: QuickBooksSettings = field(default_factory=QuickBooksSettings)
    oauth_state: str = field(default="", repr=False)  # the pending authorization's anti-forgery token
    redirect_uri: str = ""

    @property
    def company_currency(self) -> CompanyCurrency:
        return CompanyCurrency(self.home_currency, self.multicurrency)

    @property
    def invoice_numbering(self) -> InvoiceNumbering:
        """The setting, or, when not chosen, what the company's preference implies: its users' own numbers
        (custom transaction numbers on) are the CRM's job numbers; QuickBooks' sequence otherwise."""
        if self.settings.invoice_numbering is not None:
            return self.settings.invoice_numbering
        return InvoiceNumbering.CRM if self.custom_txn_numbers else InvoiceNumbering.QUICKBOOKS

    def needs_refresh(self, now: datetime) -> bool:
        """Whether the access token is missing or near its expiry (see REFRESH_MARGIN_SHARE)."""
        if not self.access_token or self.access_token_expires is None:
            return True
        return self.access_token_expires - now < refresh_margin(self.access_token_lifetime)

    def with_grant(self, grant: TokenGrant) -> QuickBooksConnection:
        """This connection holding `grant`'s tokens, its last error cleared (the tokens work again)."""
        return dataclasses.replace(
            self,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            access_token_expires=grant.access_token_expires,
            refresh_token_expires=grant.refresh_token_expires,
            access_token_lifetime=grant.access_token_lifetime,
            last_error="",
        )

    def refused(self, last_error: str) -> QuickBooksConnection:
        """This connection once Intuit refused its refresh token: someone must reconnect it."""
        return dataclasses.replace(
            self, state=ConnectionState.RECONNECT_REQUIRED, access_token="", last_error=last_error
        )


@dataclass(frozen=True)
class CompanyFacts:
    """What the accept path's checks need of a tenant's connection (core/company_checks.py): its state and
    what was last read of the company. Nothing secret, so an adapter may keep it in memory for a while
    (UnitOfWorkFactory.company_facts)."""

    state: ConnectionState
    company_currency: CompanyCurrency
    sales_tax: SalesTax | None
    branch_id: str = ""  # the connection's (SPEC §10): "" the default one

    @classmethod
    def of(cls, connection: QuickBooksConnection) -> CompanyFacts:
        return cls(connection.state, connection.company_currency, connection.sales_tax, connection.branch_id)


def refresh_margin(lifetime: timedelta | None) -> timedelta:
    """How long before its expiry an access token granted for `lifetime` is refreshed."""
    return min(MAX_REFRESH_MARGIN, (lifetime or USUAL_ACCESS_TOKEN_LIFETIME) * REFRESH_MARGIN_SHARE)


@dataclass(frozen=True)
class TokenGrant:
    """What Intuit's token endpoint answered."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_token_expires: datetime
    refresh_token_expires: datetime | None
    access_token_lifetime: timedelta | None = None  # None: not said
