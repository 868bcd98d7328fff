"""The fixtures every scale test shares: a fresh PostgreSQL schema and a deployment on it, its processes
stopped afterwards. (Each test module arms its own emulator: the limits and tokens it tests differ.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale_support import POSTGRES_ENV, Cluster, fresh_postgres_schema, running_cluster


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_postgres_schema(os.environ[POSTGRES_ENV]) as url:
        yield url


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(database_url, tmp_path) as deployment:
        yield deployment
