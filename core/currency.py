"""The currency rule (SPEC.md section 7): qbsync books amounts only in the currency QuickBooks will book them in.

A QuickBooks company has one home currency (`CurrencyPrefs.HomeCurrency`); with multicurrency on
(`CurrencyPrefs.MultiCurrencyEnabled`, which can never be turned off again) a customer may instead be kept in
one foreign currency, and every transaction of that customer is in it. qbsync writes no `CurrencyRef`, so
what it writes is meant in the home currency. So an amount is accepted only when it is in the home currency;
an empty `currency_code` means "the home currency". An amount in any other currency is refused, never
relabelled (50 EUR booked as 50 USD is the very bug this rule exists for).

Multicurrency companies: a foreign amount is refused there too, for now. Accepting it would need the sync to
check the customer's QuickBooks currency and to write `CurrencyRef` on the customer and its transactions,
which qbsync does not do yet; refusing at the door is the side that never books a wrong amount. (A customer
that R1 matches and that QuickBooks keeps in a foreign currency is not detected either: the emulator does not
model customer currencies, and how QuickBooks answers a home-currency payment for one is *verify*.)

Before the tenant has connected, the home currency is not known: USD, the home currency of every US
QuickBooks company, is assumed, so "USD" and "" are accepted and any other code is refused. A connected
company whose preferences could not be read at connect time is read when a request first labels an amount
with a currency (core/service.py); the guess stands only while QuickBooks cannot be reached (README, "Currency").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import FieldViolation

CURRENCY_NOT_SUPPORTED = "CURRENCY_NOT_SUPPORTED"
# Assumed until the company's preferences have been read (see the module docstring).
ASSUMED_HOME_CURRENCY = "USD"


@dataclass(frozen=True)
class CompanyCurrency:
    """What a QuickBooks company's `Preferences.CurrencyPrefs` say. `home` is an ISO 4217 code such as
    "USD"; "" when it has not been read yet."""

    home: str = ""
    multicurrency: bool = False

    @property
    def known(self) -> bool:
        return bool(self.home)

    @property
    def home_or_assumed(self) -> str:
        return self.home or ASSUMED_HOME_CURRENCY


@dataclass(frozen=True)
class AmountCurrency:
    """The currency the CRM gave one amount of a request: `field` is the amount's API path
    (`payment.refunds[0].amount`), `code` its `currency_code` as sent ("" when none was)."""

    field: str
    code: str


def currency_violations(amounts: Sequence[AmountCurrency], company: CompanyCurrency) -> list[FieldViolation]:
    """Each amount that is not in the company's home currency, named by its `currency_code` field, with
    reason CURRENCY_NOT_SUPPORTED. Since only the home currency is accepted, the amounts of an accepted
    request always share one currency; the ones that differ from it are the ones named here."""
    home = company.home_or_assumed
    return [
        FieldViolation(f"{a.field}.currency_code", _refusal(a.code, company), reason=CURRENCY_NOT_SUPPORTED)
        for a in amounts
        if (a.code or home) != home
    ]


def _refusal(code: str, company: CompanyCurrency) -> str:
    if not company.known:
        return (
            f"{code} is not accepted before the QuickBooks company's home currency is known: send amounts in "
            f"{ASSUMED_HOME_CURRENCY} or leave currency_code empty"
        )
    if company.multicurrency:
        return (
            f"{code} is not the company's home currency {company.home}: qbsync books multicurrency customers "
            "in the home currency only; send amounts in it or leave currency_code empty"
        )
    return (
        f"{code} is not the company's currency {company.home} (multicurrency is off in QuickBooks): "
        "send amounts in it or leave currency_code empty"
    )
