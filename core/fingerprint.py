"""A sync request's fingerprint: how a replayed `request_id` is known to carry the same request (R7).

It must not change when qbsync learns a new field. A CRM that sent a request before an upgrade and
replays it after must get its job back, not REQUEST_ID_REUSED: so the fingerprint renders each record as
its dataclass repr did when fingerprints were first stored, and a field added since is left out while it
holds its default (an old request cannot have set it). A new field needs no entry here: only the fields
fingerprinted from the start are listed, and they never change.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

# The fields each record had when fingerprints were first stored (release of issue 8), rendered always.
_FIRST_FIELDS: dict[str, frozenset[str]] = {
    "Customer": frozenset({"customer_id", "first_name", "last_name", "company_name", "email", "phone"}),
    "Opportunity": frozenset({"opportunity_id", "number", "customer"}),
    "Refund": frozenset({"refund_id", "amount", "refunded_time", "memo"}),
    "Payment": frozenset({"payment_id", "amount", "method", "received_time", "reference", "refunds"}),
    "InvoiceLine": frozenset({"description", "quantity", "unit_price", "amount"}),
    "Job": frozenset({"job_id", "number", "service_date", "lines"}),
}


def request_fingerprint(*parts: object) -> str:
    return hashlib.sha256(_render(parts).encode()).hexdigest()


def _render(value: object) -> str:
    """repr(value), except that later fields at their defaults are left out (see the module docstring).
    Hand-written because the point is to reproduce the standard library's repr of dataclasses, tuples
    and lists exactly; leaves (Decimal, datetime, enums, str) use their own repr."""
    plan = _PLANS.get(type(value)) or _plan(type(value))
    if plan is _LEAF:
        return repr(value)
    if plan is _TUPLE:
        inner = ", ".join([_render(v) for v in value])  # type: ignore[attr-defined]
        return f"({inner},)" if len(value) == 1 else f"({inner})"  # type: ignore[arg-type]
    if plan is _LIST:
        return "[" + ", ".join([_render(v) for v in value]) + "]"  # type: ignore[attr-defined]
    name, fields = plan
    rendered = []
    for field, always, at_default in fields:
        field_value = getattr(value, field)
        if always or not at_default(field_value):
            # A leaf field (most are) is rendered here rather than through another call of _render.
            shown = repr(field_value) if _PLANS.get(type(field_value)) is _LEAF else _render(field_value)
            rendered.append(f"{field}={shown}")
    return f"{name}({', '.join(rendered)})"


# How _render shows a value, by its type, worked out once per type (dataclasses.fields() is not free): as
# its repr, as a tuple or list of rendered items, or as a dataclass of (field, always shown, "at its default").
_Fields = tuple[str, tuple[tuple[str, bool, Callable[[object], bool]], ...]]
_LEAF: _Fields = ("leaf", ())
_TUPLE: _Fields = ("tuple", ())
_LIST: _Fields = ("list", ())
_PLANS: dict[type, _Fields] = {}


def _plan(kind: type) -> _Fields:
    plan: _Fields
    if dataclasses.is_dataclass(kind):
        first = _FIRST_FIELDS.get(kind.__name__, frozenset())
        fields = tuple((f.name, f.name in first, _at_default(f)) for f in dataclasses.fields(kind) if f.repr)
        plan = (kind.__qualname__, fields)
    elif issubclass(kind, tuple):
        plan = _TUPLE
    elif issubclass(kind, list):
        plan = _LIST
    else:
        plan = _LEAF
    _PLANS[kind] = plan  # two threads racing here only work out the same plan twice
    return plan


def _at_default(f: dataclasses.Field[object]) -> Callable[[object], bool]:
    """Whether a value of field `f` is its default."""
    if f.default is not dataclasses.MISSING:
        default = f.default
        return lambda value: bool(value == default)
    if f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        return lambda value: bool(value == factory())
    return lambda value: False
