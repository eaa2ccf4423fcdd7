"""A real HTTP server on 127.0.0.1 for tests: canned answers, failures on demand, and a log of every request.

Usage::

    from httpserver import File, Redirect, Sequence, Status, serve

    routes = {"/a.bin": File(data), "/flaky": Sequence(Status(500), File(data)), "/r": Redirect("/a.bin")}
    with serve(routes) as base:            # base is the server's URL, e.g. "http://127.0.0.1:41234"
        requests.get(base + "/a.bin")
        base.count("/a.bin")               # requests seen for a path
        base.log                           # [(path, headers), ...]; headers is case-insensitive: h.get("range")

Behaviours (a route maps a path, without the query string, to one of them; unknown paths answer 404):

``File(body, content_type=..., ranges=True, truncate_at=None, stall_before=0, stall_at=None, stall_for=0, ...)``
    200 with the bytes. With ``ranges`` a ``Range: bytes=N-`` / ``bytes=N-M`` request gets 206 and
    ``Content-Range`` (416 with ``Content-Range: bytes */size`` when N is past the end); without it the Range
    header is ignored (200, whole body), like a server that has no Range support. ``truncate_at``: announce
    the full ``Content-Length`` but stop sending at that absolute offset of the file and close the connection.
    ``stall_before``: wait that many seconds before the status line. ``stall_at`` / ``stall_for``: send the body
    up to that absolute offset, wait, then send the rest (a client with a smaller read timeout gives up).
    ``chunked``: ``Transfer-Encoding: chunked`` instead of ``Content-Length`` (the client cannot know the size;
    with ``truncate_at`` the terminating chunk never comes).
``Status(code, body=b"", headers=None)``
    Any status with a small body (``Retry-After`` etc. through ``headers``).
``Redirect(location, code=302)``
    ``Location`` is used as given (a path like ``/a.bin`` or a full URL).
``Sequence(b1, b2, ...)``
    The n-th request to the route gets the n-th behaviour; the last one answers every later request.

Stalls wait on an event that :func:`serve` sets on exit, so leaving the ``with`` block never hangs on them.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Mapping

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class Behaviour:
    """One way of answering a request; subclasses implement :meth:`respond`."""

    def respond(self, handler: "_Handler") -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class File(Behaviour):
    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    ranges: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    truncate_at: int | None = None
    stall_before: float = 0.0
    stall_at: int | None = None
    stall_for: float = 0.0
    chunked: bool = False

    def respond(self, handler: "_Handler") -> None:
        if self.stall_before:
            handler.server.stopping.wait(self.stall_before)
        size = len(self.body)
        start, end = 0, size  # the slice [start, end) of the body that is sent
        status = self.status
        extra = dict(self.headers)
        m = _RANGE.match(handler.headers.get("Range", "").strip())
        if self.ranges and status == 200 and m:
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, size) if m.group(2) else size
            if start >= size or start >= end:
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{size}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if self.ranges:
            extra.setdefault("Accept-Ranges", "bytes")
        handler.send_response(status)
        handler.send_header("Content-Type", self.content_type)
        if self.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(end - start))
        for k, v in extra.items():
            handler.send_header(k, v)
        truncated = self.truncate_at is not None and self.truncate_at < end
        if truncated:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if handler.command == "HEAD":
            return
        stop = min(end, self.truncate_at) if truncated else end
        pos = start
        if self.stall_at is not None and start <= self.stall_at < stop:
            self._send(handler, self.body[pos : self.stall_at])
            pos = self.stall_at
            handler.server.stopping.wait(self.stall_for)
        self._send(handler, self.body[pos:stop])
        if self.chunked and not truncated:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _send(self, handler: "_Handler", data: bytes) -> None:
        if not self.chunked:
            handler.wfile.write(data)
        else:
            for i in range(0, len(data), 16384):
                piece = data[i : i + 16384]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.flush()


def Status(code: int, body: bytes = b"", headers: Mapping[str, str] | None = None,  # noqa: N802 - reads as a type
           content_type: str = "text/plain") -> File:
    """An answer with status ``code`` (no Range handling)."""
    return File(body or f"status {code}\n".encode(), content_type=content_type, status=code, ranges=False,
                headers=dict(headers or {}))


@dataclass
class Redirect(Behaviour):
    location: str
    code: int = 302

    def respond(self, handler: "_Handler") -> None:
        handler.send_response(self.code)
        handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


class Sequence(Behaviour):
    """The n-th request gets the n-th behaviour; the last one repeats."""

    def __init__(self, *behaviours: Behaviour):
        if not behaviours:
            raise ValueError("Sequence needs at least one behaviour")
        self.behaviours = list(behaviours)
        self._n = 0
        self._lock = threading.Lock()

    def respond(self, handler: "_Handler") -> None:
        with self._lock:
            b = self.behaviours[min(self._n, len(self.behaviours) - 1)]
            self._n += 1
        b.respond(handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do; every answer carries Content-Length
    server: "_Server"

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.log.append((path, self.headers))
        behaviour = self.server.routes.get(path)
        try:
            if behaviour is None:
                Status(404).respond(self)
            else:
                behaviour.respond(self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (timeout, abort): nothing to report

    do_GET = _serve
    do_HEAD = _serve

    def log_message(self, format, *args):  # noqa: A002 - keep pytest output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: Mapping[str, Behaviour]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.log: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def handle_error(self, request, client_address):  # a client that vanished mid-answer is not an error here
        pass


class ServerURL(str):
    """The base URL (``http://127.0.0.1:PORT``), with the server's request log attached."""

    server: _Server

    @property
    def log(self) -> list[tuple[str, object]]:
        with self.server.lock:
            return list(self.server.log)

    def requests_to(self, path: str) -> list[object]:
        """Headers of every request made to ``path``, in order."""
        return [h for p, h in self.log if p == path]

    def count(self, path: str | None = None) -> int:
        return len(self.log) if path is None else len(self.requests_to(path))

    def clear(self) -> None:
        with self.server.lock:
            self.server.log.clear()


@contextlib.contextmanager
def serve(routes: Mapping[str, Behaviour]) -> Iterator[ServerURL]:
    """Run a threaded HTTP server on 127.0.0.1 (a free port) for the duration of the ``with`` block."""
    server = _Server(routes)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = ServerURL(f"http://127.0.0.1:{server.server_address[1]}")
    url.server = server
    try:
        yield url
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
