"""Sales tax and discounts as the emulated QBO treats them, over raw HTTP: automated sales tax computing its own
tax when TotalTax is not sent (the drift a naive client sees) and keeping it when sent, discounts before and
after tax, a manual-tax company's tax code, a company without sales tax, and the controls that make the
emulator disagree with a client."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests
from emulator_harness import Connection


def sales_line(amount: str, tax_code: str | None = None, item: str = "1") -> dict[str, Any]:
    detail: dict[str, Any] = {"ItemRef": {"value": item}, "Qty": "1", "UnitPrice": amount}
    if tax_code is not None:
        detail["TaxCodeRef"] = {"value": tax_code}
    return {"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}


def discount_line(amount: str | None = None, percent: str | None = None, account: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"PercentBased": percent is not None}
    if percent is not None:
        detail["DiscountPercent"] = percent
    if account is not None:
        detail["DiscountAccountRef"] = {"value": account}
    line: dict[str, Any] = {"DetailType": "DiscountLineDetail", "DiscountLineDetail": detail}
    if amount is not None:
        line["Amount"] = amount
    return line


class Company:
    """The realm, its first customer, and raw invoice writes (answers read with exact decimals)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.customer = connection.seed("Customer", {"DisplayName": "Tess Taxpayer"})["Id"]
        accounts = connection.state()["entities"]["Account"]
        self.accounts = {a["Name"]: a["Id"] for a in accounts}

    def sales_tax(self, **changes: Any) -> dict[str, Any]:
        return self.connection.admin("POST", f"/realms/{self.connection.realm_id}/sales_tax", changes)  # type: ignore[no-any-return]

    def post(self, lines: list[dict[str, Any]], **fields: Any) -> tuple[int, dict[str, Any]]:
        body = {"CustomerRef": {"value": self.customer}, "Line": lines, **fields}
        response = self.connection.api("POST", "/invoice?minorversion=75", json=body)
        return response.status_code, json.loads(response.text, parse_float=Decimal)

    def invoice(self, lines: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        status, answer = self.post(lines, **fields)
        assert status == 200, answer
        return answer["Invoice"]  # type: ignore[no-any-return]

    def fault(self, lines: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        status, answer = self.post(lines, **fields)
        assert status == 400, answer
        return answer["Fault"]["Error"][0]  # type: ignore[no-any-return]


@pytest.fixture
def company(connection: Connection) -> Company:
    return Company(connection)


def test_a_new_company_uses_automated_sales_tax_at_its_rate(company: Company) -> None:
    assert company.connection.admin("GET", f"/realms/{company.connection.realm_id}/sales_tax") == {
        "sales_tax": "AUTOMATED",
        "ast_rate": 8.25,
        "invoice_total_drift": 0.0,
        "ignore_total_tax": False,
    }


def test_lines_without_tax_codes_are_untaxed_as_before(company: Company) -> None:
    invoice = company.invoice([sales_line("300.00"), sales_line("50.25")])
    assert invoice["TotalAmt"] == Decimal("350.25")
    assert invoice["TxnTaxDetail"] == {"TotalTax": Decimal("0.00")}
    subtotal = [line for line in invoice["Line"] if line["DetailType"] == "SubTotalLineDetail"]
    assert [line["Amount"] for line in subtotal] == [Decimal("350.25")]


def test_automated_sales_tax_computes_its_own_tax_when_total_tax_is_not_sent(company: Company) -> None:
    # The naive client: TAX lines, no TotalTax. AST charges 8.25% of the taxable 200.00 (16.50), whatever the CRM
    # charged: the invoice now totals more than the customer was billed.
    invoice = company.invoice([sales_line("200.00", "TAX"), sales_line("100.00", "NON")])
    assert invoice["TxnTaxDetail"]["TotalTax"] == Decimal("16.50")
    assert invoice["TotalAmt"] == Decimal("316.50")
    assert invoice["Balance"] == Decimal("316.50")
    tax_line = invoice["TxnTaxDetail"]["TaxLine"][0]
    assert tax_line["TaxLineDetail"]["NetAmountTaxable"] == Decimal("200.00")
    assert tax_line["TaxLineDetail"]["TaxPercent"] == Decimal("8.25")


def test_automated_sales_tax_rounds_half_up_to_the_cent(company: Company) -> None:
    company.sales_tax(ast_rate="7.5")
    invoice = company.invoice([sales_line("10.10", "TAX")])  # 0.7575 → 0.76
    assert (invoice["TxnTaxDetail"]["TotalTax"], invoice["TotalAmt"]) == (Decimal("0.76"), Decimal("10.86"))


def test_automated_sales_tax_keeps_the_total_tax_sent(company: Company) -> None:
    invoice = company.invoice(
        [sales_line("200.00", "TAX"), sales_line("100.00", "NON")],
        TxnTaxDetail={"TotalTax": "15.00", "TxnTaxCodeRef": {"value": "99"}},
    )
    assert invoice["TxnTaxDetail"]["TotalTax"] == Decimal("15.00")
    assert "TxnTaxCodeRef" not in invoice["TxnTaxDetail"]  # AST ignores the tax code sent
    assert invoice["TotalAmt"] == Decimal("315.00")


def test_a_discount_before_tax_lowers_the_taxable_amount(company: Company) -> None:
    # 10% of 300.00 comes off; before tax, the taxable 200.00 loses its share (20.00): AST taxes 180.00.
    lines = [sales_line("200.00", "TAX"), sales_line("100.00", "NON"), discount_line(percent="10")]
    invoice = company.invoice(lines, ApplyTaxAfterDiscount=True)
    discount = next(line for line in invoice["Line"] if line["DetailType"] == "DiscountLineDetail")
    assert discount["Amount"] == Decimal("30.00")
    assert discount["DiscountLineDetail"]["DiscountAccountRef"]["value"] == company.accounts["Discounts given"]
    assert invoice["TxnTaxDetail"]["TotalTax"] == Decimal("14.85")  # 8.25% of 180.00
    assert invoice["TotalAmt"] == Decimal("284.85")  # 300.00 − 30.00 + 14.85
    assert invoice["ApplyTaxAfterDiscount"] is True


def test_a_discount_after_tax_leaves_the_tax_on_the_full_lines(company: Company) -> None:
    lines = [sales_line("200.00", "TAX"), sales_line("100.00", "NON"), discount_line("30.00")]
    invoice = company.invoice(lines, ApplyTaxAfterDiscount=False)
    assert invoice["TxnTaxDetail"]["TotalTax"] == Decimal("16.50")
    assert invoice["TotalAmt"] == Decimal("286.50")


def test_what_qbo_refuses_in_a_discount(company: Company) -> None:
    lines = [sales_line("100.00")]
    second = company.fault([*lines, discount_line("5.00"), discount_line("5.00")])
    assert (second["code"], second["element"]) == ("6000", "Line.DiscountLineDetail")
    too_big = company.fault([*lines, discount_line("100.01")])
    assert "can't be greater than the subtotal" in too_big["Detail"]
    both = company.fault([*lines, discount_line("12.00", percent="10")])
    assert "can't set both an amount and a discount percentage" in both["Detail"]
    nowhere = company.fault([*lines, discount_line("5.00", account="999")])
    assert (nowhere["code"], nowhere["element"]) == ("2500", "Line.DiscountLineDetail.DiscountAccountRef")
    agreed = company.invoice([*lines, discount_line("10.00", percent="10")])  # amount and percent agree
    assert agreed["TotalAmt"] == Decimal("90.00")


def test_a_manual_tax_company_charges_its_tax_codes_rate(company: Company) -> None:
    company.sales_tax(sales_tax="MANUAL", ast_rate="6.5")
    codes = company.connection.api("GET", "/query", params={"query": "select * from TaxCode"}).json()
    [code] = codes["QueryResponse"]["TaxCode"]
    assert code["Name"] == "Sales tax"
    rate_id = code["SalesTaxRateList"]["TaxRateDetail"][0]["TaxRateRef"]["value"]
    # Another code made by the bookkeeper: two rates, 4% state and 1.25% city.
    state = company.connection.seed("TaxRate", {"Name": "State", "RateValue": "4"})["Id"]
    city = company.connection.seed("TaxRate", {"Name": "City", "RateValue": "1.25"})["Id"]
    combined = company.connection.seed(
        "TaxCode",
        {
            "Name": "Portland",
            "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": state}}, {"TaxRateRef": {"value": city}}]},
        },
    )["Id"]

    taxed = company.invoice([sales_line("200.00", "TAX")], TxnTaxDetail={"TxnTaxCodeRef": {"value": code["Id"]}})
    assert (taxed["TxnTaxDetail"]["TotalTax"], taxed["TotalAmt"]) == (Decimal("13.00"), Decimal("213.00"))
    assert taxed["TxnTaxDetail"]["TaxLine"][0]["TaxLineDetail"]["TaxRateRef"]["value"] == rate_id
    combined_tax = company.invoice([sales_line("200.00", "TAX")], TxnTaxDetail={"TxnTaxCodeRef": {"value": combined}})
    assert combined_tax["TxnTaxDetail"]["TotalTax"] == Decimal("10.50")
    kept = company.invoice(
        [sales_line("200.00", "TAX")], TxnTaxDetail={"TxnTaxCodeRef": {"value": combined}, "TotalTax": "11.11"}
    )
    assert (kept["TxnTaxDetail"]["TotalTax"], kept["TotalAmt"]) == (Decimal("11.11"), Decimal("211.11"))
    unknown = company.fault([sales_line("200.00", "TAX")], TxnTaxDetail={"TxnTaxCodeRef": {"value": "999"}})
    assert (unknown["code"], unknown["element"]) == ("2500", "TxnTaxDetail.TxnTaxCodeRef")
    no_rate = company.fault([sales_line("200.00", "TAX")])
    assert no_rate["element"] == "TxnTaxDetail.TxnTaxCodeRef"


def test_the_api_cannot_write_tax_codes(company: Company) -> None:
    response = company.connection.api("POST", "/taxcode", json={"Name": "Mine"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "500"


def test_a_company_without_sales_tax_refuses_tax_codes_and_tax(company: Company) -> None:
    company.sales_tax(sales_tax="NONE")
    coded = company.fault([sales_line("100.00", "NON")])
    assert (coded["code"], coded["element"]) == ("6000", "Line.SalesItemLineDetail.TaxCodeRef")
    taxed = company.fault([sales_line("100.00")], TxnTaxDetail={"TotalTax": "8.00"})
    assert taxed["element"] == "TxnTaxDetail"
    plain = company.invoice([sales_line("100.00")], TxnTaxDetail={"TotalTax": "0"})
    assert plain["TotalAmt"] == Decimal("100.00")


def test_a_line_tax_code_must_be_tax_or_non(company: Company) -> None:
    fault = company.fault([sales_line("100.00", "7")])
    assert (fault["code"], fault["element"]) == ("2500", "Line.SalesItemLineDetail.TaxCodeRef")


def test_the_disagree_controls_change_the_total(company: Company) -> None:
    lines = [sales_line("200.00", "TAX")]
    company.sales_tax(invoice_total_drift="0.01")
    drifted = company.invoice(lines, TxnTaxDetail={"TotalTax": "16.00"})
    assert drifted["TotalAmt"] == Decimal("216.01")
    company.sales_tax(invoice_total_drift="0", ignore_total_tax=True)
    ignored = company.invoice(lines, TxnTaxDetail={"TotalTax": "16.00"})
    assert (ignored["TxnTaxDetail"]["TotalTax"], ignored["TotalAmt"]) == (Decimal("16.50"), Decimal("216.50"))


def test_the_controls_refuse_what_they_cannot_mean(company: Company) -> None:
    route = f"{company.connection.server.admin_url}/realms/{company.connection.realm_id}/sales_tax"
    for bad in ({"sales_tax": "SOMETIMES"}, {"ast_rate": "120"}, {"ignore_total_tax": "yes"}):
        answer = requests.post(route, json=bad, timeout=10)
        assert answer.status_code == 400, (bad, answer.text)
    assert company.sales_tax()["sales_tax"] == "AUTOMATED"  # nothing changed


def test_payments_apply_against_the_taxed_total_and_no_more(company: Company) -> None:
    invoice = company.invoice([sales_line("200.00", "TAX")], TxnTaxDetail={"TotalTax": "16.00"})
    connection = company.connection

    def pay(amount: str) -> int:
        body = {
            "CustomerRef": {"value": company.customer},
            "TotalAmt": amount,
            "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        }
        return connection.api("POST", "/payment", json=body).status_code

    assert pay("216.01") == 400
    assert pay("216.00") == 200
    assert connection.state()["balances"]["invoices"][invoice["Id"]] == 0.0


def test_the_request_log_keeps_bodies_when_asked(company: Company) -> None:
    company.connection.admin("POST", "/settings", {"log_bodies": True})
    company.invoice([sales_line("10.00", "TAX")], TxnTaxDetail={"TotalTax": "0.83"})
    log = requests.get(
        f"{company.connection.server.admin_url}/requests", params={"entity": "Invoice"}, timeout=10
    ).json()["requests"]
    assert log[-1]["body"]["TxnTaxDetail"] == {"TotalTax": "0.83"}
