"""The settings' look-ups (core/company_lookups.py) as this process holds them: each tenant's stored look-ups
read once, then answered from memory; what is found is stored for every other process; what QuickBooks
refuses is forgotten everywhere.

A sync whose look-ups are all known takes no lock and sends no request. One that must look something up
takes the company's look-up lock first (the deployment's CompanyLock, so across processes on PostgreSQL),
then reads the stored look-ups again: concurrent first syncs of a company make its look-ups once, the
others waiting for them and then reusing them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from core.company_lookups import CompanyLookup, LookupKind
from core.domain import COMPANY_SEPARATOR
from core.ports import Clock, CompanyLock, UnitOfWorkFactory

_Entries = dict[tuple[LookupKind, str], CompanyLookup]
# A connection: (tenant_id, branch_id), "" the tenant's default one. Each is its own company (SPEC §10), with
# look-ups of its own.
_Company = tuple[str, str]


def lookup_lock_key(tenant_id: str, branch_id: str = "") -> str:
    """The CompanyLock key serialising one connection's look-ups (apart from its token refresh's); the
    default connection's is the key it always had."""
    if not branch_id:
        return "lookups:" + tenant_id
    return f"lookups:{tenant_id}{COMPANY_SEPARATOR}{branch_id}"


class CompanyLookups:
    """Every connection's look-ups for one process (QuickBooksAccountingSystems'); thread-safe. Each method
    names the connection by tenant and `branch_id` ("" the default connection)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, company_lock: CompanyLock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._lock = company_lock
        self._tenants: dict[_Company, _Entries] = {}
        self._guard = threading.Lock()

    def known(
        self, tenant_id: str, realm_id: str, kind: LookupKind, name: str, against: str, *, branch_id: str = ""
    ) -> CompanyLookup | None:
        """The look-up of `kind` and `name` made against `against` in that company, if it still stands."""
        with self._guard:
            entries = self._tenants.get((tenant_id, branch_id))
        if entries is None:
            entries = self._load(tenant_id, branch_id)
        found = entries.get((kind, name))
        return found if found is not None and found.answers(realm_id, against, self._clock.now()) else None

    @contextmanager
    def looking_up(self, tenant_id: str, *, branch_id: str = "") -> Iterator[None]:
        """Held while the connection's look-ups are made: the stored ones are read again once it is ours,
        since another process may have made them while this one waited."""
        with self._lock.hold(lookup_lock_key(tenant_id, branch_id)):
            self._load(tenant_id, branch_id)
            yield

    def record(self, tenant_id: str, lookups: list[CompanyLookup], *, branch_id: str = "") -> None:
        if not lookups:
            return
        with self._uow_factory() as uow:
            uow.company_lookups.save(tenant_id, lookups, branch_id=branch_id)
            uow.commit()
        with self._guard:
            entries = self._tenants.setdefault((tenant_id, branch_id), {})
            for lookup in lookups:
                entries[(lookup.kind, lookup.name)] = lookup

    def forget(self, tenant_id: str, kind: LookupKind, name: str | None = None, *, branch_id: str = "") -> None:
        """QuickBooks refused what the look-up (every one of `kind` when `name` is None) supplied: it is made
        again by the next sync of any process (the others find out when QuickBooks refuses them too, or
        when they read the stored look-ups again)."""
        with self._uow_factory() as uow:
            uow.company_lookups.forget(tenant_id, kind, name, branch_id=branch_id)
            uow.commit()
        with self._guard:
            entries = self._tenants.get((tenant_id, branch_id), {})
            for key in [k for k in entries if k[0] is kind and name in (None, k[1])]:
                del entries[key]

    def now(self) -> datetime:
        """When a look-up made now is made (its `checked_time`)."""
        return self._clock.now()

    def _load(self, tenant_id: str, branch_id: str) -> _Entries:
        with self._uow_factory.read_only() as uow:
            stored = uow.company_lookups.of_tenant(tenant_id, branch_id=branch_id)
        entries = {(lookup.kind, lookup.name): lookup for lookup in stored}
        with self._guard:
            self._tenants[(tenant_id, branch_id)] = entries
        return entries
