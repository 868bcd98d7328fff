"""The real adapter's batches against the emulator, where the request log shows what was sent: one request per
30 writes under a requestid that names the writes, a refused item confirmed alone, and a batch whose answer
was lost recovered by its markers rather than sent twice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from qbo_support import QboRig

from adapters.quickbooks.emulator import EmulatorServer
from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    CustomerLookup,
    NewCustomer,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
)
from core.ports import CustomerCreate, RateLimits


def refund(customer_id: str, n: int) -> RefundSpec:
    marker = f"[m-r{n}]"
    return RefundSpec(
        customer_id, Decimal(f"{n}.00"), date(2026, 1, 3), TxnKind.EXPENSE, "back", f"CRM {marker}", marker
    )


def set_up(rig: QboRig) -> str:
    who = rig.system.create_customer(NewCustomer("Batch Co", "", "", "", "", "", "CRM c1"), request_id="c-1").id
    rig.system.create(refund(who, 100), request_id="r-0")  # settings looked up once, before the counting
    rig.clear_log()
    return who


def test_the_same_writes_go_under_the_same_requestid_and_other_writes_under_another(rig: QboRig) -> None:
    who = set_up(rig)
    writes = [BatchWrite(refund(who, n), f"r-{n}") for n in (1, 2)]
    first = rig.system.write_many(writes)
    again = rig.system.write_many(writes)
    rig.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in (3, 4)])
    batches = [e for e in rig.log() if e["entity"] == "batch"]
    ids = [e["requestid"] for e in batches]
    assert ids[0] == ids[1] != ids[2] and all(0 < len(i) <= 36 for i in ids)
    assert [e["replayed"] for e in batches] == [False, True, False]
    assert first == again and len(rig.records("Purchase")) == 5


def test_an_item_refused_in_the_batch_is_confirmed_alone(rig: QboRig) -> None:
    who = set_up(rig)
    rig.fault("item_fault", entity="Purchase", operation="create")
    results = rig.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in (1, 2)])
    assert all(isinstance(r, QuickBooksRef) for r in results)
    assert [(e["entity"], e["operation"]) for e in rig.log()] == [("batch", "batch"), ("Purchase", "create")]
    assert sorted(r["TotalAmt"] for r in rig.records("Purchase")) == [
        Decimal("1.00"),
        Decimal("2.00"),
        Decimal("100.00"),
    ]


def test_a_batch_whose_answer_was_lost_is_found_by_its_markers_not_sent_again(rig: QboRig) -> None:
    who = set_up(rig)
    rig.fault("commit_then_reset", entity="batch")
    results = rig.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in (1, 2)])
    assert all(isinstance(r, QuickBooksRef) for r in results)
    assert [e["entity"] for e in rig.log()].count("batch") == 1  # the creates were found, not resent
    assert len(rig.records("Purchase")) == 3


def test_with_the_batch_window_full_the_items_go_as_single_requests_and_nothing_is_throttled(
    emulator: EmulatorServer,
) -> None:
    """QBO allows 40 batch requests a minute per company; the limiter counts them apart. Once its batch window
    is full, writes, look-ups and creates go alone (each as cheap as the batch against the other limits)
    rather than wait for the window, and the emulator, set to the same batch limit, never answers 429."""
    rig = QboRig.connect(emulator, limits=RateLimits(batch_per_minute=1), emulator_limits={"batch_per_minute": 1})
    who = set_up(rig)
    rig.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in (1, 2)])  # the minute's one batch
    rig.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in (3, 4)])
    rig.system.find_customers_many([CustomerLookup("Batch Co", ""), CustomerLookup("Nobody", "no@example.com")])
    made = rig.system.create_customers_many(
        [CustomerCreate(NewCustomer(f"Solo {n}", "", "", "", "", "", f"CRM s{n}"), f"s-{n}") for n in (1, 2)]
    )
    assert [c.display_name for c in made if isinstance(c, AccountingCustomer)] == ["Solo 1", "Solo 2"]
    assert [e["entity"] for e in rig.log()] == [
        "batch",
        "Purchase",
        "Purchase",
        "query",
        "query",
        "Customer",
        "Customer",
    ]
    assert not any(e["throttled"] for e in rig.log()) and len(rig.records("Purchase")) == 5
