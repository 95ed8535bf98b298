"""Integrations with servers and frameworks: one module each.

:func:`child_environment` is asked, once per run, for environment variables the
program should get under relaunch (for instance to turn off a framework's own
reloader, which would fight relaunch's).
"""

from __future__ import annotations

from ..command import Command

__all__ = ["child_environment"]


def child_environment(command: Command) -> dict[str, str]:
    """Extra environment variables for this command's processes (none by default)."""
    from . import django, flask  # neither imports its framework

    env: dict[str, str] = {}
    for integration in (django, flask):
        env.update(integration.child_environment(command))
    return env
