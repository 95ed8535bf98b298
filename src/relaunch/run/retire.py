"""Stopping children: at once, or in the background while the next one starts.

A child is stopped by its process group (reload hooks, SIGTERM, SIGKILL after the
grace period); with a held socket it may finish its requests in the background
while the next one already serves. Either way, what it left outside its group is
killed afterwards (:mod:`relaunch.run.strays`), on the supervisor's thread only:
that is the only thread that starts processes, and from another a process being
started could look like a stray.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import oslayer
from .child import Child
from .guardian import Guardian
from .strays import kill_strays, known_pids

__all__ = ["Retirement"]


class Retirement:
    """``current()``: the running child; ``on_event``: the supervisor's queue (told
    ``("retired",)`` when a child stopped in the background is gone); ``helpers()``:
    the pids of the restart strategy's helper processes. None of those is a stray."""

    def __init__(
        self,
        grace: float,
        *,
        current: Callable[[], Child | None],
        on_event: Callable[[tuple[Any, ...]], None],
        helpers: Callable[[], Iterable[int]],
    ) -> None:
        self.grace = grace
        self.current = current
        self.on_event = on_event
        self.helpers = helpers
        self.guardian: Guardian | None = None
        self.subreaper = False  # only then are the orphans relaunch's own children
        self._threads: list[threading.Thread] = []
        self._children: list[Child] = []  # stopping in the background
        self._stopping: Child | None = None  # stopping in the foreground

    def stop(self, child: Child, *, overlap: bool = False) -> None:
        """Stop ``child``; with ``overlap``, in the background."""
        if not overlap:
            self._stopping = child  # a second Ctrl-C meanwhile kills it at once
            try:
                child.stop(self.grace)
            finally:
                self._stopping = None
            self._forget(child)
            self.kill_strays()
            return
        self._threads = [t for t in self._threads if t.is_alive()]
        self._children.append(child)
        retiring = threading.Thread(
            target=self._in_background, args=(child,), name="relaunch-retire", daemon=True
        )
        retiring.start()
        self._threads.append(retiring)

    def _in_background(self, child: Child) -> None:
        try:
            child.stop(self.grace)
        finally:
            self._children.remove(child)
        self._forget(child)
        self.on_event(("retired",))

    def _forget(self, child: Child) -> None:
        if self.guardian is not None and child.pid is not None:
            self.guardian.forget(child.pid)

    def kill_strays(self) -> None:
        """Kill what a stopped program left behind outside its process group (a daemon
        that called setsid): as relaunch is a subreaper, those orphans are its children.
        Runs on the supervisor's thread only."""
        if self.subreaper:
            kill_strays(self._known_pids)

    def _known_pids(self) -> set[int]:
        children = (c.pids for c in (self.current(), *self._children) if c)
        guardian = self.guardian.pid if self.guardian else None
        return known_pids(children, [guardian, *self.helpers()])

    def kill_now(self) -> None:
        """A second Ctrl-C: kill every child's group at once (any thread)."""
        for child in (self.current(), self._stopping, *self._children):
            if child is not None and child.pid is not None:
                oslayer.kill_group(child.pid)

    def join(self) -> None:
        """Wait for the children stopping in the background."""
        for retiring in self._threads:
            retiring.join()
