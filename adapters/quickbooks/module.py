"""injector wiring for the accounting-system adapters."""

from __future__ import annotations

from injector import Module, provider, singleton

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

    The `RequestLimiter` and `CompanyLock` come from the injector: the persistence module binds them to
    what its database can share (across processes on PostgreSQL, in this process otherwise), with the
    deployment's `RateLimits`. `limiter` overrides the bound limiter (a test double that meters nothing).
    """

    def __init__(
        self,
        *,
        http_timeout: float = 30.0,
        limiter: RequestLimiter | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http_timeout = http_timeout
        self._limiter = limiter
        self._retry = retry

    @singleton
    @provider
    def accounting_systems(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, limiter: RequestLimiter, company_lock: CompanyLock
    ) -> AccountingSystems:
        return QuickBooksAccountingSystems(
            uow_factory,
            clock,
            http_timeout=self._http_timeout,
            limiter=self._limiter or limiter,
            retry=self._retry,
            company_lock=company_lock,
        )
