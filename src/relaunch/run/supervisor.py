"""The supervisor: runs the command, watches what it depends on, restarts it on change.

Theory of operation
-------------------
Everything happens on one thread, in :meth:`Supervisor.run`, which takes events off
one queue. Other threads only put events there: the file watcher (paths touched),
each child's pipe reader (validated messages: files imported, a crash's files, a
reload request) and exit waiter, the terminal reader (Enter or "rs"), and signal
handlers (SIGHUP: reload; SIGINT/SIGTERM: stop; a second SIGINT: kill now).

Touched paths are filtered by the watch set, grouped by the settler until the tree
is quiet, and kept only if their content fingerprint really changed. A surviving
batch restarts the child: stop its process group (reload hooks, SIGTERM, SIGKILL
after the grace period), wait until the group is gone, start it again. A child
that fails is reported and left down until the next change or a manual reload;
nothing restarts in a loop.

The supervisor never imports the program: it learns the program's files from the
child's reports, which it validates and never executes.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import oslayer, pathtext
from ..command import Command
from ..pycache import drop_bytecode
from ..watch.events import OVERFLOW, Watcher
from ..watch.fingerprint import Fingerprints, changed_since_seen, differs_from_seen
from ..watch.rules import git_top
from ..watch.settle import Settler
from ..watch.watchset import WatchSet, is_within
from . import ipc
from .backoff import Backoff
from .child import Child
from .drivers import Driver, Handled, NotReloaded
from .frontend import Failure, FrontEnd
from .guardian import Guardian
from .interpreter import interpreter_info
from .releases import ReleaseLinks
from .warm import Cold, Warm

__all__ = ["RELAUNCH_DIR", "Supervisor"]

RELAUNCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

log = logging.getLogger("relaunch")

# Watch-set growth (imports arriving while the program starts) is applied to the
# file-system watcher at most this often.
_WATCH_REFRESH = 0.02
# File times may lag the clock by a tick: a file written this long before the program
# started counts as written after it (a needless reload rather than a missed edit).
_MTIME_SLACK_NS = 20_000_000
# A program that exits 0 this soon after starting is restarted with growing delays.
_SHORT_RUN = 1.0
_REQUESTED = "reload requested by the program (relaunch.trigger_reload())"


def _names(paths: Iterable[str], limit: int = 3) -> str:
    shown = sorted(
        pathtext.shown(os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p)
        for p in paths
    )
    text = ", ".join(shown[:limit])
    if len(shown) > limit:
        text += f" (+{len(shown) - limit} more)"
    return text


class Supervisor:
    def __init__(
        self,
        command: Command,
        watchset: WatchSet,
        *,
        grace: float = 5.0,
        on_exit: str = "wait",
        settle_ms: int = 10,
        settle_max_ms: int = 1000,
        poll: bool = False,
        poll_interval: float = 0.5,
        read_stdin: bool | None = None,
        restart: str = "cold",
        no_preload: Iterable[str] = (),
        driver: Driver | None = None,
        frontend: FrontEnd | None = None,
        pass_fds: tuple[int, ...] = (),
        releases: ReleaseLinks | None = None,
        fresh_watchset: Callable[[], WatchSet | None] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``releases``: the symlinks on the way to the working folder; when a deploy
        swaps one, relaunch moves into the new release, takes a new watch set from
        ``fresh_watchset()`` (made from there) and restarts the program.
        ``extra_env``: environment variables every process of the program gets (the
        subcommand asks the integrations for them); ``frontend``: what ``serve`` adds."""
        self.command = command
        self.watchset = watchset
        self.grace = grace
        self.on_exit = on_exit
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.settler = Settler(quiet=settle_ms / 1000, max_wait=settle_max_ms / 1000)
        self.fingerprints = Fingerprints(by_mtime=watchset.by_mtime)
        # A file being written in place is waited for no longer than a batch may settle.
        self.watcher = Watcher(
            self._on_paths,
            poll=poll,
            poll_interval=poll_interval,
            close_wait=settle_max_ms / 1000,
        )
        if read_stdin is None:
            read_stdin = sys.stdin is not None and sys.stdin.isatty()
        self.read_stdin = read_stdin
        self.child: Child | None = None
        self.state = "stopped"  # starting | running | failed | exited | stopped
        self.generation = 0
        self.reloads = 0
        self.exit_code: int | None = None
        self.interrupts = 0
        self.guardian: Guardian | None = None
        self.executable: str | None = None
        self.restart_mode = restart
        self.no_preload = tuple(no_preload)
        self.strategy: Cold = Cold()
        self.driver = driver or Driver()
        self.frontend = frontend
        self.pass_fds = pass_fds
        self.releases = releases
        self.fresh_watchset = fresh_watchset
        self._left_releases: set[str] = set()  # folders of releases switched away from
        self._retiring: list[threading.Thread] = []
        self._retiring_children: list[Child] = []
        self._stopping: Child | None = None
        self._touched_folders: set[str] = set()  # folder events since the last refresh
        self._subreaper = False
        self._failure = Failure()
        # Every process of this run inherits the token: the guardian finds them by it.
        self.run_token = secrets.token_hex(8)
        self.extra_env = {**(extra_env or {}), "_RELAUNCH_RUN": self.run_token}
        self._watch_dirty_at: float | None = None
        self._unwatched: set[str] = set()  # added to the watch set, not yet to the watcher
        self._unseen_changes: set[str] = set()  # changed before relaunch could compare
        self._child_started_ns = 0
        # What the current child saw of each file just before it read it: (mtime, size).
        self._loaded_seen: dict[str, tuple[int, int]] = {}
        self._take_over_at: float | None = None  # when to look again at a loaded process
        top = git_top(os.getcwd())
        self._git_dir = os.path.join(top, ".git") if top else None
        self._failed_files: set[str] = set()
        self._pending_report: tuple[int, str, float] | None = None
        self._exit_backoff = Backoff(short_run=_SHORT_RUN)
        self._restart_at: float | None = None
        self._request_backoff = Backoff(short_run=_SHORT_RUN)
        self._requested_at: float | None = None  # a trigger_reload() held back
        self._said_backoff = False

    # -- inputs (any thread) ------------------------------------------------------

    def _on_paths(self, paths: list[str]) -> None:
        self.events.put(("paths", paths, time.monotonic()))

    def _on_child_event(self, event: tuple[Any, ...]) -> None:
        self.events.put(event)

    def _read_terminal(self) -> None:
        for line in sys.stdin:
            if line.strip() in ("", "rs"):
                self.events.put(("manual", "manual reload (Enter)"))

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= 2:
                self._kill_now()
        self.events.put(("signal", signum))

    def _kill_now(self) -> None:
        for child in (self.child, self._stopping, *self._retiring_children):
            if child is not None and child.pid is not None:
                oslayer.kill_group(child.pid)
        log.warning("killed")
        os._exit(130)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit code for relaunch itself."""
        self._install_signals()
        self._subreaper = oslayer.make_subreaper()
        self.guardian = Guardian(self.run_token)
        if self.command.python is not None:
            info = interpreter_info(self.command.python.interpreter)
            # relaunch's own code (the serve worker, the API) is tooling, not the program:
            # never watched, and preloaded like an installed package, even when relaunch
            # itself is an editable install.
            self.watchset.set_excluded_roots((*info.roots, RELAUNCH_DIR))
            self.executable = info.executable
            if self.restart_mode == "warm":
                self.strategy = Warm(
                    self.command.python,
                    self.watchset,
                    executable=info.executable,
                    roots=(*info.roots, RELAUNCH_DIR),
                    deny=self.no_preload,
                    stdin_to_child=not self.read_stdin,
                    extra_env=self.extra_env,
                    pass_fds=self.pass_fds,
                    on_event=self.events.put,
                    on_watch_dirs_changed=self._refresh_watcher,
                )
        if self.read_stdin:
            threading.Thread(target=self._read_terminal, name="relaunch-stdin", daemon=True).start()
        self._start_child()
        self._take_baseline()
        try:
            while self.exit_code is None:
                self._step()
        finally:
            self._shutdown()
        return self.exit_code

    def _take_baseline(self) -> None:
        """Watch and fingerprint the --watch files once the program has started: a tree
        of 100,000 files takes seconds to read, and the program need not wait for it.

        The watches are made before the fingerprints are taken, so an edit made meanwhile
        is either an event (compared with a fingerprint taken before it) or already in
        the fingerprint; a fingerprint newer than the program is a change it did not see.
        """
        self._refresh_watcher()
        since = self._child_started_ns - _MTIME_SLACK_NS
        written = []
        for path in self.watchset.files():
            mtime = self.fingerprints.mtime_ns(path)
            if mtime is not None and mtime >= since:
                written.append(path)
        if written:
            self._changed_unseen(written)

    def _next_deadline(self) -> float | None:
        candidates = [
            t
            for t in (
                self.settler.due(),
                self._watch_dirty_at,
                self._restart_at,
                self._requested_at,
                self.strategy.due(),
            )
            if t
        ]
        return min(candidates) if candidates else None

    def _step(self) -> None:
        deadline = self._next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            event = None
        if event is not None:
            self._handle(event)
        now = time.monotonic()
        if self._watch_dirty_at is not None and now >= self._watch_dirty_at:
            self._refresh_watcher()
        self.strategy.tick(now)
        if self._take_over_at is not None and now >= self._take_over_at:
            self._take_over_at = None
            self._take_over()
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self._restart("program exited: restarting (--on-exit restart)")
        if self._requested_at is not None and now >= self._requested_at:
            self._restart(_REQUESTED)
        batch = self.settler.take(now, held=self._vcs_busy)
        if batch is not None:
            # update() for every path (it also records the new state), then the files
            # known to have changed without a content difference to show for it.
            changed = [p for p in batch.paths if self.fingerprints.update(p)]
            changed += [p for p in batch.paths if p in self._unseen_changes and p not in changed]
            self._unseen_changes.difference_update(batch.paths)
            if (
                changed
                and self.frontend is not None
                # A --touch-reload file asks for a restart, whatever kind of file it is.
                and not any(self.watchset.by_mtime(p) for p in changed)
                and self.frontend.handle_change(changed, self.watchset.imported)
            ):
                log.info("%s changed: pages refreshed, no restart needed", _names(changed))
            elif changed:
                drop_bytecode(changed)
                self._restart(f"{_names(changed)} changed", batch.first_event, changed)
            else:
                log.debug("no content changed in %s", _names(batch.paths))

    def _vcs_busy(self) -> bool:
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

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "paths":
            self._on_touched(event[1], event[2])
        elif kind == "msg":
            self._on_message(event[1], event[2])
        elif kind == "exit":
            self._on_exit(event[1], event[2])
        elif kind == "manual":
            self._restart(event[1])
        elif kind == "signal":
            self._on_signal_event(event[1])
        elif kind == "zygote":
            self.strategy.zygote_event(event[1], event[2])
        elif kind == "retired":
            self._kill_strays()

    def _on_signal_event(self, signum: int) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            self._restart("manual reload (SIGHUP)")
        elif signum in (signal.SIGINT, signal.SIGTERM):
            log.info("stopping")
            self.exit_code = 0

    # -- files -----------------------------------------------------------------------

    def _on_touched(self, paths: list[str], when: float) -> None:
        self.strategy.paths_changed(paths)
        relevant: list[str] = []
        for path in paths:
            if self.releases is not None and path in self.releases.targets:
                swap = self.releases.swapped(path)
                if swap is not None:
                    self._release_switched(path, *swap)
                continue
            if path == OVERFLOW:
                log.warning("the OS dropped file events: checking every watched file")
                relevant.extend(self.watchset.files())
                continue
            if os.path.basename(path) == ".gitignore" and self.watchset.rules.gitignore:
                self.watchset.rules.gitignore.forget(os.path.dirname(path))
            folder = (
                path in self.watcher.event_dirs
                or path in self.watcher.poll_dirs
                or os.path.isdir(path)
            )
            if not folder and (path in self.fingerprints or self.watchset.matches(path)):
                if self.watchset.appeared(path):
                    # A new file: compared with its absence, not with what the refresh
                    # finds. Until the watcher has it in its file list an edit raises
                    # nothing, so the refresh compares it once more.
                    self.fingerprints.absent_before(path)
                    self._unwatched.add(path)
                    self._mark_watch_dirty()
                relevant.append(path)
                continue
            if self.watchset.ignores_folder(path):
                continue  # __pycache__, .git, logs...: nothing relaunch reacts to
            if folder or any(is_within(f, path) for f in self.watchset.imported):
                # A folder appeared, vanished or moved: re-walk, re-check what it held.
                self._touched_folders.add(path)
                self.watchset.invalidate_tree()
                self._mark_watch_dirty()
                relevant.extend(f for f in self.watchset.files() if is_within(f, path))
            elif path.endswith(".py") and self.state == "failed":
                # A new module next to watched ones: the program failed, perhaps importing
                # it before it existed. (One created before the failure is seen is found
                # by _scan_new_modules.)
                relevant.append(path)
        if relevant:
            self.settler.add(relevant, when)

    def _release_switched(self, link: str, old: str, target: str) -> None:
        """A deploy pointed ``link`` at another release: run from there from now on."""
        assert self.releases is not None
        log.info("%s now points to %s", link, target)
        try:
            os.chdir(self.releases.cwd)  # through the link: into the new release
        except OSError as exc:
            log.error("cannot change into %s: %s", self.releases.cwd, exc)
            return
        fresh = self.fresh_watchset() if self.fresh_watchset is not None else None
        if fresh is not None:
            self.watchset.adopt(fresh)
        # Paths through the link now name other files: compare nothing with the old ones
        # (a server's new workers report them with the new release's times).
        self.fingerprints = Fingerprints(by_mtime=self.watchset.by_mtime)
        # What the program still reports from the old release (until it restarts, or a
        # server's workers roll over) is not watched.
        self._left_releases.add(old)
        self._left_releases.discard(target)
        self.strategy.release_switched()
        self._refresh_watcher()
        self._changed_unseen([link])

    def _add_files(self, files: Iterable[tuple[str, int | None]], how: str) -> None:
        """Add files the program depends on; each with the mtime it saw, when known."""
        added = False
        stale = []
        for path, mtime in files:
            if any(is_within(path, left) for left in self._left_releases):
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
            self._changed_unseen(stale)

    def _add_folders(self, folders: Iterable[str]) -> None:
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

    def _mark_watch_dirty(self) -> None:
        if self._watch_dirty_at is None:
            self._watch_dirty_at = time.monotonic() + _WATCH_REFRESH

    def _watch_now(self) -> tuple[set[str], set[str]]:
        """Hand the watch set to the watcher; returns the (files, folders) watched."""
        files = self.watchset.files()
        dirs = self.watchset.directories() | self.strategy.watch_dirs()
        if self.releases is not None:
            dirs |= self.releases.folders()
        self.watcher.update(dirs, files)
        return files, dirs

    def _refresh_watcher(self) -> None:
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
            self._changed_unseen(appeared)
        log.debug("watching %d file(s): %s", len(files), self.watcher.describe())
        # Files added since the last refresh were not covered by the watcher until now:
        # an edit in that window raised no event, so look at them once more.
        missed = [p for p in self._unwatched if self.fingerprints.update(p)]
        self._unwatched.clear()
        if missed:
            self._changed_unseen(missed)
        if self.state == "failed":
            self._scan_new_modules()

    def _changed_unseen(self, paths: list[str]) -> None:
        """Files known to have changed although no event said so: reload for them.

        Their fingerprint may already show the new content (it was first taken after
        the edit), so the settled batch is told directly rather than by comparing."""
        self._unseen_changes.update(paths)
        self.settler.add(paths, time.monotonic())

    # -- the child ---------------------------------------------------------------------

    def _on_message(self, generation: int, message: ipc.Message) -> None:
        current = generation == self.generation
        if message.kind == "mods":
            if current:
                self.strategy.child_modules(message.modules, time.monotonic())
                sizes = message.sizes or (-1,) * len(message.modules)
                for (_name, path, mtime), size in zip(message.modules, sizes, strict=False):
                    self._loaded_seen.setdefault(path, (mtime, size))
            self._add_files(
                ((path, mtime) for _name, path, mtime in message.modules), "imported by the program"
            )
        elif message.kind == "watch":
            folders = [p for p in message.paths if os.path.isdir(p)]
            self._add_folders(folders)
            files = (p for p in message.paths if p not in folders)
            self._add_files(((p, None) for p in files), "relaunch.watch()")
        elif message.kind == "failed":
            self._add_files(((p, None) for p in message.paths), "named in the program's traceback")
            self._failed_files.update(p for p in message.paths if self.watchset.matches(p))
        elif message.kind == "running" and current:
            self.state = "running"
            if self.frontend is None:
                self._report_up()
        elif message.kind == "ready" and current and self.frontend is not None:
            # A served app is up once it serves, not when its process started: a load
            # failure then prints its error and no "up" line.
            self._report_up()
            self.frontend.child_ready()
        elif message.kind == "loaded" and current and self.frontend is not None:
            self._take_over()
        elif message.kind == "tb" and current:
            self._failure.traceback += message.text
        elif message.kind == "error" and current:
            self._failure.summary = message.text
            self._failure.path = message.paths[0] if message.paths else ""
            self._failure.line = message.line
        elif message.kind == "reload" and current:
            self._reload_requested()

    def _reload_requested(self) -> None:
        """The program asked for a reload: at once, unless it asks again and again
        right after starting; then after a growing delay (or a change comes first)."""
        if self._requested_at is not None:
            return  # one is due already
        lived = time.monotonic() - self.child.started_at if self.child else _SHORT_RUN
        delay = self._request_backoff.delay(lived)
        if not delay:
            self._restart(_REQUESTED)
            return
        if not self._said_backoff:
            self._said_backoff = True
            log.warning(
                "the program asks for a reload (relaunch.trigger_reload()) within %g s of "
                "starting: reloading after a delay that grows each time it does (up to %g s)",
                _SHORT_RUN,
                self._request_backoff.longest,
            )
        self._requested_at = time.monotonic() + delay

    def _moved_since_loaded(self) -> list[str]:
        """The program's files that the current child may hold a torn copy of: changed
        since it read them, being written now, or not what the batch that started it
        saw (it read them in the middle of a save)."""
        seen = {p: s for p, s in self._loaded_seen.items() if p in self.watchset.imported}
        moved = set(changed_since_seen(seen))
        moved.update(p for p in self.watcher.being_written() if p in seen)
        # inotify may not have said so yet (see oslayer.open_for_writing): ask the kernel
        # about each file written lately, for as long as a write is waited for at all.
        recent = time.time_ns() - int(self.settler.max_wait * 1e9)
        moved.update(
            p
            for p, (mtime, _size) in seen.items()
            if mtime >= recent and p not in moved and oslayer.open_for_writing(p)
        )
        for path, then in seen.items():
            batch = self.fingerprints.state(path)
            if batch is not None and differs_from_seen(then, batch):
                moved.add(path)
        return sorted(moved)

    def _until_quiet(self) -> float:
        """Seconds until every file the current child read has been left alone for the
        settle period (file times may lag the clock by a tick), 0 if they have."""
        newest = max(
            (then[0] for p, then in self._loaded_seen.items() if p in self.watchset.imported),
            default=0,
        )
        quiet_at = newest + int(self.settler.quiet * 1e9) + _MTIME_SLACK_NS
        return max(0.0, (quiet_at - time.time_ns()) / 1e9)

    def _take_over(self) -> None:
        """The new serve process loaded the app: it may serve unless it may hold a
        half-written module (see _moved_since_loaded). Then it is never given the
        socket, and the change it read half of replaces it."""
        assert self.frontend is not None
        moved = self._moved_since_loaded()
        wait = 0.0 if moved else self._until_quiet()
        if wait > 0:
            # A file it read was written just now: the writer may not be done (an
            # in-place save truncates first). Look again once it has been quiet.
            self._take_over_at = time.monotonic() + wait
            return
        if moved:
            log.info("%s changed while the new process loaded: not serving it", _names(moved))
            self._changed_unseen(moved)
        elif self.child is not None and self.child.pid is not None:
            self.frontend.take_over(self.child.pid)

    def _report_up(self) -> None:
        if self._pending_report is None:
            return
        number, why, since = self._pending_report
        self._pending_report = None
        took = (time.monotonic() - since) * 1000
        log.info("reload #%d: %s; new process up in %.0f ms", number, why, took)

    def _start_child(self) -> None:
        self.generation += 1
        self._failed_files.clear()
        self._child_started_ns = time.time_ns()
        self._failure = Failure()
        self._loaded_seen = {}
        self._take_over_at = None
        if self.frontend is not None:
            self.frontend.child_starting()
        child = Child(
            self.command,
            generation=self.generation,
            on_event=self._on_child_event,
            stdin_to_child=not self.read_stdin,
            executable=self.executable,
            extra_env=self.extra_env,
            pass_fds=self.pass_fds,
        )
        forker = self.strategy.forker()
        if forker is not None:
            try:
                child.start(forker)
            except OSError as exc:
                log.debug("warm start failed (%s): starting cold", exc)
                forker = None
        try:
            if forker is None:
                child.start()
        except OSError as exc:
            log.error("cannot start %s: %s; waiting for a change", self.command.argv[0], exc)
            self.state = "failed"
            self.child = None
            if self.frontend is not None:
                self.frontend.child_failed(Failure(summary=f"cannot start the app: {exc}"))
            return
        self.child = child
        self.state = "starting"
        self.strategy.child_started()
        if self.guardian is not None and child.pid is not None:
            self.guardian.track(child.pid)
        if not self.command.is_python:
            self.state = "running"
            self._report_up()

    def _stop_child(self, *, overlap: bool = False) -> None:
        """Stop the child; with ``overlap``, in the background, so the next one can start
        while it finishes its requests (only with a held socket, which both can serve)."""
        child = self.child
        if child is None:
            return
        self.child = None
        if overlap:
            self._retiring_children.append(child)
            retiring = threading.Thread(
                target=self._retire_in_background,
                args=(child,),
                name="relaunch-retire",
                daemon=True,
            )
            retiring.start()
            self._retiring.append(retiring)
        else:
            self._retire(child)

    def _retire_in_background(self, child: Child) -> None:
        try:
            child.stop(self.grace)
        finally:
            self._retiring_children.remove(child)
        if self.guardian is not None and child.pid is not None:
            self.guardian.forget(child.pid)
        # Strays are looked for on the supervisor's thread, the only one that starts
        # processes: from here, a process being started could look like a stray.
        self.events.put(("retired",))

    def _retire(self, child: Child) -> None:
        self._stopping = child  # a second Ctrl-C meanwhile kills it at once
        try:
            child.stop(self.grace)
        finally:
            self._stopping = None
        if self.guardian is not None and child.pid is not None:
            self.guardian.forget(child.pid)
        self._kill_strays()

    def _known_pids(self) -> set[int]:
        known = {pid for c in (self.child, *self._retiring_children) if c for pid in c.pids}
        for pid in (self.guardian.pid if self.guardian else None, self.strategy.pid()):
            if pid:
                known.add(pid)
        return known

    def _kill_strays(self) -> None:
        """Kill what a stopped program left behind outside its process group (a daemon
        that called setsid): as relaunch is a subreaper, those orphans are its children.
        Runs on the supervisor's thread only (see _retire_in_background)."""
        if not self._subreaper:
            return
        for _round in range(5):  # killing one may orphan its own children
            children = oslayer.child_pids()  # first: a guardian started meanwhile is known
            strays = children - self._known_pids()
            if not strays:
                return
            log.debug("killing %d process(es) left behind: %s", len(strays), sorted(strays))
            for pid in strays:
                oslayer.kill_and_reap(pid)

    def _restart(self, why: str, since: float | None = None, changed: Sequence[str] = ()) -> None:
        child = self.child
        if child is not None and self.state == "running":
            done = self.driver.reload(child, changed)
            if isinstance(done, NotReloaded):
                # The previous version keeps serving (a failed preflight is an error).
                level = logging.INFO if isinstance(done, Handled) else logging.ERROR
                log.log(level, "%s; %s", why, done)
                return
            if done is not None:
                self.reloads += 1
                took = (time.monotonic() - (since or time.monotonic())) * 1000
                log.info("reload #%d: %s; %s in %.0f ms", self.reloads, why, done, took)
                return
        if self._pending_report is not None:
            number, previous, _since = self._pending_report
            log.info(
                "reload #%d: %s; superseded by a newer change before it was up", number, previous
            )
        self.reloads += 1
        self._restart_at = None
        self._requested_at = None
        self._pending_report = (self.reloads, why, since or time.monotonic())
        self._retiring = [t for t in self._retiring if t.is_alive()]
        self._stop_child(overlap=self.frontend is not None and self.state == "running")
        self._start_child()

    def _on_exit(self, generation: int, code: int | None) -> None:
        if generation != self.generation or self.child is None:
            return  # an old child, stopped on purpose
        lived = time.monotonic() - self.child.started_at
        # Said first: stopping what it left in its group may take the whole grace period.
        self._report_exit(code, lived)
        self._stop_child()  # SIGTERM, then SIGKILL, what it left in its group

    def _report_exit(self, code: int | None, lived: float) -> None:
        if code == 0:
            self.state = "exited"
            if self.on_exit == "exit":
                log.info("program exited with code 0: exiting")
                self.exit_code = 0
            elif self.on_exit == "restart":
                self._restart_at = time.monotonic() + self._exit_backoff.delay(lived)
            else:
                log.info("program exited with code 0; waiting for a change (or press Enter)")
            if self.frontend is not None and self.exit_code is None:
                self.frontend.child_failed(Failure(summary="The app exited (code 0)"))
            return
        self.state = "failed"
        self._pending_report = None  # it never came up: its error says why
        if code is None:
            how = "exited (status unknown: the warm-start process that forked it died)"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        extra = ""
        if self._failed_files:
            extra = f"; watching the files of its traceback ({_names(self._failed_files)})"
        moved = self._moved_since_loaded() if self.frontend is not None else []
        if moved:
            # It may have failed on a half-written file: no error page for that, the
            # change it read half of starts the next process.
            log.info("%s changed while the program loaded: trying again", _names(moved))
            self._changed_unseen(moved)
            return
        if self._failure.summary and not self._failure.traceback:
            # A mistake the program told in one sentence (relaunch serve's APP): that
            # sentence is the whole story.
            log.error("%s; waiting for a change (or press Enter)", self._failure.summary)
        else:
            log.error("program %s%s; waiting for a change (or press Enter)", how, extra)
        if self.frontend is not None:
            if not self._failure.summary:
                self._failure.summary = f"The app {how}"
            self.frontend.child_failed(self._failure)
        self._scan_new_modules()

    def _scan_new_modules(self) -> None:
        found = self.watchset.new_modules(self._child_started_ns)
        if found:
            self.settler.add(found, time.monotonic())

    # -- start and stop ----------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_signal)

    def _shutdown(self) -> None:
        self._stop_child()
        for retiring in self._retiring:
            retiring.join()
        self._kill_strays()
        self.strategy.close()
        self.driver.close()
        if self.frontend is not None:
            self.frontend.close()
        self.watcher.close()
        if self.guardian is not None:
            self.guardian.close()
