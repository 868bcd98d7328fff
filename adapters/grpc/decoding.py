"""Undecodable request bytes are the caller's mistake: INVALID_ARGUMENT, not grpc's INTERNAL.

grpc's sync server deserializes the request itself, before any interceptor's behaviour runs, and answers
INTERNAL ("Exception deserializing request!") when the bytes do not parse: a client with a stale or wrong
stub would be told the bug is ours. This interceptor gives each method a deserializer that never raises:
bytes that do not parse become a stand-in, and the behaviour answers it with UndecodableRequestError.

Put it last (innermost) in the server's interceptors, so that the caller is authenticated before its
request is judged; it sets the status itself, so it is also safe in any other position. It guards grpc's own
services (health, reflection) too: their behaviours are passed on with their arity and grpc's marks intact
(see _handlers).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
from grpc_status import rpc_status

from adapters.grpc._handlers import Behavior, Deserializer, HandlerInterceptor, wrap_handler
from adapters.grpc.status import status_for_error
from core.errors import UndecodableRequestError


class _Undecodable:
    """What the guarded deserializer returns for bytes that do not parse (grpc takes None as a failure)."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def guarded_deserializer(deserializer: Deserializer) -> Deserializer:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - DecodeError, or whatever a parser raises on hostile bytes
            return _UNDECODABLE

    return deserialize


def _request_type(deserializer: Deserializer, method: str) -> str:
    """`qbsync.v1.SyncPaymentRequest` for generated stubs (FromString is a classmethod of the message)."""
    message_class = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) else f"request of {method}"


class DecodingInterceptor(HandlerInterceptor):
    intercepts_infrastructure = True

    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        # A handler without a deserializer takes the raw bytes, which cannot fail to decode.
        if handler.request_deserializer is None:
            return handler
        error = UndecodableRequestError(_request_type(handler.request_deserializer, method))
        request_streaming = bool(handler.request_streaming)

        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            # wraps: grpc reads how to run a behaviour from its attributes (health's non-blocking Watch,
            # which then takes a third argument, passed on in `rest`).
            @functools.wraps(behavior)
            def checked(request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
                if request_streaming:
                    return behavior(_checked_stream(request, context, error), context, *rest)
                if request is _UNDECODABLE:
                    _abort(context, error)
                return behavior(request, context, *rest)

            return checked

        return wrap_handler(handler, wrap, request_deserializer=guarded_deserializer(handler.request_deserializer))


def _checked_stream(
    requests: Iterator[Any], context: grpc.ServicerContext, error: UndecodableRequestError
) -> Iterator[Any]:
    for request in requests:
        if request is _UNDECODABLE:
            _abort(context, error)
        yield request


def _abort(context: grpc.ServicerContext, error: UndecodableRequestError) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status_for_error(error)))
    raise AssertionError("context.abort_with_status returned")  # pragma: no cover
