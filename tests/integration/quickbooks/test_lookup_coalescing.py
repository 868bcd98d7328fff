"""Concurrent customer look-ups of one company coalesced into batches (adapters/quickbooks/coalescing.py), on
the fake and on the real adapter against the emulator. Deterministic: the first look-up is held at a gate
(an event) while the others queue behind it, so the batches are known exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from qbo_support import TENANT, QboRig

from adapters.quickbooks.coalescing import CoalescingAccountingSystems, LookupCoalescer
from adapters.quickbooks.fake import FakeCustomer, FakeQuickBooks
from adapters.quickbooks.qbo.limits import QBO_FIELD_LIMITS
from core.accounting import AccountingCustomer, CustomerLookup, NewCustomer
from core.connection import QuickBooksConnection
from core.errors import AccountingUnavailableError
from core.ports import AccountingSystem, AccountingSystems, ForwardingAccountingSystem


class Gate(ForwardingAccountingSystem):
    """Holds the first look-up until `release`, records what each request carried, and can fail requests."""

    def __init__(self, system: AccountingSystem) -> None:
        super().__init__(system)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[list[str]] = []  # the emails of each request, in order
        self.threads: list[int] = []
        self.fail_single: Exception | None = None
        self.fail_many: Exception | None = None

    def _hold(self, emails: list[str]) -> None:
        self.sent.append(emails)
        self.threads.append(threading.get_ident())
        if len(self.sent) == 1:
            self.entered.set()
            assert self.release.wait(10)

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        self._hold([email])
        if self.fail_single is not None:
            raise self.fail_single
        return super().find_customers(display_name, email)

    def find_customers_many(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        self._hold([lookup.email for lookup in lookups])
        if self.fail_many is not None:
            raise self.fail_many
        return super().find_customers_many(lookups)


def wait_until(condition: Callable[[], bool]) -> None:
    """Until the other threads have queued (a bounded wait for a state, never a timed assertion)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the look-ups never queued"
        time.sleep(0.001)


def queued(coalescer: LookupCoalescer) -> int:
    with coalescer._guard:
        return len(coalescer._queue)


def held_then_queued(
    coalescer: LookupCoalescer, gate: Gate, pool: ThreadPoolExecutor, emails: list[str]
) -> list[Future[list[AccountingCustomer]]]:
    """The first look-up in flight (held at the gate), the others queued behind it, then all let go."""
    futures = [pool.submit(coalescer.find_customers, f"Name {emails[0]}", emails[0])]
    assert gate.entered.wait(10)
    futures += [pool.submit(coalescer.find_customers, f"Name {e}", e) for e in emails[1:]]
    wait_until(lambda: queued(coalescer) == len(emails) - 1)
    gate.release.set()
    return futures


def fake_with_customers(emails: list[str]) -> FakeQuickBooks:
    fake = FakeQuickBooks()
    for n, email in enumerate(emails, start=1):
        fake.customers[str(n)] = FakeCustomer(str(n), f"Name {email}", email)
    return fake


EMAILS = [f"c{n}@example.com" for n in range(1, 7)]


def test_concurrent_look_ups_of_one_company_go_as_one_request_then_one_batch_each_with_its_own_answer() -> None:
    fake = fake_with_customers(EMAILS)
    gate = Gate(fake)
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(len(EMAILS)) as pool:
        futures = held_then_queued(coalescer, gate, pool, EMAILS)
        answers = [f.result(10) for f in futures]
    assert [[c.email for c in answer] for answer in answers] == [[e] for e in EMAILS]
    assert gate.sent == [EMAILS[:1], EMAILS[1:]]
    assert fake.request_count == 2 and coalescer.requests == 2


def test_the_real_adapter_sends_the_queued_look_ups_as_one_batch_request(rig: QboRig) -> None:
    emails = EMAILS[:4]
    made = {
        e: rig.system.create_customer(NewCustomer(f"Name {e}", "", "", "", e, "", "CRM"), request_id=e).id
        for e in emails
    }
    rig.clear_log()
    gate = Gate(rig.system)
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(len(emails)) as pool:
        futures = held_then_queued(coalescer, gate, pool, emails)
        answers = [f.result(10) for f in futures]
    assert [[c.id for c in answer] for answer in answers] == [[made[e]] for e in emails]
    assert [e["entity"] for e in rig.log()] == ["query", "batch"]  # 2 requests for 4 look-ups


def test_a_lone_look_up_is_sent_at_once_on_the_callers_thread_as_the_plain_query() -> None:
    fake = fake_with_customers(EMAILS[:1])
    gate = Gate(fake)
    gate.release.set()
    coalescer = LookupCoalescer(gate)
    assert [c.email for c in coalescer.find_customers("Name", EMAILS[0])] == EMAILS[:1]
    assert gate.sent == [EMAILS[:1]] and gate.threads == [threading.get_ident()]
    assert coalescer.find_customers("Other", "nobody@example.com") == []  # the next one too: nothing in flight
    assert fake.request_count == 2


def test_an_error_of_the_batch_request_reaches_every_waiter_of_that_batch() -> None:
    fake = fake_with_customers(EMAILS)
    gate = Gate(fake)
    gate.fail_many = AccountingUnavailableError("QuickBooks did not answer")
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(4) as pool:
        futures = held_then_queued(coalescer, gate, pool, EMAILS[:4])
        assert [c.email for c in futures[0].result(10)] == EMAILS[:1]  # the leader's own request went through
        for waiter in futures[1:]:
            with pytest.raises(AccountingUnavailableError, match="did not answer"):
                waiter.result(10)
    gate.fail_many = None
    assert [c.email for c in coalescer.find_customers("Name", EMAILS[1])] == EMAILS[1:2]  # nothing left stuck


class Stopped(BaseException):
    """A thread being stopped (as KeyboardInterrupt or SystemExit): not an error of the request."""


def test_a_leader_stopped_mid_request_raises_its_stop_and_its_waiters_get_an_outage_to_retry() -> None:
    fake = fake_with_customers(EMAILS)
    gate = Gate(fake)
    gate.fail_many = Stopped()  # the second request's leader (the oldest queued look-up) is stopped in it
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(4) as pool:
        futures = held_then_queued(coalescer, gate, pool, EMAILS[:4])
        assert [c.email for c in futures[0].result(10)] == EMAILS[:1]
        with pytest.raises(Stopped):
            futures[1].result(10)
        for waiter in futures[2:]:
            with pytest.raises(AccountingUnavailableError, match="interrupted"):
                waiter.result(10)
    assert [c.email for c in coalescer.find_customers("Name", EMAILS[2])] == EMAILS[2:3]  # the queue moved on


def test_a_leader_whose_request_fails_hands_the_queue_over_and_only_it_gets_the_error() -> None:
    fake = fake_with_customers(EMAILS)
    gate = Gate(fake)
    gate.fail_single = AccountingUnavailableError("reset by peer")
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(4) as pool:
        futures = held_then_queued(coalescer, gate, pool, EMAILS[:4])
        with pytest.raises(AccountingUnavailableError, match="reset by peer"):
            futures[0].result(10)
        assert [[c.email for c in f.result(10)] for f in futures[1:]] == [[e] for e in EMAILS[1:4]]
    assert gate.sent == [EMAILS[:1], EMAILS[1:4]]


def test_batches_hold_at_most_30_look_ups_and_a_repeated_look_up_is_asked_once() -> None:
    emails = [f"p{n}@example.com" for n in range(36)] + ["p35@example.com"]
    fake = fake_with_customers(emails[:36])
    gate = Gate(fake)
    coalescer = LookupCoalescer(gate)
    with ThreadPoolExecutor(len(emails)) as pool:
        futures = held_then_queued(coalescer, gate, pool, emails)
        answers = [f.result(10) for f in futures]
    assert [len(batch) for batch in gate.sent] == [1, 30, 5]  # the 6 after the first 30: 5 distinct
    assert [[c.email for c in answer] for answer in answers] == [[e] for e in emails]
    assert answers[-2] is not answers[-1]  # each caller its own list


class GatedCompanies(AccountingSystems):
    """A gated fake company per tenant, the same one each time."""

    field_limits = QBO_FIELD_LIMITS

    def __init__(self, tenants: Sequence[str]) -> None:
        self.fakes = {t: fake_with_customers([f"{t}@example.com"]) for t in tenants}
        self.gates = {t: Gate(fake) for t, fake in self.fakes.items()}

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> Gate:
        return self.gates[tenant_id]


def test_different_companies_never_share_a_request_nor_wait_for_each_other() -> None:
    inner = GatedCompanies(["a", "b"])
    systems = CoalescingAccountingSystems(inner)
    inner.gates["b"].release.set()
    with ThreadPoolExecutor(4) as pool:
        held_a = pool.submit(systems.for_tenant("a").find_customers, "a", "a@example.com")
        assert inner.gates["a"].entered.wait(10)
        queued_a = pool.submit(systems.for_tenant("a").find_customers, "a2", "a@example.com")
        wait_until(lambda: queued(systems.for_tenant("a").coalescer) == 1)
        # b's look-up goes at once, alone, while a's is held and another of a's waits: a queue per company.
        assert [c.email for c in systems.for_tenant("b").find_customers("b", "b@example.com")] == ["b@example.com"]
        inner.gates["a"].release.set()
        assert [c.email for c in held_a.result(10)] == ["a@example.com"]
        assert [c.email for c in queued_a.result(10)] == ["a@example.com"]
    assert inner.gates["a"].sent == [["a@example.com"], ["a@example.com"]]
    assert inner.gates["b"].sent == [["b@example.com"]]
    assert inner.fakes["a"].request_count == 2 and inner.fakes["b"].request_count == 1


def test_a_company_handed_out_anew_gets_a_new_queue(rig: QboRig) -> None:
    systems = CoalescingAccountingSystems(rig.systems)
    first = systems.for_tenant(TENANT)
    assert systems.for_tenant(TENANT).coalescer is first.coalescer  # the same company: the same queue
    rig.systems._systems.clear()  # as when the stored connection points at another realm or app
    again = systems.for_tenant(TENANT)
    assert again.coalescer is not first.coalescer and again.inner is not first.inner
    assert again.find_customers("Nobody", "nobody@example.com") == []


def test_a_look_up_queued_behind_a_slow_request_says_so_in_the_log_and_still_gets_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate(fake_with_customers(["a@x.com", "b@x.com"]))
    coalescer = LookupCoalescer(gate, wait_warning_seconds=0.05)
    with caplog.at_level("WARNING", logger="adapters.quickbooks.coalescing"), ThreadPoolExecutor(2) as pool:
        first = pool.submit(coalescer.find_customers, "Name a@x.com", "a@x.com")
        assert gate.entered.wait(10)
        second = pool.submit(coalescer.find_customers, "Name b@x.com", "b@x.com")
        wait_until(lambda: "has waited" in caplog.text)  # held well past the warning's interval
        gate.release.set()
        assert [c.email for c in first.result(10)] == ["a@x.com"]
        assert [c.email for c in second.result(10)] == ["b@x.com"]
    assert "LookupCoalescer has waited" in caplog.text and "(1 queued)" in caplog.text
