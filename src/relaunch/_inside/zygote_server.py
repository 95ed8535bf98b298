"""The zygote: a process that has the program's libraries loaded and forks warm children.

Started by the supervisor as ``python [the program's flags] zygote_server.py MODE
TARGET ARGS...`` with one end of a Unix socket in ``_RELAUNCH_ZYGOTE_FD``. It sets
up ``sys.argv`` and ``sys.path`` exactly as the program's bootstrap does, then obeys
JSON lines on the socket:

* ``{"op": "preload", "modules": [name, ...]}``: import them, in order, checking
  after each that the process is still safe to fork (one thread, no new socket).
  Answers ``{"ev": "loaded", ...}`` with every module file now loaded, or
  ``{"ev": "unsafe", "module": name, "why": ...}`` and exits: a rebuild must
  leave that module out.
* ``{"op": "fork"}`` with two file descriptors attached (the child's report and
  control pipes): fork a child that runs the program from the top, as the
  bootstrap would. Answers ``{"ev": "forked", "pid": N}``.
* It reports ``{"ev": "exit", "pid": N, "status": S}`` when a child it forked exits.

It exits when the socket closes. Single-threaded on purpose: a fork copies only the
calling thread. Standard library only, like the bootstrap (which it loads by path).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any

__all__ = ["main"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_bootstrap() -> Any:
    # Loaded under a private name so it cannot collide with a module of the program.
    spec = importlib.util.spec_from_file_location(
        "_relaunch_bootstrap", os.path.join(_HERE, "bootstrap.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_relaunch_bootstrap"] = module
    spec.loader.exec_module(module)
    return module


bootstrap = _load_bootstrap()


def thread_count() -> int:
    """Threads of this process as the OS sees them (C threads included, on Linux)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def fork_aware_native_threads(python_threads: int) -> bool:
    """True when the only new threads are a native pool known to survive fork().

    numpy built with OpenBLAS starts OpenBLAS's thread pool at import; OpenBLAS stops
    the pool in a pthread_atfork handler before every fork and the child starts its
    own when it first needs one. Python-level threads are never allowed.
    """
    if threading.active_count() != python_threads:
        return False
    numpy_config = sys.modules.get("numpy.__config__")
    config = getattr(numpy_config, "CONFIG", None)
    if not isinstance(config, dict):
        return False
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return "openblas" in str(blas.get("name", "")).lower()


def socket_count() -> int:
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    count = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


class Zygote:
    def __init__(self, sock: socket.socket, mode: str, target: str) -> None:
        self.sock = sock
        self.mode = mode
        self.target = target
        self.buffer = b""
        self.pending_fds: list[int] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.threads = thread_count()
        self.python_threads = threading.active_count()
        self.sockets = socket_count()
        self.loaded: set[str] = set()  # files of the modules preloaded so far

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            raise SystemExit(0) from None  # the supervisor is gone: so is the zygote

    # -- preloading ----------------------------------------------------------------

    def preload(self, names: list[str]) -> None:
        started = time.monotonic()
        failed = []
        for name in names:
            if name in sys.modules:
                continue
            try:
                importlib.import_module(name)
            except BaseException:
                # Even SystemExit: a module that cannot be imported on its own is simply
                # not preloaded; the program imports it itself.
                failed.append(name)
                continue
            why = self.unsafe()
            if why:
                self.send({"ev": "unsafe", "module": name, "why": why})
                raise SystemExit(0)
            # A child forked earlier may be exiting meanwhile: the supervisor waits for
            # its exit report, so do not hold it until the whole preload is done.
            self.reap()
        # Move everything loaded so far out of the collector's reach: a collection in a
        # child would otherwise touch, and so copy, every page the fork shares.
        gc.collect()
        gc.freeze()
        self.loaded = {
            os.path.abspath(path)
            for module in list(sys.modules.values())
            if isinstance(path := getattr(module, "__file__", None), str)
        }
        files = sorted(self.loaded)
        self.send(
            {
                "ev": "loaded",
                "modules": len(sys.modules),
                "failed": failed,
                "seconds": round(time.monotonic() - started, 3),
                "files": files,
            }
        )

    def unsafe(self) -> str | None:
        threads = thread_count()
        if threads > self.threads:
            if not fork_aware_native_threads(self.python_threads):
                return "it started a thread"
            self.threads = threads  # a pool that stops itself before fork: allowed
        if socket_count() > self.sockets:
            return "it opened a socket"
        return None

    # -- forking -----------------------------------------------------------------------

    def fork(self, fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"ev": "error", "why": "fork needs two descriptors"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.become_child(fds[0], fds[1])  # never returns
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

    def become_child(self, report_w: int, control_r: int) -> None:
        """In the forked child: drop the zygote's state, then run the program."""
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        _reseed()
        channel = bootstrap.Channel(report_w, control_r)
        # The supervisor knows the preloaded files from the "loaded" answer.
        channel.reported.update(self.loaded)
        bootstrap.install(channel, report_loaded=False)
        status = bootstrap.execute(channel, self.mode, self.target)
        # Unwind to the interpreter's own exit: atexit handlers, thread joins, flushing.
        raise SystemExit(status)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"ev": "exit", "pid": pid, "status": status})

    # -- the loop ------------------------------------------------------------------------

    def handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        op = message.get("op") if isinstance(message, dict) else None
        fds, self.pending_fds = self.pending_fds, []
        if op == "fork":
            self.fork(fds)
            return
        for fd in fds:
            os.close(fd)
        if op == "preload" and isinstance(message.get("modules"), list):
            self.preload([m for m in message["modules"] if isinstance(m, str)])

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.sock:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 16, 8)
                    if not data:
                        return  # the supervisor is gone
                    self.pending_fds.extend(fds)
                    self.buffer += data
                    while b"\n" in self.buffer:
                        line, self.buffer = self.buffer.split(b"\n", 1)
                        self.handle(line)
                else:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()


def _reseed() -> None:
    """Give the child fresh random state, as a cold start would have had.

    The standard library's ``random`` reseeds itself after fork; numpy's legacy
    global generator does not.
    """
    np_random = sys.modules.get("numpy.random")
    seed = getattr(np_random, "seed", None)
    if callable(seed):
        seed()


def main() -> None:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: zygote_server.py MODE TARGET [ARGS...]\n")
        raise SystemExit(2)
    mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    fd = int(os.environ.pop("_RELAUNCH_ZYGOTE_FD"))
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    bootstrap.prepare(mode, target, args, entry=__file__)
    Zygote(sock, mode, target).serve()


if __name__ == "__main__":
    main()
