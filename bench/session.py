"""One measured session: a reloader serving one app, from start to kill."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import apps
from measure import (
    PollStats,
    ProcessMemory,
    Server,
    StartFailed,
    helper_memory,
    median,
    percentile,
    tree_cpu_percent,
    wait_for_body,
    wait_idle,
)
from reloaders import Reloader, command_for

__all__ = ["CheckoutResult", "PairResult", "Settings", "run_checkout", "run_pair"]

CHECKOUT_SETTLE = 2.0


@dataclass(frozen=True)
class Settings:
    rounds: int
    warmup: int
    round_timeout: float
    start_timeout: float
    idle_seconds: float
    settle: float
    jitter: float
    checkout_wait: float
    python: Path
    workdir: Path
    relaunch_reason: str  # empty when relaunch is available


@dataclass
class PairResult:
    reloader: str
    app: str
    status: str = "ok"  # ok | timeout | failed | not available | skipped
    reason: str = ""
    startup_s: float | None = None
    idle_cpu_percent: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    median_ms: float | None = None
    p90_ms: float | None = None
    failed_polls: int | None = None
    poll_requests: int | None = None
    edits: int = 0
    starts_during_edits: int | None = None  # equal to edits when each save restarts once
    # relaunch rows: its own processes (all but the serving one), after the reloads
    helpers: list[ProcessMemory] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CheckoutResult:
    reloader: str
    status: str = "ok"  # ok | not serving | failed | not available | skipped
    reason: str = ""
    files_changed: int = apps.PAGES_MODULES
    starts: int | None = None
    checkout_s: float | None = None
    serving_after: bool | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_pair(reloader: Reloader, app: apps.AppSpec, settings: Settings) -> PairResult:
    result = PairResult(reloader.name, app.name)
    if _unavailable(reloader, app, settings, result):
        return result
    name = f"{reloader.name}-{app.name}"
    app_dir = apps.make_app(app, settings.workdir / "apps" / name, _value(0))
    with _serving(reloader, app, app_dir, settings, name) as (server, port):
        if not _start(server, port, settings, reloader, result):
            return result
        start_log = _start_log(settings, name)
        before = _count_lines(start_log)
        _reload_rounds(server, port, app, app_dir, settings, result)
        wait_idle(server.pid)
        result.starts_during_edits = _count_lines(start_log) - before
        # Idle CPU in the steady state, after the reloads: one-off work a reloader does
        # after its first start (relaunch building its zygote) is not idling.
        result.idle_cpu_percent = tree_cpu_percent(server.pid, settings.idle_seconds)
        if reloader.needs_relaunch:
            result.helpers = helper_memory(server.pid, _last_start_pid(start_log))
    return result


def run_checkout(reloader: Reloader, settings: Settings) -> CheckoutResult:
    """Count (re)starts caused by a git checkout that changes every file of pages/."""
    result = CheckoutResult(reloader.name)
    if _unavailable(reloader, apps.CHECKOUT_APP, settings, result):
        return result
    name = f"{reloader.name}-checkout"
    app_dir = settings.workdir / "apps" / name
    old_ref, _ = apps.make_checkout_app(app_dir, _value(0))
    start_log = _start_log(settings, name)
    with _serving(reloader, apps.CHECKOUT_APP, app_dir, settings, name) as (server, port):
        if not _start(server, port, settings, reloader, result):
            return result
        # Long after start, as a real checkout would be: hupper, for one, learns the
        # imported files from its worker about a second after the worker starts.
        _settle(server, settings, extra=CHECKOUT_SETTLE)
        _checkout_and_count(server, port, app_dir, old_ref, start_log, settings, result)
    return result


def _checkout_and_count(
    server: Server,
    port: int,
    app_dir: Path,
    ref: str,
    start_log: Path,
    settings: Settings,
    result: CheckoutResult,
) -> None:
    before = _count_lines(start_log)
    started = time.perf_counter()
    subprocess.run(["git", "checkout", "-q", ref], cwd=app_dir, check=True)
    result.checkout_s = time.perf_counter() - started
    time.sleep(settings.checkout_wait)
    served = wait_for_body(port, _value(0), settings.round_timeout, alive=server.alive)
    result.serving_after = served is not None
    wait_idle(server.pid)
    result.starts = _count_lines(start_log) - before
    if not result.serving_after:
        result.status = "not serving"
        result.reason = "" if server.alive() else f"server exited: {server.log_tail(2)}"


def _reload_rounds(
    server: Server,
    port: int,
    app: apps.AppSpec,
    app_dir: Path,
    settings: Settings,
    result: PairResult,
) -> None:
    """Warm-up rounds, then measured rounds; a timeout ends the session."""
    stats = PollStats()
    for index in range(1, settings.warmup + settings.rounds + 1):
        measured = index > settings.warmup
        _settle(server, settings, extra=_spread(index) * settings.jitter)
        value = _value(index)
        apps.write_value(app, app_dir, value)
        result.edits += 1
        took = wait_for_body(
            port,
            value,
            settings.round_timeout,
            stats if measured else PollStats(),
            alive=server.alive,
        )
        if took is None:
            result.status = "timeout"
            died = "" if server.alive() else f"; server exited: {server.log_tail(2)}"
            result.reason = (
                f"no reload within {settings.round_timeout:.0f} s in round {index}{died}"
            )
            break
        if measured:
            result.latencies_s.append(took)
    result.failed_polls = stats.failed
    result.poll_requests = stats.requests
    if result.latencies_s:
        result.median_ms = 1000 * median(result.latencies_s)
        result.p90_ms = 1000 * percentile(result.latencies_s, 0.9)


def _unavailable(
    reloader: Reloader,
    app: apps.AppSpec,
    settings: Settings,
    result: PairResult | CheckoutResult,
) -> bool:
    if reloader.requires and not apps.app_has(app, reloader.requires):
        result.status = "skipped"
        result.reason = f"the {app.name} app has no {reloader.requires}"
        return True
    if reloader.needs_relaunch and settings.relaunch_reason:
        result.status = "not available"
        result.reason = settings.relaunch_reason
        return True
    return False


def _start(
    server: Server,
    port: int,
    settings: Settings,
    reloader: Reloader,
    result: PairResult | CheckoutResult,
) -> bool:
    try:
        took = server.wait_ready(port, _value(0), settings.start_timeout)
    except StartFailed as error:
        result.status = "not available" if reloader.needs_relaunch else "failed"
        result.reason = f"start failed: {error}"
        return False
    if isinstance(result, PairResult):
        result.startup_s = took
    wait_idle(server.pid)
    return True


def _spread(index: int) -> float:
    """The ``index``-th point of an even spread over [0, 1) (golden-ratio sequence).

    Added to the wait before each write, it puts the writes at phases of a polling
    reloader's interval spread evenly even over 3 rounds, as real saves land at any phase,
    instead of always at the same distance after the restart. Every reloader gets the
    same sequence.
    """
    return (index * 0.6180339887498949) % 1.0


def _settle(server: Server, settings: Settings, *, extra: float = 0.0) -> None:
    """Let the reloader finish its own start-up scans, so the next write is seen as a change."""
    wait_idle(server.pid)
    time.sleep(settings.settle + extra)


@contextmanager
def _serving(
    reloader: Reloader, app: apps.AppSpec, app_dir: Path, settings: Settings, name: str
) -> Iterator[tuple[Server, int]]:
    """Run ``reloader`` on a free port in ``app_dir``; its whole tree is killed on exit."""
    port = _free_port()
    logs = settings.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = Server(
        argv=command_for(reloader, port=port, python=settings.python, kind=app.kind),
        cwd=app_dir,
        env=_server_env(settings, app_dir, port, _start_log(settings, name)),
        log_path=logs / f"{name}.log",
    )
    with server:
        yield server, port


def _server_env(settings: Settings, app_dir: Path, port: int, start_log: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(settings.python.parent)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(settings.python.parent.parent),
        PYTHONPATH=str(app_dir),
        PYTHONUNBUFFERED="1",
        # Same-size rewrites of msg.py within one second would otherwise hit a stale .pyc
        # (pyc validation uses whole-second mtimes); installed libraries keep their .pyc.
        PYTHONDONTWRITEBYTECODE="1",
        BENCH_PORT=str(port),
        BENCH_START_LOG=str(start_log),
    )
    env.pop("PYTHONHOME", None)
    return env


def _start_log(settings: Settings, name: str) -> Path:
    # Outside the app directory, so recording a start never triggers a reload.
    return settings.workdir / "logs" / f"{name}.starts"


def _last_start_pid(path: Path) -> int | None:
    """The pid of the process that logged the latest start: the one serving now."""
    try:
        lines = path.read_text().splitlines()
        return int(lines[-1].split()[0]) if lines else None
    except (OSError, ValueError):
        return None


def _count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def _value(index: int) -> str:
    return f"v{index}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
