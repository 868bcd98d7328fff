"""python-quickbooks' client, made safe for a long-running service.

`QuickBooks` (python-quickbooks 0.9.12) sends no timeout, turns a 429 or a 5xx without a JSON Fault into
`QuickbooksException(10000)` with the status lost, and hides the response headers (`Retry-After`,
`intuit_tid`). `QuickBooksClient` overrides `process_request` — the one place every HTTP call passes — to
send through the company's request limiter with a timeout, and to classify the raw response *before* the
library parses it: throttling, server errors and expired tokens become the exceptions below, which the
retry loop (`calls.py`) understands. Fault bodies of 4xx answers are left to the library, which routes
them on their code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from quickbooks import QuickBooks

from adapters.quickbooks.qbo import metrics
from adapters.quickbooks.qbo.http import Answer, ConnectFailed, ConnectTimeout, HttpError, HttpSession, ReadTimeout
from adapters.quickbooks.qbo.limiter import RequestLimiter
from core.connection_rules import is_loopback
from core.errors import QbsyncError

PRODUCTION_API = "https://quickbooks.api.intuit.com/v3"
SANDBOX_API = "https://sandbox-quickbooks.api.intuit.com/v3"
MINOR_VERSION = 75  # versions below 75 are ignored by QBO since August 2025


class TransportError(Exception):
    """A request that did not get a usable answer. `maybe_sent` is True when QuickBooks may have received
    (and committed) it: a read timeout, a reset after sending, a 5xx."""

    def __init__(self, message: str, *, maybe_sent: bool, intuit_tid: str = "") -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.intuit_tid = intuit_tid


class ServerError(TransportError):
    """HTTP 5xx: QuickBooks failed, perhaps after committing."""

    def __init__(self, status: int, detail: str, intuit_tid: str) -> None:
        super().__init__(f"QuickBooks answered HTTP {status}: {detail}", maybe_sent=True, intuit_tid=intuit_tid)
        self.status = status


class Throttled(Exception):
    """HTTP 429 (Fault 3001 "ThrottleExceeded", as JSON, XML or an empty body): nothing was written."""

    def __init__(self, retry_after: float | None, intuit_tid: str) -> None:
        super().__init__("QuickBooks throttled the request")
        self.retry_after = retry_after
        self.intuit_tid = intuit_tid


E = TypeVar("E", bound=QbsyncError)


def tagged(error: E, intuit_tid: str) -> E:
    """`error` carrying Intuit's transaction id of the answer behind it (metadata `intuit_tid`), so that a
    job's error, its log line and a support ticket to Intuit can name the request. An id already there
    (from an earlier answer) is kept."""
    if intuit_tid:
        error.metadata.setdefault("intuit_tid", intuit_tid)
    return error


class Unauthorized(Exception):
    """HTTP 401: the access token was refused (expired or revoked)."""


@dataclass(frozen=True)
class FaultEntry:
    """One `Fault.Error` of a QBO answer; `element` (when QBO gives it) names the field at fault."""

    code: str
    message: str
    detail: str
    element: str = ""


class QboFault(Exception):
    """A 4xx answer carrying a QBO `Fault`: kept whole (python-quickbooks keeps only the first error and
    drops `element`), so that nothing QuickBooks said is lost."""

    def __init__(self, status: int, errors: list[FaultEntry], intuit_tid: str) -> None:
        self.status = status
        self.errors = errors
        self.intuit_tid = intuit_tid
        super().__init__("; ".join(f"{e.code} {e.message}: {e.detail}" for e in errors) or f"HTTP {status}")

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors}

    @property
    def first(self) -> FaultEntry:
        return self.errors[0] if self.errors else FaultEntry("", f"HTTP {self.status}", "")


def api_base_url(api_base_url: str, environment: str) -> str:
    """The API root for a connection: its own override, else Intuit's host; only the exact "sandbox" is
    the sandbox (QUICKBOOKS.md: "Sandbox" silently means production at Intuit)."""
    if api_base_url:
        return api_base_url.rstrip("/")
    return SANDBOX_API if environment == "sandbox" else PRODUCTION_API


def check_transport_security(url: str) -> None:
    """Plain HTTP only to this machine (the emulator, a test double): tokens never cross a network in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        return
    raise ValueError(
        f"refusing to send QuickBooks tokens to {url!r}: use https (plain http is allowed only for "
        "127.0.0.1, ::1 or localhost)"
    )


@dataclass
class LastResponse:
    """What the library does not keep: the status and Intuit's transaction id of the last answer."""

    status: int = 0
    intuit_tid: str = ""


class QuickBooksClient(QuickBooks):
    """One company's python-quickbooks client over the adapter's own HTTP session (http.py).

    Why not the library's `OAuth2Session`: it refuses http:// unless the process-wide
    OAUTHLIB_INSECURE_TRANSPORT is set, which would weaken every connection of the process; a bearer
    header is all QBO needs, and `check_transport_security` refuses non-loopback plain HTTP instead.
    The access token is read at send time from `access_token`, so a refresh needs no new client.
    """

    def __init__(
        self,
        *,
        realm_id: str,
        base_url: str,
        access_token: Callable[[], str],
        limiter: RequestLimiter,
        timeout: float,
        session: HttpSession | None = None,
    ) -> None:
        # QuickBooks.__new__ takes keyword arguments only and does the set-up; nothing to call here.
        check_transport_security(base_url)
        self.company_id = realm_id
        self.minorversion = MINOR_VERSION
        self.use_decimal = True  # amounts parsed as Decimal, never float
        self.sandbox = False
        self.api_url_v3 = base_url
        self.sandbox_api_url_v3 = base_url
        self.session = session or HttpSession(base_url)  # type: ignore[assignment]
        self._access_token = access_token
        self._limiter = limiter
        self._timeout = timeout
        self.last = LastResponse()

    def __new__(cls, **kwargs: Any) -> QuickBooksClient:
        # The base class' __new__ would warn about the minor version and may start an OAuth session.
        return object.__new__(cls)

    def process_request(
        self, request_type: str, url: str, headers: Any = "", params: Any = "", data: Any = ""
    ) -> Answer:
        headers = dict(headers or {})
        headers["Authorization"] = "Bearer " + self._access_token()
        operation = metrics.qbo_operation(request_type, url)  # a bounded label: no id, no query
        waiting = time.monotonic()
        # A batch counts apart too (QBO's 40 batch requests a minute per company): the limiter's batch window.
        with self._limiter.acquire(str(self.company_id), batch=operation == "POST batch"):
            sent = time.monotonic()
            metrics.QBO_LIMITER_WAIT_SECONDS.observe(sent - waiting)
            try:
                response = self._send(request_type, url, headers, params, data)
            except TransportError:
                metrics.QBO_REQUESTS.labels(operation, "none").inc()  # no answer came
                metrics.QBO_REQUEST_SECONDS.labels(operation).observe(time.monotonic() - sent)
                raise
        metrics.QBO_REQUESTS.labels(operation, str(response.status_code)).inc()
        metrics.QBO_REQUEST_SECONDS.labels(operation).observe(time.monotonic() - sent)
        tid = response.headers.get("intuit_tid", "")
        self.last = LastResponse(response.status_code, tid)
        if response.status_code == 429 or _is_throttle_fault(response):
            metrics.QBO_THROTTLED.labels(operation).inc()
            raise Throttled(_retry_after(response), tid)
        if response.status_code == 401:
            raise Unauthorized()
        if response.status_code >= 500:
            raise ServerError(response.status_code, _short(response.text), tid)
        if response.status_code >= 400:
            raise QboFault(response.status_code, _fault_entries(response), tid)
        return response

    def _send(self, request_type: str, url: str, headers: Any, params: Any, data: Any) -> Answer:
        session: HttpSession = self.session  # type: ignore[assignment]
        try:
            return session.request(request_type, url, headers=headers, params=params, data=data, timeout=self._timeout)
        except ConnectFailed as exc:  # refused, or the name did not resolve: QuickBooks never saw it
            raise TransportError(f"QuickBooks connection failed: {type(exc).__name__}", maybe_sent=False) from exc
        except ConnectTimeout as exc:
            message = f"could not connect to QuickBooks: {type(exc).__name__}"
            raise TransportError(message, maybe_sent=False) from exc
        except ReadTimeout as exc:
            raise TransportError(f"QuickBooks did not answer within {self._timeout:g}s", maybe_sent=True) from exc
        except (HttpError, OSError) as exc:
            # A reset or an aborted answer may have reached QuickBooks; a proxy that refused did not.
            sent = not _never_connected(exc)
            raise TransportError(f"QuickBooks connection failed: {type(exc).__name__}", maybe_sent=sent) from exc


def _fault_entries(response: Answer) -> list[FaultEntry]:
    try:
        body = json.loads(response.text)
        errors = body.get("Fault", {}).get("Error", [])
        return [
            FaultEntry(
                str(e.get("code", "")), str(e.get("Message", "")), str(e.get("Detail", "")), str(e.get("element", ""))
            )
            for e in errors
        ]
    except (ValueError, AttributeError):
        return [FaultEntry("", f"HTTP {response.status_code}", _short(response.text))]


def _never_connected(exc: Exception) -> bool:
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "Connection refused", "Name or service not known"))


def _retry_after(response: Answer) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare for QBO; the default back-off applies


def _is_throttle_fault(response: Answer) -> bool:
    """QBO has been seen to report throttling as a Fault 3001 with another status."""
    if response.status_code < 400 or "3001" not in response.text:
        return False
    try:
        errors = json.loads(response.text).get("Fault", {}).get("Error", [])
    except (ValueError, AttributeError):
        return "ThrottleExceeded" in response.text
    return any(str(e.get("code")) == "3001" for e in errors)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
