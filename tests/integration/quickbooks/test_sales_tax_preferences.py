"""The company's sales tax mode as the port reads it (SPEC.md section 8): the fake and the emulator through
the real python-quickbooks adapter agree, in the one Preferences read that also gives the currency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks
from adapters.quickbooks.qbo.system import _sales_tax_of
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.currency import CompanyCurrency
from tests.emulator_sales_tax import set_realm_sales_tax


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def set_sales_tax(company: Company, mode: SalesTax) -> None:
    """The company's admin sets sales tax up (or not) in QuickBooks. On the emulator this sets the realm's
    `sales_tax` state in process, which its GET /preferences reads (the admin API's knob for it belongs to
    the emulator's tax model)."""
    if isinstance(company, FakeCompany):
        company.fake.sales_tax = mode
        return
    assert isinstance(company, EmulatedCompany)
    set_realm_sales_tax(company.rig.server.state.realm(company.rig.realm_id), mode.value)


def test_a_new_company_has_automated_sales_tax(company: Company) -> None:
    assert company.system.company_preferences() == CompanyPreferences(
        CompanyCurrency("USD"), SalesTax.AUTOMATED, custom_txn_numbers=False
    )


@pytest.mark.parametrize("mode", list(SalesTax))
def test_the_sales_tax_mode_is_read_as_quickbooks_has_it_now(company: Company, mode: SalesTax) -> None:
    set_sales_tax(company, mode)
    assert company.set_currency("CAD")
    assert company.system.company_preferences() == CompanyPreferences(
        CompanyCurrency("CAD"), mode, custom_txn_numbers=False
    )


def _preferences_json(rig: QboRig) -> dict[str, Any]:
    response = requests.get(
        f"{rig.server.base_api_url}/company/{rig.realm_id}/preferences",
        headers={"Authorization": f"Bearer {rig.credentials['access_token']}", "Accept": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()["Preferences"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mode", "using_sales_tax", "partner_tax_enabled"),
    [("AUTOMATED", True, True), ("MANUAL", True, False), ("NONE", False, False)],
)
def test_the_emulator_serves_tax_prefs_from_its_sales_tax_state(
    rig: QboRig, mode: str, using_sales_tax: bool, partner_tax_enabled: bool
) -> None:
    set_realm_sales_tax(rig.server.state.realm(rig.realm_id), mode)
    prefs = _preferences_json(rig)
    assert prefs["TaxPrefs"] == {"UsingSalesTax": using_sales_tax, "PartnerTaxEnabled": partner_tax_enabled}
    assert prefs["CurrencyPrefs"]["HomeCurrency"] == {"value": "USD"}  # still one object for both


def test_the_emulator_defaults_to_automated_sales_tax(rig: QboRig) -> None:
    assert _preferences_json(rig)["TaxPrefs"] == {"UsingSalesTax": True, "PartnerTaxEnabled": True}


def test_a_read_is_one_get_preferences(rig: QboRig) -> None:
    rig.clear_log()
    rig.system.company_preferences()
    assert [(e["method"], e["entity"]) for e in rig.log()] == [("GET", "preferences")]


@pytest.mark.parametrize(
    ("tax_prefs", "expected"),
    [
        ({"UsingSalesTax": True, "PartnerTaxEnabled": True}, SalesTax.AUTOMATED),
        ({"PartnerTaxEnabled": True}, SalesTax.AUTOMATED),
        ({"UsingSalesTax": True, "PartnerTaxEnabled": False}, SalesTax.MANUAL),
        ({"UsingSalesTax": True}, SalesTax.MANUAL),
        ({"UsingSalesTax": False}, SalesTax.NONE),
        # What QBO leaves out is false, not python-quickbooks' default of true for both flags:
        ({}, SalesTax.NONE),
        (None, SalesTax.NONE),
        ({"TaxGroupCodeRef": {"value": "3"}}, SalesTax.NONE),
        ({"UsingSalesTax": "yes"}, SalesTax.NONE),  # not a JSON true
    ],
)
def test_tax_prefs_are_read_as_qbo_sends_them(tax_prefs: object, expected: SalesTax) -> None:
    assert _sales_tax_of(tax_prefs) is expected
