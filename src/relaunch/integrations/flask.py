"""Flask and Werkzeug: one reloader (relaunch's), the debugger PIN kept, and the app's
template and static folders watched.

Werkzeug's reloader would run the app in a grandchild relaunch cannot see, and would
restart it a second time on every change. For every Python program relaunch runs,
:func:`child_environment` has the bootstrap load :mod:`relaunch._inside.werkzeug_child` once
``werkzeug.serving`` is imported: its ``run_simple`` then runs without the reloader
and still prints the debugger's PIN (``flask run --debug``, ``app.run(debug=True)``,
any script). ``flask run`` also gets ``FLASK_RUN_RELOAD=false``.

Under ``relaunch serve``, :func:`app_folders` names the folders the worker asks to
watch: their edits refresh open pages without a restart.
"""

from __future__ import annotations

import os

from ..command import Command

__all__ = ["IMPORT_HOOKS_ENV", "WERKZEUG_HOOK", "app_folders", "child_environment", "is_flask_cli"]


def is_flask_cli(command: Command) -> bool:
    """True for ``flask ...`` (the console script) and ``python -m flask ...``."""
    py = command.python
    if py is None:
        return False
    if py.mode == "module":
        return py.target == "flask"
    return py.mode == "script" and os.path.basename(py.target) in ("flask", "flask.exe")


# Read by relaunch's bootstrap (_inside/bootstrap.py): MODULE=FILE entries.
IMPORT_HOOKS_ENV = "_RELAUNCH_IMPORT_HOOKS"
WERKZEUG_HOOK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_inside", "werkzeug_child.py"
)


def child_environment(command: Command) -> dict[str, str]:
    """Turn Werkzeug's reloader off in any Python program: relaunch reloads."""
    if command.python is None:
        return {}
    env = {IMPORT_HOOKS_ENV: f"werkzeug.serving={WERKZEUG_HOOK}"}
    if is_flask_cli(command):
        env["FLASK_RUN_RELOAD"] = "false"
    return env


def app_folders(app: object) -> list[str]:
    """The template and static folders of a Flask app and of each of its blueprints,
    those that exist. Duck-typed (Flask's ``Scaffold`` API), so Flask is not imported
    and any other object gives none."""
    blueprints = getattr(app, "blueprints", None)
    if not isinstance(blueprints, dict) or not hasattr(app, "jinja_env"):
        return []
    import sysconfig

    # A blueprint of an installed package (an extension's admin pages) is not the
    # project's to edit: watching it would only cost OS watches.
    installed = tuple(
        os.path.join(os.path.realpath(p), "")
        for key, p in sysconfig.get_paths().items()
        if key in ("stdlib", "platstdlib", "purelib", "platlib")
    )
    found: list[str] = []
    for scaffold in (app, *blueprints.values()):
        root = getattr(scaffold, "root_path", None)
        if not isinstance(root, str):
            continue
        for attr in ("template_folder", "static_folder"):
            folder = getattr(scaffold, attr, None)
            if isinstance(folder, (str, os.PathLike)):
                path = os.path.abspath(os.path.join(root, os.fspath(folder)))
                if os.path.realpath(path).startswith(installed):
                    continue
                if os.path.isdir(path) and path not in found:
                    found.append(path)
    return found
