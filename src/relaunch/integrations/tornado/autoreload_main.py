"""What ``python -m relaunch.autoreload PROGRAM`` runs in the child: PROGRAM, exactly as
tornado's wrapper (``python -m tornado.autoreload``) runs it.

``relaunch.autoreload.main`` starts relaunch's supervisor on
``python [flags] -m relaunch.autoreload_main [-m module | path] [args]``; that thin
module is then the child's ``__main__``, and :func:`main` here runs the program the way
tornado's wrapper does,
in-process after ``python -m``: the current folder is ``sys.path[0]`` in every mode
(so a file or folder program can ``import`` its package by name), a folder or ``.pyz``
runs its ``__main__.py`` with the folder or archive inserted first, ``-m`` runs the
module with ``__spec__`` set, and ``sys.argv`` is the program's.

tornado's wrapper re-executes itself in the same process on a reload (``os.execv``),
so environment changes the program made survive the reload. Here each run is a new
child of the supervisor: the environment is saved to a file (named by
``_RELAUNCH_AUTORELOAD_ENV``, which the wrapper creates) just before the child is
stopped and when the program ends, and restored before the next run starts.
Variables the interpreter reads at start-up (``PYTHONPATH``...) are restored too, but
read only by the next interpreter, as after an exec they would have been.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_FILE_VARIABLE", "load_environment", "main", "save_environment"]

ENV_FILE_VARIABLE = "_RELAUNCH_AUTORELOAD_ENV"

# relaunch's own plumbing between the supervisor and this child: always the current
# child's, never a previous run's.
_PLUMBING = "_RELAUNCH_"


def save_environment(path: str) -> None:
    """Write ``os.environ`` to ``path`` atomically (NUL-separated ``name=value``)."""
    # fsencode gives back the bytes of undecodable values (surrogateescape on POSIX).
    items = [
        os.fsencode(k) + b"=" + os.fsencode(v)
        for k, v in os.environ.items()
        if not k.startswith(_PLUMBING)
    ]
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "wb") as f:
        f.write(b"\0".join(items))
    os.replace(partial, path)


def load_environment(path: str) -> bool:
    """Make ``os.environ`` what :func:`save_environment` wrote; False when nothing was."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    saved: dict[str, str] = {}
    for item in data.split(b"\0"):
        raw_name, eq, raw_value = item.partition(b"=")
        name = os.fsdecode(raw_name)
        if eq and name and not name.startswith(_PLUMBING):
            saved[name] = os.fsdecode(raw_value)
    for gone in [k for k in os.environ if k not in saved and not k.startswith(_PLUMBING)]:
        del os.environ[gone]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    return True


def _program(args: list[str]) -> tuple[str | None, str | None, list[str]]:
    """(module, path, program arguments) from what relaunch.autoreload passed on."""
    if len(args) >= 2 and args[0] == "-m":
        return args[1], None, args[2:]
    if args:
        return None, args[0], args[1:]
    raise SystemExit("relaunch.autoreload_main: no program given")


def main() -> None:
    import runpy

    import relaunch

    env_file = os.environ.pop(ENV_FILE_VARIABLE, None)
    if env_file:
        load_environment(env_file)
        relaunch.add_reload_hook(lambda: save_environment(env_file))
    module, path, rest = _program(sys.argv[1:])
    # The command as the user typed it: python [flags] -m relaunch.autoreload ...
    orig = list(getattr(sys, "orig_argv", []))
    run_as = getattr(sys.modules.get("__main__"), "__spec__", None)  # relaunch.autoreload_main
    if run_as is not None and run_as.name in orig:
        orig[orig.index(run_as.name)] = "relaunch.autoreload"
        sys.orig_argv = orig
    try:
        if module is not None:
            sys.argv = [sys.argv[0], *rest]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert path is not None
            sys.argv = [path, *rest]
            if os.path.isfile(path):
                relaunch.watch(path)  # run_path compiles it without an import to report
            runpy.run_path(path, run_name="__main__")
    finally:
        if env_file:
            save_environment(env_file)
