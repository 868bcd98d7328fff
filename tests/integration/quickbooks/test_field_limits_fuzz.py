"""Every value qbsync accepts is one QuickBooks holds (SPEC.md section 7), proven with arbitrary input.

Hypothesis feeds arbitrary text (control characters, ':', any Unicode, strings far past QBO's limits) and
numbers (huge and tiny amounts, dates in year 1 or 9999, quantities like 9E+999999) through the accept path
(SyncService.sync_payment and close_out_job) into the emulator through the real python-quickbooks adapter
over HTTP. Each request is either refused at accept with INVALID_ARGUMENT naming fields of the request, or
its job SUCCEEDS: QuickBooks never refuses a field qbsync accepted. One emulator and one realm serve every
example; QBSYNC_HYPOTHESIS_EXAMPLES sets how many (default 60, about half a minute).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import MAX_EMAX, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from qbo_support import CoreRig, QboRig

from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from core.domain import Customer, InvoiceLine, Job, Opportunity, Payment, PaymentMethod, Refund, SyncJobState
from core.errors import ValidationError

EXAMPLES = int(os.environ.get("QBSYNC_HYPOTHESIS_EXAMPLES", "60"))
D = Decimal
CENT = D("0.01")

# What QBO refuses or what breaks storage, mixed into ordinary text much more often than chance would.
NASTY = [
    "\x00",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    ":",
    " ",
    "\u200d",
    "\ufeff",
    "\uffff",
    "'",
    "\\",
    "é",
    "名",
    "😀",
]
# Request fields a violation may name: a path into the request ("payments[0].refunds[1].memo").
REQUEST_PATH = re.compile(r"^(request_id|opportunity|payment|payments\[\d+\]|job)(\.[a-z_]+(\[\d+\])?)*$")

INDEX = re.compile(r"\[\d+\]")

_serial = itertools.count(1)


def mostly(sane: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value QBO can hold, sometimes one that may be past its limits: so that many requests get
    through to QuickBooks while every field is sometimes wild."""
    # Not one_of(): Hypothesis favours the ends of a range, so the wild branch hides in the middle of it.
    return st.integers(0, 19).flatmap(lambda i: wild if i == 7 else sane)


def texts(max_size: int = 12) -> st.SearchStrategy[str]:
    # Control characters, ':' and any Unicode are always fair game: qbsync must clean them, not refuse them.
    sane = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=3)), max_size=max_size // 2).map("".join)
    # Long ones cheaply: a short piece repeated up to past QBO's longest limit (4,000).
    long = st.builds(lambda piece, n: piece * n, st.text(st.characters(), min_size=1, max_size=4), st.integers(5, 1100))
    return mostly(sane, long)


def ids() -> st.SearchStrategy[str]:
    # Sometimes with a control or invisible character, which makes it refused.
    return mostly(st.text(st.sampled_from("ab-_9"), max_size=4), st.text(st.sampled_from(NASTY + ["x"]), max_size=3))


amounts = mostly(
    st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2),
    st.sampled_from([D("0"), D("-1.00"), D("0.001"), D("9999999999999.99"), D("10000000000000.00"), D(10) ** 15]),
)
times = mostly(
    st.just(datetime(2026, 5, 1, 12, tzinfo=UTC)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)
days = mostly(st.just(date(2026, 5, 2)), st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
quantities = mostly(
    st.decimals(min_value=D("0.000001"), max_value=D("1000"), places=6),
    st.sampled_from(
        [D("9E+999999"), D("1E-999999"), D("12345678901"), D("9999999999.999999"), D("0.0000001"), D("-2"), D("3.5")]
    ),
)


@st.composite
def customers(draw: Any, serial: int) -> Customer:
    # The serial keeps DisplayNames apart across examples (else R2 runs out of " - N" suffixes).
    if draw(st.booleans()):
        first, last, company = f"P{serial} " + draw(texts()), draw(texts()), draw(texts())
    else:
        first, last, company = "", "", f"C{serial} " + draw(texts())
    email = draw(mostly(st.just(f"m{serial}@example.com"), texts().map(lambda t: f"{t}{serial}@x.io")))
    return Customer(f"c{serial}{draw(ids())}", first, last, company, email, draw(texts()))


@st.composite
def payments(draw: Any, serial: int) -> Payment:
    refunds = tuple(
        Refund(f"r{serial}-{i}{draw(ids())}", draw(amounts), draw(times), draw(texts()))
        for i in range(draw(st.integers(0, 2)))
    )
    method = draw(st.sampled_from(PaymentMethod))
    # Mostly more than its refunds (R4), so that most payments get through.
    amount = draw(amounts) + sum((r.amount for r in refunds if r.amount.is_finite() and r.amount > 0), D("0"))
    return Payment(f"p{serial}{draw(ids())}", amount, method, draw(times), draw(texts(30)), refunds)


@st.composite
def lines(draw: Any) -> InvoiceLine:
    quantity, unit_price = draw(quantities), draw(amounts)
    with localcontext() as context:  # room for 9E+999999 × a price
        context.prec, context.Emax = 60, MAX_EMAX
        exact = quantity * unit_price
    amount = draw(mostly(st.just(_money(exact)), amounts))
    return InvoiceLine("Move " + draw(texts()), quantity, unit_price, amount)


def _money(value: Decimal) -> Decimal:
    try:
        return value.quantize(CENT, rounding=ROUND_HALF_UP)
    except ArithmeticError:
        return D("1.00")


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    serial = next(_serial)
    opportunity = Opportunity(f"o{serial}{draw(ids())}", draw(texts()), draw(customers(serial)))
    request_id = draw(st.one_of(st.just(""), ids().map(lambda i: f"q{serial}{i}")))
    request: dict[str, Any] = {"opportunity": opportunity, "request_id": request_id}
    if draw(st.booleans()):
        request["payment"] = draw(payments(serial))
    else:
        job_lines = tuple(draw(lines()) for _ in range(draw(st.integers(1, 3))))
        number = f"J{serial}-" + draw(texts(8))
        request["job"] = Job(f"j{serial}{draw(ids())}", number, draw(days), job_lines)
        request["payments"] = [draw(payments(serial))] if draw(st.booleans()) else []
    return request


@pytest.fixture(scope="module")
def core() -> Iterator[CoreRig]:
    server: EmulatorServer = run_emulator("127.0.0.1", 0)
    try:
        yield CoreRig(QboRig.connect(server))
    finally:
        server.stop()


@pytest.mark.emulator
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def test_quickbooks_never_refuses_a_field_qbsync_accepted(core: CoreRig, request: dict[str, Any]) -> None:
    try:
        if "payment" in request:
            job = core.service.sync_payment(
                core.principal, request["opportunity"], request["payment"], request["request_id"]
            )
        else:
            job = core.service.close_out_job(
                core.principal, request["opportunity"], request["job"], request["payments"], request["request_id"]
            )
    except ValidationError as refused:
        assert refused.violations
        for violation in refused.violations:
            assert REQUEST_PATH.match(violation.field), violation
            event("refused: " + INDEX.sub("[]", violation.field))
        return
    event("accepted")
    done = core.finish(job)
    assert done.state is SyncJobState.SUCCEEDED, (done.error, request)
