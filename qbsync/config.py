"""Configuration from environment variables, with embedded defaults so that `make run` needs no set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("var")


@dataclass(frozen=True)
class Settings:
    database_url: str
    listen: str
    workers: int
    grace_seconds: float
    watch_poll_seconds: float

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
        )

    def ensure_data_dir(self) -> None:
        """A local SQLite file needs its folder; other databases need nothing here."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            Path(self.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
