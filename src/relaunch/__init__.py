"""relaunch: reload Python programs and web servers the moment their code changes.

The functions here are for the program running under ``relaunch run``. Outside
relaunch they do nothing (and say so in a debug log), so calling them
unconditionally is safe.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["__version__", "add_reload_hook", "is_child", "trigger_reload", "watch"]

__version__ = "0.1.0"

log = logging.getLogger(__name__)


def _channel() -> Any:
    # Set up by relaunch's bootstrap in the child process; absent anywhere else.
    module = sys.modules.get("_relaunch_channel")
    return getattr(module, "channel", None)


def is_child() -> bool:
    """True when this process runs under ``relaunch run``."""
    return _channel() is not None


def watch(*paths: str | os.PathLike[str]) -> None:
    """Also reload when any of these files change (templates, config, data files)."""
    channel = _channel()
    if channel is None:
        log.debug("relaunch.watch(%s): not running under relaunch", paths)
        return
    channel.watch([os.fspath(p) for p in paths])


def add_reload_hook(fn: Callable[[], object]) -> None:
    """Call ``fn()`` just before relaunch stops this process for a reload.

    Hooks run in a helper thread while the program is still fully running; relaunch
    waits for them for at most its grace period (``--grace``).
    """
    channel = _channel()
    if channel is None:
        log.debug("relaunch.add_reload_hook(%r): not running under relaunch", fn)
        return
    channel.add_reload_hook(fn)


def trigger_reload() -> None:
    """Ask relaunch to restart this program now, as if a watched file had changed."""
    channel = _channel()
    if channel is None:
        log.debug("relaunch.trigger_reload(): not running under relaunch")
        return
    channel.trigger_reload()
