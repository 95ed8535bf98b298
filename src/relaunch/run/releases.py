"""Symlinked releases under ``relaunch run``: notice a deploy swapping ``current``.

A deploy that unpacks ``releases/43`` and then swaps ``current -> releases/43``
changes no file the running program imported (those are in ``releases/42``). When
relaunch was started from a folder reached through such a link (``cd
/srv/app/current``: the shell keeps the link in ``$PWD``), the folders holding the
links are watched, and a link that now points elsewhere is a change: the program is
restarted (or the server reloaded) from the link's path, so it runs the new release.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["ReleaseLinks", "logical_cwd", "symlinks_above"]


def logical_cwd() -> str:
    """The working folder as the shell named it (``$PWD``, symlinks kept) when that is
    really where we are; otherwise the resolved one."""
    physical = os.getcwd()
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd):
        try:
            if os.path.samefile(pwd, physical):
                return os.path.normpath(pwd)
        except OSError:
            pass
    return physical


def symlinks_above(paths: Iterable[str]) -> set[str]:
    """Every symlink on the way to ``paths`` (absolute, as given, not resolved)."""
    links: set[str] = set()
    seen: set[str] = set()
    for path in paths:
        current = os.path.dirname(path) if not os.path.isdir(path) else path
        while current not in seen:
            seen.add(current)
            if os.path.islink(current):
                links.add(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return links


class ReleaseLinks:
    """The symlinks on the way to the working folder (and ``--watch`` paths), with the
    target each pointed to when last looked at."""

    def __init__(self, cwd: str, paths: Iterable[str] = ()) -> None:
        self.cwd = cwd
        self.targets = {link: os.path.realpath(link) for link in symlinks_above([cwd, *paths])}

    def __bool__(self) -> bool:
        return bool(self.targets)

    def folders(self) -> set[str]:
        """The folders to watch: those holding the links."""
        return {os.path.dirname(link) for link in self.targets}

    def swapped(self, path: str) -> tuple[str, str] | None:
        """``(old, new)`` targets when ``path`` is one of the links and now leads to
        another existing folder; None otherwise (not a link of ours, the same target,
        or the link is missing for a moment, as with ``ln -sfn``)."""
        old = self.targets.get(path)
        if old is None:
            return None
        new = os.path.realpath(path)
        if new in (old, path) or not os.path.isdir(new):
            return None
        self.targets[path] = new
        return old, new
