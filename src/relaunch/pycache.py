"""Cached bytecode of changed modules, deleted before anything imports them again."""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["drop_bytecode"]


def drop_bytecode(paths: Iterable[str]) -> None:
    """Delete the cached bytecode (``__pycache__/<name>.*.pyc``) of changed modules.

    Python trusts a .pyc whose source has the same size and the same mtime in whole
    seconds: an edit like ``X = 1`` -> ``X = 2`` saved within the second would otherwise
    run the old code (in a restarted program, a preflight, a server's new workers)."""
    for path in paths:
        if not path.endswith(".py"):
            continue
        cache = os.path.join(os.path.dirname(path), "__pycache__")
        stem = os.path.basename(path)[:-3] + "."
        try:
            names = os.listdir(cache)
        except OSError:
            continue
        for name in names:
            # <stem>.<tag>.pyc or <stem>.<tag>.opt-N.pyc, for any interpreter's tag.
            rest = name[len(stem) :]
            if name.startswith(stem) and rest.endswith(".pyc") and rest.count(".") in (1, 2):
                try:
                    os.unlink(os.path.join(cache, name))
                except OSError:
                    pass
