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
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .. import oslayer
from ..command import Command
from . import ipc

__all__ = ["BOOTSTRAP", "Child", "Guardian", "InterpreterInfo", "interpreter_info"]

log = logging.getLogger(__name__)

BOOTSTRAP = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_inside", "bootstrap.py"
)

OnEvent = Callable[[tuple[Any, ...]], None]


@dataclass(frozen=True)
class InterpreterInfo:
    executable: str | None  # the real interpreter behind a launcher (pyenv shim, py.exe...)
    roots: tuple[str, ...]  # its standard library and installed-package folders


def interpreter_info(interpreter: str) -> InterpreterInfo:
    """Ask an interpreter what it really is and where its packages live. Asked once, at start.

    Files under ``roots`` are not watched by default. Running ``executable`` instead of
    a launcher script saves the launcher's start-up on every reload (~70 ms for pyenv).
    The interpreter running relaunch (``manage.py runserver`` handing itself over) is
    asked in-process: a Python start saved on the way to the program's first start.
    """
    if shutil.which(interpreter) == sys.executable:
        from .._inside.bootstrap import installed_roots

        return InterpreterInfo(sys.executable, tuple(installed_roots()))
    try:
        out = subprocess.run(
            [interpreter, "-I", BOOTSTRAP, "--roots"], capture_output=True, timeout=30, check=True
        ).stdout
        data = json.loads(out)
        executable = data["executable"]
        roots = tuple(r for r in data["roots"] if isinstance(r, str))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        log.warning("cannot ask %s where its packages are: watching them too", interpreter)
        return InterpreterInfo(None, ())
    if not (isinstance(executable, str) and os.path.isfile(executable)):
        executable = None
    return InterpreterInfo(executable, roots)


class Guardian:
    """Handle on the guardian process (see guardian.py); a no-op where it cannot run.

    If the guardian dies (someone killed it), a waiter thread starts another at once,
    even while the supervisor's thread is busy stopping a program. Reading :attr:`pid`
    waits for a start under way: the supervisor lists its children before it asks, so a
    guardian being started is never taken for a stray.
    """

    # A guardian that dies this soon after its start is failing, not being killed: after
    # a few in a row, relaunch runs without one rather than start them in a loop.
    SHORT_LIFE = 1.0
    MAX_SHORT_LIVES = 3

    def __init__(self, token: str) -> None:
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._groups: set[int] = set()  # what the guardian must kill if relaunch dies
        self._closing = False
        self._started_at = 0.0
        self._short_lives = 0
        if oslayer.IS_WINDOWS:
            return
        self._start()

    def _start(self) -> None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "relaunch._inside.guardian", self.token],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # outlives a kill of relaunch's process group
            )
        except OSError as exc:
            log.warning(
                "cannot start the guardian process (%s): children may outlive "
                "relaunch if it is killed",
                exc,
            )
            return
        self.proc = proc
        self._started_at = time.monotonic()
        threading.Thread(
            target=self._wait, args=(proc,), name="relaunch-guardian-wait", daemon=True
        ).start()

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._replace()

    def _replace(self) -> None:
        """Start a new guardian if the current one is dead, and tell it every group."""
        with self._lock:
            old = self.proc
            if self._closing or old is None or old.poll() is None:
                return
            lived = time.monotonic() - self._started_at
            self._short_lives = self._short_lives + 1 if lived < self.SHORT_LIFE else 0
            if old.stdin is not None:
                try:
                    old.stdin.close()
                except OSError:
                    pass  # it is dead: what was left unwritten does not matter
            self.proc = None
            if self._short_lives >= self.MAX_SHORT_LIVES:
                log.warning(
                    "the guardian process keeps dying (%s): children may outlive "
                    "relaunch if it is killed",
                    _how(old.returncode),
                )
                return
            self._start()
            if self.proc is None:
                return
            log.warning(
                "the guardian process (%d) died (%s): started another (%d)",
                old.pid,
                _how(old.returncode),
                self.proc.pid,
            )
            for pgid in sorted(self._groups):
                self._write(f"+{pgid}")

    def _write(self, line: str) -> None:
        # Under self._lock: the supervisor's thread and threads retiring old children write.
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(line.encode() + b"\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self.proc.pid if self.proc is not None else None

    def track(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._write(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._write(f"-{pgid}")

    def close(self) -> None:
        with self._lock:
            self._closing = True
            proc = self.proc
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.close()
            except OSError:
                pass  # a guardian that died: its pipe is broken, and it has nothing to do
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


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
