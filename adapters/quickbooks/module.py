"""injector wiring for the accounting-system adapters."""

from __future__ import annotations

from injector import Module, provider, singleton

from adapters.quickbooks.fake import FakeQuickBooksCompanies
from core.ports import AccountingSystems


class FakeQuickBooksModule(Module):
    """Every tenant gets an in-memory QuickBooks company: for tests, testers and demos."""

    def __init__(self, companies: FakeQuickBooksCompanies | None = None) -> None:
        self._companies = companies

    @singleton
    @provider
    def accounting_systems(self) -> AccountingSystems:
        return self._companies or FakeQuickBooksCompanies()
