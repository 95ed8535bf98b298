"""Processes a stopped program left behind outside its process group, and their end.

A daemon that called ``setsid`` is out of the group relaunch stops; as relaunch is a
subreaper, such an orphan becomes relaunch's own child. What to kill is decided
purely (:func:`known_pids`, :func:`strays`): every child of relaunch that is none of
the processes it keeps. :func:`kill_strays` is the thin loop that acts on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .. import oslayer

__all__ = ["ROUNDS", "kill_strays", "known_pids", "strays"]

log = logging.getLogger("relaunch")

# Killing one may orphan its own children, who then become relaunch's: look again.
ROUNDS = 5


def known_pids(children: Iterable[Iterable[int]], helpers: Iterable[int | None] = ()) -> set[int]:
    """The processes relaunch keeps: each child's (its pids), and the helpers (the
    guardian, a strategy's zygotes; None or 0 for one not running)."""
    known = {pid for pids in children for pid in pids}
    known.update(pid for pid in helpers if pid)
    return known


def strays(children_of_relaunch: set[int], known: set[int]) -> set[int]:
    """The children of relaunch it does not keep: left behind by a stopped program."""
    return children_of_relaunch - known


def kill_strays(known: Callable[[], set[int]]) -> None:
    """Kill relaunch's children that are not ``known()``, until none is left (at most
    :data:`ROUNDS` times). Call it only on the thread that starts processes: from
    another, a process being started could look like a stray."""
    for _round in range(ROUNDS):
        children = oslayer.child_pids()  # first: a guardian started meanwhile is known
        found = strays(children, known())
        if not found:
            return
        log.debug("killing %d process(es) left behind: %s", len(found), sorted(found))
        for pid in found:
            oslayer.kill_and_reap(pid)
