"""uvicorn on the held socket for ``relaunch serve``, handing keep-alive connections over.

With a :class:`~.handoff.Link`, uvicorn's HTTP protocol is subclassed so that, once this
process is told to stop, a connection between requests is not read any more and not
closed: its socket goes to the hub (see :mod:`.handoff`) with any bytes that arrived
meanwhile, and the next process answers its next request. A request in flight finishes
here first. Connections the hub sends are adopted with ``connect_accepted_socket``.

Only imported for ASGI apps, so uvicorn is imported only then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from .handoff import Link

__all__ = ["run"]

# How often a connection whose last response is still being written is looked at again.
_RETRY = 0.01


class _Handover:
    """The stopping state of this process, shared by its connections."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: set[Any] = set()  # connections to hand over once their output is sent
        self._scheduled = False

    def soon(self, protocol: Any) -> None:
        self.waiting.add(protocol)
        if not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self._hand_waiting)

    def _hand_waiting(self) -> None:
        self._scheduled = False
        for protocol in list(self.waiting):
            transport = protocol.transport
            if transport.is_closing():
                self.waiting.discard(protocol)
            elif transport.get_write_buffer_size() == 0:
                self.waiting.discard(protocol)
                self._hand(protocol)
        if self.waiting and self.loop is not None and not self._scheduled:
            self._scheduled = True
            self.loop.call_later(_RETRY, self._hand_waiting)

    def _hand(self, protocol: Any) -> None:
        transport = protocol.transport
        sock = transport.get_extra_info("socket")
        try:
            fd = os.dup(sock.fileno())
        except OSError:
            transport.close()
            return
        unprocessed, protocol.relaunch_unprocessed = protocol.relaunch_unprocessed, b""
        transport.close()  # closes this process's copy only: the connection stays open
        self.link.give(fd, unprocessed)


def _handing_protocol(base: Any, handover: _Handover) -> Any:
    class Handing(base):  # type: ignore[misc, valid-type]
        relaunch_unprocessed = b""
        relaunch_partial = False  # bytes of a request not complete yet were read

        def relaunch_between_requests(self) -> bool:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return False
            if self.relaunch_partial:
                return False
            trailing = getattr(getattr(self, "conn", None), "trailing_data", (b"", False))
            return not trailing[0]

        def relaunch_hand_over(self) -> None:
            self.transport.pause_reading()
            handover.soon(self)

        def data_received(self, data: bytes) -> None:
            if handover.stopping and self.relaunch_between_requests():
                # A request for the next process: it goes along with the connection.
                self.relaunch_unprocessed += data
                self.relaunch_hand_over()
                return
            before = self.cycle
            super().data_received(data)
            idle = self.cycle is before and (before is None or before.response_complete)
            self.relaunch_partial = idle

        def on_response_complete(self) -> None:
            self.relaunch_partial = False
            super().on_response_complete()
            if (
                handover.stopping
                and not self.transport.is_closing()
                and self.relaunch_between_requests()
            ):
                self.relaunch_hand_over()

        def shutdown(self) -> None:
            # uvicorn would close an idle connection and end a busy one after its
            # response; both are handed over instead (a busy one once it is answered).
            if self.relaunch_between_requests() and not self.transport.is_closing():
                self.relaunch_hand_over()

    return Handing


def run(
    uvicorn: Any,
    app: Any,
    sock: socket.socket,
    link: Link | None,
    ready: Callable[[], None],
    *,
    access_log: bool = False,
) -> None:
    """Serve the ASGI ``app`` on ``sock`` with uvicorn until SIGTERM; ``access_log``:
    uvicorn's own line per request, without its start-up chatter."""
    extra: dict[str, Any] = {}
    handover = _Handover(link) if link is not None else None
    if handover is not None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        extra["http"] = _handing_protocol(AutoHTTPProtocol, handover)
    config = uvicorn.Config(
        app,
        lifespan="auto",
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=30,
        **extra,
    )
    if access_log:  # after Config, which sets every uvicorn logger to log_level
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    original_startup = server.startup
    original_shutdown = server.shutdown
    original_exit = server.handle_exit

    def adopt(conn: socket.socket, unprocessed: bytes) -> None:
        assert handover is not None and handover.loop is not None
        if handover.stopping:
            handover.link.give(conn.detach(), unprocessed)  # arrived after "bye"
            return

        def protocol() -> Any:
            return config.http_protocol_class(
                config=config, server_state=server.server_state, app_state=server.lifespan.state
            )

        async def connect() -> None:
            try:
                _transport, adopted = await handover.loop.connect_accepted_socket(  # type: ignore[union-attr]
                    protocol, conn
                )
            except OSError:
                conn.close()
                return
            if unprocessed:
                adopted.data_received(unprocessed)

        handover.loop.create_task(connect())

    def from_hub() -> None:
        assert handover is not None and handover.loop is not None
        for conn, unprocessed in handover.link.receive():
            adopt(conn, unprocessed)
        if not handover.link.open:
            handover.loop.remove_reader(handover.link.fileno())

    def begin_stop() -> None:
        assert handover is not None
        handover.link.bye()
        for listening in getattr(server, "servers", []):
            listening.close()  # stop accepting now rather than at uvicorn's next tick
        for protocol in list(server.server_state.connections):
            protocol.shutdown()

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets=sockets)
        if handover is not None:
            handover.loop = asyncio.get_running_loop()
            handover.loop.add_reader(handover.link.fileno(), from_hub)
            if handover.link.stop_requested:
                handle_exit(signal.SIGTERM, None)  # came while it started: stop cleanly
        ready()

    def handle_exit(sig: int, frame: Any) -> None:
        original_exit(sig, frame)
        if handover is not None and not handover.stopping and handover.loop is not None:
            handover.stopping = True
            handover.loop.call_soon_threadsafe(begin_stop)

    async def shutdown(sockets: Any = None) -> None:
        if handover is not None and not handover.stopping:
            # Told to stop before this process could hook it (uvicorn's own handler):
            # hand over, do not close.
            handover.stopping = True
            begin_stop()
        await original_shutdown(sockets=sockets)
        # Until the hub ends the stream, what it still sends is sent back.
        while handover is not None and (handover.link.open or handover.waiting):
            await asyncio.sleep(_RETRY)

    server.startup = startup  # type: ignore[method-assign]
    server.shutdown = shutdown  # type: ignore[method-assign]
    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run(sockets=[sock])
