"""What relaunch's code in the program's own process shares: when relaunch was first
imported there, and the channel to the supervisor (set up by the bootstrap).

Standard library only, and imported by ``relaunch/__init__.py`` itself, so the import
time is taken when the program first imports relaunch (any part of it).
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["IMPORTED_NS", "channel"]

# In-process mode compares module files' mtimes with this (relaunch.inprocess): the
# program's modules imported after it were loaded after it.
IMPORTED_NS = time.time_ns()


def channel() -> Any:
    """The supervisor's channel in this process; None outside ``relaunch run``."""
    # Set up by relaunch's bootstrap in the child process; absent anywhere else.
    module = sys.modules.get("_relaunch_channel")
    return getattr(module, "channel", None)
