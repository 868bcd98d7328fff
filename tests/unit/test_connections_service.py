"""The connection use cases through the in-memory unit of work and the fake Intuit code flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies, Fault
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from core.company_lists import ListKind
from core.company_lookups import LookupKind
from core.company_tax import SalesTax
from core.connection import ConnectionState, ListRef, QuickBooksSettings
from core.connections_service import ConnectionService
from core.domain import PaymentMethod, Permission, Principal
from core.errors import (
    AccountingUnavailableError,
    BookkeepingError,
    FailedPreconditionError,
    FieldViolation,
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
    companies: FakeQuickBooksCompanies = field(default_factory=FakeQuickBooksCompanies)

    def __post_init__(self) -> None:
        self.intuit = FakeQuickBooksAuthorization(self.clock, "app-id", "app-secret")
        self.service = ConnectionService(
            self.uow, self.intuit, self.clock, CountingIds(), accounting=self.companies, default_redirect_uri=""
        )

    @property
    def company(self) -> FakeQuickBooks:
        return self.companies.for_tenant("acme")

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


def test_conversion_violations_are_reported_after_the_permission_with_the_use_cases_own(world: World) -> None:
    reader = Principal("acme", frozenset(Permission) - {Permission.ADMIN})
    environment = FieldViolation("environment", "unknown environment 99")
    method = FieldViolation("settings.payment_methods[0].method", "is required")
    calls = [
        lambda who: world.service.get_authorization_url(who, "", "", conversion_violations=[environment]),
        lambda who: world.service.update_settings(
            who, QuickBooksSettings(doc_number_prefix="MUCH-TOO-LONG-A-PREFIX"), [], conversion_violations=[method]
        ),
    ]
    for call in calls:
        with pytest.raises(PermissionDeniedError):
            call(reader)
    with pytest.raises(ValidationError) as raised:
        calls[0](ADMIN)
    assert raised.value.violations[0] == environment
    assert [v.field for v in raised.value.violations] == ["environment", "redirect_uri"]
    with pytest.raises(ValidationError) as raised:
        calls[1](ADMIN)
    assert [v.field for v in raised.value.violations] == [method.field, "settings.doc_number_prefix"]
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
        deposit_account=ListRef("2", "Undeposited Funds"),
        income_item=ListRef("1", "Services"),
        payment_methods={PaymentMethod.CHECK: ListRef("2", "Check")},
        doc_number_prefix="MV-",
    )
    got = world.service.update_settings(ADMIN, wanted, ["deposit_account", "doc_number_prefix"])
    assert got == QuickBooksSettings(deposit_account=ListRef("2", "Undeposited Funds"), doc_number_prefix="MV-")
    assert world.service.get_connection(ADMIN).settings == got
    # No mask: every setting the caller filled in.
    got = world.service.update_settings(ADMIN, QuickBooksSettings(income_item=ListRef("1", "Services")), [])
    assert got.income_item == ListRef("1", "Services") and got.deposit_account.id == "2"
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
    world.service.update_settings(ADMIN, QuickBooksSettings(deposit_account=ListRef("2")), [])
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
        "newco",
        "77",
        "cid",
        "csecret",
        "rt",
        "",
        "http://127.0.0.1:9/.well-known/openid_configuration",
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


# --- settings checked against the company (the fake's chart: 1 Checking, 2 Undeposited Funds, 3 A/R,
# --- 4 Services (Income), 5 Credit Card; item 1 Services; payment methods 1 Cash .. 5 Other) --------------


def _violations(raised: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {v.field: v.description for v in raised.value.violations}


def test_an_income_account_as_deposit_account_is_refused_and_nothing_stored(world: World) -> None:
    world.connect()
    before = world.stored()
    with pytest.raises(ValidationError) as raised:
        world.service.update_settings(
            ADMIN, QuickBooksSettings(deposit_account=ListRef(name="Services"), doc_number_prefix="MV-"), []
        )
    assert list(_violations(raised)) == ["settings.deposit_account"]
    assert "'Services' (Id 4) is an Income account" in raised.value.violations[0].description
    assert "Bank or Other Current Asset" in raised.value.violations[0].description
    assert world.stored() == before  # not even the good doc_number_prefix


def test_every_unusable_mapping_is_named_at_once(world: World) -> None:
    world.connect()
    bare = world.company.add_list_entry(ListKind.ITEM, "Bare Item", "Service")  # no income account
    world.company.deactivate_list_entry(ListKind.PAYMENT_METHOD, "2")
    wanted = QuickBooksSettings(
        deposit_account=ListRef("99"),
        refund_bank_account=ListRef("5", "Credit Card"),
        accounts_receivable_account=ListRef(name="Checking"),
        income_item=ListRef(bare),
        payment_methods={
            PaymentMethod.CASH: ListRef(name="Cash"),
            PaymentMethod.CHECK: ListRef("2"),
            PaymentMethod.OTHER: ListRef(name="Bitcoin"),
        },
    )
    with pytest.raises(ValidationError) as raised:
        world.service.update_settings(ADMIN, wanted, [])
    found = _violations(raised)
    assert list(found) == [
        "settings.deposit_account",
        "settings.refund_bank_account",
        "settings.accounts_receivable_account",
        "settings.income_item",
        "settings.payment_methods[1].quickbooks_payment_method",
        "settings.payment_methods[2].quickbooks_payment_method",
    ]
    assert found["settings.deposit_account"] == "QuickBooks has no account with Id 99"
    assert "a Credit Card account" in found["settings.refund_bank_account"]
    assert "must be a Bank account" in found["settings.refund_bank_account"]
    assert "must be an Accounts Receivable account" in found["settings.accounts_receivable_account"]
    assert "has no income account" in found["settings.income_item"]
    assert "'Check' (Id 2) is inactive" in found["settings.payment_methods[1].quickbooks_payment_method"]
    assert "named 'Bitcoin'" in found["settings.payment_methods[2].quickbooks_payment_method"]
    assert world.stored().settings == QuickBooksSettings()


def test_a_name_only_setting_is_stored_with_quickbooks_id_and_name(world: World) -> None:
    world.connect()
    got = world.service.update_settings(
        ADMIN,
        QuickBooksSettings(
            deposit_account=ListRef(name="  undeposited   FUNDS "),
            refund_bank_account=ListRef("1", "an old name"),  # by id: QuickBooks' name replaces the one given
            income_item=ListRef(name="services"),
            payment_methods={PaymentMethod.CHECK: ListRef(name="check"), PaymentMethod.ACH: ListRef()},
        ),
        ["deposit_account", "refund_bank_account", "income_item", "payment_methods"],
    )
    assert got.deposit_account == ListRef("2", "Undeposited Funds")
    assert got.refund_bank_account == ListRef("1", "Checking")
    assert got.income_item == ListRef("1", "Services")
    assert got.payment_methods == {PaymentMethod.CHECK: ListRef("2", "Check"), PaymentMethod.ACH: ListRef()}
    assert world.stored().settings == got


def test_the_types_quickbooks_accepts_are_accepted(world: World) -> None:
    world.connect()
    savings = world.company.add_list_entry(ListKind.ACCOUNT, "Parent:Savings", "Bank", "Savings")
    goods = world.company.add_list_entry(ListKind.ITEM, "Boxes", "NonInventory", income_account_id="4")
    got = world.service.update_settings(
        ADMIN,
        QuickBooksSettings(
            deposit_account=ListRef("1"),  # a bank account: deposited straight to the bank
            refund_bank_account=ListRef(name="Savings"),  # a sub-account, by its own name
            income_item=ListRef(goods),
        ),
        [],
    )
    assert got.deposit_account == ListRef("1", "Checking")
    assert got.refund_bank_account == ListRef(savings, "Parent:Savings")
    assert got.income_item == ListRef(goods, "Boxes")


def test_an_inactive_account_is_refused(world: World) -> None:
    world.connect()
    world.company.deactivate_list_entry(ListKind.ACCOUNT, "3")
    with pytest.raises(ValidationError) as raised:
        world.service.update_settings(ADMIN, QuickBooksSettings(accounts_receivable_account=ListRef("3")), [])
    assert "is inactive in QuickBooks" in _violations(raised)["settings.accounts_receivable_account"]


def test_mappings_need_a_connected_company_but_the_prefix_and_clearing_do_not(world: World) -> None:
    with pytest.raises(FailedPreconditionError, match="connect the QuickBooks company first: settings.income_item"):
        world.service.update_settings(ADMIN, QuickBooksSettings(income_item=ListRef("1")), [])
    assert world.stored() is None
    cleared_and_prefixed = ["doc_number_prefix", "income_item"]
    got = world.service.update_settings(ADMIN, QuickBooksSettings(doc_number_prefix="MV-"), cleared_and_prefixed)
    assert got == QuickBooksSettings(doc_number_prefix="MV-")
    assert world.company.request_count == 0  # nothing needed QuickBooks
    world.connect()
    world.service.disconnect(ADMIN)
    with pytest.raises(FailedPreconditionError):
        world.service.update_settings(ADMIN, QuickBooksSettings(deposit_account=ListRef(name="Checking")), [])


# --- SPEC section 8: tax code, discount account, tips and surcharge items, processing-fee account ------


@dataclass
class Section8:
    """Entries a bookkeeper made in the company for SPEC section 8 (names no new company has, so a
    company seeding more of its own cannot take them)."""

    tips_payable: str
    tips: str
    surcharge: str
    promotions: str
    fees: str
    boston: str
    pseudo: str


def _section8(world: World) -> Section8:
    company = world.company
    tips_payable = company.add_list_entry(ListKind.ACCOUNT, "Crew tips payable", "Other Current Liability")
    promotions = company.add_list_entry(ListKind.ACCOUNT, "Promotions", "Income", "DiscountsRefundsGiven")
    return Section8(
        tips_payable=tips_payable,
        tips=company.add_list_entry(ListKind.ITEM, "Crew tips", "Service", income_account_id=tips_payable),
        surcharge=company.add_list_entry(ListKind.ITEM, "Card fee", "NonInventory", income_account_id="4"),
        promotions=promotions,
        fees=company.add_list_entry(ListKind.ACCOUNT, "Processor fees", "Expense", "BankCharges"),
        boston=company.add_list_entry(ListKind.TAX_CODE, "Boston"),
        pseudo=company.add_list_entry(ListKind.TAX_CODE, "TAX", "pseudo"),
    )


def test_the_section_8_settings_are_checked_and_stored_with_quickbooks_id_and_name(world: World) -> None:
    world.connect()
    made = _section8(world)
    got = world.service.update_settings(
        ADMIN,
        QuickBooksSettings(
            tax_code=ListRef(name="boston"),
            discount_account=ListRef(made.promotions, "an old name"),
            tips_item=ListRef(name="CREW TIPS"),  # on a liability account: the bookkeeper's choice
            surcharge_item=ListRef(made.surcharge),
            processing_fee_account=ListRef(name="processor fees"),
        ),
        [],
    )
    assert got.tax_code == ListRef(made.boston, "Boston")
    assert got.discount_account == ListRef(made.promotions, "Promotions")
    assert got.tips_item == ListRef(made.tips, "Crew tips")
    assert got.surcharge_item == ListRef(made.surcharge, "Card fee")
    assert got.processing_fee_account == ListRef(made.fees, "Processor fees")
    assert world.stored().settings == got
    assert world.service.get_connection(ADMIN).settings == got


def test_each_section_8_setting_follows_the_mask_like_the_others(world: World) -> None:
    world.connect()
    made = _section8(world)
    everything = QuickBooksSettings(
        tax_code=ListRef(made.boston),
        discount_account=ListRef(made.promotions),
        tips_item=ListRef(made.tips),
        surcharge_item=ListRef(made.surcharge),
        processing_fee_account=ListRef(made.fees),
    )
    got = world.service.update_settings(ADMIN, everything, ["tips_item"])
    assert got == QuickBooksSettings(tips_item=ListRef(made.tips, "Crew tips"))
    got = world.service.update_settings(ADMIN, everything, ["surcharge_item", "processing_fee_account"])
    assert (got.tips_item.id, got.surcharge_item.id, got.processing_fee_account.id) == (
        made.tips,
        made.surcharge,
        made.fees,
    )
    assert not got.tax_code.is_set and not got.discount_account.is_set
    # A masked setting left empty goes back to its default (found by name on first use).
    got = world.service.update_settings(ADMIN, QuickBooksSettings(), ["tips_item"])
    assert not got.tips_item.is_set and got.surcharge_item.id == made.surcharge
    assert world.stored().settings == got


def test_every_unusable_section_8_mapping_is_named_at_once_and_nothing_stored(world: World) -> None:
    world.connect()
    made = _section8(world)
    bare = world.company.add_list_entry(ListKind.ITEM, "Bare tip", "Service")  # no income account
    inventory = world.company.add_list_entry(ListKind.ITEM, "Boxes", "Inventory", income_account_id="4")
    old_rate = world.company.add_list_entry(ListKind.TAX_CODE, "Old rate")
    world.company.deactivate_list_entry(ListKind.TAX_CODE, old_rate)
    before = world.stored()
    with pytest.raises(ValidationError) as raised:
        world.service.update_settings(
            ADMIN,
            QuickBooksSettings(
                tax_code=ListRef(made.pseudo),
                discount_account=ListRef(made.fees),  # an Expense account
                tips_item=ListRef(bare),
                surcharge_item=ListRef(inventory),
                processing_fee_account=ListRef(name="Services"),  # the Income account
                doc_number_prefix="MV-",
            ),
            [],
        )
    found = _violations(raised)
    assert list(found) == [
        "settings.tax_code",
        "settings.discount_account",
        "settings.tips_item",
        "settings.surcharge_item",
        "settings.processing_fee_account",
    ]
    assert "'TAX'" in found["settings.tax_code"] and "is a pseudo tax code" in found["settings.tax_code"]
    assert "choose one of the company's sales tax rates" in found["settings.tax_code"]
    assert "'Processor fees'" in found["settings.discount_account"]
    assert "is an Expense account; the discount account must be an Income account" in found["settings.discount_account"]
    assert "has no income account" in found["settings.tips_item"]
    assert (
        "is an Inventory item; the surcharge item must be a Service or NonInventory item"
        in found["settings.surcharge_item"]
    )
    assert (
        "the processing-fee account must be an Expense or Other Expense account"
        in found["settings.processing_fee_account"]
    )
    assert world.stored() == before  # not even the good prefix

    with pytest.raises(ValidationError) as inactive:
        world.service.update_settings(ADMIN, QuickBooksSettings(tax_code=ListRef(name="old rate")), [])
    assert "'Old rate'" in _violations(inactive)["settings.tax_code"]
    assert "is inactive in QuickBooks" in _violations(inactive)["settings.tax_code"]
    with pytest.raises(ValidationError) as missing:
        world.service.update_settings(ADMIN, QuickBooksSettings(tax_code=ListRef(name="Cambridge")), [])
    assert _violations(missing) == {"settings.tax_code": "QuickBooks has no tax code named 'Cambridge'"}
    assert world.stored() == before


def test_section_8_mappings_need_a_connected_company_and_clearing_does_not(world: World) -> None:
    with pytest.raises(FailedPreconditionError, match="settings.tax_code, settings.tips_item must be checked"):
        world.service.update_settings(
            ADMIN, QuickBooksSettings(tax_code=ListRef("1"), tips_item=ListRef(name="Tips")), ["tips_item", "tax_code"]
        )
    assert world.stored() is None
    got = world.service.update_settings(ADMIN, QuickBooksSettings(), ["tax_code", "discount_account"])
    assert got == QuickBooksSettings()
    assert world.company.request_count == 0


def test_quickbooks_unreachable_stores_nothing(world: World) -> None:
    world.connect()
    before = world.stored()
    world.company.inject(Fault.NONE, Fault.UNAVAILABLE)
    with pytest.raises(AccountingUnavailableError):
        world.service.update_settings(
            ADMIN, QuickBooksSettings(deposit_account=ListRef("2"), refund_bank_account=ListRef("1")), []
        )
    assert world.stored() == before


def test_settings_checked_in_one_company_are_not_stored_for_another(world: World) -> None:
    world.connect(realm_id="1")

    class Reconnecting(FakeQuickBooks):
        """The admin reconnects to another company while the settings are being checked."""

        def find_list_entry(self, kind, ref):  # type: ignore[no-untyped-def]
            with world.uow() as uow:  # no transaction of update_settings is open: this would block
                connection = uow.connections.get("acme")
                connection.realm_id = "2"
                uow.connections.save(connection)
                uow.commit()
            return super().find_list_entry(kind, ref)

    world.companies._companies[("acme", "")] = Reconnecting()  # the default connection's company
    with pytest.raises(FailedPreconditionError, match="connection changed"):
        world.service.update_settings(ADMIN, QuickBooksSettings(deposit_account=ListRef("2")), [])
    assert world.stored().settings == QuickBooksSettings()


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
    assert world.service.refresh_company_preferences("acme") is not None
    assert (world.stored().home_currency, world.stored().multicurrency) == ("USD", True)
    assert world.service.refresh_company_preferences("nobody") is None


# --- the company's sales tax mode (SPEC.md section 8) ---------------------------------------------------


@pytest.mark.parametrize("mode", list(SalesTax))
def test_connecting_reads_and_stores_the_sales_tax_mode_with_the_currency(world: World, mode: SalesTax) -> None:
    world.companies.for_tenant("acme").sales_tax = mode
    connection = world.service.connect_with_tokens("acme", "77", "cid", "s", "rt1")
    assert connection.sales_tax is mode and connection.home_currency == "USD"
    assert world.stored() == connection
    assert world.companies.for_tenant("acme").request_count == 1  # one Preferences read for both
    with world.uow() as uow:
        events = [e for e in uow.audit.list("acme", limit=10) if e.kind.value == "QUICKBOOKS_SALES_TAX_READ"]
    assert [e.message for e in events] == [f"sales tax {mode.value} (was not read)"]


def test_the_code_flow_reads_the_sales_tax_mode_too(world: World) -> None:
    world.companies.for_tenant("acme").sales_tax = SalesTax.MANUAL
    world.connect()
    assert world.stored().sales_tax is SalesTax.MANUAL


def test_refreshing_stores_a_sales_tax_change_with_one_audit_event_per_change(world: World) -> None:
    world.connect()
    assert world.stored().sales_tax is SalesTax.AUTOMATED
    world.companies.for_tenant("acme").sales_tax = SalesTax.NONE
    preferences = world.service.refresh_company_preferences("acme")
    assert preferences is not None and preferences.sales_tax is SalesTax.NONE
    assert world.stored().sales_tax is SalesTax.NONE
    assert world.service.refresh_company_preferences("acme") == preferences  # unchanged: no new event
    with world.uow() as uow:
        kinds = [e.kind.value for e in uow.audit.list("acme", limit=20)]
    assert kinds.count("QUICKBOOKS_SALES_TAX_READ") == 2  # at connect, then the change
    assert kinds.count("QUICKBOOKS_CURRENCY_READ") == 1  # the currency did not change


def test_another_company_unread_forgets_the_sales_tax_mode(world: World) -> None:
    world.service.connect_with_tokens("acme", "77", "cid", "s", "rt1")
    world.companies.for_tenant("acme").inject(Fault.UNAVAILABLE)
    world.service.connect_with_tokens("acme", "77", "cid", "s", "rt2")
    assert world.stored().sales_tax is SalesTax.AUTOMATED  # same company: kept
    world.companies.for_tenant("acme").inject(Fault.UNAVAILABLE)
    world.service.connect_with_tokens("acme", "78", "cid", "s", "rt3")
    assert world.stored().sales_tax is None  # another company: unknown until read


def test_the_settings_checked_are_recorded_so_that_the_first_sync_need_not_check_them_again(world: World) -> None:
    world.connect()
    before = world.clock.now()  # a step clock: each reading is later
    world.service.update_settings(
        ADMIN,
        QuickBooksSettings(
            deposit_account=ListRef(name="undeposited funds"),
            payment_methods={PaymentMethod.CHECK: ListRef("2", "Check")},
        ),
        ["deposit_account", "payment_methods"],
    )
    with world.uow() as uow:
        [checked] = uow.company_lookups.of_tenant("acme")
    # What the sync-time check looks for: the setting, against the Id stored; not the payment methods.
    assert (checked.kind, checked.name, checked.against) == (LookupKind.SETTING, "deposit_account", "2")
    assert checked.found == ListRef("2", "Undeposited Funds")
    assert checked.realm_id == "4620" and before < checked.checked_time < world.clock.now()
