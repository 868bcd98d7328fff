"""The connection repository's contract (memory, SQLite, PostgreSQL agree), and encryption at rest."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from persistence_builders import T0, Backend
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapters.persistence.encryption import EncryptionKeyError, SecretBox, generate_key
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for
from adapters.persistence.sqlalchemy.connections import MissingEncryptionKeyError
from adapters.persistence.sqlalchemy.migrate import alembic_config
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import (
    ConnectionState,
    InvoiceNumbering,
    ListRef,
    QuickBooksConnection,
    QuickBooksSettings,
    TokenGrant,
)
from core.currency import CompanyCurrency
from core.domain import PaymentMethod
from core.errors import NotFoundError

REFRESH_TOKEN = "RT-very-secret-refresh-token-0123456789"
ACCESS_TOKEN = "AT-very-secret-access-token-0123456789"
CLIENT_SECRET = "client-secret-0123456789"
OAUTH_STATE = "oauth-state-0123456789"


def connection(tenant_id: str = "t1", realm_id: str = "9130", **changes: object) -> QuickBooksConnection:
    base = QuickBooksConnection(
        tenant_id=tenant_id,
        realm_id=realm_id,
        environment="http://127.0.0.1:8765/.well-known/openid_configuration",
        client_id="client-1",
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        access_token=ACCESS_TOKEN,
        # Not UTC on purpose: what comes back must be the same instant, in UTC.
        access_token_expires=T0.astimezone(timezone(timedelta(hours=-5))) + timedelta(hours=1),
        refresh_token_expires=T0 + timedelta(days=101),
        access_token_lifetime=timedelta(hours=1),
        api_base_url="http://127.0.0.1:8765/v3",
        state=ConnectionState.CONNECTED,
        connect_time=T0,
        company_name="Ann's Moving Co",
        home_currency="USD",
        multicurrency=False,
        last_error="",
        settings=QuickBooksSettings(
            deposit_account=ListRef("4", "Undeposited Funds"),
            refund_bank_account=ListRef("35", "Checking"),
            accounts_receivable_account=ListRef("84", "Accounts Receivable (A/R)"),
            income_item=ListRef("1", "Services"),
            payment_methods={PaymentMethod.CASH: ListRef("1", "Cash"), PaymentMethod.ACH: ListRef("7", "ACH")},
            doc_number_prefix="MV-",
        ),
        oauth_state=OAUTH_STATE,
        redirect_uri="https://crm.example.com/quickbooks/callback",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _save(backend: Backend, *connections: QuickBooksConnection) -> None:
    with backend.uow() as uow:
        for c in connections:
            uow.connections.save(c)
        uow.commit()


def _get(backend: Backend, tenant_id: str) -> QuickBooksConnection | None:
    with backend.uow() as uow:
        return uow.connections.get(tenant_id)


# --- the contract ------------------------------------------------------------------------------------


def test_the_company_currency_is_stored_with_the_connection(backend: Backend) -> None:
    _save(backend, connection(home_currency="CAD", multicurrency=True), connection("t2", home_currency=""))
    multicurrency, unread = _get(backend, "t1"), _get(backend, "t2")
    assert multicurrency is not None and (multicurrency.home_currency, multicurrency.multicurrency) == ("CAD", True)
    assert unread is not None and (unread.home_currency, unread.multicurrency) == ("", False)
    _save(backend, connection(home_currency="CAD", multicurrency=False))  # a later read replaces it
    again = _get(backend, "t1")
    assert again is not None and (again.home_currency, again.multicurrency) == ("CAD", False)


def test_saving_the_company_currency_changes_nothing_else(backend: Backend) -> None:
    _save(backend, connection(home_currency="", refresh_token="RT-rotated"))
    with backend.uow() as uow:
        eur = CompanyCurrency("EUR", multicurrency=True)
        assert uow.connections.save_company_preferences("t1", CompanyPreferences(eur, SalesTax.MANUAL))
        assert not uow.connections.save_company_preferences("nobody", CompanyPreferences(eur, SalesTax.NONE))
        uow.commit()
    assert _get(backend, "t1") == connection(
        home_currency="EUR", multicurrency=True, sales_tax=SalesTax.MANUAL, refresh_token="RT-rotated"
    )
    assert _get(backend, "nobody") is None


@pytest.mark.parametrize("mode", [*SalesTax, None])
def test_the_sales_tax_mode_is_stored_with_the_connection(backend: Backend, mode: SalesTax | None) -> None:
    _save(backend, connection(sales_tax=mode))
    assert _get(backend, "t1") == connection(sales_tax=mode)


def test_saving_the_company_preferences_replaces_a_known_sales_tax_mode_and_nothing_else(backend: Backend) -> None:
    _save(backend, connection(sales_tax=SalesTax.AUTOMATED, settings=QuickBooksSettings(doc_number_prefix="X-")))
    with backend.uow() as uow:
        assert uow.connections.save_company_preferences("t1", CompanyPreferences(CompanyCurrency("USD"), SalesTax.NONE))
        uow.commit()
    expected = connection(sales_tax=SalesTax.NONE, settings=QuickBooksSettings(doc_number_prefix="X-"))
    assert _get(backend, "t1") == expected
    with backend.uow() as uow:  # not committed: discarded
        uow.connections.save_company_preferences("t1", CompanyPreferences(CompanyCurrency("CAD"), SalesTax.MANUAL))
    assert _get(backend, "t1") == expected


def test_a_saved_connection_comes_back_whole(backend: Backend) -> None:
    _save(backend, connection())
    got = _get(backend, "t1")
    assert got == connection()
    assert got is not None
    # The same instant, timezone-aware (the contract of every stored time; the offset may differ).
    assert got.access_token_expires is not None and got.access_token_expires.tzinfo is not None
    assert got.access_token_expires.astimezone(UTC) == T0 + timedelta(hours=1)
    assert got.connect_time == T0 and got.connect_time.tzinfo is not None


def test_unset_times_and_settings_round_trip(backend: Backend) -> None:
    bare = connection(
        access_token="",
        access_token_expires=None,
        refresh_token_expires=None,
        access_token_lifetime=None,
        connect_time=None,
        settings=QuickBooksSettings(),
        oauth_state="",
        state=ConnectionState.RECONNECT_REQUIRED,
        last_error="invalid_grant",
    )
    _save(backend, bare)
    assert _get(backend, "t1") == bare


def test_save_replaces_the_tenants_connection(backend: Backend) -> None:
    _save(backend, connection())
    rotated = connection(
        refresh_token="RT-rotated",
        access_token="AT-rotated",
        access_token_expires=T0 + timedelta(hours=2),
        settings=QuickBooksSettings(doc_number_prefix="X"),
        state=ConnectionState.DISCONNECTED,
    )
    _save(backend, rotated)
    assert _get(backend, "t1") == rotated


def test_connections_are_per_tenant(backend: Backend) -> None:
    _save(backend, connection("t1", realm_id="1"), connection("t2", realm_id="2"))
    one, two = _get(backend, "t1"), _get(backend, "t2")
    assert one is not None and one.realm_id == "1"
    assert two is not None and two.realm_id == "2"
    assert _get(backend, "t3") is None


def test_an_uncommitted_connection_is_discarded(backend: Backend) -> None:
    with backend.uow() as uow:
        uow.connections.save(connection())
        assert uow.connections.get("t1") == connection()
    assert _get(backend, "t1") is None


def test_a_returned_connection_is_a_copy(backend: Backend) -> None:
    _save(backend, connection())
    got = _get(backend, "t1")
    assert got is not None
    got.refresh_token = "changed"
    got.settings.payment_methods[PaymentMethod.CHECK] = ListRef("9")
    assert _get(backend, "t1") == connection()


# --- partial writes: no writer puts back what another changed -------------------------------------------

ROTATED = TokenGrant(
    access_token="AT-rotated",
    refresh_token="RT-rotated",
    access_token_expires=T0 + timedelta(hours=2),
    refresh_token_expires=T0 + timedelta(days=102),
    access_token_lifetime=timedelta(seconds=60),
)


def _with_rotated_tokens(original: QuickBooksConnection) -> QuickBooksConnection:
    return replace(
        original,
        access_token=ROTATED.access_token,
        refresh_token=ROTATED.refresh_token,
        access_token_expires=ROTATED.access_token_expires,
        refresh_token_expires=ROTATED.refresh_token_expires,
        access_token_lifetime=ROTATED.access_token_lifetime,
    )


def _save_rotated_tokens(backend: Backend) -> bool:
    with backend.uow() as uow:
        saved = uow.connections.save_tokens("t1", ROTATED, replacing=REFRESH_TOKEN)
        uow.commit()
    return saved


def test_a_settings_save_keeps_a_token_save_made_after_the_settings_writer_read_the_row(backend: Backend) -> None:
    """The bug of issue 7: a worker read the connection to record a looked-up setting, a refresh committed
    rotated tokens, and the worker's write put the dead refresh token back."""
    _save(backend, connection())
    refreshed = threading.Event()
    refresher = threading.Thread(target=lambda: _save_rotated_tokens(backend) and refreshed.set())
    with backend.uow() as uow:
        read = uow.connections.get("t1")
        assert read is not None and read.refresh_token == REFRESH_TOKEN
        refresher.start()
        if backend.name != "sqlite":
            # SQLite's BEGIN IMMEDIATE makes the refresh wait for this unit of work instead (serialised
            # after it, which keeps the rotated token too); the others commit it now, between read and write.
            assert refreshed.wait(timeout=10)
            assert _get(backend, "t1") == _with_rotated_tokens(connection())
        uow.connections.save_settings("t1", replace(read.settings, doc_number_prefix="NEW-"))
        uow.commit()
    refresher.join(timeout=30)
    assert refreshed.is_set()
    expected = _with_rotated_tokens(connection())
    assert _get(backend, "t1") == replace(expected, settings=replace(expected.settings, doc_number_prefix="NEW-"))


def test_a_token_save_keeps_settings_saved_after_the_refresher_read_the_row(backend: Backend) -> None:
    """A refresh reads the connection, then spends a while at Intuit: a setting recorded meanwhile stays."""
    _save(backend, connection(last_error="QuickBooks' token service answered HTTP 503"))
    with backend.uow() as uow:
        uow.connections.save_settings("t1", QuickBooksSettings(doc_number_prefix="NEW-"))
        uow.commit()
    assert _save_rotated_tokens(backend)
    stored = _get(backend, "t1")
    assert stored == replace(_with_rotated_tokens(connection()), settings=QuickBooksSettings(doc_number_prefix="NEW-"))


def test_a_connection_read_for_update_holds_other_writers_until_the_unit_of_work_ends(backend: Backend) -> None:
    """A worker merging looked-up settings reads for update: an admin's save waits, then lands on top."""
    _save(backend, connection())
    admin_saved = threading.Event()

    def admin_saves_a_setting() -> None:
        with backend.uow() as uow:
            uow.connections.save_settings("t1", QuickBooksSettings(doc_number_prefix="ADMIN-"))
            uow.commit()
        admin_saved.set()

    admin = threading.Thread(target=admin_saves_a_setting)
    with backend.uow() as uow:
        read = uow.connections.get_for_update("t1")
        assert read == connection()
        admin.start()
        assert not admin_saved.wait(timeout=0.5)  # held by the row lock
        uow.connections.save_settings("t1", replace(read.settings, doc_number_prefix="WORKER-"))
        uow.commit()
    admin.join(timeout=30)
    assert admin_saved.is_set()
    assert _get(backend, "t1") == connection(settings=QuickBooksSettings(doc_number_prefix="ADMIN-"))
    with backend.uow() as uow:
        assert uow.connections.get_for_update("nobody") is None


def test_tokens_are_saved_only_over_the_refresh_token_used_and_while_connected(backend: Backend) -> None:
    """A disconnection or reconnection made while a refresh was at Intuit stands."""
    _save(backend, connection(refresh_token="RT-of-a-reconnection"))
    assert not _save_rotated_tokens(backend)
    assert _get(backend, "t1") == connection(refresh_token="RT-of-a-reconnection")
    _save(backend, connection(state=ConnectionState.DISCONNECTED))
    assert not _save_rotated_tokens(backend)
    assert _get(backend, "t1") == connection(state=ConnectionState.DISCONNECTED)
    with backend.uow() as uow:
        assert not uow.connections.save_tokens("t2", ROTATED, replacing=REFRESH_TOKEN)


def test_mark_reconnect_required_changes_only_the_state_the_access_token_and_the_error(backend: Backend) -> None:
    _save(backend, connection())
    with backend.uow() as uow:
        assert not uow.connections.mark_reconnect_required("t1", "refused", refused_token="RT-rotated-away")
        uow.commit()
    assert _get(backend, "t1") == connection()  # a newer token than the one refused is kept
    with backend.uow() as uow:
        assert uow.connections.mark_reconnect_required("t1", "Intuit said invalid_grant", refused_token=REFRESH_TOKEN)
        uow.commit()
    assert _get(backend, "t1") == connection(
        state=ConnectionState.RECONNECT_REQUIRED, access_token="", last_error="Intuit said invalid_grant"
    )


def test_an_authorization_request_changes_only_its_own_fields(backend: Backend) -> None:
    _save(backend, connection())
    with backend.uow() as uow:
        uow.connections.save_authorization_request(
            "t1", environment="sandbox", redirect_uri="https://crm.example.com/cb2", oauth_state="new-state"
        )
        uow.commit()
    assert _get(backend, "t1") == connection(
        environment="sandbox", redirect_uri="https://crm.example.com/cb2", oauth_state="new-state"
    )


def test_partial_writes_need_a_stored_connection(backend: Backend) -> None:
    with backend.uow() as uow:
        with pytest.raises(NotFoundError):
            uow.connections.save_settings("t1", QuickBooksSettings())
        with pytest.raises(NotFoundError):
            uow.connections.save_authorization_request("t1", environment="sandbox", redirect_uri="", oauth_state="s")
        assert not uow.connections.mark_reconnect_required("t1", "refused", refused_token=REFRESH_TOKEN)
    assert _get(backend, "t1") is None


def test_partial_writes_are_discarded_unless_committed(backend: Backend) -> None:
    _save(backend, connection())
    with backend.uow() as uow:
        assert uow.connections.save_tokens("t1", ROTATED, replacing=REFRESH_TOKEN)
        uow.connections.save_settings("t1", QuickBooksSettings())
        assert uow.connections.get("t1") == replace(_with_rotated_tokens(connection()), settings=QuickBooksSettings())
    assert _get(backend, "t1") == connection()


# --- SPEC section 8's settings -------------------------------------------------------------------------

SECTION_8 = {
    "tax_code": ListRef("CustomSalesTax", "CustomSalesTax"),  # a tax code's Id need not be a number
    "discount_account": ListRef("86", "Discounts given"),
    "tips_item": ListRef("19", "Tips"),
    "surcharge_item": ListRef("20", "Card surcharge"),
    "processing_fee_account": ListRef("", "Bank charges"),  # given by name only: resolved at sync time
}


def test_the_section_8_settings_are_stored_with_the_others(backend: Backend) -> None:
    with_section_8 = replace(connection().settings, **SECTION_8)
    _save(backend, connection(settings=with_section_8))
    got = _get(backend, "t1")
    assert got is not None and got.settings == with_section_8
    with backend.uow() as uow:
        uow.connections.save_settings("t1", replace(with_section_8, tips_item=ListRef(), tax_code=ListRef("7", "MA")))
        uow.commit()
    again = _get(backend, "t1")
    assert again is not None
    assert (again.settings.tips_item, again.settings.tax_code) == (ListRef(), ListRef("7", "MA"))
    assert again.settings.surcharge_item == ListRef("20", "Card surcharge")
    assert again == connection(settings=replace(with_section_8, tips_item=ListRef(), tax_code=ListRef("7", "MA")))


def test_the_section_9_payout_settings_are_stored_with_the_others(backend: Backend) -> None:
    """The defaults the adapter records on first use (checking, A/R) and the bookkeeper's adjustment account
    survive a reload, so later payouts need no look-ups."""
    payouts = replace(
        connection().settings,
        payout_bank_account=ListRef("35", "Checking"),
        chargeback_account=ListRef("84", "Accounts Receivable (A/R)"),
        adjustment_account=ListRef("", "Processor reserve"),
    )
    _save(backend, connection(settings=payouts))
    got = _get(backend, "t1")
    assert got is not None and got.settings == payouts


def test_settings_stored_before_section_8_load_with_them_unset(sql_backend: Backend) -> None:
    _save(sql_backend, connection())
    assert sql_backend.url is not None
    engine = create_engine_for(sql_backend.url)
    old = (
        '{"deposit_account": {"id": "4", "name": "Undeposited Funds"}, "refund_bank_account": {"id": "35", '
        '"name": "Checking"}, "accounts_receivable_account": {"id": "84", "name": "Accounts Receivable (A/R)"}, '
        '"income_item": {"id": "1", "name": "Services"}, "payment_methods": {"CASH": {"id": "1", "name": "Cash"}}, '
        '"doc_number_prefix": "MV-"}'
    )
    try:
        with engine.begin() as db:
            db.execute(text("UPDATE quickbooks_connections SET settings = :old"), {"old": old})
    finally:
        engine.dispose()
    got = _get(sql_backend, "t1")
    assert got is not None
    assert got.settings == QuickBooksSettings(
        deposit_account=ListRef("4", "Undeposited Funds"),
        refund_bank_account=ListRef("35", "Checking"),
        accounts_receivable_account=ListRef("84", "Accounts Receivable (A/R)"),
        income_item=ListRef("1", "Services"),
        payment_methods={PaymentMethod.CASH: ListRef("1", "Cash")},
        doc_number_prefix="MV-",
    )
    assert all(not getattr(got.settings, name).id and not getattr(got.settings, name).name for name in SECTION_8)


# --- encryption at rest ----------------------------------------------------------------------------------


def _raw_row(backend: Backend) -> str:
    assert backend.url is not None
    engine = create_engine_for(backend.url)
    try:
        with engine.connect() as db:
            row = db.execute(text("SELECT * FROM quickbooks_connections")).one()
    finally:
        engine.dispose()
    return " ".join(str(value) for value in row)


def test_no_secret_is_stored_in_plaintext(sql_backend: Backend) -> None:
    _save(sql_backend, connection())
    raw = _raw_row(sql_backend)
    assert "9130" in raw and "client-1" in raw  # the row is there, and readable where it may be
    for secret in (REFRESH_TOKEN, ACCESS_TOKEN, CLIENT_SECRET, OAUTH_STATE, "very-secret"):
        assert secret not in raw


def test_partial_writes_keep_every_secret_encrypted(sql_backend: Backend) -> None:
    _save(sql_backend, connection())
    assert _save_rotated_tokens(sql_backend)
    with sql_backend.uow() as uow:
        uow.connections.save_authorization_request(
            "t1", environment="sandbox", redirect_uri="", oauth_state="st-0123456789"
        )
        uow.commit()
    raw = _raw_row(sql_backend)
    for secret in (ROTATED.refresh_token, ROTATED.access_token, CLIENT_SECRET, "st-0123456789"):
        assert secret not in raw


def test_a_wrong_key_fails_clearly(sql_backend: Backend) -> None:
    assert sql_backend.url is not None
    _save(sql_backend, connection())
    engine = create_engine_for(sql_backend.url)
    try:
        other_key = SqlAlchemyUnitOfWorkFactory(engine, SecretBox([generate_key()]))
        with other_key() as uow, pytest.raises(EncryptionKeyError, match="QBSYNC_ENCRYPTION_KEY") as raised:
            uow.connections.get("t1")
    finally:
        engine.dispose()
    assert "tenant 't1'" in str(raised.value)
    assert REFRESH_TOKEN not in str(raised.value)


def test_keys_rotate_old_first_then_new(sql_backend: Backend) -> None:
    """Written under key A; read with "B,A" (B new); rewritten under B; then readable with B alone."""
    assert sql_backend.url is not None
    old, new = generate_key(), generate_key()
    engine = create_engine_for(sql_backend.url)
    try:
        with SqlAlchemyUnitOfWorkFactory(engine, SecretBox([old]))() as uow:
            uow.connections.save(connection())
            uow.commit()
        with SqlAlchemyUnitOfWorkFactory(engine, SecretBox([new, old]))() as uow:
            current = uow.connections.get("t1")
            assert current == connection()
            uow.connections.save(current)
            uow.commit()
        with SqlAlchemyUnitOfWorkFactory(engine, SecretBox([new]))() as uow:
            assert uow.connections.get("t1") == connection()
        with SqlAlchemyUnitOfWorkFactory(engine, SecretBox([old]))() as uow, pytest.raises(EncryptionKeyError):
            uow.connections.get("t1")
    finally:
        engine.dispose()


def test_without_keys_connections_are_refused_not_stored_in_clear(sql_backend: Backend) -> None:
    assert sql_backend.url is not None
    engine = create_engine_for(sql_backend.url)
    try:
        with SqlAlchemyUnitOfWorkFactory(engine)() as uow, pytest.raises(MissingEncryptionKeyError):
            uow.connections.save(connection())
    finally:
        engine.dispose()


# --- the key itself ---------------------------------------------------------------------------------------


def test_a_generated_key_file_is_created_on_first_use_only_and_private(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret.key"
    box = SecretBox(key_file=key_file)
    assert not key_file.exists()  # building it does no I/O
    sealed = box.encrypt("hello")
    assert key_file.exists()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # Another process (another box) finds the same key.
    assert SecretBox(key_file=key_file).decrypt(sealed) == "hello"
    assert "hello" not in sealed


def test_configured_keys_win_over_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    box = SecretBox([generate_key()], key_file)
    box.encrypt("x")
    assert not key_file.exists()


def test_a_malformed_key_is_named_by_position_not_echoed() -> None:
    with pytest.raises(EncryptionKeyError, match="key #2") as raised:
        SecretBox([generate_key(), "not-a-fernet-key"]).encrypt("x")
    assert "not-a-fernet-key" not in str(raised.value)


def test_the_box_keeps_its_keys_out_of_its_repr() -> None:
    key = generate_key()
    assert key not in repr(SecretBox([key]))


def test_the_persistence_module_makes_the_key_file_only_when_a_secret_is_stored(tmp_path: Path) -> None:
    from injector import Injector

    from adapters.persistence.module import SqlAlchemyPersistenceModule
    from adapters.persistence.sqlalchemy import migrate
    from core.ports import UnitOfWorkFactory

    url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    key_file = tmp_path / "data" / "secret.key"
    injector = Injector([SqlAlchemyPersistenceModule(url, key_file=key_file)])
    factory = injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
    migrate(url)
    with factory() as uow:
        uow.tenants.ensure("t1")
        assert uow.connections.get("t1") is None
        uow.commit()
    assert not key_file.exists()  # a server that never stores a connection needs no key
    with factory() as uow:
        uow.connections.save(connection())
        uow.commit()
    assert key_file.exists()
    with factory() as uow:
        assert uow.connections.get("t1") == connection()


def _migrate_to(url: URL | None, revision: str, *, down: bool) -> None:
    assert url is not None
    engine = create_engine_for(url)
    try:
        with engine.begin() as db:
            config = alembic_config(url)
            config.attributes["connection"] = db
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def test_migration_0004_leaves_existing_connections_whole_and_unread(sql_backend: Backend) -> None:
    _save(sql_backend, connection(home_currency="CAD", multicurrency=True))
    _migrate_to(sql_backend.url, "0003", down=True)
    _migrate_to(sql_backend.url, "head", down=False)
    assert _get(sql_backend, "t1") == _numbered_by_the_crm(connection(home_currency="", multicurrency=False))


def test_migration_0005_leaves_existing_connections_whole_with_the_sales_tax_unread(sql_backend: Backend) -> None:
    _save(sql_backend, connection(home_currency="CAD", sales_tax=SalesTax.MANUAL))
    _migrate_to(sql_backend.url, "0004", down=True)
    _migrate_to(sql_backend.url, "head", down=False)
    assert _get(sql_backend, "t1") == _numbered_by_the_crm(connection(home_currency="CAD", sales_tax=None))


def _numbered_by_the_crm(expected: QuickBooksConnection) -> QuickBooksConnection:
    """`expected` as migration 0019 leaves a connection made before it: its invoice numbering pinned to CRM."""
    return replace(expected, settings=replace(expected.settings, invoice_numbering=InvoiceNumbering.CRM))
