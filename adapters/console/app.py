"""The web console (SPEC.md section 12): an admin of one tenant signs in with an API key and, for that tenant,
sees the sync errors (Retry, Dismiss), the QuickBooks connection's health (Reconnect: Intuit's OAuth flow,
this console's `/oauth/callback` completing it) and the recent jobs with their "View in QuickBooks" links.

Starlette + Jinja2, plain HTML forms. It calls the same use cases as the gRPC API, in this process, as the
signed-in key's principal: every rule (permissions, states, tenants) is theirs, and what they refuse is
shown as a message on the page.

Sessions: Starlette's SessionMiddleware, a cookie signed with the configured secret (SameSite=Lax, HttpOnly,
Secure when the console is served over https). It holds the key's *id* and the tenant, never the key: each
request looks the key up again (`ApiKeys.principal_of`), so a revoked or expired key ends its sessions at
once. Every change is a POST carrying the session's CSRF token (compared in constant time); the OAuth
callback is a GET, as Intuit sends it, and is guarded by the OAuth `state` the core checks.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from core.auth import ApiKeys, presented_key_id
from core.connection import QuickBooksConnection
from core.connections_service import ConnectionService
from core.domain import Permission, Principal, SyncJob, SyncJobState
from core.errors import (
    AccountingUnavailableError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    QbsyncError,
    StorageUnavailableError,
    TooManyFailedAuthenticationsError,
    UnauthenticatedError,
    ValidationError,
)
from core.service import SyncService

log = logging.getLogger(__name__)

T = TypeVar("T")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SESSION_COOKIE = "qbsync_console"
SESSION_MAX_AGE_SECONDS = 8 * 60 * 60  # a working day; signing in again is cheap
RECENT_JOBS = 20
ERRORS_PAGE = 50
CALLBACK_PATH = "/oauth/callback"

# Nothing but this console's own pages and inline styles: no script, no frame, no plug-in.
_SECURITY_HEADERS = {
    # No form-action: the Reconnect form's answer redirects to Intuit, whose address depends on the environment.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleConfig:
    """`session_secret` signs the session cookie; `public_url` is where browsers reach this console (its
    scheme decides the cookie's Secure flag, and `public_url + /oauth/callback` is the OAuth redirect URI
    that must be registered with the Intuit app)."""

    session_secret: str
    public_url: str

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + CALLBACK_PATH

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    def __repr__(self) -> str:
        return f"ConsoleConfig(public_url={self.public_url!r})"  # never the secret


@dataclass(frozen=True)
class JobRow:
    """A job as a console row: what the template shows, the QuickBooks link resolved when there is one."""

    job: SyncJob
    quickbooks_url: str = ""

    @property
    def error_message(self) -> str:
        return self.job.error.message if self.job.error else ""

    @property
    def error_reason(self) -> str:
        return self.job.error.reason if self.job.error else ""


class Console:
    """The console's request handlers over the use cases."""

    def __init__(self, sync: SyncService, connections: ConnectionService, keys: ApiKeys, config: ConsoleConfig):
        self._sync = sync
        self._connections = connections
        self._keys = keys
        self._config = config

    # --- signing in and out ------------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        if await self._signed_in(request) is not None:
            return _see_other("/")
        return self._render(request, "signin.html", {})

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form.get("csrf")):
            return _forbidden()
        key = str(form.get("api_key") or "").strip()
        peer = request.client.host if request.client else ""
        if not key:
            return self._render(request, "signin.html", {"problem": "api_key: enter an API key"}, 400)
        try:
            principal = await run_in_threadpool(self._keys.authenticate, key, peer)
        except TooManyFailedAuthenticationsError as exc:
            return self._render(request, "signin.html", {"problem": exc.message}, 429)
        except UnauthenticatedError as exc:  # the key is logged by id and peer by ApiKeys, never in full
            return self._render(request, "signin.html", {"problem": exc.message}, 401)
        if not principal.can(Permission.ADMIN):
            log.warning(
                "console sign-in refused: key id %s lacks the admin permission",
                presented_key_id(key),
                extra={"key_id": presented_key_id(key), "peer": peer},
            )
            problem = "this API key lacks the 'admin' permission: the console needs an admin key"
            return self._render(request, "signin.html", {"problem": problem}, 403)
        # A new session, new CSRF token: nothing of the anonymous session survives signing in (fixation).
        request.session.clear()
        request.session.update(
            {"key_id": presented_key_id(key), "tenant": principal.tenant_id, "csrf": secrets.token_urlsafe(32)}
        )
        log.info(
            "console sign-in: tenant %s, key id %s",
            principal.tenant_id,
            presented_key_id(key),
            extra={"tenant": principal.tenant_id, "key_id": presented_key_id(key), "peer": peer},
        )
        return _see_other("/")

    async def signout(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form.get("csrf")):
            return _forbidden()
        request.session.clear()
        return _see_other("/signin")

    # --- the tenant's page ---------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        principal = await self._signed_in(request)
        if principal is None:
            return _see_other("/signin")
        page = await run_in_threadpool(self._home_context, principal)
        return self._render(request, "home.html", page)

    def _home_context(self, principal: Principal) -> dict[str, Any]:
        problems: list[str] = []
        connection = _attempt(lambda: self._connections.get_connection(principal), problems, none_on=NotFoundError)
        every = _attempt(lambda: self._connections.list_connections(principal), problems) or []
        failed = _attempt(lambda: self._sync.list_errors(principal, ERRORS_PAGE, "")[0], problems) or []
        recent = _attempt(lambda: self._sync.recent_jobs(principal, RECENT_JOBS), problems) or []
        return {
            "tenant": principal.tenant_id,
            "connection": connection_view(connection),
            # SPEC §10: the branches with a company of their own, each with its health (reconnected through the
            # API or `qbsync connect --branch`: the console's OAuth flow reconnects the default connection).
            "branches": [{"branch_id": c.branch_id, **(connection_view(c) or {})} for c in every if c.branch_id],
            "errors": [JobRow(job) for job in failed],
            "recent": [JobRow(job, self._quickbooks_url(principal, job)) for job in recent],
            "problems": problems,
        }

    def _quickbooks_url(self, principal: Principal, job: SyncJob) -> str:
        """The "View in QuickBooks" link of a job's record once it is in QuickBooks, else ""."""
        if job.state is not SyncJobState.SUCCEEDED:
            return ""
        try:
            return self._sync.get_link(principal, job.target)
        except QbsyncError:  # not in QuickBooks (any more), no connection, or no quickbooks.view permission
            return ""

    # --- actions -------------------------------------------------------------------------------------

    async def retry(self, request: Request) -> Response:
        return await self._job_action(request, self._sync.retry, "{name} is queued again")

    async def dismiss(self, request: Request) -> Response:
        return await self._job_action(request, self._sync.dismiss, "{name} was dismissed")

    async def _job_action(self, request: Request, use_case: Callable[[Principal, str], SyncJob], done: str) -> Response:
        principal, form = await self._signed_in_post(request)
        if principal is None:
            return _forbidden() if form is None else _see_other("/signin")
        name = str(form.get("name") or "")
        try:
            await run_in_threadpool(use_case, principal, name)
        except QbsyncError as exc:
            _flash(request, "error", f"{name}: {_said(exc)}")
        else:
            _flash(request, "info", done.format(name=name))
        return _see_other("/")

    async def reconnect(self, request: Request) -> Response:
        """Starts Intuit's OAuth flow for the tenant (in the environment it is connected to, if any) and sends
        the browser to Intuit; Intuit sends it back to `callback`."""
        principal, form = await self._signed_in_post(request)
        if principal is None:
            return _forbidden() if form is None else _see_other("/signin")

        def start() -> str:
            try:
                environment = self._connections.get_connection(principal).environment
            except NotFoundError:
                environment = ""  # the configured default
            url, _state = self._connections.get_authorization_url(principal, self._config.redirect_uri, environment)
            return url

        try:
            url = await run_in_threadpool(start)
        except QbsyncError as exc:
            _flash(request, "error", f"reconnect: {_said(exc)}")
            return _see_other("/")
        return RedirectResponse(url, status_code=303)

    async def callback(self, request: Request) -> Response:
        """Where Intuit sends the admin back: `code`, `state` and `realmId`, or `error` when consent was
        refused. The core checks `state` against the flow this tenant started (and uses it once)."""
        principal = await self._signed_in(request)
        if principal is None:
            return _see_other("/signin")
        query = request.query_params
        if query.get("error"):
            _flash(request, "error", f"QuickBooks did not connect: {query.get('error')}")
            return _see_other("/")
        try:
            connection = await run_in_threadpool(
                self._connections.complete_authorization,
                principal,
                query.get("code", ""),
                query.get("state", ""),
                query.get("realmId", ""),
                self._config.redirect_uri,
            )
        except QbsyncError as exc:
            _flash(request, "error", f"QuickBooks did not connect: {_said(exc)}")
        else:
            company = connection.company_name or f"company {connection.realm_id}"
            _flash(request, "info", f"connected to {company}")
        return _see_other("/")

    # --- sessions --------------------------------------------------------------------------------------

    async def _signed_in(self, request: Request) -> Principal | None:
        """The signed-in key's principal, looked up again now: None (and the session ended) when the key was
        revoked, expired, moved to another tenant or lost its admin permission since."""
        key_id, tenant = request.session.get("key_id"), request.session.get("tenant")
        if not key_id or not tenant:
            return None
        try:
            principal = await run_in_threadpool(self._keys.principal_of, key_id)
        except UnauthenticatedError:
            principal = None
        if principal is None or principal.tenant_id != tenant or not principal.can(Permission.ADMIN):
            request.session.clear()
            return None
        return principal

    async def _signed_in_post(self, request: Request) -> tuple[Principal | None, Any]:
        """(principal, form) of a POST; (None, None) when its CSRF token is wrong, (None, form) when the
        session is not signed in (any more)."""
        form = await request.form()
        if not self._csrf_ok(request, form.get("csrf")):
            return None, None
        return await self._signed_in(request), form

    def _csrf_ok(self, request: Request, sent: object) -> bool:
        expected = request.session.get("csrf")
        if not isinstance(sent, str) or not isinstance(expected, str) or not expected:
            return False
        return hmac.compare_digest(sent.encode(), expected.encode())

    def _render(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)  # the sign-in form's, until signing in
        flashes = request.session.pop("flash", [])
        return TEMPLATES.TemplateResponse(
            request, template, {**context, "csrf": request.session["csrf"], "flashes": flashes}, status_code=status
        )


def connection_view(connection: QuickBooksConnection | None) -> dict[str, Any] | None:
    """What the page shows of a connection: its health, never a token or secret."""
    if connection is None:
        return None
    return {
        "state": connection.state.value,
        "connected": connection.state.value == "CONNECTED",
        "company_name": connection.company_name,
        "realm_id": connection.realm_id,
        "connect_time": _when(connection.connect_time),
        "access_token_expires": _when(connection.access_token_expires),
        "refresh_token_expires": _when(connection.refresh_token_expires),
        "last_error": connection.last_error,
    }


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def _attempt(read: Callable[[], T], problems: list[str], *, none_on: type[QbsyncError] | None = None) -> T | None:
    """`read()`, or None with its refusal noted in `problems` (a key without the `read` permission still sees
    the rest of the page)."""
    try:
        return read()
    except QbsyncError as exc:
        if none_on is not None and isinstance(exc, none_on):
            return None
        if not isinstance(exc, PermissionDeniedError | FailedPreconditionError | NotFoundError):
            raise
        problems.append(exc.message)
        return None


def _said(exc: QbsyncError) -> str:
    """A refusal in words for the page: each violated field with what is wrong with it, else the message."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{v.field} {v.description}" for v in exc.violations)
    return exc.message


def _flash(request: Request, level: str, message: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), {"level": level, "message": message}]


def _see_other(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def _forbidden() -> Response:
    return PlainTextResponse("forbidden: the form's CSRF token is missing or stale; reload the page", 403)


class _SecurityHeaders:
    """Adds `_SECURITY_HEADERS` to every response (pure ASGI, so streaming and errors keep them too)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, with_headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """What a page shows when the database (or QuickBooks, for a read) is away: a plain 503, its message only
    (never a traceback, a statement or a URL)."""
    message = exc.message if isinstance(exc, QbsyncError) else "unavailable"
    log.warning("console page unavailable: %s", message, extra={"path": request.url.path})
    return PlainTextResponse(f"unavailable: {message}", 503, headers={"Retry-After": "5"})


def create_app(sync: SyncService, connections: ConnectionService, keys: ApiKeys, config: ConsoleConfig) -> Starlette:
    """The console as an ASGI app (served by uvicorn: `qbsync console`)."""
    console = Console(sync, connections, keys, config)
    routes = [
        Route("/", console.home, methods=["GET"]),
        Route("/signin", console.signin_page, methods=["GET"]),
        Route("/signin", console.signin, methods=["POST"]),
        Route("/signout", console.signout, methods=["POST"]),
        Route("/jobs/retry", console.retry, methods=["POST"]),
        Route("/jobs/dismiss", console.dismiss, methods=["POST"]),
        Route("/connection/reconnect", console.reconnect, methods=["POST"]),
        Route(CALLBACK_PATH, console.callback, methods=["GET"]),
    ]
    middleware = [
        Middleware(_SecurityHeaders),  # type: ignore[arg-type]
        Middleware(
            SessionMiddleware,  # type: ignore[arg-type]
            secret_key=config.session_secret,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_SECONDS,
            same_site="lax",  # sent on Intuit's redirect back (a top-level GET), never on a cross-site POST
            https_only=config.https,
        ),
    ]
    handlers = {StorageUnavailableError: _unavailable, AccountingUnavailableError: _unavailable}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)  # type: ignore[arg-type]
