"""QuickBooks' limits up front (SPEC.md section 7): what QBO cannot hold is cleaned or refused at accept.

Through SyncService and the fake QuickBooks (which holds the same limits as QBO): control characters are
refused in ids and collapsed in names and notes, ':' is replaced in names, every text field that reaches
QBO is held to QBO's length, and amounts, dates and quantities to QBO's bounds — INVALID_ARGUMENT naming
the field, nothing stored. The same through the real adapter and the emulator: test_field_limits_fuzz.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS, markdown_table
from core.customer_matching import MAX_NAME_SUFFIX
from core.domain import (
    Customer,
    EntityRef,
    EntityType,
    InvoiceLine,
    Job,
    Opportunity,
    Payment,
    PaymentMethod,
    Refund,
    SyncJobState,
)
from core.errors import NotFoundError, ValidationError
from core.limits import FieldLimits, quantity_fits
from core.text import clean_name, collapse_controls, usable_as_id
from tests.unit.support import Harness

D = Decimal
T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com")
OPP = Opportunity("o1", "1001", MARY)
LINE = InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00"))
MOVE = Job("j1", "1001", date(2026, 4, 3), (LINE,))


@pytest.fixture
def h() -> Harness:
    return Harness()


def paid(payment_id: str = "p1", amount: str = "500.00", *refunds: Refund, reference: str = "") -> Payment:
    return Payment(payment_id, D(amount), PaymentMethod.CASH, T, reference, tuple(refunds))


def refused_fields(call) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        call()
    return [v.field for v in caught.value.violations]


def assert_nothing_stored(h: Harness, *entities: EntityRef) -> None:
    for entity in entities:
        with pytest.raises((NotFoundError, ValidationError)):  # an id with a control character is not looked up
            h.service.get_status(h.principal(), entity)
    assert h.worker.drain() == 0
    assert h.qbo().request_count == 0


# --- control characters ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["p\x00", "p\t1", "p\n", "p\u2028", "p\x85", "p\u200b", "p\ufeff", "p\uffff"])
def test_a_control_or_invisible_character_in_any_id_is_refused_naming_it(h: Harness, bad: str) -> None:
    customer = Customer(f"c{bad}", "Mary", "O'Brien")
    opportunity = Opportunity(f"o{bad}", "1001", customer)
    payment = paid(f"p{bad}", "100.00", Refund(f"r{bad}", D("10.00"), T))
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), opportunity, payment, f"q{bad}"))
    assert sorted(fields) == [
        "opportunity.customer.customer_id",
        "opportunity.opportunity_id",
        "payment.payment_id",
        "payment.refunds[0].refund_id",
        "request_id",
    ]
    job = Job(f"j{bad}", "1001", MOVE.service_date, MOVE.lines)
    assert refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, [])) == ["job.job_id"]
    assert_nothing_stored(h, EntityRef(EntityType.PAYMENT, f"p{bad}"), EntityRef(EntityType.INVOICE, f"j{bad}"))


def test_control_characters_in_names_and_notes_become_one_space_and_colons_leave_names(h: Harness) -> None:
    customer = Customer(
        "c1", "Mary\t\tAnn", "O'Brien:\n Smith\x00", "Acme: Movers\r\n", "mary@example.com", "555\x001234"
    )
    opportunity = Opportunity("o1", "10\n01", customer)
    payment = paid("p1", "100.00", Refund("r1", D("10.00"), T, "damaged\x00\x00 sofa\n"), reference="chk\t42")
    job = h.service.sync_payment(h.principal(), opportunity, payment)
    h.worker.drain()
    assert h.service.get_job(h.principal(), job.name).state is SyncJobState.SUCCEEDED
    qbo = h.qbo()
    (made,) = qbo.customers.values()
    assert (made.display_name, made.given_name, made.family_name, made.company_name) == (
        "Mary Ann O'Brien Smith",
        "Mary Ann",
        "O'Brien Smith",
        "Acme Movers",
    )
    assert made.phone == "555 1234"
    (expense,) = qbo.live("Purchase")
    assert expense.spec.memo == "damaged  sofa "  # one space per run of controls; its own space stays
    (written,) = qbo.live("Payment")
    assert written.spec.reference == "chk 42"
    assert "opportunity 10 01 " in written.spec.private_note


def test_the_same_request_cleaned_or_not_is_the_same_request(h: Harness) -> None:
    """Cleaning happens before the request is fingerprinted: a retry that differs only in a tab replays."""
    tabbed = Opportunity("o1", "1001", Customer("c1", "Mary\t", "O'Brien", email="mary@example.com"))
    first = h.service.sync_payment(h.principal(), tabbed, paid(), "req-1")
    again = h.service.sync_payment(h.principal(), OPP, paid(), "req-1")
    assert again.job_id == first.job_id


def test_text_rules() -> None:
    assert collapse_controls("a\t\n\x00b  c\u2028d\ufffe") == "a b  c d "
    assert clean_name("  Unit : 2\t") == "Unit 2"  # never "Unit - 2", the form R2 gives a clashing name
    assert clean_name("Zoë 😀\u200d👍 שלום\u200f") == "Zoë 😀\u200d👍 שלום\u200f"  # Cf kept in names
    assert usable_as_id("crm-42_é") and not usable_as_id("crm\u200d42") and not usable_as_id("a\ud800")


# --- lengths -----------------------------------------------------------------------------------


def test_a_150_character_company_name_is_refused_naming_it(h: Harness) -> None:
    customer = Customer("c1", "Mary", "O'Brien", "A" * 150, "mary@example.com")
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), Opportunity("o1", "1", customer), paid()))
    assert fields == ["opportunity.customer.company_name"]
    assert_nothing_stored(h, EntityRef(EntityType.PAYMENT, "p1"))


def test_each_customer_field_is_held_to_its_quickbooks_limit(h: Harness) -> None:
    limits = QBO_FIELD_LIMITS
    at_limit = Customer(
        "c1",
        "G" * limits.given_name,
        "F" * limits.family_name,
        "C" * limits.company_name,
        "m" * (limits.email - len("@example.com")) + "@example.com",
        "5" * limits.phone,
    )
    job = h.service.sync_payment(h.principal(), Opportunity("o1", "1", at_limit), paid())
    h.worker.drain()
    assert h.service.get_job(h.principal(), job.name).state is SyncJobState.SUCCEEDED
    over = Customer(
        "c2",
        "G" * (limits.given_name + 1),
        "F" * (limits.family_name + 1),
        "C" * (limits.company_name + 1),
        "m" * limits.email + "@example.com",
        "5" * (limits.phone + 1),
    )
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), Opportunity("o2", "1", over), paid("p2")))
    prefix = "opportunity.customer."
    assert sorted(fields) == [prefix + f for f in ("company_name", "email", "first_name", "last_name", "phone")]


def test_a_company_display_name_keeps_room_for_the_name_suffix(h: Harness) -> None:
    # A FieldLimits where the DisplayName, not CompanyName, is the tighter limit (as in some QBO regions).
    h.companies.field_limits = _with(display_name=40, company_name=100)
    fits = Customer("c1", company_name="C" * (40 - len(f" - {MAX_NAME_SUFFIX}")))
    h.service.sync_payment(h.principal(), Opportunity("o1", "1", fits), paid())
    too_long = Customer("c2", company_name="C" * 36)
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), Opportunity("o2", "1", too_long), paid("p2")))
    assert fields == ["opportunity.customer.company_name"]


def test_refund_memos_over_4000_characters_are_refused_naming_them(h: Harness) -> None:
    assert QBO_FIELD_LIMITS.expense_line_description == 4000
    ok = paid("p1", "100.00", Refund("r1", D("10.00"), T, "m" * 4000))
    h.service.sync_payment(h.principal(), OPP, ok)
    h.worker.drain()
    (expense,) = h.qbo().live("Purchase")
    assert len(expense.spec.memo) == 4000
    long = paid("p2", "100.00", Refund("r2", D("10.00"), T, "ok"), Refund("r3", D("10.00"), T, "m" * 4001))
    assert refused_fields(lambda: h.service.sync_payment(h.principal(), OPP, long)) == ["payment.refunds[1].memo"]


def test_invoice_numbers_and_line_descriptions_are_held_to_quickbooks_limits(h: Harness) -> None:
    long_line = InvoiceLine("d" * 4001, D("1"), D("10.00"), D("10.00"))
    job = Job("j1", "N" * 22, MOVE.service_date, (LINE, long_line))
    fields = refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, []))
    assert sorted(fields) == ["job.lines[1].description", "job.number"]
    padded = Job("j1", "  " + "N" * 20, MOVE.service_date, (LINE,))  # DocNumber is sent as given
    assert refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, padded, [])) == ["job.number"]


def test_opportunity_numbers_are_bounded_so_that_composed_notes_fit(h: Harness) -> None:
    opportunity = Opportunity("o1", "9" * 101, MARY)
    assert refused_fields(lambda: h.service.sync_payment(h.principal(), opportunity, paid())) == ["opportunity.number"]


def test_the_longest_note_qbsync_composes_fits_quickbooks_private_note(h: Harness) -> None:
    """Every id ≤ 100 characters and the opportunity number ≤ 100: the notes qbsync writes stay far below
    QBO's PrivateNote limit, so they need no check of their own (a 100-character tenant id included)."""
    longest_id, number = "i" * 100, "9" * 100
    tenant = "t" * 100
    customer = Customer(longest_id, "Mary", "O'Brien", email="mary@example.com")
    payment = paid(longest_id[:-1] + "p", "100.00", Refund(longest_id[:-1] + "r", D("10.00"), T))
    job = Job(longest_id[:-1] + "j", "1", MOVE.service_date, MOVE.lines)
    principal = h.principal(tenant)
    h.service.sync_payment(principal, Opportunity(longest_id, number, customer), payment)
    h.service.close_out_job(principal, Opportunity(longest_id, number, customer), job, [payment])
    h.worker.drain()
    qbo = h.qbo(tenant)
    notes = [t.spec.private_note for entity in ("Payment", "Purchase", "Invoice") for t in qbo.live(entity)]
    assert len(notes) == 3
    assert all(len(note) <= QBO_FIELD_LIMITS.private_note // 4 for note in notes), [len(n) for n in notes]


# --- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1000000000000000", "10000000000000.00", "NaN", "Infinity"])
def test_amounts_past_quickbooks_maximum_are_refused(h: Harness, amount: str) -> None:
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), OPP, paid("p1", amount)))
    assert fields == ["payment.amount"]
    assert_nothing_stored(h, EntityRef(EntityType.PAYMENT, "p1"))


def test_the_largest_amount_quickbooks_holds_is_accepted(h: Harness) -> None:
    h.service.sync_payment(h.principal(), OPP, paid("p1", str(QBO_FIELD_LIMITS.max_amount)))
    h.worker.drain()
    (written,) = h.qbo().live("Payment")
    assert written.spec.amount == D("9999999999999.99")


def test_an_invoice_total_past_the_maximum_is_refused(h: Harness) -> None:
    big = InvoiceLine("Move", D("1"), D("9000000000000.00"), D("9000000000000.00"))
    job = Job("j1", "1001", MOVE.service_date, (big, big))
    assert refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, [])) == ["job.lines"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1899, 12, 31, 23, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ],
)
def test_dates_outside_1900_to_2099_are_refused_naming_them(h: Harness, when: datetime) -> None:
    payment = Payment("p1", D("100.00"), PaymentMethod.CASH, when, "", (Refund("r1", D("1.00"), when),))
    fields = refused_fields(lambda: h.service.sync_payment(h.principal(), OPP, payment))
    assert fields == ["payment.received_time", "payment.refunds[0].refunded_time"]
    job = Job("j1", "1001", when.date(), MOVE.lines)
    assert refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, [])) == ["job.service_date"]


def test_the_first_and_last_days_quickbooks_holds_are_accepted(h: Harness) -> None:
    for n, day in enumerate([date(1900, 1, 1), date(2099, 12, 31)]):
        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        h.service.sync_payment(h.principal(), OPP, Payment(f"p{n}", D("1.00"), PaymentMethod.CASH, when))
    h.worker.drain()
    assert len(h.qbo().live("Payment")) == 2


@pytest.mark.parametrize(
    ("quantity", "unit_price", "amount"),
    [
        ("9E+999999", "5.00", "1.00"),
        ("12345678901", "1.00", "12345678901.00"),
        ("0.0000001", "1.00", "0.00"),
        ("1E-999999", "1.00", "0.00"),
        ("-9E+999999", "1.00", "1.00"),
    ],
)
def test_quantities_beyond_10_integer_and_6_fraction_digits_are_refused_without_overflow(
    h: Harness, quantity: str, unit_price: str, amount: str
) -> None:
    line = InvoiceLine("Move", D(quantity), D(unit_price), D(amount))
    job = Job("j1", "1001", MOVE.service_date, (line,))
    fields = refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, []))
    assert "job.lines[0].quantity" in fields
    assert_nothing_stored(h, EntityRef(EntityType.INVOICE, "j1"))


def test_quantity_digits() -> None:
    limits = QBO_FIELD_LIMITS
    assert quantity_fits(D("9999999999.999999"), limits)
    assert quantity_fits(D("3.5000000000"), limits)  # trailing zeros are not digits QBO must hold
    assert quantity_fits(D("1E+9"), limits) and not quantity_fits(D("1E+10"), limits)
    assert not quantity_fits(D("0.0000001"), limits) and not quantity_fits(D("NaN"), limits)


def test_a_line_amount_is_quantity_times_price_as_quickbooks_rounds_it(h: Harness) -> None:
    """QBO rounds Qty × UnitPrice half-up to the cent and refuses a line whose Amount differs (6070)."""
    rounds_up = InvoiceLine("Move", D("0.5"), D("0.01"), D("0.00"))  # 0.005 is 0.01 at QBO
    job = Job("j1", "1001", MOVE.service_date, (rounds_up,))
    assert refused_fields(lambda: h.service.close_out_job(h.principal(), OPP, job, [])) == ["job.lines[0].amount"]
    exact = Job("j1", "1001", MOVE.service_date, (InvoiceLine("Move", D("0.5"), D("0.01"), D("0.01")),))
    h.service.close_out_job(h.principal(), OPP, exact, [])


def test_the_readme_shows_the_table_qbsync_checks() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme


def _with(**changes: object) -> FieldLimits:
    from dataclasses import replace

    return replace(QBO_FIELD_LIMITS, **changes)  # type: ignore[arg-type]
