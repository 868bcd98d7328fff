"""DismissSyncError end to end: gRPC over loopback → core → SQLite, the real QuickBooks adapter over HTTP to
the emulator, whose closed books fail a payment for good."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from core.domain import Permission
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import EmulatedServer
from tests.e2e.test_sync_service import opportunity, payment
from tests.e2e.test_sync_via_emulator import finished


def errors(emulated: EmulatedServer, md: list[tuple[str, str]]) -> list[str]:
    return [j.name for j in emulated.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=md).sync_jobs]


def dismiss(emulated: EmulatedServer, name: str, md: list[tuple[str, str]]) -> r.SyncJob:
    return emulated.stub.DismissSyncError(s.DismissSyncErrorRequest(name=name), metadata=md)


def test_a_dismissed_error_leaves_the_list_keeps_its_history_and_can_still_be_retried(
    emulated: EmulatedServer,
) -> None:
    md = emulated.key("acme")
    emulated.admin("POST", f"realms/{emulated.realm_id}/closing_date", {"date": "2026-01-31"})
    closed = [
        emulated.stub.SyncPayment(
            s.SyncPaymentRequest(opportunity=opportunity(f"cust-{i}", f"opp-{i}"), payment=payment(f"pay-{i}")),
            metadata=md,
        )
        for i in (1, 2)
    ]
    for job in closed:
        assert finished(emulated, job.name, md).state == r.SyncJob.STATE_FAILED
    assert set(errors(emulated, md)) == {closed[0].name, closed[1].name}

    dismissed = dismiss(emulated, closed[0].name, md)
    assert dismissed.state == r.SyncJob.STATE_FAILED and dismissed.HasField("dismiss_time")
    assert errors(emulated, md) == [closed[1].name]
    kept = emulated.stub.GetSyncJob(s.GetSyncJobRequest(name=closed[0].name), metadata=md)
    assert kept.dismiss_time == dismissed.dismiss_time and "closed" in kept.error.message.lower()
    assert dismiss(emulated, closed[0].name, md).dismiss_time == dismissed.dismiss_time  # the first one counts

    # The bookkeeper reopens the books after all: the dismissed job is retried and succeeds.
    emulated.admin("POST", f"realms/{emulated.realm_id}/closing_date", {"date": None})
    retried = emulated.stub.RetrySync(s.RetrySyncRequest(name=closed[0].name), metadata=md)
    assert retried.state == r.SyncJob.STATE_PENDING and not retried.HasField("dismiss_time")
    assert finished(emulated, closed[0].name, md).state == r.SyncJob.STATE_SUCCEEDED

    # A job that is not FAILED cannot be dismissed: FAILED_PRECONDITION, naming its state.
    with pytest.raises(grpc.RpcError) as not_failed:
        dismiss(emulated, closed[0].name, md)
    assert not_failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only a FAILED job can be dismissed" in (not_failed.value.details() or "")
    status = rpc_status.from_call(not_failed.value)
    assert status is not None and status.details
    assert errors(emulated, md) == [closed[1].name]


def test_dismissing_needs_the_sync_permission_and_the_tenants_own_job(emulated: EmulatedServer) -> None:
    md = emulated.key("acme")
    emulated.admin("POST", f"realms/{emulated.realm_id}/closing_date", {"date": "2026-01-31"})
    job = emulated.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md)
    assert finished(emulated, job.name, md).state == r.SyncJob.STATE_FAILED
    reader = [("authorization", f"Bearer {emulated.keys.create('acme', frozenset({Permission.READ}))}")]
    other = emulated.key("globex")
    for metadata, code in (
        (reader, grpc.StatusCode.PERMISSION_DENIED),
        (other, grpc.StatusCode.NOT_FOUND),
        ([("authorization", "Bearer nope")], grpc.StatusCode.UNAUTHENTICATED),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            dismiss(emulated, job.name, metadata)
        assert refused.value.code() == code
    with pytest.raises(grpc.RpcError) as bad:
        dismiss(emulated, "jobs/1", md)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in (bad.value.details() or "")
    assert errors(emulated, md) == [job.name]
