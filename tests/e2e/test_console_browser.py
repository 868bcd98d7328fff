"""The web console in a real browser: Debian's chromium driven by Playwright, against a real deployment —
qbsync's gRPC API and workers over SQLite, the real QuickBooks adapter over HTTP to the bundled emulator
(whose closed books fail a payment for good and whose OAuth server runs the reconnect flow), and the console
(`qbsync console`'s server) over the same wiring.

The browser is installed by `make browser` (apt-get install chromium, as root); where no browser can be had,
these tests skip naming what is missing."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import requests

from adapters.console.app import ConsoleConfig, create_app
from adapters.console.server import ConsoleServer
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from core.auth import ApiKeys, presented_key_id
from core.connection import ConnectionState, QuickBooksConnection
from core.connections_service import ConnectionService
from core.domain import Permission
from core.ports import UnitOfWorkFactory
from core.service import SyncService
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_sync_service import opportunity, payment

CHROMIUM = Path(os.environ.get("QBSYNC_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        f"no browser: {CHROMIUM} is missing (run `make browser` as root: apt-get install chromium)",
        allow_module_level=True,
    )
Page = playwright_sync.Page
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One chromium for the module; each test gets its own context (cookies) from it."""
    with playwright_sync.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Deployment:
    console_url: str
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys
    emulator: EmulatorServer
    realm_id: str
    database: Path
    uow_factory: object  # the SQLAlchemy unit of work factory: its engine is disposed to take the file away

    def key(self, *permissions: Permission, tenant: str = "acme") -> str:
        return self.keys.create(tenant, frozenset(permissions or Permission))

    def md(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.key()}")]

    def admin(self, path: str, body: dict[str, object]) -> None:
        requests.post(f"{self.emulator.admin_url}/{path}", json=body, timeout=5).raise_for_status()

    def close_books(self, date: str | None) -> None:
        self.admin(f"realms/{self.realm_id}/closing_date", {"date": date})

    def settle(self, name: str, md: list[tuple[str, str]]) -> r.SyncJob:
        last = None
        for update in self.stub.WatchSyncJob(s.GetSyncJobRequest(name=name), metadata=md, timeout=30):
            last = update
        assert last is not None
        return last

    def failed_payment(self, n: int, md: list[tuple[str, str]]) -> str:
        """A payment the closed books refuse: its job FAILED (QUICKBOOKS_CLOSED_PERIOD)."""
        accepted = self.stub.SyncPayment(
            s.SyncPaymentRequest(opportunity=opportunity(f"cust-{n}", f"opp-{n}"), payment=payment(f"pay-{n}")),
            metadata=md,
        )
        assert self.settle(accepted.name, md).state == r.SyncJob.STATE_FAILED
        return accepted.name


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    emulator = run_emulator("127.0.0.1", 0)
    company = emulator.create_realm(company_name="Acme Movers")
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(database_url)
    settings = replace(
        Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path)}),
        database_url=database_url,
        listen="127.0.0.1:0",
        workers=2,
        grace_seconds=1,
        watch_poll_seconds=0.05,
        # qbsync's Intuit app is the one the emulator registered: the console's reconnect uses it.
        qbo_client_id=company["client_id"],
        qbo_client_secret=company["client_secret"],
        qbo_environment=emulator.discovery_url,
    )
    injector = bootstrap(settings=settings)
    connect_to_emulated(injector.get(ConnectionService), "acme", company, emulator)
    runtime = Runtime(injector)
    grpc_port = runtime.start()
    sync, connections, keys = injector.get(SyncService), injector.get(ConnectionService), injector.get(ApiKeys)
    console = ConsoleServer(
        lambda port: create_app(
            sync, connections, keys, ConsoleConfig(session_secret="s" * 48, public_url=f"http://127.0.0.1:{port}")
        ),
        "127.0.0.1:0",
    )
    console_url = f"http://127.0.0.1:{console.start()}"
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        yield Deployment(
            console_url,
            sync_service_pb2_grpc.SyncServiceStub(channel),
            injector.get(ApiKeys),
            emulator,
            company["realm_id"],
            tmp_path / "qbsync.db",
            injector.get(UnitOfWorkFactory),  # type: ignore[type-abstract]
        )
    finally:
        channel.close()
        console.stop()
        runtime.stop(grace=1)
        emulator.stop()


@pytest.fixture
def page(browser, deployment: Deployment) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=deployment.console_url)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, key: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.fill("#api_key", key)
    page.click("button[type=submit]")


def error_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr.error-row[data-job="{name}"]')


def recent_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr.recent-row[data-job="{name}"]')


def test_sign_in_takes_an_admin_key_only(page: Page, deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sign_in(page, "qbs_nokey_notasecret")
    expect(page.locator("#problem")).to_have_text("unknown, revoked or expired API key")
    sign_in(page, deployment.key(Permission.READ, Permission.SYNC))
    expect(page.locator("#problem")).to_contain_text("lacks the 'admin' permission")
    expect(page).to_have_url(re.compile(r"/signin$"))

    admin_key = deployment.key()
    sign_in(page, admin_key)
    expect(page.locator("#tenant")).to_have_text("acme")
    expect(page.locator("#connection-state")).to_have_text("CONNECTED")
    expect(page.locator("#connection-company")).to_contain_text(deployment.realm_id)
    html = page.content()
    assert admin_key not in html and admin_key.rsplit("_", 1)[1] not in html  # the key never comes back
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["qbsync_console"]["httpOnly"] and cookies["qbsync_console"]["sameSite"] == "Lax"
    assert admin_key.rsplit("_", 1)[1] not in cookies["qbsync_console"]["value"]
    assert "console sign-in: tenant acme" in caplog.text and admin_key.rsplit("_", 1)[1] not in caplog.text

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))

    # A key revoked while signed in ends its session at the next request.
    sign_in(page, admin_key)
    expect(page.locator("#tenant")).to_have_text("acme")
    deployment.keys.revoke(presented_key_id(admin_key))
    page.reload()
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_branches_with_a_company_of_their_own_are_listed_with_their_health(page: Page, deployment: Deployment) -> None:
    factory: UnitOfWorkFactory = deployment.uow_factory  # type: ignore[assignment]
    with factory() as uow:  # SPEC §10: north's own company, whose refresh token Intuit refused
        uow.connections.save(
            QuickBooksConnection(
                tenant_id="acme",
                branch_id="north",
                realm_id="4242",
                environment=deployment.emulator.discovery_url,
                client_id="app",
                client_secret="",
                refresh_token="",
                state=ConnectionState.RECONNECT_REQUIRED,
                company_name="Acme North",
                last_error="invalid_grant",
            )
        )
        uow.commit()
    sign_in(page, deployment.key())
    expect(page.locator("#connection-state")).to_have_text("CONNECTED")  # the default connection, as before
    row = page.locator("#branch-connections tr.branch-connection")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("north")
    expect(row.locator(".state")).to_have_text("RECONNECT_REQUIRED")
    expect(row).to_contain_text("Acme North (realm 4242)")
    expect(row).to_contain_text("invalid_grant")


def test_a_failed_job_is_retried_after_the_fix_and_another_is_dismissed(page: Page, deployment: Deployment) -> None:
    md = deployment.md()
    deployment.close_books("2026-01-31")
    first, second = deployment.failed_payment(1, md), deployment.failed_payment(2, md)
    sign_in(page, deployment.key())
    expect(error_row(page, first)).to_contain_text("QUICKBOOKS_CLOSED_PERIOD")
    expect(error_row(page, second)).to_be_visible()

    deployment.close_books(None)  # the bookkeeper reopens the period, then retries in the console
    error_row(page, first).get_by_role("button", name="Retry").click()
    expect(page.locator(".flash.info")).to_have_text(f"{first} is queued again")
    expect(error_row(page, first)).to_have_count(0)
    assert deployment.settle(first, md).state == r.SyncJob.STATE_SUCCEEDED
    page.reload()
    expect(recent_row(page, first).locator(".state")).to_have_text("SUCCEEDED")
    link = recent_row(page, first).locator("a.quickbooks-link")
    expect(link).to_have_text("View in QuickBooks")
    qbo_id = deployment.stub.GetSyncStatus(
        s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")), metadata=md
    ).quickbooks_id
    assert f"txnId={qbo_id}" in (link.get_attribute("href") or "")

    error_row(page, second).get_by_role("button", name="Dismiss").click()
    expect(page.locator(".flash.info")).to_have_text(f"{second} was dismissed")
    expect(page.locator("#no-errors")).to_be_visible()
    expect(recent_row(page, second).locator(".state")).to_have_text("FAILED (dismissed)")
    listed = deployment.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=md).sync_jobs
    assert listed == []  # the API agrees: dismissed, and kept
    assert deployment.stub.GetSyncJob(s.GetSyncJobRequest(name=second), metadata=md).HasField("dismiss_time")


def test_reconnect_runs_the_oauth_flow_through_the_callback(
    page: Page, deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    md = deployment.md()
    # Intuit kills the tokens: the next sync finds the connection needing a reconnection.
    deployment.admin("tokens/expire", {"realm_id": deployment.realm_id})
    deployment.admin("tokens/revoke", {"realm_id": deployment.realm_id})
    stuck = deployment.failed_payment(1, md)
    sign_in(page, deployment.key())
    expect(page.locator("#connection-state")).to_have_text("RECONNECT_REQUIRED")
    expect(error_row(page, stuck)).to_contain_text("QUICKBOOKS_RECONNECT_REQUIRED")

    oauth_hops: list[str] = []
    page.on("request", lambda request: oauth_hops.append(request.url) if request.is_navigation_request() else None)
    page.click("#reconnect")
    expect(page.locator(".flash.info")).to_contain_text("connected to")
    expect(page.locator("#connection-state")).to_have_text("CONNECTED")
    expect(page).to_have_url(f"{deployment.console_url}/")
    assert any(hop.startswith(f"{deployment.emulator.url}/oauth2/v1/authorize?") for hop in oauth_hops)
    [callback] = [hop for hop in oauth_hops if hop.startswith(f"{deployment.console_url}/oauth/callback?code=")]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in caplog.text and code not in page.content()  # Intuit's one-time code is logged nowhere

    # Intuit's refusal, and a callback the tenant did not start (forged or replayed state), change nothing.
    page.goto("/oauth/callback?error=access_denied&state=x")
    expect(page.locator(".flash.error")).to_have_text("QuickBooks did not connect: access_denied")
    page.goto(f"/oauth/callback?code=emu-code-forged&state=forged&realmId={deployment.realm_id}")
    expect(page.locator(".flash.error")).to_contain_text("QuickBooks did not connect: no authorization is pending")
    expect(page.locator("#connection-state")).to_have_text("CONNECTED")

    error_row(page, stuck).get_by_role("button", name="Retry").click()  # the new tokens work
    assert deployment.settle(stuck, md).state == r.SyncJob.STATE_SUCCEEDED


def test_forms_need_the_sessions_csrf_token_and_pages_carry_no_secret(page: Page, deployment: Deployment) -> None:
    md = deployment.md()
    deployment.close_books("2026-01-31")
    failed = deployment.failed_payment(1, md)
    sign_in(page, deployment.key())
    expect(error_row(page, failed)).to_be_visible()
    # A cross-site form (no token, or another session's) is refused, and changes nothing.
    for token in ("", "forged"):
        answer = page.request.post("/jobs/dismiss", form={"name": failed, "csrf": token}, max_redirects=0)
        assert answer.status == 403
    assert [j.name for j in deployment.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=md).sync_jobs] == [
        failed
    ]
    # A GET does not change anything either.
    assert page.request.get("/jobs/dismiss", max_redirects=0).status == 405

    answer = page.request.get("/")
    headers = answer.headers
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    state = requests.get(f"{deployment.emulator.admin_url}/realms/{deployment.realm_id}/state", timeout=5).json()
    body = answer.text()
    tokens = [t["token"] for t in state["tokens"]["access_tokens"]] + state["tokens"]["refresh_tokens"]
    assert tokens and all(token not in body for token in tokens)


def test_a_database_outage_is_a_plain_503_and_the_page_comes_back(page: Page, deployment: Deployment) -> None:
    sign_in(page, deployment.key())
    expect(page.locator("#tenant")).to_have_text("acme")
    deployment.uow_factory.engine.dispose()  # type: ignore[attr-defined]
    files = [
        p
        for p in (deployment.database, Path(f"{deployment.database}-wal"), Path(f"{deployment.database}-shm"))
        if p.exists()
    ]
    for path in files:
        path.rename(f"{path}.away")
    deployment.database.mkdir()  # a directory where the file was: nobody can open it
    try:
        answer = page.request.get("/")
        assert answer.status == 503 and answer.headers["retry-after"] == "5"
        assert answer.text().startswith("unavailable: the database is unavailable")
        assert "Traceback" not in answer.text() and "sqlite" not in answer.text().lower()
    finally:
        deployment.database.rmdir()
        for path in files:
            Path(f"{path}.away").rename(path)
    page.reload()
    expect(page.locator("#tenant")).to_have_text("acme")
