"""relaunch: reload Python programs and web servers the moment their code changes.

The functions here are for the program running under ``relaunch run``. Outside
relaunch they do nothing (and say so in a debug log), so calling them
unconditionally is safe; except after :func:`start`, which makes the program reload
itself (in-process mode, see :mod:`relaunch.inprocess`): then :func:`watch`,
:func:`add_reload_hook` and :func:`trigger_reload` serve it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

__all__ = [
    "__version__",
    "add_reload_hook",
    "is_child",
    "start",
    "trigger_reload",
    "wait",
    "watch",
]

__version__ = "0.1.0"

# The subpackage relaunch.watch shares its name with the function watch() below:
# importing it first means a later ``import relaunch.watch.events`` (in-process mode
# does that) finds it loaded and does not rebind ``relaunch.watch`` to the package.
from . import watch as _watch_package  # noqa: F401
from .state import channel as _channel

log = logging.getLogger(__name__)


def is_child() -> bool:
    """True when this process runs under ``relaunch run``."""
    return _channel() is not None


def start(
    *, check_interval: float | None = None, watch: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Reload this program in-process whenever its code changes; returns at once.

    For programs that cannot be started by ``relaunch run``. A watcher thread watches
    the program's modules, ``watch`` and :func:`watch` files; on a change the reload
    hooks run, then the process executes itself again with exactly ``sys.orig_argv``.
    ``check_interval=None`` uses OS events; a number polls every that many seconds.
    Under ``relaunch run`` it only passes ``watch`` on: the supervisor reloads.
    """
    from . import inprocess

    inprocess.start(check_interval=check_interval, watch=watch)


def wait() -> None:
    """Block until a watched file changes, then run the program again (for test runners)."""
    from . import inprocess

    inprocess.wait()


def watch(*paths: str | os.PathLike[str]) -> None:
    """Also reload when any of these files change (templates, config, data files)."""
    channel = _channel()
    if channel is None:
        from . import inprocess

        log.debug("relaunch.watch(%s): not under relaunch run; kept for start()", paths)
        inprocess.watch([os.fspath(p) for p in paths])
        return
    channel.watch([os.fspath(p) for p in paths])


def add_reload_hook(fn: Callable[[], object]) -> None:
    """Call ``fn()`` just before relaunch stops this process for a reload (in-process
    mode: just before the process executes itself again).

    Hooks run in a helper thread while the program is still fully running; relaunch
    waits for them for at most its grace period (``--grace``).
    """
    channel = _channel()
    if channel is None:
        from . import inprocess

        log.debug("relaunch.add_reload_hook(%r): not under relaunch run; kept for start()", fn)
        inprocess.add_reload_hook(fn)
        return
    channel.add_reload_hook(fn)


def trigger_reload() -> None:
    """Ask relaunch to restart this program now, as if a watched file had changed."""
    channel = _channel()
    if channel is None:
        from . import inprocess

        if not inprocess.trigger_reload():
            log.debug("relaunch.trigger_reload(): not running under relaunch")
        return
    channel.trigger_reload()
