"""Did a file really change? Content fingerprints, so a no-op save reloads nothing.

A file counts as changed when it appears or disappears, when its content differs,
or when its mtime goes backwards (an older version restored, even byte-identical
to what was loaded: the user meant to go back). Metadata alone (mode, owner, a
touch that leaves the content as it was) is no change.

A touch-to-reload file (``--touch-reload``; what Django's reloader API registers,
whose contract is "the mtime changed") is compared by mtime instead: a touch alone
is a change there, as with uWSGI's ``touch-reload``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Fingerprint",
    "Fingerprints",
    "changed",
    "changed_since_seen",
    "differs_from_seen",
    "take",
]

# Above this size a file is compared by size and mtime only: hashing it on every
# event would cost more than the reload it might save.
HASH_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Fingerprint:
    mtime_ns: int
    size: int
    digest: bytes | None


def take(path: str) -> Fingerprint | None:
    """The file's fingerprint now, or None if it does not exist (or is not a file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    digest = None
    if st.st_size <= HASH_LIMIT:
        try:
            with open(path, "rb") as f:
                digest = hashlib.blake2b(f.read(), digest_size=16).digest()
        except FileNotFoundError:
            return None  # deleted since the stat
        except OSError:
            # There but unreadable (a chmod): not gone. Compared by size and mtime
            # until it can be read again, so a chmod alone is no change.
            digest = None
    return Fingerprint(st.st_mtime_ns, st.st_size, digest)


def changed(old: Fingerprint | None, new: Fingerprint | None, *, by_mtime: bool = False) -> bool:
    """The decision, pure: True when ``old`` to ``new`` is a change worth a reload.

    ``by_mtime`` (a touch-to-reload file): True when the file appeared or its mtime
    moved, either way; neither content nor metadata is looked at (a chmod leaves the
    mtime alone), and a file removed is no change (removing the trigger file after
    use must not reload again)."""
    if by_mtime:
        return new is not None and (old is None or new.mtime_ns != old.mtime_ns)
    if old is None or new is None:
        return old is not new
    if new.mtime_ns < old.mtime_ns or new.size != old.size:
        return True
    if old.digest is None or new.digest is None:
        return new.mtime_ns != old.mtime_ns
    return new.digest != old.digest


def differs_from_seen(seen: tuple[int, int], now: tuple[int, int] | None) -> bool:
    """The decision, pure: does a file's (mtime_ns, size) ``now`` (None: gone) differ
    from ``seen``, what a process saw just before it read the file? A size of -1 was
    not known and is not compared; an mtime of -1 means the file was missing then."""
    if now is None:
        return seen[0] != -1
    if seen[1] != -1 and seen[1] != now[1]:
        return True
    return seen[0] != now[0]


def changed_since_seen(seen: Mapping[str, tuple[int, int]]) -> list[str]:
    """The files whose state now differs from what a process saw when it loaded them:
    it may hold a version that was being written (an empty or half module)."""
    moved = []
    for path, then in seen.items():
        try:
            st = os.stat(path)
            now: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            now = None
        if differs_from_seen(then, now):
            moved.append(path)
    return moved


class Fingerprints:
    """The last fingerprint seen for each watched file.

    ``by_mtime(path)``: whether a file is compared by mtime (see :func:`changed`); none
    is without it. It is asked at each comparison, so it may follow a watch set that
    changes."""

    def __init__(self, *, by_mtime: Callable[[str], bool] | None = None) -> None:
        self._known: dict[str, Fingerprint | None] = {}
        self.by_mtime = by_mtime

    def __contains__(self, path: object) -> bool:
        return path in self._known

    def remember(self, path: str, *, loaded_mtime_ns: int | None = None) -> bool:
        """Record the file's state as the baseline, if it has none yet.

        ``loaded_mtime_ns`` is the mtime the program saw when it loaded the file. True
        means the file has changed since then: an edit that landed while the program was
        starting, before any watcher covered the file.
        """
        if path not in self._known:
            self._known[path] = take(path)
        if loaded_mtime_ns is None:
            return False
        now = self._known[path]
        return (now.mtime_ns if now is not None else -1) != loaded_mtime_ns

    def state(self, path: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of the last fingerprint taken; (-1, -1) if the file was
        missing then; None if none was taken."""
        if path not in self._known:
            return None
        known = self._known[path]
        return (known.mtime_ns, known.size) if known is not None else (-1, -1)

    def absent_before(self, path: str) -> None:
        """Record that the file did not exist before now (it appeared after the watch
        set was listed), unless it has a baseline already: its next fingerprint is then
        compared with its absence."""
        self._known.setdefault(path, None)

    def mtime_ns(self, path: str) -> int | None:
        """The mtime of the last fingerprint taken, None if none or the file was missing."""
        known = self._known.get(path)
        return known.mtime_ns if known is not None else None

    def differs(self, path: str) -> bool:
        """Whether the file now differs from its last fingerprint, without recording
        anything: the next :meth:`update` still compares with that one (so a look taken
        in the middle of a write cannot become the baseline)."""
        if path not in self._known:
            return take(path) is not None
        by_mtime = self.by_mtime is not None and self.by_mtime(path)
        return changed(self._known[path], take(path), by_mtime=by_mtime)

    def update(self, path: str) -> bool:
        """Take a new fingerprint; True if the file changed since the last one.

        A file never seen before counts as changed if it exists: nothing says it is not.
        """
        seen = path in self._known
        old = self._known.get(path)
        new = self._known[path] = take(path)
        if not seen:
            # Never seen: a change if it is a file now (a temporary file that came and
            # went, or a folder, is not).
            return new is not None
        return changed(old, new, by_mtime=self.by_mtime is not None and self.by_mtime(path))
