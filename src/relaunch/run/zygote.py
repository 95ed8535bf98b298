"""The supervisor's handle on the zygote (see zygote_server.py for the other side).

A :class:`ZygoteClient` starts the zygote process, asks it to preload modules, and
forks warm children from it; its base :class:`ForkClient` also drives checkpoints
(run/checkpoints.py), which speak the same protocol. A reader thread turns the
zygote's messages into events for the supervisor (``("zygote", client, message)``)
and reports the exit of each forked child to its :class:`~relaunch.run.child.Child`.
If the zygote dies (or is discarded), the children it forked are waited for, and
reaped, by relaunch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import oslayer
from ..command import PythonInvocation
from .child import Child

__all__ = ["ZYGOTE_SERVER", "ForkClient", "ZygoteClient"]

log = logging.getLogger(__name__)

ZYGOTE_SERVER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_inside", "zygote_server.py"
)
FORK_TIMEOUT = 5.0
MAX_MESSAGE = 16 << 20


class ForkClient:
    """The supervisor's end of a fork server's socket (forkserver.py): the zygote, or a
    checkpoint. Forks children from it; a reader thread turns its messages into events
    (``("zygote", client, message)``) and reports each forked child's exit to its
    :class:`~relaunch.run.child.Child`. When the socket closes, the children it forked
    are waited for, and reaped, by relaunch."""

    def __init__(self, sock: socket.socket, on_event: Callable[[tuple[Any, ...]], None]) -> None:
        self.sock = sock
        self.on_event = on_event
        self.children: dict[int, Child] = {}
        self.lock = threading.Lock()
        self.forked: dict[str, Any] | None = None
        self._forking: Child | None = None  # the child a fork request is for
        self.fork_done = threading.Condition(self.lock)
        self.busy = False
        self.alive = True
        # The files edited this session, told to each child it forks (where to park
        # checkpoints). Set by the strategy.
        self.hot: list[str] = []
        self.last_pid: int | None = None  # of the last child forked
        self.thread: threading.Thread | None = None

    def _start_reading(self) -> None:
        self.thread = threading.Thread(target=self._read, name="relaunch-zygote", daemon=True)
        self.thread.start()

    @property
    def ready(self) -> bool:
        return self.alive and not self.busy

    def _send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        data = (json.dumps(message) + "\n").encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def fork(self, child: Child, fds: tuple[int, int]) -> int:
        """Fork a child; returns its pid. Raises OSError if the fork server cannot."""
        with self.lock:
            if not self.ready:
                raise OSError("the fork server is not ready")
            self.forked = None
            self._forking = child
            try:
                self._send({"op": "fork", "hot": list(self.hot)}, fds)
            except OSError:
                self.alive = False
                raise
            deadline = time.monotonic() + FORK_TIMEOUT
            while self.forked is None and self.alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.busy = True  # an answer may still come: not safe to use
                    raise OSError("the fork server did not answer")
                self.fork_done.wait(left)
            reply, self.forked = self.forked, None
            self._forking = None
            if reply is None:
                raise OSError("the fork server died")
            self.last_pid = int(reply["pid"])
            return self.last_pid

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > MAX_MESSAGE:
                    break
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._handle(line)
        except OSError:
            pass
        with self.lock:
            self.alive = False
            self.fork_done.notify_all()
            orphans = list(self.children.values())
            self.children.clear()
        for child in orphans:
            threading.Thread(target=child.orphaned, name="relaunch-orphan", daemon=True).start()
        self.on_event(("zygote", self, {"ev": "gone"}))

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        event = message.get("ev")
        if event == "forked" and isinstance(message.get("pid"), int):
            with self.lock:
                if self.busy or self._forking is None:
                    # The fork we gave up waiting for: nobody wants this child.
                    oslayer.kill_group(message["pid"])
                    return
                # Known from here, not once fork() wakes up: a child that exits at once
                # has its exit report right behind this line, and this thread reads on.
                self.children[message["pid"]] = self._forking
                self.forked = message
                self.fork_done.notify_all()
        elif event == "exit" and isinstance(message.get("pid"), int):
            with self.lock:
                child = self.children.pop(message["pid"], None)
            if child is not None and isinstance(message.get("status"), int):
                child.mark_exited(os.waitstatus_to_exitcode(message["status"]))
        else:
            self._other(message)

    def _other(self, message: dict[str, Any]) -> None:
        """Any other message of the fork server."""

    def _hang_up(self) -> None:
        self.alive = False
        try:
            # shutdown() first: close() alone neither wakes the reader thread blocked in
            # recv() nor, while that recv holds the socket, tells the server (no EOF).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ZygoteClient(ForkClient):
    def __init__(
        self,
        python: PythonInvocation,
        *,
        executable: str | None,
        on_event: Callable[[tuple[Any, ...]], None],
        stdin_to_child: bool,
        extra_env: dict[str, str],
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        super().__init__(ours, on_event)
        self.busy = True  # until the first preload answers
        self.files: frozenset[str] = frozenset()
        self.modules: set[str] = set()
        env = dict(os.environ, **extra_env, _RELAUNCH_ZYGOTE_FD=str(theirs.fileno()))
        interpreter = executable or python.interpreter
        argv = [interpreter, *python.flags, ZYGOTE_SERVER, python.mode, python.target, *python.args]
        try:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                pass_fds=(theirs.fileno(), *pass_fds),
                stdin=None if stdin_to_child else subprocess.DEVNULL,
                **oslayer.popen_group_kwargs(die_with_parent=True),
            )
        finally:
            theirs.close()
        self._start_reading()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def preload(self, modules: Sequence[str]) -> None:
        """Ask the zygote to import these (in order); it answers with a "loaded" event."""
        self.busy = True
        self.modules.update(modules)
        try:
            self._send({"op": "preload", "modules": list(modules)})
        except OSError:
            self.alive = False

    def _other(self, message: dict[str, Any]) -> None:
        event = message.get("ev")
        if event == "loaded":
            files = message.get("files")
            if isinstance(files, list):
                self.files = frozenset(f for f in files if isinstance(f, str))
            self.busy = False
            self.on_event(("zygote", self, message))
        elif event == "unsafe":
            self.on_event(("zygote", self, message))

    def close(self) -> None:
        """Stop the zygote (the children it forked are stopped by the supervisor)."""
        busy = self.busy
        self._hang_up()
        if busy:
            # Mid-preload it reads the socket (and sees the EOF) only once every import is
            # done: seconds for a large library, and the supervisor's thread waits here.
            self.proc.kill()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
