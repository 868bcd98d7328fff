"""The metrics interceptors over real gRPC on loopback: grpc's thread-pool server (`MetricsInterceptor`, as
qbsync serves today) and its asyncio server (`AioMetricsInterceptor`), each with a unary call that
succeeds, one that aborts, one that crashes and a response stream: every call counted once by method and
code, its latency observed once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from adapters.grpc.metrics import AioMetricsInterceptor, MetricsInterceptor


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

    return grpc.method_handlers_generic_handler(
        service,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Crash": grpc.unary_unary_rpc_method_handler(crash),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
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


def expect_counts(service: str, before: dict[str, float]) -> None:
    assert handled(f"/{service}/Ok", "OK") == before["ok"] + 2
    assert handled(f"/{service}/Refuse", "NOT_FOUND") == before["refuse"] + 1
    assert handled(f"/{service}/Crash", "UNKNOWN") == before["crash"] + 1
    assert handled(f"/{service}/Stream", "OK") == before["stream"] + 1
    assert observed(f"/{service}/Ok") == before["ok_seconds"] + 2
    assert observed(f"/{service}/Stream") == before["stream_seconds"] + 1


def counts(service: str) -> dict[str, float]:
    return {
        "ok": handled(f"/{service}/Ok", "OK"),
        "refuse": handled(f"/{service}/Refuse", "NOT_FOUND"),
        "crash": handled(f"/{service}/Crash", "UNKNOWN"),
        "stream": handled(f"/{service}/Stream", "OK"),
        "ok_seconds": observed(f"/{service}/Ok"),
        "stream_seconds": observed(f"/{service}/Stream"),
    }


def test_the_thread_pool_servers_calls_are_counted_by_method_and_code() -> None:
    service = f"test{uuid.uuid4().hex[:8]}.Probe"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[MetricsInterceptor()])
    server.add_generic_rpc_handlers((sync_handler(service),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    before = counts(service)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary(f"/{service}/Ok")(b"hi", timeout=5) == b"hi"
            assert channel.unary_unary(f"/{service}/Ok")(b"again", timeout=5) == b"again"
            for name, code in (("Refuse", grpc.StatusCode.NOT_FOUND), ("Crash", grpc.StatusCode.UNKNOWN)):
                with pytest.raises(grpc.RpcError) as failed:
                    channel.unary_unary(f"/{service}/{name}")(b"", timeout=5)
                assert failed.value.code() is code
            assert list(channel.unary_stream(f"/{service}/Stream")(b"", timeout=5)) == [b"1", b"2", b"3"]
    finally:
        server.stop(0).wait()
    expect_counts(service, before)


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
