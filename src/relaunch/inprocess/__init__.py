"""In-process reloading, for programs that cannot be started by ``relaunch run``.

Theory of operation
-------------------
:func:`start` starts one daemon thread, the monitor, in the calling process. It
watches the files of the modules in ``sys.modules`` (minus the standard library and
installed packages, exactly as under ``relaunch run``), every module imported later
(a meta-path finder reports each one when it is found, before it runs, so a module
that then fails to import is watched too), the ``watch=`` paths, and the files given
to :func:`relaunch.watch`. The same pieces as the supervisor decide what a change is:
the watch set and its ignore rules (``[tool.relaunch]`` and ``RELAUNCH_*`` apply),
the :class:`~relaunch.watch.events.Watcher` (native events, polling where they do not
work), the :class:`~relaunch.watch.settle.Settler` and content fingerprints, so a
``git checkout`` reloads once and a no-op save not at all.

A real change runs the reload hooks, then re-executes the process: the same
interpreter with exactly ``sys.orig_argv`` (so ``-u``, ``-X dev``, ``-W error``, ``-O``
survive, unlike tornado's reloader), in the folder :func:`start` was called from, with
the same environment. ``exec`` keeps descriptors marked inheritable
(``os.set_inheritable(fd, True)``, or inherited that way, such as a socket passed in
by a process manager) and 0-2; it closes every other one, since they carry
``FD_CLOEXEC``, which is what Python gives everything it opens.

Under ``relaunch run`` the supervisor already does all of this and more (the whole
process group, warm restarts, crash survival): :func:`start` then watches nothing
itself and only hands ``watch=`` to the supervisor, so a change reloads once.

The decisions (:func:`module_files`, :func:`reexec_argv`, the batch logic in
:meth:`Monitor.step`) are pure and unit-tested; threads only enqueue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable

from .. import state
from .monitor import Monitor, module_files, relaunch_imported_ns
from .reexec import reexec_argv, replace_process
from .watchset import build_watchset

__all__ = [
    "Monitor",
    "add_reload_hook",
    "adopt",
    "build_watchset",
    "module_files",
    "monitor",
    "reexec_argv",
    "relaunch_imported_ns",
    "start",
    "trigger_reload",
    "wait",
    "watch",
]

log = logging.getLogger(__name__)

# The back-off of reloads asked for at start, carried across the re-execution.
_BACKOFF_ENV = "_RELAUNCH_INPROCESS_BACKOFF"

_lock = threading.Lock()
_hooks: list[Callable[[], object]] = []
_extra: list[str] = []  # watch() before start(): handed to the monitor when it starts
_monitor: Monitor | None = None


def _under_relaunch() -> bool:
    return state.channel() is not None


def _run_hooks() -> None:
    with _lock:
        hooks = list(_hooks)
    for fn in hooks:
        try:
            fn()
        except Exception:
            log.exception("reload hook %r failed", fn)


def _check_interval(seconds: float) -> None:
    """A polling interval the watcher can use: finite and in the options' range."""
    from ..config import ConfigError, check_number

    try:
        check_number("poll_interval", seconds, "check_interval")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def start(
    *,
    check_interval: float | None = None,
    watch: Iterable[str | os.PathLike[str]] = (),
    _poll_interval: float | None = None,
) -> None:
    """Reload this process whenever one of its files changes. Returns at once.

    Watches the program's own modules (as they are imported), ``watch`` (files,
    folders, globs) and files given to :func:`relaunch.watch`; ``[tool.relaunch]``
    settings and ``RELAUNCH_*`` variables apply. ``check_interval=None`` uses OS
    events (polling only where they do not work); a number polls every that many
    seconds instead. On a change: reload hooks, then the process is executed again
    with exactly ``sys.orig_argv``. Calling it again adds ``watch`` and changes nothing
    else.

    Under ``relaunch run`` the supervisor reloads the program: this only hands it
    ``watch``. Raises FileNotFoundError for a ``watch`` path that does not exist,
    ValueError for a ``watch`` glob that is not one ('[z-a]'), and
    ValueError for a ``check_interval`` outside 0.01 to 3600 seconds (or not finite).
    """
    global _monitor
    for interval in (check_interval, _poll_interval):
        if interval is not None:
            _check_interval(interval)
    if _under_relaunch():
        log.debug("relaunch.start(): running under relaunch run, which does the reloading")
        paths = [os.fspath(p) for p in watch]
        if paths:
            module = sys.modules["_relaunch_channel"]
            module.channel.watch([os.path.abspath(p) for p in paths])
        return
    cwd = os.getcwd()
    with _lock:
        current = _monitor
    if current is not None:
        if watch:
            current.add_entries(build_watchset(watch, cwd).entries)
        return
    watchset = build_watchset(watch, cwd)
    poll = check_interval is not None
    interval = check_interval if check_interval is not None else (_poll_interval or 0.5)
    from ..config import load
    from ..watch.settle import Settler

    settings = load({}, cwd=cwd)
    from ..run.backoff import Backoff

    backoff = Backoff()
    with contextlib.suppress(ValueError):  # carried from the execution before this one
        backoff.current = max(0.0, float(os.environ.pop(_BACKOFF_ENV, "0")))

    def reexec(changed: list[str]) -> None:
        os.environ[_BACKOFF_ENV] = str(backoff.current)
        replace_process(cwd, changed, _run_hooks)

    new = Monitor(
        watchset,
        reexec,
        settler=Settler(quiet=settings.settle / 1000, max_wait=settings.settle_max / 1000),
        poll=poll or settings.poll,
        poll_interval=interval,
        loaded_after_ns=relaunch_imported_ns(),
        backoff=backoff,
    )
    with _lock:
        if _monitor is not None:
            return  # another thread won
        _monitor = new
        extra = list(_extra)
    new.add(extra, "relaunch.watch()")
    from .._inside.bootstrap import ReportingFinder

    finder = ReportingFinder(lambda _name, path: new.add([path], "imported by the program"))
    sys.meta_path.insert(0, finder)
    new.start()
    log.debug("relaunch: watching this process's files for changes")


def adopt(new: Monitor) -> bool:
    """Have :func:`relaunch.watch` and :func:`relaunch.trigger_reload` reach ``new``, a
    monitor another in-process reloader runs (mod_wsgi's): its own reload, not a
    re-exec. False if a monitor was already running."""
    global _monitor
    with _lock:
        if _monitor is not None:
            return False
        _monitor = new
        extra = list(_extra)
    if extra:
        new.add(extra, "relaunch.watch()")
    return True


def monitor() -> Monitor | None:
    """The running in-process monitor, if :func:`start` was called."""
    return _monitor


def wait() -> None:
    """Block until a watched file changes, then run the program again. Never returns.

    For test runners: call it at the end, and the tests run again on every change.
    Under ``relaunch run`` it blocks until the supervisor restarts the program.
    """
    if not _under_relaunch():
        start()
    threading.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover


def watch(paths: Iterable[str]) -> None:
    """Also reload when these files change (relaunch.watch() outside ``relaunch run``)."""
    absolute = [os.path.abspath(p) for p in paths]
    with _lock:
        _extra.extend(absolute)
        current = _monitor
    if current is not None:
        current.add(absolute, "relaunch.watch()")


def add_reload_hook(fn: Callable[[], object]) -> None:
    """Call ``fn()`` just before the process re-executes itself; exceptions are logged."""
    with _lock:
        _hooks.append(fn)


def trigger_reload() -> bool:
    """Reload now if :func:`start` was called. False when there is no monitor."""
    current = _monitor
    if current is None:
        return False
    current.request_reload()
    return True
