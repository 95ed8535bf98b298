"""What ``relaunch watch`` does to a server it did not start: signal it, touch a file,
or run a command. Parsing and the environment for ``--exec`` are pure.

Changed paths reach ``--exec`` only through environment variables, never through
the command string: a file name with quotes, spaces or ``$(...)`` in it is data.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Action", "exec_environment", "parse_signal", "read_pidfile"]


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

    def describe(self) -> str:
        if self.kind == "signal":
            target = f"the pid in {self.pidfile}" if self.pidfile else f"process {self.pid}"
            return f"send {signal.Signals(self.signum).name} to {target}"
        if self.kind == "touch":
            return f"touch {self.path}"
        return f"run {self.command!r}"

    def perform(self, changed: Sequence[str]) -> str:
        """Do it; returns what was done. Raises OSError/ValueError when it cannot."""
        if self.kind == "signal":
            pid = read_pidfile(self.pidfile) if self.pidfile else self.pid
            assert pid is not None
            os.kill(pid, self.signum)
            return f"sent {signal.Signals(self.signum).name} to {pid}"
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
