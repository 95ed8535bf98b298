"""A drop-in replacement for ``tornado.autoreload``, on relaunch (public name:
``relaunch.autoreload``, which re-exports it and adds the command-line wrapper).

Replace ``from tornado import autoreload`` with ``from relaunch import autoreload``:
:func:`start`, :func:`wait`, :func:`watch`, :func:`add_reload_hook` and :func:`main`
take the same arguments. What changes:

* ``start()`` watches with OS events (no 0.5 s poll), settles bursts into one reload,
  ignores no-op saves, and re-executes with the exact interpreter flags
  (``sys.orig_argv``: ``-u``, ``-X``, ``-W``, ``-O`` are kept). ``check_time`` is the
  polling interval used only where events do not work. Before re-executing it stops
  the process's children, so tornado's multi-process mode (``server.start(n)``,
  ``fork_processes``) reloads too. Workers forked by tornado do not watch.
* Once this module is imported, tornado's own entry points use it as well:
  ``Application(debug=True)`` or ``autoreload=True`` call this :func:`start`, and a
  tornado poller already started is silenced, so a change reloads once.
* ``python -m relaunch.autoreload [-m module | script.py] [args]`` runs the program
  under relaunch's supervisor (what ``relaunch run -- python [flags] ...`` does): exact
  watch set, warm restarts, the whole process group restarted, import-time errors
  shown and the fix waited for. Interpreter flags given before ``-m relaunch.autoreload``
  are passed on to the program. ``--until-success`` stops once the program exits 0.
  The program runs as under tornado's wrapper (see :mod:`.autoreload_main`): the
  current folder on ``sys.path`` in every mode, folders and ``.pyz`` archives run
  by their ``__main__.py``, and the environment it leaves carried over to the next run.
* Under ``relaunch run`` the supervisor does the reloading and these functions defer
  to it (see :mod:`relaunch.inprocess`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ... import inprocess

__all__ = ["add_reload_hook", "start", "wait", "watch", "wrapper_argv"]

log = logging.getLogger(__name__)

_USAGE = """
  python -m relaunch.autoreload -m module.to.run [args...]
  python -m relaunch.autoreload path/to/script.py [args...]
"""


def _tornado_worker() -> bool:
    """True in a worker forked by tornado's ``fork_processes``: its parent reloads."""
    process = sys.modules.get("tornado.process")
    task_id = getattr(process, "task_id", None)
    return callable(task_id) and task_id() is not None


def _adopt_tornado() -> None:
    """Route tornado's own autoreload entry points (``debug=True``) to this module."""
    tornado_autoreload: Any = sys.modules.get("tornado.autoreload")
    if tornado_autoreload is None:
        if "tornado" not in sys.modules:
            return  # not a tornado program (a test runner): do not import tornado
        try:
            import tornado.autoreload

            tornado_autoreload = tornado.autoreload
        except ImportError:
            return
    if getattr(tornado_autoreload, "start", None) is start:
        return
    for name, fn in (
        ("start", start),
        ("wait", wait),
        ("watch", watch),
        ("add_reload_hook", add_reload_hook),
    ):
        setattr(tornado_autoreload, name, fn)
    # A tornado poller started before this import checks this flag on every tick and
    # stops doing anything: relaunch's watcher takes over.
    tornado_autoreload._reload_attempted = True
    # Hooks already given to tornado still run before relaunch re-executes.
    for hook in list(getattr(tornado_autoreload, "_reload_hooks", ())):
        add_reload_hook(hook)


def start(check_time: int = 500) -> None:
    """Begin watching the program's files; on a change, re-execute the process.

    ``check_time`` (milliseconds) is the polling interval for folders where OS events
    do not work; elsewhere events are used. Does nothing in a tornado worker process.
    """
    _adopt_tornado()
    if _tornado_worker():
        return
    seconds = check_time / 1000
    if math.isfinite(seconds):
        # tornado takes any interval; relaunch's polling range is 10 ms to an hour.
        seconds = min(max(seconds, 0.01), 3600.0)
    inprocess.start(_poll_interval=seconds)


def wait() -> None:
    """Wait for a watched file to change, then restart the process (for test runners)."""
    _adopt_tornado()
    inprocess.wait()


def watch(filename: str) -> None:
    """Add a file to the watch list. All imported modules are watched by default."""
    from ... import watch as relaunch_watch

    relaunch_watch(filename)


def add_reload_hook(fn: Callable[[], None]) -> None:
    """Add a function to be called before reloading the process.

    Descriptors are closed by the exec unless marked inheritable, so a hook is rarely
    needed to close files and sockets.
    """
    from ... import add_reload_hook as relaunch_hook

    relaunch_hook(fn)


def wrapper_argv(
    args: Sequence[str], *, executable: str, flags: Sequence[str]
) -> tuple[list[str], bool]:
    """``relaunch`` command-line arguments for ``python -m relaunch.autoreload ARGS``.

    Returns the arguments and whether usage was wrong (then the first is a message).
    Pure: parses like tornado's wrapper (``--until-success``, then ``-m module`` or a
    script path); everything after the module or script belongs to the program.
    """
    until_success = False
    program: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--until-success":
            until_success = True
        elif arg in ("-h", "--help"):
            return [f"usage: {_USAGE}"], True
        elif arg == "-m" and i + 1 < len(args):
            # Everything after the module is the program's (tornado's parser stops there too).
            program = ["-m", *args[i + 1 :]]
            break
        elif arg.startswith("-m") and len(arg) > 2:
            program = ["-m", arg[2:], *args[i + 1 :]]
            break
        elif arg.startswith("-") and arg != "-":
            return [f"no such option: {arg}\nusage: {_USAGE}"], True
        else:
            program = list(args[i:])
            break
        i += 1
    if not program:
        return ["Either -m or a path must be specified"], True
    run = ["run"]
    if until_success:
        run += ["--on-exit", "exit"]
    # The child runs the program through relaunch.autoreload_main, as tornado's wrapper
    # runs it after `python -m`: the same sys.path, argv and __main__ in every mode.
    return [*run, "--", executable, *flags, "-m", "relaunch.autoreload_main", *program], False


_adopt_tornado()
