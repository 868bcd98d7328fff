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

from adapters.inprocess import InProcessCompanyLock
from adapters.quickbooks.qbo import InProcessRequestLimiter, QuickBooksAccountingSystems, RateLimits
from adapters.quickbooks.qbo.tokens import TimeoutAuthClient, refresh_lock_key
from adapters.system import SystemClock
from core.connection import ConnectionState, QuickBooksConnection
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

    systems = QuickBooksAccountingSystems(rig.uow_factory, SystemClock(), auth_client_factory=counting_factory)
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
            rig.uow_factory, SystemClock(), auth_client_factory=counting_factory, company_lock=lock
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
