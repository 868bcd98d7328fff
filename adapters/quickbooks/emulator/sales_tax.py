"""What QBO does with an invoice's tax and discount: the company's sales tax mode, the TAX/NON pseudo tax codes
on lines, the one discount line, ApplyTaxAfterDiscount and TxnTaxDetail (QUICKBOOKS.md "Sales tax",
"Discounts"; Intuit's "Manage sales tax for US locales").

The three modes a US company can be in (``Realm.sales_tax``; Preferences.TaxPrefs reads the same state):

- ``AUTOMATED`` (automated sales tax, every US company created since November 2017, and the emulator's default):
  QBO works the tax out itself, at the rate of the company's and customer's addresses (``Realm.ast_rate`` here)
  on the lines marked ``TAX``, and ignores the tax code a client sends. A ``TxnTaxDetail.TotalTax`` sent is the
  override AST keeps. So a client that marks lines ``TAX`` and sends no TotalTax gets QBO's tax, not its own:
  the drift an integrator sees as a balance due the customer does not owe.
- ``MANUAL`` (sales tax set up by hand, before AST): the invoice names its rate with
  ``TxnTaxDetail.TxnTaxCodeRef`` (a TaxCode of the company, whose TaxRates add up to the rate); the tax is
  that rate on the ``TAX`` lines unless TotalTax is sent, which is kept.
- ``NONE`` (sales tax not set up): lines carry no tax code and the invoice no tax.

*guesses* (no Intuit page says; the strict or the simplest reading, marked where used): rounding is half up to
the cent on the whole taxable amount (not per line); a discount taken before tax comes off the taxable lines
in proportion to their share of the lines' total; a tax code on a line of a company without sales tax, a tax
on its invoice, and a second discount line are refused with 6000; AST leaves TxnTaxCodeRef out of its answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import errors
from .shapes import CENT, JsonDict, money, to_decimal

AUTOMATED, MANUAL, NONE = "AUTOMATED", "MANUAL", "NONE"
MODES = (AUTOMATED, MANUAL, NONE)
DEFAULT_AST_RATE = Decimal("8.25")  # percent: what AST charges the emulated company's customers
PSEUDO_TAX_CODES = ("TAX", "NON")  # US companies mark sales lines with these, never with a real TaxCode
ZERO = Decimal("0.00")


@dataclass
class TaxKnobs:
    """How the emulated company treats sales tax, and how a tester makes it disagree with the client."""

    sales_tax: str = AUTOMATED
    ast_rate: Decimal = DEFAULT_AST_RATE
    # Testers' controls, to provoke a total the client did not send (INVOICE_TOTAL_MISMATCH):
    invoice_total_drift: Decimal = ZERO  # added to every invoice's TotalAmt, as a QBO rounding its own way
    ignore_total_tax: bool = False  # AST computes its own tax even when TotalTax is sent

    def describe(self) -> JsonDict:
        return {
            "sales_tax": self.sales_tax,
            "ast_rate": self.ast_rate,
            "invoice_total_drift": self.invoice_total_drift,
            "ignore_total_tax": self.ignore_total_tax,
        }


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``percent`` % of ``amount``, rounded half up to the cent (*guess*, see the module docstring)."""
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def line_tax_code(detail: JsonDict, sales_tax: str) -> bool:
    """Whether a sales line is taxable, from its ``TaxCodeRef`` (absent: not taxable, as an item that is not
    marked taxable). Raises the fault QBO answers for a code it cannot take."""
    ref = detail.get("TaxCodeRef")
    if ref is None:
        return False
    value = str(ref.get("value", "")) if isinstance(ref, dict) else ""
    if sales_tax == NONE:
        # *guess*: the strict choice; a company without sales tax has no tax codes to mark a line with.
        raise errors.business_rule(
            "Sales tax is not set up for this company: a line cannot carry a tax code",
            "Line.SalesItemLineDetail.TaxCodeRef",
        )
    if value not in PSEUDO_TAX_CODES:
        # US sales lines take the pseudo codes only; a real TaxCode goes in TxnTaxDetail.TxnTaxCodeRef.
        raise errors.invalid_reference(
            "Line.SalesItemLineDetail.TaxCodeRef",
            f"Invalid Reference Id : TaxCodeRef {value!r} on a sales line must be TAX or NON",
        )
    detail["TaxCodeRef"] = {"value": value}
    return value == "TAX"


def discount_amount(line: JsonDict, subtotal: Decimal) -> Decimal:
    """The Amount of a ``DiscountLineDetail`` line, worked out as QBO does: a percent of the lines' subtotal
    when ``PercentBased``, else the Amount sent. Faults as QBO words them (SDK issue trackers)."""
    detail = line.setdefault("DiscountLineDetail", {})
    percent_based = detail.get("PercentBased") is True or str(detail.get("PercentBased")).lower() == "true"
    try:
        sent = money(line.get("Amount"))
        percent = to_decimal(detail.get("DiscountPercent"))
    except ValueError as exc:
        raise errors.invalid_property(str(exc), "Line.DiscountLineDetail") from exc
    if percent_based:
        if percent is None:
            raise errors.required_missing("Line.DiscountLineDetail.DiscountPercent")
        if percent < 0 or percent > 100:
            raise errors.business_rule("DiscountPercent must be between 0 and 100", "Line.DiscountLineDetail")
        amount = percent_of(subtotal, percent)
        if sent is not None and sent not in (ZERO, amount):
            raise errors.business_rule(
                "You can't set both an amount and a discount percentage if the amount is not the sum of the "
                "discount percentage and the subtotal.",
                "Line.Amount",
            )
        detail["DiscountPercent"] = percent
    else:
        if sent is None:
            raise errors.required_missing("Line.Amount")
        amount = sent
        detail.pop("DiscountPercent", None)
    if amount < 0:
        raise errors.business_rule("The discount amount cannot be negative", "Line.Amount")  # *guess* at wording
    if amount > subtotal:
        raise errors.business_rule("The discount amount can't be greater than the subtotal.", "Line.Amount")
    detail["PercentBased"] = percent_based
    line["Amount"] = amount
    return amount


def taxable_base(taxable: Decimal, subtotal: Decimal, discount: Decimal, before_tax: bool) -> Decimal:
    """The amount tax is charged on: the TAX lines, less their share of a discount taken before tax (*guess*:
    in proportion to the taxable lines' part of the subtotal)."""
    if not before_tax or discount == 0 or subtotal == 0:
        return taxable
    return taxable - (discount * taxable / subtotal).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class TaxResult:
    """What QBO writes back into TxnTaxDetail."""

    total_tax: Decimal
    percent: Decimal | None  # the rate QBO applied (None when the tax was the client's override, no rate)
    tax_code: JsonDict | None  # TxnTaxCodeRef kept on the invoice
    rate_refs: tuple[JsonDict, ...] = ()


def invoice_tax(knobs: TaxKnobs, detail: Any, base: Decimal, any_taxable: bool, tax_code_rate: Any) -> TaxResult:
    """The invoice's tax for the company's mode, from the ``TxnTaxDetail`` the client sent (``detail``).
    ``tax_code_rate(ref)`` resolves a TxnTaxCodeRef to (cleaned ref, rate percent, TaxRate refs)."""
    if detail is not None and not isinstance(detail, dict):
        raise errors.invalid_property("TxnTaxDetail must be an object", "TxnTaxDetail")
    detail = detail or {}
    try:
        sent = money(detail.get("TotalTax"))
    except ValueError as exc:
        raise errors.invalid_property(str(exc), "TxnTaxDetail.TotalTax") from exc
    if sent is not None and sent < 0:
        raise errors.business_rule("TotalTax cannot be negative", "TxnTaxDetail.TotalTax")  # *guess*
    code_ref = detail.get("TxnTaxCodeRef")
    if knobs.sales_tax == NONE:
        if (sent is not None and sent != 0) or code_ref is not None:
            # *guess*: the strict choice, so a client that leaves tax out for such a company passes either way.
            raise errors.business_rule(
                "Sales tax is not set up for this company: the invoice cannot carry sales tax", "TxnTaxDetail"
            )
        return TaxResult(ZERO, None, None)
    if knobs.sales_tax == AUTOMATED:
        # AST ignores the tax code sent; it keeps TotalTax as the override (unless a tester says otherwise).
        if sent is not None and not knobs.ignore_total_tax:
            return TaxResult(sent, None, None)
        return TaxResult(percent_of(base, knobs.ast_rate), knobs.ast_rate, None)
    # MANUAL: the transaction's tax code gives the rate.
    if code_ref is None:
        if any_taxable and sent is None:
            # *guess*: QBO asks for a rate before it saves a taxed sale ("Make sure all your transactions
            # have a sales tax rate").
            raise errors.business_rule(
                "Make sure all your transactions have a sales tax rate: TxnTaxDetail.TxnTaxCodeRef is missing",
                "TxnTaxDetail.TxnTaxCodeRef",
            )
        return TaxResult(sent or ZERO, None, None)
    cleaned, rate, rate_refs = tax_code_rate(code_ref)
    if sent is not None:
        return TaxResult(sent, None, cleaned, rate_refs)
    return TaxResult(percent_of(base, rate), rate, cleaned, rate_refs)


def tax_detail(result: TaxResult, base: Decimal) -> JsonDict:
    """The TxnTaxDetail QBO answers: the code (MANUAL), TotalTax and one TaxLine spreading it on its rate."""
    out: JsonDict = {}
    if result.tax_code is not None:
        out["TxnTaxCodeRef"] = result.tax_code
    out["TotalTax"] = result.total_tax
    if result.total_tax != 0 or base != 0:
        line_detail: JsonDict = {"PercentBased": True, "NetAmountTaxable": base}
        if result.rate_refs:
            line_detail["TaxRateRef"] = result.rate_refs[0]
        if result.percent is not None:
            line_detail["TaxPercent"] = result.percent
        elif base != 0:
            # The override spread on the taxable amount: the effective rate, as QBO shows it (*guess*: 4 places).
            line_detail["TaxPercent"] = (result.total_tax * 100 / base).quantize(Decimal("0.0001"))
        out["TaxLine"] = [{"Amount": result.total_tax, "DetailType": "TaxLineDetail", "TaxLineDetail": line_detail}]
    return out
