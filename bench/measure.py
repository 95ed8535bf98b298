"""The measuring clients: HTTP polling, process-tree CPU, server process handling."""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = [
    "PollStats",
    "ProcessMemory",
    "Server",
    "StartFailed",
    "fetch",
    "helper_memory",
    "percentile",
    "tree_cpu_percent",
    "wait_for_body",
    "wait_idle",
]

POLL_INTERVAL = 0.002
REQUEST_TIMEOUT = 10.0


class StartFailed(Exception):
    """The server command exited, or never served, before the first successful GET."""


def fetch(port: int, timeout: float = REQUEST_TIMEOUT) -> str | None:
    """One GET / on a fresh connection, like a browser reload; None if it failed.

    Anything but a 200 with a complete body counts as a failure: refused, reset,
    timed out, or an error status.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class PollStats:
    failed: int = 0
    requests: int = 0


def wait_for_body(
    port: int,
    expected: str,
    timeout: float,
    stats: PollStats | None = None,
    alive: Callable[[], bool] = lambda: True,
) -> float | None:
    """Poll GET / every ~2 ms until the body equals ``expected``.

    Returns the seconds it took, or None on timeout (or when ``alive()`` turns false).
    Failed requests are added to ``stats``.
    """
    stats = stats if stats is not None else PollStats()
    start = time.perf_counter()
    deadline = start + timeout
    while True:
        body = fetch(port)
        now = time.perf_counter()
        stats.requests += 1
        if body is None:
            stats.failed += 1
        elif body.strip() == expected:
            return now - start
        if now >= deadline or not alive():
            return None
        time.sleep(POLL_INTERVAL)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        seconds[proc.pid] = times.user + times.system
    return seconds


def tree_cpu_percent(pid: int, seconds: float) -> float:
    """CPU use of a process and all its descendants over ``seconds``, in % of one core.

    Processes that start during the window count from zero; those that end in it are
    dropped (the tree is meant to be idle, so neither should happen). 0.0 if the process
    is gone.
    """
    before = _cpu_seconds(_tree_of(pid))
    start = time.perf_counter()
    time.sleep(seconds)
    after = _cpu_seconds(_tree_of(pid))
    elapsed = time.perf_counter() - start
    used = sum(after[p] - before.get(p, 0.0) for p in after)
    return 100.0 * used / elapsed


def wait_idle(
    pid: int, *, threshold: float = 5.0, window: float = 0.25, timeout: float = 20.0
) -> bool:
    """Wait until the process tree uses under ``threshold`` % CPU for one ``window``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return False
        if tree_cpu_percent(pid, window) < threshold:
            return True
    return False


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory, in bytes: RSS, USS (private to it) and PSS (shared pages split
    between the processes sharing them, so PSS adds up across processes)."""

    pid: int
    command: str
    rss: int
    uss: int
    pss: int


def helper_memory(root_pid: int, serving_pid: int | None) -> list[ProcessMemory]:
    """The memory of every process in ``root_pid``'s tree but the serving one and its children.

    For a reloader that is its own machinery (a supervisor, a zygote, a guardian), what a
    user pays beside the server itself. Processes that cannot be read are left out.
    """
    tree = _tree_of(root_pid)
    serving: set[int] = set()
    if serving_pid is not None:
        serving = {serving_pid, *(p.pid for p in _tree_of(serving_pid))}
    found = []
    for proc in tree:
        if proc.pid in serving:
            continue
        try:
            info = proc.memory_full_info()
            command = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        pss = int(getattr(info, "pss", 0))  # Linux only
        found.append(ProcessMemory(proc.pid, command[:160], info.rss, info.uss, pss))
    return found


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction in 0..1) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Server:
    """A reloader command running in its own process group; always stopped by ``stop()``.

    Use as a context manager so the whole tree is killed even on errors or Ctrl-C.
    """

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    start_error: str = field(default="", init=False)

    def start(self) -> Server:
        with open(self.log_path, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                self.start_error = f"cannot run {self.argv[0]}: {error}"
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_ready(self, port: int, expected: str, timeout: float) -> float:
        """Wait for the first GET / serving ``expected``; returns seconds since start."""
        if self.start_error:
            raise StartFailed(self.start_error)
        took = wait_for_body(port, expected, timeout, alive=self.alive)
        if took is None:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise StartFailed(f"exited with code {code}: {self.log_tail(5)}")
            raise StartFailed(
                f"did not serve {expected!r} within {timeout:.0f} s: {self.log_tail(5)}"
            )
        return took

    def stop(self) -> None:
        """SIGTERM the process group and every descendant, then SIGKILL what is left."""
        if self.process is None:
            return
        survivors = _tree_of(self.process.pid)
        self._signal_all(signal.SIGTERM, survivors)
        _, alive = psutil.wait_procs(survivors, timeout=5)
        if alive:
            self._signal_all(signal.SIGKILL, alive)
            psutil.wait_procs(alive, timeout=5)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _signal_all(self, sig: signal.Signals, processes: list[psutil.Process]) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        # Descendants that left the group (setsid) are signalled one by one.
        for proc in processes:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tree_of(pid: int) -> list[psutil.Process]:
    try:
        return _tree(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return []
