"""Protobuf ↔ core conversion: exact money, UTC times, and every bad field named by its proto path.

(No __init__.py here on purpose: as a package this folder would be imported as `grpc` by pytest.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from hypothesis import given
from hypothesis import strategies as st

from adapters.grpc import convert
from core.domain import (
    Customer,
    Discount,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    JobError,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncAction,
    SyncJob,
    SyncJobKind,
    SyncJobState,
    SyncRecord,
    SyncResult,
    SyncState,
)
from core.errors import FieldViolation, merge_violations
from core.validation import validate_job_request
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s

INT64_MAX = 2**63 - 1
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def from_proto(money: Money, path: str = "amount") -> tuple[Decimal, list[FieldViolation]]:
    violations: list[FieldViolation] = []
    return convert.money_from_proto(money, path, violations), violations


# --- money ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "nanos", "expected"),
    [
        (0, 0, "0.00"),
        (0, 10_000_000, "0.01"),
        (0, -10_000_000, "-0.01"),
        (1, 750_000_000, "1.75"),
        (-1, -750_000_000, "-1.75"),
        (1234, 0, "1234.00"),
        (INT64_MAX, 990_000_000, "9223372036854775807.99"),
    ],
)
def test_money_converts_exactly(units: int, nanos: int, expected: str) -> None:
    amount, violations = from_proto(Money(currency_code="USD", units=units, nanos=nanos))
    assert violations == []
    assert amount == Decimal(expected)
    assert str(amount) == expected  # always whole cents, so equal amounts have one representation
    assert convert.money_to_proto(amount) == Money(units=units, nanos=nanos)


@given(st.integers(min_value=-(2**63) * 100 - 99, max_value=INT64_MAX * 100 + 99))
def test_any_amount_in_cents_round_trips(cents: int) -> None:
    amount = Decimal(cents).scaleb(-2)
    money = convert.money_to_proto(amount)
    assert (money.units >= 0 and money.nanos >= 0) or (money.units <= 0 and money.nanos <= 0)
    assert from_proto(money) == (amount, [])


def test_an_unset_money_is_zero() -> None:
    assert from_proto(Money()) == (Decimal("0.00"), [])


@pytest.mark.parametrize(
    ("money", "description"),
    [
        (Money(units=10, nanos=5_000_000), "must be in whole cents"),
        (Money(units=0, nanos=1), "must be in whole cents"),
        (Money(units=1, nanos=-500_000_000), "units and nanos must have the same sign"),
        (Money(units=-1, nanos=500_000_000), "units and nanos must have the same sign"),
        (Money(units=1, nanos=1_000_000_000), "nanos must be between -999,999,999 and 999,999,999"),
    ],
)
def test_malformed_money_is_a_violation_of_its_field(money: Money, description: str) -> None:
    amount, violations = from_proto(money, "payment.amount")
    assert violations == [FieldViolation("payment.amount", description)]
    # The stand-in is the exact value sent, so checks of related fields still see what was meant.
    assert amount == Decimal(money.units) + Decimal(money.nanos).scaleb(-9)


@pytest.mark.parametrize("code", ["usd", "US", "USDX", "U$D"])
def test_a_currency_code_must_be_three_capital_letters(code: str) -> None:
    amount, violations = from_proto(Money(currency_code=code, units=5), "payment.amount")
    assert [v.field for v in violations] == ["payment.amount.currency_code"]
    assert amount == Decimal("5.00")


def test_money_finer_than_nanos_is_refused_not_rounded() -> None:
    with pytest.raises(ValueError):
        convert.money_to_proto(Decimal("0.0000000001"))


# --- CRM records --------------------------------------------------------------------------------------


def sample_payment() -> Payment:
    return Payment(
        payment_id="pay-1",
        amount=Decimal("500.00"),
        method=PaymentMethod.CREDIT_CARD,
        received_time=T0,
        reference="auth 1234",
        refunds=(
            Refund("ref-1", Decimal("20.10"), T0 + timedelta(days=1), memo="damaged box"),
            Refund("ref-2", Decimal("0.05"), T0 + timedelta(days=2, microseconds=7)),
        ),
    )


def sample_job() -> Job:
    return Job(
        job_id="job-1",
        number="J-1001",
        service_date=date(2026, 2, 28),
        lines=(
            InvoiceLine("Movers, hours", Decimal("3.5"), Decimal("120.00"), Decimal("420.00")),
            InvoiceLine("Boxes", Decimal("12"), Decimal("2.25"), Decimal("27.00")),
        ),
    )


def test_a_payment_round_trips() -> None:
    payment = sample_payment()
    violations: list[FieldViolation] = []
    assert convert.payment_from_proto(convert.payment_to_proto(payment), "payment", violations) == payment
    assert violations == []


def test_a_job_round_trips() -> None:
    job = sample_job()
    violations: list[FieldViolation] = []
    msg = convert.job_to_proto(job)
    assert msg.lines[0].quantity == "3.5"
    assert convert.job_from_proto(msg, "job", violations) == job
    assert violations == []


def sample_job_with_charges() -> Job:
    lines = tuple(replace(line, taxable=i == 0) for i, line in enumerate(sample_job().lines))
    return replace(
        sample_job(),
        lines=lines,
        tax=Decimal("37.80"),
        tax_rate_name="WA Seattle 9%",
        discounts=(
            Discount("Spring move", percent=Decimal("12.5")),
            Discount("Coupon", amount=Decimal("10.00")),
        ),
        tip=Decimal("20.00"),
        surcharge=Decimal("13.41"),
        # 447.00 − (55.88 + 10.00) + 37.80 + 20.00 + 13.41, 12.5% of 447.00 being 55.875 → 55.88
        stated_total=Decimal("452.33"),
    )


def test_a_job_with_tax_discounts_tip_surcharge_and_total_round_trips() -> None:
    job = sample_job_with_charges()
    violations: list[FieldViolation] = []
    msg = convert.job_to_proto(job)
    assert [line.taxable for line in msg.lines] == [True, False]
    assert msg.discounts[0].WhichOneof("value") == "percent" and msg.discounts[0].percent == "12.5"
    assert msg.discounts[1].WhichOneof("value") == "amount"
    assert convert.job_from_proto(msg, "job", violations) == job
    assert violations == []
    opportunity = Opportunity("o1", "1", Customer("c1", last_name="Doe"))
    assert validate_job_request(opportunity, job, [], "") == []  # a job a CRM could send, total included


def test_a_job_without_charges_states_no_total() -> None:
    violations: list[FieldViolation] = []
    msg = convert.job_to_proto(sample_job())
    assert not msg.HasField("total") and not msg.HasField("tax") and not msg.discounts
    converted = convert.job_from_proto(msg, "job", violations)
    assert converted.stated_total is None and converted.tax == 0 and violations == []
    # A total of zero is a stated total, not an absent one: validation compares it.
    msg.total.CopyFrom(Money(currency_code="USD"))
    assert convert.job_from_proto(msg, "job", violations).stated_total == Decimal("0.00")


def test_a_payment_with_a_tip_and_a_processing_fee_round_trips() -> None:
    payment = replace(sample_payment(), tip=Decimal("25.00"), processing_fee=Decimal("14.80"))
    violations: list[FieldViolation] = []
    msg = convert.payment_to_proto(payment)
    assert msg.tip == Money(units=25) and msg.processing_fee == Money(units=14, nanos=800_000_000)
    assert convert.payment_from_proto(msg, "payment", violations) == payment
    assert violations == []


def test_a_discount_with_neither_value_is_left_to_the_core() -> None:
    violations: list[FieldViolation] = []
    discount = convert.discount_from_proto(r.Discount(description="?"), "job.discounts[0]", violations)
    assert discount == Discount("?") and violations == []


def test_bad_charges_are_named_by_their_field_path() -> None:
    msg = r.Job(
        job_id="j1",
        number="J-1",
        service_date=Date(year=2026, month=2, day=28),
        tax=Money(units=1, nanos=5),  # sub-cent
        tip=Money(units=-1, nanos=500_000_000),  # mixed signs
        discounts=[
            r.Discount(description="ok", percent="12.5"),
            r.Discount(description="bad", percent="12,5%"),
            r.Discount(description="bad", amount=Money(units=1, nanos=1)),
        ],
        total=Money(units=1, nanos=-1),
    )
    violations: list[FieldViolation] = []
    job = convert.job_from_proto(msg, "job", violations)
    assert [v.field for v in violations] == [
        "job.tax",
        "job.discounts[1].percent",
        "job.discounts[2].amount",
        "job.tip",
        "job.total",
    ]
    assert violations[1].description.startswith('must be a decimal number such as "12.5"')
    assert job.discounts[0].percent == Decimal("12.5")
    assert job.discounts[1].percent == 0  # the stand-in the core also rejects, so the field is named once


def test_a_bad_percent_is_named_once_with_the_cores_findings() -> None:
    request = s.CloseOutJobRequest(
        opportunity=r.Opportunity(opportunity_id="o1", customer=r.Customer(customer_id="c1", last_name="Doe")),
        job=convert.job_to_proto(replace(sample_job(), discounts=(Discount("x", percent=Decimal("5")),))),
    )
    request.job.discounts[0].percent = "five"
    converted = convert.job_request_from_proto(request)
    found = validate_job_request(converted.opportunity, converted.job, converted.payments, "")
    assert [v.field for v in found] == ["job.discounts[0].percent"]  # what the stand-in 0 makes of it
    merged = merge_violations(converted.violations, found)
    assert [(v.field, v.description[:24]) for v in merged] == [("job.discounts[0].percent", "must be a decimal number")]


def test_an_opportunity_round_trips() -> None:
    opportunity = Opportunity("opp-1", "1001", Customer("c-1", "Mary", "O'Brien", "", "m@example.com", "555"))
    assert convert.opportunity_from_proto(convert.opportunity_to_proto(opportunity)) == opportunity


def test_times_become_utc_whatever_zone_they_were_sent_from() -> None:
    eastern = datetime(2026, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    msg = r.Refund(refund_id="ref-1", refunded_time=convert.timestamp_to_proto(eastern))
    violations: list[FieldViolation] = []
    refunded = convert.refund_from_proto(msg, "refund", violations).refunded_time
    assert refunded == T0 and refunded.tzinfo == UTC


def test_a_payment_request_names_every_bad_field() -> None:
    request = s.SyncPaymentRequest(
        opportunity=r.Opportunity(opportunity_id="opp-1"),
        payment=r.Payment(
            payment_id="pay-1",
            amount=Money(units=100, nanos=1),  # sub-cent
            # method unset, received_time missing
            refunds=[
                r.Refund(refund_id="ref-0", amount=Money(units=5), refunded_time=Timestamp(seconds=1)),
                r.Refund(refund_id="ref-1", amount=Money(units=5, nanos=-10_000_000)),  # no refunded_time
            ],
        ),
        request_id="req-1",
    )
    converted = convert.payment_request_from_proto(request)
    assert sorted(v.field for v in converted.violations) == [
        "payment.amount",
        "payment.method",
        "payment.received_time",
        "payment.refunds[1].amount",
        "payment.refunds[1].refunded_time",
    ]
    assert converted.request_id == "req-1"
    assert converted.payment.refunds[0].amount == Decimal("5.00")


def test_a_job_request_names_every_bad_field() -> None:
    lines = [
        r.InvoiceLine(description="ok", quantity="1", unit_price=Money(units=1), amount=Money(units=1)),
        r.InvoiceLine(description="ok", quantity=" 2.50 ", unit_price=Money(units=1), amount=Money(units=2)),
        r.InvoiceLine(description="bad", quantity="three", amount=Money(units=1, nanos=-1)),
        r.InvoiceLine(description="bad", quantity="NaN"),
    ]
    request = s.CloseOutJobRequest(
        job=r.Job(job_id="job-1", number="J-1", lines=lines),  # service_date missing
        payments=[
            r.Payment(
                payment_id="p0",
                amount=Money(units=1, nanos=5),
                method=r.PAYMENT_METHOD_CASH,
                received_time=Timestamp(seconds=1),
            ),
            r.Payment(payment_id="p1", amount=Money(units=1), method=99, received_time=Timestamp(seconds=1)),
        ],
    )
    converted = convert.job_request_from_proto(request)
    assert [v.field for v in converted.violations] == [
        "job.service_date",
        "job.lines[2].quantity",
        "job.lines[2].amount",
        "job.lines[3].quantity",
        "payments[0].amount",
        "payments[1].method",
    ]
    assert converted.job.lines[1].quantity == Decimal("2.50")
    assert converted.job.lines[2].quantity == Decimal(0)  # the stand-in the core also rejects


@pytest.mark.parametrize(
    ("value", "description"),
    [
        (Date(year=2026, month=2), "must be a full date: year, month and day"),
        (Date(year=2026, month=2, day=30), "is not a valid date"),
    ],
)
def test_a_service_date_must_be_a_real_full_date(value: Date, description: str) -> None:
    violations: list[FieldViolation] = []
    convert.job_from_proto(r.Job(job_id="j", service_date=value), "job", violations)
    assert violations == [FieldViolation("job.service_date", description)]


def test_an_entity_ref_needs_a_type_and_leaves_its_id_to_the_core() -> None:
    # That a blank id is reported too (entity.type, entity.id) is the use case's finding: test_sync_scenarios
    # and test_grpc_server's test_an_entity_without_type_or_id_is_invalid assert it.
    violations: list[FieldViolation] = []
    blank = convert.entity_ref_from_proto(r.EntityRef(), "entity", violations)
    assert [v.field for v in violations] == ["entity.type"]
    assert blank.id == ""
    ref = convert.entity_ref_from_proto(r.EntityRef(type=r.ENTITY_TYPE_INVOICE, id="job-1"), "entity", [])
    assert ref == EntityRef(EntityType.INVOICE, "job-1")


def test_merged_violations_judge_each_field_once() -> None:
    conversion = [FieldViolation("payment.amount", "must be in whole cents")]
    validation = [
        FieldViolation("payment.amount", "must be in whole cents (0.01)"),
        FieldViolation("opportunity.customer.email", "not an email"),
    ]
    assert merge_violations(conversion, validation) == [conversion[0], validation[1]]


# --- sync state out ---------------------------------------------------------------------------------


def test_a_failed_sync_job_carries_its_error_as_a_status_with_error_info() -> None:
    job = SyncJob(
        job_id="j1",
        tenant_id="t1",
        kind=SyncJobKind.SYNC_PAYMENT,
        target=EntityRef(EntityType.PAYMENT, "pay-1"),
        opportunity_id="opp-1",
        customer_id="c-1",
        create_time=T0,
        update_time=T0 + timedelta(seconds=5, microseconds=250),
        state=SyncJobState.FAILED,
        resync=True,
        attempts=3,
        results=[SyncResult(EntityRef(EntityType.CUSTOMER, "c-1"), "58", SyncAction.LINKED)],
        error=JobError("QUICKBOOKS_RECONNECT_REQUIRED", "reconnect QuickBooks", False, {"realm": "123"}),
    )
    msg = convert.sync_job_to_proto(job)
    assert (msg.name, msg.state, msg.resync, msg.attempts) == ("syncJobs/j1", r.SyncJob.STATE_FAILED, True, 3)
    assert msg.target == r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")
    assert list(msg.results) == [
        r.SyncResult(
            entity=r.EntityRef(type=r.ENTITY_TYPE_CUSTOMER, id="c-1"), quickbooks_id="58", action=r.SYNC_ACTION_LINKED
        )
    ]
    assert msg.create_time.ToDatetime(tzinfo=UTC) == T0
    assert msg.update_time.ToDatetime(tzinfo=UTC) == job.update_time
    assert msg.error.code == 9  # FAILED_PRECONDITION: a person must reconnect first
    assert msg.error.message == "reconnect QuickBooks"
    info = error_details_pb2.ErrorInfo()
    assert msg.error.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("QUICKBOOKS_RECONNECT_REQUIRED", "qbsync")
    assert dict(info.metadata) == {"realm": "123", "retryable": "false"}


def test_a_job_without_error_has_no_error_status() -> None:
    job = SyncJob("j1", "t1", SyncJobKind.SYNC_INVOICE, EntityRef(EntityType.INVOICE, "job-1"), "o", "c", T0, T0)
    msg = convert.sync_job_to_proto(job)
    assert msg.state == r.SyncJob.STATE_PENDING
    assert not msg.HasField("error")


def test_sync_status_of_a_record() -> None:
    never = SyncRecord(tenant_id="t1", entity=EntityRef(EntityType.REFUND, "ref-1"), state=SyncState.PENDING)
    msg = convert.sync_status_to_proto(never)
    assert msg.state == r.SYNC_STATE_PENDING
    assert not msg.HasField("last_synced_time") and not msg.resync_available and msg.quickbooks_id == ""

    synced = SyncRecord(
        tenant_id="t1",
        entity=EntityRef(EntityType.REFUND, "ref-1"),
        state=SyncState.FAILED,
        quickbooks_id="77",
        last_synced_time=T0,
        last_error="the refund account is closed",
    )
    msg = convert.sync_status_to_proto(synced)
    assert (msg.state, msg.quickbooks_id, msg.error_message) == (
        r.SYNC_STATE_FAILED,
        "77",
        "the refund account is closed",
    )
    assert msg.resync_available and msg.last_synced_time.ToDatetime(tzinfo=UTC) == T0


# --- currencies: reported as sent, judged by the core ------------------------------------------------


def test_every_amounts_currency_is_reported_by_its_field_path() -> None:
    request = s.CloseOutJobRequest(
        job=r.Job(
            job_id="j1",
            lines=[
                r.InvoiceLine(unit_price=Money(currency_code="EUR", units=1), amount=Money(units=1)),
            ],
        ),
        payments=[
            r.Payment(payment_id="p1", amount=Money(currency_code="USD", units=5)),
            r.Payment(
                payment_id="p2",
                amount=Money(currency_code="JPY", units=5),
                refunds=[r.Refund(amount=Money(currency_code="GBP", units=1))],
            ),
        ],
    )
    found = convert.job_request_from_proto(request).currencies
    assert [(a.field, a.code) for a in found] == [
        ("job.lines[0].unit_price", "EUR"),
        ("job.lines[0].amount", ""),
        ("payments[0].amount", "USD"),
        ("payments[1].amount", "JPY"),
        ("payments[1].refunds[0].amount", "GBP"),
    ]


def test_the_currencies_of_tax_discounts_tips_surcharge_fees_and_total_are_reported_too() -> None:
    request = s.CloseOutJobRequest(
        job=r.Job(
            job_id="j1",
            tax=Money(currency_code="EUR", units=1),
            discounts=[
                r.Discount(percent="5"),
                r.Discount(amount=Money(currency_code="GBP", units=1)),
            ],
            tip=Money(currency_code="JPY", units=1),
            surcharge=Money(currency_code="CAD", units=1),
            total=Money(currency_code="AUD", units=1),
        ),
        payments=[
            r.Payment(
                payment_id="p1",
                amount=Money(currency_code="USD", units=5),
                tip=Money(currency_code="CHF", units=1),
                processing_fee=Money(currency_code="SEK", units=1),
            )
        ],
    )
    found = convert.job_request_from_proto(request).currencies
    assert [(a.field, a.code) for a in found] == [
        ("job.tax", "EUR"),
        ("job.discounts[1].amount", "GBP"),
        ("job.tip", "JPY"),
        ("job.surcharge", "CAD"),
        ("job.total", "AUD"),
        ("payments[0].amount", "USD"),
        ("payments[0].tip", "CHF"),
        ("payments[0].processing_fee", "SEK"),
    ]


def test_a_payment_requests_currencies_are_reported_and_not_judged_here() -> None:
    request = s.SyncPaymentRequest(payment=r.Payment(payment_id="p1", amount=Money(currency_code="EUR", units=5)))
    converted = convert.payment_request_from_proto(request)
    assert [(a.field, a.code) for a in converted.currencies] == [("payment.amount", "EUR")]
    assert not any(v.field.endswith("currency_code") for v in converted.violations)


# --- numbers a caller cannot make us crash on (SPEC.md section 7) ------------------------------------------


@given(st.integers(-(2**63), INT64_MAX), st.integers(-(2**31), 2**31 - 1))
def test_any_money_converts_or_is_named_never_raises(units: int, nanos: int) -> None:
    amount, violations = from_proto(Money(currency_code="USD", units=units, nanos=nanos))
    if not violations:
        assert amount == Decimal(units) + Decimal(nanos).scaleb(-9)  # exact, not rounded to 28 digits
    else:
        assert [v.field for v in violations] == ["amount"]


@given(
    st.one_of(
        st.text(),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.from_regex(r"\A[+-]?[0-9]{0,80}(\.[0-9]{0,80})?([eE][+-]?[0-9]{1,12})?\Z"),
    )
)
def test_any_text_is_a_bounded_exact_decimal_or_none(text: str) -> None:
    value = convert.decimal_from_text(text)  # never raises
    if value is not None:
        assert value.is_finite() and value == Decimal(text.strip())
        assert len(value.as_tuple().digits) <= convert.MAX_DECIMAL_DIGITS
        assert abs(value.adjusted()) <= convert.MAX_DECIMAL_EXPONENT or value == 0
        product = value * Decimal(INT64_MAX)  # what validation computes with it stays in range
        assert product.is_finite()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3.5", "3.5"), (" 2 ", "2"), ("1e3", "1E+3"), ("+.5", "0.5"), ("0.000001", "0.000001"), ("-1", "-1")],
)
def test_decimal_strings_as_clients_write_them(text: str, expected: str) -> None:
    assert convert.decimal_from_text(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text", ["", "NaN", "Infinity", "-inf", "9E+999999", "9E-999999", "1" * 65, "²", "١٢", "3,5", "0x10", "1_000"]
)
def test_what_is_not_a_plain_bounded_decimal_is_named_with_a_short_quote(text: str) -> None:
    violations: list[FieldViolation] = []
    assert convert.quantity_from_proto(text, "job.lines[0].quantity", violations) == 0
    [violation] = violations
    assert violation.field == "job.lines[0].quantity"
    assert len(violation.description) < 200


# --- the shortcuts conversion takes give what the general way gives (issue 12) ------------------------------


@given(st.integers(-(2**63), INT64_MAX), st.integers(-(2**31), 2**31 - 1))
def test_money_is_the_exact_sum_quantized_to_cents_digit_for_digit(units: int, nanos: int) -> None:
    """Value *and* exponent (a request's fingerprint holds the amount's repr): what quantizing the exact
    units + nanos to cents gives, or the exact sum itself beside a violation."""
    amount, violations = from_proto(Money(units=units, nanos=nanos))
    exact = Decimal(units) + Decimal(nanos).scaleb(-9)
    if violations:
        assert amount.as_tuple() == exact.as_tuple()
    else:
        assert amount.as_tuple() == exact.quantize(Decimal("0.01")).as_tuple()


def _reference_timestamp(timestamp: Timestamp) -> datetime | None:
    try:
        return timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


EARLIEST, LATEST = -62_135_596_800, 253_402_300_799  # 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (EARLIEST, 0),
        (EARLIEST - 1, 999_999_999),
        (LATEST, 999_999_999),
        (LATEST + 1, 0),
        (1_767_312_000, 1_999),
        (-1, 999_999_999),
        (0, -1),
        (0, 1_000_000_000),
        (-(2**63), 0),
        (2**63 - 1, 0),
    ],
)
def test_a_timestamp_at_or_past_the_bounds_converts_as_the_library_converts_it(seconds: int, nanos: int) -> None:
    timestamp = Timestamp(seconds=seconds, nanos=nanos)
    violations: list[FieldViolation] = []
    converted = convert.timestamp_from_proto(r.Refund(refunded_time=timestamp), "refunded_time", "refund", violations)
    expected = _reference_timestamp(timestamp)
    if expected is None:
        assert converted == datetime(1970, 1, 1, tzinfo=UTC) and [v.field for v in violations] == [
            "refund.refunded_time"
        ]
    else:
        assert (converted, converted.tzinfo, violations) == (expected, UTC, [])


@given(st.integers(EARLIEST - 10, LATEST + 10), st.integers(-10, 10**9 + 10))
def test_any_timestamp_converts_as_the_library_converts_it(seconds: int, nanos: int) -> None:
    timestamp = Timestamp(seconds=seconds, nanos=nanos)
    violations: list[FieldViolation] = []
    converted = convert.timestamp_from_proto(r.Refund(refunded_time=timestamp), "refunded_time", "refund", violations)
    expected = _reference_timestamp(timestamp)
    assert (converted if not violations else None) == expected


def _reference_currencies(message: Message, path: str = "") -> list[tuple[str, str]]:
    """Every Money set in `message`, found through ListFields (the walk as it was first written)."""
    found = []
    for descriptor, value in message.ListFields():
        kind = descriptor.message_type
        if kind is None or kind.GetOptions().map_entry:
            continue
        field_path = f"{path}.{descriptor.name}" if path else descriptor.name
        items = list(enumerate(value)) if descriptor.is_repeated else [(None, value)]
        for index, item in items:
            item_path = field_path if index is None else f"{field_path}[{index}]"
            if kind.full_name == Money.DESCRIPTOR.full_name:
                found.append((item_path, item.currency_code))
            else:
                found.extend(_reference_currencies(item, item_path))
    return found


_MONEY = st.builds(Money, currency_code=st.sampled_from(["", "USD", "EUR"]), units=st.integers(0, 9))
_REFUNDS = st.lists(st.builds(r.Refund, refund_id=st.just("r"), amount=st.none() | _MONEY), max_size=2)
_PAYMENTS = st.builds(
    r.Payment, amount=st.none() | _MONEY, tip=st.none() | _MONEY, processing_fee=st.none() | _MONEY, refunds=_REFUNDS
)
_LINES = st.lists(st.builds(r.InvoiceLine, unit_price=st.none() | _MONEY, amount=st.none() | _MONEY), max_size=2)
_DISCOUNTS = st.lists(st.builds(r.Discount, amount=st.none() | _MONEY), max_size=2)
_JOBS = st.builds(r.Job, lines=_LINES, discounts=_DISCOUNTS, tax=st.none() | _MONEY, total=st.none() | _MONEY)


@given(st.builds(s.CloseOutJobRequest, job=st.none() | _JOBS, payments=st.lists(_PAYMENTS, max_size=3)))
def test_every_amount_set_anywhere_is_found_in_field_order(request: s.CloseOutJobRequest) -> None:
    found = convert.amount_currencies(request)
    assert [(a.field, a.code) for a in found] == _reference_currencies(request)


# UTC itself, another zone, another object meaning UTC, and naive times (taken as UTC).
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(0), "Z")])


@given(st.datetimes(timezones=_ZONES) | st.datetimes())
def test_a_time_becomes_the_timestamp_the_library_makes_of_it(time: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(time)
    assert convert.timestamp_to_proto(time) == expected
