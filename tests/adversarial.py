"""A scriptable, misbehaving HTTP server on 127.0.0.1, of the tests' own (not the simulator).

The simulator shares the client's assumptions about the API; this server shares none. A test supplies a
handler ``(Request) -> Reply``; the reply says what to send and how badly: status, headers, a body as bytes
or chunks, a delay before the headers and between chunks (a trickle), gzip (of the body, or raw bytes
already compressed), a connection closed mid-body, or a body framed by closing the connection. Every request
is recorded (method, path, headers, body, its JSON).

Usage::

    with AdversarialServer(scripted(Reply.json({"data": []}))) as srv:
        FoundryClient(srv.url, token="t").list_executions_page(...)
        srv.requests[0].json

Threads are daemonic; ``stop()`` (or leaving the ``with``) wakes every handler that is waiting between
chunks, so a trickle never outlives its test. Request bodies are read up to 1 MiB.

:class:`FakeClock` is the clock to hand a client (``FoundryClient(clock=...)``) so that its backoffs,
throttle pauses and token expiry happen at once, in simulated seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["AdversarialServer", "FakeClock", "Reply", "Request", "scripted"]

_MAX_REQUEST_BODY = 1 << 20


@dataclass(frozen=True)
class Request:
    """One request as received.

    Attributes
    ----------
    method : str
    path : str
        The request target as sent: a path, or an absolute URL when the server is used as a proxy.
    headers : dict
        Header names as sent.
    body : bytes
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


@dataclass
class Reply:
    """What to answer, and how.

    Attributes
    ----------
    status : int
    headers : dict
        Sent as given (after ``Content-Length`` / ``Transfer-Encoding`` chosen by ``framing``).
    body : bytes or iterable of bytes
        The body; chunks are written (and flushed) one by one.
    chunk_delay : float
        Seconds to wait before each chunk: a trickle.
    header_delay : float
        Seconds to wait before the status line.
    trickle_headers : bool
        Send the status line and headers one byte at a time, ``chunk_delay`` apart.
    gzip : bool
        Compress the joined body with gzip and send ``Content-Encoding: gzip`` (for bytes already
        compressed, leave this False and set the header yourself).
    framing : str
        ``"length"`` (Content-Length of the whole body, the default), ``"chunked"`` (chunked transfer
        encoding) or ``"close"`` (no length: the body ends when the connection closes).
    close_after : int, optional
        Close the connection after this many body bytes, whatever the framing announced.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    chunk_delay: float = 0.0
    header_delay: float = 0.0
    trickle_headers: bool = False
    gzip: bool = False
    framing: str = "length"
    close_after: int | None = None

    @classmethod
    def json(cls, doc: Any, status: int = 200, **kwargs: Any) -> Reply:
        """A JSON reply (``Content-Type: application/json``)."""
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return cls(status=status, headers=headers, body=orjson.dumps(doc), **kwargs)

    def chunks(self) -> list[bytes]:
        """The body as the chunks to write."""
        parts = [self.body] if isinstance(self.body, bytes) else list(self.body)
        if self.gzip:
            parts = [gzip.compress(b"".join(parts))]
        return parts


def scripted(*replies: Reply) -> Callable[[Request], Reply]:
    """A handler answering with ``replies`` in order; the last one repeats."""
    queue = list(replies)
    lock = threading.Lock()

    def handle(_: Request) -> Reply:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return handle


class FakeClock:
    """A clock that moves only when slept on or advanced: waits cost no real time, and are recorded.

    Thread-safe: concurrent sleepers each advance it by what they asked for.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The simulated time."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (recorded in :attr:`sleeps`)."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without counting it as a sleep."""
        with self._lock:
            self._now += seconds


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Small writes must leave at once, or a trickle would be batched by Nagle's algorithm.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # The client hanging up is how many scenarios end: not an error of the server.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def _serve(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), _MAX_REQUEST_BODY)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        with self.server.lock:
            self.server.received.append(request)
        self._write(self.server.handler(request))

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def _pause(self, seconds: float) -> bool:
        """Wait; False when the server is stopping."""
        return not (seconds > 0 and self.server.stopping.wait(seconds)) and not self.server.stopping.is_set()

    def _write(self, reply: Reply) -> None:
        if not self._pause(reply.header_delay):
            return
        chunks = reply.chunks()
        headers = dict(reply.headers)
        if reply.gzip:
            headers["Content-Encoding"] = "gzip"
        if reply.framing == "length":
            headers["Content-Length"] = str(sum(len(c) for c in chunks))
        elif reply.framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Connection"] = "close"
        if headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        # Written by hand, so that any bytes (even invalid ones) can be sent, and sent slowly.
        head = f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('Status',))[0]}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        raw_head = head.encode("latin-1", "replace")
        if reply.trickle_headers:
            for i in range(len(raw_head)):
                if not self._pause(reply.chunk_delay):
                    return
                self.wfile.write(raw_head[i : i + 1])
                self.wfile.flush()
        else:
            self.wfile.write(raw_head)
            self.wfile.flush()
        sent = 0
        for chunk in chunks:
            if not self._pause(reply.chunk_delay):
                return
            if reply.close_after is not None and sent + len(chunk) >= reply.close_after:
                self._raw(chunk[: reply.close_after - sent], reply.framing)
                self.close_connection = True
                return
            self._raw(chunk, reply.framing)
            sent += len(chunk)
        if reply.framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _raw(self, data: bytes, framing: str) -> None:
        if not data:
            return
        if framing == "chunked":
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: Callable[[Request], Reply]) -> None:
        self.handler = handler
        self.received: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class AdversarialServer:
    """Serve ``handler`` on 127.0.0.1 (a free port) until stopped.

    Parameters
    ----------
    handler : callable
        ``(Request) -> Reply``, called on a server thread for every request.
    """

    def __init__(self, handler: Callable[[Request], Reply]) -> None:
        self._server = _Server(handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        """The requests received so far, in order."""
        with self._server.lock:
            return list(self._server.received)

    def start(self) -> AdversarialServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake every handler waiting between chunks."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> AdversarialServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
