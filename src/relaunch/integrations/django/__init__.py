"""Django: ``manage.py runserver`` with relaunch as its reloader.

Add ``"relaunch.integrations.django"`` to ``INSTALLED_APPS``. Then:

* ``manage.py runserver`` (Django's reloader on, the default) hands itself to
  relaunch's supervisor: the process that would have been Django's restart loop
  executes ``relaunch run -- python [same flags] manage.py runserver [same args]``.
  Reloads are relaunch's: exact watch set, native events, settle, no reload for a
  no-op save, warm restarts (a fork of a process that has already imported Django and
  the other installed libraries), and a crash (a syntax error in settings, models,
  views) shown and waited out until the fix.
* Inside the server process :class:`~relaunch.integrations.django.reloader.RelaunchReloader`
  replaces Django's StatReloader/WatchmanReloader. It sends ``autoreload_started``
  as Django does, so what receivers register (template folders, locale files,
  ``django-browser-reload``'s folders, ``reloader.extra_files``) is watched with OS
  events, and ``file_changed`` for each changed file: a receiver that handles it
  (Django resets its template loaders for a template) saves the restart; otherwise
  the supervisor restarts the program. Python modules are the supervisor's to watch,
  so a module change restarts once, never twice; before it restarts for one, the
  supervisor asks this process, which sends ``file_changed`` for it too, and a
  receiver returning True vetoes the restart, as under Django's own reloaders.
* Under ``relaunch serve`` (installed or not), :mod:`.devserver` does what runserver
  does that a plain server does not: URLconf loaded at start, template and static
  folders watched, templates read fresh, static files served.
* Run without relaunch's supervisor (``RUN_MAIN=true`` set by someone else), the
  reloader follows Django's contract instead: it also watches the imported modules,
  and an unhandled change exits with status 3 for Django's restart loop.

This module imports nothing from Django: :func:`child_environment` is asked by
``relaunch run`` for every command.
"""

from __future__ import annotations

from ...command import Command

__all__ = ["child_environment", "is_runserver"]

# Django's name for "this process is the server, not the restart loop".
RUN_MAIN = "RUN_MAIN"


def is_runserver(command: Command) -> bool:
    """True for ``manage.py runserver``, ``django-admin runserver``, ``-m django runserver``."""
    py = command.python
    return py is not None and "runserver" in py.args and "--noreload" not in py.args


def child_environment(command: Command) -> dict[str, str]:
    """Under ``relaunch run``, runserver must not start Django's own restart loop.

    With ``RUN_MAIN=true`` the program relaunch started is the server itself, so
    relaunch sees (and watches) everything it imports. Without it, Django would start
    the real server as a grandchild that relaunch knows nothing about.
    """
    return {RUN_MAIN: "true"} if is_runserver(command) else {}
