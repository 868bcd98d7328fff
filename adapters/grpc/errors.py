"""The error-mapping server interceptor: every exception a servicer raises becomes a proper status.

Domain errors become the status `adapters.grpc.status` gives them (a precise code, an ErrorInfo, the
BadRequest of a ValidationError); that includes the outages the adapters translate into domain errors
(StorageUnavailableError, AccountingUnavailableError: UNAVAILABLE). Anything else is a bug of ours: it
is logged with its traceback and the caller gets INTERNAL with a generic message, so no internal detail
(or secret) leaks, and never the UNKNOWN that grpc would otherwise send.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
from grpc_status import rpc_status

from adapters.grpc._handlers import Behavior, HandlerInterceptor, is_non_blocking, mark_non_blocking, wrap_handler
from adapters.grpc.status import internal_status, status_for_error
from core.errors import QbsyncError

log = logging.getLogger(__name__)


class ErrorMappingInterceptor(HandlerInterceptor):
    """Put it first in the server's interceptors, so that it also sees what later ones raise."""

    def intercept_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        def wrap(behavior: Behavior, response_streaming: bool) -> Behavior:
            if is_non_blocking(behavior):
                return _guard_non_blocking(behavior, method)
            return _guard_stream(behavior, method) if response_streaming else _guard_unary(behavior, method)

        return wrap_handler(handler, wrap)


def _guard_unary(behavior: Behavior, method: str) -> Behavior:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as exc:  # the point: nothing leaves unmapped
            abort_for(context, exc, method)

    return guarded


def _guard_stream(behavior: Behavior, method: str) -> Behavior:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as exc:  # also after some responses were sent
            abort_for(context, exc, method)

    return guarded


def _guard_non_blocking(behavior: Behavior, method: str) -> Behavior:
    """A stream that sends its responses later (watch.WatchHub maps the errors of those itself)."""

    def guarded(request: Any, context: grpc.ServicerContext, send: Any) -> None:
        try:
            behavior(request, context, send)  # type: ignore[call-arg]
        except Exception as exc:  # the stream's start: reading the job, the stream cap
            abort_for(context, exc, method)

    return mark_non_blocking(guarded)


def _status_already_chosen(context: grpc.ServicerContext) -> bool:
    # grpc's sync server has ServicerContext.code(); some typings of grpc lack it.
    code = getattr(context, "code", None)
    return code is not None and code() not in (None, grpc.StatusCode.OK)


def abort_for(context: grpc.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """Ends the call with the status `exc` deserves (context.abort* always raise)."""
    if _status_already_chosen(context):
        # context.abort raised a bare Exception after choosing the status: keep that status.
        raise exc
    if isinstance(exc, QbsyncError):
        status = status_for_error(exc)
    else:
        # Only the method and the traceback: never the request or its metadata, which hold secrets.
        log.exception("unexpected error serving %s", method)
        status = internal_status()
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("context.abort_with_status returned")  # pragma: no cover
