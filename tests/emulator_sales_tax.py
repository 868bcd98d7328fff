"""Setting an emulated company's sales tax mode from a test, in process, as its bookkeeper would in QuickBooks."""

from __future__ import annotations

from adapters.quickbooks.emulator.store import Realm


def set_realm_sales_tax(realm: Realm | None, mode: str) -> None:
    """`mode` is "AUTOMATED", "MANUAL" or "NONE". Through the realm's own `set_sales_tax` when the emulator
    models sales tax (it also gives a MANUAL company a tax code), else the plain state its GET /preferences
    reads (TaxPrefs)."""
    assert realm is not None
    setter = getattr(realm, "set_sales_tax", None)
    if setter is not None:
        setter({"sales_tax": mode})
    else:
        realm.sales_tax = mode  # type: ignore[attr-defined]
