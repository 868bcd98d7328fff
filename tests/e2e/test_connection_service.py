"""qbsync.v1.ConnectionService on a real server (bootstrap wiring, SQLite, encrypted secrets), called
through the generated stubs. Intuit's side is the fake code flow, so no network is needed."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from adapters.quickbooks.module import FakeQuickBooksModule
from adapters.quickbooks.oauth_module import FakeQuickBooksAuthorizationModule
from core.auth import ApiKeys
from core.domain import Permission
from core.ports import QuickBooksAuthorization
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import connection_service_pb2 as c
from qbsync.v1 import connection_service_pb2_grpc
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.e2e.conftest import EmulatedServer
from tests.e2e.test_sync_service import opportunity, payment

REDIRECT = "https://crm.example.com/qbo/callback"
SERVICE = "qbsync.v1.ConnectionService"


@dataclass
class Admin:
    stub: connection_service_pb2_grpc.ConnectionServiceStub
    channel: grpc.Channel
    intuit: FakeQuickBooksAuthorization
    admin: list[tuple[str, str]]
    reader: list[tuple[str, str]]
    database: Path
    data_dir: Path


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Admin]:
    database = tmp_path / "qbsync.db"
    migrate(f"sqlite:///{database}")
    settings = Settings(
        database_url=f"sqlite:///{database}",
        listen="127.0.0.1:0",
        workers=1,
        grace_seconds=1,
        watch_poll_seconds=0.05,
        data_dir=tmp_path / "data",  # no QBSYNC_ENCRYPTION_KEY: the key is generated here on first use
    )
    injector = bootstrap(FakeQuickBooksModule(), FakeQuickBooksAuthorizationModule(), settings=settings)
    runtime = Runtime(injector)
    port = runtime.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    keys = injector.get(ApiKeys)
    intuit = injector.get(QuickBooksAuthorization)  # type: ignore[type-abstract]
    assert isinstance(intuit, FakeQuickBooksAuthorization)
    try:
        yield Admin(
            connection_service_pb2_grpc.ConnectionServiceStub(channel),
            channel,
            intuit,
            [("authorization", f"Bearer {keys.create('acme', frozenset({Permission.ADMIN}))}")],
            [("authorization", f"Bearer {keys.create('acme', frozenset(Permission) - {Permission.ADMIN})}")],
            database,
            tmp_path / "data",
        )
    finally:
        channel.close()
        runtime.stop(grace=1)


def _code(call: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return call.value.code()  # type: ignore[attr-defined,no-any-return]


def _bad_fields(call: pytest.ExceptionInfo[grpc.RpcError]) -> dict[str, str]:
    """The BadRequest field violations of an INVALID_ARGUMENT: field → description."""
    status = rpc_status.from_call(call.value)  # type: ignore[arg-type]
    assert status is not None
    fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            fields |= {v.field: v.description for v in request.field_violations}
    return fields


def _connect(api: Admin) -> c.Connection:
    started = api.stub.GetAuthorizationUrl(
        c.GetAuthorizationUrlRequest(redirect_uri=REDIRECT, environment=c.ENVIRONMENT_SANDBOX), metadata=api.admin
    )
    assert f"state={started.state}" in started.authorization_url
    code = api.intuit.consent("sandbox", REDIRECT)
    request = c.CompleteAuthorizationRequest(code=code, state=started.state, realm_id="4620", redirect_uri=REDIRECT)
    connection: c.Connection = api.stub.CompleteAuthorization(request, metadata=api.admin)
    return connection


def test_every_call_needs_the_admin_permission(api: Admin) -> None:
    calls = [
        lambda md: api.stub.GetAuthorizationUrl(c.GetAuthorizationUrlRequest(redirect_uri=REDIRECT), metadata=md),
        lambda md: api.stub.CompleteAuthorization(c.CompleteAuthorizationRequest(), metadata=md),
        lambda md: api.stub.GetConnection(c.GetConnectionRequest(), metadata=md),
        lambda md: api.stub.UpdateSettings(c.UpdateSettingsRequest(), metadata=md),
        lambda md: api.stub.Disconnect(c.DisconnectRequest(), metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as denied:
            call(api.reader)
        assert _code(denied) is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as anonymous:
            call([])
        assert _code(anonymous) is grpc.StatusCode.UNAUTHENTICATED


def test_without_admin_bad_input_is_permission_denied_and_with_it_every_field_is_named(api: Admin) -> None:
    """The permission comes first; after it, conversion's findings (an environment or payment method no
    enum value names) and the core's (a redirect URI that is no URL, a prefix too long, an unknown mask
    path) come back together in one INVALID_ARGUMENT."""
    bad_start = c.GetAuthorizationUrlRequest(redirect_uri="not a url", environment=99)  # type: ignore[arg-type]
    bad_settings = c.UpdateSettingsRequest(
        settings=c.Settings(
            payment_methods=[c.PaymentMethodMapping(method=r.PAYMENT_METHOD_UNSPECIFIED)],
            doc_number_prefix="MUCH-TOO-LONG-A-PREFIX",
        ),
        update_mask=FieldMask(paths=["colour", "payment_methods", "doc_number_prefix"]),
    )
    calls = {
        "GetAuthorizationUrl": (
            lambda md: api.stub.GetAuthorizationUrl(bad_start, metadata=md),
            {"environment", "redirect_uri"},
        ),
        "UpdateSettings": (
            lambda md: api.stub.UpdateSettings(bad_settings, metadata=md),
            {"update_mask.paths[0]", "settings.payment_methods[0].method", "settings.doc_number_prefix"},
        ),
    }
    for method, (call, bad_fields) in calls.items():
        with pytest.raises(grpc.RpcError) as denied:
            call(api.reader)
        assert (_code(denied), _bad_fields(denied)) == (grpc.StatusCode.PERMISSION_DENIED, {}), method
        with pytest.raises(grpc.RpcError) as invalid:
            call(api.admin)
        assert _code(invalid) is grpc.StatusCode.INVALID_ARGUMENT, method
        assert set(_bad_fields(invalid)) == bad_fields, method
    with pytest.raises(grpc.RpcError) as missing:
        api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert _code(missing) is grpc.StatusCode.NOT_FOUND  # nothing was stored


def test_connect_configure_and_disconnect(api: Admin) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert _code(missing) is grpc.StatusCode.NOT_FOUND

    connected = _connect(api)
    assert connected.state == c.CONNECTION_STATE_CONNECTED
    assert connected.realm_id == "4620" and connected.environment == c.ENVIRONMENT_SANDBOX
    assert connected.HasField("connect_time") and connected.HasField("refresh_token_expire_time")
    assert connected.access_token_expire_time.ToDatetime() > connected.connect_time.ToDatetime()

    settings = c.Settings(
        deposit_account=c.QuickBooksListRef(id="2", name="Undeposited Funds"),
        income_item=c.QuickBooksListRef(id="1", name="Services"),  # not in the mask: ignored
        payment_methods=[
            c.PaymentMethodMapping(
                method=r.PAYMENT_METHOD_CHECK, quickbooks_payment_method=c.QuickBooksListRef(id="2", name="Check")
            )
        ],
        doc_number_prefix="MV-",
    )
    mask = FieldMask(paths=["deposit_account", "payment_methods", "doc_number_prefix"])
    updated = api.stub.UpdateSettings(c.UpdateSettingsRequest(settings=settings, update_mask=mask), metadata=api.admin)
    assert updated.deposit_account.id == "2" and updated.doc_number_prefix == "MV-"
    assert not updated.income_item.id

    shown = api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert shown.settings == updated
    assert shown.settings.payment_methods[0].method == r.PAYMENT_METHOD_CHECK
    assert shown.settings.payment_methods[0].quickbooks_payment_method.id == "2"
    assert shown.state == c.CONNECTION_STATE_CONNECTED

    gone = api.stub.Disconnect(c.DisconnectRequest(), metadata=api.admin)
    assert gone.state == c.CONNECTION_STATE_DISCONNECTED
    assert not gone.HasField("access_token_expire_time")
    assert len(api.intuit.revoked) == 1
    after = api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert after.state == c.CONNECTION_STATE_DISCONNECTED and after.settings == updated


def test_no_secret_leaves_the_server_or_lands_in_the_database_in_clear(api: Admin) -> None:
    connected = _connect(api)
    with sqlite3.connect(api.database) as db:
        secrets_column, client_id = db.execute("SELECT secrets, client_id FROM quickbooks_connections").fetchone()
    # The fake's tokens are "fake-access-N" / "fake-refresh-N"; its client secret is "fake-secret".
    assert client_id == "fake-client"
    for secret in ("fake-access-", "fake-refresh-", "fake-secret"):
        assert secret not in secrets_column
        assert secret.encode() not in connected.SerializeToString()
    key_file = api.data_dir / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_bad_settings_are_invalid_argument_with_every_field_named(api: Admin) -> None:
    settings = c.Settings(
        payment_methods=[c.PaymentMethodMapping(method=r.PAYMENT_METHOD_UNSPECIFIED)],
        doc_number_prefix="MUCH-TOO-LONG-A-PREFIX",
    )
    mask = FieldMask(paths=["colour", "payment_methods", "doc_number_prefix"])
    with pytest.raises(grpc.RpcError) as bad:
        api.stub.UpdateSettings(c.UpdateSettingsRequest(settings=settings, update_mask=mask), metadata=api.admin)
    assert _code(bad) is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(bad.value)  # type: ignore[arg-type]
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            fields |= {v.field for v in request.field_violations}
    assert fields == {"update_mask.paths[0]", "settings.payment_methods[0].method", "settings.doc_number_prefix"}
    with pytest.raises(grpc.RpcError) as missing:
        api.stub.GetConnection(c.GetConnectionRequest(), metadata=api.admin)
    assert _code(missing) is grpc.StatusCode.NOT_FOUND  # nothing was stored


def test_a_forged_state_is_invalid_argument(api: Admin) -> None:
    api.stub.GetAuthorizationUrl(c.GetAuthorizationUrlRequest(redirect_uri=REDIRECT), metadata=api.admin)
    request = c.CompleteAuthorizationRequest(code=api.intuit.consent("sandbox", REDIRECT), state="forged", realm_id="1")
    with pytest.raises(grpc.RpcError) as forged:
        api.stub.CompleteAuthorization(request, metadata=api.admin)
    assert _code(forged) is grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_reflection_include_the_connection_service(api: Admin) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert SERVICE in {svc.name for response in responses for svc in response.list_services_response.service}


def test_settings_are_checked_against_the_company_and_the_next_sync_uses_them(emulated: EmulatedServer) -> None:
    """Through the real adapter and the emulator: an Income account is no deposit account (issue 7), and a
    setting given by name only is resolved to its id and used by the next sync."""
    savings = emulated.admin(
        "POST",
        f"realms/{emulated.realm_id}/records/Account",
        {"Name": "Moving Co Savings", "AccountType": "Bank", "AccountSubType": "Savings"},
    )["Account"]
    md = emulated.key("acme")
    channel = grpc.insecure_channel(emulated.target)
    try:
        stub = connection_service_pb2_grpc.ConnectionServiceStub(channel)
        before = stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings

        income = c.Settings(deposit_account=c.QuickBooksListRef(name="Services"), doc_number_prefix="MV-")
        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateSettings(c.UpdateSettingsRequest(settings=income), metadata=md)
        assert _code(refused) is grpc.StatusCode.INVALID_ARGUMENT
        bad = _bad_fields(refused)
        assert list(bad) == ["settings.deposit_account"]
        assert "is an Income account" in bad["settings.deposit_account"]
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == before  # nothing stored

        by_name = c.Settings(deposit_account=c.QuickBooksListRef(name="moving co savings"))
        updated = stub.UpdateSettings(
            c.UpdateSettingsRequest(settings=by_name, update_mask=FieldMask(paths=["deposit_account"])), metadata=md
        )
        assert updated.deposit_account == c.QuickBooksListRef(id=savings["Id"], name="Moving Co Savings")
        assert stub.GetConnection(c.GetConnectionRequest(), metadata=md).settings == updated
    finally:
        channel.close()

    accepted = emulated.stub.SyncPayment(
        s.SyncPaymentRequest(opportunity=opportunity(), payment=payment()), metadata=md
    )
    last = None
    for update in emulated.stub.WatchSyncJob(s.GetSyncJobRequest(name=accepted.name), metadata=md, timeout=60):
        last = update
    assert last is not None and last.state == r.SyncJob.STATE_SUCCEEDED, last
    [qbo_payment] = emulated.records("Payment")
    assert qbo_payment["DepositToAccountRef"]["value"] == savings["Id"]
