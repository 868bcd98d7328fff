"""Readiness and gRPC health on PostgreSQL: an API-and-workers runtime whose schema disappears under it
(renamed away: every connection's search_path then names nothing, as after a dropped schema) and comes back.
/readyz turns 503 naming the database, gRPC health NOT_SERVING; both recover once the schema is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from adapters.persistence.sqlalchemy import create_engine_for
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from adapters.quickbooks.oauth_module import FakeQuickBooksAuthorizationModule
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from tests.postgres_schema import fresh_postgres_schema, postgres_base_url

pytestmark = pytest.mark.postgres


def eventually(check: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_readiness_and_grpc_health_follow_a_postgresql_schema_that_goes_and_comes_back() -> None:
    with fresh_postgres_schema("health") as url:
        schema = url.query["options"].removeprefix("-csearch_path=")
        settings = Settings(
            database_url=url.render_as_string(hide_password=False),
            listen="127.0.0.1:0",
            workers=1,
            grace_seconds=1,
            watch_poll_seconds=0.05,
            metrics_listen="127.0.0.1:0",
            health_probe_seconds=0.2,
        )
        injector = bootstrap(
            FakeQuickBooksModule(FakeQuickBooksCompanies()), FakeQuickBooksAuthorizationModule(), settings=settings
        )
        runtime = Runtime(injector)
        port = runtime.start()
        admin = create_engine_for(postgres_base_url())
        try:
            assert runtime.health is not None
            ready = f"http://{runtime.health.address}/readyz"
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                def status() -> int:
                    return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

                eventually(lambda: requests.get(ready, timeout=5).status_code == 200, "never ready")
                assert status() == health_pb2.HealthCheckResponse.SERVING
                with admin.begin() as connection:
                    connection.execute(text(f"ALTER SCHEMA {schema} RENAME TO {schema}_away"))
                try:
                    eventually(lambda: requests.get(ready, timeout=5).status_code == 503, "still ready")
                    assert requests.get(ready, timeout=5).json()["checks"]["database"] == "unreachable"
                    eventually(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, "still SERVING")
                finally:
                    with admin.begin() as connection:
                        connection.execute(text(f"ALTER SCHEMA {schema}_away RENAME TO {schema}"))
                eventually(lambda: requests.get(ready, timeout=5).status_code == 200, "not ready again")
                eventually(lambda: status() == health_pb2.HealthCheckResponse.SERVING, "not SERVING again")
        finally:
            runtime.stop(grace=1)
            admin.dispose()
