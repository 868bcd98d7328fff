"""The connection use cases through the in-memory unit of work and the fake Intuit code flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies, Fault
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from core.connection import ConnectionState, ListRef, QuickBooksSettings
from core.connections_service import ConnectionService
from core.domain import PaymentMethod, Permission, Principal
from core.errors import (
    BookkeepingError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from tests.unit.support import CountingIds, StepClock

REDIRECT = "https://crm.example.com/qbo/callback"
ADMIN = Principal("acme", frozenset({Permission.ADMIN}))


@dataclass
class World:
    uow: InMemoryUnitOfWorkFactory = field(default_factory=InMemoryUnitOfWorkFactory)
    clock: StepClock = field(default_factory=StepClock)

    def __post_init__(self) -> None:
        self.intuit = FakeQuickBooksAuthorization(self.clock, "app-id", "app-secret")
        self.companies = FakeQuickBooksCompanies()
        self.service = ConnectionService(
            self.uow, self.intuit, self.clock, CountingIds(), accounting=self.companies, default_redirect_uri=""
        )

    def connect(self, principal: Principal = ADMIN, realm_id: str = "4620") -> None:
        url, state = self.service.get_authorization_url(principal, REDIRECT, "sandbox")
        code = self.intuit.consent("sandbox", REDIRECT)
        self.service.complete_authorization(principal, code, state, realm_id, REDIRECT)

    def stored(self, tenant: str = "acme"):  # type: ignore[no-untyped-def]
        with self.uow() as uow:
            return uow.connections.get(tenant)


@pytest.fixture
def world() -> World:
    return World()


def test_every_use_case_needs_admin(world: World) -> None:
    reader = Principal("acme", frozenset(Permission) - {Permission.ADMIN})
    calls = [
        lambda: world.service.get_authorization_url(reader, REDIRECT, "sandbox"),
        lambda: world.service.complete_authorization(reader, "c", "s", "1", REDIRECT),
        lambda: world.service.get_connection(reader),
        lambda: world.service.update_settings(reader, QuickBooksSettings(), ["doc_number_prefix"]),
        lambda: world.service.disconnect(reader),
    ]
    for call in calls:
        with pytest.raises(PermissionDeniedError):
            call()
    assert world.stored() is None


def test_the_code_flow_connects_the_tenant(world: World) -> None:
    url, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    query = parse_qs(urlsplit(url).query)
    assert query["state"] == [state] and query["redirect_uri"] == [REDIRECT]
    assert len(state) >= 32
    pending = world.stored()
    assert pending.state is ConnectionState.DISCONNECTED and pending.oauth_state == state

    code = world.intuit.consent("sandbox", REDIRECT)
    connection = world.service.complete_authorization(ADMIN, code, state, "4620", "")

    stored = world.stored()
    assert stored == connection
    assert stored.state is ConnectionState.CONNECTED
    assert stored.realm_id == "4620"
    assert (stored.client_id, stored.client_secret) == ("app-id", "app-secret")
    assert stored.refresh_token.startswith("fake-refresh-") and stored.access_token.startswith("fake-access-")
    assert stored.connect_time is not None and stored.access_token_expires > stored.connect_time
    assert stored.oauth_state == ""  # used up
    assert "fake-refresh" not in repr(stored) and "app-secret" not in repr(stored)


def test_a_forged_state_is_refused_and_nothing_changes(world: World) -> None:
    _, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    code = world.intuit.consent("sandbox", REDIRECT)
    with pytest.raises(ValidationError) as raised:
        world.service.complete_authorization(ADMIN, code, state + "x", "4620", REDIRECT)
    assert [v.field for v in raised.value.violations] == ["state"]
    assert world.stored().state is ConnectionState.DISCONNECTED


def test_a_state_works_once(world: World) -> None:
    _, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    world.service.complete_authorization(ADMIN, world.intuit.consent("sandbox", REDIRECT), state, "1", REDIRECT)
    with pytest.raises(FailedPreconditionError, match="GetAuthorizationUrl"):
        world.service.complete_authorization(ADMIN, world.intuit.consent("sandbox", REDIRECT), state, "1", REDIRECT)


def test_another_tenants_state_does_not_complete_this_tenants_flow(world: World) -> None:
    other = Principal("other", frozenset({Permission.ADMIN}))
    _, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    with pytest.raises(FailedPreconditionError):
        world.service.complete_authorization(other, world.intuit.consent("sandbox", REDIRECT), state, "1", REDIRECT)
    assert world.stored("other") is None


def test_completing_without_starting_is_a_failed_precondition(world: World) -> None:
    with pytest.raises(FailedPreconditionError):
        world.service.complete_authorization(ADMIN, "code", "state", "1", REDIRECT)


def test_missing_fields_are_all_named(world: World) -> None:
    with pytest.raises(ValidationError) as raised:
        world.service.complete_authorization(ADMIN, "", "", "", REDIRECT)
    assert [v.field for v in raised.value.violations] == ["code", "state", "realm_id"]


def test_a_refused_code_leaves_the_flow_pending(world: World) -> None:
    _, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    with pytest.raises(BookkeepingError) as raised:
        world.service.complete_authorization(ADMIN, "not-a-code", state, "1", REDIRECT)
    assert raised.value.reason == "QUICKBOOKS_AUTHORIZATION_FAILED"
    assert world.stored().oauth_state == state  # a second try with a good code may still complete
    world.service.complete_authorization(ADMIN, world.intuit.consent("sandbox", REDIRECT), state, "1", REDIRECT)
    assert world.stored().state is ConnectionState.CONNECTED


def test_a_different_redirect_uri_is_refused(world: World) -> None:
    _, state = world.service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    with pytest.raises(ValidationError) as raised:
        world.service.complete_authorization(ADMIN, "c", state, "1", "https://evil.example.com/cb")
    assert [v.field for v in raised.value.violations] == ["redirect_uri"]


@pytest.mark.parametrize(
    ("redirect_uri", "environment", "bad"),
    [
        ("", "sandbox", ["redirect_uri"]),
        ("http://crm.example.com/cb", "sandbox", ["redirect_uri"]),  # plain http off this machine
        (REDIRECT, "Sandbox", ["environment"]),  # python-quickbooks would silently use production
        (REDIRECT, "http://intuit.example.com/.well-known/openid_configuration", ["environment"]),
    ],
)
def test_bad_flow_parameters_are_named(world: World, redirect_uri: str, environment: str, bad: list[str]) -> None:
    with pytest.raises(ValidationError) as raised:
        world.service.get_authorization_url(ADMIN, redirect_uri, environment)
    assert [v.field for v in raised.value.violations] == bad
    assert world.stored() is None


def test_loopback_http_and_server_defaults_are_accepted(world: World) -> None:
    service = ConnectionService(
        world.uow,
        world.intuit,
        world.clock,
        CountingIds(),
        accounting=world.companies,
        default_environment="http://127.0.0.1:8765/.well-known/openid_configuration",
        default_redirect_uri="http://localhost:8080/cb",
    )
    url, _ = service.get_authorization_url(ADMIN, "", "")
    assert "127.0.0.1" in parse_qs(urlsplit(url).query)["environment"][0]
    assert world.stored().redirect_uri == "http://localhost:8080/cb"


def test_a_connected_tenant_must_disconnect_to_change_environment(world: World) -> None:
    world.connect()
    with pytest.raises(FailedPreconditionError, match="disconnect"):
        world.service.get_authorization_url(ADMIN, REDIRECT, "production")
    assert world.stored().environment == "sandbox"


def test_get_connection_is_not_found_before_anything(world: World) -> None:
    with pytest.raises(NotFoundError):
        world.service.get_connection(ADMIN)


def test_settings_follow_the_mask(world: World) -> None:
    world.connect()
    wanted = QuickBooksSettings(
        deposit_account=ListRef("4", "Undeposited Funds"),
        income_item=ListRef("1", "Services"),
        payment_methods={PaymentMethod.CHECK: ListRef("2", "Check")},
        doc_number_prefix="MV-",
    )
    got = world.service.update_settings(ADMIN, wanted, ["deposit_account", "doc_number_prefix"])
    assert got == QuickBooksSettings(deposit_account=ListRef("4", "Undeposited Funds"), doc_number_prefix="MV-")
    assert world.service.get_connection(ADMIN).settings == got
    # No mask: every setting the caller filled in.
    got = world.service.update_settings(ADMIN, QuickBooksSettings(income_item=ListRef("1", "Services")), [])
    assert got.income_item == ListRef("1", "Services") and got.deposit_account.id == "4"
    # A masked field left empty goes back to its default.
    got = world.service.update_settings(ADMIN, QuickBooksSettings(), ["deposit_account"])
    assert not got.deposit_account.is_set and got.doc_number_prefix == "MV-"
    assert world.stored().state is ConnectionState.CONNECTED  # settings never touch the tokens


def test_bad_settings_name_every_bad_field_and_store_nothing(world: World) -> None:
    with pytest.raises(ValidationError) as raised:
        world.service.update_settings(
            ADMIN, QuickBooksSettings(doc_number_prefix="WAY-TOO-LONG-PREFIX"), ["colour", "doc_number_prefix", "x"]
        )
    fields = [v.field for v in raised.value.violations]
    assert fields == ["update_mask.paths[0]", "update_mask.paths[2]", "settings.doc_number_prefix"]
    assert "'colour'" in raised.value.violations[0].description
    assert world.stored() is None


def test_settings_may_come_before_the_connection_and_survive_it(world: World) -> None:
    world.service.update_settings(ADMIN, QuickBooksSettings(doc_number_prefix="MV-"), [])
    assert world.service.get_connection(ADMIN).state is ConnectionState.DISCONNECTED
    world.connect()
    assert world.service.get_connection(ADMIN).settings.doc_number_prefix == "MV-"


def test_connecting_another_company_forgets_the_old_ones_account_ids(world: World) -> None:
    world.connect(realm_id="1")
    world.service.update_settings(ADMIN, QuickBooksSettings(deposit_account=ListRef("4")), [])
    world.service.disconnect(ADMIN)
    world.connect(realm_id="2")
    assert world.service.get_connection(ADMIN).settings == QuickBooksSettings()


def test_disconnect_revokes_and_forgets_the_secrets(world: World) -> None:
    world.connect()
    refresh_token = world.stored().refresh_token
    world.service.update_settings(ADMIN, QuickBooksSettings(doc_number_prefix="MV-"), [])
    connection = world.service.disconnect(ADMIN)
    assert world.intuit.revoked == [refresh_token]
    stored = world.stored()
    assert stored == connection
    assert stored.state is ConnectionState.DISCONNECTED
    assert (stored.refresh_token, stored.access_token, stored.client_secret) == ("", "", "")
    assert stored.access_token_expires is None and stored.refresh_token_expires is None
    assert stored.realm_id == "4620" and stored.settings.doc_number_prefix == "MV-"


def test_disconnect_succeeds_when_revoking_fails(world: World) -> None:
    world.connect()
    world.intuit.fail_revoke = True
    assert world.service.disconnect(ADMIN).state is ConnectionState.DISCONNECTED
    assert world.stored().refresh_token == ""


def test_disconnect_without_a_connection_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError):
        world.service.disconnect(ADMIN)


def test_connect_with_tokens_creates_the_tenant(world: World) -> None:
    connection = world.service.connect_with_tokens(
        "newco", "77", "cid", "csecret", "rt", "", "http://127.0.0.1:9/.well-known/openid_configuration",
        "http://127.0.0.1:9/v3",
    )
    with world.uow() as uow:
        assert uow.tenants.exists("newco")
        assert uow.connections.get("newco") == connection
    assert connection.state is ConnectionState.CONNECTED
    assert connection.needs_refresh(world.clock.now())  # no access token yet: the first sync refreshes


def test_connect_with_tokens_keeps_settings_of_the_same_company(world: World) -> None:
    world.service.connect_with_tokens("acme", "77", "cid", "s", "rt1")
    world.service.update_settings(ADMIN, QuickBooksSettings(doc_number_prefix="MV-"), [])
    world.service.connect_with_tokens("acme", "77", "cid", "s", "rt2")
    assert world.stored().settings.doc_number_prefix == "MV-"
    world.service.connect_with_tokens("acme", "78", "cid", "s", "rt3")
    assert world.stored().settings == QuickBooksSettings()


def test_connect_with_tokens_refuses_plain_http_off_this_machine(world: World) -> None:
    with pytest.raises(ValidationError) as raised:
        world.service.connect_with_tokens(
            "acme", "", "cid", "s", "rt", "", "http://qbo.example.com/disco", "http://qbo.example.com/v3"
        )
    assert [v.field for v in raised.value.violations] == ["realm_id", "environment", "api_base_url"]
    assert "plain http" in raised.value.violations[1].description
    assert world.stored() is None


# --- the company's currency (SPEC.md section 7) ----------------------------------------------------


def test_completing_the_code_flow_reads_and_stores_the_company_currency(world: World) -> None:
    world.companies.for_tenant("acme").set_currency("CAD", multicurrency=True)
    world.connect()
    assert (world.stored().home_currency, world.stored().multicurrency) == ("CAD", True)


def test_connecting_with_tokens_reads_and_stores_the_company_currency(world: World) -> None:
    world.companies.for_tenant("acme").set_currency("EUR")
    connection = world.service.connect_with_tokens("acme", "77", "cid", "s", "rt1")
    assert (connection.home_currency, connection.multicurrency) == ("EUR", False)
    assert world.stored() == connection


def test_a_failed_read_keeps_the_connection_and_the_last_known_currency(world: World) -> None:
    world.service.connect_with_tokens("acme", "77", "cid", "s", "rt1")
    world.companies.for_tenant("acme").inject(Fault.UNAVAILABLE)
    connection = world.service.connect_with_tokens("acme", "77", "cid", "s", "rt2")
    assert connection.state is ConnectionState.CONNECTED and connection.refresh_token == "rt2"
    assert world.stored().home_currency == "USD"  # read at the first connect, same company: kept

    world.companies.for_tenant("acme").inject(Fault.UNAVAILABLE)
    world.service.connect_with_tokens("acme", "78", "cid", "s", "rt3")
    assert world.stored().home_currency == ""  # another company: unknown until read


def test_refreshing_the_currency_stores_a_change_made_in_quickbooks(world: World) -> None:
    world.connect()
    world.companies.for_tenant("acme").set_currency(multicurrency=True)
    assert world.service.refresh_company_currency("acme") is not None
    assert (world.stored().home_currency, world.stored().multicurrency) == ("USD", True)
    assert world.service.refresh_company_currency("nobody") is None
