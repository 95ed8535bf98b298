"""Checkpoint restarts: the supervisor's side of the parked processes (see
:mod:`relaunch.run.checkpoints`): the Unix socket they connect to, and the client
that forks from each."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import oslayer
from .zygote import MAX_MESSAGE, ForkClient

__all__ = ["ARRIVING_FOR", "HELLO_TIMEOUT", "CheckpointClient", "Listener"]

log = logging.getLogger("relaunch")

HELLO_TIMEOUT = 5.0
ARRIVING_FOR = 10.0  # seconds a checkpoint announced by its parent may take to say hello


# -- the processes -----------------------------------------------------------------------


class CheckpointClient(ForkClient):
    def __init__(
        self, sock: socket.socket, on_event: Callable[[tuple[Any, ...]], None], pid: int
    ) -> None:
        super().__init__(sock, on_event)
        self.pid = pid
        self._start_reading()

    def close(self) -> threading.Thread:
        """Hang up (it exits at the EOF) and reap it, in the background: discarding one
        must not hold a reload. Returns the reaping thread."""
        self._hang_up()
        reaper = threading.Thread(
            target=_reap, args=(self.pid,), name="relaunch-checkpoint-reap", daemon=True
        )
        reaper.start()
        return reaper


def _reap(pid: int) -> None:
    done = threading.Event()

    def wait() -> None:
        oslayer.wait_exit(pid)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    if not done.wait(5):
        oslayer.kill_and_reap(pid)  # it did not leave at the EOF


def _from_parent(conn: socket.socket, line: bytes) -> bool:
    """A "parking PID" line comes from PID's parent (where the kernel can say)."""
    peer = oslayer.peer_pid(conn)
    return peer is None or oslayer.parent_pid(int(line[8:])) == peer


class Listener:
    """The Unix socket parked processes connect to (in a private folder). Each
    connection's first line is posted as ``("zygote", listener, {"ev": "hello", ...})``.

    A checkpoint's parent first says "parking PID" and waits for the answer: until then
    the new process is not relaunch's child, so it is known before the stray killer can
    see it."""

    def __init__(self, on_event: Callable[[tuple[Any, ...]], None]) -> None:
        self.on_event = on_event
        self.folder, self.address, self.sock = oslayer.private_unix_listener(
            "checkpoints", socket.SOCK_STREAM, 16
        )
        self.lock = threading.Lock()
        self.arriving: dict[int, float] = {}  # pid -> when announced
        self.closed = False
        threading.Thread(target=self._accept, name="relaunch-checkpoints", daemon=True).start()

    def pids(self) -> set[int]:
        now = time.monotonic()
        with self.lock:
            for pid, since in list(self.arriving.items()):
                if now - since > ARRIVING_FOR:
                    del self.arriving[pid]
            return set(self.arriving)

    def arrived(self, pid: int) -> None:
        with self.lock:
            self.arriving.pop(pid, None)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._greet, args=(conn,), name="relaunch-checkpoint-hello", daemon=True
            ).start()

    def _greet(self, conn: socket.socket) -> None:
        import json

        conn.settimeout(HELLO_TIMEOUT)
        buffer = b""
        try:
            while b"\n" not in buffer and len(buffer) < MAX_MESSAGE:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
            line = buffer.split(b"\n", 1)[0]
            if line.startswith(b"parking ") and line[8:].isdigit() and _from_parent(conn, line):
                with self.lock:
                    self.arriving[int(line[8:])] = time.monotonic()
                conn.sendall(b"ok\n")
                conn.close()
                return
            message = json.loads(line)
        except (OSError, ValueError):
            conn.close()
            return
        conn.settimeout(None)
        if isinstance(message, dict):
            # The kernel's word on who connected, not the program's: the pid is one
            # relaunch will wait for, and kill if it does not leave.
            message["peer"] = oslayer.peer_pid(conn)
        self.on_event(("zygote", self, {"ev": "hello", "hello": message, "sock": conn}))

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the strategy ----------------------------------------------------------------------
