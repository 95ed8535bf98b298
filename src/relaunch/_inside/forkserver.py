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

A checkpoint's spare (``own_pages``) also copies, while it waits, the pages that the
fork it becomes would write first (:func:`own_pages`, Linux), so that fork writes
without a copy-on-write page fault for each (thousands, a few microseconds each, in a
reload from a large Django project's checkpoint). Which pages those are, the run before
shows: ``like``, a process that went on from the server's image as a fork of it does
(the checkpoint's own run, then each fork), has a page of its own (no longer shared)
for each it wrote. The spare waits until that process is idle (it has started, and
served), reads its page map and copies those pages: it then holds a private copy of
them (about a third of the server's memory, in the bench's Django project). When that
process is gone (it failed, or was stopped before the spare was made), the spare of a
server that has forked copies every page it shares; the first spare copies nothing.
A spare that is given its fork message stops copying.
"""

from __future__ import annotations

import json
import os
import select
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
        like: int | None = None,
    ) -> None:
        self.sock = sock
        self.on_op = on_op
        self.own_pages = own_pages
        self.like = like  # the last process that went on from this image: its pages tell
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
        pid = self._use_spare(message, fds)
        if pid is None:
            pid = self._fork_off()
            if pid == 0:
                self.forked = (message, fds[0], fds[1])
                return
            for fd in fds:
                os.close(fd)
        self.like = pid
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
            if self.own_pages and self.like is not None:  # the run before is known
                own_pages(lambda wait=0.0: _pending(theirs, wait), self.like, self.forks > 0)
            forked = _await_fork_message(theirs)
            theirs.close()
            if forked is None:
                os._exit(0)  # the server let go of it, or is gone
            self.forked = forked
            return
        theirs.close()
        self.spare_pid, self._spare_sock = pid, ours

    def _use_spare(self, message: dict[str, Any], fds: list[int]) -> int | None:
        """Hand a fork request to the spare: its pid; None if there is none (or it is gone)."""
        pid, sock = self.spare_pid, self._spare_sock
        if pid is None or sock is None:
            return None
        self.spare_pid = self._spare_sock = None  # it becomes a child like any other
        try:
            socket.send_fds(sock, [(json.dumps(message) + "\n").encode()], fds)
        except OSError:
            sock.close()
            _kill(pid)
            return None
        sock.close()
        for fd in fds:
            os.close(fd)
        return pid

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


def _pending(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether something (the fork message, or the end) waits on ``sock``, or comes
    within ``wait`` seconds."""
    if wait > 0:
        try:
            select.select([sock], [], [], wait)
        except (OSError, ValueError):
            pass
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
_IDLE_LOOK, _IDLE_WAIT = 0.05, 10.0  # seconds between looks at ``like``'s CPU time; at most


def own_pages(
    stop: Callable[..., bool] = lambda wait=0.0: False,
    like: int | None = None,
    or_every: bool = True,
) -> int:
    """Copy now the pages of this process's private writable memory that a fork of the
    process it was forked from would write first, each run of them given
    ``madvise(MADV_POPULATE_WRITE)``, which faults them in writable (so breaks their
    sharing) as a write would, with no change to their content.

    Which: with ``like``, the pid of a process that went on from the same image, the
    pages it has written (its own, no longer shared: present and exclusively mapped in
    its ``/proc/PID/pagemap``), read once it is idle. Without it, or where that cannot
    be read (the process is gone) and ``or_every``, every page this process still
    shares (present, not exclusively mapped, in its own pagemap); else none.

    Returns the bytes copied: 0 outside Linux, or where the kernel cannot. Stops when
    ``stop()`` says so, checked between runs; while it waits for ``like``,
    ``stop(seconds)`` waits (and returns at once when it is to stop). ctypes
    is loaded for the call only: the process may become the program's, which must not
    find it imported."""
    if not sys.platform.startswith("linux"):
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/maps") as maps:
            regions = _writable(maps.read())
    except OSError:
        return 0
    runs = None
    if like is not None and _idle(like, stop):
        runs = _page_runs(f"/proc/{like}/pagemap", regions, page, mine=True)
    if runs is None and (like is None or or_every) and not stop():
        runs = _page_runs("/proc/self/pagemap", regions, page, mine=False)
    return _populate(runs or [], stop)


def _writable(maps: str) -> list[tuple[int, int]]:
    """The private writable mappings of a ``/proc/PID/maps`` text, but reserved spans."""
    regions = []
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[1] != "rw-p":
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if high - low <= _LARGEST:
            regions.append((low, high))
    return regions


def _idle(pid: int, stop: Callable[..., bool]) -> bool:
    """Wait until process ``pid`` used no CPU time for a look's interval (it has done
    what it started with), at most :data:`_IDLE_WAIT` seconds. False if it is gone, or
    ``stop`` said so (it waits between the looks)."""
    deadline = time.monotonic() + _IDLE_WAIT
    last = None
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return False  # exited: its memory is gone with it
        used = int(fields[11]) + int(fields[12])  # utime + stime, all its threads'
        if used == last or time.monotonic() >= deadline:
            return True
        last = used
        if stop(_IDLE_LOOK):
            return False


def _page_runs(
    pagemap: str, regions: list[tuple[int, int]], page: int, *, mine: bool
) -> list[tuple[int, int]] | None:
    """The runs of pages in ``regions`` present in ``pagemap``, and exclusively mapped
    there (``mine``) or not; None if it cannot be read (whole)."""
    try:
        fd = os.open(pagemap, os.O_RDONLY)
    except OSError:
        return None
    runs: list[tuple[int, int]] = []
    try:
        for low, high in regions:
            count = (high - low) // page
            data = os.pread(fd, 8 * count, (low // page) * 8)
            if len(data) != 8 * count:
                return None
            start = -1
            for i, entry in enumerate(memoryview(data).cast("Q")):
                taken = entry & _PRESENT and bool(entry & _EXCLUSIVE) == mine
                if taken and start < 0:
                    start = i
                elif not taken and start >= 0:
                    runs.append((low + start * page, (i - start) * page))
                    start = -1
            if start >= 0:
                runs.append((low + start * page, (count - start) * page))
    except OSError:
        return None
    finally:
        os.close(fd)
    return runs


def _populate(runs: list[tuple[int, int]], stop: Callable[..., bool]) -> int:
    """madvise(MADV_POPULATE_WRITE) each run, a chunk at a time: the bytes done."""
    if not runs:
        return 0
    had = set(sys.modules)
    copied = 0
    try:
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for start, length in runs:
            for at in range(start, start + length, _CHUNK):
                size = min(_CHUNK, start + length - at)
                if stop() or madvise(at, size, _MADV_POPULATE_WRITE) != 0:
                    return copied
                copied += size
    except (OSError, AttributeError, ValueError):
        pass
    finally:
        for name in set(sys.modules) - had:
            sys.modules.pop(name, None)
    return copied


def _kill(pid: int) -> None:
    """Kill and reap a spare (the server's own child)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
