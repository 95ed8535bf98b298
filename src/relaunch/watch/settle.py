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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Batch", "Settler"]


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
