"""injector wiring for the accounting-system adapters."""

from __future__ import annotations

from injector import Module, provider, singleton

from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits, RequestLimiter, RetryPolicy
from core.ports import AccountingSystems, Clock, UnitOfWorkFactory


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
    job asks for a tenant's company."""

    def __init__(
        self,
        *,
        http_timeout: float = 30.0,
        limits: RateLimits | None = None,
        limiter: RequestLimiter | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http_timeout = http_timeout
        self._limits = limits
        self._limiter = limiter
        self._retry = retry

    @singleton
    @provider
    def accounting_systems(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> AccountingSystems:
        return QuickBooksAccountingSystems(
            uow_factory,
            clock,
            http_timeout=self._http_timeout,
            limits=self._limits,
            limiter=self._limiter,
            retry=self._retry,
        )
