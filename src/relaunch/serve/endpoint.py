"""The supervisor's own HTTP endpoints (the error page, the live-reload events) run on
one asyncio loop, on one thread.

Theory of operation. These endpoints live in the supervisor, so no client may hold the
supervisor up or use up what a reload needs:

* One thread runs an asyncio loop and every connection is a task on it. The
  supervisor's thread only hands it work: :meth:`LoopThread.call` waits for a step
  that never waits for a client (start or stop accepting), so nothing a client does
  stands between a change and the reload.
* :class:`Listener` accepts by itself rather than through ``loop.create_server``:
  asyncio's server accepts the whole backlog at each wake-up, so a burst of
  connections would become as many descriptors at once. A listener holds at most
  ``cap`` connections (:func:`connection_cap`: a share of the descriptor limit). At the
  cap, the oldest connection still waiting for its request is dropped for the new
  one; when every one is busy, the new one is refused with a 503.
* Deadlines: a request head must arrive in full within ``HEAD_TIMEOUT`` (in total, not
  per byte), every write must drain within ``WRITE_TIMEOUT``, and a closing
  connection is read out for at most ``LINGER_TIMEOUT``.
* When ``accept`` fails for want of descriptors, the listener pauses for a moment
  rather than spinning, and the supervisor goes on without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import http.client
import io
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from .. import oslayer

__all__ = [
    "HEAD_TIMEOUT",
    "LINGER_TIMEOUT",
    "LISTEN_BACKLOG",
    "WRITE_TIMEOUT",
    "Connection",
    "Listener",
    "LoopThread",
    "Request",
    "connection_cap",
    "listen_same_port",
    "parse_head",
    "response",
]

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
LINGER_TIMEOUT = 2.0
MAX_HEAD = 64 * 1024
LISTEN_BACKLOG = 1024
_ACCEPT_PAUSE = 0.5
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BATCH = 16  # connections accepted per wake-up, so one flooded socket cannot starve the rest

T = TypeVar("T")


def connection_cap(open_file_limit: int | None) -> int:
    """How many connections one listener may hold, pure: 1/32 of the descriptor limit,
    from 4 to 64. The supervisor has at most three listeners (the error page, live
    reload on two loopback addresses), so they never hold more than about a tenth of
    its descriptors, and a reload always finds the ones it needs."""
    if open_file_limit is None:
        return 64
    return max(4, min(64, open_file_limit // 32))


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: http.client.HTTPMessage


def parse_head(head: bytes) -> Request | None:
    """A request head (with its blank line), pure; None when it is not HTTP/1.x."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1]:
        return None
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException:
        return None
    return Request(parts[0], parts[1], headers)


def response(
    status: int,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    send_body: bool = True,
) -> bytes:
    """A whole ``Connection: close`` response, pure. Header values come from us or were
    checked; a line break in one would split the response, so it is refused."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in header {name}")
        lines.append(f"{name}: {value}")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body if send_body else b"")


def _listening(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((address, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def listen_same_port(addresses: Sequence[str]) -> list[socket.socket]:
    """Listening sockets on one free port: on the first address (which must work) and on
    every other one that can take the same port (an address family the machine lacks,
    or a port taken there, leaves that address out)."""
    for attempt in range(5):
        sockets = [_listening(addresses[0], 0)]
        port = int(sockets[0].getsockname()[1])
        clash = False
        for address in addresses[1:]:
            try:
                sockets.append(_listening(address, port))
            except OSError as exc:
                clash = exc.errno == errno.EADDRINUSE and attempt < 4
                if clash:
                    break
                log.debug("cannot listen on %s:%d too: %s", address, port, exc)
        if not clash:
            return sockets
        for sock in sockets:
            sock.close()
    raise AssertionError("unreachable")  # the last attempt never retries


class LoopThread:
    """One asyncio loop on a daemon thread, for the supervisor's endpoints."""

    def __init__(self) -> None:
        # A selector loop everywhere: the listeners need add_reader, which Windows'
        # default (proactor) loop lacks.
        self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop()
        self.loop.set_exception_handler(_quiet_errors)
        self.cap = connection_cap(oslayer.open_file_limit())
        self._thread = threading.Thread(target=self._run, name="relaunch-endpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

    def soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the loop without waiting; from any thread."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: relaunch is stopping

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T | None:
        """Run ``fn()`` on the loop and return what it returns (None once the loop is
        closed). Only for steps that never wait for a client, so this returns at once."""
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def step() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(step)
        except RuntimeError:
            return None
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("the error page and live-reload thread did not answer in %.0f s", timeout)
            return None

    def close(self) -> None:
        self.soon(self.loop.stop)
        self._thread.join(timeout=10)


def _quiet_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # What a client does wrong (a reset, a broken pipe) is no news for the user's
    # terminal; anything else would be relaunch's own bug, and is shown.
    exc = context.get("exception")
    level = logging.DEBUG if exc is None or isinstance(exc, OSError) else logging.WARNING
    log.log(level, "endpoint: %s", context.get("message"), exc_info=exc)


class Connection:
    """One accepted connection, as asyncio streams with deadlines."""

    def __init__(self, sock: socket.socket, client: str, unprocessed: bytes = b"") -> None:
        """``unprocessed``: what a process that held the connection before read from it
        and did not answer (it comes before anything still in the socket)."""
        self.sock = sock
        self.client = client
        self.unprocessed = unprocessed
        self.waiting = True  # for its request head: the first to drop at the cap
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        if not self.unprocessed:
            self.reader, self.writer = await asyncio.open_connection(sock=self.sock, limit=MAX_HEAD)
            return
        # As open_connection, with the bytes read before fed first, before the transport
        # can read anything more.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        reader.feed_data(self.unprocessed)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, sock=self.sock)
        self.reader, self.writer = reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def read_head(self) -> Request | None:
        """The request head, or None: the client left, or was too slow (answered 408
        if it had begun a request; an idle connection is just closed), or sent too
        much or no HTTP (431, 400)."""
        reader = self.reader
        assert reader is not None and self.writer is not None
        begun = False

        async def head() -> bytes:
            nonlocal begun
            first = await reader.readexactly(1)
            begun = True
            return first + await reader.readuntil(b"\r\n\r\n")

        try:
            data = await asyncio.wait_for(head(), HEAD_TIMEOUT)
        except asyncio.TimeoutError:
            if begun:
                self.writer.write(response(408, b"the request did not come in time\n"))
            return None
        except asyncio.LimitOverrunError:
            self.writer.write(response(431, b"request head too large\n"))
            return None
        except (asyncio.IncompleteReadError, OSError):
            return None
        request = parse_head(data)
        if request is None:
            self.writer.write(response(400, b"not an HTTP/1 request\n"))
            return None
        self.waiting = False
        return request

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False if the client went away or did not take it in time."""
        assert self.writer is not None
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            return False
        return True

    async def reply(self, data: bytes) -> None:
        """Send a whole response and close gently: closing with unread bytes would
        reset the connection and could destroy the response before the client reads it."""
        assert self.reader is not None and self.writer is not None
        if not await self.send(data):
            return
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            await asyncio.wait_for(self.until_eof(), LINGER_TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            pass

    async def until_eof(self) -> None:
        """Read and drop what the client sends until it closes its side."""
        assert self.reader is not None
        try:
            while await self.reader.read(65536):
                pass
        except OSError:
            pass

    def abort(self) -> None:
        """Release the descriptor now, whatever state the client is in."""
        if self.writer is not None:
            self.writer.transport.abort()
        else:
            self.sock.close()


Handler = Callable[[Connection], Awaitable[None]]


class Listener:
    """Accepts on ``sock`` while started and serves each connection with ``handler``,
    holding at most ``cap`` at a time (see the module docstring). Its methods run on
    the loop's thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        handler: Handler,
        *,
        cap: int,
        name: str,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.cap = cap
        self.name = name
        self._open: dict[Connection, asyncio.Task[None]] = {}
        self._accepting = False
        self._retry: asyncio.TimerHandle | None = None
        self._warned = False

    @property
    def connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        if self._accepting:
            return
        # A shared description (the held socket): the serving processes set it
        # non-blocking too, so this changes nothing for them.
        self.sock.setblocking(False)
        self._accepting = True
        if self._retry is None:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def stop(self) -> None:
        """Accept nothing more from now on; connections already accepted go on."""
        if not self._accepting:
            return
        self._accepting = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        else:
            self.loop.remove_reader(self.sock.fileno())

    def close_all(self) -> None:
        for conn, task in list(self._open.items()):
            task.cancel()
            conn.abort()
        self._open.clear()

    def _accept(self) -> None:
        for _ in range(_BATCH):
            full = len(self._open) >= self.cap
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause(exc)
                else:
                    log.debug("%s: accept: %s", self.name, exc)
                return
            if full and not self._drop_oldest_waiting():
                _refuse(sock)
                continue
            self._take(sock, str(address[0]) if address else "")
            if full:
                return  # one at a time at the cap: the dropped one's descriptor goes first

    def adopt(self, sock: socket.socket, unprocessed: bytes = b"") -> None:
        """Serve a connection accepted elsewhere (handed over by a process that stopped),
        with what that process read from it and did not answer."""
        if len(self._open) >= self.cap and not self._drop_oldest_waiting():
            _refuse(sock)
            return
        try:
            peer = sock.getpeername()
        except OSError:
            sock.close()  # the client is gone already
            return
        self._take(sock, str(peer[0]) if isinstance(peer, tuple) else "", unprocessed)

    def _take(self, sock: socket.socket, client: str, unprocessed: bytes = b"") -> None:
        sock.setblocking(False)
        conn = Connection(sock, client, unprocessed)
        self._open[conn] = self.loop.create_task(self._serve(conn))

    def _drop_oldest_waiting(self) -> bool:
        for conn, task in self._open.items():
            if conn.waiting:
                del self._open[conn]
                task.cancel()
                conn.abort()
                return True
        return False

    def _pause(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "%s: out of file descriptors (%s); not accepting for a moment",
                self.name,
                exc.strerror,
            )
        self.loop.remove_reader(self.sock.fileno())
        self._retry = self.loop.call_later(_ACCEPT_PAUSE, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._accepting:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _serve(self, conn: Connection) -> None:
        try:
            await conn.open()
            await self.handler(conn)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: %s: %s", self.name, conn.client, exc)
        finally:
            if self._open.get(conn) is asyncio.current_task():
                del self._open[conn]
            conn.abort()


def _refuse(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        sock.send(response(503, b"too many connections\n", [("Retry-After", "1")]))
    except OSError:
        pass
    sock.close()
