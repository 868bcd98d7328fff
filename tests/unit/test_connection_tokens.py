"""Tokens never lost (issue 7), in the core: when an access token counts as near its expiry, and the
connection use cases that write while workers rotate the tokens (in-memory unit of work)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.persistence.memory import InMemoryUnitOfWork, InMemoryUnitOfWorkFactory
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from core.connection import ConnectionState, QuickBooksConnection, QuickBooksSettings, TokenGrant
from core.connections_service import ConnectionService
from core.domain import Permission, Principal
from tests.unit.support import CountingIds, StepClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = Principal("acme", frozenset({Permission.ADMIN}))
REDIRECT = "https://crm.example.com/qbo/callback"


def _connection(**changes: object) -> QuickBooksConnection:
    base = QuickBooksConnection(
        tenant_id="acme",
        realm_id="4620",
        environment="sandbox",
        client_id="app-id",
        client_secret="app-secret",
        refresh_token="RT-1",
        access_token="AT-1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- near expiry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "left", "refresh"),
    [
        (timedelta(seconds=60), timedelta(seconds=13), False),  # a 60-second token is not refreshed each time
        (timedelta(seconds=60), timedelta(seconds=11), True),  # but in the last fifth of its life
        (timedelta(hours=1), timedelta(minutes=6), False),
        (timedelta(hours=1), timedelta(minutes=4), True),  # at most five minutes ahead
        (timedelta(hours=24), timedelta(minutes=6), False),  # ... even for a long-lived token
        (None, timedelta(minutes=6), False),  # unknown lifetime: taken as Intuit's hour
        (None, timedelta(minutes=4), True),
        (timedelta(seconds=60), timedelta(seconds=-1), True),  # expired
    ],
)
def test_a_token_is_refreshed_near_its_expiry_in_proportion_to_its_lifetime(
    lifetime: timedelta | None, left: timedelta, refresh: bool
) -> None:
    connection = _connection(access_token_expires=NOW + left, access_token_lifetime=lifetime)
    assert connection.needs_refresh(NOW) is refresh


def test_a_missing_token_or_expiry_needs_a_refresh() -> None:
    assert _connection(access_token="", access_token_expires=NOW + timedelta(hours=1)).needs_refresh(NOW)
    assert _connection(access_token_expires=None).needs_refresh(NOW)


# --- the use cases do not put back tokens a refresh rotated --------------------------------------------

ROTATED = TokenGrant("AT-2", "RT-2", NOW + timedelta(hours=1), NOW + timedelta(days=100), timedelta(hours=1))


class RefreshRightAfterRead(InMemoryUnitOfWorkFactory):
    """While armed, a worker's refresh commits rotated tokens right after a unit of work has read the
    connection: the worst moment for a writer that would put back what it read."""

    armed = False

    def __call__(self) -> InMemoryUnitOfWork:
        uow = super().__call__()
        read = uow.connections.get

        def get_then_refresh(tenant_id: str, *, branch_id: str = "") -> QuickBooksConnection | None:
            found = read(tenant_id, branch_id=branch_id)
            if self.armed and found is not None:
                self.armed = False
                with super(RefreshRightAfterRead, self).__call__() as worker:
                    assert worker.connections.save_tokens(tenant_id, ROTATED, replacing=found.refresh_token)
                    worker.commit()
            return found

        uow.connections.get = get_then_refresh  # type: ignore[method-assign]
        return uow


@pytest.fixture
def uow() -> RefreshRightAfterRead:
    factory = RefreshRightAfterRead()
    with factory() as unit:
        unit.connections.save(_connection())
        unit.commit()
    return factory


@pytest.fixture
def service(uow: RefreshRightAfterRead) -> ConnectionService:
    clock = StepClock()
    authorization = FakeQuickBooksAuthorization(clock, "app-id", "app-secret")
    return ConnectionService(uow, authorization, clock, CountingIds(), accounting=FakeQuickBooksCompanies())


def _stored(uow: RefreshRightAfterRead) -> QuickBooksConnection:
    with uow() as unit:
        found = unit.connections.get("acme")
    assert found is not None
    return found


def test_updating_settings_keeps_tokens_rotated_after_it_read_the_connection(
    uow: RefreshRightAfterRead, service: ConnectionService
) -> None:
    uow.armed = True
    service.update_settings(ADMIN, QuickBooksSettings(doc_number_prefix="MV-"), ["doc_number_prefix"])
    stored = _stored(uow)
    assert not uow.armed  # the refresh did come between the read and the write
    assert (stored.refresh_token, stored.access_token) == ("RT-2", "AT-2")
    assert stored.settings.doc_number_prefix == "MV-"


def test_starting_an_authorization_keeps_the_live_tokens_rotated_after_it_read_the_connection(
    uow: RefreshRightAfterRead, service: ConnectionService
) -> None:
    uow.armed = True
    _, state = service.get_authorization_url(ADMIN, REDIRECT, "sandbox")
    stored = _stored(uow)
    assert not uow.armed
    assert (stored.refresh_token, stored.access_token, stored.state) == ("RT-2", "AT-2", ConnectionState.CONNECTED)
    assert (stored.oauth_state, stored.redirect_uri) == (state, REDIRECT)
