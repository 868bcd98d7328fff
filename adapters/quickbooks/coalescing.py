"""Concurrent customer look-ups and creates of one company, coalesced into QBO's batch endpoint (issue 12).

A worker process runs several worker threads, and concurrent first syncs of one company each look their
customer up (`find_customers`, R1): one QBO request each, a third of all requests in a burst of new-customer
deposits. `CoalescingAccountingSystems` sits in front of the real `AccountingSystems` and sends the
look-ups of one tenant's company that overlap in time as one `find_customers_many` (one batch request).

"Natural batching", with no timer: a look-up arriving while none of its company is in flight is sent at
once, alone, as the plain `find_customers` (no added latency, no batch overhead). Look-ups arriving while
one is in flight queue; when it returns, the oldest of them leads the next request, carrying every queued
look-up (at most `BATCH_MAX_ITEMS`, QBO's limit per batch; the rest wait for the one after). So a look-up
waits at most for the request in flight plus its own, and the batch grows exactly as much as QBO is slow.

Each caller gets its own answer, matched by position (the port answers `find_customers_many` in the order
given); an error of the whole request (QBO unreachable, a 429 the adapter gave up on, a reconnection) is
raised to every caller of that batch, as it would have been raised to each on its own. Whichever way a
leader's request ends — an answer, an error, even a `BaseException` stopping its thread (the others then
get `AccountingUnavailableError`, retried as any outage) — the leader hands the queue over to the next waiter
before it returns, so nothing waits forever: every wait ends on an answer, an error, or the turn to lead.

Customer creates of concurrent new-customer syncs are coalesced the same way (`CreateCoalescer`, one
`create_customers_many`), which is safe because every create of a batch keeps what its single create has:
its own request id and its own fence (each job's lease, checked by the adapter before the request leaves:
a job that lost its lease has its create left out, the others go); after an uncertain send each create is
looked up before it is sent again (R7); a create QBO refuses (a taken name, 6240) fails only its own job,
with the error the single create raises (R2 then tries the next name). A job's payment still goes in a
request of its own after its customer exists: only customer creates are coalesced with each other. Other
writes keep their own requests (their order and batching are the engine's: core.record_writer).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from adapters.quickbooks.qbo.batch import BATCH_MAX_ITEMS
from core.accounting import AccountingCustomer, CustomerLookup, NewCustomer
from core.connection import QuickBooksConnection
from core.errors import AccountingUnavailableError
from core.ports import (
    UNFENCED,
    AccountingSystem,
    AccountingSystems,
    CustomerCreate,
    ForwardingAccountingSystem,
    WriteFence,
)

log = logging.getLogger(__name__)

# How long a queued caller waits for the request in flight before it says so in the log (and again each time
# as long): a request is answered within the HTTP timeout (30 s) plus the limiter's waits, so a caller still
# waiting after a minute points at a request, or a leader, that never came back.
WAIT_WARNING_SECONDS = 60.0

Q = TypeVar("Q")  # what one caller asks
A = TypeVar("A")  # what it is answered


class _Waiter(Generic[Q, A]):
    """One caller's request: woken once, with its answer, its error, or its turn to lead the next request."""

    def __init__(self, request: Q) -> None:
        self.request = request
        self.answer: A | None = None
        self.error: BaseException | None = None
        self.leads = False
        self.alone = False  # told to send its own request (QuickBooks' batch window is full)
        self.woken = threading.Event()

    def wake(self, answer: A | None = None, error: BaseException | None = None) -> None:
        self.answer, self.error = answer, error
        self.woken.set()

    def result(self) -> A:
        if self.error is not None:
            # One instance raised in every waiter's thread, as `concurrent.futures.Future.result` does.
            raise self.error
        assert self.answer is not None
        return self.answer


class _Coalescer(ABC, Generic[Q, A]):
    """The requests of one kind to one company: at most one request in flight, the others queued for the
    next. A subclass says how a list of them is sent (`_send`: one answer per request, in order)."""

    def __init__(
        self,
        system: AccountingSystem,
        *,
        max_batch: int = BATCH_MAX_ITEMS,
        wait_warning_seconds: float = WAIT_WARNING_SECONDS,
    ) -> None:
        self._system = system
        self._max_batch = max_batch
        self._wait_warning_seconds = wait_warning_seconds
        self._guard = threading.Lock()
        self._queue: list[_Waiter[Q, A]] = []
        self._in_flight = False  # a leader is sending (or about to send) a request
        self.requests = 0  # requests sent (single or batched): what the tests and benches count

    def _submit(self, request: Q) -> A:
        waiter: _Waiter[Q, A] = _Waiter(request)
        with self._guard:
            self._queue.append(waiter)
            leads = not self._in_flight
            self._in_flight = True
        if not leads:
            self._wait(waiter)
            if waiter.alone:
                with self._guard:
                    self.requests += 1
                return self._send([waiter.request])[0]
            if not waiter.leads:
                return waiter.result()
        self._lead()
        return waiter.result()

    def _wait(self, waiter: _Waiter[Q, A]) -> None:
        """Until `waiter` is woken (it has no deadline of its own: the request in flight has), saying so in the
        log every `wait_warning_seconds`."""
        waited = 0.0
        while not waiter.woken.wait(self._wait_warning_seconds):
            waited += self._wait_warning_seconds
            with self._guard:
                queued = len(self._queue)
            log.warning(
                "a %s has waited %.0f s for the request in flight to its company (%d queued)",
                type(self).__name__,
                waited,
                queued,
            )

    @abstractmethod
    def _send(self, requests: Sequence[Q]) -> list[A]:
        """One request for `requests` (one answer each, in order), or its error for all of them."""

    def _lead(self) -> None:
        """Sends the queue's oldest requests (the leader's among them: it is the oldest) as one request,
        hands the rest over to the next leader, then answers every waiter of this request."""
        with self._guard:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self.requests += 1
        answers: list[A] | None = None
        error: BaseException | None = None
        interrupted: BaseException | None = None
        try:
            if len(batch) > 1 and not self._system.batch_room():
                # QuickBooks' batch window is full (40 batch requests a minute): rather than one thread sending
                # them one after the other, every waiter sends its own request on its own thread, at once.
                for waiter in batch[1:]:
                    waiter.alone = True
                    waiter.woken.set()
                batch = batch[:1]
            answers = self._send([w.request for w in batch])
        except Exception as exc:  # noqa: BLE001 - the request's error: every waiter of this request raises it
            error = exc
        except BaseException as exc:
            # The leader's thread is being stopped (KeyboardInterrupt, SystemExit): that is the leader's own
            # business; the others' request was merely not answered (a create may have landed: its
            # retry looks before it creates, R1), which a worker retries like any outage.
            interrupted = exc
            error = AccountingUnavailableError(
                "the request was interrupted before QuickBooks answered", maybe_committed=True
            )
        finally:
            self._hand_over()
        for n, waiter in enumerate(batch):
            waiter.wake(None if answers is None else answers[n], error)
        if interrupted is not None:
            raise interrupted

    def _hand_over(self) -> None:
        with self._guard:
            if not self._queue:
                self._in_flight = False
                return
            successor = self._queue[0]
        successor.leads = True
        successor.woken.set()


class LookupCoalescer(_Coalescer[CustomerLookup, list[AccountingCustomer]]):
    """The customer look-ups of one company."""

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        # A caller's own list: two callers of one look-up never share one.
        return list(self._submit(CustomerLookup(display_name, email)))

    def _send(self, lookups: Sequence[CustomerLookup]) -> list[list[AccountingCustomer]]:
        unique = list(dict.fromkeys(lookups))  # two jobs of one customer ask once
        if len(unique) == 1:  # a lone look-up goes as the plain query: the cheapest request for one
            alone = unique[0]
            found = {alone: self._system.find_customers(alone.display_name, alone.email)}
        else:
            # strict: an answer missing for a look-up raises (ValueError) rather than answering a caller
            # with another caller's customers.
            found = dict(zip(unique, self._system.find_customers_many(unique), strict=True))
        return [found[lookup] for lookup in lookups]


class CreateCoalescer(_Coalescer[CustomerCreate, "AccountingCustomer | Exception"]):
    """The customer creates of one company: each caller gets its own customer, or its own create's error."""

    def create_customer(self, customer: NewCustomer, *, request_id: str, fence: WriteFence) -> AccountingCustomer:
        answer = self._submit(CustomerCreate(customer, request_id, fence))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _send(self, creates: Sequence[CustomerCreate]) -> list[AccountingCustomer | Exception]:
        if len(creates) == 1:  # a lone create goes as the plain create: its refusal raised to its one caller
            alone = creates[0]
            return [self._system.create_customer(alone.customer, request_id=alone.request_id, fence=alone.fence)]
        answers = self._system.create_customers_many(creates)
        if len(answers) != len(creates):
            raise ValueError(f"{len(answers)} answers for {len(creates)} customer creates")
        return answers


class CoalescingAccountingSystem(ForwardingAccountingSystem):
    """One tenant's company, its `find_customers` going through the company's `LookupCoalescer` and its
    `create_customer` through its `CreateCoalescer` (when given one)."""

    def __init__(
        self, system: AccountingSystem, coalescer: LookupCoalescer, creates: CreateCoalescer | None = None
    ) -> None:
        super().__init__(system)
        self.coalescer = coalescer
        self.creates = creates

    @property
    def inner(self) -> AccountingSystem:
        return self._system

    def find_customers(self, display_name: str, email: str) -> list[AccountingCustomer]:
        return self.coalescer.find_customers(display_name, email)

    def create_customer(
        self, customer: NewCustomer, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> AccountingCustomer:
        if self.creates is None:
            return super().create_customer(customer, request_id=request_id, fence=fence)
        return self.creates.create_customer(customer, request_id=request_id, fence=fence)


class CoalescingAccountingSystems(AccountingSystems):
    """`systems`, with each tenant's look-ups coalesced. One coalescer per tenant's company object: when
    `systems` hands out another one for a tenant (its connection now points at another realm or app), the
    next look-ups form a new queue on it, and the old queue's request ends on the old company — two
    companies never share a request."""

    def __init__(
        self, systems: AccountingSystems, *, max_batch: int = BATCH_MAX_ITEMS, coalesce_creates: bool = True
    ) -> None:
        """`coalesce_creates=False` coalesces look-ups only (benches compare)."""
        self.inner = systems
        self.field_limits = systems.field_limits
        self._max_batch = max_batch
        self._coalesce_creates = coalesce_creates
        self._coalescers: dict[tuple[str, str], tuple[AccountingSystem, LookupCoalescer, CreateCoalescer | None]] = {}
        self._guard = threading.Lock()

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> CoalescingAccountingSystem:
        system = self.inner.for_tenant(tenant_id, connection, branch_id=branch_id)
        # One queue per connection: a branch's company is another company (as the inner systems key them).
        key = (tenant_id, connection.branch_id if connection is not None else branch_id)
        with self._guard:
            known = self._coalescers.get(key)
            if known is None or known[0] is not system:
                creates = CreateCoalescer(system, max_batch=self._max_batch) if self._coalesce_creates else None
                known = (system, LookupCoalescer(system, max_batch=self._max_batch), creates)
                self._coalescers[key] = known
        return CoalescingAccountingSystem(system, known[1], known[2])
