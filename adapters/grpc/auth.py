"""Bearer-key authentication as a server interceptor (SPEC.md section 4).

Every RPC but health checking and reflection needs `authorization: Bearer <api key>` metadata. The
interceptor authenticates the key and runs the servicer with the caller's `Principal` in a context
variable (`current_principal()`); permissions are the core's business, not this module's.

The principal is set in a copy of the context that the handler (and, for a response stream, every
step of its iteration) runs in: grpc runs handlers on pool threads it reuses, and a value set on the
thread itself could outlive the call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any, Protocol

import grpc
from grpc_status import rpc_status

from adapters.grpc._handlers import Behavior, HandlerInterceptor, is_non_blocking, mark_non_blocking, wrap_handler
from adapters.grpc.status import status_for_error
from core.domain import Principal
from core.errors import QbsyncError, UnauthenticatedError

AUTHORIZATION = "authorization"


class Authenticate(Protocol):
    """Takes the presented key and the caller's address (`client_address`); returns the principal, or
    raises UnauthenticatedError or TooManyFailedAuthenticationsError (core.auth.ApiKeys.authenticate)."""

    def __call__(self, presented_key: str, peer: str) -> Principal: ...


def client_address(peer: str) -> str:
    """grpc's peer string without the client's port ("ipv4:10.0.0.7:53211" -> "ipv4:10.0.0.7"): failures
    are counted per address, and every new connection comes from a new port."""
    kind, separator, address = peer.partition(":")
    if not separator or kind not in ("ipv4", "ipv6"):
        return peer  # unix sockets and the like: the whole string is the address
    host, colon, port = address.rpartition(":")
    return f"{kind}:{host}" if colon and port.isdigit() else peer


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("qbsync_principal", default=None)


def current_principal() -> Principal:
    """The caller of the RPC being served. Fails closed: outside an authenticated call it raises."""
    principal = _principal.get()
    if principal is None:
        raise UnauthenticatedError("no authenticated caller")
    return principal


def presented_key(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The API key of `authorization: Bearer <key>`; raises UnauthenticatedError without one."""
    values = [value for key, value in metadata or () if key == AUTHORIZATION]
    if not values:
        raise UnauthenticatedError(
            "missing API key: send `authorization: Bearer <api key>` metadata",
            metadata={"metadata_key": AUTHORIZATION},
        )
    if len(values) > 1 or not isinstance(values[0], str):
        raise UnauthenticatedError("send exactly one `authorization` metadata entry")
    scheme, _, key = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthenticatedError("the `authorization` metadata must read `Bearer <api key>`")
    return key.strip()


class AuthInterceptor(HandlerInterceptor):
    """Callers need no key to ask whether the server is up or what it serves (grpc's own services)."""

    def __init__(self, authenticate: Authenticate) -> None:
        super().__init__()
        self._authenticate = authenticate

    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_handler(handler, self._wrap)

    def _wrap(self, behavior: Behavior, response_streaming: bool) -> Behavior:
        if is_non_blocking(behavior):
            # It only starts the stream (WatchSyncJob): what it sends later is read as the principal it
            # was given, not from this context.
            def authenticated_start(request: Any, context: grpc.ServicerContext, send: Any) -> Any:
                return self._call_context(context).run(behavior, request, context, send)  # type: ignore[call-arg]

            return mark_non_blocking(authenticated_start)
        if response_streaming:

            def authenticated_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                call_context = self._call_context(context)
                responses = call_context.run(behavior, request, context)
                try:
                    while True:
                        try:
                            response = call_context.run(next, responses)
                        except StopIteration:
                            return
                        yield response
                finally:
                    close = getattr(responses, "close", None)
                    if close is not None:  # lets the servicer's generator clean up when the call ends early
                        call_context.run(close)

            return authenticated_stream

        def authenticated(request: Any, context: grpc.ServicerContext) -> Any:
            return self._call_context(context).run(behavior, request, context)

        return authenticated

    def _call_context(self, context: grpc.ServicerContext) -> contextvars.Context:
        """A copy of the current context holding the caller's principal; aborts UNAUTHENTICATED,
        RESOURCE_EXHAUSTED after too many failures from the caller's address (with a RetryInfo), or
        UNAVAILABLE when the keys cannot be looked up (StorageUnavailableError)."""
        try:
            principal = self._authenticate(presented_key(context.invocation_metadata()), client_address(context.peer()))
        except QbsyncError as exc:
            # Answered here rather than left to ErrorMappingInterceptor, so that this interceptor is
            # safe in any order: an unauthenticated call must never reach the servicer, nor be UNKNOWN.
            context.abort_with_status(rpc_status.to_status(status_for_error(exc)))
            raise  # not reached: abort_with_status raises
        call_context = contextvars.copy_context()
        call_context.run(_principal.set, principal)
        return call_context
