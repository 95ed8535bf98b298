"""The fork-server loop shared by the zygote and by checkpoints (parked copies of a child).

Both obey the same JSON lines on a Unix socket to the supervisor:

* ``{"op": "fork", "hot": [path, ...]}`` with two file descriptors attached (the new
  child's report and control pipes): fork. The parent answers ``{"ev": "forked",
  "pid": N}``; in the new child :meth:`ForkServer.serve` returns, with the message and
  the two descriptors, and the caller makes it run the program.
* It reports ``{"ev": "exit", "pid": N, "status": S}`` when a child it forked exits.
* Any other op goes to the ``on_op`` callback (the zygote's preloading).

It exits (``serve`` returns None) when the socket closes. Single-threaded on purpose:
a fork copies only the calling thread. Standard library only, loaded by path (by the
zygote and by the bootstrap), like the bootstrap.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ForkServer", "Forked"]

Forked = tuple[dict[str, Any], int, int]  # (the fork message, report_w, control_r)


class ForkServer:
    def __init__(
        self,
        sock: socket.socket,
        on_op: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.sock = sock
        self.on_op = on_op
        self.buffer = b""
        self.pending_fds: list[int] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.selector: selectors.BaseSelector | None = None
        self.forked: Forked | None = None
        self._old_wakeup = -1
        self._old_sigchld: Any = signal.SIG_DFL

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            raise SystemExit(0) from None  # the supervisor is gone: so is this process

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"ev": "exit", "pid": pid, "status": status})

    def _fork(self, message: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"ev": "error", "why": "fork needs two descriptors"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._leave()
            self.forked = (message, fds[0], fds[1])
            return
        # The child makes its own group too, but may not have run yet: made here as well,
        # the group exists before the supervisor hears the pid, so a stop sent at once
        # reaches it. EACCES/ESRCH: the child has moved on or already exited.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        self.send({"ev": "forked", "pid": pid})

    def _leave(self) -> None:
        """In the forked child: drop everything of the server, give back the signal
        handling the process had before it served."""
        os.setpgid(0, 0)
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGCHLD, self._old_sigchld)
        if self.selector is not None:
            self.selector.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        fds, self.pending_fds = self.pending_fds, []
        if message.get("op") == "fork":
            self._fork(message, fds)
            return
        for fd in fds:
            os.close(fd)
        if self.on_op is not None:
            self.on_op(message)

    def serve(self) -> Forked | None:
        """Serve until the socket closes (None), or, in a forked child, return its fork
        message and descriptors."""
        self._old_wakeup = signal.set_wakeup_fd(self.wake_w)
        self._old_sigchld = signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 16, 8)
                    if not data:
                        return None  # the supervisor is gone
                    self.pending_fds.extend(fds)
                    self.buffer += data
                    while b"\n" in self.buffer:
                        line, self.buffer = self.buffer.split(b"\n", 1)
                        self._handle(line)
                        if self.forked is not None:
                            return self.forked
                else:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
