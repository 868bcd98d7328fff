"""Serves the console's ASGI app with uvicorn, on a socket bound first (so that a taken port is one clear
error before anything runs, and port 0 tells which port it got), in a thread of this process. The app is
made once the port is known: its OAuth redirect URI names it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from adapters.grpc.server import ListenError


class ConsoleServer:
    def __init__(self, app_for_port: Callable[[int], Starlette], listen: str) -> None:
        """`app_for_port(port)`: the app to serve, given the port bound (the one asked for, or the one the
        system chose for port 0)."""
        self._app_for_port = app_for_port
        self._listen = listen
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_seconds: float = 10.0) -> int:
        """Binds `listen` and serves in a background thread; returns the port once it accepts requests.
        Raises ListenError when the address cannot be bound."""
        host, _, port = self._listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR only (never SO_REUSEPORT): a second console on a taken port must fail, not share it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ListenError(f"the console cannot listen on {self._listen}: {exc.strerror or exc}") from exc
        # No access log: the OAuth callback's query carries Intuit's one-time code. log_config None: qbsync's
        # own logging (qbsync/logs.py) formats uvicorn's error lines like every other line.
        # And off for good, whoever adds a handler to it later: uvicorn's access logger is this process's.
        logging.getLogger("uvicorn.access").disabled = True
        port_bound = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app_for_port(port_bound), log_config=None, access_log=False, lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="qbsync-console", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ListenError(f"the console did not start on {self._listen}")
            time.sleep(0.02)
        return port_bound

    def stop(self, timeout_seconds: float = 5.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout_seconds)
