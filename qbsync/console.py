"""`qbsync console`: the web console (adapters/console) over this deployment's database, in its own process.

Configuration (environment; flags win):
- QBSYNC_CONSOLE_LISTEN (--listen): host:port, default 127.0.0.1:8080.
- QBSYNC_CONSOLE_URL: where browsers reach the console, default http://<listen> (with the port bound). Its
  `/oauth/callback` is the redirect URI to register with qbsync's Intuit app (QBSYNC_QBO_CLIENT_ID /
  _SECRET). An https URL (a TLS-terminating proxy in front) makes the session cookie Secure.
- QBSYNC_CONSOLE_SESSION_SECRET: signs the session cookies (at least 32 characters); when unset, one is
  generated into QBSYNC_DATA_DIR/console-session.key (0600) and kept, like the encryption key. Several
  console processes behind one address must share it.
Plain http beyond loopback is refused (the session cookie would cross the network in clear) unless
QBSYNC_CONSOLE_URL is https or --insecure / QBSYNC_INSECURE is given.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import click
from starlette.applications import Starlette

from adapters.console.server import ConsoleServer
from core.connection_rules import is_loopback
from qbsync.config import INSECURE_ENV, ConfigError, Settings, env_bool

log = logging.getLogger(__name__)

LISTEN_ENV = "QBSYNC_CONSOLE_LISTEN"
URL_ENV = "QBSYNC_CONSOLE_URL"
SECRET_ENV = "QBSYNC_CONSOLE_SESSION_SECRET"
SECRET_FILE_NAME = "console-session.key"
DEFAULT_LISTEN = "127.0.0.1:8080"
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class ConsoleSettings:
    listen: str
    public_url: str  # "" when not configured: http://<listen host>:<port bound>
    session_secret: str = field(repr=False)

    def url_for_port(self, port: int) -> str:
        return self.public_url or f"http://{self.listen.rpartition(':')[0]}:{port}"

    @classmethod
    def from_env(
        cls, env: dict[str, str], data_dir: Path, *, listen: str | None = None, insecure: bool = False
    ) -> ConsoleSettings:
        listen = (listen or env.get(LISTEN_ENV, "") or DEFAULT_LISTEN).strip()
        variable = f"{LISTEN_ENV} (--listen)"
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(variable, f"must be host:port (e.g. {DEFAULT_LISTEN}), not {listen!r}")
        public_url = env.get(URL_ENV, "").strip().rstrip("/")
        if public_url and not public_url.startswith(("http://", "https://")):
            raise ConfigError(URL_ENV, f"must be an http:// or https:// URL, not {public_url!r}")
        bare_host = host.removeprefix("[").removesuffix("]")
        insecure = insecure or env_bool(env, INSECURE_ENV)
        if not public_url.startswith("https://") and not is_loopback(bare_host) and not insecure:
            raise ConfigError(
                variable,
                f"is {listen!r}, beyond loopback, while {URL_ENV} is not https: session cookies would cross the "
                f"network in clear. Put a TLS proxy in front and set {URL_ENV}=https://..., or pass --insecure",
            )
        return cls(listen, public_url, _session_secret(env, data_dir))


def _session_secret(env: dict[str, str], data_dir: Path) -> str:
    configured = env.get(SECRET_ENV, "").strip()
    if configured:
        if len(configured) < MIN_SECRET_LENGTH:
            raise ConfigError(SECRET_ENV, f"must be at least {MIN_SECRET_LENGTH} characters (it signs sessions)")
        return configured
    path = data_dir / SECRET_FILE_NAME
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use its secret, not ours
        return path.read_text(encoding="ascii").strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    log.info("generated the console's session secret in %s (set %s to share one)", path, SECRET_ENV)
    return secret


def build_console(settings: Settings, console: ConsoleSettings) -> ConsoleServer:
    """The console server over the production wiring (qbsync.bootstrap) for `settings`."""
    from adapters.console.app import ConsoleConfig, create_app
    from core.auth import ApiKeys
    from core.connections_service import ConnectionService
    from core.service import SyncService
    from qbsync.bootstrap import bootstrap

    injector = bootstrap(settings=settings)
    sync, connections, keys = injector.get(SyncService), injector.get(ConnectionService), injector.get(ApiKeys)

    def app_for_port(port: int) -> Starlette:
        config = ConsoleConfig(session_secret=console.session_secret, public_url=console.url_for_port(port))
        return create_app(sync, connections, keys, config)

    return ConsoleServer(app_for_port, console.listen)


@click.command("console")
@click.option("--listen", default=None, help=f"host:port (default {LISTEN_ENV} or {DEFAULT_LISTEN}).")
@click.option("--insecure", is_flag=True, help="Allow plain http beyond loopback (behind a TLS proxy you trust).")
def console_command(listen: str | None, insecure: bool) -> None:
    """Serves the web console: sign in with an admin API key to see and retry or dismiss the tenant's sync
    errors, check and reconnect its QuickBooks connection, and open recent jobs in QuickBooks."""
    settings = Settings.from_env()
    settings.ensure_data_dir()
    console = ConsoleSettings.from_env(dict(os.environ), settings.data_dir, listen=listen, insecure=insecure)
    server = build_console(settings, console)
    port = server.start()
    host, url = console.listen.rpartition(":")[0], console.url_for_port(port)
    click.echo(f"qbsync console is serving on {host}:{port} (open {url}/)")
    click.echo(f"OAuth redirect URI to register with the Intuit app: {url}/oauth/callback")
    sys.stdout.flush()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.stop()
