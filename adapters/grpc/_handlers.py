"""Wrapping the behaviour of a gRPC method handler, for server interceptors.

A sync gRPC server calls `intercept_service` on its polling thread but runs the handler's behaviour
on a worker thread, and consumes a response stream after the behaviour has returned. Whatever must
happen around the servicer code (catching its errors, knowing the caller) therefore has to wrap the
behaviour itself, and for response streams the iteration of the stream too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import grpc

# grpc's own services: they need no key and set their own statuses. A wrapper of their behaviours must
# keep what grpc reads from them: health's Watch is marked `experimental_non_blocking` (functools.wraps
# copies the mark) and is then called with a third argument (the wrapper passes it on).
INFRASTRUCTURE_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def is_infrastructure(method: str) -> bool:
    return method.startswith(INFRASTRUCTURE_METHOD_PREFIXES)


# (request or request iterator, context) -> response or response iterator
Behavior = Callable[[Any, grpc.ServicerContext], Any]
# (behavior, is the response a stream?) -> wrapped behavior
Wrapper = Callable[[Behavior, bool], Behavior]
Deserializer = Callable[[bytes], Any]


def is_non_blocking(behavior: Behavior) -> bool:
    """Whether grpc runs `behavior` as a non-blocking stream: called with a third argument (the callback
    that sends a response, or with None ends the call) and expected to return at once (WatchSyncJob, and
    health's Watch). A wrapper of such a behaviour must take the third argument and be marked alike."""
    return bool(getattr(behavior, "experimental_non_blocking", False))


def mark_non_blocking(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Marks `behavior` (see is_non_blocking); returns it."""
    behavior.experimental_non_blocking = True  # type: ignore[attr-defined]
    return behavior


def wrap_handler(
    handler: grpc.RpcMethodHandler, wrap: Wrapper, *, request_deserializer: Deserializer | None = None
) -> grpc.RpcMethodHandler:
    """The same handler, its behaviour replaced by `wrap(behaviour, response_streaming)` and, when given,
    its request deserializer by `request_deserializer`."""
    serializers = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **serializers)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **serializers)
    raise ValueError("a method handler without a behaviour")


class HandlerInterceptor(grpc.ServerInterceptor):
    """A server interceptor that replaces the handler of each method it is given (`intercept_handler`).

    Unknown methods (no handler: grpc answers UNIMPLEMENTED itself) are passed over, and so are grpc's own
    services unless `intercepts_infrastructure` says otherwise.
    """

    intercepts_infrastructure = False

    def __init__(self) -> None:
        # Each method's handler wrapped once, not per call: grpc calls intercept_service for every call on
        # its one polling thread, so building handlers there serialised every call behind it (issue 12).
        # Keyed by method, and kept only while grpc hands back the same handler for it.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or (is_infrastructure(method) and not self.intercepts_infrastructure):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.intercept_handler(handler, method)
        self._wrapped[method] = (handler, wrapped)  # a race wraps it twice, harmlessly
        return wrapped

    @abc.abstractmethod
    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The handler to run for `method` instead of `handler` (often `wrap_handler(handler, ...)`)."""


class ChainedInterceptor(HandlerInterceptor):
    """Several HandlerInterceptors as one, the first outermost (as in `grpc.server(interceptors=...)`).

    grpc runs its interceptor pipeline for every call on its one polling thread: with four interceptors,
    four nested `intercept_service` calls and four cache look-ups per call, serialised before any worker
    thread starts. Chained, each method's handler is wrapped by all of them once, and a call costs one
    look-up (issue 12). Each keeps its own rule for grpc's own services (`intercepts_infrastructure`).
    """

    def __init__(self, interceptors: Sequence[HandlerInterceptor]) -> None:
        super().__init__()
        self._interceptors = tuple(interceptors)
        self.intercepts_infrastructure = any(i.intercepts_infrastructure for i in self._interceptors)

    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        infrastructure = is_infrastructure(method)
        for interceptor in reversed(self._interceptors):  # the innermost wraps the servicer's own handler
            if not infrastructure or interceptor.intercepts_infrastructure:
                handler = interceptor.intercept_handler(handler, method)
        return handler
