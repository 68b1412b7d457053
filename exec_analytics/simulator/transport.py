"""HTTP plumbing of the simulator: a threading server with keep-alive and fast, quiet handlers.

``Handler`` uses HTTP/1.1 keep-alive and TCP_NODELAY (otherwise every response waits ~40 ms for a delayed
ACK) and hands each request to the server's ``dispatch`` callback; ``HTTPServer`` tracks open connections
so that stopping the simulator closes them.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Dispatch", "HTTPServer", "Handler", "read_body"]

#: What answers a request: ``dispatch(handler, method)`` reads the request from and writes the response to
#: ``handler``.
Dispatch = Callable[["Handler", str], None]


def read_body(h: Handler) -> bytes:
    """The request body, by Content-Length or chunked; read fully so keep-alive stays in sync."""
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        parts: list[bytes] = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    try:
        length = int(h.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    return h.rfile.read(length) if length > 0 else b""


class HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection; remembers open connections so ``close_connections`` can end them.

    Parameters
    ----------
    address : tuple of (str, int)
        Interface and port to bind.
    dispatch : Dispatch
        Called with each request's handler and method.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    block_on_close = False

    def __init__(self, address: tuple[str, int], dispatch: Dispatch) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.dispatch = dispatch
        super().__init__(address, Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember an open connection (``alive``) or forget a closed one."""
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        """Shut down every open connection (idle keep-alive ones included)."""
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # clients that hang up are normal
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Keep-alive, no Nagle, no stderr logging; every method goes to the server's ``dispatch``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FoundrySimulator/1"
    timeout = 120  # idle keep-alive connections are closed after this
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the simulator keeps its own (path, status) log; stderr noise helps nobody

    def do_POST(self) -> None:
        self.server.dispatch(self, "POST")

    def do_GET(self) -> None:
        self.server.dispatch(self, "GET")

    def do_PUT(self) -> None:
        self.server.dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.dispatch(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.dispatch(self, "PATCH")
