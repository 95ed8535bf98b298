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

A spare: a fork of a process of tens of megabytes takes milliseconds (its page tables
are copied), and a reload waited for it. So the server keeps one child forked ahead,
waiting on a socket pair for its fork message and descriptors (:meth:`_make_spare`,
:data:`SPARE_AFTER` seconds after the server started or last forked); a fork request
hands them to it, and the server answers at once. The spare is a copy of the server as
it is between requests, as a fork made then would be. Any other op (the zygote's
preloading changes what it holds) discards the spare, as does the server's exit.

A spare of a server that has forked before (``own_pages``: a checkpoint in use) also
copies, while it waits, the pages it shares with the server (:func:`own_pages`, Linux):
the fork it becomes then writes to its memory without a copy-on-write page fault for
each page it touches first (thousands, a few microseconds each, in a reload from a
large Django project's checkpoint). It then holds a private copy of the server's
memory, as the bench reports; a spare that is given its fork message stops copying.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SPARE_AFTER", "ForkServer", "Forked", "own_pages"]

Forked = tuple[dict[str, Any], int, int]  # (the fork message, report_w, control_r)

# Seconds a server waits, after it started or last forked, before it forks a spare: not
# while the child just forked is starting (the two would share the CPU).
SPARE_AFTER = 0.3
_MAX_FORK_MESSAGE = 1 << 20


class ForkServer:
    def __init__(
        self,
        sock: socket.socket,
        on_op: Callable[[dict[str, Any]], None] | None = None,
        *,
        own_pages: bool = False,
    ) -> None:
        self.sock = sock
        self.on_op = on_op
        self.own_pages = own_pages
        self.forks = 0
        self.buffer = b""
        self.pending_fds: list[int] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.selector: selectors.BaseSelector | None = None
        self.forked: Forked | None = None
        self._old_wakeup = -1
        self._old_sigchld: Any = signal.SIG_DFL
        self.spare_pid: int | None = None
        self._spare_sock: socket.socket | None = None
        self._spare_due: float | None = time.monotonic() + SPARE_AFTER

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
            if pid == self.spare_pid:
                self._forget_spare()  # it died waiting: nobody's child yet
                continue
            self.send({"ev": "exit", "pid": pid, "status": status})

    def _fork(self, message: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"ev": "error", "why": "fork needs two descriptors"})
            return
        self._spare_due = time.monotonic() + SPARE_AFTER
        self.forks += 1
        if self._use_spare(message, fds):
            return
        pid = self._fork_off()
        if pid == 0:
            self.forked = (message, fds[0], fds[1])
            return
        for fd in fds:
            os.close(fd)
        self.send({"ev": "forked", "pid": pid})

    def _fork_off(self) -> int:
        """Fork a child that leaves the server (:meth:`_leave`): its pid here, 0 in it."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._leave()
            return 0
        # The child makes its own group too, but may not have run yet: made here as well,
        # the group exists before the supervisor hears the pid, so a stop sent at once
        # reaches it. EACCES/ESRCH: the child has moved on or already exited.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        return pid

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
        if self._spare_sock is not None:
            self._spare_sock.close()  # the server's end, to the spare before this one
            self._spare_sock = None
        self.spare_pid = None

    # -- the spare -------------------------------------------------------------------

    def _make_spare(self) -> None:
        """Fork the spare. Returns in the server; in the spare, once given its fork
        message, with ``self.forked`` set (``serve`` then returns it)."""
        self._spare_due = None
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            return
        pid = self._fork_off()
        if pid == 0:
            ours.close()
            if self.own_pages and self.forks:
                own_pages(lambda: _pending(theirs))
            forked = _await_fork_message(theirs)
            theirs.close()
            if forked is None:
                os._exit(0)  # the server let go of it, or is gone
            self.forked = forked
            return
        theirs.close()
        self.spare_pid, self._spare_sock = pid, ours

    def _use_spare(self, message: dict[str, Any], fds: list[int]) -> bool:
        """Hand a fork request to the spare; False if there is none (or it is gone)."""
        pid, sock = self.spare_pid, self._spare_sock
        if pid is None or sock is None:
            return False
        self.spare_pid = self._spare_sock = None  # it becomes a child like any other
        try:
            socket.send_fds(sock, [(json.dumps(message) + "\n").encode()], fds)
        except OSError:
            sock.close()
            _kill(pid)
            return False
        sock.close()
        for fd in fds:
            os.close(fd)
        self.send({"ev": "forked", "pid": pid})
        return True

    def _forget_spare(self) -> None:
        self.spare_pid = None
        if self._spare_sock is not None:
            self._spare_sock.close()
            self._spare_sock = None
        if self._spare_due is None:
            self._spare_due = time.monotonic() + SPARE_AFTER

    def _drop_spare(self) -> None:
        """The server changes (or exits): its spare, a copy of what it was, goes."""
        pid = self.spare_pid
        self._forget_spare()  # its end of the pair closed: the spare exits at the EOF
        if pid is not None:
            _kill(pid)

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("op") == "fork":
            # Only a fork brings descriptors, two each, in order. They come with its
            # first byte, which one read may return behind another op's line: they are
            # not that line's.
            fds, self.pending_fds = self.pending_fds[:2], self.pending_fds[2:]
            self._fork(message, fds)
            return
        if self.on_op is not None:
            self._drop_spare()
            self._spare_due = time.monotonic() + SPARE_AFTER
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
            due = self._spare_due
            timeout = None if due is None else max(0.0, due - time.monotonic())
            ready = self.selector.select(timeout)
            if not ready and self._spare_due is not None and self.spare_pid is None:
                self._make_spare()
                if self.forked is not None:
                    return self.forked  # in the spare, given its fork message
                continue
            for key, _ in ready:
                if key.fileobj is self.sock:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 16, 8)
                    if not data:
                        self._drop_spare()
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


def _await_fork_message(sock: socket.socket) -> Forked | None:
    """In the spare: wait for the fork message and its two descriptors; None at the end
    of the stream (or anything else than that)."""
    buffer = b""
    fds: list[int] = []
    while b"\n" not in buffer and len(buffer) < _MAX_FORK_MESSAGE:
        try:
            data, more, _flags, _addr = socket.recv_fds(sock, 1 << 16, 8)
        except OSError:
            data, more = b"", []
        fds.extend(more)
        if not data:
            break
        buffer += data
    try:
        message = json.loads(buffer.split(b"\n", 1)[0]) if b"\n" in buffer else None
    except ValueError:
        message = None
    if not isinstance(message, dict) or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return None
    return (message, fds[0], fds[1])


def _pending(sock: socket.socket) -> bool:
    """Whether something (the fork message, or the end) waits on ``sock``."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


# madvise(2): fault the range in writable, as a write to each page would (Linux 5.14).
_MADV_POPULATE_WRITE = 23
_PRESENT, _EXCLUSIVE = 1 << 63, 1 << 56  # /proc/PID/pagemap entry bits
_LARGEST = 1 << 32  # a mapping larger than this (reserved address space) is left alone
_CHUNK = 1 << 20  # bytes copied between two looks for the fork message


def own_pages(stop: Callable[[], bool] = lambda: False) -> int:
    """Copy now the pages of this process's private writable memory that it still
    shares with the process it was forked from: those present and not exclusively
    mapped (``/proc/self/pagemap``), each run given ``madvise(MADV_POPULATE_WRITE)``,
    which breaks the sharing as a write would, with no change to their content.
    Returns the bytes copied: 0 outside Linux, or where the kernel cannot. Stops when
    ``stop()`` says so (checked between runs). ctypes is loaded for the call only: the
    process may become the program's, which must not find it imported."""
    if not sys.platform.startswith("linux"):
        return 0
    had = set(sys.modules)
    copied = 0
    try:
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps.read().splitlines()]
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        try:
            for fields in regions:
                if len(fields) < 2 or fields[1] != "rw-p":
                    continue
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if high - low > _LARGEST:
                    continue
                for start, length in _shared_runs(fd, low, high, page):
                    for at in range(start, start + length, _CHUNK):
                        size = min(_CHUNK, start + length - at)
                        if stop() or madvise(at, size, _MADV_POPULATE_WRITE) != 0:
                            return copied
                        copied += size
        finally:
            os.close(fd)
    except (OSError, AttributeError, ValueError):
        pass
    finally:
        for name in set(sys.modules) - had:
            sys.modules.pop(name, None)
    return copied


def _shared_runs(fd: int, low: int, high: int, page: int) -> list[tuple[int, int]]:
    """The runs of pages in [low, high) present and not exclusively this process's."""
    count = (high - low) // page
    data = os.pread(fd, 8 * count, (low // page) * 8)
    runs: list[tuple[int, int]] = []
    start = -1
    for i, entry in enumerate(memoryview(data).cast("Q")):
        shared = entry & _PRESENT and not entry & _EXCLUSIVE
        if shared and start < 0:
            start = i
        elif not shared and start >= 0:
            runs.append((low + start * page, (i - start) * page))
            start = -1
    if start >= 0:
        runs.append((low + start * page, (count - start) * page))
    return runs


def _kill(pid: int) -> None:
    """Kill and reap a spare (the server's own child)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
