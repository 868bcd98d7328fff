"""The company facts the accept checks read (UnitOfWorkFactory.company_facts, issue 12): answered from this
process's cache, so a change made here - through any unit of work on the database - is seen at once, and a
change made by another process within the cache's few seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from persistence_builders import Backend
from sqlalchemy import event, text

from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, company_facts, create_engine_for
from core.company_preferences import CompanyPreferences
from core.company_tax import SalesTax
from core.connection import CompanyFacts, ConnectionState, QuickBooksConnection
from core.currency import CompanyCurrency

TENANT = "tenant-facts"


def _connection() -> QuickBooksConnection:
    return QuickBooksConnection(
        tenant_id=TENANT,
        realm_id="1234",
        environment="sandbox",
        client_id="client",
        client_secret="client-secret",
        refresh_token="refresh",
        home_currency="USD",
        sales_tax=SalesTax.AUTOMATED,
    )


@pytest.fixture
def connected(sql_backend: Backend) -> Iterator[SqlAlchemyUnitOfWorkFactory]:
    factory = sql_backend.uow
    assert isinstance(factory, SqlAlchemyUnitOfWorkFactory)
    with factory() as uow:
        uow.connections.save(_connection())
        uow.commit()
    yield factory


def _selects(factory: SqlAlchemyUnitOfWorkFactory) -> list[str]:
    seen: list[str] = []

    @event.listens_for(factory.engine, "before_cursor_execute")
    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "quickbooks_connections" in statement:
            seen.append(statement)

    return seen


def test_the_facts_are_read_once_then_served_from_memory(connected: SqlAlchemyUnitOfWorkFactory) -> None:
    reads = _selects(connected)
    expected = CompanyFacts(ConnectionState.CONNECTED, CompanyCurrency("USD", False), SalesTax.AUTOMATED)
    assert connected.company_facts(TENANT) == expected
    assert connected.company_facts(TENANT) == expected
    assert len(reads) == 1
    assert connected.company_facts("no-such-tenant") is None


def test_a_change_committed_in_this_process_is_seen_at_once(connected: SqlAlchemyUnitOfWorkFactory) -> None:
    assert connected.company_facts(TENANT) is not None
    euro = CompanyPreferences(CompanyCurrency("EUR", True), SalesTax.NONE)
    with connected() as uow:
        uow.connections.save_company_preferences(TENANT, euro)
        assert connected.company_facts(TENANT).company_currency.home == "USD"  # type: ignore[union-attr]  # not committed
        uow.commit()
    facts = connected.company_facts(TENANT)
    assert facts == CompanyFacts(ConnectionState.CONNECTED, CompanyCurrency("EUR", True), SalesTax.NONE)
    with connected() as uow:  # a token refused: the state changes, through another writer
        assert uow.connections.mark_reconnect_required(TENANT, "refused", refused_token="refresh")
        uow.commit()
    assert connected.company_facts(TENANT).state is ConnectionState.RECONNECT_REQUIRED  # type: ignore[union-attr]


def test_a_change_through_another_factory_of_this_process_is_seen_at_once(
    connected: SqlAlchemyUnitOfWorkFactory,
) -> None:
    assert connected.company_facts(TENANT) is not None
    other = SqlAlchemyUnitOfWorkFactory(create_engine_for(connected.engine.url), connected.secrets)
    with other() as uow:
        uow.connections.save(QuickBooksConnection(**{**_connection().__dict__, "home_currency": "CAD"}))
        uow.commit()
    other.engine.dispose()
    assert connected.company_facts(TENANT).company_currency.home == "CAD"  # type: ignore[union-attr]


def test_a_change_by_another_process_is_seen_once_the_facts_expire(
    connected: SqlAlchemyUnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert connected.company_facts(TENANT).company_currency.home == "USD"  # type: ignore[union-attr]
    with connected.engine.begin() as connection:  # as another process would: no unit of work of ours
        connection.execute(text("UPDATE quickbooks_connections SET home_currency = 'GBP'"))
    assert connected.company_facts(TENANT).company_currency.home == "USD"  # type: ignore[union-attr]
    later = company_facts.time.monotonic() + company_facts.TTL_SECONDS + 1
    monkeypatch.setattr(company_facts.time, "monotonic", lambda: later)
    assert connected.company_facts(TENANT).company_currency.home == "GBP"  # type: ignore[union-attr]


def test_a_read_that_began_before_a_change_does_not_store_the_old_facts() -> None:
    cache = company_facts.CompanyFactsCache()
    old = CompanyFacts(ConnectionState.CONNECTED, CompanyCurrency("USD", False), None)
    new = CompanyFacts(ConnectionState.CONNECTED, CompanyCurrency("EUR", False), None)

    def slow_read(_branch: tuple[str, str]) -> CompanyFacts:
        cache.drop({(TENANT, "")})  # the change commits while the read is under way
        return old

    assert cache.get((TENANT, ""), slow_read) == old
    assert cache.get((TENANT, ""), lambda _branch: new) == new
