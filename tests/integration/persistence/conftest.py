"""Backends for the persistence contract suite: the in-memory fake, a SQLite file, and PostgreSQL when
QBSYNC_TEST_DATABASE_URL is set (each test then gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from persistence_builders import Backend
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapters.persistence.encryption import SecretBox, generate_key
from adapters.persistence.memory import InMemoryUnitOfWorkFactory
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory, create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url

POSTGRES_ENV = "QBSYNC_TEST_DATABASE_URL"


def _postgres_url() -> URL:
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        pytest.skip(f"{POSTGRES_ENV} not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return normalise_url(raw)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    url = normalise_url(f"sqlite:///{tmp_path / 'qbsync.db'}")
    migrate(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[URL]:
    """A fresh schema, first on the search_path of every connection made with the URL."""
    base = _postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine_for(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        migrate(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


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
