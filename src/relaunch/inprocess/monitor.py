"""The in-process monitor: the loop that watches a program's files from inside it.

Its batch logic (:meth:`Monitor.step`) and :func:`module_files` are pure and
unit-tested; the threads feeding it only enqueue. :mod:`relaunch.inprocess` runs one
per process; mod_wsgi's reloader runs its own.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import state

if TYPE_CHECKING:
    from ..run.backoff import Backoff
    from ..watch.events import Watcher
    from ..watch.fingerprint import Fingerprints
    from ..watch.settle import Settler
    from ..watch.watchset import WatchEntry, WatchSet

__all__ = ["Monitor", "module_files", "relaunch_imported_ns"]

# One logger for in-process mode, whichever of its modules speaks.
log = logging.getLogger("relaunch.inprocess")

# How often the monitor looks for modules that reached sys.modules without a finder
# (``sys.modules[name] = module``); one len() call, so idle CPU stays at zero.
_MODULE_CHECK = 1.0


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
        from ..watch.events import Watcher
        from ..watch.fingerprint import Fingerprints
        from ..watch.settle import Settler

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
        from ..pycache import drop_bytecode

        drop_bytecode(changed)  # a stale .pyc would bring the old code back
        self.on_reload(changed)

    def _on_touched(self, paths: list[str], when: float) -> None:
        from ..watch.events import OVERFLOW
        from ..watch.watchset import is_within

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
