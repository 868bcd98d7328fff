"""SPEC.md section 8, the company's sales tax mode, end to end: a real server on loopback, the production wiring
(python-quickbooks over HTTP to the emulator), called through the generated stubs.

The mode is read from the company's Preferences (TaxPrefs) when the tenant connects and shown on the
Connection; a job charging tax for a company without sales tax set up in QuickBooks is INVALID_ARGUMENT, reason
SALES_TAX_NOT_SET_UP, naming `job.tax`, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import EmulatorServer, run_emulator
from core.auth import ApiKeys
from core.company_tax import SalesTax
from core.connections_service import ConnectionService
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import connection_service_pb2 as c
from qbsync.v1 import connection_service_pb2_grpc, sync_service_pb2_grpc
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_currency import STORED_TABLES, refusal, stored_rows
from tests.e2e.test_sync_service import job, money, opportunity
from tests.emulator_sales_tax import set_realm_sales_tax


@dataclass
class Company:
    """qbsync serving one tenant, "acme", connected to an emulated company with the given sales tax mode."""

    sync: sync_service_pb2_grpc.SyncServiceStub
    connections: connection_service_pb2_grpc.ConnectionServiceStub
    md: list[tuple[str, str]]
    emulator: EmulatorServer
    realm_id: str
    database_url: str

    def set_sales_tax(self, mode: SalesTax) -> None:
        """The bookkeeper changes sales tax in QuickBooks (the emulator realm's state, which GET /preferences
        reads)."""
        set_realm_sales_tax(self.emulator.state.realm(self.realm_id), mode.value)


@pytest.fixture
def connect_company(tmp_path) -> Iterator:  # type: ignore[no-untyped-def,type-arg]
    stops: list = []  # type: ignore[type-arg]

    def connect(mode: SalesTax) -> Company:
        database_url = f"sqlite:///{tmp_path / f'qbsync-{mode.value}.db'}"
        migrate(database_url)
        settings = replace(
            Settings.from_env({"QBSYNC_DATA_DIR": str(tmp_path)}),
            database_url=database_url,
            listen="127.0.0.1:0",
            workers=1,
            grace_seconds=2,
            watch_poll_seconds=0.05,
        )
        emulator = run_emulator("127.0.0.1", 0)
        stops.append(emulator.stop)
        company = emulator.create_realm(company_name="Tax Test Movers")
        set_realm_sales_tax(emulator.state.realm(company["realm_id"]), mode.value)
        injector = bootstrap(settings=settings)  # the production wiring: QuickBooksModule over HTTP
        connect_to_emulated(injector.get(ConnectionService), "acme", company, emulator)
        runtime = Runtime(injector)
        port = runtime.start()
        stops.append(lambda: runtime.stop(grace=1))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stops.append(channel.close)
        key = injector.get(ApiKeys).create("acme", frozenset(Permission))
        return Company(
            sync_service_pb2_grpc.SyncServiceStub(channel),
            connection_service_pb2_grpc.ConnectionServiceStub(channel),
            [("authorization", f"Bearer {key}")],
            emulator,
            company["realm_id"],
            database_url,
        )

    try:
        yield connect
    finally:
        for stop in reversed(stops):
            stop()


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        (SalesTax.AUTOMATED, c.SALES_TAX_MODE_AUTOMATED),
        (SalesTax.MANUAL, c.SALES_TAX_MODE_MANUAL),
        (SalesTax.NONE, c.SALES_TAX_MODE_NONE),
    ],
)
def test_get_connection_shows_the_sales_tax_mode_read_at_connect(connect_company, mode, shown) -> None:  # type: ignore[no-untyped-def]
    company = connect_company(mode)
    connection = company.connections.GetConnection(c.GetConnectionRequest(), metadata=company.md)
    assert connection.state == c.CONNECTION_STATE_CONNECTED
    assert connection.sales_tax_mode == shown


def violation_descriptions(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found |= {v.field: v.description for v in bad.field_violations}
    return found


def taxed_job() -> r.Job:
    taxed = job()
    taxed.lines[0].taxable = True
    taxed.tax.CopyFrom(money("49.80"))  # 8.3% of the 600.00 line
    taxed.tax_rate_name = "CA 8.3%"
    return taxed


def test_a_taxed_job_for_a_company_without_sales_tax_is_refused_until_it_is_set_up(connect_company) -> None:  # type: ignore[no-untyped-def]
    company = connect_company(SalesTax.NONE)
    request = s.CloseOutJobRequest(opportunity=opportunity(), job=taxed_job(), payments=[], request_id="close-1")
    with pytest.raises(grpc.RpcError) as err:
        company.sync.CloseOutJob(request, metadata=company.md)
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "SALES_TAX_NOT_SET_UP", ["job.tax"])
    assert "set up sales tax in QuickBooks" in violation_descriptions(err.value)["job.tax"]
    assert stored_rows(company.database_url) == dict.fromkeys(STORED_TABLES, 0)

    untaxed = s.CloseOutJobRequest(opportunity=opportunity(), job=job(), payments=[], request_id="close-2")
    assert company.sync.CloseOutJob(untaxed, metadata=company.md).state == r.SyncJob.STATE_PENDING

    company.set_sales_tax(SalesTax.AUTOMATED)  # the bookkeeper set sales tax up, as the refusal asked
    request.request_id = "close-3"
    request.job.job_id = "job-2"
    accepted = company.sync.CloseOutJob(request, metadata=company.md)
    assert accepted.name.startswith("syncJobs/")
    shown = company.connections.GetConnection(c.GetConnectionRequest(), metadata=company.md)
    assert shown.sales_tax_mode == c.SALES_TAX_MODE_AUTOMATED  # read again on the resend, and stored
