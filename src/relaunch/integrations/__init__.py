"""Integrations with servers and frameworks: one module each.

Asked once per run by the subcommand that builds the supervisor:

* :func:`child_environment`: environment variables the program should get under
  relaunch (for instance to turn off a framework's own reloader, which would fight
  relaunch's);
* :func:`driver_for`: how the running program is told to load new code (a server
  that reloads gracefully gets its own driver; see :mod:`relaunch.run.drivers`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..command import Command

if TYPE_CHECKING:  # the serve worker imports integrations in the app's process
    from ..run.drivers import Driver

__all__ = ["child_environment", "driver_for"]

log = logging.getLogger(__name__)


def child_environment(command: Command) -> dict[str, str]:
    """Extra environment variables for this command's processes (none by default)."""
    from . import django, flask  # neither imports its framework

    env: dict[str, str] = {}
    for integration in (django, flask):
        env.update(integration.child_environment(command))
    return env


def driver_for(
    command: Command, *, preflight: bool = True, preflight_timeout: float = 60.0
) -> Driver:
    """The driver for this command: a server integration if one recognises it.

    ``preflight``: import the new code in a throwaway process before each graceful
    reload (``--no-preflight`` turns it off); ``preflight_timeout`` bounds it.
    """
    from ..run.drivers import Driver
    from . import gunicorn, uwsgi
    from .mod_wsgi import express

    for integration in (gunicorn, uwsgi, express):
        driver: Driver | None = integration.driver_for(
            command, preflight=preflight, preflight_timeout=preflight_timeout
        )
        if driver is not None:
            log.debug("%s driver: graceful reloads", driver.name)
            return driver
    return Driver()
