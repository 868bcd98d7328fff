"""Configuration from environment variables, with embedded defaults so that `make run` needs no set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from adapters.persistence.encryption import ENCRYPTION_KEY_ENV, parse_keys

DEFAULT_DATA_DIR = Path("var")
KEY_FILE_NAME = "secret.key"

# What a `qbsync serve` process runs: the gRPC API, the sync workers, or both (the one-machine default).
ROLE_API = "api"
ROLE_WORKER = "worker"
ROLE_ALL = "all"
ROLES = (ROLE_API, ROLE_WORKER, ROLE_ALL)


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

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.workers < 0:
            raise ValueError("workers must not be negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")

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

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        data_dir = Path(env.get("QBSYNC_DATA_DIR", str(DEFAULT_DATA_DIR)))
        return cls(
            database_url=env.get("QBSYNC_DATABASE_URL", f"sqlite:///{data_dir / 'qbsync.db'}"),
            listen=env.get("QBSYNC_LISTEN", "127.0.0.1:50051"),
            workers=int(env.get("QBSYNC_WORKERS", "4")),
            grace_seconds=float(env.get("QBSYNC_SHUTDOWN_GRACE_SECONDS", "10")),
            watch_poll_seconds=float(env.get("QBSYNC_WATCH_POLL_SECONDS", "0.1")),
            data_dir=data_dir,
            encryption_keys=parse_keys(env.get(ENCRYPTION_KEY_ENV, "")),
            qbo_client_id=env.get("QBSYNC_QBO_CLIENT_ID", ""),
            qbo_client_secret=env.get("QBSYNC_QBO_CLIENT_SECRET", ""),
            qbo_environment=env.get("QBSYNC_QBO_ENVIRONMENT", "sandbox"),
            qbo_redirect_uri=env.get("QBSYNC_QBO_REDIRECT_URI", ""),
            role=env.get("QBSYNC_ROLE", ROLE_ALL).strip().lower() or ROLE_ALL,
            lease_seconds=float(env.get("QBSYNC_LEASE_SECONDS", "120")),
        )

    def ensure_data_dir(self) -> None:
        """A local SQLite file needs its folder; other databases need nothing here."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            Path(self.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
