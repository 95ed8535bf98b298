"""The supervisor's handle on the guardian process (:mod:`relaunch._inside.guardian`),
which kills the program's processes if relaunch itself is killed."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

from .. import oslayer

__all__ = ["Guardian"]

log = logging.getLogger(__name__)


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
