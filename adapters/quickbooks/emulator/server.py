"""The HTTP server: routing to the API, OAuth and admin handlers, over ``ThreadingHTTPServer`` on loopback.

HTTP/1.1 with keep-alive, like QBO, so a client's connection pool behaves as in production (and a dropped
connection surfaces as the same ``requests`` exceptions).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import admin
from .api import Response, handle_api, json_response, parse_call
from .faults import FaultBook
from .limits import Limits, RateLimiter
from .oauth import OAuthRegistry, discovery_document
from .shapes import JsonDict, dumps
from .store import Realm

LOG_CAPACITY = 50_000


@dataclass
class Settings:
    """Emulator-wide knobs, changed through ``POST /_emulator/settings``."""

    latency_ms: float = 0.0  # added to every API call while it counts as in flight (for benchmarks)
    throttle_format: str = "json"  # "xml" answers real throttling in XML, as QBO sometimes does
    retry_after: int | None = None  # send Retry-After on 429 (QBO usually does not)
    auth_required: bool = True  # False: any caller reaches any realm, realms are created on first use
    log_bodies: bool = False  # keep each API request's JSON body in the request log (what a client sent)


class EmulatorState:
    """Everything the emulator knows; shared by all request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fresh()

    def _fresh(self) -> None:
        """(Re)build every piece of state; the lock object itself survives a reset."""
        self.settings = Settings()
        self.limits = Limits()
        self.limiter = RateLimiter(self.limits)
        self.oauth = OAuthRegistry()
        self.faults = FaultBook()
        self.realms: dict[str, Realm] = {}
        self.log: deque[JsonDict] = deque(maxlen=LOG_CAPACITY)
        self.errors: list[str] = []  # tracebacks of emulator bugs, surfaced by the admin API
        self._seq = itertools.count(1)
        self._realm_ids = itertools.count(9_130_354_000_000_001)

    def reset(self) -> None:
        """Forget every realm, token, fault, log entry and setting."""
        with self._lock:
            self._fresh()

    def realm(self, realm_id: str, *, create: bool = False) -> Realm | None:
        """The realm, seeded on first use when ``create``."""
        with self._lock:
            realm = self.realms.get(realm_id)
            if realm is None and create:
                realm = self.realms[realm_id] = Realm(realm_id)
            return realm

    def create_realm(self, spec: JsonDict) -> JsonDict:
        """Create (or reuse) a realm and connect an app to it; returns its credentials."""
        realm_id = str(spec.get("realm_id") or next(self._realm_ids))
        with self._lock:
            if realm_id not in self.realms:
                self.realms[realm_id] = Realm(realm_id, spec.get("company_name"))
        return self.oauth.register(
            realm_id,
            client_id=spec.get("client_id"),
            client_secret=spec.get("client_secret"),
            access_token=spec.get("access_token"),
            refresh_token=spec.get("refresh_token"),
        )

    def record(self, entry: JsonDict) -> None:
        """Append to the request log."""
        entry["seq"] = next(self._seq)
        self.log.append(entry)

    def describe_settings(self) -> JsonDict:
        """Current settings and limits."""
        return {
            **asdict(self.settings),
            "limits": asdict(self.limits),
            "access_token_ttl": self.oauth.access_ttl,
            "refresh_token_rotation": self.oauth.rotation,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm on, the body waits for the client's delayed
    # ACK (~40 ms a response on Linux loopback), which made every emulated call cost 40 ms of idling.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's per-request stderr line; the request log is the record."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        path = parts.path.rstrip("/") or "/"
        call = parse_call(method, path, params, raw)
        if call is not None:
            response, entry = handle_api(state, call, headers)
            state.record(entry)
        elif path.startswith("/_emulator"):
            response = admin.handle(state, method, path, params, raw)
        else:
            response = self._oauth(state, method, path, params, raw, headers)
        self._send(response)

    def _oauth(
        self,
        state: EmulatorState,
        method: str,
        path: str,
        params: dict[str, str],
        raw: bytes,
        headers: dict[str, str],
    ) -> Response:
        base = self.server.url
        if path == "/.well-known/openid_configuration" and method == "GET":
            return json_response(200, discovery_document(base))
        if path == "/oauth2/v1/tokens/bearer" and method == "POST":
            entry: JsonDict = {
                "realm_id": None,
                "method": method,
                "path": path,
                "entity": "oauth",
                "operation": "token",
                "started_at": time.time(),
                "fault": None,
            }
            rule = state.faults.take(None, method, "oauth", "token")
            form = dict(parse_qsl(raw.decode("utf-8", "replace")))
            if rule is not None and rule.kind != "none":
                entry["fault"] = rule.kind
                response = admin.oauth_fault(rule.kind, rule.seconds)
                if response is None:  # commit_then_*: the refresh happens, its answer is lost
                    state.oauth.token(headers.get("authorization"), form)
                    response = (
                        Response(action="reset")
                        if rule.kind == "commit_then_reset"
                        else Response(500, b"<html><body>500</body></html>", "text/html")
                    )
            else:
                status, body = state.oauth.token(headers.get("authorization"), form)
                response = json_response(status, body, {"Cache-Control": "no-store"})
            entry.update(
                {
                    "status": response.status if response.action is None else None,
                    "outcome": response.action or "answered",
                    "ended_at": time.time(),
                    "grant_type": form.get("grant_type"),
                }
            )
            state.record(entry)
            return response
        if path == "/oauth2/v1/tokens/revoke" and method == "POST":
            token = ""
            try:
                token = str(admin.parse_json(raw).get("token", ""))
            except ValueError:
                token = dict(parse_qsl(raw.decode("utf-8", "replace"))).get("token", "")
            status = state.oauth.revoke(headers.get("authorization"), token)
            return json_response(status, {} if status == 200 else {"error": "invalid_client"})
        if path == "/oauth2/v1/authorize" and method == "GET":
            location = state.oauth.authorize_redirect(params, sorted(state.realms))
            if location is None:
                return json_response(400, {"error": "invalid_request"})
            return Response(302, b"", "text/plain", {"Location": location})
        if path == "/v1/openid_connect/userinfo" and method == "GET":
            return json_response(
                200,
                {
                    "sub": "emulated-user",
                    "email": "bookkeeper@example.com",
                    "emailVerified": True,
                    "givenName": "Emulated",
                    "familyName": "User",
                },
            )
        if path == "/oauth2/v1/keys" and method == "GET":
            return json_response(200, {"keys": []})
        return json_response(404, {"error": "not_found", "path": path})

    def _send(self, response: Response) -> None:
        if response.action == "timeout":
            time.sleep(response.seconds)
            self._drop()
            return
        if response.action == "reset":
            self._drop()
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _drop(self) -> None:
        """Close the connection with a TCP RST and no answer at all."""
        try:
            # SO_LINGER 0 turns close() into a reset, so the client fails fast instead of waiting on a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        self.wfile = _Sink()  # type: ignore[assignment]  # the stdlib flushes wfile after the handler; the socket is gone


class _Sink:
    """A write target that discards (stands in for a closed socket's file)."""

    closed = False

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a request held by an injected timeout must not block shutdown
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        host, port = self.server_address[:2]
        self.url = f"http://{host if isinstance(host, str) else host.decode()}:{port}"


class EmulatorServer:
    """A running (or startable) emulator on a loopback port.

    ``url`` is the root, ``base_api_url`` what python-quickbooks' ``api_url`` must return (``.../v3``),
    ``discovery_url`` what ``AuthClient(environment=...)`` takes. ``state`` gives in-process admin access.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: EmulatorState | None = None) -> None:
        self.state = state or EmulatorState()
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None
        self.url = self._server.url
        self.port = int(self._server.server_address[1])
        self.base_api_url = f"{self.url}/v3"
        self.discovery_url = f"{self.url}/.well-known/openid_configuration"
        self.token_url = f"{self.url}/oauth2/v1/tokens/bearer"
        self.admin_url = f"{self.url}/_emulator"

    def start(self) -> EmulatorServer:
        """Serve on a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"qbo-emulator-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def wait(self) -> None:
        """Block until interrupted (for the ``qbsync emulator`` command)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def create_realm(self, **spec: Any) -> JsonDict:
        """In-process shortcut for ``POST /_emulator/realms``."""
        return self.state.create_realm(spec)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_emulator(host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """Build the emulator on ``host:port`` (0 picks a free port) and start it on a background thread."""
    return EmulatorServer(host, port).start()


__all__ = ["EmulatorServer", "EmulatorState", "Settings", "dumps", "run_emulator"]
