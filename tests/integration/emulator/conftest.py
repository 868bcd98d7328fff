"""Fixtures: a fresh QBO emulator per test, a connected realm, and real python-quickbooks clients aimed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from emulator_harness import Connection, client_class
from intuitlib.client import AuthClient
from quickbooks import QuickBooks

from adapters.quickbooks.emulator import EmulatorServer, run_emulator


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    # requests-oauthlib refuses http:// unless told otherwise; the emulator is loopback-only, so the test
    # process (and only it) allows it.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    server = run_emulator("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connection(emulator: EmulatorServer) -> Connection:
    """Realm "4620816365000000001" with an app connected; rate limits relaxed so only the tests about
    throttling meet them (they set their own)."""
    creds = requests.post(
        f"{emulator.admin_url}/realms",
        json={"realm_id": "4620816365000000001", "company_name": "Mover & Sons"},
        timeout=10,
    ).json()
    requests.post(
        f"{emulator.admin_url}/settings",
        json={"limits": {"per_second": 0, "per_minute": 0, "batch_per_minute": 0}},
        timeout=10,
    )
    return Connection(
        emulator,
        creds["realm_id"],
        creds["client_id"],
        creds["client_secret"],
        creds["access_token"],
        creds["refresh_token"],
    )


@pytest.fixture
def make_qb(connection: Connection) -> Callable[..., QuickBooks]:
    """Build a real python-quickbooks client for the realm (``timeout=`` seconds, ``auth_client=``)."""

    def build(timeout: float | None = None, auth_client: AuthClient | None = None) -> QuickBooks:
        cls = client_class(connection.server.base_api_url, timeout)
        return cls(auth_client=auth_client or connection.auth_client(), company_id=connection.realm_id, minorversion=75)

    return build


@pytest.fixture
def qb(make_qb: Callable[..., QuickBooks]) -> QuickBooks:
    return make_qb()
