"""injector wiring for the `QuickBooksAuthorization` port (Intuit's OAuth2 code flow).

Kept apart from `module.py` (the accounting systems) so that the app's OAuth credentials and the
per-tenant QuickBooks adapters can be swapped independently.
"""

from __future__ import annotations

from injector import Module, provider, singleton

from core.ports import Clock, QuickBooksAuthorization


class IntuitAuthorizationModule(Module):
    """qbsync's Intuit app (QBSYNC_QBO_CLIENT_ID / QBSYNC_QBO_CLIENT_SECRET). Without them, starting the
    flow fails with FAILED_PRECONDITION naming the settings; everything else runs."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"IntuitAuthorizationModule(client_id={self._client_id!r})"

    @singleton
    @provider
    def authorization(self, clock: Clock) -> QuickBooksAuthorization:
        # Imported here: intuitlib pulls in requests and jwt, which a fake-only wiring never needs.
        from adapters.quickbooks.oauth import IntuitAuthorization

        return IntuitAuthorization(self._client_id, self._client_secret, clock)


class FakeQuickBooksAuthorizationModule(Module):
    """The fake code flow (adapters.quickbooks.fake_oauth), for tests and offline demos."""

    @singleton
    @provider
    def authorization(self, clock: Clock) -> QuickBooksAuthorization:
        from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization

        return FakeQuickBooksAuthorization(clock)
