"""Paths as the supervisor's log lines name them: relative to here when under it."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .. import pathtext

__all__ = ["names"]


def names(paths: Iterable[str], limit: int = 3) -> str:
    """``a.py, b.py, c.py (+2 more)``: sorted, at most ``limit`` shown."""
    shown = sorted(
        pathtext.shown(os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p)
        for p in paths
    )
    text = ", ".join(shown[:limit])
    if len(shown) > limit:
        text += f" (+{len(shown) - limit} more)"
    return text
