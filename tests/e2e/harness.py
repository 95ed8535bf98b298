"""Run ``relaunch`` as a real process and watch what it prints. Never a fixed sleep:
every wait is for a line, a file or a process state, bounded by a timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from relaunch.oslayer import process_alive

TIMEOUT = 20.0


class Lines:
    """Collects a stream's lines in a thread; wait_for() blocks until a line matches."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, pattern: str, *, start: int = 0, timeout: float = TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            index = start
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(
                        f"no line matching {pattern!r} after {timeout}s; got:\n" + self.text()
                    )
                self.cond.wait(left)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if regex.search(line))

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def text(self) -> str:
        return "\n".join(self.lines)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process started in its own session: SIGTERM, then, after ``timeout`` or
    at once if it is gone, SIGKILL to its whole group (everything it started)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


class Proc:
    """Any command, in its own session; stdout and stderr read separately.

    ``unbuffered``: set PYTHONUNBUFFERED (False removes it, for tests checking ``-u``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        unbuffered: bool = True,
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAUNCH_")}
        full_env.pop("PYTHONUNBUFFERED", None)
        if unbuffered:
            full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def expect(
        self, pattern: str, *, stream: str = "out", start: int = 0, timeout: float = TIMEOUT
    ) -> re.Match[str]:
        """Wait for a line on stdout ("out") or stderr ("err"); on failure show both."""
        lines = self.out if stream == "out" else self.err
        try:
            return lines.wait_for(pattern, start=start, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        stop(self.proc)

    def output(self) -> str:
        return "--- stdout\n" + self.out.text() + "\n--- stderr\n" + self.err.text()


class Relaunch(Proc):
    """``[PREFIX...] python -X faulthandler -m relaunch ARGS`` in ``cwd``.

    When a wait for a line runs out, the failure also shows where each of relaunch's
    threads was (faulthandler's dump on SIGABRT): a stall is then told from a miss."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        prefix: Sequence[str] = (),
    ) -> None:
        argv = [*prefix, sys.executable, "-X", "faulthandler", "-m", "relaunch", *args]
        super().__init__(argv, cwd, env)

    def expect(
        self, pattern: str, *, stream: str = "out", start: int = 0, timeout: float = TIMEOUT
    ) -> re.Match[str]:
        try:
            return super().expect(pattern, stream=stream, start=start, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.threads()}") from None

    def threads(self) -> str:
        """relaunch's threads' stacks (it is aborted for them), or why there are none."""
        if self.proc.poll() is not None:
            return "--- relaunch had exited"
        mark = self.err.mark()
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 2  # the reader thread may lag behind the exit
        while time.monotonic() < deadline and self.err.mark() == mark:
            time.sleep(0.05)
        with self.err.cond:
            dump = self.err.lines[mark:]
        return "--- relaunch's threads when the wait ran out\n" + "\n".join(dump)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as dead."""
    return process_alive(pid)


def write(path: Path, text: str) -> None:
    """Write like an editor that rewrites in place, making sure the mtime moves."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))
