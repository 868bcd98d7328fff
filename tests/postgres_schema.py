"""A PostgreSQL schema of its own for a test (or a module of tests), when QBSYNC_TEST_DATABASE_URL is set.

Each gets a fresh, migrated schema, first on the search_path of every connection made with the URL it is
given, and dropped afterwards: parallel runs, and tests that count or compare rows, never share data.
Used by the persistence contract suite and the API fuzz tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url

POSTGRES_ENV = "QBSYNC_TEST_DATABASE_URL"


def postgres_base_url() -> URL:
    """The PostgreSQL database to make schemas in; skips the test when none is set."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        pytest.skip(f"{POSTGRES_ENV} not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return normalise_url(raw)


@contextmanager
def fresh_postgres_schema(prefix: str) -> Iterator[URL]:
    """A new, migrated schema named `<prefix>_<random>`; the URL yielded puts it first on the search_path."""
    base = postgres_base_url()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
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
