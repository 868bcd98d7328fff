"""SPEC section 8's settings over gRPC: UpdateSettings checks each against the company and GetConnection
shows what was stored, on a real server (SQLite, bootstrap wiring) with the fake company, and with the real
adapter against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooks, FakeQuickBooksCompanies
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from adapters.quickbooks.module import FakeQuickBooksModule
from adapters.quickbooks.oauth_module import FakeQuickBooksAuthorizationModule
from core.auth import ApiKeys
from core.company_lists import ListKind
from core.domain import Permission
from core.ports import QuickBooksAuthorization
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import connection_service_pb2 as c
from qbsync.v1 import connection_service_pb2_grpc
from tests.e2e.conftest import EmulatedServer
from tests.e2e.test_connection_service import Admin, _bad_fields, _code, _connect

SECTION_8 = ["tax_code", "discount_account", "tips_item", "surcharge_item", "processing_fee_account"]


@pytest.fixture
def companies() -> FakeQuickBooksCompanies:
    return FakeQuickBooksCompanies()


@pytest.fixture
def company(companies: FakeQuickBooksCompanies) -> FakeQuickBooks:
    """The tenant's company "in QuickBooks": the same one the server's adapter reaches."""
    return companies.for_tenant("acme")


@pytest.fixture
def api(tmp_path: Path, companies: FakeQuickBooksCompanies) -> Iterator[Admin]:
    database = tmp_path / "qbsync.db"
    migrate(f"sqlite:///{database}")
    settings = Settings(
        database_url=f"sqlite:///{database}",
        listen="127.0.0.1:0",
        workers=1,
        grace_seconds=1,
        watch_poll_seconds=0.05,
        data_dir=tmp_path / "data",
    )
    injector = bootstrap(FakeQuickBooksModule(companies), FakeQuickBooksAuthorizationModule(), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    keys = injector.get(ApiKeys)
    intuit = injector.get(QuickBooksAuthorization)  # type: ignore[type-abstract]
    assert isinstance(intuit, FakeQuickBooksAuthorization)
    try:
        yield Admin(
            connection_service_pb2_grpc.ConnectionServiceStub(channel),
            channel,
            intuit,
            [("authorization", f"Bearer {keys.create('acme', frozenset({Permission.ADMIN}))}")],
            [("authorization", f"Bearer {keys.create('acme', frozenset(Permission) - {Permission.ADMIN})}")],
            database,
            tmp_path / "data",
        )
    finally:
        channel.close()
        runtime.stop(grace=1)


def test_update_settings_and_get_connection_round_trip_the_section_8_settings(
    api: Admin, company: FakeQuickBooks
) -> None:
    _connect(api)
    payable = company.add_list_entry(ListKind.ACCOUNT, "Crew tips payable", "Other Current Liability")
    tips = company.add_list_entry(ListKind.ITEM, "Crew tips", "Service", income_account_id=payable)
    surcharge = company.add_list_entry(ListKind.ITEM, "Card fee", "NonInventory", income_account_id="4")
    promotions = company.add_list_entry(ListKind.ACCOUNT, "Promotions", "Income", "DiscountsRefundsGiven")
    fees = company.add_list_entry(ListKind.ACCOUNT, "Processor fees", "Expense", "BankCharges")
    boston = company.add_list_entry(ListKind.TAX_CODE, "Boston")

    wanted = c.Settings(
        tax_code=c.QuickBooksListRef(name="boston"),
        discount_account=c.QuickBooksListRef(id=promotions),
        tips_item=c.QuickBooksListRef(name=" Crew Tips "),
        surcharge_item=c.QuickBooksListRef(id=surcharge, name="an old name"),
        processing_fee_account=c.QuickBooksListRef(name="processor fees"),
        doc_number_prefix="MV-",  # not in the mask: ignored
    )
    request = c.UpdateSettingsRequest(settings=wanted, update_mask=FieldMask(paths=SECTION_8))
    updated = api.stub.UpdateSettings(request, metadata=api.admin)
    assert updated.tax_code == c.QuickBooksListRef(id=boston, name="Boston")
    assert updated.discount_account == c.QuickBooksListRef(id=promotions, name="Promotions")
    assert updated.tips_item == c.QuickBooksListRef(id=tips, name="Crew tips")
    assert updated.surcharge_item == c.QuickBooksListRef(id=surcharge, name="Card fee")
    assert updated.processing_fee_account == c.QuickBooksListRef(id=fees, name="Processor fees")
    assert updated.doc_number_prefix == ""
    shown = api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert shown.settings == updated

    # Partial update: clearing one leaves the others as they are.
    cleared = api.stub.UpdateSettings(
        c.UpdateSettingsRequest(settings=c.Settings(), update_mask=FieldMask(paths=["tips_item"])), metadata=api.admin
    )
    assert cleared.tips_item == c.QuickBooksListRef()
    assert cleared.tax_code == updated.tax_code and cleared.surcharge_item == updated.surcharge_item
    assert api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings == cleared


def test_unusable_section_8_settings_are_invalid_argument_naming_each_and_nothing_is_stored(
    api: Admin, company: FakeQuickBooks
) -> None:
    _connect(api)
    pseudo = company.add_list_entry(ListKind.TAX_CODE, "NON", "pseudo")
    bare = company.add_list_entry(ListKind.ITEM, "Bare tip", "Service")
    before = api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings
    bad = c.Settings(
        tax_code=c.QuickBooksListRef(id=pseudo),
        discount_account=c.QuickBooksListRef(name="Checking"),
        tips_item=c.QuickBooksListRef(id=bare),
        surcharge_item=c.QuickBooksListRef(name="No such item"),
        processing_fee_account=c.QuickBooksListRef(name="Services"),
    )
    with pytest.raises(grpc.RpcError) as refused:
        api.stub.UpdateSettings(c.UpdateSettingsRequest(settings=bad), metadata=api.admin)
    assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
    found = _bad_fields(refused)
    assert list(found) == [f"settings.{name}" for name in SECTION_8]
    assert "is a pseudo tax code" in found["settings.tax_code"]
    assert "is a Bank account; the discount account must be an Income account" in found["settings.discount_account"]
    assert "has no income account" in found["settings.tips_item"]
    assert found["settings.surcharge_item"] == "QuickBooks has no item named 'No such item'"
    assert "must be an Expense or Other Expense account" in found["settings.processing_fee_account"]
    assert api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings == before


def test_section_8_settings_are_checked_against_the_emulated_company(emulated: EmulatedServer) -> None:
    """Through the real adapter: entries made in the company are found by name and stored with their Ids."""
    realm = f"realms/{emulated.realm_id}/records"
    payable = emulated.admin(
        "POST", f"{realm}/Account", {"Name": "Tips payable", "AccountType": "Other Current Liability"}
    )
    tips = emulated.admin(
        "POST",
        f"{realm}/Item",
        {"Name": "Tips", "Type": "Service", "IncomeAccountRef": {"value": payable["Account"]["Id"]}},
    )["Item"]
    fees = emulated.admin(
        "POST",
        f"{realm}/Account",
        {"Name": "Card processor fees", "AccountType": "Expense", "AccountSubType": "BankCharges"},
    )["Account"]
    md = emulated.key("acme")
    channel = grpc.insecure_channel(emulated.target)
    try:
        stub = connection_service_pb2_grpc.ConnectionServiceStub(channel)
        wanted = c.Settings(
            tips_item=c.QuickBooksListRef(name="tips"),
            processing_fee_account=c.QuickBooksListRef(name="Card Processor Fees"),
        )
        updated = stub.UpdateSettings(c.UpdateSettingsRequest(settings=wanted), metadata=md)
        assert updated.tips_item == c.QuickBooksListRef(id=tips["Id"], name="Tips")
        assert updated.processing_fee_account == c.QuickBooksListRef(id=fees["Id"], name="Card processor fees")
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == updated

        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateSettings(
                c.UpdateSettingsRequest(settings=c.Settings(discount_account=c.QuickBooksListRef(name="Tips payable"))),
                metadata=md,
            )
        assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
        said = _bad_fields(refused)["settings.discount_account"]
        assert "is an Other Current Liability account; the discount account must be an Income account" in said
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == updated
    finally:
        channel.close()


# SPEC section 9's settings: where a payout's Deposit lands and where its chargebacks and adjustments go.
SECTION_9 = ["payout_bank_account", "chargeback_account", "adjustment_account"]


def test_update_settings_and_get_connection_round_trip_the_payout_settings(api: Admin, company: FakeQuickBooks) -> None:
    _connect(api)
    savings = company.add_list_entry(ListKind.ACCOUNT, "Payout savings", "Bank", "Savings")
    losses = company.add_list_entry(ListKind.ACCOUNT, "Chargeback losses", "Other Expense")
    reserve = company.add_list_entry(ListKind.ACCOUNT, "Processor reserve", "Other Current Asset")
    unset = api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings
    for name in SECTION_9:  # nothing stored yet: each is unset, not given a default over the wire
        assert getattr(unset, name) == c.QuickBooksListRef(), name

    wanted = c.Settings(
        payout_bank_account=c.QuickBooksListRef(name=" payout SAVINGS "),
        chargeback_account=c.QuickBooksListRef(id=losses),
        adjustment_account=c.QuickBooksListRef(id=reserve, name="an old name"),
        processing_fee_account=c.QuickBooksListRef(name="Checking"),  # wrong type, but not in the mask: ignored
    )
    updated = api.stub.UpdateSettings(
        c.UpdateSettingsRequest(settings=wanted, update_mask=FieldMask(paths=SECTION_9)), metadata=api.admin
    )
    assert updated.payout_bank_account == c.QuickBooksListRef(id=savings, name="Payout savings")
    assert updated.chargeback_account == c.QuickBooksListRef(id=losses, name="Chargeback losses")
    assert updated.adjustment_account == c.QuickBooksListRef(id=reserve, name="Processor reserve")
    assert updated.processing_fee_account == c.QuickBooksListRef()
    assert api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings == updated

    # With no mask, only what is filled in changes: A/R for chargebacks; the other two stay as stored.
    receivable = c.QuickBooksListRef(name="Accounts Receivable (A/R)")
    again = api.stub.UpdateSettings(
        c.UpdateSettingsRequest(settings=c.Settings(chargeback_account=receivable)), metadata=api.admin
    )
    assert again.chargeback_account == c.QuickBooksListRef(id="3", name="Accounts Receivable (A/R)")
    assert (again.payout_bank_account, again.adjustment_account) == (
        updated.payout_bank_account,
        updated.adjustment_account,
    )

    # Cleared through the mask: back to unset (its default applies on first use), the others untouched.
    cleared = api.stub.UpdateSettings(
        c.UpdateSettingsRequest(settings=c.Settings(), update_mask=FieldMask(paths=["adjustment_account"])),
        metadata=api.admin,
    )
    assert cleared.adjustment_account == c.QuickBooksListRef()
    assert cleared.payout_bank_account == updated.payout_bank_account
    assert cleared.chargeback_account == again.chargeback_account
    assert api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings == cleared


def test_wrong_typed_payout_settings_are_invalid_argument_naming_each_and_nothing_is_stored(
    api: Admin, company: FakeQuickBooks
) -> None:
    _connect(api)
    company.add_list_entry(ListKind.ACCOUNT, "Sales of moves", "Income")
    before = api.stub.UpdateSettings(
        c.UpdateSettingsRequest(settings=c.Settings(payout_bank_account=c.QuickBooksListRef(name="Checking"))),
        metadata=api.admin,
    )
    assert before.payout_bank_account == c.QuickBooksListRef(id="1", name="Checking")
    bad = c.Settings(
        payout_bank_account=c.QuickBooksListRef(name="Undeposited Funds"),  # Other Current Asset, not a bank
        chargeback_account=c.QuickBooksListRef(name="Sales of moves"),  # income would hide the loss
        adjustment_account=c.QuickBooksListRef(name="No such account"),  # any type, but it must exist
    )
    with pytest.raises(grpc.RpcError) as refused:
        api.stub.UpdateSettings(c.UpdateSettingsRequest(settings=bad), metadata=api.admin)
    assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
    found = _bad_fields(refused)
    assert list(found) == [f"settings.{name}" for name in SECTION_9]
    assert (
        "is an Other Current Asset account; the payout bank account must be a Bank account"
        in (found["settings.payout_bank_account"])
    )
    assert (
        "the chargeback account must be an Accounts Receivable or Expense or Other Expense account"
        in (found["settings.chargeback_account"])
    )
    assert "No such account" in found["settings.adjustment_account"]
    assert api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin).settings == before


def test_payout_settings_are_checked_against_the_emulated_company(emulated: EmulatedServer) -> None:
    """Through the real adapter: a bank account made in the company is found by name; a wrong type is refused."""
    realm = f"realms/{emulated.realm_id}/records"
    clearing = emulated.admin(
        "POST", f"{realm}/Account", {"Name": "Processor clearing", "AccountType": "Bank", "AccountSubType": "Checking"}
    )["Account"]
    md = emulated.key("acme")
    channel = grpc.insecure_channel(emulated.target)
    try:
        stub = connection_service_pb2_grpc.ConnectionServiceStub(channel)
        wanted = c.Settings(payout_bank_account=c.QuickBooksListRef(name="processor clearing"))
        updated = stub.UpdateSettings(c.UpdateSettingsRequest(settings=wanted), metadata=md)
        assert updated.payout_bank_account == c.QuickBooksListRef(id=clearing["Id"], name="Processor clearing")
        assert updated.chargeback_account == c.QuickBooksListRef()  # not sent: stays unset
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == updated

        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateSettings(
                c.UpdateSettingsRequest(settings=c.Settings(chargeback_account=c.QuickBooksListRef(name="Services"))),
                metadata=md,
            )
        assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
        said = _bad_fields(refused)["settings.chargeback_account"]
        assert "is an Income account; the chargeback account must be an Accounts Receivable" in said
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == updated
    finally:
        channel.close()
