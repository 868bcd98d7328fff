"""The operators' commands around QuickBooks: `connect`, `emulator`, `errors`, `retry` (SPEC.md section 6),
`payouts` (section 9), `status` (R8, R9), `reconcile` (section 11).

Registered on the `qbsync` group by qbsync.cli. Secrets given to `connect` may come from environment
variables instead of the command line, where `ps` and shell history would show them; they are never
echoed back. `errors`, `payouts`, `reconcile` and `status` print `--json` for scripts (one JSON document on stdout;
times in UTC, amounts as decimal strings). An operator's mistake (an unknown tenant, a bad entity or job
name) is one line and exit status 2; a refusal of the use case (not found, not FAILED) one line and 1.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import click

from core.company_tax import SalesTax
from core.connection import PRODUCTION, SANDBOX, QuickBooksConnection
from core.connection_rules import is_loopback
from core.connections_service import ConnectionService
from core.domain import EntityRef, EntityType, Permission, Principal, SyncJob, SyncRecord
from core.errors import FailedPreconditionError, NotFoundError, QbsyncError, ValidationError
from core.payout_listing import PayoutStatus
from core.ports import UnitOfWorkFactory
from core.reconcile import Difference, ReconcileService
from core.service import MAX_PAGE_SIZE, SyncService
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.ensure_data_dir()
    return settings


class OperatorMistake(click.ClickException):
    """What the operator typed cannot be: one line naming it, exit status 2 as for click's own usage
    errors, without the usage text (the mistake is in a value, not in how the command is called)."""

    exit_code = 2


def _usage_error(exc: ValidationError) -> OperatorMistake:
    return OperatorMistake("; ".join(f"{v.field}: {v.description}" for v in exc.violations))


JSON_HELP = "Print one JSON document instead of text lines."


def _echo_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _timestamp(moment: datetime | None) -> str | None:
    """A time as JSON carries it: ISO 8601 in UTC with a Z, or null."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entity_json(entity: EntityRef) -> dict[str, str]:
    return {"type": entity.type.value, "id": entity.id}


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
@click.option(
    "--branch",
    default="",
    help="Connect this CRM branch's own QuickBooks company (SPEC §10); default: the tenant's default connection.",
)
def connect(
    tenant: str,
    realm_id: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    access_token: str,
    environment: str,
    api_base_url: str,
    branch: str,
) -> None:
    """Connects a tenant to a QuickBooks company with tokens you already hold (Intuit's OAuth Playground,
    the emulator). Plain http is accepted for loopback addresses only."""
    settings = _settings()
    service = bootstrap(settings=settings).get(ConnectionService)
    try:
        connection = service.connect_with_tokens(
            tenant,
            realm_id,
            client_id,
            client_secret,
            refresh_token,
            access_token,
            environment,
            api_base_url,
            branch_id=branch,
        )
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    except FailedPreconditionError as exc:  # the company is another connection's already
        raise click.ClickException(str(exc)) from exc
    whose = f"branch {branch!r} of tenant {tenant!r}" if branch else f"tenant {tenant!r}"
    click.echo(
        f"connected {whose} to QuickBooks company {connection.realm_id} ({connection.environment}); "
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
            raise OperatorMistake(f"unknown tenant {tenant!r}")
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


def _all_failed(service: SyncService, tenant: str) -> list[SyncJob]:
    """Every FAILED job of the tenant, each once: a job that fails while the pages are read can shift the
    offsets, so a job seen on two pages is kept once (the newest-first order of its first sighting)."""
    seen: dict[str, SyncJob] = {}
    token = ""
    while True:
        jobs, token = service.list_errors(_operator(tenant), MAX_PAGE_SIZE, token)
        for job in jobs:
            seen.setdefault(job.name, job)
        if not token:
            return list(seen.values())


def job_json(job: SyncJob) -> dict[str, object]:
    """What `errors --json` prints for one job."""
    error = None
    if job.error is not None:
        error = {
            "reason": job.error.reason,
            "message": job.error.message,
            "retryable": job.error.retryable,
            "metadata": dict(job.error.metadata),
        }
    return {
        "name": job.name,
        "kind": job.kind.value,
        "target": _entity_json(job.target),
        "state": job.state.value,
        "attempts": job.attempts,
        "create_time": _timestamp(job.create_time),
        "update_time": _timestamp(job.update_time),
        "error": error,
    }


@click.command()
@click.option("--tenant", required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " A JSON array, one object per job.")
def errors(tenant: str, limit: int, as_json: bool) -> None:
    """Lists the tenant's failed syncs, newest first."""
    service = _known_tenant(_settings(), tenant)
    jobs = _first(limit, lambda size, token: service.list_errors(_operator(tenant), size, token))
    if as_json:
        _echo_json([job_json(job) for job in jobs])
        return
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


def payout_json(status: PayoutStatus) -> dict[str, object]:
    """What `payouts --json` prints for one payout: its parts (amounts as decimal strings) and its record."""
    payout, record = status.payout, status.record
    return {
        "payout_id": payout.payout_id,
        "arrival_date": payout.arrival_date.isoformat(),
        "amount": str(payout.amount),
        "payment_ids": list(payout.payment_ids),
        "refund_ids": list(payout.refund_ids),
        "fees": str(payout.fees),
        "chargebacks": str(payout.chargebacks),
        "adjustments": [{"amount": str(a.amount), "memo": a.memo} for a in payout.adjustments],
        "state": record.state.value,
        "quickbooks_id": record.quickbooks_id,
        "last_synced_time": _timestamp(record.last_synced_time),
        "last_error": record.last_error or None,
    }


@click.command()
@click.option("--tenant", required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " A JSON array, one object per payout.")
def payouts(tenant: str, limit: int, as_json: bool) -> None:
    """Lists the tenant's payouts, newest arrival first: id, arrival date, amount, number of payments, sync
    state, the QuickBooks Deposit's Id and the last error."""
    service = _known_tenant(_settings(), tenant)
    statuses = _first(limit, lambda size, token: service.list_payouts(_operator(tenant), size, token))
    if as_json:
        _echo_json([payout_json(status) for status in statuses])
        return
    if not statuses:
        click.echo(f"no payouts for tenant {tenant!r}")
    for status in statuses:
        click.echo(_describe_payout(status))


@click.command()
@click.option("--tenant", required=True)
@click.option("--all", "every", is_flag=True, help="Retry every FAILED job of the tenant, each once.")
@click.argument("name", metavar="[syncJobs/ID]", required=False)
def retry(tenant: str, every: bool, name: str | None) -> None:
    """Runs a failed sync job again, or with --all every failed job of the tenant, each once (the workers of
    a running `qbsync serve` pick them up)."""
    if every == (name is not None):
        raise OperatorMistake("give either a job name (syncJobs/ID, as `qbsync errors` shows it) or --all")
    service = _known_tenant(_settings(), tenant)
    if name is not None:
        job = _retry_one(service, tenant, name)
        click.echo(f"{job.name} is {job.state.value} again; it will be retried")
        return
    failed = _all_failed(service, tenant)
    retried = 0
    for found in failed:
        try:
            job = service.retry(_operator(tenant), found.name)
        except (NotFoundError, FailedPreconditionError) as exc:  # retried or gone since it was listed
            click.echo(f"{found.name} skipped: {exc.message}")
            continue
        retried += 1
        click.echo(f"{job.name} is {job.state.value} again")
    click.echo(f"retried {retried} failed job{'' if retried == 1 else 's'} of tenant {tenant!r}")


def _retry_one(service: SyncService, tenant: str, name: str) -> SyncJob:
    try:
        return service.retry(_operator(tenant), name)
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    except QbsyncError as exc:  # not found, not FAILED
        raise click.ClickException(exc.message) from exc


_ENTITY_TYPES = {entity_type.value.lower(): entity_type for entity_type in EntityType}


def parse_entity(text: str) -> EntityRef:
    """`payment:pay-1` (type, a colon, the CRM id; an invoice's id is its job's) as an EntityRef."""
    kind, colon, entity_id = text.partition(":")
    if not colon or not entity_id.strip():
        raise OperatorMistake(f"ENTITY_TYPE:ID must look like payment:pay-1, not {text!r}")
    entity_type = _ENTITY_TYPES.get(kind.strip().lower())
    if entity_type is None:
        raise OperatorMistake(f"unknown entity type {kind!r}: use one of {', '.join(_ENTITY_TYPES)}")
    return EntityRef(entity_type, entity_id)


def status_json(record: SyncRecord, link: str | None) -> dict[str, object]:
    """What `status --json` prints: the record's state (R8) and its "View in QuickBooks" link (R9)."""
    return {
        "entity": _entity_json(record.entity),
        "state": record.state.value,
        "quickbooks_id": record.quickbooks_id,
        "last_synced_time": _timestamp(record.last_synced_time),
        "last_error": record.last_error or None,
        "resync_available": record.resync_available,
        "link": link,
    }


@click.command()
@click.option("--tenant", required=True)
@click.argument("entity", metavar="ENTITY_TYPE:ID")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def status(tenant: str, entity: str, as_json: bool) -> None:
    """Shows one CRM record's sync state: state, QuickBooks id, last synced, last error and its "View in
    QuickBooks" link. ENTITY_TYPE is payment, refund, invoice (the id is the job's), customer or payout."""
    ref = parse_entity(entity)
    service = _known_tenant(_settings(), tenant)
    try:
        record = service.get_status(_operator(tenant), ref)
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    except QbsyncError as exc:  # never sent to qbsync
        raise click.ClickException(f"{exc.message} (qbsync was never sent it)") from exc
    link, no_link = None, "not in QuickBooks yet"
    if record.quickbooks_id:
        try:
            link = service.get_link(_operator(tenant), ref)
        except QbsyncError as exc:  # e.g. disconnected: the record stands, its link cannot be made now
            no_link = exc.message
    if as_json:
        _echo_json(status_json(record, link))
        return
    synced = _timestamp(record.last_synced_time) or "never"
    click.echo(f"{record.entity.type.value.lower()}:{record.entity.id}  {record.state.value}")
    click.echo(f"  quickbooks id:  {record.quickbooks_id or '-'}")
    click.echo(f"  last synced:    {synced}")
    click.echo(f"  last error:     {record.last_error or '-'}")
    click.echo(f"  link:           {link or f'- ({no_link})'}")


# `reconcile`'s exit status when it found differences: distinct from a refusal (1) and a mistake (2), so that a
# script tells "the books differ" from "reconcile could not run".
DIFFERENCES_FOUND = 3


def difference_json(difference: Difference) -> dict[str, object]:
    """What `reconcile --json` prints for one difference (amounts as decimal strings, null when none)."""

    def amount(value: Decimal | None) -> str | None:
        return str(value) if value is not None else None

    return {
        "entity": _entity_json(difference.entity),
        "quickbooks_id": difference.quickbooks_id or None,
        "what": difference.what,
        "crm_amount": amount(difference.crm_amount),
        "quickbooks_amount": amount(difference.quickbooks_amount),
        "customer_id": difference.customer_id or None,
        "branch_id": difference.branch_id or None,
    }


def _describe_difference(difference: Difference) -> str:
    crm = difference.crm_amount if difference.crm_amount is not None else "-"
    books = difference.quickbooks_amount if difference.quickbooks_amount is not None else "-"
    entity = f"{difference.entity.type.value.lower()}:{difference.entity.id}"
    # "-" rather than nothing: the columns stay countable for `awk` and `cut`; the words come last.
    return f"{entity}  {difference.quickbooks_id or '-'}  crm={crm}  quickbooks={books}  {difference.what}"


@click.command()
@click.option("--tenant", required=True)
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " A JSON array, one object per difference.")
def reconcile(tenant: str, start: datetime, end: datetime, as_json: bool) -> None:
    """Compares the CRM's payments, refunds, invoices and payouts dated in the period (at most a year) with
    QuickBooks' books and lists every difference. Exit status 0 when the books agree, 3 when differences are
    found, 1 when QuickBooks could not be read."""
    settings = _settings()
    _known_tenant(settings, tenant)
    service = bootstrap(settings=settings).get(ReconcileService)
    try:
        differences = service.reconcile(_operator(tenant), start.date(), end.date())
    except ValidationError as exc:
        raise _usage_error(exc) from exc
    except QbsyncError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        _echo_json([difference_json(d) for d in differences])
    elif not differences:
        click.echo(f"no differences for tenant {tenant!r} from {start.date()} to {end.date()}")
    for difference in differences if not as_json else ():
        click.echo(_describe_difference(difference))
    if differences:
        sys.exit(DIFFERENCES_FOUND)


COMMANDS = (connect, emulator, errors, payouts, reconcile, retry, status)
