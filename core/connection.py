"""A tenant's connection to its QuickBooks company: where it is, the OAuth tokens, the account settings.

Tokens are secrets: they are kept out of `repr` (so out of logs) and encrypted at rest by the
persistence adapter. Intuit rotates the refresh token on every refresh; losing the new one means the
company must reconnect, so it is saved the moment it arrives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from core.currency import CompanyCurrency
from core.domain import PaymentMethod

SANDBOX = "sandbox"
PRODUCTION = "production"


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


@dataclass
class QuickBooksSettings:
    """The tenant's account mapping (SPEC.md section 5). Unset entries get a default found by name in the
    company's chart of accounts on first use, which is then recorded here."""

    deposit_account: ListRef = field(default_factory=ListRef)  # default: Undeposited Funds
    refund_bank_account: ListRef = field(default_factory=ListRef)  # default: the first bank account
    accounts_receivable_account: ListRef = field(default_factory=ListRef)  # default: Accounts Receivable
    income_item: ListRef = field(default_factory=ListRef)  # default: a service item named Services
    payment_methods: dict[PaymentMethod, ListRef] = field(default_factory=dict)
    doc_number_prefix: str = ""


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
    access_token: str = field(default="", repr=False)
    access_token_expires: datetime | None = None
    refresh_token_expires: datetime | None = None
    api_base_url: str = ""
    state: ConnectionState = ConnectionState.CONNECTED
    connect_time: datetime | None = None
    company_name: str = ""
    # The company's CurrencyPrefs, read from QuickBooks at connect time ("" until read): facts about the
    # company, like its name, stored with them and never with the tokens or the settings.
    home_currency: str = ""
    multicurrency: bool = False
    last_error: str = ""
    settings: QuickBooksSettings = field(default_factory=QuickBooksSettings)
    oauth_state: str = field(default="", repr=False)  # the pending authorization's anti-forgery token
    redirect_uri: str = ""

    @property
    def is_sandbox(self) -> bool:
        """Only the exact "sandbox" selects Intuit's sandbox hosts (QUICKBOOKS.md); a discovery URL is
        treated as a sandbox for links, since it is never the production company."""
        return self.environment != PRODUCTION

    @property
    def company_currency(self) -> CompanyCurrency:
        return CompanyCurrency(self.home_currency, self.multicurrency)

    def needs_refresh(self, now: datetime, margin_seconds: float = 300) -> bool:
        """Refresh ahead of expiry, so that no request is sent with a token about to die."""
        if not self.access_token or self.access_token_expires is None:
            return True
        return (self.access_token_expires - now).total_seconds() < margin_seconds


@dataclass(frozen=True)
class TokenGrant:
    """What Intuit's token endpoint answered."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_token_expires: datetime
    refresh_token_expires: datetime | None
