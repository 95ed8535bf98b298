"""File names as log lines show them: one name never spans or forges a line.

A name may hold any byte but ``/`` and NUL: a newline would split the log line (and
could make a second line that looks like relaunch's own), an escape sequence would
drive the terminal, an undecodable byte (a lone surrogate after ``os.fsdecode``)
would make the log handler fail. Such names are shown quoted and escaped, as
Python's ``repr`` does; every other name is shown as it is.
"""

from __future__ import annotations

__all__ = ["shown"]


def shown(path: str) -> str:
    """``path`` for a log line: as it is, or ``repr``-quoted if it holds a character
    that is not printable (control characters, line separators, surrogates)."""
    return path if path.isprintable() else repr(path)
