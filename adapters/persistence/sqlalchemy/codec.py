"""JSON for the CRM snapshots and job details stored as text.

Amounts are written as decimal strings and times as ISO 8601 with their UTC offset, so both come back
exactly (a JSON number would be read back as a float). Keys added later are read with `.get()` and the
domain's default, so rows written before them still load (a payment stored before tips has none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from core.connection import BranchMapping, InvoiceNumbering, ListRef, QuickBooksSettings
from core.domain import (
    Discount,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    JobError,
    Payment,
    PaymentMethod,
    Payout,
    PayoutAdjustment,
    Refund,
    SyncAction,
    SyncResult,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: qbsync stores timezone-aware times only")
    return value.astimezone(UTC).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _exact(value: Decimal) -> str:
    if not isinstance(value, Decimal):
        raise TypeError(f"amounts and quantities must be Decimal, not {type(value).__name__}")
    return str(value)


def _exact_or_none(value: Decimal | None) -> str | None:
    return None if value is None else _exact(value)


def _decimal_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


_NONE = "0.00"  # an amount added later (a tip, a tax) in a row written before it: there was none


def payment_to_json(payment: Payment) -> str:
    return _dumps(
        {
            "payment_id": payment.payment_id,
            "amount": _exact(payment.amount),
            "method": payment.method.value,
            "received_time": _time(payment.received_time),
            "reference": payment.reference,
            "refunds": [
                {
                    "refund_id": r.refund_id,
                    "amount": _exact(r.amount),
                    "refunded_time": _time(r.refunded_time),
                    "memo": r.memo,
                }
                for r in payment.refunds
            ],
            "tip": _exact(payment.tip),
            "processing_fee": _exact(payment.processing_fee),
        }
    )


def payment_from_json(text: str) -> Payment:
    data = json.loads(text)
    return Payment(
        payment_id=data["payment_id"],
        amount=Decimal(data["amount"]),
        method=PaymentMethod(data["method"]),
        received_time=_parse_time(data["received_time"]),
        reference=data["reference"],
        refunds=tuple(
            Refund(
                refund_id=r["refund_id"],
                amount=Decimal(r["amount"]),
                refunded_time=_parse_time(r["refunded_time"]),
                memo=r["memo"],
            )
            for r in data["refunds"]
        ),
        tip=Decimal(data.get("tip", _NONE)),
        processing_fee=Decimal(data.get("processing_fee", _NONE)),
    )


def job_to_json(job: Job) -> str:
    return _dumps(
        {
            "job_id": job.job_id,
            "number": job.number,
            "service_date": job.service_date.isoformat(),
            "lines": [
                {
                    "description": line.description,
                    "quantity": _exact(line.quantity),
                    "unit_price": _exact(line.unit_price),
                    "amount": _exact(line.amount),
                    "taxable": line.taxable,
                }
                for line in job.lines
            ],
            "tax": _exact(job.tax),
            "tax_rate_name": job.tax_rate_name,
            "discounts": [
                {
                    "description": d.description,
                    "amount": _exact_or_none(d.amount),
                    "percent": _exact_or_none(d.percent),
                    "after_tax": d.after_tax,
                }
                for d in job.discounts
            ],
            "tip": _exact(job.tip),
            "surcharge": _exact(job.surcharge),
            "stated_total": _exact_or_none(job.stated_total),
        }
    )


def job_from_json(text: str) -> Job:
    data = json.loads(text)
    return Job(
        job_id=data["job_id"],
        number=data["number"],
        service_date=date.fromisoformat(data["service_date"]),
        lines=tuple(
            InvoiceLine(
                description=line["description"],
                quantity=Decimal(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
                amount=Decimal(line["amount"]),
                taxable=line.get("taxable", False),
            )
            for line in data["lines"]
        ),
        tax=Decimal(data.get("tax", _NONE)),
        tax_rate_name=data.get("tax_rate_name", ""),
        discounts=tuple(
            Discount(
                description=d["description"],
                amount=_decimal_or_none(d["amount"]),
                percent=_decimal_or_none(d["percent"]),
                after_tax=d["after_tax"],
            )
            for d in data.get("discounts", [])
        ),
        tip=Decimal(data.get("tip", _NONE)),
        surcharge=Decimal(data.get("surcharge", _NONE)),
        stated_total=_decimal_or_none(data.get("stated_total")),
    )


def payout_to_json(payout: Payout) -> str:
    return _dumps(
        {
            "payout_id": payout.payout_id,
            "arrival_date": payout.arrival_date.isoformat(),
            "amount": _exact(payout.amount),
            "payment_ids": list(payout.payment_ids),
            "refund_ids": list(payout.refund_ids),
            "fees": _exact(payout.fees),
            "chargebacks": _exact(payout.chargebacks),
            "adjustments": [{"amount": _exact(a.amount), "memo": a.memo} for a in payout.adjustments],
        }
    )


def payout_from_json(text: str) -> Payout:
    data = json.loads(text)
    return Payout(
        payout_id=data["payout_id"],
        arrival_date=date.fromisoformat(data["arrival_date"]),
        amount=Decimal(data["amount"]),
        payment_ids=tuple(data["payment_ids"]),
        refund_ids=tuple(data["refund_ids"]),
        fees=Decimal(data["fees"]),
        chargebacks=Decimal(data["chargebacks"]),
        adjustments=tuple(PayoutAdjustment(Decimal(a["amount"]), a["memo"]) for a in data["adjustments"]),
    )


def applied_to_json(applied: Mapping[str, Decimal]) -> str:
    return _dumps({job_id: _exact(amount) for job_id, amount in applied.items()})


def applied_from_json(text: str) -> dict[str, Decimal]:
    return {job_id: Decimal(amount) for job_id, amount in json.loads(text).items()}


def results_to_json(results: list[SyncResult]) -> str:
    return _dumps(
        [
            {
                "entity_type": r.entity.type.value,
                "entity_id": r.entity.id,
                "quickbooks_id": r.quickbooks_id,
                "action": r.action.value,
            }
            for r in results
        ]
    )


def results_from_json(text: str) -> list[SyncResult]:
    return [
        SyncResult(
            entity=EntityRef(EntityType(r["entity_type"]), r["entity_id"]),
            quickbooks_id=r["quickbooks_id"],
            action=SyncAction(r["action"]),
        )
        for r in json.loads(text)
    ]


def error_to_json(error: JobError | None) -> str | None:
    if error is None:
        return None
    return _dumps(
        {
            "reason": error.reason,
            "message": error.message,
            "retryable": error.retryable,
            "metadata": dict(error.metadata),
        }
    )


def error_from_json(text: str | None) -> JobError | None:
    if text is None:
        return None
    data = json.loads(text)
    return JobError(
        reason=data["reason"],
        message=data["message"],
        retryable=data["retryable"],
        metadata=dict(data["metadata"]),
    )


def _ref(ref: ListRef) -> dict[str, str]:
    return {"id": ref.id, "name": ref.name}


def _parse_ref(data: Mapping[str, str] | None) -> ListRef:
    return ListRef(id=data["id"], name=data["name"]) if data else ListRef()


def settings_to_json(settings: QuickBooksSettings) -> str:
    return _dumps(
        {
            "deposit_account": _ref(settings.deposit_account),
            "refund_bank_account": _ref(settings.refund_bank_account),
            "accounts_receivable_account": _ref(settings.accounts_receivable_account),
            "income_item": _ref(settings.income_item),
            "tax_code": _ref(settings.tax_code),
            "discount_account": _ref(settings.discount_account),
            "tips_item": _ref(settings.tips_item),
            "surcharge_item": _ref(settings.surcharge_item),
            "processing_fee_account": _ref(settings.processing_fee_account),
            "payout_bank_account": _ref(settings.payout_bank_account),
            "chargeback_account": _ref(settings.chargeback_account),
            "adjustment_account": _ref(settings.adjustment_account),
            "payment_methods": {method.value: _ref(ref) for method, ref in settings.payment_methods.items()},
            "doc_number_prefix": settings.doc_number_prefix,
            "invoice_numbering": None if settings.invoice_numbering is None else settings.invoice_numbering.value,
            "branch_mappings": [
                {
                    "branch_id": m.branch_id,
                    "service_type": m.service_type,
                    "class": _ref(m.class_ref),
                    "department": _ref(m.department_ref),
                }
                for m in settings.branch_mappings
            ],
        }
    )


def settings_from_json(text: str) -> QuickBooksSettings:
    # .get() throughout: a setting added later reads as unset (its default) from rows written before it.
    data = json.loads(text)
    return QuickBooksSettings(
        deposit_account=_parse_ref(data.get("deposit_account")),
        refund_bank_account=_parse_ref(data.get("refund_bank_account")),
        accounts_receivable_account=_parse_ref(data.get("accounts_receivable_account")),
        income_item=_parse_ref(data.get("income_item")),
        tax_code=_parse_ref(data.get("tax_code")),
        discount_account=_parse_ref(data.get("discount_account")),
        tips_item=_parse_ref(data.get("tips_item")),
        surcharge_item=_parse_ref(data.get("surcharge_item")),
        processing_fee_account=_parse_ref(data.get("processing_fee_account")),
        payout_bank_account=_parse_ref(data.get("payout_bank_account")),
        chargeback_account=_parse_ref(data.get("chargeback_account")),
        adjustment_account=_parse_ref(data.get("adjustment_account")),
        payment_methods={
            PaymentMethod(method): _parse_ref(ref) for method, ref in data.get("payment_methods", {}).items()
        },
        doc_number_prefix=data.get("doc_number_prefix", ""),
        invoice_numbering=_invoice_numbering(data.get("invoice_numbering")),
        branch_mappings=tuple(
            BranchMapping(
                branch_id=m["branch_id"],
                service_type=m["service_type"],
                class_ref=_parse_ref(m["class"]),
                department_ref=_parse_ref(m["department"]),
            )
            for m in data.get("branch_mappings", [])
        ),
    )


def _invoice_numbering(value: str | None) -> InvoiceNumbering | None:
    return None if value is None else InvoiceNumbering(value)
