"""JSON (and the odd XML) shapes of the QBO Accounting API v3, as the emulator writes and reads them.

Money never passes through ``float``: request bodies are parsed with ``parse_float=Decimal`` and amounts are
written back as bare JSON numbers with two decimals, the way QBO prints them (``"TotalAmt": 150.00``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

try:  # QBO stamps times in the company's zone; US Pacific is what sandbox companies use.
    from zoneinfo import ZoneInfo

    _ZONE: Any = ZoneInfo("America/Los_Angeles")
except Exception:  # pragma: no cover - a system without tzdata still works, in UTC
    _ZONE = UTC

CENT = Decimal("0.01")

JsonDict = dict[str, Any]


def now() -> datetime:
    """The current time in the emulated company's zone."""
    return datetime.now(_ZONE)


def qbo_time(moment: datetime | None = None) -> str:
    """A timestamp as QBO writes it in ``MetaData``: seconds precision with a UTC offset."""
    return (moment or now()).isoformat(timespec="seconds")


def response_time() -> str:
    """The ``time`` field of every response (QBO gives milliseconds there)."""
    return now().isoformat(timespec="milliseconds")


def to_decimal(value: Any) -> Decimal | None:
    """A JSON number or numeric string as ``Decimal``; ``None``/``""`` as ``None``.

    Raises ``ValueError`` for anything else (booleans included: ``True`` is an int in Python but not money).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):  # only reachable from admin callers that bypassed parse_float
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a number: {value!r}")
    return result


def money(value: Any) -> Decimal | None:
    """An amount rounded half-up to cents, or ``None`` when absent."""
    amount = to_decimal(value)
    return None if amount is None else amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _encode(value: Any, out: list[str]) -> None:
    # A hand-rolled writer because the stdlib encoder can only print Decimal by way of float or as a string.
    if isinstance(value, Decimal):
        # Money is stored quantized to cents, so it prints as "150.00"; quantities and unit prices keep the
        # precision they were sent with. Format 'f' never uses exponent notation ("1E+2").
        out.append(format(value, "f"))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(", ")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(": ")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(", ")
            _encode(item, out)
        out.append("]")
    else:  # str, int, bool, None
        out.append(json.dumps(value, ensure_ascii=False))


def dumps(payload: Any) -> bytes:
    """Serialise a response body, writing every ``Decimal`` as a JSON number (never a float round trip)."""
    out: list[str] = []
    _encode(payload, out)
    return "".join(out).encode()


def loads(raw: bytes | str) -> Any:
    """Parse a request body, numbers with a fraction as ``Decimal``."""
    return json.loads(raw, parse_float=Decimal)


def fault_body(errors: list[JsonDict], fault_type: str) -> JsonDict:
    """A QBO ``Fault`` envelope."""
    return {"Fault": {"Error": errors, "type": fault_type}, "time": response_time()}


def error_entry(code: str, message: str, detail: str = "", element: str = "") -> JsonDict:
    """One ``Fault.Error`` item, keys spelled as QBO spells them (``code`` lower-case)."""
    entry: JsonDict = {"Message": message, "Detail": detail or message, "code": code}
    if element:
        entry["element"] = element
    return entry


def xml_fault(code: str, message: str, detail: str, fault_type: str = "SERVICE") -> bytes:
    """The XML form QBO sometimes answers with (throttling in particular), whatever the Accept header."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{response_time()}">'
        f'<Fault type="{escape(fault_type)}"><Error code="{escape(code)}">'
        f"<Message>{escape(message)}</Message><Detail>{escape(detail)}</Detail>"
        "</Error></Fault></IntuitResponse>"
    ).encode()
