"""The supervisor's file bookkeeping: the watcher, the fingerprints, the watch set's growth.

Touched paths come in from the watcher (:meth:`WatchedFiles.touched`); what each one
is, is decided purely by :func:`relaunch.run.touched.classify`. Files the program
reports are added as they come (:meth:`WatchedFiles.add_files`), handed to the
watcher at most every :data:`WATCH_REFRESH` seconds, and compared once more when the
watcher covers them, since an edit before that raised no event. A settled batch
(:meth:`WatchedFiles.take`) is what really changed. Everything here runs on the
supervisor's thread except the watcher's callback.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

from ..watch.events import OVERFLOW, Watcher
from ..watch.fingerprint import Fingerprints
from ..watch.rules import git_top
from ..watch.settle import Batch, Settler
from ..watch.watchset import WatchSet, is_within
from . import ipc
from .options import Options
from .release_swap import ReleaseSwap
from .touched import Kind, classify, rereads_gitignore

__all__ = ["MTIME_SLACK_NS", "WATCH_REFRESH", "WatchedFiles"]

log = logging.getLogger("relaunch")

# Watch-set growth (imports arriving while the program starts) is applied to the
# file-system watcher at most this often.
WATCH_REFRESH = 0.02
# File times may lag the clock by a tick: a file written this long before the program
# started counts as written after it (a needless reload rather than a missed edit).
MTIME_SLACK_NS = 20_000_000


class WatchedFiles:
    """``on_paths``: called on the watcher's thread with touched paths; ``extra_dirs()``:
    folders watched beside the watch set's (the restart strategy's); ``failed()``: the
    program is down after a failure; ``on_release_switched()``: relaunch moved into
    another release (a deploy swapped one of ``releases``' links)."""

    def __init__(
        self,
        watchset: WatchSet,
        options: Options,
        *,
        on_paths: Callable[[list[str]], None],
        extra_dirs: Callable[[], set[str]],
        failed: Callable[[], bool],
        releases: ReleaseSwap | None = None,
        on_release_switched: Callable[[], None] = lambda: None,
    ) -> None:
        self.watchset = watchset
        self.settler = Settler(
            quiet=options.settle_ms / 1000, max_wait=options.settle_max_ms / 1000
        )
        self.fingerprints = Fingerprints(by_mtime=watchset.by_mtime)
        # A file being written in place is waited for no longer than a batch may settle.
        self.watcher = Watcher(
            on_paths,
            poll=options.poll,
            poll_interval=options.poll_interval,
            close_wait=options.settle_max_ms / 1000,
        )
        self.extra_dirs = extra_dirs
        self.failed = failed
        self.releases = releases
        self.on_release_switched = on_release_switched
        self.child_started_ns = 0
        self.event_ns: dict[str, int] = {}  # file -> when its last event came (wall clock)
        self._touched_folders: set[str] = set()  # folder events since the last refresh
        self._watch_dirty_at: float | None = None
        self._unwatched: set[str] = set()  # added to the watch set, not yet to the watcher
        self._unseen_changes: set[str] = set()  # changed before relaunch could compare
        top = git_top(os.getcwd())
        self._git_dir = os.path.join(top, ".git") if top else None

    def due(self) -> float | None:
        return min((t for t in (self.settler.due(), self._watch_dirty_at) if t), default=None)

    def tick(self, now: float) -> None:
        if self._watch_dirty_at is not None and now >= self._watch_dirty_at:
            self.refresh()

    def take(self, now: float) -> tuple[list[str], Batch] | None:
        """A settled batch, with the files in it that really changed (maybe none)."""
        batch = self.settler.take(now, held=self._held)
        if batch is None:
            return None
        # update() for every path (it also records the new state), then the files
        # known to have changed without a content difference to show for it.
        changed = [p for p in batch.paths if self.fingerprints.update(p)]
        changed += [p for p in batch.paths if p in self._unseen_changes and p not in changed]
        self._unseen_changes.difference_update(batch.paths)
        return changed, batch

    def _held(self) -> bool:
        """Hold a due batch while a git operation runs or a watched file is being
        written in place (a batch that no event started, such as the files first looked
        at by a refresh, is not held by the watcher's own wait for the close)."""
        return self.vcs_busy() or bool(self.watcher.being_written())

    def vcs_busy(self) -> bool:
        """A git operation is under way: its index lock exists, or a rebase, cherry-pick
        or revert is in progress (between its commits the lock comes and goes). A
        rebase stopped on a conflict holds reloads too, at most the settler's hold_max
        (30 s) per batch."""
        if self._git_dir is None:
            return False
        return any(
            os.path.exists(os.path.join(self._git_dir, name))
            for name in ("index.lock", "rebase-merge", "rebase-apply", "sequencer")
        )

    # -- what the file system says ----------------------------------------------------

    def touched(self, paths: list[str], when: float) -> None:
        relevant: list[str] = []
        rules = self.watchset.rules
        for path in paths:
            if rereads_gitignore(path, gitignore=bool(rules.gitignore)) and rules.gitignore:
                rules.gitignore.forget(os.path.dirname(path))
            kind = classify(path, self, overflow=OVERFLOW, failed=self.failed())
            if kind is Kind.RELEASE_LINK:
                assert self.releases is not None
                swap = self.releases.swapped(path)
                if swap is not None:
                    self._release_switched(path, *swap)
            elif kind is Kind.OVERFLOW:
                log.warning("the OS dropped file events: checking every watched file")
                relevant.extend(self.watchset.files())
            elif kind is Kind.NEW_FILE:
                # Until the watcher has it in its file list an edit raises nothing, so
                # the refresh compares it once more.
                self.fingerprints.absent_before(path)
                self._unwatched.add(path)
                self._mark_watch_dirty()
                relevant.append(path)
            elif kind in (Kind.FILE, Kind.NEW_MODULE):
                relevant.append(path)
            elif kind is Kind.FOLDER:
                self._touched_folders.add(path)
                self.watchset.invalidate_tree()
                self._mark_watch_dirty()
                relevant.extend(f for f in self.watchset.files() if is_within(f, path))
        if relevant:
            self.settler.add(relevant, when)
            # On the wall clock, as file times are (``when`` is monotonic).
            wall = time.time_ns() - int((time.monotonic() - when) * 1e9)
            for path in relevant:
                self.event_ns[path] = wall

    def _release_switched(self, link: str, old: str, target: str) -> None:
        assert self.releases is not None
        if not self.releases.move(link, old, target, self.watchset):
            return
        self.forget_fingerprints()
        self.on_release_switched()
        self.refresh()
        self.changed_unseen([link])

    # The facts classify() asks for (see relaunch.run.touched.PathFacts).

    def is_release_link(self, path: str) -> bool:
        return self.releases is not None and self.releases.is_link(path)

    def is_folder(self, path: str) -> bool:
        return (
            path in self.watcher.event_dirs or path in self.watcher.poll_dirs or os.path.isdir(path)
        )

    def is_known_file(self, path: str) -> bool:
        return path in self.fingerprints or self.watchset.matches(path)

    def appeared(self, path: str) -> bool:
        return self.watchset.appeared(path)

    def ignores_folder(self, path: str) -> bool:
        return self.watchset.ignores_folder(path)

    def holds_imported(self, path: str) -> bool:
        return any(is_within(f, path) for f in self.watchset.imported)

    # -- what the program says ----------------------------------------------------------

    def reported(self, message: ipc.Message) -> bool:
        """Add the files a child's message names (imports, relaunch.watch(), a crash's
        traceback); False for a message about something else."""
        if message.kind == "mods":
            self.add_files(
                ((path, mtime) for _name, path, mtime in message.modules), "imported by the program"
            )
        elif message.kind == "watch":
            folders = [p for p in message.paths if os.path.isdir(p)]
            self.add_folders(folders)
            files = (p for p in message.paths if p not in folders)
            self.add_files(((p, None) for p in files), "relaunch.watch()")
        elif message.kind == "failed":
            self.add_files(((p, None) for p in message.paths), "named in the program's traceback")
        else:
            return False
        return True

    def add_files(self, files: Iterable[tuple[str, int | None]], how: str) -> None:
        """Add files the program depends on; each with the mtime it saw, when known."""
        added = False
        stale = []
        for path, mtime in files:
            if self.releases is not None and self.releases.left_behind(path):
                continue
            if self.watchset.add(path, how):
                added = True
                self._unwatched.add(path)
                if self.fingerprints.remember(path, loaded_mtime_ns=mtime):
                    stale.append(path)
        if added:
            self._mark_watch_dirty()
        if stale:
            # Edited after the program loaded it: the fingerprint taken now already has the
            # edit, so only the mtime says the running code is old.
            self.changed_unseen(stale)

    def add_folders(self, folders: Iterable[str]) -> None:
        """Watch folders the program asked for, as ``--watch`` folders: under ``serve``, a
        change there refreshes pages rather than restarting (they hold no code it runs)."""
        added = [f for f in folders if self.watchset.add_folder(f, "relaunch.watch() folder")]
        if not added:
            return
        # As for files: what is in them now is the baseline, and an edit before the watcher
        # covers them is found at the next refresh.
        for path in self.watchset.files():
            if any(is_within(path, folder) for folder in added):
                self.fingerprints.remember(path)
                self._unwatched.add(path)
        self._mark_watch_dirty()

    def changed_unseen(self, paths: list[str]) -> None:
        """Files known to have changed although no event said so: reload for them.

        Their fingerprint may already show the new content (it was first taken after
        the edit), so the settled batch is told directly rather than by comparing."""
        self._unseen_changes.update(paths)
        self.settler.add(paths, time.monotonic())

    def scan_new_modules(self) -> None:
        found = self.watchset.new_modules(self.child_started_ns)
        if found:
            self.settler.add(found, time.monotonic())

    def forget_fingerprints(self) -> None:
        """Paths through a swapped link now name other files: compare nothing with the
        old ones (a server's new workers report them with the new release's times)."""
        self.fingerprints = Fingerprints(by_mtime=self.watchset.by_mtime)

    # -- the watcher ----------------------------------------------------------------------

    def baseline(self) -> None:
        """Watch and fingerprint the --watch files once the program has started: a tree
        of 100,000 files takes seconds to read, and the program need not wait for it.

        The watches are made before the fingerprints are taken, so an edit made meanwhile
        is either an event (compared with a fingerprint taken before it) or already in
        the fingerprint; a fingerprint newer than the program is a change it did not see.
        """
        self.refresh()
        since = self.child_started_ns - MTIME_SLACK_NS
        written = []
        for path in self.watchset.files():
            mtime = self.fingerprints.mtime_ns(path)
            if mtime is not None and mtime >= since:
                written.append(path)
        if written:
            self.changed_unseen(written)

    def _mark_watch_dirty(self) -> None:
        if self._watch_dirty_at is None:
            self._watch_dirty_at = time.monotonic() + WATCH_REFRESH

    def _watch_now(self) -> tuple[set[str], set[str]]:
        """Hand the watch set to the watcher; returns the (files, folders) watched."""
        files = self.watchset.files()
        dirs = self.watchset.directories() | self.extra_dirs()
        if self.releases is not None:
            dirs |= self.releases.folders()
        self.watcher.update(dirs, files)
        return files, dirs

    def refresh(self) -> None:
        self._watch_dirty_at = None
        files, dirs = self._watch_now()
        folders, self._touched_folders = self._touched_folders, set()
        for _ in range(3):
            if not folders or not self.watchset.unlisted_in(folders, files, dirs):
                break
            self.watchset.invalidate_tree()
            files, dirs = self._watch_now()
        # Files in a folder that appeared (or came back) may have been written before the
        # folder was watched: compare them now. Only those: re-hashing a whole tree at
        # every refresh would cost too much.
        appeared = [
            p
            for p in files
            if any(is_within(p, folder) for folder in folders) and self.fingerprints.update(p)
        ]
        for path in files:
            self.fingerprints.remember(path)
        if appeared:
            self.changed_unseen(appeared)
        log.debug("watching %d file(s): %s", len(files), self.watcher.describe())
        # Files added since the last refresh were not covered by the watcher until now:
        # an edit in that window raised no event, so look at them once more.
        # Only looked at: the settled batch compares them with their baseline, as for an
        # event (a file caught in the middle of a write, a formatter rewriting it
        # unchanged, must not become the baseline and count as a change).
        missed = [p for p in self._unwatched if self.fingerprints.differs(p)]
        self._unwatched.clear()
        if missed:
            self.settler.add(missed, time.monotonic())
        if self.failed():
            self.scan_new_modules()

    def close(self) -> None:
        self.watcher.close()
