"""SPEC.md section 7, Currency, end to end: a real server on loopback, called through the generated stubs.

A foreign amount is INVALID_ARGUMENT (reason CURRENCY_NOT_SUPPORTED) naming its `currency_code` field, and
nothing is stored; the home currency is the company's as read from QuickBooks (the emulator, through the real
python-quickbooks adapter) when the tenant connected — not USD by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from google.type.money_pb2 import Money
from grpc_status import rpc_status
from sqlalchemy import create_engine, text

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.emulator import run_emulator
from core.auth import ApiKeys
from core.connections_service import ConnectionService
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc
from tests.e2e.conftest import EmulatedServer, Server
from tests.e2e.emulated_company import connect_to_emulated
from tests.e2e.test_sync_service import entity, job, opportunity, payment, refund
from tests.e2e.test_sync_via_emulator import finished

STORED_TABLES = ("opportunities", "payments", "refunds", "crm_jobs", "sync_records", "sync_jobs")


def in_currency(message: r.Payment | r.Job, code: str) -> r.Payment | r.Job:
    """The same record with every amount's currency_code set to `code`."""
    relabelled = type(message)()
    relabelled.CopyFrom(message)
    amounts: list[Money] = []
    if isinstance(relabelled, r.Payment):
        amounts = [relabelled.amount, *(refund.amount for refund in relabelled.refunds)]
    else:
        amounts = [money for line in relabelled.lines for money in (line.unit_price, line.amount)]
    for money in amounts:
        money.currency_code = code
    return relabelled


def in_currency_refund(refund_id: str, amount: str, code: str) -> r.Refund:
    made = refund(refund_id, amount)
    made.amount.currency_code = code
    return made


def refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """The code, the ErrorInfo reason and the BadRequest fields of a refused call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return err.code(), reason, fields


def stored_rows(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in STORED_TABLES}
    finally:
        engine.dispose()


def test_a_eur_payment_is_refused_naming_its_currency_and_nothing_is_stored(server: Server) -> None:
    md = server.key("acme")
    eur = in_currency(payment(refunds=[refund("ref-1", "50.00")]), "EUR")
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=eur), metadata=md)

    assert refusal(err.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_NOT_SUPPORTED",
        ["payment.amount.currency_code", "payment.refunds[0].amount.currency_code"],
    )
    assert stored_rows(server.database_url) == dict.fromkeys(STORED_TABLES, 0)
    with pytest.raises(grpc.RpcError) as missing:
        server.stub.GetSyncStatus(s.GetSyncStatusRequest(entity=entity(r.ENTITY_TYPE_PAYMENT, "pay-1")), metadata=md)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert server.companies.for_tenant("acme").request_count == 0


def test_one_foreign_amount_among_home_ones_is_the_one_named(server: Server) -> None:
    md = server.key("acme")
    mixed = payment(refunds=[refund("ref-1", "50.00"), in_currency_refund("ref-2", "20.00", "JPY")])
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=mixed), metadata=md)
    assert refusal(err.value)[1:] == ("CURRENCY_NOT_SUPPORTED", ["payment.refunds[1].amount.currency_code"])
    assert stored_rows(server.database_url) == dict.fromkeys(STORED_TABLES, 0)


@pytest.fixture
def canadian(tmp_path) -> Iterator[EmulatedServer]:  # type: ignore[no-untyped-def]
    """qbsync connected, through the production wiring, to an emulated company whose home currency is CAD."""
    database_url = f"sqlite:///{tmp_path / 'qbsync.db'}"
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
    company = emulator.create_realm(company_name="Maple Movers")
    requests.post(
        f"{emulator.admin_url}/realms/{company['realm_id']}/preferences", json={"home_currency": "CAD"}, timeout=5
    ).raise_for_status()
    injector = bootstrap(settings=settings)
    connection = connect_to_emulated(injector.get(ConnectionService), "maple", company, emulator)
    assert connection.home_currency == "CAD"  # read at connect time, through python-quickbooks over HTTP
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield EmulatedServer(
            f"127.0.0.1:{port}",
            sync_service_pb2_grpc.SyncServiceStub(channel),
            injector.get(ApiKeys),
            emulator,
            company["realm_id"],
            injector,
        )
    finally:
        channel.close()
        runtime.stop(grace=1)
        emulator.stop()


def test_a_company_in_cad_takes_cad_and_refuses_usd(canadian: EmulatedServer) -> None:
    md = canadian.key("maple")
    usd = payment("pay-usd")  # the CRM's helper labels amounts USD: foreign to this company
    with pytest.raises(grpc.RpcError) as err:
        canadian.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=usd), metadata=md)
    assert refusal(err.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_NOT_SUPPORTED",
        ["payment.amount.currency_code"],
    )

    cad = in_currency(payment("pay-cad"), "CAD")
    accepted = canadian.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=cad), metadata=md)
    assert finished(canadian, accepted.name, md).state == r.SyncJob.STATE_SUCCEEDED
    unlabelled = in_currency(job(), "")
    closed = canadian.stub.CloseOutJob(
        s.CloseOutJobRequest(opportunity=opportunity(), job=unlabelled, payments=[cad]), metadata=md
    )
    assert finished(canadian, closed.name, md).state == r.SyncJob.STATE_SUCCEEDED

    [qbo_payment] = canadian.records("Payment")
    [invoice] = canadian.records("Invoice")
    assert qbo_payment["TotalAmt"] == Decimal("500.00") and invoice["TotalAmt"] == Decimal("600.00")


def test_a_foreign_amount_is_named_along_with_fields_conversion_rejected(server: Server) -> None:
    md = server.key("acme")
    eur = in_currency(payment(), "EUR")
    eur.ClearField("received_time")
    with pytest.raises(grpc.RpcError) as err:
        server.stub.SyncPayment(s.SyncPaymentRequest(opportunity=opportunity(), payment=eur), metadata=md)
    code, reason, fields = refusal(err.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")  # not only a currency problem
    assert set(fields) == {"payment.received_time", "payment.amount.currency_code"}
    assert stored_rows(server.database_url) == dict.fromkeys(STORED_TABLES, 0)
