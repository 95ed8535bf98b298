"""Django's reloader interface (``BaseReloader``) on relaunch's watcher; see the package doc.

:func:`install` swaps two functions of ``django.utils.autoreload``, which
``run_with_reloader`` looks up when runserver starts:

* ``restart_with_reloader`` (the restart loop, in the process the user started):
  replaced by an exec of relaunch's supervisor running the same command;
* ``get_reloader`` (in the server process): returns a :class:`RelaunchReloader`;
* ``start_django`` (in the server process, which it starts serving): under relaunch,
  runserver serves on the listening socket relaunch keeps (:mod:`.heldserver`).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.utils import autoreload  # type: ignore[import-untyped,import-not-found,unused-ignore]

import relaunch

from ... import state
from ..._inside.bootstrap import installed_roots
from ...watch.events import OVERFLOW, Watcher
from ...watch.fingerprint import Fingerprints
from ...watch.rules import IgnoreRules
from ...watch.settle import Settler
from ...watch.watchset import WatchEntry, WatchSet, is_within
from . import early, serving, urlchecks

__all__ = [
    "RelaunchReloader",
    "edited_since",
    "get_reloader",
    "install",
    "restart_with_reloader",
    "supervisor_argv",
]

log = logging.getLogger(__name__)

# How often the reloader looks whether receivers registered more folders or files, or
# (without the supervisor) more modules were imported: a few len() calls.
_RESCAN = 1.0
# Under relaunch, the first look at the watched folders waits for runserver to serve
# (``serving``), at most this long, then for its first response (``answered``) at most
# ``_FIRST_ANSWER_WAIT``: not while its checks, or that request, need the CPU.
_FIRST_LOOK_WAIT = 30.0
_FIRST_ANSWER_WAIT = 0.5
# A file edited since this process started (by this much before, for the coarse clock
# of file times) is notified at the first look: a request may have read it before.
_STARTED_SLACK_NS = 20_000_000

_MODULE = "imported by the program"


def install() -> None:
    """Make runserver use relaunch. Idempotent; called when the app config is created."""
    if getattr(autoreload, "_relaunch_installed", False):
        return
    autoreload._relaunch_installed = True
    autoreload.get_reloader = get_reloader
    autoreload.restart_with_reloader = restart_with_reloader
    autoreload.start_django = _start_django(autoreload.start_django)
    if relaunch.is_child():
        # Under relaunch run, this process is the server: Django must not start its own
        # restart loop (relaunch run also sets this for commands it sees are runserver).
        os.environ[autoreload.DJANGO_AUTORELOAD_ENV] = "true"


def get_reloader() -> RelaunchReloader:
    if relaunch.is_child():
        _start_in_main_thread()
    return RelaunchReloader()


def _start_django(start: Any) -> Any:
    """Django's ``start_django``, making runserver keep its socket under relaunch."""

    def start_django(reloader: Any, main_func: Any, *args: Any, **kwargs: Any) -> Any:
        if relaunch.is_child():
            # Here, not at the top: Django's server module reads the settings as it loads.
            from . import heldserver

            command = getattr(main_func, "__self__", None)
            if heldserver.applies(command):
                main_func = heldserver.serve_on_kept_socket(command, main_func)
                serving.expected = True  # it says when it serves (see tick)
        return start(reloader, main_func, *args, **kwargs)

    return start_django


def _start_in_main_thread() -> None:
    """Here, in the main thread, before runserver starts the thread that checks and
    serves (where no checkpoint can be parked: a fork copies one thread), with the apps
    ready (the command runs after django.setup()):

    * runserver's model, admin and settings checks, the template engines and the
      import of the migration modules (:mod:`.early`), before the views, so that a
      checkpoint before a view keeps them; and the URL patterns' checks are kept for
      the patterns a checkpoint holds (:mod:`.urlchecks`);
    * the URLconf, so the views: Django's checks would import it in that thread. A
      failure is left to Django's own checks, which import the URLconf again and
      report it as runserver does."""
    from . import heldserver  # noqa: F401  (loaded here: a checkpoint keeps it)
    from .devserver import load_urlconf

    if early.runs_checks(sys.argv):
        early.check_models_early()
        channel = state.channel()
        if channel is not None and hasattr(channel, "before_checkpoint"):
            urlchecks.install()
            channel.before_checkpoint(urlchecks.check_kept_patterns)
    if early.is_runserver_process(sys.argv):
        # Not checks: runserver creates the engines and runs its migration check (which
        # imports the migrations) with --skip-checks too.
        early.create_template_engines_early()
        early.import_migrations_early()
    try:
        load_urlconf()
    except Exception:
        log.debug("the URLconf did not load before runserver's checks", exc_info=True)


def _verbosity(args: Sequence[str]) -> int | None:
    """The value of Django's ``-v N`` / ``--verbosity N`` option in ``args``, if given."""
    value = None
    for i, arg in enumerate(args):
        if arg in ("-v", "--verbosity") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--verbosity="):
            value = arg.partition("=")[2]
        elif arg.startswith("-v") and arg[2:].isdigit():
            value = arg[2:]
    return int(value) if value is not None and value.isdigit() else None


def supervisor_argv(orig_argv: Sequence[str], executable: str) -> list[str]:
    """``python -m relaunch run [-v|-q] -- python [flags] manage.py runserver [args]``, pure.

    The program is this process's exact command line (``sys.orig_argv``: interpreter
    flags kept), with the interpreter spelled as ``executable``. runserver's
    ``--verbosity`` sets relaunch's too: 0 is ``-q``, 2 and more ``-v``.
    """
    verbosity = _verbosity(orig_argv[1:])
    noise = [] if verbosity in (None, 1) else ["-q"] if verbosity == 0 else ["-v"]
    return [executable, "-m", "relaunch", "run", *noise, "--", executable, *orig_argv[1:]]


def restart_with_reloader() -> int:
    """Replace Django's restart loop: this process becomes relaunch's supervisor."""
    argv = supervisor_argv(
        getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv], sys.executable
    )
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if sys.platform == "win32":  # pragma: no cover - execv mangles arguments there
        import subprocess

        return subprocess.call(argv)
    os.execv(argv[0], argv)


def edited_since(mtime_ns: int | None, since_ns: int) -> bool:
    """Whether a file (its mtime, None if missing) was written at or after ``since_ns``
    (pure): at the first look, one this process may have read before it was edited."""
    return mtime_ns is not None and mtime_ns >= since_ns


class RelaunchReloader(autoreload.BaseReloader):  # type: ignore[misc]
    """Django's reloader with native events, settling and content fingerprints.

    ``supervised`` (under ``relaunch run``): watches what receivers of
    ``autoreload_started`` register (folders with globs, ``extra_files``); an unhandled
    ``file_changed`` asks the supervisor to reload. Otherwise it also watches the
    imported modules and exits with status 3 as Django's reloaders do.

    What is registered through Django's API (``watch_dir``, ``watch_file``,
    ``extra_files``) keeps Django's contract: an mtime change alone sends
    ``file_changed`` (a touch), as under StatReloader. Modules keep relaunch's content
    comparison: a no-op save of a module restarts nothing.

    Each :meth:`tick` waits for the next change (at most about a second when none
    comes) and, once one has come, until it has settled and ``file_changed`` has been
    sent for it: a change made before a tick is handled by that tick, as with
    Django's reloaders.
    """

    def __init__(self) -> None:
        super().__init__()
        self.supervised = relaunch.is_child()
        self._events: queue.SimpleQueue[tuple[list[str], float]] = queue.SimpleQueue()
        self._reload_asked = False
        self._started_ns = time.time_ns()
        self._main_thread: threading.Thread | None = None

    @classmethod
    def check_availability(cls) -> bool:
        return True

    def run(self, django_main_thread: Any) -> None:
        if self.supervised and not self.wait_for_apps_ready(autoreload.apps, django_main_thread):
            # Django's main thread died before the apps were ready (an error in models or
            # settings it printed): exit, so relaunch reports it and waits for the fix.
            if autoreload._error_files:
                relaunch.watch(*autoreload._error_files)
            raise SystemExit(1)
        self._main_thread = django_main_thread
        channel = state.channel() if self.supervised else None
        if channel is not None:
            # The supervisor watches the modules; before it restarts for one, it asks
            # here, so file_changed reaches receivers for .py files as under runserver.
            channel.judge_changes(self._judge)
        super().run(django_main_thread)

    def _judge(self, paths: list[str]) -> bool:
        """Django's contract for files the supervisor saw change: ``file_changed`` for
        each; True (no restart) only if a receiver handled every one of them."""
        handled = True
        for path in paths:
            results = autoreload.file_changed.send(sender=self, file_path=Path(path))
            log.debug("%s notified as changed. Signal results: %s.", path, results)
            if not any(result for _receiver, result in results):
                if handled:
                    autoreload.logger.info("%s changed, reloading.", path)
                handled = False
        return handled

    def _on_paths(self, paths: list[str]) -> None:
        self._events.put((paths, time.monotonic()))

    def _signature(self) -> tuple[int, ...]:
        globs = sum(len(patterns) for patterns in self.directory_globs.values())
        base = (len(self.extra_files), len(self.directory_globs), globs)
        if self.supervised:
            return base
        return (*base, len(sys.modules), len(autoreload._error_files))

    def _watchset(self) -> WatchSet:
        entries = []
        for directory, patterns in self.directory_globs.items():
            for pattern in patterns:
                try:
                    entries.append(WatchEntry.parse(str(directory / pattern), cwd=str(directory)))
                except FileNotFoundError:
                    continue  # a folder that does not exist (yet): Django skips it too
        rules = IgnoreRules(bases=[os.getcwd(), *(entry.base for entry in entries)])
        watchset = WatchSet(entries=entries, rules=rules)
        watchset.set_excluded_roots(installed_roots())
        for path in self.extra_files:
            watchset.add(str(Path(path).absolute()), "reloader.extra_files")
        if not self.supervised:
            for path in self.watched_files(include_globs=False):
                watchset.add(str(path), _MODULE)
        return watchset

    def _wait_for_serving(self) -> None:
        """Under relaunch, where runserver serves on the kept socket (it says when it
        does: :mod:`.serving`), until runserver serves (or its thread ended, or
        ``_FIRST_LOOK_WAIT``), then until it answered a request (or
        ``_FIRST_ANSWER_WAIT``): a new process's checks and first request then have the
        CPU to themselves (the supervisor watches the modules meanwhile; an edit of a
        watched file in that time is caught by the first look, see
        :func:`edited_since`)."""
        deadline = time.monotonic() + _FIRST_LOOK_WAIT
        while not serving.serving.wait(0.05):
            thread = self._main_thread
            if (thread is not None and not thread.is_alive()) or time.monotonic() > deadline:
                return
        serving.answered.wait(_FIRST_ANSWER_WAIT)

    def tick(self) -> Iterator[None]:
        if self.supervised and serving.expected:
            self._wait_for_serving()
        first = True
        watcher = Watcher(self._on_paths)
        settler = Settler()
        watchset = WatchSet()
        # Read through the closure: ``watchset`` is rebuilt as receivers register more.
        fingerprints = Fingerprints(by_mtime=lambda path: watchset.imported.get(path) != _MODULE)
        signature: tuple[int, ...] | None = None
        new_dirs: list[str] = []  # folders that appeared under watched ones
        next_rescan = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= next_rescan:
                    next_rescan = now + _RESCAN
                    if self._signature() != signature:
                        signature = None
                if signature is None:
                    signature = self._signature()
                    watchset = self._watchset()
                    files = watchset.files()
                    watcher.update(watchset.directories(), files)
                    edited = []  # at the first look, edited since this process started
                    for path in files:
                        if path in fingerprints:
                            continue
                        if any(is_within(path, d) for d in new_dirs):
                            settler.add([path], now)  # created with its folder: a change
                        else:
                            fingerprints.remember(path)
                            if first and self.supervised:
                                since = self._started_ns - _STARTED_SLACK_NS
                                if edited_since(fingerprints.mtime_ns(path), since):
                                    edited.append(path)
                    new_dirs.clear()
                    first = False
                    for path in sorted(edited):  # the baseline is what they are now
                        self.notify_file_changed(Path(path))
                while True:
                    # Once a change is pending, only its settling is waited for.
                    due = settler.due()
                    deadline = due if due is not None else next_rescan
                    try:
                        paths, when = self._events.get(
                            timeout=max(0.0, deadline - time.monotonic())
                        )
                    except queue.Empty:
                        paths, when = [], 0.0
                    relevant: list[str] = []
                    for path in paths:
                        if path == OVERFLOW:
                            relevant.extend(watchset.files())
                        elif path in fingerprints or watchset.matches(path):
                            relevant.append(path)
                        elif os.path.isdir(path) and any(
                            is_within(path, e.base) for e in watchset.entries
                        ):
                            new_dirs.append(path)
                            signature = None  # walk the watched folders again
                    if relevant:
                        settler.add(relevant, when)
                    batch = settler.take(time.monotonic())
                    if batch is not None:
                        for path in sorted(p for p in batch.paths if fingerprints.update(p)):
                            self.notify_file_changed(Path(path))
                    if batch is not None or signature is None:
                        break
                    if settler.due() is None and time.monotonic() >= next_rescan:
                        break  # nothing came (or nothing watched) for a rescan period
                yield
        finally:
            watcher.close()

    def notify_file_changed(self, path: Path) -> None:
        if not self.supervised:
            super().notify_file_changed(path)  # exits with status 3 unless handled
            return
        results = autoreload.file_changed.send(sender=self, file_path=path)
        log.debug("%s notified as changed. Signal results: %s.", path, results)
        if any(result for _receiver, result in results) or self._reload_asked:
            return
        self._reload_asked = True
        autoreload.logger.info("%s changed, reloading.", path)
        relaunch.trigger_reload()
