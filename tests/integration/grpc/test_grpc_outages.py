"""A database outage behind the real use cases is UNAVAILABLE on every RPC, never INTERNAL.

The real SyncService and ConnectionService over the real SQLAlchemy unit of work, on a database that
cannot be reached: a SQLite file in a folder that does not exist, and PostgreSQL on a port where nothing
listens (as while it restarts). Authentication is stubbed so that each call reaches its use case (the
key lookup's own outage is tests/e2e/test_status_codes.py).

(No __init__.py here on purpose: as a package this folder would be imported as `grpc` by pytest.)
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_status import rpc_status

from adapters.grpc.connection_servicer import ConnectionServicer
from adapters.grpc.server import build_server
from adapters.grpc.servicer import SyncServicer
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.domain import Permission, Principal
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.v1 import connection_service_pb2 as cs
from qbsync.v1 import connection_service_pb2_grpc, sync_service_pb2_grpc
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s

CALLER = Principal("acme", frozenset(Permission))
MD = [("authorization", "Bearer any")]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def unreachable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'qbsync.db'}"
    return f"postgresql+psycopg://qbsync@127.0.0.1:{closed_port()}/qbsync?connect_timeout=2"


@pytest.fixture
def channel(unreachable_url: str, tmp_path: Path) -> Iterator[grpc.Channel]:
    settings = Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path), "QBSYNC_DATABASE_URL": unreachable_url})
    injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), settings=settings)
    # The servicers as bootstrap wires them; a caller who needs no stored key (the database is down).
    server, port = build_server(
        injector.get(SyncServicer),
        lambda key, peer: CALLER,
        "127.0.0.1:0",
        connection_servicer=injector.get(ConnectionServicer),
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0).wait()


def opportunity() -> r.Opportunity:
    customer = r.Customer(customer_id="c-1", first_name="Mary", last_name="Smith", email="mary@example.com")
    return r.Opportunity(opportunity_id="opp-1", number="1001", customer=customer)


def every_call(channel: grpc.Channel) -> dict[str, Callable[[], object]]:
    sync = sync_service_pb2_grpc.SyncServiceStub(channel)
    connections = connection_service_pb2_grpc.ConnectionServiceStub(channel)
    pay = r.Payment(
        payment_id="p-1",
        amount=Money(currency_code="USD", units=10),
        method=r.PAYMENT_METHOD_CASH,
        received_time=Timestamp(seconds=1_767_312_000),
    )
    line = r.InvoiceLine(description="Movers", quantity="1", unit_price=Money(units=10), amount=Money(units=10))
    job = r.Job(job_id="j-1", number="J-1", service_date=Date(year=2026, month=1, day=2), lines=[line])
    ref = r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id="p-1")
    name = s.GetSyncJobRequest(name="syncJobs/1")
    payout = r.Payout(
        payout_id="po-1",
        arrival_date=Date(year=2026, month=1, day=5),
        amount=Money(currency_code="USD", units=10),
        payment_ids=["p-1"],
    )
    return {
        "SyncPayment": lambda: sync.SyncPayment(
            s.SyncPaymentRequest(opportunity=opportunity(), payment=pay), metadata=MD
        ),
        "CloseOutJob": lambda: sync.CloseOutJob(s.CloseOutJobRequest(opportunity=opportunity(), job=job), metadata=MD),
        "SyncInvoice": lambda: sync.SyncInvoice(s.SyncInvoiceRequest(opportunity=opportunity(), job=job), metadata=MD),
        "SyncPayout": lambda: sync.SyncPayout(s.SyncPayoutRequest(payout=payout), metadata=MD),
        "GetSyncJob": lambda: sync.GetSyncJob(name, metadata=MD),
        "WatchSyncJob": lambda: list(sync.WatchSyncJob(name, metadata=MD)),
        "GetSyncStatus": lambda: sync.GetSyncStatus(s.GetSyncStatusRequest(entity=ref), metadata=MD),
        "GetQuickBooksLink": lambda: sync.GetQuickBooksLink(s.GetQuickBooksLinkRequest(entity=ref), metadata=MD),
        "ListSyncErrors": lambda: sync.ListSyncErrors(s.ListSyncErrorsRequest(), metadata=MD),
        "RetrySync": lambda: sync.RetrySync(s.RetrySyncRequest(name="syncJobs/1"), metadata=MD),
        "DismissSyncError": lambda: sync.DismissSyncError(s.DismissSyncErrorRequest(name="syncJobs/1"), metadata=MD),
        "PreviewSync": lambda: sync.PreviewSync(
            s.PreviewSyncRequest(sync_payment=s.SyncPaymentRequest(opportunity=opportunity(), payment=pay)), metadata=MD
        ),
        "VoidPayment": lambda: sync.VoidPayment(s.VoidPaymentRequest(payment_id="pay-1"), metadata=MD),
        "VoidInvoice": lambda: sync.VoidInvoice(s.VoidInvoiceRequest(job_id="job-1"), metadata=MD),
        "ReconcileCompany": lambda: sync.ReconcileCompany(
            s.ReconcileCompanyRequest(
                start_date=Date(year=2026, month=1, day=1), end_date=Date(year=2026, month=1, day=31)
            ),
            metadata=MD,
        ),
        "GetConnection": lambda: connections.GetConnection(cs.GetConnectionRequest(), metadata=MD),
    }


def test_every_rpc_is_unavailable_while_the_database_is_unreachable(channel: grpc.Channel) -> None:
    calls = every_call(channel)
    assert set(calls) >= {m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods}
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as raised:
            call()
        status = rpc_status.from_call(raised.value)
        assert status is not None, (name, raised.value.code(), raised.value.details())
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert (name, raised.value.code(), info.reason, len(retry)) == (
            name,
            grpc.StatusCode.UNAVAILABLE,
            "DATABASE_UNAVAILABLE",
            1,
        )
