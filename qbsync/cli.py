"""`qbsync`, the operators' command line: serve, migrate, keys create, demo, connect, emulator, errors, retry."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click
from injector import Injector

from core.auth import ApiKeys, parse_permissions
from core.connection import PRODUCTION, SANDBOX
from core.connections_service import ConnectionService
from core.errors import ValidationError
from core.ports import UnitOfWorkFactory
from qbsync.bootstrap import bootstrap
from qbsync.config import ROLES, Settings
from qbsync.operator_commands import COMMANDS

ALL_PERMISSIONS = "sync,read,quickbooks.view,admin"
DEMO_TENANT = "demo"


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # e.g. QBSYNC_ROLE=db: say so plainly, not with a traceback
        raise click.UsageError(f"bad configuration: {exc}") from exc
    settings.ensure_data_dir()
    return settings


def _migrate(settings: Settings) -> None:
    from adapters.persistence.sqlalchemy.migrate import migrate

    migrate(settings.database_url)


@click.group()
@click.option("--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """qbsync keeps a moving company's books in QuickBooks Online in step with its CRM."""
    _configure_logs(verbose)


def _configure_logs(verbose: bool) -> None:
    """Structured logs for every command and role (qbsync/logs.py: QBSYNC_LOG_FORMAT, QBSYNC_LOG_LEVEL)."""
    import os

    from adapters.persistence.encryption import ENCRYPTION_KEY_ENV, parse_keys
    from qbsync import logs

    try:
        settings = logs.LogSettings.from_env(os.environ, verbose=verbose)
    except ValueError as exc:
        raise click.UsageError(f"bad configuration: {exc}") from exc
    # The configured secrets are masked in every line, whatever logs them (belt and braces).
    secrets = [*parse_keys(os.environ.get(ENCRYPTION_KEY_ENV, "")), os.environ.get("QBSYNC_QBO_CLIENT_SECRET", "")]
    logs.configure(settings, secrets=secrets)


@main.command()
def migrate() -> None:
    """Creates or upgrades the database schema (QBSYNC_DATABASE_URL)."""
    settings = _settings()
    _migrate(settings)
    click.echo("database is up to date")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant (moving company) the key belongs to; created if new.")
@click.option("--permissions", default=ALL_PERMISSIONS, show_default=True, help="Comma-separated permissions.")
def keys_create(tenant: str, permissions: str) -> None:
    """Creates an API key and prints it as the last line; only its hash is stored."""
    settings = _settings()
    try:
        perms = parse_permissions([p.strip() for p in permissions.split(",") if p.strip()])
        key = bootstrap(settings=settings).get(ApiKeys).create(tenant, perms)
    except ValidationError as exc:
        raise click.UsageError("; ".join(f"{v.field}: {v.description}" for v in exc.violations)) from exc
    click.echo(f"created a key for tenant {tenant!r} with permissions {permissions}; keep it secret:")
    click.echo(key)


@main.command()
@click.option("--listen", default=None, help="host:port (default QBSYNC_LISTEN or 127.0.0.1:50051).")
@click.option("--workers", default=None, type=int, help="Background sync workers in this process (QBSYNC_WORKERS).")
@click.option(
    "--role",
    default=None,
    type=click.Choice(ROLES),
    help="api: the gRPC API only; worker: the sync workers only; all: both (QBSYNC_ROLE, default all).",
)
def serve(listen: str | None, workers: int | None, role: str | None) -> None:
    """Serves the gRPC API and/or runs the sync workers (see --role) until SIGTERM or Ctrl-C."""
    _serve(_override(_settings(), listen, workers, role), banner=None)


@main.command()
@click.option("--listen", default=None, help="host:port (default 127.0.0.1:50051).")
def demo(listen: str | None) -> None:
    """Migrates a local database, connects a `demo` tenant to the bundled QuickBooks emulator (unless it has
    a real connection), creates a key for it, prints a first call, and serves."""
    settings = _override(_settings(), listen, None)
    _migrate(settings)
    injector = bootstrap(settings=settings)
    emulator_note = _connect_demo_to_emulator(injector)
    key = injector.get(ApiKeys).create(DEMO_TENANT, parse_permissions(ALL_PERMISSIONS.split(",")))
    _serve(settings, banner=key, note=emulator_note)


def _connect_demo_to_emulator(injector: Injector) -> str:
    """Starts the emulator in this process and points the demo tenant at it, so that the first sync goes
    through the real python-quickbooks adapter over HTTP. A demo tenant connected to Intuit stays so."""
    from adapters.quickbooks.emulator import run_emulator

    with injector.get(UnitOfWorkFactory)() as uow:  # type: ignore[type-abstract]
        existing = uow.connections.get(DEMO_TENANT)
    if existing is not None and existing.environment in (SANDBOX, PRODUCTION):
        return f"The demo tenant syncs to its {existing.environment} QuickBooks company {existing.realm_id}."
    emulator = run_emulator("127.0.0.1", 0)
    company = emulator.create_realm(company_name="Demo Moving Co")
    injector.get(ConnectionService).connect_with_tokens(
        DEMO_TENANT,
        company["realm_id"],
        company["client_id"],
        company["client_secret"],
        company["refresh_token"],
        company["access_token"],
        environment=emulator.discovery_url,
        api_base_url=emulator.base_api_url,
    )
    return (
        f"It syncs to the bundled QuickBooks emulator at {emulator.url} (company {company['realm_id']});\n"
        f"see what it holds: {emulator.url}/_emulator/realms/{company['realm_id']}/state"
    )


def _override(settings: Settings, listen: str | None, workers: int | None, role: str | None = None) -> Settings:
    from dataclasses import replace

    return replace(
        settings,
        listen=listen or settings.listen,
        workers=settings.workers if workers is None else workers,
        role=role or settings.role,
    )


def _serve(settings: Settings, banner: str | None, note: str = "") -> None:
    from qbsync.runtime import Runtime

    runtime = Runtime(bootstrap(settings=settings))
    port = runtime.start()
    host = settings.listen.rsplit(":", 1)[0]
    database = _redacted(settings.database_url)
    if settings.serves_api:
        workers = f"{settings.workers} workers" if settings.runs_workers else "no workers"
        click.echo(f"qbsync is serving on {host}:{port} with {workers} (database {database})")
    else:
        # Scripts and supervisors wait for this line as they wait for "serving on" from an API process.
        click.echo(f"qbsync is running {settings.workers} workers, no API (database {database})")
    if banner:
        click.echo(
            f"\nYour demo API key (tenant '{DEMO_TENANT}', all permissions):\n\n  {banner}\n\n"
            f"Make a first call from another terminal:\n\n"
            f"  .venv/bin/python -m qbsync.first_call --target {host}:{port} --key {banner}\n\n{note}\n"
        )
    sys.stdout.flush()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("received signal %s: shutting down gracefully", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    runtime.stop()


def _redacted(url: str) -> str:
    """A database URL fit for a log line: any password is masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
