"""Serve a tornado ``Application`` on the held socket, for ``relaunch serve``.

A tornado app is neither WSGI nor ASGI: it is an ``HTTPServerConnectionDelegate``
that tornado's own ``HTTPServer`` drives. This runs that server on the socket the
supervisor holds, so while the process restarts new connections wait in the backlog
instead of being refused (tornado's own autoreload closes the socket and re-executes).

On SIGTERM it stops accepting, lets requests in flight finish, hands keep-alive
connections over to the next process once between requests (see :mod:`.handoff`) and
exits, like the WSGI and ASGI servers. Live reload is a tornado
``OutputTransform`` that puts the script into complete, uncompressed HTML pages.

Only imported when the app is a tornado app, so tornado is imported only then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.web import OutputTransform

from .handoff import Link
from .inject import MAX_BODY, inject

__all__ = ["is_tornado_app", "live_reload_transform", "serve"]


def is_tornado_app(app: Any) -> bool:
    return isinstance(app, httputil.HTTPServerConnectionDelegate)


def live_reload_transform(snippet: bytes) -> type[OutputTransform]:
    """An output transform class that injects ``snippet`` into whole HTML responses."""

    class LiveReload(OutputTransform):
        def transform_first_chunk(
            self,
            status_code: int,
            headers: httputil.HTTPHeaders,
            chunk: bytes,
            finishing: bool,
        ) -> tuple[int, httputil.HTTPHeaders, bytes]:
            ctype = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            encoded = headers.get("Content-Encoding", "identity").strip().lower()
            # Only a response written in one piece (finish() with the whole body) has a
            # length we can correct; streamed (flushed) pages pass through.
            if (
                finishing
                and ctype == "text/html"
                and encoded in ("", "identity")
                and len(chunk) <= MAX_BODY
                and "Content-Length" in headers
            ):
                chunk = inject(chunk, snippet)
                headers["Content-Length"] = str(len(chunk))
            return status_code, headers, chunk

    return LiveReload


class _Tracker(httputil.HTTPServerConnectionDelegate):
    """Wraps the app to know which connections are in the middle of a request.

    tornado asks for a request delegate as soon as a connection is ready to read a
    request, so "asked" is not "busy": a connection is busy from its request's headers
    until tornado asks for the next request (after the response is written)."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate) -> None:
        self.app = app
        # Once stopping, called with a connection about to read its next request: hands
        # it over (True) rather than read it here.
        self.hand_over: Callable[[Any], bool] | None = None
        self.busy: dict[object, bool] = {}
        self.served: set[object] = set()
        self.opened: dict[object, float] = {}

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self.busy[server_conn] = False
        self.opened.setdefault(server_conn, time.monotonic())
        inner = self.app.start_request(server_conn, request_conn)
        if self.hand_over is not None:
            self.hand_over(server_conn)  # the read that follows fails: the stream is closed

        def began() -> None:
            self.busy[server_conn] = True
            self.served.add(server_conn)

        return _Request(inner, began)

    def on_close(self, server_conn: object) -> None:
        self.busy.pop(server_conn, None)
        self.served.discard(server_conn)
        self.opened.pop(server_conn, None)
        self.app.on_close(server_conn)


class _Request(httputil.HTTPMessageDelegate):
    def __init__(self, inner: httputil.HTTPMessageDelegate, began: Callable[[], None]) -> None:
        self.inner = inner
        self.began = began

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        self.began()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


def _hand(conn: Any, link: Link, *, between: bool = False) -> bool:
    """Hand ``conn`` over if it is between requests: ``between`` (tornado is about to
    read the next request), or waiting for a request with nothing of it read. A
    request whose bytes were read (even if not parsed yet: tornado parses on a later
    turn of the loop) finishes here."""
    stream = conn.stream
    if stream.closed() or getattr(stream, "_read_buffer_size", 1):
        return False
    if not between and not stream.reading():
        return False
    try:
        fd = os.dup(stream.socket.fileno())
    except OSError:
        return False
    stream.close()  # this process's copy only: the connection stays open
    link.give(fd)
    return True


def _adopt(server: HTTPServer, conn: socket.socket, unprocessed: bytes) -> None:
    try:
        conn.setblocking(False)
        address = conn.getpeername()
    except OSError:
        conn.close()
        return
    stream = IOStream(conn)
    if unprocessed:
        if not hasattr(stream, "_read_buffer"):
            stream.close()  # cannot be put back: the client reconnects
            return
        stream._read_buffer += unprocessed
        stream._read_buffer_size += len(unprocessed)
    server.handle_stream(stream, address)


async def _serve(
    app: httputil.HTTPServerConnectionDelegate,
    sock: socket.socket,
    ready: Callable[[], None],
    fresh_wait: float,
    link: Link | None = None,
) -> None:
    tracker = _Tracker(app)
    server = HTTPServer(tracker)
    server.add_sockets([sock])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if link is not None and link.stop_requested:
        stop.set()  # came while it started: stop now, cleanly

    def from_hub() -> None:
        assert link is not None
        for conn, unprocessed in link.receive():
            if stop.is_set():
                link.give(conn.detach(), unprocessed)  # arrived after "bye": send it back
            else:
                _adopt(server, conn, unprocessed)
        if not link.open:
            loop.remove_reader(link.fileno())

    if link is not None:
        loop.add_reader(link.fileno(), from_hub)
    ready()
    await stop.wait()
    # Stop accepting (this closes only this process's copy of the socket: the
    # supervisor's keeps the backlog for the next process), then let requests in flight
    # finish. Hand each connection over to the next process as soon as it is between
    # requests; without a hub, close it then, and give one accepted just now a moment
    # to send its request.
    server.stop()
    stopped_at = time.monotonic()
    connections: set[Any] = server._connections  # tornado keeps no public list
    if link is not None:
        link.bye()
        hub = link
        tracker.hand_over = lambda conn: _hand(conn, hub, between=True)
    while connections or (link is not None and link.open):
        for conn in list(connections):
            if tracker.busy.get(conn, False):
                continue
            if link is not None:
                _hand(conn, link)
                continue
            fresh = conn not in tracker.served
            if not fresh or time.monotonic() - stopped_at > fresh_wait:
                conn.stream.close()
        await asyncio.sleep(0.02)


def serve(
    app: Any,
    sock: socket.socket,
    ready: Callable[[], None],
    fresh_wait: float,
    link: Link | None = None,
) -> None:
    """Serve the tornado ``app`` on ``sock`` until SIGTERM, then drain and return.

    A fresh event loop is used: an ``Application(debug=True)`` built at import time
    registered tornado's own poller on another loop, where it never runs, so tornado
    does not re-execute the process behind relaunch's back. Access lines are left out,
    as with the other servers; failed requests (4xx, 5xx) are still logged."""
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    asyncio.run(_serve(app, sock, ready, fresh_wait, link))
