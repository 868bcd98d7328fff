"""Building blocks for unit tests: the core wired to in-memory fakes, with a controllable clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from core.auth import ApiKeys
from core.domain import Permission, Principal
from core.service import SyncService
from core.sync_engine import SyncEngine
from core.worker import SyncWorker

ALL_PERMISSIONS = frozenset(Permission)


class StepClock:
    """A clock that moves one second each time it is read, so that times are distinct and ordered."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start

    def now(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


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

    def __post_init__(self) -> None:
        self.service = SyncService(self.uow_factory, self.companies, self.clock, self.ids)
        self.engine = SyncEngine(self.uow_factory, self.companies, self.clock)
        self.worker = SyncWorker(
            self.uow_factory, self.engine, self.clock, backoff_base=timedelta(0), backoff_cap=timedelta(0)
        )
        self.keys = ApiKeys(self.uow_factory, self.clock, self.ids)

    def principal(self, tenant: str = "acme", permissions: frozenset[Permission] = ALL_PERMISSIONS) -> Principal:
        with self.uow_factory() as uow:
            uow.tenants.ensure(tenant)
            uow.commit()
        return Principal(tenant, permissions)

    def qbo(self, tenant: str = "acme") -> FakeQuickBooks:
        return self.companies.for_tenant(tenant)
