"""gunicorn: graceful reloads driven through the master's own signals, after preflight.

Under ``relaunch run -- gunicorn [options] APP`` the child is gunicorn's master.
On a change the :class:`GunicornDriver`:

1. runs a **probe** in a throwaway process with gunicorn's interpreter: gunicorn's
   own configuration loader reads the same argv, config file and
   ``GUNICORN_CMD_ARGS`` as the master, then (preflight) imports the application
   exactly as a worker would (``--chdir``, ``--pythonpath``). If that fails, the
   traceback is logged and nothing is reloaded: the working workers keep serving.
2. without ``--preload``: sends **HUP** to the master. gunicorn starts new workers
   (which import the new code) and stops the old ones gracefully (they finish their
   requests); the listening socket never closes.
3. with ``--preload`` (the app lives in the master, which HUP cannot reload):
   **USR2** makes the master re-execute itself with the listening socket inherited
   (``GUNICORN_FD``); once the new master runs its workers, the old master gets
   **TERM**, its graceful stop (gunicorn ignores WINCH unless daemonized, and QUIT
   stops workers at once). The new master is a child of the old one, in the same
   process group: relaunch follows it as the program from then on.

Either way the driver waits, by watching processes, until every worker runs the new
code, and reports how long old and new workers served side by side.

For a gunicorn you start yourself, this module is also a gunicorn config module::

    gunicorn -c python:relaunch.integrations.gunicorn app:app

Its ``when_ready`` hook watches, from inside the master, the files the application
imports (found by a preflight) and reloads the same graceful way. Add your own
settings with a config file that does ``from relaunch.integrations.gunicorn import *``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import oslayer
from ..command import Command
from ..preflight import LOAD_LAZY, MARKER, PreflightResult, describe_failure, run_probe
from ..production import procs
from ..run.child import Child
from ..run.drivers import Driver, NotReloaded
from ..run.releases import logical_cwd

__all__ = [
    "PROBE",
    "GunicornDriver",
    "GunicornInfo",
    "asks_for_reload",
    "driver_for",
    "gunicorn_argv",
    "probe_argv",
    "when_ready",
]

log = logging.getLogger(__name__)

# Runs in gunicorn's interpreter: gunicorn's config loader, then (preflight) its app import.
PROBE = r"""
import json, os, sys
argv, load = json.loads(sys.argv[1]), sys.argv[2] == "1"
sys.argv = argv
from gunicorn.app.wsgiapp import WSGIApplication
LOAD_LAZY
app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]")
cfg = app.cfg
if cfg.pythonpath:
    for path in cfg.pythonpath.split(","):
        path = os.path.abspath(path)
        if path not in sys.path:
            sys.path.insert(0, path)
info = {"app_uri": app.app_uri, "preload": bool(cfg.preload_app), "chdir": cfg.chdir,
        "workers": cfg.workers, "graceful_timeout": cfg.graceful_timeout,
        "timeout": cfg.timeout, "daemon": bool(cfg.daemon)}
if load:
    application = app.wsgi()
    if not callable(application):
        raise TypeError("the application %r is not callable" % (app.app_uri,))
    _relaunch_load_lazy()
info["files"] = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                        if isinstance(getattr(m, "__file__", None), str)})
sys.stdout.flush()
sys.stdout.write("\n" + MARKER + json.dumps(info) + "\n")
sys.stdout.flush()
""".replace("MARKER", repr(MARKER)).replace("LOAD_LAZY", LOAD_LAZY)


def gunicorn_argv(command: Command) -> list[str] | None:
    """gunicorn's own argv (program name first) if ``command`` runs gunicorn, else None."""
    py = command.python
    if py is None:
        return None
    if py.mode == "script" and os.path.basename(py.target) == "gunicorn":
        return [py.target, *py.args]
    if py.mode == "module" and py.target == "gunicorn":
        return ["gunicorn", *py.args]
    return None


def probe_argv(python: str, argv: Sequence[str], *, load: bool) -> list[str]:
    """The throwaway command that reads gunicorn's settings (and imports the app)."""
    return [python, "-c", PROBE, json.dumps(list(argv)), "1" if load else "0"]


@dataclass(frozen=True)
class GunicornInfo:
    """gunicorn's effective settings, as its own loader read them."""

    app_uri: str
    preload: bool
    workers: int
    graceful_timeout: float
    timeout: float

    @classmethod
    def from_probe(cls, info: Mapping[str, object]) -> GunicornInfo:
        def number(key: str, default: float) -> float:
            value = info.get(key)
            return float(value) if isinstance(value, (int, float)) else default

        return cls(
            app_uri=str(info.get("app_uri") or ""),
            preload=bool(info.get("preload")),
            workers=max(1, int(number("workers", 1))),
            graceful_timeout=number("graceful_timeout", 30.0),
            timeout=number("timeout", 30.0),
        )

    @property
    def reload_timeout(self) -> float:
        """How long a graceful reload may take: old workers' grace plus new workers' boot."""
        return self.graceful_timeout + max(self.timeout, 30.0) + 10.0


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


class _Server:
    """Signals one gunicorn master and watches its workers roll over. Shared by the
    driver (master = relaunch's child) and the in-master hook (master = this process)."""

    def __init__(self, master: int, info: GunicornInfo) -> None:
        self.master = master
        self.info = info

    def hup(self) -> str:
        old = procs.children(self.master)
        os.kill(self.master, signal.SIGHUP)
        rollover = procs.watch_rollover(
            lambda: procs.children(self.master) if oslayer.process_alive(self.master) else set(),
            old,
            self.info.workers,
            self.info.reload_timeout,
        )
        if not oslayer.process_alive(self.master):
            return "HUP sent, but gunicorn stopped during the reload"
        if rollover is None:
            return "HUP sent; the workers did not all roll over in time"
        return (
            f"graceful reload (HUP): {len(rollover.new)} new worker(s), every old one "
            f"finished; old and new code served side by side for "
            f"{rollover.coexisted * 1000:.0f} ms"
        )

    def usr2(self, *, before_stop: Any = None) -> str:
        """Re-exec the master (USR2), stop the old one once the new one serves.
        ``before_stop(new_master_pid)`` runs before the old master is told to stop."""
        old_master = self.master
        old = procs.children(old_master)
        marker = f"GUNICORN_PID={old_master}".encode()
        found: list[int] = []

        def new_master_found() -> bool:
            for pid in procs.children(old_master) - old:
                if _environ_has(pid, marker):
                    found.append(pid)
                    return True
            return False

        # A master that was itself re-executed ignores USR2 until it has noticed that its
        # parent is gone ("promoted", checked once per turn of its loop): resend until
        # the new master shows up.
        deadline = time.monotonic() + self.info.reload_timeout
        while not found:
            os.kill(old_master, signal.SIGUSR2)
            if procs.wait_for(new_master_found, 1.5) or time.monotonic() > deadline:
                break
        if not found:
            return NotReloaded("USR2 sent, but no new gunicorn master appeared; still serving")
        new_master = found[0]

        def workers() -> set[int]:
            return procs.children(old_master) - {new_master} | procs.children(new_master)

        def new_ready() -> bool:
            return not oslayer.process_alive(new_master) or len(procs.children(new_master)) >= (
                self.info.workers
            )

        procs.wait_for(new_ready, self.info.reload_timeout)
        if not oslayer.process_alive(new_master):
            return NotReloaded(
                "the re-executed gunicorn master failed to start; still serving the "
                "previous version"
            )
        rollover_old = old
        if before_stop is not None:
            before_stop(new_master)
        started = time.monotonic()
        os.kill(old_master, signal.SIGTERM)
        rollover = procs.watch_rollover(
            workers, rollover_old, self.info.workers, self.info.reload_timeout
        )
        procs.wait_for(lambda: not oslayer.process_alive(old_master), self.info.reload_timeout)
        self.master = new_master
        # Any signal wakes the new master's loop, which then sees its parent is gone and
        # promotes itself; WINCH is ignored by a master that is not daemonized.
        try:
            os.kill(new_master, signal.SIGWINCH)
        except OSError:
            pass
        side = (time.monotonic() - started) * 1000 if rollover is None else None
        if rollover is not None:
            side = (rollover.last_old_gone or time.monotonic()) - (rollover.first_new or started)
            side *= 1000
        return (
            f"graceful re-exec (USR2, --preload): new master {new_master} with "
            f"{self.info.workers} worker(s), old master stopped; old and new code served "
            f"side by side for {side:.0f} ms"
        )


class GunicornDriver(Driver):
    """Graceful gunicorn reloads for ``relaunch run -- gunicorn ...`` (see module doc)."""

    name = "gunicorn"

    def __init__(
        self,
        argv: Sequence[str],
        python: str,
        *,
        preflight: bool = True,
        preflight_timeout: float = 60.0,
        cwd: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.python = python
        self.preflight = preflight
        self.preflight_timeout = preflight_timeout
        # By its logical name (a deploy's `current` link kept): the preflight after a
        # swap then imports the new release, as gunicorn's new workers will.
        self.cwd = cwd or logical_cwd()
        self._masters: weakref.WeakKeyDictionary[Child, int] = weakref.WeakKeyDictionary()

    def probe(self, *, load: bool) -> PreflightResult:
        return run_probe(
            probe_argv(self.python, self.argv, load=load),
            cwd=self.cwd,
            env=os.environ,
            timeout=self.preflight_timeout,
        )

    def reload(self, child: Child, changed: Sequence[str]) -> str | None:
        if child.pid is None:
            return None
        master = self._masters.get(child, child.pid)
        if not oslayer.process_alive(master):
            return None  # gone: let the supervisor start it again
        result = self.probe(load=self.preflight)
        if not result.ok:
            log.error("%s", describe_failure(result))
            if self.preflight:
                return NotReloaded(
                    f"preflight failed: {result.summary}; still serving the previous version"
                )
            return None
        info = GunicornInfo.from_probe(result.info)
        server = _Server(master, info)
        if not info.preload:
            return server.hup()

        def follow(new_master: int) -> None:
            procs.follow_program(child, new_master)

        done = server.usr2(before_stop=follow)
        self._masters[child] = server.master
        return done


def asks_for_reload(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True if gunicorn's own reloader is asked for on its command line or in
    ``GUNICORN_CMD_ARGS``."""
    extra = environ.get("GUNICORN_CMD_ARGS", "").split()
    return any(arg == "--reload" for arg in (*argv[1:], *extra))


def driver_for(
    command: Command, *, preflight: bool = True, preflight_timeout: float = 60.0
) -> GunicornDriver | None:
    """A :class:`GunicornDriver` if ``command`` runs gunicorn."""
    argv = gunicorn_argv(command)
    if argv is None or command.python is None:
        return None
    if asks_for_reload(argv, os.environ):
        log.warning(
            "gunicorn --reload restarts its workers by itself on every change, beside "
            "relaunch's graceful reloads (after preflight): drop --reload under relaunch"
        )
    return GunicornDriver(
        argv,
        command.python.interpreter,
        preflight=preflight,
        preflight_timeout=preflight_timeout,
    )


# -- gunicorn config module: ``gunicorn -c python:relaunch.integrations.gunicorn`` ------


def when_ready(server: Any) -> None:
    """gunicorn hook (runs in the master once it listens): watch the application's
    files and reload gracefully, after preflight, when they change.

    Environment: ``RELAUNCH_WATCH`` (extra paths or globs, separated by ``os.pathsep``),
    ``RELAUNCH_PREFLIGHT=0`` to skip the preflight (the file list then comes from
    the workers' imports being unknown: only ``RELAUNCH_WATCH`` is watched).
    """
    from ..production.monitor import Monitor
    from ..watch.watchset import WatchEntry, WatchSet

    if not logging.getLogger("relaunch").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[relaunch] %(message)s"))
        logging.getLogger("relaunch").addHandler(handler)
        logging.getLogger("relaunch").setLevel(logging.INFO)
    argv = [sys.argv[0], *sys.argv[1:]]
    use_preflight = os.environ.get("RELAUNCH_PREFLIGHT", "1").lower() not in ("0", "false", "no")
    driver = GunicornDriver(argv, sys.executable, preflight=True)
    cwd = os.getcwd()
    entries = [
        WatchEntry.parse(text, cwd=cwd)
        for text in os.environ.get("RELAUNCH_WATCH", "").split(os.pathsep)
        if text
    ]
    watchset = WatchSet(entries=entries)
    from ..run.interpreter import interpreter_info

    watchset.set_excluded_roots(interpreter_info(sys.executable).roots)
    first = driver.probe(load=True)
    if first.ok:
        for path in first.files:
            watchset.add(path, "imported by the application (preflight)")
    else:
        log.error("%s", describe_failure(first))

    def on_change(changed: list[str]) -> None:
        if use_preflight:
            result = driver.probe(load=True)
            if not result.ok:
                log.error("%s", describe_failure(result))
                log.error("not reloading: still serving the previous version")
                return
            for path in result.files:
                monitor.add_files([path], "imported by the application (preflight)")
        info = GunicornInfo.from_probe(driver.probe(load=False).info)
        me = _Server(os.getpid(), info)
        log.info("%d file(s) changed: reloading", len(changed))
        if info.preload:
            log.info("%s", me.usr2())
            monitor.close()  # this master is on its way out; the new one watches
        else:
            log.info("%s", me.hup())

    monitor = Monitor(watchset, on_change)
    monitor.start()
    log.info(
        "relaunch watches %d file(s) for gunicorn master %d", len(watchset.files()), os.getpid()
    )
