"""The supervisor's side of the child's pipe: read, validate, never trust.

The child speaks JSON lines (see bootstrap.py). A message is data and nothing else:
it is parsed with ``json`` (never pickle, never eval), checked against the exact
shape its type allows, and dropped (with a debug log) when it does not fit. Paths
must be absolute strings without NUL bytes. Lines longer than ``MAX_LINE`` are
dropped whole.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_LINE", "Message", "MessageReader", "parse"]

log = logging.getLogger(__name__)

MAX_LINE = 8192
MAX_ITEMS = 1000


@dataclass(frozen=True)
class Message:
    """One validated message.

    ``paths`` holds absolute paths; ``modules`` (name, path, mtime_ns) triples, the
    mtime being what the child saw when it found the file (-1 if it could not stat it).
    """

    kind: str
    paths: tuple[str, ...] = ()
    modules: tuple[tuple[str, str, int], ...] = ()
    sizes: tuple[int, ...] = ()
    text: str = ""
    line: int = 0


def _path(value: object) -> str | None:
    if isinstance(value, str) and value and "\0" not in value and os.path.isabs(value):
        return os.path.normpath(value)
    return None


def _paths(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        return None
    out = []
    for item in value:
        path = _path(item)
        if path is None:
            return None
        out.append(path)
    return tuple(out)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _modules(value: object) -> tuple[tuple[tuple[str, str, int], ...], tuple[int, ...]] | None:
    """[name, path, mtime] or [name, path, mtime, size] items: (triples, sizes)."""
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        return None
    out = []
    sizes = []
    for item in value:
        if not (isinstance(item, list) and len(item) in (3, 4) and isinstance(item[0], str)):
            return None
        path, mtime = _path(item[1]), _int(item[2])
        size = _int(item[3]) if len(item) == 4 else -1
        if path is None or len(item[0]) > 1000 or mtime is None or size is None:
            return None
        out.append((item[0], path, mtime))
        sizes.append(size)
    return tuple(out), tuple(sizes)


_SIMPLE = frozenset(
    {
        "running",
        "loaded",
        "ready",
        "reload",
        "hooks",
        "hooks-done",
        "changes",
        "handled",
        "unhandled",
    }
)


def parse(line: bytes) -> Message | None:
    """Parse one line; None if it is not a well-formed message."""
    if len(line) > MAX_LINE:
        return None
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("t")
    if not isinstance(kind, str):
        return None
    if kind in _SIMPLE and len(data) == 1:
        return Message(str(kind))
    if kind in ("watch", "failed") and set(data) == {"t", "p"}:
        paths = _paths(data["p"])
        return None if paths is None else Message(kind, paths=paths)
    if kind == "mods" and set(data) == {"t", "p"}:
        found = _modules(data["p"])
        return None if found is None else Message(kind, modules=found[0], sizes=found[1])
    if kind == "tb" and set(data) == {"t", "text"} and isinstance(data["text"], str):
        return Message(kind, text=data["text"][:4000])
    if kind == "error" and set(data) == {"t", "summary", "file", "line"}:
        summary, path, line = data["summary"], data["file"], data["line"]
        if not (isinstance(summary, str) and isinstance(line, int)) or isinstance(line, bool):
            return None
        location = _path(path) if path else ""
        if location is None:
            return None
        return Message(kind, paths=(location,) if location else (), text=summary[:2000], line=line)
    return None


class MessageReader:
    """Incremental parser: feed it what a read() returned, get the complete messages."""

    def __init__(self, *, on_bad: Callable[[bytes], None] | None = None) -> None:
        self.buffer = b""
        self.skipping = False
        self.on_bad = on_bad

    def feed(self, chunk: bytes) -> list[Message]:
        self.buffer += chunk
        messages: list[Message] = []
        while True:
            newline = self.buffer.find(b"\n")
            if newline < 0:
                if len(self.buffer) > MAX_LINE:
                    self.buffer = b""
                    self.skipping = True  # drop the rest of this overlong line too
                return messages
            line, self.buffer = self.buffer[:newline], self.buffer[newline + 1 :]
            if self.skipping:
                self.skipping = False
                continue
            message = parse(line)
            if message is None:
                log.debug("dropped a malformed message from the child: %r", line[:200])
                if self.on_bad is not None:
                    self.on_bad(line)
                continue
            messages.append(message)
