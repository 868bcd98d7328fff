"""One company's API session: fresh tokens, bounded retries, and the line between "safe to retry" and
"the outcome is uncertain".

Every call the adapter makes runs through `CompanySession.call`:
- a token about to expire is refreshed first; a 401 refreshes once and retries (nothing was written);
- a 429 waits `Retry-After` (or the policy's default) when that is short, a bounded number of times,
  then gives up with `ThrottledError` so the worker reschedules the job instead of holding a thread;
- a 5xx, timeout or reset is retried with capped exponential back-off and jitter: reads always, writes
  because every write carries a `requestid` (the same on every retry, so QBO replays rather than
  writes twice). A create whose attempt may have committed first runs its `recover` look-up, so a QBO
  that does not honour the replay (QUICKBOOKS.md: *verify*) still gets no duplicate. When retries run
  out, the error says whether the write may have committed (`maybe_committed`, for people reading it);
  the core looks before it creates again anyway (a SyncRecord's `create_started`, R7).

A write carries the core's `WriteFence`, checked right before each of its HTTP requests is sent: inside
the request limiter's admission (so after any wait for it), after any token refresh, and on every resend
above. A worker that stalled anywhere in here past its lease therefore sends nothing more; the fence's
`LeaseLostError` leaves `call` as it is, not retried.

A small loop rather than tenacity (not a dependency of the project): the loop needs per-outcome state
(maybe-committed, the token that was refused) that tenacity would only carry through callbacks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from quickbooks.exceptions import QuickbooksException

from adapters.quickbooks.qbo import metrics
from adapters.quickbooks.qbo.limiter import RequestLimiter
from adapters.quickbooks.qbo.tokens import TokenKeeper
from adapters.quickbooks.qbo.transport import (
    QuickBooksClient,
    ServerError,
    Throttled,
    TransportError,
    Unauthorized,
    api_base_url,
    tagged,
)
from core.connection import QuickBooksConnection
from core.errors import AccountingUnavailableError, ReconnectRequiredError, ThrottledError
from core.ports import UNFENCED, WriteFence

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the adapter tries before handing a failure back to the worker (which retries jobs later)."""

    attempts: int = 4  # sends of one request facing 5xx/timeouts/resets
    backoff_base: float = 0.5  # seconds; doubled per attempt, with full jitter
    backoff_cap: float = 8.0
    throttle_retries: int = 3  # 429s absorbed per call
    throttle_default_wait: float = 60.0  # Intuit's advice when no Retry-After comes
    throttle_max_wait: float = 10.0  # a longer wait is left to the worker (ThrottledError)


class CompanySession:
    """A tenant's client plus its current connection; safe to share between threads."""

    def __init__(
        self,
        connection: QuickBooksConnection,
        *,
        tokens: TokenKeeper,
        limiter: RequestLimiter,
        policy: RetryPolicy,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connection = connection
        self._guard = threading.Lock()
        self._tokens = tokens
        self._limiter = limiter
        self._policy = policy
        self._sleep = sleep
        self._timeout = timeout
        self.client = QuickBooksClient(
            realm_id=connection.realm_id,
            base_url=api_base_url(connection.api_base_url, connection.environment),
            access_token=lambda: self.connection.access_token,
            limiter=limiter,
            timeout=timeout,
        )

    @property
    def connection(self) -> QuickBooksConnection:
        with self._guard:
            return self._connection

    def adopt(self, connection: QuickBooksConnection) -> None:
        """A newer stored connection (tokens refreshed by another process, settings changed)."""
        with self._guard:
            self._connection = connection

    def call(
        self,
        operation: Callable[[QuickBooksClient], T],
        *,
        write: bool,
        what: str,
        recover: Callable[[], T | None] | None = None,
        fence: WriteFence = UNFENCED,
    ) -> T:
        """Runs `operation` with the retries described in the module docstring. QBO Faults (`QboFault`)
        pass through for the caller to interpret, as does what `fence` raises (a write's requests are
        each sent only after `fence.check()` returned)."""
        client = self.client if fence is UNFENCED else self._fenced_client(fence)
        policy = self._policy
        failures = throttles = 0
        maybe_committed = False
        reauthorized = False
        while True:
            token = self._ensure_token()
            try:
                if maybe_committed and recover is not None:
                    found = recover()
                    if found is not None:
                        return found
                return operation(client)
            except Unauthorized:
                # The first 401 is routine (a token revoked or expired early): refreshed once, then retried.
                log.log(
                    logging.WARNING if reauthorized else logging.INFO,
                    "quickbooks refused the access token",
                    extra={
                        "tenant": self.connection.tenant_id,
                        "branch": self.connection.branch_id,
                        "operation": what,
                        "status": 401,
                        "will_retry": not reauthorized,
                    },
                )
                if reauthorized:
                    raise ReconnectRequiredError(
                        "QuickBooks refused a freshly refreshed access token: reconnect the company"
                    ) from None
                reauthorized = True
                metrics.QBO_RETRIES.labels("unauthorized").inc()
                self.adopt(self._tokens.fresh(self.connection, rejected_token=token))
            except Throttled as exc:
                throttles += 1
                wait = exc.retry_after if exc.retry_after is not None else policy.throttle_default_wait
                retrying = throttles <= policy.throttle_retries and wait <= policy.throttle_max_wait
                self._warn(
                    "quickbooks throttled the request",
                    what=what,
                    status=429,
                    attempt=throttles,
                    retrying=retrying,
                    intuit_tid=exc.intuit_tid,
                    wait=wait,
                )
                if not retrying:
                    raise tagged(
                        ThrottledError(
                            f"QuickBooks is limiting requests for this company ({what}); retrying in {wait:g}s",
                            retry_after_seconds=wait,
                        ),
                        exc.intuit_tid,
                    ) from None
                metrics.QBO_RETRIES.labels("throttled").inc()
                self._sleep(wait)
            except (TransportError, QuickbooksException) as exc:
                # QuickbooksException here is an answer the library could not parse (a 200 with a bad body).
                sent = exc.maybe_sent if isinstance(exc, TransportError) else True
                maybe_committed = maybe_committed or (write and sent)
                failures += 1
                retrying = failures < policy.attempts
                backoff = self._backoff(failures) if retrying else 0.0
                status = exc.status if isinstance(exc, ServerError) else None
                tid = getattr(exc, "intuit_tid", "")
                self._warn(
                    "quickbooks request failed",
                    what=what,
                    status=status,
                    attempt=failures,
                    retrying=retrying,
                    intuit_tid=tid,
                    wait=backoff,
                    error=_failure(exc),
                )
                if not retrying:
                    raise tagged(
                        AccountingUnavailableError(_unavailable_message(exc, what), maybe_committed=maybe_committed),
                        tid,
                    ) from None
                metrics.QBO_RETRIES.labels("server_error" if status is not None else "transport").inc()
                self._sleep(backoff)

    def _warn(
        self,
        event: str,
        *,
        what: str,
        status: int | None,
        attempt: int,
        retrying: bool,
        intuit_tid: str,
        wait: float,
        error: str = "",
    ) -> None:
        """One warning per failed request (not per retry loop, nor per byte): an outage or throttling shows
        in the log as it happens, with the operation, the HTTP status (None: no answer came) and the
        attempt. Never a token: the request itself is not logged."""
        fields: dict[str, object] = {
            "tenant": self.connection.tenant_id,
            "branch": self.connection.branch_id,
            "realm_id": self.connection.realm_id,
            "operation": what,
            "status": status,
            "attempt": attempt,
            "will_retry": retrying,
        }
        if error:
            fields["error"] = error
        if retrying:
            fields["retry_in_s"] = round(wait, 3)
        if intuit_tid:
            fields["intuit_tid"] = intuit_tid
        log.warning(event, extra=fields)

    def _fenced_client(self, fence: WriteFence) -> QuickBooksClient:
        """A client for one write: the session's HTTP connections, limiter and current token, with
        `fence` checked once each request is admitted, i.e. as late as a request can be stopped."""
        shared = self.client
        return QuickBooksClient(
            realm_id=str(shared.company_id),
            base_url=shared.api_url_v3,
            access_token=lambda: self.connection.access_token,
            limiter=_FencedLimiter(self._limiter, fence),
            timeout=self._timeout,
            session=shared.session,  # type: ignore[arg-type]
        )

    def batch_room(self) -> bool:
        """Whether a batch request sent now would find room in the company's batch window (the limiter's
        hint): when it would not, the adapter sends single requests instead of waiting for the window."""
        return self._limiter.batch_room(self.connection.realm_id)

    def _ensure_token(self) -> str:
        connection = self.connection
        fresh = self._tokens.fresh(connection)
        if fresh is not connection:
            self.adopt(fresh)
        return fresh.access_token

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._policy.backoff_cap, self._policy.backoff_base * (2 ** (failures - 1)))
        return random.uniform(0, ceiling)


class _FencedLimiter(RequestLimiter):
    """`limiter`'s admission, then `fence.check()`: a request that waited to be admitted past its fence
    is not sent (and gives its place back at once)."""

    def __init__(self, limiter: RequestLimiter, fence: WriteFence) -> None:
        self._limiter = limiter
        self._fence = fence

    @contextmanager
    def acquire(self, realm_id: str, *, batch: bool = False) -> Iterator[None]:
        with self._limiter.acquire(realm_id, batch=batch):
            self._fence.check()
            yield

    def batch_room(self, realm_id: str) -> bool:
        return self._limiter.batch_room(realm_id)


def _failure(exc: Exception) -> str:
    """What went wrong with a request, for the log: an HTTP status says it, else the transport's words."""
    if isinstance(exc, ServerError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TransportError):
        return str(exc)
    return "an answer that could not be read"


def _unavailable_message(exc: Exception, what: str) -> str:
    detail = _failure(exc)
    tid = getattr(exc, "intuit_tid", "")
    return f"QuickBooks could not be reached for {what} ({detail}{', intuit_tid ' + tid if tid else ''}); will retry"
