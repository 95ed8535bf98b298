"""Listening sockets the program hands to relaunch, so that they outlive its processes.

A server that binds its own port (Django's runserver) closes it when its process
exits: from then until the new process binds, every connection is refused, and the
new process cannot start before the old one is gone. The keeper holds a copy of the
socket instead. The first process hands its listening socket over once it listens
(``keep``); every later process takes that copy (``take``) instead of binding. While
no process accepts, connections wait in the socket's backlog, and the old process can
finish its requests while the new one starts.

The keeper is a Unix socket in a private (0700) folder, named to the program by
``_RELAUNCH_SOCKETS`` (:mod:`relaunch.held` is the program's side). One request per
connection, one packet each way:

* ``keep KEY`` with the socket attached: ``ok`` (a socket already kept for KEY stays);
* ``take KEY``: ``have`` with the socket attached, or ``none``;
* ``drop KEY`` (the process that took it cannot serve: its start failed): ``ok``. The
  backlog's connections are then reset and new ones refused, as without a keeper, and
  the next process binds the port again.

KEY names the address the program asked for (:func:`relaunch.held.key`), so a program
started with another address never gets this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading

from .. import oslayer

__all__ = ["ENV", "SocketKeeper", "parse_request"]

log = logging.getLogger("relaunch")

ENV = "_RELAUNCH_SOCKETS"
_MAX_REQUEST = 512
_TIMEOUT = 2.0  # a program's process that connects and says nothing is not waited for


def parse_request(data: bytes) -> tuple[str, str] | None:
    """(verb, key) of a request packet, or None if it is not one (pure)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    verb, _, key = text.partition(" ")
    if verb not in ("keep", "take", "drop") or not key or len(key) > 200:
        return None
    if not key.isprintable():
        return None
    return verb, key


class SocketKeeper:
    """The supervisor's end: the listening sockets kept, by key. Thread-safe."""

    def __init__(self) -> None:
        kind = oslayer.fd_passing_socket_type()
        if kind is None:
            raise OSError("this system cannot pass open sockets between processes")
        self.folder, self.path, self._listener = oslayer.private_unix_listener("sockets", kind, 16)
        self._lock = threading.Lock()
        self._held: dict[str, socket.socket] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="relaunch-keeper", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {ENV: self.path}

    def holding(self) -> bool:
        """Whether a socket is kept: the program's next process can serve while the old
        one finishes its requests."""
        with self._lock:
            return bool(self._held)

    def release(self, *, why: str = "the program is not serving") -> None:
        """Nothing serves (the program failed or exited): let go of every socket, so
        clients are refused (as without a keeper) rather than left waiting in a backlog."""
        with self._lock:
            held, self._held = self._held, {}
        for key, sock in held.items():
            if why:
                log.debug("let go of the listening socket %s: %s", key, why)
            sock.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._listener.close()
        self.release(why="")
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the keeper's thread ---------------------------------------------------------

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _address = self._listener.accept()
            except OSError:
                if self._closing:
                    return
                continue
            with conn:
                conn.settimeout(_TIMEOUT)
                try:
                    self._answer(conn)
                except OSError as exc:
                    log.debug("keeper: a request failed: %s", exc)

    def _answer(self, conn: socket.socket) -> None:
        data, fds = oslayer.receive_with_fd(conn, _MAX_REQUEST, block=True)
        request = parse_request(data)
        try:
            if request is None:
                return
            verb, key = request
            if verb == "keep":
                if len(fds) == 1:
                    self._keep(key, fds.pop())
                conn.send(b"ok")
            elif verb == "take":
                with self._lock:
                    sock = self._held.get(key)
                    if sock is None:
                        conn.send(b"none")
                    else:
                        oslayer.send_with_fd(conn, b"have", sock.fileno())
            else:
                with self._lock:
                    dropped = self._held.pop(key, None)
                if dropped is not None:
                    log.debug("let go of the listening socket %s: its new process failed", key)
                    dropped.close()
                conn.send(b"ok")
        finally:
            for fd in fds:
                os.close(fd)

    def _keep(self, key: str, fd: int) -> None:
        sock = socket.socket(fileno=fd)
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        if not listening:
            sock.close()  # not a listening socket: nothing to keep
            return
        with self._lock:
            if key not in self._held:
                self._held[key] = sock
                log.debug("keeping the listening socket %s across restarts", key)
                return
        sock.close()
