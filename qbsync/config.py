"""Configuration from environment variables, with embedded defaults so that `make run` needs no set-up.

A mistake in it is a `ConfigError` naming the variable (`qbsync` prints it as one line and exits 78,
sysexits' EX_CONFIG), never a traceback.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from adapters.grpc.server import DEFAULT_MAX_WORKERS
from adapters.persistence.encryption import ENCRYPTION_KEY_ENV, parse_keys

DEFAULT_DATA_DIR = Path("var")
KEY_FILE_NAME = "secret.key"

# What a `qbsync serve` process runs: the gRPC API, the sync workers, or both (the one-machine default).
ROLE_API = "api"
ROLE_WORKER = "worker"
ROLE_ALL = "all"
ROLES = (ROLE_API, ROLE_WORKER, ROLE_ALL)

# The gRPC server's TLS (PEM files) and the one way to listen in plaintext beyond this machine.
TLS_CERT_ENV = "QBSYNC_TLS_CERT"
TLS_KEY_ENV = "QBSYNC_TLS_KEY"
TLS_CLIENT_CA_ENV = "QBSYNC_TLS_CLIENT_CA"
INSECURE_ENV = "QBSYNC_INSECURE"
# The HTTP listener of /metrics, /healthz and /readyz (qbsync.health).
METRICS_LISTEN_ENV = "QBSYNC_METRICS_LISTEN"
# How many gRPC calls the API serves at once (its thread pool; adapters.grpc.server says why the default).
GRPC_THREADS_ENV = "QBSYNC_GRPC_THREADS"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting qbsync cannot run with; the message names the variable (and the flag, if there is one)."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    database_url: str
    listen: str
    workers: int
    grace_seconds: float
    watch_poll_seconds: float
    # Holds the SQLite file (by default) and the generated encryption key file (when no key is configured).
    data_dir: Path = DEFAULT_DATA_DIR
    # QBSYNC_ENCRYPTION_KEY: Fernet keys for the QuickBooks secrets at rest, the first one encrypting.
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    # qbsync's own Intuit app, for the OAuth code flow of ConnectionService.
    qbo_client_id: str = ""
    qbo_client_secret: str = field(default="", repr=False)
    qbo_environment: str = "sandbox"  # "sandbox", "production" or an OpenID discovery document URL
    qbo_redirect_uri: str = ""
    # QBSYNC_ROLE: "api" serves gRPC only, "worker" runs the sync workers only, "all" both.
    role: str = ROLE_ALL
    # QBSYNC_LEASE_SECONDS: how long a claimed job is a worker's before another may take it over. Long
    # enough for a slow sync; short enough that a job of a killed process is not stuck for long.
    lease_seconds: float = 120.0
    # QBSYNC_TLS_CERT / QBSYNC_TLS_KEY: the server's certificate (chain) and private key, PEM files; both or
    # neither. QBSYNC_TLS_CLIENT_CA: CA certificates (PEM) that client certificates must chain to (mTLS:
    # then every caller needs one). Read and checked by `qbsync.tls` when the API starts.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # QBSYNC_INSECURE / --insecure: allow plaintext gRPC on an address other than loopback (behind a
    # TLS-terminating proxy, or on a network you trust). Loopback never needs it.
    insecure: bool = False
    # QBSYNC_GRPC_THREADS: the gRPC server's thread pool, the calls served at once (an open WatchSyncJob
    # stream holds none). More threads only help while calls wait on the database or QuickBooks; past that
    # they fight over the GIL (see DEFAULT_MAX_WORKERS).
    grpc_threads: int = DEFAULT_MAX_WORKERS
    # QBSYNC_MAX_STREAMS_PER_KEY: open WatchSyncJob streams one API key may hold; one more is RESOURCE_EXHAUSTED.
    max_streams_per_key: int = 100
    # QBSYNC_METRICS_LISTEN: host:port of the HTTP listener serving /metrics, /healthz and /readyz
    # (qbsync.health); "" (the default): none. Off unless asked for: a fixed default port would collide
    # when api and worker processes share a machine (the README's scale-out recipe), and it is one more
    # open port an operator did not choose.
    metrics_listen: str = ""
    # QBSYNC_READY_CLAIM_LOOP_SECONDS: a process running workers is not ready (/readyz 503) when no claim
    # loop went round for this long (a loop goes round between jobs, so: longer than a slow job).
    ready_claim_loop_seconds: float = 300.0
    # QBSYNC_HEALTH_PROBE_SECONDS: how often the API process asks the database whether it answers, for
    # gRPC health (SERVING / NOT_SERVING).
    health_probe_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError("QBSYNC_ROLE (--role)", f"must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.workers < 0:
            raise ConfigError("QBSYNC_WORKERS (--workers)", f"must not be negative, not {self.workers}")
        if not self.lease_seconds > 0:
            raise ConfigError("QBSYNC_LEASE_SECONDS", f"must be positive, not {self.lease_seconds}")
        if not self.grace_seconds >= 0:
            raise ConfigError("QBSYNC_SHUTDOWN_GRACE_SECONDS", f"must not be negative, not {self.grace_seconds}")
        if not self.watch_poll_seconds > 0:
            raise ConfigError("QBSYNC_WATCH_POLL_SECONDS", f"must be positive, not {self.watch_poll_seconds}")
        if self.grpc_threads < 1:
            raise ConfigError(GRPC_THREADS_ENV, f"must be at least 1, not {self.grpc_threads}")
        if self.max_streams_per_key < 1:
            raise ConfigError("QBSYNC_MAX_STREAMS_PER_KEY", f"must be at least 1, not {self.max_streams_per_key}")
        _check_listen(self.listen)
        if self.metrics_listen:
            _check_listen(self.metrics_listen, METRICS_LISTEN_ENV, "127.0.0.1:9464")
        if not self.ready_claim_loop_seconds > 0:
            seconds = self.ready_claim_loop_seconds
            raise ConfigError("QBSYNC_READY_CLAIM_LOOP_SECONDS", f"must be positive, not {seconds}")
        if not self.health_probe_seconds > 0:
            raise ConfigError("QBSYNC_HEALTH_PROBE_SECONDS", f"must be positive, not {self.health_probe_seconds}")
        _check_database_url(self.database_url)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = TLS_KEY_ENV if self.tls_key_file is None else TLS_CERT_ENV
            raise ConfigError(missing, f"must be set too: {TLS_CERT_ENV} and {TLS_KEY_ENV} go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError(TLS_CLIENT_CA_ENV, f"needs {TLS_CERT_ENV} and {TLS_KEY_ENV}: mTLS is TLS first")

    @property
    def serves_api(self) -> bool:
        """Whether this process listens for gRPC calls."""
        return self.role in (ROLE_API, ROLE_ALL)

    @property
    def runs_workers(self) -> bool:
        """Whether this process claims and runs sync jobs."""
        return self.role in (ROLE_WORKER, ROLE_ALL)

    @property
    def key_file(self) -> Path:
        """Where a generated encryption key is kept when QBSYNC_ENCRYPTION_KEY is not set."""
        return self.data_dir / KEY_FILE_NAME

    @property
    def listen_host(self) -> str:
        """The host part of `listen`, without the brackets of an IPv6 address."""
        return self.listen.rsplit(":", 1)[0].removeprefix("[").removesuffix("]")

    @property
    def tls(self) -> bool:
        """Whether the API serves TLS."""
        return self.tls_cert_file is not None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        data_dir = Path(env.get("QBSYNC_DATA_DIR", str(DEFAULT_DATA_DIR)))
        return cls(
            database_url=env.get("QBSYNC_DATABASE_URL", f"sqlite:///{data_dir / 'qbsync.db'}"),
            listen=env.get("QBSYNC_LISTEN", "127.0.0.1:50051").strip(),
            workers=env_int(env, "QBSYNC_WORKERS", 4),
            grace_seconds=env_float(env, "QBSYNC_SHUTDOWN_GRACE_SECONDS", 10),
            watch_poll_seconds=env_float(env, "QBSYNC_WATCH_POLL_SECONDS", 0.1),
            data_dir=data_dir,
            encryption_keys=parse_keys(env.get(ENCRYPTION_KEY_ENV, "")),
            qbo_client_id=env.get("QBSYNC_QBO_CLIENT_ID", ""),
            qbo_client_secret=env.get("QBSYNC_QBO_CLIENT_SECRET", ""),
            qbo_environment=env.get("QBSYNC_QBO_ENVIRONMENT", "sandbox"),
            qbo_redirect_uri=env.get("QBSYNC_QBO_REDIRECT_URI", ""),
            role=env.get("QBSYNC_ROLE", ROLE_ALL).strip().lower() or ROLE_ALL,
            lease_seconds=env_float(env, "QBSYNC_LEASE_SECONDS", 120),
            tls_cert_file=env_path(env, TLS_CERT_ENV),
            tls_key_file=env_path(env, TLS_KEY_ENV),
            tls_client_ca_file=env_path(env, TLS_CLIENT_CA_ENV),
            insecure=env_bool(env, INSECURE_ENV),
            grpc_threads=env_int(env, GRPC_THREADS_ENV, DEFAULT_MAX_WORKERS),
            max_streams_per_key=env_int(env, "QBSYNC_MAX_STREAMS_PER_KEY", 100),
            metrics_listen=env.get(METRICS_LISTEN_ENV, "").strip(),
            ready_claim_loop_seconds=env_float(env, "QBSYNC_READY_CLAIM_LOOP_SECONDS", 300),
            health_probe_seconds=env_float(env, "QBSYNC_HEALTH_PROBE_SECONDS", 2),
        )

    def ensure_data_dir(self) -> None:
        """A local SQLite file needs its folder; other databases need nothing here."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            Path(self.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def env_int(env: dict[str, str], name: str, default: int) -> int:
    """A whole number from `env[name]` (unset or blank: `default`); anything else is a ConfigError."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, not {text!r}") from None


def env_float(env: dict[str, str], name: str, default: float) -> float:
    """A finite number (of seconds, say) from `env[name]` (unset or blank: `default`)."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(name, f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, not {text!r}")
    return value


def env_bool(env: dict[str, str], name: str) -> bool:
    """1/true/yes/on or 0/false/no/off (unset or blank: false); anything else is a ConfigError."""
    text = env.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(name, f"must be 1 or 0 (true/false, yes/no, on/off), not {text!r}")


def env_path(env: dict[str, str], name: str) -> Path | None:
    """A file path from `env[name]`, or None when unset or blank (whether it exists is checked on use)."""
    text = env.get(name, "").strip()
    return Path(text).expanduser() if text else None


def _check_listen(listen: str, variable: str = "QBSYNC_LISTEN (--listen)", example: str = "127.0.0.1:50051") -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(variable, f"must be host:port (e.g. {example}), not {listen!r}")


def _check_database_url(url: str) -> None:
    """Parsed, never connected to: whether the database is up is the database's business, not the config's."""
    from sqlalchemy.exc import ArgumentError

    from adapters.persistence.sqlalchemy.engine import normalise_url

    try:
        parsed = normalise_url(url)
    except ArgumentError:
        raise ConfigError("QBSYNC_DATABASE_URL", _DATABASE_URL_FORMS) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError("QBSYNC_DATABASE_URL", f"names {backend!r}: it {_DATABASE_URL_FORMS}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("QBSYNC_DATABASE_URL", "must name a SQLite file (sqlite:///path.db), not a memory database")


# The URL itself is never quoted back: it may hold the database password.
_DATABASE_URL_FORMS = "must be sqlite:///path.db or postgresql+psycopg://user:password@host:5432/db"
