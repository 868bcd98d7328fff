"""The metrics interceptors over real gRPC on loopback: grpc's thread-pool server (`MetricsInterceptor`, as
qbsync serves today) and its asyncio server (`AioMetricsInterceptor`), each with a unary call that
succeeds, one that aborts, one that crashes, a response stream and (thread pool) non-blocking streams ended
by the server or by the caller: every call counted once by method and code, its latency observed once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from adapters.grpc._handlers import mark_non_blocking
from adapters.grpc.errors import ErrorMappingInterceptor
from adapters.grpc.metrics import AioMetricsInterceptor, MetricsInterceptor


def eventually(check: Any, what: str, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def handled(method: str, code: str) -> float:
    return REGISTRY.get_sample_value("qbsync_grpc_server_handled_total", {"method": method, "code": code}) or 0.0


def observed(method: str) -> float:
    return REGISTRY.get_sample_value("qbsync_grpc_server_handling_seconds_count", {"method": method}) or 0.0


def sync_handler(service: str) -> grpc.GenericRpcHandler:
    def ok(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("abort returned")

    def crash(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise ValueError("a bug")

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from (b"1", b"2", b"3")

    @mark_non_blocking
    def later(request: bytes, context: grpc.ServicerContext, send: Any) -> None:
        # As WatchSyncJob: returns at once; sends from another thread, or never (the caller cancels).
        if request == b"end":
            threading.Timer(0.05, lambda: (send(b"1"), send(None))).start()
        elif request == b"fail":
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            threading.Timer(0.05, lambda: send(None)).start()

    return grpc.method_handlers_generic_handler(
        service,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Crash": grpc.unary_unary_rpc_method_handler(crash),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Later": grpc.unary_stream_rpc_method_handler(later),
        },
    )


def aio_handler(service: str) -> grpc.GenericRpcHandler:
    async def ok(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return request

    async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("abort returned")

    async def crash(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise ValueError("a bug")

    async def stream(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        for item in (b"1", b"2", b"3"):
            yield item

    return grpc.method_handlers_generic_handler(
        service,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Crash": grpc.unary_unary_rpc_method_handler(crash),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )


def expect_counts(service: str, before: dict[str, float], crash: str = "UNKNOWN") -> None:
    assert handled(f"/{service}/Ok", "OK") == before["ok"] + 2
    assert handled(f"/{service}/Refuse", "NOT_FOUND") == before["refuse"] + 1
    assert handled(f"/{service}/Crash", crash) == before["crash"] + 1
    assert handled(f"/{service}/Stream", "OK") == before["stream"] + 1
    assert observed(f"/{service}/Ok") == before["ok_seconds"] + 2
    assert observed(f"/{service}/Stream") == before["stream_seconds"] + 1


def counts(service: str, crash: str = "UNKNOWN") -> dict[str, float]:
    return {
        "ok": handled(f"/{service}/Ok", "OK"),
        "refuse": handled(f"/{service}/Refuse", "NOT_FOUND"),
        "crash": handled(f"/{service}/Crash", crash),
        "stream": handled(f"/{service}/Stream", "OK"),
        "ok_seconds": observed(f"/{service}/Ok"),
        "stream_seconds": observed(f"/{service}/Stream"),
    }


def test_the_thread_pool_servers_calls_are_counted_by_method_and_code() -> None:
    service = f"test{uuid.uuid4().hex[:8]}.Probe"
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[MetricsInterceptor(), ErrorMappingInterceptor()]
    )
    server.add_generic_rpc_handlers((sync_handler(service),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    before = counts(service, crash="INTERNAL")  # the error mapping inside it makes a crash INTERNAL
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary(f"/{service}/Ok")(b"hi", timeout=5) == b"hi"
            assert channel.unary_unary(f"/{service}/Ok")(b"again", timeout=5) == b"again"
            for name, code in (("Refuse", grpc.StatusCode.NOT_FOUND), ("Crash", grpc.StatusCode.INTERNAL)):
                with pytest.raises(grpc.RpcError) as failed:
                    channel.unary_unary(f"/{service}/{name}")(b"", timeout=5)
                assert failed.value.code() is code
            assert list(channel.unary_stream(f"/{service}/Stream")(b"", timeout=5)) == [b"1", b"2", b"3"]
            # Non-blocking streams: ended by the server (OK, or the status it chose), or by the caller.
            later = channel.unary_stream(f"/{service}/Later")
            assert list(later(b"end", timeout=5)) == [b"1"]
            with pytest.raises(grpc.RpcError) as failed:
                list(later(b"fail", timeout=5))
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as expired:
                list(later(b"never", timeout=0.3))
            assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            watching = later(b"never", timeout=5)
            time.sleep(0.1)
            watching.cancel()
        method = f"/{service}/Later"
        eventually(lambda: handled(method, "CANCELLED") == 2, "the caller-ended streams were not counted")
        assert (handled(method, "OK"), handled(method, "UNAVAILABLE"), observed(method)) == (1, 1, 4)
    finally:
        server.stop(0).wait()
    expect_counts(service, before, crash="INTERNAL")


def test_the_asyncio_servers_calls_are_counted_by_method_and_code() -> None:
    service = f"test{uuid.uuid4().hex[:8]}.Probe"

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[AioMetricsInterceptor()])
        server.add_generic_rpc_handlers((aio_handler(service),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert await channel.unary_unary(f"/{service}/Ok")(b"hi", timeout=5) == b"hi"
                assert await channel.unary_unary(f"/{service}/Ok")(b"again", timeout=5) == b"again"
                for name, code in (("Refuse", grpc.StatusCode.NOT_FOUND), ("Crash", grpc.StatusCode.UNKNOWN)):
                    with pytest.raises(grpc.aio.AioRpcError) as failed:
                        await channel.unary_unary(f"/{service}/{name}")(b"", timeout=5)
                    assert failed.value.code() is code
                got = [item async for item in channel.unary_stream(f"/{service}/Stream")(b"", timeout=5)]
                assert got == [b"1", b"2", b"3"]
        finally:
            await server.stop(0)

    before = counts(service)
    asyncio.run(scenario())
    expect_counts(service, before)
