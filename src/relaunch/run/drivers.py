"""Drivers: how a running program is told to load new code.

The default driver has nothing to say, and the supervisor restarts the process.
A server that can reload itself gracefully (gunicorn's HUP, uWSGI's chain reload,
mod_wsgi's touch) gets a driver that does it in place, after checking the new code
in a throwaway process (preflight), so working workers are never replaced by
broken ones. :func:`driver_for` picks the driver for a command.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..command import Command
from .child import Child

__all__ = ["Driver", "driver_for"]


class Driver:
    """Restart the process (the default)."""

    name = "restart"

    def reload(self, child: Child, changed: Sequence[str]) -> str | None:
        """Reload ``child`` in place. Returns what was done (for the log line), or None
        to have the supervisor restart the process instead. Runs on the supervisor's
        thread; may block for as long as a graceful reload takes."""
        return None

    def close(self) -> None:
        """Release what the driver holds (relaunch is exiting)."""


def driver_for(command: Command) -> Driver:
    """The driver for this command: a server integration if one recognises it."""
    return Driver()
