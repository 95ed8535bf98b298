"""Observe and follow server processes (Linux ``/proc``; empty answers elsewhere).

A graceful reload is judged by looking at processes, never by sleeping: which
workers a master has, when the old ones are gone, when a re-executed master has its
workers. :func:`watch_rollover` is that observation, reduced to one pure step
(:class:`Rollover`) fed with snapshots, so its logic is unit-tested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import oslayer

__all__ = [
    "Rollover",
    "children",
    "current_program",
    "follow_program",
    "wait_for",
    "watch_rollover",
]

log = logging.getLogger(__name__)


def children(pid: int) -> set[int]:
    """The live (not zombie) direct children of ``pid``."""
    return oslayer.live_children(pid)


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


@dataclass
class Rollover:
    """Old workers being replaced by new ones; fed snapshots of the live worker set.

    Done when no old worker is left and ``want`` new ones run. ``coexisted`` is how
    long old and new workers both ran (first new seen to last old gone): the window
    in which a client could get either version.
    """

    old: frozenset[int]
    want: int
    started: float
    first_new: float | None = None
    last_old_gone: float | None = None
    new: set[int] = field(default_factory=set)

    def feed(self, live: Iterable[int], now: float) -> bool:
        live = set(live)
        fresh = live - self.old
        if fresh and self.first_new is None:
            self.first_new = now
        self.new |= fresh
        old_left = live & self.old
        if not old_left and self.last_old_gone is None:
            self.last_old_gone = now
        return not old_left and len(fresh) >= self.want

    @property
    def coexisted(self) -> float:
        if self.first_new is None or self.last_old_gone is None:
            return 0.0
        return max(0.0, self.last_old_gone - self.first_new)


def watch_rollover(
    workers: Callable[[], set[int]],
    old: Iterable[int],
    want: int,
    timeout: float,
    *,
    going_on: Callable[[], bool] = lambda: True,
) -> Rollover | None:
    """Watch ``workers()`` until the rollover from ``old`` is done; None on timeout or
    as soon as ``going_on()`` is false (the master is gone)."""
    rollover = Rollover(frozenset(old), want, time.monotonic())
    deadline = rollover.started + timeout
    while True:
        now = time.monotonic()
        if rollover.feed(workers(), now):
            return rollover
        if now >= deadline or not going_on():
            return None
        time.sleep(0.005)


def follow_program(child: Any, pid: int) -> None:
    """From now on, ``child``'s program is process ``pid`` (same process group): its
    exit, not the started process's, is the program's exit."""
    child.adopt(pid)


def current_program(child: Any) -> int:
    """The pid that runs ``child``'s program now (see :func:`follow_program`)."""
    program = getattr(child, "program_pid", None)
    return int(program if program is not None else child.pid)
