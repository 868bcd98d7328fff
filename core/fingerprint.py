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
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        first = _FIRST_FIELDS.get(type(value).__name__, frozenset())
        shown = [
            f"{f.name}={_render(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if f.repr and (f.name in first or not _at_default(f, getattr(value, f.name)))
        ]
        return f"{type(value).__qualname__}({', '.join(shown)})"
    if isinstance(value, tuple):
        inner = ", ".join(_render(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return repr(value)


def _at_default(f: dataclasses.Field[object], value: object) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False
