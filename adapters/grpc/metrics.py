"""The metrics server interceptor: every call of qbsync's services counted by method and status code, and
its latency observed (qbsync_grpc_server_handled_total, qbsync_grpc_server_handling_seconds).

The method label is the full method name (a bounded set: the served services' methods); the code a
gRPC status code name. Put it first (outermost) in the server's interceptors, so that it sees the status
the error mapping chose and the time authentication took. grpc's own services (health, reflection) are
not counted: a load balancer's health checks would drown the API's own calls.

`MetricsInterceptor` serves grpc's thread-pool server, `AioMetricsInterceptor` an asyncio one
(`grpc.aio.server(interceptors=[AioMetricsInterceptor(), ...])`): same metrics, same labels.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

from adapters.grpc._handlers import (
    Behavior,
    HandlerInterceptor,
    is_infrastructure,
    is_non_blocking,
    mark_non_blocking,
    wrap_handler,
)

# Seconds: a GetSyncStatus answers in milliseconds; a stream lasts as long as its caller watches.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRPC_HANDLED = Counter(
    "qbsync_grpc_server_handled", "gRPC calls answered, by method and status code.", ["method", "code"]
)
GRPC_HANDLING_SECONDS = Histogram(
    "qbsync_grpc_server_handling_seconds",
    "Time from a gRPC call's arrival to its answer (a stream: to its end), by method.",
    ["method"],
    buckets=_BUCKETS,
)


class MetricsInterceptor(HandlerInterceptor):
    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            if is_non_blocking(behavior):
                return _timed_non_blocking(behavior, method)
            return _timed_stream(behavior, method) if response_streaming else _timed_unary(behavior, method)

        return wrap_handler(handler, wrap)


def _timed_non_blocking(behavior: Behavior, method: str) -> Behavior:
    """A stream that returns at once and sends later (WatchSyncJob): recorded when the call terminates
    (grpc's termination callback), with the status the servicer chose. A stream the servicer never ended
    (`send(None)`) was ended by its caller: cancelled, or past its deadline — CANCELLED."""

    def timed(request: Any, context: grpc.ServicerContext, send: Callable[[Any], None]) -> None:
        started = time.monotonic()
        ended = False

        def sending(response: Any) -> None:
            nonlocal ended
            if response is None:
                ended = True
            send(response)

        def terminated() -> None:
            if not ended:
                _cancelled(context)
            _record(method, context, False, started)

        if not context.add_callback(terminated):
            terminated()  # already over
        behavior(request, context, sending)  # type: ignore[call-arg]

    return mark_non_blocking(timed)


def _timed_unary(behavior: Behavior, method: str) -> Behavior:
    def timed(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.monotonic()
        failed = False
        try:
            return behavior(request, context)
        except BaseException:
            failed = True
            raise
        finally:
            _record(method, context, failed, started)

    return timed


def _timed_stream(behavior: Behavior, method: str) -> Behavior:
    def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.monotonic()
        failed = False
        try:
            yield from behavior(request, context)
        except GeneratorExit:  # the caller went away (cancelled): grpc closes the stream
            _cancelled(context)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _record(method, context, failed, started)

    return timed


class AioMetricsInterceptor(grpc.aio.ServerInterceptor):
    """The same for grpc's asyncio server: its behaviours are coroutines, its response streams async
    generators (or coroutines that `context.write`)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or is_infrastructure(method):
            return handler

        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            if response_streaming and inspect.isasyncgenfunction(behavior):
                return _timed_async_stream(behavior, method)
            return _timed_coroutine(behavior, method)

        return wrap_handler(handler, wrap)


def _timed_coroutine(behavior: Behavior, method: str) -> Behavior:
    async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.monotonic()
        failed = False
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:
            _cancelled(context)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _record(method, context, failed, started)

    return timed


def _timed_async_stream(behavior: Behavior, method: str) -> Behavior:
    async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.monotonic()
        failed = False
        try:
            async for response in behavior(request, context):
                yield response
        except (asyncio.CancelledError, GeneratorExit):  # the caller went away
            _cancelled(context)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _record(method, context, failed, started)

    return timed


def _cancelled(context: Any) -> None:
    if _code(context) in (None, grpc.StatusCode.OK):
        context.set_code(grpc.StatusCode.CANCELLED)


# The asyncio server's context may give the code as grpc's integer.
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code(context: Any) -> grpc.StatusCode | None:
    # grpc's servers have ServicerContext.code(); some typings of grpc lack it.
    code = getattr(context, "code", None)
    found = code() if code is not None else None
    if isinstance(found, int):
        return _BY_VALUE.get(found, grpc.StatusCode.UNKNOWN)
    return found if isinstance(found, grpc.StatusCode) else None


def _record(method: str, context: Any, failed: bool, started: float) -> None:
    code = _code(context)
    if code is None or (failed and code is grpc.StatusCode.OK):
        # No status chosen: a normal return is OK; an exception nobody mapped reaches the caller as UNKNOWN.
        code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    handled, seconds = _children(method, code)
    handled.inc()
    seconds.observe(time.monotonic() - started)


# The label children of each (method, code) seen, resolved once: `labels()` takes the metric's lock and
# builds its key on every call (issue 12). Bounded like the labels themselves: served methods x codes.
_CHILDREN: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}


def _children(method: str, code: grpc.StatusCode) -> tuple[Any, Any]:
    found = _CHILDREN.get((method, code))
    if found is None:
        found = (GRPC_HANDLED.labels(method, code.name), GRPC_HANDLING_SECONDS.labels(method))
        _CHILDREN[(method, code)] = found  # a race resolves it twice, harmlessly
    return found
