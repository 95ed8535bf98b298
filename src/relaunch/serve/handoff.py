"""Keep-alive connections handed from the retiring ``relaunch serve`` process to the new one.

Closing an idle keep-alive connection at a reload races with the client's next request,
which may already be on the wire: the client sees a reset. Handing the open connection
to the new process cannot race: the next request waits in the connection's kernel buffer,
whichever process holds it, and the new code answers it.

The supervisor runs the :class:`Hub`, a Unix socket in a private (0700) folder. Every
serving process connects once it has loaded the app (:class:`Link`) and says which
process group it is; it waits for "go" before it accepts anything. The supervisor says
go (:meth:`Hub.approve`) only to a process whose imported files did not change while it
loaded. A retiring process says "bye", stops reading its idle connections, and sends
each one to the hub once idle (after its response, if a request was in flight), with
any bytes it read but did not process. The hub keeps them until a process is approved
and sends them on. After "bye" the hub sends that process nothing more and shuts its
side, so "end of stream" tells the process that nothing is still on the way.

Messages (one per SOCK_SEQPACKET packet): ``H<pgid>`` hello; ``G`` go; ``B`` bye;
``F<bytes>`` with one connection attached, the bytes read from it but not processed.

Where open sockets cannot be passed (see :func:`oslayer.fd_passing_socket_type`), there
is no hub: processes serve at once and close idle connections when they retire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import oslayer

__all__ = ["MAX_MESSAGE", "Hub", "Link"]

log = logging.getLogger("relaunch")

MAX_MESSAGE = 256 * 1024  # a connection's unprocessed bytes travel in one packet


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass(eq=False)
class _Peer:
    sock: socket.socket
    pgid: int = 0
    go: bool = False  # told to serve
    bye: bool = False  # retiring: sent nothing more


class Hub:
    """The supervisor's end: connections given back wait here for the approved process.

    :meth:`approve`, :meth:`failed` and :meth:`hold` may be called from any thread."""

    def __init__(self) -> None:
        kind = oslayer.fd_passing_socket_type()
        if kind is None:
            raise OSError("this system cannot pass open sockets between processes")
        self.folder, self.path, self._listener = oslayer.private_unix_listener("handoff", kind, 64)
        self._lock = threading.Lock()
        self._peers: dict[int, _Peer] = {}  # by fileno
        self._held: list[tuple[int, bytes]] = []
        self._approved: int | None = None
        # The program failed: what is held, and given back, goes here (the error page).
        self._orphans: Callable[[int, bytes], None] | None = None
        self._turn = 0
        self._closing = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="relaunch-handoff", daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------

    def approve(self, pgid: int) -> None:
        """Let the processes of group ``pgid`` serve, and give them what is held."""
        with self._lock:
            log.debug("hand-over: process group %d may serve", pgid)
            self._approved = pgid
            self._orphans = None
            for peer in list(self._peers.values()):
                if peer.pgid == pgid and not peer.go and not peer.bye:
                    self._go(peer)
            self._flush()

    def failed(self, answer: Callable[[int, bytes], None]) -> None:
        """The program failed: the held connections, and those given back until a new
        process starts (:meth:`hold`), go to ``answer`` (the error page) with what was
        read from them. Closing them instead would reset a request already sent on one
        (a connection the stopping process accepted and had not read yet)."""
        with self._lock:
            self._approved = None
            self._orphans = answer
            held, self._held = self._held, []
            for fd, data in held:
                answer(fd, data)

    def hold(self) -> None:
        """A new process is starting: hold what is given back for it again."""
        with self._lock:
            self._orphans = None

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        with self._lock:
            _close_fds([fd for fd, _data in self._held])
            self._held.clear()
            for peer in self._peers.values():
                peer.sock.close()
            self._peers.clear()
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the hub's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            for key, _mask in self._selector.select():
                if self._closing:
                    return
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake_r:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            sock, _address = self._listener.accept()
        except OSError:
            return
        # Blocking mode, every call with MSG_DONTWAIT: the hub never waits for a peer (a
        # peer whose queue is full is given nothing more).
        sock.setblocking(True)
        with self._lock:
            self._peers[sock.fileno()] = _Peer(sock)
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        try:
            data, fds = oslayer.receive_with_fd(sock, MAX_MESSAGE + 1, block=False)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        with self._lock:
            peer = self._peers.get(sock.fileno())
            if peer is None:
                _close_fds(fds)
                return
            if not data:
                self._drop(peer)
                return
            kind, body = data[:1], data[1:]
            if kind == b"F" and len(fds) == 1:
                if self._orphans is not None:
                    self._orphans(fds[0], body)
                else:
                    self._held.append((fds[0], body))
                    self._flush()
                return
            _close_fds(fds)
            if kind == b"H" and body.isdigit():
                peer.pgid = int(body)
                if peer.pgid == self._approved:
                    self._go(peer)
                    self._flush()
            elif kind == b"B":
                peer.bye = True
                with contextlib.suppress(OSError):
                    peer.sock.shutdown(socket.SHUT_WR)  # nothing more is on its way

    def _drop(self, peer: _Peer) -> None:
        self._peers.pop(peer.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        peer.sock.close()

    def _go(self, peer: _Peer) -> None:
        try:
            oslayer.send_with_fd(peer.sock, b"G", block=False)
            peer.go = True
        except OSError:
            peer.bye = True

    def _flush(self) -> None:
        """Send the held connections to the approved processes, in turn. Lock held."""
        while self._held:
            targets = [
                p for p in self._peers.values() if p.pgid == self._approved and p.go and not p.bye
            ]
            if not targets:
                return
            peer = targets[self._turn % len(targets)]
            self._turn += 1
            fd, data = self._held[0]
            try:
                oslayer.send_with_fd(peer.sock, b"F" + data, fd, block=False)
            except OSError as exc:
                log.debug("cannot hand a connection to process group %d: %s", peer.pgid, exc)
                peer.bye = True
                continue
            self._held.pop(0)
            os.close(fd)


class Link:
    """A serving process's end: hello and go, connections received, connections given."""

    def __init__(self, path: str) -> None:
        kind = oslayer.fd_passing_socket_type()
        if kind is None:
            raise OSError("this system cannot pass open sockets between processes")
        # Blocking mode: sends wait for the hub (a thread that only reads and passes on);
        # reads that must not wait say so with MSG_DONTWAIT.
        self.sock = socket.socket(socket.AF_UNIX, kind)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.open = True  # False once the hub said it sends nothing more
        self._said_bye = False
        self.stop_requested = False  # SIGTERM came before the server could take it

    def catch_stop(self) -> None:
        """Until the server installs its own SIGTERM handler, only record a SIGTERM: the
        connections the hub may already have sent must be given back, not dropped (a
        process dying with them unread resets their clients). The server checks
        ``stop_requested`` once its handler is in place."""
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, _signum: int, _frame: object) -> None:
        self.stop_requested = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait_for_go(self) -> bool:
        """Say hello, then block until the supervisor lets this process serve. False if
        the hub went away (the supervisor stops this process)."""
        oslayer.send_with_fd(self.sock, b"H%d" % oslayer.own_process_group())
        while not self.stop_requested:
            # Short waits: a SIGTERM meanwhile (superseded) is looked at between them.
            readable, _, _ = select.select([self.sock], [], [], 0.1)
            if not readable:
                continue
            try:
                data, fds = oslayer.receive_with_fd(self.sock, MAX_MESSAGE + 1, block=False)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return False
            _close_fds(fds)
            if not data:
                self.open = False
                return False
            if data == b"G":
                return True
        return False

    def hand_back(self, timeout: float = 10.0) -> None:
        """Leaving without serving: say bye and give back whatever the hub sent, until
        it ends the stream."""
        self.bye()
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            select.select([self.sock], [], [], 0.1)
            for conn, unprocessed in self.receive():
                self.give(conn.detach(), unprocessed)

    def receive(self) -> list[tuple[socket.socket, bytes]]:
        """The connections the hub sent, without blocking; sets ``open`` to False at
        the end of the stream."""
        received: list[tuple[socket.socket, bytes]] = []
        while self.open:
            try:
                data, fds = oslayer.receive_with_fd(self.sock, MAX_MESSAGE + 1, block=False)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data, fds = b"", []
            if not data:
                _close_fds(fds)
                self.open = False
                break
            if data[:1] == b"F" and len(fds) == 1:
                try:
                    received.append((socket.socket(fileno=fds[0]), data[1:]))
                except OSError:
                    _close_fds(fds)
            else:
                _close_fds(fds)
        return received

    def give(self, fd: int, unprocessed: bytes = b"") -> None:
        """Send connection ``fd`` (and what was read from it but not processed) to the
        hub, and close it here. If that fails the connection is closed: the client
        reconnects, as without a hub."""
        if not self._said_bye:
            self.bye()  # else the hub could send it straight back here
        try:
            if len(unprocessed) <= MAX_MESSAGE:
                oslayer.send_with_fd(self.sock, b"F" + unprocessed, fd)
        except OSError as exc:
            log.debug("cannot hand a connection over: %s", exc)
        finally:
            os.close(fd)

    def bye(self) -> None:
        """Retiring: from now on the hub sends nothing and ends the stream."""
        if self._said_bye:
            return
        self._said_bye = True
        try:
            oslayer.send_with_fd(self.sock, b"B")
        except OSError:
            self.open = False

    def close(self) -> None:
        self.sock.close()
