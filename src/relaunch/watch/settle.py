"""Group bursts of file events into one reload. Pure: time is passed in.

Events are collected until the tree has been quiet for ``quiet`` seconds, but never
longer than ``max_wait`` after the first one, so a tool that keeps writing cannot
hold reloads off forever. A git checkout of 500 files, a formatter run or an editor's
write-then-rename save all arrive as one batch.

An editor's save touches one to three files; more than ``burst`` files at once means
a tool is at work (checkout, rebase, formatter, code generator), whose writes can
pause for longer than an editor's: the quiet period then stretches to ``burst_quiet``.
The common case, one saved file, stays at the short ``quiet``.

A version-control operation in progress (``.git/index.lock`` present) holds the
batch, however slowly it writes, up to ``hold_max``: the caller passes ``held`` to
:meth:`Settler.take`, the only I/O question, asked only when a batch is due.

Before all that, where the OS says when a file is closed (Linux inotify), the watcher
holds its events back while a watched file is being written in place: see
:class:`WriteHold`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["CLOSED", "MODIFIED", "Batch", "Change", "Settler", "WriteHold"]


@dataclass(frozen=True)
class Batch:
    paths: frozenset[str]
    first_event: float
    last_event: float


class Settler:
    def __init__(
        self,
        *,
        quiet: float = 0.010,
        max_wait: float = 1.0,
        burst: int = 4,
        burst_quiet: float = 0.1,
        hold_max: float = 30.0,
    ) -> None:
        if quiet < 0 or max_wait < quiet:
            raise ValueError("need 0 <= quiet <= max_wait")
        self.quiet = quiet
        self.max_wait = max_wait
        self.burst = burst
        self.burst_quiet = max(quiet, min(burst_quiet, max_wait))
        self.hold_max = max(hold_max, max_wait)
        self._paths: set[str] = set()
        self._first: float | None = None
        self._last: float | None = None
        self._recheck: float | None = None  # while held: when to ask again

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, paths: Iterable[str], now: float) -> None:
        added = False
        for path in paths:
            self._paths.add(path)
            added = True
        if not added:
            return
        if self._first is None:
            self._first = now
        self._last = now

    def due(self) -> float | None:
        """When :meth:`take` will next have a batch (absolute time), or None if idle."""
        if self._first is None or self._last is None:
            return None
        if self._recheck is not None:
            return self._recheck
        quiet = self.burst_quiet if len(self._paths) > self.burst else self.quiet
        return min(self._last + quiet, self._first + self.max_wait)

    def take(self, now: float, *, held: Callable[[], bool] | None = None) -> Batch | None:
        """The settled batch, if the quiet period (or the upper bound) has passed.

        ``held()`` (asked only when a batch is due) says a tool is mid-operation: then
        wait another quiet period, up to ``hold_max`` after the first event.
        """
        due = self.due()
        if due is None or now < due:
            return None
        assert self._first is not None and self._last is not None
        if held is not None and now < self._first + self.hold_max and held():
            self._recheck = now + max(self.quiet, 0.005)
            return None
        batch = Batch(frozenset(self._paths), self._first, self._last)
        self._paths = set()
        self._first = self._last = self._recheck = None
        return batch


#: A file's content changed; it may still be open for writing (inotify's IN_MODIFY).
MODIFIED: Final = "modified"
#: A file opened for writing was closed (IN_CLOSE_WRITE), or its name no longer leads to
#: it (deleted, renamed away, replaced): whoever writes it, nothing more is to wait for.
CLOSED: Final = "closed"

Change = Literal["modified", "closed"]


class WriteHold:
    """Hold file events back while a watched file is being written in place.

    Pure: time is passed in. Fed by a watcher that knows when a file written to is
    closed (inotify on Linux). Polling and watchfiles cannot tell, and do without it.

    An in-place save opens the file with O_TRUNC, writes, closes. Until the close the
    file is empty or half written, and a writer can pause in between (a large file,
    a slow disk, a descheduled editor) for longer than the settle period. So from a
    watched file's modification (the truncation is one) until its close, every event
    is held, of any file (one batch after the save, not one before it), and all are
    released together when no watched file is being written any more. Only
    modification counts: opening a file raises no event here (readers open files
    too, and inotify cannot tell them from writers). An atomic save (a temporary
    file renamed over) is complete when it arrives and passes at once, and so does a
    normal save's close: neither adds any delay.

    A file may stay open for writing for ever (a log or a data file the program keeps
    open). A write is waited for at most ``max_wait`` after the file's first
    modification; after that its events pass at once until it is really closed, so
    such a file holds reloads off once, at most ``max_wait``, never again while it
    stays open. Only the watch set's files (:meth:`watch`) are waited for: the files
    programs keep open next to them (logs, databases, editor swap files) are ignored
    anyway and hold nothing.
    """

    def __init__(self, *, max_wait: float = 1.0) -> None:
        if max_wait < 0:
            raise ValueError("need 0 <= max_wait")
        self.max_wait = max_wait
        self._watched: frozenset[str] = frozenset()
        self._writing: dict[str, float] = {}  # path: its first modification since closed
        self._overdue: set[str] = set()  # written for longer than max_wait, not yet closed
        self._held: dict[str, None] = {}  # paths held back, in arrival order, once each

    @property
    def writing(self) -> frozenset[str]:
        """The watched files being written now and still waited for."""
        return frozenset(self._writing)

    def watch(self, files: Iterable[str]) -> None:
        """Wait only for these files from now on (a file leaving the set is not waited for)."""
        self._watched = frozenset(files)
        for path in [p for p in self._writing if p not in self._watched]:
            del self._writing[path]
        self._overdue &= self._watched

    def add(self, path: str, now: float, change: Change | None = None) -> None:
        """An event for ``path``; ``change`` says what it means for a write in progress."""
        self._held[path] = None
        if change == MODIFIED:
            if path in self._watched and path not in self._overdue:
                self._writing.setdefault(path, now)
        elif change == CLOSED:
            self._writing.pop(path, None)
            self._overdue.discard(path)

    def forget(self) -> None:
        """Events were lost (the OS queue overflowed): no close can be relied on."""
        self._writing.clear()
        self._overdue.clear()

    def due(self) -> float | None:
        """When a write waited for runs out of time (absolute), or None if none is."""
        if not self._writing:
            return None
        return min(self._writing.values()) + self.max_wait

    def take(self, now: float) -> list[str]:
        """The held paths, in arrival order, if no watched file is being written (or
        every one has been for ``max_wait``); else nothing, yet."""
        for path, since in list(self._writing.items()):
            if now >= since + self.max_wait:
                del self._writing[path]
                self._overdue.add(path)
        if self._writing or not self._held:
            return []
        paths = list(self._held)
        self._held.clear()
        return paths
