"""The watch set of in-process mode: what ``relaunch run`` would watch for this program."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..watch.watchset import WatchSet

__all__ = ["build_watchset"]


def build_watchset(paths: Iterable[str | os.PathLike[str]], cwd: str) -> WatchSet:
    """The watch set of ``relaunch run`` for this program: config plus ``paths``."""
    from .._inside.bootstrap import installed_roots
    from ..config import load
    from ..watch.rules import GitIgnore, Glob, IgnoreRules
    from ..watch.watchset import WatchEntry, WatchSet

    settings = load({}, cwd=cwd)
    texts = [*settings.watch, *((os.fspath(p), cwd) for p in paths)]
    entries = [WatchEntry.parse(text, cwd=anchor) for text, anchor in texts]
    rules = IgnoreRules(
        user=[Glob(text, anchor) for text, anchor in settings.ignore],
        gitignore=GitIgnore.find(cwd) if settings.gitignore else None,
        bases=[cwd, *(entry.base for entry in entries)],
    )
    entries += [WatchEntry.touch(text, cwd=anchor) for text, anchor in settings.touch_reload]
    watchset = WatchSet(entries=entries, rules=rules, watch_installed=settings.watch_installed)
    watchset.set_excluded_roots(installed_roots())
    return watchset
