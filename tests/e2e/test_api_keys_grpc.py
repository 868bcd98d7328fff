"""API keys over real gRPC (SPEC.md section 12): a real server on a loopback port, SQLite underneath, the
production wiring with only the throttle's delays shortened. Revoked and expired keys are UNAUTHENTICATED
in the words used for an unknown key; a burst of wrong secrets is slowed (RESOURCE_EXHAUSTED with a
RetryInfo) and logged by key id and address, never by secret; other keys are not slowed, and the
attacked key's right secret works once the delay has passed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from injector import Module, provider, singleton

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import INVALID_KEY, ApiKeys, presented_key_id
from core.auth_throttle import FailedAuthentications, ThrottlePolicy
from core.domain import Permission
from core.ports import Clock
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc

POLICY = ThrottlePolicy(
    free_failures=5,
    first_delay=timedelta(seconds=2),
    max_delay=timedelta(seconds=4),
    forget_after=timedelta(seconds=30),
)
READ = frozenset({Permission.READ})


class ShortDelays(Module):
    @singleton
    @provider
    def failed_authentications(self, clock: Clock) -> FailedAuthentications:
        return FailedAuthentications(clock, POLICY)


@dataclass
class Served:
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys

    def call(self, key: str) -> grpc.StatusCode:
        """GetSyncStatus of a payment nobody has: NOT_FOUND once authenticated."""
        try:
            self.stub.GetSyncStatus(
                s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="nope")),
                metadata=[("authorization", f"Bearer {key}")],
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return,attr-defined]
        return grpc.StatusCode.OK

    def refusal(self, key: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as refused:
            self.stub.GetSyncStatus(
                s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="nope")),
                metadata=[("authorization", f"Bearer {key}")],
                timeout=10,
            )
        return refused.value


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
    migrate(database_url)
    settings = Settings(
        database_url=database_url, listen="127.0.0.1:0", workers=1, grace_seconds=1, watch_poll_seconds=0.05
    )
    injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), ShortDelays(), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(sync_service_pb2_grpc.SyncServiceStub(channel), injector.get(ApiKeys))
    finally:
        channel.close()
        runtime.stop(grace=1)


def _wrong(key: str) -> str:
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def test_revoked_and_expired_keys_are_refused_like_unknown_ones(served: Served) -> None:
    revoked = served.keys.create("acme", READ)
    expiring = served.keys.create("acme", READ, expire_time=served_now() + timedelta(seconds=1.5))
    unknown = _wrong(served.keys.create("acme", READ))
    assert served.call(revoked) == served.call(expiring) == grpc.StatusCode.NOT_FOUND  # both work at first

    served.keys.revoke(presented_key_id(revoked))
    time.sleep(1.6)  # past the expiry
    refusals = [served.refusal(key) for key in (revoked, expiring, unknown)]
    assert [e.code() for e in refusals] == [grpc.StatusCode.UNAUTHENTICATED] * 3  # type: ignore[attr-defined]
    assert {e.details() for e in refusals} == {INVALID_KEY}  # type: ignore[attr-defined]
    infos = []
    for refusal in refusals:
        status = rpc_status.from_call(refusal)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        infos.append((info.reason, dict(info.metadata)))
    assert infos == [("UNAUTHENTICATED", {})] * 3  # nothing tells the three apart


def test_a_burst_of_wrong_secrets_is_slowed_and_logged_by_key_id(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    attacked = served.keys.create("acme", READ)
    bystander = served.keys.create("acme", READ)
    attacked_id = presented_key_id(attacked)
    caplog.set_level(logging.WARNING, logger="core.auth")

    codes = [served.call(_wrong(attacked)) for _ in range(30)]
    assert codes[: POLICY.free_failures] == [grpc.StatusCode.UNAUTHENTICATED] * POLICY.free_failures
    assert set(codes[POLICY.free_failures :]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}

    slowed = served.refusal(_wrong(attacked))
    status = rpc_status.from_call(slowed)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert timedelta(0) < retry.retry_delay.ToTimedelta() <= POLICY.first_delay

    # Another key from the same address is not slowed; the attacked key is, even with its right secret.
    assert served.call(bystander) == grpc.StatusCode.NOT_FOUND
    assert served.call(attacked) == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(retry.retry_delay.ToTimedelta().total_seconds() + 0.1)
    assert served.call(attacked) == grpc.StatusCode.NOT_FOUND  # the right secret, once the delay is over

    failures = [rec for rec in caplog.records if rec.getMessage().startswith("failed authentication")]
    assert len(failures) == POLICY.free_failures  # one line per failure looked at, not one per call refused
    assert {rec.key_id for rec in failures} == {attacked_id}  # type: ignore[attr-defined]
    assert {rec.peer for rec in failures} == {"ipv4:127.0.0.1"}  # type: ignore[attr-defined]
    assert any(
        rec.getMessage().startswith(f"refusing key id {attacked_id} from ipv4:127.0.0.1") for rec in caplog.records
    )
    for key in (attacked, _wrong(attacked)):
        assert key.split("_", 2)[2] not in caplog.text


def test_last_use_is_recorded_on_authentication(served: Served) -> None:
    key = served.keys.create("acme", READ)
    assert served.keys.list_keys()[0].last_use_time is None
    before = served_now()
    for _ in range(5):
        assert served.call(key) == grpc.StatusCode.NOT_FOUND
    used = served.keys.list_keys()[0].last_use_time
    assert used is not None and before <= used <= served_now()
    assert served.call(key) == grpc.StatusCode.NOT_FOUND
    assert served.keys.list_keys()[0].last_use_time == used  # within the minute: not written again


def served_now() -> datetime:
    return datetime.now(UTC)
