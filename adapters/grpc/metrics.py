"""The metrics server interceptor: every call of qbsync's services counted by method and status code, and
its latency observed (`adapters.metrics`: qbsync_grpc_server_handled_total,
qbsync_grpc_server_handling_seconds).

Put it first (outermost) in the server's interceptors, so that it sees the status the error mapping chose
and the time authentication took. grpc's own services (health, reflection) are not counted: a load
balancer's health checks would drown the API's own calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc

from adapters import metrics
from adapters.grpc._handlers import Behavior, HandlerInterceptor, wrap_handler


class MetricsInterceptor(HandlerInterceptor):
    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            return _timed_stream(behavior, method) if response_streaming else _timed_unary(behavior, method)

        return wrap_handler(handler, wrap)


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
            if _code(context) is None:
                context.set_code(grpc.StatusCode.CANCELLED)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _record(method, context, failed, started)

    return timed


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    # grpc's sync server has ServicerContext.code(); some typings of grpc lack it.
    code = getattr(context, "code", None)
    return code() if code is not None else None


def _record(method: str, context: grpc.ServicerContext, failed: bool, started: float) -> None:
    code = _code(context)
    if code is None:
        # No status chosen: a normal return is OK; an exception nobody mapped reaches the caller as UNKNOWN.
        code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    metrics.GRPC_HANDLED.labels(method, name).inc()
    metrics.GRPC_HANDLING_SECONDS.labels(method).observe(time.monotonic() - started)
