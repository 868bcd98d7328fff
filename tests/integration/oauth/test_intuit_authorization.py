"""IntuitAuthorization (intuit-oauth's AuthClient) over real HTTP against the bundled QBO emulator, whose
discovery document, consent redirect, token and revocation endpoints follow Intuit's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from adapters.quickbooks.oauth import IntuitAuthorization
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RetryPolicy
from adapters.system import SystemClock, UuidIdSource
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import ConnectionState, QuickBooksConnection
from core.connections_service import ConnectionService
from core.currency import CompanyCurrency
from core.domain import Permission, Principal
from core.errors import AccountingUnavailableError, BookkeepingError, FailedPreconditionError
from tests.emulator_sales_tax import set_realm_sales_tax

REDIRECT = "http://127.0.0.1:9/callback"  # never called: the test reads the emulator's redirect


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = run_emulator("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(emulator: EmulatorServer) -> dict[str, str]:
    """An Intuit app registered with the emulator, connected to realm 4620."""
    creds = emulator.create_realm(realm_id="4620", company_name="Ann's Moving Co")
    return {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}


def _consent(url: str) -> dict[str, str]:
    """Opens the authorization URL as the user's browser would; returns what the redirect carries."""
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _live_refresh_tokens(emulator: EmulatorServer, realm_id: str) -> list[str]:
    state = requests.get(f"{emulator.admin_url}/realms/{realm_id}/state", timeout=5).json()
    return list(state["tokens"]["refresh_tokens"])


def test_the_code_flow_against_the_emulator(emulator: EmulatorServer, app: dict[str, str]) -> None:
    intuit = IntuitAuthorization(app["client_id"], app["client_secret"], SystemClock())
    url = intuit.authorization_url(emulator.discovery_url, REDIRECT, "state-123")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{emulator.url}/oauth2/v1/authorize?")
    assert query["scope"] == ["com.intuit.quickbooks.accounting"]
    assert query["state"] == ["state-123"] and query["client_id"] == [app["client_id"]]

    back = _consent(url)
    assert back["state"] == "state-123" and back["realmId"] == "4620"
    before = datetime.now(UTC)
    grant = intuit.exchange_code(emulator.discovery_url, REDIRECT, back["code"])
    assert grant.refresh_token in _live_refresh_tokens(emulator, "4620")
    assert before + timedelta(minutes=59) < grant.access_token_expires < before + timedelta(minutes=61)
    assert grant.refresh_token_expires is not None
    assert grant.refresh_token_expires > before + timedelta(days=100)
    assert grant.access_token not in repr(grant) and app["client_secret"] not in repr(intuit)

    connection = QuickBooksConnection(
        tenant_id="acme",
        realm_id="4620",
        environment=emulator.discovery_url,
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        refresh_token=grant.refresh_token,
        access_token=grant.access_token,
    )
    intuit.revoke(connection)
    assert grant.refresh_token not in _live_refresh_tokens(emulator, "4620")


def test_a_used_or_unknown_code_is_refused_with_a_reason(emulator: EmulatorServer, app: dict[str, str]) -> None:
    intuit = IntuitAuthorization(app["client_id"], app["client_secret"], SystemClock())
    code = _consent(intuit.authorization_url(emulator.discovery_url, REDIRECT, "s"))["code"]
    intuit.exchange_code(emulator.discovery_url, REDIRECT, code)
    with pytest.raises(BookkeepingError) as raised:
        intuit.exchange_code(emulator.discovery_url, REDIRECT, code)
    assert raised.value.reason == "QUICKBOOKS_AUTHORIZATION_FAILED"
    assert "invalid_grant" in raised.value.message


def test_a_wrong_client_secret_is_refused(emulator: EmulatorServer, app: dict[str, str]) -> None:
    right = IntuitAuthorization(app["client_id"], app["client_secret"], SystemClock())
    code = _consent(right.authorization_url(emulator.discovery_url, REDIRECT, "s"))["code"]
    wrong = IntuitAuthorization(app["client_id"], "not-the-secret", SystemClock())
    with pytest.raises(BookkeepingError, match="HTTP 401"):
        wrong.exchange_code(emulator.discovery_url, REDIRECT, code)


def test_an_unreachable_intuit_is_unavailable_and_revoking_stays_quiet() -> None:
    dead = "http://127.0.0.1:9/.well-known/openid_configuration"  # port 9 (discard): refused
    intuit = IntuitAuthorization("id", "secret", SystemClock(), timeout_seconds=2)
    with pytest.raises(AccountingUnavailableError):
        intuit.exchange_code(dead, REDIRECT, "code")
    intuit.revoke(QuickBooksConnection("acme", "1", dead, "id", "secret", refresh_token="rt"))  # no raise


def test_without_an_app_the_flow_names_the_settings_to_set() -> None:
    intuit = IntuitAuthorization("", "", SystemClock())
    with pytest.raises(FailedPreconditionError, match="QBSYNC_QBO_CLIENT_ID"):
        intuit.authorization_url("sandbox", REDIRECT, "s")


def _service(uow: InMemoryUnitOfWorkFactory, app: dict[str, str]) -> ConnectionService:
    """The connection use cases with Intuit's OAuth client and the real QuickBooks adapter, over HTTP."""
    intuit = IntuitAuthorization(app["client_id"], app["client_secret"], SystemClock())
    accounting = QuickBooksAccountingSystems(
        uow,
        SystemClock(),
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        http_timeout=5,
        retry=RetryPolicy(attempts=1),
    )
    return ConnectionService(uow, intuit, SystemClock(), UuidIdSource(), accounting=accounting)


def test_connection_service_end_to_end_with_the_emulator(emulator: EmulatorServer, app: dict[str, str]) -> None:
    uow = InMemoryUnitOfWorkFactory()
    service = _service(uow, app)
    admin = Principal("acme", frozenset({Permission.ADMIN}))

    url, state = service.get_authorization_url(admin, REDIRECT, emulator.discovery_url)
    back = _consent(url)
    assert back["state"] == state
    connection = service.complete_authorization(admin, back["code"], back["state"], back["realmId"], REDIRECT)
    assert connection.state is ConnectionState.CONNECTED and connection.realm_id == "4620"
    assert connection.refresh_token in _live_refresh_tokens(emulator, "4620")

    service.disconnect(admin)
    assert connection.refresh_token not in _live_refresh_tokens(emulator, "4620")


def test_connecting_reads_the_company_currency_through_the_real_adapter(
    emulator: EmulatorServer, app: dict[str, str]
) -> None:
    requests.post(
        f"{emulator.admin_url}/realms/4620/preferences", json={"home_currency": "CAD", "multicurrency": True}, timeout=5
    ).raise_for_status()
    tokens = emulator.create_realm(realm_id="4620", client_id=app["client_id"], client_secret=app["client_secret"])
    uow = InMemoryUnitOfWorkFactory()
    service = _service(uow, app)

    connection = service.connect_with_tokens(
        "acme",
        "4620",
        app["client_id"],
        app["client_secret"],
        tokens["refresh_token"],
        tokens["access_token"],
        environment=emulator.discovery_url,
        api_base_url=emulator.base_api_url,
    )

    assert (connection.home_currency, connection.multicurrency) == ("CAD", True)
    with uow() as unit:
        stored = unit.connections.get("acme")
        events = unit.audit.list("acme", limit=10)
    assert stored is not None and (stored.home_currency, stored.multicurrency) == ("CAD", True)
    assert any(e.kind.value == "QUICKBOOKS_CURRENCY_READ" and "CAD" in e.message for e in events)
    reads = requests.get(f"{emulator.admin_url}/requests", params={"realm_id": "4620"}, timeout=5).json()
    assert [(r["method"], r["entity"], r["status"], r["minorversion"]) for r in reads["requests"]] == [
        ("GET", "preferences", 200, "75")
    ]


def test_a_company_that_cannot_be_read_at_connect_time_stays_connected_unread(
    emulator: EmulatorServer, app: dict[str, str]
) -> None:
    tokens = emulator.create_realm(realm_id="4620", client_id=app["client_id"], client_secret=app["client_secret"])
    requests.post(
        f"{emulator.admin_url}/faults", json={"kind": "http503", "realm_id": "4620", "count": 1}, timeout=5
    ).raise_for_status()
    uow = InMemoryUnitOfWorkFactory()
    service = _service(uow, app)
    connection = service.connect_with_tokens(
        "acme",
        "4620",
        app["client_id"],
        app["client_secret"],
        tokens["refresh_token"],
        tokens["access_token"],
        environment=emulator.discovery_url,
        api_base_url=emulator.base_api_url,
    )
    assert connection.state is ConnectionState.CONNECTED and connection.home_currency == ""

    assert service.refresh_company_preferences("acme") == CompanyPreferences(
        CompanyCurrency("USD", multicurrency=False), SalesTax.AUTOMATED, custom_txn_numbers=False
    )
    with uow() as unit:
        stored = unit.connections.get("acme")
    assert stored is not None and stored.home_currency == "USD"


def test_connecting_reads_the_sales_tax_mode_through_the_real_adapter_and_a_refresh_sees_a_change(
    emulator: EmulatorServer, app: dict[str, str]
) -> None:
    tokens = emulator.create_realm(realm_id="4620", client_id=app["client_id"], client_secret=app["client_secret"])
    realm = emulator.state.realm("4620")
    assert realm is not None
    set_realm_sales_tax(realm, "MANUAL")  # sales tax set up by hand in QuickBooks
    uow = InMemoryUnitOfWorkFactory()
    service = _service(uow, app)
    connection = service.connect_with_tokens(
        "acme",
        "4620",
        app["client_id"],
        app["client_secret"],
        tokens["refresh_token"],
        tokens["access_token"],
        environment=emulator.discovery_url,
        api_base_url=emulator.base_api_url,
    )
    assert connection.sales_tax is SalesTax.MANUAL

    set_realm_sales_tax(realm, "NONE")  # the company turned sales tax off
    preferences = service.refresh_company_preferences("acme")
    assert preferences is not None and preferences.sales_tax is SalesTax.NONE
    with uow() as unit:
        stored = unit.connections.get("acme")
        events = [e.message for e in unit.audit.list("acme", limit=10) if e.kind.value == "QUICKBOOKS_SALES_TAX_READ"]
    assert stored is not None and stored.sales_tax is SalesTax.NONE and stored.home_currency == "USD"
    assert events == ["sales tax NONE (was MANUAL)", "sales tax MANUAL (was not read)"]  # newest first
