"""What the user says to a running supervisor: signals and the terminal.

Both only put events on the supervisor's queue (or, for a second Ctrl-C, kill at
once through the supervisor's handler).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install_signals", "read_terminal"]


def install_signals(handler: Callable[[int, Any], None]) -> None:
    """SIGINT, SIGTERM and SIGHUP (where there is one) go to ``handler``; only the
    main thread may set handlers (relaunch run from a test's thread does not)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)


def read_terminal(put: Callable[[tuple[Any, ...]], None]) -> None:
    """Enter (or ``rs``) on the terminal asks for a reload: read in a daemon thread."""

    def read() -> None:
        for line in sys.stdin:
            if line.strip() in ("", "rs"):
                put(("manual", "manual reload (Enter)"))

    threading.Thread(target=read, name="relaunch-stdin", daemon=True).start()
