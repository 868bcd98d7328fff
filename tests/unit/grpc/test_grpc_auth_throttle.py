"""The gRPC side of slowing failed authentications: the address failures are counted by, and the status a
slowed caller receives (RESOURCE_EXHAUSTED with a RetryInfo saying when to try again)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from adapters.grpc.auth import client_address
from adapters.grpc.status import status_for_error
from core.errors import TooManyFailedAuthenticationsError


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:53211", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:40000", "ipv6:[::1]"),
        ("ipv6:[2001:db8::1]:443", "ipv6:[2001:db8::1]"),
        ("unix:/run/qbsync.sock", "unix:/run/qbsync.sock"),
        ("", ""),
    ],
)
def test_failures_are_counted_per_address_not_per_connection(peer: str, address: str) -> None:
    assert client_address(peer) == address


def test_a_slowed_caller_is_told_resource_exhausted_and_when_to_retry() -> None:
    status = status_for_error(TooManyFailedAuthenticationsError(2.2))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert status.message == "too many failed authentications; try again in 3 s"
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    assert (info.reason, dict(info.metadata)) == ("TOO_MANY_FAILED_AUTHENTICATIONS", {"retry_after_seconds": "3"})
    assert retry.retry_delay.ToMilliseconds() == 2200
