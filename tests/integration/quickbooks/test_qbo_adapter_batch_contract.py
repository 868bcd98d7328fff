"""The batch contract of the `AccountingSystem` port (`write_many`, `find_customers_many`,
`create_customers_many`), run against the
in-memory fake and against the real adapter talking HTTP to the emulator's `/batch`: every write lands or is
refused alone, a batch resent after its answer was lost writes nothing twice, more than 30 writes are split,
and a lost lease stops a batch before it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from qbo_support import Company, EmulatedCompany, FakeCompany, QboRig

from adapters.quickbooks.emulator import run_emulator
from adapters.quickbooks.fake import FakeQuickBooks, Fault
from core.accounting import (
    AccountingCustomer,
    BatchWrite,
    CustomerLookup,
    LinkLine,
    NewCustomer,
    PaymentSpec,
    QuickBooksRef,
    RefundSpec,
    TxnKind,
)
from core.domain import PaymentMethod
from core.errors import AccountingUnavailableError, DuplicateNameError, LeaseLostError, StaleRecordError
from core.ports import CustomerCreate, WriteFence


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


def customer(company: Company, name: str = "Batch Movers", email: str = "") -> str:
    return company.system.create_customer(NewCustomer(name, "", "", "", email, "", "CRM c1"), request_id=name).id


def payment(customer_id: str, lines: tuple[LinkLine, ...] = (), amount: str = "500.00") -> PaymentSpec:
    return PaymentSpec(
        customer_id, Decimal(amount), date(2026, 1, 2), PaymentMethod.CASH, "R-1", lines, "CRM p1 [m-p1]", "[m-p1]"
    )


def refund(customer_id: str, n: int, kind: TxnKind = TxnKind.EXPENSE) -> RefundSpec:
    marker = f"[m-r{n}]"
    return RefundSpec(customer_id, Decimal(f"{n}.00"), date(2026, 1, 3), kind, "deposit back", f"CRM {marker}", marker)


def refs(results: list[QuickBooksRef | Exception]) -> list[QuickBooksRef]:
    assert all(isinstance(r, QuickBooksRef) for r in results), results
    return [r for r in results if isinstance(r, QuickBooksRef)]


def requests_sent(company: Company) -> int:
    """Requests QuickBooks received so far (the fake's count, the emulator's log)."""
    if isinstance(company, FakeCompany):
        return company.fake.request_count
    assert isinstance(company, EmulatedCompany)
    return len(company.rig.log())


def test_a_payments_refunds_land_in_one_batch_and_its_update_links_them(company: Company) -> None:
    who = customer(company)
    paid = company.system.create(payment(who), request_id="p-1")
    before = requests_sent(company)
    writes = [BatchWrite(refund(who, 10), "r-1"), BatchWrite(refund(who, 20, TxnKind.CHECK), "r-2")]
    writes.append(BatchWrite(refund(who, 30), "r-3"))
    created = refs(company.system.write_many(writes))
    assert requests_sent(company) == before + 1
    assert [r.kind for r in created] == [TxnKind.EXPENSE, TxnKind.CHECK, TxnKind.EXPENSE]
    assert len({r.id for r in created}) == 3 and company.live_count("Purchase") == 3

    lines = tuple(LinkLine(r.kind, r.id, Decimal(n)) for r, n in zip(created, ("10", "20", "30"), strict=True))
    [updated] = refs(company.system.write_many([BatchWrite(payment(who, lines), "p-2", paid)]))
    assert (updated.id, updated.sync_token) == (paid.id, "1")
    assert sorted(company.payment_links(paid.id)) == sorted(
        [("Expense", created[0].id), ("Check", created[1].id), ("Expense", created[2].id)]
    )


def test_a_write_refused_alone_leaves_the_others_landed(company: Company) -> None:
    who = customer(company)
    first = company.system.create(payment(who), request_id="p-1")
    second = company.system.create(payment(who, amount="200.00"), request_id="p-2")
    company.touch(TxnKind.PAYMENT, first.id)  # edited in QuickBooks: our SyncToken is stale
    results = company.system.write_many(
        [
            BatchWrite(payment(who, amount="510.00"), "p-3", first),
            BatchWrite(payment(who, amount="210.00"), "p-4", second),
            BatchWrite(refund(who, 5), "r-1"),
        ]
    )
    stale, updated, created = results
    assert isinstance(stale, StaleRecordError) and stale.sync_token == "1"
    assert company.payment_amount(first.id) == Decimal("500.00")  # not re-applied over the newer version
    assert isinstance(updated, QuickBooksRef) and updated.sync_token == "1"
    assert company.payment_amount(second.id) == Decimal("210.00")
    assert isinstance(created, QuickBooksRef) and company.live_count("Purchase") == 1


def test_a_batch_sent_again_after_its_answer_was_lost_writes_nothing_twice(company: Company) -> None:
    who = customer(company)
    writes = [BatchWrite(refund(who, n), f"r-{n}") for n in (1, 2, 3)]
    company.inject(Fault.COMMIT_THEN_LOSE)  # the batch commits, its answer is lost
    try:
        first: list[QuickBooksRef] | None = refs(company.system.write_many(writes))
    except AccountingUnavailableError as lost:  # the fake hands the loss on; the adapter resends by itself
        assert lost.maybe_committed
        first = None
    again = refs(company.system.write_many(writes))
    assert company.live_count("Purchase") == 3
    assert first is None or [r.id for r in first] == [r.id for r in again]


def test_more_than_thirty_writes_go_in_batches_of_thirty(company: Company) -> None:
    who = customer(company)
    company.system.create(refund(who, 100), request_id="r-0")  # the settings a refund uses are looked up once
    before = requests_sent(company)
    created = refs(company.system.write_many([BatchWrite(refund(who, n), f"r-{n}") for n in range(1, 32)]))
    assert requests_sent(company) == before + 2
    assert len({r.id for r in created}) == 31 and company.live_count("Purchase") == 32


class _LostLease(WriteFence):
    def check(self) -> None:
        raise LeaseLostError("the lease ran out")


def test_a_lost_lease_stops_the_batch_before_it_is_sent(company: Company) -> None:
    who = customer(company)
    before = requests_sent(company)
    with pytest.raises(LeaseLostError):
        company.system.write_many([BatchWrite(refund(who, 1), "r-1")], fence=_LostLease())
    assert company.live_count("Purchase") == 0
    if isinstance(company, FakeCompany):
        assert requests_sent(company) == before  # the emulator's log: see the adapter's fencing tests


def test_customer_look_ups_in_one_batch_find_what_each_look_up_finds(company: Company) -> None:
    ann = customer(company, "Ann Lee", "ann@example.com")
    bo = customer(company, "Bo Li", "bo@example.com")
    company.add_customer("Ann Lee - 2", "ann@example.com", active=False)
    lookups = [CustomerLookup("Ann Lee", "ann@example.com"), CustomerLookup("Cy", "cy@example.com")]
    lookups.append(CustomerLookup("Bo Li", "bo@example.com"))
    before = requests_sent(company)
    found = company.system.find_customers_many(lookups)
    assert requests_sent(company) == before + 1
    assert [[c.id for c in each] for each in found] == [[ann], [], [bo]]


def new_customer(name: str, email: str) -> NewCustomer:
    return NewCustomer(name, "", "", "", email, "", f"CRM {email} [qbsync t/customer/{email}]")


def test_customer_creates_land_in_one_batch_and_a_taken_name_fails_only_its_own_create(company: Company) -> None:
    customer(company, "Taken Name")
    creates = [
        CustomerCreate(new_customer("Ann Lee", "ann@example.com"), "c-ann"),
        CustomerCreate(new_customer("Taken Name", "taken@example.com"), "c-taken"),
        CustomerCreate(new_customer("Bo Li", "bo@example.com"), "c-bo"),
    ]
    before = requests_sent(company)
    ann, taken, bo = company.system.create_customers_many(creates)
    # One batch; the refused create confirmed alone (the adapter also asks whether the name is its own).
    assert requests_sent(company) - before == (2 if isinstance(company, FakeCompany) else 3)
    assert isinstance(ann, AccountingCustomer) and isinstance(bo, AccountingCustomer)
    assert [ann.display_name, bo.display_name] == ["Ann Lee", "Bo Li"]
    # The single create's error, after the single create's check (a lost create of our own is not a clash).
    assert isinstance(taken, DuplicateNameError) and taken.name == "Taken Name"
    assert [c.id for c in company.system.find_customers("Ann Lee", "ann@example.com")] == [ann.id]
    assert [c.id for c in company.system.find_customers("Bo Li", "bo@example.com")] == [bo.id]


def test_customer_creates_of_a_batch_whose_answer_was_lost_are_not_created_twice(company: Company) -> None:
    creates = [CustomerCreate(new_customer(f"Lost {n}", f"lost{n}@example.com"), f"c-lost-{n}") for n in range(3)]
    company.inject(Fault.COMMIT_THEN_LOSE)  # the batch commits, its answer is lost
    try:
        first: list[AccountingCustomer | Exception] | None = company.system.create_customers_many(creates)
    except AccountingUnavailableError as lost:  # the fake hands the loss on; the adapter recovers by itself
        assert lost.maybe_committed
        first = None
    again = company.system.create_customers_many(creates)
    assert all(isinstance(c, AccountingCustomer) for c in again), again
    for n, made in enumerate(again):
        assert isinstance(made, AccountingCustomer)
        assert [c.id for c in company.system.find_customers(f"Lost {n}", f"lost{n}@example.com")] == [made.id]
    assert first is None or [c.id for c in first if isinstance(c, AccountingCustomer)] == [
        c.id for c in again if isinstance(c, AccountingCustomer)
    ]
    if isinstance(company, EmulatedCompany):
        batches_sent = [e for e in company.rig.log() if e["operation"] == "batch"]
        assert (
            len(batches_sent) == 2
        )  # the lost one (its creates then found by look-up, not sent again), and the second call's (replayed)


def test_a_create_whose_fence_refuses_is_left_out_of_the_batch_and_the_others_land(company: Company) -> None:
    creates = [
        CustomerCreate(new_customer("Kept One", "kept1@example.com"), "c-k1"),
        CustomerCreate(new_customer("Fenced", "fenced@example.com"), "c-f", fence=_LostLease()),
        CustomerCreate(new_customer("Kept Two", "kept2@example.com"), "c-k2"),
    ]
    one, fenced, two = company.system.create_customers_many(creates)
    assert isinstance(fenced, LeaseLostError)
    assert isinstance(one, AccountingCustomer) and isinstance(two, AccountingCustomer)
    assert company.system.find_customers("Fenced", "fenced@example.com") == []
    assert [c.id for c in company.system.find_customers("Kept Two", "kept2@example.com")] == [two.id]
