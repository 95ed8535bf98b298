"""Inside the program: Werkzeug's development server without Werkzeug's reloader.

relaunch's bootstrap loads this file by path (``_RELAUNCH_IMPORT_HOOKS``) and calls
:func:`after_import` once ``werkzeug.serving`` is imported, whoever calls
``run_simple`` then: ``flask run --debug``, ``app.run(debug=True)``, a script of
its own. The wrapper turns the reloader off (relaunch reloads: one restart per
change, with its watch set and warm restarts, not a second reloader restarting the
program in a process relaunch cannot see) and keeps what the reloader's process
would have done: with the debugger on, Werkzeug prints " * Debugger is active!" and
the PIN, which it only does in its reloader's child.

Runs in the program's interpreter, which may not have relaunch installed: standard
library only, no relaunch imports.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

__all__ = ["after_import"]

_RUN_MAIN = "WERKZEUG_RUN_MAIN"


def after_import(serving: Any) -> None:
    original = getattr(serving, "run_simple", None)
    if not callable(original) or getattr(original, "_relaunch_wrapped", False):
        return
    if os.environ.get(_RUN_MAIN) == "true":
        return  # a Werkzeug reloader of someone else's runs this process: leave it be
    signature = inspect.signature(original)

    @functools.wraps(original)
    def run_simple(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # let Werkzeug say what is wrong
        values = bound.arguments
        values["use_reloader"] = False
        if values.get("use_debugger"):
            application: Any = values.get("application")
            static_files = values.get("static_files")
            if static_files:  # wrapped first, inside the debugger, as Werkzeug does
                from werkzeug.middleware.shared_data import SharedDataMiddleware

                application = SharedDataMiddleware(application, static_files)
                values["static_files"] = None
            values["application"] = _debugged(application, values)
            values["use_debugger"] = False
        return original(*bound.args, **bound.kwargs)

    run_simple._relaunch_wrapped = True  # type: ignore[attr-defined]
    serving.run_simple = run_simple


def _debugged(application: Any, values: dict[str, Any]) -> Any:
    from werkzeug.debug import DebuggedApplication

    # Werkzeug prints the PIN only in its reloader's process, which it recognises by
    # this variable: set it just while the debugger is made.
    before = os.environ.get(_RUN_MAIN)
    os.environ[_RUN_MAIN] = "true"
    try:
        debugged = DebuggedApplication(application, evalex=values.get("use_evalex", True))
    finally:
        if before is None:
            os.environ.pop(_RUN_MAIN, None)
        else:
            os.environ[_RUN_MAIN] = before
    hostname = values.get("hostname")
    if isinstance(hostname, str):
        debugged.trusted_hosts.append(hostname)
    return debugged
