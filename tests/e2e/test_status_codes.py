"""Errors that are ours (SPEC.md section 7), on the real server: gRPC over loopback → core → SQLite.

Each observed case of issue 7 ("our own errors") as a call from outside: undecodable bytes, page tokens
qbsync never issued, a quantity beyond any decimal, a 16k-character e-mail, and the database going away
(the key lookup and every RPC answer UNAVAILABLE, and the same calls succeed once it is back), and
Intuit being unreachable during a call (UNAVAILABLE too).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from grpc_status import rpc_status

from adapters.grpc.server import SYNC_SERVICE_NAME
from adapters.persistence.sqlalchemy import SqlAlchemyUnitOfWorkFactory
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission
from core.ports import UnitOfWorkFactory
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import connection_service_pb2 as cs
from qbsync.v1 import connection_service_pb2_grpc, sync_service_pb2_grpc
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.test_sync_service import job, money, opportunity, payment

MAX_TRAILER_BYTES = 8 * 1024


def payout(payout_id: str, payment_ids: list[str], amount: str = "500.00") -> r.Payout:
    return r.Payout(
        payout_id=payout_id, arrival_date=Date(year=2026, month=1, day=5), amount=money(amount), payment_ids=payment_ids
    )


@dataclass
class Api:
    """The API role alone (no workers: what is stored changes only through the calls of the test)."""

    channel: grpc.Channel
    stub: sync_service_pb2_grpc.SyncServiceStub
    keys: ApiKeys
    uow_factory: SqlAlchemyUnitOfWorkFactory
    database: Path

    def key(self, tenant: str = "acme") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys.create(tenant, frozenset(Permission))}")]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    database = tmp_path / "qbsync.db"
    url = f"sqlite:///{database}"
    migrate(url)
    settings = Settings(database_url=url, listen="127.0.0.1:0", workers=0, grace_seconds=1, watch_poll_seconds=0.05)
    injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), settings=settings)
    runtime = Runtime(injector, role="api")
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    uow_factory = injector.get(UnitOfWorkFactory)  # type: ignore[type-abstract]
    assert isinstance(uow_factory, SqlAlchemyUnitOfWorkFactory)
    try:
        yield Api(channel, sync_service_pb2_grpc.SyncServiceStub(channel), injector.get(ApiKeys), uow_factory, database)
    finally:
        channel.close()
        runtime.stop(grace=1)


def failure(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """The call's code, its ErrorInfo reason and the fields its BadRequest names."""
    status = rpc_status.from_call(call)
    assert status is not None, f"{call.code()} without details: {call.details()}"
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
    return call.code(), info.reason, [v.field for v in bad_request.field_violations]


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods])
def test_undecodable_bytes_are_invalid_argument(api: Api, method: str) -> None:
    streaming = method == "WatchSyncJob"
    path = f"/{SYNC_SERVICE_NAME}/{method}"
    with pytest.raises(grpc.RpcError) as raised:
        if streaming:
            list(api.channel.unary_stream(path)(b"\x12\x05ab", metadata=api.key(), timeout=10))
        else:
            api.channel.unary_unary(path)(b"\x12\x05ab", metadata=api.key(), timeout=10)
    assert failure(raised.value) == (grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_REQUEST", ["request"])


@pytest.mark.parametrize("token", ["²", "1" * 26, "-1", "12a", " 1", "١"])
def test_a_page_token_qbsync_never_issued_is_invalid_argument(api: Api, token: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        api.stub.ListSyncErrors(s.ListSyncErrorsRequest(page_token=token), metadata=api.key())
    assert failure(raised.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["page_token"])


@pytest.mark.parametrize("token", ["", "0", "50", "999999999"])
def test_a_page_token_qbsync_could_have_issued_is_served(api: Api, token: str) -> None:
    response = api.stub.ListSyncErrors(s.ListSyncErrorsRequest(page_token=token), metadata=api.key())
    assert (list(response.sync_jobs), response.next_page_token) == ([], "")


@pytest.mark.parametrize("quantity", ["9E+999999", "9E-999999", "1" * 65])
def test_an_overflowing_quantity_is_invalid_argument_and_nothing_is_stored(api: Api, quantity: str) -> None:
    md = api.key()
    bad = job()
    bad.lines[0].quantity = quantity
    with pytest.raises(grpc.RpcError) as raised:
        api.stub.CloseOutJob(s.CloseOutJobRequest(opportunity=opportunity(), job=bad), metadata=md)
    assert failure(raised.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["job.lines[0].quantity"])
    with pytest.raises(grpc.RpcError) as raised:  # the job was not recorded
        api.stub.GetSyncStatus(
            s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_INVOICE, id="job-1")), metadata=md
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_sixteen_thousand_character_email_is_named_within_8_kib(api: Api) -> None:
    md = api.key()
    bad = opportunity()
    bad.customer.email = "m" * 16_000 + " at example.com"
    with pytest.raises(grpc.RpcError) as raised:
        api.stub.SyncPayment(s.SyncPaymentRequest(opportunity=bad, payment=payment()), metadata=md)
    assert failure(raised.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["opportunity.customer.email"],
    )
    status = rpc_status.from_call(raised.value)
    assert status is not None and len(status.SerializeToString()) * 4 // 3 < MAX_TRAILER_BYTES
    with pytest.raises(grpc.RpcError) as raised:
        api.stub.GetSyncStatus(
            s.GetSyncStatusRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")), metadata=md
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# --- the database going away ----------------------------------------------------------------------------


@dataclass
class Outage:
    """Takes the SQLite file away: new connections then fail with "unable to open database file"."""

    api: Api

    def __enter__(self) -> None:
        self.api.uow_factory.engine.dispose()  # pooled connections would keep the old file open
        for path in self._files():
            os.rename(path, f"{path}.away")
        self.api.database.mkdir()  # a directory where the file was: no one, not even root, can open it

    def __exit__(self, *exc: object) -> None:
        self.api.database.rmdir()
        for path in self._files(suffix=".away"):
            os.rename(path, path.removesuffix(".away"))

    def _files(self, suffix: str = "") -> list[str]:
        names = [f"{self.api.database}{end}{suffix}" for end in ("", "-wal", "-shm")]
        return [name for name in names if os.path.exists(name)]


def every_rpc(api: Api, md: list[tuple[str, str]]) -> list[tuple[str, object]]:
    """One call of each SyncService method, as (name, thunk)."""
    ref = r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="pay-1")
    return [
        (
            "SyncPayment",
            lambda: api.stub.SyncPayment(
                s.SyncPaymentRequest(opportunity=opportunity(), payment=payment("pay-2")), metadata=md
            ),
        ),
        (
            "CloseOutJob",
            lambda: api.stub.CloseOutJob(
                s.CloseOutJobRequest(opportunity=opportunity(), job=job("job-2")), metadata=md
            ),
        ),
        (
            "SyncInvoice",
            lambda: api.stub.SyncInvoice(
                s.SyncInvoiceRequest(opportunity=opportunity(), job=job("job-2")), metadata=md
            ),
        ),
        ("SyncPayout", lambda: api.stub.SyncPayout(s.SyncPayoutRequest(payout=payout("po-1", ["pay-1"])), metadata=md)),
        ("GetSyncJob", lambda: api.stub.GetSyncJob(s.GetSyncJobRequest(name="syncJobs/x"), metadata=md)),
        ("WatchSyncJob", lambda: list(api.stub.WatchSyncJob(s.GetSyncJobRequest(name="syncJobs/x"), metadata=md))),
        ("GetSyncStatus", lambda: api.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=ref), metadata=md)),
        ("GetQuickBooksLink", lambda: api.stub.GetQuickBooksLink(s.GetQuickBooksLinkRequest(entity=ref), metadata=md)),
        ("ListSyncErrors", lambda: api.stub.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=md)),
        ("RetrySync", lambda: api.stub.RetrySync(s.RetrySyncRequest(name="syncJobs/x"), metadata=md)),
        (
            "DismissSyncError",
            lambda: api.stub.DismissSyncError(s.DismissSyncErrorRequest(name="syncJobs/x"), metadata=md),
        ),
        (
            "PreviewSync",
            lambda: api.stub.PreviewSync(
                s.PreviewSyncRequest(
                    sync_payment=s.SyncPaymentRequest(opportunity=opportunity(), payment=payment("pay-2"))
                ),
                metadata=md,
            ),
        ),
        ("VoidPayment", lambda: api.stub.VoidPayment(s.VoidPaymentRequest(payment_id="pay-1"), metadata=md)),
        ("VoidInvoice", lambda: api.stub.VoidInvoice(s.VoidInvoiceRequest(job_id="job-2"), metadata=md)),
        (
            "ReconcileCompany",
            lambda: api.stub.ReconcileCompany(
                s.ReconcileCompanyRequest(
                    start_date=Date(year=2026, month=1, day=1), end_date=Date(year=2026, month=1, day=31)
                ),
                metadata=md,
            ),
        ),
    ]


def test_while_the_database_is_away_every_rpc_is_unavailable_and_retrying_later_succeeds(api: Api) -> None:
    md = api.key()
    accepted = api.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md)
    calls = every_rpc(api, md)
    assert {name for name, _ in calls} == {m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods}
    with Outage(api):
        for name, call in calls:
            with pytest.raises(grpc.RpcError) as raised:
                call()  # type: ignore[operator]
            code, reason, _ = failure(raised.value)
            assert (name, code, reason) == (name, grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
            assert "Traceback" not in (raised.value.details() or "") and "sqlite" not in (raised.value.details() or "")
    # The same key and the same job are there once the database is back: UNAVAILABLE was worth retrying.
    assert api.stub.GetSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md).name == accepted.name


# --- QuickBooks (Intuit) going away, while the caller waits ---------------------------------------------


def test_intuit_unreachable_during_a_call_is_unavailable_not_internal(tmp_path: Path) -> None:
    """GetAuthorizationUrl reads Intuit's discovery document synchronously: with nothing listening there,
    the real intuit-oauth client over real HTTP fails, and the caller is told to retry (UNAVAILABLE)."""
    database = tmp_path / "qbsync.db"
    migrate(f"sqlite:///{database}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = Settings.from_env(
        {
            "QBSYNC_DATA_DIR": str(tmp_path),
            "QBSYNC_DATABASE_URL": f"sqlite:///{database}",
            "QBSYNC_QBO_CLIENT_ID": "client",
            "QBSYNC_QBO_CLIENT_SECRET": "secret",
            "QBSYNC_QBO_ENVIRONMENT": f"http://127.0.0.1:{closed}/.well-known/openid_configuration",
            "QBSYNC_QBO_REDIRECT_URI": "https://crm.example.com/qbo/callback",
        }
    )
    settings = replace(settings, listen="127.0.0.1:0", role="api")
    injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        md = [("authorization", f"Bearer {injector.get(ApiKeys).create('acme', frozenset(Permission))}")]
        stub = connection_service_pb2_grpc.ConnectionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetAuthorizationUrl(cs.GetAuthorizationUrlRequest(), metadata=md, timeout=30)
        assert failure(raised.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "QUICKBOOKS_UNAVAILABLE")
    finally:
        channel.close()
        runtime.stop(grace=1)
