"""What ``relaunch watch`` does to a server it did not start: signal it, touch a file,
or run a command. Parsing and the environment for ``--exec`` are pure; a pid is
checked before it is signalled (:mod:`.pidfile`).

Changed paths reach ``--exec`` only through environment variables, never through
the command string: a file name with quotes, spaces or ``$(...)`` in it is data.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import oslayer
from . import procs
from .pidfile import NotSignalled, PidTarget

__all__ = ["Action", "exec_environment", "follow_rollover", "parse_signal", "read_pidfile"]

# The graceful reloads of gunicorn, uWSGI, Apache and nginx: the workers are replaced,
# and relaunch waits for that (see follow_rollover).
_GRACEFUL = frozenset(int(getattr(signal, n)) for n in ("SIGHUP", "SIGUSR1") if hasattr(signal, n))


def parse_signal(text: str) -> signal.Signals:
    """``HUP``, ``SIGHUP``, ``hup`` or ``1`` to a signal. Raises ValueError."""
    name = text.strip().upper()
    if name.isdigit():
        return signal.Signals(int(name))
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal: {text}") from None


def read_pidfile(path: str) -> int:
    """The pid in a pid file. Raises ValueError (unreadable or not a pid)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read pid file {path}: {exc.strerror}") from None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"pid file {path} holds no pid: {text[:40]!r}")
    return int(text)


def exec_environment(base: Mapping[str, str], changed: Sequence[str]) -> dict[str, str]:
    """``base`` plus ``RELAUNCH_CHANGED`` (the paths joined by ``os.pathsep``),
    ``RELAUNCH_CHANGED_COUNT`` and ``RELAUNCH_CHANGED_1`` ... ``_N`` (one each)."""
    env = {k: v for k, v in base.items() if not k.startswith("RELAUNCH_CHANGED")}
    env["RELAUNCH_CHANGED"] = os.pathsep.join(changed)
    env["RELAUNCH_CHANGED_COUNT"] = str(len(changed))
    for i, path in enumerate(changed, 1):
        env[f"RELAUNCH_CHANGED_{i}"] = path
    return env


@dataclass(frozen=True)
class Action:
    """One of: ``signal`` a process (``pid`` or the pid in ``pidfile``), ``touch`` a
    file, ``exec`` a shell command."""

    kind: str  # "signal" | "touch" | "exec"
    signum: int = signal.SIGHUP
    pidfile: str | None = None
    pid: int | None = None
    path: str | None = None
    command: str | None = None
    target: PidTarget | None = field(default=None, compare=False, repr=False)
    # How long a signalled server's workers may take to roll over (see follow_rollover).
    rollover_timeout: float = 120.0

    def describe(self) -> str:
        if self.kind == "signal":
            target = f"the pid in {self.pidfile}" if self.pidfile else f"process {self.pid}"
            return f"send {signal.Signals(self.signum).name} to {target}"
        if self.kind == "touch":
            return f"touch {self.path}"
        return f"run {self.command!r}"

    def perform(self, changed: Sequence[str]) -> str:
        """Do it; returns what was done. Raises OSError/ValueError (NotSignalled when a
        check refused the target) when it cannot."""
        if self.kind == "signal":
            return self._signal()
        if self.kind == "touch":
            assert self.path is not None
            os.utime(self.path, None)
            return f"touched {self.path}"
        assert self.command is not None
        done = subprocess.run(
            ["/bin/sh", "-c", self.command], env=exec_environment(os.environ, changed)
        )
        if done.returncode != 0:
            raise OSError(f"{self.command!r} exited with code {done.returncode}")
        return f"ran {self.command!r}"

    def _signal(self) -> str:
        name = signal.Signals(self.signum).name
        if self.target is None:  # unchecked: built without a target (tests, API use)
            pid = read_pidfile(self.pidfile) if self.pidfile else self.pid
            assert pid is not None
            os.kill(pid, self.signum)
            return f"sent {name} to {pid}"
        verdict = self.target.check()
        if verdict.target is None:
            raise NotSignalled(verdict.message)
        pid = verdict.target.pid
        # After another signal (USR2 re-executes a gunicorn master, which then runs next
        # to the old one) there is no rollover to wait for.
        before = procs.children(pid) if self.signum in _GRACEFUL else set()
        os.kill(pid, self.signum)
        note = f" ({verdict.message})" if verdict.message else ""
        return f"sent {name} to {pid}{note}{follow_rollover(pid, before, self.rollover_timeout)}"


def follow_rollover(pid: int, before: set[int], timeout: float, appear: float = 10.0) -> str:
    """After a signal to a server with worker processes (``before``): wait until every
    old worker is gone and as many new ones run, so that one reload is over before the
    next begins and the report says when it is. A server whose processes do not change
    within ``appear`` seconds (it reloads in place) is not waited for. Returns what was
    seen, for the log ("" for a server without child processes, or where processes
    cannot be seen)."""
    if not before:
        return ""

    def alive() -> bool:
        return oslayer.process_alive(pid)

    def workers() -> set[int]:
        return procs.children(pid)

    if not procs.wait_for(lambda: bool(workers() - before) or not alive(), appear):
        return f"; its {len(before)} worker process(es) did not change"
    rollover = procs.watch_rollover(workers, before, len(before), timeout, going_on=alive)
    if not alive():
        return f"; process {pid} stopped during the reload"
    if rollover is None:
        return f"; its workers did not all roll over within {timeout:g} s"
    return (
        f": {len(rollover.new)} new worker(s), every old one finished; old and new "
        f"side by side for {rollover.coexisted * 1000:.0f} ms"
    )
