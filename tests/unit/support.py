"""Building blocks for unit tests: the core wired to in-memory fakes, with a controllable clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from core.accounting import BatchWrite, PaymentSpec, QuickBooksRef, TxnSpec
from core.auth import ApiKeys
from core.connection import QuickBooksConnection
from core.domain import Permission, Principal
from core.errors import AccountingError
from core.limits import FieldLimits
from core.ports import UNFENCED, AccountingSystem, AccountingSystems, ForwardingAccountingSystem, WriteFence
from core.preview import SyncPreview
from core.reconcile import ReconcileService
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker

ALL_PERMISSIONS = frozenset(Permission)
T = TypeVar("T")


class StepClock:
    """A clock that moves one second each time it is read, so that times are distinct and ordered."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start

    def now(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


class ManualClock:
    """A clock that stands still until the test moves it: leases run out exactly when a test says so."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        self._now += by


# The step clock moves a second per read and the worker checks its lease before every write: a lease of a
# year keeps a long job of a test held (the leases tests use ManualClock and a short lease instead).
STEP_CLOCK_LEASE = timedelta(days=365)


class CountingIds:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"id{next(self._counter)}"


@dataclass
class Harness:
    """The core with in-memory persistence and the fake QuickBooks."""

    uow_factory: InMemoryUnitOfWorkFactory = field(default_factory=InMemoryUnitOfWorkFactory)
    companies: FakeQuickBooksCompanies = field(default_factory=FakeQuickBooksCompanies)
    clock: StepClock = field(default_factory=StepClock)
    ids: CountingIds = field(default_factory=CountingIds)
    # What the core talks to, when not `companies` itself: e.g. `HookedCompanies(companies)` in front of them.
    accounting: AccountingSystems | None = None

    def __post_init__(self) -> None:
        accounting = self.accounting or self.companies
        self.service = SyncService(self.uow_factory, accounting, self.clock, self.ids)
        self.engine = SyncEngine(self.uow_factory, accounting, self.clock)
        self.preview = SyncPreview(self.uow_factory, accounting, self.clock, self.ids)
        self.reconcile = ReconcileService(self.uow_factory, accounting)
        self.worker = SyncWorker(
            self.uow_factory,
            self.engine,
            self.clock,
            lease=STEP_CLOCK_LEASE,
            backoff_base=timedelta(0),
            backoff_cap=timedelta(0),
        )
        self.keys = ApiKeys(self.uow_factory, self.clock, self.ids)

    def principal(self, tenant: str = "acme", permissions: frozenset[Permission] = ALL_PERMISSIONS) -> Principal:
        with self.uow_factory() as uow:
            uow.tenants.ensure(tenant)
            uow.commit()
        return Principal(tenant, permissions)

    def qbo(self, tenant: str = "acme") -> FakeQuickBooks:
        return self.companies.for_tenant(tenant)


class HookedCompany(ForwardingAccountingSystem):
    """An accounting system that runs `hook` around one kind of write, as if its worker stalled there.

    `when` is "before" (about to be handed to the system, whose fence is checked later, at send time),
    "sending" (the system checked the write's fence and is sending its first request: the stall happens
    while it is on the wire) or "after" (QuickBooks answered; not yet recorded). The hook runs on the first
    `times` such writes; `amounts` is every payment amount handed on, in order."""

    def __init__(
        self,
        system: AccountingSystem,
        write: str,
        when: str,
        hook: Callable[[], None],
        times: int = 1,
    ) -> None:
        super().__init__(system)
        self._write = write
        self._when = when
        self._hook = hook
        self._times = times
        self.amounts: list[Decimal] = []

    def _send(self, write: str, fence: WriteFence, send: Callable[[WriteFence], T]) -> T:
        fire = write == self._write and self._times > 0
        if fire:
            self._times -= 1
        if fire and self._when == "before":
            self._hook()
        result = send(_StallOnceChecked(fence, self._hook) if fire and self._when == "sending" else fence)
        if fire and self._when == "after":
            self._hook()
        return result

    def create(self, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED) -> QuickBooksRef:
        self._note(spec)
        return super().create(spec, request_id=request_id, fence=fence)

    def update(
        self, ref: QuickBooksRef, spec: TxnSpec, *, request_id: str, fence: WriteFence = UNFENCED
    ) -> QuickBooksRef:
        self._note(spec)
        return super().update(ref, spec, request_id=request_id, fence=fence)

    def write_many(
        self, writes: Sequence[BatchWrite], *, fence: WriteFence = UNFENCED
    ) -> list[QuickBooksRef | AccountingError]:
        for write in writes:
            self._note(write.spec)
        return super().write_many(writes, fence=fence)

    def _note(self, spec: TxnSpec) -> None:
        if isinstance(spec, PaymentSpec):
            self.amounts.append(spec.amount)


class _StallOnceChecked(WriteFence):
    """`fence`, then `hook` the first time it let a request go: a stall after the last check, with the
    request already on its way."""

    def __init__(self, fence: WriteFence, hook: Callable[[], None]) -> None:
        self._fence = fence
        self._hook: Callable[[], None] | None = hook

    def check(self) -> None:
        self._fence.check()
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()


@dataclass
class HookedCompanies(AccountingSystems):
    """Each tenant's company, with a `HookedCompany` in front of it once `hook` was called for the tenant."""

    companies: AccountingSystems
    hooked: dict[str, HookedCompany] = field(default_factory=dict)

    def for_tenant(
        self, tenant_id: str, connection: QuickBooksConnection | None = None, *, branch_id: str = ""
    ) -> AccountingSystem:
        return self.hooked.get(tenant_id) or self.companies.for_tenant(tenant_id, connection, branch_id=branch_id)

    @property
    def field_limits(self) -> FieldLimits:  # type: ignore[override]
        return self.companies.field_limits

    def hook(self, tenant_id: str, write: str, when: str, hook: Callable[[], None], times: int = 1) -> HookedCompany:
        self.hooked[tenant_id] = HookedCompany(self.companies.for_tenant(tenant_id), write, when, hook, times)
        return self.hooked[tenant_id]

    def watch(self, tenant_id: str) -> HookedCompany:
        """Only records what is sent (`amounts`); no hook."""
        return self.hook(tenant_id, "", "before", lambda: None, times=0)
