"""`qbsync.v1.ConnectionService` messages to and from the core's connection objects.

Outbound, a `Connection` carries where the company is and how healthy its tokens are, never a token,
the client secret or the anti-forgery state: those stay in the server.
"""

from __future__ import annotations

from adapters.grpc.convert import payment_method_from_proto, payment_method_to_proto, timestamp_to_proto
from core.company_tax import SalesTax
from core.connection import (
    PRODUCTION,
    SANDBOX,
    BranchMapping,
    ClassTracking,
    ConnectionState,
    InvoiceNumbering,
    ListRef,
    QuickBooksConnection,
    QuickBooksSettings,
)
from core.domain import PaymentMethod
from core.errors import FieldViolation
from qbsync.v1 import connection_service_pb2 as pb

# Built from the domain enum, so that a state added on one side only fails at import.
_STATES = {s: pb.ConnectionState.Value(f"CONNECTION_STATE_{s.value}") for s in ConnectionState}
_SALES_TAX_MODES = {m: pb.SalesTaxMode.Value(f"SALES_TAX_MODE_{m.value}") for m in SalesTax}
_CLASS_TRACKING = {c: pb.ClassTracking.Value(f"CLASS_TRACKING_{c.value}") for c in ClassTracking}
_NUMBERINGS = {n: pb.InvoiceNumbering.Value(n.value) for n in InvoiceNumbering}
_NUMBERINGS_BACK: dict[int, InvoiceNumbering] = {value: numbering for numbering, value in _NUMBERINGS.items()}


def environment_from_proto(value: int, violations: list[FieldViolation]) -> str:
    """The core's environment name; "" (unspecified) lets the server's default apply."""
    if value == pb.ENVIRONMENT_SANDBOX:
        return SANDBOX
    if value == pb.ENVIRONMENT_PRODUCTION:
        return PRODUCTION
    if value != pb.ENVIRONMENT_UNSPECIFIED:
        violations.append(FieldViolation("environment", f"unknown environment {value}"))
    return ""


def environment_to_proto(environment: str) -> pb.Environment.ValueType:
    # A discovery URL (the emulator, a test double) is never the production company.
    return pb.ENVIRONMENT_PRODUCTION if environment == PRODUCTION else pb.ENVIRONMENT_SANDBOX


def list_ref_from_proto(msg: pb.QuickBooksListRef) -> ListRef:
    return ListRef(id=msg.id.strip(), name=msg.name.strip())


def list_ref_to_proto(ref: ListRef) -> pb.QuickBooksListRef:
    return pb.QuickBooksListRef(id=ref.id, name=ref.name)


def settings_from_proto(msg: pb.Settings, violations: list[FieldViolation]) -> QuickBooksSettings:
    methods: dict[PaymentMethod, ListRef] = {}
    for i, mapping in enumerate(msg.payment_methods):
        path = f"settings.payment_methods[{i}]"
        method = payment_method_from_proto(mapping.method, f"{path}.method", violations)
        # A method sent as itself (not an unknown one standing in as OTHER, already reported) mapped twice.
        if method in methods and mapping.method == payment_method_to_proto(method):
            violations.append(FieldViolation(f"{path}.method", f"{method.value} is mapped more than once"))
        methods[method] = list_ref_from_proto(mapping.quickbooks_payment_method)
    return QuickBooksSettings(
        deposit_account=list_ref_from_proto(msg.deposit_account),
        refund_bank_account=list_ref_from_proto(msg.refund_bank_account),
        accounts_receivable_account=list_ref_from_proto(msg.accounts_receivable_account),
        income_item=list_ref_from_proto(msg.income_item),
        tax_code=list_ref_from_proto(msg.tax_code),
        discount_account=list_ref_from_proto(msg.discount_account),
        tips_item=list_ref_from_proto(msg.tips_item),
        surcharge_item=list_ref_from_proto(msg.surcharge_item),
        processing_fee_account=list_ref_from_proto(msg.processing_fee_account),
        payout_bank_account=list_ref_from_proto(msg.payout_bank_account),
        chargeback_account=list_ref_from_proto(msg.chargeback_account),
        adjustment_account=list_ref_from_proto(msg.adjustment_account),
        payment_methods=methods,
        doc_number_prefix=msg.doc_number_prefix,
        invoice_numbering=_invoice_numbering_from_proto(msg.invoice_numbering, violations),
        branch_mappings=tuple(
            BranchMapping(
                branch_id=m.branch_id.strip(),
                service_type=m.service_type.strip(),
                class_ref=ListRef(id=m.class_id.strip(), name=m.class_name.strip()),
                department_ref=ListRef(id=m.department_id.strip(), name=m.department_name.strip()),
            )
            for m in msg.branch_mappings
        ),
    )


def settings_to_proto(settings: QuickBooksSettings) -> pb.Settings:
    return pb.Settings(
        deposit_account=list_ref_to_proto(settings.deposit_account),
        refund_bank_account=list_ref_to_proto(settings.refund_bank_account),
        accounts_receivable_account=list_ref_to_proto(settings.accounts_receivable_account),
        income_item=list_ref_to_proto(settings.income_item),
        tax_code=list_ref_to_proto(settings.tax_code),
        discount_account=list_ref_to_proto(settings.discount_account),
        tips_item=list_ref_to_proto(settings.tips_item),
        surcharge_item=list_ref_to_proto(settings.surcharge_item),
        processing_fee_account=list_ref_to_proto(settings.processing_fee_account),
        payout_bank_account=list_ref_to_proto(settings.payout_bank_account),
        chargeback_account=list_ref_to_proto(settings.chargeback_account),
        adjustment_account=list_ref_to_proto(settings.adjustment_account),
        payment_methods=[
            pb.PaymentMethodMapping(
                method=payment_method_to_proto(method), quickbooks_payment_method=list_ref_to_proto(ref)
            )
            for method, ref in sorted(
                settings.payment_methods.items(), key=lambda item: payment_method_to_proto(item[0])
            )
        ],
        doc_number_prefix=settings.doc_number_prefix,
        invoice_numbering=_invoice_numbering_to_proto(settings.invoice_numbering),
        branch_mappings=[
            pb.BranchMapping(
                branch_id=m.branch_id,
                service_type=m.service_type,
                class_id=m.class_ref.id,
                class_name=m.class_ref.name,
                department_id=m.department_ref.id,
                department_name=m.department_ref.name,
            )
            for m in settings.branch_mappings
        ],
    )


def _invoice_numbering_from_proto(value: int, violations: list[FieldViolation]) -> InvoiceNumbering | None:
    if value == pb.INVOICE_NUMBERING_UNSPECIFIED:
        return None
    if value in _NUMBERINGS_BACK:
        return _NUMBERINGS_BACK[value]
    violations.append(FieldViolation("settings.invoice_numbering", f"unknown invoice numbering {value}"))
    return None


def _invoice_numbering_to_proto(numbering: InvoiceNumbering | None) -> pb.InvoiceNumbering.ValueType:
    return pb.INVOICE_NUMBERING_UNSPECIFIED if numbering is None else _NUMBERINGS[numbering]


def connection_to_proto(connection: QuickBooksConnection) -> pb.Connection:
    msg = pb.Connection(
        state=_STATES[connection.state],
        realm_id=connection.realm_id,
        company_name=connection.company_name,
        environment=environment_to_proto(connection.environment),
        settings=settings_to_proto(connection.settings),
        sales_tax_mode=sales_tax_mode_to_proto(connection.sales_tax),
        branch_id=connection.branch_id,
        class_tracking=_CLASS_TRACKING[connection.class_tracking],
        track_departments=connection.track_departments,
        custom_transaction_numbers=connection.custom_txn_numbers,
        effective_invoice_numbering=_NUMBERINGS[connection.invoice_numbering],
    )
    if connection.connect_time is not None:
        msg.connect_time.CopyFrom(timestamp_to_proto(connection.connect_time))
    if connection.access_token_expires is not None:
        msg.access_token_expire_time.CopyFrom(timestamp_to_proto(connection.access_token_expires))
    if connection.refresh_token_expires is not None:
        msg.refresh_token_expire_time.CopyFrom(timestamp_to_proto(connection.refresh_token_expires))
    return msg


def sales_tax_mode_to_proto(sales_tax: SalesTax | None) -> pb.SalesTaxMode.ValueType:
    # None (never read) is UNSPECIFIED: a client must not take an unread company for one without sales tax.
    return pb.SALES_TAX_MODE_UNSPECIFIED if sales_tax is None else _SALES_TAX_MODES[sales_tax]
