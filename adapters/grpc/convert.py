"""Protobuf messages of `qbsync.v1` to and from the core's objects.

Inbound, the conversion never stops at the first bad field: each problem a protobuf value has that the
core cannot even represent (an amount with mixed signs, a missing time, a quantity that is not a number)
becomes a `FieldViolation` named by its proto field path (`payment.refunds[1].amount`), and conversion
goes on with a stand-in value so that the rest of the request is still checked. The servicer passes
these violations to the use case, which checks the caller's permission first and then reports them with
its own findings at once (core.errors.merge_violations): a request with violations is rejected, so a
stand-in is never stored.

Amounts are exact: a `google.type.Money` becomes a `Decimal` in whole cents without passing through a
float, and back. Each amount's `currency_code` is handed to the core as it was sent (`AmountCurrency`, by
field path): whether a currency is acceptable is the core's rule (core/currency.py), not this adapter's.
Numbers are read under local decimal contexts, never the thread's: whatever a caller
sends (a thousand digits, an exponent of a million) becomes a value or a FieldViolation, never a decimal
signal that the error mapping would take for a bug of ours (INTERNAL).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import (
    Clamped,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Subnormal,
    Underflow,
    localcontext,
)
from operator import attrgetter
from typing import Any, TypeVar, cast

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.type import date_pb2, money_pb2

from adapters.grpc.status import status_for_job_error
from core.currency import AmountCurrency
from core.domain import (
    Customer,
    Discount,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Payout,
    PayoutAdjustment,
    Refund,
    SyncAction,
    SyncJob,
    SyncJobState,
    SyncRecord,
    SyncResult,
    SyncState,
)
from core.errors import FieldViolation, quoted
from core.money import CENT
from core.preview import PlannedAction, PlannedOperation
from core.reconcile import Difference
from qbsync.v1 import resources_pb2, sync_service_pb2

# Stand-ins for values that could not be converted; see the module docstring.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_ZERO = Decimal(0)

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_NANOS_PER_UNIT = 1_000_000_000
_NANOS_PER_CENT = 10_000_000
_MAX_NANOS = _NANOS_PER_UNIT - 1

# Decimal strings: plain ASCII notation, as JSON and every language's decimal types write it (Decimal()
# alone would also take "NaN", "Infinity" and other scripts' digits), and of a size the core can compute
# with: at most MAX_DECIMAL_DIGITS digits, magnitude within 10**±MAX_DECIMAL_EXPONENT, so that no product
# or sum with an amount can leave the default context's range. Tighter bounds of what QuickBooks takes are
# the core's validation.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_DECIMAL_TEXT_LENGTH = 100
MAX_DECIMAL_DIGITS = 64
MAX_DECIMAL_EXPONENT = 64
_EVERY_SIGNAL = [Clamped, InvalidOperation, Inexact, Overflow, Rounded, Subnormal, Underflow]
# create_decimal under this context either keeps the value exactly or raises DecimalException.
_DECIMAL_TEXT_CONTEXT = Context(
    prec=MAX_DECIMAL_DIGITS, Emax=MAX_DECIMAL_EXPONENT, Emin=-MAX_DECIMAL_EXPONENT, traps=_EVERY_SIGNAL
)
# Money: int64 units and int32 nanos need 19 + 9 digits; the default context has exactly 28 and nothing
# would tell if an amount were rounded. Here every step is exact, or it raises (Rounded alone is not
# trapped: quantizing 1.230000000 to cents drops only zeros).
_MONEY_CONTEXT = Context(prec=40, traps=[InvalidOperation, Inexact, Overflow])

# Built from the domain enums, so that a value added to one side but not the other fails at import.
_PAYMENT_METHODS = {m: resources_pb2.PaymentMethod.Value(f"PAYMENT_METHOD_{m.value}") for m in PaymentMethod}
_PAYMENT_METHODS_IN: dict[int, PaymentMethod] = {v: m for m, v in _PAYMENT_METHODS.items()}
_ENTITY_TYPES = {t: resources_pb2.EntityType.Value(f"ENTITY_TYPE_{t.value}") for t in EntityType}
_ENTITY_TYPES_IN: dict[int, EntityType] = {v: t for t, v in _ENTITY_TYPES.items()}
_SYNC_STATES = {s: resources_pb2.SyncState.Value(f"SYNC_STATE_{s.value}") for s in SyncState}
_JOB_STATES = {s: resources_pb2.SyncJob.State.Value(f"STATE_{s.value}") for s in SyncJobState}
_SYNC_ACTIONS = {a: resources_pb2.SyncAction.Value(f"SYNC_ACTION_{a.value}") for a in SyncAction}
# A customer is the same strings under the same names on both sides: copied by name, so that a field added
# to one side but not the other fails at import.
_CUSTOMER_FIELDS = tuple(field.name for field in dataclasses.fields(Customer))
if set(_CUSTOMER_FIELDS) != set(resources_pb2.Customer.DESCRIPTOR.fields_by_name):
    raise ImportError("core.domain.Customer and qbsync.v1.Customer must have the same fields")
# The message's values in the dataclass' field order, read at once.
_customer_values = attrgetter(*_CUSTOMER_FIELDS)

Violations = list[FieldViolation]
_Item = TypeVar("_Item")
_Converted = TypeVar("_Converted")
_Message = TypeVar("_Message", bound=Message)


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _each(
    convert: Callable[[_Item, str, Violations], _Converted], items: Iterable[_Item], path: str, violations: Violations
) -> tuple[_Converted, ...]:
    """`convert` of every item of a repeated field, each named by its index (`payment.refunds[1]`)."""
    return tuple(convert(item, f"{path}[{i}]", violations) for i, item in enumerate(items))


def _enum_from_proto(
    values: Mapping[int, _Converted], value: int, what: str, stand_in: _Converted, path: str, violations: Violations
) -> _Converted:
    """The domain value of a proto enum value; unset (`..._UNSPECIFIED = 0`) or unknown stands in as `stand_in`."""
    found = values.get(value)
    if found is None:
        violations.append(FieldViolation(path, "is required" if value == 0 else f"unknown {what} {value}"))
        return stand_in
    return found


# --- values ------------------------------------------------------------------------------------------


def money_from_proto(money: money_pb2.Money, path: str, violations: Violations) -> Decimal:
    """The exact amount, in cents. An unset Money is zero (the core decides whether zero is allowed).

    A malformed amount is reported and stands in as its exact value, so the core's checks of related
    fields (refunds within payment) still see what the caller meant.
    """
    units, nanos = money.units, money.nanos
    code = money.currency_code
    if code and not _CURRENCY_CODE.fullmatch(code):
        violations.append(
            FieldViolation(_at(path, "currency_code"), "must be a three-letter ISO 4217 code such as USD")
        )
    if (
        not nanos % _NANOS_PER_CENT
        and -_MAX_NANOS <= nanos <= _MAX_NANOS
        and not (units > 0 > nanos or units < 0 < nanos)
    ):
        # Well-formed, as nearly every amount is: whole cents, exactly (the same value and exponent as the
        # quantize below, without entering a local context).
        return _MONEY_CONTEXT.multiply(units * 100 + nanos // _NANOS_PER_CENT, CENT)
    with localcontext(_MONEY_CONTEXT):
        # scaleb shifts the decimal point without rounding: the sum is exact.
        amount = Decimal(units) + Decimal(nanos).scaleb(-9)
        if abs(nanos) > _MAX_NANOS:
            violations.append(FieldViolation(path, "nanos must be between -999,999,999 and 999,999,999"))
        elif (units > 0 and nanos < 0) or (units < 0 and nanos > 0):
            violations.append(FieldViolation(path, "units and nanos must have the same sign"))
        elif nanos % _NANOS_PER_CENT:
            violations.append(FieldViolation(path, "must be in whole cents"))
        else:
            return amount.quantize(CENT)
        return amount


def amount_currencies(message: Message, path: str = "") -> tuple[AmountCurrency, ...]:
    """The `currency_code` of every `google.type.Money` set anywhere in `message`, each named by its field
    path (`payments[1].refunds[0].amount`). Found by walking the message rather than listed by hand, so an
    amount field added to the API later is covered without anyone remembering to."""
    found: list[AmountCurrency] = []
    _collect_currencies(message, path, found)
    return tuple(found)


def _collect_currencies(message: Message, path: str, found: list[AmountCurrency]) -> None:
    paths = _MONEY_PATHS.get(type(message))
    if paths is None:
        # The upb runtime's descriptor type is another class with the same interface.
        paths = _MONEY_PATHS[type(message)] = _money_paths(cast(Descriptor, message.DESCRIPTOR))
    for name, repeated, is_money in paths:
        if repeated:
            items = getattr(message, name)
            if not items:
                continue
            field_path = _at(path, name)
            for index, item in enumerate(items):
                item_path = f"{field_path}[{index}]"
                if is_money:
                    found.append(AmountCurrency(item_path, item.currency_code))
                else:
                    _collect_currencies(item, item_path, found)
        elif message.HasField(name):
            if is_money:
                found.append(AmountCurrency(_at(path, name), getattr(message, name).currency_code))
            else:
                _collect_currencies(getattr(message, name), _at(path, name), found)


_MoneyPaths = tuple[tuple[str, bool, bool], ...]
# Per message class: the fields that are a Money or lead to one, worked out once per class rather than per
# call (two threads racing to fill it in only work the same entry out twice).
_MONEY_PATHS: dict[type[Message], _MoneyPaths] = {}


def _money_paths(descriptor: Descriptor) -> _MoneyPaths:
    """The fields of `descriptor` that are a Money or a message that holds one at any depth, each as (name,
    repeated, is a Money), in field-number order (the order the walk reports amounts in). Scalars and maps
    hold no Money in this API; a message type without any Money below it (Customer, Timestamp) is not
    entered at all."""
    return tuple(
        (field.name, field.is_repeated, kind.full_name == _MONEY_TYPE)
        for field, kind in _message_fields(descriptor)
        if _holds_money(kind)
    )


_MONEY_TYPE = money_pb2.Money.DESCRIPTOR.full_name


def _message_fields(descriptor: Descriptor) -> list[tuple[FieldDescriptor, Descriptor]]:
    """The message-typed fields of `descriptor` with their types, in field-number order, maps left out."""
    return [
        (field, field.message_type)
        for field in sorted(descriptor.fields, key=lambda f: f.number)
        if field.message_type is not None and not field.message_type.GetOptions().map_entry
    ]


def _holds_money(descriptor: Descriptor) -> bool:
    """Whether `descriptor` is Money or reaches a Money field through message fields (cycles allowed)."""
    seen, pending = {descriptor.full_name}, [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name == _MONEY_TYPE:
            return True
        for _field, kind in _message_fields(current):
            if kind.full_name not in seen:
                seen.add(kind.full_name)
                pending.append(kind)
    return False


def money_to_proto(amount: Decimal, currency_code: str = "") -> money_pb2.Money:
    """Raises ValueError for an amount finer than nanos: money must never be rounded silently."""
    nanos_total = amount.scaleb(9)
    if nanos_total != nanos_total.to_integral_value():
        raise ValueError(f"{amount} cannot be represented exactly as google.type.Money")
    total = int(nanos_total)
    units, nanos = divmod(abs(total), _NANOS_PER_UNIT)
    sign = -1 if total < 0 else 1  # Money wants units and nanos with the same sign.
    return money_pb2.Money(currency_code=currency_code, units=sign * units, nanos=sign * nanos)


def _required(kind: type[_Message], parent: Message, name: str, path: str, violations: Violations) -> _Message | None:
    """The message field `name` of `parent`, or None, reported as required, when it is not set."""
    if not parent.HasField(name):
        violations.append(FieldViolation(_at(path, name), "is required"))
        return None
    value: _Message = getattr(parent, name)
    return value


def timestamp_from_proto(parent: Message, name: str, path: str, violations: Violations) -> datetime:
    """A required timestamp field of `parent`, as a timezone-aware UTC datetime."""
    timestamp = _required(timestamp_pb2.Timestamp, parent, name, path, violations)
    if timestamp is None:
        return _EPOCH
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if _EARLIEST_SECONDS <= seconds <= _LATEST_SECONDS and 0 <= nanos < _NANOS_PER_UNIT:
        # What ToDatetime computes for a valid timestamp (nanos truncated to microseconds), without its
        # checks and time zone conversion: a third of the cost. Any other value gets its verdict below.
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    try:
        return timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        violations.append(FieldViolation(_at(path, name), "is not a valid time"))
        return _EPOCH


# The seconds since the epoch of datetime's (and so of google.protobuf.Timestamp's) first and last second.
_EARLIEST_SECONDS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)
_LATEST_SECONDS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)


def timestamp_to_proto(time: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    set_timestamp(timestamp, time)
    return timestamp


def set_timestamp(timestamp: timestamp_pb2.Timestamp, time: datetime) -> None:
    """Writes `time` into `timestamp` in place (a field of a message being built: cheaper than building a
    Timestamp and copying it in)."""
    if time.tzinfo is UTC:
        # What FromDatetime computes for the UTC times the core keeps, without its time tuple round trip.
        timestamp.seconds = (time - _EPOCH) // _SECOND
        timestamp.nanos = time.microsecond * 1000
    else:
        timestamp.FromDatetime(time)


_SECOND = timedelta(seconds=1)


def date_from_proto(parent: Message, name: str, path: str, violations: Violations) -> date:
    """A required full date (google.type.Date allows partial dates; an invoice date cannot be one)."""
    value = _required(date_pb2.Date, parent, name, path, violations)
    if value is None:
        return _EPOCH_DATE
    field_path = _at(path, name)
    if not (value.year and value.month and value.day):
        violations.append(FieldViolation(field_path, "must be a full date: year, month and day"))
        return _EPOCH_DATE
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        violations.append(FieldViolation(field_path, "is not a valid date"))
        return _EPOCH_DATE


def date_to_proto(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def decimal_from_text(text: str) -> Decimal | None:
    """The exact value of a decimal string such as "3.5" or "1e3", or None when it is not one or is
    beyond the digits and magnitude the core computes with (MAX_DECIMAL_DIGITS, MAX_DECIMAL_EXPONENT)."""
    text = text.strip()
    if len(text) > MAX_DECIMAL_TEXT_LENGTH or not _DECIMAL_TEXT.fullmatch(text):
        return None
    try:
        return _DECIMAL_TEXT_CONTEXT.create_decimal(text)
    except DecimalException:
        return None


def quantity_from_proto(text: str, path: str, violations: Violations) -> Decimal:
    """A decimal string such as "3.5". A bad one stands in as zero, which the core also rejects; zero
    also keeps the core from comparing the line's amount with a quantity the caller never sent."""
    quantity = decimal_from_text(text)
    if quantity is None:
        violations.append(
            FieldViolation(
                path,
                f'must be a decimal number such as "3.5", at most {MAX_DECIMAL_DIGITS} digits '
                f"and within 1e±{MAX_DECIMAL_EXPONENT}, not {quoted(text)}",
            )
        )
        return _ZERO
    return quantity


def quantity_to_proto(quantity: Decimal) -> str:
    return str(quantity)


def percent_from_proto(text: str, path: str, violations: Violations) -> Decimal:
    """A decimal string such as "12.5". A bad one stands in as zero, which the core also rejects (a
    percent is more than zero), so the field is named once and no total is computed from the stand-in."""
    percent = decimal_from_text(text)
    if percent is None:
        violations.append(FieldViolation(path, f'must be a decimal number such as "12.5", not {quoted(text)}'))
        return _ZERO
    return percent


def _optional_money(parent: Message, name: str, path: str, violations: Violations) -> Decimal | None:
    """A Money field whose absence means something (not given) other than zero."""
    if not parent.HasField(name):
        return None
    return money_from_proto(getattr(parent, name), _at(path, name), violations)


# --- CRM records ---------------------------------------------------------------------------------------


def customer_from_proto(msg: resources_pb2.Customer) -> Customer:
    return Customer(*_customer_values(msg))


def customer_to_proto(customer: Customer) -> resources_pb2.Customer:
    return resources_pb2.Customer(**{name: getattr(customer, name) for name in _CUSTOMER_FIELDS})


def opportunity_from_proto(msg: resources_pb2.Opportunity) -> Opportunity:
    return Opportunity(
        opportunity_id=msg.opportunity_id,
        number=msg.number,
        customer=customer_from_proto(msg.customer),
        branch_id=msg.branch_id,
        service_type=msg.service_type,
    )


def opportunity_to_proto(opportunity: Opportunity) -> resources_pb2.Opportunity:
    return resources_pb2.Opportunity(
        opportunity_id=opportunity.opportunity_id,
        number=opportunity.number,
        customer=customer_to_proto(opportunity.customer),
        branch_id=opportunity.branch_id,
        service_type=opportunity.service_type,
    )


def refund_from_proto(msg: resources_pb2.Refund, path: str, violations: Violations) -> Refund:
    return Refund(
        refund_id=msg.refund_id,
        amount=money_from_proto(msg.amount, _at(path, "amount"), violations),
        refunded_time=timestamp_from_proto(msg, "refunded_time", path, violations),
        memo=msg.memo,
    )


def refund_to_proto(refund: Refund) -> resources_pb2.Refund:
    return resources_pb2.Refund(
        refund_id=refund.refund_id,
        amount=money_to_proto(refund.amount),
        refunded_time=timestamp_to_proto(refund.refunded_time),
        memo=refund.memo,
    )


def payment_method_from_proto(value: int, path: str, violations: Violations) -> PaymentMethod:
    return _enum_from_proto(_PAYMENT_METHODS_IN, value, "payment method", PaymentMethod.OTHER, path, violations)


def payment_method_to_proto(method: PaymentMethod) -> resources_pb2.PaymentMethod.ValueType:
    return _PAYMENT_METHODS[method]


def payment_from_proto(msg: resources_pb2.Payment, path: str, violations: Violations) -> Payment:
    return Payment(
        payment_id=msg.payment_id,
        amount=money_from_proto(msg.amount, _at(path, "amount"), violations),
        method=payment_method_from_proto(msg.method, _at(path, "method"), violations),
        received_time=timestamp_from_proto(msg, "received_time", path, violations),
        reference=msg.reference,
        refunds=_each(refund_from_proto, msg.refunds, _at(path, "refunds"), violations),
        tip=money_from_proto(msg.tip, _at(path, "tip"), violations),
        processing_fee=money_from_proto(msg.processing_fee, _at(path, "processing_fee"), violations),
    )


def payment_to_proto(payment: Payment) -> resources_pb2.Payment:
    return resources_pb2.Payment(
        payment_id=payment.payment_id,
        amount=money_to_proto(payment.amount),
        method=_PAYMENT_METHODS[payment.method],
        received_time=timestamp_to_proto(payment.received_time),
        reference=payment.reference,
        refunds=[refund_to_proto(r) for r in payment.refunds],
        tip=_money_unless_zero(payment.tip),
        processing_fee=_money_unless_zero(payment.processing_fee),
    )


def _money_unless_zero(amount: Decimal) -> money_pb2.Money | None:
    """An amount that is zero when absent, left unset when it is zero (as a CRM would send it)."""
    return money_to_proto(amount) if amount else None


def invoice_line_from_proto(msg: resources_pb2.InvoiceLine, path: str, violations: Violations) -> InvoiceLine:
    return InvoiceLine(
        description=msg.description,
        quantity=quantity_from_proto(msg.quantity, _at(path, "quantity"), violations),
        unit_price=money_from_proto(msg.unit_price, _at(path, "unit_price"), violations),
        amount=money_from_proto(msg.amount, _at(path, "amount"), violations),
        taxable=msg.taxable,
    )


def invoice_line_to_proto(line: InvoiceLine) -> resources_pb2.InvoiceLine:
    return resources_pb2.InvoiceLine(
        description=line.description,
        quantity=quantity_to_proto(line.quantity),
        unit_price=money_to_proto(line.unit_price),
        amount=money_to_proto(line.amount),
        taxable=line.taxable,
    )


def discount_from_proto(msg: resources_pb2.Discount, path: str, violations: Violations) -> Discount:
    """A discount with neither value set is passed on as such: that it needs one is the core's rule."""
    value = msg.WhichOneof("value")
    return Discount(
        description=msg.description,
        amount=money_from_proto(msg.amount, _at(path, "amount"), violations) if value == "amount" else None,
        percent=percent_from_proto(msg.percent, _at(path, "percent"), violations) if value == "percent" else None,
        after_tax=msg.after_tax,
    )


def discount_to_proto(discount: Discount) -> resources_pb2.Discount:
    msg = resources_pb2.Discount(description=discount.description, after_tax=discount.after_tax)
    if discount.amount is not None:
        msg.amount.CopyFrom(money_to_proto(discount.amount))
    elif discount.percent is not None:
        msg.percent = str(discount.percent)
    return msg


def job_from_proto(msg: resources_pb2.Job, path: str, violations: Violations) -> Job:
    return Job(
        job_id=msg.job_id,
        number=msg.number,
        service_date=date_from_proto(msg, "service_date", path, violations),
        lines=_each(invoice_line_from_proto, msg.lines, _at(path, "lines"), violations),
        tax=money_from_proto(msg.tax, _at(path, "tax"), violations),
        tax_rate_name=msg.tax_rate_name,
        discounts=_each(discount_from_proto, msg.discounts, _at(path, "discounts"), violations),
        tip=money_from_proto(msg.tip, _at(path, "tip"), violations),
        surcharge=money_from_proto(msg.surcharge, _at(path, "surcharge"), violations),
        # Unset is "the CRM states no total", not a total of zero.
        stated_total=_optional_money(msg, "total", path, violations),
    )


def job_to_proto(job: Job) -> resources_pb2.Job:
    return resources_pb2.Job(
        job_id=job.job_id,
        number=job.number,
        service_date=date_to_proto(job.service_date),
        lines=[invoice_line_to_proto(line) for line in job.lines],
        tax=_money_unless_zero(job.tax),
        tax_rate_name=job.tax_rate_name,
        discounts=[discount_to_proto(d) for d in job.discounts],
        tip=_money_unless_zero(job.tip),
        surcharge=_money_unless_zero(job.surcharge),
        total=money_to_proto(job.stated_total) if job.stated_total is not None else None,
    )


def payout_adjustment_from_proto(
    msg: resources_pb2.PayoutAdjustment, path: str, violations: Violations
) -> PayoutAdjustment:
    return PayoutAdjustment(amount=money_from_proto(msg.amount, _at(path, "amount"), violations), memo=msg.memo)


def payout_adjustment_to_proto(adjustment: PayoutAdjustment) -> resources_pb2.PayoutAdjustment:
    return resources_pb2.PayoutAdjustment(amount=money_to_proto(adjustment.amount), memo=adjustment.memo)


def payout_from_proto(msg: resources_pb2.Payout, path: str, violations: Violations) -> Payout:
    """Ids are passed on as sent: whether each names a record qbsync knows is the core's rule."""
    return Payout(
        payout_id=msg.payout_id,
        arrival_date=date_from_proto(msg, "arrival_date", path, violations),
        amount=money_from_proto(msg.amount, _at(path, "amount"), violations),
        payment_ids=tuple(msg.payment_ids),
        refund_ids=tuple(msg.refund_ids),
        fees=money_from_proto(msg.fees, _at(path, "fees"), violations),
        chargebacks=money_from_proto(msg.chargebacks, _at(path, "chargebacks"), violations),
        adjustments=_each(payout_adjustment_from_proto, msg.adjustments, _at(path, "adjustments"), violations),
    )


def payout_to_proto(payout: Payout) -> resources_pb2.Payout:
    return resources_pb2.Payout(
        payout_id=payout.payout_id,
        arrival_date=date_to_proto(payout.arrival_date),
        amount=money_to_proto(payout.amount),
        payment_ids=list(payout.payment_ids),
        refund_ids=list(payout.refund_ids),
        fees=_money_unless_zero(payout.fees),
        chargebacks=_money_unless_zero(payout.chargebacks),
        adjustments=[payout_adjustment_to_proto(a) for a in payout.adjustments],
    )


def entity_ref_from_proto(msg: resources_pb2.EntityRef, path: str, violations: Violations) -> EntityRef:
    """The id is passed on as sent: whether it names anything (a blank one does not) is the core's rule."""
    entity_type = _enum_from_proto(
        _ENTITY_TYPES_IN, msg.type, "entity type", EntityType.PAYMENT, _at(path, "type"), violations
    )
    return EntityRef(entity_type, msg.id)


def entity_ref_to_proto(entity: EntityRef) -> resources_pb2.EntityRef:
    return resources_pb2.EntityRef(type=_ENTITY_TYPES[entity.type], id=entity.id)


# --- requests -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SyncRequest:
    """What every mutating sync request carries besides its own records, as the core takes it: the
    opportunity, the idempotency key, the currency of each amount, and what conversion found wrong."""

    opportunity: Opportunity
    request_id: str
    violations: tuple[FieldViolation, ...]
    currencies: tuple[AmountCurrency, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PaymentRequest(SyncRequest):
    """A SyncPaymentRequest."""

    payment: Payment


@dataclass(frozen=True, kw_only=True)
class JobRequest(SyncRequest):
    """A CloseOutJobRequest or SyncInvoiceRequest."""

    job: Job
    payments: list[Payment]


def payment_request_from_proto(request: sync_service_pb2.SyncPaymentRequest) -> PaymentRequest:
    violations: Violations = []
    payment = payment_from_proto(request.payment, "payment", violations)
    return PaymentRequest(
        opportunity=opportunity_from_proto(request.opportunity),
        payment=payment,
        request_id=request.request_id,
        violations=tuple(violations),
        currencies=amount_currencies(request),
    )


def job_request_from_proto(
    request: sync_service_pb2.CloseOutJobRequest | sync_service_pb2.SyncInvoiceRequest,
) -> JobRequest:
    violations: Violations = []
    job = job_from_proto(request.job, "job", violations)
    payments = list(_each(payment_from_proto, request.payments, "payments", violations))
    return JobRequest(
        opportunity=opportunity_from_proto(request.opportunity),
        job=job,
        payments=payments,
        request_id=request.request_id,
        violations=tuple(violations),
        currencies=amount_currencies(request),
    )


@dataclass(frozen=True, kw_only=True)
class PayoutRequest:
    """A SyncPayoutRequest: no opportunity (a payout's payments may belong to many), else as SyncRequest."""

    payout: Payout
    request_id: str
    violations: tuple[FieldViolation, ...]
    currencies: tuple[AmountCurrency, ...] = ()


def payout_request_from_proto(request: sync_service_pb2.SyncPayoutRequest) -> PayoutRequest:
    violations: Violations = []
    payout = payout_from_proto(request.payout, "payout", violations)
    return PayoutRequest(
        payout=payout,
        request_id=request.request_id,
        violations=tuple(violations),
        currencies=amount_currencies(request),
    )


# --- sync state -----------------------------------------------------------------------------------------


def sync_result_to_proto(result: SyncResult) -> resources_pb2.SyncResult:
    msg = resources_pb2.SyncResult(quickbooks_id=result.quickbooks_id, action=_SYNC_ACTIONS[result.action])
    _set_entity_ref(msg.entity, result.entity)
    return msg


# The messages below are built field by field in place: copying sub-messages built apart costs twice as much,
# and these are the answers of every SyncPayment and GetSyncStatus.


def _set_entity_ref(msg: resources_pb2.EntityRef, entity: EntityRef) -> None:
    msg.type = _ENTITY_TYPES[entity.type]
    msg.id = entity.id


def sync_job_to_proto(job: SyncJob) -> resources_pb2.SyncJob:
    msg = resources_pb2.SyncJob(
        name=job.name,
        state=_JOB_STATES[job.state],
        resync=job.resync,
        attempts=job.attempts,
    )
    _set_entity_ref(msg.target, job.target)
    if job.results:
        msg.results.extend([sync_result_to_proto(r) for r in job.results])
    set_timestamp(msg.create_time, job.create_time)
    set_timestamp(msg.update_time, job.update_time)
    if job.error is not None:
        msg.error.CopyFrom(status_for_job_error(job.error))
    if job.dismiss_time is not None:
        set_timestamp(msg.dismiss_time, job.dismiss_time)
    return msg


def sync_status_to_proto(record: SyncRecord) -> resources_pb2.SyncStatus:
    msg = resources_pb2.SyncStatus(
        state=_SYNC_STATES[record.state],
        quickbooks_id=record.quickbooks_id or "",
        error_message=record.last_error,
        resync_available=record.resync_available,
    )
    _set_entity_ref(msg.entity, record.entity)
    if record.last_synced_time is not None:
        set_timestamp(msg.last_synced_time, record.last_synced_time)
    return msg


# --- previews -------------------------------------------------------------------------------------------

_PLANNED_ACTIONS = {a: sync_service_pb2.PlannedAction.Value(f"PLANNED_ACTION_{a.value}") for a in PlannedAction}


def planned_operation_to_proto(operation: PlannedOperation) -> sync_service_pb2.PlannedOperation:
    """`fields` is JSON-able already (amounts as decimal strings): a Struct holds it as is."""
    fields = struct_pb2.Struct()
    fields.update(cast(dict[str, Any], operation.fields))
    return sync_service_pb2.PlannedOperation(
        entity=entity_ref_to_proto(operation.entity),
        quickbooks_entity=operation.quickbooks_entity,
        action=_PLANNED_ACTIONS[operation.action],
        quickbooks_id=operation.quickbooks_id,
        amount=money_to_proto(operation.amount) if operation.amount is not None else None,
        fields=fields,
    )


# --- reconciliation -------------------------------------------------------------------------------------


def reconcile_period_from_proto(
    request: sync_service_pb2.ReconcileCompanyRequest,
) -> tuple[date | None, date | None, Violations]:
    """The period's dates (None where missing or not a full date) and what could not be read of them."""
    violations: Violations = []
    dates: list[date | None] = []
    for name in ("start_date", "end_date"):
        before = len(violations)
        value = date_from_proto(request, name, "", violations)
        dates.append(value if len(violations) == before else None)
    return dates[0], dates[1], violations


def difference_to_proto(difference: Difference) -> sync_service_pb2.Difference:
    return sync_service_pb2.Difference(
        entity=entity_ref_to_proto(difference.entity),
        quickbooks_id=difference.quickbooks_id,
        what=difference.what,
        crm_amount=money_to_proto(difference.crm_amount) if difference.crm_amount is not None else None,
        quickbooks_amount=(
            money_to_proto(difference.quickbooks_amount) if difference.quickbooks_amount is not None else None
        ),
        customer_id=difference.customer_id,
        branch_id=difference.branch_id,
    )
