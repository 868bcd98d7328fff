"""The connection repository's contract (memory, SQLite, PostgreSQL agree), and encryption at rest."""

from __future__ import annotations

import os
import stat
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
from core.connection import ConnectionState, ListRef, QuickBooksConnection, QuickBooksSettings
from core.currency import CompanyCurrency
from core.domain import PaymentMethod

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
        assert uow.connections.save_company_currency("t1", CompanyCurrency("EUR", multicurrency=True))
        assert not uow.connections.save_company_currency("nobody", CompanyCurrency("EUR"))
        uow.commit()
    assert _get(backend, "t1") == connection(home_currency="EUR", multicurrency=True, refresh_token="RT-rotated")
    assert _get(backend, "nobody") is None


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
    assert _get(sql_backend, "t1") == connection(home_currency="", multicurrency=False)
