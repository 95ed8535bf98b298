"""Restart strategies: cold (a new interpreter each time) or warm (forked by a zygote).

The supervisor asks its strategy three things: which process to fork the next child
from (:meth:`Cold.forker`; None means spawn a new interpreter), what to do as the
running child reports its modules, and whether a path that changed invalidates what
the strategy holds. All methods run on the supervisor's thread.

Warm restarts keep a zygote: a process with the program's interpreter, flags,
``sys.argv`` and ``sys.path``, and the program's standard-library and installed
modules already imported (never a watched file). A reload forks it, so the new
child starts with those imports done: milliseconds instead of seconds for a program
that imports a large library. The zygote is built in the background once the first
child's imports go quiet, grows when a child imports more, and is rebuilt when a
file it holds, an installed package or the interpreter changes; a module that
starts a thread or opens a socket at import is left out. Until the zygote is ready,
and whenever it fails, restarts are cold.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..command import PythonInvocation
from ..pycache import drop_bytecode
from ..watch.watchset import WatchSet
from .preload import is_package_change, preload_candidates, should_rebuild
from .zygote import ForkClient, ZygoteClient

__all__ = ["Cold", "Warm"]

log = logging.getLogger("relaunch")

# The child's imports must have been quiet this long before the zygote (re)loads them.
IMPORTS_QUIET = 0.3
# Rebuilds in a row that found a fork-unsafe module before warm restarts are given up.
MAX_UNSAFE_REBUILDS = 8


class Cold:
    """Every restart starts a new interpreter."""

    name = "cold"

    def forker(self) -> ForkClient | None:
        return None

    def child_started(self) -> None:
        pass

    def child_modules(self, modules: Iterable[tuple[str, str, int]], now: float) -> None:
        pass

    def due(self) -> float | None:
        return None

    def tick(self, now: float) -> None:
        pass

    def paths_changed(self, paths: Iterable[str]) -> None:
        pass

    def files_changed(self, paths: Sequence[str]) -> None:
        """These watched files changed (a settled batch, about to restart the program)."""

    def release_switched(self) -> None:
        """The program now runs from another folder (a deploy swapped a symlink)."""

    def zygote_event(self, zygote: Any, message: dict[str, Any]) -> None:
        pass

    def watch_dirs(self) -> set[str]:
        return set()

    def pids(self) -> set[int]:
        """The helper processes this strategy keeps running."""
        return set()

    def started_how(self, *, ran_known: bool) -> str:
        """What the reload line adds about how the new process started ("": nothing)."""
        return ""

    def close(self) -> None:
        pass


class Warm(Cold):
    name = "warm"

    def __init__(
        self,
        python: PythonInvocation,
        watchset: WatchSet,
        *,
        executable: str | None,
        roots: Iterable[str],
        deny: Iterable[str] = (),
        stdin_to_child: bool,
        extra_env: dict[str, str],
        pass_fds: tuple[int, ...],
        on_event: Callable[[tuple[Any, ...]], None],
        on_watch_dirs_changed: Callable[[], None],
    ) -> None:
        self.python = python
        self.watchset = watchset
        self.executable = executable
        self.roots = frozenset(os.path.normpath(r) for r in roots)
        self.deny = set(deny)
        self.stdin_to_child = stdin_to_child
        self.extra_env = extra_env
        self.pass_fds = pass_fds
        self.on_event = on_event
        self.on_watch_dirs_changed = on_watch_dirs_changed
        self.interpreter = os.path.realpath(executable) if executable else None
        self.zygote: ZygoteClient | None = None
        self.modules: list[tuple[str, str]] = []  # what the running child imported, in order
        # What the zygote was asked to preload. A warm child never reports those (it found
        # them loaded), so a rebuild preloads them again from this list, not from its report.
        self._preloaded: list[tuple[str, str]] = []
        self._seen: set[str] = set()
        self._baseline: dict[str, int] = {}  # file -> mtime when the zygote was asked to load it
        self._packages: frozenset[str] = frozenset()  # site-packages entries at build
        self._quiet_at: float | None = None
        self._unsafe_rebuilds = 0
        self._gave_up = False

    # -- the supervisor's questions --------------------------------------------------

    def forker(self) -> ForkClient | None:
        zygote = self.zygote
        return zygote if zygote is not None and zygote.ready else None

    def child_started(self) -> None:
        self.modules = []
        self._seen = set()

    def child_modules(self, modules: Iterable[tuple[str, str, int]], now: float) -> None:
        for name, path, _mtime in modules:
            if name not in self._seen:
                self._seen.add(name)
                self.modules.append((name, path))
        self._quiet_at = now + IMPORTS_QUIET

    def due(self) -> float | None:
        return self._quiet_at

    def tick(self, now: float) -> None:
        if self._quiet_at is not None and now >= self._quiet_at:
            self._quiet_at = None
            self._update()

    def paths_changed(self, paths: Iterable[str]) -> None:
        zygote = self.zygote
        if zygote is None:
            return
        paths = list(paths)
        why = should_rebuild(
            paths, zygote_files=zygote.files, site_roots=self.roots, interpreter=self.interpreter
        )
        if why:
            log.info("%s: rebuilding the warm-start process", why)
            drop_bytecode(p for p in paths if p in zygote.files)  # or it loads the old code
            self._discard()
            self._update()

    def zygote_event(self, zygote: Any, message: dict[str, Any]) -> None:
        if self.zygote is None or zygote is not self.zygote:
            return  # from a zygote already discarded
        event = message.get("ev")
        if event == "loaded":
            failed = message.get("failed") or []
            log.debug(
                "warm-start process %d ready: %s modules loaded in %s s%s",
                self.zygote.pid,
                message.get("modules"),
                message.get("seconds"),
                f" ({len(failed)} could not be preloaded)" if failed else "",
            )
            self.on_watch_dirs_changed()  # the zygote's folders are watched from here on
            why = self._changed_while_loading()
            if why:
                log.info("%s: rebuilding the warm-start process", why)
                self._discard()
            self._update()  # the child may have imported more meanwhile
        elif event == "unsafe":
            module = str(message.get("module"))
            log.info(
                "not preloading %s for warm restarts: %s at import", module, message.get("why")
            )
            self.deny.add(module)
            self._discard()
            self._unsafe_rebuilds += 1
            if self._unsafe_rebuilds >= MAX_UNSAFE_REBUILDS:
                self._gave_up = True
                log.warning("too many modules are unsafe to fork: using cold restarts")
            else:
                self._update()
        elif event == "gone":
            log.debug("the warm-start process exited; the next restart is cold")
            self._discard()

    def pids(self) -> set[int]:
        return {self.zygote.pid} if self.zygote is not None else set()

    def watch_dirs(self) -> set[str]:
        """Folders whose changes may invalidate the zygote: its files', site-packages, the
        interpreter's."""
        zygote = self.zygote
        if zygote is None:
            return set()
        dirs = {os.path.dirname(f) for f in zygote.files if self._installed(f)}
        dirs.update(r for r in self.roots if os.path.isdir(r))
        if self.interpreter:
            dirs.add(os.path.dirname(self.interpreter))
        return dirs

    def close(self) -> None:
        self._discard()

    # -- inside ----------------------------------------------------------------------

    def _installed(self, path: str) -> bool:
        return self.watchset.installed(path) and not self.watchset.matches(path)

    def _package_entries(self) -> frozenset[str]:
        entries: set[str] = set()
        for root in self.roots:
            try:
                names = os.listdir(root)
            except OSError:
                continue
            entries.update(
                os.path.join(root, n)
                for n in names
                if is_package_change(os.path.join(root, n), self.roots)
            )
        return frozenset(entries)

    def _changed_while_loading(self) -> str | None:
        """Changes that landed before the zygote's folders were watched: a library file
        that is not what the program loaded, or packages installed meanwhile."""
        zygote = self.zygote
        if zygote is None:
            return None
        for path, before in self._baseline.items():
            if path in zygote.files and _mtime(path) != before:
                drop_bytecode([path])  # the next zygote must not load it from a stale .pyc
                return f"{path} changed"
        if self._package_entries() != self._packages:
            return "installed packages changed"
        return None

    def _update(self) -> None:
        """Build the zygote, or have it preload what the child imported since."""
        if self._gave_up:
            return
        zygote = self.zygote
        if zygote is not None and not zygote.ready:
            return  # busy; its "loaded" answer calls back here
        already = zygote.modules if zygote is not None else ()
        main = self.python.target if self.python.mode == "module" else None
        known = [*self._preloaded, *self.modules] if zygote is None else self.modules
        names = preload_candidates(
            known, installed=self._installed, deny=self.deny, already=already, main=main
        )
        paths = dict(known)
        if zygote is None:
            self._preloaded = []
        for name in names:
            self._baseline[paths[name]] = _mtime(paths[name])
            self._preloaded.append((name, paths[name]))
        if zygote is None:
            self._packages = self._package_entries()
            try:
                self.zygote = ZygoteClient(
                    self.python,
                    executable=self.executable,
                    on_event=self.on_event,
                    stdin_to_child=self.stdin_to_child,
                    extra_env=self.extra_env,
                    pass_fds=self.pass_fds,
                )
            except OSError as exc:
                self._gave_up = True
                log.warning("cannot start the warm-start process (%s): using cold restarts", exc)
                return
            self.zygote.preload(names)
        elif names:
            zygote.preload(names)

    def release_switched(self) -> None:
        # The zygote's working folder and sys.path are the old release's.
        if self.zygote is not None:
            log.info("rebuilding the warm-start process for the new release")
        self._discard()
        self._preloaded = []  # (the new release may have other packages)

    def _discard(self) -> None:
        self._baseline = {}
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            zygote.close()


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
