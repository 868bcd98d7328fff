"""ChainedInterceptor wraps each method's handler as grpc's own interceptor pipeline would, once per method."""

from __future__ import annotations

from typing import Any

import grpc
from grpc import _interceptor

from adapters.grpc._handlers import Behavior, ChainedInterceptor, HandlerInterceptor, wrap_handler


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _Recording(HandlerInterceptor):
    """Appends its name to a shared list before and after the behaviour it wraps."""

    def __init__(self, name: str, calls: list[str], *, infrastructure: bool = False) -> None:
        super().__init__()
        self.name, self.calls, self.intercepts_infrastructure = name, calls, infrastructure
        self.wrapped = 0

    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        self.wrapped += 1

        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            def recorded(request: Any, context: Any) -> Any:
                self.calls.append(f"{self.name}>")
                try:
                    return behavior(request, context)
                finally:
                    self.calls.append(f"<{self.name}")

            return recorded

        return wrap_handler(handler, wrap)


def _servicer_handler(calls: list[str]) -> grpc.RpcMethodHandler:
    def behavior(request: Any, context: Any) -> Any:
        calls.append("servicer")
        return request

    return grpc.unary_unary_rpc_method_handler(behavior)


def _run(interceptors: list[grpc.ServerInterceptor], method: str, handler: Any) -> Any:
    wrapped = _interceptor.service_pipeline(interceptors).execute(lambda _details: handler, _Details(method))
    return wrapped.unary_unary("request", None)


def test_a_chain_runs_its_interceptors_in_the_order_grpcs_pipeline_runs_them() -> None:
    method = "/qbsync.v1.SyncService/GetSyncStatus"
    separate: list[str] = []
    _run([_Recording(n, separate) for n in "abc"], method, _servicer_handler(separate))
    chained: list[str] = []
    answer = _run([ChainedInterceptor([_Recording(n, chained) for n in "abc"])], method, _servicer_handler(chained))
    assert answer == "request"
    assert chained == separate == ["a>", "b>", "c>", "servicer", "<c", "<b", "<a"]


def test_a_chain_wraps_each_method_once_and_keeps_each_interceptors_rule_for_grpcs_own_services() -> None:
    calls: list[str] = []
    outer, inner = _Recording("outer", calls), _Recording("inner", calls, infrastructure=True)
    chain = ChainedInterceptor([outer, inner])
    handler = _servicer_handler(calls)
    for _ in range(3):
        _run([chain], "/qbsync.v1.SyncService/GetSyncStatus", handler)
    assert (outer.wrapped, inner.wrapped) == (1, 1)

    calls.clear()
    _run([chain], "/grpc.health.v1.Health/Check", _servicer_handler(calls))
    assert calls == ["inner>", "servicer", "<inner"]  # only the one that intercepts grpc's own services
