"""A request replayed across an upgrade that added fields keeps its fingerprint (R7: a replay is answered
with its job, never REQUEST_ID_REUSED), and a request that differs only in a new field does not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from core.domain import Customer, Discount, InvoiceLine, Job, Opportunity, Payment, PaymentMethod, Refund, SyncJobKind
from core.fingerprint import request_fingerprint

T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
MARY = Customer("c1", "Mary", "O'Brien", email="mary@example.com", phone="555-0100")
OPP = Opportunity("o1", "1001", MARY)
P1 = Payment("p1", D("500.00"), PaymentMethod.CREDIT_CARD, T, "ref-p1", (Refund("r1", D("50.00"), T, "damaged sofa"),))
P2 = Payment("p2", D("20.00"), PaymentMethod.CHECK, T)
JOB = Job("j1", "INV-1001", date(2026, 4, 3), (InvoiceLine("Move, 3.5 h", D("3.5"), D("100.00"), D("350.00")),))

# Computed by the release before issue 9 (sha256 of repr(parts), at commit 3f00db1) for these requests.
STORED_BEFORE_ISSUE_9 = [
    ((SyncJobKind.SYNC_PAYMENT, OPP, P1), "69fee0313102b58ad5471574b6187e27a162d835ecde1a4a22fda3b018ada957"),
    (
        (SyncJobKind.CLOSE_OUT_JOB, OPP, JOB, (P1, P2)),
        "43188a30caecafe6b9c80fee5645ab1b3d7bf38aa0e33403f7fce884fbe19914",
    ),
    ((SyncJobKind.SYNC_INVOICE, OPP, JOB, ()), "8d5e97b49b15ebcca6537245c89832e493889341a303bd103028139261a5d867"),
]


@pytest.mark.parametrize(("parts", "stored"), STORED_BEFORE_ISSUE_9, ids=["payment", "close-out", "invoice"])
def test_a_request_fingerprinted_before_new_fields_existed_keeps_its_fingerprint(parts, stored) -> None:  # type: ignore[no-untyped-def]
    assert request_fingerprint(*parts) == stored


@pytest.mark.parametrize(
    "changed",
    [
        replace(JOB, tax=D("28.00")),
        replace(JOB, tip=D("1.00")),
        replace(JOB, surcharge=D("0.01")),
        replace(JOB, tax_rate_name="County"),
        replace(JOB, discounts=(Discount("Spring", percent=D("10")),)),
        replace(JOB, discounts=(Discount("Spring", percent=D("10"), after_tax=True),)),
        replace(JOB, lines=(replace(JOB.lines[0], taxable=True),)),
    ],
)
def test_a_request_differing_only_in_a_new_field_has_another_fingerprint(changed: Job) -> None:
    assert request_fingerprint(SyncJobKind.CLOSE_OUT_JOB, OPP, changed, ()) != request_fingerprint(
        SyncJobKind.CLOSE_OUT_JOB, OPP, JOB, ()
    )


def test_a_payment_differing_only_in_its_tip_or_fee_has_another_fingerprint() -> None:
    base = request_fingerprint(SyncJobKind.SYNC_PAYMENT, OPP, P1)
    assert request_fingerprint(SyncJobKind.SYNC_PAYMENT, OPP, replace(P1, tip=D("5.00"))) != base
    assert request_fingerprint(SyncJobKind.SYNC_PAYMENT, OPP, replace(P1, processing_fee=D("14.80"))) != base
