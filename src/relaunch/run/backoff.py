"""Growing delays for a program that asks to start again as soon as it has started.

A program that calls ``relaunch.trigger_reload()`` (or exits with ``--on-exit
restart``) every time it starts would otherwise be restarted at full speed forever,
taking a core and flooding the log. Pure: the caller says how long the program ran.
"""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """``delay(lived)``: 0 after a run of at least ``short_run`` seconds; after a shorter
    one, ``first`` seconds, doubled after each further short run, at most ``longest``."""

    def __init__(self, *, short_run: float = 1.0, first: float = 0.1, longest: float = 5.0) -> None:
        self.short_run = short_run
        self.first = first
        self.longest = longest
        self.current = 0.0

    def delay(self, lived: float) -> float:
        if lived >= self.short_run:
            self.current = 0.0
        else:
            self.current = min(max(self.current * 2, self.first), self.longest)
        return self.current
