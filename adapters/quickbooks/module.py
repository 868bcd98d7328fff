"""injector wiring for the accounting-system adapters."""

from __future__ import annotations

from injector import Module, provider, singleton

from adapters.quickbooks.coalescing import CoalescingAccountingSystems
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RetryPolicy
from core.ports import AccountingSystems, Clock, CompanyLock, RequestLimiter, UnitOfWorkFactory


class FakeQuickBooksModule(Module):
    """Every tenant gets an in-memory QuickBooks company: for tests, testers and demos."""

    def __init__(self, companies: FakeQuickBooksCompanies | None = None) -> None:
        self._companies = companies

    @singleton
    @provider
    def accounting_systems(self) -> AccountingSystems:
        return self._companies or FakeQuickBooksCompanies()


class QuickBooksModule(Module):
    """Each tenant's real QuickBooks Online company (or the emulator, or Intuit's sandbox), from the
    connection stored for it, through python-quickbooks over HTTP. Nothing is built or contacted until a
    job asks for a tenant's company.

    The `RequestLimiter` and `CompanyLock` are the ones the injector binds (the coordination module the
    composition root chose: shared across processes on PostgreSQL, in this process otherwise). A test
    that wants other ones binds them in a later module.

    Concurrent customer look-ups and customer creates of one company (the worker threads' first syncs) are
    coalesced into QBO's batch endpoint (adapters/quickbooks/coalescing.py); `coalesce_lookups=False` sends
    each alone, `coalesce_creates=False` coalesces look-ups only (benches compare them).
    """

    def __init__(
        self,
        *,
        http_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        coalesce_lookups: bool = True,
        coalesce_creates: bool = True,
    ) -> None:
        self._http_timeout = http_timeout
        self._retry = retry
        self._coalesce_lookups = coalesce_lookups
        self._coalesce_creates = coalesce_creates

    @singleton
    @provider
    def accounting_systems(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, limiter: RequestLimiter, company_lock: CompanyLock
    ) -> AccountingSystems:
        systems = QuickBooksAccountingSystems(
            uow_factory,
            clock,
            limiter=limiter,
            company_lock=company_lock,
            http_timeout=self._http_timeout,
            retry=self._retry,
        )
        if not self._coalesce_lookups:
            return systems
        return CoalescingAccountingSystems(systems, coalesce_creates=self._coalesce_creates)
