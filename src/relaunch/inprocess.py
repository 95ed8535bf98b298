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
import queue
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import state
from .pathtext import shown

if TYPE_CHECKING:
    from .run.backoff import Backoff
    from .watch.events import Watcher
    from .watch.fingerprint import Fingerprints
    from .watch.settle import Settler
    from .watch.watchset import WatchEntry, WatchSet

__all__ = [
    "Monitor",
    "add_reload_hook",
    "adopt",
    "build_watchset",
    "module_files",
    "monitor",
    "reexec_argv",
    "start",
    "trigger_reload",
    "wait",
    "watch",
]

log = logging.getLogger(__name__)

# How often the monitor looks for modules that reached sys.modules without a finder
# (``sys.modules[name] = module``); one len() call, so idle CPU stays at zero.
_MODULE_CHECK = 1.0
# The back-off of reloads asked for at start, carried across the re-execution.
_BACKOFF_ENV = "_RELAUNCH_INPROCESS_BACKOFF"

_lock = threading.Lock()
_hooks: list[Callable[[], object]] = []
_extra: list[str] = []  # watch() before start(): handed to the monitor when it starts
_monitor: Monitor | None = None


def module_files(modules: Iterable[object]) -> list[str]:
    """The source files of these modules (absolute, normalised), in order, once each.

    A module without a file (built-in, namespace package) has none; a ``.pyc`` next to
    its ``.py`` (a module loaded from ``__pycache__``-less bytecode) counts as its source.
    """
    seen: set[str] = set()
    out: list[str] = []
    for module in modules:
        if not isinstance(module, types.ModuleType):
            continue  # some packages put other objects in sys.modules
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path:
            continue
        path = os.path.normpath(os.path.abspath(path))
        if path.endswith((".pyc", ".pyo")) and os.sep + "__pycache__" + os.sep not in path:
            path = path[:-1]
        if path not in seen:
            seen.add(path)
            out.append(path)
    return out


def reexec_argv(orig_argv: Sequence[str], executable: str) -> list[str]:
    """The command that runs this program again: ``executable`` with the original arguments.

    ``orig_argv`` is ``sys.orig_argv``: the interpreter's own flags included, ``-m``
    and ``-c`` as given. Raises ValueError when it cannot be repeated (empty, or a
    program read from standard input, which is gone).
    """
    if not orig_argv or not executable:
        raise ValueError("the original command line is unknown")
    from .command import CommandError, parse_python_args

    try:
        invocation = parse_python_args(executable, list(orig_argv[1:]))
    except CommandError:
        invocation = None
    if invocation is not None and invocation.mode == "stdin":
        raise ValueError("a program read from standard input cannot be run again")
    return [executable, *orig_argv[1:]]


class Monitor:
    """Watches the program's files from inside it; calls ``on_reload(changed)`` once.

    :meth:`add` may be called from any thread; everything else happens on the
    monitor's thread (or, for tests, by calling :meth:`step` directly).
    """

    def __init__(
        self,
        watchset: WatchSet,
        on_reload: Callable[[list[str]], None],
        *,
        settler: Settler | None = None,
        poll: bool = False,
        poll_interval: float = 0.5,
        watcher: Watcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        loaded_after_ns: int | None = None,
        modules: Callable[[], Iterable[object]] = lambda: list(sys.modules.values()),
        backoff: Backoff | None = None,
    ) -> None:
        """``backoff``: delays for a reload the program asks for right after starting,
        again and again (None: at once, always)."""
        from .watch.events import Watcher
        from .watch.fingerprint import Fingerprints
        from .watch.settle import Settler

        self.watchset = watchset
        self.on_reload = on_reload
        self.settler = settler or Settler()
        self.fingerprints: Fingerprints = Fingerprints(by_mtime=watchset.by_mtime)
        self.clock = clock
        self.modules = modules
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.watcher = watcher or Watcher(
            self._on_paths,
            poll=poll,
            poll_interval=poll_interval,
            close_wait=self.settler.max_wait,
        )
        self._unwatched: set[str] = set()
        self._unseen_changes: set[str] = set()  # changed before the monitor could compare
        # Files modified after this time were probably modified after the program
        # loaded them (None: no such guess).
        self.loaded_after_ns = loaded_after_ns
        self._dirty = True
        self._modules_seen = -1
        self._next_module_check = 0.0
        self.reloading = False
        self.backoff = backoff
        self.started = clock()
        self._requested_at: float | None = None  # a trigger_reload() held back
        self.thread: threading.Thread | None = None
        self._stop = False

    # -- inputs (any thread) ---------------------------------------------------------

    def _on_paths(self, paths: list[str]) -> None:
        self.events.put(("paths", paths, self.clock()))

    def add(self, paths: Iterable[str], how: str) -> None:
        """Watch these files too (absolute paths)."""
        self.events.put(("add", [os.path.abspath(p) for p in paths], how))

    def add_entries(self, entries: Iterable[WatchEntry]) -> None:
        """Watch these files, folders and globs too."""
        self.events.put(("entries", tuple(entries)))

    def request_reload(self) -> None:
        self.events.put(("reload",))

    # -- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="relaunch-monitor", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop = True
        self.events.put(("stop",))
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        self.watcher.close()

    def _run(self) -> None:
        try:
            while not self._stop and not self.reloading:
                self.step(block=True)
        except Exception:
            log.exception("relaunch's in-process monitor failed: no more reloads")

    def step(self, *, block: bool = False) -> None:
        """Handle what arrived (waiting for it if ``block``), then act on a settled batch."""
        now = self.clock()
        if now >= self._next_module_check:
            self._next_module_check = now + _MODULE_CHECK
            if len(sys.modules) != self._modules_seen:
                self._modules_seen = len(sys.modules)
                self._add_files(module_files(self.modules()), "imported by the program")
        if self._dirty:
            self._refresh()
        deadline = min(
            t
            for t in (self.settler.due(), self._next_module_check, self._requested_at)
            if t is not None
        )
        timeout = max(0.0, deadline - self.clock()) if block else 0.0
        try:
            event: tuple[Any, ...] | None = self.events.get(timeout=timeout)
        except queue.Empty:
            event = None
        while event is not None:
            self._handle(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                event = None
        if self._dirty:
            self._refresh()
        if self._requested_at is not None and self.clock() >= self._requested_at:
            self._reload([])
            return
        batch = self.settler.take(self.clock())
        if batch is None:
            return
        changed = [p for p in batch.paths if self.fingerprints.update(p)]
        changed += [p for p in batch.paths if p in self._unseen_changes and p not in changed]
        self._unseen_changes.difference_update(batch.paths)
        changed.sort()
        if changed:
            self._reload(changed)
        else:
            log.debug("no content changed in %s", ", ".join(sorted(batch.paths)))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "paths":
            self._on_touched(event[1], event[2])
        elif kind == "add":
            self._add_files(event[1], event[2])
        elif kind == "entries":
            self.watchset.entries += event[1]
            self.watchset.invalidate_tree()
            self._dirty = True
        elif kind == "reload":
            self._reload_requested()

    def _reload_requested(self) -> None:
        if self._requested_at is not None:
            return  # one is due already
        delay = self.backoff.delay(self.clock() - self.started) if self.backoff else 0.0
        if not delay:
            self._reload([])
            return
        if self.backoff is not None and delay == self.backoff.first:
            # The first short run of a row, in whichever process of the row this is.
            log.warning(
                "relaunch: the program asks for a reload (relaunch.trigger_reload()) within "
                "%g s of starting: reloading after a delay that grows each time it does "
                "(up to %g s)",
                self.backoff.short_run,
                self.backoff.longest,
            )
        self._requested_at = self.clock() + delay

    def _reload(self, changed: list[str]) -> None:
        if self.reloading:
            return
        self.reloading = True
        from .pycache import drop_bytecode

        drop_bytecode(changed)  # a stale .pyc would bring the old code back
        self.on_reload(changed)

    def _on_touched(self, paths: list[str], when: float) -> None:
        from .watch.events import OVERFLOW
        from .watch.watchset import is_within

        relevant: list[str] = []
        for path in paths:
            if path == OVERFLOW:
                relevant.extend(self.watchset.files())
            elif path in self.fingerprints or self.watchset.matches(path):
                relevant.append(path)
            elif os.path.isdir(path) and any(
                is_within(path, e.base) for e in self.watchset.entries
            ):
                # A folder appeared inside a watch=/relaunch.watch() folder: walk it again.
                self.watchset.invalidate_tree()
                self._dirty = True
                relevant.extend(f for f in self.watchset.files() if is_within(f, path))
        if relevant:
            self.settler.add(relevant, when)

    def _add_files(self, paths: Iterable[str], how: str) -> None:
        stale = []
        for path in paths:
            if self.watchset.add(path, how):
                self._unwatched.add(path)
                self.fingerprints.remember(path)
                self._dirty = True
                # Modified after relaunch was imported (so, most likely, after the program
                # loaded it, and before anything watched it): the running code is old.
                if self.loaded_after_ns is not None and _mtime_ns(path) > self.loaded_after_ns:
                    stale.append(path)
        if stale:
            self._unseen_changes.update(stale)
            self.settler.add(stale, self.clock())

    def _refresh(self) -> None:
        self._dirty = False
        files = self.watchset.files()
        self.watcher.update(self.watchset.directories(), files)
        for path in files:
            self.fingerprints.remember(path)
        # A file added since the last refresh had no watch until now: an edit in that
        # window raised no event, so compare it once more.
        missed = [p for p in self._unwatched if self.fingerprints.update(p)]
        self._unwatched.clear()
        if missed:
            # Their fingerprint already holds the new content: tell the batch directly.
            self._unseen_changes.update(missed)
            self.settler.add(missed, self.clock())


def relaunch_imported_ns() -> int:
    """When the program imported relaunch: its own modules imported after that were
    loaded after it, so a file modified since may not be what is running."""
    return state.IMPORTED_NS


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


# -- the process-wide monitor ----------------------------------------------------------


def _under_relaunch() -> bool:
    return state.channel() is not None


def build_watchset(paths: Iterable[str | os.PathLike[str]], cwd: str) -> WatchSet:
    """The watch set of ``relaunch run`` for this program: config plus ``paths``."""
    from ._inside.bootstrap import installed_roots
    from .config import load
    from .watch.rules import GitIgnore, Glob, IgnoreRules
    from .watch.watchset import WatchEntry, WatchSet

    settings = load({}, cwd=cwd)
    texts = [*settings.watch, *((os.fspath(p), cwd) for p in paths)]
    entries = [WatchEntry.parse(text, cwd=anchor) for text, anchor in texts]
    rules = IgnoreRules(
        user=[Glob(text, anchor) for text, anchor in settings.ignore],
        gitignore=GitIgnore.find(cwd) if settings.gitignore else None,
        bases=[cwd, *(entry.base for entry in entries)],
    )
    entries += [WatchEntry.touch(text, cwd=anchor) for text, anchor in settings.touch_reload]
    watchset = WatchSet(entries=entries, rules=rules, watch_installed=settings.watch_installed)
    watchset.set_excluded_roots(installed_roots())
    return watchset


def _run_hooks() -> None:
    with _lock:
        hooks = list(_hooks)
    for fn in hooks:
        try:
            fn()
        except Exception:
            log.exception("reload hook %r failed", fn)


def _no_more_forks() -> int:
    """Stands in for os.fork while the process is about to execute itself again."""
    threading.Event().wait()
    raise OSError("unreachable")  # pragma: no cover


def _stop_children(grace: float = 5.0) -> None:
    """Stop this process's descendants (tornado's forked workers, a pool) before the exec.

    They hold the listening sockets and would outlive the old image, so the new one
    could not bind: SIGTERM, SIGKILL after ``grace`` seconds, then reap them.
    """
    from . import oslayer

    pids = oslayer.descendants(os.getpid())
    if not pids:
        return
    if hasattr(os, "fork"):
        # A pre-fork server's loop (tornado's fork_processes) replaces a worker that dies:
        # from now until the exec, a fork blocks, so none is replaced.
        os.fork = _no_more_forks
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    delay = 0.001
    while any(oslayer.process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(delay)  # bounded by ``grace``; backs off to 50 ms
        delay = min(delay * 2, 0.05)
    for pid in pids:
        if oslayer.process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def _reexec(cwd: str, changed: Sequence[str]) -> NoReturn:
    """Run the hooks, then replace this process with a fresh run of the same command."""
    argv = reexec_argv(getattr(sys, "orig_argv", []), sys.executable)
    what = ", ".join(shown(os.path.relpath(p, cwd)) for p in changed[:3]) or "reload requested"
    log.info("relaunch: %s changed; restarting %s", what, " ".join(argv[1:]))
    _run_hooks()
    _stop_children()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if hasattr(signal, "setitimer"):
        # An interval timer survives exec and would kill the new process with SIGALRM.
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    try:
        os.chdir(cwd)
    except OSError:
        pass
    if sys.platform == "win32":  # pragma: no cover - execv mangles arguments there
        import subprocess

        subprocess.Popen(argv)
        os._exit(0)
    os.execv(argv[0], argv)


def _check_interval(seconds: float) -> None:
    """A polling interval the watcher can use: finite and in the options' range."""
    from .config import ConfigError, check_number

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
    from .config import load
    from .watch.settle import Settler

    settings = load({}, cwd=cwd)
    from .run.backoff import Backoff

    backoff = Backoff()
    with contextlib.suppress(ValueError):  # carried from the execution before this one
        backoff.current = max(0.0, float(os.environ.pop(_BACKOFF_ENV, "0")))

    def reexec(changed: list[str]) -> None:
        os.environ[_BACKOFF_ENV] = str(backoff.current)
        _reexec(cwd, changed)

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
    from ._inside.bootstrap import ReportingFinder

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
