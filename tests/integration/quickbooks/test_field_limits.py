"""QBO's field limits: the adapter's table, the emulator ("QBO says") and the fake agree.

- the table qbsync validates against is never looser than what the emulator enforces;
- over-long values and ':' in names are refused the same way by the fake and by the real adapter against
  the emulator (a BookkeepingError naming the QBO field), and the emulator answers with QBO's Fault shape;
- the one field truncated on purpose (PaymentRefNum) reaches QBO truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests
from qbo_support import TENANT, Company, CoreRig, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.emulator.store import MAX_AMOUNT, MAX_LENGTH
from adapters.quickbooks.fake import FakeQuickBooks
from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS, WHERE_APPLIED
from core.accounting import InvoiceSpec, NewCustomer, PaymentSpec, RefundSpec, TxnKind
from core.domain import Customer, InvoiceLine, Job, Opportunity, Payment, PaymentMethod, SyncJobState
from core.errors import BookkeepingError, ValidationError

# FieldLimits attribute -> where the emulator keeps QBO's limit for it.
EMULATOR_FIELD = {
    "display_name": [("Customer", "DisplayName")],
    "given_name": [("Customer", "GivenName")],
    "family_name": [("Customer", "FamilyName")],
    "company_name": [("Customer", "CompanyName")],
    "email": [("Customer", "PrimaryEmailAddr.Address")],
    "phone": [("Customer", "PrimaryPhone.FreeFormNumber")],
    "payment_reference": [("Payment", "PaymentRefNum")],
    "private_note": [("Payment", "PrivateNote"), ("Purchase", "PrivateNote"), ("Invoice", "PrivateNote")],
    "expense_line_description": [("Purchase", "Line.Description")],
    "doc_number": [("Invoice", "DocNumber")],
    "invoice_line_description": [("Invoice", "Line.Description")],
}


def test_the_table_qbsync_checks_is_never_looser_than_what_quickbooks_enforces() -> None:
    assert {attribute for attribute, _, _ in WHERE_APPLIED} == set(EMULATOR_FIELD)
    for attribute, places in EMULATOR_FIELD.items():
        for entity, field in places:
            assert getattr(QBO_FIELD_LIMITS, attribute) <= MAX_LENGTH[entity][field], (attribute, entity, field)
    assert QBO_FIELD_LIMITS.max_amount <= MAX_AMOUNT


@pytest.fixture(params=["fake", "emulator"])
def company(request: pytest.FixtureRequest) -> Iterator[Company]:
    if request.param == "fake":
        yield FakeCompany(FakeQuickBooks())
        return
    server = run_emulator("127.0.0.1", 0)
    try:
        yield EmulatedCompany(QboRig.connect(server))
    finally:
        server.stop()


def customer(**changes: str) -> NewCustomer:
    values = {
        "display_name": "Mary O'Brien",
        "given_name": "Mary",
        "family_name": "O'Brien",
        "company_name": "",
        "email": "mary@example.com",
        "phone": "",
        "note": "CRM customer c1",
    }
    values.update(changes)
    return NewCustomer(**values)


@pytest.mark.parametrize(
    ("changes", "element"),
    [
        ({"given_name": "G" * 101}, "GivenName"),
        ({"family_name": "F" * 101}, "FamilyName"),
        ({"company_name": "C" * 101}, "CompanyName"),
        ({"display_name": "D" * 501}, "DisplayName"),
        ({"email": "m" * 101 + "@example.com"}, "PrimaryEmailAddr"),
        ({"phone": "5" * 31}, "PrimaryPhone"),
        ({"given_name": "Mary:Ann"}, "GivenName"),
        ({"family_name": "O'Brien\tSmith"}, "FamilyName"),
        ({"display_name": "Mary\nO'Brien"}, "DisplayName"),
    ],
)
def test_a_customer_quickbooks_cannot_hold_is_refused_naming_the_field(
    company: Company, changes: dict[str, str], element: str
) -> None:
    with pytest.raises(BookkeepingError) as refused:
        company.system.create_customer(customer(**changes), request_id="rq-1")
    assert element in refused.value.message


def test_a_customer_at_every_limit_is_created(company: Company) -> None:
    limits = QBO_FIELD_LIMITS
    at_limit = customer(
        display_name="D" * limits.display_name,
        given_name="G" * limits.given_name,
        family_name="F" * limits.family_name,
        company_name="C" * limits.company_name,
        email="m" * (limits.email - len("@example.com")) + "@example.com",
        phone="5" * limits.phone,
    )
    made = company.system.create_customer(at_limit, request_id="rq-1")
    assert made.display_name == "D" * limits.display_name


def test_over_long_transaction_text_is_refused_naming_the_field(company: Company) -> None:
    customer_id = company.system.create_customer(customer(), request_id="rq-c").id
    memo = RefundSpec(customer_id, Decimal("5.00"), date(2026, 1, 3), TxnKind.EXPENSE, "m" * 4001, "note", "[m]")
    with pytest.raises(BookkeepingError) as refused:
        company.system.create(memo, request_id="rq-1")
    assert "Description" in refused.value.message
    line = InvoiceLine("Move", Decimal("1"), Decimal("10.00"), Decimal("10.00"))
    note = InvoiceSpec(customer_id, "1001", date(2026, 1, 4), (line,), "n" * 4001, "[m]")
    with pytest.raises(BookkeepingError) as refused:
        company.system.create(note, request_id="rq-2")
    assert "PrivateNote" in refused.value.message
    number = InvoiceSpec(customer_id, "N" * 22, date(2026, 1, 4), (line,), "note", "[m]")
    with pytest.raises(BookkeepingError) as refused:
        company.system.create(number, request_id="rq-3")
    assert "DocNumber" in refused.value.message


def test_an_amount_past_the_maximum_is_refused(company: Company) -> None:
    customer_id = company.system.create_customer(customer(), request_id="rq-c").id
    too_big = PaymentSpec(
        customer_id,
        QBO_FIELD_LIMITS.max_amount + Decimal("0.01"),
        date(2026, 1, 2),
        PaymentMethod.CASH,
        "",
        (),
        "note",
        "[m]",
    )
    with pytest.raises(BookkeepingError) as refused:
        company.system.create(too_big, request_id="rq-1")
    assert "TotalAmt" in refused.value.message
    largest = PaymentSpec(
        customer_id, QBO_FIELD_LIMITS.max_amount, date(2026, 1, 2), PaymentMethod.CASH, "", (), "note", "[m]"
    )
    company.system.create(largest, request_id="rq-2")
    assert company.live_count("Payment") == 1


def test_the_emulator_answers_with_quickbooks_fault_2050(rig: QboRig) -> None:
    """QBO's shape on the wire: HTTP 400, a ValidationFault, code 2050, the field in `element`, the limit
    in the detail; and 2040 for a character QBO cannot store."""

    def post(body: dict[str, object]) -> requests.Response:
        return requests.post(
            f"{rig.server.base_api_url}/company/{rig.realm_id}/customer?minorversion=75",
            json=body,
            headers={"Authorization": f"Bearer {rig.credentials['access_token']}", "Accept": "application/json"},
            timeout=10,
        )

    answer = post({"DisplayName": "Mary", "GivenName": "G" * 101})
    assert answer.status_code == 400
    fault = answer.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    (error,) = fault["Error"]
    assert (error["code"], error["element"]) == ("2050", "GivenName")
    assert "Max:100 supported. Supplied length:101" in error["Detail"]
    answer = post({"DisplayName": "Mary\x00"})
    assert answer.status_code == 400
    assert answer.json()["Fault"]["Error"][0]["code"] == "2040"
    assert rig.records("Customer") == []


def test_payment_references_are_truncated_on_purpose_and_the_rest_is_accepted(rig: QboRig) -> None:
    core = CoreRig(rig)
    opportunity = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
    reference = "ch_3MtwBwLkdIwHu7ix28a3tqPa-and-more"
    payment = Payment("p1", Decimal("100.00"), PaymentMethod.CREDIT_CARD, datetime(2026, 4, 1, tzinfo=UTC), reference)
    done = core.finish(core.service.sync_payment(core.principal, opportunity, payment))
    assert done.state is SyncJobState.SUCCEEDED, done.error
    (written,) = rig.records("Payment")
    assert written["PaymentRefNum"] == reference[: QBO_FIELD_LIMITS.payment_reference]


def test_the_invoice_number_prefix_counts_against_quickbooks_doc_number(rig: QboRig) -> None:
    core = CoreRig(rig)
    with rig.uow_factory() as uow:
        connection = uow.connections.get(TENANT)
        assert connection is not None
        uow.connections.save(replace(connection, settings=replace(connection.settings, doc_number_prefix="INV-")))
        uow.commit()
    opportunity = Opportunity("o1", "1001", Customer("c1", "Mary", "O'Brien", email="mary@example.com"))
    line = InvoiceLine("Move", Decimal("1"), Decimal("10.00"), Decimal("10.00"))
    too_long = Job("j1", "N" * 18, date(2026, 4, 2), (line,))  # 4 + 18 = 22 > 21
    with pytest.raises(ValidationError) as refused:
        core.service.close_out_job(core.principal, opportunity, too_long, [])
    assert [v.field for v in refused.value.violations] == ["job.number"]
    fits = Job("j1", "N" * 17, date(2026, 4, 2), (line,))
    done = core.finish(core.service.close_out_job(core.principal, opportunity, fits, []))
    assert done.state is SyncJobState.SUCCEEDED, done.error
    assert [i["DocNumber"] for i in rig.records("Invoice")] == ["INV-" + "N" * 17]
