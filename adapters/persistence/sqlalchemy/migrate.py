"""Runs the Alembic migrations from code: no alembic.ini needed, wherever qbsync is installed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url

from adapters.persistence.sqlalchemy.engine import create_engine_for

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # render_as_string(hide_password=False): str(URL) would hide the password behind "***".
    rendered = make_url(url).render_as_string(hide_password=False)
    # Alembic reads options through ConfigParser, where "%" starts an interpolation.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def migrate(url: str | URL) -> None:
    """Brings the database at `url` to the latest schema (`alembic upgrade head`); idempotent.

    The migration runs on an engine from `create_engine_for`, so SQLite gets the same pragmas and
    transactional DDL (our own BEGIN) as the application.
    """
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
