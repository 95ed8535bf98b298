"""Following a deploy's symlink swap: move into the new release, watch it instead.

:class:`~relaunch.run.releases.ReleaseLinks` notices a link that now leads elsewhere;
:class:`ReleaseSwap` moves relaunch there (its working folder, its watch set) and
remembers the releases left, whose files the program may still report until it
restarts (or a server's workers roll over): those are never watched again. Which
folders count as left is decided purely (:func:`left_after`, :func:`left_behind`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from ..watch.watchset import WatchSet, is_within
from .releases import ReleaseLinks

__all__ = ["ReleaseSwap", "left_after", "left_behind"]

log = logging.getLogger("relaunch")


def left_after(left: Iterable[str], old: str, target: str) -> set[str]:
    """The release folders switched away from, after a swap from ``old`` to ``target``
    (a release swapped back to is the program's again)."""
    return ({*left} | {old}) - {target}


def left_behind(path: str, left: Iterable[str]) -> bool:
    """``path`` is in a release switched away from."""
    return any(is_within(path, folder) for folder in left)


class ReleaseSwap:
    """The links to follow, and how to make the new release's watch set:
    ``fresh_watchset()`` is called in the new working folder (None keeps the one in
    use, e.g. when the new release's settings are wrong)."""

    def __init__(
        self, links: ReleaseLinks, fresh_watchset: Callable[[], WatchSet | None] | None = None
    ) -> None:
        self.links = links
        self.fresh_watchset = fresh_watchset
        self.left: set[str] = set()  # folders of releases switched away from

    def is_link(self, path: str) -> bool:
        return path in self.links.targets

    def swapped(self, path: str) -> tuple[str, str] | None:
        """See :meth:`ReleaseLinks.swapped`."""
        return self.links.swapped(path)

    def folders(self) -> set[str]:
        """The folders to watch: those holding the links."""
        return self.links.folders()

    def left_behind(self, path: str) -> bool:
        return left_behind(path, self.left)

    def move(self, link: str, old: str, target: str, watchset: WatchSet) -> bool:
        """A deploy pointed ``link`` at another release: run from there from now on.
        False if relaunch cannot go there (it stays where it was)."""
        log.info("%s now points to %s", link, target)
        try:
            os.chdir(self.links.cwd)  # through the link: into the new release
        except OSError as exc:
            log.error("cannot change into %s: %s", self.links.cwd, exc)
            return False
        fresh = self.fresh_watchset() if self.fresh_watchset is not None else None
        if fresh is not None:
            watchset.adopt(fresh)
        self.left = left_after(self.left, old, target)
        return True
