"""Checkpoint restarts: the decisions, pure (see :mod:`relaunch.run.checkpoints`).

What a parked process's hello says, whether a change spoils a checkpoint, which of
several to fork, and which to keep: functions of their arguments, unit-tested.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..pathtext import shown
from .preload import environment_change

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_HOT",
    "Checkpoint",
    "Hello",
    "admit",
    "choose",
    "look",
    "parse_hello",
    "shown_path",
    "spoiled_by",
    "stale",
    "stale_each",
    "thinner",
]

MAX_CHECKPOINTS = 4  # parked processes kept: each costs the memory its fork copied
MAX_HOT = MAX_CHECKPOINTS  # the files most recently edited are the ones stopped at


# -- the decisions (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """What a parked process says of itself (``ev`` "checkpoint"), or why a child did not
    park one (``ev`` "refused", ``why`` set, no files)."""

    pid: int
    file: str  # the hot file it stands before
    files: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # ran before it
    why: str = ""


def shown_path(path: str) -> str:
    """A path as log lines show it: relative to the working folder when inside it."""
    relative = os.path.relpath(path)
    return shown(path if relative.startswith("..") else relative)


def _abs(value: object) -> str | None:
    if isinstance(value, str) and value and "\0" not in value and os.path.isabs(value):
        return os.path.normpath(value)
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_hello(message: object) -> Hello | None:
    """Validate a decoded hello; None if it is not one (never trust the program)."""
    if not isinstance(message, dict):
        return None
    pid, path = _int(message.get("pid")), _abs(message.get("file"))
    if pid is None or pid <= 0 or path is None:
        return None
    peer = message.get("peer")
    if peer is not None and peer != pid:
        return None  # it speaks for another process
    if message.get("ev") == "refused":
        why = message.get("why")
        return Hello(pid, path, why=why[:200]) if isinstance(why, str) and why else None
    if message.get("ev") != "checkpoint" or not isinstance(message.get("files"), list):
        return None
    files: dict[str, tuple[int, int]] = {}
    for item in message["files"]:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        name, mtime, size = _abs(item[0]), _int(item[1]), _int(item[2])
        if name is None or mtime is None or size is None:
            return None
        files.setdefault(name, (mtime, size))
    return Hello(pid, path, files)


def spoiled_by(
    paths: Iterable[str],
    *,
    hot: str,
    files: Collection[str],
    existing: Collection[str],
    watched: Callable[[str], bool],
    exists: Callable[[str], bool],
    site_roots: Collection[str],
    interpreter: str | None,
) -> str | None:
    """Why these changed paths make a checkpoint invalid, or None.

    ``hot``: the file it stands before; ``files``: what ran before it; ``existing``: the
    module files in watched folders when it was taken; ``watched(path)``: relaunch
    watches the path."""
    for path in paths:
        if path == hot:
            if not exists(path):
                # A cold start would look for the module again: another file, or none.
                return f"{shown_path(path)} was deleted"
            continue
        if path in files:
            return f"{shown_path(path)} changed, and it ran before"
        why = environment_change(path, site_roots=site_roots, interpreter=interpreter)
        if why:
            return why
        if path.endswith(".py"):
            if path not in existing and exists(path):
                return (
                    f"a new module appeared ({shown_path(path)}), which an earlier import may find"
                )
        elif watched(path) and not path.endswith((".pyc", ".pyo")):
            return f"{shown_path(path)} changed, which the program may have read before"
    return None


def stale(
    files: Mapping[str, tuple[int, int]], look: Callable[[str], tuple[int, int]]
) -> str | None:
    """Why a checkpoint is out of date: a file that ran before it is not as it was then."""
    return stale_each({0: files}, look).get(0)


def stale_each(
    checkpoints: Mapping[int, Mapping[str, tuple[int, int]]],
    look: Callable[[str], tuple[int, int]],
) -> dict[int, str]:
    """:func:`stale` for several checkpoints (by serial), each file looked at once: why
    each out-of-date one is (the valid ones are left out)."""
    now: dict[str, tuple[int, int]] = {}
    found: dict[int, str] = {}
    for serial, files in checkpoints.items():
        for path, seen in files.items():
            state = now.get(path)
            if state is None:
                state = now[path] = look(path)
            if state != seen:
                found[serial] = f"{shown_path(path)} changed, and it ran before"
                break
    return found


def thinner(files: Collection[str], zygote_files: Collection[str]) -> int:
    """How many of the zygote's files a checkpoint has not loaded (0: it holds them all,
    as every checkpoint parked by a child the zygote forked does)."""
    return sum(1 for f in zygote_files if f not in files)


@dataclass
class Checkpoint:
    pid: int
    file: str
    files: Mapping[str, tuple[int, int]]
    existing: frozenset[str]  # module files in the watched folders when it arrived
    serial: int  # arrival order
    unwatched: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # of ``files``
    client: Any = None  # the ForkClient driving it
    spoiled: str = ""  # why it is no longer valid, once known


def choose(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The valid checkpoint that has run the most (the latest on arrival for a tie)."""
    valid = [c for c in checkpoints if not c.spoiled]
    return max(valid, key=lambda c: (len(c.files), c.serial), default=None)


def admit(
    kept: Sequence[Checkpoint], new: Checkpoint, cap: int = MAX_CHECKPOINTS
) -> tuple[list[Checkpoint], list[Checkpoint]]:
    """Keep ``new``: it replaces an older one before the same file; past ``cap``, the
    oldest go. One already out of date on arrival (a file it ran changed before its
    hello came) is not kept, and replaces nothing. Returns (kept, dropped)."""
    if new.spoiled:
        return list(kept), [new]
    dropped = [c for c in kept if c.file == new.file]
    out = [c for c in kept if c.file != new.file] + [new]
    out.sort(key=lambda c: c.serial)
    while len(out) > cap:
        dropped.append(out.pop(0))
    return out, dropped


def look(path: str) -> tuple[int, int]:
    """(mtime_ns, size) now; (-1, -1) if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)
