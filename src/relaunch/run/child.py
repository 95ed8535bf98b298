"""Start and stop one run of the user's command, in its own process group.

Process plumbing only: what to run comes from :mod:`relaunch.command`, when to run
it from the supervisor. Threads here only read and wait, and hand what they see to
``on_event`` (which must not block).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import oslayer
from ..command import Command
from . import ipc
from .interpreter import BOOTSTRAP

__all__ = ["Child", "Forker"]

log = logging.getLogger(__name__)

OnEvent = Callable[[tuple[Any, ...]], None]


class Forker(Protocol):
    """Something that can fork a child running the program (the zygote's client)."""

    def fork(self, child: Child, fds: tuple[int, int]) -> int: ...


class Child:
    """One run of the command. ``generation`` tags every event it produces.

    Started cold (a new process, :meth:`start`) or warm (forked by the zygote,
    :meth:`start` with ``forker``). Either way it leads its own process group, and
    its exit is reported once through ``on_event`` as ``("exit", generation, code)``
    where code is as ``Popen.returncode`` (negative: killed by that signal).
    """

    def __init__(
        self,
        command: Command,
        *,
        generation: int,
        on_event: OnEvent,
        stdin_to_child: bool,
        executable: str | None = None,
        extra_env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.command = command
        self.executable = executable
        self.extra_env = extra_env or {}
        self.pass_fds = pass_fds  # kept open in the child (the held listening socket)
        self.generation = generation
        self.on_event = on_event
        self.stdin_to_child = stdin_to_child
        self.pid: int | None = None
        self.warm = False
        self.returncode: int | None = None  # None also when the status could not be known
        self.started_at = 0.0
        self.exited = threading.Event()
        self.program_pid: int | None = None  # the process running the program, once adopted
        self._reading = threading.Lock()
        self._report_fd: int | None = None
        self.has_hooks = threading.Event()
        self.hooks_done = threading.Event()
        # The program asked to judge changes itself ("changes"); its answers, in order.
        self.judges_changes = threading.Event()
        self._judgements: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._control_w: int | None = None

    def argv(self) -> list[str]:
        py = self.command.python
        if py is None:
            return list(self.command.argv)
        interpreter = self.executable or py.interpreter
        return [interpreter, *py.flags, BOOTSTRAP, py.mode, py.target, *py.args]

    def start(self, forker: Forker | None = None) -> None:
        """Start the process: forked by ``forker`` if given, else spawned.

        Raises OSError if it cannot be started (the zygote's errors are OSErrors too).
        """
        py = self.command.python
        report_r = -1
        child_ends: tuple[int, int] | tuple[()] = ()
        if py is not None:
            report_r, report_w = os.pipe()
            control_r, self._control_w = os.pipe()
            child_ends = (report_w, control_r)
        self.started_at = time.monotonic()
        try:
            if forker is not None and child_ends:
                self.pid = forker.fork(self, child_ends)
                self.warm = True
            else:
                self._spawn(child_ends)
        except OSError:
            if report_r >= 0:
                os.close(report_r)
            self.close()
            raise
        finally:
            for fd in child_ends:
                os.close(fd)  # the child has its copies; EOF must mean the child is gone
        if py is not None:
            self._report_fd = report_r
            threading.Thread(
                target=self._read, args=(report_r,), name="relaunch-child-pipe", daemon=True
            ).start()

    def _spawn(self, child_ends: tuple[int, ...]) -> None:
        env = dict(os.environ, **self.extra_env)
        if child_ends:
            env["_RELAUNCH_IPC"] = ",".join(str(fd) for fd in child_ends)
        proc = subprocess.Popen(
            self.argv(),
            env=env,
            pass_fds=(*child_ends, *self.pass_fds),
            stdin=None if self.stdin_to_child else subprocess.DEVNULL,
            **oslayer.popen_group_kwargs(die_with_parent=self.command.python is None),
        )
        self.pid = proc.pid
        threading.Thread(
            target=self._wait, args=(proc,), name="relaunch-child-wait", daemon=True
        ).start()

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        self.mark_exited(proc.wait())

    @property
    def pids(self) -> set[int]:
        """The processes that are this run: the one started, and the one adopted."""
        return {p for p in (self.pid, self.program_pid) if p is not None}

    def adopt(self, pid: int) -> None:
        """From now on the program is process ``pid`` (gunicorn re-executing itself):
        its exit, not the started process's, is this run's exit. ``self.pid`` stays the
        process group id, which ``pid`` shares, so stopping stops it."""
        self.program_pid = pid
        threading.Thread(
            target=self._wait_adopted, args=(pid,), name="relaunch-adopted", daemon=True
        ).start()

    def _wait_adopted(self, pid: int) -> None:
        # Once its parent exits, relaunch (a subreaper) is its parent: wait_exit reaps it.
        code = oslayer.wait_exit(pid)
        if self.program_pid == pid:
            self._report_exit(code)

    def orphaned(self) -> None:
        """The process that forked this child (the zygote) is gone or going, so nobody
        else will report its exit: wait for it here, reaping it once it is handed to
        relaunch (a subreaper). Blocks until it is gone."""
        if self.pid is not None:
            self.mark_exited(oslayer.wait_exit(self.pid))

    def mark_exited(self, code: int | None) -> None:
        """Record the exit of the started process (by whoever reaped it; None: unknown).
        Once another process was adopted, that one's exit is what counts."""
        if self.program_pid is not None:
            return
        self._report_exit(code)

    def _report_exit(self, code: int | None) -> None:
        if self.exited.is_set():
            return
        # Everything it wrote before exiting (a crash's files) must be heard before its
        # exit is: the pipe reader and this thread race otherwise.
        self._heard_everything()
        self.returncode = code
        self.exited.set()
        self.on_event(("exit", self.generation, code))

    def _read(self, fd: int) -> None:
        # Reading and handling happen under one lock, so stop() can be sure that all
        # the child said before it was stopped (a reload hook registered) was heard.
        reader = ipc.MessageReader()
        try:
            while True:
                oslayer.wait_readable(fd)
                with self._reading:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    for message in reader.feed(chunk):
                        if message.kind == "hooks":
                            self.has_hooks.set()
                        elif message.kind == "hooks-done":
                            self.hooks_done.set()
                        elif message.kind == "changes":
                            self.judges_changes.set()
                        elif message.kind in ("handled", "unhandled"):
                            self._judgements.put(message.kind == "handled")
                        self.on_event(("msg", self.generation, message))
        finally:
            with self._reading:
                self._report_fd = None
                os.close(fd)

    def _heard_everything(self, timeout: float = 0.5) -> None:
        """Wait (briefly) until the reader has handled every byte the child wrote so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._reading:
                if self._report_fd is None or oslayer.unread_bytes(self._report_fd) == 0:
                    return
            time.sleep(0.001)

    def handles_change(self, paths: Sequence[str], timeout: float) -> bool:
        """Ask the running program whether it handles this change itself (it asked to be
        asked). False (restart) when it says no, does not answer in time, or is gone."""
        if not self.judges_changes.is_set() or self._control_w is None or self.exited.is_set():
            return False
        while not self._judgements.empty():  # a late answer to an earlier question
            self._judgements.get_nowait()
        try:
            os.write(self._control_w, b"changed " + json.dumps(list(paths)).encode() + b"\n")
        except OSError:
            return False
        try:
            return self._judgements.get(timeout=timeout)
        except queue.Empty:
            log.warning("the program did not say within %.0f s if it handles the change", timeout)
            return False

    def stop(self, grace: float) -> None:
        """Stop the whole process group: reload hooks, SIGTERM, then SIGKILL after ``grace``.

        Returns when the child and everything left in its group are gone (or after a
        bounded wait for processes that cannot be killed).
        """
        pid = self.pid
        if pid is None:
            return
        deadline = time.monotonic() + grace
        if self.command.is_python and not self.exited.is_set():
            self._heard_everything()
        if not self.exited.is_set() and self.has_hooks.is_set() and self._control_w is not None:
            try:
                os.write(self._control_w, b"stop\n")
                self.hooks_done.wait(timeout=grace)
            except OSError:
                pass
        if not self.exited.is_set():
            oslayer.terminate_group(pid)
        elif _group_alive(pid):
            # It exited by itself (a crash) but left workers in its group: they are
            # asked to stop like any other run's, not left to the SIGKILL.
            oslayer.terminate_group(pid, leader=False)
        # One reaper only (the waiter thread, or the zygote): wait for its word.
        if not self.exited.wait(timeout=max(0.0, deadline - time.monotonic())):
            log.warning("the program did not exit %.1f s after SIGTERM: killing it", grace)
        # Workers it left in its group get the rest of the grace period, then SIGKILL.
        if not _wait_for(lambda: not _group_alive(pid), deadline):
            oslayer.kill_group(pid, leader=not self.exited.is_set())
        if not self.exited.wait(timeout=5):
            log.warning("process %d did not go away after SIGKILL", pid)
        _wait_for(lambda: not _group_alive(pid), time.monotonic() + 5)
        self.close()

    def close(self) -> None:
        if self._control_w is not None:
            os.close(self._control_w)
            self._control_w = None


def _group_alive(pgid: int) -> bool:
    # Members orphaned to relaunch (a subreaper) stay as zombies until relaunch reaps them.
    oslayer.reap_group_orphans(pgid)
    return oslayer.group_alive(pgid)


def _wait_for(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll ``condition`` until it holds or ``deadline`` passes; backs off from 1 ms to 50 ms."""
    delay = 0.001
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)
    return True
