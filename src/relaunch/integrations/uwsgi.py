"""uWSGI: graceful reloads through the master FIFO, after preflight.

Under ``relaunch run -- uwsgi [options]`` (with ``--master``) the
:class:`UwsgiDriver` imports the application first (``--module``/``-w``/``--wsgi``
with ``--callable``, or ``--wsgi-file``; ``--chdir``, ``--pythonpath`` and
``--home`` respected) in a throwaway process with the virtualenv's interpreter;
if that fails nothing is reloaded. Then it writes to the master FIFO
(``--master-fifo``): ``c``, a **chain reload** (one worker at a time, each new one
up before the next old one goes) when ``--lazy-apps`` lets workers load the code
themselves; ``r``, a **graceful reload** of the whole instance otherwise. Without a
FIFO it sends SIGHUP, the same graceful reload. It waits, watching processes,
until every worker is new and has started, and reports how long old and new workers
coexisted.

Two uWSGI 2.0 behaviours decide how (both seen with 2.0.31, with strace):

* A worker does not act on SIGHUP from its fork until it has loaded the application
  and entered its request loop (at start-up it inherits SIG_IGN). A graceful reload
  asked in that window is lost for that worker: it keeps serving until
  ``--worker-reload-mercy`` (60 s), then the master SIGKILLs it, whatever request it
  is serving. So the driver asks for a reload only when every worker has started (its
  loop's epoll instance exists), and reports a reload as done only when every new
  worker has.
* A single-threaded worker told to stop exits at once unless it is inside a request,
  and it counts as inside one only after ``accept()`` returned *and* it began reading:
  a SIGHUP landing in between drops the connection it has just accepted (the client
  sees "connection reset by peer"). A worker with ``--threads 2`` or more finishes what
  it accepted. Nothing outside uWSGI closes that window, so the driver warns once when
  the workers are single-threaded.

uWSGI's master moves a chain reload (and reaps workers) once per second of its loop;
while a reload runs the driver wakes the master with a newline on the FIFO (an unknown
command, ignored) whenever a worker exits or starts, and every quarter second, so the
chain moves at the speed of the workers instead.

Pass ``--die-on-term``: uWSGI 2.0 otherwise treats relaunch's SIGTERM at stop time
as "reload", and relaunch has to kill it after ``--grace``.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import oslayer
from ..command import Command
from ..preflight import AppSpec, describe_failure, run_preflight
from ..production import procs
from ..run.child import Child
from ..run.drivers import Driver, NotReloaded
from ..run.releases import logical_cwd

__all__ = ["UwsgiDriver", "UwsgiOptions", "driver_for", "parse_uwsgi_args"]

log = logging.getLogger(__name__)

_ALIASES = {
    "w": "module", "module": "module", "wsgi": "module",
    "wsgi-file": "wsgi-file", "file": "wsgi-file",
    "callable": "callable",
    "chdir": "chdir",
    "pythonpath": "pythonpath", "python-path": "pythonpath", "pp": "pythonpath",
    "H": "home", "home": "home", "virtualenv": "home", "venv": "home", "pyhome": "home",
    "lazy-apps": "lazy-apps", "lazy": "lazy-apps",
    "master-fifo": "master-fifo",
    "p": "processes", "processes": "processes", "workers": "processes",
    "M": "master", "master": "master",
    "threads": "threads",
}  # fmt: skip
_FLAGS = frozenset({"lazy-apps", "master"})


@dataclass(frozen=True)
class UwsgiOptions:
    """What the driver needs from uWSGI's command line."""

    module: str | None = None
    wsgi_file: str | None = None
    callable: str = "application"
    chdir: str | None = None
    pythonpath: tuple[str, ...] = ()
    home: str | None = None
    lazy_apps: bool = False
    master: bool = False
    master_fifo: str | None = None
    processes: int = 1
    threads: int = 1
    unknown: tuple[str, ...] = field(default=())

    def app_spec(self, cwd: str) -> AppSpec | None:
        base = os.path.join(cwd, self.chdir) if self.chdir else cwd
        if self.wsgi_file:
            return AppSpec("script", os.path.join(base, self.wsgi_file), self.callable)
        if self.module:
            module, _, attr = self.module.partition(":")
            if module.endswith(".py"):
                return AppSpec("script", os.path.join(base, module), attr or self.callable)
            return AppSpec("module", module, attr or self.callable)
        return None


def parse_uwsgi_args(args: Sequence[str]) -> UwsgiOptions:
    """Read the options the driver needs; others are skipped (``--x value`` or ``--x``)."""
    values: dict[str, object] = {}
    paths: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            unknown.append(arg)  # a config file (app.ini): not read
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        key = _ALIASES.get(name)
        if key in _FLAGS:
            values[key] = not eq or value.lower() not in ("0", "false", "no", "off")
            continue
        if not eq:
            if i < len(args) and not args[i].startswith("-"):
                value = args[i]
                i += 1
            elif key is not None:
                continue
        if key == "pythonpath":
            paths.append(value)
        elif key in ("processes", "threads"):
            try:
                values[key] = max(1, int(value))
            except ValueError:
                pass
        elif key is not None:
            values[key] = value
    return UwsgiOptions(
        module=_str(values.get("module")),
        wsgi_file=_str(values.get("wsgi-file")),
        callable=_str(values.get("callable")) or "application",
        chdir=_str(values.get("chdir")),
        pythonpath=tuple(paths),
        home=_str(values.get("home")),
        lazy_apps=bool(values.get("lazy-apps")),
        master=bool(values.get("master")),
        master_fifo=_str(values.get("master-fifo")),
        processes=int(values.get("processes", 1)),  # type: ignore[call-overload]
        threads=int(values.get("threads", 1)),  # type: ignore[call-overload]
        unknown=tuple(unknown),
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _python_for(options: UwsgiOptions, uwsgi: str, cwd: str) -> str:
    """The interpreter uWSGI embeds, as far as can be told from outside: the
    virtualenv's (``--home``), else the one next to the uwsgi binary, else ours."""
    candidates = []
    if options.home:
        candidates.append(os.path.join(cwd, options.home, "bin", "python"))
    candidates.append(os.path.join(os.path.dirname(uwsgi), "python"))
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def _started(pid: int) -> bool:
    """Whether a uWSGI worker has started: loaded the app and entered its request loop,
    with its SIGHUP handler installed (before that it ignores SIGHUP, and a reload asked
    then is lost). Entering the loop creates an epoll instance, the sign seen from
    outside; where it cannot be seen, the answer is yes."""
    has_epoll = oslayer.has_epoll_instance(pid)
    return True if has_epoll is None else has_epoll


class _Workers:
    """The master's children, for :func:`procs.watch_rollover`, waking the master (a
    newline on its FIFO: no command) whenever one exits, appears or finishes starting,
    and every quarter second, so that uWSGI reaps, respawns and moves its chain now
    rather than at the next second of its loop."""

    NUDGE_EVERY = 0.25

    def __init__(self, master: int, fifo: str | None) -> None:
        self.master = master
        self.fifo = fifo
        self.started: set[int] = set()
        self.seen: tuple[frozenset[int], frozenset[int]] | None = None
        self.nudged = 0.0

    def __call__(self) -> set[int]:
        if not oslayer.process_alive(self.master):
            return set()
        live = procs.children(self.master)
        self.started &= live
        self.started |= {pid for pid in live - self.started if _started(pid)}
        state = (frozenset(live), frozenset(self.started))
        if state != self.seen or time.monotonic() - self.nudged >= self.NUDGE_EVERY:
            self.seen = state
            self.nudge()
        return live

    def all_started(self) -> bool:
        live = self()
        return live <= self.started

    def nudge(self) -> None:
        self.nudged = time.monotonic()
        if self.fifo is None:
            return
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # no reader right now (the master re-executing, or recreating it)
        try:
            os.write(fd, b"\n")
        except OSError:
            pass
        finally:
            os.close(fd)


class UwsgiDriver(Driver):
    """Graceful uWSGI reloads for ``relaunch run -- uwsgi ...`` (see module doc)."""

    name = "uwsgi"

    def __init__(
        self,
        executable: str,
        options: UwsgiOptions,
        *,
        preflight: bool = True,
        preflight_timeout: float = 60.0,
        cwd: str | None = None,
    ) -> None:
        self.options = options
        self.preflight = preflight
        self.preflight_timeout = preflight_timeout
        self.cwd = cwd or logical_cwd()  # a deploy's `current` link kept
        self.python = _python_for(options, executable, self.cwd)
        self.fifo = os.path.join(self.cwd, options.master_fifo) if options.master_fifo else None
        self.start_timeout = 60.0  # uWSGI's own default --worker-reload-mercy
        if options.master and options.threads < 2:
            log.warning(
                "uWSGI workers are single-threaded: a graceful reload can reset a connection"
                " a worker has just accepted (uWSGI 2.0 stops such a worker at once); run"
                " uWSGI with --threads 2 or more for reloads that fail no request"
            )

    def _preflight(self) -> str | None:
        """None if the new code imports (or there is nothing to check), else why not."""
        spec = self.options.app_spec(self.cwd)
        if not self.preflight or spec is None:
            return None
        base = os.path.join(self.cwd, self.options.chdir) if self.options.chdir else self.cwd
        paths = [os.path.join(base, p) for p in self.options.pythonpath] + [base]
        result = run_preflight(
            spec, python=self.python, cwd=base, paths=paths, timeout=self.preflight_timeout
        )
        if result.ok:
            return None
        log.error("%s", describe_failure(result))
        return result.summary

    def _ask(self, master: int, command: bytes) -> str:
        if self.fifo is not None:
            # The master recreates its FIFO after each writer closes it: a moment
            # without a reader (ENXIO) or without the file (ENOENT) is normal.
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno not in (errno.ENXIO, errno.ENOENT):
                        raise
                    if time.monotonic() < deadline:
                        time.sleep(0.01)
                        continue
                    if command != b"r":
                        # SIGHUP means "r": never a different reload than the one asked.
                        return f"master FIFO {command.decode()!r} (no reader yet)"
                    break
                try:
                    os.write(fd, command)
                finally:
                    os.close(fd)
                return f"master FIFO {command.decode()!r}"
        os.kill(master, signal.SIGHUP)
        return "SIGHUP"

    def reload(self, child: Child, changed: Sequence[str]) -> str | None:
        master = child.pid
        if master is None or not self.options.master or not oslayer.process_alive(master):
            return None
        failed = self._preflight()
        if failed is not None:
            return NotReloaded(f"preflight failed: {failed}; still serving the previous version")
        workers = _Workers(master, self.fifo)
        # A worker still starting ignores SIGHUP: it would miss this reload and be
        # killed mid-request after --worker-reload-mercy (see the module doc).
        if not procs.wait_for(workers.all_started, self.start_timeout, step=0.01):
            log.warning("uWSGI workers still starting after %.0f s", self.start_timeout)
        old = procs.children(master)
        # A chain reload forks the new workers from the master, in its working folder:
        # after a deploy swapped a release link (a changed path that is a link), only a
        # full graceful reload, which re-executes the master and its --chdir, moves it.
        swapped = any(os.path.islink(path) for path in changed)
        chain = self.options.lazy_apps and self.fifo is not None and not swapped
        command = b"c" if chain else b"r"

        def changing() -> bool:
            return workers() != old

        # uWSGI ignores a chain reload asked while the previous one is still finishing
        # ("chain reload already running", until the next pass of its master loop):
        # ask again until workers start to change.
        for _attempt in range(60):
            how = self._ask(master, command)
            if procs.wait_for(changing, 0.5 if chain else 2.5):
                break
        rollover = procs.watch_rollover(workers, old, self.options.processes, timeout=120.0)
        kind = "chain reload, one worker at a time" if chain else "graceful reload"
        if rollover is None:
            return f"{kind} ({how}) asked; the workers did not all roll over in time"
        if not procs.wait_for(workers.all_started, self.start_timeout, step=0.01):
            return f"{kind} ({how}): new workers still starting after {self.start_timeout:.0f} s"
        return (
            f"{kind} ({how}): {len(rollover.new)} new worker(s), every old one finished; "
            f"old and new code served side by side for {rollover.coexisted * 1000:.0f} ms"
        )


def driver_for(
    command: Command, *, preflight: bool = True, preflight_timeout: float = 60.0
) -> UwsgiDriver | None:
    """A :class:`UwsgiDriver` if ``command`` runs uWSGI."""
    if command.python is not None or os.path.basename(command.executable) != "uwsgi":
        return None
    return UwsgiDriver(
        command.executable,
        parse_uwsgi_args(command.argv[1:]),
        preflight=preflight,
        preflight_timeout=preflight_timeout,
    )
