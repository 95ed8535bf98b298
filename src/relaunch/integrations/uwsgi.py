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
until every worker is new, and reports how long old and new workers coexisted.

Pass ``--die-on-term``: uWSGI 2.0 otherwise treats relaunch's SIGTERM at stop time
as "reload", and relaunch has to kill it after ``--grace``.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import oslayer
from ..command import Command
from ..preflight import AppSpec, describe_failure, run_preflight
from ..production import procs
from ..run.child import Child
from ..run.drivers import Driver, NotReloaded

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
        elif key == "processes":
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
        self.cwd = cwd or os.getcwd()
        self.python = _python_for(options, executable, self.cwd)
        self.fifo = os.path.join(self.cwd, options.master_fifo) if options.master_fifo else None

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
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
            else:
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
        old = procs.children(master)
        chain = self.options.lazy_apps and self.fifo is not None
        command = b"c" if chain else b"r"

        def started() -> bool:
            return procs.children(master) != old

        # uWSGI ignores a chain reload asked while the previous one is still finishing
        # ("chain reload already running", decided once per second of its master
        # loop): ask again until workers start to change.
        for _attempt in range(30):
            how = self._ask(master, command)
            if procs.wait_for(started, 2.5):
                break
        rollover = procs.watch_rollover(
            lambda: procs.children(master) if oslayer.process_alive(master) else set(),
            old,
            self.options.processes,
            timeout=120.0,
        )
        kind = "chain reload, one worker at a time" if chain else "graceful reload"
        if rollover is None:
            return f"{kind} ({how}) asked; the workers did not all roll over in time"
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
