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
* ``{"op": "fork", "hot": [...]}`` with two file descriptors attached (the child's
  report and control pipes): fork a child that runs the program from the top, as
  the bootstrap would, told the files edited so far (where it parks checkpoints).
  Answers ``{"ev": "forked", "pid": N}``.
* It reports ``{"ev": "exit", "pid": N, "status": S}`` when a child it forked exits.

The fork loop is forkserver.py's, shared with checkpoints. It exits when the socket
closes. Standard library only, like the bootstrap (which it loads by path, and which
loads forkserver.py).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
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
forkserver = bootstrap.load_forkserver()
thread_count = bootstrap.thread_count
socket_count = bootstrap.socket_count
reseed = bootstrap.reseed


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


class Zygote:
    def __init__(self, sock: socket.socket, mode: str, target: str, checkpoints: str) -> None:
        self.server = forkserver.ForkServer(sock, self.handle)
        self.send = self.server.send
        self.mode = mode
        self.target = target
        self.checkpoints = checkpoints  # where a child parks its checkpoints ("": none)
        self.threads = thread_count()
        self.python_threads = threading.active_count()
        self.sockets = socket_count()
        self.loaded: set[str] = set()  # files of the modules preloaded so far

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
            self.server.reap()
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

    def handle(self, message: dict[str, Any]) -> None:
        if message.get("op") == "preload" and isinstance(message.get("modules"), list):
            self.preload([m for m in message["modules"] if isinstance(m, str)])

    def serve(self) -> None:
        forked = self.server.serve()
        if forked is not None:
            self.become_child(*forked)  # never returns

    def become_child(self, message: dict[str, Any], report_w: int, control_r: int) -> None:
        """In the forked child: the server's state is gone; run the program."""
        reseed()
        channel = bootstrap.Channel(report_w, control_r)
        # The supervisor knows the preloaded files from the "loaded" answer.
        channel.reported.update(self.loaded)
        bootstrap.install(channel, report_loaded=False)
        hot = message.get("hot")
        if self.checkpoints and isinstance(hot, list):
            bootstrap.enable_checkpoints(
                channel, self.checkpoints, [h for h in hot if isinstance(h, str)]
            )
        status = bootstrap.execute(channel, self.mode, self.target)
        # Unwind to the interpreter's own exit: atexit handlers, thread joins, flushing.
        raise SystemExit(status)


def main() -> None:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: zygote_server.py MODE TARGET [ARGS...]\n")
        raise SystemExit(2)
    mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    fd = int(os.environ.pop("_RELAUNCH_ZYGOTE_FD"))
    checkpoints = os.environ.pop(bootstrap.CHECKPOINTS_ENV, "")
    os.environ.pop(bootstrap.HOT_ENV, None)  # each fork is told the files edited by then
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    bootstrap.prepare(mode, target, args, entry=__file__)
    Zygote(sock, mode, target, checkpoints).serve()
    bootstrap.freeze_at_exit()  # the supervisor is gone: no collections on the way out


if __name__ == "__main__":
    main()
