"""The live-reload endpoint: Server-Sent Events that tell open pages to refresh.

It runs in the supervisor on its own loopback port and can only *tell*: it accepts
nothing but ``GET /events`` and never runs, evaluates or triggers anything. A request
must carry the run's random token, a ``Host`` that names this endpoint (against DNS
rebinding), an ``Origin`` (when the browser sends one) that is the app's own, and
come from a loopback address unless remote clients were explicitly allowed.

It runs on the endpoints' loop (:mod:`.endpoint`), with its connection cap and
deadlines: a flood of connections holds a bounded number of descriptors and no thread.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .endpoint import Connection, Listener, LoopThread, listen_same_port, response

__all__ = ["LiveReload", "check_request"]

log = logging.getLogger(__name__)

KEEPALIVE = 15.0  # seconds between comments that let a dead client be noticed


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_request(
    *,
    path: str,
    host: str | None,
    origin: str | None,
    client: str,
    token: str,
    port: int,
    origins: frozenset[str],
    allow_remote: bool,
) -> tuple[int, str]:
    """The decision, pure: (HTTP status, reason). 200 means serve the event stream.

    ``origins`` are the app's own origins (``http://127.0.0.1:8000``...). With
    ``allow_remote``, any client address and host name may be used, but the port of
    ``Host`` and of ``Origin`` must still be the endpoint's and the app's.
    """
    if not allow_remote and not _is_loopback(client):
        return 403, "live reload is served to loopback clients only"
    if host is None or not _host_ok(host.lower(), port, allow_remote):
        return 421, "unexpected Host"
    parts = urlsplit(path)
    if parts.path != "/events":
        return 404, "not found"
    given = parse_qs(parts.query).get("token", [""])[0]
    if not hmac.compare_digest(given.encode(), token.encode()):
        return 403, "bad token"
    if origin is not None and not (
        origin.isprintable() and _origin_ok(origin, origins, allow_remote)
    ):
        return 403, "unexpected Origin"
    return 200, "ok"


_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _host_ok(host: str, port: int, allow_remote: bool) -> bool:
    name, sep, given = host.rpartition(":")
    if not sep or given != str(port):
        return False
    return allow_remote or name in _LOCAL_NAMES


def _origin_ok(origin: str, origins: frozenset[str], allow_remote: bool) -> bool:
    if origin in origins:
        return True
    if not allow_remote:
        return False
    # Remote: any host name, but the scheme and port of one of the app's origins.
    parts = urlsplit(origin)
    return any(
        parts.scheme == urlsplit(o).scheme and parts.port == urlsplit(o).port for o in origins
    )


class LiveReload:
    """The endpoint, and the pages listening to it, on the endpoints' loop.

    It listens on every one of ``addresses`` that can take one common port (the first
    must); the page reaches it under its own host name, so a loopback app gets both
    127.0.0.1 and ::1.
    """

    def __init__(
        self,
        *,
        app_origins: set[str],
        endpoints: LoopThread,
        addresses: Sequence[str] = ("127.0.0.1",),
        allow_remote: bool = False,
    ):
        self.token = secrets.token_urlsafe(24)
        self.allow_remote = allow_remote
        self.origins = frozenset(app_origins)
        self._endpoints = endpoints
        self._streams: set[asyncio.Queue[str | None]] = set()
        self._sockets = listen_same_port(addresses)
        self.port = int(self._sockets[0].getsockname()[1])
        self.addresses = [str(sock.getsockname()[0]) for sock in self._sockets]
        self._listeners = [
            Listener(endpoints.loop, sock, self._serve, cap=endpoints.cap, name="live reload")
            for sock in self._sockets
        ]
        endpoints.call(self._start)

    def _start(self) -> None:
        for listener in self._listeners:
            listener.start()

    async def _serve(self, conn: Connection) -> None:
        request = await conn.read_head()
        if request is None:
            return
        if request.method != "GET":
            await conn.reply(response(405, b"only GET /events\n", [("Allow", "GET")]))
            return
        origin = request.headers.get("Origin")
        status, reason = check_request(
            path=request.target,
            host=request.headers.get("Host"),
            origin=origin,
            client=conn.client,
            token=self.token,
            port=self.port,
            origins=self.origins,
            allow_remote=self.allow_remote,
        )
        if status != 200:
            text = [("Content-Type", "text/plain; charset=utf-8")]
            await conn.reply(response(status, f"{reason}\n".encode(), text))
            return
        await self._stream(conn, origin)

    async def _stream(self, conn: Connection, origin: str | None) -> None:
        # No length: the stream ends when the connection does.
        head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-store"]
        if origin:
            head += [f"Access-Control-Allow-Origin: {origin}", "Vary: Origin"]
        head.append("Connection: close")
        start = "\r\n".join(head).encode() + b"\r\n\r\nretry: 500\n\n"
        inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._streams.add(inbox)
        gone: asyncio.Future[None] = asyncio.ensure_future(conn.until_eof())  # page closed
        get: asyncio.Future[str | None] | None = None
        try:
            if not await conn.send(start):
                return
            while True:
                if get is None:
                    get = asyncio.ensure_future(inbox.get())
                waiting: set[asyncio.Future[Any]] = {get, gone}
                done, _ = await asyncio.wait(
                    waiting, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    return
                if get in done:
                    event, get = get.result(), None
                    if event is None:
                        return
                    chunk = f"event: {event}\ndata: {event}\n\n".encode()
                else:
                    chunk = b": keep-alive\n\n"
                if not await conn.send(chunk):
                    return
        finally:
            self._streams.discard(inbox)
            gone.cancel()
            if get is not None:
                get.cancel()

    @property
    def listeners(self) -> int:
        return len(self._streams)

    def broadcast(self, event: str) -> None:
        """Send ``event`` ("reload" or "css") to every open page; from any thread."""
        self._endpoints.soon(self._broadcast, event)

    def _broadcast(self, event: str | None) -> None:
        for inbox in self._streams:
            inbox.put_nowait(event)
        if event is not None:
            log.debug("live reload: %s sent to %d page(s)", event, len(self._streams))

    def close(self) -> None:
        self._endpoints.call(self._close)
        for sock in self._sockets:
            sock.close()

    def _close(self) -> None:
        for listener in self._listeners:
            listener.stop()
            listener.close_all()
        self._broadcast(None)
