"""SyncPayoutRequest ↔ core: a payout round-trips exactly, and every bad field is named by its proto path.

(No __init__.py here on purpose: as a package this folder would be imported as `grpc` by pytest.)
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from google.type.date_pb2 import Date
from google.type.money_pb2 import Money

from adapters.grpc import convert
from core.domain import EntityRef, EntityType, Payout, PayoutAdjustment
from core.errors import FieldViolation
from qbsync.v1 import resources_pb2, sync_service_pb2

PAYOUT = Payout(
    payout_id="po-1",
    arrival_date=date(2026, 3, 4),
    amount=Decimal("181.10"),
    payment_ids=("p-1", "p-2"),
    refund_ids=("r-1",),
    fees=Decimal("8.90"),
    chargebacks=Decimal("0.00"),
    adjustments=(PayoutAdjustment(Decimal("-10.00"), "reserve held"),),
)


def test_a_payout_round_trips() -> None:
    violations: list[FieldViolation] = []
    back = convert.payout_from_proto(convert.payout_to_proto(PAYOUT), "payout", violations)
    assert violations == []
    assert back == PAYOUT


def test_a_deposit_slip_without_fees_leaves_them_unset_and_reads_them_as_zero() -> None:
    slip = Payout(payout_id="slip-1", arrival_date=date(2026, 3, 4), amount=Decimal("50.00"), payment_ids=("p-1",))
    msg = convert.payout_to_proto(slip)
    assert not msg.HasField("fees") and not msg.HasField("chargebacks")
    assert convert.payout_from_proto(msg, "payout", []) == slip


def test_a_payout_request_names_every_bad_field() -> None:
    request = sync_service_pb2.SyncPayoutRequest(
        payout=resources_pb2.Payout(
            payout_id="po-1",
            arrival_date=Date(year=2026, month=2, day=30),
            amount=Money(currency_code="USD", units=1, nanos=-1),
            fees=Money(units=0, nanos=1_000_000),
            chargebacks=Money(currency_code="usd", units=1),
            adjustments=[resources_pb2.PayoutAdjustment(amount=Money(units=2, nanos=5), memo="x")],
        ),
        request_id="req-1",
    )
    converted = convert.payout_request_from_proto(request)
    assert sorted(v.field for v in converted.violations) == [
        "payout.adjustments[0].amount",
        "payout.amount",
        "payout.arrival_date",
        "payout.chargebacks.currency_code",
        "payout.fees",
    ]
    assert converted.request_id == "req-1"


def test_a_missing_arrival_date_is_required() -> None:
    converted = convert.payout_request_from_proto(
        sync_service_pb2.SyncPayoutRequest(payout=resources_pb2.Payout(payout_id="po-1"))
    )
    assert [(v.field, v.description) for v in converted.violations] == [("payout.arrival_date", "is required")]


def test_every_payout_amounts_currency_is_reported_by_its_field_path() -> None:
    request = sync_service_pb2.SyncPayoutRequest(payout=convert.payout_to_proto(PAYOUT))
    request.payout.amount.currency_code = "CAD"
    request.payout.adjustments[0].amount.currency_code = "EUR"
    found = {c.field: c.code for c in convert.payout_request_from_proto(request).currencies}
    assert found == {"payout.amount": "CAD", "payout.fees": "", "payout.adjustments[0].amount": "EUR"}


def test_a_payout_entity_ref_converts_both_ways() -> None:
    ref = EntityRef(EntityType.PAYOUT, "po-1")
    msg = convert.entity_ref_to_proto(ref)
    assert msg.type == resources_pb2.ENTITY_TYPE_PAYOUT
    assert convert.entity_ref_from_proto(msg, "entity", []) == ref
