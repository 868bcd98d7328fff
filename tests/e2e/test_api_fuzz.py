"""The API fuzzed from outside (issue 7, SPEC.md section 7): hypothesis over what a caller can send.

A live server on loopback (gRPC → core → SQLite, the API role alone, so that only the calls of the test
change what is stored) receives random bytes as raw requests and random field values in every request
message of SyncService. Whatever arrives:

- the answer is never UNKNOWN or INTERNAL (nothing the caller sends is a bug of ours), and every error
  carries a google.rpc.Status with an ErrorInfo;
- a refused call (INVALID_ARGUMENT above all) stores nothing: the database is the same before and after;
- every error's trailers fit 8 KiB: the channel is opened with an 8 KiB metadata limit, so a bigger
  BadRequest would reach the test as RESOURCE_EXHAUSTED, and the trailers' wire size is checked too.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from google.type.money_pb2 import Money
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.grpc.server import SYNC_SERVICE_NAME
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.quickbooks.fake import FakeQuickBooksCompanies
from adapters.quickbooks.module import FakeQuickBooksModule
from core.auth import ApiKeys
from core.domain import Permission
from qbsync.bootstrap import bootstrap
from qbsync.config import Settings
from qbsync.runtime import Runtime
from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s

MAX_TRAILER_BYTES = 8 * 1024
# Tables that only the fixture writes (the caller's key): the rest is what a call could store.
NOT_CALLERS_DATA = {"api_keys", "tenants", "alembic_version"}
METHODS = {m.name: m for m in s.DESCRIPTOR.services_by_name["SyncService"].methods}
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclass
class LiveApi:
    channel: grpc.Channel
    database: Path
    metadata: list[tuple[str, str]]

    def stored(self) -> str:
        """A digest of everything a call could have stored."""
        digest = hashlib.sha256()
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in sorted(set(tables) - NOT_CALLERS_DATA):
                rows = sorted(repr(row) for row in connection.execute(f'SELECT * FROM "{table}"'))
                digest.update(repr((table, rows)).encode())
        return digest.hexdigest()

    def call(self, method: str, request: bytes) -> grpc.RpcError | None:
        """Sends the request bytes as they are; the error, or None when the call succeeded."""
        path = f"/{SYNC_SERVICE_NAME}/{method}"
        try:
            if METHODS[method].server_streaming:
                # No workers run: a job stays PENDING and its watch would stream until the deadline.
                list(self.channel.unary_stream(path)(request, metadata=self.metadata, timeout=1))
            else:
                self.channel.unary_unary(path)(request, metadata=self.metadata, timeout=30)
        except grpc.RpcError as error:
            return error
        return None


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    database = tmp_path_factory.mktemp("fuzz") / "qbsync.db"
    url = f"sqlite:///{database}"
    migrate(url)
    config = Settings(database_url=url, listen="127.0.0.1:0", workers=0, grace_seconds=1, watch_poll_seconds=0.05)
    injector = bootstrap(FakeQuickBooksModule(FakeQuickBooksCompanies()), settings=config)
    key = injector.get(ApiKeys).create("acme", frozenset(Permission))
    runtime = Runtime(injector, config, role="api")
    port = runtime.start()
    # Trailers over 8 KiB fail the call at the client (RESOURCE_EXHAUSTED) instead of passing unnoticed.
    limits = [("grpc.max_metadata_size", MAX_TRAILER_BYTES), ("grpc.absolute_max_metadata_size", MAX_TRAILER_BYTES)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=limits)
    try:
        yield LiveApi(channel, database, [("authorization", f"Bearer {key}")])
    finally:
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


# --- values: mostly plausible, often at the edges, sometimes hostile -------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
LONG_TEXT = st.text(min_size=1000, max_size=20_000)


def texts(*plausible: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["", " ", *plausible]), st.text(max_size=40), LONG_TEXT)


IDS = st.one_of(st.sampled_from(["c-1", "opp-1", "p-1", "p-2", "r-1", "j-1"]), texts())
DECIMAL_TEXTS = st.one_of(
    st.sampled_from(["1", "3.5", "0", "-1", "1e3", "9E+999999", "9E-999999", "NaN", "Infinity", "²", "1" * 70]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    texts(),
)


@st.composite
def money(draw: st.DrawFn) -> Money:
    cents = st.integers(-(10**5), 10**7).map(lambda c: c * 10_000_000)
    units = draw(st.one_of(st.integers(0, 10_000), INT64))
    nanos = draw(st.one_of(st.just(0), cents.map(lambda n: n % 1_000_000_000), INT32))
    return Money(currency_code=draw(st.sampled_from(["", "USD", "EUR", "usd", "US", "€€€"])), units=units, nanos=nanos)


def timestamps() -> st.SearchStrategy[Timestamp]:
    plausible = st.integers(1_700_000_000, 1_800_000_000)
    return st.builds(Timestamp, seconds=st.one_of(plausible, INT64), nanos=st.one_of(st.just(0), INT32))


def dates() -> st.SearchStrategy[Date]:
    plausible = st.builds(Date, year=st.integers(1990, 2030), month=st.integers(1, 12), day=st.integers(1, 28))
    return st.one_of(plausible, st.builds(Date, year=INT32, month=INT32, day=INT32))


def customers() -> st.SearchStrategy[r.Customer]:
    return st.builds(
        r.Customer,
        customer_id=IDS,
        first_name=texts("Mary"),
        last_name=texts("Smith"),
        company_name=texts("Acme Movers"),
        email=texts("mary@example.com", "not an email"),
        phone=texts("555-0100"),
    )


def opportunities() -> st.SearchStrategy[r.Opportunity]:
    return st.builds(r.Opportunity, opportunity_id=IDS, number=texts("1001"), customer=customers())


def refunds() -> st.SearchStrategy[r.Refund]:
    return st.builds(r.Refund, refund_id=IDS, amount=money(), refunded_time=timestamps(), memo=texts("memo"))


def payments() -> st.SearchStrategy[r.Payment]:
    return st.builds(
        r.Payment,
        payment_id=IDS,
        amount=money(),
        method=st.one_of(st.sampled_from(list(r.PaymentMethod.values())), INT32),
        received_time=timestamps(),
        reference=texts("deposit"),
        refunds=st.lists(refunds(), max_size=3),
    )


def jobs() -> st.SearchStrategy[r.Job]:
    line = st.builds(
        r.InvoiceLine, description=texts("Movers"), quantity=DECIMAL_TEXTS, unit_price=money(), amount=money()
    )
    return st.builds(
        r.Job, job_id=IDS, number=texts("J-1"), service_date=dates(), lines=st.lists(line, max_size=4)
    )


REQUEST_IDS = st.one_of(st.just(""), st.text(max_size=60))
ENTITIES = st.builds(r.EntityRef, type=st.one_of(st.sampled_from(list(r.EntityType.values())), INT32), id=IDS)
JOB_NAMES = st.one_of(st.sampled_from(["", "syncJobs/", "syncJobs/1"]), st.text(max_size=40).map("syncJobs/".__add__),
                      texts())

REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    "SyncPayment": st.builds(
        s.SyncPaymentRequest, opportunity=opportunities(), payment=payments(), request_id=REQUEST_IDS
    ),
    "CloseOutJob": st.builds(
        s.CloseOutJobRequest,
        opportunity=opportunities(),
        job=jobs(),
        payments=st.lists(payments(), max_size=3),
        request_id=REQUEST_IDS,
    ),
    "SyncInvoice": st.builds(
        s.SyncInvoiceRequest,
        opportunity=opportunities(),
        job=jobs(),
        payments=st.lists(payments(), max_size=3),
        request_id=REQUEST_IDS,
    ),
    "GetSyncJob": st.builds(s.GetSyncJobRequest, name=JOB_NAMES),
    "WatchSyncJob": st.builds(s.GetSyncJobRequest, name=JOB_NAMES),
    "GetSyncStatus": st.builds(s.GetSyncStatusRequest, entity=ENTITIES),
    "GetQuickBooksLink": st.builds(s.GetQuickBooksLinkRequest, entity=ENTITIES),
    "ListSyncErrors": st.builds(
        s.ListSyncErrorsRequest,
        page_size=st.one_of(st.integers(-5, 200), INT32),
        page_token=st.one_of(st.sampled_from(["", "0", "50", "²", "1" * 26, "999999999", "1000000000"]), texts()),
    ),
    "RetrySync": st.builds(s.RetrySyncRequest, name=JOB_NAMES),
}


def test_every_method_is_fuzzed() -> None:
    assert set(REQUESTS) == set(METHODS)


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), request=st.binary(max_size=512))
def test_random_bytes_are_never_our_error(live_api: LiveApi, method: str, request: bytes) -> None:
    check_answer(live_api, method, request)


def fuzz_method(method: str) -> Callable[[LiveApi], None]:
    @FUZZ
    @given(request=REQUESTS[method])
    def test(live_api: LiveApi, request: Message) -> None:
        check_answer(live_api, method, request.SerializeToString())

    test.__name__ = f"test_random_{method}_requests_are_never_our_error"
    return test


test_random_SyncPayment_requests_are_never_our_error = fuzz_method("SyncPayment")
test_random_CloseOutJob_requests_are_never_our_error = fuzz_method("CloseOutJob")
test_random_SyncInvoice_requests_are_never_our_error = fuzz_method("SyncInvoice")
test_random_GetSyncJob_requests_are_never_our_error = fuzz_method("GetSyncJob")
test_random_WatchSyncJob_requests_are_never_our_error = fuzz_method("WatchSyncJob")
test_random_GetSyncStatus_requests_are_never_our_error = fuzz_method("GetSyncStatus")
test_random_GetQuickBooksLink_requests_are_never_our_error = fuzz_method("GetQuickBooksLink")
test_random_ListSyncErrors_requests_are_never_our_error = fuzz_method("ListSyncErrors")
test_random_RetrySync_requests_are_never_our_error = fuzz_method("RetrySync")
