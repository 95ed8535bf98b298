"""The program's side of relaunch's socket keeper (:mod:`relaunch.run.keeper`).

A server in the program that binds its own port asks for the socket relaunch keeps
for that address (:func:`take`) and, when there is none, hands over the one it bound
(:func:`keep`): its next processes then serve on the same socket, and no connection
is refused while one replaces another. Outside ``relaunch run`` (or where open
sockets cannot be passed) every call does nothing: the server binds as it always did.
"""

from __future__ import annotations

import os
import socket

from . import oslayer

__all__ = ["available", "drop", "keep", "key", "take"]

_ENV = "_RELAUNCH_SOCKETS"  # relaunch.run.keeper.ENV: set by the supervisor
_TIMEOUT = 5.0  # the keeper answers at once, or after its own bound on a stuck peer


def key(family: int, host: str, port: int) -> str:
    """The name of a TCP address as the program asked for it (not as it resolved)."""
    return f"tcp/{int(family)} {host} {int(port)}"


def available() -> bool:
    return bool(os.environ.get(_ENV)) and oslayer.fd_passing_socket_type() is not None


def _ask(request: str, fd: int | None = None) -> tuple[bytes, list[int]]:
    kind = oslayer.fd_passing_socket_type()
    path = os.environ.get(_ENV)
    if kind is None or not path:
        return b"", []
    with socket.socket(socket.AF_UNIX, kind) as conn:
        conn.settimeout(_TIMEOUT)
        try:
            conn.connect(path)
            oslayer.send_with_fd(conn, request.encode("ascii"), fd)
            return oslayer.receive_with_fd(conn, 16, block=True)
        except OSError:
            return b"", []


def take(name: str, family: int) -> socket.socket | None:
    """The listening socket relaunch keeps under ``name``, or None."""
    answer, fds = _ask(f"take {name}")
    if answer != b"have" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return None
    sock = socket.socket(fileno=fds[0])
    if sock.family != family or sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    sock.set_inheritable(False)
    return sock


def keep(name: str, sock: socket.socket) -> bool:
    """Hand a copy of the listening ``sock`` to relaunch; True if it took it."""
    answer, fds = _ask(f"keep {name}", sock.fileno())
    for fd in fds:
        os.close(fd)
    return answer == b"ok"


def drop(name: str) -> None:
    """This process took the socket but cannot serve: relaunch lets go of it too."""
    _ask(f"drop {name}")
