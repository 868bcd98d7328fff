"""The adapter's plumbing on its own: token refresh under concurrency, the request limiter, transport rules."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from qbo_support import TENANT, QboRig

from adapters.inprocess import InProcessCompanyLock, InProcessRequestLimiter
from adapters.persistence.memory import InMemoryUnitOfWork, InMemoryUnitOfWorkFactory
from adapters.quickbooks.qbo import QuickBooksAccountingSystems, RateLimits
from adapters.quickbooks.qbo.tokens import TimeoutAuthClient, refresh_lock_key
from adapters.system import SystemClock
from core.connection import ConnectionState, QuickBooksConnection, QuickBooksSettings, TokenGrant
from core.errors import BookkeepingError, ReconnectRequiredError


def test_concurrent_workers_refresh_an_expired_token_once(rig: QboRig) -> None:
    with rig.uow_factory() as uow:
        stale = rig.connection()
        uow.connections.save(dataclasses.replace(stale, access_token_expires=datetime.now(UTC) - timedelta(minutes=1)))
        uow.commit()
    refreshes = []

    def counting_factory(connection: QuickBooksConnection) -> TimeoutAuthClient:
        refreshes.append(connection.refresh_token)
        return TimeoutAuthClient(
            connection.client_id, connection.client_secret, connection.redirect_uri, connection.environment, timeout=5
        )

    systems = QuickBooksAccountingSystems(
        rig.uow_factory,
        SystemClock(),
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        auth_client_factory=counting_factory,
    )
    errors: list[BaseException] = []

    def work() -> None:
        try:
            systems.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert refreshes == [stale.refresh_token]  # one refresh; the others adopted its result
    assert rig.connection().refresh_token != stale.refresh_token


def test_token_refreshes_take_the_company_lock_they_are_given(rig: QboRig) -> None:
    """Two `QuickBooksAccountingSystems` stand for two processes: each has its own TokenKeeper, and only the
    shared `CompanyLock` (PostgreSQL's advisory lock in production) keeps them from refreshing twice."""
    with rig.uow_factory() as uow:
        stale = rig.connection()
        uow.connections.save(dataclasses.replace(stale, access_token_expires=datetime.now(UTC) - timedelta(minutes=1)))
        uow.commit()
    refreshes: list[str] = []
    held: list[str] = []

    class RecordingLock(InProcessCompanyLock):
        @contextmanager
        def hold(self, key: str) -> Iterator[None]:
            with super().hold(key):
                held.append(key)
                yield

    def counting_factory(connection: QuickBooksConnection) -> TimeoutAuthClient:
        refreshes.append(connection.refresh_token)
        time.sleep(0.2)  # a slow token endpoint: the other "process" arrives meanwhile
        return TimeoutAuthClient(
            connection.client_id, connection.client_secret, connection.redirect_uri, connection.environment, timeout=5
        )

    lock = RecordingLock()
    processes = [
        QuickBooksAccountingSystems(
            rig.uow_factory,
            SystemClock(),
            limiter=InProcessRequestLimiter(),
            company_lock=lock,
            auth_client_factory=counting_factory,
        )
        for _ in range(2)
    ]
    threads = [
        threading.Thread(target=lambda s=s: s.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com"))
        for s in processes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refreshes == [stale.refresh_token]
    assert held == [refresh_lock_key(TENANT)] * 2


class ManualClock:
    """Time moves only when the test says so (the emulator's token clock is real time, far behind)."""

    def __init__(self) -> None:
        self.now_value = datetime.now(UTC)

    def now(self) -> datetime:
        return self.now_value

    def advance(self, seconds: float) -> None:
        self.now_value += timedelta(seconds=seconds)


def _expire_stored_token(rig: QboRig) -> QuickBooksConnection:
    stale = dataclasses.replace(rig.connection(), access_token_expires=datetime.now(UTC) - timedelta(minutes=1))
    with rig.uow_factory() as uow:
        uow.connections.save(stale)
        uow.commit()
    return stale


def _auth_client(connection: QuickBooksConnection) -> TimeoutAuthClient:
    return TimeoutAuthClient(
        connection.client_id, connection.client_secret, connection.redirect_uri, connection.environment, timeout=5
    )


def test_short_lived_tokens_are_refreshed_near_their_expiry_not_before_every_request(rig: QboRig) -> None:
    rig.admin("POST", "/settings", {"access_token_ttl": 60, "refresh_token_rotation": "strict"})
    _expire_stored_token(rig)
    clock = ManualClock()
    systems = QuickBooksAccountingSystems(
        rig.uow_factory,
        clock,
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        auth_client_factory=_auth_client,
    )

    def refreshes_after_a_request() -> int:
        systems.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com")
        return int(rig.state()["tokens"]["refreshes"])

    assert refreshes_after_a_request() == 1  # the stored token had expired
    assert rig.connection().access_token_lifetime == timedelta(seconds=60)
    clock.advance(30)
    assert refreshes_after_a_request() == 1
    clock.advance(17)  # 47 s old: 13 s left, more than a fifth of its life
    assert refreshes_after_a_request() == 1
    clock.advance(2)  # 49 s old: 11 s left
    assert refreshes_after_a_request() == 2
    assert refreshes_after_a_request() == 2
    assert rig.state()["tokens"]["dead_refreshes"] == 0


def test_a_refresh_keeps_settings_saved_while_it_was_at_intuit(rig: QboRig) -> None:
    stale = _expire_stored_token(rig)
    settings = QuickBooksSettings(doc_number_prefix="LOOKED-UP-")

    def another_worker_saves_settings_meanwhile(connection: QuickBooksConnection) -> TimeoutAuthClient:
        with rig.uow_factory() as uow:
            uow.connections.save_settings(TENANT, settings)
            uow.commit()
        return _auth_client(connection)

    systems = QuickBooksAccountingSystems(
        rig.uow_factory,
        SystemClock(),
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        auth_client_factory=another_worker_saves_settings_meanwhile,
    )
    systems.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com")
    stored = rig.connection()
    assert stored.settings == settings
    assert stored.refresh_token != stale.refresh_token
    assert rig.state()["tokens"]["refresh_tokens"] == [stored.refresh_token]  # the live one is the one kept


def test_a_disconnection_made_while_a_refresh_was_at_intuit_stands(rig: QboRig) -> None:
    _expire_stored_token(rig)

    def admin_disconnects_meanwhile(connection: QuickBooksConnection) -> TimeoutAuthClient:
        gone = dataclasses.replace(
            connection, state=ConnectionState.DISCONNECTED, refresh_token="", access_token="", client_secret=""
        )
        with rig.uow_factory() as uow:
            uow.connections.save(gone)
            uow.commit()
        return _auth_client(connection)

    systems = QuickBooksAccountingSystems(
        rig.uow_factory,
        SystemClock(),
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        auth_client_factory=admin_disconnects_meanwhile,
    )
    with pytest.raises(ReconnectRequiredError):
        systems.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com")
    stored = rig.connection()
    assert stored.state is ConnectionState.DISCONNECTED
    assert (stored.refresh_token, stored.access_token) == ("", "")


def test_a_refused_refresh_token_marks_the_connection_but_keeps_its_settings(rig: QboRig) -> None:
    stale = _expire_stored_token(rig)
    rig.admin("POST", "/tokens/revoke", {"realm_id": rig.realm_id})
    with pytest.raises(ReconnectRequiredError):
        rig.system.find_customers("Nobody", "nobody@example.com")
    stored = rig.connection()
    assert stored.state is ConnectionState.RECONNECT_REQUIRED
    assert "invalid_grant" in stored.last_error and stored.access_token == ""
    assert (stored.refresh_token, stored.settings) == (stale.refresh_token, stale.settings)


class RefreshRightAfterRead(InMemoryUnitOfWorkFactory):
    """Over the rig's database: while armed, the next time a unit of work reads the connection another
    process refreshes the tokens at the emulator (strict rotation: the old refresh token dies) and saves
    them, at once unless the read holds the row lock (then as soon as it is released)."""

    def __init__(self, rig: QboRig) -> None:
        super().__init__(rig.uow_factory.db)
        self.rig = rig
        self.armed = False
        self.rotated_to = ""
        self.other_process = threading.Thread(target=self._refresh_elsewhere)
        self._refreshed = threading.Event()

    def __call__(self) -> InMemoryUnitOfWork:
        uow = super().__call__()
        for name in ("get", "get_for_update"):
            read = getattr(uow.connections, name)
            setattr(
                uow.connections,
                name,
                lambda tenant_id, read=read, **branch: self._then_refresh(read(tenant_id, **branch)),
            )
        return uow

    def _then_refresh(self, found: QuickBooksConnection | None) -> QuickBooksConnection | None:
        if self.armed:
            self.armed = False
            self.other_process.start()
            self._refreshed.wait(timeout=0.5)  # a lock-free read lets the refresh commit before the write
        return found

    def _refresh_elsewhere(self) -> None:
        current = self.rig.connection()
        client = _auth_client(current)
        client.refresh(refresh_token=current.refresh_token)
        grant = TokenGrant(client.access_token, client.refresh_token, datetime.now(UTC) + timedelta(hours=1), None)
        with self.rig.uow_factory() as uow:
            assert uow.connections.save_tokens(TENANT, grant, replacing=current.refresh_token)
            uow.commit()
        self.rotated_to = client.refresh_token
        self._refreshed.set()


def test_recording_looked_up_settings_keeps_tokens_rotated_since_they_were_read(rig: QboRig) -> None:
    """The bug of issue 7: a worker saving the accounts it looked up put back the refresh token it had read,
    which a refresh elsewhere had just rotated away; the next refresh then sent a dead token."""
    from datetime import date
    from decimal import Decimal

    from core.accounting import NewCustomer, RefundSpec, TxnKind

    factory = RefreshRightAfterRead(rig)
    systems = QuickBooksAccountingSystems(
        factory,
        SystemClock(),
        limiter=InProcessRequestLimiter(),
        company_lock=InProcessCompanyLock(),
        auth_client_factory=_auth_client,
    )
    system = systems.for_tenant(TENANT)
    customer = system.create_customer(NewCustomer("Look Up", "", "", "", "", "", ""), request_id="c1")
    assert not rig.connection().settings.refund_bank_account.is_set  # a fresh company: looked up on first use
    factory.armed = True
    system.create(
        RefundSpec(customer.id, Decimal("5.00"), date(2026, 1, 2), TxnKind.EXPENSE, "", "note", "[m]"),
        request_id="r1",
    )
    factory.other_process.join(timeout=30)
    assert factory.rotated_to  # the other process did rotate the tokens, while the settings were being saved
    stored = rig.connection()
    assert stored.settings.refund_bank_account.is_set and stored.settings.accounts_receivable_account.is_set
    assert stored.refresh_token == factory.rotated_to
    rig.admin("POST", "/tokens/expire", {"realm_id": rig.realm_id})
    systems.for_tenant(TENANT).find_customers("Nobody", "nobody@example.com")  # refreshes with the stored token
    assert rig.connection().state is ConnectionState.CONNECTED
    assert rig.state()["tokens"]["dead_refreshes"] == 0


def test_the_limiter_keeps_to_the_per_second_and_in_flight_limits() -> None:
    limiter = InProcessRequestLimiter(RateLimits(per_minute=500, per_second=5, in_flight=2))
    in_flight, peak, started = 0, 0, []
    guard = threading.Lock()

    def request() -> None:
        nonlocal in_flight, peak
        with limiter.acquire("realm"):
            with guard:
                in_flight += 1
                peak = max(peak, in_flight)
                started.append(time.monotonic())
            time.sleep(0.05)
            with guard:
                in_flight -= 1

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started.sort()
    assert peak <= 2
    assert all(started[i + 5] - started[i] >= 0.99 for i in range(len(started) - 5))


def test_plain_http_is_refused_except_to_this_machine(rig: QboRig) -> None:
    with rig.uow_factory() as uow:
        uow.connections.save(dataclasses.replace(rig.connection(), api_base_url="http://qbo.example.com/v3"))
        uow.commit()
    with pytest.raises(BookkeepingError, match="use https"):
        rig.systems.for_tenant(TENANT)


def test_a_company_not_connected_or_needing_a_reconnect_is_refused_at_once(rig: QboRig) -> None:
    with pytest.raises(ReconnectRequiredError, match="connect it first"):
        rig.systems.for_tenant("someone-else")
    with rig.uow_factory() as uow:
        uow.connections.save(dataclasses.replace(rig.connection(), state=ConnectionState.RECONNECT_REQUIRED))
        uow.commit()
    with pytest.raises(ReconnectRequiredError):
        rig.systems.for_tenant(TENANT)


def test_a_setting_pointing_to_a_missing_account_names_the_setting(rig: QboRig) -> None:
    from datetime import date
    from decimal import Decimal

    from core.accounting import NewCustomer, RefundSpec, TxnKind
    from core.connection import ListRef

    connection = rig.connection()
    settings = dataclasses.replace(connection.settings, refund_bank_account=ListRef("35"))
    with rig.uow_factory() as uow:
        uow.connections.save(dataclasses.replace(connection, settings=settings))
        uow.commit()
    customer = rig.system.create_customer(NewCustomer("Set Ting", "", "", "", "", "", ""), request_id="c1")
    spec = RefundSpec(customer.id, Decimal("5.00"), date(2026, 1, 2), TxnKind.EXPENSE, "", "note", "[m]")
    missing = "refund bank account setting cannot be used: QuickBooks has no account with Id 35"
    with pytest.raises(BookkeepingError, match=missing):
        rig.system.create(spec, request_id="r1")
    wrong = dataclasses.replace(settings, refund_bank_account=ListRef("3"))  # the A/R account
    with rig.uow_factory() as uow:
        uow.connections.save(dataclasses.replace(rig.connection(), settings=wrong))
        uow.commit()
    with pytest.raises(BookkeepingError, match="must be a Bank account"):
        rig.system.create(spec, request_id="r2")


def test_a_setting_stored_by_name_only_is_resolved_at_sync_time_never_ignored(rig: QboRig) -> None:
    """Settings stored before UpdateSettings resolved names (a name, no Id) are resolved by the same read and
    rules, used, and saved with the Id; a name of the wrong type fails the sync naming the setting."""
    from datetime import date
    from decimal import Decimal

    from core.accounting import NewCustomer, PaymentSpec
    from core.connection import ListRef
    from core.domain import PaymentMethod

    def store(deposit: ListRef) -> None:
        connection = rig.connection()
        settings = dataclasses.replace(connection.settings, deposit_account=deposit)
        with rig.uow_factory() as uow:
            uow.connections.save(dataclasses.replace(connection, settings=settings))
            uow.commit()

    customer = rig.system.create_customer(NewCustomer("Name Only", "", "", "", "", "", ""), request_id="c1")

    def spec(marker: str) -> PaymentSpec:
        return PaymentSpec(customer.id, Decimal("9.00"), date(2026, 1, 2), PaymentMethod.CASH, "", (), "n", marker)

    store(ListRef(name="Services"))  # the Income account
    with pytest.raises(BookkeepingError, match=r"deposit account setting cannot be used: 'Services' \(Id 4\) is an"):
        rig.system.create(spec("[m1]"), request_id="p1")
    assert rig.records("Payment") == []

    store(ListRef(name="checking"))
    made = rig.system.create(spec("[m2]"), request_id="p2")
    [written] = [p for p in rig.records("Payment") if p["Id"] == made.id]
    assert written["DepositToAccountRef"]["value"] == "1"
    assert rig.connection().settings.deposit_account == ListRef("1", "Checking")
