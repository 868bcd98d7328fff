"""The operators' commands around QuickBooks: `connect`, `emulator`, `errors`, `retry` (SPEC.md section 6),
`payouts` (section 9).

Registered on the `qbsync` group by qbsync.cli. Secrets given to `connect` may come from environment
variables instead of the command line, where `ps` and shell history would show them; they are never
echoed back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import click

from core.company_tax import SalesTax
from core.connection import PRODUCTION, SANDBOX, QuickBooksConnection
from core.connection_rules import is_loopback
from core.connections_service import ConnectionService
from core.domain import Permission, Principal, SyncJob
from core.errors import QbsyncError, ValidationError
from core.payout_listing import PayoutStatus
from core.ports import UnitOfWorkFactory
from core.service import MAX_PAGE_SIZE, SyncService
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.ensure_data_dir()
    return settings


def _usage_error(exc: ValidationError) -> click.UsageError:
    return click.UsageError("; ".join(f"{v.field}: {v.description}" for v in exc.violations))


def _operator(tenant: str) -> Principal:
    """The operator acts as the tenant with every permission: they hold the database already."""
    return Principal(tenant, frozenset(Permission))


@click.command()
@click.option("--tenant", required=True, help="The tenant (moving company); created if new.")
@click.option("--realm-id", required=True, help="The QuickBooks company id (realmId).")
@click.option("--client-id", required=True, help="The Intuit app's client id.")
@click.option("--client-secret", required=True, envvar="QBSYNC_CONNECT_CLIENT_SECRET", help="Or set the env var.")
@click.option("--refresh-token", required=True, envvar="QBSYNC_CONNECT_REFRESH_TOKEN", help="Or set the env var.")
@click.option("--access-token", default="", envvar="QBSYNC_CONNECT_ACCESS_TOKEN", help="Optional; refreshed if absent.")
@click.option(
    "--environment",
    required=True,
    help=f"{SANDBOX}, {PRODUCTION}, or the URL of an OpenID discovery document (e.g. the emulator's).",
)
@click.option("--api-base-url", default="", help="The QuickBooks API base URL (.../v3); default: Intuit's.")
def connect(
    tenant: str,
    realm_id: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    access_token: str,
    environment: str,
    api_base_url: str,
) -> None:
    """Connects a tenant to a QuickBooks company with tokens you already hold (Intuit's OAuth Playground,
    the emulator). Plain http is accepted for loopback addresses only."""
    settings = _settings()
    service = bootstrap(settings=settings).get(ConnectionService)
    try:
        connection = service.connect_with_tokens(
            tenant, realm_id, client_id, client_secret, refresh_token, access_token, environment, api_base_url
        )
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    click.echo(
        f"connected tenant {tenant!r} to QuickBooks company {connection.realm_id} ({connection.environment}); "
        "its secrets are stored encrypted"
    )
    click.echo(_company_preferences_line(connection))


def _company_preferences_line(connection: QuickBooksConnection) -> str:
    """What the connect read of the company's Preferences, or that it could not be read (it is read again
    by the first sync that needs it)."""
    if connection.sales_tax is None and not connection.home_currency:
        return "its QuickBooks preferences could not be read yet (they are read by the first sync that needs them)"
    currency = connection.home_currency or "not read"
    multicurrency = "on" if connection.multicurrency else "off"
    sales_tax = {
        None: "not read",
        SalesTax.AUTOMATED: "automated (QuickBooks keeps the tax total qbsync sends)",
        SalesTax.MANUAL: "set up by hand",
        SalesTax.NONE: "not set up: jobs charging tax are refused",
    }[connection.sales_tax]
    return f"home currency {currency}, multicurrency {multicurrency}; sales tax {sales_tax}"


@click.command()
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The emulator has no authentication.")
@click.option("--realm", default=None, help="Create this company at start and print how to connect to it.")
def emulator(port: int, host: str, realm: str | None) -> None:
    """Runs the bundled QuickBooks Online emulator in the foreground until SIGTERM or Ctrl-C."""
    from adapters.quickbooks.emulator import run_emulator  # the emulator's code loads only when asked for

    if not is_loopback(host):
        click.echo(f"warning: {host} is not a loopback address and the emulator has no authentication", err=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %s: stopping the emulator", signum)
        stopping.set()

    # Before anything is printed: whoever reads the output may signal at once (SIGTERM must stop, not kill).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = run_emulator(host, port)
    click.echo(f"QuickBooks emulator on {server.url}")
    click.echo(f"  API base URL:  {server.base_api_url}")
    click.echo(f"  discovery URL: {server.discovery_url}")
    if realm:
        creds = server.create_realm(realm_id=realm)
        # The emulator's throwaway credentials, printed so that the operator can paste the command.
        click.echo(
            "\nConnect a tenant to it with:\n\n"
            f"  qbsync connect --tenant demo --realm-id {creds['realm_id']} --client-id {creds['client_id']} "
            f"--client-secret {creds['client_secret']} --refresh-token {creds['refresh_token']} "
            f"--environment {server.discovery_url} --api-base-url {server.base_api_url}\n"
        )
    sys.stdout.flush()
    stopping.wait()
    server.stop()
    click.echo("emulator stopped")


def _known_tenant(settings: Settings, tenant: str) -> SyncService:
    injector = bootstrap(settings=settings)
    with injector.get(UnitOfWorkFactory)() as uow:  # type: ignore[type-abstract]
        if not uow.tenants.exists(tenant):
            raise click.UsageError(f"unknown tenant {tenant!r}")
    return injector.get(SyncService)


def _describe(job: SyncJob) -> str:
    error = f"{job.error.reason}: {job.error.message}" if job.error else "(no error recorded)"
    when = job.update_time.isoformat(timespec="seconds")
    return f"{job.name}  {when}  {job.kind.value} {job.target}  attempts={job.attempts}  {error}"


def _first(limit: int, page: Callable[[int, str], tuple[list[T], str]]) -> list[T]:
    """The first `limit` items of a paged list use case (`page(page_size, page_token)`)."""
    found: list[T] = []
    token = ""
    while len(found) < limit:
        items, token = page(min(limit - len(found), MAX_PAGE_SIZE), token)
        found += items
        if not token:
            break
    return found


@click.command()
@click.option("--tenant", required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
def errors(tenant: str, limit: int) -> None:
    """Lists the tenant's failed syncs, newest first."""
    service = _known_tenant(_settings(), tenant)
    jobs = _first(limit, lambda size, token: service.list_errors(_operator(tenant), size, token))
    if not jobs:
        click.echo(f"no failed syncs for tenant {tenant!r}")
    for job in jobs:
        click.echo(_describe(job))


def _describe_payout(status: PayoutStatus) -> str:
    payout, record = status.payout, status.record
    # "-" rather than nothing: the columns stay countable for `awk` and `cut`.
    deposit = record.quickbooks_id or "-"
    line = (
        f"{payout.payout_id}  {payout.arrival_date.isoformat()}  {payout.amount}  payments={len(payout.payment_ids)}"
        f"  {record.state.value}  deposit={deposit}"
    )
    return f"{line}  {record.last_error}" if record.last_error else line


@click.command()
@click.option("--tenant", required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
def payouts(tenant: str, limit: int) -> None:
    """Lists the tenant's payouts, newest arrival first: id, arrival date, amount, number of payments, sync
    state, the QuickBooks Deposit's Id and the last error."""
    service = _known_tenant(_settings(), tenant)
    statuses = _first(limit, lambda size, token: service.list_payouts(_operator(tenant), size, token))
    if not statuses:
        click.echo(f"no payouts for tenant {tenant!r}")
    for status in statuses:
        click.echo(_describe_payout(status))


@click.command()
@click.option("--tenant", required=True)
@click.argument("name", metavar="syncJobs/ID")
def retry(tenant: str, name: str) -> None:
    """Runs a failed sync job again (the workers of a running `qbsync serve` pick it up)."""
    service = _known_tenant(_settings(), tenant)
    try:
        job = service.retry(_operator(tenant), name)
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    except QbsyncError as exc:  # not found, not FAILED
        raise click.ClickException(exc.message) from exc
    click.echo(f"{job.name} is {job.state.value} again; it will be retried")


COMMANDS = (connect, emulator, errors, payouts, retry)
