"""Backends for the persistence contract suite: the in-memory fake, a SQLite file, and PostgreSQL when
QBSYNC_TEST_DATABASE_URL is set (each test then gets its own schema, dropped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from persistence_builders import Backend
from sqlalchemy.engine import URL

from adapters.persistence.encryption import SecretBox, generate_key
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url
from tests.postgres_schema import fresh_postgres_schema


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    url = normalise_url(f"sqlite:///{tmp_path / 'qbsync.db'}")
    migrate(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[URL]:
    """A fresh schema, first on the search_path of every connection made with the URL."""
    with fresh_postgres_schema("t") as url:
        yield url


def _sql_backend(name: str, url: URL) -> Iterator[Backend]:
    engine = create_engine_for(url)
    try:
        yield Backend(name, SqlAlchemyUnitOfWorkFactory(engine, SecretBox([generate_key()])), url)
    finally:
        engine.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Every contract test runs once per backend: the results must agree."""
    if request.param == "memory":
        yield Backend("memory", InMemoryUnitOfWorkFactory())
        return
    url_fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    yield from _sql_backend(request.param, request.getfixturevalue(url_fixture))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The SQL backends only (schema and multi-process tests)."""
    url_fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    yield from _sql_backend(request.param, request.getfixturevalue(url_fixture))
