"""Flask: ``relaunch run -- flask --app app run --debug`` without Flask's own reloader.

Werkzeug's reloader would run the app in a grandchild relaunch cannot see, and would
restart it a second time on every change. ``flask run`` reads ``--reload/--no-reload``
from ``FLASK_RUN_RELOAD``, so relaunch sets it to false for Flask's command line;
``--debug`` keeps the debugger. (A script calling ``app.run(debug=True)`` should pass
``use_reloader=False``: that call reads no environment variable.)
"""

from __future__ import annotations

import os

from ..command import Command

__all__ = ["child_environment", "is_flask_cli"]


def is_flask_cli(command: Command) -> bool:
    """True for ``flask ...`` (the console script) and ``python -m flask ...``."""
    py = command.python
    if py is None:
        return False
    if py.mode == "module":
        return py.target == "flask"
    return py.mode == "script" and os.path.basename(py.target) in ("flask", "flask.exe")


def child_environment(command: Command) -> dict[str, str]:
    """Turn Flask's reloader off: relaunch reloads (an explicit ``--reload`` still wins)."""
    return {"FLASK_RUN_RELOAD": "false"} if is_flask_cli(command) else {}
