"""`qbsync`, the operators' command line: serve, migrate, keys (qbsync.key_commands), demo, connect, emulator,
errors, retry, status, payouts."""

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
from core.errors import StorageUnavailableError
from core.ports import UnitOfWorkFactory
from qbsync.bootstrap import bootstrap
from qbsync.config import ROLES, ConfigError, Settings
from qbsync.console import console_command
from qbsync.key_commands import keys
from qbsync.operator_commands import COMMANDS
from qbsync.tls import check_listen_is_safe, load_server_tls

ALL_PERMISSIONS = "sync,read,quickbooks.view,admin"
DEMO_TENANT = "demo"
INSECURE_HELP = (
    "Allow plaintext gRPC on an address beyond loopback, e.g. behind a TLS-terminating proxy (QBSYNC_INSECURE=1)."
)


# sysexits.h EX_CONFIG: what a supervisor (systemd, Kubernetes) shows for a configuration mistake.
EXIT_CONFIG = 78


class ConfigurationProblem(click.ClickException):
    """A setting qbsync cannot run with, or an address it cannot take: one line, no traceback."""

    exit_code = EXIT_CONFIG

    def format_message(self) -> str:
        return f"configuration: {self.message}"


class _Commands(click.Group):
    """The `qbsync` group: any command's configuration mistake is reported as one line naming the
    variable (ConfigError), a taken port as one line naming the address (ListenError)."""

    def invoke(self, ctx: click.Context) -> object:
        from sqlalchemy.exc import OperationalError

        from adapters.grpc.server import ListenError
        from qbsync.health import MetricsListenError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise ConfigurationProblem(str(exc)) from exc
        except ListenError as exc:
            raise ConfigurationProblem(f"{exc}; choose another address with --listen or QBSYNC_LISTEN") from exc
        except MetricsListenError as exc:
            raise ConfigurationProblem(str(exc)) from exc
        except OperationalError as exc:  # the URL parsed, but there is no database there (or no way in)
            raise click.ClickException(
                f"cannot reach the database of QBSYNC_DATABASE_URL: {_driver_says(exc)}"
            ) from exc
        except StorageUnavailableError as exc:  # down, or never migrated (the cause says which)
            raise click.ClickException(
                f"the database of QBSYNC_DATABASE_URL is unavailable ({_driver_says(exc.__cause__ or exc)}); "
                "is it up, and has `qbsync migrate` run?"
            ) from exc


def _driver_says(error: BaseException) -> str:
    """The first line of the database driver's own message: SQLAlchemy's would quote the statement and its
    parameters (key hashes, encrypted tokens); a driver's names the host, never the password."""
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _settings() -> Settings:
    settings = Settings.from_env()  # a ConfigError becomes one line (see _Commands)
    settings.ensure_data_dir()
    return settings


def _migrate(settings: Settings) -> None:
    from adapters.persistence.sqlalchemy.migrate import migrate

    migrate(settings.database_url)


@click.group(cls=_Commands)
@click.version_option(package_name="qbsync", message="qbsync %(version)s")
@click.option("--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """qbsync keeps a moving company's books in QuickBooks Online in step with its CRM."""
    _configure_logs(verbose)


def _configure_logs(verbose: bool) -> None:
    """Structured logs for every command and role (qbsync/logs.py: QBSYNC_LOG_FORMAT, QBSYNC_LOG_LEVEL)."""
    import os

    from adapters.persistence.encryption import ENCRYPTION_KEY_ENV, parse_keys
    from qbsync import logs

    settings = logs.LogSettings.from_env(os.environ, verbose=verbose)  # a ConfigError: one line, exit 78
    # The configured secrets are masked in every line, whatever logs them (belt and braces).
    secrets = [*parse_keys(os.environ.get(ENCRYPTION_KEY_ENV, "")), os.environ.get("QBSYNC_QBO_CLIENT_SECRET", "")]
    logs.configure(settings, secrets=secrets)


@main.command()
def migrate() -> None:
    """Creates or upgrades the database schema (QBSYNC_DATABASE_URL)."""
    settings = _settings()
    _migrate(settings)
    click.echo("database is up to date")


@main.command()
@click.option("--listen", default=None, help="host:port (default QBSYNC_LISTEN or 127.0.0.1:50051).")
@click.option("--workers", default=None, type=int, help="Background sync workers in this process (QBSYNC_WORKERS).")
@click.option(
    "--role",
    default=None,
    type=click.Choice(ROLES),
    help="api: the gRPC API only; worker: the sync workers only; all: both (QBSYNC_ROLE, default all).",
)
@click.option("--insecure", is_flag=True, help=INSECURE_HELP)
def serve(listen: str | None, workers: int | None, role: str | None, insecure: bool) -> None:
    """Serves the gRPC API and/or runs the sync workers (see --role) until SIGTERM or Ctrl-C.

    TLS: QBSYNC_TLS_CERT and QBSYNC_TLS_KEY (PEM files), QBSYNC_TLS_CLIENT_CA to require client
    certificates (mTLS)."""
    _serve(_override(_settings(), listen, workers, role, insecure), banner=None)


@main.command()
@click.option("--listen", default=None, help="host:port (default 127.0.0.1:50051).")
@click.option("--insecure", is_flag=True, help=INSECURE_HELP)
def demo(listen: str | None, insecure: bool) -> None:
    """Migrates a local database, connects a `demo` tenant to the bundled QuickBooks emulator (unless it has
    a real connection), creates a key for it, prints a first call, and serves."""
    settings = _override(_settings(), listen, None, insecure=insecure)
    check_listen_is_safe(settings)  # before a key is made for a server that would refuse to start
    load_server_tls(settings)
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


def _override(
    settings: Settings, listen: str | None, workers: int | None, role: str | None = None, insecure: bool = False
) -> Settings:
    from dataclasses import replace

    return replace(
        settings,
        listen=listen or settings.listen,
        workers=settings.workers if workers is None else workers,
        role=role or settings.role,
        insecure=insecure or settings.insecure,
    )


def _serve(settings: Settings, banner: str | None, note: str = "") -> None:
    from qbsync.runtime import Runtime

    runtime = Runtime(bootstrap(settings=settings))
    port = runtime.start()
    host = settings.listen.rsplit(":", 1)[0]
    database = _redacted(settings.database_url)
    if settings.serves_api:
        workers = f"{settings.workers} workers" if settings.runs_workers else "no workers"
        transport = "plaintext"
        if settings.tls:
            transport = "mTLS: client certificates required" if settings.tls_client_ca_file else "TLS"
        click.echo(f"qbsync is serving on {host}:{port} with {workers} ({transport}; database {database})")
    else:
        # Scripts and supervisors wait for this line as they wait for "serving on" from an API process.
        click.echo(f"qbsync is running {settings.workers} workers, no API (database {database})")
    if runtime.health is not None:
        click.echo(f"qbsync serves /metrics, /healthz and /readyz on http://{runtime.health.address}")
    if banner:
        click.echo(
            f"\nYour demo API key (tenant '{DEMO_TENANT}', all permissions):\n\n  {banner}\n\n"
            f"Make a first call from another terminal:\n\n"
            f"  .venv/bin/python -m qbsync.first_call --target {host}:{port} --key {banner}{_tls_options(settings)}"
            f"\n\n{note}\n"
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


def _tls_options(settings: Settings) -> str:
    """What the printed first call needs to get through this server's TLS (files the operator names)."""
    if not settings.tls:
        return ""
    if settings.tls_client_ca_file is None:
        return " --tls-ca CA.crt\n  (CA.crt: the CA that signed QBSYNC_TLS_CERT)"
    return (
        " --tls-ca CA.crt --tls-cert CLIENT.crt --tls-key CLIENT.key\n"
        "  (CA.crt: the CA that signed QBSYNC_TLS_CERT; CLIENT.*: a certificate QBSYNC_TLS_CLIENT_CA issued)"
    )


def _redacted(url: str) -> str:
    """A database URL fit for a log line: any password is masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


for _command in COMMANDS:
    main.add_command(_command)
main.add_command(keys)
main.add_command(console_command)


if __name__ == "__main__":
    main()
