"""A stand-alone watch loop: watch set, events, settle, fingerprints, symlink swaps.

``relaunch run`` has its supervisor; ``relaunch watch`` and the in-process
integrations (a gunicorn master, a mod_wsgi daemon process) need the same pipeline
without a child to run: :class:`Monitor` runs it on one thread and calls
``on_change(changed_paths)`` there, once per settled batch whose content really
changed. ``on_change`` may block (a preflight, a graceful reload): events that
arrive meanwhile are kept and form the next batch. Before it is called, the cached
bytecode of the changed modules is deleted (:func:`drop_bytecode`), so that neither
the preflight nor new workers run a stale ``.pyc``.

Symlinked releases: when a watched folder is reached through a symlink
(``/srv/app/current -> releases/41``), the folder holding the link is watched too;
when a deploy swaps the link, the native watch (which follows the old target's
inode) is re-made on the new target, and every watched file below the link counts
as touched, so the fingerprints (taken through the link path) see the new release.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..pycache import drop_bytecode
from ..run.releases import symlinks_above
from ..watch.events import OVERFLOW, Watcher
from ..watch.fingerprint import Fingerprints
from ..watch.watchset import WatchSet, is_within

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

OnChange = Callable[[list[str]], None]


class Monitor:
    """Watch ``watchset``; call ``on_change`` on the monitor's thread after each settled,
    really-changed batch. Start with :meth:`start` (a daemon thread) or :meth:`run`."""

    def __init__(
        self,
        watchset: WatchSet,
        on_change: OnChange,
        *,
        settle_ms: int = 10,
        settle_max_ms: int = 1000,
        poll: bool = False,
        poll_interval: float = 0.5,
    ) -> None:
        from ..watch.settle import Settler

        self.watchset = watchset
        self.on_change = on_change
        self.settler = Settler(quiet=settle_ms / 1000, max_wait=settle_max_ms / 1000)
        self.fingerprints = Fingerprints(by_mtime=watchset.by_mtime)
        self.events: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self.watcher = Watcher(self.events.put, poll=poll, poll_interval=poll_interval)
        self.links: set[str] = set()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dirty = False
        self._started = False

    def add_files(self, paths: Iterable[str], how: str = "imported by the application") -> None:
        """Watch these files too (any thread)."""
        with self._lock:
            added = [p for p in paths if self.watchset.add(os.path.abspath(p), how)]
        if added:
            self._dirty = True
            self.events.put([])  # wake the loop to refresh the watcher

    def refresh(self) -> None:
        with self._lock:
            files = self.watchset.files()
            dirs = self.watchset.directories()
        self.links = symlinks_above(dirs | files)
        link_dirs = {os.path.dirname(link) for link in self.links}
        self.watcher.update(dirs | link_dirs, files)
        for path in files:
            self.fingerprints.remember(path)
        log.debug("watching %d file(s): %s", len(files), self.watcher.describe())

    def _swapped(self, link: str) -> list[str]:
        """A symlink on the way changed: re-make the watches below it, return its files."""
        log.info("%s now points to %s", link, os.path.realpath(link))
        with self._lock:
            self.watchset.invalidate_tree()
            files = self.watchset.files()
            dirs = self.watchset.directories()
        below = {d for d in dirs if is_within(d, link)}
        # The native watch follows the old target's inode: drop it and watch anew.
        self.watcher.update(dirs - below, files)
        self.refresh()
        return [f for f in files if is_within(f, link)]

    def _relevant(self, paths: Sequence[str]) -> list[str]:
        relevant: list[str] = []
        for path in paths:
            if path == OVERFLOW:
                relevant.extend(self.watchset.files())
            elif path in self.links:
                relevant.extend(self._swapped(path))
            elif path in self.fingerprints or self.watchset.matches(path):
                relevant.append(path)
            elif os.path.isdir(path) and not self.watchset.ignores_folder(path):
                with self._lock:
                    self.watchset.invalidate_tree()
                self.refresh()
                relevant.extend(f for f in self.watchset.files() if is_within(f, path))
        return relevant

    def run(self) -> None:
        """The loop; returns after :meth:`close`."""
        if not self._started:
            self.refresh()
        while not self.stopped.is_set():
            due = self.settler.due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                paths = self.events.get(timeout=timeout)
            except queue.Empty:
                paths = []
            if paths is None:
                break
            if self._dirty:
                self._dirty = False
                self.refresh()  # files were added
            relevant = self._relevant(paths)
            if relevant:
                self.settler.add(relevant, time.monotonic())
            batch = self.settler.take(time.monotonic())
            if batch is None:
                continue
            changed = sorted(p for p in batch.paths if self.fingerprints.update(p))
            if not changed:
                log.debug("no content changed in %d file(s)", len(batch.paths))
                continue
            drop_bytecode(changed)
            try:
                self.on_change(changed)
            except Exception:
                log.exception("reload action failed")

    def start(self) -> None:
        """Watch from now on (the baseline is taken before this returns), in a thread."""
        self.refresh()
        self._started = True
        self.thread = threading.Thread(target=self.run, name="relaunch-monitor", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopped.set()
        self.events.put(None)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        self.watcher.close()
