"""The core's accounting specs as python-quickbooks objects (SPEC.md section 5), and back.

Objects are built "blank": python-quickbooks fills every attribute with a default ("" dates, 0 balances,
"NeedToPrint"...) and `save()` sends every non-None one, so each object starts with all attributes None
and gets exactly the fields qbsync means to write. An update is a full update: what is not sent is
cleared, which is what "replace the record with the spec" means. Money is `Decimal` quantized to cents;
python-quickbooks serialises `Decimal` as a JSON string ("300.10"), never through float.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeAlias, TypeVar

from quickbooks.objects.base import CustomerMemo, EmailAddress, LinkedTxn, PhoneNumber, Ref
from quickbooks.objects.customer import Customer
from quickbooks.objects.deposit import Deposit, DepositLine, DepositLineDetail
from quickbooks.objects.detailline import (
    AccountBasedExpenseLine,
    AccountBasedExpenseLineDetail,
    DiscountLine,
    DiscountLineDetail,
    SalesItemLine,
    SalesItemLineDetail,
)
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine
from quickbooks.objects.purchase import Purchase
from quickbooks.objects.tax import TxnTaxDetail

from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS
from core.accounting import (
    AccountingCustomer,
    DepositLineKind,
    DepositSpec,
    InvoiceSpec,
    NewCustomer,
    PaymentSpec,
    RefundSpec,
    Tracking,
    TxnKind,
    TxnSpec,
)
from core.company_tax import SalesTax
from core.connection import QuickBooksSettings

CENT = Decimal("0.01")

T = TypeVar("T")

# Payment | Purchase | Invoice | Deposit: python-quickbooks ships no type hints.
QboTxn: TypeAlias = Any


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def record_json(record: Any) -> str:
    """`record` as python-quickbooks' `to_json` writes it (every public non-None attribute, Decimal as a
    string), without its `indent=4` and `sort_keys`: indenting makes `json` fall back from its C encoder to
    the pure-Python one, which cost a tenth of a sync's CPU (issue 12). QBO reads the same JSON either way."""
    return json.dumps(record, default=record.json_filter(), separators=(",", ":"))


def save_record(record: Any, qb: Any, request_id: str) -> Any:
    """`record.save(qb=qb, request_id=request_id)` of python-quickbooks (UpdateMixin.save: an update when it
    has an Id, else a create; the saved object as QBO answered it), with the body from `record_json`."""
    name = record.qbo_object_name
    if record.Id and int(record.Id) > 0:
        answer = qb.update_object(name, record_json(record), request_id=request_id)
    else:
        answer = qb.create_object(name, record_json(record), request_id=request_id)
    saved = type(record).from_json(answer[record.qbo_json_object_name or name])
    record.Id = saved.Id
    return saved


def blank(cls: type[T]) -> T:
    """An instance of a python-quickbooks class with every attribute None (so nothing unasked is sent)."""
    obj = cls()
    for name in list(vars(obj)):
        setattr(obj, name, None)
    return obj


def ref(value: str, ref_type: str | None = None) -> Ref:
    result = blank(Ref)
    result.value = value
    if ref_type:
        result.type = ref_type
    return result


def entity_class(kind: TxnKind) -> Any:
    return {TxnKind.PAYMENT: Payment, TxnKind.INVOICE: Invoice, TxnKind.DEPOSIT: Deposit}.get(kind, Purchase)


def entity_name(kind: TxnKind) -> str:
    return str(entity_class(kind).qbo_object_name)


def customer_object(new: NewCustomer) -> Customer:
    customer = blank(Customer)
    customer.DisplayName = new.display_name
    customer.GivenName = new.given_name or None
    customer.FamilyName = new.family_name or None
    customer.CompanyName = new.company_name or None
    customer.Notes = new.note or None
    if new.email:
        customer.PrimaryEmailAddr = blank(EmailAddress)
        customer.PrimaryEmailAddr.Address = new.email
    if new.phone:
        customer.PrimaryPhone = blank(PhoneNumber)
        customer.PrimaryPhone.FreeFormNumber = new.phone
    return customer


def accounting_customer(customer: Any) -> AccountingCustomer:
    email = getattr(customer, "PrimaryEmailAddr", None)
    address = (email.get("Address") if isinstance(email, dict) else getattr(email, "Address", "")) if email else ""
    return AccountingCustomer(
        id=str(customer.Id),
        display_name=str(customer.DisplayName or ""),
        email=str(address or ""),
        active=customer.Active is not False,
    )


def txn_object(spec: TxnSpec, settings: QuickBooksSettings, sales_tax: SalesTax | None = None) -> QboTxn:
    """The QBO transaction for a spec, without Id/SyncToken (set them for an update). `sales_tax` is the
    company's mode (None: not read yet, taken as automated sales tax, what every new US company has)."""
    if isinstance(spec, PaymentSpec):
        return _payment(spec, settings)
    if isinstance(spec, RefundSpec):
        return _purchase(spec, settings)
    if isinstance(spec, DepositSpec):
        return _deposit(spec, settings)
    return _invoice(spec, settings, sales_tax or SalesTax.AUTOMATED)


def _payment(spec: PaymentSpec, settings: QuickBooksSettings) -> Payment:
    payment = blank(Payment)
    payment.CustomerRef = ref(spec.customer_id)
    payment.TotalAmt = money(spec.amount)
    payment.TxnDate = spec.txn_date.isoformat()
    method = settings.payment_methods.get(spec.method)
    if method is not None and method.is_set:
        payment.PaymentMethodRef = ref(method.id)
    # Truncated on purpose (core.limits.TRUNCATED_ON_PURPOSE): QBO refuses a longer PaymentRefNum, and the
    # full reference stays in the CRM.
    payment.PaymentRefNum = spec.reference[: QBO_FIELD_LIMITS.payment_reference] or None
    payment.DepositToAccountRef = ref(settings.deposit_account.id)
    payment.PrivateNote = spec.private_note
    lines = []
    for link in spec.lines:
        line = blank(PaymentLine)
        line.Amount = money(link.amount)
        linked = blank(LinkedTxn)
        linked.TxnId = link.txn_id
        linked.TxnType = link.txn_kind.value  # "Invoice", "Expense" or "Check"
        line.LinkedTxn = [linked]
        lines.append(line)
    payment.Line = lines  # every line, every time: QBO replaces payment lines all or nothing
    return payment


def _purchase(spec: RefundSpec, settings: QuickBooksSettings) -> Purchase:
    purchase = blank(Purchase)
    purchase.PaymentType = "Check" if spec.refund_kind is TxnKind.CHECK else "Cash"  # "Cash" shows as Expense
    purchase.AccountRef = ref(settings.refund_bank_account.id)
    purchase.EntityRef = ref(spec.customer_id, "Customer")
    purchase.TotalAmt = money(spec.amount)
    purchase.TxnDate = spec.txn_date.isoformat()
    purchase.PrivateNote = spec.private_note
    line = blank(AccountBasedExpenseLine)
    line.DetailType = "AccountBasedExpenseLineDetail"
    line.Amount = money(spec.amount)
    line.Description = spec.memo or None
    detail = blank(AccountBasedExpenseLineDetail)
    detail.AccountRef = ref(settings.accounts_receivable_account.id)
    detail.ClassRef = _class_ref(spec.tracking)  # a Purchase has no ClassRef of its own: its lines carry it
    line.AccountBasedExpenseLineDetail = detail
    purchase.Line = [line]
    purchase.DepartmentRef = _department_ref(spec.tracking)
    return purchase


# The setting naming the account a deposit line of each kind books to (a PAYMENT line links its payment and
# needs none): what processors keep is an expense; chargebacks reverse what customers paid. A refund is
# already in the books as qbsync's refund expense, paid from the refund bank account (R4): the processor
# paid it out of the payout instead, so the deposit's refund line gives that account back what the expense
# took from it. Booked anywhere else (A/R, an expense) the refund would count twice.
DEPOSIT_LINE_SETTINGS: dict[DepositLineKind, str] = {
    DepositLineKind.FEE: "processing_fee_account",
    DepositLineKind.REFUND: "refund_bank_account",
    DepositLineKind.CHARGEBACK: "chargeback_account",
    DepositLineKind.ADJUSTMENT: "adjustment_account",
}


def _deposit(spec: DepositSpec, settings: QuickBooksSettings) -> Deposit:
    """A payout as QBO's bank deposit (SPEC §9): into the payout bank account, a line per payment linking it
    out of Undeposited Funds for its whole amount, and a DepositLineDetail line for each amount the processor
    kept (negative) or adjusted. TotalAmt is not sent: QuickBooks sums the lines, and the core compares."""
    deposit = blank(Deposit)
    deposit.DepositToAccountRef = ref(settings.payout_bank_account.id)
    deposit.TxnDate = spec.txn_date.isoformat()
    deposit.PrivateNote = spec.private_note
    lines = []
    for source in spec.lines:
        line = blank(DepositLine)
        line.Amount = money(source.amount)
        line.Description = source.memo or None
        if source.kind is DepositLineKind.PAYMENT:
            linked = blank(LinkedTxn)
            linked.TxnId = source.txn_id
            linked.TxnType = "Payment"
            linked.TxnLineId = "0"  # Intuit: required for a Deposit; "0" is the payment as a whole
            line.LinkedTxn = [linked]  # and no DetailType: QBO takes a linked line without one
        else:
            line.DetailType = "DepositLineDetail"
            detail = blank(DepositLineDetail)
            detail.AccountRef = ref(getattr(settings, DEPOSIT_LINE_SETTINGS[source.kind]).id)
            # The class goes on the account lines: a linked payment line has no detail to hold one, and the
            # payment itself carries none (QBO's Payment has no ClassRef).
            detail.ClassRef = _class_ref(spec.tracking)
            line.DepositLineDetail = detail
        lines.append(line)
    deposit.Line = lines  # every line, every time: a full update replaces them (dropped payments are released)
    deposit.DepartmentRef = _department_ref(spec.tracking)
    return deposit


def _invoice(spec: InvoiceSpec, settings: QuickBooksSettings, sales_tax: SalesTax) -> Invoice:
    """The invoice as the CRM has it (SPEC §8): sales lines marked TAX or NON, the tip and the surcharge on
    their own items (never taxed), the one discount line (an amount, so QuickBooks recomputes nothing) and
    the CRM's tax total as TxnTaxDetail.TotalTax, the override automated sales tax keeps. A company without
    sales tax gets no tax codes: QuickBooks refuses them there."""
    coded = sales_tax is not SalesTax.NONE
    invoice = blank(Invoice)
    invoice.CustomerRef = ref(spec.customer_id)
    # The whole DocNumber, prefix included, is the core's (core/transaction_writer.py): "" lets QuickBooks number it.
    invoice.DocNumber = spec.doc_number or None
    invoice.TxnDate = spec.txn_date.isoformat()
    invoice.PrivateNote = spec.private_note
    if spec.memo:
        invoice.CustomerMemo = blank(CustomerMemo)
        invoice.CustomerMemo.value = spec.memo
    tracking = spec.tracking
    line_class = _class_ref(tracking) if tracking.class_per_line else None
    invoice.ClassRef = None if tracking.class_per_line else _class_ref(tracking)
    invoice.DepartmentRef = _department_ref(tracking)
    lines: list[Any] = [
        _sales_line(
            settings.income_item.id,
            source.amount,
            source.description,
            (source.quantity, source.unit_price),
            tax_code=("TAX" if source.taxable else "NON") if coded else None,
            class_ref=line_class,
        )
        for source in spec.lines
    ]
    non = "NON" if coded else None
    if spec.tip:
        lines.append(_sales_line(settings.tips_item.id, spec.tip, "Tip", None, tax_code=non, class_ref=line_class))
    if spec.surcharge:
        lines.append(
            _sales_line(
                settings.surcharge_item.id, spec.surcharge, "Card surcharge", None, tax_code=non, class_ref=line_class
            )
        )
    if spec.discount is not None:
        line = blank(DiscountLine)
        line.DetailType = "DiscountLineDetail"
        line.Amount = money(spec.discount.amount)
        line.Description = spec.discount.description or None
        detail = blank(DiscountLineDetail)
        detail.PercentBased = False  # the CRM's amount, to the cent: QBO computing a percent could round otherwise
        if settings.discount_account.is_set:  # else QBO's own default discount account (Discounts given)
            detail.DiscountAccountRef = ref(settings.discount_account.id)
        detail.ClassRef = line_class
        line.DiscountLineDetail = detail
        lines.append(line)
        invoice.ApplyTaxAfterDiscount = spec.discount.apply_tax_after_discount
    invoice.Line = lines
    # Tax charged in a company without sales tax is still sent: QuickBooks' refusal then says why, where
    # leaving it out would book an invoice short of what the customer was billed.
    if spec.taxable and (coded or spec.tax):
        tax = blank(TxnTaxDetail)
        tax.TotalTax = money(spec.tax)
        if sales_tax is SalesTax.MANUAL and settings.tax_code.is_set:
            tax.TxnTaxCodeRef = ref(settings.tax_code.id)  # automated sales tax ignores a code: none sent
        invoice.TxnTaxDetail = tax
    return invoice


def _sales_line(
    item_id: str,
    amount: Decimal,
    description: str,
    quantity_price: tuple[Decimal, Decimal] | None,
    *,
    tax_code: str | None,
    class_ref: Ref | None = None,
) -> SalesItemLine:
    line = blank(SalesItemLine)
    line.DetailType = "SalesItemLineDetail"
    line.Amount = money(amount)
    line.Description = description or None
    detail = blank(SalesItemLineDetail)
    detail.ItemRef = ref(item_id)
    if quantity_price is not None:
        detail.Qty, detail.UnitPrice = quantity_price
    if tax_code is not None:
        detail.TaxCodeRef = ref(tax_code)
    detail.ClassRef = class_ref
    line.SalesItemLineDetail = detail
    return line


def _class_ref(tracking: Tracking) -> Ref | None:
    return ref(tracking.class_id) if tracking.class_id else None


def _department_ref(tracking: Tracking) -> Ref | None:
    return ref(tracking.department_id) if tracking.department_id else None


def total_of(saved: Any) -> Decimal | None:
    """A saved record's TotalAmt as QuickBooks answered it (python-quickbooks parses it as a Decimal here:
    the transport's use_decimal), exact; None when the answer has none."""
    total = getattr(saved, "TotalAmt", None)
    if total is None or total == "":
        return None
    return Decimal(str(total))


def kind_of(entity: str, record: dict[str, Any]) -> TxnKind:
    """The TxnKind of a record read from QBO."""
    if entity == "Purchase":
        return TxnKind.CHECK if record.get("PaymentType") == "Check" else TxnKind.EXPENSE
    return TxnKind(entity)


def is_voided(record: dict[str, Any]) -> bool:
    """QBO keeps a voided Payment or Invoice with zero amounts and "Voided" at the start of its PrivateNote
    (there is no status field for it in the API). Both signs are required, so a genuine zero record or a
    note that merely mentions voiding is not mistaken for one."""
    note = str(record.get("PrivateNote") or "")
    total = record.get("TotalAmt")
    try:
        zero = total is not None and Decimal(str(total)) == 0
    except ArithmeticError:
        zero = False
    return zero and note.startswith("Voided")
