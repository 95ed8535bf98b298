"""What a touched path means to the supervisor: the decision, pure.

The watcher reports paths (files, folders, a release link, or its overflow marker);
:func:`classify` says what each one is, asking :class:`PathFacts` only what it needs,
in order (some answers cost a system call, some walk the watch set). The supervisor's
file bookkeeping (:mod:`relaunch.run.files`) acts on the answer.
"""

from __future__ import annotations

import enum
import os
from typing import Protocol

__all__ = ["Kind", "PathFacts", "classify", "rereads_gitignore"]


class Kind(enum.Enum):
    RELEASE_LINK = "a symlink to the release being run (a deploy may have swapped it)"
    OVERFLOW = "the OS dropped events: every watched file may have changed"
    FILE = "a watched file"
    NEW_FILE = "a file that just appeared where --watch takes it in"
    IGNORED_FOLDER = "inside an ignored folder (__pycache__, .git...)"
    FOLDER = "a folder appeared, vanished or moved: what it holds is looked at again"
    NEW_MODULE = "a new module while the program is failed (it may have missed it)"
    NOTHING = "nothing relaunch reacts to"


class PathFacts(Protocol):
    def is_release_link(self, path: str) -> bool:
        """One of the links on the way to the working folder."""

    def is_folder(self, path: str) -> bool:
        """A folder (watched as one, or one on disk now)."""

    def is_known_file(self, path: str) -> bool:
        """Fingerprinted already, or matched by the watch set."""

    def appeared(self, path: str) -> bool:
        """A new file the watch set takes in from now on (asking records it)."""

    def ignores_folder(self, path: str) -> bool:
        """In a folder the rules ignore."""

    def holds_imported(self, path: str) -> bool:
        """A path some imported file is under (a folder that vanished)."""


def rereads_gitignore(path: str, *, gitignore: bool) -> bool:
    """A .gitignore changed (with .gitignore rules in use): its folder's rules must be
    read again, before the path itself is classified (the rules may decide it)."""
    return gitignore and os.path.basename(path) == ".gitignore"


def classify(path: str, facts: PathFacts, *, overflow: str, failed: bool) -> Kind:
    """What ``path`` is. ``overflow``: the watcher's marker for dropped events;
    ``failed``: the program is down after a failure."""
    if facts.is_release_link(path):
        return Kind.RELEASE_LINK
    if path == overflow:
        return Kind.OVERFLOW
    folder = facts.is_folder(path)
    if not folder and facts.is_known_file(path):
        # A new file is compared with its absence, not with what the refresh finds.
        return Kind.NEW_FILE if facts.appeared(path) else Kind.FILE
    if facts.ignores_folder(path):
        return Kind.IGNORED_FOLDER
    if folder or facts.holds_imported(path):
        return Kind.FOLDER
    if path.endswith(".py") and failed:
        # Next to watched ones: the program failed, perhaps importing it before it
        # existed. (One created before the failure is seen is found by the scan for
        # new modules.)
        return Kind.NEW_MODULE
    return Kind.NOTHING
