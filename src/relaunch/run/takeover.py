"""Whether a new process that loaded the app may serve: the half-written-module guard.

With a front end (``relaunch serve``), a new process loads the app, then waits to be
told to serve. It must not if it may hold a torn copy of a file: one changed since
it read it, being written now, or not what the batch that started it saw (it read it
in the middle of a save). Then the change it read half of replaces it. If a file it
read was written only just now, the writer may not be done (an in-place save
truncates first): it is looked at again once the files have been quiet.

:func:`judge` decides, purely, from what the process saw of each file as it read it
and what :class:`LoadFacts` say of the files now; :class:`TakeOver` is the wiring.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .. import oslayer
from ..watch.fingerprint import differs_from_seen
from .files import MTIME_SLACK_NS, WatchedFiles
from .frontend import FrontEnd
from .names import names

__all__ = [
    "LoadFacts",
    "LookAgain",
    "Replace",
    "Serve",
    "TakeOver",
    "Verdict",
    "judge",
    "last_written_ns",
    "moved_since_loaded",
]

log = logging.getLogger("relaunch")

Seen = Mapping[str, tuple[int, int]]  # file -> (mtime_ns, size) as the process read it


@dataclass(frozen=True)
class Serve:
    """Nothing it read has moved: let it serve."""


@dataclass(frozen=True)
class LookAgain:
    after: float  # seconds


@dataclass(frozen=True)
class Replace:
    """It may hold a half-written copy of these files: never give it the socket."""

    files: list[str]


Verdict = Serve | LookAgain | Replace


class LoadFacts(Protocol):
    def state_now(self, path: str) -> tuple[int, int] | None:
        """(mtime_ns, size) on disk now; None if the file is gone."""

    def being_written(self) -> Collection[str]:
        """The watched files the watcher sees being written now."""

    def open_for_writing(self, path: str) -> bool | None:
        """Whether the kernel says some process has the file open for writing."""

    def batch_state(self, path: str) -> tuple[int, int] | None:
        """What the batch that started the process saw of the file, if anything."""

    def event_ns(self, path: str) -> int | None:
        """When the last event for the file came (wall clock), where every write raises
        one at once (inotify); None where not, or if none came."""


def moved_since_loaded(seen: Seen, facts: LoadFacts, *, now_ns: int, max_wait_ns: int) -> list[str]:
    """The files of ``seen`` the process may hold a torn copy of, sorted."""
    moved = {p for p, then in seen.items() if differs_from_seen(then, facts.state_now(p))}
    moved.update(p for p in facts.being_written() if p in seen)
    # inotify may not have said so yet (see oslayer.open_for_writing): ask the kernel
    # about each file written lately, for as long as a write is waited for at all.
    recent = now_ns - max_wait_ns
    moved.update(
        p
        for p, (mtime, _size) in seen.items()
        if mtime >= recent and p not in moved and facts.open_for_writing(p)
    )
    for path, then in seen.items():
        batch = facts.batch_state(path)
        if batch is not None and differs_from_seen(then, batch):
            moved.add(path)
    return sorted(moved)


def last_written_ns(path: str, then: tuple[int, int], facts: LoadFacts) -> int:
    """The latest a file the process read (``then``: its mtime and size then) can have
    been written, as far as can be told: by its file time, which may lag the clock by a
    tick; where every write raises an event at once, by its last event too, which
    comes after the write (the later of the two, should an event still be on its way)."""
    event = facts.event_ns(path)
    if event is None:
        return then[0] + MTIME_SLACK_NS
    return max(event, then[0])


def judge(seen: Seen, facts: LoadFacts, *, now_ns: int, quiet_ns: int, max_wait_ns: int) -> Verdict:
    """Serve it, look again later, or replace it (see the module's docstring): serve once
    every file it read has been quiet for ``quiet_ns`` (see :func:`last_written_ns`)."""
    moved = moved_since_loaded(seen, facts, now_ns=now_ns, max_wait_ns=max_wait_ns)
    if moved:
        return Replace(moved)
    newest = max((last_written_ns(p, then, facts) for p, then in seen.items()), default=0)
    wait = max(0.0, (newest + quiet_ns - now_ns) / 1e9)
    return LookAgain(wait) if wait > 0 else Serve()


class TakeOver:
    """What the current process saw of each file it read, and the look at it once it
    has loaded. Runs on the supervisor's thread."""

    def __init__(self, files: WatchedFiles, frontend: FrontEnd | None) -> None:
        self.files = files
        self.frontend = frontend
        self.loaded_seen: dict[str, tuple[int, int]] = {}
        self.at: float | None = None  # when to look again at a loaded process

    def child_starting(self) -> None:
        self.loaded_seen = {}
        self.at = None

    def read(self, modules: Sequence[tuple[str, str, int]], sizes: Sequence[int]) -> None:
        """The process reported these (name, path, mtime) modules, and their sizes (none:
        not known)."""
        sizes = sizes or (-1,) * len(modules)
        for (_name, path, mtime), size in zip(modules, sizes, strict=False):
            self.loaded_seen.setdefault(path, (mtime, size))

    def _seen(self) -> dict[str, tuple[int, int]]:
        imported = self.files.watchset.imported
        return {p: s for p, s in self.loaded_seen.items() if p in imported}

    def moved(self) -> list[str]:
        """See :func:`moved_since_loaded`."""
        max_wait_ns = int(self.files.settler.max_wait * 1e9)
        return moved_since_loaded(
            self._seen(), self, now_ns=time.time_ns(), max_wait_ns=max_wait_ns
        )

    def take_over(self, pgid: int | None) -> None:
        """The process (group ``pgid``) loaded the app: serve it, replace it, or look
        again at :attr:`at`."""
        assert self.frontend is not None
        self.at = None
        settler = self.files.settler
        verdict = judge(
            self._seen(),
            self,
            now_ns=time.time_ns(),
            quiet_ns=int(settler.quiet * 1e9),
            max_wait_ns=int(settler.max_wait * 1e9),
        )
        if isinstance(verdict, LookAgain):
            self.at = time.monotonic() + verdict.after
        elif isinstance(verdict, Replace):
            log.info(
                "%s changed while the new process loaded: not serving it", names(verdict.files)
            )
            self.files.changed_unseen(verdict.files)
        elif pgid is not None:
            self.frontend.take_over(pgid)

    # The facts judge() asks for.

    def state_now(self, path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def being_written(self) -> Collection[str]:
        return self.files.watcher.being_written()

    def open_for_writing(self, path: str) -> bool | None:
        return oslayer.open_for_writing(path)

    def batch_state(self, path: str) -> tuple[int, int] | None:
        return self.files.fingerprints.state(path)

    def event_ns(self, path: str) -> int | None:
        if not self.files.watcher.evented(path):
            return None
        return self.files.event_ns.get(path)
