"""The API fuzzed from outside (issue 7, SPEC.md section 7): hypothesis over what a caller can send.

A live server on loopback (gRPC → core → database, the API role alone, so that only the calls of the test
change what is stored) receives random bytes as raw requests on every method (SyncService and
ConnectionService) and random field values in every request message of both. Every test runs on SQLite and
on PostgreSQL (a schema of its own, when QBSYNC_TEST_DATABASE_URL is set): what one database refuses to
hold (a NUL in text, a number out of a column's range) must be refused as the caller's mistake first.
Whatever arrives:

- the answer is never UNKNOWN or INTERNAL (nothing the caller sends is a bug of ours), and every error
  carries a google.rpc.Status with an ErrorInfo;
- a refused call (INVALID_ARGUMENT above all) stores nothing: the database is the same before and after;
- every error's trailers fit 8 KiB: the channel is opened with an 8 KiB metadata limit, so a bigger
  BadRequest would reach the test as RESOURCE_EXHAUSTED, and the trailers' wire size is checked too.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.engine import URL

from adapters.persistence.sqlalchemy import create_engine_for, migrate
from adapters.persistence.sqlalchemy.engine import normalise_url
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.fake_oauth import FakeQuickBooksAuthorization
from adapters.quickbooks.module import FakeQuickBooksModule
from adapters.quickbooks.oauth_module import FakeQuickBooksAuthorizationModule
from core.auth import ApiKeys
from core.domain import Permission
from core.ports import QuickBooksAuthorization
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import connection_service_pb2 as cs
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from tests.postgres_schema import fresh_postgres_schema

MAX_TRAILER_BYTES = 8 * 1024
# Tables that only the fixture writes (the caller's key): the rest is what a call could store.
NOT_CALLERS_DATA = {"api_keys", "tenants", "alembic_version"}
SYNC_METHODS = {m.name for m in s.DESCRIPTOR.services_by_name["SyncService"].methods}
SERVICES = [s.DESCRIPTOR.services_by_name["SyncService"], cs.DESCRIPTOR.services_by_name["ConnectionService"]]
METHODS = {m.name: m for service in SERVICES for m in service.methods}
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclass
class LiveApi:
    channel: grpc.Channel
    database: Engine  # the test's own view of the server's database
    metadata: list[tuple[str, str]]
    intuit: FakeQuickBooksAuthorization  # Intuit's side of the OAuth code flow
    accepted: list[str] = field(default_factory=list)  # names of the jobs the server accepted
    tables: MetaData = field(default_factory=MetaData)

    def __post_init__(self) -> None:
        self.tables.reflect(self.database)

    def known_job(self) -> str:
        return self.accepted[-1] if self.accepted else "syncJobs/none-yet"

    def stored(self) -> str:
        """A digest of everything a call could have stored, read through SQLAlchemy on either backend."""
        digest = hashlib.sha256()
        with self.database.connect() as connection:
            for name in sorted(set(self.tables.tables) - NOT_CALLERS_DATA):
                rows = sorted(repr(tuple(row)) for row in connection.execute(select(self.tables.tables[name])))
                digest.update(repr((name, rows)).encode())
        return digest.hexdigest()

    def call(self, method: str, request: bytes) -> grpc.RpcError | None:
        """Sends the request bytes as they are; the error, or None when the call succeeded."""
        path = f"/{METHODS[method].containing_service.full_name}/{method}"
        try:
            if METHODS[method].server_streaming:
                # No workers run: a job stays PENDING and its watch would stream until the deadline.
                list(self.channel.unary_stream(path)(request, metadata=self.metadata, timeout=0.5))
                return None
            response = self.channel.unary_unary(path)(request, metadata=self.metadata, timeout=30)
        except grpc.RpcError as error:
            return error
        if METHODS[method].output_type.full_name == r.SyncJob.DESCRIPTOR.full_name:
            self.accepted.append(r.SyncJob.FromString(response).name)
        return None


def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    url = normalise_url(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'qbsync.db'}")
    migrate(url)
    yield url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """Every fuzz test runs once per SQL backend: each has its own ways to refuse what it is given."""
    if request.param == "sqlite":
        yield from sqlite_database(tmp_path_factory)
    else:
        with fresh_postgres_schema("fuzz") as url:
            yield url


@pytest.fixture(scope="module")
def live_api(database_url: URL) -> Iterator[LiveApi]:
    url = database_url.render_as_string(hide_password=False)
    config = Settings(database_url=url, listen="127.0.0.1:0", workers=0, grace_seconds=1, watch_poll_seconds=0.05)
    injector = bootstrap(
        FakeQuickBooksModule(FakeQuickBooksCompanies()), FakeQuickBooksAuthorizationModule(), settings=config
    )
    key = injector.get(ApiKeys).create("acme", frozenset(Permission))
    runtime = Runtime(injector, role="api")
    port = runtime.start()
    # Trailers over 8 KiB fail the call at the client (RESOURCE_EXHAUSTED) instead of passing unnoticed.
    limits = [("grpc.max_metadata_size", MAX_TRAILER_BYTES), ("grpc.absolute_max_metadata_size", MAX_TRAILER_BYTES)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=limits)
    database = create_engine_for(database_url)
    try:
        intuit = injector.get(QuickBooksAuthorization)  # type: ignore[type-abstract]
        assert isinstance(intuit, FakeQuickBooksAuthorization)
        yield LiveApi(channel, database, [("authorization", f"Bearer {key}")], intuit)
    finally:
        database.dispose()
        channel.close()
        runtime.stop(grace=1)


def trailer_bytes(error: grpc.RpcError) -> int:
    """The error's trailers as they travel: binary values base64-encoded, the message percent-encoded."""
    size = len(urllib.parse.quote((error.details() or "").encode(), safe=" "))
    for name, value in error.trailing_metadata() or ():
        size += len(name) + (len(base64.b64encode(value)) if isinstance(value, bytes) else len(value))
    return size


def check_answer(api: LiveApi, method: str, request: bytes) -> None:
    before = api.stored()
    error = api.call(method, request)
    event(f"{method}: {'OK' if error is None else error.code().name}")  # --hypothesis-show-statistics
    if error is None:
        assert method != "PreviewSync" or api.stored() == before, "a preview stored something"
        return
    code = error.code()
    if METHODS[method].server_streaming and code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return  # a watch of a job that is still PENDING
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (method, code, error.details())
    assert code is not grpc.StatusCode.RESOURCE_EXHAUSTED, (method, "trailers over 8 KiB", error.details())
    assert trailer_bytes(error) <= MAX_TRAILER_BYTES
    status = rpc_status.from_call(error)
    assert status is not None, (method, code, error.details())
    assert status.details and status.details[0].Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        bad_request = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
        assert len(bad_request) == 1, (method, error.details())
    assert api.stored() == before, (method, code, "a refused call changed what is stored")


# --- requests: plausible ones, then a few fields made hostile ---------------------------------------------
#
# Every field drawn at random would make nearly every request INVALID_ARGUMENT at its first field. So each
# request starts plausible (ids from a small pool, so that requests also collide: the same payment in two
# opportunities, an invoice synced before its close-out, a request_id reused), and then 0 to 6 of its
# fields, anywhere in the message tree, get a hostile value of their type or are cleared.

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
HOSTILE_TEXT = st.one_of(
    st.sampled_from(["", " ", "\x00", "\t\n", "a:b", "²", "١", "9E+999999", "9E-999999", "NaN", "-1", "1" * 70]),
    st.text(max_size=40),
    st.text(st.sampled_from("\x00\t\n\r\x1f\x7f\x85\u2028\u200b"), min_size=1, max_size=3),  # controls alone
    st.text(min_size=1000, max_size=20_000),
)
HOSTILE_SCALARS: dict[int, st.SearchStrategy[object]] = {
    FieldDescriptor.TYPE_STRING: HOSTILE_TEXT,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_ENUM: INT32,  # proto3 enums are open: any int32 may arrive
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
}
KNOWN_JOB = "syncJobs/{known}"  # replaced by the name of a job the server accepted earlier
# Mostly none: a reused request_id with another body is ALREADY_EXISTS, as it should be.
REQUEST_IDS = st.sampled_from(["", "", "", "", "req-1", "req-2"])


def cents(low: int, high: int) -> st.SearchStrategy[Money]:
    return st.integers(low, high).map(lambda c: Money(currency_code="USD", units=c // 100, nanos=c % 100 * 10**7))


def when() -> st.SearchStrategy[Timestamp]:
    return st.integers(1_700_000_000, 1_800_000_000).map(lambda t: Timestamp(seconds=t))


OPPORTUNITIES = {"opp-1": "c-1", "opp-2": "c-2"}  # each with its customer


@st.composite
def opportunities(draw: st.DrawFn) -> r.Opportunity:
    opportunity_id = draw(st.sampled_from(sorted(OPPORTUNITIES)))
    customer = r.Customer(
        customer_id=OPPORTUNITIES[opportunity_id],
        first_name=draw(st.sampled_from(["Mary", "José", ""])),
        last_name=draw(st.sampled_from(["Smith", "O'Brien"])),
        company_name=draw(st.sampled_from(["", "Acme Movers"])),
        email=draw(st.sampled_from(["mary@example.com", ""])),
        phone=draw(st.sampled_from(["", "555-0100"])),
    )
    return r.Opportunity(opportunity_id=opportunity_id, number="1001", customer=customer)


@st.composite
def payments(draw: st.DrawFn, opportunity_id: str) -> r.Payment:
    """Ids derive from the opportunity's, so that a plausible payment seldom collides with another's."""
    payment_id = f"{opportunity_id}-p{draw(st.integers(1, 3))}"
    refunds = [
        r.Refund(refund_id=f"{payment_id}-r{n}", amount=draw(cents(1, 5000)), refunded_time=draw(when()))
        for n in range(draw(st.integers(0, 2)))
    ]
    return r.Payment(
        payment_id=payment_id,
        amount=draw(cents(10_000, 100_000)),
        method=draw(st.sampled_from([v for v in r.PaymentMethod.values() if v])),
        received_time=draw(when()),
        reference=draw(st.sampled_from(["", "deposit"])),
        refunds=refunds,
    )


@st.composite
def invoice_lines(draw: st.DrawFn) -> r.InvoiceLine:
    quantity = draw(st.sampled_from([Decimal(1), Decimal(2), Decimal("3.5")]))
    unit_price = Decimal(draw(st.integers(0, 50_000)) * 2) / 100  # even cents: 3.5 of them are whole cents
    amount = quantity * unit_price

    def money(value: Decimal) -> Money:
        units = int(value)
        return Money(units=units, nanos=int((value - units) * 10**9))

    return r.InvoiceLine(
        description="Movers", quantity=str(quantity), unit_price=money(unit_price), amount=money(amount)
    )


@st.composite
def payment_requests(draw: st.DrawFn) -> s.SyncPaymentRequest:
    opportunity = draw(opportunities())
    payment = draw(payments(opportunity.opportunity_id))
    return s.SyncPaymentRequest(opportunity=opportunity, payment=payment, request_id=draw(REQUEST_IDS))


@st.composite
def job_requests(
    draw: st.DrawFn, kind: type[s.CloseOutJobRequest] | type[s.SyncInvoiceRequest]
) -> s.CloseOutJobRequest | s.SyncInvoiceRequest:
    opportunity = draw(opportunities())
    job = r.Job(
        job_id=f"{opportunity.opportunity_id}-j{draw(st.integers(1, 2))}",
        number="J-1",
        service_date=Date(year=2026, month=3, day=1),
        lines=draw(st.lists(invoice_lines(), min_size=1, max_size=3)),
    )
    listed = draw(st.lists(payments(opportunity.opportunity_id), max_size=2, unique_by=lambda p: p.payment_id))
    return kind(opportunity=opportunity, job=job, payments=listed, request_id=draw(REQUEST_IDS))


@st.composite
def payout_requests(draw: st.DrawFn) -> s.SyncPayoutRequest:
    """Payment ids as payments() makes them, so that some name payments a plausible SyncPayment stored; the
    amount seldom equals the parts (INVALID_ARGUMENT), which is also a plausible mistake."""
    payment_ids = draw(
        st.lists(st.sampled_from([f"{o}-p{n}" for o in sorted(OPPORTUNITIES) for n in (1, 2, 3)]), max_size=3)
    )
    refund_ids = draw(
        st.lists(st.sampled_from([f"{p}-r{n}" for p in payment_ids for n in (0, 1)]), max_size=2)
        if payment_ids
        else st.just([])
    )
    adjustments = draw(
        st.lists(
            st.builds(r.PayoutAdjustment, amount=cents(-5000, 5000), memo=st.sampled_from(["", "reserve"])), max_size=2
        )
    )
    payout = r.Payout(
        payout_id=f"po-{draw(st.integers(1, 3))}",
        arrival_date=Date(year=2026, month=3, day=draw(st.integers(1, 28))),
        amount=draw(cents(1, 300_000)),
        payment_ids=payment_ids,
        refund_ids=refund_ids,
        adjustments=adjustments,
    )
    if draw(st.booleans()):
        payout.fees.CopyFrom(draw(cents(0, 5000)))
    if draw(st.booleans()):
        payout.chargebacks.CopyFrom(draw(cents(0, 5000)))
    return s.SyncPayoutRequest(payout=payout, request_id=draw(REQUEST_IDS))


ENTITIES = st.builds(
    r.EntityRef,
    type=st.sampled_from([v for v in r.EntityType.values() if v]),
    id=st.sampled_from(["opp-1-p1", "opp-1-p1-r0", "opp-1-j1", "c-1"]),
)
JOB_NAMES = st.sampled_from([KNOWN_JOB, "syncJobs/1"])

PLAUSIBLE: dict[str, st.SearchStrategy[Message]] = {
    "SyncPayment": payment_requests(),
    "CloseOutJob": job_requests(s.CloseOutJobRequest),
    "SyncInvoice": job_requests(s.SyncInvoiceRequest),
    "SyncPayout": payout_requests(),
    "GetSyncJob": st.builds(s.GetSyncJobRequest, name=JOB_NAMES),
    "WatchSyncJob": st.builds(s.GetSyncJobRequest, name=JOB_NAMES),
    "GetSyncStatus": st.builds(s.GetSyncStatusRequest, entity=ENTITIES),
    "GetQuickBooksLink": st.builds(s.GetQuickBooksLinkRequest, entity=ENTITIES),
    "ListSyncErrors": st.builds(
        s.ListSyncErrorsRequest,
        page_size=st.integers(0, 100),
        page_token=st.sampled_from(["", "0", "50", "999999999"]),
    ),
    "RetrySync": st.builds(s.RetrySyncRequest, name=JOB_NAMES),
    "DismissSyncError": st.builds(s.DismissSyncErrorRequest, name=JOB_NAMES),
    "PreviewSync": st.one_of(
        payment_requests().map(lambda body: s.PreviewSyncRequest(sync_payment=body)),
        job_requests(s.CloseOutJobRequest).map(lambda body: s.PreviewSyncRequest(close_out_job=body)),  # type: ignore[arg-type]
        job_requests(s.SyncInvoiceRequest).map(lambda body: s.PreviewSyncRequest(sync_invoice=body)),  # type: ignore[arg-type]
        payout_requests().map(lambda body: s.PreviewSyncRequest(sync_payout=body)),
        st.just(s.PreviewSyncRequest()),
    ),
    "VoidPayment": st.builds(
        s.VoidPaymentRequest, payment_id=st.sampled_from(["opp-1-p1", "opp-1-p2", "p9"]), request_id=REQUEST_IDS
    ),
    "VoidInvoice": st.builds(
        s.VoidInvoiceRequest, job_id=st.sampled_from(["opp-1-j1", "opp-1-j2", "j9"]), request_id=REQUEST_IDS
    ),
    "ReconcileCompany": st.builds(
        s.ReconcileCompanyRequest,
        start_date=st.builds(Date, year=st.integers(0, 2100), month=st.integers(0, 13), day=st.integers(0, 32)),
        end_date=st.builds(Date, year=st.integers(0, 2100), month=st.integers(0, 13), day=st.integers(0, 32)),
    ),
}


def slots(message: Message) -> list[tuple[Message, FieldDescriptor]]:
    """Every field of the message tree a mutation can reach: (the message holding it, the field)."""
    found = []
    for descriptor in message.DESCRIPTOR.fields:
        repeated = descriptor.is_repeated
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                children = list(getattr(message, descriptor.name))
            else:
                children = [getattr(message, descriptor.name)] if message.HasField(descriptor.name) else []
            for child in children:
                found += slots(child)
        if not repeated:
            found.append((message, descriptor))
    return found


@st.composite
def hostile(draw: st.DrawFn, method: str) -> Message:
    request = draw({**PLAUSIBLE, **PLAUSIBLE_CONNECTION}[method])
    for _ in range(draw(st.one_of(st.just(0), st.integers(1, 6)))):  # half of them left plausible
        if not slots(request):  # a message without fields (GetConnectionRequest)
            break
        holder, descriptor = draw(st.sampled_from(slots(request)))
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            holder.ClearField(descriptor.name)  # a required time, amount, customer... left out
        elif descriptor.type == FieldDescriptor.TYPE_STRING and draw(st.booleans()):
            # Hostile text after a plausible value: a URL or id that passes its checks but for a NUL.
            setattr(holder, descriptor.name, getattr(holder, descriptor.name) + draw(HOSTILE_TEXT))
        else:
            setattr(holder, descriptor.name, draw(HOSTILE_SCALARS[descriptor.type]))
    return request


def list_refs() -> st.SearchStrategy[cs.QuickBooksListRef]:
    return st.one_of(
        st.builds(cs.QuickBooksListRef, id=st.sampled_from(["1", "35", "999"])),
        st.builds(cs.QuickBooksListRef, name=st.sampled_from(["Undeposited Funds", "Checking", "Services"])),
    )


SETTING_NAMES = [
    "deposit_account",
    "refund_bank_account",
    "accounts_receivable_account",
    "income_item",
    "tax_code",
    "discount_account",
    "tips_item",
    "surcharge_item",
    "processing_fee_account",
    "payout_bank_account",
    "chargeback_account",
    "adjustment_account",
    "payment_methods",
    "doc_number_prefix",
]
PLAUSIBLE_CONNECTION: dict[str, st.SearchStrategy[Message]] = {
    "GetAuthorizationUrl": st.builds(
        cs.GetAuthorizationUrlRequest,
        redirect_uri=st.sampled_from(["https://crm.example.com/qbo/callback"]),
        environment=st.sampled_from([cs.ENVIRONMENT_SANDBOX, cs.ENVIRONMENT_PRODUCTION]),
    ),
    "CompleteAuthorization": st.builds(
        cs.CompleteAuthorizationRequest,
        code=st.sampled_from(["code-1"]),
        state=st.sampled_from(["state-1"]),
        realm_id=st.sampled_from(["4620"]),
        redirect_uri=st.sampled_from(["", "https://crm.example.com/qbo/callback"]),
    ),
    "GetConnection": st.just(cs.GetConnectionRequest()),
    "UpdateSettings": st.builds(
        cs.UpdateSettingsRequest,
        settings=st.builds(
            cs.Settings,
            deposit_account=list_refs(),
            refund_bank_account=list_refs(),
            accounts_receivable_account=list_refs(),
            income_item=list_refs(),
            tax_code=list_refs(),
            discount_account=list_refs(),
            tips_item=list_refs(),
            surcharge_item=list_refs(),
            processing_fee_account=list_refs(),
            payout_bank_account=list_refs(),
            chargeback_account=list_refs(),
            adjustment_account=list_refs(),
            payment_methods=st.lists(
                st.builds(
                    cs.PaymentMethodMapping,
                    method=st.sampled_from([v for v in r.PaymentMethod.values() if v]),
                    quickbooks_payment_method=list_refs(),
                ),
                max_size=2,
                unique_by=lambda m: m.method,
            ),
            doc_number_prefix=st.sampled_from(["", "INV-"]),
        ),
        update_mask=st.builds(
            FieldMask, paths=st.lists(st.one_of(st.sampled_from(SETTING_NAMES), HOSTILE_TEXT), max_size=3)
        ),
    ),
    "Disconnect": st.just(cs.DisconnectRequest()),
}


def test_every_method_is_fuzzed() -> None:
    assert set(PLAUSIBLE) | set(PLAUSIBLE_CONNECTION) == set(METHODS)


def test_the_digest_sees_what_an_accepted_call_stores(live_api: LiveApi) -> None:
    """Otherwise "a refused call stores nothing" would hold of a digest blind to the backend's tables."""
    customer = r.Customer(customer_id="c-digest", first_name="Mary", last_name="Smith")
    payment = r.Payment(
        payment_id="p-digest",
        amount=Money(currency_code="USD", units=100),
        method=r.PAYMENT_METHOD_CASH,
        received_time=Timestamp(seconds=1_750_000_000),
    )
    request = s.SyncPaymentRequest(
        opportunity=r.Opportunity(opportunity_id="opp-digest", number="1", customer=customer), payment=payment
    )
    before = live_api.stored()
    assert live_api.call("SyncPayment", request.SerializeToString()) is None
    assert live_api.stored() != before


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), request=st.binary(max_size=512))
def test_random_bytes_are_never_our_error(live_api: LiveApi, method: str, request: bytes) -> None:
    check_answer(live_api, method, request)


def fuzz_method(method: str) -> Callable[[LiveApi], None]:
    @FUZZ
    @given(request=hostile(method))
    def test(live_api: LiveApi, request: Message) -> None:
        name_field = "name" if "name" in request.DESCRIPTOR.fields_by_name else None
        if name_field and getattr(request, name_field) == KNOWN_JOB:
            setattr(request, name_field, live_api.known_job())
        check_answer(live_api, method, request.SerializeToString())

    test.__name__ = f"test_random_{method}_requests_are_never_our_error"
    return test


test_random_SyncPayment_requests_are_never_our_error = fuzz_method("SyncPayment")
test_random_CloseOutJob_requests_are_never_our_error = fuzz_method("CloseOutJob")
test_random_SyncInvoice_requests_are_never_our_error = fuzz_method("SyncInvoice")
test_random_SyncPayout_requests_are_never_our_error = fuzz_method("SyncPayout")
test_random_GetSyncJob_requests_are_never_our_error = fuzz_method("GetSyncJob")
test_random_WatchSyncJob_requests_are_never_our_error = fuzz_method("WatchSyncJob")
test_random_GetSyncStatus_requests_are_never_our_error = fuzz_method("GetSyncStatus")
test_random_GetQuickBooksLink_requests_are_never_our_error = fuzz_method("GetQuickBooksLink")
test_random_ListSyncErrors_requests_are_never_our_error = fuzz_method("ListSyncErrors")
test_random_RetrySync_requests_are_never_our_error = fuzz_method("RetrySync")
test_random_DismissSyncError_requests_are_never_our_error = fuzz_method("DismissSyncError")
test_random_PreviewSync_requests_are_never_our_error = fuzz_method("PreviewSync")
test_random_VoidPayment_requests_are_never_our_error = fuzz_method("VoidPayment")
test_random_VoidInvoice_requests_are_never_our_error = fuzz_method("VoidInvoice")
test_random_ReconcileCompany_requests_are_never_our_error = fuzz_method("ReconcileCompany")
test_random_GetAuthorizationUrl_requests_are_never_our_error = fuzz_method("GetAuthorizationUrl")
test_random_CompleteAuthorization_requests_are_never_our_error = fuzz_method("CompleteAuthorization")
test_random_GetConnection_requests_are_never_our_error = fuzz_method("GetConnection")
test_random_UpdateSettings_requests_are_never_our_error = fuzz_method("UpdateSettings")
test_random_Disconnect_requests_are_never_our_error = fuzz_method("Disconnect")


# --- what the fuzz found on PostgreSQL, pinned down -------------------------------------------------------

REDIRECT = "https://crm.example.com/qbo/callback"


def bad_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    return [v.field for v in bad_request.field_violations]


def start_authorization(api: LiveApi) -> str:
    """GetAuthorizationUrl as an admin would call it; the state it hands out."""
    request = cs.GetAuthorizationUrlRequest(redirect_uri=REDIRECT, environment=cs.ENVIRONMENT_SANDBOX)
    response = api.channel.unary_unary(
        f"/{cs.DESCRIPTOR.services_by_name['ConnectionService'].full_name}/GetAuthorizationUrl"
    )(request.SerializeToString(), metadata=api.metadata)
    return cs.GetAuthorizationUrlResponse.FromString(response).state


@pytest.mark.parametrize("control", ["\x00", "\n", "\t"])
def test_a_redirect_uri_with_a_control_character_is_invalid_argument_naming_it(live_api: LiveApi, control: str) -> None:
    """Was INTERNAL on PostgreSQL (a NUL in the stored pending authorization); urlsplit drops tabs and
    newlines, so a URL is judged as it is sent, before it is parsed."""
    request = cs.GetAuthorizationUrlRequest(redirect_uri=REDIRECT + control, environment=cs.ENVIRONMENT_SANDBOX)
    before = live_api.stored()
    error = live_api.call("GetAuthorizationUrl", request.SerializeToString())
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert bad_fields(error) == ["redirect_uri"]
    assert live_api.stored() == before


def test_a_realm_id_with_a_control_character_is_invalid_argument_naming_it(live_api: LiveApi) -> None:
    """Was INTERNAL on PostgreSQL once the state and code were right: the realm id is stored as it came."""
    state = start_authorization(live_api)
    code = live_api.intuit.consent("sandbox", REDIRECT)
    request = cs.CompleteAuthorizationRequest(code=code, state=state, realm_id="46\x0020", redirect_uri=REDIRECT)
    before = live_api.stored()
    error = live_api.call("CompleteAuthorization", request.SerializeToString())
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert bad_fields(error) == ["realm_id"]
    assert live_api.stored() == before


# --- grpc's own services: health and reflection, which need no key --------------------------------------

UNDECODABLE = b"\x0a\xff\xff\xff\x0f"  # a length-delimited field 1 whose length runs past the end
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def call_infrastructure(api: LiveApi, path: str, request: bytes) -> grpc.RpcError | None:
    """The error, or None when the call answered; a watch is left after its first answer."""
    try:
        if path == HEALTH_WATCH:
            watch = api.channel.unary_stream(path)(request, timeout=10)
            next(watch)
            watch.cancel()
        elif path == REFLECTION:
            list(api.channel.stream_stream(path)(iter([request]), timeout=10))
        else:
            api.channel.unary_unary(path)(request, timeout=10)
    except grpc.RpcError as error:
        return error
    return None


@pytest.mark.parametrize("path", [HEALTH_CHECK, HEALTH_WATCH, REFLECTION])
def test_undecodable_bytes_to_grpcs_own_services_are_invalid_argument(live_api: LiveApi, path: str) -> None:
    error = call_infrastructure(live_api, path, UNDECODABLE)
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "UNDECODABLE_REQUEST"


def test_a_health_watch_still_streams_through_the_decoding_guard(live_api: LiveApi) -> None:
    """Watch is non-blocking (grpc calls it with a callback): the guard must keep that working."""
    request = health_pb2.HealthCheckRequest(service="qbsync.v1.SyncService").SerializeToString()
    watch = live_api.channel.unary_stream(HEALTH_WATCH)(request, timeout=10)
    first = health_pb2.HealthCheckResponse.FromString(next(watch))
    watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


@settings(FUZZ, max_examples=30)
@given(path=st.sampled_from([HEALTH_CHECK, HEALTH_WATCH, REFLECTION]), request=st.binary(max_size=256))
def test_random_bytes_to_grpcs_own_services_are_never_our_error(live_api: LiveApi, path: str, request: bytes) -> None:
    error = call_infrastructure(live_api, path, request)
    event(f"{path}: {'OK' if error is None else error.code().name}")
    if error is not None:
        assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, error.details())
