"""Concurrent customer creates of one company coalesced into batches (adapters/quickbooks/coalescing.py
`CreateCoalescer`), on the fake and on the real adapter against the emulator. Deterministic as the look-up
tests are: the first create is held at a gate while the others queue behind it, so the batches are known."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from qbo_support import TENANT, QboRig
from test_lookup_coalescing import queued, wait_until

from adapters.quickbooks.coalescing import CoalescingAccountingSystems, CreateCoalescer
from adapters.quickbooks.fake import FakeQuickBooks, Fault
from core.accounting import AccountingCustomer, NewCustomer
from core.errors import AccountingUnavailableError, DuplicateNameError, LeaseLostError
from core.ports import UNFENCED, AccountingSystem, CustomerCreate, ForwardingAccountingSystem, WriteFence


class CreateGate(ForwardingAccountingSystem):
    """Holds the first create until `release`; records the names each request carried."""

    def __init__(self, system: AccountingSystem) -> None:
        super().__init__(system)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[list[str]] = []

    def _hold(self, names: list[str]) -> None:
        self.sent.append(names)
        if len(self.sent) == 1:
            self.entered.set()
            assert self.release.wait(10)

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        self._hold([customer.display_name])
        return super().create_customer(customer, request_id=request_id, fence=fence)

    def create_customers_many(
        self, creates: Sequence[CustomerCreate], *, fence: WriteFence = UNFENCED
    ) -> list[AccountingCustomer | Exception]:
        self._hold([create.customer.display_name for create in creates])
        return super().create_customers_many(creates, fence=fence)


class Lost(WriteFence):
    def check(self) -> None:
        raise LeaseLostError("the lease ran out")


def new(name: str) -> NewCustomer:
    return NewCustomer(name, "", "", "", f"{name.lower().replace(' ', '.')}@example.com", "", f"CRM [{name}]")


def held_then_queued(
    coalescer: CreateCoalescer,
    gate: CreateGate,
    pool: ThreadPoolExecutor,
    names: list[str],
    fences: dict[str, WriteFence],
) -> list[Future[AccountingCustomer]]:
    """The first create in flight (held at the gate), the others queued behind it, then all let go."""

    def create(name: str) -> Future[AccountingCustomer]:
        fence = fences.get(name, UNFENCED)
        return pool.submit(coalescer.create_customer, new(name), request_id=f"rid-{name}", fence=fence)

    futures = [create(names[0])]
    assert gate.entered.wait(10)
    futures += [create(name) for name in names[1:]]
    wait_until(lambda: queued(coalescer) == len(names) - 1)
    gate.release.set()
    return futures


NAMES = ["Ann Lee", "Bo Li", "Cy Day", "Di Fox", "Ed Orr"]


def outcomes(futures: list[Future[AccountingCustomer]]) -> list[AccountingCustomer | BaseException]:
    done: list[AccountingCustomer | BaseException] = []
    for future in futures:
        error = future.exception(10)
        done.append(error if error is not None else future.result())
    return done


def test_concurrent_creates_go_as_one_create_then_one_batch_each_caller_with_its_own_customer() -> None:
    fake = FakeQuickBooks()
    gate = CreateGate(fake)
    coalescer = CreateCoalescer(gate)
    with ThreadPoolExecutor(len(NAMES)) as pool:
        made = [f.result(10) for f in held_then_queued(coalescer, gate, pool, NAMES, {})]
    assert [c.display_name for c in made] == NAMES and len({c.id for c in made}) == len(NAMES)
    assert gate.sent == [NAMES[:1], NAMES[1:]]
    assert fake.request_count == 2 and coalescer.requests == 2


def test_a_refused_create_fails_only_its_own_caller_with_the_single_creates_error(rig: QboRig) -> None:
    taken = NewCustomer("Cy Day", "", "", "", "other@example.com", "", "a customer of someone else")
    rig.system.create_customer(taken, request_id="someone else's")  # the name is taken
    gate = CreateGate(rig.system)
    coalescer = CreateCoalescer(gate)
    with ThreadPoolExecutor(len(NAMES)) as pool:
        done = outcomes(held_then_queued(coalescer, gate, pool, NAMES, {}))
    refused = done[NAMES.index("Cy Day")]
    assert isinstance(refused, DuplicateNameError) and refused.name == "Cy Day"
    landed = [c for c in done if isinstance(c, AccountingCustomer)]
    assert [c.display_name for c in landed] == [n for n in NAMES if n != "Cy Day"]
    assert gate.sent == [NAMES[:1], NAMES[1:]]


def test_a_queued_job_that_lost_its_lease_has_its_create_left_out_and_the_others_land() -> None:
    fake = FakeQuickBooks()
    gate = CreateGate(fake)
    coalescer = CreateCoalescer(gate)
    with ThreadPoolExecutor(len(NAMES)) as pool:
        done = outcomes(held_then_queued(coalescer, gate, pool, NAMES, {"Di Fox": Lost()}))
    assert isinstance(done[NAMES.index("Di Fox")], LeaseLostError)
    assert sorted(c.display_name for c in fake.customers.values()) == sorted(n for n in NAMES if n != "Di Fox")


def test_a_batch_whose_answer_was_lost_fails_its_callers_retryably_and_their_retries_create_nothing_twice() -> None:
    fake = FakeQuickBooks()
    gate = CreateGate(fake)
    coalescer = CreateCoalescer(gate)
    with ThreadPoolExecutor(len(NAMES)) as pool:
        futures = held_then_queued(coalescer, gate, pool, NAMES[:1], {})
        assert futures[0].result(10).display_name == NAMES[0]
        gate.release.clear()
        gate.sent.clear()
        gate.entered.clear()
        fake.inject(Fault.COMMIT_THEN_LOSE)  # the next request commits and its answer is lost
        futures = held_then_queued(coalescer, gate, pool, NAMES[1:], {})
        done = outcomes(futures)
    assert isinstance(done[0], AccountingUnavailableError)  # the lone create carried the lost answer
    assert all(isinstance(c, AccountingCustomer) for c in done[1:])
    # Retried (as the job is), each create is answered with the customer it made: nothing twice.
    again = [coalescer.create_customer(new(name), request_id=f"rid-{name}", fence=UNFENCED) for name in NAMES[1:]]
    assert [c.display_name for c in again] == NAMES[1:]
    assert len(fake.customers) == len(NAMES)


def test_the_real_adapter_recovers_a_lost_batch_answer_by_looking_each_create_up(rig: QboRig) -> None:
    rig.system.create_customer(new("Zed First"), request_id="first")
    gate = CreateGate(rig.system)
    coalescer = CreateCoalescer(gate)
    rig.clear_log()
    with ThreadPoolExecutor(len(NAMES)) as pool:
        first = pool.submit(coalescer.create_customer, new("Ann Lee"), request_id="rid-Ann Lee", fence=UNFENCED)
        assert gate.entered.wait(10)
        rig.fault("commit_then_reset", entity="batch")  # the batch commits, its answer is lost
        rest = [
            pool.submit(coalescer.create_customer, new(name), request_id=f"rid-{name}", fence=UNFENCED)
            for name in NAMES[1:]
        ]
        wait_until(lambda: queued(coalescer) == len(NAMES) - 1)
        gate.release.set()
        made = [f.result(10) for f in [first, *rest]]
    assert [c.display_name for c in made] == NAMES
    customers = [c for c in rig.records("Customer") if c["DisplayName"] in NAMES]
    assert len(customers) == len(NAMES)  # one each: the lost batch was not sent again
    assert [e["entity"] for e in rig.log()].count("batch") == 1


@pytest.mark.parametrize("creates", [True, False])
def test_creates_are_coalesced_per_company_unless_turned_off(rig: QboRig, creates: bool) -> None:
    systems = CoalescingAccountingSystems(rig.systems, coalesce_creates=creates)
    company = systems.for_tenant(TENANT)
    assert (company.creates is not None) is creates
    assert systems.for_tenant(TENANT).creates is company.creates
    made = company.create_customer(new("Solo Sam"), request_id="solo")
    assert made.display_name == "Solo Sam"


class FullBatchWindow(CreateGate):
    """QuickBooks' batch window is full: no batch request may go now."""

    def __init__(self, system: AccountingSystem) -> None:
        super().__init__(system)
        self.threads: set[int] = set()

    def batch_room(self) -> bool:
        return False

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        self.threads.add(threading.get_ident())
        return super().create_customer(customer, request_id=request_id, fence=fence)


def test_with_the_batch_window_full_each_queued_create_is_sent_alone_on_its_own_thread() -> None:
    fake = FakeQuickBooks()
    gate = FullBatchWindow(fake)
    coalescer = CreateCoalescer(gate)
    with ThreadPoolExecutor(len(NAMES)) as pool:
        made = outcomes(held_then_queued(coalescer, gate, pool, NAMES, {"Di Fox": Lost()}))
    assert isinstance(made[NAMES.index("Di Fox")], LeaseLostError)  # its own fence still holds it back
    assert [c.display_name for c in made if isinstance(c, AccountingCustomer)] == [n for n in NAMES if n != "Di Fox"]
    assert sorted(map(tuple, gate.sent)) == sorted((n,) for n in NAMES)  # no batch: one create each
    assert len(gate.threads) == len(NAMES)  # each on its caller's thread, not one after the other on one
