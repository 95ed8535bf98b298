"""Drivers: how a running program is told to load new code.

The default driver has nothing to say, and the supervisor restarts the process.
A server that can reload itself gracefully (gunicorn's HUP or USR2 re-exec, uWSGI's
chain reload) gets a driver that does it in place, after checking the new code
in a throwaway process (preflight), so working workers are never replaced by
broken ones. :func:`driver_for` picks the driver for a command.

:meth:`Driver.reload` answers with a string: what was done. A :class:`NotReloaded`
string means that nothing was reloaded, on purpose (the preflight failed: the old
workers keep serving); the supervisor must neither restart the process nor count a
reload. ``None`` asks the supervisor to restart the process.
"""

from __future__ import annotations

from collections.abc import Sequence

from .child import Child

__all__ = ["Driver", "Handled", "NotReloaded"]


class NotReloaded(str):
    """A driver's answer meaning "deliberately did nothing; the previous version keeps
    serving" (e.g. "preflight failed: SyntaxError ...; still serving the previous
    version"). It is a ``str``, so a supervisor unaware of it still logs it."""


class Handled(NotReloaded):
    """The program said it handled the change itself (a Django ``file_changed``
    receiver returned True): not a failure, nothing to restart."""


# How long the program may take to say whether it handles a change itself.
JUDGE_TIMEOUT = 10.0


class Driver:
    """Restart the process (the default), unless the program handles the change itself."""

    name = "restart"

    def reload(self, child: Child, changed: Sequence[str]) -> str | None:
        """Reload ``child`` in place. Returns what was done (for the log line), a
        :class:`NotReloaded` when it deliberately did nothing, or None to have the
        supervisor restart the process instead. Runs on the supervisor's thread; may
        block for as long as a graceful reload takes.

        A program that asked to judge its changes (runserver's reloader, which sends
        Django's ``file_changed`` for each file) is asked first, as Django's own
        reloaders do: a receiver returning True means no restart."""
        if changed and child.handles_change(changed, JUDGE_TIMEOUT):
            return Handled("handled by the program (a file_changed receiver): no restart")
        return None

    def close(self) -> None:
        """Release what the driver holds (relaunch is exiting)."""
