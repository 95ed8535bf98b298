"""The watch set: exactly which files relaunch reacts to, and why.

Two sources feed it: files the running program imported (reported live by the
child, plus every file of a crash's traceback) and the user's ``--watch`` entries
(files, folders, globs). Ignore rules filter both; ``--touch-reload`` files are
watched whatever they say (the user named each one), existing or not.
:meth:`WatchSet.decide` is the one place that says whether a path is watched;
``--explain`` prints its reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .rules import Glob, IgnoreRules, glob_base, has_magic

__all__ = ["DEFAULT_TREE_LIMIT", "Decision", "WatchEntry", "WatchSet", "is_within"]

log = logging.getLogger(__name__)

#: How many files and folders the default tree (no --watch: the current folder) takes.
DEFAULT_TREE_LIMIT = 20_000


def is_within(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or below it (both absolute, normalised)."""
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root == os.sep else root + os.sep)


@dataclass(frozen=True)
class Decision:
    watched: bool
    reason: str


@dataclass(frozen=True)
class WatchEntry:
    """One ``--watch`` argument: a file, a folder (watched recursively) or a glob."""

    text: str
    path: str
    kind: str  # "file", "dir", "glob" or "touch" (a --touch-reload file)
    how: str = ""  # why it is watched, when not a --watch argument
    #: At most this many files and folders are taken from the tree (the default tree,
    #: which the user did not choose: it may be a home folder of a million files).
    limit: int | None = None

    @classmethod
    def parse(cls, text: str, *, cwd: str) -> WatchEntry:
        """Classify a --watch argument. Raises FileNotFoundError for a path that does not exist."""
        expanded = os.path.expanduser(text)
        absolute = os.path.normpath(os.path.join(cwd, expanded))
        if has_magic(expanded):
            glob = Glob(expanded, cwd)
            base = glob_base(glob.absolute)
            if not os.path.isdir(base):
                raise FileNotFoundError(f"--watch '{text}': folder {base} does not exist")
            return cls(text, glob.absolute, "glob")
        if os.path.isdir(absolute):
            return cls(text, absolute, "dir")
        if os.path.exists(absolute):
            return cls(text, absolute, "file")
        raise FileNotFoundError(f"--watch '{text}': no such file or folder")

    @classmethod
    def touch(cls, text: str, *, cwd: str) -> WatchEntry:
        """A ``--touch-reload`` file: taken literally (no glob), and it need not exist yet
        (it is watched from where it will appear). Raises IsADirectoryError for a folder."""
        absolute = os.path.normpath(os.path.join(cwd, os.path.expanduser(text)))
        if os.path.isdir(absolute):
            raise IsADirectoryError(
                f"--touch-reload '{text}' is a folder: give a file (it need not exist yet)"
            )
        return cls(text, absolute, "touch", f"--touch-reload '{text}'")

    @property
    def base(self) -> str:
        """The folder that holds everything this entry can match."""
        if self.kind == "dir":
            return self.path
        if self.kind in ("file", "touch"):
            return os.path.dirname(self.path)
        return glob_base(self.path)

    def matches(self, path: str) -> bool:
        if self.kind in ("file", "touch"):
            return path == self.path
        if self.kind == "dir":
            return is_within(path, self.path) and path != self.path
        return Glob(self.path, "/").matches(path)


class WatchSet:
    """What is watched. Mutated only by the supervisor's thread; never blocks on the child."""

    def __init__(
        self,
        *,
        entries: Iterable[WatchEntry] = (),
        rules: IgnoreRules | None = None,
        excluded_roots: Iterable[str] = (),
        watch_installed: bool = False,
    ) -> None:
        self.entries = tuple(entries)
        self.rules = rules or IgnoreRules()
        self.watch_installed = watch_installed
        self.excluded_roots: tuple[str, ...] = ()
        self.set_excluded_roots(excluded_roots)
        self.imported: dict[str, str] = {}
        self._tree: tuple[set[str], set[str]] | None = None
        self._said_capped = False

    def set_excluded_roots(self, roots: Iterable[str]) -> None:
        """Folders of the standard library and installed packages (reported by the child)."""
        cleaned = {os.path.normpath(r) for r in roots if r}
        self.excluded_roots = tuple(sorted(cleaned, key=len, reverse=True))

    def installed(self, path: str) -> bool:
        """True for a file of the standard library or an installed package."""
        return any(is_within(path, root) for root in self.excluded_roots)

    def _excluded(self, path: str) -> str | None:
        if self.watch_installed:
            return None
        for root in self.excluded_roots:
            if is_within(path, root):
                return root
        return None

    def add(self, path: str, how: str = "imported by the program") -> bool:
        """Record a file the program depends on. True if it is newly watched."""
        if path in self.imported:
            return False
        decision = self.decide(path, candidate=how)
        if not decision.watched:
            return False
        self.imported[path] = how
        return True

    def add_folder(self, path: str, how: str) -> bool:
        """Watch everything under ``path`` as a ``--watch`` folder is watched (a folder
        the program asked for: its templates, its static files). True if newly watched."""
        if any(e.kind == "dir" and is_within(path, e.path) for e in self.entries):
            return False
        self.entries = (*self.entries, WatchEntry(path, path, "dir", how))
        self._tree = None
        return True

    def adopt(self, other: WatchSet) -> None:
        """Start over from ``other``'s ``--watch`` entries and rules (a deploy switched the
        release the program runs from): files the old program imported are forgotten,
        the new one reports its own."""
        self.entries = other.entries
        self.rules = other.rules
        self.imported.clear()
        self._tree = None

    def by_mtime(self, path: str) -> bool:
        """True for a ``--touch-reload`` file: its mtime alone says it changed."""
        return any(e.kind == "touch" and e.path == path for e in self.entries)

    def ignores_folder(self, path: str) -> bool:
        """An ignore rule covers this folder and no ``--touch-reload`` file is below it
        (``tmp/`` may be git-ignored and still hold ``tmp/restart.txt``)."""
        if not self.rules.reason(path, is_dir=True):
            return False
        return not any(e.kind == "touch" and is_within(e.path, path) for e in self.entries)

    def decide(self, path: str, *, is_dir: bool = False, candidate: str | None = None) -> Decision:
        """Whether ``path`` is watched, and the rule that decided it.

        ``candidate`` asks about a file as if the program had just reported it.
        """
        if not is_dir and candidate is None:
            for entry in self.entries:
                if entry.kind == "touch" and entry.path == path:
                    return Decision(True, f"{entry.how}: its modification time alone reloads")
        how = candidate or self.imported.get(path)
        reason = self.rules.reason(path, imported=how is not None, is_dir=is_dir)
        if reason:
            return Decision(False, f"ignored by {reason}")
        if how is not None:
            root = self._excluded(path)
            if root:
                return Decision(
                    False,
                    f"in the standard library or an installed package ({root}); "
                    "--watch-installed watches these",
                )
            return Decision(True, how)
        for entry in self.entries:
            if entry.matches(path):
                return Decision(True, entry.how or f"--watch '{entry.text}'")
        root = self._excluded(path)
        if root:
            return Decision(False, f"in the standard library or an installed package ({root})")
        return Decision(False, "not imported by the program and matched by no --watch")

    def matches(self, path: str) -> bool:
        return self.decide(path).watched

    # -- what to hand the file-system watcher --------------------------------------

    def invalidate_tree(self) -> None:
        """Forget the walked folders of --watch entries (a folder appeared or vanished)."""
        self._tree = None

    def _walk(self, root: str) -> Iterator[tuple[str, list[str]]]:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            kept = []
            for name in dirnames:
                full = os.path.join(dirpath, name)
                if self.rules.reason(full, is_dir=True):
                    continue
                if os.path.exists(os.path.join(full, "pyvenv.cfg")):
                    continue  # a virtualenv, whatever its name
                kept.append(name)
            dirnames[:] = kept
            yield dirpath, filenames

    def _tree_items(self, root: str) -> Iterator[tuple[bool, str]]:
        """(is a folder, path) for each folder and watched file of a --watch tree."""
        for dirpath, filenames in self._walk(root):
            yield True, dirpath
            for name in filenames:
                full = os.path.join(dirpath, name)
                if self.matches(full):
                    yield False, full

    def _entry_tree(self) -> tuple[set[str], set[str]]:
        if self._tree is None:
            dirs: set[str] = set()
            files: set[str] = set()
            for entry in self.entries:
                if entry.kind in ("file", "touch"):
                    # A touch file that does not exist yet is watched from where it will be.
                    dirs.add(_existing_ancestor(entry.base))
                    files.add(entry.path)
                    continue
                if not os.path.isdir(entry.base):
                    # Gone (deleted, or mid-checkout): watch where it would reappear.
                    dirs.add(_existing_ancestor(entry.base))
                    continue
                for taken, (is_dir, path) in enumerate(self._tree_items(entry.base)):
                    if entry.limit is not None and taken >= entry.limit:
                        self._say_capped(entry)  # more than the limit: stop here
                        break
                    (dirs if is_dir else files).add(path)
            self._tree = (dirs, files)
        return self._tree

    def appeared(self, path: str) -> bool:
        """A file appeared in a watched folder: True if a ``--watch`` entry takes it in,
        so that :meth:`files` (what polling stats, what inotify waits for the close of)
        holds it from now on. Without this only a re-walk of the tree would add it."""
        if self._tree is None:
            return False  # the next walk finds it
        files = self._tree[1]
        if path in files or path in self.imported or not self.matches(path):
            return False
        if not os.path.isfile(path):
            return False
        files.add(path)
        return True

    def _say_capped(self, entry: WatchEntry) -> None:
        if not self._said_capped:
            self._said_capped = True
            log.warning(
                "no --watch given: the current folder holds more than %d files and folders; "
                "watching only the first %d (give -w with what to watch)",
                entry.limit,
                entry.limit,
            )

    def directories(self) -> set[str]:
        """Folders to watch, each non-recursively: the OS watch count follows the watch set."""
        dirs = set(self._entry_tree()[0])
        for path in self.imported:
            dirs.add(_existing_ancestor(os.path.dirname(path)))
        return dirs

    def files(self) -> set[str]:
        """Every file in the watch set that exists now (or was imported and may come back)."""
        return set(self._entry_tree()[1]) | set(self.imported)

    # -- what a listing may have missed -------------------------------------------------

    def unlisted_in(self, folders: Iterable[str], files: set[str], dirs: set[str]) -> bool:
        """Whether these folders now hold a watched file or folder that is not in
        ``files``/``dirs`` (the last listing): one made after the listing and before
        the folder was watched, which no event reported."""
        for folder in folders:
            for dirpath, dirnames, filenames in os.walk(folder):
                if dirpath not in dirs and self.decide(dirpath, is_dir=True).watched:
                    return True
                dirnames[:] = [
                    d
                    for d in dirnames
                    if not self.rules.reason(os.path.join(dirpath, d), is_dir=True)
                ]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    if path not in files and self.matches(path):
                        return True
        return False

    def new_modules(self, since_ns: int) -> set[str]:
        """``.py`` files next to watched ones, not imported, modified at or after
        ``since_ns``: after a failed start, the module it may have missed (including one
        created before its folder was watched)."""
        found = set()
        for directory in self.directories():
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if not entry.name.endswith(".py") or entry.path in self.imported:
                    continue
                try:
                    if entry.stat().st_mtime_ns >= since_ns:
                        found.add(entry.path)
                except OSError:
                    continue
        return found


def _existing_ancestor(path: str) -> str:
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path
