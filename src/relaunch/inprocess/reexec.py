"""Re-executing the process: the same interpreter, exactly ``sys.orig_argv``.

:func:`reexec_argv` (what to run) is pure and unit-tested; :func:`replace_process`
(run the hooks, stop the process's children, then ``exec``) is the plumbing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..pathtext import shown

__all__ = ["reexec_argv", "replace_process", "stop_children"]

log = logging.getLogger("relaunch.inprocess")


def reexec_argv(orig_argv: Sequence[str], executable: str) -> list[str]:
    """The command that runs this program again: ``executable`` with the original arguments.

    ``orig_argv`` is ``sys.orig_argv``: the interpreter's own flags included, ``-m``
    and ``-c`` as given. Raises ValueError when it cannot be repeated (empty, or a
    program read from standard input, which is gone).
    """
    if not orig_argv or not executable:
        raise ValueError("the original command line is unknown")
    from ..command import CommandError, parse_python_args

    try:
        invocation = parse_python_args(executable, list(orig_argv[1:]))
    except CommandError:
        invocation = None
    if invocation is not None and invocation.mode == "stdin":
        raise ValueError("a program read from standard input cannot be run again")
    return [executable, *orig_argv[1:]]


def _no_more_forks() -> int:
    """Stands in for os.fork while the process is about to execute itself again."""
    threading.Event().wait()
    raise OSError("unreachable")  # pragma: no cover


def stop_children(grace: float = 5.0) -> None:
    """Stop this process's descendants (tornado's forked workers, a pool) before the exec.

    They hold the listening sockets and would outlive the old image, so the new one
    could not bind: SIGTERM, SIGKILL after ``grace`` seconds, then reap them.
    """
    from .. import oslayer

    pids = oslayer.descendants(os.getpid())
    if not pids:
        return
    if hasattr(os, "fork"):
        # A pre-fork server's loop (tornado's fork_processes) replaces a worker that dies:
        # from now until the exec, a fork blocks, so none is replaced.
        os.fork = _no_more_forks
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    delay = 0.001
    while any(oslayer.process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(delay)  # bounded by ``grace``; backs off to 50 ms
        delay = min(delay * 2, 0.05)
    for pid in pids:
        if oslayer.process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def replace_process(cwd: str, changed: Sequence[str], run_hooks: Callable[[], None]) -> NoReturn:
    """Run the hooks, then replace this process with a fresh run of the same command."""
    argv = reexec_argv(getattr(sys, "orig_argv", []), sys.executable)
    what = ", ".join(shown(os.path.relpath(p, cwd)) for p in changed[:3]) or "reload requested"
    log.info("relaunch: %s changed; restarting %s", what, " ".join(argv[1:]))
    run_hooks()
    stop_children()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if hasattr(signal, "setitimer"):
        # An interval timer survives exec and would kill the new process with SIGALRM.
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    try:
        os.chdir(cwd)
    except OSError:
        pass
    if sys.platform == "win32":  # pragma: no cover - execv mangles arguments there
        import subprocess

        subprocess.Popen(argv)
        os._exit(0)
    os.execv(argv[0], argv)
